"""The asyncio backend: futures, deadline queues, `asyncio.Protocol` streams.

Reads wait on a future whose timeout is an entry in `deadlines` (no task, no cancel
scope, no heap timer per read); a stream buffers what arrives and wakes its one reader;
writes go straight to the transport and wait only when it asks to pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from surge._transport.backend import TLS, Backend, Stream, Timer, Waiter, connect_error
from surge._transport.deadlines import Deadlines

__all__ = ["AsyncioBackend"]

_HAS_TIMEOUT = sys.version_info >= (3, 11)
_HIGH_WATER = 1024 * 1024


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class _AsyncioWaiter:
    __slots__ = ("_deadlines", "_fut", "value")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadlines: Deadlines) -> None:
        self._deadlines = deadlines
        self._fut: asyncio.Future[bool] = loop.create_future()
        self.value: Any = None

    def wake(self, value: Any) -> bool:
        fut = self._fut
        if fut.done():
            return False
        self.value = value
        fut.set_result(True)
        return True

    def pending(self) -> bool:
        return not self._fut.done()

    async def wait(self, time_limit: float | None) -> bool:
        fut = self._fut
        if time_limit is None:
            return await fut
        deadline = self._deadlines.add(time_limit, _expire, fut)
        try:
            return await fut
        finally:
            self._deadlines.cancel(deadline)


def _read_timeout(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(httpx.ReadTimeout("timed out waiting for the server's response"))


def _write_timeout(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(httpx.WriteTimeout("timed out sending the request"))


class _ConnectTimer:
    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False


def _cancelling(task: Any) -> int:
    return int(task.cancelling()) if _HAS_TIMEOUT else 0


def _uncancel(task: Any) -> int:
    return int(task.uncancel()) if _HAS_TIMEOUT else 0


def _connect_expired(state: _ConnectTimer) -> None:
    state.fired = True
    state.task.cancel()


class _AsyncioStream(asyncio.Protocol):
    """A byte stream over an asyncio transport: buffers what arrives, wakes one reader.

    `atomic_writes`: a send hands all its bytes to the transport before it can wait, so a
    cancelled send never leaves part of its data unsent.
    """

    atomic_writes = True

    __slots__ = (
        "_buf",
        "_deadlines",
        "_drain",
        "_eof",
        "_error",
        "_loop",
        "_paused",
        "_reading_paused",
        "_size",
        "_waiter",
        "alpn",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, deadlines: Deadlines) -> None:
        self._loop = loop
        self._deadlines = deadlines
        self.transport: asyncio.Transport | None = None
        self._buf: list[bytes] = []
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self._reading_paused = False
        self.alpn: str | None = None

    # asyncio.Protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf.append(data)
        self._size += len(data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._size > _HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None:
            self._error = exc
        self._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Stream
    async def receive(self, time_limit: float | None) -> bytes:
        while True:
            buf = self._buf
            if buf:
                data = buf[0] if len(buf) == 1 else b"".join(buf)
                self._buf = []
                self._size = 0
                if self._reading_paused and self.transport is not None:
                    self._reading_paused = False
                    self.transport.resume_reading()
                return data
            if self._eof:
                if self._error is not None:
                    raise httpx.ReadError(f"connection lost: {self._error}")
                return b""
            fut = self._loop.create_future()
            self._waiter = fut
            if time_limit is None:
                try:
                    await fut
                finally:
                    self._waiter = None
            else:
                deadline = self._deadlines.add(time_limit, _read_timeout, fut)
                try:
                    await fut
                finally:
                    self._waiter = None
                    self._deadlines.cancel(deadline)

    async def send(self, data: bytes, time_limit: float | None) -> None:
        transport = self.transport
        if transport is None or self._eof or transport.is_closing():
            raise httpx.WriteError("connection closed by the server")
        transport.write(data)
        if not self._paused:
            return
        fut = self._loop.create_future()
        self._drain = fut
        deadline = (
            None if time_limit is None else self._deadlines.add(time_limit, _write_timeout, fut)
        )
        try:
            await fut
        finally:
            self._drain = None
            if deadline is not None:
                self._deadlines.cancel(deadline)
        if self._eof:
            raise httpx.WriteError("connection closed by the server while sending")

    def dead_while_idle(self) -> bool:
        return self._eof or bool(self._buf)

    def close(self) -> None:
        self._eof = True
        transport = self.transport
        if transport is not None:
            transport.abort()

    def abandon(self) -> None:
        self._eof = True
        transport = self.transport
        if transport is None:
            return
        try:
            raw = transport.get_extra_info("socket")
            sock = getattr(raw, "_sock", raw)
            if sock is not None:
                sock.close()
        except Exception:  # pragma: no cover - best effort by design
            pass
        # The socket is closed; tell the transport objects so that their finalizers
        # neither warn nor touch a loop that may be gone (private attributes, best effort).
        for obj in (
            transport,
            getattr(getattr(transport, "_ssl_protocol", None), "_transport", None),
        ):
            if obj is None:
                continue
            for name, value in (("_sock", None), ("_closed", True)):
                if hasattr(obj, name):
                    with contextlib.suppress(Exception):
                        setattr(obj, name, value)


class AsyncioBackend(Backend):
    """The asyncio backend: futures, `loop.call_later`, `asyncio.Protocol` streams."""

    name = "asyncio"

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._deadlines = Deadlines(self._loop)
        self.now = self._loop.time  # type: ignore[method-assign]
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn()` in a task of the loop (a reference is kept until it ends)."""
        task: asyncio.Task[None] = self._loop.create_task(fn())  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def is_current(self) -> bool:
        """True if this backend's loop is the running one."""
        return asyncio._get_running_loop() is self._loop

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call `callback` after `delay` seconds on the loop."""
        return self._loop.call_later(delay, callback)

    def waiter(self) -> Waiter:
        """Return a waiter bound to this loop."""
        return _AsyncioWaiter(self._loop, self._deadlines)

    def close(self) -> None:
        """Stop the deadline timer."""
        self._deadlines.close()

    async def connect(
        self, host: str, port: int, tls: TLS | None, time_limit: float | None
    ) -> Stream:
        """Open a TCP (and TLS) connection within `time_limit` seconds."""
        stream = _AsyncioStream(self._loop, self._deadlines)
        if time_limit is None:
            await self._open(stream, host, port, tls)
            return stream
        # Like asyncio.timeout, but the timer is a deadline-queue entry, not a heap timer.
        task = asyncio.current_task()
        assert task is not None
        state = _ConnectTimer(task)
        cancelling = _cancelling(task)
        deadline = self._deadlines.add(time_limit, _connect_expired, state)
        try:
            await self._open(stream, host, port, tls)
        except asyncio.CancelledError:
            if state.fired and _uncancel(task) <= cancelling:
                raise httpx.ConnectTimeout(
                    f"timed out connecting to {host}:{port} after {time_limit} s"
                ) from None
            raise
        finally:
            self._deadlines.cancel(deadline)
        return stream

    async def _open(self, stream: _AsyncioStream, host: str, port: int, tls: TLS | None) -> None:
        """Connect `stream`, then start TLS on it if `tls` (both steps translate errors)."""
        loop = self._loop
        try:
            await loop.create_connection(lambda: stream, host, port)
        except OSError as exc:
            raise connect_error(host, port, exc) from exc
        if tls is None:
            return
        raw = stream.transport
        assert raw is not None
        try:
            # start_tls makes the TLS object before its first await: right after
            # tls.context() set this pool's ALPN protocols on a maybe-shared context.
            wrapped = await loop.start_tls(raw, stream, tls.context(), server_hostname=host)
        except ssl.SSLError as exc:
            raw.abort()
            raise httpx.ConnectError(f"TLS handshake with {host}:{port} failed: {exc}") from exc
        except OSError as exc:
            raw.abort()
            raise connect_error(host, port, exc) from exc
        except BaseException:
            raw.abort()
            raise
        if wrapped is None:  # pragma: no cover - the loop closed under the handshake
            raw.abort()
            raise httpx.ConnectError(f"TLS handshake with {host}:{port} was abandoned")
        stream.transport = wrapped
        ssl_object = wrapped.get_extra_info("ssl_object")
        if ssl_object is not None:
            stream.alpn = ssl_object.selected_alpn_protocol()
