"""The cyclic garbage collector, paused while a large text is parsed.

A parse builds many small objects (the reader's nodes, the coerced values, the models)
that all stay alive until it ends. CPython runs a full collection each time the objects
that survived earlier collections grow by a quarter, and a full collection walks every
tracked object in the process: on a 3 MB text of tagged unions that was 9 full
collections, a third of the parse, and the cost per MB grew with the text (0.87 s/MB at
30 KB, 1.42 s/MB at 3 MB; with the collector paused, 0.83 s/MB at every size). Nothing a
parse makes needs the collector: its garbage goes by reference counting, and the few
cycles it leaves (an exception kept with its traceback) wait for the next collection.
Mercurial pauses it the same way (`util.nogc`) to build its large structures.

The collector is the process's: a parse turns it back on only if it paused it itself,
so a program that keeps it off keeps it off, and parses in several threads at once
leave it as they found it. Short texts, the usual reply, do not touch it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PAUSE_FROM", "collector_paused"]

PAUSE_FROM = 64 * 1024  # characters: below this, a parse leaves the collector alone


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (for a text of `PAUSE_FROM` or more)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
