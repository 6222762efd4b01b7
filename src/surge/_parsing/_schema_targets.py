"""JSON Schema dict targets: compiled once per schema, and their fast path for clean JSON.

A schema dict is compiled (`compile_schema`, and on first use a pydantic-core validator,
see _schema_validator.py) once, and found again by the dict's identity (the same dict,
unchanged since) or, for another dict, by its content (a JSON dump of it, and equality:
a schema built afresh for every call is compiled once too). Both caches are bounded.

`clean_value(entry, text, max_depth)` is the fast path: the value of clean JSON text
that fits the schema with no coercion, or `NotClean` when the lenient path must read it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any, ClassVar

from surge._parsing._clean import NotClean, clean
from surge._parsing._depth import DEFAULT_MAX_DEPTH
from surge._parsing._schema import compile_schema
from surge._parsing._schema_validator import Undecided, schema_validator

__all__ = ["SchemaEntry", "clean_value", "schema_entry"]

_CACHE_LIMIT = 512
_NOT_BUILT: Any = object()


class SchemaEntry:
    """A schema dict compiled once.

    Attributes:
        copy: A deep copy of the dict, taken when it was compiled (what was compiled,
            and what a dict given later is compared with).
        schema: The compiled `Schema`.
        compiled: How many entries have been compiled in this process (class-wide; for
            tests of the cache).
    """

    __slots__ = ("_validator", "copy", "schema")
    compiled: ClassVar[int] = 0

    def __init__(self, target: dict[str, Any]) -> None:
        self.copy = copy.deepcopy(target)
        self.schema = compile_schema(self.copy)
        self._validator: Callable[[str], Any] | None = _NOT_BUILT
        SchemaEntry.compiled += 1

    @property
    def validator(self) -> Callable[[str], Any] | None:
        """The schema's pydantic-core check of clean JSON (built on first use), or None."""
        if self._validator is _NOT_BUILT:
            self._validator = schema_validator(self.schema)
        return self._validator


# id(schema dict) -> (the dict, its entry), and JSON dump of a schema -> its entry.
_BY_ID: dict[int, tuple[dict[str, Any], SchemaEntry]] = {}
_BY_CONTENT: dict[str, SchemaEntry] = {}


def schema_entry(target: dict[str, Any]) -> SchemaEntry:
    """The compiled entry of a schema dict (compiled now if no equal schema was before).

    Raises:
        ConfigError: The schema is not a dict, or a `$ref` points nowhere.
    """
    held = _BY_ID.get(id(target))
    # The same dict, unchanged since it was compiled (a changed one is looked up again).
    if held is not None and held[0] is target and held[1].copy == target:
        return held[1]
    try:
        dump: str | None = json.dumps(target)
    except (TypeError, ValueError):  # not JSON (a set, a cycle): compiled, not shared
        dump = None
    entry = _BY_CONTENT.get(dump) if dump is not None else None
    # Equal too: the dump does not tell a tuple from a list, or 1 from "1" as a key.
    if entry is None or entry.copy != target:
        entry = SchemaEntry(target)
        if dump is not None:
            _bounded_put(_BY_CONTENT, dump, entry)
    _bounded_put(_BY_ID, id(target), (target, entry))
    return entry


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if key not in cache and len(cache) >= _CACHE_LIMIT:
        del cache[next(iter(cache))]  # the oldest
    cache[key] = value


def clean_value(entry: SchemaEntry, text: str, max_depth: int) -> Any:
    """The value of `text` when it is clean JSON that fits the schema with no coercion.

    Raises:
        NotClean: It is not; the lenient path reads it.
    """
    validator = entry.validator if max_depth == DEFAULT_MAX_DEPTH else None
    if validator is not None:
        try:
            return validator(text)  # one pass: read and checked by pydantic-core
        except Undecided:
            pass
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise NotClean from None
    return clean(value, entry.schema, max_depth)
