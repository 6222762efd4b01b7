"""Loopback test servers for the pool, each in its own thread with its own asyncio loop.

Running in a thread keeps them independent of the test's event loop, so the same server
serves tests on asyncio and on trio. Tests wait for server-side facts (N requests in
flight, a connection closed) with `await server.wait_for(predicate)`, which blocks a worker
thread on a condition variable: no sleeps used as synchronisation.

`RawServer` is a hand-written HTTP/1.1 server whose behaviour each request chooses by its
query string:
    latency=S   answer after S seconds (so ttfb >= S)
    hold=1      keep the request until `release()` is called
    gate=K      keep the request until `open_gate(K)` is called (one gate per key)
    size=N      answer with N body bytes (default a small JSON document)
    chunked=1   send the body with Transfer-Encoding: chunked
    close=1     close the connection silently right after the response (no header)
    connclose=1 answer with `Connection: close`, then keep the socket open (a client
                that reused it anyway would be served again, and be seen doing so)
    drop=1      send the head and half the body, then close
    noreply=1   close the connection without answering
    noreply_once=K  the first request with key K: as noreply; later ones answer
    stall=1     never answer
    lf=1        answer with bare LF line ends
    stray=1     send a stray CRLF right after the body
    early=CODE  answer CODE (Connection: close) before reading the body, then close
    earlyquiet=CODE  as early=, without saying Connection: close
`seen` lists the request targets (path and query) in the order the server read them.
`SilentServer` accepts connections and never reads them (uploads stall).
`H2Server` runs hypercorn (HTTP/2 over TLS with ALPN, or cleartext prior knowledge).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import anyio


class _Base:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # Handlers cut off at shutdown are expected: keep them out of the test output.
        self.loop.set_exception_handler(lambda loop, context: None)
        self.cond = threading.Condition()
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.connections_opened = 0
        self.connections_closed = 0
        self.port = 0
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._release: asyncio.Event | None = None

    @property
    def url(self) -> str:
        scheme = "https" if getattr(self, "ssl_context", None) else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _changed(self, **delta: int) -> None:
        with self.cond:
            for name, value in delta.items():
                setattr(self, name, getattr(self, name) + value)
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.cond.notify_all()

    def wait_until(self, predicate: Callable[[Any], bool], time_limit: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), time_limit)

    async def wait_for(self, predicate: Callable[[Any], bool], time_limit: float = 20.0) -> None:
        ok = await anyio.to_thread.run_sync(self.wait_until, predicate, time_limit)
        assert ok, f"server condition not reached within {time_limit} s"

    def release(self) -> None:
        """Let every held request (hold=1) answer, now and from now on."""

        def _set() -> None:
            assert self._release is not None
            self._release.set()

        self.loop.call_soon_threadsafe(_set)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.run_until_complete(self._close_leftovers())
        self.loop.close()

    async def _close_leftovers(self) -> None:
        """Close what `_main` left open, before the loop goes.

        A socket left to the garbage collector warns (ResourceWarning, an error here) in
        whichever later test happens to collect it: a handler of a connection accepted in
        the last turn, a transport closed gracefully whose buffer never drained.
        """
        await asyncio.sleep(0)  # handlers of connections accepted in the last turn start
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        # The selector loop's own map of open socket transports (private, best effort).
        for transport in list(getattr(self.loop, "_transports", {}).values()):
            transport.abort()
        await asyncio.sleep(0)  # abort closes the socket in the loop's next turn

    async def _main(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "test server did not start"

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)


class RawServer(_Base):
    """A raw HTTP/1.1 server; see the module docstring for per-request behaviours.

    Args:
        ssl_context: Serve TLS with this server context (ALPN offers http/1.1 only).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.ssl_context = ssl_context
        self.noreply_done: set[str] = set()
        self.seen: list[str] = []
        self._gates: dict[str, asyncio.Event] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._release = asyncio.Event()
        server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, backlog=4096, ssl=self.ssl_context
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._changed(connections_opened=1)
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                if "early=" in target or "earlyquiet=" in target:
                    # Answer before reading the body, then close (as a 413 does).
                    query = parse_qs(target.partition("?")[2])
                    quiet = "earlyquiet" in query
                    code = query["earlyquiet" if quiet else "early"][0]
                    self._changed(requests=1)
                    writer.write(
                        f"HTTP/1.1 {code} Too Large\r\nContent-Length: 2\r\n"
                        f"{'' if quiet else 'Connection: close' + chr(13) + chr(10)}\r\nno".encode()
                    )
                    await writer.drain()
                    writer.close()
                    return
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await self._read_chunked(reader)
                with self.cond:
                    self.seen.append(target)
                self._changed(requests=1, in_flight=1)
                try:
                    keep = await self._answer(writer, method, target, body)
                finally:
                    self._changed(in_flight=-1)
                if not keep:
                    writer.transport.abort()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # (a cancelled handler must not end cancelled: asyncio 3.11 logs it)
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()
            self._changed(connections_closed=1)

    def _gate(self, key: str) -> asyncio.Event:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Event()
        return gate

    def open_gate(self, key: str) -> None:
        """Let the requests held by `gate=key` answer (now and from now on)."""
        self.loop.call_soon_threadsafe(lambda: self._gate(key).set())

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        out = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return out
            out += await reader.readexactly(size)
            await reader.readexactly(2)

    async def _answer(
        self, writer: asyncio.StreamWriter, method: str, target: str, body: bytes
    ) -> bool:
        query = {k: v[0] for k, v in parse_qs(target.partition("?")[2]).items()}
        assert self._release is not None
        if "latency" in query:
            await asyncio.sleep(float(query["latency"]))
        if query.get("hold"):
            await self._release.wait()
        if "gate" in query:
            await self._gate(query["gate"]).wait()
        if query.get("stall"):
            await asyncio.Event().wait()
        if query.get("noreply"):
            return False
        once = query.get("noreply_once")
        if once and once not in self.noreply_done:
            self.noreply_done.add(once)
            return False
        if "size" in query:
            payload = b"x" * int(query["size"])
        else:
            payload = json.dumps(
                {"ok": True, "method": method, "path": target, "echo": len(body)}
            ).encode()
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if query.get("connclose"):
            head += "Connection: close\r\n"
        if query.get("chunked"):
            writer.write(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(payload), 7):
                part = payload[i : i + 7]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            writer.write(b"0\r\n\r\n")
        elif query.get("drop"):
            writer.write(head.encode() + f"Content-Length: {len(payload)}\r\n\r\n".encode())
            writer.write(payload[: len(payload) // 2])
            await writer.drain()
            return False
        else:
            head += f"Content-Length: {len(payload)}\r\n\r\n"
            if query.get("lf"):
                head = head.replace("\r\n", "\n")
            tail = b"\r\n" if query.get("stray") else b""
            writer.write(head.encode() + (b"" if method == "HEAD" else payload) + tail)
        await writer.drain()
        return not query.get("close")


class H2Server(_Base):
    """hypercorn serving a tiny ASGI app over HTTP/2 (TLS + ALPN, or h2c prior knowledge).

    The app answers JSON; `?hold=1` keeps a request until `release()`; `?latency=S`.
    `clients` collects the client ports seen, i.e. the connections used; `seen` the
    request targets (path and query) in the order the app received them.
    """

    def __init__(
        self, *, tls: Any = None, max_streams: int = 100, keep_alive_timeout: float = 30.0
    ) -> None:
        super().__init__()
        self.tls = tls
        self.max_streams = max_streams
        self.keep_alive_timeout = keep_alive_timeout
        self.clients: set[tuple[str, int]] = set()
        self.http_versions: set[str] = set()
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert self._release is not None
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        with self.cond:
            self.clients.add(tuple(scope["client"]))
            self.http_versions.add(scope["http_version"])
            query_string = scope["query_string"].decode()
            self.seen.append(scope["path"] + ("?" + query_string if query_string else ""))
        self._changed(requests=1, in_flight=1)
        try:
            if "latency" in query:
                await asyncio.sleep(float(query["latency"]))
            if query.get("hold"):
                await self._release.wait()
            payload = json.dumps({"ok": True, "echo": len(body), "path": scope["path"]}).encode()
            if "size" in query:
                payload = b"x" * int(query["size"])
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": payload})
        finally:
            self._changed(in_flight=-1)

    async def _main(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        self._stop = asyncio.Event()
        self._release = asyncio.Event()
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.h2_max_concurrent_streams = self.max_streams
        config.keep_alive_timeout = self.keep_alive_timeout
        config.graceful_timeout = 2.0
        config.accesslog = None
        config.errorlog = None
        config.loglevel = "ERROR"
        if self.tls is not None:
            cert, key = self.tls
            config.certfile = cert
            config.keyfile = key
            config.alpn_protocols = ["h2", "http/1.1"]
        sockets = config.create_sockets()
        insecure = sockets.insecure_sockets or sockets.secure_sockets
        self.port = insecure[0].getsockname()[1]
        for sock in insecure:
            sock.close()
        config.bind = [f"127.0.0.1:{self.port}"]
        task = asyncio.ensure_future(
            serve(self._app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        )
        for _ in range(500):  # until hypercorn listens (setup, not test synchronisation)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            break
        self._ready.set()
        await task


class RawH2Server(_Base):
    """A minimal cleartext HTTP/2 server (h2 prior knowledge) that the test can cut off.

    Answers every request at once with a small JSON body. `close_connections()` sends
    GOAWAY on every open connection and closes it, as a server dropping idle
    connections does; `connections_closed` counts them. What the client said of its own
    accord is kept: `client_resets` ((stream id, error code) of each RST_STREAM) and
    `client_goaways` (the error code of each GOAWAY).
    """

    def __init__(self) -> None:
        super().__init__()
        self._conns: dict[asyncio.StreamWriter, Any] = {}
        self.client_resets: list[tuple[int, int]] = []
        self.client_goaways: list[int] = []

    def close_connections(self) -> None:
        self.loop.call_soon_threadsafe(self._close_all)

    def _close_all(self) -> None:
        for writer, conn in list(self._conns.items()):
            conn.close_connection()  # GOAWAY
            writer.write(conn.data_to_send())
            writer.transport.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._release = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        self._close_all()
        server.close()

    def _on_request(self, conn: Any, writer: asyncio.StreamWriter, stream_id: int) -> None:
        """Answer stream `stream_id` at once (subclasses may hold it instead)."""
        self._answer(conn, stream_id, b'{"ok": true}')

    @staticmethod
    def _answer(conn: Any, stream_id: int, body: bytes) -> None:
        conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(len(body)))])
        conn.send_data(stream_id, body, end_stream=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection
        import h2.events

        self._changed(connections_opened=1)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self._conns[writer] = conn
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.StreamEnded):
                        self._changed(requests=1)
                        self._on_request(conn, writer, event.stream_id)
                    elif isinstance(event, h2.events.StreamReset):
                        self.client_resets.append((event.stream_id, int(event.error_code or 0)))
                        self._changed()
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        self.client_goaways.append(int(event.error_code or 0))
                        self._changed()
                        return
                writer.write(conn.data_to_send())
                if writer.transport.is_closing():
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._conns.pop(writer, None)
            writer.transport.abort()
            self._changed(connections_closed=1)


class GoawayH2Server(RawH2Server):
    """A `RawH2Server` whose first connection ends with GOAWAY while streams are in flight.

    On its first connection it holds requests until `streams` of them are open, then sends
    GOAWAY with last_stream_id = the lowest of them, and only then answers that one
    stream; the others it never processes (as GOAWAY tells the client) and it takes no new
    stream there. It keeps that connection open for the client to close. Later
    connections answer at once. Every answer is `{"conn": k, "stream": id}`, k counting
    connections from 0. `refused` counts streams opened on the first connection after
    the GOAWAY (there should be none).

    Args:
        streams: How many streams to wait for before the GOAWAY.
    """

    def __init__(self, streams: int) -> None:
        super().__init__()
        self.streams = streams
        self.refused = 0
        self._index: dict[asyncio.StreamWriter, int] = {}
        self._held: list[int] = []
        self._goaway_sent = False

    def _on_request(self, conn: Any, writer: asyncio.StreamWriter, stream_id: int) -> None:
        from hyperframe.frame import GoAwayFrame

        index = self._index.setdefault(writer, len(self._index))
        if index > 0:
            self._answer(conn, stream_id, json.dumps({"conn": index, "stream": stream_id}).encode())
            return
        if self._goaway_sent:
            self._changed(refused=1)
            return
        self._held.append(stream_id)
        if len(self._held) < self.streams:
            return
        first = min(self._held)
        # Written by hand: h2's close_connection() would forbid answering `first` after it.
        writer.write(conn.data_to_send() + GoAwayFrame(last_stream_id=first).serialize())
        self._goaway_sent = True
        self._answer(conn, first, json.dumps({"conn": 0, "stream": first}).encode())


class SilentServer(_Base):
    """Accepts connections and never reads them, so a client's upload stalls.

    Its receive buffer is small (64 KiB), so a body of a few MB fills it and then the
    client's send buffer. `drain()` starts reading (and discarding) every connection, so
    that the server notices when the client has closed one (`connections_closed`).
    """

    def __init__(self) -> None:
        super().__init__()
        self._transports: list[asyncio.Transport] = []
        self._draining = False

    def drain(self) -> None:
        def _resume() -> None:
            self._draining = True
            for transport in self._transports:
                if not transport.is_closing():
                    transport.resume_reading()

        self.loop.call_soon_threadsafe(_resume)

    def _protocol(self) -> asyncio.Protocol:
        server = self

        class _Silent(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                if not server._draining:
                    transport.pause_reading()
                server._transports.append(transport)
                server._changed(connections_opened=1)

            def connection_lost(self, exc: Exception | None) -> None:
                server._changed(connections_closed=1)

        return _Silent()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # inherited
        sock.bind(("127.0.0.1", 0))
        server = await self.loop.create_server(self._protocol, sock=sock)
        self.port = sock.getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for transport in self._transports:
            transport.abort()


@contextlib.contextmanager
def running(server: _Base) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def serving(server: _Base) -> AsyncIterator[Any]:
    """Run `server` around an async block; stops it without blocking the test's loop."""
    await anyio.to_thread.run_sync(server.start)
    try:
        yield server
    finally:
        await anyio.to_thread.run_sync(server.stop)


def client_ssl_context(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx
