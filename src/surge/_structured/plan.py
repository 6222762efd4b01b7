"""What to ask the server for, and how to read its reply, for one output type.

An `OutputPlan` is built once per output type (cached): the target's JSON Schema, whether
it must be wrapped in an object (`{"value": ...}`: tools and response_format want an
object at the root), its strict form (`surge._structured.strict`), its compact rendering for the
prompt (`surge._structured.schema_prompt`), and the name the schema and tool go by. The plan turns a
strategy into request parameters and a reply's text into a validated value.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from surge._errors import ConfigError, OutputParseError
from surge._parsing import parse
from surge._parsing._refs import resolve_ref
from surge._structured.modes import Strategy
from surge._structured.schema_prompt import schema_instructions
from surge._structured.strict import StrictSchema, make_strict, prune_nulls
from surge._types import ChatResponse

__all__ = ["OutputPlan", "plan_for"]


_WRAP_KEY = "value"


@dataclass(frozen=True)
class OutputPlan:
    """How one output type is asked for and read back, computed once per type."""

    target: Any  # what `parse` validates against: the type, or the schema dict
    schema: dict[str, Any]  # the target's JSON Schema
    wrapped: bool  # the schema's root is not an object: sent as {"value": ...}
    object_schema: dict[str, Any]  # `schema`, or the wrapper object
    object_target: Any  # what to parse a wrapped reply with
    strict: StrictSchema
    name: str
    description: str | None
    prompt_text: str  # prompt mode: the target's schema
    object_prompt_text: str  # the other modes: the object actually asked for

    def unwrap(self, value: Any) -> Any:
        """Return the caller's value from what was parsed (unwrap a non-object target)."""
        if not self.wrapped:
            return value
        return value[_WRAP_KEY] if isinstance(value, dict) else getattr(value, _WRAP_KEY)


def plan_for(output_type: Any) -> OutputPlan:
    """Return the (cached) plan for an output type or schema dict."""
    if isinstance(output_type, Mapping):
        key = json.dumps(output_type, sort_keys=True, default=str)
        return _schema_plan(key)
    try:
        return _type_plan(output_type)
    except TypeError:  # unhashable: not cached
        return _type_plan.__wrapped__(output_type)


@functools.lru_cache(maxsize=256)
def _type_plan(output_type: Any) -> OutputPlan:
    try:
        schema = pydantic.TypeAdapter(output_type).json_schema()
    except Exception as exc:  # pydantic raises several kinds for a type it cannot describe
        raise ConfigError(
            f"structured() cannot use {output_type!r} as an output type: {exc}"
        ) from None
    return _build_plan(output_type, schema)


@functools.lru_cache(maxsize=256)
def _schema_plan(schema_json: str) -> OutputPlan:
    schema = json.loads(schema_json)
    return _build_plan(schema, schema)


def _build_plan(target: Any, schema: dict[str, Any]) -> OutputPlan:
    schema = copy.deepcopy(schema)
    body = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    if isinstance(body.get("$ref"), str) and len(body) == 1:
        with contextlib.suppress(KeyError):
            body = resolve_ref(schema, body["$ref"])
    wrapped = not (body.get("type") == "object" and "anyOf" not in body and "oneOf" not in body)
    title = body.get("title") if isinstance(body.get("title"), str) else None
    description = body.get("description") if isinstance(body.get("description"), str) else None
    object_target: Any
    if wrapped:
        object_schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                _WRAP_KEY: {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
            },
            "required": [_WRAP_KEY],
            "additionalProperties": False,
        }
        for key in ("$defs", "definitions"):
            if key in schema:
                object_schema[key] = schema[key]
        object_target = object_schema if isinstance(target, Mapping) else _wrapper_model(target)
    else:
        object_schema = schema
        object_target = target
    name = re.sub(r"[^A-Za-z0-9_-]", "_", title or "output")[:64] or "output"
    return OutputPlan(
        target=target,
        schema=schema,
        wrapped=wrapped,
        object_schema=object_schema,
        object_target=object_target,
        strict=make_strict(object_schema),
        name=name,
        description=description,
        prompt_text=schema_instructions(schema),
        object_prompt_text=schema_instructions(object_schema),
    )


def _wrapper_model(target: Any) -> type[pydantic.BaseModel]:
    """A model with one required field, `value`, of the target type."""
    fields: dict[str, Any] = {_WRAP_KEY: (target, ...)}
    return pydantic.create_model("Output", **fields)


def request_params(plan: OutputPlan, strategy: Strategy, strict: bool) -> dict[str, Any]:
    if strategy == "json_schema":
        spec: dict[str, Any] = {
            "name": plan.name,
            "schema": plan.strict.schema if strict else plan.object_schema,
            "strict": strict,
        }
        if plan.description:
            spec["description"] = plan.description
        return {"response_format": {"type": "json_schema", "json_schema": spec}}
    if strategy == "json_object":
        return {"response_format": {"type": "json_object", "schema": plan.object_schema}}
    if strategy == "tools":
        function: dict[str, Any] = {
            "name": plan.name,
            "description": plan.description or f"Return the {plan.name} as structured data.",
            "parameters": plan.strict.schema if strict else plan.object_schema,
            "strict": strict,
        }
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": plan.name}},
        }
    return {}


def reply_text(response: ChatResponse, plan: OutputPlan, strategy: Strategy) -> str:
    if strategy == "tools":
        calls = response.tool_calls
        chosen = next(
            (c for c in calls if c.function.name == plan.name), calls[0] if calls else None
        )
        if chosen is not None:
            return chosen.function.arguments
    return response.text


def decode(text: str, plan: OutputPlan, strategy: Strategy) -> Any:
    """Parse and validate one reply; raise OutputParseError or ValidationError."""
    if strategy == "prompt" or not plan.wrapped:
        return _parse(text, plan.target, plan.schema)
    try:
        return plan.unwrap(_parse(text, plan.object_target, plan.object_schema))
    except (OutputParseError, pydantic.ValidationError) as wrapped_error:
        try:  # the model answered with the bare value instead of {"value": ...}
            return _parse(text, plan.target, plan.schema)
        except (OutputParseError, pydantic.ValidationError):
            raise wrapped_error from None


def _parse(text: str, target: Any, schema: dict[str, Any]) -> Any:
    try:
        return parse(text, target)
    except (OutputParseError, pydantic.ValidationError) as first:
        # Strict mode made optional properties nullable; a null there means "not given".
        try:
            data = parse(text, {})
        except (OutputParseError, pydantic.ValidationError):
            raise first from None
        pruned = prune_nulls(data, schema)
        if pruned == data:
            raise
        return parse(json.dumps(pruned), target)


def prompt_hint(plan: OutputPlan, strategy: Strategy, schema_in_prompt: bool) -> str:
    """The schema text to add to the prompt for this strategy ("" for none)."""
    if strategy == "prompt":
        return plan.prompt_text
    if strategy == "json_object" or (strategy == "json_schema" and schema_in_prompt):
        return plan.object_prompt_text
    return ""
