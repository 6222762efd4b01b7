"""Retries and the per-call deadline: `RetryPolicy` and the loop that runs a call.

A call travels: the concurrency limit, then attempts. Each attempt goes to an endpoint
picked by the `Router`; a failure the policy calls retryable leads to another attempt, on
an endpoint not tried yet (at once) or on one already tried (after a backoff, or after
the wait the server asked for). One deadline, an anyio cancel scope, covers all of it, so
it works on asyncio and trio alike, and says which phase ran out.

Why replaying a chat completion is safe by default: a chat completion creates no state on
the server. Sending the same request twice costs tokens twice but leaves nothing behind
that a second copy could duplicate (no message posted, no payment made), and the client
only ever sees one answer. So by default every retryable failure is retried, even one that
struck after the request was sent. A use where replay is not safe sets
`replay_after_send=False`: then only failures before the request left the client
(connection refused, connect timeout) and 429 answers (the server refused the request
without acting on it) are retried.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from surge._attempt import Attempt
from surge._endpoints import Endpoint, Router
from surge._errors import (
    APIStatusError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    DeadlineExceeded,
    PoolTimeout,
    SurgeError,
    Timeout,
    TransportError,
)
from surge._headers import retry_after
from surge._limits import Limiter, release_shielded

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "NEVER_RETRIED_STATUSES",
    "CallState",
    "PhaseReporter",
    "RetryPolicy",
    "resolve_policy",
    "run_call",
    "shielded",
    "was_sent",
]

T = TypeVar("T")

log = logging.getLogger("surge")

DEFAULT_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""Statuses retried by default: timeouts, conflicts, rate limits and transient server errors."""

NEVER_RETRIED_STATUSES = frozenset({400, 401, 403, 404, 422})
"""Statuses that mean the request itself is wrong: replaying it would fail the same way."""


async def shielded(awaitable: Awaitable[Any]) -> None:
    """Await `awaitable` shielded from cancellation (a close that must happen).

    What it awaits must not wait for long: surge's pool closes a response without waiting.
    """
    with anyio.CancelScope(shield=True):
        await awaitable


def was_sent(error: BaseException) -> bool:
    """Whether a failure may have struck after the server received the request.

    Connection failures and connect or pool timeouts happen before any byte is sent;
    everything else (read timeouts, dropped connections, error statuses) may come after
    the server acted on the request.
    """
    return not isinstance(error, ConnectError | ConnectTimeout | PoolTimeout)


class RetryPolicy(BaseModel):
    """When and how a call is retried.

    On by default: up to 3 attempts, exponential backoff with full jitter (a random wait
    between 0 and min(`max_backoff`, `backoff` * 2 ** (retry - 1)) seconds), the server's
    `retry-after-ms` / `Retry-After` honoured up to `max_retry_after` seconds. `retry=False`
    on the client or the call, or `max_attempts=1`, turns retries off. Attempts on other
    endpoints (fallbacks) count towards `max_attempts`.

    Attributes:
        max_attempts: Most attempts per call, first one included (1-100).
        backoff: Base of the exponential backoff, in seconds.
        max_backoff: Cap of one backoff, in seconds.
        jitter: Full jitter (a uniform random share of the backoff, so a crowd of failed
            calls does not come back at once); False waits the whole backoff.
        max_retry_after: Longest wait the server may ask for (`Retry-After`); a longer
            ask ends the call with the server's error instead of waiting.
        retry_statuses: HTTP statuses retried. Never 400, 401, 403, 404 or 422.
        retry_connection_errors: Retry refused or dropped connections and protocol errors.
        retry_timeouts: Retry connect, read and write timeouts (never the call's own
            `deadline`, nor `PoolTimeout`).
        replay_after_send: Whether a request the server may already have acted on may be
            sent again. True (the default) suits chat completions, which create no state
            on the server; set False for requests that are not safe to replay.
        on_retry: Called with the failed `Attempt` (its `wait` says how long the call will
            wait) before each retry; a plain function, its return value ignored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    max_backoff: float = Field(default=8.0, gt=0, allow_inf_nan=False)
    jitter: bool = True
    max_retry_after: float = Field(default=60.0, ge=0, allow_inf_nan=False)
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    retry_connection_errors: bool = True
    retry_timeouts: bool = True
    replay_after_send: bool = True
    on_retry: Callable[[Attempt], Any] | None = None

    @field_validator("retry_statuses")
    @classmethod
    def _check_statuses(cls, value: frozenset[int]) -> frozenset[int]:
        bad = sorted(code for code in value if not 400 <= code <= 599)
        if bad:
            raise ValueError(f"retry_statuses must be error statuses 400-599; got {bad}")
        never = sorted(value & NEVER_RETRIED_STATUSES)
        if never:
            raise ValueError(
                f"status {', '.join(map(str, never))} means the request itself is wrong "
                f"and would fail again; it cannot be retried"
            )
        return value

    @model_validator(mode="after")
    def _check_backoff(self) -> RetryPolicy:
        if self.max_backoff < self.backoff:
            raise ValueError(
                f"max_backoff ({self.max_backoff}) must be >= backoff ({self.backoff})"
            )
        return self

    def retryable(self, error: BaseException) -> bool:
        """Whether this policy retries a failure (ignoring how many attempts are left)."""
        if not isinstance(error, SurgeError) or isinstance(error, DeadlineExceeded | PoolTimeout):
            return False
        if was_sent(error) and not self.replay_after_send:
            return isinstance(error, APIStatusError) and error.status_code == 429
        if isinstance(error, APIStatusError):
            return error.status_code in self.retry_statuses
        if isinstance(error, Timeout):
            return self.retry_timeouts
        if isinstance(error, TransportError):
            return self.retry_connection_errors
        return False

    def backoff_for(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry).

        Args:
            retry: Which retry this is (>= 1).
            rng: The random source for the jitter (default: the module's).

        Returns:
            min(`max_backoff`, `backoff` * 2 ** (retry - 1)), times a uniform random
            factor in [0, 1) with jitter.
        """
        exponent = min(max(retry - 1, 0), 64)
        cap = min(self.max_backoff, self.backoff * 2.0**exponent)
        if not self.jitter:
            return cap
        return (rng or random).uniform(0.0, cap)


