"""The event-loop side of the pool: clocks, timers, waiters and byte streams.

The pool and its connections are written once against the small interface here, and run
on asyncio or trio. A backend is chosen once per pool (on its first request), never per
call, so the hot path pays for no library detection. The asyncio streams are
`asyncio.Protocol`s whose reads wait on a future with a `loop.call_later` timer (no task,
no cancel scope per read); the trio streams are trio's own socket and TLS streams.

Streams raise httpx's exceptions (`ReadError`, `ReadTimeout`, `WriteError`, ...) without a
request attached; the pool attaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import os
import select
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any, Protocol

import httpx

__all__ = [
    "AsyncioBackend",
    "Backend",
    "Stream",
    "Timer",
    "TrioBackend",
    "Waiter",
    "get_backend",
    "make_ssl_context",
]

_READ_SIZE = 65536
_HAS_TIMEOUT = sys.version_info >= (3, 11)
_HIGH_WATER = 1024 * 1024


class Timer(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None:
        """Stop the callback from running (no effect once it ran)."""


class Waiter(Protocol):
    """One request parked in a pool queue until it is handed a connection or stream."""

    value: Any

    def wake(self, value: Any) -> bool:
        """Hand `value` to the waiting request; False if it already gave up."""

    async def wait(self, time_limit: float | None) -> bool:
        """Wait to be woken; True if woken, False on timeout. Cancellation propagates."""


class Stream(Protocol):
    """A connected byte stream (TCP, maybe TLS) with per-operation timeouts."""

    alpn: str | None

    async def receive(self, time_limit: float | None) -> bytes:
        """Return the next bytes received, or b"" at end of stream."""

    async def send(self, data: bytes, time_limit: float | None) -> None:
        """Send all of `data`."""

    def dead_while_idle(self) -> bool:
        """True if the peer closed (or sent unexpected bytes) while nothing was asked."""

    def close(self) -> None:
        """Close at once, without a TLS goodbye (sync; needs the event loop alive)."""

    def abandon(self) -> None:
        """Close the socket without touching the event loop (fork child, dead loop)."""


class Backend:
    """What the pool needs from an event loop."""

    name = ""

    def now(self) -> float:
        """Return the loop's monotonic clock, in seconds."""
        raise NotImplementedError

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run `callback()` after `delay` seconds unless the returned timer is cancelled."""
        raise NotImplementedError

    def waiter(self) -> Waiter:
        """Return a new waiter."""
        raise NotImplementedError

    async def connect(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None, time_limit: float | None
    ) -> Stream:
        """Open a TCP connection (and TLS if `ssl_context`); raises ConnectError/Timeout."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (timer task); sync and idempotent."""


