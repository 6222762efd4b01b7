"""Retries and deadlines: the policy's pure logic (sync), then end to end on asyncio and trio."""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Callable

import pydantic
import pytest

import surge
from surge import LLMClient, RetryPolicy
from surge._errors import (
    BadRequestError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    DeadlineExceeded,
    NotFoundError,
    PoolTimeout,
    RateLimitError,
    ReadTimeout,
    RemoteProtocolError,
    ResponseFormatError,
    ServerError,
    UnprocessableEntityError,
    WriteTimeout,
)
from surge._retry import check_deadline, resolve_policy, was_sent
from surge.testing import ChatRequest, Failure, Reply, SimulatedServer

SECRET = "sk-retry-secret-0123456789"
FAST = RetryPolicy(backoff=0.001, max_backoff=0.002)

# ------------------------------------------------------------------------ policy (pure)


def test_default_policy_is_on_with_the_documented_values() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert policy.backoff == 0.5
    assert policy.max_backoff == 8.0
    assert policy.jitter is True
    assert policy.replay_after_send is True
    assert policy.retry_statuses == {408, 409, 429, 500, 502, 503, 504}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"backoff": 0}, "backoff"),
        ({"backoff": float("nan")}, "backoff"),
        ({"backoff": 2.0, "max_backoff": 1.0}, "max_backoff"),
        ({"retry_statuses": {404}}, "404"),
        ({"retry_statuses": {429, 422, 400}}, "400, 422"),
        ({"retry_statuses": {200}}, "400-599"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"attempts": 3}, "attempts"),
    ],
)
def test_policy_validation_names_the_problem(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=words):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        RetryPolicy().max_attempts = 5  # type: ignore[misc]


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff=0.5, max_backoff=3.0, jitter=False)
    assert [policy.backoff_for(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert policy.backoff_for(10_000) == 3.0


def test_full_jitter_stays_between_zero_and_the_cap() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=4.0)
    rng = random.Random(7)
    for retry, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)]:
        waits = [policy.backoff_for(retry, rng) for _ in range(200)]
        assert all(0.0 <= w <= cap for w in waits)
        assert max(waits) > cap * 0.8  # spread over the whole range, not a constant
        assert min(waits) < cap * 0.2


def _status(code: int) -> surge.APIStatusError:
    return surge._errors.status_error_class(code)(f"status {code}", status_code=code)


@pytest.mark.parametrize(
    ("error", "default", "no_replay"),
    [
        (ConnectError("refused"), True, True),
        (ConnectTimeout("connect"), True, True),
        (PoolTimeout("pool"), False, False),
        (ReadTimeout("read"), True, False),
        (WriteTimeout("write"), True, False),
        (RemoteProtocolError("dropped"), True, False),
        (DeadlineExceeded("late", phase="x", deadline=1.0), False, False),
        (ResponseFormatError("html"), False, False),
        (_status(429), True, True),
        (_status(503), True, False),
        (_status(500), True, False),
        (_status(408), True, False),
        (_status(409), True, False),
        (_status(501), False, False),
        (_status(400), False, False),
        (_status(401), False, False),
        (_status(403), False, False),
        (_status(404), False, False),
        (_status(422), False, False),
        (ValueError("not ours"), False, False),
    ],
)
def test_which_failures_are_retried(error: Exception, default: bool, no_replay: bool) -> None:
    assert RetryPolicy().retryable(error) is default
    assert RetryPolicy(replay_after_send=False).retryable(error) is no_replay


def test_only_connection_failures_count_as_not_sent() -> None:
    assert not was_sent(ConnectError("x"))
    assert not was_sent(ConnectTimeout("x"))
    assert not was_sent(PoolTimeout("x"))
    assert was_sent(ReadTimeout("x"))
    assert was_sent(RemoteProtocolError("x"))
    assert was_sent(_status(503))


def test_switches_for_kinds_of_failure() -> None:
    policy = RetryPolicy(retry_timeouts=False, retry_connection_errors=False)
    assert not policy.retryable(ReadTimeout("x"))
    assert not policy.retryable(ConnectError("x"))
    assert policy.retryable(_status(503))
    assert not RetryPolicy(retry_statuses={503}).retryable(_status(429))


def test_resolve_policy() -> None:
    assert resolve_policy(None) == RetryPolicy()
    assert resolve_policy(True) == RetryPolicy()
    assert resolve_policy(False).max_attempts == 1
    custom = RetryPolicy(max_attempts=7)
    assert resolve_policy(custom) is custom
    with pytest.raises(ConfigError, match="retry must be"):
        resolve_policy(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True, "5"])
def test_bad_deadlines_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError, match="deadline"):
        check_deadline(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="deadline"):
        LLMClient(base_url="http://127.0.0.1:1/v1", deadline=bad)  # type: ignore[arg-type]


def test_client_rejects_a_bad_retry_argument() -> None:
    with pytest.raises(ConfigError, match="retry must be"):
        LLMClient(base_url="http://127.0.0.1:1/v1", retry="often")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- end to end


