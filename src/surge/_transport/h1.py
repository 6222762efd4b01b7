"""One HTTP/1.1 connection of the pool: sends a request, parses its response.

The connection is written against `backend.Stream`, so the same code runs on asyncio (an
`asyncio.Protocol` stream) and trio. Responses are parsed by `h1_parser`. A
connection goes back to its owner (the pool's per-origin state) as soon as the response is
complete, which for a small body is before the caller has read it: the body is kept by the
response stream, so a caller that never reads or closes a response leaks nothing. A
response closed half-read closes its connection and frees its slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx

from surge._timings import TIMINGS_EXTENSION, Timings
from surge._transport.backend import Stream
from surge._transport.h1_parser import ProtocolError, ResponseParser, serialize_head

__all__ = ["STALE_RACE_SECONDS", "H1Body", "H1Connection", "Owner", "RetryableError"]

_HTTP11 = b"HTTP/1.1"

STALE_RACE_SECONDS = 0.2
"""A reused connection that ends with no response byte this soon (or within two connect
times) after the request was sent is taken for the stale keep-alive race, and the request
is sent once more; later, it surfaces as `httpx.RemoteProtocolError`."""


class Owner(Protocol):
    """What a connection reports back to: the pool's state for its origin."""

    def now(self) -> float:
        """Return the event loop's clock."""

    def release(self, conn: Any) -> None:
        """Take back a connection whose response is complete and that may be reused."""

    def drop(self, conn: Any) -> None:
        """Close a connection that must not be reused and free its slot."""


class RetryableError(Exception):
    """A request failed on a reused connection before any response byte: try once more.

    Attributes:
        error: The httpx error to raise if the request is not retried.
    """

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


def _chunked(chunk: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(chunk), chunk)


class H1Connection:
    """An HTTP/1.1 connection serving one request at a time.

    Attributes:
        stream: The byte stream.
        owner: Where the connection goes back when its response is done.
        parser: The response parser, reused for each response.
        served: Requests this connection has completed.
        idle_since: Loop time at which it last became idle.
        connect_time: Seconds its connect took.
    """

    __slots__ = ("connect_time", "idle_since", "owner", "parser", "served", "stream")

    http2 = False

    def __init__(self, stream: Stream, owner: Owner, connect_time: float) -> None:
        self.stream = stream
        self.owner = owner
        self.parser = ResponseParser()
        self.served = 0
        self.idle_since = 0.0
        self.connect_time = connect_time

    def close(self) -> None:
        """Close the socket at once."""
        self.stream.close()

    def _stale(self, exc: BaseException, sent: float) -> bool:
        """True if a failure on a reused connection is the stale keep-alive race.

        The peer closed the idle connection before it could read the request: the write
        failed, or the connection ended with no response byte right after the request
        went out. A server that worked on the request and then dropped it is not that
        race: resending a paid call is for `RetryPolicy` to decide, not the pool.
        """
        if isinstance(exc, httpx.WriteError):
            return True
        if not isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) or sent < 0:
            return False
        return self.owner.now() - sent <= max(STALE_RACE_SECONDS, 2 * self.connect_time)

    async def _read_early_answer(self, read_timeout: float | None) -> bool:
        """After a failed write, read a response the server sent before it closed."""
        parser = self.parser
        try:
            while not parser.head_done:
                data = await self.stream.receive(read_timeout)
                if not data:
                    return False
                parser.feed(data)
        except (httpx.TransportError, ProtocolError):
            return False
        parser.keep_alive = False
        return True

    def abandon(self) -> None:
        """Close the socket without touching the event loop."""
        self.stream.abandon()

    async def handle(
        self,
        request: httpx.Request,
        read_timeout: float | None,
        write_timeout: float | None,
        timings: Timings,
        start: float,
    ) -> httpx.Response:
        """Send `request` and return its response once the head has arrived.

        Raises:
            RetryableError: The connection was reused and failed before any response byte.
            httpx.TransportError: Any other failure (the connection is dropped).
        """
        owner = self.owner
        parser = self.parser
        stream = self.stream
        method = request.method
        parser.start(method == "HEAD")
        reused = self.served > 0
        timings.reused = reused
        sent = -1.0
        try:
            try:
                url = request.url
                head = serialize_head(method.encode("ascii"), url.raw_path, request.headers.raw)
                try:
                    body: bytes | None = request.content
                except httpx.RequestNotRead:
                    body = None
                try:
                    if body is not None:
                        await stream.send(head + body if body else head, write_timeout)
                    else:
                        await stream.send(head, write_timeout)
                        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
                        async for chunk in request.stream:  # type: ignore[union-attr]
                            if chunk:
                                data = _chunked(chunk) if chunked else chunk
                                await stream.send(data, write_timeout)
                        if chunked:
                            await stream.send(b"0\r\n\r\n", write_timeout)
                except httpx.WriteError:
                    # A server may answer before it read the whole body (413, then close):
                    # its answer is what the caller needs, not our broken write.
                    if not await self._read_early_answer(read_timeout):
                        raise
                sent = owner.now()
                while not parser.head_done:
                    data = await stream.receive(read_timeout)
                    if data:
                        parser.feed(data)
                    else:
                        parser.feed_eof()
                timings.ttfb = owner.now() - sent
            except ProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from None
        except (httpx.TransportError, ProtocolError) as exc:
            owner.drop(self)
            if (
                reused
                and not parser.received
                and isinstance(exc, httpx.TransportError)
                and self._stale(exc, sent)
            ):
                raise RetryableError(exc) from exc
            raise
        except BaseException:
            # Cancelled (or anything unexpected) mid-exchange: the connection is in an
            # unknown state and cannot be reused.
            owner.drop(self)
            raise
        body_stream = H1Body(self, timings, start, read_timeout)
        if parser.complete:
            body_stream.detach()
        return httpx.Response(
            parser.status_code,
            headers=parser.headers,
            stream=body_stream,
            extensions={
                "http_version": _HTTP11,
                "reason_phrase": parser.reason,
                TIMINGS_EXTENSION: timings,
            },
        )


