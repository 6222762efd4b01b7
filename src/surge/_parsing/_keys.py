"""Which key an object writes for each property of its schema, and for a union's tag.

A property is found under one of its keys written exactly (aliases first, then the name),
else under a key written another way (`"Full-Name"` for `full_name`: case, `_` and
punctuation aside), which costs a small penalty. The first of duplicate keys wins.
A union told apart by a tag looks its tag up exactly (`TagPlan`, `lookup`).
"""

from __future__ import annotations

import re
from typing import Any

from surge._parsing._nodes import Node
from surge._parsing._schema import Prop, Schema

__all__ = ["NO_PLAN", "TagPlan", "find_keys", "lookup", "norm_key"]

_WORDS = re.compile(r"[\W_]+")


def norm_key(key: str) -> str:
    """A key without punctuation, `_` or case (`"Full-Name"` -> `"fullname"`)."""
    return _WORDS.sub("", key).casefold()


def find_keys(node: Node, s: Schema) -> list[tuple[str, Node, int] | None]:
    """For each property of `s`, `(key written, its value, penalty)` in the object `node`.

    The penalty is 0 for a key written exactly, 1 for one written another way; `None`
    when the object does not write the property.
    """
    first: dict[str, Node] = {}
    for key, child in node.value:
        first.setdefault(key, child)
    loose: dict[str, str] | None = None  # normalized key -> the key written (when needed)
    found: list[tuple[str, Node, int] | None] = []
    for prop in s.props:
        hit: tuple[str, Node, int] | None = None
        for key in prop.keys:
            if key in first:
                hit = (key, first[key], 0)
                break
        if hit is None:
            if loose is None:
                loose = {}
                for key in first:
                    loose.setdefault(norm_key(key), key)
            for key in prop.keys:
                written = loose.get(norm_key(key))
                if written is not None:
                    hit = (written, first[written], 1)
                    break
        found.append(hit)
    return found


class TagPlan:
    """What `Coercer._tagged` needs of a union told apart by a tag, worked out once.

    Attributes:
        name: The tag's property name.
        keys: The keys the tag is looked up under, when every member's are the same
            (then it is looked up once per object); None when they differ.
        members: For each branch, `(branch, its Prop for the tag or None, its values)`.
        every_value: The values of every member's tag.
    """

    __slots__ = ("every_value", "keys", "members", "name")

    def __init__(self, name: str, branches: list[Schema], props: list[Prop | None]) -> None:
        self.name = name
        self.members = [
            (branch, prop, prop.schema.non_null().values if prop is not None else [])
            for branch, prop in zip(branches, props, strict=True)
        ]
        self.every_value = [v for _, prop, values in self.members if prop for v in values]
        keys = [prop.keys for prop in props if prop is not None]
        self.keys = keys[0] if keys and all(k == keys[0] for k in keys) else None

    @classmethod
    def of(cls, s: Schema) -> TagPlan | None:
        """The plan of union `s`, or None when its members have no tag."""
        tag = s.tag()
        return None if tag is None else cls(tag[0], s.branches, tag[1])


NO_PLAN: Any = object()  # no plan worked out yet for a union


def lookup(node: Node, keys: list[str]) -> Node | None:
    """The value an object node gives for the first of `keys` it writes (exactly)."""
    for key in keys:
        for written, child in node.value:
            if written == key:
                found: Node = child
                return found
    return None
