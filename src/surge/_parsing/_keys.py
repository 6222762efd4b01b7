"""Which key an object writes for each property of its schema, and for a union's tag.

A property is found under one of its keys written exactly (aliases first, then the name),
else under a key written another way (`"Full-Name"` for `full_name`: case, `_` and
punctuation aside), which costs a small penalty. The first of duplicate keys wins.
A union told apart by a tag looks its tag up exactly (`lookup`).
"""

from __future__ import annotations

import re

from surge._parsing._nodes import Node
from surge._parsing._schema import Schema

__all__ = ["find_keys", "lookup", "norm_key"]

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


def lookup(node: Node, keys: list[str]) -> Node | None:
    """The value an object node gives for the first of `keys` it writes (exactly)."""
    for key in keys:
        for written, child in node.value:
            if written == key:
                found: Node = child
                return found
    return None
