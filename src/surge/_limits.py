"""Limits the caller sets: how many calls run at once, and how fast requests start.

Both limits implement one small async interface, `Limiter`: `acquire(cost)` waits for a
turn, `release(cost, ...)` says how it went. The in-process limiters here keep plain
counters and `time.monotonic()` reservations, so they work on asyncio and trio alike and
across event loops used one after another; a limiter shared by many processes (say one
backed by Redis) can implement the same two methods.

- `ConcurrencyLimiter`: at most N holders at once, waiters served first come, first served.
- `RateLimiter`: requests per minute and tokens per minute, paced smoothly (600 RPM is one
  request every 100 ms, not 600 at the top of each minute), FIFO by construction (each
  `acquire` reserves the next free start time), corrected by the tokens the server says it
  used, and slowed by the `x-ratelimit-*` headers OpenAI-compatible servers send.
"""

from __future__ import annotations

import abc
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from surge._headers import retry_after
from surge._rates import RateLimit, header_int, parse_reset

if TYPE_CHECKING:
    from surge._store import LimitsStore

__all__ = [
    "ClientLimits",
    "ConcurrencyLimiter",
    "Limiter",
    "RateLimiter",
    "Turn",
    "release_shielded",
]


class Limiter(abc.ABC):
    """The interface of a limit on calls: wait for a turn, then report how it went.

    `acquire` and `release` always come in pairs; `release` is called even when the
    request failed or was cancelled (surge shields it from cancellation).
    """

    @abc.abstractmethod
    async def acquire(self, cost: int) -> None:
        """Wait until this request may start.

        Args:
            cost: The request's estimated tokens (limits that count requests ignore it).
        """

    @abc.abstractmethod
    async def release(
        self, cost: int, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Report that a request acquired with `cost` has finished.

        Args:
            cost: The same estimate given to `acquire`.
            used: The tokens the server says it used (`usage.total_tokens`), when known.
            headers: The response headers, when a response arrived (error or not).
        """

    def release_nowait(
        self, cost: int, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> bool:
        """Release at once if this limiter can do so without awaiting anything.

        In-process limiters override this so that the common path of every call costs no
        cancel scope and no coroutine; a limiter that must talk to a server (Redis, say)
        keeps the default and is released through `release`.

        Returns:
            True when released; False when `release` must be awaited instead.
        """
        return False


class _Waiter:
    __slots__ = ("event", "gone", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False
        self.gone = False  # gave up before being granted: skipped when it reaches the front


class ConcurrencyLimiter(Limiter):
    """At most `limit` holders at once; the others wait in FIFO order.

    A released place is handed straight to the oldest waiter, so a newcomer can never
    overtake the queue, and a waiter cancelled just after being handed a place passes it
    on instead of losing it. A waiter that gives up is only marked, and skipped when it
    reaches the front, so that cancelling thousands of queued calls costs O(1) each.

    Args:
        limit: How many may hold a place at once (>= 1).

    Raises:
        ConfigError: `limit` is not an int >= 1.
    """

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            from surge._errors import ConfigError

            raise ConfigError(f"max_concurrency must be an int >= 1 or None; got {limit!r}")
        self.limit = limit
        self._free = limit
        self._waiters: deque[_Waiter] = deque()
        self._waiting = 0  # live waiters in `_waiters`

    @property
    def in_use(self) -> int:
        """How many places are held now."""
        return self.limit - self._free

    @property
    def waiting(self) -> int:
        """How many are queued for a place now."""
        return self._waiting

    async def acquire(self, cost: int = 1) -> None:
        """Wait for a place (FIFO); `cost` is ignored."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        waiter = _Waiter()
        self._waiters.append(waiter)
        self._waiting += 1
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self._release_one()
            else:
                waiter.gone = True
                self._waiting -= 1
                if not self._waiting:
                    self._waiters.clear()  # only given-up waiters are left
                elif len(self._waiters) > 4 * self._waiting + 64:  # bound the memory
                    self._waiters = deque(w for w in self._waiters if not w.gone)
            raise

    async def release(
        self, cost: int = 1, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Give a place back (to the oldest waiter, if any)."""
        self._release_one()

    def release_nowait(
        self, cost: int = 1, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> bool:
        """Give a place back at once; always possible in process."""
        self._release_one()
        return True

    def hold(self, count: int) -> int:
        """Count up to `count` free places as held at once, without waiting.

        For a shared limiter falling back to this one: the places it already holds
        elsewhere count against this limit too.

        Returns:
            How many places were taken.
        """
        taken = max(0, min(count, self._free))
        self._free -= taken
        return taken

    def _release_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.gone:
                self._waiting -= 1
                waiter.granted = True
                waiter.event.set()
                return
        self._free += 1

    def __repr__(self) -> str:
        return (
            f"ConcurrencyLimiter(limit={self.limit}, in_use={self.in_use}, waiting={self.waiting})"
        )


class RateLimiter(Limiter):
    """Paces request starts to a `RateLimit`, FIFO, and adapts to the server's headers.

    Each `acquire` reserves the earliest start time that keeps every limit, then sleeps
    until it: reservations are handed out in call order, so waiters are served FIFO and
    the pace holds however many tasks wait. The bookkeeping uses `time.monotonic()`, so
    one limiter serves asyncio and trio loops alike.

    Args:
        config: The limits.
        clock: The time source, in seconds (for tests).
    """

    def __init__(self, config: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._next_request = 0.0
        self._next_token = 0.0
        # Pacing asked for by the server's headers: a floor on the seconds per request
        # (per token), valid until the given time.
        self._hint_request = (0.0, 0.0)
        self._hint_token = (0.0, 0.0)
        rpm, tpm = config.requests_per_minute, config.tokens_per_minute
        self._per_request = 60.0 / rpm if rpm else 0.0
        self._per_token = 60.0 / tpm if tpm else 0.0

    def reserve(self, cost: int) -> float:
        """Reserve the next start time for a request of `cost` tokens.

        Args:
            cost: The request's estimated tokens.

        Returns:
            Seconds to wait before starting (0.0 when it may start now).
        """
        now = self._clock()
        start = max(now, self._next_request, self._next_token)
        per_request, until = self._hint_request
        per_request = max(self._per_request, per_request if start < until else 0.0)
        per_token, until = self._hint_token
        per_token = max(self._per_token, per_token if start < until else 0.0)
        self._next_request = start + per_request
        self._next_token = start + cost * per_token
        return start - now

    async def acquire(self, cost: int) -> None:
        """Wait for this request's turn under the rate limits."""
        wait = self.reserve(cost)
        if wait > 0:
            await anyio.sleep(wait)

    async def release(
        self, cost: int, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Correct the token count by `used` and read the server's rate-limit headers."""
        self.settle(cost, used=used, headers=headers)

    def release_nowait(
        self, cost: int, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> bool:
        """Settle at once; always possible in process."""
        self.settle(cost, used=used, headers=headers)
        return True

    def settle(
        self, cost: int, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """The synchronous body of `release` (for tests and for callers outside a loop)."""
        now = self._clock()
        if used is not None and self._per_token:
            self._next_token = max(now, self._next_token + (used - cost) * self._per_token)
        if headers is None or not self.config.adaptive:
            return
        wait = retry_after(headers)
        if wait is not None:  # the server asked every caller to hold off
            self._next_request = max(self._next_request, now + wait)
            self._next_token = max(self._next_token, now + wait)
        remaining = header_int(headers, "x-ratelimit-remaining-requests")
        reset = parse_reset(headers.get("x-ratelimit-reset-requests"))
        if remaining is not None and reset is not None:
            # Spread what is left of the window over the time until it resets.
            per_request = reset / (remaining + 1)
            self._hint_request = (per_request, now + reset)
            self._next_request = max(self._next_request, now + per_request)
        remaining = header_int(headers, "x-ratelimit-remaining-tokens")
        reset = parse_reset(headers.get("x-ratelimit-reset-tokens"))
        if remaining is not None and reset is not None:
            self._hint_token = (reset / (remaining + 1), now + reset)
            if remaining < max(cost, used or 0):
                self._next_token = max(self._next_token, now + reset)

    def __repr__(self) -> str:
        return f"RateLimiter({self.config!r})"


class Turn:
    """One request's turn under its endpoint's rate limiter (see `ClientLimits.turn`).

    Attributes:
        waited: Seconds the request waited for its turn.
        used: Set to the tokens the server reports, once known.
        headers: Set to the response headers, once a response (error or not) arrived.
    """

    __slots__ = ("headers", "used", "waited")

    def __init__(self, waited: float) -> None:
        self.waited = waited
        self.used: int | None = None
        self.headers: Mapping[str, str] | None = None


class ClientLimits:
    """The caller's limits of one client, shared with the clients derived from it.

    Holds the concurrency limit (per client) and one `RateLimiter` per endpoint (each
    endpoint has its own quota), made on first use. With a `store`, the limiters come
    from it instead, and are shared with every process that uses the same store.

    Args:
        max_concurrency: Most calls in flight at once, or None for no limit.
        rate_limit: The rate limits applied to each endpoint (None: `RateLimit()`, which
            only adapts to the server's headers).
        store: Where the limits live (None: in this process).

    Raises:
        ConfigError: A bad value.
    """

    def __init__(
        self,
        max_concurrency: int | None,
        rate_limit: RateLimit | None,
        store: LimitsStore | None = None,
    ) -> None:
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            from surge._errors import ConfigError

            raise ConfigError(
                f"rate_limit must be a surge.RateLimit, not {type(rate_limit).__name__}"
            )
        self.store = store
        self.concurrency: Limiter | None = None
        if max_concurrency is not None:
            local = ConcurrencyLimiter(max_concurrency)  # validates the value
            self.concurrency = local if store is None else store.concurrency_limiter(local.limit)
        self._max_concurrency = max_concurrency
        self.rate_limit = rate_limit if rate_limit is not None else RateLimit()
        self._rate: dict[str, Limiter] = {}

    @property
    def max_concurrency(self) -> int | None:
        """The concurrency limit, or None."""
        return self._max_concurrency

    def rate_for(self, base_url: str) -> Limiter:
        """Return the rate limiter of one endpoint, making it on first use."""
        limiter = self._rate.get(base_url)
        if limiter is None:
            if self.store is None:
                limiter = RateLimiter(self.rate_limit)
            else:
                limiter = self.store.rate_limiter(base_url, self.rate_limit)
            self._rate[base_url] = limiter
        return limiter

    def turn(self, base_url: str, cost: int) -> _TurnContext:
        """Wait for a request's turn under the endpoint's rate limiter; settle it after.

        Use as `async with limits.turn(url, cost) as turn:`. Fill in the yielded `Turn`'s
        `used` and `headers` inside the block; the limiter learns them on the way out,
        whether the request succeeded, failed or was cancelled.
        """
        return _TurnContext(self.rate_for(base_url), cost)

    def derive(self, changes: Mapping[str, Any]) -> ClientLimits:
        """Return limits with some parts replaced; the parts not named stay shared.

        Args:
            changes: "max_concurrency" and/or "rate_limit" with their new values. A
                replaced part is the derived client's own, no longer shared.
        """
        clone = ClientLimits(
            changes.get("max_concurrency"),
            changes.get("rate_limit", self.rate_limit),
            self.store,
        )
        if "max_concurrency" not in changes:
            clone.concurrency = self.concurrency
            clone._max_concurrency = self._max_concurrency
        if "rate_limit" not in changes:
            clone._rate = self._rate
        return clone


class _TurnContext:
    """`ClientLimits.turn` as a plain class: it runs on every call, twice per retry."""

    __slots__ = ("cost", "limiter", "turn")

    def __init__(self, limiter: Limiter, cost: int) -> None:
        self.limiter = limiter
        self.cost = cost
        self.turn = Turn(0.0)

    async def __aenter__(self) -> Turn:
        started = time.monotonic()
        await self.limiter.acquire(self.cost)
        self.turn.waited = time.monotonic() - started
        return self.turn

    async def __aexit__(self, *exc_info: object) -> None:
        turn = self.turn
        await release_shielded(self.limiter, self.cost, used=turn.used, headers=turn.headers)


async def release_shielded(
    limiter: Limiter,
    cost: int,
    *,
    used: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Call `limiter.release`, shielded from cancellation so a place is never lost."""
    if limiter.release_nowait(cost, used=used, headers=headers):
        return
    with anyio.CancelScope(shield=True):
        await limiter.release(cost, used=used, headers=headers)
