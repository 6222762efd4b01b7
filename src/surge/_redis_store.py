"""`RedisStore`: concurrency and rate limits shared through Redis by many processes.

Every client, in any process on any machine, whose store has the same URL and namespace
shares one concurrency pool (per `max_concurrency` value), one rate budget per endpoint,
the server's rate-limit hints and the endpoints' cool-downs. See docs/scaling.md.

redis-py's asyncio client does the talking; it is imported when a store is made, never
by `import surge`, and it runs on asyncio only, so a store refuses trio with a
`ConfigError`. Each event loop that uses a store gets its own Redis connection pool and
its own lease renewer (one background task per process and loop, not one per call).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

from surge._errors import ConfigError, LimitsUnavailable
from surge._redis_scripts import (
    CONCURRENCY_ACQUIRE,
    CONCURRENCY_LEAVE,
    CONCURRENCY_RELEASE,
    CONCURRENCY_RENEW,
    COOLDOWN_READ,
    RATE_ACQUIRE,
    RATE_SETTLE,
)
from surge._store import LimitsStore, SharedHealth

if TYPE_CHECKING:
    from surge._limits import Limiter
    from surge._rates import RateLimit
    from surge._redis_limiters import SharedConcurrency, SharedRate

__all__ = ["LOCAL", "FailurePolicy", "Local", "LoopState", "RedisStore", "current_backend"]

T = TypeVar("T")

FailurePolicy = Literal["raise", "local"]
"""What a call does when Redis does not answer: fail with `LimitsUnavailable`, or fall
back to per-process limits (with one warning per outage)."""

log = logging.getLogger("surge")

_IN_FLIGHT = 8  # Redis operations in flight at once per process and event loop
_RECHECK = 1.0  # seconds between attempts to reach Redis again, under on_failure="local"
_INSTALL = 'RedisStore needs redis-py: pip install "surge[redis]"'


class Local:
    """The type of `LOCAL`: use the per-process fallback."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LOCAL"


LOCAL = Local()
"""Returned by `RedisStore.run` when the caller must use its per-process fallback."""


def current_backend() -> str | None:
    """Name the async library running this thread ("asyncio", "trio"), or None."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            return None
        return "trio"
    return None


def _redact(url: str) -> str:
    """The URL without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    _, _, host = rest.partition("@")
    return f"{scheme}://***@{host}"


