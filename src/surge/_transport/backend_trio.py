"""The trio backend: trio events and streams, and one system task running the timers.

Imported only when a pool first runs under trio, so trio stays an optional dependency.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import select
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from surge._transport.backend import TLS, Backend, Stream, Timer, Waiter, connect_error

__all__ = ["TrioBackend"]

_READ_SIZE = 65536
_HAS_POLL = hasattr(select, "poll")


class _TrioWaiter:
    __slots__ = ("_event", "_given_up", "value")

    def __init__(self) -> None:
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

    def pending(self) -> bool:
        return not self._given_up

    async def wait(self, time_limit: float | None) -> bool:
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
        try:
            with trio.fail_after(math.inf if time_limit is None else time_limit):
                return bytes(await self._stream.receive_some(_READ_SIZE))
        except trio.TooSlowError:
            raise httpx.ReadTimeout("timed out waiting for the server's response") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.ReadError(f"connection lost: {exc}") from exc

    async def send(self, data: bytes, time_limit: float | None) -> None:
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
            if _HAS_POLL:  # select.select refuses fds >= 1024 (FD_SETSIZE)
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                return bool(poller.poll(0))
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
        self.now = trio.current_time  # type: ignore[method-assign]
        self._token = trio.lowlevel.current_trio_token()
        self._timers: list[_TrioTimer] = []
        self._scope: Any = None
        self._started = False
        self._closed = False

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call `callback` after `delay` seconds."""
        timer = _TrioTimer(self.now() + delay, callback)
        heapq.heappush(self._timers, timer)
        if not self._started:
            self._started = True
            self._scope = trio.CancelScope()
            trio.lowlevel.spawn_system_task(self._run_timers, name="surge pool timers")
        if self._scope is not None and self._timers[0] is timer:
            self._scope.deadline = timer.deadline
        return timer

    async def _run_timers(self) -> None:
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

    def is_current(self) -> bool:
        """True if this backend's trio run is the running one."""
        try:
            return trio.lowlevel.current_trio_token() is self._token
        except RuntimeError:
            return False

    def close(self) -> None:
        """Drop pending timers and stop the timer task."""
        self._closed = True
        self._timers.clear()
        if self._scope is not None:
            self._scope.cancel()

    def waiter(self) -> Waiter:
        """Return a new waiter."""
        return _TrioWaiter()

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn()` in a trio system task (cancelled when the run ends)."""
        trio.lowlevel.spawn_system_task(fn, name="surge pool background write")

    async def connect(
        self, host: str, port: int, tls: TLS | None, time_limit: float | None
    ) -> Stream:
        """Open a TCP (and TLS) connection within `time_limit` seconds."""
        try:
            with trio.fail_after(math.inf if time_limit is None else time_limit):
                tcp = await trio.open_tcp_stream(host, port)
                stream: Any = tcp
                alpn = None
                if tls is not None:
                    # SSLStream makes its TLS object here: right after tls.context().
                    stream = trio.SSLStream(
                        tcp, tls.context(), server_hostname=host, https_compatible=True
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
        except trio.BrokenResourceError as exc:
            # trio wraps a failed TLS handshake; name the TLS error itself.
            cause = exc.__cause__ or exc
            raise httpx.ConnectError(f"TLS handshake with {host}:{port} failed: {cause}") from exc
        except OSError as exc:
            raise connect_error(host, port, exc) from exc
        tcp.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _TrioStream(stream, tcp.socket, alpn)
