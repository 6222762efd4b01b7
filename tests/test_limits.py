"""The caller's limits: concurrency (FIFO) and rate (RPM, TPM, adaptive), on asyncio and trio."""

from __future__ import annotations

import anyio
import pydantic
import pytest

import surge
from surge import LLMClient, RateLimit
from surge._errors import ConfigError
from surge._limits import ClientLimits, ConcurrencyLimiter, RateLimiter
from surge._rates import estimate_tokens, parse_reset
from surge.testing import ChatRequest, Reply, SimulatedServer

# ------------------------------------------------------------------------ pure logic


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("1.5", 1.5),
        (" 2m ", 120.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("5x", None),
        ("1s5", None),
        ("m1s", None),
    ],
)
def test_parse_reset(text: str | None, seconds: float | None) -> None:
    assert parse_reset(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_token_estimate_is_chars_over_four_plus_max_tokens() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "x" * 10},
            {"role": "user", "content": [{"type": "text", "text": "y" * 7}, {"type": "image"}]},
        ],
        "max_tokens": 100,
    }
    assert estimate_tokens(body) == 5 + 100  # ceil(17 / 4) + 100
    assert estimate_tokens({"messages": [], "max_completion_tokens": 3}) == 3
    assert estimate_tokens({}) == 1
    assert estimate_tokens({"messages": "not a list", "max_tokens": "lots"}) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_are_paced_evenly_and_fifo() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(requests_per_minute=600), clock=clock)
    waits = [limiter.reserve(1) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    clock.now += 10  # idle: the next request may start at once (no burst is saved up)
    assert limiter.reserve(1) == 0.0
    assert limiter.reserve(1) == pytest.approx(0.1)


def test_tokens_per_minute_are_corrected_by_usage() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(tokens_per_minute=6000), clock=clock)  # 100 tokens/s
    assert limiter.reserve(100) == 0.0
    assert limiter.reserve(100) == pytest.approx(1.0)
    # The first request really used 300 tokens: everyone after it waits 2 s more.
    limiter.settle(100, used=300)
    assert limiter.reserve(50) == pytest.approx(4.0)
    # One that used fewer than estimated gives the difference back.
    limiter.settle(50, used=0)
    assert limiter.reserve(10) == pytest.approx(4.0)


def test_server_headers_slow_the_limiter_down_before_a_429() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(), clock=clock)  # no limits of the caller's own
    assert limiter.reserve(1) == 0.0
    limiter.settle(
        1, headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
    )
    assert limiter.reserve(1) == pytest.approx(2.0)
    # Plenty left: the pace the headers ask for is negligible.
    clock.now += 10
    limiter.settle(
        1,
        headers={"x-ratelimit-remaining-requests": "9999", "x-ratelimit-reset-requests": "6ms"},
    )
    assert limiter.reserve(1) < 0.001
    # Tokens: fewer left than this request needs, so wait for the reset.
    clock.now += 10
    limiter.settle(
        500, headers={"x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "1m0s"}
    )
    assert limiter.reserve(500) == pytest.approx(60.0)


def test_the_headers_spread_what_is_left_over_the_time_to_the_reset() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(), clock=clock)
    limiter.settle(
        1, headers={"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "2s"}
    )
    # 3 left in 2 s: one every 0.5 s (the 4th slot is the reset), then no pace of their own.
    waits = [limiter.reserve(1) for _ in range(5)]
    assert waits == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0])


def test_a_request_that_used_more_than_the_tokens_left_waits_for_the_reset() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(), clock=clock)
    # Estimated 10 tokens, really used 500, and the server has 100 left: wait the minute.
    limiter.settle(
        10,
        used=500,
        headers={"x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "1m0s"},
    )
    assert limiter.reserve(10) == pytest.approx(60.0)


def test_a_negative_remaining_count_reads_as_none_left() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(), clock=clock)
    limiter.settle(
        1,
        headers={
            "x-ratelimit-remaining-requests": "-1",
            "x-ratelimit-reset-requests": "2s",
            "x-ratelimit-remaining-tokens": "-5",
            "x-ratelimit-reset-tokens": "3s",
        },
    )
    assert limiter.reserve(1) == pytest.approx(3.0)


def test_retry_after_holds_every_caller_off() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(), clock=clock)
    limiter.settle(1, headers={"retry-after-ms": "1500"})
    assert limiter.reserve(1) == pytest.approx(1.5)


def test_adaptive_false_ignores_the_headers() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(adaptive=False), clock=clock)
    limiter.settle(
        1,
        headers={
            "retry-after": "9",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "2s",
        },
    )
    assert limiter.reserve(1) == 0.0


def test_unreadable_headers_are_ignored() -> None:
    limiter = RateLimiter(RateLimit(), clock=Clock())
    limiter.settle(
        1, headers={"x-ratelimit-remaining-requests": "many", "x-ratelimit-reset-requests": "2s"}
    )
    assert limiter.reserve(1) == 0.0


