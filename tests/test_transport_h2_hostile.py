"""surge's HTTP/2 connections against a scriptable hostile server (issue 9, HTTP/2 items).

Every test runs on asyncio and trio; the cancellation, window and GOAWAY ones also on
h2c (prior knowledge) and TLS with ALPN.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import trustme

from _h2server import ScriptedH2Server, h2_server_ssl_context
from _pool_client import pool_client, timings, wait_for_stats
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


def seen_reset_within(srv: ScriptedH2Server, left: float) -> float:
    """Seconds from `left` (the caller gave up) to the server reading the reset.

    Both ends read the same monotonic clock, so the watcher thread's wake-up and the
    test's own scheduling do not count: only the client's flush and the server's read.
    """
    return srv.reset_times[-1] - left


async def test_cancelled_request_resets_its_stream_at_once(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA
) -> None:
    # The server never answers and the caller gives up: the server must see RST_STREAM
    # at once, with no later request on the connection to flush it.
    http, pool = make_client(mode, ca)
    async with http:
        assert (await http.get(srv.url)).status_code == 200  # stream 1 opens the connection
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.get, srv.url + "/?stall=1")
            await srv.wait_for(lambda s: s.in_flight == 1)
            left = time.monotonic()
            tg.cancel_scope.cancel()
        await srv.wait_for(lambda s: s.resets == [3], 5)
        assert seen_reset_within(srv, left) < _PROMPT
        assert pool.stats().in_use == 0
        assert srv.in_flight == 0


async def test_timed_out_request_resets_its_stream_at_once(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA
) -> None:
    http, pool = make_client(mode, ca)
    async with http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(srv.url + "/?stall=1", timeout=httpx.Timeout(10.0, read=0.3))
        left = time.monotonic()  # the reset may even be out before this
        await srv.wait_for(lambda s: s.resets == [1], 5)
        assert seen_reset_within(srv, left) < _PROMPT
        assert pool.stats().in_use == 0


async def test_response_closed_half_read_resets_its_stream_at_once(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA
) -> None:
    http, pool = make_client(mode, ca)
    async with http:
        async with http.stream("GET", srv.url + "/?partial=10000") as response:
            async for chunk in response.aiter_raw():
                assert chunk
                break
            left = time.monotonic()
        await srv.wait_for(lambda s: s.resets == [1], 5)
        assert seen_reset_within(srv, left) < _PROMPT
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


# ---------------------------------------------------------------------- 2, 3: uploads and window
@pytest.fixture
async def small_window(anyio_backend: str) -> AsyncIterator[ScriptedH2Server]:
    async with serving(ScriptedH2Server(initial_window=1024)) as server:
        yield server


async def test_upload_waiting_for_window_times_out_as_write_timeout(
    small_window: ScriptedH2Server,
) -> None:
    http, pool = pool_client(http2=True)
    async with http:
        with pytest.raises(httpx.WriteTimeout, match="flow-control window"):
            await http.post(
                small_window.url + "/?noack=1",
                content=b"u" * 10_000,
                timeout=httpx.Timeout(10.0, write=0.3),
            )
        assert pool.stats().in_use == 0
        assert (await http.get(small_window.url)).status_code == 200


async def test_early_answer_during_an_upload_is_returned(small_window: ScriptedH2Server) -> None:
    # 413 + RST_STREAM(NO_ERROR) while the body waits for window: the caller gets the 413.
    http, pool = pool_client(http2=True)
    async with http:
        with anyio.fail_after(5):
            response = await http.post(small_window.url + "/?early=413", content=b"u" * 10_000)
        assert response.status_code == 413
        assert small_window.requests == 1
        assert pool.stats().in_use == 0
        assert (await http.get(small_window.url)).status_code == 200
        assert pool.stats().connections_opened == 1


async def test_upload_leaving_the_reading_role_hands_it_on(small_window: ScriptedH2Server) -> None:
    # Upload A reads the socket while it waits for window; B parks for its answer. A times
    # out: B must take over reading, or it waits out its read timeout with its answer there.
    srv = small_window
    http, _ = pool_client(http2=True)
    results: list[int] = []
    a_done, b_done = anyio.Event(), anyio.Event()

    async def get_b() -> None:
        response = await http.get(srv.url + "/?hold=1", timeout=httpx.Timeout(30.0))
        results.append(response.status_code)
        b_done.set()

    async def upload_a() -> None:
        with pytest.raises(httpx.WriteTimeout):
            await http.post(
                srv.url + "/?noack=1",
                content=b"u" * 10_000,
                timeout=httpx.Timeout(30.0, write=1.0),
            )
        a_done.set()

    async with http:
        assert (await http.get(srv.url)).status_code == 200  # the connection is up
        async with anyio.create_task_group() as tg:
            tg.start_soon(upload_a)
            await srv.wait_for(lambda s: s.bodies.get(3) == 1024)
            tg.start_soon(get_b)
            await srv.wait_for(lambda s: s.requests == 3)
            with anyio.fail_after(5):
                await a_done.wait()
            srv.release()  # B's answer arrives after A left
            with anyio.fail_after(5):
                await b_done.wait()
        assert results == [200]


async def test_upload_refused_by_goaway_is_retried_on_a_new_connection(
    small_window: ScriptedH2Server,
) -> None:
    srv = small_window
    http, pool = pool_client(http2=True)
    async with http:
        async with anyio.create_task_group() as tg:
            done: list[httpx.Response] = []

            async def upload() -> None:
                done.append(await http.post(srv.url + "/?noack=first", content=b"u" * 10_000))

            tg.start_soon(upload)
            await srv.wait_for(lambda s: s.bodies.get(1) == 1024)
            srv.goaway(0)  # stream 1 was not processed: safe to send again
        assert done[0].json()["echo"] == 10_000
        assert srv.connections_opened == 2
        assert pool.stats().in_use == 0


async def test_upload_waiting_for_window_does_not_spin(
    small_window: ScriptedH2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # B reads (its answer is held); upload A waits for window meanwhile. A must sleep on
    # an event, not poll: count how often anything asks for A's window.
    import h2.connection

    srv = small_window
    calls = [0]
    original = h2.connection.H2Connection.local_flow_control_window

    def counting(self: Any, stream_id: int) -> int:
        calls[0] += 1
        return original(self, stream_id)

    http, _ = pool_client(http2=True)
    async with http:
        assert (await http.get(srv.url)).status_code == 200
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.get, srv.url + "/?hold=1")  # stream 3: B reads
            await srv.wait_for(lambda s: s.requests == 2)

            async def upload_a() -> None:
                with pytest.raises(httpx.WriteTimeout):
                    await http.post(
                        srv.url + "/?noack=1",
                        content=b"u" * 10_000,
                        timeout=httpx.Timeout(30.0, write=0.5),
                    )

            monkeypatch.setattr(h2.connection.H2Connection, "local_flow_control_window", counting)
            a_done = anyio.Event()

            async def upload_and_note() -> None:
                await upload_a()
                a_done.set()

            tg.start_soon(upload_and_note)
            with anyio.fail_after(5):
                await a_done.wait()
            monkeypatch.undo()
            srv.release()
        # A waited 0.5 s for window: a poll loop asks thousands of times, an event a few.
        assert calls[0] < 20


# ---------------------------------------------------------------------- 4: fewer streams
async def test_server_lowering_max_concurrent_streams_makes_requests_wait(
    anyio_backend: str,
) -> None:
    async with serving(ScriptedH2Server(max_streams=20)) as srv:
        http, pool = pool_client(http2=True, max_connections=1)
        results: list[int] = []

        async def call() -> None:
            results.append((await http.get(srv.url + "/?hold=1")).status_code)

        async with http:
            assert (await http.get(srv.url)).status_code == 200
            async with anyio.create_task_group() as tg:
                for _ in range(30):
                    tg.start_soon(call)
                await srv.wait_for(lambda s: s.in_flight == 20)
                await wait_for_stats(pool, lambda s: s.waiting == 10, "waiting == 10")
                srv.set_max_streams(2)
                await srv.wait_for(lambda s: s.settings_acked == 2)
                srv.release()
        assert results == [200] * 30
        assert srv.requests == 31  # none failed and was sent again
        assert pool.stats().connections_opened == 1


async def test_a_server_allowing_unlimited_streams_gets_at_most_1000_per_connection(
    anyio_backend: str,
) -> None:
    async with serving(ScriptedH2Server(max_streams=2**31 - 1)) as srv:
        http, pool = pool_client(http2=True)
        async with http:
            assert (await http.get(srv.url)).status_code == 200
            (origin,) = pool._origins.values()
            (conn,) = origin.conns
            assert conn.capacity == 1000


# ---------------------------------------------------------------------- 5: cancelled upload
async def test_cancelling_a_blocked_upload_spares_its_siblings(anyio_backend: str) -> None:
    big = 1 << 30
    async with serving(ScriptedH2Server(initial_window=big, connection_window=big)) as srv:
        http, pool = pool_client(http2=True)
        results: list[int] = []

        async def sibling() -> None:
            results.append((await http.get(srv.url + "/?hold=1")).status_code)

        async with http:
            assert (await http.get(srv.url)).status_code == 200
            async with anyio.create_task_group() as tg:
                tg.start_soon(sibling)
                await srv.wait_for(lambda s: s.requests == 2)
                srv.pause_reading()
                (origin,) = pool._origins.values()
                (conn,) = origin.conns
                async with anyio.create_task_group() as uploads:
                    uploads.start_soon(
                        lambda: http.post(srv.url + "/?noack=0", content=b"u" * 64_000_000)
                    )
                    # Until the upload is stuck in a write (the socket buffers are full).
                    with anyio.fail_after(10):
                        while not conn._write_lock.locked():
                            await anyio.lowlevel.checkpoint()
                    uploads.cancel_scope.cancel()
                    srv.resume_reading()
                await srv.wait_for(lambda s: 5 in s.resets)  # the upload's stream, reset
                srv.release()
            assert results == [200]
            assert pool.stats().connections_opened == 1
            assert pool.stats().in_use == 0


# ---------------------------------------------------------------------- 7: connect failures
async def test_failed_http2_connect_fails_its_waiters_at_once(anyio_backend: str) -> None:
    from _servers import SilentServer

    async with serving(SilentServer()) as srv:
        http, _ = pool_client(http2=True)
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await http.get(srv.url, timeout=httpx.Timeout(10.0, connect=0.3))
            except httpx.HTTPError as exc:
                errors.append(exc)

        async with http, anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(call)
        assert [type(e) for e in errors] == [httpx.ConnectTimeout] * 10
        assert srv.connections_opened == 1  # one connect, not one after another


async def test_a_burst_opens_one_http2_connection_per_100_waiting(anyio_backend: str) -> None:
    # Before the first connection says how many streams it allows, the pool counts on 100:
    # 150 requests at once open two connections together, not one after the other.
    async with serving(ScriptedH2Server(hold_preface=True, max_streams=100)) as srv:
        http, pool = pool_client(http2=True)
        codes: list[int] = []

        async def call() -> None:
            codes.append((await http.get(srv.url)).status_code)

        async with http, anyio.create_task_group() as tg:
            for _ in range(150):
                tg.start_soon(call)
            await wait_for_stats(pool, lambda s: s.waiting == 148, "148 waiting, 2 opening")
            await srv.wait_for(lambda s: s.connections_opened == 2)
            srv.release_preface()
        assert codes == [200] * 150
        assert pool.stats().connections_opened == 2


async def test_a_failed_connect_fails_only_the_requests_it_would_have_served(
    anyio_backend: str,
) -> None:
    # 150 at once: two connects, each for up to 100 streams. The first is refused: it and
    # the 100 queued first behind it fail; the other 48 wait for the second connect.
    srv_ = ScriptedH2Server(hold_preface=True, max_streams=100, refuse_first=True)
    async with serving(srv_) as srv:
        http, pool = pool_client(http2=True)
        outcomes: list[str] = []

        async def call() -> None:
            try:
                outcomes.append(str((await http.get(srv.url)).status_code))
            except httpx.ConnectError:
                outcomes.append("ConnectError")

        async with http, anyio.create_task_group() as tg:
            for _ in range(150):
                tg.start_soon(call)
            await wait_for_stats(pool, lambda s: s.waiting == 48, "48 left waiting")
            srv.release_preface()
        assert sorted(outcomes) == sorted(["ConnectError"] * 101 + ["200"] * 49)
        assert srv.connections_opened == 2  # no third connect for the 48


async def test_pool_timeout_while_connecting_says_so(anyio_backend: str) -> None:
    from _servers import SilentServer

    async with serving(SilentServer()) as srv:
        http, _ = pool_client(http2=True)
        async with http, anyio.create_task_group() as tg:
            tg.start_soon(lambda: http.get(srv.url, timeout=httpx.Timeout(10.0, connect=5)))
            await srv.wait_for(lambda s: s.connections_opened == 1)
            with pytest.raises(httpx.PoolTimeout, match=r"still connecting to it \(1 connection"):
                await http.get(srv.url, timeout=httpx.Timeout(10.0, pool=0.2))
            with pytest.raises(httpx.PoolTimeout, match=r"The server \(or the network\) is slow"):
                await http.get(srv.url, timeout=httpx.Timeout(10.0, pool=0.2))
            tg.cancel_scope.cancel()


async def test_slow_wait_warning_says_it_waited_for_a_connect(
    mode: str, ca: trustme.CA, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second request waits for the connection the first is opening; when it gets a
    # stream, nothing is being opened any more: the warning must give the reason its wait
    # began with, not "every stream ... was busy and 0 more were being opened".
    import surge._transport.pool
    import surge._transport.stats

    monkeypatch.setattr(surge._transport.pool, "WAIT_WARNING_THRESHOLD", 0.0)
    monkeypatch.setattr(surge._transport.stats, "WAIT_WARNING_INTERVAL", 0.0)  # log each
    async with serving(make_server(mode, ca, hold_preface=True)) as srv:
        http, pool = make_client(mode, ca)
        with caplog.at_level(logging.WARNING, logger="surge"):
            async with http, anyio.create_task_group() as tg:
                tg.start_soon(http.get, srv.url)
                await srv.wait_for(lambda s: s.connections_opened == 1)
                tg.start_soon(http.get, srv.url)
                await wait_for_stats(pool, lambda s: s.waiting == 1, "waiting == 1", 10.0)
                srv.release_preface()
        messages = [r.getMessage() for r in caplog.records if r.name == "surge"]
        # One from the request that opened the connection, one from the one that waited.
        connecting = "The pool was still connecting to it (1 connection(s) being opened"
        assert [connecting in m for m in messages] == [True, True]
        # It waited for a connect: no advice to raise a limit that was not reached.
        assert ["they waited for a connect" in m for m in messages] == [True, True]
        assert ["Raise max_connections" in m for m in messages] == [False, False]


# ---------------------------------------------------------------------- 8: what may be resent
async def test_streams_on_a_new_connection_are_not_reused(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA
) -> None:
    http, _ = make_client(mode, ca)
    async with http:
        async with anyio.create_task_group() as tg:
            responses: list[httpx.Response] = []

            async def call() -> None:
                responses.append(await http.get(srv.url + "/?hold=1"))

            for _ in range(5):
                tg.start_soon(call)
            await srv.wait_for(lambda s: s.in_flight == 5)
            srv.release()
        assert [timings(r).reused for r in responses] == [False] * 5
        assert timings(await http.get(srv.url)).reused


async def test_streams_the_server_may_have_processed_are_not_resent(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA
) -> None:
    http, _ = make_client(mode, ca)
    async with http:
        assert (await http.get(srv.url)).status_code == 200  # stream 1; reused from now on
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await http.post(srv.url + "/?stall=1", content=b"paid")
            except httpx.HTTPError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            tg.start_soon(call)
            await srv.wait_for(lambda s: s.in_flight == 2)
            srv.goaway(5)  # streams 3 and 5 may have been processed
            await srv.wait_for(lambda s: s.goaways_sent == 1)
            srv.drop()
        assert [type(e) for e in errors] == [httpx.RemoteProtocolError] * 2
        assert srv.requests == 3  # neither was sent again


# ---------------------------------------------------------------------- a parked request's timeout
async def test_a_parked_request_times_out_while_another_reads(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA
) -> None:
    # The first request reads the socket for both; the second, parked, must time out on
    # its own read timeout, not wait until the reader's answer hands the socket over.
    http, pool = make_client(mode, ca)
    statuses: list[int] = []

    async def first() -> None:
        statuses.append((await http.get(srv.url + "/?hold=1")).status_code)

    async with http, anyio.create_task_group() as tg:
        tg.start_soon(first)
        await srv.wait_for(lambda s: s.in_flight == 1)
        with anyio.fail_after(5), pytest.raises(httpx.ReadTimeout):
            await http.get(srv.url + "/?hold=1", timeout=httpx.Timeout(10.0, read=0.2))
        assert statuses == []  # the reader still waits: the parked one left on its own
        srv.release()
    assert statuses == [200]
    assert pool.stats().connections_opened == 1


# ---------------------------------------------------------------------- 9: idle HTTP/2 conns
async def test_max_keepalive_connections_holds_for_http2(anyio_backend: str) -> None:
    async with serving(ScriptedH2Server(max_streams=1)) as srv:
        http, pool = pool_client(http2=True, max_keepalive_connections=2)
        async with http:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(http.get, srv.url + "/?hold=1")
                await srv.wait_for(lambda s: s.in_flight == 10)
                srv.release()
            assert srv.connections_opened == 10
            await srv.wait_for(lambda s: s.connections_closed == 8)
            assert pool.stats().idle == 2


# ---------------------------------------------------------------------- the header block
async def test_header_block_is_clean_and_credentials_are_never_indexed(
    srv: ScriptedH2Server, mode: str, ca: trustme.CA
) -> None:
    # surge builds the block itself (h2's outbound checks are off): lower-case names,
    # no connection-specific fields, `te` only as trailers; credentials and short cookies
    # never enter the HPACK tables (RFC 7541 7.1.3).
    http, _ = make_client(mode, ca)
    headers = [
        ("Authorization", "Bearer sk-secret"),
        ("Proxy-Authorization", "Basic abc"),
        ("Cookie", "a=1"),
        ("X-Trace", "Keep-Case"),
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
        ("Upgrade", "h2c"),
        ("TE", "gzip"),
    ]
    async with http:
        response = await http.get(srv.url + "/?n=1", headers=headers)
        assert response.status_code == 200
        await http.get(srv.url + "/?n=2", headers=[("te", "trailers")])
    (first, second) = (srv.headers[1], srv.headers[3])
    seen = [(n, v, type(h).__name__) for h in first for n, v in [h]]
    authority = srv.url.split("//")[1].split("/")[0]
    assert seen == [
        (":method", "GET", "HeaderTuple"),
        (":authority", authority, "HeaderTuple"),
        (":scheme", "https" if mode == "tls" else "http", "HeaderTuple"),
        (":path", "/?n=1", "HeaderTuple"),
        ("accept", "*/*", "HeaderTuple"),
        ("accept-encoding", "gzip, deflate", "HeaderTuple"),
        ("user-agent", f"python-httpx/{httpx.__version__}", "HeaderTuple"),
        ("authorization", "Bearer sk-secret", "NeverIndexedHeaderTuple"),
        ("proxy-authorization", "Basic abc", "NeverIndexedHeaderTuple"),
        ("x-trace", "Keep-Case", "HeaderTuple"),
        ("cookie", "a=1", "NeverIndexedHeaderTuple"),  # h2 puts cookies last as it joins them
    ]
    assert [n for n, _ in second][4:] == ["accept", "accept-encoding", "user-agent", "te"]
