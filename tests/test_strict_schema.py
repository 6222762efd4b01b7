"""`make_strict` and `prune_nulls`: pure unit tests."""

from __future__ import annotations

import copy
import datetime
from enum import Enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from surge._structured.strict import make_strict, prune_nulls


class Color(str, Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    city: str = Field(description="City name")


class Person(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    age: int = Field(ge=0)
    nickname: str | None = None
    retries: int = 3
    color: Color = Color.RED
    tags: list[str] = []
    home: Address
    work: Address | None = None
    born: datetime.date | None = None


class Node(BaseModel):
    value: int
    children: list[Node] = []


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Pet(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]


def _objects(node: Any) -> list[dict[str, Any]]:
    """Every object schema in a schema, anywhere."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_objects(item))
    return found


def _keys(node: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(key)
            if key != "properties":
                keys |= _keys(value)
            else:
                for sub in value.values():
                    keys |= _keys(sub)
    elif isinstance(node, list):
        for item in node:
            keys |= _keys(item)
    return keys


def test_realistic_model_becomes_strict() -> None:
    schema = Person.model_json_schema()
    before = copy.deepcopy(schema)
    result = make_strict(schema)
    assert schema == before  # the input is not modified
    assert result.strict, result.reason
    assert result.reason is None
    objects = _objects(result.schema)
    assert objects
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    keys = _keys(result.schema)
    assert not keys & {"default", "minLength", "maxLength", "allOf", "oneOf", "const"}


def test_optional_fields_become_required_and_nullable() -> None:
    result = make_strict(Person.model_json_schema())
    properties = result.schema["properties"]
    assert result.nulls_added
    assert properties["retries"] == {"title": "Retries", "type": ["integer", "null"]}
    nickname = properties["nickname"]["anyOf"]
    assert {"type": "null"} in nickname  # already nullable: left as it was
    assert properties["color"]["anyOf"][1] == {"type": "null"}
    assert properties["age"]["type"] == "integer"  # required: not nullable


def test_required_nullable_fields_add_no_nulls() -> None:
    class Strictly(BaseModel):
        a: int
        b: str | None

    result = make_strict(Strictly.model_json_schema())
    assert result.strict
    assert not result.nulls_added


def test_refused_keywords_move_into_the_description() -> None:
    result = make_strict(Person.model_json_schema())
    name = result.schema["properties"]["name"]
    assert sorted(name["description"].split("; ")) == ["maxLength: 50", "minLength: 1"]
    assert result.schema["properties"]["age"]["minimum"] == 0  # supported: kept


def test_supported_format_is_kept() -> None:
    class Event(BaseModel):
        at: datetime.datetime
        site: str = Field(json_schema_extra={"format": "uri"})

    result = make_strict(Event.model_json_schema())
    assert result.schema["properties"]["at"]["format"] == "date-time"
    site = result.schema["properties"]["site"]
    assert "format" not in site
    assert "format: 'uri'" in site["description"]


def test_ref_with_siblings_is_inlined_and_made_strict() -> None:
    class Holder(BaseModel):
        home: Address = Field(description="Where they live")

    result = make_strict(Holder.model_json_schema())
    home = result.schema["properties"]["home"]
    assert "$ref" not in home
    assert home["description"] == "Where they live"
    assert home["additionalProperties"] is False
    assert home["required"] == ["street", "city"]


def test_recursive_model_keeps_its_defs() -> None:
    schema = Node.model_json_schema()
    assert "$ref" in schema  # pydantic points the root at the definition
    result = make_strict(schema)
    assert result.strict, result.reason
    assert result.schema["type"] == "object"
    assert result.schema["$defs"]["Node"]["additionalProperties"] is False
    children = result.schema["properties"]["children"]["anyOf"][0]
    assert children["items"] == {"$ref": "#/$defs/Node"}


def test_discriminated_union_becomes_anyof() -> None:
    result = make_strict(Pet.model_json_schema())
    assert result.strict, result.reason
    pet = result.schema["properties"]["pet"]
    assert len(pet["anyOf"]) == 2
    assert "discriminator" not in _keys(result.schema)
    assert result.schema["$defs"]["Cat"]["properties"]["kind"]["enum"] == ["cat"]


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        (TypeAdapter(list[int]).json_schema(), "root is not an object"),
        (TypeAdapter(dict[str, int]).json_schema(), "open dict"),
        (
            {"type": "object", "properties": {"d": {"type": "object", "additionalProperties": {}}}},
            "open dict",
        ),
        (
            {"type": "object", "properties": {"d": {"type": "object"}}},
            "open dict",
        ),
        (
            {"type": "object", "properties": {"a": {}}, "required": ["a"]},
            "any value",
        ),
        (
            {
                "type": "object",
                "properties": {"t": {"type": "array", "prefixItems": [{"type": "integer"}]}},
            },
            "tuple",
        ),
        (
            {"type": "object", "properties": {"x": {"allOf": [{"type": "integer"}, {}]}}},
            "allOf",
        ),
        (
            {"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}},
            "non-local",
        ),
        (
            {"type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}},
            "does not resolve",
        ),
        ({"type": "object", "patternProperties": {"^a": {"type": "string"}}}, "pattern"),
        (
            {"type": "object", "properties": {"x": {"type": "array"}}},
            "without an items schema",
        ),
    ],
)
def test_schemas_that_cannot_be_strict(schema: dict[str, Any], reason: str) -> None:
    result = make_strict(schema)
    assert not result.strict
    assert result.reason is not None
    assert reason in result.reason
    assert result.schema == schema


def test_open_dict_field_in_a_model_is_not_strict() -> None:
    class Bag(BaseModel):
        counts: dict[str, int]

    result = make_strict(Bag.model_json_schema())
    assert not result.strict
    assert "/properties/counts" in (result.reason or "")


def test_deep_nesting_is_not_strict() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(12):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    result = make_strict(schema)
    assert not result.strict
    assert "deeper" in (result.reason or "")


def test_prune_nulls_restores_defaults() -> None:
    schema = Person.model_json_schema()
    data = {
        "name": "Ada",
        "age": 36,
        "nickname": None,
        "retries": None,
        "color": None,
        "tags": None,
        "home": {"street": "1 Main St", "city": "London"},
        "work": None,
        "born": None,
    }
    pruned = prune_nulls(data, schema)
    assert pruned == {
        "name": "Ada",
        "age": 36,
        "nickname": None,  # nullable in the original: kept
        "home": {"street": "1 Main St", "city": "London"},
        "work": None,
        "born": None,
    }
    person = Person.model_validate(pruned)
    assert (person.retries, person.color, person.tags) == (3, Color.RED, [])
    assert data["retries"] is None  # the input is not modified


def test_prune_nulls_follows_refs_lists_and_unions() -> None:
    class Settings(BaseModel):
        size: int = 12

    class Outer(BaseModel):
        items: list[Settings]
        either: Settings | int

    data = {"items": [{"size": None}, {"size": 3}], "either": {"size": None}}
    pruned = prune_nulls(data, Outer.model_json_schema())
    assert pruned == {"items": [{}, {"size": 3}], "either": {}}
    assert Outer.model_validate(pruned).items[0].size == 12


def test_prune_nulls_keeps_required_nulls() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
    }
    assert prune_nulls({"a": None}, schema) == {"a": None}
