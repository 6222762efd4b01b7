"""surge's sans-I/O HTTP/2 client protocol (`H2Protocol`), frame by frame.

Pure logic, no sockets: the other end is the `h2` package's server connection (for
interoperability: its HPACK encoder uses the dynamic table and Huffman coding, it splits
big header blocks into CONTINUATION frames, it pads), or frames written by hand (for what
no well-behaved server sends). The pool's own HTTP/2 tests run over real sockets.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest

from surge._transport.h2_events import (
    Data,
    Ended,
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
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    ErrorCode,
    frame,
)
from surge._transport.h2_headers import _field, encode_field
from surge._transport.h2_protocol import H2Protocol

WINDOW = 1 << 20
FIELDS = [
    (b":method", b"POST"),
    (b":authority", b"example.test"),
    (b":scheme", b"http"),
    (b":path", b"/v1/chat/completions"),
    (b"content-type", b"application/json"),
]
REQUEST = b"".join(encode_field(n, v) for n, v in FIELDS)


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Split bytes into (type, flags, stream id, payload)."""
    out = []
    while data:
        high, low, kind, flags, sid = FRAME_HEADER.unpack_from(data)
        size = high << 8 | low
        out.append((kind, flags, sid & 0x7FFFFFFF, data[9 : 9 + size]))
        data = data[9 + size :]
    return out


def recv(client: H2Protocol, data: bytes) -> list[Any]:
    """`client.receive`, its events untyped for the tests' attribute checks."""
    return list(client.receive(data))


def u32(value: int) -> bytes:
    return struct.pack(">L", value)


def pair(
    server_settings: dict[h2.settings.SettingCodes, int] | None = None,
) -> tuple[H2Protocol, h2.connection.H2Connection]:
    """A client protocol and an h2 server, past the preface and both SETTINGS."""
    client = H2Protocol(WINDOW)
    client.preface()
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    server.local_settings = h2.settings.Settings(client=False, initial_values=server_settings)
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    events = recv(client, server.data_to_send())
    assert [type(e) for e in events] == [SettingsChanged]
    server.receive_data(client.data_to_send())
    return client, server


def to_client(client: H2Protocol, server: h2.connection.H2Connection) -> list[Any]:
    return recv(client, server.data_to_send())


def to_server(client: H2Protocol, server: h2.connection.H2Connection) -> list[Any]:
    return list(server.receive_data(client.data_to_send()))


def violation(client: H2Protocol, data: bytes) -> H2ProtocolError:
    """Feed `data`; return the connection error, having checked the GOAWAY saying it."""
    with pytest.raises(H2ProtocolError) as info:
        recv(client, data)
    goaway = [f for f in frames(client.data_to_send()) if f[0] == GOAWAY]
    assert len(goaway) == 1
    last, code = struct.unpack(">LL", goaway[0][3][:8])
    assert (last, code) == (0, info.value.code)
    assert goaway[0][3][8:].decode() == str(info.value)
    with pytest.raises(H2ProtocolError):  # the connection stays failed
        recv(client, b"")
    return info.value


# ---------------------------------------------------------------------- the preface
def test_preface_offers_the_window_and_turns_push_off() -> None:
    client = H2Protocol(WINDOW)
    client.preface()
    data = client.data_to_send()
    assert data.startswith(PREFACE)
    got = frames(data[len(PREFACE) :])
    settings = got[0][3]
    values = dict(struct.unpack(">HL", settings[i : i + 6]) for i in range(0, len(settings), 6))
    assert got[0][:3] == (SETTINGS, 0, 0)
    assert values == {0x2: 0, 0x3: 100, 0x4: WINDOW}
    assert got[1] == (WINDOW_UPDATE, 0, 0, u32(WINDOW))
    assert client.data_to_send() == b""


def test_server_settings_are_applied_and_acknowledged() -> None:
    client, server = pair({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 7})
    assert client.max_concurrent_streams == 7
    assert client.max_frame_size == 16_384
    server.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 65_536})
    assert [type(e) for e in to_client(client, server)] == [SettingsChanged]
    assert client.max_frame_size == 65_536
    assert [type(e) for e in to_server(client, server)] == [h2.events.SettingsAcknowledged]


