"""The client side of one HTTP/2 connection, sans I/O: bytes in, events out, frames queued.

`H2Protocol` keeps what RFC 9113 asks a client to keep and nothing more: the streams it
opened, both directions' flow-control windows, the server's settings, the HPACK decoder,
a header block still arriving in CONTINUATION frames. Everything it costs is per frame,
O(1) per stream; `H2Connection` (`h2.py`) does the I/O and hands each event to its stream.

A server that breaks the protocol is met as the RFC says: an error in one stream (a
malformed response, RFC 9113 8.1.1) resets that stream and reaches its request as a `Reset`
event with a reason; an error of the connection queues a GOAWAY and raises `H2ProtocolError`,
whose message names the frame and what was wrong with it.
"""

from __future__ import annotations

import struct
from typing import cast

import hpack

from surge._transport.h2_events import (
    Data,
    Ended,
    Event,
    GoAway,
    H2ProtocolError,
    NoStreamIds,
    Reset,
    Response,
    SettingsChanged,
    StreamClosed,
    WindowOpened,
)
from surge._transport.h2_frames import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    FRAME_NAMES,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    ErrorCode,
    Violation,
    frame,
    unpad,
)
from surge._transport.h2_headers import Malformed
from surge._transport.h2_stream import StreamState

__all__ = ["H2Protocol"]

_DEFAULT_WINDOW = 65_535
_MAX_WINDOW = 2**31 - 1
_MAX_STREAM_ID = 2**31 - 1
_FRAME_LIMIT = 16_384  # our SETTINGS_MAX_FRAME_SIZE: the default, never raised
_MAX_HEADER_BLOCK = 256 * 1024  # compressed bytes of one header block (HEADERS + CONTINUATION)
_MAX_HEADER_LIST = 256 * 1024  # decoded bytes of one header list
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")

_PROTOCOL = ErrorCode.PROTOCOL_ERROR
_FRAME_SIZE = ErrorCode.FRAME_SIZE_ERROR
_FLOW = ErrorCode.FLOW_CONTROL_ERROR

# SETTINGS identifiers (RFC 9113 6.5.2).
_ENABLE_PUSH = 0x2
_MAX_CONCURRENT_STREAMS = 0x3
_INITIAL_WINDOW_SIZE = 0x4
_MAX_FRAME_SIZE = 0x5


