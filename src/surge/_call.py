"""The path of one call: limits, retries, endpoints and the deadline, then one request.

`CallPath` holds what a client resolved once (settings, endpoints, limiters, the loop's
httpx client, each endpoint's URL and encoded headers) and sends a chat-completion body
through it. `LLMClient` builds one per client; streaming and batches reuse it, so every
call, whatever its shape, passes the same limits and leaves the same timings. It is also
the one place where a tracing span would open and close around a call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Generic, NamedTuple, TypeVar

import httpx

from surge._decode import decode_chat, request_id
from surge._endpoints import Endpoint, Router
from surge._errors import APIStatusError
from surge._http import LoopLocalClient, post_json
from surge._limits import ClientLimits, Limiter, Turn, release_shielded
from surge._rates import estimate_tokens
from surge._retry import (
    CallState,
    PhaseReporter,
    RetryPolicy,
    check_deadline,
    resolve_policy,
    run_call,
    shielded,
)
from surge._settings import UNSET, Settings
from surge._timings import TIMINGS_EXTENSION, Timings
from surge._types import ChatResponse

__all__ = ["CALL_OBSERVER", "CallPath", "StreamLease"]

CALL_OBSERVER: ContextVar[Callable[[Timings], None] | None] = ContextVar(
    "surge_call_observer", default=None
)
"""Called with the `Timings` of each call that succeeds in this context (a batch's progress
display sets it around its workers, so it sees the calls an item function makes)."""

T = TypeVar("T")

Opener = Callable[[httpx.Response, str], Awaitable[T]]
"""Reads the start of a streamed response (up to its first event) and returns the reader."""


class StreamLease(Generic[T]):
    """What an open stream holds until it is closed.

    Its place under `max_concurrency` and its rate-limit turn are held for the stream's
    whole life and given back by `release` (once, shielded from cancellation).

    Attributes:
        reader: What the opener returned for the attempt that succeeded.
        response: That attempt's response (its body being read by `reader`).
        state: The call's state: its deadline, attempts, time throttled and backing off.
        timings: The response's `Timings` (a bare one for a supplied http_client).
        started: `time.perf_counter()` when the call entered the client.
        sent: `time.perf_counter()` when the successful attempt's request was sent.
        url: The request's URL.
        request_id: The server's request id, when it sent one.
        endpoint: The API root that answered.
    """

    def __init__(
        self,
        reader: T,
        response: httpx.Response,
        state: CallState,
        timings: Timings,
        sent: float,
        turn: Any,
    ) -> None:
        self.reader = reader
        self.response = response
        self.state = state
        self.timings = timings
        self.sent = sent
        self.started = 0.0
        self.url = state.url or ""
        self.request_id = request_id(response.headers)
        self.endpoint = state.attempts[-1].endpoint if state.attempts else None
        self._turn = turn
        self._concurrency: Limiter | None = None
        self._released = False

    async def release(self, used_tokens: int | None) -> None:
        """Give back the rate-limit turn (telling it the tokens used) and the concurrency place."""
        if self._released:
            return
        self._released = True
        self._turn.turn.used = used_tokens
        await self._turn.__aexit__(None, None, None)
        if self._concurrency is not None:
            await release_shielded(self._concurrency, 1)


class _Target(NamedTuple):
    """Where one endpoint's chat completions go: parsed URL, its text, encoded headers."""

    url: httpx.URL
    text: str
    headers: httpx.Headers


def _target(endpoint: Endpoint, settings: Settings) -> _Target:
    url = httpx.URL(f"{endpoint.base_url}/chat/completions")
    return _Target(url, str(url), httpx.Headers(settings.request_headers(endpoint)))


