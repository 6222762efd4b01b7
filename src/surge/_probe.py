"""`surge probe`: how many calls does a server serve at once, and who makes the rest wait?

Bursts of 1, 2, 4, ... short calls are sent at once, a few rounds each. While a burst fits
in the server's slots every call takes about as long as one alone; past that the calls come
back in waves, and the first wave is as large as the number of slots. So each burst's first
wave is counted (the calls that finished before the first gap, between two calls in finishing
order, longer than a quarter of the fastest call's latency: calls served together finish
together, even on a server whose slots share one CPU and all slow down). The first burst
sizes where it is smaller than the burst give the slot count: the largest first wave seen,
since noise on a loaded machine can split a wave but not merge two. The calls after the
first wave then say where they waited: in the client's pool (`Timings.queued`) or at the
server (`Timings.ttfb` beyond what one call alone takes).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from surge._errors import ConfigError, SurgeError
from surge._timings import Timings

__all__ = ["Level", "ProbeReport", "first_wave", "levels", "run_probe", "verdict"]

_GAP = 0.25  # a gap this long, relative to the fastest call, separates two waves
_CONFIRM = 2  # stop after this many burst sizes that came back in waves


def levels(cap: int) -> list[int]:
    """Burst sizes: 1, 2, 4, ... up to `cap`, and `cap` itself."""
    sizes, size = [], 1
    while size < cap:
        sizes.append(size)
        size *= 2
    return [*sizes, cap]


def first_wave(latencies: list[float]) -> int:
    """How many calls of one burst finished in its first wave."""
    ordered = sorted(latencies)
    for i in range(1, len(ordered)):
        if ordered[i] - ordered[i - 1] > _GAP * ordered[0]:
            return i
    return len(ordered)


@dataclass(slots=True)
class Level:
    """What the bursts of one size saw.

    Attributes:
        size: Calls per burst.
        latencies: Every call's latency, seconds, every round.
        waves: Each round's first-wave count.
        late: The timings of the calls after the first wave.
        first: The timings of the first-wave calls.
    """

    size: int
    latencies: list[float] = field(default_factory=list)
    waves: list[int] = field(default_factory=list)
    late: list[Timings] = field(default_factory=list)
    first: list[Timings] = field(default_factory=list)

    @property
    def served_at_once(self) -> int:
        """The largest first wave of the rounds (noise can split a wave, not merge two)."""
        return max(self.waves, default=0)

    @property
    def queued(self) -> bool:
        """Whether the calls came back in waves."""
        return self.served_at_once < self.size


@dataclass(slots=True)
class ProbeReport:
    """The probe's findings.

    Attributes:
        levels: One `Level` per burst size sent.
        max_connections: The client pool's limit per host.
        http_version: The HTTP version of the calls.
        http2_offered: Whether the client offered HTTP/2.
        errors: Failed calls, as text.
    """

    levels: list[Level]
    max_connections: int
    http_version: str
    http2_offered: bool
    errors: list[str] = field(default_factory=list)

    @property
    def slots(self) -> int | None:
        """Calls served at once: the largest first wave of the sizes that queued."""
        waves = [level.served_at_once for level in self.levels if level.queued]
        return max(waves) if waves else None

    @property
    def ttfb_alone(self) -> float:
        """Median time to first byte with one call in flight."""
        alone = self.levels[0].first + self.levels[0].late if self.levels else []
        return statistics.median(t.ttfb for t in alone) if alone else 0.0

    @property
    def waits_in_client(self) -> bool:
        """Whether the bursts that queued waited more in the client than at the server.

        At the server means `ttfb` beyond what one call alone takes.
        """
        calls = [t for level in self.levels if level.queued for t in level.first + level.late]
        alone = self.ttfb_alone
        client = sum(t.queued + t.throttled for t in calls)
        return client > sum(max(t.ttfb - alone, 0.0) for t in calls)


def verdict(report: ProbeReport, cap: int) -> str:
    """The one-sentence finding."""
    slots = report.slots
    if slots is None:
        largest = report.levels[-1].size if report.levels else 0
        return (
            f"the server served all {largest} calls at once; no limit up to --max-concurrency {cap}"
        )
    if report.waits_in_client:
        return (
            f"your client's pool serves about {slots} calls at a time (max_connections="
            f"{report.max_connections}); calls beyond that wait in your client, not on the server"
        )
    return (
        f"the server serves about {slots} calls at a time; calls beyond that wait on the "
        "server, not in your client"
    )


async def _probe(args: Any, extra: dict[str, Any]) -> ProbeReport:
    from surge._client import LLMClient

    pool: dict[str, Any] = {}
    if args.max_connections is not None:
        pool["max_connections"] = args.max_connections
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or ""
    offered = bool(args.http2) or base_url.startswith("https:")
    client = LLMClient(
        base_url=args.base_url,
        api_key=args.api_key,
        model=args.model,
        retry=False,
        http2=offered,
        **pool,
    )
    report = ProbeReport([], client.pool_config.max_connections, "", offered)
    messages = [{"role": "user", "content": args.prompt}]
    async with client:
        for size in levels(args.max_concurrency):
            level = Level(size)
            for _ in range(args.rounds):
                started = time.perf_counter()

                async def one(_: int, started: float = started) -> tuple[float, Timings]:
                    response = await client.chat(messages, max_tokens=args.max_tokens, **extra)
                    return time.perf_counter() - started, response.timings

                results = await client.map(
                    one, range(size), concurrency=size, return_exceptions=True
                )
                done = [r for r in results if isinstance(r, tuple)]
                report.errors += [
                    f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)
                ]
                if not done:
                    return report
                done.sort(key=lambda pair: pair[0])
                latencies = [t for t, _ in done]
                wave = first_wave(latencies)
                level.latencies += latencies
                level.waves.append(wave)
                level.first += [timings for _, timings in done[:wave]]
                level.late += [timings for _, timings in done[wave:]]
                report.http_version = done[0][1].http_version
            report.levels.append(level)
            _print_level(level)
            if report.errors or sum(1 for lv in report.levels if lv.queued) >= _CONFIRM:
                break
    return report


def _print_level(level: Level) -> None:
    ordered = sorted(level.latencies)
    p50 = ordered[len(ordered) // 2] * 1000
    print(
        f"  {level.size:>4} at once: p50 {p50:8.1f} ms, max {ordered[-1] * 1000:8.1f} ms; "
        f"served at once {level.served_at_once}",
        flush=True,
    )


def run_probe(args: Any) -> int:
    """Run `surge probe` with parsed arguments; return the exit status (0, 1 or 2)."""
    import asyncio

    try:
        extra = json.loads(args.extra_body) if args.extra_body else {}
        if not isinstance(extra, dict):
            raise ConfigError("--extra-body must be a JSON object")
    except ValueError as exc:
        print(f"surge probe: --extra-body is not JSON: {exc}", file=sys.stderr)
        return 2
    print(f"surge probe: bursts of 1 to {args.max_concurrency} calls, {args.rounds} round(s) each")
    try:
        report = asyncio.run(_probe(args, extra))
    except SurgeError as exc:
        print(f"surge probe: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    if report.errors:
        print(f"surge probe: {len(report.errors)} call(s) failed; first: {report.errors[0]}")
        if not report.levels:
            return 1
    http = (
        "HTTP/2 negotiated"
        if report.http_version == "HTTP/2"
        else (
            "HTTP/1.1 (HTTP/2 offered, not negotiated)"
            if report.http2_offered
            else "HTTP/1.1 (HTTP/2 not offered; try --http2)"
        )
    )
    print(f"ttfb alone     {report.ttfb_alone * 1000:.1f} ms at 1 in flight")
    print(f"protocol       {http}")
    print(f"verdict        {verdict(report, args.max_concurrency)}.")
    return 1 if report.errors else 0
