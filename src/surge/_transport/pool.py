"""surge's connection pool: an `httpx.AsyncBaseTransport` with O(1) acquire and release.

Each origin (scheme, host, port) has its own state: idle HTTP/1.1 connections (a stack, so
the most recently used is reused first and the oldest expire first), HTTP/2 connections
with a free stream, a count of open connections against `max_connections`, and a FIFO of
waiting requests. Acquiring and releasing touch only the ends of these queues, whatever
the number of requests in flight or waiting: a released connection goes straight to the
first live waiter, and a waiter that gave up (cancelled, timed out) is skipped when it
reaches the front (lazy deletion), never searched for.

A request that finds nothing free and room under the limit opens its own connection; with
`http2=True` it first waits for a connection already being opened, since one HTTP/2
connection serves many requests. Idle connections close after `keepalive_expiry` by a
timer, also when the pool is otherwise quiet.
"""

from __future__ import annotations

import contextlib
import os

import httpx

from surge._config import PoolConfig
from surge._timings import PHASE_EXTENSION, PoolStats, Timings
from surge._transport.backend import TLS, Backend, get_backend, make_tls
from surge._transport.h1 import RetryableError
from surge._transport.origin import Conn, Open, Origin
from surge._transport.stats import WAIT_WARNING_THRESHOLD, WaitStats

__all__ = ["PoolTransport"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_fork_generation = [0]  # bumped in a forked child: its pools rebind on their next request


def _forked() -> None:
    _fork_generation[0] += 1


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forked)


def _replayable(request: httpx.Request) -> bool:
    """True if the request's body can be sent again (bytes, not a stream already read)."""
    try:
        request.content  # noqa: B018 - raises for a streamed body
    except httpx.RequestNotRead:
        return False
    return True


