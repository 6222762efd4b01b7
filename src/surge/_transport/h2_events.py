"""What `H2Protocol` reports: the events of the frames it read, and its errors.

Events are small slotted classes, one per thing a request or the connection must learn;
the stream events (`Response`, `Data`, `Ended`, `Reset`) carry the stream id `sid`.
"""

from __future__ import annotations

from surge._transport.h2_frames import ErrorCode

__all__ = [
    "Data",
    "Ended",
    "Event",
    "GoAway",
    "H2ProtocolError",
    "NoStreamIds",
    "Reset",
    "Response",
    "SettingsChanged",
    "StreamClosed",
    "WindowOpened",
]


# ---------------------------------------------------------------------- errors
class H2ProtocolError(Exception):
    """The server broke HTTP/2 in a way that ends the connection (a GOAWAY is queued).

    Attributes:
        code: The error code sent in the GOAWAY.
    """

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


class NoStreamIds(Exception):
    """The connection has used all its stream ids (2**30 requests): open a new one."""


class StreamClosed(Exception):
    """The stream is closed on our side (reset, or its request already ended)."""


# ---------------------------------------------------------------------- events
class Response:
    """The final response head of stream `sid`: its status and regular fields."""

    __slots__ = ("headers", "sid", "status")

    def __init__(self, sid: int, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.sid = sid
        self.status = status
        self.headers = headers


class Data:
    """Body bytes of stream `sid`; `flow` is what they cost the windows (with padding)."""

    __slots__ = ("data", "ended", "flow", "sid")

    def __init__(self, sid: int, data: bytes, flow: int, ended: bool) -> None:
        self.sid = sid
        self.data = data
        self.flow = flow
        self.ended = ended


class Ended:
    """Stream `sid` ended without a DATA frame to carry the flag (headers or trailers)."""

    __slots__ = ("sid",)

    def __init__(self, sid: int) -> None:
        self.sid = sid


class Reset:
    """Stream `sid` was reset: by the server (`reason` None) or by us for a malformed answer."""

    __slots__ = ("code", "reason", "sid")

    def __init__(self, sid: int, code: int, reason: str | None = None) -> None:
        self.sid = sid
        self.code = code
        self.reason = reason


class WindowOpened:
    """The server opened a send window: stream `sid`'s, or the connection's (0)."""

    __slots__ = ("sid",)

    def __init__(self, sid: int) -> None:
        self.sid = sid


class SettingsChanged:
    """The server's SETTINGS arrived (and were acknowledged)."""

    __slots__ = ()


class GoAway:
    """The server will take no new stream; those above `last_stream_id` it did not process."""

    __slots__ = ("code", "debug", "last_stream_id")

    def __init__(self, last_stream_id: int, code: int, debug: bytes) -> None:
        self.last_stream_id = last_stream_id
        self.code = code
        self.debug = debug


Event = Response | Data | Ended | Reset | WindowOpened | SettingsChanged | GoAway
