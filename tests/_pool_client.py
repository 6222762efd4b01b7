"""Helpers shared by the pool tests: a client over a fresh pool, its timings, bounded waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from surge._config import PoolConfig
from surge._timings import TIMINGS_EXTENSION, PoolStats, Timings
from surge._transport.pool import PoolTransport


def pool_client(**config: Any) -> tuple[httpx.AsyncClient, PoolTransport]:
    """Return an `httpx.AsyncClient` over a new `PoolTransport(PoolConfig(**config))`."""
    transport = PoolTransport(PoolConfig(**config))
    return httpx.AsyncClient(transport=transport, timeout=20.0), transport


def timings(response: httpx.Response) -> Timings:
    """Return the `surge.Timings` the pool put on a response."""
    value = response.extensions[TIMINGS_EXTENSION]
    assert isinstance(value, Timings)
    return value


async def wait_for_stats(
    pool: PoolTransport, predicate: Callable[[PoolStats], bool], state: str, limit: float = 5.0
) -> None:
    """Wait (at most `limit` s) until `predicate(pool.stats())` holds; fail naming `state`."""
    try:
        with anyio.fail_after(limit):
            while not predicate(pool.stats()):
                await anyio.lowlevel.checkpoint()
    except TimeoutError:
        raise AssertionError(
            f"the pool never reached {state} within {limit} s; it is at {pool.stats()!r}"
        ) from None
