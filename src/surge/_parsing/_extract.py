"""Find the candidate values in a model's answer: the places JSON might be.

In order of preference: the whole text as strict JSON; each markdown fenced block; each
balanced `{...}` / `[...]` found by one scan of the text; every value the tolerant parser
reads from the whole text; the balanced spans inside an opener that never closes (a `{`
in prose: used only when nothing before fits); all of those together as one list (for
list targets); and finally the raw text itself (for strings, enums, numbers and booleans
written in prose). The coercer tries them in this order and keeps the best fit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from surge._parsing._depth import DEFAULT_MAX_DEPTH, TooDeep
from surge._parsing._nodes import Node, TooDeepValue, from_plain
from surge._parsing._repair import parse_document
from surge._parsing._work import WORK

__all__ = ["Candidate", "any_json", "candidates", "raw_candidate"]


@dataclass(frozen=True)
class Candidate:
    """One reading of the text.

    Attributes:
        node: The value read.
        text: The part of the input it was read from (shown in error messages).
        source: `json`, `fence`, `scan`, `repair`, `restart` (a span inside an opener
            that never closes: used only when nothing read before it fits), `all` or `raw`.
        penalty: Added to the coercion score (a combined list is a guess).
    """

    node: Node
    text: str
    source: str
    penalty: int = 0


def _strict(text: str, partial: bool, max_depth: int) -> Node | None:
    stripped = text.strip()
    if not stripped or stripped[0] not in '{["-0123456789tfn':
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None  # the tolerant reader will say why (too deep, say)
    try:
        node = from_plain(value, max_depth)
    except TooDeepValue:
        raise TooDeep(max_depth + 1) from None
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
_BRACKET = re.compile(r"[{\[\]}]")
_STRUCTURE = re.compile(r'[{}\[\]"]|//|/\*')
_STRING_END = re.compile(r'(?:[^"\\]|\\.)*"', re.S)
_OPENER_RUN = re.compile(r"[{\[]+")
_CLOSER = {"{": "}", "[": "]"}


@dataclass(frozen=True)
class _Span:
    """A balanced span: its text, where it starts, and what encloses it.

    `shadowed`: it lies inside an opener that never closes (found by a restart).
    `in_json`: that opener looks like the start of a value cut short (`{"key": ...`), not
    like a brace in prose.
    """

    text: str
    start: int
    shadowed: bool
    in_json: bool


_SCAN_BUDGET = 4  # characters examined per character of text, at most
_ARRAY_START = re.compile(r"\s*(?:[\"'\]\[{\d-]|true|false|null)")
_OBJECT_START = re.compile(r"\s*(?:[\"'}]|[\w$-]+\s*:)")


def _json_like(text: str, at: int) -> bool:
    """Does the opener at `at` start a JSON value (`{"key"`, `[1`), not a brace in prose?"""
    start = _OBJECT_START if text[at] == "{" else _ARRAY_START
    return start.match(text, at + 1) is not None


def _balanced(text: str) -> list[_Span]:
    """Balanced `{...}` / `[...]` spans, minding strings, left to right.

    An opener that never closes (prose such as `it must start with {`, a truncated value)
    does not end the search: it restarts just after that opener, so the JSON written after
    it is still found. Each opener is scanned once (what a scan learns about the openers
    inside it is kept), so the work stays linear in the text; `_SCAN_BUDGET` bounds it
    even for text built to defeat that.
    """
    out: list[_Span] = []
    ends: dict[int, int] = {}  # opener -> index after its closer, or -1 - where it failed
    budget = initial = _SCAN_BUDGET * len(text) + 64
    shadow = -1  # spans starting before this index lie inside an opener that never closes
    shadow_json = False
    pos = 0
    while True:
        m = _OPENER.search(text, pos)
        if m is None or budget < 0:
            WORK.scanned += initial - budget
            return out
        start = m.start()
        end = ends.get(start)
        if end is None:
            end, budget = _close(text, start, ends, budget)
        if end < 0:
            fail_at = -1 - end
            # The openers right after this one that fail the same way (`{{{{`) are
            # taken in one step: inside such a run only a `[` can start a value.
            run_end = _OPENER_RUN.match(text, start).end()  # type: ignore[union-attr]
            last = start
            while last + 1 < run_end and ends.get(last + 1) == end:
                last += 1
            json_like = "[" in text[start:last] or _json_like(text, last)
            if fail_at > shadow:
                shadow, shadow_json = fail_at, json_like
            else:
                shadow_json = shadow_json or json_like
            pos = last + 1
            continue
        inside = start < shadow
        out.append(_Span(text[start:end], start, inside, inside and shadow_json))
        pos = end


def _close(text: str, start: int, ends: dict[int, int], budget: int) -> tuple[int, int]:
    """Scan from the opener at `start` to its closer; return `(end, budget left)`.

    `end` is the index after the closer, or `-1 - i` when the scan fails at `i` (a
    mismatched closer, an unterminated string, the end of the text). What the scan
    learns about each opener met on the way goes into `ends`: where each one that closes
    ends, and the failure for the ones still open, since a scan from any of them would
    meet the same failure.
    """
    n = len(text)
    stack = [start]  # the openers still open
    i = start + 1
    result = -1 - n
    while True:
        m = _STRUCTURE.search(text, i)
        if m is None:
            budget -= n - i
            break
        j = m.start()
        budget -= j - i + 1
        if budget < 0:
            break
        c = text[j]
        if c == '"':  # a string inside a structure: jump to its end
            closing = _STRING_END.match(text, j + 1)
            if closing is None:
                budget -= n - j
                break
            budget -= closing.end() - j
            i = closing.end()
            continue
        if c in "{[":
            known = ends.get(j)
            if known is None:
                # A run of openers none of which is known yet goes on the stack at
                # once, each costing one character of budget as if met one by one.
                k = _OPENER_RUN.match(text, j).end()  # type: ignore[union-attr]
                if k - j > 1 and ends.keys().isdisjoint(range(j + 1, k)):
                    extra = min(k - j - 1, budget)
                    stack.extend(range(j, j + 1 + extra))
                    budget -= k - j - 1
                    if budget < 0:
                        budget = -1
                        break
                    i = k
                    continue
                stack.append(j)
                i = j + 1
                continue
            if known < 0:
                result = known  # it never closes, so neither does anything around it
                break
            i = known  # already scanned: skip to its end
            continue
        if c in "}]":
            if c != _CLOSER[text[stack[-1]]]:
                result = -1 - j  # mismatched: leave it to the tolerant parser
                break
            opened = stack.pop()
            ends[opened] = j + 1
            if not stack:
                return j + 1, budget
            i = j + 1
            continue
        if text[j + 1] == "*":  # a /* */ comment: brackets and quotes in it are text
            comment_end = text.find("*/", j + 2)
            if comment_end < 0:
                budget -= n - j
                break
            budget -= comment_end + 2 - j
            i = comment_end + 2
            continue
        if text[j - 1] in " \t\n,{[":  # a // comment inside a structure
            line_end = text.find("\n", j)
            if line_end < 0:
                budget -= n - j
                break
            budget -= line_end - j
            i = line_end
            continue
        i = j + 1
    ends.update(dict.fromkeys(stack, result))
    return result, budget


def _read(
    text: str,
    source: str,
    partial: bool,
    max_depth: int,
    allow_tuple: bool = False,
    *,
    strict: bool = True,
) -> list[Candidate]:
    """The values in `text`: the strict reading if it is one structure, else the tolerant one.

    `strict=False`: `text` is known not to be strict JSON (skip trying it again).
    """
    node = _strict(text, partial, max_depth) if strict else None
    if node is not None and node.kind in ("object", "array"):
        return [Candidate(node, text, source)]
    found = parse_document(text, allow_tuple=allow_tuple, max_depth=max_depth)
    return [Candidate(n, text[s:e], source) for n, s, e in found]


def raw_candidate(text: str, *, partial: bool) -> Candidate:
    """The whole text as one string (in partial mode it may still grow)."""
    node = Node("string", text, text=text, quoted=False, complete=not partial)
    return Candidate(node, text, "raw")


def candidates(
    text: str, *, partial: bool, raw: Candidate, max_depth: int = DEFAULT_MAX_DEPTH
) -> Iterator[Candidate]:
    """Every candidate reading of `text`, best first (see the module docstring).

    Lazy: a caller that finds a clean fit early does not pay for the later readings.
    `raw` (from `raw_candidate`) comes last.

    A reading nested deeper than `max_depth` is skipped, and then a candidate with the
    source `too-deep` comes just before `raw`.
    """
    deep: list[TooDeep] = []  # readings cut short by the depth limit
    try:
        node = _strict(text, partial, max_depth)
    except TooDeep as exc:
        deep.append(exc)
        node = None
    if node is not None:
        yield Candidate(node, text, "json")
        yield raw
        return
    # The whole text is not strict JSON, so a span that is all of it is not either: it is
    # not tried again (json.loads failing at a megabyte's last character costs a full read).
    not_json = None if deep else text.strip()
    read: set[str] = set()  # source spans already parsed
    seen: set[str] = set()  # candidate texts already given

    def fresh(found: list[Candidate]) -> Iterator[Candidate]:
        for cand in found:
            if cand.text not in seen:
                seen.add(cand.text)
                yield cand

    def read_all(part: str, source: str, allow_tuple: bool = False) -> list[Candidate]:
        try:
            strict = part.strip() != not_json
            return _read(part, source, partial, max_depth, allow_tuple, strict=strict)
        except TooDeep as exc:
            deep.append(exc)
            return []

    covered = bytearray(len(text))  # characters inside a block or span already read
    fenced: list[Candidate] = []
    for block, content, at in _fences(text):
        read.add(content.strip())
        covered[at : at + len(content)] = b"\x01" * len(content)
        found = [
            Candidate(c.node, c.text or block, "fence") for c in read_all(content, "fence", True)
        ]
        fenced.extend(found)
        yield from fresh(found)
    scanned: list[Candidate] = []
    restarted: list[tuple[Candidate, bool]] = []  # spans inside an opener that never closes
    for span in _balanced(text):
        at, body = span.start, span.text
        covered[at : at + len(body)] = b"\x01" * len(body)
        if body.strip() not in read and not (partial and span.in_json):
            # Streaming, a value inside a value still being written is not the answer.
            read.add(body.strip())
            if span.shadowed:
                restarted.extend((c, span.in_json) for c in read_all(body, "restart"))
            else:
                scanned.extend(read_all(body, "scan"))
    yield from fresh(scanned)
    # The whole text, unless every bracket in it was inside something already read (a
    # stray closer counts: `{"a": 1}, "b": 2}` is one object closed too early).
    loose = any(not covered[m.start()] for m in _BRACKET.finditer(text))
    repaired = read_all(text, "repair") if loose and text.strip() not in read else []
    yield from fresh(repaired)
    # Not a part of a value too deep to read (that would be a shorter value, silently).
    yield from fresh([c for c, in_json in restarted if not (deep and in_json)])
    for group in (fenced, repaired, scanned):  # several values as one list
        if len(group) > 1:
            combined = Node("array", [c.node for c in group])
            yield Candidate(combined, text, "all", penalty=1)
            break
    if deep:  # when nothing has fitted so far, the error is the depth
        yield Candidate(Node("missing", None), text, "too-deep")
    yield raw


def any_json(
    text: str, *, partial: bool, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[Node | None, list[Candidate]]:
    """Read `text` with no target type, as json-repair would.

    Returns:
        The value (several top-level values become one list), or None when the text holds
        no JSON value; and the candidates looked at (for error messages).
    """
    node = _strict(text, partial, max_depth)
    if node is not None:
        return node, []
    stripped = text.lstrip()
    fenced = []
    if not stripped.startswith(("{", "[")):  # a document that starts as JSON is read whole
        fenced = [
            c
            for _, content, _ in _fences(text)
            for c in _read(content, "fence", partial, max_depth, True)
        ]
    found = fenced or _read(text, "repair", partial, max_depth)
    if not found:
        return None, []
    if len(found) == 1:
        return found[0].node, found
    return Node("array", [c.node for c in found]), found