def resolve_policy(retry: RetryPolicy | bool | None) -> RetryPolicy:
    """Turn a `retry=` argument into a policy.

    Args:
        retry: A policy; True or None for the default policy; False for no retries.

    Raises:
        ConfigError: Anything else.
    """
    if isinstance(retry, RetryPolicy):
        return retry
    if retry is None or retry is True:
        return _DEFAULT
    if retry is False:
        return _NO_RETRY
    raise ConfigError(f"retry must be a surge.RetryPolicy, True or False; got {retry!r}")


_DEFAULT = RetryPolicy()
_NO_RETRY = RetryPolicy(max_attempts=1)


def check_deadline(deadline: float | None) -> float | None:
    """Validate a `deadline=` argument: positive finite seconds, or None.

    Raises:
        ConfigError: It is not.
    """
    if deadline is None:
        return None
    if (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not 0 < deadline < math.inf
    ):
        raise ConfigError(
            f"deadline must be a positive number of seconds or None; got {deadline!r}"
        )
    return float(deadline)


class CallState:
    """What one call is doing, for its deadline's message and its `Timings`.

    Attributes:
        deadline: The call's total deadline in seconds, or None.
        phase: What the call is doing now, in words (named by `DeadlineExceeded`).
        attempts: The attempts finished so far.
        throttled: Seconds spent waiting for the caller's limits (concurrency, rate).
        backoff: Seconds spent waiting between attempts.
        method: The request method, for messages.
        url: The URL of the current attempt, for messages.
    """

    def __init__(self, deadline: float | None, method: str = "POST") -> None:
        self.deadline = deadline
        self.started = time.monotonic()
        self.phase = "starting"
        self.attempts: list[Attempt] = []
        self.throttled = 0.0
        self.backoff = 0.0
        self.method = method
        self.url: str | None = None

    def remaining(self) -> float:
        """Seconds left before the deadline (infinity without one)."""
        if self.deadline is None:
            return math.inf
        return self.deadline - (time.monotonic() - self.started)

    def exceeded(self) -> DeadlineExceeded:
        """Build the error for a deadline that ran out in the current phase."""
        assert self.deadline is not None
        where = f" ({self.method} {self.url})" if self.url else ""
        error = DeadlineExceeded(
            f"the call's deadline of {self.deadline:g} s ran out while {self.phase}{where}; "
            f"{len(self.attempts)} earlier attempt(s) failed",
            phase=self.phase,
            deadline=self.deadline,
            method=self.method if self.url else None,
            url=self.url,
        )
        error.call_attempts = tuple(self.attempts)
        return error


_PHASES = {"connecting": "opening a connection", "sending": "waiting for the server's answer"}


class PhaseReporter:
    """Turns the pool's phase events into the call's phase, named by `DeadlineExceeded`.

    Given to surge's pool as `surge._timings.PHASE_EXTENSION` with each attempt.
    """

    __slots__ = ("number", "state")

    def __init__(self, state: CallState, number: int) -> None:
        self.state = state
        self.number = number

    def __call__(self, event: str) -> None:
        self.state.phase = f"{_PHASES.get(event, event)} (attempt {self.number})"


AttemptFunction = Callable[[CallState, int, Endpoint], Awaitable[T]]
"""Sends one attempt: (call state, attempt number, endpoint) -> result, or raises."""


