"""The simulated OpenAI-compatible ASGI app: routes, slots, latency, failures, answers."""

from __future__ import annotations

import inspect
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from surge._errors import ConfigError
from surge.testing._abort import abort
from surge.testing._failures import Failure, FailurePlan
from surge.testing._replies import (
    ChatRequest,
    Completion,
    ReplyFunction,
    error_body,
)
from surge.testing._stats import StatsRecorder

__all__ = ["SimApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_log = logging.getLogger("surge.testing")

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Welcome</title></head>\n"
    b"<body><h1>It works!</h1><p>This is not the API you are looking for.</p></body></html>\n"
)


class _Slots:
    """A FIFO limit on the requests served at once (None = no limit)."""

    def __init__(self, limit: int | None, stats: StatsRecorder) -> None:
        self._limit = limit
        self._busy = 0
        self._waiters: deque[anyio.Event] = deque()
        self._stats = stats

    async def acquire(self) -> None:
        if self._limit is None or (self._busy < self._limit and not self._waiters):
            self._busy += 1
            self._stats.active(+1)
            return
        event = anyio.Event()
        self._waiters.append(event)
        self._stats.queued(+1)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # granted just as we were cancelled: pass the slot on
                self._stats.active(-1)
                self._release_slot()
            else:
                self._waiters.remove(event)
            raise
        finally:
            self._stats.queued(-1)

    def release(self) -> None:
        self._stats.active(-1)
        self._release_slot()

    def _release_slot(self) -> None:
        if self._waiters:
            self._stats.active(+1)  # the slot passes straight to the next in line
            self._waiters.popleft().set()
        else:
            self._busy -= 1


class _Exchange:
    """One request's `send`, which settles its accounting just before the last byte.

    The counters (`served`, `in_flight`, the slot) are updated before the final body
    message is handed to hypercorn, so a client that has read a full response always
    finds it counted.
    """

    def __init__(self, send: Send, stats: StatsRecorder) -> None:
        self.raw = send
        self._stats = stats
        self._slots: _Slots | None = None
        self._done = False
        self.dropped = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finish(served=True)
        await self.raw(message)

    @property
    def done(self) -> bool:
        """Whether the request has been settled (answered in full, or given up)."""
        return self._done

    async def hold_slot(self, slots: _Slots) -> None:
        await slots.acquire()
        self._slots = slots

    def release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()
            self._slots = None

    def finish(self, *, served: bool) -> None:
        self.release_slot()
        if not self._done:
            self._done = True
            self._stats.request_finished(served=served)


