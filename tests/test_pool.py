"""surge's pool over HTTP/1.1, against real loopback servers, on asyncio and trio."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import ssl
import warnings
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import trustme

import surge._transport.pool
from _pool_client import pool_client, timings, wait_for_stats
from _servers import RawServer, SilentServer, running, serving
from surge._config import PoolConfig
from surge._transport.pool import PoolTransport


@pytest.fixture
def server() -> Iterator[RawServer]:
    with running(RawServer()) as srv:
        yield srv


def client(**config: Any) -> tuple[httpx.AsyncClient, PoolTransport]:
    return pool_client(**config)


# ---------------------------------------------------------------------------- reuse, limits


@pytest.mark.anyio
async def test_sequential_calls_reuse_one_connection(server: RawServer) -> None:
    http, pool = client()
    async with http:
        responses = [await http.post(server.url + "/v1/x", json={"n": i}) for i in range(5)]
    assert [r.json()["echo"] for r in responses] == [len(b'{"n":0}')] * 5
    assert server.connections_opened == 1
    assert pool.stats().connections_opened == 1
    assert [timings(r).reused for r in responses] == [False, True, True, True, True]
    assert timings(responses[0]).connect > 0
    assert all(timings(r).connect == 0 for r in responses[1:])
    assert all(r.http_version == "HTTP/1.1" for r in responses)
    assert pool.stats().requests == 5


@pytest.mark.anyio
async def test_max_connections_per_origin_queues_the_rest(server: RawServer) -> None:
    http, pool = client(max_connections=3)
    results: list[httpx.Response] = []

    async def call() -> None:
        results.append(await http.get(server.url + "/?hold=1"))

    async with http, anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(call)
        await server.wait_for(lambda s: s.in_flight == 3)
        # Every request has either reached the server or is queued in the pool.
        await wait_for_stats(pool, lambda s: s.waiting == 9, "waiting == 9")
        stats = pool.stats()
        assert (stats.in_use, stats.waiting) == (3, 9)
        server.release()
    assert len(results) == 12
    assert all(r.status_code == 200 for r in results)
    assert server.peak_in_flight == 3
    assert server.connections_opened == 3
    queued = sorted(timings(r).queued for r in results)
    assert all(q > 0 for q in queued[3:])
    assert pool.stats().waiting == 0
    assert pool.stats().in_use == 0


@pytest.mark.anyio
async def test_limit_is_per_origin() -> None:
    async with serving(RawServer()) as one, serving(RawServer()) as two:
        http, pool = client(max_connections=2)
        async with http, anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(http.get, one.url + "/?hold=1")
                tg.start_soon(http.get, two.url + "/?hold=1")
            await one.wait_for(lambda s: s.in_flight == 2)
            await two.wait_for(lambda s: s.in_flight == 2)
            one.release()
            two.release()
        assert one.peak_in_flight == 2
        assert two.peak_in_flight == 2
        assert pool.stats().connections_opened == 4


@pytest.mark.anyio
async def test_keepalive_cap_closes_extra_connections(server: RawServer) -> None:
    http, pool = client(max_keepalive_connections=2)
    async with http:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(http.get, server.url + "/?hold=1")
            await server.wait_for(lambda s: s.in_flight == 5)
            server.release()
        await server.wait_for(lambda s: s.connections_closed == 3)
        assert pool.stats().idle == 2
        await http.get(server.url)
        assert server.connections_opened == 5


@pytest.mark.anyio
async def test_keepalive_expiry_closes_idle_connection_while_quiet(server: RawServer) -> None:
    http, pool = client(keepalive_expiry=0.2)
    async with http:
        await http.get(server.url)
        assert pool.stats().idle == 1
        # Nothing else happens: the pool's timer must close the connection by itself.
        await server.wait_for(lambda s: s.connections_closed == 1)
        assert pool.stats().idle == 0
        assert server.requests == 1
        response = await http.get(server.url)
        assert response.status_code == 200
        assert not timings(response).reused
        assert server.connections_opened == 2


@pytest.mark.anyio
async def test_idle_connections_expire_each_on_its_own_clock(server: RawServer) -> None:
    http, pool = client(keepalive_expiry=0.5)
    async with http:
        # Two connections: the first idle at once, the second 0.3 s later.
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.get, server.url)
            tg.start_soon(http.get, server.url + "/?latency=0.3")
            await wait_for_stats(pool, lambda s: s.idle == 1, "the first idle")
        assert pool.stats().idle == 2
        # The first expires alone; the second stays until its own 0.5 s have passed.
        await wait_for_stats(pool, lambda s: s.idle < 2, "an expiry")
        assert pool.stats().idle == 1
        await server.wait_for(lambda s: s.connections_closed == 1)
        await wait_for_stats(pool, lambda s: s.idle == 0, "the second expiry")
        await server.wait_for(lambda s: s.connections_closed == 2)
        assert server.requests == 2


@pytest.mark.anyio
async def test_the_connection_idle_the_shortest_time_is_reused_first(server: RawServer) -> None:
    # Last in, first out: after a burst, the connections left idle longest expire.
    http, pool = client()
    async with http:
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.get, server.url)
            tg.start_soon(http.get, server.url + "/?latency=0.2")
        (origin,) = pool._origins.values()
        older, newer = origin.idle
        for _ in range(3):
            assert (await http.get(server.url)).status_code == 200
            assert list(origin.idle) == [older, newer]  # newer taken and put back
        assert server.connections_opened == 2


@pytest.mark.anyio
async def test_expired_idle_connection_is_never_handed_out(server: RawServer) -> None:
    http, _ = client(keepalive_expiry=0.0)
    async with http:
        for _ in range(3):
            response = await http.get(server.url)
            assert not timings(response).reused
    assert server.connections_opened == 3


# ---------------------------------------------------------------------------- timeouts, errors


@pytest.mark.anyio
async def test_pool_timeout_says_what_waited_and_which_limit(server: RawServer) -> None:
    transport = PoolTransport(PoolConfig(max_connections=1))
    http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(20.0, pool=0.1))
    async with http, anyio.create_task_group() as tg:
        tg.start_soon(http.get, server.url + "/?hold=1")
        await server.wait_for(lambda s: s.in_flight == 1)
        with pytest.raises(httpx.PoolTimeout) as info:
            await http.get(server.url)
        server.release()
    message = str(info.value)
    assert "max_connections=1" in message
    assert "1 request(s) were waiting" in message
    assert "0.1 s" in message
    assert "Raise max_connections=... if the server can take more" in message
    assert "pool=" in message
    assert info.value.request.url.port == server.port
    assert transport.stats().waiting == 0


@pytest.mark.anyio
async def test_pool_timeout_falls_back_to_config(server: RawServer) -> None:
    transport = PoolTransport(PoolConfig(max_connections=1, pool=0.1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(transport.handle_async_request, httpx.Request("GET", server.url + "/?hold=1"))
        await server.wait_for(lambda s: s.in_flight == 1)
        with pytest.raises(httpx.PoolTimeout):
            await transport.handle_async_request(httpx.Request("GET", server.url))
        server.release()
    await transport.aclose()


@pytest.mark.anyio
async def test_read_timeout_raises_httpx_error_and_frees_the_slot(server: RawServer) -> None:
    transport = PoolTransport(PoolConfig(max_connections=1))
    http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(20.0, read=0.2))
    async with http:
        with pytest.raises(httpx.ReadTimeout) as info:
            await http.get(server.url + "/?stall=1")
        assert info.value.request.url.params["stall"] == "1"
        assert transport.stats().in_use == 0
        assert (await http.get(server.url)).status_code == 200


@pytest.mark.anyio
async def test_a_read_timeout_on_a_reused_connection_is_not_sent_again(
    server: RawServer,
) -> None:
    # Quicker than the stale keep-alive window: still the server's silence, not the race.
    transport = PoolTransport(PoolConfig(max_connections=1))
    http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(20.0, read=0.05))
    async with http:
        assert (await http.get(server.url)).status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            await http.get(server.url + "/?stall=1")
        await server.wait_for(lambda s: s.requests == 2)
        assert server.seen == ["/", "/?stall=1"]
        assert transport.stats().connections_opened == 1


@pytest.mark.anyio
async def test_write_timeout_when_the_server_never_reads(server: RawServer) -> None:
    # The server accepts but never reads: the 16 MB body fills its receive buffer and our
    # send buffer, and the send stalls until the write timeout.
    http, pool = client(max_connections=1)
    async with serving(SilentServer()) as silent, http:
        with pytest.raises(httpx.WriteTimeout) as info:
            await http.post(
                silent.url + "/up",
                content=b"x" * (16 * 1024 * 1024),
                timeout=httpx.Timeout(20.0, write=0.2),
            )
        assert info.value.request.url.path == "/up"
        assert silent.connections_opened == 1
        assert pool.stats().in_use == 0
        silent.drain()  # now it reads, and sees that the pool closed the stalled connection
        await silent.wait_for(lambda s: s.connections_closed == 1)
        response = await http.post(server.url + "/v1/x", content=b"y" * 100_000)
        assert response.json()["echo"] == 100_000
        assert pool.stats().in_use == 0


@pytest.mark.anyio
async def test_connect_error_is_httpx_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http, pool = client(max_connections=1)
    async with http:
        for _ in range(2):  # the failed connect gave its slot back
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")
    assert pool.stats().in_use == 0


@pytest.mark.anyio
async def test_connect_timeout() -> None:
    # A listener with a full accept queue that never accepts: the handshake never completes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            transport = PoolTransport(PoolConfig(connect=0.3))
            with pytest.raises(httpx.ConnectTimeout):
                await transport.handle_async_request(
                    httpx.Request("GET", f"http://127.0.0.1:{port}")
                )
            assert transport.stats().in_use == 0
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.anyio
async def test_drop_mid_body_raises_remote_protocol_error(server: RawServer) -> None:
    http, pool = client()
    async with http:
        with pytest.raises(httpx.RemoteProtocolError, match="before the end"):
            await http.get(server.url + "/?drop=1&size=100000")
        assert pool.stats().in_use == 0
        assert (await http.get(server.url)).status_code == 200


@pytest.mark.anyio
async def test_server_closing_idle_connection_is_replaced(server: RawServer) -> None:
    http, _ = client()
    async with http:
        await http.get(server.url + "/?close=1")
        await server.wait_for(lambda s: s.connections_closed == 1)
        response = await http.get(server.url)
    assert response.status_code == 200
    assert server.connections_opened == 2


@pytest.mark.anyio
async def test_request_failing_on_reused_connection_is_retried_once(server: RawServer) -> None:
    http, pool = client()
    async with http:
        await http.get(server.url)
        # The server reads the request and closes without answering, once.
        response = await http.get(server.url + "/?noreply_once=a")
        assert response.status_code == 200
        assert server.requests == 3
        assert server.connections_opened == 2
        # Failing again on the fresh connection is not retried a second time.
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.get(server.url + "/?noreply=1")
        assert server.requests == 5  # once on a reused connection, once on a new one
    assert pool.stats().in_use == 0


@pytest.mark.anyio
async def test_closed_pool_refuses_requests(server: RawServer) -> None:
    transport = PoolTransport()
    await transport.handle_async_request(httpx.Request("GET", server.url))
    await transport.aclose()
    await server.wait_for(lambda s: s.connections_closed == 1)
    with pytest.raises(httpx.ConnectError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", server.url))


# ---------------------------------------------------------------------------- cancellation


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [2000, 10])
async def test_cancel_1000_in_flight_requests_leaks_nothing(server: RawServer, limit: int) -> None:
    http, pool = client(max_connections=limit)
    async with http:
        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(http.get, server.url + "/?hold=1")
            await server.wait_for(lambda s: s.in_flight == min(limit, 1000))
            await wait_for_stats(
                pool, lambda s: s.in_use + s.waiting == 1000, "in_use + waiting == 1000", 20
            )
            tg.cancel_scope.cancel()
        stats = pool.stats()
        assert (stats.in_use, stats.waiting) == (0, 0)
        server.release()
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(http.get, server.url)
        assert pool.stats().in_use == 0
        assert server.requests == min(limit, 1000) + 20


@pytest.mark.anyio
async def test_waiters_that_give_up_do_not_pile_up(server: RawServer) -> None:
    http, pool = client(max_connections=1)
    kept: list[httpx.Response] = []

    async def keep() -> None:
        kept.append(await http.get(server.url))

    async with http, anyio.create_task_group() as outer:
        outer.start_soon(http.get, server.url + "/?hold=1")
        await server.wait_for(lambda s: s.in_flight == 1)
        for _ in range(5):
            outer.start_soon(keep)
        async with anyio.create_task_group() as doomed:
            for _ in range(3000):
                doomed.start_soon(http.get, server.url)
            await wait_for_stats(pool, lambda s: s.waiting == 3005, "waiting == 3005", 20)
            doomed.cancel_scope.cancel()
        assert pool.stats().waiting == 5
        (origin,) = pool._origins.values()
        assert len(origin.waiters) < 3000  # the dead were compacted away, not kept
        server.release()
    assert len(kept) == 5
    assert pool.stats().waiting == 0
    assert pool.stats().in_use == 0
    assert server.requests == 6


@pytest.mark.anyio
async def test_half_read_stream_closed_frees_connection(server: RawServer) -> None:
    http, pool = client(max_connections=1)
    async with http:
        async with http.stream("GET", server.url + "/?size=2000000") as response:
            async for chunk in response.aiter_raw():
                assert chunk
                break
            assert pool.stats().in_use == 1
        assert pool.stats().in_use == 0
        assert timings(response).total > 0
        await server.wait_for(lambda s: s.connections_closed == 1)
        assert (await http.get(server.url)).status_code == 200


@pytest.mark.anyio
async def test_fully_read_body_releases_before_close(server: RawServer) -> None:
    http, pool = client(max_connections=1)
    async with http:
        request = http.build_request("GET", server.url + "/?size=300000")
        response = await http.send(request, stream=True)
        body = b"".join([chunk async for chunk in response.aiter_raw()])
        assert len(body) == 300000
        assert pool.stats().in_use == 0  # released at the end of the body, not at close
        # A response never closed nor read does not hold its (small) connection either.
        await http.send(http.build_request("GET", server.url), stream=True)
        assert pool.stats().in_use == 0
        assert (await http.get(server.url)).status_code == 200
        await response.aclose()


# ---------------------------------------------------------------------------- protocol


@pytest.mark.anyio
async def test_chunked_head_and_streamed_upload(server: RawServer) -> None:
    http, _ = client()

    async def upload() -> Any:
        for part in (b"abc", b"", b"defgh"):
            yield part

    async with http:
        chunked = await http.get(server.url + "/?chunked=1&size=1000")
        assert chunked.content == b"x" * 1000
        head = await http.head(server.url + "/?size=50")
        assert head.content == b""
        assert head.headers["content-length"] == "50"
        streamed = await http.post(server.url + "/up", content=upload())
        assert streamed.json()["echo"] == 8
        after = await http.get(server.url)
    assert after.status_code == 200
    assert server.connections_opened == 1


@pytest.mark.anyio
async def test_https_http11_and_alpn_fallback() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["http/1.1"])
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with serving(RawServer(server_ctx)) as srv:
        http, pool = client(verify=client_ctx, http2=True, max_connections=10)
        async with http:
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(http.get, srv.url + "/?hold=1")
                await srv.wait_for(lambda s: s.in_flight == 4)
                srv.release()
            response = await http.get(srv.url)
        assert response.http_version == "HTTP/1.1"
        assert srv.connections_opened == 4
        assert pool.stats().connections_opened == 4


# ---------------------------------------------------------------------------- timings, stats


@pytest.mark.anyio
async def test_timings_are_present_and_ordered(server: RawServer) -> None:
    http, pool = client(max_connections=1)
    results: list[httpx.Response] = []

    async def call(target: str) -> None:
        results.append(await http.get(server.url + target))

    async with http, anyio.create_task_group() as tg:
        # The first holds the connection (gate "a") until the second is queued behind it.
        tg.start_soon(call, "/?latency=0.2&gate=a")
        await server.wait_for(lambda s: s.in_flight == 1)
        tg.start_soon(call, "/?latency=0.2")
        await wait_for_stats(pool, lambda s: s.waiting == 1, "waiting == 1")
        server.open_gate("a")
    first, second = results
    for response in results:
        t = timings(response)
        # ttfb is timed from after the send returns; the server's thread (same process,
        # 5 ms GIL switches) may start its 0.2 s a little before the client reads its clock.
        assert t.ttfb >= 0.19
        assert t.total >= t.queued + t.connect + t.ttfb, t
        assert t.http_version == "HTTP/1.1"
        assert response.extensions["http_version"] == b"HTTP/1.1"
    assert timings(second).queued > 0  # it waited for the first one's connection
    assert timings(second).reused
    assert timings(second).connect == 0
    assert not timings(first).reused
    assert timings(first).connect > 0


@pytest.mark.anyio
async def test_stats_percentiles_and_reset(server: RawServer) -> None:
    http, pool = client(max_connections=1)
    async with http:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(http.get, server.url + "/?latency=0.05")
        stats = pool.stats()
        assert stats.requests == 4
        assert stats.connections_opened == 1
        assert 0 < stats.wait_seconds_p50 <= stats.wait_seconds_p90 <= stats.wait_seconds_p99
        assert stats.wait_seconds_p99 <= stats.wait_seconds_max
        assert stats.wait_seconds_max >= 3 * 0.05  # the last one waited for three answers
        assert (stats.in_use, stats.idle, stats.waiting) == (0, 1, 0)
        pool.reset_stats()
        stats = pool.stats()
        assert (stats.requests, stats.connections_opened, stats.wait_seconds_max) == (0, 0, 0)
        assert (stats.wait_seconds_p50, stats.wait_seconds_p99) == (0, 0)
        assert stats.idle == 1


@pytest.mark.anyio
async def test_long_waits_log_one_warning(
    server: RawServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(surge._transport.pool, "WAIT_WARNING_THRESHOLD", 0.05)
    http, _ = client(max_connections=1)
    with caplog.at_level(logging.WARNING, logger="surge"):
        async with http, anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(http.get, server.url + "/?latency=0.1")
    warnings_ = [r for r in caplog.records if r.name == "surge"]
    assert len(warnings_) == 1
    message = warnings_[0].getMessage()
    assert "max_connections=1" in message
    assert "raise max_connections" in message.lower()
    assert server.url.removeprefix("http://") in message
    assert "not the server" in message


# ---------------------------------------------------------------------------- abandon


@pytest.mark.anyio
async def test_abandon_closes_sockets_without_the_loop(server: RawServer) -> None:
    http, pool = client()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(http.get, server.url + "/?hold=1")
        await server.wait_for(lambda s: s.in_flight == 3)
        server.release()
    pool.abandon()
    pool.abandon()  # idempotent
    await server.wait_for(lambda s: s.connections_closed == 3)
    with pytest.raises(httpx.ConnectError):
        await pool.handle_async_request(httpx.Request("GET", server.url))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_abandon_after_the_loop_is_gone(server: RawServer, backend: str) -> None:
    pool = PoolTransport()

    async def use() -> None:
        response = await pool.handle_async_request(httpx.Request("GET", server.url))
        await response.aread()

    anyio.run(use, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool.abandon()
        gc.collect()
    assert not [w for w in caught if "Event loop is closed" in str(w.message)]
    assert not [w for w in caught if "unclosed" in str(w.message)]
    assert server.wait_until(lambda s: s.connections_closed == 1, 10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_abandon_in_forked_child(server: RawServer) -> None:
    pool = PoolTransport()

    async def use() -> None:
        response = await pool.handle_async_request(httpx.Request("GET", server.url))
        await response.aread()

    asyncio.run(use())
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            pool.abandon()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    pool.abandon()
    assert server.wait_until(lambda s: s.connections_closed == 1, 10)


@pytest.mark.anyio
async def test_verify_accepts_a_ca_path_or_false_and_rejects_unknown_certs(
    tmp_path: Any,
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with serving(RawServer(server_ctx)) as srv:
        for verify in (str(ca_file), False):
            http, _ = client(verify=verify)
            async with http:
                assert (await http.get(srv.url)).status_code == 200
        http, pool = client()  # the system CAs do not know trustme's CA
        async with http:
            with pytest.raises(httpx.ConnectError, match=r"TLS handshake .* failed"):
                await http.get(srv.url)
        assert pool.stats().in_use == 0
