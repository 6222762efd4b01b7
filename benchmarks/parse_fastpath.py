"""What `surge._parsing.parse` costs on clean JSON, next to pydantic's own `validate_json`.

Clean model output (valid JSON that fits the target) takes the fast path: the cached
target's pydantic-core validator (`validate_json`). The promise is that parse costs at
most 1.3x `TypeAdapter(target).validate_json` on the same input. For each realistic
target this prints both timings (best of several interleaved runs, per call) and the
ratio, and exits non-zero if any ratio is above the limit. It also prints, for
information, the cost of the lenient path on a sloppy version of the same payload (prose,
a fence, single quotes, trailing commas; not part of the promise).

A second table does the same for JSON Schema dict targets (`parse(text, schema_dict)`,
where the schema is the target's JSON Schema and the result plain JSON) at about 1 KB,
32 KB and 1 MB, beside `validate_json` of the equivalent type (for information: not part
of the limit).

    python benchmarks/parse_fastpath.py [--number 20000] [--repeat 7] [--limit 1.3]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from typing import Any

import pydantic
import pydantic_core
from pydantic import BaseModel, TypeAdapter

import surge
from surge._parsing import parse


class Small(BaseModel):
    name: str
    age: int
    email: str | None = None


class LineItem(BaseModel):
    sku: str
    quantity: int
    price: float


class Address(BaseModel):
    street: str
    city: str
    country: str


class Invoice(BaseModel):
    number: str
    customer: Small
    address: Address
    items: list[LineItem]
    paid: bool
    notes: str | None = None


SMALL = {"name": "Ada Lovelace", "age": 36, "email": "ada@example.com"}
INVOICE = {
    "number": "INV-2024-0042",
    "customer": SMALL,
    "address": {"street": "12 St James's Square", "city": "London", "country": "UK"},
    "items": [{"sku": f"SKU-{i:04d}", "quantity": i % 5 + 1, "price": 9.99 + i} for i in range(8)],
    "paid": False,
    "notes": "Deliver before noon.",
}
PEOPLE = [{"name": f"Person {i}", "age": 20 + i, "email": None} for i in range(20)]

CASES: list[tuple[str, Any, Any]] = [
    ("small model", Small, SMALL),
    ("nested model with list", Invoice, INVOICE),
    ("list of 20 models", list[Small], PEOPLE),
]


def _best(fn: Any, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def _best_pair(a: Any, b: Any, number: int, repeat: int) -> tuple[float, float]:
    """Best per-call time of `a` and of `b`, their runs interleaved (fair on a busy machine)."""
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(timeit.timeit(a, number=number))
        tb.append(timeit.timeit(b, number=number))
    return min(ta) / number, min(tb) / number


def _sloppy(payload: Any) -> str:
    text = json.dumps(payload, indent=2).replace('"', "'").replace("\n}", ",\n}")
    return f"Sure! Here is the JSON you asked for:\n```json\n{text}\n```\nAnything else?"


def _schema_dicts(repeat: int) -> None:
    """Clean JSON for a schema-dict target, beside validate_json of the equivalent type."""
    print("\nschema-dict targets (plain JSON out) vs validate_json of the equivalent type")
    print(f"{'target':26s} {'size':>9s} {'validate_json':>14s} {'parse':>10s} {'ratio':>7s}")
    for label, target, one in [
        ("list of invoices", list[Invoice], INVOICE),
        ("list of small models", list[Small], SMALL),
    ]:
        per_item = len(json.dumps(one)) + 2
        for size in (1_000, 32_000, 1_000_000):
            payload = [one] * max(1, size // per_item)
            text = json.dumps(payload)
            adapter: TypeAdapter[Any] = TypeAdapter(target)
            schema = adapter.json_schema()
            assert parse(text, schema) == json.loads(text)
            number = max(1, 200_000 // len(text))
            bare, ours = _best_pair(
                lambda a=adapter, t=text: a.validate_json(t),
                lambda sc=schema, t=text: parse(t, sc),
                number,
                repeat,
            )
            print(
                f"{label:26s} {len(text):9d} {_fmt(bare):>14s} {_fmt(ours):>10s}"
                f" {ours / bare:6.2f}x"
            )


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main() -> int:
    """Run the benchmark; return 1 if a ratio is above the limit."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--number", type=int, default=20000, help="calls per timing run")
    ap.add_argument("--repeat", type=int, default=7, help="timing runs (the best is kept)")
    ap.add_argument("--limit", type=float, default=1.3, help="largest acceptable ratio")
    args = ap.parse_args()
    print(
        f"Python {platform.python_version()}, surge {surge.__version__}, pydantic"
        f" {pydantic.VERSION}, pydantic-core {pydantic_core.__version__}"
    )

    print(
        f"{'target':26s} {'validate_json':>14s} {'parse':>10s} {'ratio':>7s} {'sloppy text':>12s}"
    )
    worst = 0.0
    for label, target, payload in CASES:
        text = json.dumps(payload)
        adapter: TypeAdapter[Any] = TypeAdapter(target)
        assert parse(text, target) == adapter.validate_json(text)
        parse(text, target)  # warm the cache
        bare, ours = _best_pair(
            lambda a=adapter, t=text: a.validate_json(t),
            lambda tg=target, t=text: parse(t, tg),
            args.number,
            args.repeat,
        )
        sloppy = _sloppy(payload)
        assert parse(sloppy, target) == adapter.validate_json(text)
        slow = _best(lambda tg=target, t=sloppy: parse(t, tg), max(1, args.number // 100), 3)
        ratio = ours / bare
        worst = max(worst, ratio)
        print(
            f"{label:26s} {bare * 1e6:11.2f} us {ours * 1e6:7.2f} us {ratio:6.2f}x "
            f"{slow * 1e6:9.0f} us"
        )
    _schema_dicts(args.repeat)
    verdict = "OK" if worst <= args.limit else "ABOVE THE LIMIT"
    print(f"worst ratio {worst:.2f}x (limit {args.limit}x): {verdict}")
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
