"""Read a scalar out of a piece of text: an enum value, a number, a boolean.

Each function returns `(value, penalty)`, the penalty growing with how much guessing it
took, or raises `ValueError` with a readable reason (no match, or an ambiguous one).

Enum/literal matching tries, in order: the exact text; the text without surrounding
quotes and markdown; a case-, accent- and punctuation-insensitive comparison; then a
search of the text for the names as whole words (case-sensitive, then insensitive), where
the name mentioned most often wins and a tie is an error.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from surge._parsing._work import WORK

__all__ = ["bool_from_text", "match_choice", "number_from_text"]

_TRIM = " \t\r\n\"'`*_.,:;!?()[]{}<>"


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _loose(text: str) -> str:
    """Case- and accent-folded, every run of punctuation, `_` or space made one space."""
    return " ".join(re.sub(r"[\W_]+", " ", _fold(text)).split())


@lru_cache(maxsize=4096)
def _word(name: str, loose: bool) -> re.Pattern[str]:
    if loose:
        return re.compile(r"(?<!\S)" + re.escape(name) + r"(?!\S)")
    return re.compile(r"(?<![^\W_])" + re.escape(name) + r"(?![^\W_])")


def _unique(hits: set[int], text: str, names: Sequence[Sequence[str]]) -> int | None:
    if len(hits) == 1:
        return hits.pop()
    if hits:
        shown = ", ".join(repr(names[i][0]) for i in sorted(hits))
        raise ValueError(f"{text!r} matches several values ({shown})")
    return None


def _search(text: str, names: Sequence[Sequence[str]], loose: bool) -> int | None:
    """Count whole-word mentions of each value; the most mentioned wins, a tie fails."""
    haystack = _loose(text) if loose else text
    needles = sorted(
        ((i, _loose(n) if loose else n) for i, ns in enumerate(names) for n in ns),
        key=lambda item: -len(item[1]),
    )
    taken = bytearray(len(haystack))
    counts: dict[int, int] = {}
    for i, needle in needles:
        if not needle:
            continue
        for m in _word(needle, loose).finditer(haystack):
            if any(taken[m.start() : m.end()]):
                continue  # inside a longer name already counted
            taken[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
            counts[i] = counts.get(i, 0) + 1
    if not counts:
        return None
    top = max(counts.values())
    best = {i for i, c in counts.items() if c == top}
    if len(best) > 1:
        shown = " and ".join(repr(names[i][0]) for i in sorted(best))
        raise ValueError(f"ambiguous: {shown} are each mentioned {top} time(s)")
    return best.pop()


def match_choice(text: str, names: Sequence[Sequence[str]]) -> tuple[int, int]:
    """Find which of several values `text` names.

    Args:
        text: The model's text for the value.
        names: For each allowed value, the names it may be written as.

    Returns:
        `(index of the value, penalty)`.

    Raises:
        ValueError: No value is named, or several are, equally.
    """
    stripped = text.strip()
    for penalty, probe in ((0, stripped), (1, stripped.strip(_TRIM))):
        found = _unique({i for i, ns in enumerate(names) if probe in ns}, text, names)
        if found is not None:
            return found, penalty
    compact = _loose(stripped).replace(" ", "")
    if compact:
        hits = {
            i for i, ns in enumerate(names) for n in ns if _loose(n).replace(" ", "") == compact
        }
        found = _unique(hits, text, names)
        if found is not None:
            return found, 1
    for penalty, loose in ((2, False), (3, True)):
        found = _search(text, names, loose)
        if found is not None:
            return found, penalty
    allowed = ", ".join(repr(ns[0]) for ns in names[:8])
    more = "" if len(names) <= 8 else f" (and {len(names) - 8} more)"
    raise ValueError(f"{_short(text)} names none of {allowed}{more}")


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


# Each pattern below has one way to match a given text (no two quantifiers compete for the
# same digits), so a failed `fullmatch` on a long run of digits costs linear time.
# (`\d*\.?\d+` would try every split of the run between its two quantifiers: quadratic.)
_PLAIN = re.compile(r"[-+]?(?:\d+(?:_\d+)*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FRACTION = re.compile(r"([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")
_ANY_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")


_NOT_NUMERIC = re.compile(r"[^\d+\-.,_/eE\s]")  # a character none of the patterns accepts


def _to_number(token: str) -> float | int | None:
    if _NOT_NUMERIC.search(token):
        return None  # one scan, instead of three failed fullmatches
    token = token.replace("_", "")
    if _THOUSANDS.fullmatch(token):
        token = token.replace(",", "")
    elif not _PLAIN.fullmatch(token):
        m = _FRACTION.fullmatch(token)
        if m and float(m.group(2)) != 0:
            return float(m.group(1)) / float(m.group(2))
        return None
    if _INTEGER.fullmatch(token):
        return int(token)
    return float(token)


def number_from_text(text: str, *, integer: bool) -> tuple[int | float, int]:
    """Read a number from text: `12,111`, `12.11.`, `1/5`, `$3`, `5%`, `about 7 days`.

    Raises:
        ValueError: No number, several different numbers, or (for `integer`) a number
            that is not whole.
    """
    WORK.regex_input += 2 * len(text)  # the token, then the text searched for numbers
    token = text.strip().strip("*`\"' ")
    token = token.lstrip("$\u20ac\u00a3").rstrip("%").rstrip(".").strip()
    value = _to_number(token)
    penalty = 1
    if value is None:
        found = {_to_number(m.group()) for m in _ANY_NUMBER.finditer(text)}
        found.discard(None)
        if len(found) > 1:
            raise ValueError(
                f"{_short(text)} holds several numbers, so which one is meant is unclear"
            )
        if not found:
            raise ValueError(f"{_short(text)} is not a number")
        value = found.pop()
        penalty = 3
    assert value is not None
    if integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{_short(text)} is not a whole number")
            value = int(value)
        return value, penalty
    return float(value), penalty


_TRUE = frozenset({"true", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "no", "n", "off", "0"})


def bool_from_text(text: str) -> tuple[bool, int]:
    """Read a boolean: `true`, `Yes`, `**True**`, or one of true/false named in prose.

    Raises:
        ValueError: Neither named, or both (ambiguous).
    """
    word = text.strip().strip(_TRIM).casefold()
    if word in _TRUE:
        return True, 1
    if word in _FALSE:
        return False, 1
    found = {
        m.group().casefold()
        for m in re.finditer(r"(?<![^\W_])(?:true|false)(?![^\W_])", text, re.I)
    }
    if found == {"true"}:
        return True, 2
    if found == {"false"}:
        return False, 2
    if found:
        raise ValueError(f"ambiguous: {_short(text)} says both true and false")
    raise ValueError(f"{_short(text)} is not a boolean")
