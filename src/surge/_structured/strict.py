"""Make a JSON Schema acceptable to OpenAI's strict structured outputs, or say why not.

OpenAI's `strict: true` (for `response_format` json_schema and for function tools) accepts
a subset of JSON Schema: every object lists all its properties in `required` and says
`additionalProperties: false`; unions are `anyOf`; definitions live in `$defs` and are
reached by `$ref` (recursion allowed); only some validation keywords are allowed.

`make_strict` rewrites a schema into that subset when it can:

- every object gets `additionalProperties: false` and all its properties required; a
  property that was optional and not nullable becomes nullable (`anyOf [.., null]`), and
  `prune_nulls` later removes the nulls the model writes there so the target's defaults
  apply;
- `oneOf` becomes `anyOf`, a one-item `allOf` is merged, `const` becomes a one-value `enum`,
  a `$ref` with sibling keywords is inlined, `default`, `discriminator` and other
  annotations the strict mode refuses are dropped;
- validation keywords strict mode refuses (`minLength`, `maxLength`, `uniqueItems`, ...)
  are dropped from the schema and stated in the `description` instead: the value is still
  validated locally against the full target, so nothing is lost, only enforced later.

It gives up (returns `strict=False`, with the reason) where rewriting would change what
values are valid: open dicts (`additionalProperties: {schema}` or `true`, an object with no
`properties`), `patternProperties`, tuples (`prefixItems`), a multi-item `allOf`, `not`,
`if`/`then`/`else`, the empty schema (any value), a `$ref` that is not local, or a schema
past OpenAI's size limits. The caller then sends the schema non-strict, never an error.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from surge._parsing._refs import resolve_ref

__all__ = ["StrictSchema", "make_strict", "prune_nulls"]

# Keywords kept as they are under strict mode (beside the structural ones handled below).
_KEPT = frozenset(
    {
        "type",
        "description",
        "title",
        "enum",
        "pattern",
        "multipleOf",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
    }
)
# `format` values strict mode supports; others are dropped into the description.
_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
# Validation keywords strict mode refuses: dropped, and stated in the description.
_STATED = (
    "minLength",
    "maxLength",
    "format",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
    "contentEncoding",
    "contentMediaType",
)
# Keywords whose removal would change which values are valid: the schema stays non-strict.
_BLOCKING = {
    "patternProperties": "patternProperties (keys matching a pattern)",
    "propertyNames": "propertyNames",
    "unevaluatedProperties": "unevaluatedProperties",
    "dependentSchemas": "dependentSchemas",
    "dependentRequired": "dependentRequired",
    "prefixItems": "a tuple (prefixItems)",
    "additionalItems": "additionalItems",
    "unevaluatedItems": "unevaluatedItems",
    "contains": "contains",
    "not": "not",
    "if": "if/then/else",
    "then": "if/then/else",
    "else": "if/then/else",
}
# Annotations dropped silently (they do not restrict values).
_DROPPED = frozenset(
    {"default", "examples", "discriminator", "readOnly", "writeOnly", "deprecated", "$comment"}
)
_MAX_DEPTH = 10
_MAX_PROPERTIES = 5000
_MAX_ENUM_VALUES = 1000


@dataclass(frozen=True)
class StrictSchema:
    """The outcome of `make_strict`.

    Attributes:
        schema: The schema to send: the strict rewrite when `strict`, else a copy of the
            input unchanged.
        strict: Whether `schema` satisfies OpenAI's strict mode.
        reason: Why the schema cannot be strict (None when it can).
        nulls_added: Whether some optional properties were made nullable; then pass
            values through `prune_nulls` before validating them against the target.
    """

    schema: dict[str, Any]
    strict: bool
    reason: str | None = None
    nulls_added: bool = False


class _NotStrict(Exception):
    """Internal: the schema cannot be made strict; the message says why."""


def is_nullable(schema: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    """Return whether `schema` accepts null (following local `$ref`s one level deep)."""
    if not schema:
        return True
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if "const" in schema and schema["const"] is None:
        return True
    if isinstance(schema.get("enum"), list) and None in schema["enum"]:
        return True
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and any(
            isinstance(b, Mapping) and is_nullable(b, root) for b in branches
        ):
            return True
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref != "#":
        try:
            target = resolve_ref(root, ref)
        except KeyError:
            return False
        target.pop("$ref", None)  # one level only: recursion cannot loop
        return bool(target) and is_nullable(target, root)
    return False


def make_strict(schema: Mapping[str, Any]) -> StrictSchema:
    """Rewrite a JSON Schema for OpenAI's strict mode, or decide it cannot be.

    The input is not modified. The root must be an object schema (wrap other targets in
    an object property first); a root that is a bare `$ref` to an object definition, as
    pydantic writes for recursive models, is accepted.

    Args:
        schema: The JSON Schema (e.g. from `pydantic.TypeAdapter(...).json_schema()`).

    Returns:
        A `StrictSchema`: the strict rewrite, or the unchanged schema with the reason it
        cannot be strict.
    """
    original = copy.deepcopy(dict(schema))
    try:
        converter = _Converter(original)
        strict = converter.convert_root()
    except _NotStrict as exc:
        return StrictSchema(schema=original, strict=False, reason=str(exc))
    return StrictSchema(schema=strict, strict=True, nulls_added=converter.nulls_added)


class _Converter:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.nulls_added = False
        self.properties = 0
        self.enum_values = 0

    def convert_root(self) -> dict[str, Any]:
        root = self.root
        body = {k: v for k, v in root.items() if k not in ("$defs", "definitions")}
        ref = body.get("$ref")
        if isinstance(ref, str) and ref != "#":
            # A root that only points at a definition (pydantic's recursive models): inline
            # it at the root and keep the definitions for the recursion.
            body = {**self._resolve(ref), **{k: v for k, v in body.items() if k != "$ref"}}
        if body.get("type") != "object" or "anyOf" in body or "oneOf" in body:
            raise _NotStrict("the root is not an object schema (wrap the target first)")
        out = self._convert(body, depth=1, path="")
        for key in ("$defs", "definitions"):
            defs = root.get(key)
            if isinstance(defs, Mapping):
                out[key] = {
                    name: self._convert(_as_schema(sub, f"#/{key}/{name}"), 1, f"#/{key}/{name}")
                    for name, sub in defs.items()
                }
        if self.properties > _MAX_PROPERTIES:
            raise _NotStrict(f"more than {_MAX_PROPERTIES} properties in all")
        if self.enum_values > _MAX_ENUM_VALUES:
            raise _NotStrict(f"more than {_MAX_ENUM_VALUES} enum values in all")
        return out

    def _resolve(self, ref: str) -> dict[str, Any]:
        try:
            return resolve_ref(self.root, ref)
        except KeyError as exc:
            raise _NotStrict(str(exc.args[0])) from None

    def _convert(self, schema: dict[str, Any], depth: int, path: str) -> dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise _NotStrict(f"nested deeper than {_MAX_DEPTH} levels (at {path or 'root'})")
        where = path or "the root"
        if not schema:
            raise _NotStrict(f"{where} accepts any value (an empty schema)")
        for key, what in _BLOCKING.items():
            if key in schema:
                raise _NotStrict(f"{where} uses {what}")
        schema = dict(schema)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref != "#" and not ref.startswith("#/"):
                raise _NotStrict(f"{where} has a non-local $ref {ref!r}")
            siblings = {k: v for k, v in schema.items() if k != "$ref" and k not in _DROPPED}
            if not siblings:
                self._resolve(ref)  # must resolve
                return {"$ref": ref}
            # A $ref with sibling keywords: inline the target, the siblings win.
            target = self._resolve(ref)
            if "$ref" in target and target.get("$ref") == ref:
                raise _NotStrict(f"{where} has a $ref pointing at itself")
            merged = {**target, **siblings}
            return self._convert(merged, depth, path)
        if "allOf" in schema:
            parts = schema.pop("allOf")
            if not isinstance(parts, list) or len(parts) != 1:
                raise _NotStrict(f"{where} uses allOf with several schemas")
            schema = {**_as_schema(parts[0], where), **schema}
            return self._convert(schema, depth, path)
        if "oneOf" in schema:
            schema["anyOf"] = schema.pop("oneOf")

        out: dict[str, Any] = {}
        stated: list[str] = []
        for key, value in schema.items():
            if key in _DROPPED or key in ("properties", "required", "additionalProperties"):
                continue
            if key in ("items", "anyOf", "const"):
                continue
            if key in _KEPT:
                out[key] = value
            elif key in _STATED:
                if key == "format" and value in _FORMATS:
                    out[key] = value
                else:
                    stated.append(f"{key}: {_show(value)}")
            # Anything else is an annotation strict mode does not know: dropped.
        if "const" in schema:
            out["enum"] = [schema["const"]]
        if isinstance(out.get("enum"), list):
            self.enum_values += len(out["enum"])

        kind = schema.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "anyOf" in schema:
            branches = schema["anyOf"]
            if not isinstance(branches, list) or not branches:
                raise _NotStrict(f"{where} has an empty anyOf")
            out["anyOf"] = [
                self._convert(_as_schema(b, where), depth + 1, f"{path}/anyOf/{i}")
                for i, b in enumerate(branches)
            ]
        elif "object" in kinds or "properties" in schema:
            self._convert_object(schema, out, depth, path)
        if "array" in kinds:
            items = schema.get("items")
            if not isinstance(items, Mapping):
                raise _NotStrict(f"{where} is an array without an items schema")
            out["items"] = self._convert(dict(items), depth + 1, f"{path}/items")
        if "type" not in out and "anyOf" not in out and "enum" not in out and "$ref" not in out:
            raise _NotStrict(f"{where} has no type")
        if stated:
            note = "; ".join(stated)
            out["description"] = (
                f"{out['description']} ({note})" if out.get("description") else note
            )
        return out

    def _convert_object(
        self, schema: dict[str, Any], out: dict[str, Any], depth: int, path: str
    ) -> None:
        where = path or "the root"
        properties = schema.get("properties")
        extra = schema.get("additionalProperties", False)
        if not isinstance(properties, Mapping):
            raise _NotStrict(f"{where} is an object without listed properties (an open dict)")
        if extra is not False:
            raise _NotStrict(f"{where} allows additional properties (an open dict)")
        required = schema.get("required") or []
        converted: dict[str, Any] = {}
        for name, sub in properties.items():
            prop_path = f"{path}/properties/{name}"
            prop = self._convert(_as_schema(sub, prop_path), depth + 1, prop_path)
            if name not in required and not is_nullable(sub, self.root):
                prop = _nullable(prop)
                self.nulls_added = True
            converted[name] = prop
        self.properties += len(converted)
        out["type"] = "object"
        out["properties"] = converted
        out["required"] = list(converted)
        out["additionalProperties"] = False


def _as_schema(value: Any, where: str) -> dict[str, Any]:
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        raise _NotStrict(f"{where} is not a schema object")
    return dict(value)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    plain = set(schema) <= {"type", "description", "title"}
    if isinstance(kind, str) and plain:
        return {**schema, "type": [kind, "null"]}
    outer: dict[str, Any] = {k: schema[k] for k in ("description", "title") if k in schema}
    inner = {k: v for k, v in schema.items() if k not in outer}
    return {"anyOf": [inner, {"type": "null"}], **outer}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def prune_nulls(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None
) -> Any:
    """Drop nulls the model wrote for optional, non-nullable properties of the schema.

    Strict mode makes every property required, so an optional property that does not
    accept null is sent as nullable; a null the model writes there means "not given".
    This removes those keys, so validation applies the target's default instead of
    rejecting the null. Nulls the original schema allows are kept.

    Args:
        value: Plain JSON data (dicts, lists, scalars) as decoded from the model's reply.
        schema: The original (non-strict) schema the data should match.
        root: The root schema, for `$ref`s (default: `schema`).

    Returns:
        A copy of `value` with those nulls removed.
    """
    return _prune(value, dict(schema), dict(root if root is not None else schema), 0)


def _prune(value: Any, schema: dict[str, Any], root: dict[str, Any], depth: int) -> Any:
    if depth > 64:
        return value
    ref = schema.get("$ref")
    if isinstance(ref, str):
        try:
            target = resolve_ref(root, ref)
        except KeyError:
            return value
        schema = {**{k: v for k, v in target.items() if k != "$defs"}, **schema}
        schema.pop("$ref")
    parts = schema.get("allOf")
    if isinstance(parts, list) and len(parts) == 1 and isinstance(parts[0], Mapping):
        schema = {**dict(parts[0]), **{k: v for k, v in schema.items() if k != "allOf"}}
        return _prune(value, schema, root, depth + 1)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list) and isinstance(value, (dict, list)):
        best = _best_branch(value, branches, root)
        return value if best is None else _prune(value, best, root, depth + 1)
    if isinstance(value, dict):
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return value
        required = schema.get("required") or []
        out = {}
        for key, item in value.items():
            sub = properties.get(key)
            if not isinstance(sub, Mapping):
                out[key] = item
            elif item is None and key not in required and not is_nullable(sub, root):
                continue
            else:
                out[key] = _prune(item, dict(sub), root, depth + 1)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            return [_prune(item, dict(items), root, depth + 1) for item in value]
    return value


def _best_branch(
    value: dict[str, Any] | list[Any], branches: list[Any], root: dict[str, Any]
) -> dict[str, Any] | None:
    best: dict[str, Any] | None = None
    best_score = -1
    for branch in branches:
        if not isinstance(branch, Mapping):
            continue
        resolved = dict(branch)
        ref = resolved.get("$ref")
        if isinstance(ref, str):
            try:
                resolved = {
                    **resolve_ref(root, ref),
                    **{k: v for k, v in resolved.items() if k != "$ref"},
                }
            except KeyError:
                continue
        if isinstance(value, list):
            if resolved.get("type") == "array":
                return dict(branch)
            continue
        properties = resolved.get("properties")
        if not isinstance(properties, Mapping):
            continue
        score = sum(1 for key in value if key in properties) - sum(
            1 for key in value if key not in properties
        )
        if score > best_score:
            best, best_score = dict(branch), score
    return best