class H2Protocol:
    """The client side of one HTTP/2 connection, without I/O.

    Args:
        window: The receive window we offer, per stream and for the connection.

    Attributes:
        max_concurrent_streams: The server's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited
            until it says).
        max_frame_size: The largest frame payload the server accepts.
        goaway: The server's GOAWAY, once one came.
    """

    def __init__(self, window: int) -> None:
        self._window = window
        self._out: list[bytes] = []
        self._buf = bytearray()
        self._streams: dict[int, StreamState] = {}
        self._next_sid = 1
        self._conn_send = _DEFAULT_WINDOW
        self._conn_recv = _DEFAULT_WINDOW + window
        self._conn_unacked = 0
        self._initial_send = _DEFAULT_WINDOW
        self._decoder = hpack.Decoder(max_header_list_size=_MAX_HEADER_LIST)
        self._block_sid = 0  # a header block is arriving in CONTINUATION frames
        self._block_flags = 0
        self._block: list[bytes] = []
        self._block_size = 0
        self._failed: H2ProtocolError | None = None
        self.max_concurrent_streams = 2**32 - 1
        self.max_frame_size = _FRAME_LIMIT
        self.goaway: GoAway | None = None
        self._handlers = {
            DATA: self._on_data,
            HEADERS: self._on_headers,
            PRIORITY: self._on_priority,
            RST_STREAM: self._on_rst_stream,
            SETTINGS: self._on_settings,
            PUSH_PROMISE: self._on_push_promise,
            PING: self._on_ping,
            GOAWAY: self._on_goaway,
            WINDOW_UPDATE: self._on_window_update,
            CONTINUATION: self._on_continuation,
        }

    # ------------------------------------------------------------------ outbound
    def preface(self) -> None:
        """Queue the connection preface: the magic, our SETTINGS, a wider connection window."""
        settings = _SETTING.pack(_ENABLE_PUSH, 0) + _SETTING.pack(_MAX_CONCURRENT_STREAMS, 100)
        settings += _SETTING.pack(_INITIAL_WINDOW_SIZE, self._window)
        self._out.append(PREFACE + frame(SETTINGS, 0, 0, settings))
        self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._window)))

    def data_to_send(self) -> bytes:
        """Return (and forget) every frame queued since the last call."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def open_stream(self, block: bytes, end_stream: bool, head: bool = False) -> int:
        """Open a stream with header block `block` (see `h2_headers.encode_field`).

        Args:
            block: The encoded header block.
            end_stream: The request has no body.
            head: The request is a HEAD (its response's content-length has no body).

        Returns:
            The new stream's id.

        Raises:
            NoStreamIds: The connection has no stream id left.
        """
        sid = self._next_sid
        if sid > _MAX_STREAM_ID:
            raise NoStreamIds("this HTTP/2 connection has used all its stream ids")
        self._next_sid = sid + 2
        self._streams[sid] = StreamState(self._initial_send, self._window, end_stream, head)
        flags = END_STREAM if end_stream else 0
        size = self.max_frame_size
        if len(block) <= size:
            self._out.append(frame(HEADERS, flags | END_HEADERS, sid, block))
        else:
            self._out.append(frame(HEADERS, flags, sid, block[:size]))
            for at in range(size, len(block), size):
                last = at + size >= len(block)
                self._out.append(
                    frame(CONTINUATION, END_HEADERS if last else 0, sid, block[at : at + size])
                )
        return sid

    def send_window(self, sid: int) -> int:
        """Return how many body bytes stream `sid` may send now (0 if it is closed)."""
        stream = self._streams.get(sid)
        if stream is None or stream.local_closed:
            return 0
        return min(self._conn_send, stream.send)

    def local_open(self, sid: int) -> bool:
        """Return whether our half of stream `sid` is still open (its request not ended)."""
        stream = self._streams.get(sid)
        return stream is not None and not stream.local_closed

    def send_data(self, sid: int, data: bytes, end_stream: bool = False) -> None:
        """Queue `data` on stream `sid`; at most `send_window(sid)` bytes.

        Raises:
            StreamClosed: The stream was reset, or its request ended.
            ValueError: `data` is larger than the window.
        """
        stream = self._streams.get(sid)
        if stream is None or stream.local_closed:
            raise StreamClosed(f"stream {sid} is closed")
        size = len(data)
        if size > self._conn_send or size > stream.send:
            raise ValueError(f"{size} bytes do not fit the send window of stream {sid}")
        self._conn_send -= size
        stream.send -= size
        step = self.max_frame_size
        flags = END_STREAM if end_stream else 0
        if size <= step:
            self._out.append(frame(DATA, flags, sid, data))
        else:
            for at in range(0, size, step):
                last = at + step >= size
                self._out.append(frame(DATA, flags if last else 0, sid, data[at : at + step]))
        if end_stream:
            stream.local_closed = True

    def reset_stream(self, sid: int, code: ErrorCode = ErrorCode.CANCEL) -> None:
        """Queue RST_STREAM for `sid`, unless the stream is already closed both ways."""
        stream = self._streams.get(sid)
        if stream is None or (stream.local_closed and stream.remote_closed):
            return
        stream.local_closed = stream.remote_closed = True
        self._out.append(frame(RST_STREAM, 0, sid, _U32.pack(code)))

    def acknowledge(self, sid: int, size: int) -> None:
        """Give `size` received bytes of stream `sid` back to the windows, once they are read.

        WINDOW_UPDATEs go out in steps of half the window, not one per DATA frame.
        """
        self._give_back(size)
        stream = self._streams.get(sid)
        if stream is not None and not stream.remote_closed:
            stream.unacked += size
            if stream.unacked >= self._window >> 1:
                stream.recv += stream.unacked
                self._out.append(frame(WINDOW_UPDATE, 0, sid, _U32.pack(stream.unacked)))
                stream.unacked = 0

    def forget(self, sid: int, unread: int = 0) -> None:
        """Drop stream `sid`; its `unread` bytes go back to the connection's window."""
        self._streams.pop(sid, None)
        if unread:
            self._give_back(unread)

    def _give_back(self, size: int) -> None:
        self._conn_unacked += size
        if self._conn_unacked >= self._window >> 1:
            self._conn_recv += self._conn_unacked
            self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._conn_unacked)))
            self._conn_unacked = 0

    # ------------------------------------------------------------------ inbound
    def receive(self, data: bytes) -> list[Event]:
        """Take bytes from the server; return the events of the frames they complete.

        Raises:
            H2ProtocolError: The server broke the protocol; the connection is over and a
                GOAWAY saying why is queued.
        """
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        buf += data
        events: list[Event] = []
        pos = 0
        end = len(buf)
        handlers = self._handlers
        try:
            while end - pos >= 9:
                high, low, kind, flags, sid = FRAME_HEADER.unpack_from(buf, pos)
                size = high << 8 | low
                if size > _FRAME_LIMIT:
                    raise Violation(
                        _FRAME_SIZE,
                        f"a {FRAME_NAMES.get(kind, f'type {kind}')} frame of {size} bytes "
                        f"(the limit is {_FRAME_LIMIT})",
                    )
                if end - pos - 9 < size:
                    break
                payload = bytes(buf[pos + 9 : pos + 9 + size])
                pos += 9 + size
                if self._block_sid and kind != CONTINUATION:
                    raise Violation(
                        _PROTOCOL,
                        f"a {FRAME_NAMES.get(kind, f'type {kind}')} frame inside a header block "
                        "(only CONTINUATION may follow a HEADERS frame without END_HEADERS)",
                    )
                handler = handlers.get(kind)
                if handler is not None:  # frames of unknown types are ignored (RFC 9113 5.5)
                    handler(flags, sid & _MAX_STREAM_ID, payload, events)
        except Violation as exc:
            self._failed = H2ProtocolError(str(exc), exc.code)
            debug = str(exc).encode("utf-8", "replace")[:256]
            self._out.append(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, exc.code) + debug))
            raise self._failed from None
        finally:
            del buf[:pos]
        return events

    def _stream(self, sid: int, kind: int) -> StreamState | None:
        """Return stream `sid` for a frame of type `kind`; None for a stream we left.

        Raises:
            Violation: Stream 0, or a stream we never opened (RFC 9113 5.1, "idle").
        """
        stream = self._streams.get(sid)
        if stream is None and (sid >= self._next_sid or sid % 2 == 0):
            what = "the server's own" if sid % 2 == 0 else "never opened"
            where = "0" if sid == 0 else f"{sid}, {what}"
            raise Violation(_PROTOCOL, f"{FRAME_NAMES[kind]} on stream {where}")
        return stream

    def _stream_error(self, sid: int, code: ErrorCode, reason: str, events: list[Event]) -> None:
        """Reset stream `sid` for what the server sent on it; its request learns why."""
        self.reset_stream(sid, code)
        events.append(Reset(sid, code, reason))

    def _on_data(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        flow = len(payload)
        self._conn_recv -= flow
        if self._conn_recv < 0:
            message = "the server sent more DATA than the connection's window allowed"
            raise Violation(_FLOW, message)
        stream = self._stream(sid, DATA)
        data = unpad(payload, DATA) if flags & PADDED else payload
        if stream is None or stream.remote_closed:
            self._give_back(flow)  # a stream we left: nobody will read these bytes
            return
        ended = bool(flags & END_STREAM)
        reason = stream.take_data(len(data), flow, ended)
        if reason is not None:
            self._give_back(flow)
            self._stream_error(sid, _PROTOCOL, reason, events)
            return
        events.append(Data(sid, data, flow, ended))

    def _on_headers(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid == 0:
            raise Violation(_PROTOCOL, "HEADERS on stream 0")
        if flags & PADDED:
            payload = unpad(payload, HEADERS)
        if flags & PRIORITY_FLAG:
            if len(payload) < 5:
                raise Violation(_FRAME_SIZE, "a HEADERS frame too short for its priority")
            payload = payload[5:]
        if flags & END_HEADERS:
            self._header_block(sid, flags, payload, events)
        else:
            self._block_sid, self._block_flags = sid, flags
            self._block, self._block_size = [payload], len(payload)

    def _on_continuation(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if not self._block_sid or sid != self._block_sid:
            raise Violation(
                _PROTOCOL,
                f"CONTINUATION on stream {sid} without a HEADERS before it",
            )
        self._block.append(payload)
        self._block_size += len(payload)
        if self._block_size > _MAX_HEADER_BLOCK:
            raise Violation(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"a header block of over {_MAX_HEADER_BLOCK // 1024} KiB",
            )
        if flags & END_HEADERS:
            block = b"".join(self._block)
            self._block_sid, self._block = 0, []
            self._header_block(sid, self._block_flags, block, events)

    def _header_block(self, sid: int, flags: int, block: bytes, events: list[Event]) -> None:
        try:
            # Decoded even for a stream we left, to keep HPACK's table in step.
            headers = cast("list[tuple[bytes, bytes]]", self._decoder.decode(block, raw=True))
        except hpack.HPACKError as exc:
            raise Violation(
                ErrorCode.COMPRESSION_ERROR, f"a header block that does not decode: {exc}"
            ) from None
        stream = self._stream(sid, HEADERS)
        if stream is None or stream.remote_closed:
            return
        ended = bool(flags & END_STREAM)
        try:
            head = stream.take_head(headers, ended)
        except Malformed as exc:
            self._stream_error(sid, _PROTOCOL, str(exc), events)
            return
        if head is not None:
            events.append(Response(sid, *head))
        if ended:
            events.append(Ended(sid))

    def _on_priority(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid == 0:
            raise Violation(_PROTOCOL, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise Violation(_FRAME_SIZE, f"a PRIORITY frame of {len(payload)} bytes (not 5)")

    def _on_rst_stream(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise Violation(_FRAME_SIZE, f"a RST_STREAM frame of {len(payload)} bytes (not 4)")
        stream = self._stream(sid, RST_STREAM)
        if stream is None or (stream.local_closed and stream.remote_closed):
            return  # closed already: ended both ways, or reset by us first
        stream.local_closed = stream.remote_closed = True
        events.append(Reset(sid, _U32.unpack(payload)[0]))

    def _on_settings(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid:
            raise Violation(_PROTOCOL, f"SETTINGS on stream {sid}")
        if flags & ACK:
            if payload:
                raise Violation(_FRAME_SIZE, "a SETTINGS acknowledgement with a payload")
            return
        if len(payload) % 6:
            raise Violation(_FRAME_SIZE, f"a SETTINGS frame of {len(payload)} bytes")
        for at in range(0, len(payload), 6):
            ident, value = _SETTING.unpack_from(payload, at)
            if ident == _MAX_CONCURRENT_STREAMS:
                self.max_concurrent_streams = value
            elif ident == _INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    raise Violation(_FLOW, f"SETTINGS_INITIAL_WINDOW_SIZE {value}")
                delta = value - self._initial_send
                self._initial_send = value
                for stream in self._streams.values():
                    stream.send += delta
                    if stream.send > _MAX_WINDOW:
                        raise Violation(
                            _FLOW,
                            "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream's window",
                        )
            elif ident == _MAX_FRAME_SIZE:
                if not _FRAME_LIMIT <= value <= 2**24 - 1:
                    raise Violation(_PROTOCOL, f"SETTINGS_MAX_FRAME_SIZE {value}")
                self.max_frame_size = value
            elif ident == _ENABLE_PUSH and value > 1:
                raise Violation(_PROTOCOL, f"SETTINGS_ENABLE_PUSH {value}")
            # HEADER_TABLE_SIZE: our encoder uses no dynamic table; the rest are advisory.
        self._out.append(frame(SETTINGS, ACK, 0))
        events.append(SettingsChanged())

    def _on_push_promise(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        raise Violation(_PROTOCOL, "PUSH_PROMISE, though the client disabled server push")

    def _on_ping(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid:
            raise Violation(_PROTOCOL, f"PING on stream {sid}")
        if len(payload) != 8:
            raise Violation(_FRAME_SIZE, f"a PING frame of {len(payload)} bytes (not 8)")
        if not flags & ACK:
            self._out.append(frame(PING, ACK, 0, payload))

    def _on_goaway(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid:
            raise Violation(_PROTOCOL, f"GOAWAY on stream {sid}")
        if len(payload) < 8:
            raise Violation(_FRAME_SIZE, f"a GOAWAY frame of {len(payload)} bytes")
        last, code = _GOAWAY.unpack_from(payload)
        last &= _MAX_STREAM_ID
        if self.goaway is not None:
            last = min(last, self.goaway.last_stream_id)  # it may only go down
        self.goaway = GoAway(last, code, payload[8:])
        events.append(self.goaway)

    def _on_window_update(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise Violation(_FRAME_SIZE, f"a WINDOW_UPDATE frame of {len(payload)} bytes")
        increment = _U32.unpack(payload)[0] & _MAX_WINDOW
        if sid == 0:
            if increment == 0:
                raise Violation(_PROTOCOL, "a WINDOW_UPDATE of 0 for the connection")
            self._conn_send += increment
            if self._conn_send > _MAX_WINDOW:
                raise Violation(_FLOW, "WINDOW_UPDATE overflows the connection's window")
            events.append(WindowOpened(0))
            return
        stream = self._stream(sid, WINDOW_UPDATE)
        if stream is None or stream.local_closed:
            return
        if increment == 0:
            self._stream_error(sid, _PROTOCOL, "a WINDOW_UPDATE of 0", events)
            return
        stream.send += increment
        if stream.send > _MAX_WINDOW:
            self._stream_error(sid, _FLOW, "WINDOW_UPDATE overflows the stream's window", events)
            return
        events.append(WindowOpened(sid))
