"""The HTTP/1.1 parser under hostile and sloppy servers (issue 9, items 12 and 13): pure logic."""

from __future__ import annotations

import pytest

from surge._transport.h1_parser import MAX_HEAD_BYTES, ProtocolError, ResponseParser

_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


class _CountingBytes(bytes):
    """bytes that count how many bytes slicing them copied (the parser's work)."""

    copied = 0

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        value = super().__getitem__(key)
        if isinstance(key, slice):
            _CountingBytes.copied += len(value)
            return _CountingBytes(value)  # slices of slices count too
        return value


def _chunked(payload: bytes, size: int) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(payload[i : i + size]), payload[i : i + size])
        for i in range(0, len(payload), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("chunk_size", [7, 100])
def test_chunked_decoding_copies_each_byte_a_bounded_number_of_times(chunk_size: int) -> None:
    # 256 KiB of small chunks in a single read: the parser copied the rest of the buffer
    # per chunk (quadratic: ~5 GB of copying for 7-byte chunks). Now each byte is copied once.
    payload = bytes(range(256)) * 1024
    raw = _chunked(payload, chunk_size)
    parser = ResponseParser()
    parser.start(False)
    parser.feed(_CHUNKED_HEAD)
    _CountingBytes.copied = 0
    parser.feed(_CountingBytes(raw))
    assert parser.complete
    assert b"".join(parser.chunks) == payload
    assert _CountingBytes.copied <= len(raw)


def test_chunked_decoding_split_into_many_reads_is_linear_too() -> None:
    payload = b"y" * 300_000
    raw = _chunked(payload, 7)
    parser = ResponseParser()
    parser.start(False)
    parser.feed(_CHUNKED_HEAD)
    _CountingBytes.copied = 0
    for i in range(0, len(raw), 65536):
        parser.feed(_CountingBytes(raw[i : i + 65536]))
    assert parser.complete
    assert b"".join(parser.chunks) == payload
    assert _CountingBytes.copied <= len(raw) + 5 * 4096  # plus a partial line per read


def _parse(*pieces: bytes) -> ResponseParser:
    parser = ResponseParser()
    parser.start(False)
    for piece in pieces:
        parser.feed(piece)
    return parser


def test_lf_only_line_endings_are_accepted() -> None:
    raw = b"HTTP/1.1 200 OK\nContent-Length: 5\nX-A: b\n\nhello"
    for cut in range(1, len(raw)):
        parser = _parse(raw[:cut], raw[cut:])
        assert parser.complete
        assert (parser.status_code, parser.reason) == (200, b"OK")
        assert parser.headers == [(b"Content-Length", b"5"), (b"X-A", b"b")]
        assert b"".join(parser.chunks) == b"hello"


def test_lf_only_chunked_body_is_accepted() -> None:
    raw = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\nhello\n6\n world\n0\n\n"
    for cut in range(1, len(raw)):
        parser = _parse(raw[:cut], raw[cut:])
        assert parser.complete, cut
        assert b"".join(parser.chunks) == b"hello world"
        assert parser.keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n\r\n",
    ],
)
def test_a_stray_crlf_after_a_complete_body_is_ignored(raw: bytes) -> None:
    parser = _parse(raw)  # all in one read
    assert parser.complete
    assert b"".join(parser.chunks) == (b"" if b"204" in raw else b"hi")
    assert parser.keep_alive


def test_other_bytes_after_the_body_still_fail_and_close() -> None:
    parser = ResponseParser()
    parser.start(False)
    with pytest.raises(ProtocolError, match="after the end of the response"):
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiXYZ")
    assert not parser.keep_alive


def test_the_head_limit_holds_when_the_whole_head_arrives_in_one_read() -> None:
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\nContent-Length: 0\r\n\r\n"
    parser = ResponseParser()
    parser.start(False)
    with pytest.raises(ProtocolError, match=f"larger than {MAX_HEAD_BYTES} bytes"):
        parser.feed(big)


def test_a_head_just_under_the_limit_is_accepted() -> None:
    filler = b"a" * (MAX_HEAD_BYTES - 100)
    parser = _parse(b"HTTP/1.1 200 OK\r\nX-Big: " + filler + b"\r\nContent-Length: 0\r\n\r\n")
    assert parser.complete
    assert parser.headers[0] == (b"X-Big", filler)
