"""The pool's promises about order, freed slots, `Connection: close` and its wait statistics.

Each test pins one behaviour exactly (an order, a count, a percentile), against the raw
loopback servers of `_servers.py`, on asyncio and trio.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from _pool_client import pool_client, timings, wait_for_stats
from _servers import H2Server, RawServer, running, serving
from surge._config import PoolConfig
from surge._transport.pool import PoolTransport

pytestmark = pytest.mark.anyio

QUEUED = 6


@pytest.fixture
def server() -> Iterator[RawServer]:
    with running(RawServer()) as srv:
        yield srv


async def _queue_one_by_one(
    tg: anyio.abc.TaskGroup, pool: PoolTransport, call: Any, base: str, done: list[str]
) -> None:
    """Start QUEUED requests, each only once the one before it is queued in the pool."""

    async def one(i: int) -> None:
        response = await call(f"{base}/q{i}")
        assert response.status_code == 200
        done.append(f"/q{i}")

    for i in range(QUEUED):
        tg.start_soon(one, i)
        await wait_for_stats(pool, lambda s, n=i + 1: s.waiting == n, f"waiting == {i + 1}")


# ---------------------------------------------------------------------------- fairness


async def test_http11_waiters_are_served_first_come_first_served(server: RawServer) -> None:
    http, pool = pool_client(max_connections=1)
    done: list[str] = []
    async with http:
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.get, server.url + "/held?hold=1")
            await server.wait_for(lambda s: s.in_flight == 1)
            await _queue_one_by_one(tg, pool, http.get, server.url, done)
            server.release()
        expected = [f"/q{i}" for i in range(QUEUED)]
        assert server.seen == ["/held?hold=1", *expected]  # the order the server read them
        assert done == expected  # and the order they completed
        assert pool.stats().connections_opened == 1


async def test_http2_stream_waiters_are_served_first_come_first_served() -> None:
    async with serving(H2Server(max_streams=1)) as srv:
        http, pool = pool_client(http2=True, max_connections=1)
        done: list[str] = []
        async with http:
            async with anyio.create_task_group() as tg:
                tg.start_soon(http.get, srv.url + "/held?hold=1")
                await srv.wait_for(lambda s: s.in_flight == 1)
                await _queue_one_by_one(tg, pool, http.get, srv.url, done)
                srv.release()
            expected = [f"/q{i}" for i in range(QUEUED)]
            assert srv.seen == ["/held?hold=1", *expected]
            assert done == expected
            assert pool.stats().connections_opened == 1
            assert len(srv.clients) == 1  # all of them streams of one connection


# ---------------------------------------------------------------------------- freed slots


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("/held?hold=1&noreply=1", httpx.RemoteProtocolError),  # dropped without an answer
        ("/held?stall=1", httpx.ReadTimeout),  # never answers: times out
        ("/held?hold=1&close=1", None),  # answers, then closes the connection
    ],
    ids=["dropped", "timed-out", "closed"],
)
async def test_a_slot_freed_by_a_dead_connection_goes_to_the_waiter(
    server: RawServer, target: str, error: type[Exception] | None
) -> None:
    # No pool= timeout: if the freed slot were lost, the waiter would wait forever.
    transport = PoolTransport(PoolConfig(max_connections=1))
    http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(None))
    outcome: dict[str, Any] = {}

    async def held() -> None:
        try:
            outcome["held"] = await http.get(
                server.url + target, timeout=httpx.Timeout(None, read=0.3)
            )
        except httpx.TransportError as exc:
            outcome["held"] = exc

    async def waiter() -> None:
        outcome["waiter"] = await http.get(server.url + "/waiter")

    async with http:
        try:
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(held)
                    await server.wait_for(lambda s: s.in_flight == 1)
                    tg.start_soon(waiter)
                    await wait_for_stats(transport, lambda s: s.waiting == 1, "waiting == 1")
                    server.release()
        except TimeoutError:
            raise AssertionError(
                f"the waiter never got the slot the dead connection freed: {transport.stats()!r}"
            ) from None
    if error is None:
        assert outcome["held"].status_code == 200
    else:
        assert isinstance(outcome["held"], error)
    response = outcome["waiter"]
    assert response.status_code == 200
    assert response.json()["path"] == "/waiter"
    assert not timings(response).reused  # answered on a new connection
    assert server.connections_opened == 2
    stats = transport.stats()
    assert (stats.in_use, stats.waiting, stats.connections_opened) == (0, 0, 2)


# ---------------------------------------------------------------------------- Connection: close


async def test_connection_close_is_not_reused(server: RawServer) -> None:
    http, pool = pool_client(keepalive_expiry=60.0)  # no expiry closes it meanwhile
    async with http:
        first = await http.get(server.url + "/one?connclose=1")
        assert first.headers["connection"] == "close"
        # The server keeps the socket open: only the header says not to reuse it.
        assert (pool.stats().idle, pool.stats().in_use) == (0, 0)
        second = await http.get(server.url + "/two")
        stats = pool.stats()
        await server.wait_for(lambda s: s.connections_closed == 1, time_limit=5)  # we closed it
    assert not timings(first).reused
    assert not timings(second).reused
    assert server.connections_opened == 2
    assert server.seen == ["/one?connclose=1", "/two"]
    assert (stats.connections_opened, stats.requests) == (2, 2)
    assert (stats.in_use, stats.idle, stats.waiting) == (0, 1, 0)


async def test_connection_close_is_not_handed_to_a_waiter(server: RawServer) -> None:
    http, pool = pool_client(max_connections=1)
    results: dict[str, httpx.Response] = {}

    async def call(name: str, target: str) -> None:
        results[name] = await http.get(server.url + target)

    async with http:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "held", "/held?hold=1&connclose=1")
            await server.wait_for(lambda s: s.in_flight == 1)
            tg.start_soon(call, "waiter", "/waiter")
            await wait_for_stats(pool, lambda s: s.waiting == 1, "waiting == 1")
            server.release()
        stats = pool.stats()
    assert not timings(results["waiter"]).reused
    assert server.connections_opened == 2
    assert (stats.connections_opened, stats.requests, stats.in_use) == (2, 2, 0)


# ---------------------------------------------------------------------------- statistics

STEP = 0.01  # request k waits k * STEP seconds on the pool's clock


async def test_wait_percentiles_are_exact(server: RawServer) -> None:
    # The pool's clock is replaced by one the test moves, so every wait has a known length:
    # 100 requests queue at t=0 behind one connection, and request k is let through at
    # t = k * STEP, by opening the gate of the request before it.
    n = 100
    http, pool = pool_client(max_connections=1)
    async with http:
        await http.get(server.url)  # makes the origin and its connection
        (origin,) = pool._origins.values()
        now = [0.0]
        origin.now = lambda: now[0]
        pool.reset_stats()
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.get, f"{server.url}/?gate=0")
            await server.wait_for(lambda s: s.in_flight == 1)
            for k in range(1, n):
                tg.start_soon(http.get, f"{server.url}/?gate={k}")
                await wait_for_stats(pool, lambda s, k=k: s.waiting == k, f"waiting == {k}")
            for k in range(1, n):
                now[0] = k * STEP
                server.open_gate(str(k - 1))
                await server.wait_for(lambda s, k=k: s.requests == k + 2)  # k got the connection
            server.open_gate(str(n - 1))
        stats = pool.stats()
    # Waits are 0, 0.01, ..., 0.99 s; nearest rank: p50 is the 50th, p90 the 90th, p99 the 99th.
    assert stats.requests == n
    assert stats.wait_seconds_p50 == pytest.approx(0.49, abs=1e-3)
    assert stats.wait_seconds_p90 == pytest.approx(0.89, abs=1e-3)
    assert stats.wait_seconds_p99 == pytest.approx(0.98, abs=1e-3)
    assert stats.wait_seconds_max == pytest.approx(0.99, abs=1e-3)
    assert (stats.in_use, stats.waiting, stats.connections_opened) == (0, 0, 0)
