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
from surge._parsing._rank import fail, rank
from surge._parsing._schema import Schema, compile_schema
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


def _prepare_fast(target: Any) -> Callable[[str], Any] | None:
    entry = _target(target)
    base = entry.schema.non_null()
    fast: Callable[[str], Any] | None = None
    # A string target takes the raw text verbatim, which validate_json would unquote.
    if base.kind != "string" or "format" in base.raw:  # dates and the like: not verbatim
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


def parse(text: str, target: Any, *, partial: bool = False) -> Any:
    """Parse a language model's text into `target`, leniently.

    Args:
        text: The model output: JSON, JSON in prose or markdown fences, sloppy JSON
            (see docs/parsing.md for what is tolerated), or a bare value.
        target: A type pydantic's `TypeAdapter` accepts (a `BaseModel` subclass,
            `list[...]`, a union, an `Enum`, `Literal`, `TypedDict`, a dataclass, a scalar)
            or a JSON Schema dict (draft 2020-12, pydantic style; `{}` means any JSON).
        partial: Parse a stream cut short: values not seen yet are `None` (lists `[]`),
            and a trailing number that may still grow is left out.

    Returns:
        For a type, the validated value (a model instance, ...). For a schema dict, a
        plain JSON value. For a `str` target, the text verbatim. In partial mode a model
        that does not validate yet comes back from `Model.model_construct` (nested models
        too), with the fields not seen yet set to `None`.

    Raises:
        OutputParseError: Nothing in the text fits the target; `attempts` lists every
            candidate tried and why it failed.
        ConfigError: `target` is neither a type pydantic accepts nor a schema dict, or
            `text` is not a string.
    """
    if not partial:
        try:
            fast = _FAST[target]
        except KeyError:
            fast = _prepare_fast(target) if type(text) is str else None
        except TypeError:  # unhashable: a schema dict, or an exotic type
            fast = None
        if fast is not None:
            try:
                return fast(text)
            except ValidationError:
                pass
    if not isinstance(text, str):
        raise ConfigError(f"parse() needs the model output as str, got {type(text).__name__}")
    try:
        if isinstance(target, dict):
            schema = compile_schema(target)
            ranked, attempts = rank(text, schema, partial=partial)
            if not ranked:
                raise fail(text, target, schema.describe(), attempts)
            return ranked[0].value
        return _parse_type(text, target, partial)
    except RecursionError:
        why = "the value is nested too deeply to read"
        raise fail(text, target, _name(target), [ParseAttempt(text, why)]) from None


def _parse_type(text: str, target: Any, partial: bool) -> Any:
    entry = _target(target)
    ranked, attempts = rank(text, entry.schema, partial=partial)
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