class Script:
    """A reply function answering request n with `answers[n]` (then plain text)."""

    def __init__(self, *answers: Reply) -> None:
        self.answers = list(answers)
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> Reply | str:
        self.requests.append(request)
        if request.n < len(self.answers):
            return self.answers[request.n]
        return f"answer {request.n}"


def _busy(seconds: float) -> Reply:
    return Reply(status=429, content="slow down", headers={"retry-after": f"{seconds:g}"})


@pytest.mark.anyio
async def test_429_then_503_then_success_records_every_attempt() -> None:
    script = Script(_busy(0.01), Reply(status=503, content="overloaded"))
    seen: list[surge.Attempt] = []
    policy = FAST.model_copy(update={"on_retry": seen.append})
    async with (
        SimulatedServer(reply=script) as server,
        LLMClient(base_url=server.url, retry=policy) as client,
    ):
        response = await client.chat("hi")
        stats = server.stats
        url = server.url
    assert response.text == "answer 2"
    assert [a.status_code for a in response.attempts] == [429, 503, 200]
    assert [a.number for a in response.attempts] == [1, 2, 3]
    assert isinstance(response.attempts[0].error, RateLimitError)
    assert isinstance(response.attempts[1].error, ServerError)
    assert response.attempts[2].error is None
    assert response.attempts[0].wait == 0.01  # the server's Retry-After, honoured exactly
    assert 0 <= response.attempts[1].wait <= FAST.max_backoff
    assert seen == list(response.attempts[:2])
    assert response.timings.backoff == pytest.approx(sum(a.wait for a in response.attempts))
    assert response.endpoint == url
    assert stats.requests == 3
    assert len(script.requests) == 3


@pytest.mark.anyio
async def test_each_retry_on_one_endpoint_doubles_the_backoff() -> None:
    down = Reply(status=503, content="overloaded")
    script = Script(down, down, down)
    policy = RetryPolicy(max_attempts=4, backoff=0.01, max_backoff=1.0, jitter=False)
    async with (
        SimulatedServer(reply=script) as server,
        LLMClient(base_url=server.url, retry=policy) as client,
    ):
        response = await client.chat("hi")
    assert [a.status_code for a in response.attempts] == [503, 503, 503, 200]
    assert [a.wait for a in response.attempts] == [0.01, 0.02, 0.04, 0.0]


@pytest.mark.anyio
@pytest.mark.parametrize(("asked", "cap"), [(30.0, 5.0), (0.3, 0.2)])
async def test_a_retry_after_longer_than_the_cap_gives_up_with_the_original_error(
    asked: float, cap: float, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(_busy(asked))
    caplog.set_level(logging.INFO, logger="surge")
    async with (
        SimulatedServer(reply=script) as server,
        LLMClient(base_url=server.url, retry=RetryPolicy(max_retry_after=cap)) as client,
    ):
        with pytest.raises(RateLimitError, match="slow down") as info:
            await client.chat("hi")
    assert len(script.requests) == 1
    assert [a.status_code for a in info.value.call_attempts] == [429]
    assert f"the server asked to wait {asked:g} s, longer than max_retry_after={cap:g} s" in (
        caplog.text
    )


@pytest.mark.anyio
async def test_a_retry_after_equal_to_the_cap_is_waited_for() -> None:
    script = Script(_busy(0.2))
    async with (
        SimulatedServer(reply=script) as server,
        LLMClient(base_url=server.url, retry=RetryPolicy(max_retry_after=0.2)) as client,
    ):
        response = await client.chat("hi")
    assert [a.status_code for a in response.attempts] == [429, 200]
    assert response.attempts[0].wait == 0.2


@pytest.mark.anyio
async def test_a_retry_after_longer_than_the_deadline_gives_up_at_once() -> None:
    script = Script(_busy(20))
    async with (
        SimulatedServer(reply=script) as server,
        LLMClient(base_url=server.url, deadline=10) as client,
    ):
        with pytest.raises(RateLimitError):  # the server's error, not DeadlineExceeded
            await client.chat("hi")
    assert len(script.requests) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, BadRequestError), (404, NotFoundError), (422, UnprocessableEntityError)],
)
async def test_request_errors_are_never_retried(status: int, kind: type[Exception]) -> None:
    script = Script(Reply(status=status, content="bad"))
    async with (
        SimulatedServer(reply=script) as server,
        LLMClient(base_url=server.url, retry=FAST) as client,
    ):
        with pytest.raises(kind):
            await client.chat("hi")
    assert len(script.requests) == 1


@pytest.mark.anyio
async def test_retry_false_on_the_client_or_the_call_sends_once() -> None:
    async with SimulatedServer(failures=Failure.status(503)) as server:
        async with LLMClient(base_url=server.url, retry=False) as client:
            with pytest.raises(ServerError) as info:
                await client.chat("hi")
            assert len(info.value.call_attempts) == 1
        assert server.stats.requests == 1
        async with LLMClient(base_url=server.url, retry=FAST) as client:
            with pytest.raises(ServerError):
                await client.chat("hi", retry=False)
            assert server.stats.requests == 2
            with pytest.raises(ServerError) as info:
                await client.chat("hi", retry=FAST.model_copy(update={"max_attempts": 4}))
        assert server.stats.requests == 6
    assert [a.status_code for a in info.value.call_attempts] == [503] * 4


