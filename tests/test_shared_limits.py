"""RedisStore against a real Redis, in one process: each store plays one process.

Async tests here run on asyncio only: redis-py has no trio support (on trio the store
raises ConfigError, tested below on both backends).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import anyio
import pytest

import surge
from _redis import RedisServer, require_redis, require_redis_py
from surge import ConfigError, Cooldown, Endpoint, LLMClient, RateLimit, RedisStore, RetryPolicy
from surge.testing import ChatRequest, Failure, Reply, SimulatedServer

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis-py: asyncio only


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, to stop and start again."""
    server = RedisServer(require_redis())
    server.start()
    yield server
    server.remove()


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"url": "http://127.0.0.1:6379"}, "url"),
        ({"namespace": ""}, "namespace"),
        ({"namespace": "a b"}, "namespace"),
        ({"lease": 0}, "lease"),
        ({"lease": float("inf")}, "lease"),
        ({"timeout": -1}, "timeout"),
        ({"on_failure": "ignore"}, "on_failure"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        RedisStore(**kwargs)  # type: ignore[arg-type]


def test_a_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ConfigError, match=r'pip install "surge\[redis\]"'):
        RedisStore()


def test_import_surge_does_not_import_redis() -> None:
    code = "import sys, surge; surge.RedisStore; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_limits_store_must_be_a_store() -> None:
    with pytest.raises(ConfigError, match=r"limits_store must be a surge\.RedisStore"):
        LLMClient(base_url="http://127.0.0.1:9/v1", limits_store="redis://")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_trio_is_refused_at_construction(anyio_backend: str) -> None:
    require_redis_py()
    if anyio_backend == "trio":
        with pytest.raises(ConfigError, match="asyncio only"):
            RedisStore()
    else:
        assert RedisStore().namespace == "surge"


def test_a_store_made_outside_a_loop_is_refused_by_a_client_made_on_trio() -> None:
    require_redis_py()
    import trio

    store = RedisStore()

    async def make() -> None:
        LLMClient(base_url="http://127.0.0.1:9/v1", limits_store=store)

    with pytest.raises(ConfigError, match="asyncio only"):
        trio.run(make)


# ------------------------------------------------------------------ shared state


@pytest.mark.anyio
@asyncio_only
async def test_two_processes_share_one_pool(redis_server: RedisServer) -> None:
    async def held(request: ChatRequest) -> str:
        await server.wait_for(lambda s: s.in_flight == 3 or s.served >= 3)
        return "ok"

    server = SimulatedServer(reply=held, latency=0.05)
    stores = [RedisStore(redis_server.url, namespace="pair") for _ in range(2)]
    async with server:
        clients = [
            LLMClient(base_url=server.url, max_concurrency=3, limits_store=store)
            for store in stores
        ]
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for client in clients:
                    for i in range(6):
                        group.start_soon(client.chat, f"call {i}")
        stats = server.stats
    assert stats.peak_in_flight == 3
    assert stats.served == 12
    assert [c._limits.concurrency.in_use for c in clients] == [0, 0]  # type: ignore[union-attr]
    for store in stores:
        await store.aclose()


