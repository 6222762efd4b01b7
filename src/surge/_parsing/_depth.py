"""The one nesting rule: a value nested deeper than `max_depth` is an error, never cut.

Depth counts containers: `1` is 0 deep, `[1]` is 1, `{"a": [1]}` is 2. The default,
200, is the depth pydantic-core's JSON reader accepts, so clean JSON on the fast path and
repaired JSON on the lenient path follow the same rule. The lenient path is recursive
(a few Python frames per level), so it runs with enough recursion room for `max_depth`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from surge._errors import ConfigError
from surge._parsing._work import WORK

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "LARGEST_MAX_DEPTH",
    "TooDeep",
    "check_max_depth",
    "deeper_than",
    "nesting_depth",
    "recursion_room",
]

DEFAULT_MAX_DEPTH = 200
LARGEST_MAX_DEPTH = 1000
_FRAMES_PER_LEVEL = 8  # Python frames the reader, coercer and builder use per level, at most

_TOKENS = re.compile(r'[{}\[\]"]')
_STRING_END = re.compile(r'(?:[^"\\]|\\.)*"', re.S)


class TooDeep(Exception):
    """Raised inside the parser when a value is nested deeper than the limit."""


def check_max_depth(max_depth: object) -> int:
    """Validate the `max_depth` setting.

    Raises:
        ConfigError: Not an int between 1 and `LARGEST_MAX_DEPTH`.
    """
    if type(max_depth) is not int or not 1 <= max_depth <= LARGEST_MAX_DEPTH:
        raise ConfigError(
            f"max_depth must be an int from 1 to {LARGEST_MAX_DEPTH}, got {max_depth!r}"
        )
    return max_depth


def nesting_depth(text: str) -> int:
    """How deep the brackets of `text` nest, outside double-quoted strings (linear)."""
    depth = deepest = 0
    i, n = 0, len(text)
    while True:
        m = _TOKENS.search(text, i)
        if m is None:
            WORK.scanned += n - i
            return deepest
        j = m.start()
        WORK.scanned += j - i + 1
        c = text[j]
        if c == '"':
            closing = _STRING_END.match(text, j + 1)
            if closing is None:
                return deepest
            WORK.scanned += closing.end() - j
            i = closing.end()
            continue
        if c in "{[":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
        i = j + 1


def deeper_than(text: str, max_depth: int) -> bool:
    """Whether `text` nests deeper than `max_depth` (cheap when it has few brackets)."""
    if text.count("{") + text.count("[") <= max_depth:
        return False
    return nesting_depth(text) > max_depth


@contextmanager
def recursion_room(max_depth: int) -> Iterator[None]:
    """Make sure Python's recursion limit leaves room to read `max_depth` levels.

    Raises the limit for the duration when it is too low (and puts it back after, unless
    someone else changed it meanwhile); does nothing otherwise.
    """
    needed = _FRAMES_PER_LEVEL * max_depth + 400
    old = sys.getrecursionlimit()
    if old >= needed:
        yield
        return
    sys.setrecursionlimit(needed)
    try:
        yield
    finally:
        if sys.getrecursionlimit() == needed:
            sys.setrecursionlimit(old)
