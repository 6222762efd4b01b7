"""One HTTP/2 connection of the pool: many concurrent requests as streams.

Built on the sans-I/O `H2Protocol` (`h2_protocol.py`) over a `backend.Stream`, on asyncio
and trio alike, with no background task: a request that needs the next event of its stream
reads the socket itself if no other request is reading, and hands every event it reads to
the stream it belongs to; requests whose event has not arrived yet park until it does, and one
of them takes over reading when the reader leaves. Writes are serialized by a lock.

The pool counts streams (`streams`, `capacity`, `usable`); this module tells it when a
stream ends (`release_stream`) and when the connection may take no new stream
(`connection_unusable`: GOAWAY, a connection error, the socket closed).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import httpx

from surge._timings import TIMINGS_EXTENSION, Timings
from surge._transport.backend import Stream, Timer, Waiter
from surge._transport.h1 import STALE_RACE_SECONDS, RetryableError
from surge._transport.h2_body import H2Body, reset_error
from surge._transport.h2_events import (
    Data,
    Ended,
    GoAway,
    H2ProtocolError,
    NoStreamIds,
    Reset,
    Response,
    SettingsChanged,
    WindowOpened,
)
from surge._transport.h2_frames import ErrorCode
from surge._transport.h2_protocol import H2Protocol
from surge._transport.h2_request import BodyUpload, request_headers

__all__ = ["H2Connection"]

_HTTP2 = b"HTTP/2"
_MAX_CAPACITY = 1000
_WINDOW = 16 * 1024 * 1024
_BACKGROUND_WRITE_LIMIT = 10.0  # seconds for a reset flushed in the background
_STREAM_EVENTS = (Response, Data, Ended, Reset)


class _Owner(Protocol):
    def now(self) -> float: ...
    def release_stream(self, conn: H2Connection) -> None: ...
    def connection_unusable(self, conn: H2Connection) -> None: ...
    def capacity_changed(self, conn: H2Connection) -> None: ...
    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None: ...
    def waiter(self) -> Waiter: ...


class H2Connection(BodyUpload):
    """An HTTP/2 connection multiplexing requests as streams.

    Attributes:
        stream: The byte stream.
        capacity: Streams the server allows at once (its MAX_CONCURRENT_STREAMS).
        streams: Streams reserved or open now (kept by the pool).
        usable: New streams may be opened.
        idle_timer: The pool's keep-alive timer while no stream is open.
        idle_since: Loop time at which the last stream ended.
        connect_time: Seconds its connect (TCP, TLS, preface) took.
    """

    http2 = True

    def __init__(self, stream: Stream, owner: _Owner, url: str) -> None:
        self.stream = stream
        self.owner = owner
        self.url = url
        self.capacity = 1
        self.streams = 0
        self.usable = True
        self.idle_timer: Timer | None = None
        self.idle_since = 0.0
        self.connect_time = 0.0
        self.served = 0
        self._h2 = H2Protocol(_WINDOW)
        self._events: dict[int, deque[Any]] = {}
        self._parked: dict[int, Waiter] = {}
        self._reading = False
        self._error: httpx.TransportError | None = None
        self._last_stream_id: int | None = None
        self._write_lock = anyio.Lock()
        self._closed = False
        self._flush_scheduled = False
        self._write_time_limit: float | None = _BACKGROUND_WRITE_LIMIT
        self._window_waiting: set[int] = set()
        self._answered = 0
        # asyncio hands a whole write to its transport before any await, so a cancelled
        # write never leaves half a frame; on trio it may, unless shielded (see _flush).
        self._atomic_writes = bool(getattr(stream, "atomic_writes", False))

    def now(self) -> float:
        """Return the loop's clock (the pool's)."""
        return self.owner.now()

    # ------------------------------------------------------------------ lifecycle
    async def start(self, time_limit: float | None) -> None:
        """Send the preface and wait for the server's SETTINGS (within `time_limit`)."""
        conn = self._h2
        conn.preface()
        try:
            await self.stream.send(conn.data_to_send(), time_limit)
            settings = False
            while not settings:
                data = await self.stream.receive(time_limit)
                if not data:
                    raise httpx.ConnectError(f"{self.url} closed the HTTP/2 connection at once")
                for event in conn.receive(data):
                    if isinstance(event, SettingsChanged):
                        settings = True
                    elif isinstance(event, GoAway):
                        raise httpx.ConnectError(f"{self.url} refused HTTP/2 (GOAWAY)")
            pending = conn.data_to_send()
            if pending:
                await self.stream.send(pending, time_limit)
        except (httpx.ReadTimeout, httpx.WriteTimeout):
            raise httpx.ConnectTimeout(f"{self.url} sent no HTTP/2 SETTINGS in time") from None
        except (httpx.ReadError, httpx.WriteError) as exc:
            # Still connecting: nothing was sent, so the request is safe to send again.
            raise httpx.ConnectError(f"{self.url} dropped the HTTP/2 preface: {exc}") from None
        except H2ProtocolError as exc:
            raise httpx.RemoteProtocolError(f"HTTP/2 preface from {self.url}: {exc}") from None
        self._set_capacity()

    def _set_capacity(self) -> None:
        self.capacity = max(1, min(self._h2.max_concurrent_streams, _MAX_CAPACITY))

    def close(self) -> None:
        """Close the socket at once; open streams fail."""
        self.usable = False
        if not self._closed:
            self._closed = True
            self._fail(httpx.ReadError("the HTTP/2 connection was closed"))
            self.stream.close()

    def abandon(self) -> None:
        """Close the socket without touching the event loop."""
        self._closed = True
        self.usable = False
        self.stream.abandon()

    def maybe_close(self) -> None:
        """Close the socket once the connection is unusable and has no stream left."""
        if not self.usable and self.streams <= 0 and not self._closed:
            self._closed = True
            self.stream.close()

    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None:
            self._error = error
        parked, self._parked = self._parked, {}
        for waiter in parked.values():
            waiter.wake(None)

    # ------------------------------------------------------------------ I/O
    async def _flush(self, time_limit: float | None) -> None:
        lock = self._write_lock
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()  # no checkpoint when free: a read may flush for nothing
        try:
            # Loop: frames queued by others while this send was blocked go out too, so
            # that the reader never has to wait for the lock (see _read_once).
            while data := self._h2.data_to_send():
                try:
                    if self._atomic_writes:
                        await self.stream.send(data, time_limit)
                    else:
                        # Finish the frames begun even if the writer is cancelled, so that
                        # other streams on the connection live on (bounded by the limit).
                        with anyio.CancelScope(shield=True):
                            limit = _BACKGROUND_WRITE_LIMIT if time_limit is None else time_limit
                            await self.stream.send(data, limit)
                except httpx.TransportError as exc:
                    # A write that failed or stalled leaves the connection unusable.
                    self._lost(type(exc)(str(exc)))
                    raise
                except BaseException:
                    if not self._atomic_writes:  # pragma: no cover - the send is shielded
                        self._lost(httpx.WriteError("a write on this connection was cancelled"))
                        self.close()
                    raise
        finally:
            lock.release()

    async def _read_once(self, time_limit: float | None) -> None:
        if not self._write_lock.locked():
            # WINDOW_UPDATEs queued as the body was read must be out before we wait for
            # more: the server may be waiting for them.
            await self._flush(None)
        data = await self.stream.receive(time_limit)
        if not data:
            self._lost(httpx.RemoteProtocolError(f"{self.url} closed the HTTP/2 connection"))
            return
        try:
            events = self._h2.receive(data)
        except H2ProtocolError as exc:
            self._lost(httpx.RemoteProtocolError(f"{self.url} broke HTTP/2: {exc}"))
            if not self._write_lock.locked():  # the GOAWAY saying why, if it can go
                with contextlib.suppress(httpx.TransportError):
                    await self._flush(None)
            return
        for event in events:
            if isinstance(event, _STREAM_EVENTS):
                queue = self._events.get(event.sid)
                if queue is not None:
                    queue.append(event)
                    parked = self._parked.pop(event.sid, None)
                    if parked is not None:
                        parked.wake(None)
            elif isinstance(event, WindowOpened):
                if self._window_waiting:
                    self._wake_window_waiters(event.sid)
            elif isinstance(event, SettingsChanged):
                self._set_capacity()
                self.owner.capacity_changed(self)
                if self._window_waiting:
                    self._wake_window_waiters(0)
            elif isinstance(event, GoAway):
                self._last_stream_id = event.last_stream_id
                if self.usable:
                    self.owner.connection_unusable(self)
                for sid in [sid for sid in self._parked if self._refused(sid)]:
                    self._parked.pop(sid).wake(None)
        if not self._write_lock.locked():
            # Never wait for the lock here: its holder may be blocked sending until the
            # server reads, and the server until we read. The holder flushes what we queue.
            await self._flush(None)

    def _wake_window_waiters(self, sid: int) -> None:
        """A window opened: wake the uploads waiting for it (sid 0: the connection's)."""
        for waiting in list(self._window_waiting) if sid == 0 else [sid]:
            parked = self._parked.pop(waiting, None)
            if parked is not None:
                parked.wake(None)

    def _lost(self, error: httpx.TransportError) -> None:
        self._fail(error)
        if self.usable:
            self.owner.connection_unusable(self)

    async def next_event(self, sid: int, time_limit: float | None) -> Any:
        """Return the next event of stream `sid`, reading the socket if nobody else is.

        One request at a time reads; it keeps reading (and handing each event to its
        stream) until an event of its own arrives. Whoever leaves next_event while nobody
        reads and requests are parked wakes one of them to take over.
        """
        queue = self._events[sid]
        try:
            while not queue:
                if self._error is not None:
                    raise type(self._error)(str(self._error))
                if self._refused(sid):
                    raise httpx.RemoteProtocolError(f"{self.url} refused the stream (GOAWAY)")
                if not self._reading:
                    self._reading = True
                    try:
                        while not queue and self._error is None and not self._refused(sid):
                            await self._read_once(time_limit)
                    except httpx.TransportError as exc:
                        if not isinstance(exc, httpx.TimeoutException):
                            self._lost(type(exc)(str(exc)))
                        raise
                    finally:
                        self._reading = False
                else:
                    if not await self._park(sid, time_limit):
                        raise httpx.ReadTimeout("timed out waiting for the server's response")
            return queue.popleft()
        finally:
            if not self._reading and self._parked:
                self._hand_off()

    async def _park(self, sid: int, time_limit: float | None) -> bool:
        """Wait until stream `sid` is woken (its event, a hand-off); False on timeout."""
        # The backend's waiter (a future and a deadline on asyncio): an anyio Event in a
        # cancel scope cost more than the rest of a streamed chunk's path on this connection.
        waiter = self.owner.waiter()
        self._parked[sid] = waiter
        try:
            return await waiter.wait(time_limit)
        finally:
            if self._parked.get(sid) is waiter:
                del self._parked[sid]

    def _refused(self, sid: int) -> bool:
        return self._last_stream_id is not None and sid > self._last_stream_id

    def _hand_off(self) -> None:
        """Wake one parked request so that it reads for everyone.

        One whose wait already ended (timed out or cancelled, not yet out of `_parked`)
        cannot take the role: the next one is asked.
        """
        parked = self._parked
        while parked:
            if parked.pop(next(iter(parked))).wake(None):
                return

    def end_stream(self, sid: int, reset: bool) -> None:
        """Forget stream `sid` and give its slot back to the pool (once).

        DATA queued for it and never read is acknowledged (else the connection's window
        would shrink for good), and with `reset` a RST_STREAM(CANCEL) goes out at once,
        so that the server stops working for a caller who left.
        """
        queue = self._events.pop(sid, None)
        if queue is None:
            return
        conn = self._h2
        if self._closed:
            conn.forget(sid)
        else:
            unread = sum(e.flow for e in queue if isinstance(e, Data))
            # An early answer (RFC 9113 8.1) ends the stream before our upload did: close
            # our half too.
            reset = reset or conn.local_open(sid)
            if reset:
                conn.reset_stream(sid, ErrorCode.CANCEL)
            conn.forget(sid, unread)
            if reset or unread:
                self._flush_soon()
        self.owner.release_stream(self)

    def _flush_soon(self) -> None:
        """Send what h2 has queued without waiting for the next request to do it."""
        if self._flush_scheduled or self._write_lock.locked():
            return  # the lock's holder sends everything queued before it lets go
        self._flush_scheduled = True
        try:
            self.owner.spawn(self._background_flush)
        except RuntimeError:  # the event loop is shutting down
            self._flush_scheduled = False

    async def _background_flush(self) -> None:
        self._flush_scheduled = False
        if self._closed or self._error is not None:
            return
        with contextlib.suppress(httpx.TransportError):
            await self._flush(self._write_time_limit or _BACKGROUND_WRITE_LIMIT)

    # ------------------------------------------------------------------ requests
    async def handle(
        self,
        request: httpx.Request,
        read_timeout: float | None,
        write_timeout: float | None,
        timings: Timings,
        start: float,
    ) -> httpx.Response:
        """Send `request` on a new stream and return its response once the head arrived.

        Raises:
            RetryableError: The server refused the stream before answering (GOAWAY, or a
                reused connection that closed): safe to send again.
            httpx.TransportError: Any other failure.
        """
        reused = self._answered > 0  # a stream on a brand-new connection is not reused
        self.served += 1
        timings.reused = reused
        sent = -1.0
        conn = self._h2
        sid = 0
        answered = False
        try:
            if self._error is not None or self._closed:
                raise httpx.RemoteProtocolError(f"{self.url} closed the HTTP/2 connection")
            if self._last_stream_id is not None:  # GOAWAY came after this stream's slot
                raise RetryableError(httpx.RemoteProtocolError(f"{self.url} sent GOAWAY"))
            try:
                body: bytes | None = request.content
            except httpx.RequestNotRead:
                body = None
            self._write_time_limit = write_timeout
            head = request.method == "HEAD"
            sid = conn.open_stream(request_headers(request), end_stream=body == b"", head=head)
            self._events[sid] = deque()
            if body is None:
                async for chunk in request.stream:  # type: ignore[union-attr]
                    if not await self._send_data(sid, chunk, write_timeout):
                        break  # the server answered or ended the stream already
                else:
                    if conn.local_open(sid):  # the server may have reset it meanwhile
                        conn.send_data(sid, b"", end_stream=True)
                await self._flush(write_timeout)
            else:
                if body:
                    await self._send_data(sid, body, write_timeout, end=True)
                # Sent by one background write for every request queued in this turn of
                # the loop: a burst of N requests costs a few writes, not N.
                self._flush_soon()
            sent = self.owner.now()
            while True:
                event = await self.next_event(sid, read_timeout)
                if isinstance(event, Response):
                    break
                if isinstance(event, Reset):
                    if event.code == ErrorCode.REFUSED_STREAM and event.reason is None:
                        raise RetryableError(
                            httpx.RemoteProtocolError(f"{self.url} refused the stream")
                        )
                    raise reset_error(self.url, event)
            answered = True
            self._answered += 1
            timings.ttfb = self.owner.now() - sent
        except BaseException as exc:
            if sid:
                self.end_stream(sid, reset=True)
            else:
                self.owner.release_stream(self)
            if isinstance(exc, NoStreamIds):
                if self.usable:
                    self.owner.connection_unusable(self)
                raise RetryableError(httpx.RemoteProtocolError(f"HTTP/2: {exc}")) from None
            if isinstance(exc, RetryableError):
                raise
            # Only a stream the server did not process is safe to send again: one above
            # GOAWAY's last_stream_id, or (the stale keep-alive race) a reused connection
            # that ended right after the request went out.
            if (
                isinstance(exc, httpx.TransportError)
                and not isinstance(exc, httpx.TimeoutException)
                and not answered
                and (
                    (sid and self._refused(sid))
                    or (
                        reused
                        and self._last_stream_id is None
                        and (
                            isinstance(exc, httpx.WriteError)
                            or (sent >= 0 and self.owner.now() - sent <= STALE_RACE_SECONDS)
                        )
                    )
                )
            ):
                raise RetryableError(exc) from exc
            raise
        body_stream = H2Body(self, sid, timings, start, read_timeout)
        return httpx.Response(
            event.status,
            headers=event.headers,
            stream=body_stream,
            extensions={"http_version": _HTTP2, TIMINGS_EXTENSION: timings},
        )