class CallPath:
    """One client's way to the server: what every call of that client goes through.

    Args:
        settings: The client's resolved settings.
        router: Its endpoints and how calls pick one.
        limits: Its concurrency and rate limiters.
        http: The per-event-loop httpx client.
    """

    __slots__ = ("http", "limits", "router", "settings", "targets", "timeout")

    def __init__(
        self, settings: Settings, router: Router, limits: ClientLimits, http: LoopLocalClient
    ) -> None:
        self.settings = settings
        self.router = router
        self.limits = limits
        self.http = http
        # Built once per client, not per call: the URL parsed, the headers encoded.
        self.targets = {e: _target(e, settings) for e in router.endpoints}
        self.timeout = self.read_timeout(settings.timeout)

    def _target(
        self, endpoint: Endpoint, body: dict[str, Any], state: CallState
    ) -> tuple[_Target, dict[str, Any]]:
        """The endpoint's target, and the body with its (or the client's) model."""
        target = self.targets[endpoint]
        state.url = target.text
        if "model" not in body and (endpoint.model or self.settings.model):
            body = {**body, "model": endpoint.model or self.settings.model}
        return target, body

    async def _post(
        self,
        turn: Turn,
        target: _Target,
        body: dict[str, Any],
        endpoint: Endpoint,
        timeout: float | None,
        state: CallState,
        number: int,
        *,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one attempt's request inside its rate-limit turn.

        An error status's headers go to the turn, so the limiter learns what the server said.
        """
        state.throttled += turn.waited
        try:
            return await post_json(
                self.http,
                target.url,
                body,
                timeout=self.timeout if timeout is None else self.read_timeout(timeout),
                headers=target.headers,
                secret=self.settings.key_for(endpoint),
                on_phase=self._connection_phase(state, number),
                stream=stream,
            )
        except APIStatusError as exc:
            turn.headers = exc.headers
            raise

    def _connection_phase(self, state: CallState, number: int) -> PhaseReporter | None:
        """Name the wait that starts now; a reporter if surge's pool will say more."""
        if self.http.external is None:  # surge's pool reports the phases
            state.phase = f"waiting for a connection (attempt {number})"
            return PhaseReporter(state, number)
        state.phase = f"waiting for a connection or the server's answer (attempt {number})"
        return None

    def read_timeout(self, read: float | None) -> httpx.Timeout | None:
        """The httpx timeout for a read limit of `read` seconds; None keeps the pool's."""
        if read is None:
            return None
        config = self.http.config
        return httpx.Timeout(
            connect=config.connect, read=read, write=config.write, pool=config.pool
        )

    async def post_chat(
        self,
        body: dict[str, Any],
        *,
        timeout: float | None,
        retry: RetryPolicy | bool | None = None,
        deadline: float | None = UNSET,
    ) -> ChatResponse:
        """Send one chat call through the limits, retries, endpoints and deadline."""
        started = time.perf_counter()
        state = CallState(self.settings.deadline if deadline is UNSET else check_deadline(deadline))
        cost = estimate_tokens(body)

        async def attempt(state: CallState, number: int, endpoint: Endpoint) -> ChatResponse:
            return await self.attempt(body, cost, timeout, state, number, endpoint)

        chat = await run_call(
            attempt,
            policy=self.settings.retry if retry is None else resolve_policy(retry),
            router=self.router,
            state=state,
            concurrency=self.limits.concurrency,
        )
        chat._timings.total = time.perf_counter() - started
        chat._timings.throttled = state.throttled
        chat._timings.backoff = state.backoff
        chat._attempts = tuple(state.attempts)
        chat._endpoint = state.attempts[-1].endpoint
        observer = CALL_OBSERVER.get()
        if observer is not None:
            observer(chat._timings)
        return chat

    async def attempt(
        self,
        body: dict[str, Any],
        cost: int,
        timeout: float | None,
        state: CallState,
        number: int,
        endpoint: Endpoint,
    ) -> ChatResponse:
        """One attempt of a chat call: its endpoint's rate limit, then one request."""
        target, body = self._target(endpoint, body, state)
        state.phase = f"waiting for the rate limit (attempt {number})"
        async with self.limits.turn(endpoint.base_url, cost) as turn:
            started = time.perf_counter()
            response = await self._post(turn, target, body, endpoint, timeout, state, number)
            # One pass into a plain dict: httpx.Headers scans every header per lookup.
            response_headers = turn.headers = dict(response.headers)
            chat = decode_chat(response.content, status_code=response.status_code, url=target.text)
            turn.used = chat.usage.total_tokens if chat.usage is not None else None
        timings = response.extensions.get(TIMINGS_EXTENSION)
        if not isinstance(timings, Timings):  # a user-supplied client without surge's pool
            timings = Timings(total=time.perf_counter() - started)
        chat._timings = timings
        chat._request_id = request_id(response_headers)
        return chat

    async def open_stream(
        self,
        body: dict[str, Any],
        opener: Opener[T],
        *,
        timeout: float | None,
        retry: RetryPolicy | bool | None = None,
        deadline: float | None = UNSET,
    ) -> StreamLease[T]:
        """Open a streamed chat call through the limits, retries, endpoints and deadline.

        Each attempt sends the request and runs `opener` on the response, which reads up
        to the first event: a failure until then (an error status, a dropped connection,
        an error event, a read timeout) is retried like any call's. Once this returns, the
        stream belongs to the caller and is never retried. The concurrency place and the
        rate-limit turn stay held until `StreamLease.release`.

        Args:
            body: The request body (`stream` is set by the caller).
            opener: Reads the start of a response and returns the reader; raises a
                `SurgeError` for a failure (it must not close the response: on a failure
                this method closes it).
            timeout: The read timeout of this call (per read).
            retry: The retry policy of this call (default: the client's).
            deadline: Seconds the whole call may take (default: the client's); it keeps
                running after this returns (see `CallState.remaining`).

        Returns:
            The lease of the open stream.
        """
        started = time.perf_counter()
        state = CallState(self.settings.deadline if deadline is UNSET else check_deadline(deadline))
        cost = estimate_tokens(body)

        async def attempt(state: CallState, number: int, endpoint: Endpoint) -> StreamLease[T]:
            return await self._stream_attempt(body, cost, timeout, opener, state, number, endpoint)

        limiter = self.limits.concurrency
        lease = await run_call(
            attempt,
            policy=self.settings.retry if retry is None else resolve_policy(retry),
            router=self.router,
            state=state,
            concurrency=limiter,
            hold=True,
        )
        lease._concurrency = limiter
        lease.started = started
        lease.endpoint = state.attempts[-1].endpoint
        lease.timings.throttled = state.throttled
        lease.timings.backoff = state.backoff
        return lease

    async def _stream_attempt(
        self,
        body: dict[str, Any],
        cost: int,
        timeout: float | None,
        opener: Opener[T],
        state: CallState,
        number: int,
        endpoint: Endpoint,
    ) -> StreamLease[T]:
        """One attempt of a streamed call: its rate-limit turn, the request, the first event."""
        target, body = self._target(endpoint, body, state)
        state.phase = f"waiting for the rate limit (attempt {number})"
        turn_context = self.limits.turn(endpoint.base_url, cost)
        turn = await turn_context.__aenter__()
        try:
            started = time.perf_counter()
            response = await self._post(
                turn, target, body, endpoint, timeout, state, number, stream=True
            )
            turn.headers = dict(response.headers)
            timings = response.extensions.get(TIMINGS_EXTENSION)
            if not isinstance(timings, Timings):
                timings = Timings()
            sent = started + timings.queued + timings.connect
            state.phase = f"waiting for the first event of the stream (attempt {number})"
            try:
                reader = await opener(response, target.text)
            except BaseException:
                await shielded(response.aclose())
                raise
        except BaseException:
            await turn_context.__aexit__(None, None, None)
            raise
        state.phase = "reading the stream"
        return StreamLease(reader, response, state, timings, sent, turn_context)
