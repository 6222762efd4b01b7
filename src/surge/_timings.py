"""Per-call timings and pool statistics: who made you wait.

`Timings` travels with every response (`ChatResponse.timings`, and
`response.extensions["surge.timings"]` for plain httpx users). `queued` is time spent in
the client waiting for a connection or stream; `ttfb` is time the server took to start
answering. Waves caused by the client's pool show up as `queued`; waves caused by the
server's own slot limit show up as `ttfb` with `queued` near zero.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PHASE_EXTENSION", "TIMINGS_EXTENSION", "PoolStats", "Timings"]

TIMINGS_EXTENSION = "surge.timings"
"""Key of the `Timings` object in `httpx.Response.extensions`."""

PHASE_EXTENSION = "surge.on_phase"
"""Key of an optional callback in `httpx.Request.extensions`: surge's pool calls it, with no
await, as the request moves on: `"connecting"` when it opens a new connection for it, and
`"sending"` once it has a connection and sends it (from then on the wait is the server's).
The client uses it so that a deadline names the phase that ran out."""


@dataclass(slots=True)
class Timings:
    """How long one request spent where, in seconds.

    For an `LLMClient` call that took several attempts, `queued`, `connect`, `ttfb`,
    `reused` and `http_version` describe the last (successful) attempt, while `total`,
    `throttled` and `backoff` cover the whole call.

    Attributes:
        queued: Waiting inside the pool before the request could be sent: for a
            connection or HTTP/2 stream. (Waiting for the caller's own limits is
            `throttled`.)
        connect: Opening a new connection (TCP and TLS); 0.0 when one was reused.
        ttfb: From the request being sent to the first byte of the response: the
            server's share, including any queueing on the server.
        total: From the call entering the client to the response body being read (or
            the response being closed); for an `LLMClient` call, every attempt included.
        reused: Whether the request went over a connection that served earlier requests.
        http_version: "HTTP/1.1" or "HTTP/2".
        throttled: Waiting for the caller's own limits, every attempt included: the
            client's `max_concurrency` and its rate limits (`rate_limit=`, and the
            server's `x-ratelimit-*` headers). 0.0 outside `LLMClient`.
        backoff: Waiting between attempts (backoff and the server's `Retry-After`).
            0.0 when the first attempt succeeded.
        ttft: Streams only: time to first token, from the request being sent to the
            arrival of the first content or tool-call delta (`ttfb` is the first byte,
            often headers or a role-only chunk). 0.0 for a whole response, or a stream
            with no delta.
        max_gap: Streams only: the longest wait between two network reads that brought
            chunks: the server's pace (a server that stalls mid-answer shows here, not
            in `ttfb`), not the time the caller spent on each chunk.
    """

    queued: float = 0.0
    connect: float = 0.0
    ttfb: float = 0.0
    total: float = 0.0
    reused: bool = False
    http_version: str = "HTTP/1.1"
    throttled: float = 0.0
    backoff: float = 0.0
    ttft: float = 0.0
    max_gap: float = 0.0

    def __str__(self) -> str:
        text = (
            f"queued={self.queued * 1000:.1f}ms connect={self.connect * 1000:.1f}ms "
            f"ttfb={self.ttfb * 1000:.1f}ms total={self.total * 1000:.1f}ms"
        )
        if self.throttled:
            text += f" throttled={self.throttled * 1000:.1f}ms"
        if self.backoff:
            text += f" backoff={self.backoff * 1000:.1f}ms"
        if self.ttft:
            text += f" ttft={self.ttft * 1000:.1f}ms"
        if self.max_gap:
            text += f" max_gap={self.max_gap * 1000:.1f}ms"
        return text


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of one connection pool, summed over its origins.

    Wait figures cover requests that acquired a connection since the pool was created or
    since the last `reset_pool_stats()`.

    Attributes:
        in_use: Connections (HTTP/1.1) or streams (HTTP/2) serving a request now.
        idle: Open connections waiting for a request.
        waiting: Requests queued for a connection or stream now.
        connections_opened: Connections opened since the last reset.
        requests: Requests that acquired a connection since the last reset.
        wait_seconds_max: The longest wait for a connection since the last reset.
        wait_seconds_p50: The median wait.
        wait_seconds_p90: The 90th percentile wait.
        wait_seconds_p99: The 99th percentile wait.
    """

    in_use: int = 0
    idle: int = 0
    waiting: int = 0
    connections_opened: int = 0
    requests: int = 0
    wait_seconds_max: float = 0.0
    wait_seconds_p50: float = 0.0
    wait_seconds_p90: float = 0.0
    wait_seconds_p99: float = 0.0
