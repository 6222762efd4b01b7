"""surge's pool over HTTP/2 (hypercorn), TLS with ALPN and cleartext prior knowledge."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme

from _pool_client import pool_client, timings, wait_for_stats
from _servers import GoawayH2Server, H2Server, RawH2Server, serving
from surge._config import PoolConfig
from surge._transport.pool import PoolTransport


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1")
    folder: Path = tmp_path_factory.mktemp("certs")
    chain, key = folder / "chain.pem", folder / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    return str(chain), str(key)


@pytest.fixture
async def h2c(anyio_backend: str) -> AsyncIterator[H2Server]:
    async with serving(H2Server(max_streams=100)) as srv:
        yield srv


def client(**config: Any) -> tuple[httpx.AsyncClient, PoolTransport]:
    return pool_client(http2=True, **config)


@pytest.mark.anyio
async def test_h2c_prior_knowledge_multiplexes_on_one_connection(h2c: H2Server) -> None:
    http, pool = client()
    results: list[httpx.Response] = []

    async def call(i: int) -> None:
        results.append(await http.post(h2c.url + "/x?hold=1", json={"i": i}))

    async with http:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(call, i)
            await h2c.wait_for(lambda s: s.in_flight == 20)
            assert pool.stats().in_use == 20
            h2c.release()
        assert len(h2c.clients) == 1
        assert pool.stats().connections_opened == 1
        assert all(r.http_version == "HTTP/2" for r in results)
        assert all(r.extensions["http_version"] == b"HTTP/2" for r in results)
        assert all(timings(r).http_version == "HTTP/2" for r in results)
        assert sorted(r.json()["echo"] for r in results) == sorted(
            len(f'{{"i":{i}}}') for i in range(20)
        )
        assert h2c.http_versions == {"2"}
        # The connection stays and serves the next request too.
        again = await http.get(h2c.url)
        assert timings(again).reused
        assert timings(again).connect == 0
        assert pool.stats().connections_opened == 1
        assert pool.stats().in_use == 0
        assert pool.stats().idle == 1


@pytest.mark.anyio
async def test_more_connections_when_max_concurrent_streams_is_reached() -> None:
    async with serving(H2Server(max_streams=4)) as srv:
        http, pool = client()
        async with http, anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(http.get, srv.url + "/?hold=1")
            await srv.wait_for(lambda s: s.in_flight == 10)
            assert len(srv.clients) == 3  # 4 + 4 + 2 streams
            srv.release()
        assert pool.stats().connections_opened == 3


@pytest.mark.anyio
async def test_waiting_for_a_stream_counts_as_waiting() -> None:
    async with serving(H2Server(max_streams=2)) as srv:
        http, pool = client(max_connections=2)
        results: list[httpx.Response] = []

        async def call() -> None:
            results.append(await http.get(srv.url + "/?hold=1"))

        async with http, anyio.create_task_group() as tg:
            for _ in range(7):
                tg.start_soon(call)
            await srv.wait_for(lambda s: s.in_flight == 4)
            await wait_for_stats(pool, lambda s: s.waiting == 3, "waiting == 3")
            assert pool.stats().in_use == 4
            srv.release()
        assert len(results) == 7
        assert srv.peak_in_flight == 4
        assert sum(1 for r in results if timings(r).queued > 0) >= 3
        assert pool.stats().connections_opened == 2


@pytest.mark.anyio
async def test_h2_over_tls_with_alpn(ca: trustme.CA, cert_files: tuple[str, str]) -> None:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with serving(H2Server(tls=cert_files)) as srv:
        http, pool = client(verify=ctx)
        async with http:
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(http.get, srv.url + "/?hold=1")
                await srv.wait_for(lambda s: s.in_flight == 5)
                srv.release()
            response = await http.get(srv.url + "/y")
        assert srv.url.startswith("https://")
        assert response.http_version == "HTTP/2"
        assert response.json()["path"] == "/y"
        assert len(srv.clients) == 1
        assert pool.stats().connections_opened == 1


@pytest.mark.anyio
async def test_tls_without_http2_speaks_http11(ca: trustme.CA, cert_files: tuple[str, str]) -> None:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with serving(H2Server(tls=cert_files)) as srv:
        transport = PoolTransport(PoolConfig(verify=ctx))
        async with httpx.AsyncClient(transport=transport) as http:
            response = await http.get(srv.url)
        assert response.http_version == "HTTP/1.1"
        assert srv.http_versions == {"1.1"}


@pytest.mark.anyio
async def test_cancelling_many_streams_leaks_nothing(h2c: H2Server) -> None:
    http, pool = client(max_connections=3)
    async with http:
        async with anyio.create_task_group() as tg:
            for _ in range(300):
                tg.start_soon(http.get, h2c.url + "/?hold=1")
            await h2c.wait_for(lambda s: s.in_flight == 300)
            tg.cancel_scope.cancel()
        stats = pool.stats()
        assert (stats.in_use, stats.waiting) == (0, 0)
        h2c.release()
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(http.get, h2c.url)
        assert pool.stats().in_use == 0
        assert (await http.get(h2c.url)).status_code == 200


@pytest.mark.anyio
async def test_half_read_stream_is_reset_and_connection_kept(h2c: H2Server) -> None:
    http, pool = client(max_connections=1)
    async with http:
        async with http.stream("GET", h2c.url + "/?size=2000000") as response:
            async for chunk in response.aiter_raw():
                assert chunk
                break
            assert pool.stats().in_use == 1
        assert pool.stats().in_use == 0
        response2 = await http.get(h2c.url + "/?size=1000")
        assert response2.content == b"x" * 1000
        assert pool.stats().connections_opened == 1


@pytest.mark.anyio
async def test_large_upload_respects_flow_control(h2c: H2Server) -> None:
    http, _ = client()
    body = b"y" * 300_000  # larger than the server's initial 64 KiB window
    async with http:
        response = await http.post(h2c.url + "/up", content=body)
    assert response.json()["echo"] == len(body)


@pytest.mark.anyio
async def test_streamed_upload_ends_its_stream(h2c: H2Server) -> None:
    # The server answers once the request's stream ends: END_STREAM must follow the chunks.
    http, _ = client()

    async def chunks() -> AsyncIterator[bytes]:
        for size in (10, 70_000, 5):
            yield b"z" * size

    async with http:
        response = await http.post(h2c.url + "/up", content=chunks())
    assert response.json()["echo"] == 70_015


@pytest.mark.anyio
async def test_read_timeout_on_one_stream_leaves_others(h2c: H2Server) -> None:
    http, pool = client()
    async with http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(h2c.url + "/?hold=1", timeout=httpx.Timeout(20.0, read=0.2))
        assert pool.stats().in_use == 0
        response = await http.get(h2c.url)
        assert response.status_code == 200
        assert pool.stats().connections_opened == 1
        h2c.release()


@pytest.mark.anyio
async def test_h2_timings(h2c: H2Server) -> None:
    http, _ = client()
    async with http:
        response = await http.get(h2c.url + "/?latency=0.2")
    t = timings(response)
    # ttfb is timed from after the send returns; the server's thread (same process,
    # 5 ms GIL switches) may start its 0.2 s a little before the client reads its clock.
    assert t.ttfb >= 0.19
    assert t.connect > 0
    assert not t.reused
    assert t.total >= t.queued + t.connect + t.ttfb


@pytest.mark.anyio
async def test_server_closing_idle_h2_connection_is_replaced() -> None:
    async with serving(RawH2Server()) as srv:
        http, pool = client()
        async with http:
            assert (await http.get(srv.url)).json() == {"ok": True}
            srv.close_connections()  # GOAWAY, then close, while the pool holds it idle
            await srv.wait_for(lambda s: s.connections_closed == 1)
            response = await http.get(srv.url)
            assert response.status_code == 200
            assert response.http_version == "HTTP/2"
            assert not timings(response).reused
            assert srv.connections_opened == 2
            assert srv.requests == 2
            stats = pool.stats()
            assert (stats.in_use, stats.connections_opened) == (0, 2)


@pytest.mark.anyio
async def test_idle_h2_connection_expires_while_quiet() -> None:
    async with serving(RawH2Server()) as srv:
        http, pool = client(keepalive_expiry=0.2)
        async with http:
            assert (await http.get(srv.url)).status_code == 200
            assert pool.stats().idle == 1
            # No further request: the pool's own timer closes the idle connection.
            await srv.wait_for(lambda s: s.connections_closed == 1)
            assert pool.stats().idle == 0
            assert srv.requests == 1
            assert (await http.get(srv.url)).status_code == 200
            assert srv.connections_opened == 2


@pytest.mark.anyio
async def test_many_streams_answered_out_of_order_on_one_connection(h2c: H2Server) -> None:
    # Answers arrive interleaved, so the request reading the socket keeps changing: no
    # request may be left parked without a reader.
    http, pool = client(max_connections=1)
    results: list[httpx.Response] = []

    async def call(i: int) -> None:
        results.append(await http.get(f"{h2c.url}/?latency={i % 3 * 0.05}&i={i}"))

    async with http:
        for _ in range(3):
            async with anyio.create_task_group() as tg:
                for i in range(90):
                    tg.start_soon(call, i)
    assert len(results) == 270
    assert all(r.status_code == 200 for r in results)
    assert pool.stats().connections_opened == 1
    assert pool.stats().in_use == 0


@pytest.mark.anyio
async def test_goaway_with_streams_in_flight_retries_the_refused_ones() -> None:
    # The server takes four streams, then GOAWAY(last_stream_id=first) and answers only the
    # first: that one completes on the old connection; the three it did not process are
    # sent again on a new connection (surge retries refused streams once); the old
    # connection gets no new stream and is closed once its last stream ended.
    async with serving(GoawayH2Server(streams=4)) as srv:
        http, pool = client()
        results: list[Any] = []

        async def call(i: int) -> None:
            results.append((await http.get(f"{srv.url}/?i={i}")).json())

        async with http:
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(call, i)
            assert sorted(r["conn"] for r in results) == [0, 1, 1, 1]
            assert [r["stream"] for r in results if r["conn"] == 0] == [1]
            await srv.wait_for(lambda s: s.connections_closed == 1)  # the client closed it
            assert srv.refused == 0
            assert (await http.get(srv.url)).json()["conn"] == 1  # not the old connection
            stats = pool.stats()
            assert (stats.in_use, stats.waiting, stats.connections_opened) == (0, 0, 2)
            assert srv.connections_opened == 2
            assert srv.requests == 4 + 3 + 1
