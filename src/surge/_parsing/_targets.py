"""The public `parse`: targets, the fast path, pydantic validation, partial models.

A target is a JSON Schema dict (the result is plain JSON) or anything pydantic's
`TypeAdapter` accepts (the result is validated by pydantic). For types, clean output goes
straight through `TypeAdapter.validate_json` (cached per target); only when that fails
does the lenient path run: the type's JSON Schema guides the coercion, and pydantic
validates the result (its errors are wrapped in `OutputParseError`).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

from surge._errors import ConfigError, ParseAttempt
from surge._parsing._clean import NotClean
from surge._parsing._depth import (
    DEFAULT_MAX_DEPTH,
    TooDeep,
    check_max_depth,
    deeper_than,
    nesting_depth,
    recursion_room,
)
from surge._parsing._gc import PAUSE_FROM, collector_paused
from surge._parsing._rank import fail, rank
from surge._parsing._schema import Schema, compile_schema
from surge._parsing._schema_targets import clean_value
from surge._parsing._schema_targets import schema_entry as _schema_entry
from surge._parsing._tagged import prebuild

__all__ = ["parse"]

_CACHE_LIMIT = 512


class _Target:
    __slots__ = ("adapter", "schema")

    def __init__(self, adapter: TypeAdapter[Any], schema: Schema) -> None:
        self.adapter = adapter
        self.schema = schema


# target -> validate_json, or None when the fast path does not apply (string targets).
_FAST: dict[Any, Callable[[str], Any] | None] = {}
_TARGETS: dict[Any, _Target] = {}


def _target(target: Any) -> _Target:
    try:
        return _TARGETS[target]
    except (KeyError, TypeError):
        pass
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(target)
    except Exception as exc:  # pydantic raises several kinds for a bad type
        raise ConfigError(
            f"cannot parse into {target!r}: pydantic does not accept it ({exc})"
        ) from exc
    try:
        raw_schema = adapter.json_schema(mode="validation")
        _add_field_names(raw_schema, adapter.json_schema(mode="validation", by_alias=False))
    except Exception:  # no JSON Schema (an arbitrary class, say): coerce loosely, validate
        raw_schema = {}
    entry = _Target(adapter, compile_schema(raw_schema))
    try:
        if len(_TARGETS) >= _CACHE_LIMIT:
            _TARGETS.clear()
        _TARGETS[target] = entry
    except TypeError:
        pass  # unhashable target: not cached
    return entry


def _add_field_names(by_alias: Any, by_name: Any) -> None:
    """Let the model use a field's Python name as well as its alias.

    The two schemas pydantic generates (by alias, by name) have the same shape; where a
    property's names differ, the Python name becomes an `x-alias` of the aliased property.
    """
    if isinstance(by_alias, dict) and isinstance(by_name, dict):
        props, names = by_alias.get("properties"), by_name.get("properties")
        if isinstance(props, dict) and isinstance(names, dict) and len(props) == len(names):
            for (alias, prop), name in zip(props.items(), names, strict=True):
                if alias != name and isinstance(prop, dict) and "x-alias" not in prop:
                    prop["x-alias"] = [alias, name]
        for key, value in by_alias.items():
            if key in by_name:
                _add_field_names(value, by_name[key])
    elif isinstance(by_alias, list) and isinstance(by_name, list) and len(by_alias) == len(by_name):
        for a, b in zip(by_alias, by_name, strict=True):
            _add_field_names(a, b)


def _recursive(root: Schema) -> bool:
    """Does the compiled schema refer back to itself (a recursive model)?"""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[Schema, bool]] = [(root, False)]
    while stack:
        s, leaving = stack.pop()
        if leaving:
            on_path.discard(id(s))
            done.add(id(s))
            continue
        if id(s) in on_path:
            return True
        if id(s) in done:
            continue
        on_path.add(id(s))
        stack.append((s, True))
        children = list(s.branches) + [p.schema for p in s.props]
        children += [c for c in (s.items, s.extra) if c is not None]
        for child in children:
            stack.append((child, False))
    return False


def _has_smart_tagged_union(root: Schema) -> bool:
    """Does the schema hold a union told apart by a tag that pydantic validates "smart"?

    pydantic tries every member of such a union in full before it looks at the tag, so on
    nested input (a recursive schema) its own `validate_json` costs 2^depth. The lenient
    path picks the member by its tag and is linear, so such targets skip the fast path.
    (Recursive anywhere, tagged anywhere: it errs toward the lenient path.)
    """
    seen: set[int] = set()
    todo = [root]
    while todo:
        s = todo.pop()
        if id(s) in seen:
            continue
        seen.add(id(s))
        if s.kind == "union" and "discriminator" not in s.raw and s.tag() is not None:
            return True
        todo.extend(s.branches)
        todo.extend(p.schema for p in s.props)
        todo.extend(c for c in (s.items, s.extra) if c is not None)
    return False


def _prepare_fast(target: Any) -> Callable[[str], Any] | None:
    entry = _target(target)
    base = entry.schema.non_null()
    fast: Callable[[str], Any] | None = None
    # A string target takes the raw text verbatim, which validate_json would unquote.
    # A recursive tagged union costs pydantic 2^depth (see `_has_smart_tagged_union`).
    exponential = _has_smart_tagged_union(entry.schema) and _recursive(entry.schema)
    if not exponential and (base.kind != "string" or "format" in base.raw):
        # pydantic-core's validator itself: the same validation as
        # `TypeAdapter.validate_json` without its Python wrapper (a deferred build, whose
        # validator is a placeholder until first use, keeps the wrapper).
        validator = entry.adapter.validator
        fast = validator.validate_json if isinstance(validator, SchemaValidator) else None
        fast = fast or entry.adapter.validate_json
    try:
        if len(_FAST) >= _CACHE_LIMIT:
            _FAST.clear()
        _FAST[target] = fast
    except TypeError:
        pass
    return fast


def parse(
    text: str, target: Any, *, partial: bool = False, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """Parse a language model's text into `target`, leniently.

    Args:
        text: The model output: JSON, JSON in prose or markdown fences, sloppy JSON
            (see docs/parsing.md for what is tolerated), or a bare value.
        target: A type pydantic's `TypeAdapter` accepts (a `BaseModel` subclass,
            `list[...]`, a union, an `Enum`, `Literal`, `TypedDict`, a dataclass, a scalar)
            or a JSON Schema dict (draft 2020-12, pydantic style; `{}` means any JSON).
        partial: Parse a stream cut short: values not seen yet are `None` (lists `[]`),
            and a trailing number that may still grow is left out.
        max_depth: How deep objects and arrays may nest (1 to 1000; `[1]` is 1 deep).
            Deeper text is an error, never a shorter value. The default, 200, is the
            depth pydantic's JSON reader accepts.

    Returns:
        For a type, the validated value (a model instance, ...). For a schema dict, a
        plain JSON value. For a `str` target, the text verbatim. In partial mode a model
        that does not validate yet comes back from `Model.model_construct` (nested models
        too), with the fields not seen yet set to `None`.

    Raises:
        OutputParseError: Nothing in the text fits the target (`attempts` lists every
            candidate tried and why it failed), or the text nests deeper than
            `max_depth` (the message gives the depth and the limit).
        ConfigError: `target` is neither a type pydantic accepts nor a schema dict,
            `text` is not a string, or `max_depth` is out of range.
    """
    if max_depth != DEFAULT_MAX_DEPTH:
        check_max_depth(max_depth)
    if type(text) is str and len(text) >= PAUSE_FROM:
        with collector_paused():  # else its full collections grow with the text
            return _parse_text(text, target, partial, max_depth)
    return _parse_text(text, target, partial, max_depth)


def _parse_text(text: str, target: Any, partial: bool, max_depth: int) -> Any:
    if not partial:
        try:
            fast = _FAST[target]
        except KeyError:
            fast = _prepare_fast(target) if type(text) is str else None
        except TypeError:  # unhashable: a schema dict, or an exotic type
            fast = None
        if fast is not None:
            try:
                value = fast(text)
            except ValidationError:
                pass
            else:
                # pydantic's JSON reader stops at the default depth itself.
                if max_depth >= DEFAULT_MAX_DEPTH or not deeper_than(text, max_depth):
                    return value
                raise _too_deep(text, target, max_depth)
    if not isinstance(text, str):
        raise ConfigError(f"parse() needs the model output as str, got {type(text).__name__}")
    try:
        # Deep text needs more recursion room than Python's default gives.
        if text.count("{") + text.count("[") > 60:
            with recursion_room(max_depth):
                return _parse(text, target, partial, max_depth)
        return _parse(text, target, partial, max_depth)
    except TooDeep:
        raise _too_deep(text, target, max_depth) from None
    except RecursionError:
        why = "the value is nested too deeply for Python's recursion limit"
        raise fail(text, target, _name(target), [ParseAttempt(text, why)]) from None


def _parse(text: str, target: Any, partial: bool, max_depth: int) -> Any:
    if not isinstance(target, dict):
        return _parse_type(text, target, partial, max_depth)
    entry = _schema_entry(target)
    if not partial and text[:1] in _JSON_START:
        try:
            return clean_value(entry, text, max_depth)
        except NotClean:
            pass
    ranked, attempts = rank(text, entry.schema, partial=partial, max_depth=max_depth)
    if not ranked:
        raise fail(text, target, entry.schema.describe(), attempts)
    return ranked[0].value


_JSON_START = frozenset('{["-0123456789tfn')


def _too_deep(text: str, target: Any, max_depth: int) -> Exception:
    depth = nesting_depth(text)
    why = (
        f"the value is nested {depth} levels deep, deeper than max_depth={max_depth}"
        " (a setting of surge.parse)"
    )
    return fail(text, target, _name(target), [ParseAttempt(text, why)])


def _parse_type(text: str, target: Any, partial: bool, max_depth: int) -> Any:
    entry = _target(target)
    ranked, attempts = rank(text, entry.schema, partial=partial, max_depth=max_depth)
    for result in ranked:
        try:
            return entry.adapter.validate_python(prebuild(target, result.value))
        except ValidationError as exc:
            if partial:
                return _construct(target, result.value)
            attempts.append(ParseAttempt(result.candidate.text, _summary(exc)))
    raise fail(text, target, _name(target, entry.schema), attempts)


def _summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in errors[:4]]
    more = f" (and {len(errors) - 4} more)" if len(errors) > 4 else ""
    return "pydantic validation failed: " + "; ".join(parts) + more


def _name(target: Any, schema: Schema | None = None) -> str:
    if isinstance(target, type):
        return target.__name__
    return schema.describe() if schema is not None else repr(target)


def _keys_of(model: type[BaseModel]) -> set[str]:
    keys = set(model.model_fields)
    for info in model.model_fields.values():
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                keys.add(alias)
    return keys


def _construct(tp: Any, value: Any) -> Any:
    """Build a partial value of `tp` without validation (partial mode only)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _construct(args[0], value)
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(value, dict):
        fields: dict[str, Any] = {}
        for name, info in tp.model_fields.items():
            alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
            key = alias if alias is not None and alias in value else name
            fields[name] = _construct(info.annotation, value[key]) if key in value else None
        return tp.model_construct(**fields)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if isinstance(value, dict):  # the model that knows most of the keys written so far
            models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
            if models:
                best = max(models, key=lambda m: len(_keys_of(m) & value.keys()))
                return _construct(best, value)
        for arg in members:
            built = _construct(arg, value)
            if built is not value or not isinstance(value, (dict, list)):
                return built
        return value
    if origin in (list, tuple, set, frozenset) and isinstance(value, list) and args:
        return [_construct(args[0], v) for v in value]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _construct(args[1], v) for k, v in value.items()}
    if value is None or isinstance(value, (dict, list)):
        return value
    try:
        return _target(tp).adapter.validate_python(value)
    except (ValidationError, ConfigError):
        return value
