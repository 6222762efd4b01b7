"""Where a fan-out call's CPU goes: httpx.AsyncClient alone, surge's pool alone, bare asyncio.

Three measurements of client CPU per call (`time.process_time()`), N concurrent calls, each
on its own connection, against `benchmarks/_server.py` in another process (loopback):

- httpx-only: `httpx.AsyncClient.post` over a transport that returns a canned response
  (no I/O): the cost of httpx's client layer.
- pool-direct: `PoolTransport.handle_async_request` + `aread()` with prebuilt requests:
  surge's pool with its I/O, `httpx.Response` included.
- floor: `loop.create_connection` + a minimal protocol: write, wait for the head, close.

    .venv/bin/python benchmarks/pool_cpu.py [--n 1000] [--runs 10]

Prints the minimum and all runs of each (the machine is shared; the minimum is the least
disturbed run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

import httpx

from surge._config import PoolConfig
from surge._transport.pool import PoolTransport

HERE = os.path.dirname(os.path.abspath(__file__))
BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]}).encode()
REPLY = json.dumps({"id": "x", "choices": [{"message": {"content": "hi"}}]}).encode()


class _Canned(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers=[
                (b"Content-Type", b"application/json"),
                (b"Content-Length", b"%d" % len(REPLY)),
            ],
            stream=httpx.ByteStream(REPLY),
            extensions={"http_version": b"HTTP/1.1"},
        )


class _Head(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf and not self.done.done():
            self.done.set_result(None)


async def httpx_only(port: int, n: int) -> float:
    http = httpx.AsyncClient(transport=_Canned())
    body = json.loads(BODY)

    async def call() -> None:
        (await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)).json()

    await call()
    start = time.process_time()
    await asyncio.gather(*(call() for _ in range(n)))
    return (time.process_time() - start) * 1000 / n


async def pool_direct(port: int, n: int) -> float:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    pool = PoolTransport(PoolConfig(max_connections=10_000))
    ext = {"timeout": {"connect": 10.0, "read": 60.0, "write": 10.0, "pool": None}}

    def request() -> httpx.Request:
        headers = {"content-type": "application/json"}
        return httpx.Request("POST", url, content=BODY, headers=headers, extensions=ext)

    async def call(req: httpx.Request) -> None:
        await (await pool.handle_async_request(req)).aread()

    await call(request())
    requests = [request() for _ in range(n)]
    start = time.process_time()
    await asyncio.gather(*(call(r) for r in requests))
    cpu = (time.process_time() - start) * 1000 / n
    await pool.aclose()
    return cpu


async def floor(port: int, n: int) -> float:
    loop = asyncio.get_running_loop()
    raw = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )

    async def call() -> None:
        done: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.create_connection(lambda: _Head(done), "127.0.0.1", port)
        transport.write(raw)
        await done
        transport.close()

    await call()
    start = time.process_time()
    await asyncio.gather(*(call() for _ in range(n)))
    return (time.process_time() - start) * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    server = subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "_server.py"),
            "--latency",
            "0.3",
            "--max-seconds",
            "600",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        kinds = {"httpx-only": httpx_only, "pool-direct": pool_direct, "floor": floor}
        runs: dict[str, list[float]] = {name: [] for name in kinds}
        for _ in range(args.runs):
            for name, fn in kinds.items():
                runs[name].append(asyncio.run(fn(port, args.n)))
        for name, values in runs.items():
            listed = " ".join(f"{v:.3f}" for v in values)
            print(f"{name:<12} min {min(values):.3f} ms/call   runs: {listed}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
