"""The shared parsing corpus (../shared/parsing-corpus/cases.jsonl), for the tests that run it.

It lives beside the checkout (as in CI), or where SURGE_PARSING_CORPUS says; it is not in
the sdist. Without it a test skips with the reason, except where CI must run it (CI=true,
or SURGE_REQUIRE_CORPUS=1 as .ci/run sets): there a missing corpus fails the run instead
of skipping part of the suite in silence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(
    os.environ.get("SURGE_PARSING_CORPUS")
    or Path(__file__).resolve().parents[2] / "shared" / "parsing-corpus" / "cases.jsonl"
)


def corpus_cases(*, module: bool = False) -> list[dict[str, Any]]:
    """The corpus cases, in file order; skip (or under CI fail) when it is missing.

    Args:
        module: Called at import time of a test module: skip the whole module.
    """
    if not CORPUS.is_file():
        why = f"the parsing corpus is not here ({CORPUS}); it lives beside the checkout"
        if os.environ.get("SURGE_REQUIRE_CORPUS", "0") != "0" or os.environ.get("CI") == "true":
            pytest.fail(f"{why}; SURGE_REQUIRE_CORPUS or CI=true requires it", pytrace=False)
        pytest.skip(why, allow_module_level=module)
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
