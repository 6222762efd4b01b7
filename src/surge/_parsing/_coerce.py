"""Schema-aligned coercion: fit a JSON-ish `Node` to a compiled `Schema`.

`Coercer.coerce` returns `(value, penalty)`: a plain JSON value shaped like the schema
and a score of how much had to be bent to get it (0 = a clean fit). Unions try every
member and keep the lowest score (ties go to the first member), so the best fit wins, not
the first. A value that cannot be made to fit raises `Mismatch` with the path and why.

Coercions (each costs a little): number <-> numeric string (`"1,234"`, `1/5`), float ->
int when exact, `"yes"`/`1` -> true, scalar -> string, a lone value -> one-item list, a
list -> its first fitting item (for scalar targets), a scalar -> a one-field object, a
JSON-encoded string -> the object or list it encodes, a key written without a value -> the
type's empty value. Missing required lists become `[]`; optional fields take their default.

In partial (streaming) mode a number the input ended in is `ABSENT` (it may still grow),
and so is an unquoted word the input ended in that is the start of a literal (`tru`,
`nul`: a `true` or `null` being written): dropped from lists, `None` in objects, at any
depth; fields not seen yet are `None`, lists `[]`, maps `{}`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from surge._parsing._depth import DEFAULT_MAX_DEPTH
from surge._parsing._keys import find_keys, lookup
from surge._parsing._match import bool_from_text, match_choice, number_from_text
from surge._parsing._nodes import Node, repairs, to_plain
from surge._parsing._prefix import ABSENT, plain_so_far, unfinished
from surge._parsing._repair import parse_document
from surge._parsing._schema import Prop, Schema
from surge._parsing._work import WORK

__all__ = ["ABSENT", "Coercer", "Mismatch"]

_OMIT: Any = object()


class Mismatch(Exception):
    """A value that cannot be made to fit its schema.

    Attributes:
        path: Where, as `$.field[0].other`.
        reason: Why, in words.
    """

    def __init__(self, reason: str, path: str) -> None:
        super().__init__(f"at {path}: {reason}" if path != "$" else reason)
        self.reason = reason
        self.path = path


def _kind_name(node: Node) -> str:
    if node.kind in ("object", "array"):
        return "an object" if node.kind == "object" else "a list"
    if node.kind == "missing":
        return "no value"
    text = node.text if len(node.text) <= 40 else node.text[:37] + "..."
    return f"{node.kind} {text!r}" if node.kind != "null" else "null"


class Coercer:
    """Coerce nodes to schemas; one instance per parse.

    Args:
        partial: Streaming mode (see the module docstring).
        max_depth: How deep a JSON-encoded string value may nest (see `_depth`).
        raw: The node holding the raw text: a top-level string target takes it verbatim,
            other nodes pay a penalty for being the top-level string.
    """

    def __init__(
        self, *, partial: bool, raw: Node | None = None, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        self.partial = partial
        self.raw = raw
        self.max_depth = max_depth
        # (structure node, union schema, at the top) -> its result or (reason, path) of its
        # Mismatch: a node is fitted to a union once, however many members of an outer
        # union try it (without this, nested unions cost 2^depth).
        self._unions: dict[tuple[Node, Schema, bool], Any] = {}
        # (id of an enum/const schema, text) -> match_choice's answer, or its ValueError:
        # a pure function of the two, asked again for every object of a tagged union.
        self._choices: dict[tuple[int, str], tuple[int, int] | ValueError] = {}

    def coerce(self, node: Node, s: Schema, path: str = "$") -> tuple[Any, int]:
        """Fit `node` to `s`; return `(value, penalty)` or raise `Mismatch`."""
        WORK.coercions += 1
        kind = s.kind
        if self.partial and not node.complete:
            if node is not self.raw and unfinished(node):
                return ABSENT, 0  # a number or literal the stream may still be writing
            if kind == "any":
                return plain_so_far(node), 0
        if kind == "union":
            return self._union(node, s, path)
        if kind == "any":
            return to_plain(node), 0
        if node.kind == "array" and kind in ("enum", "const", "integer", "number", "boolean"):
            return self._first_item(node, s, path)
        if kind == "string":
            return self._string(node, s, path)
        if kind in ("integer", "number"):
            return self._number(node, s, path)
        if kind == "boolean":
            return self._boolean(node, path)
        if kind == "null":
            if node.kind == "null":
                return None, 0
            if node.kind == "missing":
                return None, 1
            raise Mismatch(f"expected null, got {_kind_name(node)}", path)
        if kind in ("enum", "const"):
            return self._choice(node, s, path)
        if kind == "array":
            return self._array(node, s, path)
        if kind == "map":
            return self._map(node, s, path)
        return self._object(node, s, path)

    # -- scalars ----------------------------------------------------------------------

    def _string(self, node: Node, s: Schema, path: str) -> tuple[Any, int]:
        if node.kind == "string":
            value, penalty = node.value, 0
        elif node.kind in ("number", "bool"):
            value, penalty = node.text, 1
        elif node.kind == "missing":
            value, penalty = "", 1
        else:
            raise Mismatch(f"expected a string, got {_kind_name(node)}", path)
        # A top-level string target takes the raw text verbatim; a formatted one (a date,
        # a UUID) takes the decoded value.
        if path == "$" and self.raw is not None and (node is self.raw) == ("format" in s.raw):
            penalty += 3
        pattern = s.raw.get("pattern")
        if isinstance(pattern, str) and not re.search(pattern, value):
            raise Mismatch(f"{value!r} does not match the pattern {pattern!r}", path)
        return value, penalty

    def _number(self, node: Node, s: Schema, path: str) -> tuple[Any, int]:
        integer = s.kind == "integer"
        if node.kind in ("number", "string") and self.partial and not node.complete:
            return ABSENT, 0  # the stream may not have finished writing it
        value: int | float
        if node.kind == "number":
            value, penalty = node.value, 0
            if integer and isinstance(value, float):
                if not value.is_integer():
                    raise Mismatch(f"{node.text} is not a whole number", path)
                value, penalty = int(value), 1
        elif node.kind == "string":
            try:
                value, penalty = number_from_text(node.value, integer=integer)
            except ValueError as exc:
                raise Mismatch(str(exc), path) from None
        elif node.kind == "missing":
            value, penalty = 0, 1
        else:
            raise Mismatch(f"expected a number, got {_kind_name(node)}", path)
        if not integer:
            value = float(value)
        low, high = s.raw.get("minimum"), s.raw.get("maximum")
        for key, bound, ok in (
            ("minimum", low, low is None or value >= low),
            ("maximum", high, high is None or value <= high),
        ):
            if not ok:  # (NaN with no bound given is no error: it was a KeyError)
                raise Mismatch(f"{value} is outside the {key} {bound}", path)
        return value, penalty

    def _boolean(self, node: Node, path: str) -> tuple[Any, int]:
        if node.kind == "bool":
            return node.value, 0
        if node.kind == "number" and node.value in (0, 1):
            return bool(node.value), 1
        if node.kind == "string":
            try:
                return bool_from_text(node.value)
            except ValueError as exc:
                raise Mismatch(str(exc), path) from None
        if node.kind == "missing":
            return False, 1
        raise Mismatch(f"expected true or false, got {_kind_name(node)}", path)

    def _choice(self, node: Node, s: Schema, path: str) -> tuple[Any, int]:
        if self.partial and not node.complete and node.kind in ("string", "number"):
            return ABSENT, 0  # a name still being written
        words = [i for i, v in enumerate(s.values) if isinstance(v, str)]
        why = ""
        if words and node.kind in ("string", "number", "bool"):
            text = node.value if node.kind == "string" else node.text
            key = (id(s), text)
            found = self._choices.get(key)
            if found is None:
                try:
                    found = match_choice(text, [s.aliases[i] for i in words])
                except ValueError as exc:
                    found = exc
                self._choices[key] = found
            if isinstance(found, ValueError):
                why = f": {found}"
                if "ambiguous" in str(found) or "several" in str(found):
                    raise Mismatch(str(found), path) from None
            else:
                index, penalty = found
                return s.values[words[index]], penalty
        for value in s.values:  # non-string literals (2, true, null): read the node as one
            if isinstance(value, str):
                continue
            if value is None:
                if node.kind == "null":
                    return None, 0
                continue
            typ = (
                "boolean"
                if isinstance(value, bool)
                else "integer"
                if isinstance(value, int)
                else "number"
            )
            try:
                got, penalty = self.coerce(node, _SCALARS[typ], path)
            except Mismatch:
                continue
            if got is ABSENT:
                return ABSENT, 0
            if type(got) is type(value) and got == value:
                return value, penalty
        raise Mismatch(why[2:] if why else f"expected {s.describe()}, got {_kind_name(node)}", path)

    def _first_item(self, node: Node, s: Schema, path: str) -> tuple[Any, int]:
        reasons = []
        for i, child in enumerate(node.value):
            try:
                value, penalty = self.coerce(child, s, f"{path}[{i}]")
            except Mismatch as exc:
                reasons.append(exc.reason)
                continue
            return value, penalty + 2
        why = f": {reasons[0]}" if reasons else " (it is empty)"
        raise Mismatch(f"expected {s.describe()}, got a list with no fitting item{why}", path)

    # -- structures -------------------------------------------------------------------

    def _decoded(self, node: Node, opener: str) -> Node | None:
        """A string value holding JSON (a list or object encoded as a string): what it encodes.

        Not the whole text (`raw`): its JSON has been read as candidates already.
        """
        if node.kind != "string" or node is self.raw or not node.value.lstrip().startswith(opener):
            return None
        found = parse_document(node.value, max_depth=self.max_depth)
        if found and found[0][0].kind == ("object" if opener == "{" else "array"):
            return found[0][0]
        return None

    def _array(self, node: Node, s: Schema, path: str) -> tuple[Any, int]:
        items = s.items or _SCALARS["any"]
        if node.kind == "string":
            decoded = self._decoded(node, "[")
            if decoded is not None:
                value, penalty = self._array(decoded, s, path)
                return value, penalty + 1 + repairs(decoded)
        if node.kind == "array":
            out, total = [], 0
            for i, child in enumerate(node.value):
                value, penalty = self.coerce(child, items, f"{path}[{i}]")
                if value is not ABSENT:
                    out.append(value)
                    total += penalty
            return out, total
        if node.kind == "missing":
            return [], 1
        if node.kind == "null":
            raise Mismatch(f"expected {s.describe()}, got null", path)
        value, penalty = self.coerce(node, items, f"{path}[0]")  # a lone value: wrap it
        # The whole text as one item is a last resort (`The answer is true` for list[bool]).
        penalty += 6 if node is self.raw else 2
        return ([], penalty) if value is ABSENT else ([value], penalty)

    def _map(self, node: Node, s: Schema, path: str) -> tuple[Any, int]:
        if node.kind == "string":
            decoded = self._decoded(node, "{")
            if decoded is not None:
                value, penalty = self._map(decoded, s, path)
                return value, penalty + 1 + repairs(decoded)
        if node.kind == "missing":
            return {}, 1
        if node.kind != "object":
            raise Mismatch(f"expected {s.describe()}, got {_kind_name(node)}", path)
        values = s.items or _SCALARS["any"]
        out: dict[str, Any] = {}
        total = 0
        for key, child in node.value:
            if key in out:
                continue  # a duplicate key: the first one wins
            value, penalty = self.coerce(child, values, f"{path}[{key!r}]")
            if value is not ABSENT:
                out[key] = value
                total += penalty
        return out, total

    def _object(self, node: Node, s: Schema, path: str) -> tuple[Any, int]:
        WORK.objects += 1
        extra_penalty = 0
        if node.kind == "string":
            decoded = self._decoded(node, "{")
            if decoded is None:
                raise Mismatch(f"expected {s.describe()} (an object), got {_kind_name(node)}", path)
            node, extra_penalty = decoded, 1 + repairs(decoded)
        elif node.kind == "missing":
            node, extra_penalty = Node("object", []), 1
        elif node.kind in ("number", "bool") and len(s.props) == 1:
            prop = s.props[0]  # a bare scalar for a one-field object
            value, penalty = self.coerce(node, prop.schema, f"{path}.{prop.name}")
            return {prop.name: value}, penalty + 2
        elif node.kind != "object":
            raise Mismatch(f"expected {s.describe()} (an object), got {_kind_name(node)}", path)
        found = find_keys(node, s)
        if len(s.props) == 1 and found[0] is None and node.value:
            prop = s.props[0]  # an object for a one-field object, without that field: nest it
            try:
                value, penalty = self.coerce(node, prop.schema, f"{path}.{prop.name}")
            except Mismatch:
                pass
            else:
                if value is not ABSENT:
                    return {prop.name: value}, penalty + 2 + extra_penalty
        out: dict[str, Any] = {}
        total, matched = extra_penalty, 0
        used: set[str] = set()
        for prop, hit in zip(s.props, found, strict=True):
            if hit is not None:
                key, child, key_penalty = hit
                used.add(key)
                value, penalty = self.coerce(child, prop.schema, f"{path}.{prop.name}")
                if value is not ABSENT:
                    out[prop.name] = value
                    total += penalty + key_penalty
                    matched += 1
                    continue
            value, penalty = self._missing(prop, path)
            if value is not _OMIT:
                out[prop.name] = value
                total += penalty
        for key, child in node.value:
            if key in used or key in out:
                continue
            if s.extra is None:
                total += 1  # an extra key, dropped: a member that uses it fits better
                continue
            value, penalty = self.coerce(child, s.extra, f"{path}[{key!r}]")
            if value is not ABSENT:
                out[key] = value
                total += penalty
        if s.props and not matched and node.value:
            total += 3  # none of the keys written is one of ours
        return out, total

    def _missing(self, prop: Prop, path: str) -> tuple[Any, int]:
        base = prop.schema.non_null()
        if self.partial:
            if base.kind == "array":
                return [], 0
            if base.kind == "map":
                return {}, 0
            return (copy.deepcopy(prop.default) if prop.has_default else None), 0
        if prop.required:
            if base.kind == "array":
                return [], 2
            if prop.schema.nullable:
                return None, 2
            raise Mismatch(f"the required field {prop.name!r} is missing", path)
        if prop.has_default:
            return copy.deepcopy(prop.default), 1
        return _OMIT, 0

    def _union(self, node: Node, s: Schema, path: str) -> tuple[Any, int]:
        if node.kind == "null" and s.nullable:
            return None, 0
        if node.kind == "missing" and s.nullable:
            return None, 1
        if node.kind not in ("object", "array"):
            return self._members(node, s, path)
        key = (node, s, path == "$")
        known = self._unions.get(key)
        if known is _BUSY:
            raise Mismatch(f"{_kind_name(node)} cannot be nested into itself", path)
        if known is not None:
            if isinstance(known, Mismatch):
                raise Mismatch(known.reason, known.path)
            return known  # type: ignore[no-any-return]
        self._unions[key] = _BUSY
        try:
            result = self._members(node, s, path)
        except Mismatch as exc:
            self._unions[key] = exc
            raise
        self._unions[key] = result
        return result

    def _members(self, node: Node, s: Schema, path: str) -> tuple[Any, int]:
        """Try the members of union `s`; the best fit wins (see `_union`)."""
        best: tuple[Any, int] | None = None
        reasons: list[str] = []
        branches = self._tagged(node, s, reasons) if node.kind == "object" else s.branches
        for branch in branches:
            try:
                value, penalty = self.coerce(node, branch, path)
            except Mismatch as exc:
                reasons.append(f"as {branch.describe()}: {exc.reason}")
                continue
            if value is ABSENT:
                return ABSENT, 0
            if best is None or penalty < best[1]:
                best = (value, penalty)
                if penalty == 0:
                    break
        if best is None:
            why = "; ".join(r if len(r) <= 300 else r[:297] + "..." for r in reasons)
            raise Mismatch(f"{_kind_name(node)} fits no member of the union ({why})", path)
        return best

    def _tagged(self, node: Node, s: Schema, reasons: list[str]) -> list[Schema]:
        """The members of `s` whose literal tag field the object `node` matches.

        When the members are objects told apart by a `Literal` field (see `Schema.tag`)
        and the object writes that field, only the members it names are tried, before any
        of their other fields is coerced. When it names none of them, or does not write
        the field, every member is tried.
        """
        plan = s.tag_plan()
        if plan is None:
            return s.branches
        name = plan.name
        shared = lookup(node, plan.keys) if plan.keys is not None else None
        keep: list[Schema] = []
        named = False  # the tag names at least one member
        for branch, prop, values in plan.members:
            if prop is None:
                keep.append(branch)
                continue
            child = shared if plan.keys is not None else lookup(node, prop.keys)
            if child is None:
                return s.branches  # the tag is not written: every member is a candidate
            if child.kind == "string" and child.complete:
                if child.value in values:  # written exactly: no need to coerce it
                    keep.append(branch)
                    named = True
                    continue
                if child.value in plan.every_value:
                    reasons.append(f"as {branch.describe()}: at .{name}: not {child.value!r}")
                    continue  # exactly another member's tag
            try:
                self.coerce(child, prop.schema, "")
            except Mismatch as exc:
                reasons.append(f"as {branch.describe()}: at .{name}: {exc.reason}")
                continue
            keep.append(branch)
            named = True
        return keep if named else s.branches


_BUSY: Any = object()  # a union coercion in progress (a node nested into itself)
_SCALARS: dict[str, Schema] = {}
for _name in ("boolean", "integer", "number", "any"):
    _s = Schema({"type": _name} if _name != "any" else {})
    _s.kind = _name
    _SCALARS[_name] = _s
del _name, _s
