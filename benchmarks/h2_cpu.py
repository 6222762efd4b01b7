"""Client CPU per request over HTTP/2 beside HTTP/1.1: surge's pool and httpx's own.

N requests in flight at once against lean loopback servers in other processes
(`_server.py` for HTTP/1.1, `_h2_server.py` for h2c); client CPU per request is
`time.process_time()` over the burst divided by N (warm pool: one burst first). Rows:

- surge HTTP/1.1: `PoolTransport` (one connection per request in flight)
- surge HTTP/2: `PoolTransport(http2=True)` (streams on a few connections)
- httpx HTTP/1.1 and httpx HTTP/2: `httpx.AsyncClient` with httpcore's pool

    .venv/bin/python benchmarks/h2_cpu.py [--n 100 1000] [--runs 5]

The rows run in turn, one run of each per round; prints each row's minimum over the rounds
(the machine is shared) and the HTTP/2 : HTTP/1.1 ratio. surge's HTTP/2 client is its own
(`surge._transport.h2_protocol`, hpack for header blocks); `h2` is the server's (and httpx's).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import h2
import hpack
import httpx

import surge
from surge._config import PoolConfig
from surge._transport.pool import PoolTransport

HERE = os.path.dirname(os.path.abspath(__file__))
BODY = b'{"model": "bench", "messages": [{"role": "user", "content": "hi"}]}'
EXT = {"timeout": {"connect": 10.0, "read": 60.0, "write": 10.0, "pool": None}}


def _server(script: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, script), "--latency", "0.3", "--max-seconds", "600"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().split()[1])


async def _burst(call: Callable[[], Awaitable[None]], n: int) -> float:
    await asyncio.gather(*(call() for _ in range(n)))  # warm: connections open
    start = time.process_time()
    await asyncio.gather(*(call() for _ in range(n)))
    return (time.process_time() - start) * 1e6 / n


async def surge_pool(port: int, n: int, http2: bool) -> float:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    pool = PoolTransport(PoolConfig(max_connections=10_000, http2=http2))
    headers = {"content-type": "application/json"}

    async def call() -> None:
        req = httpx.Request("POST", url, content=BODY, headers=headers, extensions=EXT)
        await (await pool.handle_async_request(req)).aread()

    try:
        return await _burst(call, n)
    finally:
        await pool.aclose()


async def httpx_client(port: int, n: int, http2: bool) -> float:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    # h2c needs prior knowledge: httpx does it with http1=False.
    client = httpx.AsyncClient(http1=not http2, http2=http2, limits=limits, timeout=60.0)
    async with client as http:

        async def call() -> None:
            await http.post(url, content=BODY, headers={"content-type": "application/json"})

        return await _burst(call, n)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, surge {surge.__version__}, httpx {httpx.__version__}, "
        f"hpack {hpack.__version__}, h2 {h2.__version__} (server, httpx); client CPU per request, "
        f"min of {args.runs} rounds"
    )
    h1, h1_port = _server("_server.py")
    h2s, h2_port = _server("_h2_server.py")
    try:
        for n in args.n:
            rows = {
                "surge HTTP/1.1": functools.partial(surge_pool, h1_port, n, False),
                "surge HTTP/2": functools.partial(surge_pool, h2_port, n, True),
                "httpx HTTP/1.1": functools.partial(httpx_client, h1_port, n, False),
                "httpx HTTP/2": functools.partial(httpx_client, h2_port, n, True),
            }
            # In turn, round by round: a drift in the machine's load shifts every row alike.
            runs: dict[str, list[float]] = {name: [] for name in rows}
            for _ in range(args.runs):
                for name, run in rows.items():
                    runs[name].append(asyncio.run(run()))
            best = {name: min(values) for name, values in runs.items()}
            print(f"n={n} in flight")
            for name, value in best.items():
                print(f"  {name:<15} {value:7.0f} us/request")
            ratio = best["surge HTTP/2"] / best["surge HTTP/1.1"]
            print(f"  surge HTTP/2 : HTTP/1.1 = {ratio:.2f}x")
    finally:
        for proc in (h1, h2s):
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
