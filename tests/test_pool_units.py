"""Pure-logic units of the pool: the HTTP/1.1 parser and the asyncio deadline queues."""

from __future__ import annotations

import asyncio

import pytest

from surge._transport.h1_parser import ProtocolError, ResponseParser, serialize_head

# ---------------------------------------------------------------------------- parser (pure)


def _parse(*pieces: bytes, head: bool = False, eof: bool = False) -> ResponseParser:
    parser = ResponseParser()
    parser.start(head)
    for piece in pieces:
        parser.feed(piece)
    if eof:
        parser.feed_eof()
    return parser


def test_parser_content_length_split_anywhere() -> None:
    raw = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"
    for cut in range(1, len(raw)):
        parser = _parse(raw[:cut], raw[cut:])
        assert parser.complete
        assert (parser.status_code, parser.reason) == (201, b"Created")
        assert parser.headers == [(b"Content-Length", b"5"), (b"X-A", b"b")]
        assert b"".join(parser.chunks) == b"hello"
        assert parser.keep_alive


def test_parser_chunked_with_extensions_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    for cut in range(1, len(raw), 3):
        parser = _parse(raw[:cut], raw[cut:])
        assert parser.complete
        assert b"".join(parser.chunks) == b"hello world"


def test_parser_interim_close_delimited_and_bodiless() -> None:
    interim = _parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert (interim.status_code, interim.complete) == (200, True)
    until_close = _parse(b"HTTP/1.1 200 OK\r\n\r\nabc", b"def", eof=True)
    assert b"".join(until_close.chunks) == b"abcdef"
    assert until_close.complete
    assert not until_close.keep_alive
    assert _parse(b"HTTP/1.1 204 No Content\r\n\r\n").complete
    assert _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", head=True).complete
    closing = _parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert not closing.keep_alive
    assert not _parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive


def test_parser_body_in_a_later_read_stops_at_content_length() -> None:
    # The head alone, then the body with a stray CRLF after it in the same read.
    parser = _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"hello\r\n")
    assert (parser.complete, parser.keep_alive) == (True, True)
    assert parser.chunks == [b"hello"]


def test_parser_transfer_codings_end_in_chunked_or_read_until_close() -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    last = _parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + body)
    assert (last.complete, b"".join(last.chunks)) == (True, b"hello")
    # chunked but not last (RFC 9112 6.3): the body runs until the server closes.
    first = _parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n" + body)
    assert (first.complete, first.keep_alive) == (False, False)
    first.feed_eof()
    assert (first.complete, b"".join(first.chunks)) == (True, body)


def test_parser_304_has_no_body_whatever_its_content_length() -> None:
    parser = _parse(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n")
    assert (parser.status_code, parser.complete, parser.keep_alive) == (304, True, True)
    assert parser.chunks == []


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"HTTX/1.1 200 OK\r\n\r\n", "invalid status line"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "invalid status line"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "invalid header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", "after the end"),
    ],
)
def test_parser_rejects_malformed_responses(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        _parse(raw)


def test_parser_eof_reports_how_far_it_got() -> None:
    with pytest.raises(ProtocolError, match="without sending a response"):
        _parse(eof=True)
    with pytest.raises(ProtocolError, match="in the middle of the headers"):
        _parse(b"HTTP/1.1 200", eof=True)
    with pytest.raises(ProtocolError, match="before the end of the response body"):
        _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof=True)


def test_serialize_head_refuses_header_injection() -> None:
    head = serialize_head(b"GET", b"/x", [(b"Host", b"h")])
    assert head == b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    with pytest.raises(ProtocolError, match="line break"):
        serialize_head(b"GET", b"/", [(b"X", b"a\r\nInjected: 1")])


# ---------------------------------------------------------------------------- deadline queues


def test_deadline_queues_fire_live_entries_in_order_and_compact() -> None:
    from surge._transport.deadlines import Deadlines

    async def main() -> tuple[list[str], int, int]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        fired: list[str] = []
        done = asyncio.Event()

        def note(name: str) -> None:
            fired.append(name)
            if len(fired) == 12:
                done.set()

        # Many cancelled entries (compacted away), one live entry behind them.
        dead = [deadlines.add(0.05, note, f"dead{i}") for i in range(3000)]
        deadlines.add(0.05, note, "a")
        for entry in dead:
            deadlines.cancel(entry)
        assert deadlines._size < 1500  # compacted: dead entries do not pile up
        # A shorter duration added later must still fire first.
        deadlines.add(0.01, note, "b")
        # More durations than queues: the rest fall back to loop timers.
        for i in range(10):
            deadlines.add(0.02 + i * 0.001, note, f"x{i}")
        cancelled_fallback = deadlines.add(0.03, note, "never")
        deadlines.cancel(cancelled_fallback)
        await asyncio.wait_for(done.wait(), 10)
        sizes = (deadlines._size, deadlines._dead)
        deadlines.close()
        return fired, *sizes

    fired, size, dead = asyncio.run(main())
    assert fired[0] == "b"
    assert fired[-1] == "a"
    assert sorted(fired[1:-1]) == sorted(f"x{i}" for i in range(10))
    assert "never" not in fired
    assert not any(name.startswith("dead") for name in fired)
    assert (size, dead) == (0, 0)


# ---------------------------------------------------------------------------- wait statistics


def test_wait_samples_stay_bounded_and_counts_exact() -> None:
    from surge._transport.stats import RESERVOIR_SIZE, WaitStats

    stats = WaitStats()
    for i in range(3 * RESERVOIR_SIZE):
        stats.record(i / 1000)
    assert (stats.requests, stats.wait_max) == (3 * RESERVOIR_SIZE, (3 * RESERVOIR_SIZE - 1) / 1000)
    assert len(stats._samples) == RESERVOIR_SIZE  # constant memory whatever the traffic
    # A uniform sample (seeded, so these exact values) of 0 .. 12.287 s.
    assert stats.percentiles() == (6.221, 11.074, 12.177)


def test_slow_waits_are_counted_between_warnings(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from surge._transport.stats import WaitStats

    stats = WaitStats()
    with caplog.at_level(logging.WARNING, logger="surge"):
        stats.slow_wait(1.5, now=0.0, waiting=3, where="http://h:1", limit=10)
        stats.slow_wait(2.0, now=10.0, waiting=2, where="http://h:1", limit=10)  # quiet:
        stats.slow_wait(1.2, now=20.0, waiting=1, where="http://h:1", limit=10)  # < 30 s
        stats.slow_wait(1.1, now=31.0, waiting=0, where="http://h:1", limit=10)
    messages = [r.getMessage() for r in caplog.records if r.name == "surge"]
    assert [m.split(". ")[0] for m in messages] == [
        "surge pool: 1 request(s) waited more than 1.0 s (longest 1.5 s) for a free "
        "connection to http://h:1; 3 still waiting",
        "surge pool: 3 request(s) waited more than 1.0 s (longest 2.0 s) for a free "
        "connection to http://h:1; 0 still waiting",
    ]
