"""A scriptable HTTP/2 server on the `h2` package, for the transport's hostile-server tests.

Like `RawServer` (tests/_servers.py) it runs in its own thread and asyncio loop, so one
server serves tests on asyncio and trio, and tests wait for server-side facts with
`await server.wait_for(predicate)`. It speaks h2c (prior knowledge) or, given an
`ssl_context`, TLS with ALPN h2. Each request chooses its behaviour by its query string:

    size=N      answer N body bytes, sent as the client's flow-control window allows
    partial=N   send the head and N body bytes, then nothing (the stream stays open)
    stall=1     never answer (the stream stays open)
    hold=1      answer once `release()` was called
    early=CODE  answer CODE at once when the headers arrive, without reading the body,
                then RST_STREAM(NO_ERROR) (RFC 9113 8.1: a server may answer early)
    noack=1     never acknowledge this stream's request body (its upload stalls on the window)
    noack=first as noack=1, on the server's first connection only

Recorded facts (under `cond`): `resets` (stream ids the client reset, in order, and
`reset_times`, `time.monotonic()` as each was read),
`requests` (requests whose headers arrived), `finished` (streams fully answered),
`in_flight` (streams open on the server), `sent` (body bytes sent per stream id),
`bodies` (request body bytes received per stream id), `headers` (each stream's request
header block as decoded, `hpack` tuple classes kept), `goaways_sent`, `settings_acked`
(SETTINGS the client acknowledged). Controls: `set_max_streams`, `goaway`, `drop` (abort
every connection), `pause_reading` / `resume_reading`, `reset_stream`, `release`.

Args:
    ssl_context: Serve TLS with this context (its ALPN should offer h2).
    max_streams: SETTINGS_MAX_CONCURRENT_STREAMS announced.
    initial_window: SETTINGS_INITIAL_WINDOW_SIZE announced (the client's upload window).
    connection_window: Extra bytes the server's connection window is opened by at once.
    hold_preface: Send the server's preface (SETTINGS) only after `release_preface()`.
    refuse_first: Reset the first connection as the client's preface arrives.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
import traceback
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from _servers import _Base

__all__ = ["ScriptedH2Server", "h2_server_ssl_context"]


def h2_server_ssl_context(ca: Any) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 signed by trustme `ca`, offering h2 by ALPN."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ctx.set_alpn_protocols(["h2"])
    return ctx


class _Conn:
    def __init__(self, h2conn: h2.connection.H2Connection, writer: asyncio.StreamWriter) -> None:
        self.h2 = h2conn
        self.writer = writer
        self.pending: dict[int, memoryview] = {}  # body left to send per stream
        self.query: dict[int, dict[str, str]] = {}
        self.held: list[int] = []
        self.index = 0

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.transport.is_closing():
            self.writer.write(data)


class ScriptedH2Server(_Base):
    """A raw HTTP/2 server whose behaviour each request picks by its query string."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_streams: int = 100,
        initial_window: int = 65535,
        connection_window: int = 0,
        hold_preface: bool = False,
        refuse_first: bool = False,
    ) -> None:
        super().__init__()
        self.ssl_context = ssl_context
        self.max_streams = max_streams
        self.initial_window = initial_window
        self.connection_window = connection_window
        self.settings_acked = 0
        self.hold_preface = hold_preface
        self.refuse_first = refuse_first
        self._preface: asyncio.Event | None = None
        self._index = 0
        self._may_read: asyncio.Event | None = None
        self.resets: list[int] = []
        self.reset_times: list[float] = []
        self.finished = 0
        self.goaways_sent = 0
        self.server_resets: list[int] = []
        self.sent: dict[int, int] = {}
        self.bodies: dict[int, int] = {}
        self.headers: dict[int, list[Any]] = {}
        self._conns: list[_Conn] = []

    # ------------------------------------------------------------------ test controls
    def call(self, fn: Any, *args: Any) -> None:
        """Run `fn(*args)` on the server's loop."""
        self.loop.call_soon_threadsafe(fn, *args)

    def set_max_streams(self, value: int) -> None:
        """Announce a new SETTINGS_MAX_CONCURRENT_STREAMS on every open connection."""

        def _set() -> None:
            self.max_streams = value
            for conn in self._conns:
                conn.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: value})
                conn.flush()

        self.call(_set)

    def goaway(self, last_stream_id: int | None = None) -> None:
        """Send GOAWAY(NO_ERROR, last_stream_id) on every open connection (kept open)."""
        from hyperframe.frame import GoAwayFrame

        def _send() -> None:
            for conn in self._conns:
                last = (
                    conn.h2.highest_inbound_stream_id if last_stream_id is None else last_stream_id
                )
                conn.flush()
                conn.writer.write(GoAwayFrame(last_stream_id=last).serialize())
            self._changed(goaways_sent=1)

        self.call(_send)

    def reset_stream(self, sid: int) -> None:
        """On the server's loop: reset stream `sid` (INTERNAL_ERROR) on every connection."""
        for conn in self._conns:
            if sid in conn.query:
                conn.query.pop(sid)
                conn.pending.pop(sid, None)
                conn.h2.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
                conn.flush()
                with self.cond:
                    self.in_flight -= 1
                    self.server_resets.append(sid)
                    self.cond.notify_all()

    def release_preface(self) -> None:
        """Let connections held by `hold_preface` send their SETTINGS."""
        self.call(lambda: self._preface.set())  # type: ignore[union-attr]

    def drop(self) -> None:
        """Abort every open connection (no GOAWAY unless sent before)."""

        def _drop() -> None:
            for conn in self._conns:
                conn.writer.transport.abort()

        self.call(_drop)

    def pause_reading(self) -> None:
        """Stop reading every connection (the client's writes back up)."""
        self.call(lambda: self._may_read.clear())  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        self.call(lambda: self._may_read.set())  # type: ignore[union-attr]

    def release(self) -> None:
        """Answer every held request (hold=1), now and from now on."""

        def _release() -> None:
            assert self._release is not None
            self._release.set()
            for conn in self._conns:
                held, conn.held = conn.held, []
                for sid in held:
                    self._respond(conn, sid)
                conn.flush()

        self.call(_release)

    # ------------------------------------------------------------------ serving
    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._release = asyncio.Event()
        self._may_read = asyncio.Event()
        self._may_read.set()
        self._preface = asyncio.Event()
        if not self.hold_preface:
            self._preface.set()
        server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, backlog=4096, ssl=self.ssl_context
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        for conn in list(self._conns):
            conn.writer.transport.abort()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="ascii")
        h2conn = h2.connection.H2Connection(config)
        h2conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.initial_window,
            },
        )
        conn = _Conn(h2conn, writer)
        conn.index = self._index
        self._index += 1
        self._conns.append(conn)
        self._changed(connections_opened=1)
        if self.refuse_first and conn.index == 0:
            # Once the client's preface arrives, reset the connection (SO_LINGER 0: RST,
            # ECONNRESET on the client), before any preface of ours: its connect fails.
            await reader.read(24)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        assert self._preface is not None
        await self._preface.wait()
        h2conn.initiate_connection()
        if self.connection_window:
            h2conn.increment_flow_control_window(self.connection_window)
        conn.flush()
        assert self._may_read is not None
        try:
            while True:
                await self._may_read.wait()
                data = await reader.read(65536)
                if not data:
                    return
                try:
                    events = h2conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    return
                for event in events:
                    try:
                        self._on_event(conn, event)
                    except Exception:  # a bug in this server: show it, drop the connection
                        traceback.print_exc()
                        raise
                conn.flush()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._conns.remove(conn)
            writer.transport.abort()
            self._changed(connections_closed=1)

    def _on_event(self, conn: _Conn, event: Any) -> None:
        h2conn = conn.h2
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers)
            self.headers[event.stream_id] = list(event.headers)
            query = {k: v[0] for k, v in parse_qs(headers[":path"].partition("?")[2]).items()}
            sid = event.stream_id
            conn.query[sid] = query
            self.bodies[sid] = 0
            self._changed(requests=1, in_flight=1)
            if "early" in query:
                h2conn.send_headers(sid, [(":status", query["early"])], end_stream=True)
                h2conn.reset_stream(sid, h2.errors.ErrorCodes.NO_ERROR)
                self._changed(in_flight=-1, finished=1)
                conn.query.pop(sid, None)
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            with self.cond:
                self.bodies[sid] = self.bodies.get(sid, 0) + len(event.data)
                self.cond.notify_all()
            query = conn.query.get(sid, {})
            if event.flow_controlled_length:
                noack = query.get("noack")
                if noack == "1" or (noack == "first" and conn.index == 0):
                    h2conn.increment_flow_control_window(event.flow_controlled_length)
                else:
                    h2conn.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id in conn.query:
                self._request_done(conn, event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            sid = event.stream_id
            conn.pending.pop(sid, None)
            was_open = conn.query.pop(sid, None) is not None
            with self.cond:
                self.resets.append(sid)
                self.reset_times.append(time.monotonic())
                if was_open:
                    self.in_flight -= 1
                self.cond.notify_all()
        elif isinstance(event, h2.events.SettingsAcknowledged):
            self._changed(settings_acked=1)
        elif isinstance(event, h2.events.WindowUpdated):
            for sid in list(conn.pending):
                self._send_pending(conn, sid)

    def _request_done(self, conn: _Conn, sid: int) -> None:
        query = conn.query[sid]
        if query.get("stall"):
            return
        if query.get("hold"):
            assert self._release is not None
            if not self._release.is_set():
                conn.held.append(sid)
                return
        self._respond(conn, sid)

    def _respond(self, conn: _Conn, sid: int) -> None:
        query = conn.query.get(sid)
        if query is None:
            return
        if "size" in query:
            body = b"x" * int(query["size"])
        elif "partial" in query:
            conn.h2.send_headers(sid, [(":status", "200")])
            left = int(query["partial"])
            while left:
                part = min(left, conn.h2.max_outbound_frame_size)
                conn.h2.send_data(sid, b"x" * part)
                left -= part
            return
        else:
            body = b'{"ok": true, "stream": %d, "echo": %d}' % (sid, self.bodies.get(sid, 0))
        try:
            conn.h2.send_headers(
                sid, [(":status", "200"), ("content-length", str(len(body)))], end_stream=not body
            )
        except h2.exceptions.StreamClosedError:  # reset by the client in the same read
            conn.query.pop(sid, None)
            return
        self.sent[sid] = 0
        if body:
            conn.pending[sid] = memoryview(body)
            self._send_pending(conn, sid)
        else:
            self._stream_answered(conn, sid)

    def _send_pending(self, conn: _Conn, sid: int) -> None:
        h2conn = conn.h2
        view = conn.pending[sid]
        while view:
            try:
                window = min(h2conn.local_flow_control_window(sid), h2conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                conn.pending.pop(sid, None)
                return
            if window <= 0:
                conn.pending[sid] = view
                return
            part, view = view[:window], view[window:]
            h2conn.send_data(sid, bytes(part), end_stream=not view)
            with self.cond:
                self.sent[sid] += len(part)
                self.cond.notify_all()
        conn.pending.pop(sid, None)
        self._stream_answered(conn, sid)

    def _stream_answered(self, conn: _Conn, sid: int) -> None:
        conn.query.pop(sid, None)
        self._changed(in_flight=-1, finished=1)
