"""What a client's settings put on the wire, and what it learns from the server's answers.

End to end against the simulated server over loopback, on asyncio and trio: `timeout=`
reaches the socket (and is not the pool's `read=`), `headers=` arrive and replace, and
the server's `Retry-After`, `x-ratelimit-*` headers and `usage` pace the next calls.
"""

from __future__ import annotations

import time

import anyio
import pytest

import surge
from surge import LLMClient, RateLimit
from surge.testing import ChatRequest, Failure, Reply, SimulatedServer

pytestmark = pytest.mark.anyio

# A timeout of 0.2 s must fire well within this bound; an ignored timeout (the pool's
# read= of 30 s, or none) would not. 1.5 s leaves a loaded CI machine 1.3 s of slack.
TIMEOUT_BOUND = 1.5


class Recorder:
    """A scripted reply that remembers every request and when it arrived."""

    def __init__(self, reply: str | Reply = "ok") -> None:
        self.reply = reply
        self.requests: list[ChatRequest] = []
        self.arrivals: list[float] = []

    def __call__(self, request: ChatRequest) -> str | Reply:
        self.requests.append(request)
        self.arrivals.append(time.monotonic())
        return self.reply


# ---------------------------------------------------------------------------- timeouts


async def test_client_timeout_reaches_the_wire_not_the_pool_read() -> None:
    async with (
        SimulatedServer(failures=Failure.stall()) as server,
        LLMClient(base_url=server.url, timeout=0.2, read=30.0, retry=False) as client,
    ):
        with anyio.fail_after(TIMEOUT_BOUND), pytest.raises(surge.ReadTimeout) as info:
            await client.chat("x")
        assert len(info.value.call_attempts) == 1
        assert client.pool_stats().in_use == 0


async def test_call_timeout_overrides_the_client_timeout() -> None:
    async with (
        SimulatedServer(failures=Failure.stall()) as server,
        LLMClient(base_url=server.url, timeout=30.0, retry=False) as client,
    ):
        with anyio.fail_after(TIMEOUT_BOUND), pytest.raises(surge.ReadTimeout):
            await client.chat("x", timeout=0.2)


async def test_a_longer_timeout_replaces_a_short_pool_read() -> None:
    # The server answers after 0.5 s: the pool's read=0.2 alone would time out, the
    # client's (or the call's) timeout of 5 s replaces it and lets the answer arrive.
    slow = Failure.slow_first_byte(0.5)
    async with (
        SimulatedServer(failures=slow) as server,
        LLMClient(base_url=server.url, read=0.2, retry=False) as short,
    ):
        with pytest.raises(surge.ReadTimeout):
            await short.chat("pool read applies")
        patient = short.with_options(timeout=5.0)
        assert (await patient.chat("client timeout")).text == "You said: client timeout"
        assert (await short.chat("call timeout", timeout=5.0)).text == "You said: call timeout"


# ---------------------------------------------------------------------------- headers


async def test_headers_arrive_and_with_options_replaces_them() -> None:
    recorder = Recorder()
    async with (
        SimulatedServer(reply=recorder) as server,
        LLMClient(base_url=server.url, headers={"X-Team": "core", "X-Trace": "t1"}) as client,
    ):
        await client.chat("a")
        other = client.with_options(headers={"X-Other": "2"})
        await other.chat("b")
        await client.chat("c")  # the parent keeps its own headers
        await client.with_options(headers={}).chat("d")
    first, second, third, fourth = (r.headers for r in recorder.requests)
    assert (first["x-team"], first["x-trace"]) == ("core", "t1")
    assert "x-other" not in first
    assert second["x-other"] == "2"
    assert "x-team" not in second  # replaced, not merged
    assert "x-trace" not in second
    assert (third["x-team"], third["x-trace"]) == ("core", "t1")
    assert "x-other" not in third
    assert not {"x-team", "x-trace", "x-other"} & set(fourth)
    assert all(h["content-type"] == "application/json" for h in (first, second, fourth))


# ---------------------------------------------------------------------------- learned limits

# Upper bounds on a wait the server asked for: the ask plus 0.3 s, which covers a loaded
# machine oversleeping, while a wait applied twice, or read in the wrong unit, exceeds it.
SLACK = 0.3


