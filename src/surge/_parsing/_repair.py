r"""A tolerant reader for the JSON-ish text language models write.

It never raises: it reads what it can and records repairs. Tolerated: single, smart and
triple quotes; unescaped quotes and raw newlines inside strings (a quote only closes a
string when what follows makes sense there); missing opening or closing quotes; unquoted
keys and values (multi-word, multi-line); `//`, `/* */` and `#` comments; trailing, doubled
or missing commas; a key with no value; Python literals (`True`, `None`) and tuples;
brackets closed by the wrong kind or not at all (truncation); `"key": value` pairs written
straight inside `[...]`; a whole document written with escaped quotes (`{\"a\": 1}`).

`parse_document(text)` returns every top-level object or array found in the text, in
order, skipping the prose between them.
"""

from __future__ import annotations

import re

from surge._parsing._cursor import CLOSERS, QUOTES, WS
from surge._parsing._depth import DEFAULT_MAX_DEPTH, TooDeep
from surge._parsing._nodes import Kind, Node
from surge._parsing._strings import StringReader

__all__ = ["parse_document"]

_LITERALS: dict[str, bool | None] = {
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
    "null": None,
    "Null": None,
    "NULL": None,
    "None": None,
}
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*(?:_\d+)*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_ELLIPSIS = frozenset({"...", "\u2026"})


def parse_document(
    text: str, *, allow_tuple: bool = False, max_depth: int = DEFAULT_MAX_DEPTH
) -> list[tuple[Node, int, int]]:
    """Read every top-level object or array in `text`.

    Args:
        text: The model output (or a part of it, such as a fenced block).
        allow_tuple: Also accept a Python tuple `( ... )` as the first value.
        max_depth: How deep containers may nest.

    Returns:
        `(node, start, end)` for each value found, `start:end` being its span in `text`.

    Raises:
        TooDeep: A value nests deeper than `max_depth`.
    """
    parser = _Parser(text)
    parser.max_depth = max_depth
    return parser.document(allow_tuple)


