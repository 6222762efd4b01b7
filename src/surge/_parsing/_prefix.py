"""What a prefix of a document says so far: the values its end may still change.

In partial (streaming) mode the text is the start of a longer document. The value the
text ends in may still change: a number may grow (`12` -> `123`; `-` and `12.` are numbers
being written), and an unquoted word that starts a literal (`fa`, `nul`) is a `false` or
`null` being written, not a string. Such a value is `ABSENT` (left out of lists and maps,
`None` in a model), and so it is inside untyped values, at any depth.
"""

from __future__ import annotations

import re
from typing import Any

from surge._parsing._nodes import Node, to_plain

__all__ = ["ABSENT", "plain_so_far", "unfinished"]

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()

# A number cut before it is one (`-`, `12.`, `1e`, `1e-`): read as an unquoted word.
_NUMBER_START = re.compile(r"-|-?\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d*)?")
# The starts of the literals the reader knows (`t`, `fals`, `Non`, ...), whole ones included.
_LITERAL_STARTS = frozenset(
    word[:k]
    for word in ("true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL", "None")
    for k in range(1, len(word) + 1)
)


def unfinished(node: Node) -> bool:
    """Partial mode, a node the text ended in: may what it is still change?

    A number may still grow (`12` -> `123`; `-` and `12.` are numbers being written too),
    and an unquoted word that starts a literal (`fa`, `nul`) is a `false` or `null`
    being written, not a string.
    """
    if node.kind == "number":
        return True
    return (
        node.kind == "string"
        and not node.quoted
        and (node.value in _LITERAL_STARTS or _NUMBER_START.fullmatch(node.value) is not None)
    )


def plain_so_far(node: Node) -> Any:
    """`to_plain` of a node the text ended in, without what is unfinished at its end.

    Only the last member of each container on the way to the end of the text can be
    unfinished, so only that one is looked at more closely. `ABSENT` when the node
    itself is unfinished (see `unfinished`).
    """
    if node.kind == "array" and node.value:
        items = [to_plain(child) for child in node.value[:-1]]
        last = node.value[-1]
        value = to_plain(last) if last.complete else plain_so_far(last)
        if value is not ABSENT:
            items.append(value)
        return items
    if node.kind == "object" and node.value:
        out: dict[str, Any] = {}
        for key, child in node.value[:-1]:
            if key not in out:
                out[key] = to_plain(child)
        key, last = node.value[-1]
        if key not in out:
            value = to_plain(last) if last.complete else plain_so_far(last)
            if value is not ABSENT:
                out[key] = value
        return out
    return ABSENT if unfinished(node) else to_plain(node)
