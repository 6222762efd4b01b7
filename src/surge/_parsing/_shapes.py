"""What the incremental reader needs to know about a target type, computed once per type.

A `Shape` says how a JSON container or scalar read from a stream becomes a value of the
type: a pydantic model (fields by key, what an unseen field is), a list, a dict, a union of
models (picked by the keys written so far), or anything else (validated when complete).
"""

from __future__ import annotations

import contextlib
import copy
import types
import typing
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = ["Shape", "shape_of"]


class Shape:
    """How values of one type are built from what a stream has revealed so far.

    Attributes:
        kind: "model", "list", "dict", "union", "str", "int", "float", "bool" or "other"
            ("any" when there is no type, e.g. a JSON Schema dict target).
        tp: The type (Optional and Annotated unwrapped).
        fields: For a model: each key the model may write -> (field name, field shape).
        unseen: For a model: field name -> the value of a field not seen yet.
        item: For a list (item shape) or a dict (value shape).
        members: For a union of models: their shapes.
    """

    __slots__ = (
        "_adapter",
        "_mutable",
        "_plain",
        "fields",
        "item",
        "kind",
        "members",
        "tp",
        "unseen",
    )

    def __init__(self, kind: str, tp: Any) -> None:
        self.kind = kind
        self.tp = tp
        self.fields: dict[str, tuple[str, Shape]] = {}
        self.unseen: dict[str, Any] = {}
        self.item: Shape | None = None
        self.members: list[Shape] = []
        self._adapter: TypeAdapter[Any] | None = None
        self._mutable: tuple[str, ...] = ()  # unseen values that are lists or dicts
        self._plain = False  # a model `build` may make without `model_construct`

    def child(self, key: str | None) -> Shape:
        """The shape of the value under `key` (objects) or of an item (arrays)."""
        if self.kind == "model" and key is not None:
            hit = self.fields.get(key)
            return hit[1] if hit is not None else _ANY
        if self.item is not None:
            return self.item
        return _ANY

    def pick(self, keys: typing.Iterable[str]) -> Shape:
        """For a union of models: the member that knows most of `keys`; else self."""
        if self.kind != "union":
            return self
        seen = list(keys)
        return max(self.members, key=lambda m: sum(k in m.fields for k in seen))

    def finish(self, value: Any) -> tuple[Any, bool]:
        """Validate a complete value; when it does not validate, build what it has.

        Returns:
            The value, and whether it validated.
        """
        kind = self.kind
        if kind == "any":
            return value, True
        if kind == "str" and type(value) is str:
            return value, True
        if kind == "int" and type(value) is int:
            return value, True
        if kind == "float" and type(value) in (int, float):
            return float(value), True
        if kind == "bool" and type(value) is bool:
            return value, True
        if self._adapter is None:
            self._adapter = TypeAdapter(self.tp)
        try:
            return self._adapter.validate_python(value), True
        except ValidationError:
            if kind == "model" and isinstance(value, dict):
                return self.build(value), False
            return value, False

    def build(self, written: dict[str, Any]) -> Any:
        """A model (without validation) from the fields written so far; others unseen."""
        fields = dict(self.unseen)
        for name in self._mutable:  # a fresh [] or {} per value, as defaults would be
            fields[name] = copy.copy(fields[name])
        given = set()
        for key, value in written.items():
            hit = self.fields.get(key)
            if hit is not None:
                fields[hit[0]] = value
                given.add(hit[0])
        if not self._plain:
            return self.tp.model_construct(_fields_set=given, **fields)
        # What `model_construct` does for a model without private attributes, extras or
        # a post-init hook, without its per-field bookkeeping (this runs for every
        # partial value, on each open model around the end of the text).
        model = self.tp.__new__(self.tp)
        _set(model, "__dict__", fields)
        _set(model, "__pydantic_fields_set__", given)
        _set(model, "__pydantic_extra__", None)
        _set(model, "__pydantic_private__", None)
        return model


_set = object.__setattr__
_ANY = Shape("any", Any)
_CACHE: dict[Any, Shape] = {}
_SCALARS = {str: "str", int: "int", float: "float", bool: "bool"}


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def shape_of(tp: Any) -> Shape:
    """Return the (cached) shape of a type; a JSON Schema dict or None gives "any"."""
    if tp is None or isinstance(tp, dict):
        return _ANY
    try:
        return _CACHE[tp]
    except (KeyError, TypeError):
        pass
    shape = _build(_unwrap(tp), set())
    with contextlib.suppress(TypeError):  # an unhashable type: not cached
        _CACHE[tp] = shape
    return shape


def _build(tp: Any, building: set[int]) -> Shape:
    if tp is Any:
        return _ANY
    if tp in _SCALARS:
        return Shape(_SCALARS[tp], tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        shape = Shape("model", tp)
        if id(tp) in building:  # a recursive model: its nested levels validate when done
            return Shape("other", tp)
        building = building | {id(tp)}
        for name, info in tp.model_fields.items():
            sub = _build(_unwrap(info.annotation), building)
            keys = [name]
            for alias in (info.validation_alias, info.alias):
                if isinstance(alias, str) and alias not in keys:
                    keys.insert(0, alias)
            for key in keys:
                shape.fields[key] = (name, sub)
            if not info.is_required():
                shape.unseen[name] = info.get_default(call_default_factory=True)
            elif sub.kind == "list":
                shape.unseen[name] = []
            elif sub.kind == "dict":
                shape.unseen[name] = {}
            else:
                shape.unseen[name] = None
        shape._mutable = tuple(n for n, v in shape.unseen.items() if type(v) in (list, dict))
        shape._plain = (
            not tp.__private_attributes__
            and tp.model_config.get("extra") != "allow"
            and getattr(tp, "__pydantic_post_init__", None) is None
        )
        return shape
    if origin in (list, set, frozenset) or (
        origin is tuple and len(args) == 2 and args[1] is Ellipsis
    ):
        shape = Shape("list", tp)
        shape.item = _build(_unwrap(args[0]), building) if args else _ANY
        return shape
    if origin is dict:
        shape = Shape("dict", tp)
        shape.item = _build(_unwrap(args[1]), building) if len(args) == 2 else _ANY
        return shape
    if tp is list:
        shape = Shape("list", tp)
        shape.item = _ANY
        return shape
    if tp is dict:
        shape = Shape("dict", tp)
        shape.item = _ANY
        return shape
    if origin in (typing.Union, types.UnionType):
        members = [_build(_unwrap(a), building) for a in args if a is not type(None)]
        if members and all(m.kind == "model" for m in members):
            shape = Shape("union", tp)
            shape.members = members
            return shape
    return Shape("other", tp)
