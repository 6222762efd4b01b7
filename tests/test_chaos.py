"""Chaos: thousands of calls against a server that fails, stalls and sends bad bodies.

Every call must complete or fail with a typed error, none may hang, none may be counted
twice, and the server must never see more than `max_concurrency` requests at once.
Runs on asyncio and trio.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

import surge
from surge import LLMClient, RateLimit, RetryPolicy
from surge._errors import DeadlineExceeded, ResponseFormatError
from surge.testing import ChatRequest, Failure, SimulatedServer

pytestmark = pytest.mark.anyio

CALLS = 2000
LIMIT = 64


async def test_two_thousand_calls_through_429s_503s_and_drops() -> None:
    failures = [
        Failure.status(429, retry_after=0.005, rate=0.08),
        Failure.status(503, rate=0.07),
        Failure.drop_mid_body(rate=0.06),
    ]  # about 20% of requests fail one way or another
    policy = RetryPolicy(max_attempts=6, backoff=0.002, max_backoff=0.02)
    results: dict[int, surge.ChatResponse | surge.SurgeError] = {}

    async with (
        SimulatedServer(failures=failures, seed=4) as server,
        LLMClient(base_url=server.url, max_concurrency=LIMIT, retry=policy) as client,
    ):

        async def call(i: int) -> None:
            outcome: surge.ChatResponse | surge.SurgeError
            try:
                outcome = await client.chat(f"call {i}")
            except surge.SurgeError as exc:
                outcome = exc
            assert i not in results, f"call {i} finished twice"
            results[i] = outcome

        with anyio.fail_after(120):  # a hang fails the test instead of blocking it
            async with anyio.create_task_group() as tg:
                for i in range(CALLS):
                    tg.start_soon(call, i)
        stats = server.stats
        pool = client.pool_stats()

    assert sorted(results) == list(range(CALLS))
    attempts: list[surge.Attempt] = []
    for i, outcome in results.items():
        if isinstance(outcome, surge.ChatResponse):
            assert outcome.text == f"You said: call {i}"  # its own answer, not another's
            attempts += outcome.attempts
        else:
            assert outcome.call_attempts, f"call {i} failed without a record: {outcome!r}"
            attempts += outcome.call_attempts
    successes = sum(isinstance(o, surge.ChatResponse) for o in results.values())
    kinds = Counter(
        "ok" if a.error is None else a.status_code or type(a.error).__name__ for a in attempts
    )

    # Every request the server saw is one attempt of one call, and the other way round.
    assert stats.requests == len(attempts)
    assert kinds["ok"] == successes
    assert kinds[429] + kinds[503] == stats.failures["status"]
    assert kinds["RemoteProtocolError"] == stats.failures["drop_mid_body"]
    assert set(kinds) <= {"ok", 429, 503, "RemoteProtocolError"}
    assert stats.served == successes + stats.failures["status"]
    # The chaos was real: roughly a fifth of all requests failed, and were retried.
    failed = len(attempts) - kinds["ok"]
    assert 0.12 < failed / len(attempts) < 0.28
    assert successes >= CALLS - 5
    # The limit held at the server, and the pool is clean.
    assert stats.peak_in_flight <= LIMIT
    assert (pool.in_use, pool.waiting) == (0, 0)


# ------------------------------------------------------------------------ stalls


@pytest.fixture(scope="module")
def stalled() -> Iterator[SimulatedServer]:
    # A thread-mode server shared by both backends: its shutdown (with requests it never
    # answered) is then paid once.
    with SimulatedServer(failures=Failure.stall()) as server:
        yield server


async def test_a_server_that_stalls_forever_meets_the_deadline(stalled: SimulatedServer) -> None:
    outcomes: list[BaseException] = []

    async with LLMClient(base_url=stalled.url, max_concurrency=5) as client:

        async def call(i: int, deadline: float) -> None:
            try:
                await client.chat(f"stall {i}", deadline=deadline)
            except surge.SurgeError as exc:
                outcomes.append(exc)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(5):  # these take the five places and reach the server
                    tg.start_soon(call, i, 0.6)
                await anyio.wait_all_tasks_blocked()
                for i in range(5, 20):  # these queue behind them and give up first
                    tg.start_soon(call, i, 0.3)
        pool = client.pool_stats()

    assert len(outcomes) == 20
    assert all(isinstance(e, DeadlineExceeded) for e in outcomes)
    phases = Counter(e.phase.split(" (")[0] for e in outcomes if isinstance(e, DeadlineExceeded))
    assert phases == {
        "waiting for the server's answer": 5,
        "waiting for the concurrency limit": 15,
    }
    assert all("deadline of" in str(e) for e in outcomes)
    assert (pool.in_use, pool.waiting) == (0, 0)
    assert pool.requests == 5


# ------------------------------------------------------------------------ bad bodies


@asynccontextmanager
async def raw_server(body: bytes) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback HTTP/1.1 server answering every request 200 with exactly `body`."""
    seen: list[int] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(rest) < length:
                rest += await stream.receive()
            seen.append(1)
            await stream.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body
            )

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield f"http://127.0.0.1:{port}/v1", seen
        tg.cancel_scope.cancel()


