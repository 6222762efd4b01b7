"""The path of one call: limits, retries, endpoints and the deadline, then one request.

`CallPath` holds what a client resolved once (settings, endpoints, limiters, the loop's
httpx client, each endpoint's URL and encoded headers) and sends a chat-completion body
through it. `LLMClient` builds one per client; streaming and batches reuse it, so every
call, whatever its shape, passes the same limits and leaves the same timings. It is also
the one place where a tracing span would open and close around a call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import httpx

from surge._decode import decode_chat, request_id
from surge._endpoints import Endpoint, Router
from surge._errors import APIStatusError
from surge._http import LoopLocalClient, post_json
from surge._limits import ClientLimits, estimate_tokens
from surge._retry import (
    CallState,
    PhaseReporter,
    RetryPolicy,
    check_deadline,
    resolve_policy,
    run_call,
)
from surge._settings import UNSET, Settings
from surge._timings import TIMINGS_EXTENSION, Timings
from surge._types import ChatResponse

__all__ = ["CALL_OBSERVER", "CallPath"]

CALL_OBSERVER: ContextVar[Callable[[Timings], None] | None] = ContextVar(
    "surge_call_observer", default=None
)
"""Called with the `Timings` of each call that succeeds in this context (a batch's progress
display sets it around its workers, so it sees the calls an item function makes)."""


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
        self.targets = {
            e: (
                httpx.URL(f"{e.base_url}/chat/completions"),
                httpx.Headers(settings.request_headers(e)),
            )
            for e in router.endpoints
        }
        self.timeout = self.read_timeout(settings.timeout)

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
        url, headers = self.targets[endpoint]
        state.url = str(url)
        if "model" not in body and (endpoint.model or self.settings.model):
            body = {**body, "model": endpoint.model or self.settings.model}
        state.phase = f"waiting for the rate limit (attempt {number})"
        async with self.limits.turn(endpoint.base_url, cost) as turn:
            state.throttled += turn.waited
            if self.http.external is None:  # surge's pool reports the phases
                state.phase = f"waiting for a connection (attempt {number})"
                on_phase = PhaseReporter(state, number)
            else:
                state.phase = f"waiting for a connection or the server's answer (attempt {number})"
                on_phase = None
            started = time.perf_counter()
            try:
                response = await post_json(
                    self.http,
                    url,
                    body,
                    timeout=self.timeout if timeout is None else self.read_timeout(timeout),
                    headers=headers,
                    secret=self.settings.key_for(endpoint),
                    on_phase=on_phase,
                )
            except APIStatusError as exc:
                turn.headers = exc.headers
                raise
            # One pass into a plain dict: httpx.Headers scans every header per lookup.
            response_headers = turn.headers = dict(response.headers)
            chat = decode_chat(response.content, status_code=response.status_code, url=state.url)
            turn.used = chat.usage.total_tokens if chat.usage is not None else None
        timings = response.extensions.get(TIMINGS_EXTENSION)
        if not isinstance(timings, Timings):  # a user-supplied client without surge's pool
            timings = Timings(total=time.perf_counter() - started)
        chat._timings = timings
        chat._request_id = request_id(response_headers)
        return chat
