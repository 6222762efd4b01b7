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
import math
from collections import deque
from typing import Any, Union

import httpx

from surge._backend import Backend, Timer, Waiter, get_backend, make_ssl_context
from surge._config import PoolConfig
from surge._connection import H1Connection, RetryableError
from surge._connection_http2 import H2Connection
from surge._pool_stats import WAIT_WARNING_THRESHOLD, WaitStats
from surge._timings import PHASE_EXTENSION, PoolStats, Timings

__all__ = ["PoolTransport"]


class _Open:
    """Handed to a request instead of a connection: "you may open one"."""

    __slots__ = ()


_OPEN = _Open()
_DEFAULT_STREAMS = 100
_DEFAULT_PORTS = {"http": 80, "https": 443}

_Conn = Union[H1Connection, H2Connection]  # noqa: UP007 - a runtime alias on 3.10


class _Origin:
    """The pool's state for one origin; every method but `wait` and `open` is sync."""

    __slots__ = (
        "_timer",
        "active",
        "backend",
        "conns",
        "expiry",
        "h2_cap",
        "h2_ready",
        "host",
        "idle",
        "in_use",
        "max_conn",
        "max_keepalive",
        "multiplex",
        "n_waiting",
        "now",
        "opening",
        "pool",
        "port",
        "prior_knowledge",
        "ssl_context",
        "stats",
        "url",
        "waiters",
    )

    def __init__(self, pool: PoolTransport, scheme: str, host: str, port: int) -> None:
        config = pool._config
        self.pool = pool
        self.backend: Backend = pool._backend  # type: ignore[assignment]
        self.now = self.backend.now
        self.stats = pool._stats
        self.host = host
        self.port = port
        self.url = f"{scheme}://{host}:{port}"
        self.max_conn = config.max_connections
        self.max_keepalive = config.max_keepalive_connections
        self.expiry = config.keepalive_expiry
        self.multiplex = config.http2
        self.prior_knowledge = config.http2 and scheme == "http"
        self.ssl_context = pool._ssl_context() if scheme == "https" else None
        self.idle: deque[H1Connection] = deque()
        self.h2_ready: dict[H2Connection, None] = {}
        self.conns: set[_Conn] = set()
        self.waiters: deque[Waiter] = deque()
        self.n_waiting = 0
        self.active = 0
        self.opening = 0
        self.in_use = 0
        self.h2_cap = _DEFAULT_STREAMS
        self._timer: Timer | None = None

    # ------------------------------------------------------------------ acquire
    def try_acquire(self) -> _Conn | _Open | None:
        """Take a free connection or stream, or the right to open one; None: must wait."""
        h2_ready = self.h2_ready
        while h2_ready:
            conn2 = next(iter(h2_ready))
            if conn2.streams == 0 and self.now() - conn2.idle_since >= self.expiry:
                self.connection_unusable(conn2)  # expired; its timer has not run yet
                continue
            self.reserve_stream(conn2)
            return conn2
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.stream.dead_while_idle() or self.now() - conn.idle_since >= self.expiry:
                self._close(conn)
                continue
            self.in_use += 1
            return conn
        if self.active < self.max_conn and (
            not self.multiplex or self.opening * self.h2_cap <= self.n_waiting
        ):
            self.active += 1
            self.opening += 1
            return _OPEN
        return None

    async def wait(self, time_limit: float | None) -> _Conn | _Open:
        """Queue for a connection, stream or the right to open a connection.

        Raises:
            httpx.PoolTimeout: Nothing was handed over within `time_limit`.
        """
        waiter = self.backend.waiter()
        self.waiters.append(waiter)
        self.n_waiting += 1
        try:
            woken = await waiter.wait(time_limit)
        except BaseException:
            if waiter.value is not None:
                self._give_back(waiter.value)
            else:
                self._left_queue()
            raise
        if not woken:
            self._left_queue()
            raise httpx.PoolTimeout(
                f"timed out after {time_limit} s waiting for a free connection to {self.url}: "
                f"all max_connections={self.max_conn} connections to it are busy and "
                f"{self.n_waiting + 1} request(s) were waiting. Raise max_connections=... "
                f"if the server can take more requests at once, or the pool= timeout "
                f"(None waits without limit)."
            )
        value: _Conn | _Open = waiter.value
        return value

    def _left_queue(self) -> None:
        self.n_waiting -= 1
        waiters = self.waiters
        if self.n_waiting == 0:
            waiters.clear()  # only dead waiters are left
        elif len(waiters) > 1024 and len(waiters) > 3 * self.n_waiting:
            # Many gave up behind a few that still wait: drop the dead (amortized O(1)).
            self.waiters = deque(w for w in waiters if w.pending())

    def _give_back(self, value: _Conn | _Open) -> None:
        if value is _OPEN:
            self.open_failed()
        elif isinstance(value, H2Connection):
            self.release_stream(value)
        else:
            self.release(value)  # type: ignore[arg-type]

    def _hand_over(self, value: _Conn | _Open) -> bool:
        waiters = self.waiters
        while waiters:
            if waiters.popleft().wake(value):
                self.n_waiting -= 1
                return True
        return False

    def _open_for_waiters(self) -> None:
        """Let waiters open connections while there is room and nothing else serves them."""
        while self.n_waiting and self.active < self.max_conn:
            if self.multiplex and self.n_waiting <= self.opening * self.h2_cap:
                return
            if not self._hand_over(_OPEN):
                return
            self.active += 1
            self.opening += 1

    # ------------------------------------------------------------------ open
    async def open(self, time_limit: float | None) -> _Conn:
        """Open a connection with the right obtained from `try_acquire` or `wait`."""
        now = self.now
        started = now()
        try:
            stream = await self.backend.connect(self.host, self.port, self.ssl_context, time_limit)
        except BaseException:
            self.open_failed()
            raise
        self.stats.connections_opened += 1
        if stream.alpn == "h2" or (self.prior_knowledge and stream.alpn is None):
            conn2 = H2Connection(stream, self, self.url)
            try:
                await conn2.start(time_limit)
            except BaseException:
                stream.close()
                self.open_failed()
                raise
            conn2.connect_time = now() - started
            self.opening -= 1
            self.conns.add(conn2)
            self.h2_cap = max(1, conn2.capacity)
            self.reserve_stream(conn2)
            while conn2.streams < conn2.capacity and self.n_waiting:
                if not self._hand_over(conn2):
                    break
                self.reserve_stream(conn2)
            if conn2.streams < conn2.capacity:
                self.h2_ready[conn2] = None
            self._open_for_waiters()
            return conn2
        self.opening -= 1
        conn = H1Connection(stream, self, now() - started)
        self.conns.add(conn)
        self.in_use += 1
        if self.multiplex:
            # The server chose HTTP/1.1: stop waiting for multiplexing.
            self.multiplex = False
            self._open_for_waiters()
        return conn

    def open_failed(self) -> None:
        """Give back the right to open a connection."""
        self.active -= 1
        self.opening -= 1
        self._open_for_waiters()

    # ------------------------------------------------------------------ HTTP/1.1 release
    def release(self, conn: H1Connection) -> None:
        """Take back a connection whose response is complete (reusable)."""
        self.in_use -= 1
        if self.n_waiting and self._hand_over(conn):
            self.in_use += 1
            return
        if len(self.idle) >= self.max_keepalive or self.pool._closed or conn not in self.conns:
            self._close(conn)
            return
        conn.idle_since = self.now()
        self.idle.append(conn)
        if self._timer is None:
            self._arm_expiry(self.expiry)

    def drop(self, conn: H1Connection) -> None:
        """Close a connection that cannot be reused (error, cancel, half-read body)."""
        self.in_use -= 1
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            conn.close()
            self.active -= 1
            self._open_for_waiters()

    def _arm_expiry(self, delay: float) -> None:
        if math.isfinite(delay):
            self._timer = self.backend.call_later(max(delay, 0.0), self._on_expiry)

    def _on_expiry(self) -> None:
        self._timer = None
        idle = self.idle
        deadline = self.now() - self.expiry
        while idle and idle[0].idle_since <= deadline:
            self._close(idle.popleft())
        if idle:
            self._arm_expiry(idle[0].idle_since - deadline)

    # ------------------------------------------------------------------ HTTP/2 streams
    def reserve_stream(self, conn: H2Connection) -> None:
        """Count one more stream in use on `conn`."""
        conn.streams += 1
        self.in_use += 1
        if conn.streams >= conn.capacity:
            self.h2_ready.pop(conn, None)
        if conn.idle_timer is not None:
            conn.idle_timer.cancel()
            conn.idle_timer = None

    def release_stream(self, conn: H2Connection) -> None:
        """Count a stream of `conn` as finished; hand it to a waiter if one is queued."""
        self.in_use -= 1
        conn.streams -= 1
        if not conn.usable:
            conn.maybe_close()
            return
        if self.n_waiting and self._hand_over(conn):
            self.reserve_stream(conn)
            return
        self.h2_ready[conn] = None
        if conn.streams == 0 and math.isfinite(self.expiry):
            conn.idle_since = self.now()
            conn.idle_timer = self.backend.call_later(self.expiry, lambda: self._expire_h2(conn))

    def capacity_changed(self, conn: H2Connection) -> None:
        """The server changed MAX_CONCURRENT_STREAMS on `conn`."""
        if not conn.usable or conn not in self.conns:
            return
        self.h2_cap = max(1, conn.capacity)
        while conn.streams < conn.capacity and self.n_waiting and self._hand_over(conn):
            self.reserve_stream(conn)
        if conn.streams < conn.capacity:
            self.h2_ready[conn] = None
        else:
            self.h2_ready.pop(conn, None)

    def _expire_h2(self, conn: H2Connection) -> None:
        conn.idle_timer = None
        if conn.streams == 0:
            self.connection_unusable(conn)

    def connection_unusable(self, conn: H2Connection) -> None:
        """Stop handing out `conn` (GOAWAY, error, expiry) and free its slot."""
        conn.usable = False
        self.h2_ready.pop(conn, None)
        if conn.idle_timer is not None:
            conn.idle_timer.cancel()
            conn.idle_timer = None
        if conn in self.conns:
            self.conns.discard(conn)
            self.active -= 1
            self._open_for_waiters()
        conn.maybe_close()

    # ------------------------------------------------------------------ shutdown
    def close_all(self) -> None:
        """Close every connection and wake every waiter with an error (sync)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in list(self.conns):
            if isinstance(conn, H2Connection):
                conn.usable = False
                if conn.idle_timer is not None:
                    conn.idle_timer.cancel()
            conn.close()
        self.conns.clear()
        self.idle.clear()
        self.h2_ready.clear()
        self.active = self.opening = 0
        waiters, self.waiters = self.waiters, deque()
        for waiter in waiters:
            waiter.wake(_OPEN)  # each will find the pool closed when it tries to open

    def abandon_all(self) -> None:
        """Close every socket without touching the event loop."""
        for conn in self.conns:
            with contextlib.suppress(Exception):  # best effort by design
                conn.abandon()
        self.conns.clear()
        self.idle.clear()
        self.h2_ready.clear()
        self.waiters = deque()
        self._timer = None


class PoolTransport(httpx.AsyncBaseTransport):
    """surge's connection pool as an httpx transport.

    Give it to `httpx.AsyncClient(transport=...)`. Limits apply per origin. Each response
    carries `extensions["surge.timings"]` (a `surge.Timings`) and `extensions["http_version"]`.

    Args:
        config: Limits, timeouts, HTTP/2 and TLS settings; the defaults if None.
    """

    def __init__(self, config: PoolConfig | None = None) -> None:
        self._config = config if config is not None else PoolConfig()
        self._origins: dict[tuple[bytes, bytes, int | None], _Origin] = {}
        self._backend: Backend | None = None
        self._stats = WaitStats()
        self._ssl: Any = None
        self._closed = False

    def _ssl_context(self) -> Any:
        if self._ssl is None:
            self._ssl = make_ssl_context(self._config.verify, self._config.http2)
        return self._ssl

    def _origin(self, url: httpx.URL) -> _Origin:
        if self._backend is None:
            self._backend = get_backend()
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"surge's pool speaks http:// and https:// only, not {scheme!r}"
            )
        origin = _Origin(self, scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
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
                if conn is None:
                    conn = await origin.wait(pool_timeout)
                acquired = now()
                waited = acquired - start
                self._stats.record(waited)
                if waited > WAIT_WARNING_THRESHOLD:
                    self._stats.slow_wait(
                        waited, acquired, origin.n_waiting, origin.url, origin.max_conn
                    )
                if attempt == 0:
                    timings.queued = waited
                if isinstance(conn, _Open):
                    if self._closed:
                        origin.open_failed()
                        raise httpx.ConnectError("this surge pool was closed (aclose or abandon)")
                    if on_phase is not None:
                        on_phase("connecting")
                    conn = await origin.open(connect_timeout)
                    timings.connect = conn.connect_time
                if conn.http2:
                    timings.http_version = "HTTP/2"
                if on_phase is not None:
                    on_phase("sending")
                try:
                    return await conn.handle(request, read_timeout, write_timeout, timings, start)
                except RetryableError as exc:
                    if attempt:
                        raise exc.error from None
                    start = now()
            raise AssertionError("unreachable")  # pragma: no cover
        except httpx.TransportError as exc:
            exc.request = request
            raise

    async def aclose(self) -> None:
        """Close every connection; later requests raise `httpx.ConnectError`."""
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
            idle += sum(1 for c in origin.conns if isinstance(c, H2Connection) and c.streams == 0)
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
