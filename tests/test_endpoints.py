"""Several endpoints: validation, strategies, cooldown (sync), fallbacks end to end (async)."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

import surge
from surge import Cooldown, Endpoint, LLMClient, RetryPolicy
from surge._endpoints import Router
from surge._errors import ConfigError, ServerError
from surge.testing import ChatRequest, Failure, Reply, SimulatedServer

KEY_A = "sk-endpoint-a-0123456789"
KEY_B = "sk-endpoint-b-9876543210"
FAST = RetryPolicy(backoff=0.001, max_backoff=0.002)

# ------------------------------------------------------------------------ pure logic


def test_endpoint_validation() -> None:
    assert Endpoint("http://127.0.0.1:8080/v1/").base_url == "http://127.0.0.1:8080/v1"
    with pytest.raises(ConfigError, match="http"):
        Endpoint("ftp://host/v1")
    with pytest.raises(ConfigError, match="credentials"):
        Endpoint("http://user:pw@127.0.0.1/v1")
    for weight in (0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ConfigError, match="weight"):
            Endpoint("http://127.0.0.1/v1", weight=weight)  # type: ignore[arg-type]


def test_endpoint_repr_never_shows_the_key() -> None:
    endpoint = Endpoint("http://127.0.0.1/v1", api_key=KEY_A, model="m", weight=2)
    for text in (repr(endpoint), str(endpoint), repr([endpoint])):
        assert KEY_A not in text
        assert "api_key=<set>" in text
        assert "model='m'" in text


def test_cooldown_validation() -> None:
    with pytest.raises(ConfigError, match="after"):
        Cooldown(after=0)
    with pytest.raises(ConfigError, match="seconds"):
        Cooldown(seconds=-1)


def test_router_validation() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        Router([])
    with pytest.raises(ConfigError, match="list"):
        Router(Endpoint("http://a.test/v1"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"endpoints\[1\]"):
        Router([Endpoint("http://a.test/v1"), "http://b.test/v1"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="strategy"):
        Router([Endpoint("http://a.test/v1")], "random")  # type: ignore[arg-type]


def _three(strategy: str, clock: list[float] | None = None, **weights: float) -> Router:
    endpoints = [Endpoint(f"http://{n}.test/v1", weight=weights.get(n, 1.0)) for n in "abc"]
    now = clock if clock is not None else [0.0]
    return Router(endpoints, strategy, Cooldown(after=2, seconds=10), clock=lambda: now[0])  # type: ignore[arg-type]


def test_fallback_keeps_the_order() -> None:
    router = _three("fallback")
    assert [router.plan() for _ in range(3)] == [[0, 1, 2]] * 3


def test_round_robin_takes_turns() -> None:
    router = _three("round_robin")
    assert [router.plan()[0] for _ in range(6)] == [0, 1, 2, 0, 1, 2]


def test_weighted_spreads_exactly_by_weight() -> None:
    router = _three("weighted", a=3, b=1, c=2)
    firsts = Counter(router.plan()[0] for _ in range(60))
    assert firsts == {0: 30, 1: 10, 2: 20}
    assert router.plan()[1:] in ([0, 2], [2, 0], [2, 1], [0, 1])  # the others, by weight


def test_choose_prefers_untried_then_goes_round() -> None:
    router = _three("fallback")
    plan = router.plan()
    assert router.choose(plan, set(), None) == (0, True)
    assert router.choose(plan, {0}, 0) == (1, True)
    assert router.choose(plan, {0, 1, 2}, 2) == (0, False)
    assert router.choose(plan, {0, 1, 2}, 0) == (1, False)


def test_cooldown_skips_a_failing_endpoint_then_lets_it_try_again() -> None:
    clock = [0.0]
    router = _three("fallback", clock)
    router.failed(0)
    assert not router.cooling(0)  # one failure is not enough
    router.failed(0)
    assert router.cooling(0)
    assert router.choose(router.plan(), set(), None) == (1, True)
    clock[0] = 10.5
    assert not router.cooling(0)
    assert router.choose(router.plan(), set(), None) == (0, True)
    router.failed(0)  # still failing after the cooldown: straight back
    assert router.cooling(0)
    router.succeeded(0)
    assert not router.cooling(0)
    router.failed(0)
    assert not router.cooling(0)  # the count started again


def test_when_every_endpoint_cools_the_soonest_is_tried() -> None:
    clock = [0.0]
    router = _three("fallback", clock)
    for index, at in ((1, 0.0), (2, 1.0), (0, 2.0)):
        clock[0] = at
        router.failed(index)
        router.failed(index)
    assert router.choose(router.plan(), set(), None) == (1, True)
    assert router.choose(router.plan(), {1}, 1) == (1, False)


def test_client_rejects_base_url_with_endpoints() -> None:
    with pytest.raises(ConfigError, match="not both"):
        LLMClient(base_url="http://a.test/v1", endpoints=[Endpoint("http://b.test/v1")])
    client = LLMClient(endpoints=[Endpoint("http://b.test/v1")])
    with pytest.raises(ConfigError, match="not both"):
        client.with_options(base_url="http://a.test/v1", endpoints=[Endpoint("http://c.test/v1")])


def test_client_repr_and_properties_hide_keys() -> None:
    client = LLMClient(
        api_key=KEY_A,
        endpoints=[Endpoint("http://a.test/v1", api_key=KEY_B), Endpoint("http://b.test/v1")],
        strategy="round_robin",
    )
    assert client.base_url == "http://a.test/v1"
    assert [e.base_url for e in client.endpoints] == ["http://a.test/v1", "http://b.test/v1"]
    text = repr(client)
    assert KEY_A not in text
    assert KEY_B not in text
    assert "strategy='round_robin'" in text


# ------------------------------------------------------------------------ end to end


class Recorder:
    def __init__(self, name: str, reply: Reply | None = None) -> None:
        self.name = name
        self.reply = reply
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> Reply | str:
        self.requests.append(request)
        return self.reply if self.reply is not None else f"from {self.name}"


@pytest.mark.anyio
async def test_fallback_moves_on_at_once_and_says_who_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="surge")
    a = Recorder("a", Reply(status=503, content=f"down, key {KEY_A}"))
    b = Recorder("b")
    async with SimulatedServer(reply=a) as sa, SimulatedServer(reply=b) as sb:
        endpoints = [
            Endpoint(sa.url, api_key=KEY_A, model="big"),
            Endpoint(sb.url, api_key=KEY_B),
        ]
        async with LLMClient(endpoints=endpoints, model="small", retry=FAST) as client:
            response = await client.chat("hi")
            explicit = await client.chat("hi", model="chosen")
            url_a, url_b = sa.url, sb.url
    assert response.text == "from b"
    assert response.endpoint == url_b
    assert [(x.endpoint, x.status_code) for x in response.attempts] == [
        (url_a, 503),
        (url_b, 200),
    ]
    assert response.attempts[0].wait == 0.0  # another endpoint: no backoff
    assert response.timings.backoff == 0.0
    # Each endpoint got its own key and its own model (the client's when it has none).
    assert a.requests[0].headers["authorization"] == f"Bearer {KEY_A}"
    assert b.requests[0].headers["authorization"] == f"Bearer {KEY_B}"
    assert a.requests[0].model == "big"
    assert b.requests[0].model == "small"
    assert explicit.endpoint == url_b
    assert b.requests[1].model == "chosen"
    assert KEY_A not in caplog.text
    assert KEY_B not in caplog.text
    assert all(KEY_A not in str(x.error) for x in response.attempts)


@pytest.mark.anyio
async def test_a_failing_endpoint_cools_down() -> None:
    async with (
        SimulatedServer(failures=Failure.status(500)) as sa,
        SimulatedServer() as sb,
    ):
        endpoints = [Endpoint(sa.url), Endpoint(sb.url)]
        cooldown = Cooldown(after=3, seconds=60)
        async with LLMClient(endpoints=endpoints, cooldown=cooldown, retry=FAST) as client:
            for _ in range(6):
                response = await client.chat("hi")
                assert response.endpoint == sb.url
            derived = client.with_options(model="m")  # shares the endpoints' health
            assert (await derived.chat("hi")).attempts[0].endpoint == sb.url
            assert sa.stats.requests == 3  # skipped once it failed three times in a row
            assert sb.stats.requests == 7


@pytest.mark.anyio
async def test_every_endpoint_failing_raises_the_last_error_with_every_attempt() -> None:
    async with (
        SimulatedServer(failures=Failure.status(502)) as sa,
        SimulatedServer(failures=Failure.status(503)) as sb,
    ):
        policy = FAST.model_copy(update={"max_attempts": 5})
        endpoints = [Endpoint(sa.url), Endpoint(sb.url)]
        async with LLMClient(endpoints=endpoints, retry=policy) as client:
            with pytest.raises(ServerError) as info:
                await client.chat("hi")
        urls = [sa.url, sb.url]
        assert [(a.endpoint, a.status_code) for a in info.value.call_attempts] == [
            (urls[0], 502),
            (urls[1], 503),
            (urls[0], 502),
            (urls[1], 503),
            (urls[0], 502),
        ]
        waits = [a.wait for a in info.value.call_attempts]
        assert waits[0] == 0.0  # first switch: no wait
        assert waits[-1] == 0.0  # the last attempt waits for nothing
        assert info.value.status_code == 502


@pytest.mark.anyio
async def test_round_robin_and_weighted_spread_calls() -> None:
    async with SimulatedServer() as sa, SimulatedServer() as sb:
        rr = LLMClient(endpoints=[Endpoint(sa.url), Endpoint(sb.url)], strategy="round_robin")
        async with rr:
            served = Counter([(await rr.chat(str(i))).endpoint for i in range(10)])
            assert served == {sa.url: 5, sb.url: 5}
            weighted = rr.with_options(
                endpoints=[Endpoint(sa.url, weight=3), Endpoint(sb.url)], strategy="weighted"
            )
            served = Counter([(await weighted.chat(str(i))).endpoint for i in range(12)])
            assert served == {sa.url: 9, sb.url: 3}
        assert sa.stats.requests == 14
        assert sb.stats.requests == 8


@pytest.mark.anyio
async def test_with_options_base_url_replaces_the_endpoints() -> None:
    async with SimulatedServer() as sa, SimulatedServer() as sb:
        client = LLMClient(endpoints=[Endpoint(sa.url)])
        async with client:
            other = client.with_options(base_url=sb.url)
            assert (await other.chat("x")).endpoint == sb.url
            assert other.endpoints == (Endpoint(sb.url),)
            assert (await client.chat("x")).endpoint == sa.url
        assert isinstance(other, surge.LLMClient)
