"""`surge simulate`: run the simulated server from the command line until Ctrl-C.

The first line printed is `surge simulate: serving on <url>`, so a parent process (a
benchmark) can start it, read the URL, and point clients at it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

import anyio

from surge._errors import ConfigError
from surge.testing._failures import Failure
from surge.testing._latency import Latency, lognormal, uniform
from surge.testing._server import SimulatedServer

__all__ = ["add_simulate_arguments", "parse_failure", "parse_latency", "run_simulate"]

_FAIL_HELP = """\
a failure to inject, repeatable; the first that hits a request applies:
STATUS:RATE (e.g. 429:0.1; with --retry-after), drop:RATE (close before any byte),
drop-mid-body:RATE, html:RATE (200 with an HTML page), stall:RATE (never answer),
slow:SECONDS:RATE (extra latency)"""


def parse_latency(text: str) -> Latency:
    """Parse a `--latency` value: "0.5", "uniform:LOW:HIGH" or "lognormal:MEDIAN:SIGMA".

    Args:
        text: The flag's value.

    Returns:
        Seconds, or a sampler.

    Raises:
        ConfigError: The value cannot be read.
    """
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return float(parts[0])
        if len(parts) == 3 and parts[0] == "uniform":
            return uniform(float(parts[1]), float(parts[2]))
        if len(parts) == 3 and parts[0] == "lognormal":
            return lognormal(float(parts[1]), float(parts[2]))
    except ValueError as exc:
        raise ConfigError(f"--latency {text!r}: {exc}") from exc
    raise ConfigError(
        f"--latency {text!r}: expected SECONDS, uniform:LOW:HIGH or lognormal:MEDIAN:SIGMA"
    )


def parse_failure(text: str, retry_after: float | None = None) -> Failure:
    """Parse a `--fail` value (see `surge simulate --help`).

    Args:
        text: The flag's value, e.g. "429:0.1", "drop:0.05", "slow:2:0.1".
        retry_after: Seconds of `Retry-After` for status failures.

    Returns:
        The failure.

    Raises:
        ConfigError: The value cannot be read.
    """
    kind, _, rest = text.partition(":")
    makers: dict[str, Callable[[float], Failure]] = {
        "drop": lambda rate: Failure.drop_before_response(rate=rate),
        "drop-mid-body": lambda rate: Failure.drop_mid_body(rate=rate),
        "html": lambda rate: Failure.non_json_body(rate=rate),
        "stall": lambda rate: Failure.stall(rate=rate),
    }
    try:
        if kind.isdigit():
            return Failure.status(int(kind), retry_after=retry_after, rate=float(rest))
        if kind == "slow":
            seconds, _, rate = rest.partition(":")
            return Failure.slow_first_byte(float(seconds), rate=float(rate))
        if kind in makers:
            return makers[kind](float(rest))
    except ValueError as exc:
        raise ConfigError(f"--fail {text!r}: {exc}") from exc
    raise ConfigError(
        f"--fail {text!r}: expected STATUS:RATE, drop:RATE, drop-mid-body:RATE, "
        "html:RATE, stall:RATE or slow:SECONDS:RATE"
    )


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `surge simulate` flags to `parser`.

    Args:
        parser: The sub-command's parser.
    """
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port (default 8000; 0 = any free port)"
    )
    parser.add_argument(
        "--latency",
        default="0",
        metavar="SPEC",
        help="seconds before the first byte, once a slot is held: SECONDS, "
        "uniform:LOW:HIGH or lognormal:MEDIAN:SIGMA (default 0)",
    )
    parser.add_argument(
        "--slots", type=int, default=None, help="requests served at once; others queue"
    )
    parser.add_argument(
        "--stream-rate",
        type=float,
        default=1000.0,
        metavar="TOKENS_PER_S",
        help="pace of streamed chunks (default 1000)",
    )
    parser.add_argument("--model", default="surge-sim", help="model name (default surge-sim)")
    parser.add_argument("--reply", default=None, help="always answer this text")
    parser.add_argument("--fail", action="append", default=[], metavar="SPEC", help=_FAIL_HELP)
    parser.add_argument(
        "--retry-after", type=float, default=None, help="Retry-After seconds of status failures"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --fail rates (default 0)")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop"
    )


def _server(args: argparse.Namespace) -> SimulatedServer:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("give both --tls-cert and --tls-key, or neither")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert is not None else None
    return SimulatedServer(
        latency=parse_latency(args.latency),
        slots=args.slots,
        reply=args.reply,
        failures=[parse_failure(spec, args.retry_after) for spec in args.fail],
        stream_tokens_per_second=args.stream_rate,
        tls=tls,
        host=args.host,
        port=args.port,
        model=args.model,
        seed=args.seed,
    )


def run_simulate(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (or SIGTERM); print the URL first.

    Args:
        args: Parsed flags from a parser set up by `add_simulate_arguments`.

    Returns:
        The exit status: 0 after Ctrl-C, 2 for unusable flags.
    """
    try:
        server = _server(args)
    except ConfigError as exc:
        print(f"surge simulate: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        async with server:
            print(f"surge simulate: serving on {server.url}", flush=True)
            with anyio.open_signal_receiver(*_signals()) as signals:
                async for _ in signals:
                    return

    try:
        anyio.run(serve, backend=args.backend)
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:
        print(f"surge simulate: {exc}", file=sys.stderr)
        return 2
    print(f"surge simulate: stopped; {server.stats}", file=sys.stderr)
    return 0


def _signals() -> tuple[signal.Signals, ...]:
    names = ("SIGINT", "SIGTERM")
    return tuple(getattr(signal.Signals, name) for name in names if hasattr(signal, name))
