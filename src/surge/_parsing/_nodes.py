"""The JSON-ish value tree the tolerant parser produces and the coercer consumes.

A `Node` keeps more than a plain JSON value: whether a string was quoted, the source text
of a number or literal (so `1` can become `"1"` and `True` stay `"True"` for a string
target), whether the value was complete (closed) in the input, and how many repairs the
parser had to make to read it. Partial (streaming) parsing depends on `complete`.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["Kind", "Node", "TooDeepValue", "from_plain", "repairs", "to_plain"]

Kind = Literal["object", "array", "string", "number", "bool", "null", "missing"]


class Node:
    """One value read from model output.

    Attributes:
        kind: What the value is; `missing` is a key written with no value (`"a": ,`).
        value: For `object` a list of `(key, Node)` pairs in input order (duplicates
            kept), for `array` a list of `Node`, otherwise the Python scalar.
        text: The source text of a scalar (`12,111`, `True`, `null`), or the string value.
        complete: False when the input ended inside this value (an unclosed string,
            object or array, or a number that might still grow).
        quoted: For strings, whether the value was written in quotes.
        fixes: How many repairs were needed to read this value (not counting children).
    """

    __slots__ = ("complete", "fixes", "kind", "quoted", "text", "value")

    def __init__(
        self,
        kind: Kind,
        value: Any,
        *,
        text: str = "",
        complete: bool = True,
        quoted: bool = True,
        fixes: int = 0,
    ) -> None:
        self.kind: Kind = kind
        self.value = value
        self.text = text
        self.complete = complete
        self.quoted = quoted
        self.fixes = fixes

    def __repr__(self) -> str:
        state = "" if self.complete else ", incomplete"
        return f"Node({self.kind}, {to_plain(self)!r}{state})"


def to_plain(node: Node) -> Any:
    """Convert a node to a plain JSON value (first occurrence of a duplicate key wins).

    A `missing` value becomes the empty string, as json-repair does with no schema.
    """
    kind = node.kind
    if kind == "object":
        out: dict[str, Any] = {}
        for key, child in node.value:
            if key not in out:
                out[key] = to_plain(child)
        return out
    if kind == "array":
        return [to_plain(child) for child in node.value]
    if kind == "missing":
        return ""
    return node.value


class TooDeepValue(Exception):
    """A plain value nested deeper than the limit given to `from_plain`."""


def from_plain(value: Any, depth_left: int = 1 << 30) -> Node:
    """Build a node tree from a plain JSON value (the output of `json.loads`).

    Raises:
        TooDeepValue: Containers nest more than `depth_left` deep.
    """
    if isinstance(value, dict):
        if depth_left <= 0:
            raise TooDeepValue
        return Node("object", [(str(k), from_plain(v, depth_left - 1)) for k, v in value.items()])
    if isinstance(value, list):
        if depth_left <= 0:
            raise TooDeepValue
        return Node("array", [from_plain(v, depth_left - 1) for v in value])
    if isinstance(value, str):
        return Node("string", value, text=value)
    if isinstance(value, bool):
        return Node("bool", value, text="true" if value else "false")
    if value is None:
        return Node("null", None, text="null")
    return Node("number", value, text=repr(value))


def repairs(node: Node) -> int:
    """How many repairs reading this value took, children included."""
    total = node.fixes
    if node.kind == "object":
        total += sum(repairs(child) for _, child in node.value)
    elif node.kind == "array":
        total += sum(repairs(child) for child in node.value)
    return total
