"""The snippets in tests/typing/ type-check under `mypy --strict --warn-unused-ignores`.

They are never run: they prove that typed APIs stay typed (a prompt function keeps its
signature). Each wrong call there carries a `type: ignore[...]`, which mypy reports as unused
the day the call stops being an error, so the check fails both ways.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SNIPPETS = Path(__file__).parent / "typing"


@pytest.mark.parametrize("snippet", sorted(SNIPPETS.glob("*.py")), ids=lambda p: p.stem)
def test_snippet_type_checks(snippet: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores", str(snippet)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
