"""The fast path for JSON Schema dict targets: clean JSON checked without the coercer.

`clean(value, schema)` takes what `json.loads` returned and gives the value the lenient
path would give when the whole text is JSON that fits the schema with no coercion at all
(a penalty of 0: the first candidate, which wins outright). Anything else, including
every case it is not sure of, raises `NotClean`, and the caller runs the lenient path,
which is always right. It mirrors `Coercer` rule for rule (see _coerce.py); a test runs
both on the whole corpus to keep them in step.
"""

from __future__ import annotations

import re
from typing import Any

from surge._parsing._coerce import Coercer, Mismatch
from surge._parsing._keys import norm_key
from surge._parsing._nodes import from_plain
from surge._parsing._schema import Schema

__all__ = ["NotClean", "clean", "clean_part"]

_LEAF = Coercer(partial=False)


class NotClean(Exception):
    """The value does not fit with a penalty of 0 (or `clean` cannot tell)."""


def clean(value: Any, s: Schema, max_depth: int) -> Any:
    """The value the lenient path gives for JSON text that parses to `value`.

    Raises:
        NotClean: The text needs the lenient path.
    """
    return _clean(value, s, max_depth, True)


def clean_part(value: Any, s: Schema, depth_left: int, top: bool) -> Any:
    """`clean` of a part of the value, `depth_left` levels from the limit (`top`: the root).

    Raises:
        NotClean: The text needs the lenient path.
    """
    return _clean(value, s, depth_left, top)


def _clean(value: Any, s: Schema, depth_left: int, top: bool) -> Any:
    kind = s.kind
    if kind == "union":
        if value is None and s.nullable:
            return None
        for branch in s.branches:
            try:
                return _clean(value, branch, depth_left, top)
            except NotClean:
                continue
        raise NotClean
    if isinstance(value, (dict, list)):
        if depth_left <= 0:
            raise NotClean  # the lenient path says how deep, and the limit
        depth_left -= 1
    if kind == "any":
        return _within(value, depth_left)
    typ = type(value)
    if kind == "string":
        if typ is not str or (top and "format" not in s.raw):
            raise NotClean  # a top-level string target takes the raw text verbatim
        pattern = s.raw.get("pattern")
        if isinstance(pattern, str) and not re.search(pattern, value):
            raise NotClean
        return value
    if kind == "integer" or kind == "number":
        if typ is not int and (typ is not float or kind == "integer"):
            raise NotClean
        number = value if kind == "integer" else float(value)
        if number < s.raw.get("minimum", number) or number > s.raw.get("maximum", number):
            raise NotClean
        return number
    if kind == "boolean":
        if typ is not bool:
            raise NotClean
        return value
    if kind == "null":
        if value is not None:
            raise NotClean
        return None
    if kind in ("enum", "const"):
        if typ is list:
            raise NotClean
        try:  # a leaf: the coercer itself decides, on a one-node tree
            got, penalty = _LEAF.coerce(from_plain(value), s, "$" if top else "")
        except Mismatch:
            raise NotClean from None
        if penalty:
            raise NotClean
        return got
    if kind == "array":
        if typ is not list:
            raise NotClean
        items = s.items
        if items is None or items.kind == "any":
            return _within(value, depth_left + 1)
        return [_clean(v, items, depth_left, False) for v in value]
    if typ is not dict:
        raise NotClean
    if kind == "map":
        values = s.items
        if values is None or values.kind == "any":
            return _within(value, depth_left + 1)
        return {k: _clean(v, values, depth_left, False) for k, v in value.items()}
    return _object(value, s, depth_left)


def _within(value: Any, depth_left: int) -> Any:
    """`value` itself, when its containers nest at most `depth_left` deep."""
    typ = type(value)
    if typ is dict:
        children: Any = value.values()
    elif typ is list:
        children = value
    else:
        return value
    if depth_left <= 0:
        raise NotClean  # the lenient path says how deep, and the limit
    for child in children:
        if type(child) is dict or type(child) is list:
            _within(child, depth_left - 1)
    return value


def _object(value: dict[str, Any], s: Schema, depth_left: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    used: set[str] = set()
    loose: dict[str, str] | None = None
    for prop in s.props:
        for key in prop.keys:
            if key in value:
                used.add(key)
                out[prop.name] = _clean(value[key], prop.schema, depth_left, False)
                break
        else:
            if loose is None:
                loose = {}
                for written in value:
                    loose.setdefault(norm_key(written), written)
            if any(norm_key(key) in loose for key in prop.keys):
                raise NotClean  # a key written another way: a small penalty
            if prop.required or prop.has_default:
                raise NotClean  # filled in: a penalty (or a Mismatch)
    if s.props and not out and value:
        raise NotClean  # none of the keys written is one of ours
    for key, child in value.items():
        if key in used or key in out:
            continue
        if s.extra is None:
            raise NotClean  # an extra key, dropped: a penalty
        out[key] = _clean(child, s.extra, depth_left, False)
    return out
