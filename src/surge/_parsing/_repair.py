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

from surge._parsing._nodes import Kind, Node

__all__ = ["MAX_DEPTH", "parse_document"]

MAX_DEPTH = 100  # containers nested deeper than this are not read

_WS = " \t\r\n\ufeff\xa0"
# Opening quote -> the quotes that may close it.
_CLOSERS: dict[str, tuple[str, ...]] = {
    '"': ('"',),
    "'": ("'",),
    "\u201c": ("\u201d", "\u201c", '"'),  # “ -> ” “ "
    "\u201e": ("\u201c", "\u201d", '"'),  # „ -> “ ” "
    "\u2018": ("\u2019", "\u2018"),  # left single -> right or left single
}
_QUOTES = frozenset(_CLOSERS) | {"\u201d", "\u2019"}
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
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\"}
_UNQUOTED_KEY_AHEAD = re.compile(r"[^\s,:{}\[\]\"'][^,:{}\[\]\"'\n]{0,60}?\s*:")
_BARE_KEY_BEFORE_QUOTE = re.compile(r",\s*[A-Za-z_$][\w$-]*\s*:\s*$")
_ELLIPSIS = frozenset({"...", "\u2026"})


def parse_document(text: str, *, allow_tuple: bool = False) -> list[tuple[Node, int, int]]:
    """Read every top-level object or array in `text`.

    Args:
        text: The model output (or a part of it, such as a fenced block).
        allow_tuple: Also accept a Python tuple `( ... )` as the first value.

    Returns:
        `(node, start, end)` for each value found, `start:end` being its span in `text`.
    """
    return _Parser(text).document(allow_tuple)


