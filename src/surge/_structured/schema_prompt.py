"""Render a JSON Schema compactly, for stating the expected output in a prompt.

Raw JSON Schema is verbose (`{"type": "array", "items": {"type": "string"}}` for a list
of strings) and models read TypeScript-like type notation at least as well, so prompt mode
shows the schema like this:

```
{
  name: string, // The person's full name
  age: int,
  role: "admin" | "user",
  tags: string[],
  address?: Address | null,
}

Address {
  street: string,
  city: string,
}
```

Objects print one property a line, `?` marking a property that may be left out,
descriptions and constraints as `//` comments; enums and literals as `"A" | "B"`;
unions with `|`; arrays as `T[]`; dicts as `map<string, T>`. A definition referenced
more than once, or recursively, is printed once by name below the main type; others
are inlined where used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from surge._parsing._refs import resolve_ref

__all__ = ["render_schema", "schema_instructions"]

_INDENT = "  "
_SCALARS = {
    "string": "string",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "null",
}
_HINTS = (
    ("format", "format"),
    ("pattern", "pattern"),
    ("minLength", "min length"),
    ("maxLength", "max length"),
    ("minimum", ">="),
    ("exclusiveMinimum", ">"),
    ("maximum", "<="),
    ("exclusiveMaximum", "<"),
    ("multipleOf", "multiple of"),
    ("minItems", "min items"),
    ("maxItems", "max items"),
    ("uniqueItems", "unique items"),
)


def render_schema(schema: Mapping[str, Any]) -> str:
    """Render a JSON Schema as compact, human-readable type notation.

    Args:
        schema: The JSON Schema (e.g. from `pydantic.TypeAdapter(...).json_schema()`),
            with its definitions in `$defs` or `definitions`.

    Returns:
        The rendering: the main type, then any named definitions.
    """
    return _Renderer(schema).render()


def schema_instructions(schema: Mapping[str, Any]) -> str:
    """Return the prompt text that asks for JSON matching `schema`.

    Args:
        schema: The JSON Schema of the expected answer.

    Returns:
        An instruction followed by the compact rendering of the schema.
    """
    return f"Answer with JSON that matches this schema, and nothing else:\n{render_schema(schema)}"


class _Renderer:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.named: dict[str, str] = {}  # ref -> name, for definitions printed by name
        self._choose_named()

    # -- which definitions get a name ------------------------------------------------------

    def _choose_named(self) -> None:
        counts: dict[str, int] = {}
        _count_refs(self.root, counts)
        for ref, count in counts.items():
            try:
                target = resolve_ref(self.root, ref)
            except KeyError:
                continue
            if ref == "#" or not _is_object(target):
                continue
            if count > 1 or _refers_to(target, ref, self.root, set()):
                self.named[ref] = _def_name(ref, target)

    # -- rendering ---------------------------------------------------------------------------

    def render(self) -> str:
        body = {k: v for k, v in self.root.items() if k not in ("$defs", "definitions")}
        ref = body.get("$ref")
        if isinstance(ref, str) and ref in self.named and set(body) <= {"$ref"}:
            # A root that only points at a named definition: print it, named, at the top.
            lines = [f"{self.named[ref]} {self._object(self._target(ref), 0)}"]
        else:
            lines = [self._type(body, 0)]
        top = self._target(ref) if isinstance(ref, str) else body
        header = _description(body) or _description(top)
        if header:
            lines.insert(0, f"// {header}")
        for ref, name in self.named.items():
            if ref == body.get("$ref"):
                continue
            target = self._target(ref)
            described = _description(target)
            lines.append("")
            if described:
                lines.append(f"// {described}")
            lines.append(f"{name} {self._object(target, 0)}")
        return "\n".join(lines)

    def _target(self, ref: str) -> dict[str, Any]:
        try:
            return resolve_ref(self.root, ref)
        except KeyError:
            return {}

    def _type(self, schema: Mapping[str, Any], level: int) -> str:
        if not schema:
            return "any"
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in self.named:
                return self.named[ref]
            target = self._target(ref)
            if ref == "#":
                return "any"
            return self._type({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, level)
        if "const" in schema:
            return json.dumps(schema["const"], ensure_ascii=False)
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return " | ".join(json.dumps(v, ensure_ascii=False) for v in enum)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self._union(branches, level)
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            rendered = [self._type(p, level) for p in parts if isinstance(p, Mapping)]
            return " & ".join(rendered) if rendered else "any"
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(self._type({**schema, "type": k}, level) for k in kind)
        if kind == "array" or "items" in schema or "prefixItems" in schema:
            return self._array(schema, level)
        if kind == "object" or "properties" in schema:
            return self._object(schema, level)
        if isinstance(kind, str):
            return _SCALARS.get(kind, kind)
        return "any"

    def _union(self, branches: list[Any], level: int) -> str:
        rendered: list[str] = []
        for branch in branches:
            text = self._type(branch, level) if isinstance(branch, Mapping) else "any"
            if text not in rendered:
                rendered.append(text)
        return " | ".join(rendered)

    def _array(self, schema: Mapping[str, Any], level: int) -> str:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return "[" + ", ".join(self._type(p, level) for p in prefix) + "]"
        items = schema.get("items")
        inner = self._type(items, level) if isinstance(items, Mapping) else "any"
        if " | " in inner or " & " in inner:
            inner = f"({inner})"
        return f"{inner}[]"

    def _object(self, schema: Mapping[str, Any], level: int) -> str:
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if not isinstance(properties, Mapping) or not properties:
            if isinstance(extra, Mapping):
                return f"map<string, {self._type(extra, level)}>"
            if extra is False:
                return "{}"
            return "map<string, any>"
        required = schema.get("required") or []
        pad = _INDENT * (level + 1)
        lines = ["{"]
        for name, sub in properties.items():
            sub = sub if isinstance(sub, Mapping) else {}
            key = _key(name) + ("" if name in required else "?")
            line = f"{pad}{key}: {self._type(sub, level + 1)},"
            note = _comment(sub)
            ref = sub.get("$ref")
            if not note and isinstance(ref, str) and ref not in self.named:
                note = _description(self._target(ref))  # an inlined definition's
            if note:
                line += f" // {note}"
            lines.append(line)
        if isinstance(extra, Mapping):
            lines.append(f"{pad}[key: string]: {self._type(extra, level + 1)},")
        lines.append(_INDENT * level + "}")
        return "\n".join(lines)


def _description(schema: Mapping[str, Any]) -> str:
    description = schema.get("description")
    return " ".join(description.split()) if isinstance(description, str) else ""


def _comment(schema: Mapping[str, Any]) -> str:
    """The description and constraints of a schema, as one line of text."""
    parts: list[str] = []
    description = _description(schema)
    if description:
        parts.append(description)
    for key, label in _HINTS:
        if key in schema:
            value = schema[key]
            if key == "uniqueItems":
                if value is True:
                    parts.append(label)
            else:
                shown = value if key != "pattern" else json.dumps(value)
                parts.append(f"{label} {shown}" if label[-1].isalpha() else f"{label}{shown}")
    default = schema.get("default")
    if default not in (None, [], {}, ""):
        parts.append(f"default {json.dumps(default, ensure_ascii=False)}")
    return "; ".join(parts)


def _key(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name, ensure_ascii=False)


def _is_object(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "object" or isinstance(schema.get("properties"), Mapping)


def _def_name(ref: str, target: Mapping[str, Any]) -> str:
    name = ref.rsplit("/", 1)[-1]
    title = target.get("title")
    if isinstance(title, str) and title.replace("_", "").isalnum():
        return title
    return name if name.replace("_", "").isalnum() else "Def" + str(abs(hash(ref)) % 1000)


def _count_refs(node: Any, counts: dict[str, int]) -> None:
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str):
            counts[ref] = counts.get(ref, 0) + 1
        for key, value in node.items():
            if key not in ("$defs", "definitions"):
                _count_refs(value, counts)
        for key in ("$defs", "definitions"):
            defs = node.get(key)
            if isinstance(defs, Mapping):
                for value in defs.values():
                    _count_refs(value, counts)
    elif isinstance(node, list):
        for item in node:
            _count_refs(item, counts)


def _refers_to(node: Any, ref: str, root: Mapping[str, Any], seen: set[str]) -> bool:
    """Whether `node` reaches `$ref: ref` (directly or through other definitions)."""
    if isinstance(node, Mapping):
        inner = node.get("$ref")
        if isinstance(inner, str):
            if inner == ref:
                return True
            if inner not in seen:
                seen.add(inner)
                try:
                    if _refers_to(resolve_ref(root, inner), ref, root, seen):
                        return True
                except KeyError:
                    pass
        return any(
            _refers_to(value, ref, root, seen)
            for key, value in node.items()
            if key not in ("$defs", "definitions")
        )
    if isinstance(node, list):
        return any(_refers_to(item, ref, root, seen) for item in node)
    return False
