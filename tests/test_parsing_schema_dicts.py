"""JSON Schema dict targets: compiled once (by identity, then by content), and clean JSON
checked in one pass by a pydantic-core validator that agrees with `clean` wherever it
answers. Pure logic; work is counted (compilations, calls of `clean`), never timed.
"""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, TypeAdapter
from tests._corpus import corpus_cases

from surge import OutputParseError
from surge._parsing import _schema_targets, parse
from surge._parsing._clean import NotClean, clean
from surge._parsing._schema import compile_schema
from surge._parsing._schema_targets import SchemaEntry, schema_entry
from surge._parsing._schema_validator import Undecided, schema_validator


class Item(BaseModel):
    sku: str
    qty: int
    price: float = 0.0
    note: str | None = None
    kind: Literal["retail", "wholesale"] = "retail"


class Tree(BaseModel):
    v: int
    kids: list[Tree] = []


class Nest(BaseModel):
    v: int
    kid: Nest | None = None


class Named(BaseModel):
    full_name: str = Field(validation_alias="fullName")
    tags: dict[str, int] = {}


def _exact(got: Any, want: Any) -> bool:
    """Equality that also tells True from 1 and 1.0 from 1 (and the order of keys)."""
    if type(got) is not type(want):
        return False
    if isinstance(want, dict):
        return list(got) == list(want) and all(_exact(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return len(got) == len(want) and all(map(_exact, got, want))
    if isinstance(want, float) and math.isnan(want):
        return math.isnan(got)
    return bool(got == want)


# -- the cache ---------------------------------------------------------------------------


def test_a_schema_is_compiled_once_for_the_same_dict_and_for_an_equal_one() -> None:
    schema = {"type": "object", "properties": {"zq7": {"type": "integer"}}}
    before = SchemaEntry.compiled
    first = schema_entry(schema)
    assert schema_entry(schema) is first
    assert parse('{"zq7": 1}', schema) == {"zq7": 1}
    assert SchemaEntry.compiled == before + 1
    # An equal dict, built afresh (as a schema made for every call is): not compiled again.
    again = copy.deepcopy(schema)
    assert schema_entry(again) is first
    assert parse('{"zq7": 2}', again) == {"zq7": 2}
    assert SchemaEntry.compiled == before + 1


def test_a_changed_or_merely_similar_schema_is_compiled_again() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"zq8": {"type": "integer"}}}
    before = SchemaEntry.compiled
    first = schema_entry(schema)
    schema["properties"]["zq8"] = {"type": "string"}
    assert schema_entry(schema) is not first
    assert parse('{"zq8": "x"}', schema) == {"zq8": "x"}
    assert SchemaEntry.compiled == before + 2
    # Same JSON dump, not equal: a tuple is not a list (compile_schema tells them apart).
    as_list = {"enum": ["zq9", "b"]}
    as_tuple = {"enum": ("zq9", "b")}
    assert schema_entry(as_list) is not schema_entry(as_tuple)
    assert SchemaEntry.compiled == before + 4


def test_the_caches_are_bounded() -> None:
    for i in range(_schema_targets._CACHE_LIMIT + 10):
        schema_entry({"type": "object", "properties": {f"bound{i}": {"type": "integer"}}})
    assert len(_schema_targets._BY_ID) <= _schema_targets._CACHE_LIMIT
    assert len(_schema_targets._BY_CONTENT) <= _schema_targets._CACHE_LIMIT


def test_the_compiled_schema_does_not_change_with_the_dict_it_came_from() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"zr1": {"type": "integer"}}}
    entry = schema_entry(schema)
    other = copy.deepcopy(schema)
    schema["properties"]["zr1"]["minimum"] = 5  # the first dict changes after compiling
    assert schema_entry(other) is entry  # the equal one still finds the entry
    assert parse('{"zr1": 1}', other) == {"zr1": 1}
    with pytest.raises(OutputParseError):
        parse('{"zr1": 1}', schema)


# -- the one-pass check ------------------------------------------------------------------