class _Parser(StringReader):
    max_depth = DEFAULT_MAX_DEPTH

    def document(self, allow_tuple: bool) -> list[tuple[Node, int, int]]:
        out: list[tuple[Node, int, int]] = []
        t = self.t
        if allow_tuple:
            self.i = self._skip_ws(0)
            if self.i < self.n and t[self.i] == "(":
                start = self.i
                out.append((self._array(")"), start, self.i))
        while self.i < self.n:
            c = t[self.i]
            if c == "{" or c == "[":
                start = self.i
                before = self.repairs
                node = self._value("top")
                if node is not None:
                    node.fixes += self.repairs - before
                    if node.kind == "object" and node.complete:
                        self._premature_close(node)
                    out.append((node, start, self.i))
            else:
                self.i += 1
        return out

    def _premature_close(self, node: Node) -> None:
        """`{"a": 1}, "b": 2}`: members written after an early `}` belong to the object."""
        j = self._skip_ws(self.i)
        if j < self.n and self.t[j] == ",":
            k = self._skip_ws(j + 1)
            if self._quoted_key_at(k):
                self.i = k
                self.stack.append("object")
                node.complete = self._members(node.value, implicit=False)
                node.fixes += 1
                self.stack.pop()

    # -- values -----------------------------------------------------------------------

    def _value(self, ctx: str) -> Node | None:
        c = self.t[self.i]
        if c in "{[(" and len(self.stack) >= self.max_depth:
            raise TooDeep(len(self.stack) + 1)  # an error, never a silently shorter value
        if c == "{":
            return self._object()
        if c == "[":
            return self._array("]")
        if c == "(" and ctx != "top":
            return self._array(")")
        if c in CLOSERS or (c == "\\" and self.t.startswith('\\"', self.i)):
            return self._string(ctx)
        return self._unquoted(ctx)

    def _object(self) -> Node:
        self.i += 1
        self.stack.append("object")
        pairs: list[tuple[str, Node]] = []
        node = Node("object", pairs)
        node.complete = self._members(pairs, implicit=False)
        self.stack.pop()
        return node

    def _members(
        self, pairs: list[tuple[str, Node]], *, implicit: bool, after_member: bool = False
    ) -> bool:
        """Read `key: value` members into `pairs`; return whether the object was closed.

        `implicit` objects (pairs written straight inside `[...]`) end at `]`, unconsumed.
        `after_member`: a member was just read, so a comma is due.
        """
        t = self.t
        need_comma = after_member
        while True:
            self.i = self._skip(self.i, count=True)
            if self.i >= self.n:
                self.repairs += 1  # truncated
                return False
            c = t[self.i]
            if c == "}":
                self.repairs += not need_comma and bool(pairs)  # a trailing comma
                if implicit:
                    return True
                self.i += 1
                return True
            if c == "]" or c == ")":
                self.repairs += 1
                if implicit or self._enclosed_by("array") or self._enclosed_by("tuple"):
                    return True  # closed by the wrong bracket: let the list consume it
                self.i += 1  # a stray closer
                continue
            if c == ",":
                self.repairs += not need_comma  # a doubled or leading comma
                need_comma = False
                self.i += 1
                continue
            self.repairs += need_comma  # a missing comma
            need_comma = True
            key = self._key()
            if key is None:
                continue
            self.i = self._skip(self.i, count=True)
            if self.i >= self.n:
                self.repairs += 1
                return False  # truncated after a key: the key is dropped
            if t[self.i] == ":":
                self.i = self._skip(self.i + 1, count=True)
            else:
                self.repairs += 1  # no colon
                if t[self.i] in ",}]":
                    continue  # a bare word with no value (`{placeholder}`): dropped
            if self.i >= self.n:
                self.repairs += 1
                return False
            c = t[self.i]
            if c in ",}" or (c == "]" and (implicit or self._enclosed_by("array"))):
                self.repairs += 1
                pairs.append((key, Node("missing", None, text="")))
                continue
            value = self._value("object")
            if value is not None:
                pairs.append((key, value))

    def _key(self) -> str | None:
        t = self.t
        c = t[self.i]
        if c in CLOSERS or (c == "\\" and t.startswith('\\"', self.i)):
            node = self._string("key")
            return str(node.value)
        if c in "{[(":
            self._value("object")  # a structure where a key belongs: read and drop it
            return None
        j = self.i
        while j < self.n and t[j] not in ':,{}[]\n"' and t[j] not in QUOTES:
            j += 1
        self.repairs += 1  # an unquoted key, or garbage
        if j < self.n and t[j] == ":":
            key = t[self.i : j].strip()
            self.i = j
            return key
        # Garbage before the next real token (`COMMENT "key": ...`): skip it.
        if j == self.i:
            self.i += 1  # a lone closing quote or similar: step over it
            return None
        word = t[self.i : j].strip()
        self.i = j
        if j < self.n and t[j] in "}]," and word:
            return word  # `{word}` / `{word,`: caller drops a key without value
        if j < self.n and t[j] == "\n":
            self.i = j + 1
        return None

    def _array(self, closer: str) -> Node:
        t = self.t
        self.i += 1
        self.stack.append("tuple" if closer == ")" else "array")
        items: list[Node] = []
        node = Node("array", items)
        complete = False
        need_comma = False
        while True:
            self.i = self._skip(self.i, count=True)
            if self.i >= self.n:
                self.repairs += 1  # truncated
                break
            c = t[self.i]
            if c == closer:
                self.repairs += not need_comma and bool(items)  # a trailing comma
                self.repairs += closer == ")"  # a Python tuple
                self.i += 1
                complete = True
                break
            if c in "]})":
                if c == "}" and self._enclosed_by("object"):
                    complete = True  # closed by the wrong bracket: the object consumes it
                    node.fixes += 1
                    break
                self.i += 1  # a stray closer
                node.fixes += 1
                continue
            if c == ",":
                self.repairs += not need_comma  # a doubled or leading comma
                need_comma = False
                self.i += 1
                continue
            self.repairs += need_comma  # a missing comma
            need_comma = True
            item = self._value("array")
            if item is None:
                continue
            j = self._skip(self.i)
            if item.kind == "string" and j < self.n and t[j] == ":":
                # `["key": value, ...]`: an object written without its braces.
                self.i = j + 1
                self.stack.append("object")
                value_start = self._skip(self.i)
                pairs: list[tuple[str, Node]] = []
                if value_start < self.n and t[value_start] not in ",]":
                    self.i = value_start
                    value = self._value("object")
                    if value is not None:
                        pairs.append((str(item.value), value))
                obj = Node("object", pairs, fixes=1)
                obj.complete = self._members(pairs, implicit=True, after_member=bool(pairs))
                self.stack.pop()
                items.append(obj)
                continue
            items.append(item)
        node.complete = complete
        self.stack.pop()
        return node

    # -- unquoted values --------------------------------------------------------------

    def _scalar_before_comma(self, token: str, comma: int) -> bool:
        """Does a literal or number end at this comma (`true, GARBAGE "key": ...`)?

        Not when the comma is a thousands separator (`-2,000.00`).
        """
        if token in _LITERALS:
            return True
        if _NUMBER.fullmatch(token):
            return not re.match(r"\d{3}(?!\d)", self.t[comma + 1 : comma + 5])
        return False

    def _unquoted(self, ctx: str) -> Node | None:
        t, n = self.t, self.n
        start = j = self.i
        braces = brackets = 0
        while j < n:
            c = t[j]
            if c == "{":
                braces += 1
            elif c == "}":
                if braces == 0:
                    break
                braces -= 1
            elif c == "[":
                brackets += 1
            elif c == "]":
                if brackets == 0:
                    break
                brackets -= 1
            elif c == ")" and "tuple" in self.stack[-1:]:
                break
            elif c == ",":
                if ctx != "object":
                    break
                m = self._skip(j + 1)
                if m >= n or t[m] in "}]" or self._key_ahead(m):
                    break
                if j - start < 40 and self._scalar_before_comma(t[start:j].strip(), j):
                    break
            elif (
                c in CLOSERS
                and ctx == "object"
                and braces == 0
                and j > start
                and t[j - 1] in WS
                and self._quoted_key_at(j)
            ):
                break  # a missing comma before the next `"key":`
            elif c == "/" and t[j + 1 : j + 2] in ("/", "*") and (j == start or t[j - 1] in WS):
                break  # a comment
            j += 1
        self.i = j
        token = t[start:j].strip()
        complete = j < n
        if not token:
            if j < n and start == j:
                self.i = j + 1  # a lone unexpected character: skip it
            return None
        if ctx == "array" and token in _ELLIPSIS:
            return None
        fixes = 1
        if token[-1] in QUOTES and not any(q in token[:-1] for q in QUOTES):
            token = token[:-1].rstrip()  # `abcdef"`: a missing opening quote
            fixes += 1
        if token in _LITERALS:
            value = _LITERALS[token]
            kind: Kind = "null" if value is None else "bool"
            fixes -= token in ("true", "false", "null")  # `True`, `None`: a Python literal
            return Node(kind, value, text=token, complete=complete, fixes=fixes)
        if _NUMBER.fullmatch(token):
            clean = token.replace("_", "")
            num: int | float = float(clean) if any(ch in clean for ch in ".eE") else int(clean)
            return Node("number", num, text=token, complete=complete, fixes=fixes - 1)
        return Node("string", token, text=token, complete=complete, quoted=False, fixes=fixes)
