"""The reading position shared by the tolerant parser's layers, and its look-ahead.

`Cursor` holds the text, the index and the stack of open containers, skips whitespace and
comments (`//`, `/* */`, `#`), and answers the look-ahead questions the repairs depend on
("does a quoted key follow here?").
"""

from __future__ import annotations

import re

__all__ = ["CLOSERS", "QUOTES", "WS", "Cursor"]

WS = " \t\r\n\ufeff\xa0"
# Opening quote -> the quotes that may close it.
CLOSERS: dict[str, tuple[str, ...]] = {
    '"': ('"',),
    "'": ("'",),
    "\u201c": ("\u201d", "\u201c", '"'),  # left double -> right, left or straight double
    "\u201e": ("\u201c", "\u201d", '"'),  # low double -> left, right or straight double
    "\u2018": ("\u2019", "\u2018"),  # left single -> right or left single
}
QUOTES = frozenset(CLOSERS) | {"\u201d", "\u2019"}
_UNQUOTED_KEY_AHEAD = re.compile(r"[^\s,:{}\[\]\"'][^,:{}\[\]\"'\n]{0,60}?\s*:")


class Cursor:
    """A position in `text` with the containers open around it.

    Attributes:
        t: The text.
        n: Its length.
        i: The current index.
        stack: The open containers, outermost first: "object", "array" or "tuple".
        repairs: How many repairs reading has needed so far (comments, unquoted keys,
            single quotes, missing or extra commas, ...).
    """

    def __init__(self, text: str) -> None:
        self.t = text
        self.n = len(text)
        self.i = 0
        self.stack: list[str] = []
        self.repairs = 0

    def _skip_ws(self, j: int) -> int:
        t, n = self.t, self.n
        while j < n and t[j] in WS:
            j += 1
        return j

    def _skip(self, j: int, *, hash_comments: bool = True, count: bool = False) -> int:
        """Skip whitespace and comments from `j`; return the next significant index.

        `count`: a skipped comment counts as a repair (when reading, not looking ahead).
        """
        t, n = self.t, self.n
        while True:
            j = self._skip_ws(j)
            if j >= n:
                return j
            c = t[j]
            if c != "/" and (c != "#" or not hash_comments):
                return j
            if count and (t.startswith(("//", "/*"), j) or c == "#"):
                self.repairs += 1
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

    def _quoted_key_at(self, j: int, *, cut: bool = False) -> bool:
        """Is there a quoted string at `j` (on one line) followed by a colon?

        `cut`: also when the text ends before that is decided (`"ke` or `"key"` at the
        very end): a key may be being written there.
        """
        t = self.t
        if j >= self.n or t[j] not in CLOSERS:
            return False
        closers = CLOSERS[t[j]]
        k = j + 1
        while k < self.n and t[k] != "\n":
            if t[k] in closers:
                m = self._skip_ws(k + 1)
                return (m < self.n and t[m] == ":") or (cut and m >= self.n)
            k += 1
        return cut and k >= self.n

    def _key_ahead(self, j: int, *, cut: bool = False) -> bool:
        """After a comma: does a new member (quoted or bare key) start at `j`?

        `cut`: a quoted key cut by the end of the text counts (see `_quoted_key_at`).
        """
        return self._quoted_key_at(j, cut=cut) or bool(_UNQUOTED_KEY_AHEAD.match(self.t, j))

    def _enclosed_by(self, kind: str) -> bool:
        return kind in self.stack[:-1]
