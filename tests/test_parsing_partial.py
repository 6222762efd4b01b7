"""Partial mode on prefixes cut at awkward places: the value is what the prefix says so far.

`parse(text, T, partial=True)` reads `text` as the start of a longer document, so it must
never give a value that a later character contradicts: a quote before a key being written
closes the string, a literal or number being written is left out, an escape cut in half
is dropped. The streaming reader (`PartialReader`) gives the same values. Pure logic.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from surge._parsing import parse
from surge._parsing._incremental import PartialReader


class Pair(BaseModel):
    a: str
    b: str | None = None


class Flags(BaseModel):
    ok: bool | None = None
    tags: list[Any] = []
    note: str | None = None


def _reader_value(target: Any, text: str) -> Any:
    reader = PartialReader(target)
    reader.feed(text)
    return reader.value()


# -- a quote before a key that is still being written ------------------------------------

CUT_KEYS = [
    ('{"a": "x", "b', {"a": "x"}),
    ('{"a": "x", "b"', {"a": "x"}),
    ('{"a": "x", "b" ', {"a": "x"}),
    ('{"a": "x", "b":', {"a": "x"}),
    ('{"a": "x", "bc": "y', {"a": "x", "bc": "y"}),
    ('{"a": "x",\n  "b', {"a": "x"}),
    # A missing closing quote before a key being written.
    ('{"a": "New York, "ge', {"a": "New York"}),
]


@pytest.mark.parametrize(("text", "want"), CUT_KEYS)
def test_a_quote_before_a_cut_key_closes_the_string(text: str, want: dict[str, Any]) -> None:
    assert parse(text, dict, partial=True) == want
    assert parse(text, {}, partial=True) == want
    assert parse(f"[{text}", list, partial=True) == [want]
    assert parse(text, Pair, partial=True) == Pair.model_construct(a=want["a"], b=None)


def test_a_cut_key_and_the_streaming_reader_agree() -> None:
    assert _reader_value(dict, '{"a": "x", "b') == {"a": "x"}
    # Not clean JSON (single quotes): the reader falls back to parse(partial=True).
    reader = PartialReader(dict)
    reader.feed("{'a': 'x', 'b")
    assert reader.failed
    assert reader.value() == {"a": "x"}


def test_a_quote_inside_a_string_still_survives_in_partial_mode() -> None:
    # Whatever comes next, what was read so far is the start of the final string.
    assert parse('{"a": "she said "hi" to', dict, partial=True) == {"a": 'she said "hi" to'}
    assert parse('{"a": "she said "hi" to me"}', dict) == {"a": 'she said "hi" to me'}


# -- a literal or number still being written ---------------------------------------------

CUT_LITERALS = [
    ("[fa", []),
    ("[tru", []),
    ("[nul", []),
    ("[t", []),
    ("[1, fals", [1]),
    ("[Tr", []),  # Python's True
    ("[Non", []),
    ("[-", []),
    ("[12.", []),
    ("[1e", []),
    ("[true", [True]),  # a whole literal is complete
    ("[null", [None]),
    ('["a", fa', ["a"]),
    ("[fa]", ["fa"]),  # closed: a word, not a literal being written
]


@pytest.mark.parametrize(("text", "want"), CUT_LITERALS)
def test_a_literal_being_written_is_left_out_of_a_list(text: str, want: list[Any]) -> None:
    assert parse(text, list, partial=True) == want
    assert parse(text, {}, partial=True) == want
    assert parse("{" + f'"tags": {text}', Flags, partial=True).tags == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('{"a": fa', {}),
        ('{"a": tru', {}),
        ('{"a": nul', {}),
        ('{"a": 1, "b": N', {"a": 1}),
        ('{"a": -', {}),
        ('{"a": true', {"a": True}),
        # Nested inside untyped values, at any depth.
        ('{"v": [1, nu', {"v": [1]}),
        ('{"v": {"w": [fals', {"v": {"w": []}}),
        ('{"v": {"w": 12', {"v": {}}),
        ('{"v": [12', {"v": []}),
    ],
)
def test_a_literal_being_written_is_left_out_of_an_object(text: str, want: Any) -> None:
    assert parse(text, dict, partial=True) == want
    assert parse(text, {}, partial=True) == want


def test_a_literal_being_written_leaves_a_model_field_unset() -> None:
    assert parse('{"ok": fa', Flags, partial=True) == Flags.model_construct(
        ok=None, tags=[], note=None
    )
    assert parse('{"note": "x", "ok": tr', Flags, partial=True) == Flags.model_construct(
        ok=None, tags=[], note="x"
    )
    assert parse('{"note": nu', Flags, partial=True).note is None
    assert parse('{"ok": true', Flags, partial=True) == Flags(ok=True)


def test_a_literal_being_written_and_the_streaming_reader_agree() -> None:
    for text, want in [("[fa", []), ("[1, nul", [1]), ('{"a": tr', {})]:
        target = list if text[0] == "[" else dict
        assert _reader_value(target, text) == want == parse(text, target, partial=True)
    reader = PartialReader(dict)
    reader.feed("{'a': 1, 'b': fa")  # the fallback, as above
    assert reader.failed
    assert reader.value() == {"a": 1}


def test_words_and_non_partial_text_are_unchanged() -> None:
    assert parse("[fa", list) == ["fa"]
    assert parse('{"a": fa', dict) == {"a": "fa"}
    assert parse('{"a": fast', dict, partial=True) == {"a": "fast"}  # not a literal
    assert parse("{name: Nat", dict, partial=True) == {"name": "Nat"}
    assert parse("tru", str, partial=True) == "tru"  # a string target takes the text


# -- an escape cut in half ---------------------------------------------------------------

CUT_ESCAPES = [
    ('["ab\\', "ab"),
    ('["ab\\u', "ab"),
    ('["ab\\u00', "ab"),
    ('["ab\\u00e', "ab"),
    ('["ab\\u00e9', "ab\u00e9"),
    ('["ab\\ud83d', "ab"),  # a high surrogate: its low half may follow
    ('["ab\\ud83d\\', "ab"),
    ('["ab\\ud83d\\ude0', "ab"),
    ('["ab\\ud83d\\ude00', "ab\U0001f600"),
    ('["ab\\n', "ab\n"),
    ('["ab\\\\', "ab\\"),  # an escaped backslash is whole
]


@pytest.mark.parametrize(("text", "want"), CUT_ESCAPES)
def test_an_escape_cut_in_half_is_dropped(text: str, want: str) -> None:
    assert parse(text, list, partial=True) == [want]
    assert parse(text, {}, partial=True) == [want]
    as_object = '{"a": ' + text[1:]
    assert parse(as_object, dict, partial=True) == {"a": want}
    assert parse(as_object, Pair, partial=True) == Pair.model_construct(a=want, b=None)
    assert _reader_value(list, text) == [want]
    assert _reader_value(dict, as_object) == {"a": want}


def test_an_escape_that_is_not_json_is_still_kept_verbatim() -> None:
    assert parse('["a\\d+\\uzz"]', list) == ["a\\d+\\uzz"]
    assert parse('["a\\d+', list, partial=True) == ["a\\d+"]
