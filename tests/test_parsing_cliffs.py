"""The lenient parser without cliffs (issue 16): each shape that used to be quadratic or
exponential, at a size where that would take seconds or more, with its work bounded
through the counters in `surge._parsing._work` (never a timer). The regex cliffs have no
counter inside the regex engine: they run at a size where the old pattern would run for
minutes (pytest-timeout ends that), and the patterns are checked against the old ones.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from tests._corpus import corpus_cases

from surge import ConfigError, OutputParseError
from surge._parsing import parse
from surge._parsing._clean import NotClean, clean
from surge._parsing._match import _PLAIN
from surge._parsing._rank import rank
from surge._parsing._targets import _schema_entry
from surge._parsing._work import WORK

MB = 1_000_000


class Text(BaseModel):
    text: str


class Count(BaseModel):
    n: int


def work(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, int]]:
    before = WORK.snapshot()
    return fn(*args, **kwargs), WORK.since(before)


# -- 1. a truncated string ending in blanks ----------------------------------------------


def test_truncated_string_ending_in_blanks_is_read_in_linear_work() -> None:
    text = '{"text": "x' + " " * MB + "y"
    value, done = work(parse, text, Text)
    assert value == Text(text="x" + " " * MB + "y")
    assert done["scanned"] <= 2 * len(text) + 16


def test_truncated_string_ending_in_blanks_then_brackets_is_cut_before_them() -> None:
    text = '{"text": "x' + " " * MB + "}"
    value, done = work(parse, text, Text)
    assert value == Text(text="x")
    assert done["scanned"] <= 2 * len(text) + 16


# -- 2. a quoted run of digits for an int field -------------------------------------------


def test_quoted_digit_run_for_an_int_fails_in_linear_work() -> None:
    text = '{"n": "' + "1" * MB + 'x"}'
    with pytest.raises(OutputParseError, match="is not a number") as info:
        work(parse, text, Count)
    assert info.value.raw == text


def test_number_regex_is_linear_on_a_failed_digit_run() -> None:
    # The old `[-+]?(?:\d+(?:_\d+)*)?\.?\d+...` tried every split of the run: 10^12 steps.
    assert _PLAIN.fullmatch("1" * MB + "x") is None


OLD_PLAIN = re.compile(r"[-+]?(?:\d+(?:_\d+)*)?\.?\d+(?:[eE][-+]?\d+)?")


@pytest.mark.parametrize(
    "token",
    ["1", "12", "-3", "+4", ".5", "1.5", "1_000", "1_000.25", "1.", "1..2", "_1", "1_",
     "1e5", "1.5E-3", ".e5", "1e", "--1", "1_0.5", "", ".", "12.34.5", "١٢"],
)  # fmt: skip
def test_number_regex_accepts_what_the_old_one_did(token: str) -> None:
    assert bool(_PLAIN.fullmatch(token)) == bool(OLD_PLAIN.fullmatch(token))


def test_quoted_numbers_still_read() -> None:
    assert parse('{"n": "1,234"}', Count) == Count(n=1234)
    assert parse('{"n": "12"}', Count) == Count(n=12)
    assert parse('{"n": "$3"}', Count) == Count(n=3)


# -- 3. unions of recursive models told apart by a Literal --------------------------------


class Leaf(BaseModel):
    kind: Literal["leaf"]


class NodeA(BaseModel):
    child: NodeA | NodeB | Leaf | None = None
    kind: Literal["a"]


class NodeB(BaseModel):
    child: NodeA | NodeB | Leaf | None = None
    kind: Literal["b"]


def _tree(depth: int, *, tagged: bool = True) -> str:
    s = '{"kind": "leaf"}'
    for i in range(depth):
        tag = f', "kind": "{"ab"[i % 2]}"' if tagged else ""
        s = f'{{"child": {s}{tag}}}'
    return s


def _kinds(value: Any) -> str:
    out = ""
    while value is not None:
        out += type(value).__name__[-1]
        value = getattr(value, "child", None)
    return out


def test_tagged_union_is_fitted_once_per_node() -> None:
    depth = 150  # 2^150 object coercions before the fix
    text = "Here: " + _tree(depth) + ","  # not JSON: the lenient path
    value, done = work(parse, text, NodeA | NodeB)
    assert isinstance(value, NodeB)
    assert _kinds(value) == "BA" * 75 + "f"  # NodeB outermost, ..., NodeA, then the Leaf
    assert done["objects"] == depth + 1  # each object fitted to one member only
    assert done["coercions"] == 3 * depth + 3


def test_clean_json_for_a_recursive_tagged_union_skips_pydantic_smart_mode() -> None:
    # pydantic's own validate_json tries both members at every level: 2^150 here.
    depth = 150
    value, done = work(parse, _tree(depth), NodeA | NodeB)
    assert _kinds(value) == "BA" * 75 + "f"
    assert done["objects"] == depth + 1


def test_a_model_without_a_recursive_tagged_union_keeps_the_fast_path() -> None:
    value, done = work(parse, '{"text": "x"}', Text)
    assert value == Text(text="x")
    assert done["coercions"] == 0  # pydantic read it; the coercer never ran


def test_pydantic_discriminator_is_used_too() -> None:
    class Cat(BaseModel):
        pet: Literal["cat"]
        meows: int

    class Dog(BaseModel):
        pet: Literal["dog"]
        barks: int

    pets = TypeAdapter(list[Annotated[Cat | Dog, Field(discriminator="pet")]])
    text = "{'pet': 'dog', 'barks': '3'}, {'pet': 'Cat', 'meows': 2},"
    value, done = work(parse, f"[{text}]", pets._type)
    assert value == [Dog(pet="dog", barks=3), Cat(pet="cat", meows=2)]
    # One member per object; then the whole text as a string, tried as one item (the
    # last candidate), is refused at once by each member.
    assert done["objects"] == 2 + 2


def test_members_sharing_a_tag_are_left_to_pydantic() -> None:
    # Both members name "x": the tag does not choose, so the fields do (pydantic's smart
    # mode), never the first member with a tag that fits.
    class Short(BaseModel):
        kind: Literal["x"]
        a: int

    class Long(BaseModel):
        kind: Literal["x"]
        b: int

    class Other(BaseModel):
        kind: Literal["y"]
        c: int

    text = '[{"kind": "x", "b": 1}, {"kind": "x", "a": 2}, {"kind": "y", "c": 3},]'
    assert parse(text, list[Short | Long | Other]) == [
        Long(kind="x", b=1),
        Short(kind="x", a=2),
        Other(kind="y", c=3),
    ]


def test_untagged_nodes_of_a_union_are_still_fitted_a_bounded_number_of_times() -> None:
    class Box(BaseModel):
        child: Box | Leaf | None = None

    class Other(BaseModel):
        child: Box | Leaf | None = None
        other: int

    depth = 150
    value, done = work(parse, _tree(depth, tagged=False) + ",", Other | Box)
    assert isinstance(value, Box)
    assert done["objects"] <= 3 * (depth + 1)  # each node: at most once per member


def test_tagged_union_as_a_schema_dict_is_linear_in_the_coercer() -> None:
    schema = TypeAdapter(NodeA | NodeB).json_schema()
    depth = 150
    value, done = work(parse, _tree(depth) + ",", schema)
    assert value["kind"] == "b"
    assert done["objects"] == depth + 1


def test_a_value_nested_into_itself_is_refused_not_recursed() -> None:
    class Wrap(BaseModel):
        w: Wrap | None

    # The object lacks `w`, so it may be nested as `w` of a Wrap: once, not forever (this
    # recursed until Python's limit before).
    value, done = work(parse, "{'x': 1,}", Wrap)
    assert value == Wrap(w=Wrap(w=None))
    assert done["objects"] <= 4


# -- 4. an unmatched { in prose before the JSON --------------------------------------------


def test_brace_in_reasoning_before_the_json() -> None:
    text = '<think>The object must start with { ... </think>\n{"text": "x"}'
    assert parse(text, Text) == Text(text="x")


def test_many_braces_before_the_json_in_linear_work() -> None:
    text = "Thinking about {{{" + "{" * MB + ' {"text": "x"}'
    value, done = work(parse, text, Text)
    assert value == Text(text="x")
    assert done["scanned"] <= 6 * len(text)


def test_long_prose_after_a_stray_brace_in_linear_work() -> None:
    text = "<think>It must start with { " + "so " * (MB // 3) + '</think>\n{"text": "x"}'
    value, done = work(parse, text, Text)
    assert value == Text(text="x")
    assert done["scanned"] <= 6 * len(text)


def test_a_value_still_streaming_does_not_yield_its_inner_objects() -> None:
    class Item(BaseModel):
        name: str
        qty: int

    class Order(BaseModel):
        id: int
        items: list[Item]

    with pytest.raises(OutputParseError, match="'lots' is not a number"):
        parse('{"id": 1, "items": [{"name": "a", "qty": "lots"}', Order, partial=True)


# -- 5. a list written as several fenced blocks --------------------------------------------


def test_several_fenced_blocks_make_a_list() -> None:
    text = '```json\n{"text": "a"}\n```\nand\n```json\n{"text": "b"}\n```\n```\n{"text": "c"}\n```'
    assert parse(text, list[Text]) == [Text(text="a"), Text(text="b"), Text(text="c")]
    assert parse(text, Text) == Text(text="a")  # one object wanted: the first


def test_many_fenced_blocks_in_linear_work() -> None:
    count = 20_000
    text = "\n".join(['```json\n{"text": "a"}\n```'] * count)
    value, done = work(parse, text, list[Text])
    assert value == [Text(text="a")] * count
    assert done["objects"] <= 2 * count + 2
    assert done["scanned"] <= 2 * len(text)


# -- 6. deep JSON: one rule, an error naming the depth and the limit ----------------------


def _deep(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_pydantic_json_limit_is_the_default_max_depth() -> None:
    # The fast path relies on pydantic-core refusing JSON deeper than 200 itself.
    adapter: TypeAdapter[Any] = TypeAdapter(Any)
    assert adapter.validate_json(_deep(200)) is not None
    with pytest.raises(ValidationError, match="recursion limit"):
        adapter.validate_json(_deep(201))


@pytest.mark.parametrize("target", [{}, Any, {"type": "array"}, list[Any]])
@pytest.mark.parametrize("tail", ["", ","])  # valid JSON, and with a trailing comma
def test_deeper_than_the_limit_is_an_error_naming_depth_and_limit(target: Any, tail: str) -> None:
    text = _deep(500)[:-1] + tail + "]"
    with pytest.raises(OutputParseError) as info:
        parse(text, target)
    assert info.value.attempts[0].error == (
        "the value is nested 500 levels deep, deeper than max_depth=200 (a setting of surge.parse)"
    )


@pytest.mark.parametrize("target", [{}, Any, list[Any]])
def test_at_the_limit_the_value_is_whole(target: Any) -> None:
    value = parse(_deep(200), target)
    assert json.dumps(value) == _deep(200)


def test_max_depth_is_a_setting() -> None:
    assert json.dumps(parse(_deep(600), {}, max_depth=600)) == _deep(600)
    assert json.dumps(parse(_deep(600) + ",", list[Any], max_depth=600)) == _deep(600)
    with pytest.raises(OutputParseError, match="nested 150 levels deep, deeper than max_depth=100"):
        parse(_deep(150)[:-1] + ",]", {}, max_depth=100)


def test_a_lower_max_depth_also_holds_on_the_fast_path() -> None:
    class R(BaseModel):
        c: list[R] = []

    text = '{"c": [' * 30 + "{}" + "]}" * 30  # 61 levels, valid for pydantic
    assert parse(text, R, max_depth=61) is not None
    with pytest.raises(OutputParseError, match="nested 61 levels deep, deeper than max_depth=60"):
        parse(text, R, max_depth=60)


@pytest.mark.parametrize("bad", [0, -1, 1001, 2.5, "200", True])
def test_max_depth_out_of_range_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="max_depth must be an int from 1 to 1000"):
        parse("{}", {}, max_depth=bad)


def test_a_clean_fit_before_a_deep_part_wins() -> None:
    text = '{"text": "x"} and then ' + _deep(300)
    assert parse(text, Text) == Text(text="x")


def test_a_string_target_takes_deep_text_verbatim() -> None:
    assert parse(_deep(300), str) == _deep(300)


# -- 7. schema-dict targets: compiled once, clean JSON on a fast path ---------------------


def test_schema_dict_is_compiled_once_and_again_when_changed() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "integer"}}}
    first = _schema_entry(schema)
    assert _schema_entry(schema) is first
    schema["properties"]["a"] = {"type": "string"}
    assert _schema_entry(schema) is not first
    assert parse('{"a": "x"}', schema) == {"a": "x"}


def test_clean_json_for_a_schema_dict_skips_the_coercer() -> None:
    schema = TypeAdapter(list[Count]).json_schema()
    text = json.dumps([{"n": i} for i in range(1000)])
    value, done = work(parse, text, schema)
    assert value == [{"n": i} for i in range(1000)]
    assert done["coercions"] == 0


def test_fast_check_agrees_with_the_lenient_path_on_the_corpus() -> None:
    """Wherever the fast check answers, it answers what the coercer would."""
    answered = 0
    for case in corpus_cases():
        if case["partial"] or not isinstance(case["schema"], dict):
            continue
        try:
            loaded = json.loads(case["raw"])
        except ValueError:
            continue
        entry = _schema_entry(case["schema"])
        try:
            fast = clean(loaded, entry.schema, 200)
        except NotClean:
            continue
        ranked, _ = rank(case["raw"], entry.schema, partial=False)
        assert ranked, case["id"]
        assert ranked[0].score == 0, case["id"]
        assert fast == ranked[0].value, case["id"]
        answered += 1
    assert answered >= 20


# -- 8. the lenient path is linear ---------------------------------------------------------


def test_sloppy_megabyte_in_linear_work() -> None:
    class Item(BaseModel):
        sku: str
        qty: int
        note: str | None = None

    items = [{"sku": f"S-{i}", "qty": i, "note": "by noon, please"} for i in range(20_000)]
    body = json.dumps(items, indent=1).replace('"', "'").replace("\n}", ",\n}")
    text = f"Here:\n```json\n{body}\n```\nDone."
    value, done = work(parse, text, list[Item])
    assert len(value) == 20_000
    assert value[-1] == Item(sku="S-19999", qty=19999, note="by noon, please")
    assert done["scanned"] <= 2 * len(text)
    assert done["coercions"] <= 5 * len(items) + 8  # item, sku, qty, note (a union), str
