"""The lenient parser on each input shape that used to be a cliff, at 1 KB, 32 KB and 1 MB.

For every shape (issue 16) this builds the same text at each size and times
`surge.parse(text, target)` beside `json_repair.loads(text)` (the closest peer: a
pure-Python repairer with no target type), and prints the cost per MB: a linear parser
keeps that column flat as the size grows 1000-fold. The schema-dict row compares with
pydantic's `TypeAdapter(model).validate_json` on the same clean JSON instead. Versions
are printed first. Loopback only: nothing here touches the network.

    python benchmarks/parse_shapes.py [--sizes 1000,32000,1000000] [--shapes ...]

`json_repair` comes with the `bench` extra (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, TypeAdapter

import surge
from surge import OutputParseError

try:
    import json_repair
except ImportError:  # pragma: no cover - the bench extra
    json_repair = None


class Text(BaseModel):
    text: str


class Count(BaseModel):
    n: int


class Leaf(BaseModel):
    kind: Literal["leaf"]
    value: int


class NodeA(BaseModel):
    child: NodeA | NodeB | Leaf | None = None
    kind: Literal["a"]


class NodeB(BaseModel):
    child: NodeA | NodeB | Leaf | None = None
    kind: Literal["b"]


class Person(BaseModel):
    name: str
    age: int
    email: str | None = None
    tags: list[str] = []


class Item(BaseModel):
    sku: str
    qty: int
    price: float
    note: str | None = None


def _tree(depth: int) -> str:
    s = '{"kind": "leaf", "value": 1}'
    for i in range(depth):
        s = f'{{"child": {s}, "kind": "{"ab"[i % 2]}"}}'
    return s


def _items(size: int) -> list[dict[str, Any]]:
    one = {"sku": "SKU-0001", "qty": 3, "price": 9.99, "note": "by noon, please"}
    return [dict(one, sku=f"SKU-{i:06d}") for i in range(max(1, size // 75))]


def _sloppy(size: int) -> str:
    body = json.dumps(_items(size), indent=1).replace('"', "'").replace("\n}", ",\n}")
    return f"Sure! Here it is:\n```json\n{body}\n```\nAnything else?"


# name -> (builder: size -> text, target, what surge should give: "value" or "error")
Shape = tuple[Callable[[int], str], Any, str]
SHAPES: dict[str, Shape] = {
    # 1. A truncated string that ends in a run of blanks.
    "truncated-blanks": (lambda n: '{"text": "x' + " " * n + "y", Text, "value"),
    # 2. A quoted run of digits for an int field (not a number: an error).
    "quoted-digits": (lambda n: '{"n": "' + "1" * n + 'x"}', Count, "error"),
    # 3. Recursive models told apart by a Literal after the recursive field (lenient:
    #    a trailing comma), depth 16 each, as many as fit.
    "tagged-unions": (
        lambda n: "[" + ", ".join([_tree(16)] * max(1, n // 460)) + ",]",
        list[NodeA | NodeB],
        "value",
    ),
    # 4. Prose with an unmatched `{` before the JSON.
    "brace-in-prose": (
        lambda n: "<think>It must start with { " + "so " * (n // 3) + '</think>\n{"text": "x"}',
        Text,
        "value",
    ),
    # 4b. Many unmatched `{` before the JSON.
    "braces-before": (lambda n: "Thinking about " + "{" * n + ' {"text": "x"}', Text, "value"),
    # 5. A list written as several fenced blocks.
    "fenced-blocks": (
        lambda n: "\n".join(['```json\n{"text": "a"}\n```'] * max(1, n // 28)),
        list[Text],
        "value",
    ),
    # 6. Nesting past the limit (an error naming the depth), as deep as the size.
    "too-deep": (lambda n: "[" * n + "1" + "]" * n, Any, "error"),
    # 8. Sloppy JSON: a fence, single quotes, trailing commas, prose around.
    "sloppy-items": (_sloppy, list[Item], "value"),
}
SCHEMA_ROW = "schema-dict-clean"  # 7. clean JSON for a schema-dict target vs pydantic


def _time(*fns: Callable[[], Any], budget: float = 0.5) -> list[float]:
    """Best per-call time of each of `fns`, run in turn until `budget` seconds are spent
    (at least 3 rounds, or fewer slow ones).

    In turn, not one after the other: what one leaves behind (a heap the garbage collector
    must walk, cold caches) then weighs on every one alike. Timed back to back, the second
    of two parsers of a megabyte measured up to 1.8x slower than it is alone.
    """
    best = [float("inf")] * len(fns)
    spent, runs = 0.0, 0
    while runs < 1 or (runs < 3 and spent < 6.0) or (spent < budget and runs < 200):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            took = time.perf_counter() - start
            best[i], spent = min(best[i], took), spent + took
        runs += 1
    return best


def _surge(text: str, target: Any, expect: str) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return surge.parse(text, target)
        except OutputParseError:
            if expect != "error":
                raise
            return None

    run()  # warm the caches, and check it gives what is expected
    return run


def main() -> int:
    """Print one row per shape and size."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="1000,32000,1000000", help="text sizes, in characters")
    ap.add_argument("--shapes", default=",".join([*SHAPES, SCHEMA_ROW]), help="shapes to run")
    ap.add_argument(
        "--peer-budget", type=float, default=5.0, help="skip a peer run expected to be longer"
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    jr_version = getattr(json_repair, "__version__", None) or _dist_version("json_repair")
    print(
        f"Python {platform.python_version()}, surge {surge.__version__}, pydantic"
        f" {pydantic.VERSION}, json_repair {jr_version}"
    )
    print(f"{'shape':20s} {'size':>9s} {'surge':>10s} {'peer':>10s} {'ratio':>6s} {'surge/MB':>9s}")
    for name in args.shapes.split(","):
        peer_runs: list[tuple[float, int]] = []  # (time, size) of the peer's runs so far
        for size in sizes:
            if name == SCHEMA_ROW:
                text = json.dumps(_items(size))
                schema = TypeAdapter(list[Item]).json_schema()
                adapter: TypeAdapter[Any] = TypeAdapter(list[Item])
                ours, peer = _time(
                    _surge(text, schema, "value"), lambda a=adapter, t=text: a.validate_json(t)
                )
                label = "pydantic"
            else:
                build, target, expect = SHAPES[name]
                text = build(size)
                label = "json_repair"
                guess = _extrapolate(peer_runs, len(text))
                if guess > args.peer_budget:
                    (ours,) = _time(_surge(text, target, expect))
                    print(
                        f"{name:20s} {len(text):9d} {_ms(ours):>10s} {'skipped':>10s}"
                        f"    -   {ours / len(text) * 1e6:7.3f} s  (json_repair: about"
                        f" {guess:.0f} s at its growth so far, past --peer-budget)"
                    )
                    continue
                ours, peer = _time(_surge(text, target, expect), lambda t=text: _peer(t))
                peer_runs.append((peer, len(text)))
            per_mb = ours / len(text) * 1e6
            print(
                f"{name:20s} {len(text):9d} {_ms(ours):>10s} {_ms(peer):>10s}"
                f" {ours / peer:5.2f}x {per_mb:7.3f} s  ({label})"
            )
    return 0


def _extrapolate(runs: list[tuple[float, int]], size: int) -> float:
    """The time a run at `size` would take, growing as it did between the last two runs."""
    if not runs:
        return 0.0
    last_time, last_size = runs[-1]
    power = 1.0
    if len(runs) >= 2 and runs[-2][0] > 0:
        prev_time, prev_size = runs[-2]
        power = max(1.0, math.log(last_time / prev_time) / math.log(last_size / prev_size))
    return last_time * (size / last_size) ** power


def _peer(text: str) -> Any:
    if json_repair is None:
        return None
    try:
        return json_repair.loads(text)
    except RecursionError:  # json_repair is recursive: deep input exhausts the stack
        return None


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
