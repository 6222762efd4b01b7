"""A schema dict's clean-JSON check compiled into one pydantic-core validator.

`schema_validator(schema)` turns a compiled `Schema` into a function of the text that
gives what `clean(json.loads(text), schema, max_depth)` gives (see _clean.py), in one
pass in Rust: pydantic-core reads the JSON and checks it against a core schema built to
accept no more than `clean` does. The parts pydantic-core checks natively: null,
booleans, integers and numbers without bounds, strings without a pattern, enums of
plain strings, lists, maps and objects (extra keys refused, a key with a default or a
required one written), and unions (first member that fits, as `clean` tries them). Any
other part (an enum of other values or with aliases, a pattern, bounds, untyped values
and their depth, an object whose keys could be confused) runs `clean` itself on that
part, with the depth it has there, so it agrees by construction.

A refusal is never wrong, only slower: the caller then runs `json.loads` and `clean`,
and the lenient path after them. So the validator may refuse what `clean` accepts (a
lone surrogate escape, `NaN`, an alias written twice) but must never accept what it
refuses, nor give another value. A test checks that on the corpus and on random JSON.

Depth: pydantic-core's reader stops at 201 levels, `clean` at `max_depth`. A schema that
is not recursive has a depth known here, and untyped parts check theirs in `clean`. A
recursive one is only trusted with text holding fewer brackets than `max_depth`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_core import SchemaValidator, ValidationError
from pydantic_core import core_schema as cs

from surge._parsing._clean import NotClean, clean_part
from surge._parsing._depth import DEFAULT_MAX_DEPTH
from surge._parsing._keys import norm_key
from surge._parsing._schema import Schema

__all__ = ["Undecided", "schema_validator"]

_BUDGET = 5000  # core schema nodes at most (a schema reused in many places is inlined)


class Undecided(Exception):
    """The validator did not look at the text (a recursive schema, many brackets)."""


class _Unsupported(Exception):
    """The schema is not worth a validator (a top-level string, too large a schema)."""


def schema_validator(s: Schema, max_depth: int = DEFAULT_MAX_DEPTH) -> Callable[[str], Any] | None:
    """A check of clean JSON text against `s`: its value, `NotClean` or `Undecided` raised.

    Returns:
        The check, or None when `s` is better left to `json.loads` and `clean`.
    """
    if s.kind == "string":
        return None  # a top-level string target takes the text verbatim: never clean
    builder = _Builder(max_depth)
    try:
        core = builder.build(s, 0, top=True)
    except _Unsupported:
        return None
    if builder.definitions:
        core = cs.definitions_schema(core, list(builder.definitions.values()))
    validate = SchemaValidator(core).validate_json
    limit = max_depth - 1  # brackets that fit in any nesting `clean` accepts
    bounded = builder.recursive  # a recursive schema knows no depth of its own

    def check(text: str) -> Any:
        if bounded and text.count("{") + text.count("[") > limit:
            raise Undecided  # as deep as the limit, maybe: `clean` decides
        try:
            return validate(text)
        except ValidationError:
            raise NotClean from None

    return check


class _Builder:
    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.nodes = 0
        self.on_path: dict[int, str] = {}  # id(schema) being built -> its ref name
        self.referred: set[int] = set()  # ... that a part inside it refers back to
        self.definitions: dict[str, cs.CoreSchema] = {}
        self.recursive = False

    def build(self, s: Schema, depth: int, *, top: bool = False) -> cs.CoreSchema:
        """The core schema of `s`, for a value inside `depth` containers."""
        self.nodes += 1
        if self.nodes > _BUDGET:
            raise _Unsupported
        key = id(s)
        ref = self.on_path.get(key)
        if ref is not None:  # a recursive schema: refer to the definition being built
            self.recursive = True
            self.referred.add(key)
            return cs.definition_reference_schema(ref)
        ref = f"s{key}"
        self.on_path[key] = ref
        try:
            core = self._build(s, depth, top)
        finally:
            del self.on_path[key]
        if key in self.referred:
            self.referred.discard(key)
            self.definitions[ref] = {**core, "ref": ref}
            return cs.definition_reference_schema(ref)
        return core

    def _build(self, s: Schema, depth: int, top: bool) -> cs.CoreSchema:
        kind, raw = s.kind, s.raw
        if kind == "union":
            return cs.union_schema(
                [self.build(b, depth, top=top) for b in s.branches], mode="left_to_right"
            )
        if kind == "null":
            return cs.none_schema()
        if kind == "boolean":
            return cs.bool_schema(strict=True)
        if kind == "integer" and "minimum" not in raw and "maximum" not in raw:
            return cs.int_schema(strict=True)
        if kind == "number" and "minimum" not in raw and "maximum" not in raw:
            # `NaN` and ints too large for a float are left to `clean`.
            return cs.float_schema(strict=True, allow_inf_nan=False)
        if kind == "string" and not top and not isinstance(raw.get("pattern"), str):
            return cs.str_schema(strict=True)
        if kind == "enum" and _plain_words(s):
            return cs.literal_schema(list(s.values))
        if kind in ("array", "map", "object") and depth >= self.max_depth:
            return self._in_python(s, depth, top)  # too deep for `clean`: never clean
        if kind == "array" and s.items is not None and s.items.kind != "any":
            return cs.list_schema(self.build(s.items, depth + 1), strict=True)
        if kind == "map" and s.items is not None and s.items.kind != "any":
            values = self.build(s.items, depth + 1)
            return cs.dict_schema(cs.str_schema(), values, strict=True)
        if kind == "object" and s.extra is None and _distinct_keys(s):
            fields: dict[str, cs.TypedDictField] = {}
            for prop in s.props:
                aliases: list[list[str | int]] = [[k] for k in prop.keys]
                fields[prop.name] = cs.typed_dict_field(
                    self.build(prop.schema, depth + 1),
                    # A missing field with a default is filled in: a penalty, not clean.
                    required=prop.required or prop.has_default,
                    validation_alias=aliases if prop.keys != [prop.name] else None,
                )
            return cs.typed_dict_schema(fields, extra_behavior="forbid", strict=True)
        return self._in_python(s, depth, top)

    def _in_python(self, s: Schema, depth: int, top: bool) -> cs.CoreSchema:
        """`clean` itself on this part, with the depth it has here.

        (Inside a recursive schema the part is used deeper too, but there the text has
        too few brackets for any depth check of `clean` to fail.)
        """
        depth_left = self.max_depth - depth

        def run(value: Any) -> Any:
            try:
                return clean_part(value, s, depth_left, top)
            except NotClean:
                raise ValueError("not clean") from None

        return cs.no_info_plain_validator_function(run)


def _plain_words(s: Schema) -> bool:
    """An enum of distinct strings written as themselves (no aliases, no outer blanks)?"""
    values = s.values
    return (
        all(type(v) is str and v == v.strip() for v in values)
        and len(set(values)) == len(values)
        and all(names == [v] for names, v in zip(s.aliases, values, strict=True))
    )


def _distinct_keys(s: Schema) -> bool:
    """No key of one property is, loosely, a key of another (`a_b` and `AB`)."""
    seen: dict[str, int] = {}
    for index, prop in enumerate(s.props):
        for key in prop.keys:
            if seen.setdefault(norm_key(key), index) != index:
                return False
    return True
