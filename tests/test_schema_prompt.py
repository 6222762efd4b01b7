"""`render_schema`: the compact schema notation of prompt mode. Pure unit tests."""

from __future__ import annotations

import datetime
import json
from enum import Enum
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from surge._structured.schema_prompt import render_schema, schema_instructions


class Role(str, Enum):
    ADMIN = "admin"
    USER = "user"


class Address(BaseModel):
    """A postal address."""

    street: str
    city: str = Field(description="City name")
    postcode: str | None = None


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="The person's full name")
    age: int = Field(ge=0, le=150)
    role: Role
    tags: list[str] = []
    home: Address
    work: Address | None = None
    scores: dict[str, float] = {}


class Node(BaseModel):
    value: int
    children: list[Node] = []


class LineItem(BaseModel):
    sku: str = Field(description="Stock keeping unit")
    quantity: int = Field(ge=1)
    unit_price: float = Field(description="Price of one unit in EUR")


class Invoice(BaseModel):
    """An invoice extracted from an email."""

    number: str = Field(pattern=r"^INV-\d+$")
    issued: datetime.date
    customer: str
    status: Literal["draft", "sent", "paid"]
    items: list[LineItem]
    notes: str | None = None


def test_renders_a_realistic_model() -> None:
    text = render_schema(Person.model_json_schema())
    assert text == (
        "// A person mentioned in the text.\n"
        "{\n"
        "  name: string, // The person's full name\n"
        "  age: int, // >=0; <=150\n"
        '  role: "admin" | "user",\n'
        "  tags?: string[],\n"
        "  home: Address,\n"
        "  work?: Address | null,\n"
        "  scores?: map<string, float>,\n"
        "}\n"
        "\n"
        "// A postal address.\n"
        "Address {\n"
        "  street: string,\n"
        "  city: string, // City name\n"
        "  postcode?: string | null,\n"
        "}"
    )


def test_definition_used_once_is_inlined() -> None:
    text = render_schema(Invoice.model_json_schema())
    assert "LineItem" not in text
    assert "items: {\n    sku: string, // Stock keeping unit\n" in text
    assert "  }[],\n" in text
    assert 'status: "draft" | "sent" | "paid",' in text
    assert "issued: string, // format date" in text
    assert 'number: string, // pattern "^INV-\\\\d+$"' in text


def test_recursive_definition_is_named() -> None:
    text = render_schema(Node.model_json_schema())
    assert text == "Node {\n  value: int,\n  children?: Node[],\n}"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (list[int], "int[]"),
        (int | str, "int | string"),
        (list[int | None], "(int | null)[]"),
        (Literal["a", "b"], '"a" | "b"'),
        (bool, "bool"),
        (float, "float"),
        (dict[str, list[int]], "map<string, int[]>"),
        (tuple[int, str], "[int, string]"),
        (Any, "any"),
    ],
)
def test_renders_types(target: Any, expected: str) -> None:
    assert render_schema(TypeAdapter(target).json_schema()) == expected


def test_renders_a_plain_json_schema_with_odd_keys() -> None:
    schema = {
        "type": "object",
        "properties": {"first name": {"type": "string"}, "n": {"const": 3}},
        "required": ["first name"],
        "definitions": {},
    }
    assert render_schema(schema) == '{\n  "first name": string,\n  n?: 3,\n}'


def test_instructions_ask_for_json() -> None:
    text = schema_instructions(Node.model_json_schema())
    assert "JSON" in text
    assert text.endswith(render_schema(Node.model_json_schema()))


@pytest.mark.parametrize("model", [Person, Invoice, Node, Address])
def test_rendering_is_shorter_than_json_schema(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    rendered = render_schema(schema)
    compact_json = json.dumps(schema, separators=(",", ":"))
    assert len(rendered) < len(json.dumps(schema))
    assert len(rendered) < 0.6 * len(compact_json)
