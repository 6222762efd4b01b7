"""HTTP/2 header blocks: encoding a request's (RFC 7541), checking a response's (RFC 9113 8).

A request's block is encoded without HPACK's dynamic table (RFC 7541 6.2.2 and 6.2.3): a
field in the static table is one byte, any other a literal, so the encoder keeps no state
that could drift from the server's; literal encodings are memoised (credentials excepted).
Response blocks, which may use the dynamic table and Huffman coding, are decoded by `hpack`
(in `h2_protocol`) and then checked here: a malformed one fails its stream only.
"""

from __future__ import annotations

import functools
import re

from hpack.table import HeaderTable

__all__ = ["Malformed", "encode_field", "response_fields"]

_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_FULL: dict[tuple[bytes, bytes], int] = {}
_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(_STATIC, 1):
    _FULL.setdefault((_name, _value), _index)
    _NAMES.setdefault(_name, _index)


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """Return `value` as an HPACK integer (RFC 7541 5.1) in a `prefix_bits`-bit prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: bytes, value: bytes, never_indexed: bool) -> bytes:
    """A literal field, without indexing (0000) or never indexed (0001), its name indexed."""
    first = 0x10 if never_indexed else 0x00
    index = _NAMES.get(name)
    head = (
        _integer(index, 4, first)
        if index is not None
        else bytes((first,)) + _integer(len(name), 7, 0) + name
    )
    return head + _integer(len(value), 7, 0) + value


_MEMO_VALUE = 256  # longest value memoised: the memo holds at most ~1 MB


@functools.lru_cache(maxsize=4096)
def _field(name: bytes, value: bytes) -> bytes:
    index = _FULL.get((name, value))
    if index is not None:
        return bytes((0x80 | index,))  # an indexed field (RFC 7541 6.1)
    return _literal(name, value, False)


def encode_field(name: bytes, value: bytes, never_indexed: bool = False) -> bytes:
    """Return one header field's HPACK encoding, stateless (no dynamic table).

    Args:
        name: The lower-case field name.
        value: The value.
        never_indexed: Mark it never-indexed (RFC 7541 7.1.3), for credentials: no
            intermediary may add it to a table. Such fields are not memoised, nor are
            values over 256 bytes.
    """
    if never_indexed:
        return _literal(name, value, True)
    if len(value) > _MEMO_VALUE:
        return _literal(name, value, False)  # kept out of the memo: it stays small
    return _field(name, value)


# ---------------------------------------------------------------------- responses
_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9a-z]")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


class Malformed(Exception):
    """A malformed response (RFC 9113 8.1.1): an error of its stream only."""


def response_fields(headers: list[tuple[bytes, bytes]]) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Split a decoded response head into its status and regular fields, checking both.

    Raises:
        Malformed: A pseudo-header other than one `:status`, or after a regular field; a
            name that is not a lower-case token; a connection-specific field; NUL, CR or
            LF in a value; a `:status` that is not three digits.
    """
    status: bytes | None = None
    fields: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name[:1] == b":":
            if name != b":status" or status is not None:
                raise Malformed(f"unexpected pseudo-header {name.decode('latin-1')!r}")
            if fields:
                raise Malformed(":status after regular fields")
            status = value
            continue
        if not name or _BAD_NAME.search(name):
            raise Malformed(f"invalid field name {name!r} (HTTP/2 names are lower-case tokens)")
        if name in _CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific field {name.decode()!r}")
        if _BAD_VALUE.search(value):
            raise Malformed(f"field {name.decode()!r} has NUL, CR or LF in its value")
        fields.append((name, value))
    if status is None:
        raise Malformed("no :status")
    if len(status) != 3 or not status.isdigit():
        raise Malformed(f":status {status!r} is not three digits")
    return int(status), fields
