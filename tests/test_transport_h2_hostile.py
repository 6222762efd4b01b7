"""surge's HTTP/2 connections against a scriptable hostile server (issue 9, HTTP/2 items).

Every test runs on asyncio and trio; the cancellation, window and GOAWAY ones also on
h2c (prior knowledge) and TLS with ALPN.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import trustme

from _h2server import ScriptedH2Server, h2_server_ssl_context
from _pool_client import pool_client
from _servers import client_ssl_context, serving

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(params=["h2c", "tls"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_server(mode: str, ca: trustme.CA, **kwargs: Any) -> ScriptedH2Server:
    ctx: ssl.SSLContext | None = h2_server_ssl_context(ca) if mode == "tls" else None
    return ScriptedH2Server(ctx, **kwargs)


def make_client(mode: str, ca: trustme.CA, **config: Any) -> tuple[httpx.AsyncClient, Any]:
    if mode == "tls":
        config.setdefault("verify", client_ssl_context(ca))
    return pool_client(http2=True, **config)


@pytest.fixture
async def srv(mode: str, ca: trustme.CA, anyio_backend: str) -> AsyncIterator[ScriptedH2Server]:
    async with serving(make_server(mode, ca)) as server:
        yield server


# ---------------------------------------------------------------------- 6: RST_STREAM at once
_PROMPT = 0.1  # seconds: the server must see the reset this soon after the caller left


@pytest.fixture
async def reset_watch(srv: ScriptedH2Server) -> AsyncIterator[Any]:
    """`start(expected)`: a task that sets the returned event once srv.resets == expected.

    The watch starts before the cancel, so that `fail_after(_PROMPT)` around the event
    measures the client's flush, not the start of a watcher thread.
    """
    async with anyio.create_task_group() as tg:

        def start(expected: list[int]) -> anyio.Event:
            seen = anyio.Event()

            async def watch() -> None:
                await srv.wait_for(lambda s: s.resets == expected)
                seen.set()

            tg.start_soon(watch)
            return seen

        yield start


async def test_cancelled_request_resets_its_stream_at_once(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA, reset_watch: Any
) -> None:
    # The server never answers and the caller gives up: the server must see RST_STREAM
    # at once, with no later request on the connection to flush it.
    http, pool = make_client(mode, ca)
    async with http:
        assert (await http.get(srv.url)).status_code == 200  # stream 1 opens the connection
        seen = reset_watch([3])
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.get, srv.url + "/?stall=1")
            await srv.wait_for(lambda s: s.in_flight == 1)
            tg.cancel_scope.cancel()
        with anyio.fail_after(_PROMPT):
            await seen.wait()
        assert pool.stats().in_use == 0
        assert srv.in_flight == 0


async def test_timed_out_request_resets_its_stream_at_once(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA, reset_watch: Any
) -> None:
    http, pool = make_client(mode, ca)
    async with http:
        seen = reset_watch([1])
        with pytest.raises(httpx.ReadTimeout):
            await http.get(srv.url + "/?stall=1", timeout=httpx.Timeout(10.0, read=0.3))
        with anyio.fail_after(_PROMPT):
            await seen.wait()
        assert pool.stats().in_use == 0


async def test_response_closed_half_read_resets_its_stream_at_once(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA, reset_watch: Any
) -> None:
    http, pool = make_client(mode, ca)
    async with http:
        seen = reset_watch([1])
        async with http.stream("GET", srv.url + "/?partial=10000") as response:
            async for chunk in response.aiter_raw():
                assert chunk
                break
        with anyio.fail_after(_PROMPT):
            await seen.wait()
        assert pool.stats().in_use == 0


# ---------------------------------------------------------------------- 1: window leak
async def test_half_read_responses_never_shrink_the_connection_window(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small receive window (128 KiB + the 64 KiB default for the connection) makes the
    # leak show in a few rounds: each response is sent whole before the client reads it,
    # the client reads one chunk and closes it. DATA it had queued but not read must go
    # back to the window, or the server soon cannot send a whole response any more.
    monkeypatch.setattr("surge._transport.h2._WINDOW", 128 * 1024)
    http, pool = make_client(mode, ca, max_connections=1)
    size = 96 * 1024
    async with http:
        for round_ in range(8):
            sid = 2 * round_ + 1
            async with http.stream("GET", f"{srv.url}/?size={size}") as response:
                await srv.wait_for(lambda s, sid=sid: s.sent.get(sid) == size, 5.0)
                async for chunk in response.aiter_raw():
                    assert chunk
                    break
        # The whole connection window (192 KiB) is still there for one response.
        big = 180 * 1024
        response = await http.get(f"{srv.url}/?size={big}", timeout=httpx.Timeout(10.0, read=5.0))
        assert len(response.content) == big
        assert pool.stats().connections_opened == 1
        assert pool.stats().in_use == 0


async def test_data_of_a_stream_the_server_reset_is_given_back(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server sends part of a body and resets the stream; the client's reader meets the
    # reset with DATA queued: those bytes too go back to the window, and the WINDOW_UPDATEs
    # go out before the client waits for more (asyncio-h2c hung here when they did not).
    monkeypatch.setattr("surge._transport.h2._WINDOW", 128 * 1024)
    http, pool = make_client(mode, ca, max_connections=1)
    async with http:
        for round_ in range(6):
            sid = 2 * round_ + 1
            async with http.stream("GET", f"{srv.url}/?partial={96 * 1024}") as response:
                await srv.wait_for(lambda s, sid=sid: s.in_flight == 1, 5.0)
                srv.call(srv.reset_stream, sid)
                await srv.wait_for(lambda s, sid=sid: sid in s.server_resets, 5.0)
                with pytest.raises(httpx.RemoteProtocolError, match="reset the stream"):
                    await response.aread()
        big = 180 * 1024
        response = await http.get(f"{srv.url}/?size={big}", timeout=httpx.Timeout(10.0, read=5.0))
        assert len(response.content) == big
        assert pool.stats().connections_opened == 1
