"""The lenient parser on pydantic targets, its errors, partial mode and robustness.

Pure logic (no network): sync tests. The shared corpus runs in test_parsing_corpus.py.
"""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, TypeAdapter, field_validator
from typing_extensions import TypedDict

from surge import ConfigError, OutputParseError, SurgeError
from surge._errors import ParseAttempt
from surge._parsing import _targets, parse


class Color(Enum):
    RED = "red"
    DARK_BLUE = "dark_blue"


class Item(BaseModel):
    name: str
    qty: int


class Order(BaseModel):
    id: int
    items: list[Item]
    color: Color
    kind: Literal["retail", "wholesale"]
    note: str | None = None


class Resume(BaseModel):
    name: str
    skills: list[str]
    email: str | None = None


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class IntBox(BaseModel):
    v: int


class StrBox(BaseModel):
    v: str


class Short(BaseModel):
    name: str


class Long(BaseModel):
    name: str
    age: int


class Person(BaseModel):
    full_name: str = Field(validation_alias="fullName")
    city: str = Field(json_schema_extra={"x-alias": "ville"})


class Tagged(BaseModel):
    color: Color = Field(json_schema_extra={"x-aliases": {"red": "scarlet", "dark_blue": "navy"}})


class Even(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("n must be even")
        return value


@dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


# -- models ------------------------------------------------------------------------------


def test_clean_json_gives_a_model_instance() -> None:
    got = parse(
        '{"id": 7, "items": [{"name": "a", "qty": 2}], "color": "red", "kind": "retail"}', Order
    )
    assert got == Order(id=7, items=[Item(name="a", qty=2)], color=Color.RED, kind="retail")


def test_sloppy_json_in_prose_and_fence() -> None:
    text = (
        "Sure! Here is the order you asked for:\n"
        "```json\n"
        "{\n"
        "  // the order number\n"
        "  id: '12',\n"
        "  items: [{name: apple, qty: \"1,000\"}, {'name': 'pear', 'qty': 3.0,},],\n"
        '  color: "Dark Blue",\n'
        "  kind: Retail,\n"
        "  note: None,\n"
        "}\n"
        "```\n"
        "Let me know if you need anything else."
    )
    got = parse(text, Order)
    assert got == Order(
        id=12,
        items=[Item(name="apple", qty=1000), Item(name="pear", qty=3)],
        color=Color.DARK_BLUE,
        kind="retail",
        note=None,
    )


def test_optional_missing_extra_ignored_and_missing_list_is_empty() -> None:
    got = parse('{"name": "Ada", "hobby": "chess"}', Resume)
    assert got == Resume(name="Ada", skills=[], email=None)


def test_object_missing_required_fields_does_not_become_none() -> None:
    text = '{"id": 1, "items": [{"name": "a", "qty": 2}]}'
    with pytest.raises(OutputParseError, match="required field 'color' is missing"):
        parse(text, Order | None)


def test_truncated_output_is_closed() -> None:
    text = (
        '{"color": "red", "kind": "retail", "id": 1, "items": [{"name": "a", "qty": 2}, {"qty": 3'
    )
    with pytest.raises(OutputParseError, match=r"\$\.items\[1\]: the required field 'name'"):
        parse(text, Order)
    got = parse(text.replace('{"qty"', '{"name": "b", "qty"'), Order)
    assert got.items == [Item(name="a", qty=2), Item(name="b", qty=3)]


def test_list_of_models_collects_every_object_in_the_text() -> None:
    text = 'First {"name": "a", "qty": 1} and then {"name": "b", "qty": 2}.'
    assert parse(text, list[Item]) == [Item(name="a", qty=1), Item(name="b", qty=2)]


def test_a_lone_object_becomes_a_one_item_list() -> None:
    assert parse('{"name": "a", "qty": 1}', list[Item]) == [Item(name="a", qty=1)]


def test_single_object_target_takes_the_first_of_several() -> None:
    text = '{"name": "a", "qty": 1}\n{"name": "b", "qty": 2}'
    assert parse(text, Item) == Item(name="a", qty=1)


def test_a_clean_candidate_beats_a_repaired_one() -> None:
    text = 'Draft: {name: \'a\', qty: 1,} Final: {"name": "b", "qty": 2}'
    assert parse(text, Item) == Item(name="b", qty=2)
    # Equally clean: the first wins.
    assert parse('{"name": "a", "qty": 1} {"name": "b", "qty": 2}', Item) == Item(name="a", qty=1)


def test_fenced_block_that_fits_wins_over_one_that_does_not() -> None:
    text = '```json\n["x", "y"]\n```\nor rather\n```json\n{"name": "n", "qty": 4}\n```'
    assert parse(text, Item) == Item(name="n", qty=4)


# -- unions ------------------------------------------------------------------------------


def test_union_is_best_fit_not_first_fit() -> None:
    # IntBox fits too ("12" -> 12), but StrBox fits without any coercion.
    assert parse('{"v": "12"}', IntBox | StrBox) == StrBox(v="12")
    assert parse('{"v": 12}', StrBox | IntBox) == IntBox(v=12)


def test_union_prefers_the_member_that_uses_more_of_the_input() -> None:
    assert parse('{"name": "x", "age": 3}', Short | Long) == Long(name="x", age=3)
    assert parse('{"name": "x"}', Long | Short) == Short(name="x")


def test_union_discriminated_by_a_literal_field() -> None:
    assert parse("{kind: dog, good: yes}", Cat | Dog) == Dog(kind="dog", good=True)
    assert parse("{kind: 'CAT', lives: '9'}", Cat | Dog) == Cat(kind="cat", lives=9)


# -- enums, literals, aliases ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("red", Color.RED),
        ('"RED"', Color.RED),
        ("Dark-Blue", Color.DARK_BLUE),
        ("The color is **dark blue**, clearly.", Color.DARK_BLUE),
        ('["red"]', Color.RED),
    ],
)
def test_enum_matching(text: str, want: Color) -> None:
    assert parse(text, Color) is want


