"""What sharing limits through Redis costs per call: `RedisStore` against the in-process limiter.

Starts its own `redis-server` (Debian's package; loopback, no persistence) and
`benchmarks/_server.py` (latency 0), then measures, for each of in-process and RedisStore:

- limits-only, sequential: one call's limit path alone (a concurrency place, a rate-limit
  turn, both given back), one call after another: wall time per call is the latency the
  limits add, CPU (`time.process_time()`) per call is the client's cost.
- call, sequential: a whole `LLMClient.chat` against the local server, one after another.
- call, 50 at a time: 2,000 chats, `max_concurrency=50`, all fired at once: wall and CPU
  per call under contention (waiters poll Redis; the in-process FIFO hands places over).

Both use `max_concurrency=50` and `RateLimit(requests_per_minute=10_000_000)` (a limit that
never waits, so the cost measured is the limits' own).

    .venv/bin/python benchmarks/shared_limits.py [--n 2000] [--runs 3]

Prints the minimum of the runs (the machine is shared; the minimum is the least disturbed
run) and the ratio RedisStore / in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import redis

import surge
from surge._limits import release_shielded

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = surge.RateLimit(requests_per_minute=10_000_000)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("needs redis-server on PATH (apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", tempfile.mkdtemp(prefix="surge-bench-redis-")],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(500):
        try:
            client.ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.01)
    sys.exit("redis-server did not start")


async def _measure(
    n: int, step: Callable[[], Awaitable[object]], concurrent: bool
) -> tuple[float, float]:
    """(wall us per call, CPU us per call) of n steps, in turn or all at once."""
    wall, cpu = time.perf_counter(), time.process_time()
    if concurrent:
        await asyncio.gather(*(step() for _ in range(n)))
    else:
        for _ in range(n):
            await step()
    return (
        (time.perf_counter() - wall) / n * 1e6,
        (time.process_time() - cpu) / n * 1e6,
    )


async def _run(
    kind: str, redis_url: str, server_url: str, n: int
) -> dict[str, tuple[float, float]]:
    store = (
        surge.RedisStore(redis_url, namespace=f"bench-{time.monotonic_ns()}")
        if kind == "redis"
        else None
    )
    client = surge.LLMClient(
        base_url=server_url,
        max_concurrency=50,
        rate_limit=RATE,
        limits_store=store,
        retry=False,
    )
    limits = client._limits
    base_url = client.base_url

    async def limits_only() -> None:
        concurrency = limits.concurrency
        assert concurrency is not None
        await concurrency.acquire(1)
        try:
            async with limits.turn(base_url, 10):
                pass
        finally:
            await release_shielded(concurrency, 1)

    async def call() -> None:
        await client.chat("hi")

    await call()  # warm up: connections, scripts
    results = {}
    if store is not None:  # the floor: one bare round trip to this Redis
        state = store.state()
        results["Redis PING (reference)"] = await _measure(n, state.redis.ping, False)
    results |= {
        "limits-only, sequential": await _measure(n, limits_only, False),
        "call, sequential": await _measure(n, call, False),
        "call, 50 at a time": await _measure(n, call, True),
    }
    await client.aclose()
    if store is not None:
        await store.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    redis_process, redis_url = _start_redis()
    server = subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "_server.py"),
            "--latency",
            "0",
            "--max-seconds",
            "900",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        server_url = f"http://127.0.0.1:{port}/v1"
        info = redis.Redis.from_url(redis_url).info("server")
        print(
            f"python {platform.python_version()}, surge {surge.__version__}, "
            f"redis-py {redis.__version__}, redis-server {info['redis_version']}, "
            f"n={args.n}, runs={args.runs}, min of runs; loopback"
        )
        best: dict[str, dict[str, tuple[float, float]]] = {}
        for _ in range(args.runs):
            for kind in ("local", "redis"):
                result = asyncio.run(_run(kind, redis_url, server_url, args.n))
                mine = best.setdefault(kind, {})
                for row, (wall, cpu) in result.items():
                    old = mine.get(row, (float("inf"), float("inf")))
                    mine[row] = (min(old[0], wall), min(old[1], cpu))
        print(f"{'':26} {'in-process':>22} {'RedisStore':>22} {'ratio':>12}")
        header = ("wall", "CPU", "wall", "CPU")
        print(f"{'(us per call)':26} " + " ".join(f"{h:>10}" for h in header) + "  wall   CPU")
        wall, cpu = best["redis"]["Redis PING (reference)"]
        print(f"{'Redis PING (reference)':26} {'':>22} {wall:10.1f} {cpu:11.1f}")
        for row in best["local"]:
            lw, lc = best["local"][row]
            rw, rc = best["redis"][row]
            print(
                f"{row:26} {lw:10.1f} {lc:11.1f} {rw:10.1f} {rc:11.1f} "
                f"{rw / lw:5.1f} {rc / lc:6.1f}"
            )
    finally:
        server.terminate()
        server.wait(10)
        redis_process.kill()
        redis_process.wait(10)


if __name__ == "__main__":
    main()
