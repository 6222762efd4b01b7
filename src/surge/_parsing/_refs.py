"""Local JSON Schema references: `$ref: "#/$defs/Name"` resolved against the root schema.

Pure and shared by every layer that reads schemas (the parser, the strict-schema
converter, the prompt renderer), so the JSON-pointer rules live in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["lookup_ref", "resolve_ref"]


def lookup_ref(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    """Return the schema a local JSON pointer `$ref` ("#/$defs/Name", "#") points at.

    The very object inside `root` is returned (callers that memoise by identity need
    that); use `resolve_ref` for a copy to change.

    Args:
        root: The root schema.
        ref: The reference.

    Returns:
        The referenced schema, not copied.

    Raises:
        KeyError: The reference is not local or does not point at a schema object.
    """
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        raise KeyError(f"$ref {ref!r} is not a local reference")
    node: Any = root
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"$ref {ref!r} does not resolve")
        node = node[part]
    if not isinstance(node, Mapping):
        raise KeyError(f"$ref {ref!r} does not point at a schema object")
    return node


def resolve_ref(root: Mapping[str, Any], ref: str) -> dict[str, Any]:
    """Return a shallow copy of the schema a local `$ref` points at (see `lookup_ref`).

    Raises:
        KeyError: The reference is not local or does not point at a schema object.
    """
    return dict(lookup_ref(root, ref))
