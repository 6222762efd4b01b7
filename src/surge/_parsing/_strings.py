r"""Reading quoted strings the way language models write them.

A quote only closes a string when what follows makes sense after a string in that place
(a `:` after a key; a `,` and then another member, or the closing bracket, after a value),
so unescaped quotes inside a value survive. Also handled: single, smart and triple quotes,
CSV-style doubled quotes, a missing closing quote before the next key, raw newlines, JSON
escapes (others kept verbatim, as in regexes and LaTeX), a document written with escaped
quotes (`{\"a\": 1}`), and a string cut off by the end of the input.
"""

from __future__ import annotations

import re

from surge._parsing._cursor import CLOSERS, WS, Cursor
from surge._parsing._nodes import Node
from surge._parsing._work import WORK

__all__ = ["StringReader"]

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\"}
# What `\s` matches, and the closing brackets: the tail a truncated string may end in.
_TAIL = "]})" + "".join(chr(c) for c in range(0x3001) if re.match(r"\s", chr(c)))
_HEX = re.compile(r"[0-9a-fA-F]*")
_BARE_KEY_BEFORE_QUOTE = re.compile(r",\s*[A-Za-z_$][\w$-]*\s*:\s*$")
# A double-quoted, non-empty string holding none of the characters the full scan stops at
# (see `_special`): the common case, read in one step when its quote closes it.
_PLAIN = re.compile(r'"([^"\\,{}\[\]\n]+)"')


_SPECIALS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _special(closers: tuple[str, ...]) -> re.Pattern[str]:
    """The characters a string scan stops at: its closers, a backslash, `,`, brackets, newline."""
    pattern = _SPECIALS.get(closers)
    if pattern is None:
        chars = "".join(c for c in closers if len(c) == 1) + "\\,{}[]\n"
        pattern = _SPECIALS[closers] = re.compile("[" + re.escape(chars) + "]")
    return pattern


def _last(buf: list[str], count: int) -> str:
    """The last `count` characters of the chunks in `buf` (without joining them all)."""
    parts: list[str] = []
    have = 0
    k = len(buf)
    while k > 0 and have < count:
        k -= 1
        parts.append(buf[k])
        have += len(buf[k])
    return "".join(reversed(parts))[-count:] if count > 0 else ""


def _cut_escape(t: str, i: int) -> bool:
    r"""Does the text end inside the escape that starts at `i` (`\`, `\u00`, `\ud83d\ude`)?

    A high surrogate at the very end counts too: its low half may follow.
    """
    rest = t[i : i + 13]
    if len(rest) < 2:
        return True
    if rest[1] != "u" or len(rest) >= 12:
        return False
    if len(rest) < 6:
        return _HEX.fullmatch(rest, 2) is not None
    if _HEX.fullmatch(rest, 2, 6) is None or not 0xD800 <= int(rest[2:6], 16) < 0xDC00:
        return False
    return "\\u".startswith(rest[6:8]) and _HEX.fullmatch(rest, 8) is not None


