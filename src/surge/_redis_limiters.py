"""The limiters `RedisStore` hands out: a leased concurrency pool, a rate limiter, cool-downs.

Concurrency is counted per process: Redis keeps how many places each process holds and
when its lease lapses. Inside a process, callers wait in a FIFO queue; only its head
talks to Redis, asking for as many places as there are callers waiting, and processes
take turns in Redis's own queue. So a held place costs nothing while it is held (one
renewal per process every `lease / 3` seconds, not one per call), a free place costs one
round trip, and a killed process's places come back when its lease lapses.

Rate is the in-process `RateLimiter`'s reservation arithmetic run as one Lua script: each
request reserves the next start time on the server, so the pace holds across processes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import anyio

from surge._errors import LimitsUnavailable
from surge._headers import retry_after
from surge._limits import ConcurrencyLimiter, Limiter, RateLimiter
from surge._rates import RateLimit, header_int, parse_reset
from surge._redis_store import Local, LoopState
from surge._store import SharedHealth

if TYPE_CHECKING:
    from surge._redis_store import RedisStore

__all__ = ["RedisHealth", "SharedConcurrency", "SharedRate"]

_T = TypeVar("_T")
_Op = Callable[[LoopState], Awaitable[_T]]

_POLL_FIRST = 0.002  # seconds between polls for a free place, doubling up to _POLL_MAX
_POLL_MAX = 0.02


class _Waiter:
    __slots__ = ("error", "event", "gone", "granted", "local")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.granted = False  # a shared place was handed to it
        self.local = False  # Redis is down: take a place of the per-process fallback
        self.gone = False  # gave up before being served
        self.error: LimitsUnavailable | None = None


class SharedConcurrency(Limiter):
    """A pool of `limit` places shared through Redis, held on a renewed lease.

    Args:
        store: The store (its namespace, lease and failure policy).
        limit: How many places all processes hold at most together.
    """

    def __init__(self, store: RedisStore, limit: int) -> None:
        self.store = store
        self.limit = limit
        base = store.key("c", str(limit))
        self._keys = [f"{base}:n", f"{base}:e", f"{base}:q", f"{base}:qe", f"{base}:t"]
        self._lease_ms = int(store.lease * 1000)
        self._ttl_ms = int(store.lease * 3000) + 60_000
        self.held = 0  # shared places this process holds
        self.dirty = False  # Redis may not know `held` exactly: the next renewal says it
        self._local = ConcurrencyLimiter(limit)  # used while Redis is unreachable
        self._waiters: deque[_Waiter] = deque()
        self._live = 0
        self._queued = False  # this process has a place in Redis's queue
        self._poller: asyncio.Task[None] | None = None
        self._trying = False  # a caller is taking a free place (one round trip)
        self._nudge = asyncio.Event()  # a place of this process was given back

    @property
    def in_use(self) -> int:
        """Places this process holds now (shared and fallback)."""
        return self.held + self._local.in_use

    @property
    def waiting(self) -> int:
        """Callers of this process waiting for a place now."""
        return self._live + self._local.waiting

    async def acquire(self, cost: int = 1) -> None:
        """Wait for a place: at once when one is free, else FIFO in process, in turn in Redis."""
        if not self._live and not self._trying:
            # Nobody of this process waits: one round trip takes a free place. Callers
            # that arrive meanwhile queue behind, and the head asks for all of them.
            self._trying = True
            try:
                got = await self.store.run("taking a concurrency place", self._take(1))
            finally:
                self._trying = False
            if isinstance(got, Local):
                self._go_local()
                await self._local.acquire()
                return
            if got:
                return
        waiter = _Waiter()
        self._waiters.append(waiter)
        self._live += 1
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self._pass_on()
            elif not waiter.gone:
                waiter.gone = True
                self._live -= 1
                if len(self._waiters) > 4 * self._live + 64:  # bound the memory
                    self._waiters = deque(w for w in self._waiters if not w.gone)
            raise
        if waiter.error is not None:
            raise waiter.error
        if waiter.local:
            await self._local.acquire()

    def release_nowait(
        self, cost: int = 1, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> bool:
        """Give a place back at once; a shared one reaches Redis in the background.

        The caller does not wait for the round trip. Should it never arrive (Redis down,
        the loop closed), the next renewal says what this process holds, or, holding
        nothing, its lease lapses.
        """
        if self._local.in_use:
            self._local.release_nowait()
            return True
        self.held -= 1
        self.store.spawn(self._give_back())
        return True

    async def release(
        self, cost: int = 1, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Give a place back (see `release_nowait`)."""
        self.release_nowait()

    async def _give_back(self) -> None:
        done = await self.store.run("giving a place back", self._give(1), best_effort=True)
        if isinstance(done, Local):
            self.dirty = True
        self._nudge.set()

    # -- Redis operations (each returns a function of the loop state) ----------------------

    def _go_local(self) -> None:
        """Redis is unreachable: the shared places this process holds become local ones.

        So the per-process fallback counts every call this process runs, and a process
        never runs more than its limit, whatever the moment Redis went away.
        """
        if self.held:
            moved = self._local.hold(self.held)
            self.held -= moved
            self.dirty = True

    def _adopt(self) -> int:
        """Redis answers again: places taken locally meanwhile become shared ones.

        They are counted in Redis by the next acquire, so new shared places respect them.
        Only done when nobody waits on the local fallback.
        """
        adopt = self._local.in_use if not self._local.waiting else 0
        for _ in range(adopt):
            self._local.release_nowait()
        self.held += adopt
        return adopt

    def _take(self, want: int) -> _Op[int]:
        async def take(state: LoopState) -> int:
            adopt = self._adopt()
            args = [self.store.process_id, self.limit, want, self._lease_ms, self._ttl_ms, adopt]
            try:
                reply = await state.acquire(keys=self._keys, args=args)
            except BaseException:
                self.dirty = True  # the script may have run: the next renewal says the truth
                raise
            granted = int(reply[0])
            self._queued = granted < want
            if granted or adopt:
                self.held += granted
                self.store.holding()
            return granted

        return take

    def _give(self, places: int) -> _Op[int]:
        async def give(state: LoopState) -> int:
            args = [self.store.process_id, places]
            return int(await state.release(keys=self._keys[:2], args=args))

        return give

    async def renew(self) -> None:
        """Extend this process's lease (and say again what it holds, when in doubt)."""
        dirty = self.dirty
        self.dirty = False

        async def renew(state: LoopState) -> int:
            args = [self.store.process_id, self.held, self._lease_ms, self._ttl_ms, int(dirty)]
            return int(await state.renew(keys=self._keys[:2], args=args))

        done = await self.store.run("renewing a lease", renew, best_effort=True)
        if isinstance(done, Local):
            self.dirty = self.dirty or dirty

    # -- waiting -------------------------------------------------------------------------

    async def _poll(self) -> None:
        """The head of the process's queue: ask Redis for places until nobody waits."""
        delay = _POLL_FIRST
        try:
            while self._live:
                want = self._live
                try:
                    got = await self.store.run("waiting for a concurrency place", self._take(want))
                except LimitsUnavailable as exc:
                    self._fail_all(exc)
                    return
                except Exception as exc:  # a reply surge cannot read: never strand waiters
                    self._fail_all(
                        LimitsUnavailable(
                            f"the limits store {self.store.where} failed while waiting for a "
                            f"concurrency place: {type(exc).__name__}: {exc}",
                            store=self.store.where,
                        )
                    )
                    return
                if isinstance(got, Local):
                    self._go_local()
                    self._serve_all_locally()
                    return
                left = self._hand_out(got)
                if left:  # callers gave up meanwhile
                    self.held -= left
                    await self.store.run("giving places back", self._give(left), best_effort=True)
                if got < want:
                    # Poll again soon; at once when a place of this process comes back.
                    self._nudge.clear()
                    with anyio.move_on_after(delay):
                        await self._nudge.wait()
                    delay = min(delay * 2, _POLL_MAX)
                else:
                    delay = _POLL_FIRST
        finally:
            self._poller = None
            if self._queued and not self._live:
                self._queued = False
                await self.store.run("leaving the queue", self._leave, best_effort=True)

    async def _leave(self, state: LoopState) -> int:
        return int(await state.leave(keys=self._keys[:4], args=[self.store.process_id]))

    def _next_live(self) -> _Waiter | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.gone:
                self._live -= 1
                return waiter
        return None

    def _hand_out(self, places: int) -> int:
        """Hand `places` shared places to the oldest waiters; return how many are left over."""
        while places:
            waiter = self._next_live()
            if waiter is None:
                break
            waiter.granted = True
            waiter.event.set()
            places -= 1
        return places

    def _pass_on(self) -> None:
        """A caller cancelled right after being handed a place: pass it on, or give it back."""
        if self._hand_out(1):
            self.held -= 1
            self.store.spawn(self.store.run("giving a place back", self._give(1), best_effort=True))

    def _serve_all_locally(self) -> None:
        while (waiter := self._next_live()) is not None:
            waiter.local = True
            waiter.event.set()

    def _fail_all(self, exc: LimitsUnavailable) -> None:
        while (waiter := self._next_live()) is not None:
            waiter.error = LimitsUnavailable(str(exc), store=exc.store)
            waiter.event.set()

    def __repr__(self) -> str:
        return (
            f"SharedConcurrency(limit={self.limit}, namespace={self.store.namespace!r}, "
            f"held={self.held}, waiting={self.waiting})"
        )


