"""Choose the reading of a text that best fits a schema.

Every candidate (see `_extract`) is coerced to the schema; the ones that fit are ranked
by score (fewest coercions and repairs first; ties keep the candidate order, so the
first of several equally good objects wins). The ones that do not fit are kept as
`ParseAttempt`s, so an error can say what was tried and why each failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from surge._errors import OutputParseError, ParseAttempt
from surge._parsing._coerce import ABSENT, Coercer, Mismatch
from surge._parsing._depth import DEFAULT_MAX_DEPTH, TooDeep
from surge._parsing._extract import Candidate, any_json, candidates, raw_candidate
from surge._parsing._nodes import repairs, to_plain
from surge._parsing._prefix import plain_so_far
from surge._parsing._schema import Schema

__all__ = ["Ranked", "fail", "rank"]


@dataclass(frozen=True)
class Ranked:
    """A candidate that fits: its value (plain JSON), its score and where it came from.

    The score is twice the coercion penalty plus the number of repairs made reading it.
    """

    value: Any
    score: int
    candidate: Candidate


def rank(
    text: str, schema: Schema, *, partial: bool, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[list[Ranked], list[ParseAttempt]]:
    """Coerce every candidate reading of `text` to `schema`.

    Returns:
        The fitting readings, best first, and a `ParseAttempt` for each one that failed.

    Raises:
        TooDeep: A value read nests deeper than `max_depth`.
    """
    if schema.kind == "any":
        node, _ = any_json(text, partial=partial, max_depth=max_depth)
        if node is None:
            if partial:  # streaming, and no JSON written yet: no value so far
                return [Ranked(None, 0, raw_candidate(text, partial=True))], []
            return [], [ParseAttempt(text, "no JSON value found in the text")]
        value = plain_so_far(node) if partial and not node.complete else to_plain(node)
        value = None if value is ABSENT else value
        return [Ranked(value, 0, Candidate(node, text, "repair"))], []
    raw = raw_candidate(text, partial=partial)
    coercer = Coercer(partial=partial, raw=raw.node, max_depth=max_depth)
    ranked: list[Ranked] = []
    attempts: list[ParseAttempt] = []
    tried = 0
    lists = _accepts(schema, "array")
    structured = lists or _accepts(schema, "object") or _accepts(schema, "map")
    for cand in candidates(text, partial=partial, raw=raw, max_depth=max_depth):
        tried += 1
        if cand.source == "all" and not lists:
            continue  # several values as one list: only a list target can use that
        if cand.source == "restart" and ranked:
            continue  # JSON after a stray `{` in prose: only when nothing else fits
        if cand.source == "too-deep":
            if ranked or _accepts(schema, "string"):
                continue  # a string target still takes the raw text
            raise TooDeep(max_depth + 1)  # nothing fits, and a part was too deep to read
        try:
            value, penalty = coercer.coerce(cand.node, schema)
        except Mismatch as exc:
            if not (cand.source == "raw" and attempts and (structured or attempts[0].text == text)):
                attempts.append(ParseAttempt(cand.text, _label(cand) + str(exc)))
            continue
        if value is ABSENT:
            value = [] if schema.non_null().kind == "array" and not schema.nullable else None
        # Fewer coercions and fewer repairs win; a repair costs less than a coercion.
        score = 2 * (penalty + cand.penalty) + repairs(cand.node)
        ranked.append(Ranked(value, score, cand))
        if score == 0:
            break  # nothing later can beat a clean fit
    ranked.sort(key=lambda r: r.score)
    if not ranked and partial and tried == 1:
        # Streaming, and no JSON has been written yet (only prose, or nothing): no value
        # so far rather than an error, as more text may bring it.
        ranked.append(Ranked(None, 0, raw))
    return ranked, attempts


def _accepts(schema: Schema, kind: str) -> bool:
    if schema.kind == "union":
        return any(b.kind == kind for b in schema.branches)
    return schema.kind == kind


def _label(cand: Candidate) -> str:
    return {
        "json": "",
        "fence": "fenced block: ",
        "scan": "",
        "restart": "",
        "repair": "repaired: ",
        "all": "all values as a list: ",
        "raw": "whole text: ",
    }.get(cand.source, "")


def fail(text: str, target: Any, what: str, attempts: list[ParseAttempt]) -> OutputParseError:
    """Build the error for a text that no candidate could be read from."""
    if not attempts:
        attempts = [ParseAttempt(text, "nothing in the text could be read")]
    return OutputParseError(
        f"could not read the model output as {what} ({len(attempts)} candidate(s) tried)",
        raw=text,
        target=target,
        attempts=attempts,
    )
