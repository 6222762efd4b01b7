"""One worker process of the shared-limits tests: many calls through a shared RedisStore.

Run as `python tests/_limits_worker.py '<json settings>'`. Prints "ready" once its client
is made (after one warm-up call with "warmup"), waits for a line on stdin (so that every
worker starts together), fires all its calls at once, then prints one JSON line: calls
done, errors, and places still in use.
"""

from __future__ import annotations

import asyncio
import json
import sys

import surge


async def main(settings: dict[str, object]) -> None:
    store = surge.RedisStore(
        str(settings["redis"]),
        namespace=str(settings["namespace"]),
        lease=float(settings.get("lease", 10.0)),  # type: ignore[arg-type]
    )
    rpm = settings.get("rpm")
    client = surge.LLMClient(
        base_url=str(settings["server"]),
        max_concurrency=settings.get("max_concurrency"),  # type: ignore[arg-type]
        rate_limit=surge.RateLimit(requests_per_minute=rpm) if rpm else None,  # type: ignore[arg-type]
        limits_store=store,
        retry=False,
        timeout=120,
    )
    if settings.get("warmup"):  # open a connection and load the scripts before the start
        await client.chat("warmup")
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    tag = settings["tag"]
    calls = int(settings["calls"])  # type: ignore[call-overload]
    results = await asyncio.gather(
        *(client.chat(f"{tag}-{i}") for i in range(calls)), return_exceptions=True
    )
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    concurrency = client._limits.concurrency
    in_use = getattr(concurrency, "in_use", 0)
    await client.aclose()
    await store.aclose()
    print(json.dumps({"done": calls - len(errors), "errors": errors[:3], "in_use": in_use}))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