class SharedRate(Limiter):
    """One endpoint's rate limits, paced through Redis for every process of a namespace.

    Usage corrections ride along with the next `acquire` (no round trip of their own);
    what the server's headers say is sent at once, so it slows every process.

    Args:
        store: The store.
        base_url: The endpoint.
        config: The limits.
    """

    def __init__(self, store: RedisStore, base_url: str, config: RateLimit) -> None:
        self.store = store
        self.config = config
        self._key = [store.key("r", base_url)]
        rpm, tpm = config.requests_per_minute, config.tokens_per_minute
        self._per_request = 60.0 / rpm if rpm else 0.0
        self._per_token = 60.0 / tpm if tpm else 0.0
        self._local = RateLimiter(config)  # used while Redis is unreachable
        self._delta = 0  # tokens used minus estimated, not yet sent

    async def acquire(self, cost: int) -> None:
        """Reserve the next start time on Redis (one round trip), then wait for it."""
        if not (self._per_request or self._per_token or self.config.adaptive):
            return  # nothing to pace and no server hints to follow: no round trip
        delta, self._delta = self._delta, 0

        async def reserve(state: LoopState) -> int:
            args = [self._per_request, self._per_token, cost, delta]
            return int(await state.rate_acquire(keys=self._key, args=args))

        waited = await self.store.run("waiting for the rate limit", reserve)
        if isinstance(waited, Local):
            await self._local.acquire(cost)
        elif waited > 0:
            await anyio.sleep(waited / 1e6)

    def _hints(
        self, cost: int, used: int | None, headers: Mapping[str, str] | None
    ) -> list[float] | None:
        """What the server's headers ask of every caller, as the settle script's ARGV."""
        if headers is None or not self.config.adaptive:
            return None
        wait = retry_after(headers)
        hints = [-1.0 if wait is None else wait, -1.0, 0.0, -1.0, 0.0, 0.0]
        remaining = header_int(headers, "x-ratelimit-remaining-requests")
        reset = parse_reset(headers.get("x-ratelimit-reset-requests"))
        if remaining is not None and reset is not None:
            hints[1:3] = [reset / (remaining + 1), reset]
        remaining = header_int(headers, "x-ratelimit-remaining-tokens")
        reset = parse_reset(headers.get("x-ratelimit-reset-tokens"))
        if remaining is not None and reset is not None:
            short = remaining < max(cost, used or 0)
            hints[3:6] = [reset / (remaining + 1), reset, float(short)]
        if hints[0] < 0 and hints[1] < 0 and hints[3] < 0:
            return None
        return hints

    def release_nowait(
        self, cost: int, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> bool:
        """Keep a usage correction for the next `acquire`; headers need `release`."""
        if self._hints(cost, used, headers) is not None:
            return False
        self._local.settle(cost, used=used)
        if used is not None and self._per_token:
            self._delta += used - cost
        return True

    async def release(
        self, cost: int, *, used: int | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Send the usage correction and the server's hints to Redis (one round trip)."""
        hints = self._hints(cost, used, headers)
        if hints is None:
            self.release_nowait(cost, used=used, headers=headers)
            return
        self._local.settle(cost, used=used, headers=headers)
        delta = used - cost if used is not None and self._per_token else 0
        args = [self._per_token, delta, *hints]

        async def settle(state: LoopState) -> int:
            return int(await state.rate_settle(keys=self._key, args=args))

        with anyio.move_on_after(self.store.timeout):
            await self.store.run("sharing rate-limit headers", settle, best_effort=True)

    def __repr__(self) -> str:
        return f"SharedRate({self.config!r}, namespace={self.store.namespace!r})"


class RedisHealth(SharedHealth):
    """Endpoint cool-downs as Redis keys that expire when the cool-down ends."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    async def cooling(self, base_urls: Sequence[str]) -> list[float]:
        """Seconds each endpoint's shared cool-down has left (one round trip)."""
        keys = [self.store.key("cool", url) for url in base_urls]

        async def read(state: LoopState) -> list[int]:
            return [int(ms) for ms in await state.cooldown_read(keys=keys)]

        left = await self.store.run("reading endpoint cool-downs", read, best_effort=True)
        if isinstance(left, Local):
            return [0.0] * len(keys)
        return [ms / 1000 for ms in left]

    async def cool_down(self, base_url: str, seconds: float) -> None:
        """Start a shared cool-down of `seconds` for one endpoint."""
        key = self.store.key("cool", base_url)
        ms = max(1, int(seconds * 1000))

        async def start(state: LoopState) -> bool:
            return bool(await state.redis.set(key, b"1", px=ms))

        await self.store.run("sharing an endpoint cool-down", start, best_effort=True)