class PoolTransport(httpx.AsyncBaseTransport):
    """surge's connection pool as an httpx transport.

    Give it to `httpx.AsyncClient(transport=...)`. Limits apply per origin. Each response
    carries `extensions["surge.timings"]` (a `surge.Timings`) and `extensions["http_version"]`.

    Args:
        config: Limits, timeouts, HTTP/2 and TLS settings; the defaults if None.
    """

    def __init__(self, config: PoolConfig | None = None) -> None:
        self._config = config if config is not None else PoolConfig()
        self._origins: dict[tuple[bytes, bytes, int | None], Origin] = {}
        self._backend: Backend | None = None
        self._stats = WaitStats()
        self._ssl: TLS | None = None
        self._closed = False
        self._fork_generation = _fork_generation[0]
        self._warned_fds = False

    def _tls(self) -> TLS:
        if self._ssl is None:
            self._ssl = make_tls(self._config.verify, self._config.http2)
        return self._ssl

    def _bind(self) -> None:
        """Bind to the running event loop; drop what belonged to a previous loop or process.

        An httpx client outlives event loops (a second `asyncio.run`, a framework that
        keeps the client it was given) and may be inherited by a forked child: the old
        loop's connections are abandoned (closed without touching that loop), and the
        pool starts afresh on the running one.
        """
        if self._backend is not None:
            for origin in self._origins.values():
                with contextlib.suppress(Exception):  # best effort by design
                    origin.abandon_all()
            self._origins = {}
        self._backend = get_backend()
        self._fork_generation = _fork_generation[0]

    def _origin(self, url: httpx.URL) -> Origin:
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"surge's pool speaks http:// and https:// only, not {scheme!r}"
            )
        origin = Origin(self, scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        self._origins[(url.raw_scheme, url.raw_host, url.port)] = origin
        return origin

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request over a pooled connection and return its response.

        Args:
            request: The request; `extensions["timeout"]` overrides the config's timeouts.

        Returns:
            The response, with its body still to be read.

        Raises:
            httpx.PoolTimeout: No connection was free within the pool timeout.
            httpx.ConnectError: The connection could not be opened (or the pool is closed).
            httpx.TransportError: Any other failure, e.g. ReadTimeout, RemoteProtocolError.
        """
        url = request.url
        try:
            if self._closed:
                raise httpx.ConnectError("this surge pool was closed (aclose or abandon)")
            backend = self._backend
            if (
                backend is None
                or self._fork_generation != _fork_generation[0]
                or not backend.is_current()
            ):
                self._bind()
            origin = self._origins.get((url.raw_scheme, url.raw_host, url.port))
            if origin is None:
                origin = self._origin(url)
            config = self._config
            timeouts = request.extensions.get("timeout")
            if timeouts:
                pool_timeout = timeouts.get("pool", config.pool)
                connect_timeout = timeouts.get("connect", config.connect)
                read_timeout = timeouts.get("read", config.read)
                write_timeout = timeouts.get("write", config.write)
            else:
                pool_timeout, connect_timeout = config.pool, config.connect
                read_timeout, write_timeout = config.read, config.write
            on_phase = request.extensions.get(PHASE_EXTENSION)
            now = origin.now
            start = now()
            timings = Timings()
            for attempt in (0, 1):
                conn = origin.try_acquire()
                state = None
                if conn is None:
                    state = origin.wait_state()  # the warning says why it waited, not why not now
                    conn = await origin.wait(pool_timeout)
                acquired = now()
                waited = acquired - start
                self._stats.record(waited)
                if waited > WAIT_WARNING_THRESHOLD:
                    self._stats.slow_wait(
                        waited,
                        acquired,
                        origin.n_waiting,
                        origin.url,
                        origin.max_conn,
                        origin.wait_reason(state),
                    )
                if attempt == 0:
                    timings.queued = waited
                if isinstance(conn, Open):
                    if self._closed:
                        origin.open_failed()
                        raise httpx.ConnectError("this surge pool was closed (aclose or abandon)")
                    if on_phase is not None:
                        on_phase("connecting")
                    conn = await self._open(origin, connect_timeout, pool_timeout, timings)
                if conn.http2:
                    timings.http_version = "HTTP/2"
                if on_phase is not None:
                    on_phase("sending")
                try:
                    return await conn.handle(request, read_timeout, write_timeout, timings, start)
                except RetryableError as exc:
                    if attempt or not _replayable(request):
                        raise exc.error from None
                    start = now()
            raise AssertionError("unreachable")  # pragma: no cover
        except httpx.TransportError as exc:
            exc.request = request
            raise

    async def _open(
        self,
        origin: Origin,
        connect_timeout: float | None,
        pool_timeout: float | None,
        timings: Timings,
    ) -> Conn:
        """Open a connection; out of file descriptors, wait for one of the origin's."""
        while True:
            opened = await origin.open(connect_timeout)
            if opened is not None:
                timings.connect = opened.connect_time
                return opened
            value = await origin.wait(pool_timeout)
            if not isinstance(value, Open):
                return value

    async def aclose(self) -> None:
        """Close every connection; later requests raise `httpx.ConnectError`."""
        backend = self._backend
        if backend is not None and (
            self._fork_generation != _fork_generation[0] or not backend.is_current()
        ):
            self.abandon()  # its connections belong to a loop (or process) that is gone
            return
        self._close_sync()

    def _close_sync(self) -> None:
        self._closed = True
        for origin in self._origins.values():
            origin.close_all()
        if self._backend is not None:
            self._backend.close()

    def abandon(self) -> None:
        """Close every socket at once without touching the event loop.

        For a forked child process, or when the event loop that used the pool has ended:
        never raises and never schedules anything on a loop.
        """
        self._closed = True
        for origin in self._origins.values():
            with contextlib.suppress(Exception):  # best effort by design
                origin.abandon_all()

    def stats(self) -> PoolStats:
        """Return a snapshot of the pool, summed over origins.

        Returns:
            In-use, idle and waiting counts now; counters and wait percentiles since the
            last `reset_stats()`.
        """
        in_use = idle = waiting = 0
        for origin in self._origins.values():
            in_use += origin.in_use
            waiting += origin.n_waiting
            idle += len(origin.idle)
            idle += len(origin.h2_idle)
        stats = self._stats
        p50, p90, p99 = stats.percentiles()
        return PoolStats(
            in_use=in_use,
            idle=idle,
            waiting=waiting,
            connections_opened=stats.connections_opened,
            requests=stats.requests,
            wait_seconds_max=stats.wait_max,
            wait_seconds_p50=p50,
            wait_seconds_p90=p90,
            wait_seconds_p99=p99,
        )

    def reset_stats(self) -> None:
        """Reset counters and wait percentiles (not the in-use, idle and waiting counts)."""
        self._stats.reset()

    def __repr__(self) -> str:
        return f"PoolTransport({self._config!r})"