class H1Body(httpx.AsyncByteStream):
    """The body of one HTTP/1.1 response; gives the connection back when done.

    Once the response is complete the connection is released at once and the remaining
    body bytes are held here. Closing it before the end closes the connection.
    """

    __slots__ = ("_chunks", "_clock", "_conn", "_finished", "_read_timeout", "_start", "_timings")

    def __init__(
        self, conn: H1Connection, timings: Timings, start: float, read_timeout: float | None
    ) -> None:
        self._conn: H1Connection | None = conn
        self._clock = conn.owner.now
        self._chunks: list[bytes] = []
        self._timings = timings
        self._start = start
        self._read_timeout = read_timeout
        self._finished = False

    def detach(self) -> None:
        """Take the rest of the body from the parser and give the connection back."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        parser = conn.parser
        self._chunks.extend(parser.chunks)
        parser.chunks = []
        conn.served += 1
        if parser.keep_alive:
            conn.owner.release(conn)
        else:
            conn.owner.drop(conn)

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            conn = self._conn
            if conn is not None:
                self._conn = None
                conn.owner.drop(conn)
            self._timings.total = self._clock() - self._start

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            chunks = self._chunks
            self._chunks = []
            for chunk in chunks:
                yield chunk
            self._finish()
            return
        parser = conn.parser
        stream = conn.stream
        read_timeout = self._read_timeout
        try:
            while True:
                if parser.chunks:
                    chunks = parser.chunks
                    parser.chunks = []
                    for chunk in chunks:
                        yield chunk
                data = await stream.receive(read_timeout)
                if data:
                    parser.feed(data)
                else:
                    parser.feed_eof()
                if parser.complete:
                    self.detach()
                    chunks = self._chunks
                    self._chunks = []
                    for chunk in chunks:
                        yield chunk
                    break
        except ProtocolError as exc:
            self._finish()
            raise httpx.RemoteProtocolError(str(exc)) from None
        except BaseException:
            # A read error, a cancellation, or the consumer stopping half-way: the
            # connection cannot be reused.
            self._finish()
            raise
        self._finish()

    async def aclose(self) -> None:
        """Close the response: reuse the connection if it was read to the end."""
        self._finish()