@pytest.mark.anyio
@asyncio_only
@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=429, content="slow down", headers={"retry-after": "1"}),
        Reply(
            content="ok",
            headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"},
        ),
    ],
    ids=["retry-after", "x-ratelimit"],
)
async def test_what_the_server_said_slows_every_process(
    redis_server: RedisServer, reply: Reply
) -> None:
    arrivals: list[float] = []

    def answer(request: ChatRequest) -> Reply | str:
        arrivals.append(time.monotonic())
        return reply if request.n == 0 else "ok"

    namespace = f"hint-{reply.status}"
    first, second = (RedisStore(redis_server.url, namespace=namespace) for _ in range(2))
    async with SimulatedServer(reply=answer) as server:
        one = LLMClient(base_url=server.url, limits_store=first, retry=False)
        other = LLMClient(base_url=server.url, limits_store=second, retry=False)
        with anyio.fail_after(10):
            with contextlib.suppress(surge.RateLimitError):
                await one.chat("first")
            told = time.monotonic()
            await other.chat("second")
    assert len(arrivals) == 2
    assert arrivals[1] - told >= 0.8  # the other process waited for the 1 s it was told
    await first.aclose()
    await second.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_tokens_are_corrected_by_the_usage_the_server_reports(
    redis_server: RedisServer,
) -> None:
    arrivals: list[float] = []
    usage = {"prompt_tokens": 2, "completion_tokens": 98, "total_tokens": 100}

    def answer(request: ChatRequest) -> Reply:
        arrivals.append(time.monotonic())
        return Reply(content="ok", usage=usage if request.n == 0 else None)

    store = RedisStore(redis_server.url, namespace="tpm")
    async with SimulatedServer(reply=answer) as server:
        # 6,000 tokens a minute: 100 tokens a second. "first" is estimated at 2 tokens,
        # the server says 100 were used: the next request waits for the 98 more (~1 s).
        client = LLMClient(
            base_url=server.url,
            rate_limit=RateLimit(tokens_per_minute=6000),
            limits_store=store,
        )
        with anyio.fail_after(10):
            await client.chat("first")
            done = time.monotonic()
            await client.chat("second")
    assert len(arrivals) == 2
    assert arrivals[1] - done >= 0.8
    await store.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_an_endpoint_cooling_down_is_skipped_by_every_process(
    redis_server: RedisServer,
) -> None:
    bad = SimulatedServer(failures=Failure.status(500))
    good = SimulatedServer()
    stores = [RedisStore(redis_server.url, namespace="cool") for _ in range(2)]
    async with bad, good:
        endpoints = [Endpoint(bad.url), Endpoint(good.url)]
        clients = [
            LLMClient(
                endpoints=endpoints,
                cooldown=Cooldown(after=1, seconds=30),
                retry=RetryPolicy(max_attempts=2),
                limits_store=store,
            )
            for store in stores
        ]
        with anyio.fail_after(10):
            first = await clients[0].chat("hi")  # bad fails: cool-down, then good answers
            second = await clients[1].chat("hi")  # the other process goes to good at once
        assert [first.endpoint, second.endpoint] == [good.url, good.url]
        assert bad.stats.requests == 1
        assert good.stats.requests == 2
    for store in stores:
        await store.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_keys_expire(redis_server: RedisServer) -> None:
    import redis

    store = RedisStore(redis_server.url, namespace="ttl", lease=1)
    async with SimulatedServer() as server:
        client = LLMClient(
            base_url=server.url,
            max_concurrency=2,
            rate_limit=RateLimit(requests_per_minute=600),
            limits_store=store,
        )
        await client.chat("hi")
    await store.aclose()
    plain = redis.Redis.from_url(redis_server.url)
    keys = plain.keys("surge:{ttl}:*")
    assert keys
    assert all(0 < plain.pttl(key) <= 65_000 for key in keys)


@pytest.mark.anyio
@asyncio_only
async def test_no_rate_limit_and_no_hints_costs_no_round_trip(redis_server: RedisServer) -> None:
    import redis

    store = RedisStore(redis_server.url, namespace="norate")
    async with SimulatedServer() as server:
        client = LLMClient(
            base_url=server.url, rate_limit=RateLimit(adaptive=False), limits_store=store
        )
        await client.chat("hi")
    await store.aclose()
    assert redis.Redis.from_url(redis_server.url).keys("surge:{norate}:*") == []


# ------------------------------------------------------------------ Redis failures