class StringReader(Cursor):
    """The string-reading layer of the tolerant parser."""

    def _string(self, ctx: str) -> Node:
        """Read the string starting at the current index (`ctx`: key, object, array)."""
        start = self.i
        node = self._read_string(ctx)
        WORK.scanned += self.i - start
        return node

    def _read_string(self, ctx: str) -> Node:
        t, n = self.t, self.n
        start = self.i
        plain = _PLAIN.match(t, start)
        if plain is not None and self._closes_here(plain.end(), ctx, 0, 0):
            # What the scan below gives for it, without its steps.
            self.i = plain.end()
            value = plain.group(1)
            return Node("string", value, text=value)
        for triple in ('"""', "'''"):
            if t.startswith(triple, start):
                end = t.find(triple, start + 3)
                if end < 0:
                    self.i = n
                    return Node(
                        "string", t[start + 3 :], text=t[start + 3 :], complete=False, fixes=2
                    )
                self.i = end + 3
                return Node("string", t[start + 3 : end], text=t[start + 3 : end], fixes=1)
        escaped_doc = t[start] == "\\"
        quote = '"' if escaped_doc else t[start]
        closers = ('\\"',) if escaped_doc else CLOSERS[quote]
        i = start + (2 if escaped_doc else 1)
        doubled = False
        fixes = int(quote != '"' or escaped_doc)  # single or smart quotes, an escaped document
        if not escaped_doc and i < n and t[i] in closers:
            if self._closes_here(i + 1, ctx, 0, 0):
                self.i = i + 1
                return Node("string", "", text="", fixes=fixes)
            doubled = True  # `""value""`: CSV-style doubled quotes
            i += 1
            fixes += 1
        buf: list[str] = []  # the value so far, in chunks
        blen = 0  # its length in characters
        comma_at = -1  # (text index, value length after it) of the last comma in the value
        comma_len = 0
        raw_tail = -1  # where a run of raw whitespace holding a newline began, if at the end
        braces = brackets = 0  # unclosed { and [ in the value so far
        # The first quote that would have closed the string but for a `{`/`[` still open
        # inside it: (its index, the chunks, fixes and raw tail there). When no later quote
        # closes the string, it ends there after all (`"a{"}` in prose is `a{`).
        deferred: tuple[int, int, int, int] | None = None
        special = _special(closers)
        while i < n:
            # Plain characters up to the next one that matters, in one step.
            m = special.search(t, i)
            j = m.start() if m is not None else n
            if j > i:
                chunk = t[i:j]
                buf.append(chunk)
                blen += j - i
                if raw_tail >= 0 and chunk.strip(WS):
                    raw_tail = -1
                i = j
                if i >= n:
                    break
            c = t[i]
            if escaped_doc and t.startswith('\\"', i):
                if self._closes_here(i + 2, ctx, braces, brackets):
                    self.i = i + 2
                    return self._finish(buf, ctx, fixes, raw_tail)
                if (
                    deferred is None
                    and (braces > 0 or brackets > 0)
                    and self._closes_here(i + 2, ctx, 0, 0)
                ):
                    deferred = (i + 2, len(buf), fixes, raw_tail)
                buf.append('"')
                blen += 1
                i += 2
                continue
            if c == "\\" and not escaped_doc:
                if _cut_escape(t, i):
                    break  # the text ends inside an escape: never half of one
                before = len(buf)
                i = self._escape(i, buf)
                blen += sum(len(part) for part in buf[before:])
                raw_tail = -1
                continue
            if c in closers:
                if doubled and i + 1 < n and t[i + 1] in closers:
                    self.i = i + 2
                    return self._finish(buf, ctx, fixes, raw_tail)
                if self._closes_here(i + 1, ctx, braces, brackets):
                    self.i = i + 1
                    return self._finish(buf, ctx, fixes, raw_tail)
                if (
                    deferred is None
                    and (braces > 0 or brackets > 0)
                    and self._closes_here(i + 1, ctx, 0, 0)
                ):
                    deferred = (i + 1, len(buf), fixes, raw_tail)
                if ctx == "object" and comma_at >= 0 and blen - comma_len < 80:
                    # A missing closing quote: `"New York, "gender": ...` or `"a, b: "x"`.
                    tail = _last(buf, blen - comma_len + 1)
                    if (not tail[1:].strip() and self._quoted_key_at(i, cut=True)) or (
                        _BARE_KEY_BEFORE_QUOTE.search(tail)
                    ):
                        if deferred is not None:  # a quote written beats a missing one
                            self.i, chunks, fixes, raw_tail = deferred
                            return self._finish(buf[:chunks], ctx, fixes, raw_tail)
                        self.i = comma_at
                        value = "".join(buf)[: comma_len - 1]
                        return self._finish([value], ctx, fixes + 1, -1)
                buf.append(c)  # an unescaped quote inside the string
                blen += 1
                fixes += 1
                raw_tail = -1
                i += 1
                continue
            if c == ",":
                comma_at, comma_len = i, blen + 1
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
                raw_tail = blen
            elif c not in WS:
                raw_tail = -1
            buf.append(c)
            blen += 1
            i += 1
        if deferred is not None:
            self.i, chunks, fixes, raw_tail = deferred
            WORK.scanned += n - self.i  # the characters read past it
            return self._finish(buf[:chunks], ctx, fixes, raw_tail)
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
        value = "".join(buf)
        if ctx != "key" and raw_tail >= 0:
            # A raw line break right before the closing quote (`"text<newline>"`) goes;
            # the start of the whitespace run is found from the raw-newline position.
            start = raw_tail
            while start > 0 and value[start - 1] in " \t\r":
                start -= 1
            value = value[:start]
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
        # The trailing run of closing brackets and blanks, found from the end (a regex
        # search for it would backtrack from every blank: quadratic on a run of them).
        cut = len(value.rstrip(_TAIL))
        WORK.scanned += len(value) - cut + 1
        closers = "".join(c for c in value[cut:] if c in "]})")
        if closers and needed.startswith(closers):
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
            if c == "," or c in CLOSERS:
                return True
            if c == ")":
                return "tuple" in self.stack
            return c == "}" and self._enclosed_by("object")
        if ctx == "object":
            if c == "}":
                return braces <= 0
            if c == ",":
                m = self._skip(k + 1)
                # A key cut by the end of the text (`"a": "x", "b`) may be a key being
                # written: the string ends here rather than swallow it (a later character
                # can only lengthen what is read now, never contradict it).
                return m >= self.n or t[m] in "}]" or self._key_ahead(m, cut=True)
            if c == "]":
                return self._enclosed_by("array") and brackets <= 0
            return self._quoted_key_at(k)
        return True
