"""The walls between surge's layers, read from every module's imports (docs/architecture.md).

Each rule names the modules it covers and what they may import; a violation fails with the
file, the line and the import, so whoever crossed a wall sees which one. Imports under
`if TYPE_CHECKING:` and inside functions count too: a wall that holds only at run time
still couples the layers.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import surge

SRC = Path(surge.__file__).parent

TRANSPORT_MAY_IMPORT = ("surge._transport", "surge._config", "surge._errors", "surge._timings")
PARSER_MAY_IMPORT = ("surge._parsing", "surge._errors")


def _module_name(src: Path, path: Path) -> str:
    parts = ["surge", *path.relative_to(src).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(src: Path, name: str) -> bool:
    base = src.joinpath(*name.split(".")[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(src: Path, path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line, absolute module name) for every module the file imports."""
    module = _module_name(src, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*parts, node.module] if node.module else parts)
            else:
                name = node.module or ""
            yield node.lineno, name
            for alias in node.names:  # `from surge import _client` imports surge._client
                if name.split(".")[0] == "surge" and _is_module(src, f"{name}.{alias.name}"):
                    yield node.lineno, f"{name}.{alias.name}"


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(
    src: Path,
    covered: tuple[str, ...],
    allowed: tuple[str, ...],
    forbidden: tuple[str, ...] = (),
) -> list[str]:
    """Imports by the `covered` modules (and their submodules; `"surge"` is the top module
    alone) of surge modules outside `allowed`, or of anything in `forbidden` (a library, or a
    part of surge that `allowed` would let through)."""
    found = []
    for path in sorted(src.rglob("*.py")):
        module = _module_name(src, path)
        if not (module in covered or _within(module, tuple(c for c in covered if c != "surge"))):
            continue
        for line, name in _imports(src, path):
            ours = name == "surge" or name.startswith("surge.")
            if (ours and not _within(name, allowed)) or _within(name, forbidden):
                found.append(f"{path.relative_to(src.parent).as_posix()}:{line} imports {name}")
    return found


def test_the_transport_knows_nothing_of_llms() -> None:
    # The pool moves HTTP requests for any httpx user: no client, wire types or models.
    assert _violations(SRC, ("surge._transport",), TRANSPORT_MAY_IMPORT, ("pydantic",)) == []


def test_the_parser_knows_nothing_of_the_network() -> None:
    # Text and a target type in, a value or an OutputParseError out.
    network = ("httpx", "anyio", "h2", "hpack", "h11", "asyncio", "trio")
    assert _violations(SRC, ("surge._parsing",), PARSER_MAY_IMPORT, network) == []


def test_errors_import_nothing_of_ours() -> None:
    # Every layer raises them, so they sit below every layer.
    assert _violations(SRC, ("surge._errors",), ("surge._errors",)) == []


LIBRARY_MUST_NOT_IMPORT = ("surge.testing", "surge._cli")


def _library(src: Path) -> tuple[str, ...]:
    names = (_module_name(src, p) for p in src.rglob("*.py"))
    return tuple(n for n in names if not _within(n, LIBRARY_MUST_NOT_IMPORT))


def test_only_the_simulator_and_the_cli_import_the_simulator_or_the_cli() -> None:
    # The library runs without the `sim` extra, and the CLI is an entry point, not a layer.
    assert _violations(SRC, _library(SRC), ("surge",), LIBRARY_MUST_NOT_IMPORT) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from surge._client import LLMClient\n",
            ["surge/_transport/probe.py:1 imports surge._client"],
        ),
        ("import pydantic\n", ["surge/_transport/probe.py:1 imports pydantic"]),
        (
            "from surge import _types\n",
            [
                "surge/_transport/probe.py:1 imports surge",
                "surge/_transport/probe.py:1 imports surge._types",
            ],
        ),
        (
            "def f():\n    from .. import _decode\n",
            [
                "surge/_transport/probe.py:2 imports surge",
                "surge/_transport/probe.py:2 imports surge._decode",
            ],
        ),
        ("from surge._config import PoolConfig\nfrom . import h1\n", []),
    ],
)
def test_a_forbidden_import_fails_the_check_by_name(
    source: str, expected: list[str], tmp_path: Path
) -> None:
    # The check itself, on a copy of the tree with one more module in the transport.
    tree = tmp_path / "surge"
    shutil.copytree(SRC, tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "_transport" / "probe.py").write_text(source)
    assert _violations(tree, ("surge._transport",), TRANSPORT_MAY_IMPORT, ("pydantic",)) == expected


def test_the_library_check_names_a_module_that_imports_the_simulator(tmp_path: Path) -> None:
    tree = tmp_path / "surge"
    shutil.copytree(SRC, tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "_probe.py").write_text("def f():\n    from surge.testing import SimulatedServer\n")
    assert _violations(tree, _library(tree), ("surge",), LIBRARY_MUST_NOT_IMPORT) == [
        "surge/_probe.py:2 imports surge.testing"
    ]


def test_only_the_simulator_imports_h2() -> None:
    # The HTTP/2 client is surge's own (hpack for header blocks): `h2` is hypercorn's, in
    # the `sim` extra, and a library import of it would fail where that extra is not installed.
    assert _violations(SRC, _library(SRC), ("surge",), ("h2", "hyperframe")) == []