@pytest.mark.anyio
async def test_a_body_dropped_mid_way_is_replayed_for_chat() -> None:
    async with (
        SimulatedServer(failures=Failure.drop_mid_body(first=2)) as server,
        LLMClient(base_url=server.url, retry=FAST) as client,
    ):
        response = await client.chat("hi")
        assert server.stats.requests == 3
    assert [type(a.error) for a in response.attempts] == [
        RemoteProtocolError,
        RemoteProtocolError,
        type(None),
    ]


@pytest.mark.anyio
async def test_without_replay_after_send_a_dropped_request_is_not_sent_again() -> None:
    policy = FAST.model_copy(update={"replay_after_send": False})
    async with (
        SimulatedServer(failures=Failure.drop_mid_body(first=1)) as server,
        LLMClient(base_url=server.url, retry=policy) as client,
    ):
        with pytest.raises(RemoteProtocolError):
            await client.chat("hi")
        assert server.stats.requests == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.anyio
async def test_refused_connections_are_retried_even_without_replay() -> None:
    policy = FAST.model_copy(update={"replay_after_send": False, "max_attempts": 3})
    async with LLMClient(base_url=f"http://127.0.0.1:{_closed_port()}/v1", retry=policy) as client:
        with pytest.raises(ConnectError) as info:
            await client.chat("hi")
    attempts = info.value.call_attempts
    assert [type(a.error) for a in attempts] == [ConnectError] * 3
    assert [a.status_code for a in attempts] == [None] * 3


@pytest.mark.anyio
async def test_one_log_line_per_retry_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="surge")
    script = Script(
        Reply(status=503, content=f"bad key {SECRET}"), Reply(status=500, content="oops")
    )
    async with (
        SimulatedServer(reply=script) as server,
        LLMClient(base_url=server.url, api_key=SECRET, retry=FAST) as client,
    ):
        response = await client.chat("hi")
    retries = [r for r in caplog.records if r.name == "surge" and "retrying" in r.getMessage()]
    assert len(retries) == 2 == len(response.attempts) - 1
    assert "attempt 1 of 3" in retries[0].getMessage()
    assert "ServerError" in retries[0].getMessage()
    assert SECRET not in caplog.text
    assert all(SECRET not in repr(a) for a in response.attempts)
    assert script.requests[0].headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.anyio
async def test_deadline_covers_the_backoff_and_names_it() -> None:
    # Every answer is a quick 503 and the backoff is long: the deadline runs out while
    # the call waits before its second attempt.
    policy = RetryPolicy(backoff=5.0, max_backoff=5.0, jitter=False, max_attempts=10)
    async with (
        SimulatedServer(failures=Failure.status(503)) as server,
        LLMClient(base_url=server.url, retry=policy, deadline=0.3) as client,
    ):
        with pytest.raises(DeadlineExceeded) as info:
            await client.chat("hi")
        assert server.stats.requests == 1
    assert info.value.phase == "backing off before attempt 2"
    assert "deadline of 0.3 s ran out while backing off before attempt 2" in str(info.value)
    assert [a.status_code for a in info.value.call_attempts] == [503]
    assert info.value.call_attempts[0].wait == 5.0


@pytest.mark.anyio
async def test_deadline_while_waiting_for_the_server_is_a_deadline_exceeded() -> None:
    async with (
        SimulatedServer(failures=Failure.stall(first=1)) as server,
        LLMClient(base_url=server.url, retry=FAST) as client,
    ):
        with pytest.raises(DeadlineExceeded) as info:
            await client.chat("hi", deadline=0.2)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, surge.Timeout)
        assert "server's answer (attempt 1)" in str(info.value)
        assert info.value.phase.startswith("waiting for the server's answer")
        assert info.value.deadline == 0.2
        # The next call is not stalled and the abandoned request left nothing behind.
        response = await client.chat("again", deadline=5)
        assert response.text == "You said: again"
        assert client.pool_stats().in_use == 0


def _record(target: list[str]) -> Callable[[surge.Attempt], None]:
    return lambda attempt: target.append(str(attempt))


@pytest.mark.anyio
async def test_per_call_policy_overrides_the_client() -> None:
    lines: list[str] = []
    policy = FAST.model_copy(update={"max_attempts": 2, "on_retry": _record(lines)})
    async with (
        SimulatedServer(failures=Failure.status(502)) as server,
        LLMClient(base_url=server.url, retry=False) as client,
    ):
        with pytest.raises(ServerError):
            await client.chat("hi", retry=policy)
        assert server.stats.requests == 2
        assert lines == [f"attempt 1 to {server.url}: 502 ServerError"]
