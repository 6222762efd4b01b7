"""`ChatStream`: one streamed chat completion, read chunk by chunk.

```python
async with client.stream(messages) as stream:
    async for text in stream.text_deltas():
        print(text, end="")
    response = await stream.response()
```

The stream is opened through the client's `CallPath` (limits, retries, endpoints,
deadline). Retries and endpoint fallback happen only until the first event has arrived:
from then on what the caller saw cannot be taken back. Leaving the `async with` block in
any way (the end, `break`, an exception, a cancellation) closes the response at once: surge's
pool closes an HTTP/1.1 connection that was not read to the end (so the server sees the
client go) and resets an HTTP/2 stream; the connection place, the concurrency place and
the rate-limit turn are given back.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import httpx

from surge._call import CALL_OBSERVER, CallPath, StreamLease
from surge._decode import decode_chat
from surge._errors import (
    BadRequestError,
    ConfigError,
    DeadlineExceeded,
    ReadTimeout,
    RemoteProtocolError,
)
from surge._http import translate_error
from surge._retry import RetryPolicy
from surge._streaming.chunks import Assembler, StreamChunk, ToolCallDelta, decode_event
from surge._streaming.sse import SSEDecoder
from surge._timings import Timings
from surge._types import ChatResponse

DRAIN_SECONDS = 0.25  # the longest wait for the body's end after [DONE]

__all__ = ["ChatStream", "StreamReader", "chat_stream", "open_reader", "stream_body"]


class StreamReader:
    """Reads a response body into chunks: bytes, then events, then `StreamChunk`s.

    Args:
        response: The streamed response (status already checked).
        url: Its URL, for messages.
        allow_truncated: Accept a stream that ends without `[DONE]`.
    """

    __slots__ = (
        "_body",
        "_decoder",
        "_json_body",
        "_json_parts",
        "allow_truncated",
        "done",
        "ended",
        "first_token_at",
        "last_arrival",
        "max_gap",
        "queue",
        "response",
        "url",
    )

    def __init__(self, response: httpx.Response, url: str, allow_truncated: bool) -> None:
        self.response = response
        self.url = url
        self.allow_truncated = allow_truncated
        self.queue: deque[StreamChunk] = deque()
        self.done = False  # [DONE] (or the end) was seen
        self.ended = False  # the body was read to its end
        # Arrival times (perf_counter) of the network reads that brought chunks: the
        # server's pace, not the consumer's.
        self.first_token_at: float | None = None
        self.last_arrival: float | None = None
        self.max_gap = 0.0
        self._decoder = SSEDecoder()
        content_type = response.headers.get("content-type", "")
        # A server that ignored stream=True and answered with one JSON completion.
        self._json_body = "json" in content_type and "event-stream" not in content_type
        self._json_parts: list[bytes] = []
        stream = response.stream
        if isinstance(stream, httpx.AsyncByteStream) and not response.headers.get(
            "content-encoding"
        ):
            self._body: AsyncIterator[bytes] = stream.__aiter__()
        else:
            self._body = response.aiter_bytes()

    async def fill(self, read_timeout: float | None) -> None:
        """Read once from the network and queue the chunks it completed.

        Raises:
            ReadTimeout: Nothing arrived within the read timeout.
            RemoteProtocolError: The connection dropped, or the stream ended without
                `[DONE]` (unless `allow_truncated`).
            APIStatusError: The server sent an `{"error": ...}` event.
            ResponseFormatError: An event is not a chat-completion chunk.
        """
        try:
            data = await self._body.__anext__()
        except StopAsyncIteration:
            self.ended = True
            self._end()
            return
        except httpx.ReadTimeout:
            waited = f" for {read_timeout:g} s" if read_timeout is not None else ""
            raise ReadTimeout(
                f"POST {self.url}: no data arrived{waited} while waiting for the next chunk "
                "of the stream (the read timeout, per read)",
                method="POST",
                url=self.url,
            ) from None
        except httpx.HTTPError as exc:
            raise translate_error(exc, "POST", self.url) from None
        if self._json_body:
            self._json_parts.append(data)
            return
        queue = self.queue
        before = len(queue)
        url = self.url
        for event in self._decoder.feed_payloads(data):
            if isinstance(event, bytes):  # a plain `data:` event, the hot path
                payload = event
            else:
                payload = event.raw
                if event.event == "error" and payload != b"[DONE]" and not payload.startswith(b"{"):
                    payload = json.dumps({"error": {"message": event.data}}).encode()
            if payload == b"[DONE]":
                self.done = True
                break
            queue.extend(decode_event(payload, url))
        if len(queue) > before:
            self._arrived(before)

    def _arrived(self, first: int) -> None:
        """Note when chunks `queue[first:]` arrived (once per read, not per chunk)."""
        now = time.perf_counter()
        if self.last_arrival is not None and now - self.last_arrival > self.max_gap:
            self.max_gap = now - self.last_arrival
        self.last_arrival = now
        if self.first_token_at is None:
            for i in range(first, len(self.queue)):
                chunk = self.queue[i]
                if chunk.content or chunk.tool_calls:
                    self.first_token_at = now
                    break

    async def drain(self) -> None:
        """After `[DONE]`: read the body's last bytes, up to 64 KiB or `DRAIN_SECONDS`.

        The chunked terminator (HTTP/1.1) or END_STREAM (HTTP/2) comes right after
        `[DONE]`; reading it lets the connection be reused and shows the server a
        complete exchange rather than a cancellation. A server that sends `[DONE]` and
        then nothing is not waited for (the read timeout, 600 s by default): its
        connection is closed instead, as any body not read to the end.
        """
        received = 0
        with anyio.move_on_after(DRAIN_SECONDS):
            try:
                while received < 65536:
                    received += len(await self._body.__anext__())
            except StopAsyncIteration:
                self.ended = True
            except httpx.HTTPError:
                pass

    async def close(self) -> None:
        """Close the body iterator (an async generator) now rather than when collected."""
        close = getattr(self._body, "aclose", None)
        if close is not None:
            await close()

    def _end(self) -> None:
        if self._json_body:
            body = b"".join(self._json_parts)
            chat = decode_chat(body, status_code=self.response.status_code, url=self.url)
            for choice in chat.choices:
                raw = {**chat.raw, "object": "chat.completion.chunk"}
                message = choice.message
                self.queue.append(
                    StreamChunk(
                        raw,
                        content=message.content,
                        tool_calls=tuple(
                            ToolCallDelta(i, c.id, c.function.name, c.function.arguments)
                            for i, c in enumerate(message.tool_calls or [])
                        ),
                        finish_reason=choice.finish_reason,
                        usage=chat.usage if choice.index == chat.choices[0].index else None,
                        index=choice.index,
                        role=message.role,
                    )
                )
            self.done = True
            self._arrived(0)
            return
        midway = self._decoder.pending
        self._decoder.close()
        self.done = True
        if not self.allow_truncated:
            where = "in the middle of an event" if midway else "without sending [DONE]"
            raise RemoteProtocolError(
                f"POST {self.url}: the stream ended {where}; the answer may be cut short "
                "(pass allow_truncated=True to keep what arrived)",
                method="POST",
                url=self.url,
            )


async def open_reader(
    response: httpx.Response, url: str, allow_truncated: bool, read_timeout: float | None
) -> StreamReader:
    """Start reading a response: up to its first chunk (or its end)."""
    reader = StreamReader(response, url, allow_truncated)
    while not reader.queue and not reader.done:
        await reader.fill(read_timeout)
    return reader


class ChatStream:
    """A streamed chat completion: an async context manager, then an async iterator.

    Made by `LLMClient.stream`; opened by `async with`. Iterate it for `StreamChunk`s,
    or `text_deltas()` for the text alone; `await response()` drains what is left and
    returns the `ChatResponse` a non-streaming call would have given.

    Attributes:
        text: The first choice's text so far.
        timings: The call's timings (`ttft`, `max_gap`, ... filled as the stream goes).
        request_id: The server's request id, when it sent one.
    """

    def __init__(
        self,
        open_stream: Callable[[], Awaitable[StreamLease[StreamReader]]],
        read_timeout: float | None,
    ) -> None:
        self._open = open_stream
        self._read_timeout = read_timeout
        self._lease: StreamLease[StreamReader] | None = None
        self._reader: StreamReader | None = None
        self._assembler = Assembler()
        self._closed = False
        self._response: ChatResponse | None = None
        self.timings = Timings()

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> ChatStream:
        if self._lease is not None or self._closed:
            raise ConfigError("a ChatStream can be opened once; call client.stream() again")
        self._lease = await self._open()
        self._reader = self._lease.reader
        self.timings = self._lease.timings
        self._sync_timings()  # the first read happened while opening
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the response (resetting or closing its connection when unfinished).

        Safe to call twice, and from a cancelled task: nothing in it waits.
        """
        if self._closed:
            return
        self._closed = True
        lease = self._lease
        if lease is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await lease.reader.close()  # an unfinished body closes its connection
                await lease.response.aclose()
            finally:
                usage = self._assembler.usage
                await lease.release(usage.total_tokens if usage is not None else None)
        self.timings.total = time.perf_counter() - lease.started

    # -- reading -------------------------------------------------------------------------

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> StreamChunk:
        reader = self._reader
        if reader is None:
            raise ConfigError("open the stream first: `async with client.stream(...) as stream:`")
        while not reader.queue:
            if self._closed:
                raise StopAsyncIteration
            if reader.done:
                if not reader.ended:
                    await self._guard(reader.drain())
                raise StopAsyncIteration
            await self._guard(reader.fill(self._read_timeout))
        chunk = reader.queue.popleft()
        self._assembler.add(chunk)
        return chunk

    async def _guard(self, read: Awaitable[None]) -> None:
        """Run one read under what is left of the call's deadline."""
        lease = self._lease
        assert lease is not None
        state = lease.state
        if state.deadline is None:
            await read
            self._sync_timings()
            return
        state.phase = "reading the stream (waiting for the next chunk)"
        with anyio.move_on_after(state.remaining()) as scope:
            await read
        self._sync_timings()
        if scope.cancelled_caught:
            error = state.exceeded()
            raise DeadlineExceeded(
                str(error), phase=error.phase, deadline=error.deadline, method="POST", url=lease.url
            )

    def _sync_timings(self) -> None:
        """Copy the reader's arrival times into `timings` (after each read)."""
        lease, reader = self._lease, self._reader
        assert lease is not None
        assert reader is not None
        self.timings.max_gap = reader.max_gap
        if reader.first_token_at is not None:
            self.timings.ttft = reader.first_token_at - lease.sent

    async def text_deltas(self) -> AsyncIterator[str]:
        """Iterate over the first choice's text pieces (chunks without text are skipped)."""
        async for chunk in self:
            if chunk.content and chunk.index == 0:
                yield chunk.content

    @property
    def text(self) -> str:
        """The first choice's text received so far."""
        return self._assembler.text(0)

    @property
    def assembler(self) -> Assembler:
        """What has been assembled so far (tool-call arguments included)."""
        return self._assembler

    @property
    def request_id(self) -> str | None:
        """The server's request id (`x-request-id` and kin), when it sent one."""
        return self._lease.request_id if self._lease is not None else None

    async def response(self) -> ChatResponse:
        """Read the rest of the stream; return the whole answer as one `ChatResponse`.

        Returns:
            The same response a non-streaming call gives: content and tool calls
            assembled, `finish_reason`, `usage` (when the server sent it), `timings`,
            `attempts`, `endpoint`, `request_id`. `raw` is built from the chunks.
        """
        if self._response is not None:
            return self._response
        async for _ in self:
            pass
        lease = self._lease
        if lease is None:
            raise ConfigError("open the stream first: `async with client.stream(...) as stream:`")
        response = self._assembler.response()
        self.timings.total = time.perf_counter() - lease.started
        response._timings = self.timings
        response._request_id = lease.request_id
        response._attempts = tuple(lease.state.attempts)
        response._endpoint = lease.endpoint
        self._response = response
        observer = CALL_OBSERVER.get()  # a batch's progress display counts streams too
        if observer is not None:
            observer(self.timings)
        return response


