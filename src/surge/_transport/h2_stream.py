"""One HTTP/2 stream's state, as its client sees it, and what the server's frames do to it.

Its two send windows' stream half, the server's window on it, which halves are closed, and
the content-length left to receive; `take_head` and `take_data` check what arrives against
that state (RFC 9113 8.1) and say what makes a response malformed.
"""

from __future__ import annotations

from surge._transport.h2_headers import Malformed, response_fields

__all__ = ["StreamState"]


class StreamState:
    """The state of one stream we opened.

    Attributes:
        send: Our send window on it.
        recv: The server's: how many more bytes it may send on it.
        unacked: Bytes read and not yet given back with a WINDOW_UPDATE.
        local_closed: Our half is closed (the request ended, or the stream was reset).
        remote_closed: The server's half is closed (its response ended, or a reset).
        answered: The final response head arrived.
        head: The request is a HEAD: a content-length does not announce a body.
        remaining: Body bytes its content-length still announces, if it gave one.
    """

    __slots__ = ("answered", "head", "local_closed", "recv", "remaining", "remote_closed",
                 "send", "unacked")  # fmt: skip

    def __init__(self, send: int, recv: int, local_closed: bool, head: bool) -> None:
        self.send = send
        self.recv = recv
        self.unacked = 0
        self.local_closed = local_closed
        self.remote_closed = False
        self.answered = False
        self.head = head
        self.remaining: int | None = None

    def take_head(
        self, headers: list[tuple[bytes, bytes]], ended: bool
    ) -> tuple[int, list[tuple[bytes, bytes]]] | None:
        """Take a decoded header block: a response head, an informational one, or trailers.

        Returns:
            The status and regular fields of a final response; None for a 1xx or trailers.

        Raises:
            Malformed: The block is not what the stream allows now.
        """
        if self.answered:
            if not ended:
                raise Malformed("a second header block that does not end the stream")
            if any(name[:1] == b":" for name, _ in headers):
                raise Malformed("a pseudo-header in the trailers")
            self._check_ended()
            self.remote_closed = True
            return None
        status, fields = response_fields(headers)
        if status < 200:
            if status == 101 or ended:
                raise Malformed(f"an informational response ({status}) that cannot be one")
            return None  # 1xx: the final response follows
        if not (self.head or status == 204 or status == 304):
            for name, value in fields:
                if name == b"content-length":
                    if not value.isdigit():
                        raise Malformed(f"content-length {value!r} is not a number")
                    self.remaining = int(value)
        if ended:
            self._check_ended()
            self.remote_closed = True
        self.answered = True
        return status, fields

    def take_data(self, size: int, flow: int, ended: bool) -> str | None:
        """Take a DATA frame of `size` body bytes costing `flow`; return why it is malformed.

        Returns:
            None if the stream allows it, else the reason it does not.
        """
        self.recv -= flow
        if not self.answered:
            return "DATA before the response's headers"
        if self.recv < 0:
            return "more DATA than the stream's window allowed"
        if self.remaining is not None:
            self.remaining -= size
            if self.remaining < 0:
                return "more body than its content-length"
            if ended and self.remaining:
                return f"the body ended {self.remaining} bytes short of its content-length"
        if ended:
            self.remote_closed = True
        return None

    def _check_ended(self) -> None:
        if self.remaining:
            raise Malformed(f"the body ended {self.remaining} bytes short of its content-length")
