"""Streaming: chunk throughput, partial objects, many concurrent streams (loopback only).

Three measurements, each printed with the versions used:

1. throughput: the simulated server (its own process, `stream_tokens_per_second=inf`)
   streams 10,000 small chunks as fast as it can; client CPU per chunk
   (`time.process_time()` of this process) and chunks per second for `client.stream`, the
   openai SDK's `AsyncStream` (default httpx client; HTTP/2 with --http2), and raw
   httpx `aiter_lines` with the minimal SSE parsing (`data: ` lines, `json.loads`).
   --runs of each, the clients taken in turn; medians.
2. partial objects: a 20 KB JSON object revealed 10 characters at a time. Time of
   `PartialReader` over the whole stream (what `stream_structured` uses, partial typed
   value built after every piece), against one `surge.parse(final, T, partial=True)` and
   one `surge.parse(final, T)`; and `surge.parse(prefix, T, partial=True)` on every prefix
   (quadratic: timed on every 10th prefix and multiplied by 10, so marked "est.").
   Per-piece cost in the first and last tenth of the stream shows it is flat.
3. concurrency: N streams at once (1,000 by default), each 200 chunks at 50 tokens/s:
   whether all progressed together (streams that had their first token before any ended;
   the most the server had in flight at once), and client CPU per chunk at 100 and at N
   streams.

    .venv/bin/python benchmarks/streaming.py [--runs 3] [--streams 1000] [--only throughput]
        [--http2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from typing import Any

import httpx
from pydantic import BaseModel

import surge
from surge._parsing._incremental import PartialReader

SERVER = """
import sys
from surge.testing import SimulatedServer
def reply(request):
    return " ".join(["tok"] * int(request.params.get("max_tokens", 10)))
with SimulatedServer(reply=reply, stream_tokens_per_second=float(sys.argv[1])) as server:
    print("URL", server.url, flush=True)
    for line in sys.stdin:  # "peak": the most requests in flight at once since the last ask
        print(server.stats.peak_in_flight, flush=True)
        server.reset_stats()
