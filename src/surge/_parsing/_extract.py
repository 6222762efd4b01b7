"""Find the candidate values in a model's answer: the places JSON might be.

In order of preference: the whole text as strict JSON; each markdown fenced block; each
balanced `{...}` / `[...]` found by one scan of the text; every value the tolerant parser
reads from the whole text; all of those together as one list (for list targets); and
finally the raw text itself (for strings, enums, numbers and booleans written in prose).
The coercer tries them in this order and keeps the best fit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from surge._parsing._nodes import Node, from_plain
from surge._parsing._repair import parse_document

__all__ = ["Candidate", "any_json", "candidates", "raw_candidate"]


@dataclass(frozen=True)
class Candidate:
    """One reading of the text.

    Attributes:
        node: The value read.
        text: The part of the input it was read from (shown in error messages).
        source: `json`, `fence`, `scan`, `repair`, `all` or `raw`.
        penalty: Added to the coercion score (a combined list is a guess).
    """

    node: Node
    text: str
    source: str
    penalty: int = 0


def _strict(text: str, partial: bool) -> Node | None:
    stripped = text.strip()
    if not stripped or stripped[0] not in '{["-0123456789tfn':
        return None
    try:
        value = json.loads(stripped)
        node = from_plain(value)
    except (ValueError, RecursionError):
        return None
    if partial and node.kind == "number" and text == text.rstrip():
        node.complete = False  # a bare number at the end of a stream may still grow
    return node


def _fences(text: str) -> list[tuple[str, str, int]]:
    """`(block text, content, content start)` for each ``` fenced block (an unclosed last too)."""
    out: list[tuple[str, str, int]] = []
    pos = 0
    while True:
        start = text.find("```", pos)
        if start < 0:
            return out
        j = start + 3
        while j < len(text) and text[j] == "`":
            j += 1
        k = j
        while k < len(text) and (text[k].isalnum() or text[k] in "_+-."):
            k += 1  # the language tag
        end = text.find("```", k)
        content = text[k:] if end < 0 else text[k:end]
        if content.strip():
            out.append((text[start : len(text) if end < 0 else end + 3], content, k))
        if end < 0:
            return out
        pos = end + 3


_OPENER = re.compile(r"[{\[]")
_STRUCTURE = re.compile(r'[{}\[\]"]|//')
_STRING_END = re.compile(r'(?:[^"\\]|\\.)*"', re.S)


def _balanced(text: str) -> list[tuple[str, int]]:
    """One left-to-right scan for balanced `{...}` / `[...]` spans, minding strings.

    A span that never closes ends the scan (its text is left to the tolerant parser).
    """
    out: list[tuple[str, int]] = []
    stack: list[str] = []
    start = 0
    i = 0
    while True:
        m = (_STRUCTURE if stack else _OPENER).search(text, i)
        if m is None:
            return out
        i = m.start()
        c = text[i]
        if c == '"':  # a string inside a structure: jump to its end
            closing = _STRING_END.match(text, i + 1)
            if closing is None:
                return out
            i = closing.end()
            continue
        if c in "{[":
            if not stack:
                start = i
            stack.append("}" if c == "{" else "]")
        elif c in "}]":
            if c != stack[-1]:
                return out  # mismatched: leave it to the tolerant parser
            stack.pop()
            if not stack:
                out.append((text[start : i + 1], start))
        elif text[i - 1] in " \t\n,{[":  # a // comment inside a structure
            line_end = text.find("\n", i)
            if line_end < 0:
                return out
            i = line_end
            continue
        i += 1


def _read(text: str, source: str, partial: bool, allow_tuple: bool = False) -> list[Candidate]:
    node = _strict(text, partial)
    if node is not None and node.kind in ("object", "array"):
        return [Candidate(node, text, source)]
    found = parse_document(text, allow_tuple=allow_tuple)
    return [Candidate(n, text[s:e], source) for n, s, e in found]


def raw_candidate(text: str, *, partial: bool) -> Candidate:
    """The whole text as one string (in partial mode it may still grow)."""
    node = Node("string", text, text=text, quoted=False, complete=not partial)
    return Candidate(node, text, "raw")


def candidates(text: str, *, partial: bool, raw: Candidate) -> Iterator[Candidate]:
    """Every candidate reading of `text`, best first (see the module docstring).

    Lazy: a caller that finds a clean fit early does not pay for the later readings.
    `raw` (from `raw_candidate`) comes last.
    """
    node = _strict(text, partial)
    if node is not None:
        yield Candidate(node, text, "json")
        yield raw
        return
    read: set[str] = set()  # source spans already parsed
    seen: set[str] = set()  # candidate texts already given

    def fresh(found: list[Candidate]) -> Iterator[Candidate]:
        for cand in found:
            if cand.text not in seen:
                seen.add(cand.text)
                yield cand

    covered = bytearray(len(text))  # characters inside a block or span already read
    for block, content, at in _fences(text):
        read.add(content.strip())
        covered[at : at + len(content)] = b"\x01" * len(content)
        found = _read(content, "fence", partial, True)
        yield from fresh([Candidate(c.node, c.text or block, "fence") for c in found])
    scanned: list[Candidate] = []
    for span, at in _balanced(text):
        covered[at : at + len(span)] = b"\x01" * len(span)
        if span.strip() not in read:
            read.add(span.strip())
            scanned.extend(_read(span, "scan", partial))
    yield from fresh(scanned)
    # The whole text, unless every bracket in it was inside something already read.
    loose = any(not covered[m.start()] for m in _OPENER.finditer(text))
    repaired = _read(text, "repair", partial) if loose and text.strip() not in read else []
    yield from fresh(repaired)
    for group in (repaired, scanned):
        if len(group) > 1:
            combined = Node("array", [c.node for c in group])
            yield Candidate(combined, text, "all", penalty=1)
            break
    yield raw


def any_json(text: str, *, partial: bool) -> tuple[Node | None, list[Candidate]]:
    """Read `text` with no target type, as json-repair would.

    Returns:
        The value (several top-level values become one list), or None when the text holds
        no JSON value; and the candidates looked at (for error messages).
    """
    node = _strict(text, partial)
    if node is not None:
        return node, []
    stripped = text.lstrip()
    fenced = []
    if not stripped.startswith(("{", "[")):  # a document that starts as JSON is read whole
        fenced = [
            c for _, content, _ in _fences(text) for c in _read(content, "fence", partial, True)
        ]
    found = fenced or _read(text, "repair", partial)
    if not found:
        return None, []
    if len(found) == 1:
        return found[0].node, found
    return Node("array", [c.node for c in found]), found
