"""The event-loop side of the pool: clocks, timers, waiters and byte streams.

The pool and its connections are written once against the small interface here, and run
on asyncio (`backend_asyncio`) or trio (`backend_trio`). A backend is chosen once per pool
(on its first request), never per call, so the hot path pays for no library detection.
The asyncio streams are `asyncio.Protocol`s whose reads wait on a future with a
`loop.call_later` timer (no task, no cancel scope per read); the trio streams are trio's own
socket and TLS streams.

Streams raise httpx's exceptions (`ReadError`, `ReadTimeout`, `WriteError`, ...) without a
request attached; the pool attaches it.
"""

from __future__ import annotations

import asyncio
import errno as _errno
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx

__all__ = [
    "TLS",
    "Backend",
    "Stream",
    "Timer",
    "TooManyOpenFiles",
    "Waiter",
    "connect_error",
    "get_backend",
    "make_tls",
]


class TooManyOpenFiles(httpx.ConnectError):
    """A connect failed because the process ran out of file descriptors (EMFILE/ENFILE)."""


def connect_error(host: str, port: int, exc: OSError) -> httpx.ConnectError:
    """Return the ConnectError for an OSError from connect; EMFILE gets its own type."""
    # trio reports "all attempts to connect failed", the causes in an exception group.
    cause = exc.__cause__
    causes = [exc, *getattr(cause, "exceptions", [cause] if cause is not None else [])]
    if any(getattr(e, "errno", None) in (_errno.EMFILE, _errno.ENFILE) for e in causes):
        return TooManyOpenFiles(f"could not connect to {host}:{port}: {exc} (too many open files)")
    return httpx.ConnectError(f"could not connect to {host}:{port}: {exc}")


class Timer(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None:
        """Stop the callback from running (no effect once it ran)."""


class Waiter(Protocol):
    """One request parked in a pool queue until it is handed a connection or stream."""

    value: Any

    def wake(self, value: Any) -> bool:
        """Hand `value` to the waiting request; False if it already gave up."""

    def pending(self) -> bool:
        """True while the request still waits (not woken, not given up)."""

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

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn()` in a background task of the loop (it must catch its own errors)."""
        raise NotImplementedError

    def is_current(self) -> bool:
        """True if this backend's event loop is the one running now."""
        raise NotImplementedError

    async def connect(
        self, host: str, port: int, tls: TLS | None, time_limit: float | None
    ) -> Stream:
        """Open a TCP connection (and TLS if `tls`); raises ConnectError/Timeout."""
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
        from surge._transport.backend_asyncio import AsyncioBackend

        return AsyncioBackend()
    if "trio" in sys.modules:
        import trio

        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            from surge._transport.backend_trio import TrioBackend

            return TrioBackend()
    raise RuntimeError("surge's pool needs a running asyncio or trio event loop")


class TLS:
    """A pool's TLS settings: the context and the ALPN protocols its connections offer.

    The context may be the caller's and shared with other pools that speak other
    protocols, and a context cannot be copied (client certificates would be lost). A
    context's ALPN list is copied into each connection when the connection's TLS object
    is made, so `context()` sets this pool's list just before that, with no await in
    between: every connection offers what its own pool speaks, whatever other pools
    sharing the context set.
    """

    __slots__ = ("_context", "alpn")

    def __init__(self, context: ssl.SSLContext, alpn: tuple[str, ...]) -> None:
        self._context = context
        self.alpn = alpn

    def context(self) -> ssl.SSLContext:
        """The context, its ALPN protocols set for this pool; wrap a socket with it now."""
        self._context.set_alpn_protocols(self.alpn)
        return self._context

    def __repr__(self) -> str:
        return f"TLS(alpn={list(self.alpn)!r})"


def make_tls(verify: bool | str | ssl.SSLContext, http2: bool) -> TLS:
    """Build the TLS settings of a pool, offering h2 by ALPN when `http2`.

    Args:
        verify: True (system CAs), False (no verification), a CA bundle path, or a context
            (used as given; only its ALPN protocols are set, per connection, see `TLS`).
        http2: Offer HTTP/2 by ALPN.

    Returns:
        The settings.
    """
    alpn = ("h2", "http/1.1") if http2 else ("http/1.1",)
    if isinstance(verify, ssl.SSLContext):
        return TLS(verify, alpn)
    if verify is False:
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
    return TLS(ctx, alpn)
