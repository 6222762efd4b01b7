"""Partial typed values: the incremental reader (pure) and stream_structured / stream_items.

Linearity is checked with the reader's own work counter (characters scanned), never a timer.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import surge
from surge import LLMClient
from surge._parsing._incremental import PartialReader
from surge.testing import ChatRequest, Reply, SimulatedServer, ToolCall


class Item(BaseModel):
    a: int
    b: str = "d"


class Doc(BaseModel):
    name: str
    items: list[Item]
    n: int | None = None
    tags: list[str] = []
    score: float = 0.0
    ok: bool | None = None


DOC = {
    "name": "Jo x",
    "items": [{"a": 12}, {"b": "xy", "a": -300}, {"a": 1, "b": "zz"}],
    "n": 3,
    "tags": ["p", "qq"],
    "score": 2.5e1,
    "ok": True,
}


def feed_all(target: Any, text: str, step: int) -> PartialReader:
    reader = PartialReader(target)
    for i in range(0, len(text), step):
        reader.feed(text[i : i + step])
    return reader


# -- the reader (pure) --------------------------------------------------------------------


def test_partial_values_match_parse_partial_at_every_structural_point() -> None:
    text = json.dumps(DOC)
    reader = PartialReader(Doc)
    compared = 0
    for i, char in enumerate(text):
        reader.feed(char)
        if char in ",:[{}]":
            assert repr(reader.value()) == repr(surge.parse(text[: i + 1], Doc, partial=True)), i
            compared += 1
    assert compared == 33
    assert reader.done
    assert reader.value() == Doc.model_validate(DOC)


def test_strings_escapes_and_numbers_survive_every_split() -> None:
    value = {"s": 'a\\"b\u00e9\n\U0001f600', "n": [-1.5e-3, 0, 12345], "t": [True, False, None]}
    text = json.dumps(value)  # ASCII with \\u escapes, a surrogate pair included
    for cut in range(len(text) + 1):
        reader = PartialReader(dict)
        reader.feed(text[:cut])
        reader.feed(text[cut:])
        assert reader.value() == value, cut
        assert not reader.failed


def test_unseen_fields_numbers_and_open_strings_in_partials() -> None:
    reader = PartialReader(Doc)
    reader.feed('{"name": "Jo')
    assert reader.value() == Doc.model_construct(
        name="Jo", items=[], n=None, tags=[], score=0.0, ok=None
    )
    reader.feed('", "n": 4')  # a number that may still grow is left out
    assert reader.value().n is None
    reader.feed("2,")
    assert reader.value().n == 42


def test_prose_and_fences_around_the_json_are_skipped() -> None:
    text = "Sure! Here it is:\n```json\n" + json.dumps(DOC) + "\n```\nAnything else?"
    reader = feed_all(Doc, text, 7)
    assert reader.value() == Doc.model_validate(DOC)
    assert not reader.failed


def big_document(items: int) -> str:
    rng = random.Random(items)
    rows = [
        {"a": rng.randrange(10**6), "b": "".join(rng.choice('abc \\"é') for _ in range(40))}
        for _ in range(items)
    ]
    return json.dumps({"name": "big", "items": rows, "tags": ["x"] * 20})


@pytest.mark.parametrize("step", [1, 10, 97])
def test_the_work_is_linear_in_the_length(step: int) -> None:
    small, large = big_document(100), big_document(200)
    assert 19_000 < len(large) < 23_000  # the 20 KB document
    scanned = [feed_all(Doc, text, step).scanned for text in (small, large)]
    # Each character is scanned once; a token cut by a piece boundary (a number, an
    # escape) is scanned again when the next piece comes: at most its own length.
    assert scanned[0] <= 1.1 * len(small) + 8 * len(small) / step
    assert scanned[1] <= 1.1 * len(large) + 8 * len(large) / step
    ratio = scanned[1] / scanned[0]
    assert abs(ratio - len(large) / len(small)) < 0.1  # twice the text, twice the work


def test_sloppy_json_falls_back_to_throttled_reparses_still_linear() -> None:
    text = big_document(100).replace('"name"', "'name'")  # not JSON any more
    reader = feed_all(Doc, text, 10)
    assert reader.failed
    assert reader.scanned <= 3 * len(text) + 64
    assert reader.value().name == "big"
    assert 0 < len(reader.value().items) < 100  # the last re-parse was a while ago
    assert reader.finish()
    assert len(reader.value().items) == 100
    assert reader.scanned <= 4 * len(text) + 64


def test_items_of_the_list_are_collected_as_they_close() -> None:
    text = json.dumps({"value": [{"a": 1}, {"a": 2}, {"a": "bad"}, {"a": 4}]})
    reader = PartialReader(_wrapped(list[Item]))
    counts = []
    for char in text:
        reader.feed(char)
        counts.append(len(reader.items))
    assert reader.items == [Item(a=1), Item(a=2)]
    assert reader.items_broken  # the third did not validate: collection stops there
    assert counts[text.index("}") - 1] == 0
    assert counts[text.index("}")] == 1


def _wrapped(tp: Any) -> Any:
    from surge._structured.plan import plan_for

    return plan_for(tp).object_target


# -- against the simulated server -----------------------------------------------------------


def structured_reply(value: Any) -> Any:
    """Answer every mode the way a model would: content, or a forced tool call."""

    def reply(request: ChatRequest) -> Reply | str:
        wrapped = {"value": value} if not isinstance(value, dict) else value
        if "tools" in request.params:
            name = request.params["tools"][0]["function"]["name"]
            return Reply(tool_calls=[ToolCall(name=name, arguments=json.dumps(wrapped))])
        if "response_format" in request.params:
            return json.dumps(wrapped)
        return "Here you go: " + json.dumps(value)

    return reply


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["json_schema", "tools", "prompt"])
async def test_stream_structured_grows_then_gives_the_validated_value(mode: str) -> None:
    async with (
        SimulatedServer(
            reply=structured_reply(DOC), stream_tokens_per_second=float("inf")
        ) as server,
        LLMClient(base_url=server.url) as client,
    ):
        expected = await client.structured(Doc, "x", mode=mode)
        values = client.stream_structured(Doc, "x", mode=mode)
        async with values:
            seen = [v async for v in values]
        assert server.stats.cancelled == 0
    assert expected == Doc.model_validate(DOC)
    assert seen[-1] == expected
    assert values.result == expected
    assert values.mode == mode
    assert len(values.responses) == 1
    assert all(a != b for a, b in itertools.pairwise(seen))  # only on change
    names = [v.name for v in seen]
    assert names[0] is None
    assert "Jo " in names
    assert names[-1] == "Jo x"
    counts = [len(v.items) for v in seen]
    assert counts == sorted(counts)
    assert counts[-1] == 3
    assert len(seen) >= 10


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["json_schema", "tools", "prompt"])
async def test_stream_items_yields_each_item_before_the_stream_ends(mode: str) -> None:
    rows = [{"a": i, "b": f"row {i}"} for i in range(5)]
    async with (
        SimulatedServer(reply=structured_reply(rows), stream_tokens_per_second=200) as server,
        LLMClient(base_url=server.url) as client,
    ):
        items = client.stream_items(Item, "x", mode=mode)
        got: list[tuple[Item, int]] = []
        async with items:
            async for item in items:
                got.append((item, len(items.responses)))
    assert [item for item, _ in got] == [Item.model_validate(r) for r in rows]
    assert [done for _, done in got[:4]] == [0, 0, 0, 0]  # before the reply was complete
    assert items.result == [Item.model_validate(r) for r in rows]


@pytest.mark.anyio
async def test_a_reply_that_does_not_validate_is_reasked() -> None:
    answers = iter(['{"name": "x", "items": [{"a": "not a number"}]}', json.dumps(DOC)])

    def reply(request: ChatRequest) -> str:
        return next(answers)

    async with (
        SimulatedServer(reply=reply) as server,
        LLMClient(base_url=server.url) as client,
    ):
        values = client.stream_structured(Doc, "x", mode="json_schema")
        async with values:
            seen = [v async for v in values]
    assert seen[-1] == Doc.model_validate(DOC)
    assert len(values.responses) == 2
    assert any(v.name == "x" for v in seen)  # partials of the first reply came too


@pytest.mark.anyio
async def test_a_rejected_mode_falls_back_before_any_value() -> None:
    def reply(request: ChatRequest) -> Reply | str:
        if "response_format" in request.params:
            return Reply(content="response_format is not supported", status=400)
        return json.dumps(DOC)

    async with (
        SimulatedServer(reply=reply) as server,
        LLMClient(base_url=server.url) as client,
    ):
        values = client.stream_structured(Doc, "x")
        async with values:
            seen = [v async for v in values]
    assert seen[-1] == Doc.model_validate(DOC)
    assert values.mode == "prompt"


@pytest.mark.anyio
async def test_leaving_early_closes_the_stream() -> None:
    with SimulatedServer(reply=structured_reply(DOC), stream_tokens_per_second=100) as server:
        async with LLMClient(base_url=server.url) as client:
            async with client.stream_structured(Doc, "x", mode="json_schema") as values:
                async for value in values:
                    if value.name:
                        break
            assert client.pool_stats().in_use == 0
            await anyio.to_thread.run_sync(
                server.wait_for_blocking, lambda s: s.cancelled == 1, 5.0
            )


def test_bad_arguments_are_config_errors() -> None:
    client = LLMClient(base_url="http://127.0.0.1:9")
    with pytest.raises(surge.ConfigError, match="mode must be one of"):
        client.stream_structured(Doc, "x", mode="xml")  # type: ignore[arg-type]
    with pytest.raises(surge.ConfigError, match="sets response_format itself"):
        client.stream_structured(Doc, "x", response_format={"type": "text"})