def get_backend() -> Backend:
    """Return the backend of the running event loop (asyncio or trio).

    Raises:
        RuntimeError: No supported event loop is running.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return AsyncioBackend()
    if "trio" in sys.modules:
        import trio

        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return TrioBackend()
    raise RuntimeError("surge's pool needs a running asyncio or trio event loop")


def make_ssl_context(verify: bool | str | ssl.SSLContext, http2: bool) -> ssl.SSLContext:
    """Build the TLS context of a pool, offering h2 by ALPN when `http2`.

    Args:
        verify: True (system CAs), False (no verification), a CA bundle path, or a context
            (used as given, with ALPN protocols set).
        http2: Offer HTTP/2 by ALPN.

    Returns:
        The context.
    """
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif verify is True:
        ctx = ssl.create_default_context()
        try:
            import certifi

            ctx.load_verify_locations(certifi.where())
        except ImportError:  # pragma: no cover - certifi comes with httpx
            pass
    else:
        path = os.fspath(verify)
        if os.path.isdir(path):
            ctx = ssl.create_default_context(capath=path)
        else:
            ctx = ssl.create_default_context(cafile=path)
    ctx.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    return ctx


# --------------------------------------------------------------------------- asyncio


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class _AsyncioWaiter:
    __slots__ = ("_fut", "_loop", "value")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fut: asyncio.Future[bool] = loop.create_future()
        self.value: Any = None

    def wake(self, value: Any) -> bool:
        fut = self._fut
        if fut.done():
            return False
        self.value = value
        fut.set_result(True)
        return True

    async def wait(self, time_limit: float | None) -> bool:
        fut = self._fut
        if time_limit is None:
            return await fut
        timer = self._loop.call_later(time_limit, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()


def _read_timeout(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(httpx.ReadTimeout("timed out waiting for the server's response"))


def _write_timeout(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(httpx.WriteTimeout("timed out sending the request"))


class _AsyncioStream(asyncio.Protocol):
    """A byte stream over an asyncio transport: buffers what arrives, wakes one reader."""

    __slots__ = (
        "_buf",
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

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
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
                timer = self._loop.call_later(time_limit, _read_timeout, fut)
                try:
                    await fut
                finally:
                    self._waiter = None
                    timer.cancel()

    async def send(self, data: bytes, time_limit: float | None) -> None:
        transport = self.transport
        if transport is None or self._eof or transport.is_closing():
            raise httpx.WriteError("connection closed by the server")
        transport.write(data)
        if not self._paused:
            return
        fut = self._loop.create_future()
        self._drain = fut
        timer = (
            None if time_limit is None else self._loop.call_later(time_limit, _write_timeout, fut)
        )
        try:
            await fut
        finally:
            self._drain = None
            if timer is not None:
                timer.cancel()
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
        self.now = self._loop.time  # type: ignore[method-assign]

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self._loop.call_later(delay, callback)

    def waiter(self) -> Waiter:
        return _AsyncioWaiter(self._loop)

    async def connect(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None, time_limit: float | None
    ) -> Stream:
        loop = self._loop
        stream = _AsyncioStream(loop)
        coro = loop.create_connection(
            lambda: stream,
            host,
            port,
            ssl=ssl_context,
            server_hostname=host if ssl_context is not None else None,
        )
        try:
            if time_limit is None:
                await coro
            elif _HAS_TIMEOUT:
                # A loop timer on this task; no extra task as with wait_for.
                async with asyncio.timeout(time_limit):  # type: ignore[attr-defined,unused-ignore]
                    await coro
            else:  # pragma: no cover - Python 3.10
                await asyncio.wait_for(coro, time_limit)
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(
                f"timed out connecting to {host}:{port} after {time_limit} s"
            ) from None
        except ssl.SSLError as exc:
            raise httpx.ConnectError(f"TLS handshake with {host}:{port} failed: {exc}") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"could not connect to {host}:{port}: {exc}") from exc
        if ssl_context is not None and stream.transport is not None:
            ssl_object = stream.transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                stream.alpn = ssl_object.selected_alpn_protocol()
        return stream


# --------------------------------------------------------------------------- trio


class _TrioWaiter:
    __slots__ = ("_event", "_given_up", "value")

    def __init__(self) -> None:
        import trio

        self._event = trio.Event()
        self._given_up = False
        self.value: Any = None

    def wake(self, value: Any) -> bool:
        if self._given_up:
            return False
        self.value = value
        self._given_up = True  # woken: a second wake must fail
        self._event.set()
        return True

    async def wait(self, time_limit: float | None) -> bool:
        import trio

        try:
            with trio.move_on_after(math.inf if time_limit is None else time_limit):
                await self._event.wait()
        finally:
            self._given_up = True
        return self._event.is_set()


class _TrioStream:
    __slots__ = ("_sock", "_stream", "alpn")

    def __init__(self, stream: Any, sock: Any, alpn: str | None) -> None:
        self._stream = stream
        self._sock = sock
        self.alpn = alpn

    async def receive(self, time_limit: float | None) -> bytes:
        import trio

        try:
            with trio.fail_after(math.inf if time_limit is None else time_limit):
                return bytes(await self._stream.receive_some(_READ_SIZE))
        except trio.TooSlowError:
            raise httpx.ReadTimeout("timed out waiting for the server's response") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.ReadError(f"connection lost: {exc}") from exc

    async def send(self, data: bytes, time_limit: float | None) -> None:
        import trio

        try:
            with trio.fail_after(math.inf if time_limit is None else time_limit):
                await self._stream.send_all(data)
        except trio.TooSlowError:
            raise httpx.WriteTimeout("timed out sending the request") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.WriteError(f"connection lost while sending: {exc}") from exc

    def dead_while_idle(self) -> bool:
        try:
            fd = self._sock.fileno()
            if fd < 0:
                return True
            readable, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self._sock.close()

    def abandon(self) -> None:
        try:
            fd = self._sock.detach()
            if fd >= 0:
                os.close(fd)
        except Exception:  # pragma: no cover - best effort by design
            pass


class _TrioTimer:
    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _TrioTimer) -> bool:
        return self.deadline < other.deadline


class TrioBackend(Backend):
    """The trio backend: trio events, streams, and one system task running the timers."""

    name = "trio"

    def __init__(self) -> None:
        import trio

        self._trio = trio
        self.now = trio.current_time  # type: ignore[method-assign]
        self._timers: list[_TrioTimer] = []
        self._scope: Any = None
        self._started = False
        self._closed = False

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _TrioTimer(self.now() + delay, callback)
        heapq.heappush(self._timers, timer)
        if not self._started:
            self._started = True
            self._scope = self._trio.CancelScope()
            self._trio.lowlevel.spawn_system_task(self._run_timers, name="surge pool timers")
        if self._scope is not None and self._timers[0] is timer:
            self._scope.deadline = timer.deadline
        return timer

    async def _run_timers(self) -> None:
        trio = self._trio
        timers = self._timers
        try:
            while not self._closed:
                while timers and (timers[0].cancelled or timers[0].deadline <= trio.current_time()):
                    timer = heapq.heappop(timers)
                    if not timer.cancelled:
                        with contextlib.suppress(Exception):
                            timer.callback()
                scope = self._scope = trio.CancelScope(
                    deadline=timers[0].deadline if timers else math.inf
                )
                with scope:
                    await trio.sleep_forever()
        except trio.Cancelled:
            return
        finally:
            self._scope = None

    def close(self) -> None:
        self._closed = True
        self._timers.clear()
        if self._scope is not None:
            self._scope.cancel()

    def waiter(self) -> Waiter:
        return _TrioWaiter()

    async def connect(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None, time_limit: float | None
    ) -> Stream:
        trio = self._trio
        try:
            with trio.fail_after(math.inf if time_limit is None else time_limit):
                tcp = await trio.open_tcp_stream(host, port)
                stream: Any = tcp
                alpn = None
                if ssl_context is not None:
                    stream = trio.SSLStream(
                        tcp, ssl_context, server_hostname=host, https_compatible=True
                    )
                    try:
                        await stream.do_handshake()
                    except BaseException:
                        tcp.socket.close()
                        raise
                    alpn = stream.selected_alpn_protocol()
        except trio.TooSlowError:
            raise httpx.ConnectTimeout(
                f"timed out connecting to {host}:{port} after {time_limit} s"
            ) from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.ConnectError(f"could not connect to {host}:{port}: {exc}") from exc
        tcp.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _TrioStream(stream, tcp.socket, alpn)