def test_unlimited_streams_until_the_server_says() -> None:
    client, _ = pair()
    assert client.max_concurrent_streams == 2**32 - 1


# ---------------------------------------------------------------------- a request, interop
def test_request_and_response_through_h2() -> None:
    client, server = pair()
    sid = client.open_stream(REQUEST, end_stream=False)
    client.send_data(sid, b'{"x": 1}', end_stream=True)
    got = to_server(client, server)
    assert [type(e) for e in got] == [
        h2.events.RequestReceived,
        h2.events.DataReceived,
        h2.events.StreamEnded,
    ]
    assert got[0].headers == FIELDS
    assert got[1].data == b'{"x": 1}'
    for _ in range(3):  # the server's dynamic table is used from the second answer on
        server.send_headers(sid, [(b":status", b"200"), (b"content-length", b"5"), (b"x-a", b"b")])
        server.send_data(sid, b"hello", end_stream=True)
        events = to_client(client, server)
        assert [type(e) for e in events] == [Response, Data]
        assert (events[0].sid, events[0].status) == (sid, 200)
        assert events[0].headers == [(b"content-length", b"5"), (b"x-a", b"b")]
        assert (events[1].data, events[1].flow, events[1].ended) == (b"hello", 5, True)
        client.forget(sid)
        sid = client.open_stream(REQUEST, end_stream=True)
        to_server(client, server)
    assert sid == 7  # stream ids 1, 3, 5, 7


def test_big_header_blocks_go_in_continuation_frames_both_ways() -> None:
    client, server = pair()
    big = encode_field(b"x-big", b"v" * 40_000)
    sid = client.open_stream(REQUEST + big, end_stream=True)
    sent = frames(client.data_to_send())
    assert [(k, f) for k, f, _, _ in sent] == [
        (HEADERS, END_STREAM),
        (CONTINUATION, 0),
        (CONTINUATION, END_HEADERS),
    ]
    server.receive_data(b"".join(frame(k, f, s, p) for k, f, s, p in sent))
    server.send_headers(sid, [(b":status", b"200"), (b"x-big", b"w" * 40_000)], end_stream=True)
    events = to_client(client, server)
    assert [type(e) for e in events] == [Response, Ended]
    assert events[0].headers == [(b"x-big", b"w" * 40_000)]


def test_a_header_block_of_exactly_two_frames_ends_in_the_second() -> None:
    client, server = pair()
    # The value's length prefix grows with it: take the first size that fills both frames.
    sizes = range(32_000, 32_768)
    block = next(
        b for n in sizes if len(b := REQUEST + encode_field(b"x-fill", b"f" * n)) == 2 * 16_384
    )
    assert len(block) == 2 * 16_384
    sid = client.open_stream(block, end_stream=True)
    sent = frames(client.data_to_send())
    assert [(k, f, len(p)) for k, f, _, p in sent] == [
        (HEADERS, END_STREAM, 16_384),
        (CONTINUATION, END_HEADERS, 16_384),
    ]
    got: list[Any] = list(server.receive_data(b"".join(frame(*f) for f in sent)))
    assert [type(e) for e in got] == [h2.events.RequestReceived, h2.events.StreamEnded]
    assert got[0].stream_id == sid


def test_padding_and_priority_are_stripped() -> None:
    client, server = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    to_server(client, server)
    server.send_headers(sid, [(b":status", b"200")])
    server.send_data(sid, b"abc", end_stream=True, pad_length=10)
    events = to_client(client, server)
    assert (events[1].data, events[1].flow) == (b"abc", 14)  # the pad-length byte and 10 pads
    priority = frame(PRIORITY, 0, sid, b"\x00\x00\x00\x00\x10")
    assert recv(client, priority) == []


