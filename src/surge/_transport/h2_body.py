"""The body of one HTTP/2 response, read event by event from its connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

from surge._timings import Timings
from surge._transport.h2_events import Data, Ended, Reset
from surge._transport.h2_frames import ErrorCode

if TYPE_CHECKING:
    from surge._transport.h2 import H2Connection

__all__ = ["H2Body", "reset_error"]


def reset_error(url: str, event: Reset) -> httpx.RemoteProtocolError:
    """Return the error for a reset stream: reset by the server, or by us for a bad answer."""
    if event.reason is not None:
        return httpx.RemoteProtocolError(f"{url} sent a malformed HTTP/2 response: {event.reason}")
    return httpx.RemoteProtocolError(f"{url} reset the stream ({ErrorCode.describe(event.code)})")


class H2Body(httpx.AsyncByteStream):
    """The body of one HTTP/2 response; ends (or resets) its stream when done."""

    def __init__(
        self,
        conn: H2Connection,
        sid: int,
        timings: Timings,
        start: float,
        read_timeout: float | None,
    ) -> None:
        self._conn = conn
        self._sid = sid
        self._timings = timings
        self._start = start
        self._read_timeout = read_timeout
        self._done = False

    def _finish(self, reset: bool) -> None:
        if not self._done:
            self._done = True
            self._conn.end_stream(self._sid, reset)
            self._timings.total = self._conn.owner.now() - self._start

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        try:
            while not self._done:
                event = await conn.next_event(self._sid, self._read_timeout)
                if isinstance(event, Data):
                    if event.flow:
                        conn._h2.acknowledge(self._sid, event.flow)
                    if event.ended:
                        self._finish(False)
                    if event.data:
                        yield event.data
                elif isinstance(event, Ended):
                    self._finish(False)
                elif isinstance(event, Reset):
                    raise reset_error(conn.url, event)
        except BaseException:
            self._finish(True)
            raise

    async def aclose(self) -> None:
        """Close the response; reset its stream if it was not read to the end."""
        self._finish(True)
