"""`client.map` and `client.map_as_completed`, on asyncio and trio, against the simulated server."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel
import pytest

import surge
from surge import LLMClient
from surge._progress import ProgressTracker, TerminalProgress
from surge.testing import ChatRequest, Reply, SimulatedServer

pytestmark = pytest.mark.anyio


def echo(request: ChatRequest) -> Reply | str:
    text = request.last_user_message
    if "bad" in text:
        return Reply(content="no", status=400)
    return f"echo {text}"


async def slow_echo(request: ChatRequest) -> Reply | str:
    # Later items answer sooner, so completion order is not input order.
    text = request.last_user_message
    await anyio.sleep(0.002 * (20 - int(text.split()[-1])))
    return echo(request)


async def test_results_come_back_in_input_order() -> None:
    async with SimulatedServer(reply=slow_echo) as server, LLMClient(base_url=server.url) as client:
        results = await client.map("item {item}", range(20))
    assert [r.text for r in results] == [f"echo item {i}" for i in range(20)]


async def test_a_function_of_the_item() -> None:
    async with SimulatedServer(reply=echo) as server, LLMClient(base_url=server.url) as client:

        async def ask(n: int) -> str:
            return (await client.chat(f"n={n}")).text

        results = await client.map(ask, [3, 1, 2], concurrency=2)
    assert results == ["echo n=3", "echo n=1", "echo n=2"]


async def test_failures_sit_in_their_slots() -> None:
    items = ["a 0", "bad 1", "c 2", "bad 3", "e 4"]
    async with SimulatedServer(reply=echo) as server, LLMClient(base_url=server.url) as client:
        results = await client.map("{item}", items, return_exceptions=True)
    assert [type(r).__name__ for r in results] == [
        "ChatResponse",
        "BadRequestError",
        "ChatResponse",
        "BadRequestError",
        "ChatResponse",
    ]
    assert isinstance(results[1], surge.BadRequestError)
    assert results[1].status_code == 400
    assert [r.text for r in results if isinstance(r, surge.ChatResponse)] == [
        "echo a 0",
        "echo c 2",
        "echo e 4",
    ]


async def test_without_return_exceptions_the_first_failure_is_raised_and_the_rest_cancelled() -> (
    None
):
    started: list[int] = []

    async def fn(i: int) -> int:
        started.append(i)
        if i == 2:
            raise surge.ServerError("boom", status_code=500)
        await anyio.sleep_forever()
        return i

    async with LLMClient(base_url="http://127.0.0.1:9/v1") as client:
        with anyio.fail_after(5), pytest.raises(surge.ServerError, match="boom"):
            await client.map(fn, range(1000), concurrency=3)
    assert sorted(started) == [0, 1, 2]


def counting(n: int, pulled: list[int]) -> Iterator[int]:
    for i in range(n):
        pulled[0] += 1
        yield i


async def test_items_are_pulled_lazily_at_most_concurrency_ahead() -> None:
    pulled = [0]
    finished = 0
    ahead: list[int] = []

    async def fn(i: int) -> int:
        nonlocal finished
        ahead.append(pulled[0] - finished)
        await anyio.lowlevel.checkpoint()
        finished += 1
        return i * 2

    async with LLMClient(base_url="http://127.0.0.1:9/v1") as client:
        results = await client.map(fn, counting(5000, pulled), concurrency=7)
    assert results == [i * 2 for i in range(5000)]
    assert pulled[0] == 5000
    assert max(ahead) == 7  # never more than `concurrency` items pulled and unfinished


async def test_at_most_concurrency_calls_reach_the_server() -> None:
    async with (
        SimulatedServer(latency=0.02) as server,
        LLMClient(base_url=server.url) as client,
    ):
        results = await client.map("hi {item}", range(30), concurrency=4)
        assert len(results) == 30
        assert server.stats.peak_in_flight == 4


async def test_an_async_iterable_of_items() -> None:
    async def items() -> AsyncIterator[str]:
        for i in range(10):
            await anyio.lowlevel.checkpoint()
            yield f"x{i}"

    async with SimulatedServer(reply=echo) as server, LLMClient(base_url=server.url) as client:
        results = await client.map("{item}", items(), concurrency=3)
    assert [r.text for r in results] == [f"echo x{i}" for i in range(10)]


async def test_a_template_inserts_braces_in_items_as_text() -> None:
    seen: list[str] = []

    def record(request: ChatRequest) -> str:
        seen.append(request.last_user_message)
        return "ok"

    people = [{"name": "Ada {item}", "age": 36}, {"name": "{0}{}", "age": 41}]
    async with SimulatedServer(reply=record) as server, LLMClient(base_url=server.url) as client:
        await client.map("Say: {item}!", ["{x}", "a {item} b", "}{"], concurrency=1)
        await client.map("{name} is {age}; {{literal}}", people, concurrency=1)
        # {item} is the whole item, even when the item has a key of that name.
        await client.map("{item} / {item[item]}", [{"item": "inner"}], concurrency=1)
    assert seen == [
        "Say: {x}!",
        "Say: a {item} b!",
        "Say: }{!",
        "Ada {item} is 36; {literal}",
        "{0}{} is 41; {literal}",
        "{'item': 'inner'} / inner",
    ]


async def test_bad_arguments_raise_config_errors_naming_the_problem() -> None:
    async with LLMClient(base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(surge.ConfigError, match="no placeholder"):
            await client.map("no item here", [1])
        with pytest.raises(surge.ConfigError, match="cannot be read"):
            await client.map("{item", [1])
        with pytest.raises(surge.ConfigError, match="concurrency must be an int >= 1"):
            await client.map("{item}", [1], concurrency=0)
        with pytest.raises(surge.ConfigError, match="concurrency must be an int >= 1"):
            await client.map("{item}", [1], concurrency=True)
        with pytest.raises(surge.ConfigError, match="items must be an iterable"):
            await client.map("{item}", 5)  # type: ignore[arg-type]
        with pytest.raises(surge.ConfigError, match="not str"):  # one call per character?
            await client.map("{item}", "abc")
        with pytest.raises(surge.ConfigError, match="progress= takes"):
            await client.map("{item}", [1], progress="yes")  # type: ignore[arg-type]
        with pytest.raises(surge.ConfigError, match="async function of one item"):
            await client.map(42, [1])  # type: ignore[call-overload]
        results = await client.map("{name}", [{"age": 1}], return_exceptions=True)
    assert isinstance(results[0], surge.ConfigError)
    assert "cannot be rendered with item {'age': 1}" in str(results[0])


async def test_map_as_completed_yields_each_index_once_as_it_finishes() -> None:
    n = 8
    finished = [anyio.Event() for _ in range(n)]

    async def fn(i: int) -> str:
        if i + 1 < n:  # each item waits for the next one: they finish in reverse order
            await finished[i + 1].wait()
        finished[i].set()
        return f"r{i}"

    async with LLMClient(base_url="http://127.0.0.1:9/v1") as client:
        with anyio.fail_after(5):
            pairs = [pair async for pair in client.map_as_completed(fn, range(n), concurrency=n)]
    assert pairs == [(i, f"r{i}") for i in reversed(range(n))]


async def test_map_as_completed_with_failures_and_the_server() -> None:
    items = [f"q {i}" if i % 3 else f"bad {i}" for i in range(9)]
    async with SimulatedServer(reply=echo) as server, LLMClient(base_url=server.url) as client:
        got = {
            i: r async for i, r in client.map_as_completed("{item}", items, return_exceptions=True)
        }
    assert sorted(got) == list(range(9))
    assert [type(got[i]).__name__ for i in range(3)] == [
        "BadRequestError",
        "ChatResponse",
        "ChatResponse",
    ]
    assert got[4].text == "echo q 4"


async def test_map_as_completed_raises_the_first_failure() -> None:
    async def fn(i: int) -> int:
        if i == 5:
            raise ValueError("item 5 is bad")
        return i

    async with LLMClient(base_url="http://127.0.0.1:9/v1") as client:
        seen: list[int] = []

        async def consume() -> None:
            async for i, _ in client.map_as_completed(fn, range(100), concurrency=2):
                seen.append(i)

        with anyio.fail_after(5), pytest.raises(ValueError, match="item 5 is bad"):
            await consume()
    assert 5 not in seen
    assert max(seen) < 7


async def test_leaving_map_as_completed_early_cancels_the_rest() -> None:
    pulled = [0]
    cancelled = 0

    async def fn(i: int) -> int:
        nonlocal cancelled
        if i == 0:
            return 0
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled += 1
            raise
        return i

    async with LLMClient(base_url="http://127.0.0.1:9/v1") as client:
        with anyio.fail_after(5):
            async with client.map_as_completed(fn, counting(10**6, pulled), concurrency=5) as it:
                async for index, value in it:
                    assert (index, value) == (0, 0)
                    break
    # Items 0-4 started; item 0's worker took item 5 before the loop saw item 0's result.
    assert pulled[0] == 6
    assert cancelled == 5


async def test_a_progress_callable_gets_typed_records() -> None:
    records: list[surge.BatchProgress] = []
    items = [f"q {i}" if i % 4 else f"bad {i}" for i in range(12)]
    async with (
        SimulatedServer(reply=echo, latency=0.03) as server,
        LLMClient(base_url=server.url, retry=False) as client,
    ):
        await client.map(
            "{item}", items, concurrency=5, return_exceptions=True, progress=records.append
        )
    assert len(records) == 12
    assert [r.finished for r in records] == list(range(1, 13))
    last = records[-1]
    assert (last.total, last.done, last.failed, last.in_flight) == (12, 9, 3, 0)
    assert last.eta == 0.0
    assert last.rate == pytest.approx(12 / last.elapsed)
    assert max(r.in_flight for r in records) == 4  # 5 started, the record is after one ended
    # Only the calls that succeeded report timings: ttfb is the server's 0.03 s latency.
    assert 0.03 <= last.ttfb < 0.5
    assert last.queued < 0.03


async def test_progress_of_a_generator_has_no_total() -> None:
    records: list[surge.BatchProgress] = []

    async def fn(i: int) -> int:
        return i

    async with LLMClient(base_url="http://127.0.0.1:9/v1") as client:
        await client.map(fn, counting(3, [0]), progress=records.append)
    assert [(r.total, r.eta, r.done) for r in records] == [(None, None, n) for n in (1, 2, 3)]


async def test_progress_true_prints_plain_lines_when_stdout_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def fn(i: int) -> int:
        return i

    async with LLMClient(base_url="http://127.0.0.1:9/v1") as client:
        await client.map(fn, range(10), progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("map: 1/10 finished (0 failed), 0 in flight")
    assert lines[-1].startswith("map: 10/10 finished (0 failed), 0 in flight")
    assert "ETA 0 s" in lines[-1]


def test_the_tracker_averages_the_last_hundred_calls() -> None:
    clock = iter([0.0, 2.0])
    tracker = ProgressTracker(4, None, clock=lambda: next(clock))
    for i in range(150):
        tracker.observe(surge.Timings(queued=float(i), ttfb=1.0, throttled=1.0))
    tracker.started()
    tracker.finished(True)
    snap = tracker.snapshot()
    assert snap.queued == pytest.approx(sum(range(50, 150)) / 100 + 1.0)
    assert snap.ttfb == pytest.approx(1.0)
    assert (snap.rate, snap.eta) == (0.5, 6.0)


def test_plain_display_prints_at_most_once_a_second_and_the_last() -> None:
    out = io.StringIO()
    display = TerminalProgress(stream=out, label="job")

    def at(elapsed: float, finished: int) -> surge.BatchProgress:
        return surge.BatchProgress(10, finished, 0, 0, elapsed, 1.0, 1.0, 0.0, 0.0)

    with display:
        for elapsed, finished in [(0.0, 1), (0.5, 2), (1.1, 3), (1.2, 4), (1.3, 10)]:
            display(at(elapsed, finished))
    assert [line.split(" finished")[0] for line in out.getvalue().splitlines()] == [
        "job: 1/10",
        "job: 3/10",
        "job: 10/10",
    ]
    out = io.StringIO()
    with TerminalProgress(stream=out, label="job") as display:
        for elapsed, finished in [(0.0, 1), (0.5, 2), (0.6, 3)]:
            display(at(elapsed, finished))
    # The record held back is printed when the display closes.
    assert [line.split(" finished")[0] for line in out.getvalue().splitlines()] == [
        "job: 1/10",
        "job: 3/10",
    ]


async def test_map_as_completed_holds_a_slow_consumer_to_a_bounded_lead() -> None:
    pulled = [0]
    lead: list[int] = []

    async def fn(i: int) -> int:
        return i

    async with LLMClient(base_url="http://127.0.0.1:9/v1") as client:
        got = 0
        async for _ in client.map_as_completed(fn, counting(20_000, pulled), concurrency=8):
            lead.append(pulled[0] - got)
            got += 1
            await anyio.lowlevel.checkpoint()
    assert got == 20_000
    # In flight (8) plus the stream between the workers and the loop (8), plus the one
    # being handed over: never the whole input.
    assert max(lead) <= 17
