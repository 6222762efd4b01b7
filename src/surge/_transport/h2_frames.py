"""HTTP/2 on the wire: the frame layout (RFC 9113 sections 4 and 6), its names and codes.

Constants and pure functions over bytes, used by `surge._transport.h2_protocol`, and
`Violation`, the error of a frame that breaks the protocol.
"""

from __future__ import annotations

import enum
import struct

__all__ = [
    "ACK",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "FRAME_HEADER",
    "FRAME_NAMES",
    "GOAWAY",
    "HEADERS",
    "PADDED",
    "PING",
    "PREFACE",
    "PRIORITY",
    "PRIORITY_FLAG",
    "PUSH_PROMISE",
    "RST_STREAM",
    "SETTINGS",
    "WINDOW_UPDATE",
    "ErrorCode",
    "Violation",
    "frame",
    "unpad",
]

# Frame types (RFC 9113 6).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9
FRAME_NAMES = {
    DATA: "DATA",
    HEADERS: "HEADERS",
    PRIORITY: "PRIORITY",
    RST_STREAM: "RST_STREAM",
    SETTINGS: "SETTINGS",
    PUSH_PROMISE: "PUSH_PROMISE",
    PING: "PING",
    GOAWAY: "GOAWAY",
    WINDOW_UPDATE: "WINDOW_UPDATE",
    CONTINUATION: "CONTINUATION",
}

# Flags.
END_STREAM = 0x1
ACK = 0x1  # SETTINGS and PING
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The 9-byte frame header: a 24-bit length (as 16 + 8 bits), type, flags, stream id.
FRAME_HEADER = struct.Struct(">HBBBL")


class ErrorCode(enum.IntEnum):
    """The error codes of RST_STREAM and GOAWAY (RFC 9113 7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD

    @classmethod
    def describe(cls, code: int) -> str:
        """Return `code` as its name and number, e.g. ``CANCEL (8)``; unknown ones by number."""
        try:
            return f"{cls(code).name} ({code})"
        except ValueError:
            return f"unknown error code {code}"


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    """Return one frame: its 9-byte header and `payload`."""
    size = len(payload)
    return FRAME_HEADER.pack(size >> 8, size & 0xFF, kind, flags, sid) + payload


class Violation(Exception):
    """A frame broke the protocol in a way that ends the connection (RFC 9113 5.4.1).

    Attributes:
        code: The error code for the GOAWAY.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def unpad(payload: bytes, kind: int) -> bytes:
    """Return a PADDED frame's payload without its pad-length byte and padding."""
    if not payload or payload[0] >= len(payload):
        raise Violation(
            ErrorCode.PROTOCOL_ERROR, f"a {FRAME_NAMES[kind]} frame's padding is longer than it"
        )
    return payload[1 : len(payload) - payload[0]]
