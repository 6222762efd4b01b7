"""Dropping a client's connection from inside an ASGI app served by hypercorn.

ASGI has no message for "close the socket without answering": when an app returns or
raises before `http.response.start`, hypercorn sends a `500` with `connection: close`.
A real failing server (a crashed worker, a proxy timing out) sends nothing at all, and a
client must be tested against that. So this module reaches, once per drop, from the
`send` callable hypercorn gives the app to the connection's protocol object:

    send                  -> HTTPStream.app_send (bound method)
    HTTPStream.send       -> H11Protocol.stream_send / H2Protocol.stream_send
    H11Protocol.send      -> TCPServer.protocol_send, which closes the socket on `Closed()`

HTTP/1.1: the socket is closed (FIN) with no response byte. HTTP/2: the request's stream
is reset (RST_STREAM, INTERNAL_ERROR) and the connection, shared with other requests,
stays up, as nginx or Envoy do when one upstream request fails.

This relies on hypercorn internals (checked with 0.17-0.18). When they do not match,
`abort` returns None and the caller falls back to hypercorn's own behaviour.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

__all__ = ["abort"]

_log = logging.getLogger("surge.testing")
_warned = False


async def abort(send: Any) -> Literal["closed", "reset"] | None:
    """Drop the connection (HTTP/1.1) or reset the stream (HTTP/2) of a request.

    Args:
        send: The ASGI `send` callable hypercorn gave the app for this request.

    Returns:
        "closed" when the connection was closed (hypercorn then sends the app an
        `http.disconnect`), "reset" when the HTTP/2 stream was reset (no disconnect
        follows), None when hypercorn's internals were not as expected (nothing was done).
    """
    try:
        from hypercorn.events import Closed, RawData
        from hypercorn.protocol.h2 import H2Protocol
        from hypercorn.protocol.h11 import H11Protocol

        stream = send.__self__
        protocol = stream.send.__self__
        if isinstance(protocol, H11Protocol):
            await protocol.send(Closed())
            return "closed"
        if isinstance(protocol, H2Protocol):
            import h2.errors

            protocol.connection.reset_stream(
                stream.stream_id, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR
            )
            await protocol.send(RawData(data=protocol.connection.data_to_send()))
            return "reset"
    except Exception:  # any mismatch with hypercorn's internals: fall back, loudly once
        _log.debug("surge.testing: could not drop the connection", exc_info=True)
    global _warned
    if not _warned:
        _warned = True
        _log.warning(
            "surge.testing: this hypercorn version does not allow a silent drop; "
            "dropped requests get hypercorn's 500 with 'connection: close' instead"
        )
    return None
