"""Abandoned streams free the client's pool and the server at once.

Every way of leaving a stream early (break, an exception in the consumer, a cancellation,
leaving the `async with` before reading) must close the response, give the connection
back and make the server stop generating: on HTTP/1.1 the connection is closed, on HTTP/2
the stream is reset with RST_STREAM sent at once. The simulated server (in its own
thread, so its timing does not depend on the client's loop) records when it saw each
client go; the test compares that with the client's own clock, less any stall of the
whole process meanwhile (`StallWatch`: a garbage collection, or no CPU to be had).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Literal

import anyio
import pytest

from surge import LLMClient
from surge.testing import ServerStats, SimulatedServer

pytestmark = pytest.mark.anyio

Way = Literal["break", "raise", "cancel", "exit"]
WAYS: tuple[Way, ...] = ("break", "raise", "cancel", "exit")
LONG = " ".join(f"w{i}" for i in range(1000))
# The thousand streams: 200 words at 200 a second last a second, far longer than reading
# the 0-9 chunks each one reads before leaving (the server prepares every chunk of an
# answer up front, so a shorter answer is a cheaper request).
SHORTER = " ".join(f"w{i}" for i in range(200))
FREED_WITHIN = 0.1  # seconds from leaving the block to the server seeing the client go


class ConsumerError(Exception):
    pass


@pytest.fixture(params=[False, True], ids=["http1", "http2"])
def http2(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class StallWatch:
    """A thread that notes when the whole test process stood still (for `limit` s or more).

    A thread that asks to wake every 2 ms and wakes 100 ms late saw what every thread
    saw: a garbage collection holding the interpreter lock, or the machine giving the
    process no CPU. Such a stall delays the server's reading of a reset as much as the
    pool's sending of it, and is no fault of the pool's, so a lag may exceed
    FREED_WITHIN by the stalls that overlap it, and by nothing else. (A pool that never
    sent the reset at once would lag by seconds, stalls or not.)
    """

    def __init__(self, limit: float = 0.02) -> None:
        self.limit = limit
        self.stalls: list[tuple[float, float]] = []  # (start, end), time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.002):
            now = time.monotonic()
            if now - last >= self.limit:
                self.stalls.append((last, now))
            last = now

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def within(self, start: float, end: float) -> float:
        """Seconds of stall that overlap the interval [start, end]."""
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in self.stalls)


def client_sockets(port: int) -> int:
    """This process's TCP sockets connected to 127.0.0.1:`port` (Linux /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    remote = f"0100007F:{port:04X}"
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[2] == remote and fields[9] in inodes:
                count += 1
    return count


async def closed_for_good() -> None:
    """Let the loop run the socket closes `aclose` scheduled (asyncio closes the fd in a
    callback queued by `transport.close()`, which runs at the next loop iteration)."""
    await anyio.lowlevel.checkpoint()


async def wait_server(
    server: SimulatedServer, predicate: Callable[[ServerStats], bool], limit: float = 3.0
) -> None:
    await anyio.to_thread.run_sync(server.wait_for_blocking, predicate, limit)


KEPT: list[object] = []  # abandoned streams stay referenced: the garbage collector
# closing their body iterators must not be what frees the connection


async def abandon(client: LLMClient, way: Way, after: int) -> tuple[str, float]:
    """Open a stream, read `after` chunks, leave it the given way; return (request id, when)."""
    rid = ""
    with anyio.CancelScope() as scope:
        try:
            async with client.stream("go", max_tokens=1000) as stream:
                KEPT.append(stream)
                rid = stream.request_id or ""
                if way != "exit":
                    count = 0
                    async for _ in stream:
                        count += 1
                        if count > after:
                            if way == "break":
                                break
                            if way == "raise":
                                raise ConsumerError
                            scope.cancel()
                            await anyio.lowlevel.checkpoint()
        except ConsumerError:
            pass
    return rid, time.monotonic()


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc")
@pytest.mark.parametrize("way", WAYS)
async def test_each_way_of_leaving_frees_pool_and_server(http2: bool, way: Way) -> None:
    with SimulatedServer(reply=LONG, stream_tokens_per_second=200) as server:
        async with LLMClient(base_url=server.url, http2=http2) as client:
            with StallWatch() as watch:
                rid, left = await abandon(client, way, after=3)
                await wait_server(server, lambda s: s.cancelled == 1 and s.in_flight == 0)
            assert client.pool_stats().in_use == 0
            seen = server.cancellations()[rid]
            assert seen - left - watch.within(left, seen) < FREED_WITHIN, watch.stalls
            stats = client.pool_stats()
            assert client_sockets(server.port) == stats.idle  # none outside the pool
            # The pool still works afterwards.
            assert (await client.chat("again")).text == LONG
        await closed_for_good()
        assert client_sockets(server.port) == 0
    KEPT.clear()


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc")
async def test_a_thousand_streams_abandoned_at_random_points(http2: bool) -> None:
    rng = random.Random(1234)
    plan = [(rng.choice(WAYS), rng.randrange(0, 10)) for _ in range(1000)]
    left: dict[str, float] = {}
    with (
        StallWatch() as watch,
        SimulatedServer(reply=SHORTER, stream_tokens_per_second=200) as server,
    ):
        async with LLMClient(base_url=server.url, http2=http2) as client:
            limiter = anyio.CapacityLimiter(2)

            async def one(way: Way, after: int) -> None:
                async with limiter:
                    rid, when = await abandon(client, way, after)
                    left[rid] = when

            with anyio.fail_after(120):
                async with anyio.create_task_group() as group:
                    for way, after in plan:
                        group.start_soon(one, way, after)
                await wait_server(server, lambda s: s.cancelled == 1000 and s.in_flight == 0, 10.0)
            stats = client.pool_stats()
            assert stats.in_use == 0
            assert client_sockets(server.port) == stats.idle
            seen = server.cancellations()
            assert sorted(seen) == sorted(left)
            lags = sorted(seen[rid] - left[rid] for rid in left)
            print(f"lag p50={lags[500]:.4f}s p99={lags[990]:.4f}s max={lags[-1]:.4f}s")
            # Every one of the thousand (p99 is a few ms, the worst under 10 ms on a quiet
            # machine), less any stall of the whole process while it was under way.
            late = {
                rid: round(seen[rid] - left[rid], 4)
                for rid in left
                if seen[rid] - left[rid] - watch.within(left[rid], seen[rid]) >= FREED_WITHIN
            }
            assert late == {}, f"stalls of the process: {watch.stalls}"
        await closed_for_good()
        assert client_sockets(server.port) == 0
    KEPT.clear()
