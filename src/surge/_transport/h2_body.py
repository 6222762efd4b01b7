"""The body of one HTTP/2 response, read event by event from its connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import h2.events
import httpx

from surge._timings import Timings

if TYPE_CHECKING:
    from surge._transport.h2 import H2Connection

__all__ = ["H2Body"]


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
                if isinstance(event, h2.events.DataReceived):
                    if event.flow_controlled_length:
                        conn._h2.acknowledge_received_data(event.flow_controlled_length, self._sid)
                    if event.stream_ended is not None:
                        self._finish(False)
                    if event.data:
                        yield event.data
                elif isinstance(event, h2.events.StreamEnded):
                    self._finish(False)
                elif isinstance(event, h2.events.StreamReset):
                    raise httpx.RemoteProtocolError(
                        f"{conn.url} reset the stream (error code {event.error_code})"
                    )
        except BaseException:
            self._finish(True)
            raise

    async def aclose(self) -> None:
        """Close the response; reset its stream if it was not read to the end."""
        self._finish(True)