def test_enum_ambiguous_mention_fails() -> None:
    with pytest.raises(OutputParseError, match="ambiguous"):
        parse("Either Red or Dark_Blue, hard to say.", Color)


def test_enum_aliases_from_json_schema_extra() -> None:
    assert parse('{"color": "Navy"}', Tagged) == Tagged(color=Color.DARK_BLUE)
    assert parse('{"color": "I would say scarlet"}', Tagged) == Tagged(color=Color.RED)


def test_literal_matching() -> None:
    assert parse("Wholesale", Literal["retail", "wholesale"]) == "wholesale"
    assert parse("The answer is 2", Literal[1, 2, 3]) == 2
    with pytest.raises(OutputParseError):
        parse("2 or 3", Literal[1, 2, 3])


def test_mixed_literal() -> None:
    assert parse("A", Literal["a", 1]) == "a"
    got = parse("1", Literal["a", 1])
    assert got == 1
    assert type(got) is int


def test_formatted_string_target_is_validated_not_verbatim() -> None:
    want = datetime(2024, 5, 1, 10, 0)
    assert parse('"2024-05-01T10:00:00"', datetime) == want
    assert parse('{"at": "2024-05-01T10:00:00",}', dict[str, datetime]) == {"at": want}


class Named(BaseModel):
    name: str = Field(validation_alias="nom")


def test_validation_alias_and_python_name_are_both_accepted() -> None:
    assert parse('{"nom": "a"}', Named) == Named(nom="a")
    assert parse("{name: b}", Named) == Named(nom="b")


def test_formatted_string_in_a_schema_dict_is_decoded() -> None:
    assert parse('"2024-01-02"', {"type": "string", "format": "date"}) == "2024-01-02"
    assert parse('"x"', {"type": "string"}) == '"x"'


