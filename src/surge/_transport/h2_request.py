"""What an HTTP/2 request sends: its header block and its body, under flow control.

`request_headers` builds the header block clean (lower-case names, no connection-specific
fields, credentials marked never-indexed) and encodes it (`h2_headers.encode_field`).
`BodyUpload` is the upload half of `H2Connection`, mixed into it: it sends a body as the
stream's and the connection's windows allow, and waits for a window on an event, reading
the socket for everyone meanwhile if nobody else is.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from surge._transport.backend import Waiter
from surge._transport.h2_events import StreamClosed
from surge._transport.h2_headers import encode_field
from surge._transport.h2_protocol import H2Protocol

__all__ = ["BodyUpload", "request_headers"]

_SKIP_HEADERS = frozenset(
    {b"host", b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Fields marked never-indexed (RFC 7541 7.1.3), so that no intermediary adds them to its
# tables: credentials always, short cookies (guessable from a table's size) too.
_NEVER_INDEXED = frozenset({b"authorization", b"proxy-authorization"})
_SHORT_COOKIE = 20


def request_headers(request: httpx.Request) -> bytes:
    """Return the encoded HTTP/2 header block of `request`: pseudo-headers first.

    Names are lower-case; connection-specific fields (RFC 9113 8.2.2) are dropped, and `te`
    unless it is `trailers`; credentials and short cookies are marked never-indexed.
    """
    url = request.url
    authority = request.headers.get("host") or url.netloc.decode("ascii")
    parts = [
        encode_field(b":method", request.method.encode("ascii")),
        encode_field(b":authority", authority.encode("ascii")),
        encode_field(b":scheme", url.raw_scheme),
        encode_field(b":path", url.raw_path),
    ]
    for name, value in request.headers.raw:
        lower = name.lower()
        if (
            lower in _SKIP_HEADERS
            or not lower
            or lower[:1] == b":"
            or (lower == b"te" and value.lower() != b"trailers")
        ):
            continue
        never = lower in _NEVER_INDEXED or (lower == b"cookie" and len(value) < _SHORT_COOKIE)
        parts.append(encode_field(lower, value, never))
    return b"".join(parts)


class BodyUpload:
    """The upload half of `H2Connection`, whose state it shares (declared here for types)."""

    url: str
    _h2: H2Protocol
    _events: dict[int, deque[Any]]
    _parked: dict[int, Waiter]
    _window_waiting: set[int]
    _reading: bool
    _error: httpx.TransportError | None
    _atomic_writes: bool

    def now(self) -> float:
        """Return the loop's clock (the pool's)."""
        raise NotImplementedError

    async def _flush(self, time_limit: float | None) -> None:
        raise NotImplementedError

    async def _read_once(self, time_limit: float | None) -> None:
        raise NotImplementedError

    def _refused(self, sid: int) -> bool:
        raise NotImplementedError

    def _lost(self, error: httpx.TransportError) -> None:
        raise NotImplementedError

    def _hand_off(self) -> None:
        raise NotImplementedError

    async def _park(self, sid: int, time_limit: float | None) -> bool:
        raise NotImplementedError

    async def _send_data(
        self, sid: int, data: bytes, time_limit: float | None, end: bool = False
    ) -> bool:
        """Send `data` on stream `sid` as flow control allows (with END_STREAM if `end`).

        Returns:
            False if the server answered, ended or reset the stream before all was sent
            (the rest is not sent), else True.

        Raises:
            httpx.WriteTimeout: The window stayed closed for `time_limit` seconds.
        """
        conn = self._h2
        view = memoryview(data)
        deadline = None if time_limit is None else self.now() + time_limit
        try:
            while view:
                # A frame at a time: a cancel or the server's answer is seen between frames,
                # and a shielded write (trio) never holds more than one.
                window = min(conn.send_window(sid), conn.max_frame_size)
                if window <= 0:
                    await self._flush(time_limit)
                    if not await self._wait_for_window(sid, deadline):
                        return False
                    continue
                last = len(view) <= window
                conn.send_data(sid, bytes(view[:window]), end and last)
                view = view[window:]
                if last and end:
                    return True  # the caller flushes: one write for a small request
                await self._flush(time_limit)
                if not self._atomic_writes:  # the shielded write did not see a cancel
                    await anyio.lowlevel.checkpoint_if_cancelled()
        except StreamClosed:
            return False  # reset by the server: its RST_STREAM is queued for the reader
        return True

    async def _wait_for_window(self, sid: int, deadline: float | None) -> bool:
        """Wait until stream `sid` may send again; False if its answer or end came first.

        Reads the socket for everyone if nobody else does (stream events stay queued for
        their streams); else parks until a WINDOW_UPDATE, a stream event or a hand-off
        wakes it. Leaving, it hands the reading role on if requests are parked.
        """
        queue = self._events[sid]
        conn = self._h2
        try:
            while conn.send_window(sid) <= 0:
                if not conn.local_open(sid):
                    return False
                if queue:
                    return False
                if self._error is not None:
                    raise type(self._error)(str(self._error))
                if self._refused(sid):
                    raise httpx.RemoteProtocolError(f"{self.url} refused the stream (GOAWAY)")
                left = None if deadline is None else deadline - self.now()
                if left is not None and left <= 0:
                    raise httpx.WriteTimeout(
                        f"timed out waiting for {self.url} to open the HTTP/2 flow-control "
                        "window for the request body"
                    )
                if not self._reading:
                    self._reading = True
                    try:
                        await self._read_once(left)
                    except httpx.ReadTimeout:
                        continue  # the deadline check above raises WriteTimeout
                    except httpx.TransportError as exc:
                        self._lost(type(exc)(str(exc)))
                        raise
                    finally:
                        self._reading = False
                else:
                    self._window_waiting.add(sid)
                    try:
                        await self._park(sid, left)  # on timeout, the deadline check raises
                    finally:
                        self._window_waiting.discard(sid)
        finally:
            if not self._reading and self._parked:
                self._hand_off()
        return True
