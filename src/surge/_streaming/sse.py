"""A server-sent events decoder written to the WHATWG rules: bytes in, events out.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

- Lines end with CRLF, LF or CR; a CR at the end of one read and an LF at the start of
  the next are one line end.
- `data:` lines are joined with newlines; `event:`, `id:` (ignored when it holds NUL) and
  `retry:` (only ASCII digits) are kept; a line starting with `:` is a comment; a field
  with no colon has an empty value; one space after the colon is dropped; unknown fields
  are ignored. A blank line dispatches the event (none when no `data` was given).
- A leading UTF-8 byte order mark is dropped. Lines are decoded only once complete, so a
  character split across reads (at any byte) is never decoded in halves; invalid UTF-8
  becomes U+FFFD, as the spec says.

The decoder keeps no more than the current unfinished line and event, so it is linear in
the stream's length however the stream is cut into reads.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SSEDecoder", "ServerSentEvent"]


class ServerSentEvent:
    r"""One dispatched event.

    Attributes:
        event: The event type ("message" unless an `event:` field said otherwise).
        id: The last event id seen on the stream (it carries over between events).
        retry: The reconnection time in milliseconds, when this event set one.
    """

    __slots__ = ("_data", "_raw", "event", "id", "retry")

    def __init__(
        self,
        data: str | None = None,
        event: str = "message",
        id: str = "",
        retry: int | None = None,
        *,
        raw: bytes | None = None,
    ) -> None:
        self._data = data
        self._raw = raw
        self.event = event
        self.id = id
        self.retry = retry

    @property
    def data(self) -> str:
        r"""The data lines joined with "\n" (invalid UTF-8 shown as U+FFFD)."""
        if self._data is None:
            self._data = (self._raw or b"").decode("utf-8", "replace")
        return self._data

    @property
    def raw(self) -> bytes:
        """The data as bytes, undecoded: what a JSON parser wants."""
        if self._raw is None:
            self._raw = self.data.encode("utf-8")
        return self._raw

    def __repr__(self) -> str:
        return f"ServerSentEvent(event={self.event!r}, data={self.data!r}, id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return (self.data, self.event, self.id, self.retry) == (
            other.data,
            other.event,
            other.id,
            other.retry,
        )

    __hash__ = None  # type: ignore[assignment]


class SSEDecoder:
    """Incremental decoder of one event stream.

    Call `feed(data)` with each read (any split, any size) and get the events it
    completed; call `close()` at the end of the stream.

    Attributes:
        last_event_id: The last `id:` seen.
        retry: The last valid `retry:` seen, in milliseconds.
    """

    __slots__ = (
        "_buf",
        "_data",
        "_event",
        "_has_data",
        "_retry_now",
        "_skip_lf",
        "_started",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        self._buf = b""  # an unfinished line
        self._data: list[bytes] = []
        self._has_data = False
        self._event = ""
        self._retry_now: int | None = None
        self._skip_lf = False  # the last read ended with CR: an LF now is part of it
        self._started = False
        self.last_event_id = ""
        self.retry: int | None = None

    @property
    def pending(self) -> bool:
        """Whether an unfinished line or event is held (the stream stopped mid-event)."""
        return bool(self._buf) or self._has_data or bool(self._event)

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Decode the next bytes of the stream; return the events they completed."""
        return self._decode(data, False)

    def feed_payloads(self, data: bytes) -> list[bytes | ServerSentEvent]:
        """`feed`, for a reader that wants only the data of plain events (the hot path).

        Returns:
            The events completed, in order: an event of type "message" with no `retry`
            that stood alone between blank lines as one `data: ` line is given as its
            data bytes (no object made); any other as a `ServerSentEvent`.
        """
        return self._decode(data, True)

    def _decode(self, data: bytes, payloads: bool) -> list[Any]:
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            data = data[1:] if data[:1] == b"\n" else data
        if self._buf:
            data = self._buf + data
        if not self._started:
            if len(data) < 3 and b"\xef\xbb\xbf".startswith(data):
                self._buf = data
                return []
            self._started = True
            if data[:3] == b"\xef\xbb\xbf":
                data = data[3:]
        if b"\r" in data:
            if data[-1:] == b"\r":
                self._skip_lf = True  # the CR ends a line; an LF that follows belongs to it
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out: list[Any] = []
        if b"\n\n" in data:
            # Many events per read: split at blank lines and take each block that is one
            # `data: ` line whole, with no per-line work. A block holds the lines before
            # one blank line; the first continues what earlier reads left pending.
            blocks = data.split(b"\n\n")
            data = blocks.pop()  # after the last blank line: lines of an unfinished event
            event_id = self.last_event_id
            pending = self._has_data or self._event or self._retry_now is not None
            for block in blocks:
                if not pending and block[:6] == b"data: " and b"\n" not in block:
                    if payloads:
                        out.append(block[6:])
                    else:
                        out.append(ServerSentEvent(None, "message", event_id, None, raw=block[6:]))
                    continue
                self._lines(block.split(b"\n"), out)
                self._blank(out)  # dispatches, so nothing is pending after any block
                pending = False
                event_id = self.last_event_id
        lines = data.split(b"\n")
        self._buf = lines.pop()
        self._lines(lines, out)
        return out

    def _lines(self, lines: list[bytes], out: list[ServerSentEvent]) -> None:
        """Interpret complete lines (no line ends), appending the events they dispatch."""
        for line in lines:
            if not line:
                self._blank(out)
            elif line[:6] == b"data: ":  # the common line, inlined
                self._data.append(line[6:])
                self._has_data = True
            else:
                self._line(line)

    def _blank(self, out: list[ServerSentEvent]) -> None:
        if self._has_data or self._event or self._retry_now is not None:
            event = self._dispatch()
            if event is not None:
                out.append(event)

    def close(self) -> list[ServerSentEvent]:
        """End the stream. An unfinished event is discarded, as the spec says.

        Returns:
            Always empty; kept for symmetry (and for a stream whose last line ended with
            a lone CR, which `feed` already ended).
        """
        self._buf = b""
        self._data = []
        self._has_data = False
        self._event = ""
        return []

    def _line(self, line: bytes) -> None:
        if line[:5] == b"data:":
            self._data.append(line[6:] if line[5:6] == b" " else line[5:])
            self._has_data = True
            return
        if line[:1] == b":":
            return  # a comment
        text = line.decode("utf-8", "replace")
        name, colon, value = text.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":  # `data` with no colon: an empty line of data
            self._data.append(value.encode())
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = self._retry_now = int(value)

    def _dispatch(self) -> ServerSentEvent | None:
        retry, self._retry_now = self._retry_now, None
        if not self._has_data:
            self._event = ""
            return None
        raw = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = ServerSentEvent(None, self._event or "message", self.last_event_id, retry, raw=raw)
        self._data = []
        self._has_data = False
        self._event = ""
        return event