def test_field_aliases() -> None:
    assert parse('{"fullName": "Ada", "ville": "Paris"}', Person) == Person(
        fullName="Ada", city="Paris"
    )
    # The Python name is accepted too (keys match case- and punctuation-insensitively).
    got = parse('{"full_name": "Ada", "City": "Paris"}', Person)
    assert (got.full_name, got.city) == ("Ada", "Paris")


# -- other targets -----------------------------------------------------------------------


def test_dataclass_and_typeddict() -> None:
    assert parse("The point is {x: 1, y: '2'}", Point) == Point(x=1, y=2)
    assert parse("{'title': 'Heat', 'year': '1995',}", Movie) == {"title": "Heat", "year": 1995}


@pytest.mark.parametrize(
    ("text", "target", "want"),
    [
        ("1,234", int, 1234),
        ("12.0", int, 12),
        ("It costs $3.50.", float, 3.5),
        ("1/4", float, 0.25),
        ("yes", bool, True),
        ("**False**", bool, False),
        ("null", int | None, None),
        ("[1, 2, 3]", list[str], ["1", "2", "3"]),
        ('{"a": "1", "b": 2.0}', dict[str, int], {"a": 1, "b": 2}),
    ],
)
def test_scalar_coercions(text: str, target: Any, want: Any) -> None:
    got = parse(text, target)
    assert got == want
    assert type(got) is type(want)


def test_float_to_int_only_when_exact() -> None:
    with pytest.raises(OutputParseError, match="whole number"):
        parse('{"v": 2.5}', IntBox)


def test_string_target_is_the_raw_text_verbatim() -> None:
    assert parse('"hello"', str) == '"hello"'
    assert parse('Answer: {"a": 1}', str) == 'Answer: {"a": 1}'


def test_schema_dict_target_gives_plain_json() -> None:
    schema = Item.model_json_schema()
    assert parse("{name: a, qty: '3'}", schema) == {"name": "a", "qty": 3}
    assert parse("{'a': True, 'b': None}", {}) == {"a": True, "b": None}


# -- errors ------------------------------------------------------------------------------


def test_error_lists_every_candidate_with_the_reason() -> None:
    text = 'Try {"name": "a"} or maybe {"name": "b", "qty": "lots"}'
    with pytest.raises(OutputParseError) as info:
        parse(text, Item)
    err = info.value
    assert isinstance(err, SurgeError)
    assert isinstance(err, ValueError)
    assert err.raw == text
    assert err.target is Item
    assert all(isinstance(a, ParseAttempt) for a in err.attempts)
    reasons = [a.error for a in err.attempts]
    assert any("required field 'qty' is missing" in r for r in reasons)
    assert any("$.qty" in r and "'lots' is not a number" in r for r in reasons)
    message = str(err)
    assert "could not read the model output as Item" in message
    assert "candidate 1:" in message
    assert "candidate 2:" in message


def test_no_json_at_all() -> None:
    with pytest.raises(OutputParseError) as info:
        parse("I cannot help with that.", Item)
    assert "expected Item (an object)" in str(info.value)


def test_pydantic_validation_errors_are_wrapped() -> None:
    assert parse("{n: 4}", Even) == Even(n=4)
    with pytest.raises(OutputParseError) as info:
        parse("{n: 3}", Even)
    assert "pydantic validation failed" in str(info.value)
    assert "n must be even" in str(info.value)
    assert any("n: Value error, n must be even" in a.error for a in info.value.attempts)


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        parse(b"{}", Item)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        parse("{}", {"$ref": "#/$defs/Missing"})


# -- partial (streaming) mode ------------------------------------------------------------


def test_partial_model_is_constructed_with_unseen_fields_none() -> None:
    got = parse('{"id": 3, "items": [{"name": "a", "qty": 2}, {"name": "b"', Order, partial=True)
    assert isinstance(got, Order)
    assert got.id == 3
    assert got.color is None
    assert got.kind is None
    assert [type(i) for i in got.items] == [Item, Item]
    assert (got.items[1].name, got.items[1].qty) == ("b", None)


