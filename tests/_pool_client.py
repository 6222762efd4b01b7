"""Helpers shared by the pool tests: an httpx client over a fresh pool, and its timings."""

from __future__ import annotations

from typing import Any

import httpx

from surge._config import PoolConfig
from surge._timings import TIMINGS_EXTENSION, Timings
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
