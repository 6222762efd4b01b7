"""Counters of the work the lenient parser does, so tests can bound it without a timer.

Every loop of the parser that could grow with the input adds what it stepped over to one
module-level `WORK` (cumulative; take a `snapshot()` before and after a parse). A test then
asserts a bound such as "at most 8 characters examined per character of input" at a size
where a quadratic loop would take seconds, which a timer on a shared machine cannot do
reliably. The counters are added in bulk (once per loop, never per character), so they cost
nothing measurable.
"""

from __future__ import annotations

__all__ = ["WORK", "Work"]


class Work:
    """Cumulative counts of parser work (process-wide; not thread-exact).

    Attributes:
        scanned: Characters examined by the scans over the text: the balanced-bracket
            scan, the tolerant reader's string and look-ahead loops, the trailing-blank
            trim of a truncated string, the depth scan.
        regex_input: Characters handed to the number and enum regexes (each of which
            runs in time linear in its input).
        coercions: Calls of the schema coercer (one per value per schema tried).
        objects: Object coercions (one per object node per object schema tried).
    """

    __slots__ = ("coercions", "objects", "regex_input", "scanned")

    def __init__(self) -> None:
        self.scanned = 0
        self.regex_input = 0
        self.coercions = 0
        self.objects = 0

    def snapshot(self) -> dict[str, int]:
        """The counters now, as a dict (subtract two snapshots for one parse's work)."""
        return {name: getattr(self, name) for name in self.__slots__}

    def since(self, before: dict[str, int]) -> dict[str, int]:
        """The work done since `before` (a `snapshot()`)."""
        return {name: getattr(self, name) - before[name] for name in self.__slots__}


WORK = Work()