@pytest.mark.parametrize("bad", [{"requests_per_minute": 0}, {"tokens_per_minute": -5}])
def test_rate_limit_validation(bad: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        RateLimit(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_max_concurrency_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        ConcurrencyLimiter(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_concurrency"):
        LLMClient(base_url="http://127.0.0.1:1/v1", max_concurrency=bad)  # type: ignore[arg-type]


def test_rate_limit_must_be_a_rate_limit() -> None:
    with pytest.raises(ConfigError, match="RateLimit"):
        LLMClient(base_url="http://127.0.0.1:1/v1", rate_limit={"requests_per_minute": 5})  # type: ignore[arg-type]


def test_derived_limits_share_what_they_do_not_replace() -> None:
    limits = ClientLimits(4, RateLimit(requests_per_minute=60))
    same = limits.derive({"rate_limit": RateLimit(requests_per_minute=1)})
    assert same.concurrency is limits.concurrency
    assert same.rate_for("http://a") is not limits.rate_for("http://a")
    other = limits.derive({"max_concurrency": 2})
    assert other.concurrency is not limits.concurrency
    assert other.max_concurrency == 2
    assert other.rate_for("http://a") is limits.rate_for("http://a")
    assert limits.derive({"max_concurrency": None}).concurrency is None


# ------------------------------------------------------------------------ async


@pytest.mark.anyio
async def test_concurrency_limiter_is_fifo_and_hands_places_over() -> None:
    limiter = ConcurrencyLimiter(2)
    order: list[int] = []
    done = [anyio.Event() for _ in range(8)]

    async def worker(i: int) -> None:
        await limiter.acquire(1)
        order.append(i)
        await done[i].wait()
        await limiter.release(1)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(worker, i)
            await anyio.wait_all_tasks_blocked()  # each is queued before the next starts
        assert order == [0, 1]
        assert (limiter.in_use, limiter.waiting) == (2, 6)
        # Finish the holders in a scrambled order: places still go to the oldest waiter.
        for finished, expected in [(1, 3), (0, 4), (3, 5), (2, 6), (5, 7), (4, 8)]:
            done[finished].set()
            await anyio.wait_all_tasks_blocked()
            assert order == list(range(expected))
        done[6].set()
        done[7].set()
    assert (limiter.in_use, limiter.waiting) == (0, 0)


@pytest.mark.anyio
async def test_a_cancelled_waiter_never_loses_a_place() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire(1)
    got: list[str] = []
    doomed = anyio.CancelScope()

    async def take(name: str, scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            await limiter.acquire(1)
            got.append(name)
            await limiter.release(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "first", doomed)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(take, "second")
        await anyio.wait_all_tasks_blocked()
        # Hand the place to the first waiter and cancel it before it runs: whether it
        # wakes cancelled (asyncio) or with its place (trio), the place is not lost.
        await limiter.release(1)
        doomed.cancel()
    assert "second" in got
    assert (limiter.in_use, limiter.waiting) == (0, 0)

    # A waiter cancelled while still queued just leaves the queue.
    await limiter.acquire(1)
    with anyio.move_on_after(0.01):
        await limiter.acquire(1)
    assert (limiter.in_use, limiter.waiting) == (1, 0)


@pytest.mark.anyio
async def test_waiters_that_give_up_are_skipped_in_order() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire(1)
    got: list[int] = []
    scopes = [anyio.CancelScope() for _ in range(300)]

    async def take(i: int) -> None:
        with scopes[i]:
            await limiter.acquire(1)
            got.append(i)
            await limiter.release(1)

    async with anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(take, i)
            await anyio.wait_all_tasks_blocked()  # each is queued before the next starts
        assert limiter.waiting == 300
        for i in range(300):
            if i % 3:  # two thirds give up while queued
                scopes[i].cancel()
        await anyio.wait_all_tasks_blocked()
        assert limiter.waiting == 100
        await limiter.release(1)
    assert got == list(range(0, 300, 3))
    assert (limiter.in_use, limiter.waiting) == (0, 0)


@pytest.mark.anyio
async def test_max_concurrency_bounds_what_the_server_sees_across_clones() -> None:
    release = anyio.Event()

    async def held(request: ChatRequest) -> str:
        await release.wait()
        return f"done {request.last_user_message}"

    async with (
        SimulatedServer(reply=held) as server,
        LLMClient(base_url=server.url, max_concurrency=5) as client,
    ):
        clone = client.with_options(model="other")
        results: dict[int, surge.ChatResponse] = {}

        async def call(i: int) -> None:
            which = client if i % 2 else clone
            results[i] = await which.chat(str(i))

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(call, i)
            await server.wait_for(lambda s: s.in_flight == 5)
            await anyio.wait_all_tasks_blocked()
            assert server.stats.in_flight == 5  # the other 25 wait in the client
            release.set()
        stats = server.stats
    assert stats.peak_in_flight == 5
    assert stats.requests == 30
    assert sorted(results) == list(range(30))
    assert all(results[i].text == f"done {i}" for i in results)
    waited = [r for r in results.values() if r.timings.throttled > 0]
    assert len(waited) >= 25
    assert all(r.timings.queued == 0 or r.timings.queued < r.timings.total for r in waited)


@pytest.mark.anyio
async def test_a_per_clone_limit_is_its_own() -> None:
    async with SimulatedServer() as server, LLMClient(base_url=server.url, max_concurrency=1) as a:
        b = a.with_options(max_concurrency=3)
        c = a.with_options(model="x")
        assert a._limits.concurrency is c._limits.concurrency
        assert b._limits.concurrency is not a._limits.concurrency
        assert "max_concurrency=3" in repr(b)
        assert (await b.chat("hi")).text == "You said: hi"


@pytest.mark.anyio
async def test_the_server_headers_delay_the_next_call() -> None:
    def answer(request: ChatRequest) -> Reply:
        return Reply(
            content="ok",
            headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "300ms"},
        )

    async with (
        SimulatedServer(reply=answer) as server,
        LLMClient(base_url=server.url) as client,
    ):
        first = await client.chat("a")
        second = await client.chat("b")
        free = client.with_options(rate_limit=RateLimit(adaptive=False))
        third = await free.chat("c")  # its own limiter: nothing learnt yet
    # The server announced a 0.3 s window. Bounds widened for a loaded machine: up to
    # 0.1 s may pass between the answer and the next call's turn, or be overslept after
    # it; a call that did not wait, or waited twice (0.6 s), still fails.
    assert first.timings.throttled < 0.1
    assert 0.2 <= second.timings.throttled < 0.5
    assert third.timings.throttled < 0.1