def test_partial_drops_a_number_that_may_still_grow() -> None:
    got = parse('{"id": 3, "items": [{"name": "a", "qty": 12', Order, partial=True)
    assert got.items[0].qty is None
    assert parse("[1, 2, 3", list[int], partial=True) == [1, 2]
    assert parse("[1, 2, 3]", list[int], partial=True) == [1, 2, 3]


def test_partial_keeps_a_string_being_written() -> None:
    got = parse('{"name": "Ada", "skills": ["math", "poe', Resume, partial=True)
    assert got.name == "Ada"
    assert got.skills == ["math", "poe"]
    assert got.email is None


def test_partial_union_of_models_picks_the_member_that_knows_the_keys() -> None:
    got = parse('{"good": true, "kind": "do', Cat | Dog, partial=True)
    assert isinstance(got, Dog)
    assert (got.kind, got.good) == (None, True)  # the literal is not finished yet
    assert parse('{"good": true, "kind": "dog"}', Cat | Dog, partial=True) == Dog(
        kind="dog", good=True
    )


def test_partial_complete_value_is_validated() -> None:
    got = parse('{"v": 5}', IntBox, partial=True)
    assert got == IntBox(v=5)
    assert got.model_fields_set == {"v"}


def test_partial_nothing_yet_is_none() -> None:
    assert parse("", Order, partial=True) is None
    assert parse("Sure, here is the order:", Order, partial=True) is None
    with pytest.raises(OutputParseError):
        parse("Sure, here is the order:", Order)


def test_partial_opening_brace_gives_an_empty_model() -> None:
    got = parse("Sure: {", Order, partial=True)
    assert isinstance(got, Order)
    assert (got.id, got.items, got.color) == (None, [], None)


def test_partial_still_raises_on_what_is_already_wrong() -> None:
    with pytest.raises(OutputParseError, match="'lots' is not a number"):
        parse('{"id": 1, "items": [{"name": "a", "qty": "lots"}', Order, partial=True)


# -- fast path and robustness ------------------------------------------------------------


def test_fast_path_is_cached_per_target() -> None:
    parse('{"v": 1}', IntBox)
    assert _targets._FAST[IntBox] is not None
    parse('"x"', str)
    assert _targets._FAST[str] is None  # strings are returned verbatim, not decoded


def test_annotated_target() -> None:
    assert parse("{v: '3'}", Annotated[IntBox, "meta"]) == IntBox(v=3)


def _check_outcome(text: str, target: Any, *, partial: bool = False) -> Any:
    """Parse; return the value if it fits `target`, else check the error and return it.

    A value must validate as the target (a JSON value for a schema dict; in partial mode a
    model may still have unseen fields, or be None). An error must be an
    `OutputParseError` that carries the text and the target and names every candidate.
    """
    try:
        value = parse(text, target, partial=partial)
    except OutputParseError as exc:
        _check_error(exc, text, target)
        return exc
    if isinstance(target, dict):
        assert json.loads(json.dumps(value)) == value  # a plain JSON value
    elif partial:
        origin = getattr(target, "__origin__", target)
        assert value is None or isinstance(value, origin), value
    else:
        assert TypeAdapter(target).validate_python(value) == value
    return value


def _check_error(err: OutputParseError, text: str, target: Any) -> None:
    assert err.raw == text
    assert err.target is target
    assert err.attempts, "an error must list the candidates it tried"
    message = str(err)
    assert message.startswith("could not read the model output as ")
    assert f"({len(err.attempts)} candidate(s) tried)" in message
    for i, attempt in enumerate(err.attempts, 1):
        assert attempt.error, attempt
        assert f"candidate {i}: " in message


def _nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


PATHOLOGICAL = [
    "[" * 5000 + "]" * 5000,
    '{"a": ' * 3000,
    '{z\u201d8{F5\u201dulc]"',
    "\u201d" * 50,
    '{"a": "' + 'x "y" ' * 2000 + '"}',
]


