"""Where a client's limits live: the interface of a store shared by many processes.

By default a client keeps its limits in process (`surge._limits`). A `LimitsStore` makes
them shared instead: every client, in any process, that uses a store with the same
namespace draws on one concurrency pool, one rate budget per endpoint, and one view of
which endpoints are cooling down. `surge.RedisStore` is the implementation surge ships.

A store hands out the same two-method `Limiter`s the in-process limits use, plus a
`SharedHealth` for endpoint cool-downs, so the call path does not care where limits live.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from surge._limits import Limiter
    from surge._rates import RateLimit

__all__ = ["LimitsStore", "SharedHealth"]


class SharedHealth(abc.ABC):
    """Endpoint cool-downs seen by every process of a store's namespace."""

    @abc.abstractmethod
    async def cooling(self, base_urls: Sequence[str]) -> list[float]:
        """Return, for each endpoint, the seconds its shared cool-down has left (0.0: none)."""

    @abc.abstractmethod
    async def cool_down(self, base_url: str, seconds: float) -> None:
        """Start (or extend) a shared cool-down of `seconds` for one endpoint."""


class LimitsStore(abc.ABC):
    """A place limits are kept, shared by every client that uses it (see docs/scaling.md).

    A store is given to `LLMClient(..., limits_store=store)`; the client then asks it for
    its concurrency limiter, one rate limiter per endpoint, and the shared endpoint health.
    """

    @abc.abstractmethod
    def check_backend(self) -> None:
        """Raise `ConfigError` when the store cannot run on the current event loop."""

    @abc.abstractmethod
    def concurrency_limiter(self, limit: int) -> Limiter:
        """Return the limiter of a shared pool of `limit` places (one per store and limit)."""

    @abc.abstractmethod
    def rate_limiter(self, base_url: str, config: RateLimit) -> Limiter:
        """Return the shared rate limiter of one endpoint."""

    @abc.abstractmethod
    def health(self) -> SharedHealth:
        """Return the shared endpoint cool-downs."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop background work and close the store's connections."""
