"""Fan-out benchmark: N concurrent chat completions against a 1.5 s server, client by client.

Starts `benchmarks/_server.py` (a lean OpenAI-compatible HTTP/1.1 server with a fixed
latency) in its own process, then runs each client in its own fresh subprocess, so that the
CPU time measured (`time.process_time()` around the burst, after one warm-up call) is the
client's alone. Prints a table: client, N, wall/ideal (ideal = the server's latency), client
CPU ms per call, overhead (wall - latency), server peak in flight, errors.

    .venv/bin/python benchmarks/fanout.py                      # N = 100, 1000, 5000
    .venv/bin/python benchmarks/fanout.py --n 1000 --clients surge,aiohttp
    .venv/bin/python benchmarks/fanout.py --profile surge --n 1000   # pyinstrument

Clients: surge (LLMClient.chat), surge-pool (httpx.AsyncClient over surge's PoolTransport),
openai (openai 2.x AsyncOpenAI defaults), openai+surge (2.x with surge.http_client), openai3
(openai 3.x defaults, on httpx2), openai3+surge (3.x with surge.httpx2_client), httpx
(AsyncClient default limits), httpx-unlimited (Limits(max_connections=None)), httpx2 (the
fork's rewritten pool, default limits), aiohttp (TCPConnector(limit=0)). httpx and httpx2
clients get timeout=120 s (their default 5 s would turn the queueing into PoolTimeouts).
openai 2.x and 3.x cannot share an environment: the openai3 rows run in the interpreter of
--current-python (default .venv-current/bin/python, see docs/drop-in.md); each row prints
the versions it ran. The httpx default-limits row at N=5000 takes minutes and is
skipped unless --all. Every row is bounded by --row-timeout seconds (default 120).
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ALL_CLIENTS = [
    "surge",
    "surge-pool",
    "openai",
    "openai+surge",
    "openai3",
    "openai3+surge",
    "httpx",
    "httpx-unlimited",
    "httpx2",
    "aiohttp",
]
CURRENT = ("openai3", "openai3+surge")  # rows that need openai 3.x (--current-python)
VERSIONS = {
    "surge": ("surge", "httpx"),
    "surge-pool": ("surge", "httpx"),
    "openai": ("openai", "httpx"),
    "openai+surge": ("openai", "httpx", "surge"),
    "openai3": ("openai", "httpx2"),
    "openai3+surge": ("openai", "httpx2", "surge"),
    "httpx": ("httpx", "httpcore"),
    "httpx-unlimited": ("httpx", "httpcore"),
    "httpx2": ("httpx2", "httpcore2"),
    "aiohttp": ("aiohttp",),
}
MESSAGES = [{"role": "user", "content": "Say hello."}]


# ---------------------------------------------------------------------------- worker side


async def _make(client: str, url: str) -> tuple[Any, Any, Any]:
    """Return (call, close, label) for one client kind."""
    if client == "surge":
        import surge

        llm = surge.LLMClient(
            base_url=url + "/v1", api_key="bench", model="bench", max_connections=10_000
        )

        async def call() -> None:
            await llm.chat(MESSAGES)

        return call, llm.aclose, None
    if client in ("surge-pool", "httpx", "httpx-unlimited"):
        import httpx

        if client == "surge-pool":
            from surge._config import PoolConfig
            from surge._transport.pool import PoolTransport

            http = httpx.AsyncClient(
                transport=PoolTransport(PoolConfig(max_connections=10_000)), timeout=120.0
            )
        elif client == "httpx":
            http = httpx.AsyncClient(timeout=120.0)
        else:
            http = httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=120.0)
        body = {"model": "bench", "messages": MESSAGES}

        async def call() -> None:
            response = await http.post(url + "/v1/chat/completions", json=body)
            response.raise_for_status()
            response.json()

        return call, http.aclose, None
    if client == "httpx2":
        import httpx2

        http2_client = httpx2.AsyncClient(timeout=120.0)
        body = {"model": "bench", "messages": MESSAGES}

        async def call() -> None:
            response = await http2_client.post(url + "/v1/chat/completions", json=body)
            response.raise_for_status()
            response.json()

        return call, http2_client.aclose, None
    if client in ("openai", "openai+surge", "openai3", "openai3+surge"):
        import openai

        major = int(openai.__version__.split(".")[0])
        if (major >= 3) != (client in CURRENT):
            return None, None, f"needs openai {'3' if client in CURRENT else '2'}.x: row skipped"
        kwargs: dict[str, Any] = {}
        if client == "openai+surge":
            import surge

            kwargs["http_client"] = surge.http_client(max_connections=10_000)
        elif client == "openai3+surge":
            import surge

            kwargs["http_client"] = surge.httpx2_client(max_connections=10_000)
        oai = openai.AsyncOpenAI(base_url=url + "/v1", api_key="bench", **kwargs)

        async def call() -> None:
            await oai.chat.completions.create(model="bench", messages=MESSAGES)  # type: ignore[arg-type]

        return call, oai.close, None
    if client == "aiohttp":
        try:
            import aiohttp
        except ImportError:
            return None, None, "aiohttp is not installed: row skipped"
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        body = {"model": "bench", "messages": MESSAGES}

        async def call() -> None:
            async with session.post(url + "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                await response.json()

        return call, session.close, None
    raise SystemExit(f"unknown client {client!r}")


async def _worker(client: str, n: int, url: str, profile: bool) -> dict[str, Any]:
    call, close, skipped = await _make(client, url)
    if skipped:
        return {"skipped": skipped}
    await call()  # warm-up: imports, first connection; not measured
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(call() for _ in range(n)), return_exceptions=True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
    errors = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    await close()
    return {"wall": wall, "cpu": cpu, "errors": dict(errors), "versions": _versions(client)}


def _versions(client: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in VERSIONS.get(client, ()):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{name} {version(name)}")
    return ", ".join(found)


# ---------------------------------------------------------------------------- driver side


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        data: dict[str, Any] = json.loads(response.read())
        return data


def _run_row(
    client: str, n: int, url: str, timeout: float, profile: bool, python: str
) -> dict[str, Any]:
    _get(url + "/stats?reset=1")
    cmd = [
        python,
        os.path.abspath(__file__),
        "--worker",
        client,
        "--n",
        str(n),
        "--url",
        url,
    ]
    if profile:
        cmd.append("--profile-worker")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"gave_up": f"gave up after {timeout:.0f} s"}
    if profile:
        print(proc.stderr, file=sys.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"failed": f"exit {proc.returncode}: {tail[0][:80]}"}
    row: dict[str, Any] = json.loads(lines[-1])
    row["peak"] = _get(url + "/stats")["peak_in_flight"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="100,1000,5000", help="comma-separated N values")
    parser.add_argument("--clients", default=",".join(ALL_CLIENTS))
    parser.add_argument("--latency", type=float, default=1.5)
    parser.add_argument("--row-timeout", type=float, default=120.0)
    parser.add_argument("--all", action="store_true", help="also run httpx default at N>=5000")
    parser.add_argument("--profile", default="", help="client to profile with pyinstrument")
    parser.add_argument(
        "--current-python",
        default=os.path.join(os.path.dirname(HERE), ".venv-current", "bin", "python"),
        help="interpreter with openai 3.x for the openai3 rows",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--profile-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = asyncio.run(_worker(args.worker, int(args.n), args.url, args.profile_worker))
        print(json.dumps(result), flush=True)
        return

    server = subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "_server.py"),
            "--latency",
            str(args.latency),
            "--max-seconds",
            "3600",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}"
        ns = [int(x) for x in args.n.split(",") if x]
        clients = [c for c in args.clients.split(",") if c]
        print(
            f"server latency {args.latency} s; each row a fresh client process; "
            f"CPU = client process time during the burst",
            flush=True,
        )
        header = (
            f"{'client':<16} {'N':>5} {'wall/ideal':>10} {'CPU ms/call':>11} "
            f"{'overhead s':>10} {'peak':>5}  errors"
        )
        print(header)
        print("-" * len(header), flush=True)
        for n in ns:
            for client in clients:
                if client == "httpx" and n >= 5000 and not args.all:
                    print(
                        f"{client:<16} {n:>5}  skipped (takes minutes; --all runs it)", flush=True
                    )
                    continue
                python = args.current_python if client in CURRENT else sys.executable
                if not os.path.exists(python):
                    print(f"{client:<16} {n:>5}  skipped (no {python})", flush=True)
                    continue
                row = _run_row(client, n, url, args.row_timeout, args.profile == client, python)
                if "wall" not in row:
                    note = row.get("skipped") or row.get("gave_up") or row.get("failed")
                    print(f"{client:<16} {n:>5}  {note}", flush=True)
                    continue
                errors = ", ".join(f"{k} x{v}" for k, v in row["errors"].items()) or "0"
                print(
                    f"{client:<16} {n:>5} {row['wall'] / args.latency:>10.2f} "
                    f"{row['cpu'] * 1000 / n:>11.3f} {row['wall'] - args.latency:>10.2f} "
                    f"{row['peak']:>5}  {errors:<8} {row.get('versions', '')}",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
