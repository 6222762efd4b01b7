"""The lenient parser's shortcuts (issue 16, item 8): each one gives exactly what the
general path gives, and each is checked to be taken, so a change that loses it shows.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from surge._parsing import _extract, parse
from surge._parsing._tagged import prebuild


class Text(BaseModel):
    text: str


class Fork(BaseModel):
    kind: Literal["fork"]
    both: list[Fork | Tip]  # one annotation for both items


class Tip(BaseModel):
    kind: Literal["tip"]


def test_a_span_that_is_the_whole_text_is_not_read_as_strict_json_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tried: list[str] = []
    real = _extract._strict

    def spy(text: str, partial: bool, max_depth: int) -> Any:
        tried.append(text)
        return real(text, partial, max_depth)

    monkeypatch.setattr(_extract, "_strict", spy)
    text = '[{"text": "a"}, {"text": "b"},]'  # a trailing comma: not strict JSON
    assert parse(text, list[Text]) == [Text(text="a"), Text(text="b")]
    assert tried == [text]
    tried.clear()
    fenced = 'Here:\n```json\n{"text": "a"}\n```'  # a block is not the whole text
    assert parse(fenced, Text) == Text(text="a")
    assert tried == [fenced, '\n{"text": "a"}\n']


def test_a_value_shared_under_one_type_is_built_once() -> None:
    value: dict[str, Any] = {"kind": "tip"}
    for _ in range(12):
        value = {"kind": "fork", "both": [value, value]}  # 2^12 paths, 13 dicts
    built = prebuild(Fork | Tip, value)
    depth = 0
    while isinstance(built, Fork):
        assert built.both[0] is built.both[1]  # the same dict, so the same model
        built, depth = built.both[0], depth + 1
    assert (depth, built) == (12, Tip(kind="tip"))