"""


class Server:
    """The simulated server in a child process (its CPU is not the client's)."""

    def __init__(self, tokens_per_second: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(tokens_per_second)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.url = line.split()[1]

    def peak(self) -> int:
        """The most requests the server had in flight at once since the last call."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("peak\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


MESSAGES = [{"role": "user", "content": "stream"}]


class Clock:
    """Wall and CPU time of the measured stream only (not the client's set-up or warm-up)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


async def _surge_once(client: surge.LLMClient, chunks: int) -> int:
    count = 0
    async with client.stream(MESSAGES, max_tokens=chunks) as stream:
        async for chunk in stream:
            if chunk.content:
                count += 1
    return count


async def surge_stream(url: str, chunks: int, clock: Clock, http2: bool = False) -> int:
    async with surge.LLMClient(base_url=url, http2=http2) as client:
        await _surge_once(client, 10)
        with clock:
            return await _surge_once(client, chunks)


async def openai_stream(url: str, chunks: int, clock: Clock, http2: bool = False) -> int:
    import openai

    http_client = httpx.AsyncClient(http1=False, http2=True) if http2 else None
    client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", http_client=http_client)

    async def once(n: int) -> int:
        count = 0
        stream = await client.chat.completions.create(
            model="m",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=n,
            stream=True,
        )
        async for event in stream:
            if event.choices and event.choices[0].delta.content:
                count += 1
        return count

    await once(10)
    with clock:
        count = await once(chunks)
    await client.close()
    return count


async def httpx_stream(url: str, chunks: int, clock: Clock, http2: bool = False) -> int:
    # HTTP/2 over cleartext needs prior knowledge: http1=False.
    async with httpx.AsyncClient(http1=not http2, http2=http2) as client:

        async def once(n: int) -> int:
            count = 0
            body = {"model": "m", "messages": MESSAGES, "max_tokens": n, "stream": True}
            async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        event = json.loads(line[6:])
                        if event["choices"] and event["choices"][0]["delta"].get("content"):
                            count += 1
            return count

        await once(10)
        with clock:
            return await once(chunks)


def measure(fn: Any, url: str, chunks: int, http2: bool = False) -> tuple[float, float, int]:
    """(wall s, CPU s, chunks) of the measured stream of one fresh run of `fn`."""
    clock = Clock()
    got = asyncio.run(fn(url, chunks, clock, http2))
    return clock.wall, clock.cpu, got


def throughput(runs: int, http2: bool = False) -> None:
    chunks = 10_000
    server = Server(float("inf"))
    try:
        proto = "HTTP/2 (cleartext, prior knowledge)" if http2 else "HTTP/1.1"
        print(
            f"\n1. throughput: one stream of {chunks:,} chunks over {proto}, {runs} runs of each "
            "client taken in turn; medians (best CPU in brackets)"
        )
        print(f"{'client':<28}{'chunks/s':>12}{'CPU µs/chunk':>15}{'(best)':>9}{'ratio':>8}")
        clients = (
            ("surge client.stream", surge_stream),
            ("openai SDK AsyncStream", openai_stream),
            ("httpx aiter_lines + json", httpx_stream),
        )
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name, _ in clients}
        for _ in range(runs):  # in turn, so that the machine's load falls on all alike
            for name, fn in clients:
                result = measure(fn, server.url, chunks, http2)
                assert result[2] == chunks, (name, result[2])
                results[name].append(result)
        base = statistics.median(cpu for _, cpu, _ in results[clients[0][0]])
        for name, _ in clients:
            walls = [wall for wall, _, _ in results[name]]
            cpus = [cpu for _, cpu, _ in results[name]]
            per = statistics.median(cpus) / chunks * 1e6
            print(
                f"{name:<28}{chunks / statistics.median(walls):>12,.0f}{per:>15.1f}"
                f"{min(cpus) / chunks * 1e6:>9.1f}{per / (base / chunks * 1e6):>8.2f}"
            )
    finally:
        server.close()


class Row(BaseModel):
    id: int
    name: str
    tags: list[str]
    score: float
    active: bool


class Report(BaseModel):
    title: str
    summary: str
    rows: list[Row]


def document() -> str:
    rng = random.Random(7)
    rows = [
        {
            "id": i,
            "name": f"row {i} " + "x" * rng.randrange(20, 60),
            "tags": [f"t{rng.randrange(100)}" for _ in range(3)],
            "score": round(rng.random() * 100, 3),
            "active": rng.random() < 0.5,
        }
        for i in range(140)
    ]
    return json.dumps({"title": "A report", "summary": "s" * 400, "rows": rows})


def partial_objects() -> None:
    text = document()
    step = 10
    pieces = [text[i : i + step] for i in range(0, len(text), step)]
    print(f"\n2. partial objects: {len(text):,} chars, {step} at a time ({len(pieces)} pieces)")

    def one_parse(partial: bool) -> float:
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            surge.parse(text, Report, partial=partial)
            best = min(best, time.perf_counter() - t)
        return best

    lenient = one_parse(True)
    fast = one_parse(False)

    best = float("inf")
    per_piece: list[float] = []
    for _ in range(3):
        reader = PartialReader(Report)
        times = []
        t0 = time.perf_counter()
        for piece in pieces:
            t = time.perf_counter()
            if reader.feed(piece):
                reader.value()
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        if total < best:
            best, per_piece = total, times
    assert reader.value() == Report.model_validate_json(text)
    tenth = len(per_piece) // 10
    first = sum(per_piece[:tenth]) / tenth * 1e6
    last = sum(per_piece[-tenth:]) / tenth * 1e6

    t = time.perf_counter()
    failures = 0
    for i in range(0, len(pieces), 10):
        try:
            surge.parse(text[: (i + 1) * step], Report, partial=True)
        except surge.OutputParseError:  # a prefix cut inside a literal (`fals`)
            failures += 1
    every_prefix = (time.perf_counter() - t) * 10

    print(f"{'PartialReader, whole stream':<44}{best * 1000:>10.1f} ms")
    print(f"{'one surge.parse(final, partial=True)':<44}{lenient * 1000:>10.2f} ms")
    print(f"{'one surge.parse(final) (fast path)':<44}{fast * 1000:>10.3f} ms")
    print(
        f"{'surge.parse(prefix, partial=True) x all':<44}{every_prefix * 1000:>10.0f} ms (est.; "
        f"{failures} of {len(range(0, len(pieces), 10))} sampled prefixes raised)"
    )
    print(f"whole stream / one lenient parse: {best / lenient:.1f}x (target < 10x)")
    print(f"per piece: first tenth {first:.1f} µs, last tenth {last:.1f} µs")
    print(f"characters scanned: {reader.scanned:,} for {len(text):,}")


async def concurrent_run(
    url: str, n: int, chunks: int, http2: bool
) -> tuple[float, int, int, float]:
    async with surge.LLMClient(base_url=url, max_connections=n, http2=http2) as client:
        await _surge_once(client, 5)
        firsts: list[float] = []
        ends: list[float] = []
        total = 0

        async def one() -> None:
            nonlocal total
            async with client.stream(MESSAGES, max_tokens=chunks) as stream:
                first = True
                async for chunk in stream:
                    if chunk.content:
                        total += 1
                        if first:
                            firsts.append(time.perf_counter())
                            first = False
                ends.append(time.perf_counter())

        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        cpu = time.process_time() - cpu
        together = sum(1 for f in firsts if f < min(ends))  # streaming before any ended
        return cpu, total, together, max(firsts) - started


def concurrency(streams: int) -> None:
    chunks = 200
    server = Server(50.0)
    try:
        print(f"\n3. concurrency: streams of {chunks} chunks at 50 tokens/s, all at once")
        print(
            f"{'streams':>8}{'proto':>7}{'chunks':>10}{'CPU µs/chunk':>15}"
            f"{'streaming at once':>19}{'server peak':>13}{'last first token':>18}"
        )
        for http2 in (False, True):
            for n in sorted({100, streams}):
                server.peak()  # zero the count: the warm-up and earlier runs are not in it
                cpu, total, together, last = asyncio.run(
                    concurrent_run(server.url, n, chunks, http2)
                )
                peak = server.peak()
                assert total == n * chunks, total
                proto = "h2" if http2 else "h1"
                print(
                    f"{n:>8}{proto:>7}{total:>10,}{cpu / total * 1e6:>15.1f}"
                    f"{together:>14,} of {n:<4}{peak:>13,}{last:>12.2f} s"
                )
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--only", choices=["throughput", "partial", "concurrency"])
    parser.add_argument(
        "--http2", action="store_true", help="throughput over HTTP/2 as well as HTTP/1.1"
    )
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, surge {surge.__version__}, httpx "
        f"{version('httpx')}, openai {version('openai')}, pydantic {version('pydantic')}, "
        f"hypercorn {version('hypercorn')}"
    )
    if args.only in (None, "throughput"):
        throughput(args.runs)
        if args.http2:
            throughput(args.runs, http2=True)
    if args.only in (None, "partial"):
        partial_objects()
    if args.only in (None, "concurrency"):
        concurrency(args.streams)


if __name__ == "__main__":
    main()
