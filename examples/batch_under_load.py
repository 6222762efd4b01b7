"""A batch of 1,000 calls against a struggling server: retries, a concurrency cap, typed errors.

The simulated server answers 15% of requests with 429 (and a Retry-After) or 503. surge
retries them with backoff, never has more than 100 calls in flight, and reports every
attempt. Loopback only.

    pip install "surge[sim]"
    python examples/batch_under_load.py
"""

from __future__ import annotations

import asyncio
import collections

import surge
from surge.testing import Failure, SimulatedServer

CALLS = 1000


async def main() -> None:
    failures = [Failure.status(429, retry_after=0.2, rate=0.1), Failure.status(503, rate=0.05)]
    async with (
        SimulatedServer(latency=0.2, failures=failures, seed=7) as server,
        surge.LLMClient(
            base_url=server.url,
            max_concurrency=100,
            retry=surge.RetryPolicy(max_attempts=6, backoff=0.1),
            deadline=60,
        ) as client,
    ):

        async def one(i: int) -> surge.ChatResponse | surge.SurgeError:
            try:
                return await client.chat(f"Item {i}: one word, please.")
            except surge.SurgeError as exc:
                return exc

        results = await asyncio.gather(*(one(i) for i in range(CALLS)))
        stats = server.stats
    answered = [r for r in results if isinstance(r, surge.ChatResponse)]
    attempts = collections.Counter(len(r.attempts) for r in answered)
    print(f"{len(answered)} of {CALLS} calls answered; {CALLS - len(answered)} failed")
    print("attempts per answered call:", dict(sorted(attempts.items())))
    print(f"server: {stats.requests} requests, at most {stats.peak_in_flight} at once")


if __name__ == "__main__":
    asyncio.run(main())