def stream_body(body: dict[str, Any], include_usage: bool) -> dict[str, Any]:
    """The request body of a streamed call: `stream: true`, usage asked for by default."""
    out = {**body, "stream": True}
    if include_usage and "stream_options" not in out:
        out["stream_options"] = {"include_usage": True}
    return out


def chat_stream(
    call: CallPath,
    body: dict[str, Any],
    *,
    timeout: float | None,
    retry: RetryPolicy | bool | None,
    deadline: float | None,
    include_usage: bool,
    allow_truncated: bool,
) -> ChatStream:
    """Build the `ChatStream` of one call (opened by its `async with`).

    `stream_options.include_usage` is asked for unless `include_usage=False` or the
    caller set `stream_options`; a server that rejects it (400 naming `stream_options`)
    is asked again without it.
    """
    read_timeout = timeout if timeout is not None else call.settings.timeout
    if read_timeout is None:
        read_timeout = call.http.config.read

    async def opener(response: httpx.Response, url: str) -> StreamReader:
        return await open_reader(response, url, allow_truncated, read_timeout)

    async def open_stream() -> StreamLease[StreamReader]:
        try:
            return await call.open_stream(
                stream_body(body, include_usage),
                opener,
                timeout=timeout,
                retry=retry,
                deadline=deadline,
            )
        except BadRequestError as exc:
            if not include_usage or "stream_options" in body or "stream_options" not in str(exc):
                raise
        return await call.open_stream(
            stream_body(body, False), opener, timeout=timeout, retry=retry, deadline=deadline
        )

    return ChatStream(open_stream, read_timeout)
