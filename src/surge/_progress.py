"""Progress of a batch: the typed record a callback receives, and the terminal display.

`ProgressTracker` keeps the counts of one `client.map` run in O(1) per call. A callable
given as `progress=` receives a frozen `BatchProgress` after every item; `progress=True`
draws a bar with rich (the optional `surge[cli]` extra, imported only then) when stdout is a
terminal, and plain lines otherwise (a pipe, a CI log, or no rich installed).
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from surge._errors import ConfigError
from surge._timings import Timings

__all__ = [
    "BatchProgress",
    "ProgressOption",
    "ProgressTracker",
    "TerminalProgress",
    "resolve_progress",
]

_WINDOW = 100  # calls the queued/ttfb averages are taken over
_PLAIN_EVERY = 1.0  # seconds between plain progress lines


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a batch stands, as given to a `progress=` callable after each item.

    Attributes:
        total: Items in the batch when known (`len(items)`), else None.
        done: Items that succeeded.
        failed: Items that failed.
        in_flight: Items started and not finished.
        elapsed: Seconds since the batch started.
        rate: Items finished (done or failed) per second so far.
        eta: Seconds left at that rate; None when `total` is unknown or nothing finished.
        queued: Mean seconds the last calls waited in the client (its pool and its own
            limits: `Timings.queued + Timings.throttled`).
        ttfb: Mean seconds the last calls waited for the server's first byte.
    """

    total: int | None
    done: int
    failed: int
    in_flight: int
    elapsed: float
    rate: float
    eta: float | None
    queued: float
    ttfb: float

    @property
    def finished(self) -> int:
        """Items finished, done or failed."""
        return self.done + self.failed

    def line(self) -> str:
        """The record as one line of text, as the plain display prints it."""
        count = f"{self.finished}/{self.total}" if self.total is not None else f"{self.finished}"
        eta = f", ETA {self.eta:.0f} s" if self.eta is not None else ""
        return (
            f"{count} finished ({self.failed} failed), {self.in_flight} in flight, "
            f"{self.rate:.1f}/s{eta}; queued {self.queued * 1000:.1f} ms, "
            f"ttfb {self.ttfb * 1000:.1f} ms"
        )


ProgressOption = bool | Callable[[BatchProgress], Any] | None
"""What `progress=` accepts: None/False (nothing), True (the terminal display), a callable."""


class ProgressTracker:
    """The counts of one batch, updated in O(1) per call or item.

    Args:
        total: Items in the batch, when known.
        sink: Receives a `BatchProgress` after each item.
        clock: The time source.
    """

    __slots__ = (
        "_clock",
        "_queued",
        "_queued_sum",
        "_started",
        "_ttfb",
        "_ttfb_sum",
        "done",
        "failed",
        "in_flight",
        "sink",
        "total",
    )

    def __init__(
        self,
        total: int | None,
        sink: Callable[[BatchProgress], Any] | None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.total = total
        self.sink = sink
        self.done = 0
        self.failed = 0
        self.in_flight = 0
        self._clock = clock
        self._started = clock()
        self._queued: collections.deque[float] = collections.deque(maxlen=_WINDOW)
        self._ttfb: collections.deque[float] = collections.deque(maxlen=_WINDOW)
        self._queued_sum = 0.0
        self._ttfb_sum = 0.0

    def observe(self, timings: Timings) -> None:
        """Take in the timings of one call (an item may make several calls)."""
        queued = timings.queued + timings.throttled
        if len(self._queued) == _WINDOW:
            self._queued_sum -= self._queued[0]
            self._ttfb_sum -= self._ttfb[0]
        self._queued.append(queued)
        self._ttfb.append(timings.ttfb)
        self._queued_sum += queued
        self._ttfb_sum += timings.ttfb

    def started(self) -> None:
        """Count an item that started."""
        self.in_flight += 1

    def finished(self, ok: bool) -> None:
        """Count an item that finished, and tell the sink."""
        self.in_flight -= 1
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self.sink is not None:
            self.sink(self.snapshot())

    def snapshot(self) -> BatchProgress:
        """The counts now."""
        elapsed = self._clock() - self._started
        finished = self.done + self.failed
        rate = finished / elapsed if elapsed > 0 else 0.0
        eta = None
        if self.total is not None and rate > 0:
            eta = max(self.total - finished, 0) / rate
        return BatchProgress(
            total=self.total,
            done=self.done,
            failed=self.failed,
            in_flight=self.in_flight,
            elapsed=elapsed,
            rate=rate,
            eta=eta,
            queued=self._queued_sum / len(self._queued) if self._queued else 0.0,
            ttfb=self._ttfb_sum / len(self._ttfb) if self._ttfb else 0.0,
        )


class TerminalProgress:
    """The `progress=True` display: a rich bar on a terminal, plain lines elsewhere.

    Args:
        stream: Where to draw (default: stdout).
        label: Printed before each plain line.
        rich: Use rich when stdout is a terminal and rich is installed (False: plain lines).
    """

    def __init__(self, stream: TextIO | None = None, label: str = "map", rich: bool = True):
        self._stream = stream if stream is not None else sys.stdout
        self._label = label
        self._last_line = float("-inf")
        self._unprinted: BatchProgress | None = None
        self._bar: Any = None
        self._task: Any = None
        if rich and self._stream.isatty():
            self._bar = _rich_bar(self._stream)

    def __enter__(self) -> TerminalProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self._label, total=None, info="")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._unprinted is not None:  # the last record, when it was held back
            self._print(self._unprinted)

    def __call__(self, progress: BatchProgress) -> None:
        """Show one `BatchProgress` (plain lines at most once a second, and the last one)."""
        if self._bar is not None:
            info = (
                f"{progress.failed} failed, {progress.in_flight} in flight, "
                f"queued {progress.queued * 1000:.0f} ms, ttfb {progress.ttfb * 1000:.0f} ms"
            )
            self._bar.update(
                self._task, completed=progress.finished, total=progress.total, info=info
            )
            return
        last = progress.total is not None and progress.finished >= progress.total
        if last or progress.elapsed - self._last_line >= _PLAIN_EVERY:
            self._print(progress)
        else:
            self._unprinted = progress

    def _print(self, progress: BatchProgress) -> None:
        self._last_line = progress.elapsed
        self._unprinted = None
        print(f"{self._label}: {progress.line()}", file=self._stream, flush=True)


def _rich_bar(stream: TextIO) -> Any:
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )
    except ImportError:  # the cli extra is not installed: plain lines
        return None
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(file=stream),
        transient=False,
    )


def resolve_progress(
    progress: ProgressOption, label: str = "map"
) -> tuple[Callable[[BatchProgress], Any] | None, TerminalProgress | None]:
    """Turn a `progress=` argument into a sink, and the display to open and close if any.

    Raises:
        ConfigError: `progress` is not None, a bool or a callable.
    """
    if progress is None or progress is False:
        return None, None
    if progress is True:
        display = TerminalProgress(label=label)
        return display, display
    if callable(progress):
        return progress, None
    raise ConfigError(
        f"progress= takes None, True or a callable of BatchProgress, not {type(progress).__name__}"
    )
