"""A large parse pauses the cyclic garbage collector, and leaves it as it found it.

Pure logic (no network): see `surge._parsing._gc` for why. The collector is the
process's, so every test restores it whatever happens.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, field_validator

import surge
from surge._parsing._gc import PAUSE_FROM

SEEN: list[bool] = []  # gc.isenabled() as pydantic validated each Note, inside the parse


class Note(BaseModel):
    text: str

    @field_validator("text")
    @classmethod
    def _record(cls, value: str) -> str:
        SEEN.append(gc.isenabled())
        return value


def sloppy(size: int) -> str:
    """A note of about `size` characters, with a trailing comma: the lenient path."""
    return '{"text": "' + "x" * size + '",}'


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    was = gc.isenabled()
    SEEN.clear()
    gc.enable()
    try:
        yield
    finally:
        (gc.enable if was else gc.disable)()


def test_a_large_text_is_parsed_with_the_collector_paused() -> None:
    assert surge.parse(sloppy(PAUSE_FROM), Note).text == "x" * PAUSE_FROM
    assert SEEN == [False]
    assert gc.isenabled()


def test_clean_large_json_is_validated_with_the_collector_paused_too() -> None:
    assert surge.parse(json.dumps({"text": "y" * PAUSE_FROM}), Note).text == "y" * PAUSE_FROM
    assert SEEN == [False]
    assert gc.isenabled()


def test_a_short_text_leaves_the_collector_alone() -> None:
    assert surge.parse(sloppy(10), Note).text == "x" * 10
    assert SEEN == [True]


def test_the_collector_comes_back_when_the_parse_fails() -> None:
    with pytest.raises(surge.OutputParseError):
        surge.parse("no JSON here " * (PAUSE_FROM // 10), Note)
    assert gc.isenabled()


def test_a_collector_the_program_turned_off_stays_off() -> None:
    gc.disable()
    assert surge.parse(sloppy(PAUSE_FROM), Note).text == "x" * PAUSE_FROM
    assert SEEN == [False]
    assert not gc.isenabled()


def test_no_collection_runs_during_a_large_parse() -> None:
    # 180 KB of small objects: with the collector on, many young collections and some
    # full ones (walking the whole heap each time, which is what made the cost grow).
    items = [{"sku": f"S{i}", "qty": i, "note": None} for i in range(4000)]
    text = json.dumps(items).replace("}", ",}")
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        value = surge.parse(text, list[dict[str, object]])
    finally:
        gc.callbacks.remove(count)
    assert len(value) == 4000
    assert value[3999] == {"sku": "S3999", "qty": 3999, "note": None}
    # None while paused; at most one as the collector comes back on (it has counted the
    # parse's allocations; a young one, or older when that one tips theirs over).
    # Unpaused, this parse ran about 60.
    assert len(collections) <= 1, collections
