"""The public surface: `__all__` is complete and accurate, the package is typed, and
`import surge` stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
from pathlib import Path

import surge


def test_all_names_exist() -> None:
    missing = [name for name in surge.__all__ if not hasattr(surge, name)]
    assert missing == []


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(surge).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public.discard("annotations")
    assert sorted(public - set(surge.__all__)) == []


def test_all_is_sorted_and_unique() -> None:
    assert list(surge.__all__) == sorted(set(surge.__all__))


def test_every_public_class_and_function_has_a_docstring() -> None:
    undocumented = [
        name
        for name in surge.__all__
        if (inspect.isclass(getattr(surge, name)) or inspect.isfunction(getattr(surge, name)))
        and not (getattr(surge, name).__doc__ or "").strip()
    ]
    assert undocumented == []


def test_package_is_typed() -> None:
    assert (Path(surge.__file__).parent / "py.typed").is_file()


def test_import_is_light() -> None:
    code = (
        "import sys, surge\n"
        "heavy = [m for m in ('hypercorn', 'surge.testing', 'surge._cli', 'trio', 'openai', 'rich',"
        " 'httpx2') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_errors_form_one_tree() -> None:
    error_types = [
        getattr(surge, name)
        for name in surge.__all__
        if isinstance(getattr(surge, name), type) and issubclass(getattr(surge, name), Exception)
    ]
    assert len(error_types) > 10
    assert all(issubclass(t, surge.SurgeError) for t in error_types)
    assert issubclass(surge.PoolTimeout, surge.Timeout)
    assert issubclass(surge.Timeout, TimeoutError)
    assert issubclass(surge.RateLimitError, surge.APIStatusError)
