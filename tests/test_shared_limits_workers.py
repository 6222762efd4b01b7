"""Limits shared through a real Redis by real worker processes, against one simulated server.

asyncio only: the workers' RedisStore uses redis-py, which has no trio support. These are
sync tests (the server runs in its own thread); each worker is a subprocess running
tests/_limits_worker.py. The RPM test paces 220 requests at 600/min, so it takes ~22 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

from _redis import RedisServer
from surge.testing import ChatRequest, Failure, SimulatedServer

WORKER = str(Path(__file__).with_name("_limits_worker.py"))


class Arrivals:
    """The server's record of each answered request: (arrival time, message), thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[float, str]] = []

    def __call__(self, request: ChatRequest) -> str:
        if request.last_user_message != "warmup":
            with self.lock:
                self.seen.append((time.monotonic(), request.last_user_message))
        return "ok"


class FirstWaveHeld(Arrivals):
    """Arrivals, and each answer waits (up to 5 s) until `size` requests were in at once.

    So the first wave of places is all at the server together however slow the machine,
    and the peak says exactly how many places the workers held: with a limit that is too
    low the peak stays below `size`, with one too high it goes above.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.server: SimulatedServer | None = None

    async def __call__(self, request: ChatRequest) -> str:  # type: ignore[override]
        super().__call__(request)
        assert self.server is not None
        if request.last_user_message == "warmup":
            return "ok"
        with anyio.move_on_after(5):
            await self.server.wait_for(lambda s: s.peak_in_flight >= self.size)
        return "ok"


def spawn_worker(**settings: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, json.dumps(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_ready(worker: subprocess.Popen[str]) -> subprocess.Popen[str]:
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    return worker


def start_worker(**settings: object) -> subprocess.Popen[str]:
    return wait_ready(spawn_worker(**settings))


def go(worker: subprocess.Popen[str]) -> None:
    assert worker.stdin is not None
    worker.stdin.write("go\n")
    worker.stdin.flush()


def result(worker: subprocess.Popen[str], timeout: float = 60) -> dict[str, object]:
    out, _ = worker.communicate(timeout=timeout)
    assert worker.returncode == 0
    return dict(json.loads(out.strip().splitlines()[-1]))


@contextmanager
def workers(count: int, **settings: object) -> Iterator[list[subprocess.Popen[str]]]:
    started = [spawn_worker(tag=f"w{i}", **settings) for i in range(count)]
    try:
        yield [wait_ready(worker) for worker in started]
    finally:
        for worker in started:
            if worker.poll() is None:
                worker.kill()
            worker.communicate(timeout=10)  # reaps it and closes its pipes


def redis_client(server: RedisServer):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(server.url)


def test_four_workers_share_max_concurrency_50(redis_server: RedisServer) -> None:
    arrivals = FirstWaveHeld(50)
    server = SimulatedServer(latency=0.2, reply=arrivals)
    arrivals.server = server
    with server:
        settings = {"server": server.url, "redis": redis_server.url, "namespace": "conc50"}
        with workers(4, calls=100, max_concurrency=50, warmup=True, **settings) as started:
            for worker in started:
                go(worker)
            results = [result(worker) for worker in started]
        stats = server.stats
    assert [(r["done"], r["errors"]) for r in results] == [(100, [])] * 4
    assert [r["in_use"] for r in results] == [0, 0, 0, 0]
    assert stats.peak_in_flight == 50
    assert stats.served == 404  # and the 4 warm-up calls
    # Fairness: once the first 50 free places are gone, all four wait and the places go
    # round the workers, places freed together split evenly. Of the next 200 served, each
    # worker has at least 70% of its share (42-59 each seen; 16-31 for the least before the
    # even split, when whoever asked first took most of a wave).
    contended = sorted(arrivals.seen)[50:250]
    shares = Counter(message.split("-")[0] for _, message in contended)
    assert sorted(shares) == ["w0", "w1", "w2", "w3"]
    assert min(shares.values()) >= 35, shares
    # Every process gave its places back: nothing left in Redis's pool.
    assert redis_client(redis_server).hlen("surge:{conc50}:c:50:n") == 0


def test_four_workers_share_600_requests_per_minute(redis_server: RedisServer) -> None:
    arrivals = Arrivals()
    with SimulatedServer(reply=arrivals) as server:
        settings = {"server": server.url, "redis": redis_server.url, "namespace": "rpm600"}
        with workers(4, calls=55, rpm=600, warmup=True, **settings) as started:
            for worker in started:
                go(worker)
            results = [result(worker) for worker in started]
    assert [(r["done"], r["errors"]) for r in results] == [(55, [])] * 4
    times = sorted(t for t, _ in arrivals.seen)
    assert len(times) == 220
    # Every 10 s window that starts at an arrival and ends before the last one.
    windows = [
        sum(1 for t in times[i:] if t < start + 10.0)
        for i, start in enumerate(times)
        if start + 10.0 <= times[-1]
    ]
    assert len(windows) >= 100  # at least ~11 s of windows: two whole windows and more
    assert min(windows) >= 95, windows
    assert max(windows) <= 105, windows


def test_a_killed_worker_gives_its_places_back_within_the_lease(
    redis_server: RedisServer,
) -> None:
    lease = 1.5
    arrivals = Arrivals()
    # The victim's 10 calls are the first 10 requests: they stall, holding every place.
    with SimulatedServer(reply=arrivals, failures=Failure.stall(first=10)) as server:
        settings = {
            "server": server.url,
            "redis": redis_server.url,
            "namespace": "kill",
            "max_concurrency": 10,
            "lease": lease,
        }
        victim = start_worker(tag="victim", calls=10, **settings)
        survivor: subprocess.Popen[str] | None = None
        try:
            go(victim)
            server.wait_for_blocking(lambda s: s.in_flight == 10, timeout=20)
            survivor = start_worker(tag="survivor", calls=20, **settings)
            go(survivor)
            queue = redis_client(redis_server)
            deadline = time.monotonic() + 20
            while not queue.zcard("surge:{kill}:c:10:q"):  # bounded: the survivor queues
                assert time.monotonic() < deadline, "the survivor never queued in Redis"
                time.sleep(0.01)
            assert server.stats.in_flight == 10  # it waits: every place is the victim's
            os.kill(victim.pid, signal.SIGKILL)
            killed = time.monotonic()
            victim.communicate(timeout=10)  # reaps it and closes its pipes
            outcome = result(survivor, timeout=lease + 20)
        finally:
            for worker in (victim, survivor):
                if worker is not None and worker.poll() is None:
                    worker.kill()
                    worker.communicate(timeout=10)
        stats = server.stats
    assert outcome == {"done": 20, "errors": [], "in_use": 0}
    served = sorted(message for _, message in arrivals.seen)
    assert served == sorted(f"survivor-{i}" for i in range(20))  # each once, none of the victim's
    assert stats.served == 20
    first = min(t for t, _ in arrivals.seen)
    # The places came back by the lease lapsing (renewed every lease/3, so it lapses
    # between 2/3 of a lease and a lease after the kill), not at once.
    assert first - killed >= lease / 2
    assert redis_client(redis_server).hlen("surge:{kill}:c:10:n") == 0