async def test_a_429_retry_after_holds_the_next_call() -> None:
    recorder = Recorder()
    async with (
        SimulatedServer(
            reply=recorder, failures=Failure.status(429, retry_after=0.3, first=1)
        ) as server,
        LLMClient(base_url=server.url, retry=False) as client,
    ):
        before = time.monotonic()
        with pytest.raises(surge.RateLimitError):
            await client.chat("a")
        second = await client.chat("b")
        assert server.stats.requests == 2
    # The 429 was learnt before the first call returned, so the next one reached the
    # server at least 0.3 s after the first was sent (however loaded the machine).
    assert recorder.arrivals[0] - before >= 0.3
    # Nothing but a few microseconds of code run between the 429 and the next call's
    # turn: it waits (almost) the whole 0.3 s.
    assert 0.25 <= second.timings.throttled < 0.3 + SLACK


async def test_ratelimit_headers_slow_every_next_call() -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "200ms"}
    recorder = Recorder(Reply(content="ok", headers=headers))
    async with (
        SimulatedServer(reply=recorder) as server,
        LLMClient(base_url=server.url) as client,
    ):
        calls = [await client.chat(str(i)) for i in range(3)]
        free = client.with_options(rate_limit=RateLimit(adaptive=False))
        unpaced = await free.chat("own limiter, adaptive=False")
    gaps = [b - a for a, b in zip(recorder.arrivals[:2], recorder.arrivals[1:3], strict=True)]
    assert all(gap >= 0.2 for gap in gaps), gaps  # each waited for the announced window
    assert calls[0].timings.throttled < 0.1  # nothing learnt yet (0.1: an OS preemption)
    assert all(0.15 <= c.timings.throttled < 0.2 + SLACK for c in calls[1:])
    assert unpaced.timings.throttled < 0.1


def _usage(total: int) -> dict[str, int]:
    return {"prompt_tokens": total - 1, "completion_tokens": 1, "total_tokens": total}


async def test_reported_usage_feeds_tokens_per_minute() -> None:
    # 6,000 TPM is 100 tokens a second, paced smoothly (not a burst at the top of each
    # minute). A request estimated at 1 token whose reply reports 100 pushes the next
    # start 1 s away: the next call is held. Observed with a short bound, not waited for.
    for total, held in ((100, True), (1, False)):
        async with (
            SimulatedServer(reply=Recorder(Reply(content="ok", usage=_usage(total)))) as server,
            LLMClient(base_url=server.url, rate_limit=RateLimit(tokens_per_minute=6000)) as client,
        ):
            first = await client.chat("x")
            assert first.usage is not None
            assert first.usage.total_tokens == total
            limiter = client._limits.rate_for(client.base_url)
            ahead = limiter._next_token - time.monotonic()
            with anyio.move_on_after(0.4) as scope:
                await client.chat("y")
            assert server.stats.requests == (1 if held else 2)
        assert scope.cancelled_caught is held
        if held:
            assert 0.6 < ahead <= 1.0  # 100 tokens from its start, at 100 tokens a second
        else:
            assert ahead <= 0.01  # 1 token at 100 tokens a second


async def test_reported_usage_paces_calls_in_a_time_scaled_window() -> None:
    # The same rule with 60,000 TPM (1,000 tokens a second), so it can be watched: every
    # reply reports 100 tokens, and each next call waits 0.1 s for them.
    recorder = Recorder(Reply(content="ok", usage=_usage(100)))
    async with (
        SimulatedServer(reply=recorder) as server,
        LLMClient(base_url=server.url, rate_limit=RateLimit(tokens_per_minute=60_000)) as client,
    ):
        began: list[float] = []
        calls = []
        for _ in range(4):
            began.append(time.monotonic())
            calls.append(await client.chat("x"))
    # Call k + 1 may start 0.1 s after call k took its turn, which was after it began.
    gaps = [b - a for a, b in zip(began[:3], recorder.arrivals[1:], strict=True)]
    assert all(gap >= 0.1 for gap in gaps), gaps
    assert calls[0].timings.throttled < 0.1
    assert all(0.05 <= c.timings.throttled < 0.1 + SLACK for c in calls[1:])