def test_informational_responses_are_skipped_and_trailers_end_the_stream() -> None:
    client, server = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    to_server(client, server)
    server.send_headers(sid, [(b":status", b"103"), (b"link", b"</a>")])
    server.send_headers(sid, [(b":status", b"200")])
    server.send_data(sid, b"x")
    server.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
    events = to_client(client, server)
    assert [type(e) for e in events] == [Response, Data, Ended]
    assert events[0].status == 200
    assert events[1].ended is False


def test_head_and_204_responses_have_no_body_whatever_their_content_length() -> None:
    client, server = pair()
    head = encode_field(b":method", b"HEAD") + b"".join(encode_field(n, v) for n, v in FIELDS[1:])
    sid = client.open_stream(head, end_stream=True, head=True)
    sid2 = client.open_stream(REQUEST, end_stream=True)
    to_server(client, server)
    server.send_headers(sid, [(b":status", b"200"), (b"content-length", b"99")], end_stream=True)
    server.send_headers(sid2, [(b":status", b"204"), (b"content-length", b"9")], end_stream=True)
    assert [type(e) for e in to_client(client, server)] == [Response, Ended, Response, Ended]


def test_bytes_one_at_a_time_give_the_same_events() -> None:
    client, server = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    to_server(client, server)
    server.send_headers(sid, [(b":status", b"200")])
    server.send_data(sid, b"hello", end_stream=True)
    data = server.data_to_send()
    events = []
    for i in range(len(data)):
        events += recv(client, data[i : i + 1])
    assert [type(e) for e in events] == [Response, Data]
    assert events[1].data == b"hello"


# ---------------------------------------------------------------------- flow control, ours
def test_send_window_is_the_smaller_of_stream_and_connection() -> None:
    client, server = pair({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sid = client.open_stream(REQUEST, end_stream=False)
    assert client.send_window(sid) == 1000
    client.send_data(sid, b"x" * 600)
    assert client.send_window(sid) == 400
    with pytest.raises(ValueError, match="401 bytes do not fit the send window of stream 1"):
        client.send_data(sid, b"x" * 401)
    to_server(client, server)
    server.increment_flow_control_window(5000, stream_id=sid)
    assert [(type(e), e.sid) for e in to_client(client, server)] == [(WindowOpened, sid)]
    assert client.send_window(sid) == 5400
    # The connection's window (65,535 less 600) now bounds it.
    server.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100_000})
    to_client(client, server)
    assert client.send_window(sid) == 65_535 - 600
    server.increment_flow_control_window(1_000_000)
    assert [(type(e), e.sid) for e in to_client(client, server)] == [(WindowOpened, 0)]
    assert client.send_window(sid) == 100_000 + 5000 - 600


def test_data_is_split_at_the_servers_frame_size() -> None:
    client, server = pair({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100_000})
    server.increment_flow_control_window(100_000)
    to_client(client, server)
    sid = client.open_stream(REQUEST, end_stream=False)
    client.send_data(sid, b"x" * 40_000, end_stream=True)
    sent = frames(client.data_to_send())
    assert [(k, f, len(p)) for k, f, _, p in sent[1:]] == [
        (DATA, 0, 16_384),
        (DATA, 0, 16_384),
        (DATA, END_STREAM, 40_000 - 2 * 16_384),
    ]
    assert client.local_open(sid) is False
    with pytest.raises(StreamClosed, match="stream 1 is closed"):
        client.send_data(sid, b"")
    # A body of exactly two frames ends in the second.
    sid = client.open_stream(REQUEST, end_stream=False)
    client.send_data(sid, b"x" * 2 * 16_384, end_stream=True)
    sent = frames(client.data_to_send())
    assert [(k, f, len(p)) for k, f, _, p in sent[1:]] == [
        (DATA, 0, 16_384),
        (DATA, END_STREAM, 16_384),
    ]


def test_stream_ids_run_out() -> None:
    client, _ = pair()
    client._next_sid = 2**31 - 1
    assert client.open_stream(REQUEST, end_stream=True) == 2**31 - 1
    with pytest.raises(NoStreamIds):
        client.open_stream(REQUEST, end_stream=True)