TEN_MB = b"<html>" + b"x" * (10 * 1024 * 1024) + b"</html>"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"id": "c1", "choices": [{"message": {"content": "cut', "not valid JSON"),
        (b'{"choices": [{"message": {"content": "\xff\xfe bad"}}]}', "not valid JSON"),
        (TEN_MB, "not valid JSON"),
        (b'{"id": "c1", "object": "chat.completion", "choices": []}', "no choices"),
        (b"[1, 2, 3]", "list, not a chat completion"),
    ],
    ids=["truncated", "invalid-utf8", "ten-mb", "no-choices", "not-an-object"],
)
async def test_bad_bodies_are_response_format_errors(body: bytes, words: str) -> None:
    async with (
        raw_server(body) as (url, seen),
        LLMClient(base_url=url, retry=RetryPolicy(backoff=0.001)) as client,
    ):
        with pytest.raises(ResponseFormatError) as info:
            await client.chat("hi")
    error = info.value
    message = str(error)
    assert words in message
    assert "answered 200" in message
    assert len(message) < 1000  # readable, even for 10 MB
    assert error.body == body  # nothing lost
    assert len(seen) == 1  # a 2xx answer is never replayed


async def test_an_html_page_with_200_from_the_simulator() -> None:
    async with (
        SimulatedServer(failures=Failure.non_json_body()) as server,
        LLMClient(base_url=server.url) as client,
    ):
        with pytest.raises(ResponseFormatError, match="not valid JSON") as info:
            await client.chat("hi")
        assert server.stats.requests == 1
    assert "<" in str(info.value)  # the message shows the page's first bytes


async def test_a_completion_with_no_choices_from_the_simulator() -> None:
    async with (
        SimulatedServer(reply=lambda request: {"choices": []}) as server,
        LLMClient(base_url=server.url) as client,
    ):
        with pytest.raises(ResponseFormatError, match="no choices"):
            await client.chat("hi")


# ------------------------------------------------------------------------ rate


async def test_600_rpm_paces_requests_100_ms_apart() -> None:
    # Counted, not timed: the limiter's own clock says when each request may start (600
    # RPM: 100 ms apart, 10 in any second), and the server notes when each arrived,
    # which a loaded machine can only make later, never earlier.
    calls = 11  # the last one waits 1 s
    arrivals: list[float] = []
    starts: list[float] = []

    def note(request: ChatRequest) -> str:
        arrivals.append(time.monotonic())
        return "ok"

    async with (
        SimulatedServer(reply=note) as server,
        LLMClient(base_url=server.url, rate_limit=RateLimit(requests_per_minute=600)) as client,
    ):
        await client.chat("warm-up")  # makes the loop's httpx client, which takes a while
        arrivals.clear()
        limiter = client._limits.rate_for(client.base_url)
        read: list[float] = []

        def clock() -> float:
            read.append(time.monotonic())
            return read[-1]

        reserve = limiter.reserve

        def recording_reserve(cost: int) -> float:
            wait = reserve(cost)
            starts.append(read[-1] + wait)  # the start time it just reserved
            return wait

        limiter._clock = clock
        limiter.reserve = recording_reserve  # type: ignore[method-assign]
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(calls):
                    tg.start_soon(client.chat, str(i))
    assert len(starts) == len(arrivals) == calls
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([0.1] * (calls - 1), abs=1e-9)
    # 10 starts in a second ([s, s + 1): the 11th is at s + 1, less the float error).
    assert sum(1 for t in starts if t - starts[0] < 1.0 - 1e-6) == 10
    # No request reached the server before its start (the k-th arrival after the k-th start).
    late = [a - s for a, s in zip(sorted(arrivals), starts, strict=True)]
    assert min(late) >= 0, late