class SimApp:
    """The ASGI application behind `SimulatedServer`.

    Args:
        latency: Returns the seconds to wait, once a slot is held, before answering.
        slots: Requests served at once (None = unlimited); the rest queue FIFO.
        reply: Builds the answer to a chat request.
        failures: The failure plan.
        stream_tokens_per_second: Pace of streamed chunks (inf = as fast as possible).
        model: The model name of `/v1/models` and of answers that name none.
        stats: The counters to update.
        on_startup: Called once when the ASGI lifespan starts (the server is up).
    """

    def __init__(
        self,
        *,
        latency: Callable[[], float],
        slots: int | None,
        reply: ReplyFunction,
        failures: FailurePlan,
        stream_tokens_per_second: float,
        model: str,
        stats: StatsRecorder,
        on_startup: Callable[[], None] | None = None,
    ) -> None:
        self._latency = latency
        self._reply = reply
        self._failures = failures
        self._interval = (
            0.0 if stream_tokens_per_second == float("inf") else (1.0 / stream_tokens_per_second)
        )
        self._model = model
        self._stats = stats
        self._slots = _Slots(slots, stats)
        self._on_startup = on_startup
        self._next_n = 0
        self._scopes: set[anyio.CancelScope] = set()
        self._closing = False

    def close(self) -> None:
        """Cancel every request being handled (call from the server's event loop)."""
        self._closing = True
        for scope in list(self._scopes):
            scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                if self._on_startup is not None:
                    self._on_startup()
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        self._stats.request_started(
            tuple(client) if client else None, str(scope.get("http_version", "1.1"))
        )
        exchange = _Exchange(send, self._stats)
        cancel = anyio.CancelScope()
        self._scopes.add(cancel)
        try:
            with cancel:
                if self._closing:
                    cancel.cancel()
                await self._route(scope, receive, exchange)
        finally:
            self._scopes.discard(cancel)
            exchange.finish(served=False)

    async def _route(self, scope: Scope, receive: Receive, send: _Exchange) -> bool:
        path = str(scope.get("path", "")).rstrip("/")
        method = scope.get("method", "GET")
        rid = f"req_sim{uuid.uuid4().hex[:20]}"
        if path == "/v1/chat/completions":
            if method != "POST":
                return await _send_error(send, 405, f"Method {method} not allowed", rid)
            return await self._chat(scope, receive, send, rid)
        if path == "/v1/models" and method == "GET":
            data = [{"id": self._model, "object": "model", "created": 0, "owned_by": "surge"}]
            await _send_json(send, 200, {"object": "list", "data": data}, rid)
            return True
        if path == f"/v1/models/{self._model}" and method == "GET":
            body = {"id": self._model, "object": "model", "created": 0, "owned_by": "surge"}
            await _send_json(send, 200, body, rid)
            return True
        return await _send_error(send, 404, f"Invalid URL ({method} {path or '/'})", rid)

    async def _chat(self, scope: Scope, receive: Receive, send: _Exchange, rid: str) -> bool:
        raw = await _read_body(receive)
        if raw is None:  # the client left while sending
            return False
        try:
            body = json.loads(raw)
        except ValueError as exc:
            message = f"We could not parse the JSON body of your request: {exc}"
            return await _send_error(send, 400, message, rid)
        if not isinstance(body, dict):
            message = "The request body must be a JSON object."
            return await _send_error(send, 400, message, rid)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            message = "Missing required parameter: 'messages'."
            return await _send_error(send, 400, message, rid, param="messages")
        request = ChatRequest(
            n=self._next_n,
            body=body,
            messages=[m for m in messages if isinstance(m, dict)],
            model=str(body.get("model") or self._model),
            stream=body.get("stream") is True,
            params={k: v for k, v in body.items() if k not in ("messages", "model")},
            headers={
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in scope.get("headers", [])
            },
            http_version=str(scope.get("http_version", "1.1")),
        )
        self._next_n += 1
        failure = self._failures.pick(request.n)
        served = False
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_disconnect, receive, group.cancel_scope, send, rid)
            served = await self._answer(request, failure, send, rid)
            group.cancel_scope.cancel()
        return served

    async def _watch_disconnect(
        self, receive: Receive, scope: anyio.CancelScope, send: _Exchange, rid: str
    ) -> None:
        """Stop answering when the client goes; count it when the answer was not done."""
        await _cancel_on_disconnect(receive, scope)
        if not send.done and not send.dropped and not self._closing:
            self._stats.cancelled(rid, time.monotonic())

    async def _answer(
        self, request: ChatRequest, failure: Failure | None, send: _Exchange, rid: str
    ) -> bool:
        if failure is not None:
            self._stats.failure(failure.kind)
            if failure.kind == "status":
                headers = {}
                if failure.retry_after is not None:
                    headers["retry-after"] = f"{failure.retry_after:g}"
                    headers["retry-after-ms"] = str(round(failure.retry_after * 1000))
                message = failure.message or _default_message(failure.status_code)
                return await _send_error(send, failure.status_code, message, rid, headers=headers)
            if failure.kind == "drop_before_response":
                await _drop(send)
                return False
            if failure.kind == "stall":
                await anyio.sleep_forever()
        await send.hold_slot(self._slots)
        try:
            delay = self._latency()
            if failure is not None and failure.kind == "slow_first_byte":
                delay += failure.seconds
            await anyio.sleep(delay)
            if failure is not None and failure.kind == "non_json_body":
                await _send_raw(send, 200, HTML_PAGE, "text/html; charset=utf-8", rid)
                return True
            completion = await self._complete(request)
            drop = failure is not None and failure.kind == "drop_mid_body"
            if request.stream and 200 <= completion.status <= 299:
                return await self._stream(request, completion, send, rid, drop)
            payload = json.dumps(completion.body).encode()
            if drop:
                await send(_start(completion.status, "application/json", rid, len(payload)))
                await send(
                    {
                        "type": "http.response.body",
                        "body": payload[: len(payload) // 2],
                        "more_body": True,
                    }
                )
                await _drop(send)
                return False
            await _send_raw(
                send, completion.status, payload, "application/json", rid, completion.headers
            )
            return True
        finally:
            send.release_slot()

    async def _complete(self, request: ChatRequest) -> Completion:
        try:
            value: Any = self._reply(request)
            if inspect.isawaitable(value):
                value = await value
            return Completion.build(value, request)
        except Exception as exc:  # the user's reply function failed: answer 500, say why
            _log.exception("surge.testing: the reply function failed on request %d", request.n)
            text = f"surge.testing: the reply function raised {type(exc).__name__}: {exc}"
            if isinstance(exc, ConfigError):
                text = f"surge.testing: {exc}"
            return Completion(500, {}, error_body(500, text))

    async def _stream(
        self,
        request: ChatRequest,
        completion: Completion,
        send: _Exchange,
        rid: str,
        drop: bool,
    ) -> bool:
        options = request.params.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        lines = [
            b"data: " + json.dumps(event).encode() + b"\n\n"
            for event in completion.stream_events(include_usage)
        ]
        lines.append(b"data: [DONE]\n\n")
        if drop:
            lines = lines[: max(1, len(lines) // 2)]
        start = _start(
            completion.status, "text/event-stream; charset=utf-8", rid, None, completion.headers
        )
        start["headers"].append((b"cache-control", b"no-cache"))
        await send(start)
        t0 = anyio.current_time()
        sent = 0
        while sent < len(lines):
            # Send every chunk that is due now in one write, then sleep until the next.
            due = (
                len(lines)
                if self._interval == 0
                else min(len(lines), int((anyio.current_time() - t0) / self._interval) + 1)
            )
            due = max(due, sent + 1)
            await send(
                {"type": "http.response.body", "body": b"".join(lines[sent:due]), "more_body": True}
            )
            sent = due
            if sent < len(lines):
                await anyio.sleep(max(0.0, t0 + sent * self._interval - anyio.current_time()))
        if drop:
            await _drop(send)
            return False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _drop(send: _Exchange) -> None:
    """Drop the request; on HTTP/1.1 wait (to be cancelled) for hypercorn's disconnect."""
    send.dropped = True  # the server's doing, not the client's
    if await abort(send.raw) == "closed":
        await anyio.sleep_forever()  # ended by _cancel_on_disconnect


def _start(
    status: int,
    content_type: str,
    rid: str,
    length: int | None,
    extra: dict[str, str] | None = None,
) -> Message:
    headers = [(b"content-type", content_type.encode()), (b"x-request-id", rid.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    for name, value in (extra or {}).items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _send_raw(
    send: Send,
    status: int,
    payload: bytes,
    content_type: str,
    rid: str,
    headers: dict[str, str] | None = None,
) -> None:
    await send(_start(status, content_type, rid, len(payload), headers))
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def _send_json(send: Send, status: int, body: dict[str, Any], rid: str) -> None:
    await _send_raw(send, status, json.dumps(body).encode(), "application/json", rid)


async def _send_error(
    send: Send,
    status: int,
    message: str,
    rid: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> bool:
    payload = json.dumps(error_body(status, message, param)).encode()
    await _send_raw(send, status, payload, "application/json", rid, headers)
    return True


def _default_message(status: int) -> str:
    if status == 429:
        return "Rate limit reached for requests (simulated by surge.testing)."
    if status >= 500:
        return f"The server had an error while processing your request ({status}, simulated)."
    return f"Simulated error {status}."