async def run_call(
    send: AttemptFunction[T],
    *,
    policy: RetryPolicy,
    router: Router,
    state: CallState,
    concurrency: Limiter | None = None,
    rng: random.Random | None = None,
    hold: bool = False,
) -> T:
    """Run one call: its concurrency place, its attempts, its deadline.

    Args:
        send: Sends one attempt and returns its result, or raises a `SurgeError`.
        policy: Which failures to retry and how long to wait.
        router: Picks each attempt's endpoint and keeps endpoint health.
        state: The call's state; holds the deadline and collects the attempts.
        concurrency: The client's concurrency limit, held for the whole call (backoff
            included, so a struggling server sees fewer requests, not more).
        rng: The random source of the jitter (for tests).
        hold: Keep the concurrency place when the call succeeds: the caller gives it
            back (`release_shielded(concurrency, 1)`) when it is done with the result (a
            stream, whose place lasts as long as the stream). On failure it is given
            back here.

    Returns:
        The result of the first attempt that succeeds.

    Raises:
        DeadlineExceeded: The deadline ran out; the message names the phase.
        SurgeError: The error of the last attempt, when it is not retryable, attempts ran
            out, or the wait it asks for is longer than allowed or than the time left.
            `error.call_attempts` holds every attempt.
    """
    with anyio.move_on_after(state.deadline) as scope:
        if concurrency is None:
            return await _attempts(send, policy, router, state, rng)
        state.phase = "waiting for the concurrency limit (max_concurrency)"
        waited = time.monotonic()
        await concurrency.acquire(1)
        held = False
        try:
            state.throttled += time.monotonic() - waited
            result = await _attempts(send, policy, router, state, rng)
            held = hold
            return result
        finally:
            if not held:
                await release_shielded(concurrency, 1)
    assert scope.cancelled_caught
    raise state.exceeded()


async def _attempts(
    send: AttemptFunction[T],
    policy: RetryPolicy,
    router: Router,
    state: CallState,
    rng: random.Random | None,
) -> T:
    plan = router.plan()
    tried: set[int] = set()
    last: int | None = None
    number = 0
    while True:
        number += 1
        if router.shared is not None:  # cool-downs other processes started
            await router.sync()
        index, _ = router.choose(plan, tried, last)
        endpoint = router.endpoints[index]
        started = time.monotonic()
        try:
            result = await send(state, number, endpoint)
        except SurgeError as error:
            duration = time.monotonic() - started
            status = error.status_code if isinstance(error, APIStatusError) else None
            retryable = policy.retryable(error)
            if retryable and router.failed(index) and router.shared is not None:
                await router.share_failure(index)
            tried.add(index)
            last = index
            wait, why_not = _next_wait(
                policy, error, router, plan, tried, index, number, state, rng
            )
            record = Attempt(number, endpoint.base_url, status, error, duration, wait or 0.0)
            state.attempts.append(record)
            if not retryable or why_not is not None or wait is None:
                if retryable and why_not is not None:
                    log.info("surge: giving up on %s %s: %s", state.method, state.url, why_not)
                error.call_attempts = tuple(state.attempts)
                raise error from None
            if policy.on_retry is not None:
                policy.on_retry(record)
            log.info(
                "surge: %s %s attempt %d of %d failed (%s: %s); retrying in %.2f s",
                state.method,
                state.url,
                number,
                policy.max_attempts,
                type(error).__name__,
                error,
                wait,
            )
            if wait > 0:
                state.phase = f"backing off before attempt {number + 1}"
                await anyio.sleep(wait)
                state.backoff += wait
            continue
        router.succeeded(index)
        state.attempts.append(
            Attempt(number, endpoint.base_url, 200, None, time.monotonic() - started)
        )
        return result


def _next_wait(
    policy: RetryPolicy,
    error: SurgeError,
    router: Router,
    plan: list[int],
    tried: set[int],
    failed: int,
    number: int,
    state: CallState,
    rng: random.Random | None,
) -> tuple[float | None, str | None]:
    """Return (seconds to wait before the next attempt, or why there is none)."""
    if number >= policy.max_attempts:
        return None, f"all {policy.max_attempts} attempts failed"
    upcoming, fresh = router.choose(plan, tried, failed)
    if fresh:
        return 0.0, None
    asked = retry_after(error.headers) if isinstance(error, APIStatusError) else None
    if asked is not None and upcoming == failed:
        if asked > policy.max_retry_after:
            return None, (
                f"the server asked to wait {asked:g} s, longer than "
                f"max_retry_after={policy.max_retry_after:g} s"
            )
        wait = asked
        if wait >= state.remaining():
            return None, (
                f"the server asked to wait {wait:g} s before attempt {number + 1}, longer "
                f"than the call's deadline leaves ({state.remaining():.2f} s)"
            )
        return wait, None
    # Retry number k on one endpoint waits backoff_for(k); this failure counts. Our own
    # backoff is not checked against the deadline: should it run out meanwhile, the
    # call ends with DeadlineExceeded naming the backoff.
    url = router.endpoints[upcoming].base_url
    retries = sum(1 for a in state.attempts if a.endpoint == url) + (upcoming == failed)
    return policy.backoff_for(max(retries, 1), rng), None
