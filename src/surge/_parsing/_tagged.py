"""Pre-build the members of tagged unions of models, so pydantic validates in linear time.

pydantic validates a plain `A | B` union in "smart" mode: it tries every member, and a
member's fields in full, before it looks at the `Literal` tag that tells them apart. For
recursive models whose tag comes after the recursive field that costs 2^depth. After the
coercer has fitted the value, each dict that sits where a tagged union of models is
expected names its member through the tag, so it is built as that member (its children
first) with `Model.model_validate`; pydantic then meets an instance of the right class at
each union, which it accepts at once. Nothing else changes: values under no tagged union
stay plain, and a union with no tag (or a tag that matches no member) is left to pydantic.
A type from which the walk can reach no tagged union (most) is not walked at all.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

__all__ = ["prebuild"]


def prebuild(tp: Any, value: Any) -> Any:
    """Return `value` with each dict under a tagged union of models built as its member.

    Raises:
        pydantic.ValidationError: A member rejects the dict that names it.
    """
    if not _has_tagged(tp):
        return value  # nothing to build: the walk would only copy it
    return _Builder().build(tp, value)


_HAS_TAGGED: dict[Any, bool] = {}


def _has_tagged(tp: Any) -> bool:
    """Can the walk of `_Builder` reach a tagged union of models from `tp`?"""
    try:
        known = _HAS_TAGGED.get(tp)
    except TypeError:  # an unhashable annotation: not cached
        return _reaches_tagged(tp, {})
    if known is None:
        if len(_HAS_TAGGED) >= 512:
            _HAS_TAGGED.clear()
        known = _HAS_TAGGED[tp] = _reaches_tagged(tp, {})
    return known


def _reaches_tagged(tp: Any, seen: dict[int, Any]) -> bool:
    """The same edges `_Builder._build` follows, each type once (`seen`: id -> type met)."""
    if id(tp) in seen:
        return False
    seen[id(tp)] = tp  # held, so its id is not reused by another type during the walk
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _reaches_tagged(args[0], seen)
    if origin is typing.Union or origin is types.UnionType:
        return bool(_members(args))  # an untagged union is left to pydantic, unwalked
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return any(_reaches_tagged(annotation, seen) for _, annotation in _fields(tp))
    if origin is list and args:
        return _reaches_tagged(args[0], seen)
    if origin is dict and len(args) == 2:
        return _reaches_tagged(args[1], seen)
    return False


class _Builder:
    def __init__(self) -> None:
        # id of type -> id of value -> built: a value reached twice under one type (it is
        # not, in a tree; the memo keeps the walk linear whatever the type graph) is built
        # once. Ids, not the objects: a union's hash is recomputed at every use, and both
        # outlive the walk (the value tree and the annotations hold them). One dict per
        # type rather than (value, type) keys: no key tuple is allocated per value, which
        # on a large value is garbage-collector work.
        self.memo: dict[int, dict[int, Any]] = {}
        self.shapes: dict[int, tuple[Any, tuple[Any, ...]]] = {}  # id of type -> (origin, args)

    def build(self, tp: Any, value: Any) -> Any:
        if not isinstance(value, (dict, list)):
            return value
        memo = self.memo.get(id(tp))
        if memo is None:
            memo = self.memo[id(tp)] = {}
        built = memo.get(id(value), _UNBUILT)
        if built is _UNBUILT:
            built = memo[id(value)] = self._build(tp, value)
        return built

    def _build(self, tp: Any, value: Any) -> Any:
        shape = self.shapes.get(id(tp))
        if shape is None:
            shape = self.shapes[id(tp)] = (typing.get_origin(tp), typing.get_args(tp))
        origin, args = shape
        if origin is typing.Annotated:
            return self.build(args[0], value)
        if origin is typing.Union or origin is types.UnionType:
            member = _member(args, value) if isinstance(value, dict) else None
            if member is None:
                return value
            return member.model_validate(self._fields(member, value))
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(value, dict):
            return self._fields(tp, value)
        if origin is list and isinstance(value, list) and args:
            return [self.build(args[0], v) for v in value]
        if origin is dict and isinstance(value, dict) and len(args) == 2:
            return {k: self.build(args[1], v) for k, v in value.items()}
        return value

    def _fields(self, model: type[BaseModel], value: dict[str, Any]) -> dict[str, Any]:
        out = dict(value)
        for keys, annotation in _fields(model):
            for key in keys:
                if key in out:
                    out[key] = self.build(annotation, out[key])
                    break
        return out


_UNBUILT: Any = object()  # not in the memo yet (a built value may be anything)
_FIELDS: dict[type[BaseModel], list[tuple[list[str], Any]]] = {}


def _fields(model: type[BaseModel]) -> list[tuple[list[str], Any]]:
    """(keys, resolved annotation) of each field of `model`.

    pydantic can leave a forward reference (`"A | B | None"`) unresolved in
    `model_fields` even after the model is complete; `get_type_hints` resolves it.
    """
    known = _FIELDS.get(model)
    if known is not None:
        return known
    hints: dict[str, Any] = {}
    if any(isinstance(i.annotation, (str, typing.ForwardRef)) for i in model.model_fields.values()):
        try:
            hints = typing.get_type_hints(model, include_extras=True)
        except Exception:  # a name only the defining scope knew: leave those to pydantic
            hints = {}
    out = [
        (_keys(name, info), hints.get(name, info.annotation))
        for name, info in model.model_fields.items()
    ]
    if len(_FIELDS) >= 512:
        _FIELDS.clear()
    _FIELDS[model] = out
    return out


def _keys(name: str, info: Any) -> list[str]:
    keys = [a for a in (info.validation_alias, info.alias) if isinstance(a, str)]
    return [*keys, name]


def _member(args: tuple[Any, ...], value: dict[str, Any]) -> type[BaseModel] | None:
    """The one model among `args` whose `Literal` fields all match `value`, if any."""
    try:
        members = _MEMBERS.get(args)
    except TypeError:  # an unhashable annotation among the members: not cached
        members = _members(args)
    else:
        if members is None:
            if len(_MEMBERS) >= 512:
                _MEMBERS.clear()
            members = _MEMBERS[args] = _members(args)
    found: type[BaseModel] | None = None
    for model, tags in members:
        for keys, allowed in tags:
            for key in keys:
                if key in value and value[key] in allowed:
                    break
            else:
                break  # this tag is not matched: not this model
        else:
            if found is not None:
                return None  # two members match: leave the choice to pydantic
            found = model
    return found


_Tags = list[tuple[list[str], tuple[Any, ...]]]
_MEMBERS: dict[tuple[Any, ...], list[tuple[type[BaseModel], _Tags]]] = {}


def _members(args: tuple[Any, ...]) -> list[tuple[type[BaseModel], _Tags]]:
    """The models of a union with their tags (see `_tags`); none if it is not tagged.

    Fewer than two models, or one without a tag, leave the choice to pydantic.
    """
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    out = [(model, _tags(model)) for model in models]
    if len(models) < 2 or any(not tags for _, tags in out):
        return []
    return out


_TAGS: dict[type[BaseModel], _Tags] = {}


def _tags(model: type[BaseModel]) -> _Tags:
    """The `Literal` fields of `model`: (the keys it may be written under, allowed values)."""
    known = _TAGS.get(model)
    if known is not None:
        return known
    out = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if typing.get_origin(ann) is typing.Literal:
            out.append((_keys(name, info), typing.get_args(ann)))
    if len(_TAGS) >= 512:
        _TAGS.clear()
    _TAGS[model] = out
    return out