@pytest.mark.anyio
@asyncio_only
async def test_redis_down_then_back_falls_back_locally_with_one_warning(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("surge._redis_store._RECHECK", 0.0)  # try Redis on every call
    caplog.set_level(logging.INFO, logger="surge")
    stores = [
        RedisStore(own_redis.url, namespace="down", on_failure="local", timeout=0.5)
        for _ in range(2)
    ]
    async with SimulatedServer(latency=0.2) as server:
        clients = [
            LLMClient(base_url=server.url, max_concurrency=4, limits_store=s, retry=False)
            for s in stores
        ]

        async def run(calls: int) -> None:
            async with anyio.create_task_group() as group:
                for client in clients:
                    for i in range(calls):
                        group.start_soon(client.chat, f"call {i}")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(run, 10)
                await server.wait_for(lambda s: s.in_flight == 4)
                own_redis.stop()  # mid-run: places held, callers waiting
            assert server.stats.served == 20
            down_peak = server.stats.peak_in_flight
            own_redis.start()
            server.reset_stats()
            await run(6)
        shared_peak = server.stats.peak_in_flight
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per process
    assert all("unreachable" in r.getMessage() for r in warnings)
    assert sum("shared again" in r.getMessage() for r in caplog.records) == 2
    assert down_peak == 8  # each process kept its own limit of 4 while Redis was down
    assert shared_peak == 4  # shared again once it came back
    assert [c._limits.concurrency.in_use for c in clients] == [0, 0]  # type: ignore[union-attr]
    for store in stores:
        await store.aclose()
    import redis

    assert redis.Redis.from_url(own_redis.url).hlen("surge:{down}:c:4:n") == 0  # Redis agrees


@pytest.mark.anyio
@asyncio_only
async def test_redis_down_raises_a_typed_error_then_works_again(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, namespace="raise", timeout=0.3)
    async with SimulatedServer() as server:
        client = LLMClient(base_url=server.url, max_concurrency=2, limits_store=store)
        await client.chat("before")
        own_redis.stop()
        with anyio.fail_after(5), pytest.raises(surge.LimitsUnavailable, match="did not answer"):
            await client.chat("during")
        assert server.stats.requests == 1  # the failed call sent nothing
        own_redis.start()
        with anyio.fail_after(5):
            await client.chat("after")
        assert server.stats.served == 2
    assert client._limits.concurrency.in_use == 0  # type: ignore[union-attr]
    await store.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_the_password_stays_out_of_messages() -> None:
    require_redis_py()
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    store = RedisStore(url, namespace="secret", timeout=0.2)
    assert "hunter2" not in repr(store)
    client = LLMClient(base_url="http://127.0.0.1:9/v1", max_concurrency=1, limits_store=store)
    with anyio.fail_after(5), pytest.raises(surge.LimitsUnavailable) as caught:
        await client.chat("hi")
    assert "hunter2" not in str(caught.value)
    assert caught.value.store == f"redis://***@127.0.0.1:{port}/0"
    await store.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_redis_down_fails_the_waiters_and_lets_the_holders_finish(
    own_redis: RedisServer,
) -> None:
    release = anyio.Event()

    async def held(request: ChatRequest) -> str:
        await release.wait()
        return "ok"

    store = RedisStore(own_redis.url, namespace="waiters", timeout=0.3)
    outcomes: list[str] = []
    failed = anyio.Event()
    async with SimulatedServer(reply=held) as server:
        client = LLMClient(base_url=server.url, max_concurrency=2, limits_store=store)

        async def call(i: int) -> None:
            try:
                await client.chat(f"call {i}")
                outcomes.append("ok")
            except surge.LimitsUnavailable:
                outcomes.append("unavailable")
                if outcomes.count("unavailable") == 3:
                    failed.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for i in range(5):
                    group.start_soon(call, i)
                await server.wait_for(lambda s: s.in_flight == 2)
                own_redis.stop()  # two calls hold the places, three wait for one
                await failed.wait()  # the three fail within the store's timeout
                release.set()
    assert sorted(outcomes) == ["ok", "ok", "unavailable", "unavailable", "unavailable"]
    assert server.stats.served == 2
    assert client._limits.concurrency.in_use == 0  # type: ignore[union-attr]
    await store.aclose()
