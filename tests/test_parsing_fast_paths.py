"""The lenient parser's shortcuts (issue 16, item 8): each one gives exactly what the
general path gives, and each is checked to be taken, so a change that loses it shows.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field
from tests._corpus import corpus_cases

from surge._parsing import _coerce, _extract, _keys, _strings, parse
from surge._parsing._nodes import Node
from surge._parsing._repair import parse_document
from surge._parsing._tagged import prebuild


class Text(BaseModel):
    text: str


class Fork(BaseModel):
    kind: Literal["fork"]
    both: list[Fork | Tip]  # one annotation for both items


class Tip(BaseModel):
    kind: Literal["tip"]


class Holder(BaseModel):
    items: list[Fork | Tip]
    note: Text | None = None


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


def _tree(node: Node) -> Any:
    """Everything the reader records about a node, children included."""
    if node.kind == "object":
        value: Any = [(key, _tree(child)) for key, child in node.value]
    elif node.kind == "array":
        value = [_tree(child) for child in node.value]
    else:
        value = node.value
    return (node.kind, value, node.text, node.complete, node.quoted, node.fixes)


# Strings the one-step read takes, and ones that look like it but are not closed by their
# first quote (or hold a character the full scan must see): those take the full scan.
STRINGS = [
    '{"a": "plain", "b": ["x", " y z "], "c": {"d": "e\t"}}',
    '{"a": "say "hi" now", "b": 1}',
    '{"a": "one" "b": 2}',
    '{"a": "cut',
    '["a", "b"',
    '{"a": "x"  # note\n}',
    '{"a": "tab\there", "b": "\u00e9"}',
    '{"a": "line\nbreak"}',
    '{"a": "", "b": """triple""", "c": ""doubled""}',
    '{"key": "v"}, "more": "w"}',
    '["k": "v", "j": "w"]',
    '{"a": "x", "b',
    '{"a": "x"```',
    "{'a': 'single', \u201cb\u201d: \u201csmart\u201d}",
]


def test_the_one_step_string_read_gives_what_the_full_scan_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = STRINGS + [c["raw"] for c in corpus_cases() if isinstance(c["raw"], str)]
    fast = [[(_tree(n), s, e) for n, s, e in parse_document(t)] for t in texts]
    monkeypatch.setattr(_strings, "_PLAIN", re.compile(r"(?!)"))  # never matches
    full = [[(_tree(n), s, e) for n, s, e in parse_document(t)] for t in texts]
    for text, one, other in zip(texts, fast, full, strict=True):
        assert one == other, text


def test_a_plain_string_is_read_in_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_scan(closers: tuple[str, ...]) -> Any:
        raise AssertionError("the full scan ran")

    monkeypatch.setattr(_strings, "_special", no_scan)
    [(node, _, _)] = parse_document('{"name": " Ada Lovelace ", "tags": ["math"]}')
    assert _tree(node) == (
        "object",
        [
            ("name", ("string", " Ada Lovelace ", " Ada Lovelace ", True, True, 0)),
            ("tags", ("array", [("string", "math", "math", True, True, 0)], "", True, True, 0)),
        ],
        "",
        True,
        True,
        0,
    )


def test_keys_are_normalized_only_when_one_is_not_written_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    normalized: list[str] = []
    real = _keys.norm_key

    def spy(key: str) -> str:
        normalized.append(key)
        return real(key)

    monkeypatch.setattr(_keys, "norm_key", spy)
    assert parse('{"text": "a", "other": 1,}', Text) == Text(text="a")  # lenient: a comma
    assert normalized == []
    assert parse('{"Te-xt": "a", "other": 1,}', Text) == Text(text="a")
    assert normalized == ["Te-xt", "other", "text"]


def test_a_type_with_no_tagged_union_is_not_walked() -> None:
    value = [{"text": "a"}, {"text": "b"}]
    assert prebuild(list[Text], value) is value  # nothing to build: not even copied
    assert prebuild(dict[str, Text | None], {"k": {"text": "a"}}) == {"k": {"text": "a"}}


def test_a_tagged_union_behind_models_lists_and_maps_is_built() -> None:
    value = {"h": {"items": [{"kind": "tip"}], "note": {"text": "n"}}}
    built = prebuild(dict[str, Holder], value)
    assert built == {"h": {"items": [Tip(kind="tip")], "note": {"text": "n"}}}
    assert prebuild(Annotated[list[Fork | Tip], "x"], [{"kind": "tip"}]) == [Tip(kind="tip")]


def test_a_tag_is_matched_once_per_text_and_looked_up_once_per_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    matched: list[str] = []
    looked: list[list[str]] = []
    real_match, real_lookup = _coerce.match_choice, _coerce.lookup

    def match(text: str, names: Any) -> tuple[int, int]:
        matched.append(text)
        return real_match(text, names)

    def look(node: Node, keys: list[str]) -> Node | None:
        looked.append(keys)
        return real_lookup(node, keys)

    monkeypatch.setattr(_coerce, "match_choice", match)
    monkeypatch.setattr(_coerce, "lookup", look)
    text = '{"items": [' + '{"kind": "tip"}, ' * 5 + '{"kind": "fork", "both": []},],}'
    assert parse(text, Holder) == Holder(items=[Tip(kind="tip")] * 5 + [Fork(kind="fork", both=[])])
    assert sorted(matched) == ["fork", "tip"]  # once per text, not once per object
    assert looked == [["kind"]] * 6  # one lookup per object, for every member at once


class Cat(BaseModel):
    type: Literal["cat"] = Field(alias="pet")


class Dog(BaseModel):
    type: Literal["dog"]


def test_members_that_write_their_tag_under_different_keys_are_each_looked_up() -> None:
    assert parse('[{"type": "dog"}, {"pet": "cat"},]', list[Cat | Dog]) == [
        Dog(type="dog"),
        Cat(pet="cat"),
    ]
    assert parse('[{"pet": "cat"},]', list[Cat | Dog]) == [Cat(pet="cat")]
