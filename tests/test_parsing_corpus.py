"""Run the shared parsing corpus (../shared/parsing-corpus/cases.jsonl): one test per case.

Each case is `parse(raw, schema, partial=partial)` against its JSON Schema; the result must
equal `expected`, or the parse must raise `OutputParseError` when `expect_error` is true.
Cases surge handles differently on purpose are listed in `DEVIATIONS` with the reason and
run as strict xfails (so a deviation that starts passing is noticed).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from tests._corpus import corpus_cases

from surge._errors import OutputParseError
from surge._parsing import parse

CASES: list[dict[str, Any]] = corpus_cases(module=True)

# Cases surge handles differently on purpose. All six are json_repair choices that
# conflict with BAML's semantics or with other cases of the corpus; docs/parsing.md
# explains each.
DEVIATIONS: dict[str, str] = {
    "jr-schema-empty-string": (
        "a string target takes the raw text verbatim (BAML semantics, required by the brief and"
        " by baml-mod-string-from-string-with-quotes / baml-basics-string), so '\"\"' stays '\"\"'"
    ),
    "jr-stray-quote-line": (
        "same shape as jr-schema-stray-quote-then-comment/-then-bare-key (a quote alone on the"
        " next line), which expect the stray quote kept; surge keeps it in all three"
    ),
    "jr-stray-quote-in-value": (
        "in '\"v\"alue\"' the last quote closes the string (value 'v\"alue'); json_repair"
        " also keeps that closing quote as content"
    ),
    "jr-unquoted-prose-values": (
        "an unquoted value runs to the next key, commas included (BAML: unquoted markdown values"
        " with commas, baml-basics-json-with-markdown-without-quotes); json_repair cuts at the"
        " first comma and drops the rest"
    ),
    "jr-double-escaped-json-in-string": (
        "'\\\\\"' inside a string is an escaped backslash then a quote; json_repair reads runs"
        " of backslashes before a quote as one escaped quote, which corrupts strings that"
        " really end in a backslash"
    ),
    "jr-fenced-json-inside-string": (
        "a string value stays a string even when it holds a fenced JSON example (as BAML's"
        " baml-class-obj-from-str-with-string-foo); json_repair replaces it by the parsed JSON"
    ),
}


def _same(got: Any, want: Any) -> bool:
    """JSON equality that also tells 1 from True and compares floats exactly-ish."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0) or got == want
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(_same(got[k], want[k]) for k in want)
        )
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same, got, want))
    return type(got) is type(want) and got == want


def _params() -> list[Any]:
    out = []
    for case in CASES:
        marks = []
        if case["id"] in DEVIATIONS:
            marks.append(pytest.mark.xfail(reason=DEVIATIONS[case["id"]], strict=True))
        out.append(pytest.param(case, id=case["id"], marks=marks))
    return out


def test_deviations_name_real_cases() -> None:
    ids = {case["id"] for case in CASES}
    assert set(DEVIATIONS) <= ids


@pytest.mark.parametrize("case", _params())
def test_case(case: dict[str, Any]) -> None:
    if case["expect_error"]:
        with pytest.raises(OutputParseError) as info:
            parse(case["raw"], case["schema"], partial=case["partial"])
        assert info.value.raw == case["raw"]
        return
    got = parse(case["raw"], case["schema"], partial=case["partial"])
    assert _same(got, case["expected"]), f"got {got!r}\nwant {case['expected']!r}"
