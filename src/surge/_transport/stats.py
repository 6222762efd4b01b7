"""Wait statistics of the pool, in bounded memory, and the "you are queueing" warning.

Every request that acquires a connection records how long it waited. Percentiles come from
a fixed-size uniform reservoir (Vitter's algorithm R): exact while fewer requests than the
reservoir's size were recorded, an unbiased sample after that. Memory stays constant
whatever the traffic.
"""

from __future__ import annotations

import logging
import random

__all__ = ["RESERVOIR_SIZE", "WAIT_WARNING_INTERVAL", "WAIT_WARNING_THRESHOLD", "WaitStats"]

RESERVOIR_SIZE = 4096
"""Most wait samples kept for percentiles."""

WAIT_WARNING_THRESHOLD = 1.0
"""A wait for a connection longer than this many seconds counts toward the warning."""

WAIT_WARNING_INTERVAL = 30.0
"""At most one warning per this many seconds, per pool."""

logger = logging.getLogger("surge")


class WaitStats:
    """Counters and wait percentiles since creation or the last `reset()`.

    Attributes:
        requests: Requests that acquired a connection or stream.
        connections_opened: Connections opened.
        wait_max: The longest wait, in seconds.
    """

    __slots__ = (
        "_rand",
        "_samples",
        "_slow",
        "_slow_max",
        "_warned_at",
        "connections_opened",
        "requests",
        "wait_max",
    )

    def __init__(self) -> None:
        self._rand = random.Random(0x5E)
        self._warned_at: float | None = None
        self.reset()
        self._slow = 0
        self._slow_max = 0.0

    def reset(self) -> None:
        """Forget counters and samples (the warning's rate limit is kept)."""
        self.requests = 0
        self.connections_opened = 0
        self.wait_max = 0.0
        self._samples: list[float] = []

    def record(self, wait: float) -> None:
        """Count one acquisition that waited `wait` seconds."""
        self.requests = n = self.requests + 1
        if wait > self.wait_max:
            self.wait_max = wait
        samples = self._samples
        if n <= RESERVOIR_SIZE:
            samples.append(wait)
        else:
            j = self._rand.randrange(n)
            if j < RESERVOIR_SIZE:
                samples[j] = wait

    def percentiles(self) -> tuple[float, float, float]:
        """Return the p50, p90 and p99 waits (nearest rank; zeros when nothing recorded)."""
        samples = sorted(self._samples)
        if not samples:
            return 0.0, 0.0, 0.0
        last = len(samples) - 1

        def rank(q: float) -> float:
            return samples[min(last, max(0, int(q * len(samples) + 0.999999) - 1))]

        return rank(0.50), rank(0.90), rank(0.99)

    def slow_wait(
        self,
        wait: float,
        now: float,
        waiting: int,
        where: str,
        limit: int,
        reason: str | None = None,
    ) -> None:
        """Note a wait over the threshold; log one warning per interval.

        Args:
            wait: How long this request waited, in seconds.
            now: The loop's clock.
            waiting: Requests still waiting for this origin.
            where: The origin, e.g. "http://127.0.0.1:8000".
            limit: The origin's `max_connections`.
            reason: Why requests waited if not that limit, e.g. "the pool was still
                connecting to it (...)" (`Origin.wait_reason`).
        """
        self._slow += 1
        if wait > self._slow_max:
            self._slow_max = wait
        if self._warned_at is not None and now - self._warned_at < WAIT_WARNING_INTERVAL:
            return
        self._warned_at = now
        count, longest = self._slow, self._slow_max
        self._slow = 0
        self._slow_max = 0.0
        if reason is None:
            why = (
                f"All max_connections={limit} connections to that origin were busy: this is "
                "queueing inside the client, not the server. Raise max_connections=... "
                "(PoolConfig / http_client / LLMClient) if the server can take more requests "
                "at once; the pool= timeout bounds how long a request may wait."
            )
        else:  # below the limit: they waited for a connect, which more connections won't speed
            why = (
                f"{reason[0].upper()}{reason[1:]}: they waited for a connect, and its time is "
                "the server's or the network's (TCP, TLS, HTTP/2 settings), not a client "
                "limit; the connect= timeout bounds it."
            )
        logger.warning(
            "surge pool: %d request(s) waited more than %.1f s (longest %.1f s) for a free "
            "connection to %s; %d still waiting. %s",
            count,
            WAIT_WARNING_THRESHOLD,
            longest,
            where,
            waiting,
            why,
        )
