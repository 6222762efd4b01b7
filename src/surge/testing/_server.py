"""`SimulatedServer`: the simulated OpenAI-compatible server and its lifecycle.

The server is hypercorn serving `SimApp` on a socket bound here (so port 0 gives a free
port known before any request). It runs either in a background thread with its own
asyncio loop (`with SimulatedServer() as server:`) or inside the caller's event loop,
asyncio or trio (`async with SimulatedServer() as server:`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, cast

import anyio
from anyio.abc import TaskStatus
from hypercorn.config import Config, Sockets

from surge._errors import ConfigError
from surge.testing._app import SimApp
from surge.testing._failures import Failure, FailurePlan
from surge.testing._latency import Latency, latency_sampler
from surge.testing._replies import ChatRequest, ReplyFunction, ReplyValue, default_reply
from surge.testing._stats import ServerStats, StatsRecorder

__all__ = ["SimulatedServer"]

_BACKLOG = 4096
_STARTUP_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0
# HTTP/2 streams a connection may carry at once. hypercorn keeps every open stream (and,
# for a moment, each one closing) in a `priority` tree whose limit is 1000; one insert
# more raises inside its connection task, which then stops sending on that connection
# without closing it, so every request on it hangs. 500 leaves that margin.
_H2_MAX_STREAMS = 500


class _SimConfig(Config):
    """hypercorn's `Config`, serving TLS from a ready `ssl.SSLContext`."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._ssl_context = ssl_context

    @property
    def ssl_enabled(self) -> bool:
        return self._ssl_context is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context


def _tls_context(tls: ssl.SSLContext | tuple[str, str] | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    if isinstance(tls, ssl.SSLContext):
        context = tls
    elif isinstance(tls, tuple) and len(tls) == 2 and all(isinstance(p, str) for p in tls):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # HTTP/2 needs TLS 1.2 or later
        try:
            context.load_cert_chain(certfile=tls[0], keyfile=tls[1])
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"tls=(certfile, keyfile): cannot load {tls}: {exc}") from exc
    else:
        raise ConfigError(
            f"tls= takes an ssl.SSLContext or a (certfile, keyfile) tuple, not {tls!r}"
        )
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def _reply_function(reply: Callable[..., Any] | str | None) -> ReplyFunction:
    if reply is None:
        return default_reply
    if isinstance(reply, str):
        text = reply
        return lambda _request: text
    if callable(reply):
        return reply
    raise ConfigError(f"reply= takes a str, a callable or None, not {type(reply).__name__}")


def _current_backend() -> str:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        trio = sys.modules.get("trio")
        if trio is not None:
            try:
                trio.lowlevel.current_task()
            except RuntimeError:
                pass
            else:
                return "trio"
        raise ConfigError(
            "async with SimulatedServer() needs a running asyncio or trio loop"
        ) from None
    return "asyncio"