@pytest.mark.parametrize("text", PATHOLOGICAL)
def test_pathological_inputs_end_with_a_value_or_a_typed_error(text: str) -> None:
    outcomes = {name: _check_outcome(text, target) for name, target in TARGETS.items()}
    # None of these texts holds an object with a name and a qty, nor names a color.
    assert isinstance(outcomes["Item"], OutputParseError)
    assert isinstance(outcomes["Color"], OutputParseError)


def test_pathological_inputs_that_are_json_come_back_exactly() -> None:
    assert parse("[" * 100 + "]" * 100, {}) == _nested_lists(100)
    assert parse("[" * 200 + "]" * 200, {}) == _nested_lists(200)
    # Deeper than max_depth (200) is an error naming both, never a shorter value.
    with pytest.raises(OutputParseError, match="nested 5000 levels deep, deeper than max_depth"):
        parse(PATHOLOGICAL[0], {})
    assert parse(PATHOLOGICAL[4], {}) == {"a": 'x "y" ' * 2000}  # inner quotes kept
    assert isinstance(_check_outcome(PATHOLOGICAL[3], {}), OutputParseError)  # no JSON at all


TARGETS: dict[str, Any] = {"schema": {}, "Item": Item, "list[int]": list[int], "Color": Color}

MUTATION_SEEDS = [
    '{"id": 1, "items": [{"name": "a", "qty": 2}], "color": "red", "kind": "retail"}',
    "Here: ```json\n{name: 'x', qty: 3,}\n```",
    '[{"name": "a\\n\\"b\\"", "qty": 1}, {"name": "c", "qty": 1_000}]',
]


def test_mutation_seeds_parse_exactly() -> None:
    order = Order(id=1, items=[Item(name="a", qty=2)], color=Color.RED, kind="retail")
    assert parse(MUTATION_SEEDS[0], Order) == order
    assert parse(MUTATION_SEEDS[1], Item) == Item(name="x", qty=3)
    assert parse(MUTATION_SEEDS[2], list[Item]) == [
        Item(name='a\n"b"', qty=1),
        Item(name="c", qty=1000),
    ]


def test_mutated_inputs_end_with_a_value_or_a_typed_error() -> None:
    rnd = random.Random(20240601)
    noise = list("{}[]()\"',:/*#\\ \n`\u201c\u201d\u201eaxTrueN01-.")
    parsed = {"Order": 0, "list[Item]": 0, "schema": 0}
    tried = dict.fromkeys(parsed, 0)
    for _ in range(600):
        text = rnd.choice(MUTATION_SEEDS)
        for _ in range(rnd.randrange(1, 4)):
            i = rnd.randrange(len(text) + 1)
            text = text[:i] + rnd.choice(noise) + text[i + rnd.randrange(2) :]
        for name, target in (("Order", Order), ("list[Item]", list[Item]), ("schema", {})):
            partial = rnd.random() < 0.3
            outcome = _check_outcome(text, target, partial=partial)
            tried[name] += 1
            if not isinstance(outcome, OutputParseError):
                parsed[name] += 1
            if name == "schema" and not partial:
                with contextlib.suppress(ValueError):
                    # A mutation that is still valid JSON must come back exactly.
                    assert outcome == json.loads(text), text
    # One or three small mutations leave most texts readable as some JSON value, and many
    # still as the target: a parser that gave up on everything would fail here.
    assert parsed["schema"] >= 0.9 * tried["schema"], (parsed, tried)
    assert parsed["list[Item]"] >= 0.3 * tried["list[Item]"], (parsed, tried)
    assert parsed["Order"] >= 0.1 * tried["Order"], (parsed, tried)


BRACKETS = 'ab z"\\/\n\t{}[],:\u00e9\u201c\U0001f600'
NO_BRACKETS = 'ab z"\\/\n\t,:\u00e9\u201c\U0001f600'


