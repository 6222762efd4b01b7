"""What a server that breaks HTTP/2 gets from surge's pool, over real loopback sockets.

A `RawH2Server` (the `h2` package's server side) answers with frames written by hand where
a test says so. A malformed response fails its own request only, and the server sees the
stream reset; a frame that breaks the connection fails the requests on it, the server
gets a GOAWAY naming the error, and the next request opens a new connection. The frame
by frame rules are in test_transport_h2_protocol.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import h2.errors
import httpx
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, PushPromiseFrame

from _pool_client import pool_client
from _servers import RawH2Server, serving

pytestmark = pytest.mark.anyio

Script = Callable[[Any, int], bytes | None]


class ScriptedFramesServer(RawH2Server):
    """Answers a request with the bytes `script(h2 connection, stream id)` returns, if any.

    A script returning None lets the request have the usual small JSON answer. Header
    blocks a script writes must use the connection's own encoder (`conn.encoder`), so that
    the client's HPACK table stays in step with it.
    """

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.scripted = 0

    def _on_request(self, conn: Any, writer: asyncio.StreamWriter, stream_id: int) -> None:
        data = self.script(conn, stream_id) if self.scripted == 0 else None
        if data is None:
            self._answer(conn, stream_id, b'{"ok": true}')
            return
        self.scripted += 1
        writer.write(conn.data_to_send() + data)


def headers_frame(conn: Any, sid: int, headers: list[tuple[bytes, bytes]], end: bool) -> bytes:
    flags = ["END_HEADERS", "END_STREAM"] if end else ["END_HEADERS"]
    return HeadersFrame(sid, conn.encoder.encode(headers), flags=flags).serialize()


async def test_a_malformed_response_fails_its_request_and_spares_the_connection(
    anyio_backend: str,
) -> None:
    def script(conn: Any, sid: int) -> bytes:
        return headers_frame(conn, sid, [(b":status", b"200"), (b"X-Bad", b"1")], end=True)

    async with serving(ScriptedFramesServer(script)) as srv:
        http, pool = pool_client(http2=True)
        async with http:
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await http.get(srv.url)
            assert str(info.value) == (
                f"{srv.url} sent a malformed HTTP/2 response: invalid field name b'X-Bad' "
                "(HTTP/2 names are lower-case tokens)"
            )
            await srv.wait_for(
                lambda s: s.client_resets == [(1, h2.errors.ErrorCodes.PROTOCOL_ERROR)]
            )
            again = await http.get(srv.url)
            assert again.json() == {"ok": True}
            assert pool.stats().connections_opened == 1
        assert srv.client_goaways == []


async def test_a_body_short_of_its_content_length_fails_as_it_is_read(anyio_backend: str) -> None:
    def script(conn: Any, sid: int) -> bytes:
        head = headers_frame(conn, sid, [(b":status", b"200"), (b"content-length", b"10")], False)
        return head + DataFrame(sid, b"1234567", flags=["END_STREAM"]).serialize()

    async with serving(ScriptedFramesServer(script)) as srv:
        http, pool = pool_client(http2=True)
        async with http:
            async with http.stream("GET", srv.url) as response:
                assert response.status_code == 200
                with pytest.raises(httpx.RemoteProtocolError) as info:
                    await response.aread()
            assert str(info.value) == (
                f"{srv.url} sent a malformed HTTP/2 response: "
                "the body ended 3 bytes short of its content-length"
            )
            assert (await http.get(srv.url)).json() == {"ok": True}
            assert pool.stats().connections_opened == 1


async def test_a_protocol_violation_ends_the_connection_with_goaway(anyio_backend: str) -> None:
    def script(conn: Any, sid: int) -> bytes:
        block = conn.encoder.encode([(b":method", b"GET"), (b":path", b"/pushed")])
        return PushPromiseFrame(
            sid, promised_stream_id=2, data=block, flags=["END_HEADERS"]
        ).serialize()

    async with serving(ScriptedFramesServer(script)) as srv:
        http, pool = pool_client(http2=True)
        async with http:
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await http.get(srv.url)
            assert str(info.value) == (
                f"{srv.url} broke HTTP/2: PUSH_PROMISE, though the client disabled server push"
            )
            await srv.wait_for(lambda s: s.client_goaways == [h2.errors.ErrorCodes.PROTOCOL_ERROR])
            again = await http.get(srv.url)
            assert again.json() == {"ok": True}
            assert pool.stats().connections_opened == 2


async def test_a_head_response_announces_a_body_it_does_not_send(anyio_backend: str) -> None:
    def script(conn: Any, sid: int) -> bytes:
        return headers_frame(conn, sid, [(b":status", b"200"), (b"content-length", b"12")], True)

    async with serving(ScriptedFramesServer(script)) as srv:
        http, _ = pool_client(http2=True)
        async with http:
            response = await http.head(srv.url)
            assert (response.status_code, response.headers["content-length"]) == (200, "12")
            assert response.content == b""