def test_clean_json_is_read_in_one_pass_without_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_second_pass(*args: Any) -> Any:
        raise AssertionError("clean() ran: the validator did not answer")

    schema = TypeAdapter(list[Item]).json_schema()
    rows = [
        {"sku": f"S-{i}", "qty": i, "price": 1.5, "note": None, "kind": "retail"} for i in range(50)
    ]
    text = json.dumps(rows)
    parse(text, schema)  # compiled and built before the patch
    monkeypatch.setattr(_schema_targets, "clean", no_second_pass)
    got = parse(text, schema)
    assert _exact(got, rows)
    # Named: an alias, and a map of ints.
    named = TypeAdapter(Named).json_schema()
    assert parse('{"fullName": "Ada", "tags": {"x": 1}}', named) == {
        "fullName": "Ada",  # pydantic's schema names the property by its alias
        "tags": {"x": 1},
    }


def test_what_is_not_clean_still_takes_the_lenient_path() -> None:
    schema = TypeAdapter(list[Item]).json_schema()
    # A number written as a string, a missing default, an extra key, a key written loosely.
    assert parse('[{"sku": "a", "qty": "3"}]', schema) == [
        {"sku": "a", "qty": 3, "price": 0.0, "note": None, "kind": "retail"}
    ]
    assert parse(
        '[{"sku": "a", "qty": 3, "price": 1, "note": "n", "kind": "retail", "zz": 1}]', schema
    ) == [{"sku": "a", "qty": 3, "price": 1.0, "note": "n", "kind": "retail"}]
    assert parse(
        '[{"SKU": "a", "qty": 3, "price": 1.0, "note": null, "kind": "retail"}]', schema
    ) == [{"sku": "a", "qty": 3, "price": 1.0, "note": None, "kind": "retail"}]
    assert parse("[NaN]", {"type": "array", "items": {"type": "number"}})[0] != 0  # NaN
    assert parse('{"type": "number"}', {"type": "string"}) == '{"type": "number"}'


LISTS = {"$ref": "#/$defs/A", "$defs": {"A": {"type": "array", "items": {"$ref": "#/$defs/A"}}}}


def _nest(levels: int) -> str:
    return '{"v": 1, "kid": ' * levels + "null" + "}" * levels


@pytest.mark.parametrize(
    ("schema", "ok", "deep"),
    [
        ({}, "[" * 200 + "]" * 200, "[" * 201 + "]" * 201),
        ({"type": "array"}, "[" * 200 + "]" * 200, "[" * 201 + "]" * 201),
        (TypeAdapter(Nest).json_schema(), _nest(200), _nest(201)),
        # A recursive list: pydantic-core reads 201 levels of it, one more than the rule.
        (LISTS, "[" * 200 + "]" * 200, "[" * 201 + "]" * 201),
        (TypeAdapter(Tree).json_schema(), '{"v": 1, "kids": [' * 100 + "]}" * 100, ""),
    ],
)
def test_nesting_at_the_limit_agrees_with_the_rule(
    schema: dict[str, Any], ok: str, deep: str
) -> None:
    assert parse(ok, schema) == json.loads(ok)
    if deep:
        with pytest.raises(OutputParseError, match="deeper than max_depth=200"):
            parse(deep, schema)


# -- the validator agrees with `clean` ---------------------------------------------------

SCHEMAS: list[dict[str, Any]] = [
    TypeAdapter(list[Item]).json_schema(),
    TypeAdapter(Tree).json_schema(),
    TypeAdapter(Nest).json_schema(),
    TypeAdapter(Named).json_schema(),
    TypeAdapter(dict[str, list[int | None]]).json_schema(),
    TypeAdapter(list[Any]).json_schema(),
    {},
    {"type": ["integer", "string", "null"]},
    {"type": "number", "minimum": 0, "maximum": 10},
    {"type": "integer", "minimum": 0.5},
    {"type": "array", "items": {"type": "string", "pattern": "^a"}},
    {"enum": ["red", "Dark Blue", " pad"]},
    {"enum": [1, 2.0, True, None, "x"]},
    {"enum": ["red", "blue"], "x-aliases": {"red": "scarlet"}},
    {"anyOf": [{"const": "a"}, {"const": 1}, {"type": "boolean"}]},
    {"type": "object", "properties": {"a_b": {"type": "integer"}, "AB": {"type": "integer"}}},
    {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {}},
    {"type": "object", "required": ["a"]},
    {"type": "object", "properties": {"a": {"type": "string", "default": "d"}}},
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
]