class LoopState:
    """One event loop's Redis client and scripts, and its lease renewer."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.acquire = redis.register_script(CONCURRENCY_ACQUIRE)
        self.release = redis.register_script(CONCURRENCY_RELEASE)
        self.renew = redis.register_script(CONCURRENCY_RENEW)
        self.leave = redis.register_script(CONCURRENCY_LEAVE)
        self.rate_acquire = redis.register_script(RATE_ACQUIRE)
        self.rate_settle = redis.register_script(RATE_SETTLE)
        self.cooldown_read = redis.register_script(COOLDOWN_READ)
        self.renewer: asyncio.Task[None] | None = None
        # Operations in flight at once: a burst of callers reuses a few connections
        # instead of opening one each (and timing out while they are set up).
        self.slots = asyncio.Semaphore(_IN_FLIGHT)


class RedisStore(LimitsStore):
    """Limits shared through Redis by every client with the same URL and namespace.

    ```python
    store = surge.RedisStore("redis://127.0.0.1:6379/0", namespace="openai-prod")
    client = surge.LLMClient(max_concurrency=50, rate_limit=surge.RateLimit(
        requests_per_minute=600), limits_store=store)
    ```

    Args:
        url: The Redis server, as redis-py's `from_url` reads it ("redis://host:port/db",
            "rediss://..." for TLS, "unix:///path.sock").
        namespace: Names the shared limits: processes with the same namespace share them
            (say one per provider account). Letters, digits and `-_.:` only.
        lease: Seconds a concurrency place stays held without renewal. A process renews
            its places every `lease / 3` seconds while it holds any; a process killed
            with SIGKILL gives its places back within `lease` seconds.
        on_failure: When Redis does not answer: "raise" keeps trying for up to `timeout`
            seconds, then fails the call with `surge.LimitsUnavailable` (before anything
            is sent); "local" uses per-process limits with the same settings at once,
            logs one warning per outage, and goes back to Redis when it answers again.
        timeout: Seconds one Redis operation may take, and (under "raise") the longest a
            call waits for an unreachable Redis in all.

    Raises:
        ConfigError: A bad argument, redis-py is not installed, or the running event
            loop is trio's (redis-py runs on asyncio only).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "surge",
        lease: float = 10.0,
        on_failure: FailurePolicy = "raise",
        timeout: float = 2.0,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"RedisStore url must start with redis://, rediss:// or unix://; got {url!r}"
            )
        if (
            not isinstance(namespace, str)
            or not namespace
            or not all(c.isalnum() or c in "-_.:" for c in namespace)
        ):
            raise ConfigError(
                f"RedisStore namespace must be a non-empty str of letters, digits and -_.: ; "
                f"got {namespace!r}"
            )
        for name, value, low in (("lease", lease, 0.1), ("timeout", timeout, 0.001)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not low <= value < math.inf
            ):
                raise ConfigError(f"RedisStore {name} must be a number >= {low}; got {value!r}")
        if on_failure not in ("raise", "local"):
            raise ConfigError(
                f'RedisStore on_failure must be "raise" or "local"; got {on_failure!r}'
            )
        try:
            import redis.asyncio
            import redis.exceptions
        except ImportError as exc:
            raise ConfigError(_INSTALL) from exc
        self.url = url
        self.where = _redact(url)  # for messages: never the password
        self.namespace = namespace
        self.lease = float(lease)
        self.on_failure: FailurePolicy = on_failure
        self.timeout = float(timeout)
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._redis = redis.asyncio
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.RedisError,
            OSError,
            TimeoutError,
            asyncio.TimeoutError,  # not the builtin before Python 3.11
        )
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._pools: dict[int, SharedConcurrency] = {}
        self._rates: dict[tuple[str, RateLimit], SharedRate] = {}
        self._health: SharedHealth | None = None
        self._down_until = 0.0
        self._outage = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.check_backend()

    # -- LimitsStore ---------------------------------------------------------------------

    def check_backend(self) -> None:
        """Raise `ConfigError` on trio: redis-py's asyncio client cannot run there."""
        if current_backend() == "trio":
            raise ConfigError(
                "RedisStore runs on asyncio only (redis-py has no trio support); "
                "use per-process limits (no limits_store) under trio"
            )

    def concurrency_limiter(self, limit: int) -> Limiter:
        """Return the shared pool of `limit` places of this namespace."""
        from surge._redis_limiters import SharedConcurrency

        pool = self._pools.get(limit)
        if pool is None:
            pool = self._pools[limit] = SharedConcurrency(self, limit)
        return pool

    def rate_limiter(self, base_url: str, config: RateLimit) -> Limiter:
        """Return the shared rate limiter of one endpoint."""
        from surge._redis_limiters import SharedRate

        limiter = self._rates.get((base_url, config))
        if limiter is None:
            limiter = self._rates[base_url, config] = SharedRate(self, base_url, config)
        return limiter

    def health(self) -> SharedHealth:
        """Return the endpoint cool-downs shared by this namespace."""
        from surge._redis_limiters import RedisHealth

        if self._health is None:
            self._health = RedisHealth(self)
        return self._health

    async def aclose(self) -> None:
        """Stop this event loop's lease renewer and close its Redis connections.

        Waits for the places given back in the background to reach Redis first. Places
        still held stay held until their lease lapses; call it after the calls.
        """
        loop = asyncio.get_running_loop()
        pending = [t for t in self._tasks if t.get_loop() is loop]
        if pending:  # places given back in the background: let them land
            await asyncio.gather(*pending, return_exceptions=True)
        state = self._loops.pop(loop, None)
        if state is None:
            return
        if state.renewer is not None:
            state.renewer.cancel()
            await asyncio.gather(state.renewer, return_exceptions=True)
        await state.redis.aclose()

    # -- for the limiters ----------------------------------------------------------------

    def key(self, *parts: str) -> str:
        """A key of this namespace; the hash tag keeps a namespace on one cluster slot."""
        return ":".join((f"surge:{{{self.namespace}}}", *parts))

    def state(self) -> LoopState:
        """The running event loop's Redis client and scripts, made on first use."""
        self.check_backend()
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = self._redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # One retry on a new connection (a pooled one may predate a restart of
                # Redis); beyond that the failure policy decides, not redis-py.
                retry=Retry(NoBackoff(), 1),
            )
            state = self._loops[loop] = LoopState(client)
        return state

    async def run(
        self,
        what: str,
        operation: Callable[[LoopState], Awaitable[T]],
        *,
        best_effort: bool = False,
    ) -> T | Local:
        """Run one Redis operation under the failure policy.

        Args:
            what: What the operation is for, in words (for messages).
            operation: Sends the operation with the given loop state.
            best_effort: Try once and return `LOCAL` on failure, whatever the policy
                (for releases and reports, which must never fail a call).

        Returns:
            The operation's result, or `LOCAL` when the caller must use its fallback.

        Raises:
            LimitsUnavailable: Under on_failure="raise", Redis did not answer in time.
        """
        local = self.on_failure == "local"
        if local and time.monotonic() < self._down_until:
            return LOCAL
        state = self.state()
        deadline = time.monotonic() + self.timeout  # the wait for a slot counts too
        async with state.slots:
            return await self._run(what, operation, state, deadline, best_effort=best_effort)

    async def _run(
        self,
        what: str,
        operation: Callable[[LoopState], Awaitable[T]],
        state: LoopState,
        deadline: float,
        *,
        best_effort: bool,
    ) -> T | Local:
        local = self.on_failure == "local"
        delay = 0.05
        while True:
            try:
                with anyio.fail_after(max(deadline - time.monotonic(), 0.001)):
                    result = await operation(state)
            except self._errors as exc:
                if local:
                    self._fall_back(exc)
                    return LOCAL
                if best_effort:
                    log.debug("surge: Redis failed while %s: %r", what, exc)
                    return LOCAL
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LimitsUnavailable(
                        f"the limits store {_redact(self.url)} (namespace {self.namespace!r}) "
                        f"did not answer within {self.timeout:g} s while {what}: "
                        f"{type(exc).__name__}: {exc}",
                        store=_redact(self.url),
                    ) from None
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 0.5)
                continue
            if self._outage:
                self._outage = False
                log.info(
                    "surge: the limits store %s answers again; limits are shared again",
                    _redact(self.url),
                )
            return result

    def _fall_back(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + _RECHECK
        if not self._outage:
            self._outage = True
            log.warning(
                "surge: the limits store %s (namespace %r) is unreachable (%s: %s); "
                "using per-process limits until it answers again",
                _redact(self.url),
                self.namespace,
                type(exc).__name__,
                exc,
            )

    def holding(self) -> None:
        """Make sure this loop's lease renewer runs (a pool now holds places)."""
        state = self.state()
        if state.renewer is None or state.renewer.done():
            state.renewer = asyncio.get_running_loop().create_task(self._renew(state))

    def spawn(self, work: Awaitable[Any]) -> None:
        """Run `work` in the background on the running loop (a place given back late)."""

        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _renew(self, state: LoopState) -> None:
        # Sleeps first: the place that started it was just leased. Ends once a whole
        # interval passed with nothing held, so a process at rest sends nothing.
        interval = self.lease / 3
        while True:
            await asyncio.sleep(interval)
            pools = [p for p in self._pools.values() if p.held > 0 or p.dirty]
            if not pools:
                state.renewer = None
                return
            for pool in pools:
                await pool.renew()

    def __repr__(self) -> str:
        return (
            f"RedisStore({_redact(self.url)!r}, namespace={self.namespace!r}, "
            f"lease={self.lease:g}, on_failure={self.on_failure!r})"
        )
