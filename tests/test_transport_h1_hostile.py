"""surge's HTTP/1.1 connections against hostile and sloppy servers (issue 9, HTTP/1.1 items).

Real loopback servers (`RawServer`), on asyncio and trio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from _pool_client import pool_client, timings
from _servers import RawServer, serving

pytestmark = pytest.mark.anyio


@pytest.fixture
async def raw(anyio_backend: str) -> AsyncIterator[RawServer]:
    async with serving(RawServer()) as server:
        yield server


# ---------------------------------------------------------------------- 11: early answer
async def test_an_answer_sent_before_the_body_was_read_is_returned(raw: RawServer) -> None:
    # The server answers 413 and closes without reading the 8 MB body: the caller gets
    # the 413 (not WriteError), and the body is sent once, not twice.
    http, pool = pool_client()
    async with http:
        response = await http.post(raw.url + "/?early=413", content=b"z" * 8_000_000)
        assert response.status_code == 413
        assert response.content == b"no"
        assert raw.requests == 1
        assert pool.stats().in_use == 0
        # The connection was closed (Connection: close); the next request opens another.
        assert (await http.get(raw.url)).status_code == 200
        assert pool.stats().connections_opened == 2


async def test_after_an_early_answer_the_connection_is_not_reused(raw: RawServer) -> None:
    # No Connection: close this time: the write failing is what says the server is gone.
    http, pool = pool_client()
    async with http:
        response = await http.post(raw.url + "/?earlyquiet=413", content=b"z" * 8_000_000)
        assert (response.status_code, response.content) == (413, b"no")
        assert (pool.stats().in_use, pool.stats().idle) == (0, 0)
        assert (await http.get(raw.url)).status_code == 200
        assert pool.stats().connections_opened == 2
        assert raw.requests == 2


async def test_an_early_answer_on_a_reused_connection_is_not_resent(raw: RawServer) -> None:
    http, _ = pool_client()
    async with http:
        assert (await http.get(raw.url)).status_code == 200
        response = await http.post(raw.url + "/?early=413", content=b"z" * 8_000_000)
        assert timings(response).reused
        assert response.status_code == 413
        assert raw.requests == 2


# ---------------------------------------------------------------------- 14: streamed bodies
async def _agen() -> AsyncIterator[bytes]:
    yield b"part-1;"
    yield b"part-2"


class _OneShot:
    """An async iterable that can be iterated once (a second pass yields nothing)."""

    def __init__(self) -> None:
        self.used = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[bytes]:
        if self.used:
            return
        self.used = True
        yield b"only-once"


@pytest.mark.parametrize("kind", ["generator", "one-shot"])
async def test_a_streamed_body_is_never_replayed_by_the_pool(raw: RawServer, kind: str) -> None:
    # A reused connection that the server closes without answering looks like the stale
    # keep-alive race, which the pool retries once, but only with a body it can resend.
    http, _ = pool_client()
    async with http:
        assert (await http.get(raw.url)).status_code == 200
        content = _agen() if kind == "generator" else _OneShot()
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.post(raw.url + "/?noreply_once=a", content=content)
        assert raw.requests == 2  # not resent (empty, or StreamConsumed)


async def test_a_bytes_body_is_still_retried_in_the_stale_race(raw: RawServer) -> None:
    http, pool = pool_client()
    async with http:
        assert (await http.get(raw.url)).status_code == 200
        response = await http.post(raw.url + "/?noreply_once=b", content=b"hello")
        assert response.json()["echo"] == 5
        assert raw.requests == 3
        assert pool.stats().connections_opened == 2


# ---------------------------------------------------------------------- 15: paid calls
async def test_a_request_the_server_worked_on_then_dropped_is_not_resent(raw: RawServer) -> None:
    http, _ = pool_client()
    async with http:
        assert (await http.get(raw.url)).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.post(raw.url + "/?latency=0.5&noreply=1", content=b"paid")
        assert raw.requests == 2


# ---------------------------------------------------------------------- 13: leniency
async def test_lf_only_response_is_read(raw: RawServer) -> None:
    http, _ = pool_client()
    async with http:
        with anyio.fail_after(5):
            response = await http.get(raw.url + "/?lf=1", timeout=httpx.Timeout(20.0))
        assert response.json()["ok"] is True
        assert (await http.get(raw.url + "/?lf=1")).json()["ok"] is True


async def test_stray_crlf_after_the_body_does_not_fail_the_response(raw: RawServer) -> None:
    http, _ = pool_client()
    async with http:
        for _ in range(3):
            response = await http.get(raw.url + "/?stray=1")
            assert response.json()["ok"] is True
