"""The `surge` command line: `surge batch`, `surge probe`, `surge demo` and `surge simulate`.

Nothing in the library imports this module; it imports the simulator (`surge.testing`,
which needs the `sim` extra) only when a sub-command that needs it runs, and the work of
`batch` and `probe` from their own modules (`_batchfile`, `_probe`). Exit status: 0 on
success, 1 when any call or item failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surge", description="surge: an async LLM client that keeps its promise."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="fan out calls against the built-in simulated server and show who made them wait",
        description=(
            "Start the simulated OpenAI-compatible server on loopback, fire N calls at once "
            "through LLMClient, and print the wall time against the ideal, the server's peak "
            "concurrency and per-call timings. Try --max-connections 6 (waves from the "
            "client's pool) and --slots 6 (waves from the server)."
        ),
    )
    demo.add_argument("-n", "--calls", type=_positive_int, default=200, help="calls (200)")
    demo.add_argument(
        "--latency", type=_non_negative_float, default=1.0, help="server latency, s (1.0)"
    )
    demo.add_argument(
        "--max-connections",
        type=_positive_int,
        default=None,
        help="client pool limit per host (default: PoolConfig's, 1000)",
    )
    demo.add_argument(
        "--slots",
        type=_positive_int,
        default=None,
        help="requests the server serves at once; the rest queue at the server (unlimited)",
    )
    demo.add_argument("--http2", action="store_true", help="speak HTTP/2 (cleartext)")

    _add_batch(sub)
    _add_probe(sub)

    simulate = sub.add_parser(
        "simulate",
        help="serve the simulated OpenAI-compatible server until interrupted",
        description="Serve surge's simulated OpenAI-compatible server on loopback.",
    )
    try:
        from surge.testing._cli import add_simulate_arguments
    except ImportError:  # the sim extra is missing; run_simulate reports it
        simulate.set_defaults(_missing_sim=True)
    else:
        add_simulate_arguments(simulate)
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url",
        default=None,
        help="the server's API root, e.g. http://127.0.0.1:8080/v1 (default: $OPENAI_BASE_URL)",
    )
    parser.add_argument("--model", default=None, help="the model (default: none sent)")
    parser.add_argument(
        "--api-key", default=None, help="sent as a bearer token (default: $OPENAI_API_KEY)"
    )


def _add_batch(sub: Any) -> None:
    batch = sub.add_parser(
        "batch",
        help="send a JSONL file of requests (OpenAI Batch API format) and write the results",
        description=(
            "Send every request of a JSONL file and append each result to the output as it "
            "completes. Input lines: OpenAI Batch API requests ({custom_id, method, url, "
            "body}), a JSON string (a prompt), or {id, messages, ...}. Results are written "
            "in the form of their request. Rerun the same command to resume: ids already in "
            "the output are skipped. Exit status 0 when every request succeeded, 1 when "
            "any failed (bad lines included), 2 on bad usage."
        ),
    )
    batch.add_argument("input", help="the requests, one JSON value per line")
    batch.add_argument("-o", "--output", required=True, help="the results file (appended to)")
    _add_server_arguments(batch)
    batch.add_argument(
        "--concurrency", type=_positive_int, default=64, help="requests in flight at once (64)"
    )
    batch.add_argument(
        "--schema",
        default=None,
        metavar="MODULE:MODEL",
        help="parse each reply into this pydantic model (structured outputs); writes 'value'",
    )
    batch.add_argument(
        "--system", default=None, help="a system message for requests that have none"
    )
    batch.add_argument("--rpm", type=_positive_float, default=None, help="requests per minute")
    batch.add_argument("--tpm", type=_positive_float, default=None, help="tokens per minute")
    batch.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress display"
    )


def _add_probe(sub: Any) -> None:
    probe = sub.add_parser(
        "probe",
        help="find how many calls a server serves at once, and who makes the rest wait",
        description=(
            "Send growing bursts of short calls (1, 2, 4, ... up to --max-concurrency, a "
            "few rounds each) and report the concurrency at which latency climbs in steps: "
            "the server's number of slots, or the client pool's limit. Also reports the "
            "time to first byte at 1 in flight and whether HTTP/2 was negotiated."
        ),
    )
    _add_server_arguments(probe)
    probe.add_argument(
        "--max-concurrency", type=_positive_int, default=64, help="the largest burst (64)"
    )
    probe.add_argument("--rounds", type=_positive_int, default=3, help="bursts per size (3)")
    probe.add_argument(
        "--max-tokens", type=_positive_int, default=16, help="max_tokens of each call (16)"
    )
    probe.add_argument("--prompt", default="Count from 1 to 10.", help="the prompt of each call")
    probe.add_argument(
        "--extra-body",
        default=None,
        metavar="JSON",
        help="more request fields, e.g. '{\"ignore_eos\": true}' for llama.cpp",
    )
    probe.add_argument(
        "--max-connections",
        type=_positive_int,
        default=None,
        help="the client pool's limit per host (default: PoolConfig's, 1000)",
    )
    probe.add_argument(
        "--http2", action="store_true", help="offer HTTP/2 (always offered over https)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `surge` command line.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).

    Returns:
        The process exit status.
    """
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "batch":
            from surge._batchfile import run_batch

            return run_batch(args)
        if args.command == "probe":
            from surge._probe import run_probe

            return run_probe(args)
        if args.command == "simulate":
            if getattr(args, "_missing_sim", False):
                raise ImportError("hypercorn")
            from surge.testing._cli import run_simulate

            return run_simulate(args)
        return _demo(args)
    except ImportError as exc:
        print(
            f"surge {args.command}: the simulated server needs the 'sim' extra "
            f"(pip install 'surge[sim]'); missing: {exc.name or exc}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        if args.command == "batch":
            print("surge batch: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _demo(args: argparse.Namespace) -> int:
    from surge.testing import SimulatedServer

    with SimulatedServer(latency=args.latency, slots=args.slots) as server:
        report = asyncio.run(_fan_out(server.url, args))
        stats = server.stats
    _print_report(args, report, peak=stats.peak_in_flight, active=stats.peak_active)
    return 0 if not report["errors"] else 1


async def _fan_out(url: str, args: argparse.Namespace) -> dict[str, Any]:
    import surge

    pool: dict[str, Any] = {"http2": args.http2}
    if args.max_connections is not None:
        pool["max_connections"] = args.max_connections
    async with surge.LLMClient(
        base_url=url, api_key="sk-demo", model="surge-sim", **pool
    ) as client:
        limit = client.pool_config.max_connections
        started = time.perf_counter()

        async def one(i: int) -> tuple[float, surge.Timings] | BaseException:
            try:
                response = await client.chat([{"role": "user", "content": f"Say hello #{i}"}])
            except surge.SurgeError as exc:
                return exc
            return time.perf_counter() - started, response.timings

        results = await asyncio.gather(*(one(i) for i in range(args.calls)))
        wall = time.perf_counter() - started
        stats = client.pool_stats()
    done = [r for r in results if isinstance(r, tuple)]
    errors = [r for r in results if not isinstance(r, tuple)]
    return {
        "wall": wall,
        "finish": sorted(f for f, _ in done),
        "timings": [t for _, t in done],
        "errors": errors,
        "limit": limit,
        "opened": stats.connections_opened,
    }


def _waves(finish: list[float], latency: float) -> int:
    """Count groups of calls that finished together (gaps longer than half the latency)."""
    if not finish:
        return 0
    gap = max(latency / 2, 0.05)
    return 1 + sum(1 for a, b in itertools.pairwise(finish) if b - a > gap)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _print_report(
    args: argparse.Namespace, report: dict[str, Any], *, peak: int, active: int
) -> None:
    n, latency, wall = args.calls, args.latency, report["wall"]
    timings = report["timings"]
    slots = args.slots if args.slots is not None else "unlimited"
    print(
        f"surge demo: {n} concurrent calls; server latency {latency:.2f} s, server slots {slots}; "
        f"client max_connections {report['limit']}" + (", HTTP/2" if args.http2 else "")
    )
    ideal = latency
    ratio = f" ({wall / ideal:.2f}x)" if ideal > 0 else ""
    waves = _waves(report["finish"], latency)
    print(f"wall time      {wall:.2f} s, ideal {ideal:.2f} s{ratio}; finished in {waves} wave(s)")
    print(f"server         peak {peak} requests in flight, {active} being served at once")
    print(f"client pool    {report['opened']} connection(s) opened")
    print("per call (ms)          p50       p90       max")
    for name, label in (
        ("queued", "queued (client)"),
        ("connect", "connect"),
        ("ttfb", "ttfb (server)"),
        ("total", "total"),
    ):
        values = [getattr(t, name) * 1000 for t in timings]
        print(
            f"  {label:<16}{_pct(values, 0.5):>8.1f}  {_pct(values, 0.9):>8.1f}  "
            f"{max(values, default=0.0):>8.1f}"
        )
    if report["errors"]:
        print(f"errors         {len(report['errors'])}: {report['errors'][0]}")
    print("verdict        " + _verdict(report, latency, args))


def _verdict(report: dict[str, Any], latency: float, args: argparse.Namespace) -> str:
    timings = report["timings"]
    if not timings:
        return "no call completed."
    queued = statistics.median(t.queued for t in timings)
    queued_p90 = _pct([t.queued for t in timings], 0.9)
    server = _pct([t.ttfb for t in timings], 0.9)
    slack = max(0.25 * latency, 0.05)
    if queued_p90 > slack:
        return (
            f"waves from the CLIENT: calls waited up to {queued_p90:.2f} s (median {queued:.2f} s) "
            f"for a connection in surge's pool; raise max_connections (now {report['limit']})."
        )
    if server > latency + slack:
        return (
            f"waves from the SERVER: the client sent every call at once (queued ~{queued:.3f} s), "
            f"but the server took up to {server:.2f} s to answer a {latency:.2f} s job: it serves "
            "only a few at a time (raise its parallel slots)."
        )
    return "no waves: every call reached the server at once."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