class SimulatedServer:
    """An OpenAI-compatible chat completion server on loopback, for tests and benchmarks.

    Serves `POST /v1/chat/completions` (plain and `"stream": true`), `GET /v1/models`
    and `GET /v1/models/{model}` over HTTP/1.1, HTTP/2 cleartext (prior knowledge or
    upgrade) and, with `tls`, HTTPS with ALPN offering h2 and http/1.1.

    Use it as a context manager. `with` runs it in a background thread with its own
    asyncio loop (reply functions then run in that thread); `async with` runs it in the
    caller's event loop, asyncio or trio. It can be started again after it stopped.

    Args:
        latency: Seconds from the moment a request holds a slot to its first response
            byte: a number, or a callable sampled per request (see `uniform`,
            `lognormal`).
        slots: How many chat completions are served at once; the rest queue FIFO inside
            the server, as with llama.cpp's parallel slots. None = no limit.
        reply: The answer: a string (always that text), or a function of the
            `ChatRequest` (sync or async) returning the text, a (partial) completion body
            as a dict, or a `Reply`. None = a short echo of the last user message.
        failures: Failures to inject (`Failure.status(429, rate=0.2)`, ...); for each
            request the first one that hits applies.
        stream_tokens_per_second: Pace of streamed chunks (one word per chunk);
            `float("inf")` sends them all at once.
        tls: Serve HTTPS: an `ssl.SSLContext` (its ALPN protocols are set to h2 and
            http/1.1) or a `(certfile, keyfile)` pair of PEM paths.
        host: Address to listen on; keep the loopback default in tests.
        port: Port to listen on; 0 = a free port chosen by the system (see `url`).
        model: The model name of `/v1/models` and of answers to requests naming none.
        seed: Seed of the failure selection by `rate`.

    Raises:
        ConfigError: An argument that cannot work.
    """

    def __init__(
        self,
        *,
        latency: Latency = 0.0,
        slots: int | None = None,
        reply: Callable[[ChatRequest], ReplyValue] | ReplyFunction | str | None = None,
        failures: Sequence[Failure] | Failure | None = None,
        stream_tokens_per_second: float = 1000.0,
        tls: ssl.SSLContext | tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "surge-sim",
        seed: int = 0,
    ) -> None:
        if slots is not None and (
            isinstance(slots, bool) or not isinstance(slots, int) or slots < 1
        ):
            raise ConfigError(f"slots must be an int >= 1 or None, got {slots!r}")
        if not stream_tokens_per_second > 0:
            raise ConfigError(
                f"stream_tokens_per_second must be > 0, got {stream_tokens_per_second!r}"
            )
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {port!r}")
        if not host:
            raise ConfigError("host must not be empty")
        self._latency = latency_sampler(latency)
        self._slots = slots
        self._reply = _reply_function(reply)
        self._failures = FailurePlan(failures, seed)
        self._tokens_per_second = float(stream_tokens_per_second)
        self._ssl = _tls_context(tls)
        self._host = host
        self._port = port
        self._model = model
        self._stats = StatsRecorder()
        self._bound_port: int | None = None
        self._stop: anyio.Event | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._group: Any = None
        self._thread_error: BaseException | None = None

    # -- what tests read ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. "http://127.0.0.1:PORT/v1".

        Raises:
            ConfigError: The server is not running.
        """
        if self._bound_port is None:
            raise ConfigError(
                "SimulatedServer.url is known once the server runs: use it "
                "inside `with SimulatedServer() as server:`"
            )
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{host}:{self._bound_port}/v1"

    @property
    def port(self) -> int:
        """The port the server listens on.

        Raises:
            ConfigError: The server is not running.
        """
        if self._bound_port is None:
            raise ConfigError("SimulatedServer.port is known once the server runs")
        return self._bound_port

    @property
    def stats(self) -> ServerStats:
        """A consistent snapshot of the server's counters; safe to read from any thread."""
        return self._stats.snapshot()

    def cancellations(self) -> dict[str, float]:
        """When the server saw each abandoned chat completion go, by request id.

        Returns:
            The `x-request-id` the server sent (`ChatStream.request_id` on the client)
            -> `time.monotonic()` at the moment the server learnt that the client had
            closed the connection or reset the stream before the answer was complete.
            Compare with the client's own `time.monotonic()` (same process) to measure
            how fast an abandoned stream frees the server.
        """
        return self._stats.cancellations()

    def reset_stats(self) -> None:
        """Zero the counters (requests in the server now stay counted as in flight)."""
        self._stats.reset()

    async def wait_for(self, predicate: Callable[[ServerStats], bool]) -> ServerStats:
        """Wait until `predicate(stats)` holds, without polling.

        Call it from the server's own event loop: a test using `async with`, or a reply
        function. Combine with `anyio.fail_after` to bound the wait.

        Args:
            predicate: A test of the counters, e.g. `lambda s: s.queued == 3`.

        Returns:
            The snapshot that satisfied the predicate.

        Raises:
            ConfigError: The server is not running, or this is another thread's loop
                (use `wait_for_blocking` from the thread of a `with` block).
        """
        if self._stop is None or threading.get_ident() != self._loop_thread:
            raise ConfigError(
                "SimulatedServer.wait_for must run in the server's event loop; "
                "from another thread use wait_for_blocking()"
            )
        return await self._stats.wait_for(predicate)

    def wait_for_blocking(
        self, predicate: Callable[[ServerStats], bool], timeout: float = 30.0
    ) -> ServerStats:
        """Block the calling thread until `predicate(stats)` holds.

        For the thread of a `with SimulatedServer()` block (never call it from the
        server's own loop: it would block the server).

        Args:
            predicate: A test of the counters, e.g. `lambda s: s.in_flight == 10`.
            timeout: Seconds to wait at most.

        Returns:
            The snapshot that satisfied the predicate.

        Raises:
            ConfigError: Called from the server's own event loop thread.
            TimeoutError: The predicate did not hold within `timeout`.
        """
        if threading.get_ident() == self._loop_thread:
            raise ConfigError(
                "wait_for_blocking would block the server's own loop; "
                "use `await server.wait_for(...)` there"
            )
        stats = self._stats.wait_for_blocking(predicate, timeout)
        if stats is None:
            raise TimeoutError(
                f"server stats did not reach the condition in {timeout} s; last: {self.stats}"
            )
        return stats

    # -- running -----------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        if self._bound_port is not None:
            raise ConfigError("this SimulatedServer is already running")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted sockets inherit it (Linux, macOS): a streamed chunk goes out at
            # once instead of waiting for the client's delayed ACK of the headers (Nagle),
            # which added ~40 ms to every stream's first token. uvicorn does the same.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self._host, self._port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self._host}:{self._port}: {exc}") from exc
        self._bound_port = sock.getsockname()[1]
        return sock

    def _config(self) -> Config:
        config = _SimConfig(self._ssl)
        config.accesslog = None
        config.errorlog = logging.getLogger("surge.testing.hypercorn")
        config.backlog = _BACKLOG
        config.keep_alive_timeout = 75.0  # longer than clients' idle expiry (surge: 15 s)
        config.keep_alive_max_requests = 1_000_000
        config.h2_max_concurrent_streams = _H2_MAX_STREAMS
        config.graceful_timeout = 2.0
        config.read_timeout = None
        return config

    async def _serve(
        self, sock: socket.socket, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run hypercorn on `sock` until `self._stop` is set; report when it is up."""
        started = anyio.Event()
        stop = self._stop
        assert stop is not None
        app = SimApp(
            latency=self._latency,
            slots=self._slots,
            reply=self._reply,
            failures=self._failures,
            stream_tokens_per_second=self._tokens_per_second,
            model=self._model,
            stats=self._stats,
            on_startup=started.set,
        )

        async def shutdown_trigger() -> None:
            await stop.wait()
            app.close()

        from hypercorn.app_wrappers import ASGIWrapper

        wrapped = ASGIWrapper(cast(Any, app))
        secure = [sock] if self._ssl is not None else []
        sockets = Sockets(
            secure_sockets=secure, insecure_sockets=[] if secure else [sock], quic_sockets=[]
        )
        config = self._config()
        if _current_backend() == "trio":
            from hypercorn.trio.run import worker_serve as trio_serve

            serve: Callable[[], Any] = lambda: trio_serve(  # noqa: E731
                wrapped, config, sockets=sockets, shutdown_trigger=shutdown_trigger
            )
        else:
            from hypercorn.asyncio.run import worker_serve as asyncio_serve

            serve = lambda: asyncio_serve(  # noqa: E731
                wrapped, config, sockets=sockets, shutdown_trigger=shutdown_trigger
            )
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(serve)
                await started.wait()
                task_status.started()
        finally:
            sock.close()

    async def __aenter__(self) -> SimulatedServer:
        sock = self._bind()
        try:
            self._stop = anyio.Event()
            self._loop_thread = threading.get_ident()
            self._group = anyio.create_task_group()
            await self._group.__aenter__()
            try:
                await self._group.start(self._serve, sock)
            except BaseException:
                await self._group.__aexit__(*sys.exc_info())
                raise
        except BaseException:
            sock.close()
            self._reset_run_state()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stop is not None
        assert self._group is not None
        self._stop.set()
        try:
            return bool(await self._group.__aexit__(exc_type, exc, tb))
        finally:
            self._reset_run_state()

    def __enter__(self) -> SimulatedServer:
        sock = self._bind()
        ready = threading.Event()
        self._thread_error = None

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._stop = anyio.Event()
            async with anyio.create_task_group() as group:
                await group.start(self._serve, sock)
                ready.set()

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:  # reported to the thread that started us
                self._thread_error = exc
                _log_thread_error(exc, ready.is_set())
            finally:
                sock.close()
                ready.set()

        self._thread = threading.Thread(target=run, name="surge-simulated-server", daemon=True)
        self._thread.start()
        if not ready.wait(_STARTUP_TIMEOUT) or self._thread_error is not None:
            error = self._thread_error
            self._stop_thread()
            self._reset_run_state()
            raise ConfigError(f"the simulated server did not start: {error!r}") from error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._stop_thread()
        finally:
            self._reset_run_state()

    def _stop_thread(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(_STOP_TIMEOUT)

    def _reset_run_state(self) -> None:
        self._bound_port = None
        self._stop = None
        self._thread = None
        self._loop = None
        self._loop_thread = None
        self._group = None

    def __repr__(self) -> str:
        where = self.url if self._bound_port is not None else "not running"
        return f"<SimulatedServer {where}>"


def _log_thread_error(exc: BaseException, running: bool) -> None:
    if running:
        logging.getLogger("surge.testing").error(
            "the simulated server's thread failed", exc_info=exc
        )
