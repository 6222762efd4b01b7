"""Which drop-in environment this is, and what a test of each SDK line needs.

Two environments run the drop-in tests (docs/drop-in.md, "How the drop-in tests run"):

- "legacy", the main `.venv` (`pip install -e ".[dev]"`): openai 2.x on httpx.
- "instructor", `.venv-instructor` (`pip install -e ".[dropin-instructor]"`): instructor over
  openai 2.x (it cannot live in the main env: see pyproject.toml).
- "current", `.venv-current` (`pip install -e ".[dropin-current]"`): openai 3.x on httpx2,
  pydantic-ai 2.x, openai-agents.

`SURGE_DROPIN_ENV` names the environment (`.ci/run` sets it for each); unset, it is read from
the installed openai's major version (and whether instructor is there). A test whose SDK
line is not installed skips with a reason naming the environment that runs it; under CI
(`CI=true`) the same test *fails* when this environment is the one meant to have it, so a
broken install cannot pass by skipping.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from types import ModuleType

import pytest

__all__ = ["ENV", "need"]

_INSTALL = {
    "legacy": 'the main env: pip install -e ".[dev]"',
    "instructor": "the instructor env: python3 -m venv .venv-instructor && "
    '.venv-instructor/bin/pip install -e ".[dropin-instructor]"',
    "current": "the second env: python3 -m venv .venv-current && "
    '.venv-current/bin/pip install -e ".[dropin-current]"',
}


def _openai_major() -> int | None:
    try:
        return int(importlib.metadata.version("openai").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return None


def _env() -> str:
    named = os.environ.get("SURGE_DROPIN_ENV")
    if named:
        if named not in _INSTALL:
            raise RuntimeError(f"SURGE_DROPIN_ENV must be one of {sorted(_INSTALL)}, not {named!r}")
        return named
    if (_openai_major() or 0) >= 3:
        return "current"
    return "instructor" if importlib.util.find_spec("instructor") else "legacy"


ENV = _env()


def need(line: str, module: str, *, openai_major: int | None = None) -> ModuleType:
    """Import `module` for a test of SDK line `line` ("legacy", "instructor", "current"), or skip.

    Args:
        line: The environment the test belongs to.
        module: The module to import, e.g. "pydantic_ai".
        openai_major: The openai major version the line needs (2 for "legacy", 3 for
            "current"); checked only when given.

    Returns:
        The module.
    """
    problem = None
    found: ModuleType | None = None
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        problem = f"{module} is not installed ({exc})"
    if problem is None and openai_major is not None:
        major = _openai_major()
        if major != openai_major:
            problem = f"needs openai {openai_major}.x, found {major}.x"
    if problem is None:
        assert found is not None
        return found
    reason = f"{problem}: a {line!r} drop-in test, run in {_INSTALL[line]} (this is {ENV!r})"
    if os.environ.get("CI") == "true" and line == ENV:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)
