"""A small sans-IO HTTP/1.1 codec: request heads out, responses in.

The pool's HTTP/1.1 connections (the `asyncio.Protocol` one and the stream one used on
trio) share this parser. It knows nothing of sockets or event loops: bytes are fed in,
and the response head, body chunks and completion come out as attributes. It handles a
status line and headers, `Content-Length`, `Transfer-Encoding: chunked` (trailers are read
and dropped), close-delimited bodies, bodiless responses (HEAD, 1xx, 204, 304), interim
1xx responses (skipped), and `Connection: close`.
"""

from __future__ import annotations

__all__ = ["MAX_HEAD_BYTES", "ProtocolError", "ResponseParser", "serialize_head"]

MAX_HEAD_BYTES = 64 * 1024
"""Most bytes accepted for a response's status line and headers together."""

_MAX_CHUNK_LINE = 4096

# Parser states.
_HEAD = 0
_LENGTH = 1
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_CRLF = 4
_TRAILERS = 5
_UNTIL_CLOSE = 6
_DONE = 7


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid HTTP/1.1 response."""


def serialize_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Return the bytes of a request line and its headers, ending with the blank line.

    Args:
        method: The request method, e.g. `b"POST"`.
        target: The request target, e.g. `b"/v1/chat/completions?x=1"`.
        headers: Header names and values, sent in order as given.

    Returns:
        The request head.

    Raises:
        ProtocolError: A header name or value contains a line break.
    """
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
            raise ProtocolError(f"header {name!r} contains a line break")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class ResponseParser:
    """Incremental parser of one HTTP/1.1 response at a time.

    Call `start()` before each response, then `feed()` bytes as they arrive and
    `feed_eof()` when the peer closes. After the head is parsed, `head_done` is true and
    `status_code`, `reason`, `http_version` and `headers` are set. Body bytes collect in
    `chunks` (the reader takes them out); `complete` becomes true at the end of the message.

    Attributes:
        head_done: The status line and headers have been parsed.
        status_code: The response's status code.
        reason: The reason phrase.
        http_version: `b"HTTP/1.1"` or `b"HTTP/1.0"`.
        headers: Header names and values as received.
        chunks: Body bytes parsed and not yet taken by the reader.
        complete: The whole response has been parsed.
        keep_alive: The connection may serve another request after this response.
        received: Any byte of this response has been received.
    """

    __slots__ = (
        "_buf",
        "_is_head",
        "_remaining",
        "_state",
        "chunks",
        "complete",
        "head_done",
        "headers",
        "http_version",
        "keep_alive",
        "reason",
        "received",
        "status_code",
    )

    def __init__(self) -> None:
        self.start(False)

    def start(self, is_head: bool) -> None:
        """Prepare for the next response.

        Args:
            is_head: The request was a HEAD request, so the response has no body.
        """
        self._buf = b""
        self._is_head = is_head
        self._state = _HEAD
        self._remaining = 0
        self.head_done = False
        self.status_code = 0
        self.reason = b""
        self.http_version = b"HTTP/1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.complete = False
        self.keep_alive = True
        self.received = False

    def feed(self, data: bytes) -> None:
        """Parse newly received bytes.

        The work is linear in the bytes fed: the buffer is walked with an offset, and each
        body byte is copied once (into `chunks`), however many chunks one read holds.

        Args:
            data: Bytes read from the connection (not empty).

        Raises:
            ProtocolError: The bytes are not a valid response, or arrived after its end.
        """
        self.received = True
        state = self._state
        if state == _LENGTH and not self._buf:
            # Fast path: body bytes of a Content-Length response.
            remaining = self._remaining
            size = len(data)
            if size < remaining:
                self.chunks.append(data)
                self._remaining = remaining - size
                return
            self.chunks.append(data[:remaining] if size > remaining else data)
            self._remaining = 0
            self._finish()
            if size > remaining:
                self._after_end(data[remaining:])
            return
        if state == _DONE:
            self._after_end(data)
            return
        self._buf = self._buf + data if self._buf else data
        self._run()

    def feed_eof(self) -> None:
        """Note that the peer closed the connection.

        Raises:
            ProtocolError: The response was not complete (the message names how far it got).
        """
        if self._state == _UNTIL_CLOSE:
            if self._buf:
                self.chunks.append(self._buf)
                self._buf = b""
            self._finish()
            return
        if self._state == _DONE:
            return
        self.keep_alive = False
        if self._state == _HEAD:
            if self.received:
                raise ProtocolError("server closed the connection in the middle of the headers")
            raise ProtocolError("server closed the connection without sending a response")
        raise ProtocolError("server closed the connection before the end of the response body")

    def _finish(self) -> None:
        self._state = _DONE
        self.complete = True

    def _after_end(self, rest: bytes) -> None:
        """Bytes after the end of the response: stray line ends are ignored (RFC 9112 2.2)."""
        if rest.strip(b"\r\n"):
            self.keep_alive = False
            raise ProtocolError("received data after the end of the response")

    def _run(self) -> None:
        buf = self._buf
        pos = 0
        size = len(buf)
        chunks = self.chunks
        try:
            while True:
                state = self._state
                if state == _CHUNK_DATA:
                    avail = size - pos
                    if not avail:
                        return
                    remaining = self._remaining
                    if avail < remaining:
                        chunks.append(buf[pos:] if pos else buf)
                        self._remaining = remaining - avail
                        pos = size
                        return
                    chunks.append(buf[pos : pos + remaining])
                    pos += remaining
                    self._state = _CHUNK_CRLF
                elif state == _CHUNK_CRLF:
                    if pos + 2 <= size and buf[pos : pos + 2] == b"\r\n":
                        pos += 2
                    elif pos < size and buf[pos] == 10:  # a bare LF
                        pos += 1
                    elif pos + 1 >= size and (pos == size or buf[pos] == 13):
                        return  # wait for the rest of the line end
                    else:
                        raise ProtocolError("missing CRLF after a chunk")
                    self._state = _CHUNK_SIZE
                elif state == _CHUNK_SIZE:
                    end = buf.find(b"\n", pos)
                    if end < 0 or end - pos > _MAX_CHUNK_LINE:
                        if size - pos > _MAX_CHUNK_LINE:
                            raise ProtocolError("chunk size line too long")
                        return
                    line = buf[pos:end].split(b";", 1)[0].strip()
                    try:
                        chunk_size = int(line, 16)
                    except ValueError:
                        raise ProtocolError(f"invalid chunk size {line[:20]!r}") from None
                    if chunk_size < 0:
                        raise ProtocolError(f"invalid chunk size {line[:20]!r}")
                    pos = end + 1
                    if chunk_size == 0:
                        self._state = _TRAILERS
                    else:
                        self._remaining = chunk_size
                        self._state = _CHUNK_DATA
                elif state == _HEAD:
                    # The head ends at a blank line: CRLF CRLF, or leniently LF LF. Empty
                    # lines before the status line are skipped (RFC 9112 2.2).
                    while pos < size and buf[pos] in b"\r\n":
                        pos += 1
                    end = buf.find(b"\n\r\n", pos)
                    bare = buf.find(b"\n\n", pos, size if end < 0 else end)
                    if bare >= 0:
                        end, skip = bare, 2
                    else:
                        skip = 3
                    if end < 0 or end - pos > MAX_HEAD_BYTES:
                        if size - pos > MAX_HEAD_BYTES:
                            raise ProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
                        return
                    head = buf[pos : end - 1] if buf[end - 1] == 13 else buf[pos:end]
                    pos = end + skip
                    self._parse_head(head)
                elif state == _LENGTH:
                    avail = size - pos
                    if not avail:
                        return
                    remaining = self._remaining
                    if avail < remaining:
                        chunks.append(buf[pos:] if pos else buf)
                        self._remaining = remaining - avail
                        pos = size
                        return
                    chunks.append(buf[pos : pos + remaining])
                    pos += remaining
                    self._remaining = 0
                    self._finish()
                elif state == _TRAILERS:
                    end = buf.find(b"\n", pos)
                    if end < 0:
                        if size - pos > MAX_HEAD_BYTES:
                            raise ProtocolError("trailers too long")
                        return
                    line_empty = end == pos or (end == pos + 1 and buf[pos] == 13)
                    pos = end + 1
                    if line_empty:
                        self._finish()
                elif state == _UNTIL_CLOSE:
                    if pos < size:
                        chunks.append(buf[pos:] if pos else buf)
                        pos = size
                    return
                else:  # _DONE
                    if pos < size:
                        rest, pos = buf[pos:], size
                        self._after_end(rest)
                    return
        finally:
            self._buf = buf[pos:] if pos < size else b""

    def _parse_head(self, head: bytes) -> None:
        lines = (head.replace(b"\r\n", b"\n") if b"\r" in head else head).split(b"\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"invalid status line {status_line[:80]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise ProtocolError(f"invalid status line {status_line[:80]!r}") from None
        if not 100 <= status <= 999:
            raise ProtocolError(f"invalid status code {status}")
        headers: list[tuple[bytes, bytes]] = []
        length: bytes | None = None
        chunked = False
        close = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in b" \t" or name[:1] in b" \t":
                raise ProtocolError(f"invalid header line {line[:80]!r}")
            value = value.strip(b" \t")
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                if length is not None and length != value:
                    raise ProtocolError("conflicting Content-Length headers")
                length = value
            elif lower == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lower == b"connection":
                close = close or b"close" in value.lower()
        if 100 <= status < 200 and status != 101:
            # An interim response: wait for the final one.
            self.received = True
            return
        self.head_done = True
        self.status_code = status
        self.reason = parts[2] if len(parts) > 2 else b""
        self.http_version = parts[0]
        self.headers = headers
        if close or parts[0] != b"HTTP/1.1" or status == 101:
            self.keep_alive = False
        if self._is_head or status in (204, 304):
            self._state = _LENGTH
            self._remaining = 0
            self._finish_if_empty()
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            if not length.isdigit():
                raise ProtocolError(f"invalid Content-Length {length[:20]!r}")
            self._state = _LENGTH
            self._remaining = int(length)
            self._finish_if_empty()
        else:
            self._state = _UNTIL_CLOSE
            self.keep_alive = False

    def _finish_if_empty(self) -> None:
        if self._remaining == 0:
            self._finish()
