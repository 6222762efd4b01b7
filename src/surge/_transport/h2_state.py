"""h2's connection, adapted where the pool needs it to behave otherwise.

Two subclasses of the `h2` package's classes, used by `h2.H2Connection`: a state machine that
survives GOAWAY, and a connection that counts its open outbound streams in O(1).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events

__all__ = ["CountingConnection", "GoawayStateMachine"]


class GoawayStateMachine(h2.connection.H2ConnectionStateMachine):
    """h2's connection state machine, except that receiving GOAWAY does not close it.

    h2 moves to CLOSED on GOAWAY and then rejects every later frame as a protocol error,
    including the answers to streams at or below `last_stream_id`, which the server may
    still finish (RFC 9113, 6.8). So the state stays open; `H2Connection` itself opens no
    stream after a GOAWAY and treats the streams above `last_stream_id` as refused.
    """

    def process_input(self, input_: h2.connection.ConnectionInputs) -> list[h2.events.Event]:
        if input_ is h2.connection.ConnectionInputs.RECV_GOAWAY:
            return []
        return super().process_input(input_)


class CountingConnection(h2.connection.H2Connection):
    """h2's connection, counting open outbound streams in O(1).

    h2 counts them by scanning every stream it holds on each `send_headers` (O(n) per
    request, O(n^2) for a burst) and drops closed streams in that scan. Here the streams
    opened and not yet ended are a set kept by `H2Connection`, which also drops each
    stream from h2's table when it ends (`end_stream`).
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.opened: set[int] = set()

    @property
    def open_outbound_streams(self) -> int:
        return len(self.opened)