def test_reset_goes_out_once() -> None:
    client, _ = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    client.data_to_send()
    client.reset_stream(sid)
    client.reset_stream(sid)
    assert frames(client.data_to_send()) == [(RST_STREAM, 0, sid, u32(ErrorCode.CANCEL))]
    # Its late frames are dropped, and their bytes given back to the connection.
    late = frame(HEADERS, END_HEADERS, sid, hpack.Encoder().encode([(b":status", b"200")]))
    assert (
        recv(client, late + frame(DATA, 0, sid, b"x" * 10) + frame(RST_STREAM, 0, sid, u32(0)))
        == []
    )


# ---------------------------------------------------------------------- flow control, theirs
def test_window_updates_go_out_at_half_the_window() -> None:
    client, server = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    to_server(client, server)
    half = WINDOW // 2
    client.acknowledge(sid, half - 1)
    assert client.data_to_send() == b""
    client.acknowledge(sid, 1)
    assert frames(client.data_to_send()) == [
        (WINDOW_UPDATE, 0, 0, u32(half)),
        (WINDOW_UPDATE, 0, sid, u32(half)),
    ]


def test_bytes_read_after_the_stream_ended_update_only_the_connection() -> None:
    client, server = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    to_server(client, server)
    server.send_headers(sid, [(b":status", b"200")])
    server.send_data(sid, b"x", end_stream=True)
    to_client(client, server)
    client.acknowledge(sid, WINDOW // 2)  # the stream is over: no WINDOW_UPDATE for it
    assert frames(client.data_to_send()) == [(WINDOW_UPDATE, 0, 0, u32(WINDOW // 2))]


def test_unread_bytes_of_a_forgotten_stream_go_back_to_the_connection() -> None:
    client, _ = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    client.data_to_send()
    client.forget(sid, unread=WINDOW // 2)
    assert frames(client.data_to_send()) == [(WINDOW_UPDATE, 0, 0, u32(WINDOW // 2))]


def test_data_for_a_stream_already_left_goes_back_to_the_connection() -> None:
    client, _ = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    client.data_to_send()
    client.forget(sid)
    chunk = frame(DATA, 0, sid, b"x" * 16_384)
    for _ in range(WINDOW // 2 // 16_384):
        assert recv(client, chunk) == []
    assert frames(client.data_to_send()) == [(WINDOW_UPDATE, 0, 0, u32(WINDOW // 2))]


def test_more_data_than_the_connection_window_is_a_connection_error() -> None:
    client, _ = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    block = hpack.Encoder().encode([(b":status", b"200")])
    recv(client, frame(HEADERS, END_HEADERS, sid, block))
    chunk = frame(DATA, 0, sid, b"x" * 16_384)
    for _ in range((65_535 + WINDOW) // 16_384):
        recv(client, chunk)
    error = violation(client, chunk)
    assert error.code == ErrorCode.FLOW_CONTROL_ERROR
    assert str(error) == "the server sent more DATA than the connection's window allowed"


def test_more_data_than_a_streams_window_resets_the_stream() -> None:
    client = H2Protocol(100)
    client.preface()
    sid = client.open_stream(REQUEST, end_stream=True)
    block = hpack.Encoder().encode([(b":status", b"200")])
    events = recv(client, frame(HEADERS, END_HEADERS, sid, block) + frame(DATA, 0, sid, b"x" * 101))
    assert [(type(e), getattr(e, "reason", None)) for e in events] == [
        (Response, None),
        (Reset, "more DATA than the stream's window allowed"),
    ]


def test_headers_of_a_stream_left_still_feed_the_hpack_table() -> None:
    # The server indexes a field in the answer to a stream the client has reset, then
    # refers to it by index in the next answer: dropping the first block undecoded would
    # leave the client's table behind the server's.
    client, server = pair()
    first = client.open_stream(REQUEST, end_stream=True)
    second = client.open_stream(REQUEST, end_stream=True)
    to_server(client, server)
    client.reset_stream(first)
    client.forget(first)
    client.data_to_send()  # the reset has not reached the server yet
    server.send_headers(first, [(b":status", b"200"), (b"x-trace", b"abc123")], end_stream=True)
    server.send_headers(second, [(b":status", b"200"), (b"x-trace", b"abc123")], end_stream=True)
    events = to_client(client, server)
    assert [(type(e), e.sid) for e in events] == [(Response, second), (Ended, second)]
    assert events[0].headers == [(b"x-trace", b"abc123")]


# ---------------------------------------------------------------------- ping, goaway
def test_ping_is_answered_and_an_ack_is_not() -> None:
    client, _ = pair()
    assert recv(client, frame(PING, 0, 0, b"12345678")) == []
    assert frames(client.data_to_send()) == [(PING, 0x1, 0, b"12345678")]
    assert recv(client, frame(PING, 0x1, 0, b"12345678")) == []
    assert client.data_to_send() == b""


def test_goaway_last_stream_id_only_goes_down() -> None:
    client, _ = pair()
    first = recv(client, frame(GOAWAY, 0, 0, struct.pack(">LL", 7, 0) + b"bye"))
    assert [(type(e), e.last_stream_id, e.code, e.debug) for e in first] == [(GoAway, 7, 0, b"bye")]
    recv(client, frame(GOAWAY, 0, 0, struct.pack(">LL", 9, 2)))
    assert client.goaway is not None
    assert (client.goaway.last_stream_id, client.goaway.code) == (7, 2)


# ---------------------------------------------------------------------- stream errors
def _answered(
    client: H2Protocol, headers: list[tuple[bytes, bytes]], end: bool = False
) -> list[Any]:
    sid = client.open_stream(REQUEST, end_stream=True)
    client.data_to_send()
    flags = END_HEADERS | (END_STREAM if end else 0)
    return recv(client, frame(HEADERS, flags, sid, hpack.Encoder().encode(headers)))


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (
            [(b":status", b"200"), (b"X-Up", b"1")],
            "invalid field name b'X-Up' (HTTP/2 names are lower-case tokens)",
        ),
        ([(b"a", b"1")], "no :status"),
        ([(b":status", b"2000")], ":status b'2000' is not three digits"),
        ([(b":status", b"200"), (b":status", b"200")], "unexpected pseudo-header ':status'"),
        ([(b":path", b"/"), (b":status", b"200")], "unexpected pseudo-header ':path'"),
        ([(b"a", b"1"), (b":status", b"200")], ":status after regular fields"),
        (
            [(b":status", b"200"), (b"connection", b"close")],
            "connection-specific field 'connection'",
        ),
        ([(b":status", b"200"), (b"a", b"x\r\ny")], "field 'a' has NUL, CR or LF in its value"),
        (
            [(b":status", b"200"), (b"content-length", b"1x")],
            "content-length b'1x' is not a number",
        ),
        ([(b":status", b"101")], "an informational response (101) that cannot be one"),
    ],
)
def test_a_malformed_response_resets_only_its_stream(
    headers: list[tuple[bytes, bytes]], reason: str
) -> None:
    client, _ = pair()
    events = _answered(client, headers)
    assert [(type(e), e.sid, e.code, e.reason) for e in events] == [
        (Reset, 1, ErrorCode.PROTOCOL_ERROR, reason)
    ]
    assert frames(client.data_to_send()) == [(RST_STREAM, 0, 1, u32(ErrorCode.PROTOCOL_ERROR))]
    # The connection goes on: the next stream is answered.
    assert [type(e) for e in _answered(client, [(b":status", b"200")], end=True)] == [
        Response,
        Ended,
    ]


@pytest.mark.parametrize(
    ("length", "body", "reason"),
    [
        (b"10", b"x" * 4, "the body ended 6 bytes short of its content-length"),
        (b"2", b"x" * 4, "more body than its content-length"),
    ],
)
def test_a_body_that_breaks_its_content_length_resets_its_stream(
    length: bytes, body: bytes, reason: str
) -> None:
    client, _ = pair()
    events = _answered(client, [(b":status", b"200"), (b"content-length", length)])
    events += recv(client, frame(DATA, END_STREAM, 1, body))
    assert [type(e) for e in events] == [Response, Reset]
    assert events[1].reason == reason


def test_content_length_short_at_the_trailers_or_a_headers_only_end() -> None:
    client, _ = pair()
    events = _answered(client, [(b":status", b"200"), (b"content-length", b"3")], end=True)
    assert [(type(e), e.reason) for e in events] == [
        (Reset, "the body ended 3 bytes short of its content-length")
    ]


def test_data_before_headers_and_trailers_that_do_not_end_are_malformed() -> None:
    client, _ = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    events = recv(client, frame(DATA, 0, sid, b"x"))
    assert [(type(e), e.reason) for e in events] == [(Reset, "DATA before the response's headers")]
    encoder = hpack.Encoder()
    sid = client.open_stream(REQUEST, end_stream=True)
    head = frame(HEADERS, END_HEADERS, sid, encoder.encode([(b":status", b"200")]))
    again = frame(HEADERS, END_HEADERS, sid, encoder.encode([(b"x", b"y")]))
    events = recv(client, head + again)
    assert [(type(e), getattr(e, "reason", None)) for e in events] == [
        (Response, None),
        (Reset, "a second header block that does not end the stream"),
    ]


def test_stream_window_errors_reset_the_stream() -> None:
    client, _ = pair()
    sid = client.open_stream(REQUEST, end_stream=False)
    events = recv(client, frame(WINDOW_UPDATE, 0, sid, u32(0)))
    assert [(type(e), e.code, e.reason) for e in events] == [
        (Reset, ErrorCode.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
    ]
    sid = client.open_stream(REQUEST, end_stream=False)
    events = recv(client, frame(WINDOW_UPDATE, 0, sid, u32(2**31 - 1)))
    assert [(type(e), e.code) for e in events] == [(Reset, ErrorCode.FLOW_CONTROL_ERROR)]


def test_a_server_reset_is_reported_once() -> None:
    client, _ = pair()
    sid = client.open_stream(REQUEST, end_stream=False)
    events = recv(client, frame(RST_STREAM, 0, sid, u32(ErrorCode.REFUSED_STREAM)) * 2)
    assert [(type(e), e.code, e.reason) for e in events] == [
        (Reset, ErrorCode.REFUSED_STREAM, None)
    ]
    assert client.local_open(sid) is False


# ---------------------------------------------------------------------- connection errors
@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (frame(DATA, 0, 0, b"x"), ErrorCode.PROTOCOL_ERROR, "DATA on stream 0"),
        (frame(DATA, 0, 3, b"x"), ErrorCode.PROTOCOL_ERROR, "DATA on stream 3, never opened"),
        (
            frame(HEADERS, END_HEADERS, 2, b"\x88"),
            ErrorCode.PROTOCOL_ERROR,
            "HEADERS on stream 2, the server's own",
        ),
        (
            frame(PUSH_PROMISE, END_HEADERS, 1, u32(2) + b"\x88"),
            ErrorCode.PROTOCOL_ERROR,
            "PUSH_PROMISE, though the client disabled server push",
        ),
        (
            frame(CONTINUATION, END_HEADERS, 1, b"\x88"),
            ErrorCode.PROTOCOL_ERROR,
            "CONTINUATION on stream 1 without a HEADERS before it",
        ),
        (
            frame(HEADERS, 0, 1, b"\x88") + frame(PING, 0, 0, b"12345678"),
            ErrorCode.PROTOCOL_ERROR,
            "a PING frame inside a header block (only CONTINUATION may follow a HEADERS frame "
            "without END_HEADERS)",
        ),
        (
            frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"),
            ErrorCode.COMPRESSION_ERROR,
            "a header block that does not decode: ",
        ),
        (
            frame(DATA, PADDED, 1, b"\x05abc"),
            ErrorCode.PROTOCOL_ERROR,
            "a DATA frame's padding is longer than it",
        ),
        (
            FRAME_HEADER.pack(0x40, 0x01, DATA, 0, 1) + b"x" * 16_385,
            ErrorCode.FRAME_SIZE_ERROR,
            "a DATA frame of 16385 bytes (the limit is 16384)",
        ),
        (frame(SETTINGS, 0, 1), ErrorCode.PROTOCOL_ERROR, "SETTINGS on stream 1"),
        (
            frame(SETTINGS, 0, 0, b"\x00" * 5),
            ErrorCode.FRAME_SIZE_ERROR,
            "a SETTINGS frame of 5 bytes",
        ),
        (
            frame(SETTINGS, 0x1, 0, b"\x00" * 6),
            ErrorCode.FRAME_SIZE_ERROR,
            "a SETTINGS acknowledgement with a payload",
        ),
        (
            frame(SETTINGS, 0, 0, struct.pack(">HL", 0x5, 100)),
            ErrorCode.PROTOCOL_ERROR,
            "SETTINGS_MAX_FRAME_SIZE 100",
        ),
        (
            frame(SETTINGS, 0, 0, struct.pack(">HL", 0x4, 2**31)),
            ErrorCode.FLOW_CONTROL_ERROR,
            "SETTINGS_INITIAL_WINDOW_SIZE 2147483648",
        ),
        (
            frame(SETTINGS, 0, 0, struct.pack(">HL", 0x2, 2)),
            ErrorCode.PROTOCOL_ERROR,
            "SETTINGS_ENABLE_PUSH 2",
        ),
        (frame(PING, 0, 0, b"1234"), ErrorCode.FRAME_SIZE_ERROR, "a PING frame of 4 bytes (not 8)"),
        (frame(PING, 0, 1, b"12345678"), ErrorCode.PROTOCOL_ERROR, "PING on stream 1"),
        (frame(GOAWAY, 0, 0, b"1234"), ErrorCode.FRAME_SIZE_ERROR, "a GOAWAY frame of 4 bytes"),
        (frame(GOAWAY, 0, 1, b"\x00" * 8), ErrorCode.PROTOCOL_ERROR, "GOAWAY on stream 1"),
        (
            frame(WINDOW_UPDATE, 0, 0, u32(0)),
            ErrorCode.PROTOCOL_ERROR,
            "a WINDOW_UPDATE of 0 for the connection",
        ),
        (
            frame(WINDOW_UPDATE, 0, 0, u32(2**31 - 1)),
            ErrorCode.FLOW_CONTROL_ERROR,
            "WINDOW_UPDATE overflows the connection's window",
        ),
        (
            frame(WINDOW_UPDATE, 0, 0, b"12"),
            ErrorCode.FRAME_SIZE_ERROR,
            "a WINDOW_UPDATE frame of 2 bytes",
        ),
        (frame(RST_STREAM, 0, 0, u32(0)), ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0"),
        (
            frame(RST_STREAM, 0, 1, b"12"),
            ErrorCode.FRAME_SIZE_ERROR,
            "a RST_STREAM frame of 2 bytes (not 4)",
        ),
        (
            frame(RST_STREAM, 0, 9, u32(0)),
            ErrorCode.PROTOCOL_ERROR,
            "RST_STREAM on stream 9, never opened",
        ),
        (
            frame(PRIORITY, 0, 1, b"1234"),
            ErrorCode.FRAME_SIZE_ERROR,
            "a PRIORITY frame of 4 bytes (not 5)",
        ),
        (
            frame(HEADERS, 0x20 | END_HEADERS, 1, b"12"),
            ErrorCode.FRAME_SIZE_ERROR,
            "a HEADERS frame too short for its priority",
        ),
    ],
)
def test_a_connection_error_names_the_frame_and_sends_goaway(
    data: bytes, code: ErrorCode, message: str
) -> None:
    client, _ = pair()
    client.open_stream(REQUEST, end_stream=True)
    client.data_to_send()
    error = violation(client, data)
    assert error.code == code
    assert str(error).startswith(message)
    assert len(str(error)) == len(message) or message.endswith(": ")


def test_an_endless_header_block_is_cut_off() -> None:
    client, _ = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    data = frame(HEADERS, 0, sid, b"\x00" * 16_384)
    data += frame(CONTINUATION, 0, sid, b"\x00" * 16_384) * 15
    assert recv(client, data) == []  # 256 KiB: not over yet
    error = violation(client, frame(CONTINUATION, 0, sid, b"\x00"))
    assert (error.code, str(error)) == (
        ErrorCode.ENHANCE_YOUR_CALM,
        "a header block of over 256 KiB",
    )


def test_a_header_list_that_decodes_past_its_limit_is_cut_off() -> None:
    # An HPACK bomb: one 4 KB field indexed once, then named by its index 100 times, is
    # 3.6 KB on the wire and 400 KB decoded.
    client, _ = pair()
    sid = client.open_stream(REQUEST, end_stream=True)
    block = hpack.Encoder().encode([(b":status", b"200")] + [(b"x-big", b"v" * 4000)] * 100)
    assert len(block) < 4000
    error = violation(client, frame(HEADERS, END_HEADERS, sid, block))
    assert error.code == ErrorCode.COMPRESSION_ERROR
    assert str(error) == (
        "a header block that does not decode: A header list larger than 262144 has been received"
    )


def test_frames_of_unknown_types_are_ignored() -> None:
    client, _ = pair()
    assert recv(client, frame(0xEE, 0xFF, 5, b"anything")) == []


def test_random_frames_give_events_or_a_protocol_error_only() -> None:
    # Whatever frames a server sends (any type, flags, stream, and a short payload of any
    # bytes, or a real header block), the client gets events or H2ProtocolError: never an
    # IndexError, a struct.error or a KeyError from a frame it did not expect.
    rng = random.Random(9)
    blocks = [hpack.Encoder().encode([(b":status", b"200"), (b"content-length", b"3")]), b"\x88"]
    errors = 0
    for _ in range(5000):
        client = H2Protocol(WINDOW)
        client.preface()
        for _ in range(3):
            client.open_stream(REQUEST, end_stream=rng.random() < 0.5)
        data = b""
        for _ in range(rng.randint(1, 4)):
            kind = rng.randrange(11)
            payload = rng.choice(blocks) if rng.random() < 0.3 else rng.randbytes(rng.randrange(13))
            sid = rng.choice([0, 1, 2, 3, 5, 7, 99])
            data += frame(kind, rng.randrange(256), sid, payload)
        try:
            client.receive(data)
            for sid in (1, 3, 5):
                client.acknowledge(sid, 10)
                client.forget(sid, 5)
        except H2ProtocolError:
            errors += 1
    assert 0 < errors < 5000  # both outcomes were reached


# ---------------------------------------------------------------------- the header encoder
def test_encoder_uses_the_static_table_and_marks_credentials() -> None:
    assert encode_field(b":method", b"POST") == b"\x83"
    assert encode_field(b":scheme", b"https") == b"\x87"
    assert encode_field(b":path", b"/x") == b"\x04\x02/x"  # name 4 from the table, literal value
    long_name = b"x-" + b"n" * 200
    block = (
        encode_field(b"authorization", b"Bearer k", never_indexed=True)
        + encode_field(long_name, b"v" * 300)
        + encode_field(b"content-type", b"application/json")
    )
    decoded = hpack.Decoder().decode(block, raw=True)
    assert decoded == [
        (b"authorization", b"Bearer k"),
        (long_name, b"v" * 300),
        (b"content-type", b"application/json"),
    ]
    assert [type(h).__name__ for h in decoded] == [
        "NeverIndexedHeaderTuple",
        "HeaderTuple",
        "HeaderTuple",
    ]
    assert block[0] == 0x1F  # never indexed, name index 23 past the 4-bit prefix


def test_the_encoder_memo_keeps_no_credentials_and_no_long_values() -> None:
    _field.cache_clear()
    encode_field(b"authorization", b"Bearer secret", never_indexed=True)
    encode_field(b"x-long", b"v" * 257)
    assert _field.cache_info().currsize == 0
    encode_field(b"x-short", b"v" * 256)
    encode_field(b"x-short", b"v" * 256)
    assert (_field.cache_info().currsize, _field.cache_info().hits) == (1, 1)