def _random_json(rnd: random.Random, depth: int = 0, alphabet: str = BRACKETS) -> Any:
    kind = rnd.randrange(8 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.random() < 0.5
    if kind == 2:
        return rnd.randrange(-(10**12), 10**12)
    if kind == 3:
        return rnd.uniform(-1e6, 1e6)
    if kind in (4, 5):
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(12)))
    if kind == 6:
        return [_random_json(rnd, depth + 1, alphabet) for _ in range(rnd.randrange(4))]
    return {f"k{i}": _random_json(rnd, depth + 1, alphabet) for i in range(rnd.randrange(4))}


def _exact(got: Any, want: Any) -> bool:
    """Equality that also tells True from 1 and 1.0 from 1."""
    if type(got) is not type(want):
        return False
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_exact(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return len(got) == len(want) and all(map(_exact, got, want))
    return bool(got == want)


def test_valid_json_round_trips_exactly() -> None:
    rnd = random.Random(7)
    for _ in range(300):
        value = {"v": _random_json(rnd)}
        for text in (json.dumps(value), json.dumps(value, indent=2, ensure_ascii=False)):
            got = parse(text, {})
            assert _exact(got, value), f"{text!r} came back as {got!r}"
        # The same JSON through the repairing reader, not only json.loads: with a trailing
        # comma, and in prose (strings without brackets: a quote read past for a bracket
        # still open in the string, then a later one taken by a weaker rule, such as
        # `["[", "k": ...` as an object in a list, is a known gap: 8 in 6000).
        value = {"v": _random_json(rnd, alphabet=NO_BRACKETS)}
        plain = json.dumps(value)
        for text in (plain[:-1] + ",}", f"Sure! {plain} Anything else?"):
            got = parse(text, {})
            assert _exact(got, value), f"{text!r} came back as {got!r}"


@pytest.mark.parametrize(
    "text",
    [
        'Sure! {"v": " b{:{]["} Anything else?',
        '{"v": [null, "{b[}"],}',
        # The quote left open by the bracket rule wins over a comma-before-key repair.
        '{"v": {"k1": [{"k0": "b{{"}], "k2": 8},}',
    ],
)
def test_strings_with_brackets_round_trip_on_the_repairing_path(text: str) -> None:
    value = json.loads(text[text.index("{") : text.rindex("}") + 1].replace(",}", "}"))
    assert parse(text, {}) == value


def _prefix_consistent(part: Any, final: Any) -> bool:
    """Could `part` grow into `final`? (Nothing in it that a later character contradicts.)

    A string may grow at its end, a list may gain items and its last item may grow, an
    object may gain keys, a model field still `None` may be filled; everything else is
    exactly the final value.
    """
    if isinstance(part, BaseModel):
        if type(part) is not type(final):
            return False
        fields = [(getattr(part, name), getattr(final, name)) for name in type(part).model_fields]
        return all(got is None or _prefix_consistent(got, want) for got, want in fields)
    if isinstance(part, dict):
        return isinstance(final, dict) and all(
            key in final and _prefix_consistent(value, final[key]) for key, value in part.items()
        )
    if isinstance(part, list):
        return (
            isinstance(final, list)
            and len(part) <= len(final)
            and all(map(_prefix_consistent, part, final))
        )
    if isinstance(part, str):
        return isinstance(final, str) and final.startswith(part)
    return _exact(part, final)


def test_a_prefix_of_valid_json_never_raises_in_partial_mode() -> None:
    rnd = random.Random(11)
    documents: list[tuple[str, Any]] = [(MUTATION_SEEDS[0], Order), (MUTATION_SEEDS[0], {})]
    documents += [(MUTATION_SEEDS[2], list[Item]), (MUTATION_SEEDS[2].replace("1_000", "1000"), {})]
    documents += [(json.dumps({"v": _random_json(rnd)}), {}) for _ in range(20)]
    # Literals, escapes (cut surrogate pairs too) and quotes, commas and colons in strings.
    alphabet = NO_BRACKETS + '\\"'
    documents += [
        (json.dumps({"v": _random_json(rnd, alphabet=alphabet)}, ensure_ascii=k % 2 == 0), {})
        for k in range(20)
    ]
    for text, target in documents:
        final = parse(text, target)
        for end in range(1, len(text) + 1):
            value = parse(text[:end], target, partial=True)  # raises: the test fails
            if target is Order:
                assert value is None or isinstance(value, Order)
            assert value is None or _prefix_consistent(value, final), (text[:end], value)
        assert parse(text, target, partial=True) == final


def test_the_empty_prefix_is_nothing_yet_for_a_schema_too() -> None:
    assert parse("", {}, partial=True) is None
    assert parse("Sure, here it", {}, partial=True) is None  # prose only, so far
    with pytest.raises(OutputParseError, match="no JSON value found"):
        parse("", {})


# -- comments and a premature closing brace ----------------------------------------------


def test_block_comments_are_skipped() -> None:
    assert parse('{"name": "a", /* the count */ "qty": 2}', Item) == Item(name="a", qty=2)
    text = '{\n  /* a comment\n     over lines { [ */\n  "name": "a",\n  "qty": 3\n}'
    assert parse(text, Item) == Item(name="a", qty=3)
    assert parse("[1, /* two */ 2, 3 /* end */]", list[int]) == [1, 2, 3]
    nested = '{ "key": { "key2": "value2" /* comment */ }, "key3": "value3" }'
    assert parse(nested, {}) == {"key": {"key2": "value2"}, "key3": "value3"}
    # Brackets and quotes inside a comment are comment, not structure.
    assert parse('{"name": "a" /* " ] { */, "qty": 2}', Item) == Item(name="a", qty=2)
    assert parse('{"name": "a", /* } */ "qty": 2}', {}) == {"name": "a", "qty": 2}


def test_a_block_comment_inside_a_string_is_text() -> None:
    assert parse('{"name": "a /* kept */", "qty": 1}', Item) == Item(name="a /* kept */", qty=1)
    assert parse('{"a": "/*", "b": "*/"}', {}) == {"a": "/*", "b": "*/"}


def test_a_closing_brace_inside_a_block_comment_with_a_typed_target() -> None:
    assert parse('{"name": "a", /* } */ "qty": 2}', Item) == Item(name="a", qty=2)


def test_the_bracket_scan_skips_block_comments() -> None:
    # The balanced-span scan itself reads past `/* } */`: the whole object is one span, not
    # `{"name": "a", /* }` rescued later by reading the whole text.
    from surge._parsing._rank import rank
    from surge._parsing._targets import _schema_entry

    text = 'Here: {"name": "a", /* } ] " */ "qty": 2} and more'
    ranked, _ = rank(text, _schema_entry(Item.model_json_schema()).schema, partial=False)
    assert [(r.candidate.source, r.candidate.text, r.value) for r in ranked[:1]] == [
        ("scan", text[6:-9], {"name": "a", "qty": 2})
    ]


def test_a_premature_closing_brace_is_merged_back() -> None:
    assert parse('{"key": "value"}, "key2": "value2"}', {}) == {"key": "value", "key2": "value2"}
    order = parse(
        '{"id": 1, "items": [{"name": "a", "qty": 2}}, "color": "red", "kind": "retail"}', Order
    )
    assert order == Order(id=1, items=[Item(name="a", qty=2)], color=Color.RED, kind="retail")
    two = '[{"name": "a", "qty": 1}}, {"name": "b", "qty": 2}]'
    assert parse(two, list[Item]) == [Item(name="a", qty=1), Item(name="b", qty=2)]
    assert parse('{"name": "a", "qty": 2}}', Item) == Item(name="a", qty=2)  # one too many


def test_a_premature_closing_brace_with_a_typed_target() -> None:
    assert parse('{"name": "a"}, "qty": 2}', Item) == Item(name="a", qty=2)
