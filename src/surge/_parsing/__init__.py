"""The lenient, schema-aligned parser: model text and a target type in, a value out.

`parse(text, target, *, partial=False)` reads JSON from prose and markdown fences,
repairs what language models get wrong (quotes, commas, comments, truncation, ...),
coerces values toward the target, and raises `OutputParseError` listing every candidate
it tried when nothing fits. See docs/parsing.md.
"""

from __future__ import annotations

from surge._parsing._targets import parse

__all__ = ["parse"]
