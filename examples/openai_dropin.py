"""Give the openai SDK surge's connection pool with one argument, and see who made it wait.

Starts surge's simulated OpenAI-compatible server on loopback, then fires 500 concurrent
calls through `openai.AsyncOpenAI(http_client=surge.http_client(...))`.

    pip install "surge[sim]" "openai<3"
    python examples/openai_dropin.py
"""

from __future__ import annotations

import asyncio
import time

from openai import AsyncOpenAI

import surge
from surge.testing import SimulatedServer

CALLS = 500


async def main() -> None:
    async with SimulatedServer(latency=1.0) as server:
        http = surge.http_client(max_connections=2000)
        client = AsyncOpenAI(base_url=server.url, api_key="sk-local", http_client=http)

        async def one(i: int) -> surge.Timings:
            raw = await client.chat.completions.with_raw_response.create(
                model="surge-sim", messages=[{"role": "user", "content": f"Hello #{i}"}]
            )
            raw.parse()
            timings: surge.Timings = raw.http_response.extensions["surge.timings"]
            return timings

        started = time.perf_counter()
        timings = await asyncio.gather(*(one(i) for i in range(CALLS)))
        wall = time.perf_counter() - started
        await client.close()
        print(f"{CALLS} calls in {wall:.2f} s (server latency 1.00 s)")
        print(f"server saw {server.stats.peak_in_flight} at once")
        print(f"slowest wait for a connection: {max(t.queued for t in timings) * 1000:.1f} ms")
        print(f"slowest server answer (ttfb):  {max(t.ttfb for t in timings) * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