class _Parser:
    def __init__(self, text: str) -> None:
        self.t = text
        self.n = len(text)
        self.i = 0
        self.stack: list[str] = []  # enclosing containers: "object" / "array" / "tuple"

    # -- document level ---------------------------------------------------------------

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
                node = self._value("top")
                if node is not None:
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

    # -- whitespace and comments ------------------------------------------------------

    def _skip_ws(self, j: int) -> int:
        t, n = self.t, self.n
        while j < n and t[j] in _WS:
            j += 1
        return j

    def _skip(self, j: int, *, hash_comments: bool = True) -> int:
        """Skip whitespace and comments from `j`; return the next significant index."""
        t, n = self.t, self.n
        while True:
            j = self._skip_ws(j)
            if j >= n:
                return j
            if t.startswith("//", j):
                end = t.find("\n", j)
                j = n if end < 0 else end + 1
            elif t.startswith("/*", j):
                end = t.find("*/", j + 2)
                j = n if end < 0 else end + 2
            elif hash_comments and t[j] == "#":
                # Runs to the end of the line, or to a bracket closing the container.
                k = j
                while k < n and t[k] not in "\n}]":
                    k += 1
                j = k
            else:
                return j

    # -- look-ahead helpers -----------------------------------------------------------

    def _quoted_key_at(self, j: int) -> bool:
        """Is there a quoted string at `j` (on one line) followed by a colon?"""
        t = self.t
        if j >= self.n or t[j] not in _CLOSERS:
            return False
        closers = _CLOSERS[t[j]]
        k = j + 1
        while k < self.n and t[k] != "\n":
            if t[k] in closers:
                m = self._skip_ws(k + 1)
                return m < self.n and t[m] == ":"
            k += 1
        return False

    def _key_ahead(self, j: int) -> bool:
        """After a comma: does a new member (quoted or bare key) start at `j`?"""
        return self._quoted_key_at(j) or bool(_UNQUOTED_KEY_AHEAD.match(self.t, j))

    def _enclosed_by(self, kind: str) -> bool:
        return kind in self.stack[:-1]

    # -- values -----------------------------------------------------------------------

    def _value(self, ctx: str) -> Node | None:
        c = self.t[self.i]
        if c in "{[(" and len(self.stack) >= MAX_DEPTH:
            self.i = self.n  # nested deeper than any real answer: stop reading
            return None
        if c == "{":
            return self._object()
        if c == "[":
            return self._array("]")
        if c == "(" and ctx != "top":
            return self._array(")")
        if c in _CLOSERS or (c == "\\" and self.t.startswith('\\"', self.i)):
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

    def _members(self, pairs: list[tuple[str, Node]], *, implicit: bool) -> bool:
        """Read `key: value` members into `pairs`; return whether the object was closed.

        `implicit` objects (pairs written straight inside `[...]`) end at `]`, unconsumed.
        """
        t = self.t
        while True:
            self.i = self._skip(self.i)
            if self.i >= self.n:
                return False
            c = t[self.i]
            if c == "}":
                if implicit:
                    return True
                self.i += 1
                return True
            if c == "]" or c == ")":
                if implicit or self._enclosed_by("array") or self._enclosed_by("tuple"):
                    return True  # closed by the wrong bracket: let the list consume it
                self.i += 1  # a stray closer
                continue
            if c == ",":
                self.i += 1
                continue
            key = self._key()
            if key is None:
                continue
            self.i = self._skip(self.i)
            if self.i >= self.n:
                return False  # truncated after a key: the key is dropped
            if t[self.i] == ":":
                self.i = self._skip(self.i + 1)
            elif t[self.i] in ",}]":
                continue  # a bare word with no value (`{placeholder}`): dropped
            if self.i >= self.n:
                return False
            c = t[self.i]
            if c in ",}" or (c == "]" and (implicit or self._enclosed_by("array"))):
                pairs.append((key, Node("missing", None, text="")))
                continue
            value = self._value("object")
            if value is not None:
                pairs.append((key, value))

    def _key(self) -> str | None:
        t = self.t
        c = t[self.i]
        if c in _CLOSERS or (c == "\\" and t.startswith('\\"', self.i)):
            node = self._string("key")
            return str(node.value)
        if c in "{[(":
            self._value("object")  # a structure where a key belongs: read and drop it
            return None
        j = self.i
        while j < self.n and t[j] not in ':,{}[]\n"' and t[j] not in _QUOTES:
            j += 1
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
        while True:
            self.i = self._skip(self.i)
            if self.i >= self.n:
                break
            c = t[self.i]
            if c == closer:
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
                self.i += 1
                continue
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
                obj.complete = self._members(pairs, implicit=True)
                self.stack.pop()
                items.append(obj)
                continue
            items.append(item)
        node.complete = complete
        self.stack.pop()
        return node

    # -- strings ----------------------------------------------------------------------

    def _string(self, ctx: str) -> Node:
        t, n = self.t, self.n
        start = self.i
        for triple in ('"""', "'''"):
            if t.startswith(triple, start):
                end = t.find(triple, start + 3)
                if end < 0:
                    self.i = n
                    return Node("string", t[start + 3 :], text=t[start + 3 :], complete=False)
                self.i = end + 3
                return Node("string", t[start + 3 : end], text=t[start + 3 : end])
        escaped_doc = t[start] == "\\"
        quote = '"' if escaped_doc else t[start]
        closers = ('\\"',) if escaped_doc else _CLOSERS[quote]
        i = start + (2 if escaped_doc else 1)
        doubled = False
        fixes = 0
        if not escaped_doc and i < n and t[i] in closers:
            if self._closes_here(i + 1, ctx, 0, 0):
                self.i = i + 1
                return Node("string", "", text="")
            doubled = True  # `""value""`: CSV-style doubled quotes
            i += 1
            fixes += 1
        buf: list[str] = []
        comma_at = -1  # (text index, buffer length) of the last comma in the value
        comma_len = 0
        raw_tail = -1  # where a run of raw whitespace holding a newline began, if at the end
        braces = brackets = 0  # unclosed { and [ in the value so far
        while i < n:
            c = t[i]
            if escaped_doc and t.startswith('\\"', i):
                if self._closes_here(i + 2, ctx, braces, brackets):
                    self.i = i + 2
                    return self._finish(buf, ctx, fixes, raw_tail)
                buf.append('"')
                i += 2
                continue
            if c == "\\" and not escaped_doc and i + 1 < n:
                i = self._escape(i, buf)
                raw_tail = -1
                continue
            if c in closers:
                if doubled and i + 1 < n and t[i + 1] in closers:
                    self.i = i + 2
                    return self._finish(buf, ctx, fixes, raw_tail)
                if self._closes_here(i + 1, ctx, braces, brackets):
                    self.i = i + 1
                    return self._finish(buf, ctx, fixes, raw_tail)
                if ctx == "object" and comma_at >= 0 and len(buf) - comma_len < 80:
                    # A missing closing quote: `"New York, "gender": ...` or `"a, b: "x"`.
                    tail = "".join(buf[comma_len - 1 :])
                    if (not tail[1:].strip() and self._quoted_key_at(i)) or (
                        _BARE_KEY_BEFORE_QUOTE.search(tail)
                    ):
                        self.i = comma_at
                        return self._finish(buf[: comma_len - 1], ctx, fixes + 1, -1)
                buf.append(c)  # an unescaped quote inside the string
                raw_tail = -1
                i += 1
                continue
            if c == ",":
                comma_at, comma_len = i, len(buf) + 1
            elif c in "{}[]":
                if c == "{":
                    braces += 1
                elif c == "}":
                    braces -= 1
                elif c == "[":
                    brackets += 1
                else:
                    brackets -= 1
            if c == "\n" and raw_tail < 0:
                raw_tail = len(buf)
            elif c not in _WS:
                raw_tail = -1
            buf.append(c)
            i += 1
        return self._unterminated(buf, ctx, fixes)

    def _escape(self, i: int, buf: list[str]) -> int:
        t = self.t
        nxt = t[i + 1]
        if nxt in "\"'":
            buf.append(nxt)
        elif nxt in _ESCAPES:
            buf.append(_ESCAPES[nxt])
        elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", t[i + 2 : i + 6]):
            code = int(t[i + 2 : i + 6], 16)
            low = t[i + 8 : i + 12]
            if 0xD800 <= code < 0xDC00 and t.startswith("\\u", i + 6) and len(low) == 4:
                with_low = (code - 0xD800) * 0x400 + int(low, 16) - 0xDC00 + 0x10000
                buf.append(chr(with_low))
                return i + 12
            buf.append(chr(code))
            return i + 6
        else:
            buf.append("\\" + nxt)  # not a JSON escape (a regex, LaTeX): keep it verbatim
        return i + 2

    def _finish(self, buf: list[str], ctx: str, fixes: int, raw_tail: int = -1) -> Node:
        if ctx != "key" and raw_tail >= 0:
            # A raw line break right before the closing quote (`"text<newline>"`) goes;
            # the start of the whitespace run is found from the raw-newline position.
            start = raw_tail
            while start > 0 and buf[start - 1] in " \t\r":
                start -= 1
            del buf[start:]
        value = "".join(buf)
        return Node("string", value, text=value, fixes=fixes)

    def _unterminated(self, buf: list[str], ctx: str, fixes: int) -> Node:
        """The input ended inside a string: keep it, or close it before trailing brackets.

        When the brackets that close the open containers were written after it
        (`{"a": ["b]}`), the string ends before them.
        """
        value = "".join(buf)
        needed = "".join(
            "}" if k == "object" else ")" if k == "tuple" else "]" for k in reversed(self.stack)
        )
        tail = re.search(r"[\]})\s]*$", value)
        closers = re.sub(r"\s", "", tail.group()) if tail else ""
        if closers and needed.startswith(closers):
            cut = len(value) - len(tail.group()) if tail else len(value)
            self.i = self.n - (len(value) - cut)
            return Node("string", value[:cut], text=value[:cut], fixes=fixes + 1)
        self.i = self.n
        return Node("string", value, text=value, complete=False, fixes=fixes + 1)

    def _closes_here(self, j: int, ctx: str, braces: int, brackets: int) -> bool:
        """Would a quote ending just before `j` close the string, given what follows?

        `braces`/`brackets` count the `{`/`[` left open inside the string so far: a `}`
        after the quote does not close the string while its own `{` is still open.
        """
        t = self.t
        k = self._skip(j, hash_comments=False)
        if k < self.n and t[k] == "#" and k > j:
            k = self._skip(k)  # `"value" # a comment`
        if k >= self.n:
            return True
        c = t[k]
        if t.startswith("```", k):
            return True
        if ctx == "key":
            return c == ":"
        if ctx == "array":
            if c == ":":
                return True  # `["key": value]`: the list holds an object without braces
            if c == "]":
                return brackets <= 0
            if c == "," or c in _CLOSERS:
                return True
            if c == ")":
                return "tuple" in self.stack
            return c == "}" and self._enclosed_by("object")
        if ctx == "object":
            if c == "}":
                return braces <= 0
            if c == ",":
                m = self._skip(k + 1)
                return m >= self.n or t[m] in "}]" or self._key_ahead(m)
            if c == "]":
                return self._enclosed_by("array") and brackets <= 0
            return self._quoted_key_at(k)
        return True

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
                c in _CLOSERS
                and ctx == "object"
                and braces == 0
                and j > start
                and t[j - 1] in _WS
                and self._quoted_key_at(j)
            ):
                break  # a missing comma before the next `"key":`
            elif c == "/" and t[j + 1 : j + 2] in ("/", "*") and (j == start or t[j - 1] in _WS):
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
        if token[-1] in _QUOTES and not any(q in token[:-1] for q in _QUOTES):
            token = token[:-1].rstrip()  # `abcdef"`: a missing opening quote
            fixes += 1
        if token in _LITERALS:
            value = _LITERALS[token]
            kind: Kind = "null" if value is None else "bool"
            return Node(kind, value, text=token, complete=complete, fixes=fixes - 1)
        if _NUMBER.fullmatch(token):
            clean = token.replace("_", "")
            num: int | float = float(clean) if any(ch in clean for ch in ".eE") else int(clean)
            return Node("number", num, text=token, complete=complete, fixes=fixes - 1)
        return Node("string", token, text=token, complete=complete, quoted=False, fixes=fixes)