_SCALARS = [
    0, 1, -1, 7, 12.5, 1.0, -0.0, 1e300, True, False, None, "", "a", "x", "red", " red",
    "scarlet", "Dark Blue", " pad", "abc", "3", "é\u2028",
]  # fmt: skip
_KEYS = ["sku", "qty", "price", "note", "kind", "v", "kids", "fullName", "full_name", "tags",
         "a", "a_b", "AB", "ab", "x"]  # fmt: skip


def _value(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 3 or roll < 0.5:
        return rnd.choice(_SCALARS)
    if roll < 0.75:
        return [_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {rnd.choice(_KEYS): _value(rnd, depth + 1) for _ in range(rnd.randrange(5))}


def _fitting(rnd: random.Random, schema: dict[str, Any]) -> Any:
    """Mostly a value that fits `schema` (a few parts random), to reach the deep checks."""
    if rnd.random() < 0.1:
        return _value(rnd)
    if "$ref" in schema:
        return _fitting(rnd, TREE_DEFS[schema["$ref"].rsplit("/", 1)[1]])
    if "anyOf" in schema:
        return _fitting(rnd, rnd.choice(schema["anyOf"]))
    if "enum" in schema:
        return rnd.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    typ = schema.get("type")
    if isinstance(typ, list):
        return _fitting(rnd, {"type": rnd.choice(typ)})
    if typ == "object" or "properties" in schema:
        out = {}
        for name, prop in schema.get("properties", {}).items():
            if rnd.random() < 0.8:
                out[prop.get("x-alias", name) if rnd.random() < 0.8 else name] = _fitting(rnd, prop)
        for name in schema.get("required", []):
            out.setdefault(name, _value(rnd))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for _ in range(rnd.randrange(3)):
                out[rnd.choice(_KEYS)] = _fitting(rnd, extra)
        return out
    if typ == "array":
        items = schema.get("items", {})
        return [_fitting(rnd, items) for _ in range(rnd.randrange(4))]
    if typ == "integer":
        return rnd.choice([0, 3, -5, 10**20])
    if typ == "number":
        return rnd.choice([0, 2.5, -1.0, 11, 1e308])
    if typ == "string":
        return rnd.choice(["a", "abc", "", "x y"])
    if typ == "boolean":
        return rnd.random() < 0.5
    if typ == "null":
        return None
    return _value(rnd)


TREE_DEFS: dict[str, dict[str, Any]] = {}
for _schema in SCHEMAS:
    TREE_DEFS.update(_schema.get("$defs", {}))


def _texts(rnd: random.Random, value: Any) -> list[str]:
    texts = [json.dumps(value), json.dumps(value, indent=1, ensure_ascii=False)]
    if rnd.random() < 0.2:
        texts.append(json.dumps(value).replace("1e+300", "NaN"))
    return texts


def _agree(entry: SchemaEntry, text: str) -> bool:
    """Where the validator answers, `clean` answers the same; True when it answered."""
    validator = entry.validator
    assert validator is not None
    try:
        got = validator(text)
    except (NotClean, Undecided):
        return False
    want = clean(json.loads(text), entry.schema, 200)  # NotClean here: the test fails
    assert _exact(got, want), (text, got, want)
    return True


def test_the_validator_agrees_with_clean_on_random_json() -> None:
    rnd = random.Random(16)
    answered = tried = 0
    for schema in SCHEMAS:
        entry = SchemaEntry(schema)
        if entry.validator is None:
            continue
        for _ in range(300):
            value = _fitting(rnd, schema)
            for text in _texts(rnd, value):
                tried += 1
                answered += _agree(entry, text)
    assert tried > 10_000
    assert answered > tried // 4  # not a vacuous agreement


def test_no_validator_for_a_string_target() -> None:
    assert schema_validator(compile_schema({"type": "string"})) is None
    assert SchemaEntry({"type": ["string", "integer"]}).validator is not None


def test_the_validator_agrees_with_clean_on_the_corpus() -> None:
    answered = 0
    for case in corpus_cases():
        if case["partial"] or not isinstance(case["schema"], dict):
            continue
        entry = SchemaEntry(case["schema"])
        if entry.validator is None:
            continue
        try:
            json.loads(case["raw"])
        except ValueError:
            with pytest.raises((NotClean, Undecided)):
                entry.validator(case["raw"])
            continue
        answered += _agree(entry, case["raw"])
    assert answered >= 20
