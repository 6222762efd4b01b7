"""The pool's state for one origin: idle connections, HTTP/2 streams, waiters, counts.

Acquiring and releasing touch only the ends of these queues, whatever the number of
requests in flight or waiting: a released connection goes straight to the first live
waiter, and a waiter that gave up (cancelled, timed out) is skipped when it reaches the
front (lazy deletion), never searched for. Every method but `wait` and `open` is sync, so
the counts can never be seen half-updated.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Union

import httpx

from surge._transport.backend import Backend, Timer, TooManyOpenFiles, Waiter
from surge._transport.h1 import H1Connection
from surge._transport.h2 import H2Connection

if TYPE_CHECKING:
    from surge._transport.pool import PoolTransport

__all__ = ["OPEN", "Conn", "Open", "Origin"]


class Open:
    """Handed to a request instead of a connection: "you may open one"."""

    __slots__ = ()


OPEN = Open()
_DEFAULT_STREAMS = 100
_CLOSED = "this surge pool was closed (aclose or abandon)"
logger = logging.getLogger("surge")

Conn = Union[H1Connection, H2Connection]  # noqa: UP007 - a runtime alias on 3.10


class Origin:
    """The pool's state for one origin; every method but `wait` and `open` is sync."""

    __slots__ = (
        "_fds_error",
        "_timer",
        "active",
        "backend",
        "closed",
        "conns",
        "expiry",
        "h2_cap",
        "h2_idle",
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
        "stats",
        "tls",
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
        self.tls = pool._tls() if scheme == "https" else None
        self.idle: deque[H1Connection] = deque()
        self.h2_ready: dict[H2Connection, None] = {}
        self.h2_idle: set[H2Connection] = set()  # usable, no stream open
        self.conns: set[Conn] = set()
        self.waiters: deque[Waiter] = deque()
        self.n_waiting = 0
        self.active = 0
        self.opening = 0
        self.in_use = 0
        self.h2_cap = _DEFAULT_STREAMS
        self._timer: Timer | None = None
        self._fds_error: BaseException | None = None  # EMFILE, to warn of once settled
        self.closed = False

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn()` in a background task of the pool's event loop."""
        self.backend.spawn(fn)

    def waiter(self) -> Waiter:
        """Return a new waiter of the pool's event loop (for a parked HTTP/2 stream)."""
        return self.backend.waiter()

    # ------------------------------------------------------------------ acquire
    def try_acquire(self) -> Conn | Open | None:
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
            return OPEN
        return None

    async def wait(self, time_limit: float | None) -> Conn | Open:
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
            reason = self.wait_reason()
            if reason is None:
                reason = f"all max_connections={self.max_conn} connections to it are busy"
                advice = "Raise max_connections=... if the server can take more requests at once"
            else:
                advice = "The server (or the network) is slow to accept connections"
            raise httpx.PoolTimeout(
                f"timed out after {time_limit} s waiting for a free connection to {self.url}: "
                f"{reason} and {self.n_waiting + 1} request(s) were waiting. "
                f"{advice}, or raise the pool= timeout (None waits without limit)."
            )
        value: Conn | Open | BaseException = waiter.value
        if isinstance(value, BaseException):
            raise type(value)(str(value))
        return value

    def wait_state(self) -> tuple[int, int, int]:
        """Return what `wait_reason` reads (opening, open, active), to keep for later."""
        return (self.opening, len(self.conns), self.active)

    def wait_reason(self, state: tuple[int, int, int] | None = None) -> str | None:
        """Say why requests wait when it is not the limit (None: all connections busy).

        Args:
            state: `wait_state()` as it was when the wait began (default: now). A request
                handed the connection it waited for says that it waited for a connect,
                though by then none is being opened any more.
        """
        opening, n_open, active = self.wait_state() if state is None else state
        if opening and n_open == 0 and (self.multiplex or active < self.max_conn):
            return (
                f"the pool was still connecting to it ({opening} connection(s) being "
                f"opened, none open yet)"
            )
        if active < self.max_conn and self.multiplex:
            return (
                f"every stream of its {n_open} HTTP/2 connection(s) was busy and "
                f"{opening} more were being opened"
            )
        return None

    def fail_waiters(self, error: BaseException, most: int) -> None:
        """Wake up to `most` waiters (from the front) with `error` to raise."""
        waiters = self.waiters
        while most > 0 and waiters:
            if waiters.popleft().wake(error):
                self.n_waiting -= 1
                most -= 1

    def _left_queue(self) -> None:
        self.n_waiting -= 1
        waiters = self.waiters
        if self.n_waiting == 0:
            waiters.clear()  # only dead waiters are left
        elif len(waiters) > 1024 and len(waiters) > 3 * self.n_waiting:
            # Many gave up behind a few that still wait: drop the dead (amortized O(1)).
            self.waiters = deque(w for w in waiters if w.pending())

    def _give_back(self, value: Conn | Open | BaseException) -> None:
        if isinstance(value, BaseException):
            return
        if value is OPEN:
            self.open_failed()
        elif isinstance(value, H2Connection):
            self.release_stream(value)
        else:
            self.release(value)  # type: ignore[arg-type]

    def _hand_over(self, value: Conn | Open) -> bool:
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
            if not self._hand_over(OPEN):
                return
            self.active += 1
            self.opening += 1

    # ------------------------------------------------------------------ open
    async def open(self, time_limit: float | None) -> Conn | None:
        """Open a connection with the right obtained from `try_acquire` or `wait`.

        Returns:
            The connection, or None if the process is out of file descriptors while this
            origin has connections open: the origin's limit is lowered to those, and the
            request should wait for one of them (`wait`).
        """
        try:
            return await self._open(time_limit)
        finally:
            if self._fds_error is not None and self.opening == 0:
                self._warn_out_of_files(self._fds_error)

    async def _open(self, time_limit: float | None) -> Conn | None:
        now = self.now
        started = now()
        try:
            stream = await self.backend.connect(self.host, self.port, self.tls, time_limit)
        except TooManyOpenFiles as exc:
            self.active -= 1
            self.opening -= 1
            if self.active <= 0:
                self._open_for_waiters()
                raise  # nothing open or opening that could free up
            self._out_of_files(exc)
            return None
        except httpx.TransportError as exc:
            self.open_failed(exc)
            raise
        except BaseException:
            self.open_failed()
            raise
        self.stats.connections_opened += 1
        if stream.alpn == "h2" or (self.prior_knowledge and stream.alpn is None):
            conn2 = H2Connection(stream, self, self.url)
            try:
                await conn2.start(time_limit)
            except httpx.TransportError as exc:
                stream.close()
                self.open_failed(exc)
                raise
            except BaseException:
                stream.close()
                self.open_failed()
                raise
            conn2.connect_time = now() - started
            if self.closed:
                stream.close()
                raise httpx.ConnectError(_CLOSED)
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
        if self.closed:
            stream.close()
            raise httpx.ConnectError(_CLOSED)
        self.opening -= 1
        conn = H1Connection(stream, self, now() - started)
        self.conns.add(conn)
        self.in_use += 1
        if self.multiplex:
            # The server chose HTTP/1.1: stop waiting for multiplexing.
            self.multiplex = False
            self._open_for_waiters()
        return conn

    def open_failed(self, error: BaseException | None = None) -> None:
        """Give back the right to open a connection.

        Args:
            error: Why the connect failed. Under HTTP/2 the requests queued behind this
                connect (up to one connection's streams) fail with it at once, rather
                than each trying again in turn, one connect timeout after another.
        """
        if self.closed:
            return  # close_all zeroed the counts
        self.active -= 1
        self.opening -= 1
        if error is not None and self.multiplex and self.n_waiting:
            self.fail_waiters(error, self.h2_cap)
        self._open_for_waiters()

    def _out_of_files(self, exc: BaseException) -> None:
        """Lower this origin's limit to the connections it has, or still opens.

        The warning waits until no connect is in flight: connects begun together fail
        one after another, each lowering the limit, and only then is it what is open.
        """
        self.max_conn = max(1, self.active)
        if not self.pool._warned_fds:
            self._fds_error = exc

    def _warn_out_of_files(self, exc: BaseException) -> None:
        """Warn once per pool, naming the limit the origin settled at."""
        self._fds_error = None
        pool = self.pool
        if not pool._warned_fds:
            pool._warned_fds = True
            logger.warning(
                "surge pool: the process ran out of file descriptors (%s) opening a "
                "connection to %s; requests now queue for its %d open connection(s) instead "
                "of failing. Raise the limit to get more at once: `ulimit -n 65536` in the "
                "shell, or resource.setrlimit(resource.RLIMIT_NOFILE, ...) at start-up.",
                exc,
                self.url,
                self.max_conn,
            )

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

    def _close(self, conn: Conn) -> None:
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
        if conn.streams == 1:
            self.h2_idle.discard(conn)
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
        if conn.streams >= conn.capacity:
            return  # the server lowered MAX_CONCURRENT_STREAMS: no room yet
        if self.n_waiting and self._hand_over(conn):
            self.reserve_stream(conn)
            return
        if conn.streams == 0:
            if len(self.idle) + len(self.h2_idle) >= self.max_keepalive or self.pool._closed:
                self.connection_unusable(conn)  # max_keepalive_connections holds for HTTP/2
                return
            self.h2_idle.add(conn)
            if math.isfinite(self.expiry):
                conn.idle_since = self.now()
                conn.idle_timer = self.backend.call_later(
                    self.expiry, lambda: self._expire_h2(conn)
                )
        self.h2_ready[conn] = None

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
        self.h2_idle.discard(conn)
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
        self.h2_idle.clear()
        self.closed = True
        self.active = self.opening = 0
        waiters, self.waiters = self.waiters, deque()
        self.n_waiting = 0
        error = httpx.ConnectError(_CLOSED + " while the request waited for a connection")
        for waiter in waiters:
            waiter.wake(error)

    def abandon_all(self) -> None:
        """Close every socket without touching the event loop."""
        for conn in self.conns:
            with contextlib.suppress(Exception):  # best effort by design
                conn.abandon()
        self.conns.clear()
        self.idle.clear()
        self.h2_ready.clear()
        self.h2_idle.clear()
        self.waiters = deque()
        self._timer = None
