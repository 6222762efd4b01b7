"""client.map against a bare asyncio.gather of client.chat: client CPU per item.

N items (default 10,000) against `benchmarks/_server.py` in its own process (loopback, a
fixed latency), each variant in a fresh process so that one's garbage does not bill the
next, in alternating order, several runs; the figure is client CPU (`time.process_time()`)
per item, and the table shows the minimum run (the least disturbed on a shared machine) and
the ratio to gather's.

- gather: `asyncio.gather(*(client.chat(p) for p in prompts))`, every call at once (the
  pool's 1,000 connections serve them, the rest queue in the pool);
- map: `client.map("{item}", prompts)`, default concurrency (the pool's 1,000);
- map-all: `client.map(..., concurrency=N)`, every item in flight at once, as gather;
- map-progress: `map` with a progress callable (a `BatchProgress` per item).

    .venv/bin/python benchmarks/batch_map.py [--n 10000] [--runs 3] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("gather", "map", "map-all", "map-progress")


async def measure(variant: str, port: int, n: int) -> dict[str, float]:
    import surge

    prompts = [f"item {i}" for i in range(n)]
    async with surge.LLMClient(base_url=f"http://127.0.0.1:{port}/v1", model="bench") as client:
        await client.chat("warm up")
        seen = [0]

        def tick(progress: surge.BatchProgress) -> None:
            seen[0] = progress.finished

        cpu, wall = time.process_time(), time.perf_counter()
        if variant == "gather":
            results = await asyncio.gather(*(client.chat(p) for p in prompts))
        elif variant == "map":
            results = await client.map("{item}", prompts)
        elif variant == "map-all":
            results = await client.map("{item}", prompts, concurrency=n)
        else:
            results = await client.map("{item}", prompts, progress=tick)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert len(results) == n
    assert all(r.text for r in results)
    return {"cpu_ms_per_item": cpu * 1000 / n, "wall_s": wall}


def child(variant: str, port: int, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--port", str(port), "--n", str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return dict(json.loads(out.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args.port, args.n))))
        return

    print(
        f"python {platform.python_version()}, surge {version('surge')}, "
        f"httpx {version('httpx')}, anyio {version('anyio')}; "
        f"{os.cpu_count()} cores; N={args.n}, server latency {args.latency} s"
    )
    server = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "_server.py"), "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        for run in range(args.runs):
            order = VARIANTS if run % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                runs[variant].append(child(variant, port, args.n))
    finally:
        server.terminate()
        server.wait(10)
    base = min(r["cpu_ms_per_item"] for r in runs["gather"])
    print(f"{'variant':<14}{'CPU/item min':>14}{'vs gather':>11}{'wall min':>10}   CPU runs")
    for variant, results in runs.items():
        cpus = [r["cpu_ms_per_item"] for r in results]
        wall = min(r["wall_s"] for r in results)
        listed = " ".join(f"{c:.3f}" for c in cpus)
        print(
            f"{variant:<14}{min(cpus):>11.3f} ms{min(cpus) / base:>10.2f}x{wall:>9.2f} s   {listed}"
        )


if __name__ == "__main__":
    main()
