"""The lenient parser's shortcuts (issue 16, item 8): each one gives exactly what the
general path gives, and each is checked to be taken, so a change that loses it shows.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from surge._parsing import _extract, parse


class Text(BaseModel):
    text: str


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
