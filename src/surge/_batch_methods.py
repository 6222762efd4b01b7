"""`LLMClient`'s batch methods, `map` and `map_as_completed`: thin, typed, over `_batch`.

The work (workers, ordering, progress) is in `surge._batch`; this mixin gives the client
its typed overloads and the default concurrency (the client's `max_concurrency`, else the
pool's `max_connections`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, Literal, Protocol, TypeVar, overload

from surge._batch import AsCompleted, ChatFunction, run_map, start_map
from surge._config import PoolConfig
from surge._limits import ClientLimits
from surge._progress import ProgressOption

__all__ = ["BatchMethods", "Items"]

T = TypeVar("T")
R = TypeVar("R")

Items = Iterable[T] | AsyncIterable[T]
"""What `map` takes: an iterable or an async iterable, consumed lazily."""


class _MapHost(ChatFunction, Protocol):
    _limits: ClientLimits

    @property
    def pool_config(self) -> PoolConfig:
        """The pool's limits (`max_connections` is the default concurrency)."""
        ...


class BatchMethods:
    """`LLMClient`'s batches: one call per item, bounded, ordered (see docs/batch.md)."""

    @overload
    async def map(
        self: _MapHost,
        fn_or_prompt: Callable[[T], Awaitable[R]],
        items: Items[T],
        *,
        concurrency: int | None = None,
        return_exceptions: Literal[False] = False,
        progress: ProgressOption = None,
    ) -> list[R]: ...

    @overload
    async def map(
        self: _MapHost,
        fn_or_prompt: Callable[[Any], Awaitable[Any]] | str,
        items: Items[Any],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
        progress: ProgressOption = None,
    ) -> list[Any]: ...

    async def map(
        self: _MapHost,
        fn_or_prompt: Callable[[Any], Awaitable[Any]] | str,
        items: Items[Any],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
        progress: ProgressOption = None,
    ) -> list[Any]:
        """Make one call per item, at most `concurrency` at once; results in input order.

        Args:
            fn_or_prompt: An async function of one item, or a prompt template string
                (`"Summarise: {item}"`; braces inside an item stay text) sent with `chat`.
            items: An iterable or async iterable, consumed lazily as workers free up.
            concurrency: Most items in flight, on top of the client's limits (default: its
                `max_concurrency`, else the pool's `max_connections`).
            return_exceptions: Put each failure in its item's slot instead of cancelling
                the rest and raising the first.
            progress: True for a progress bar (rich with `surge[cli]`, else plain lines),
                or a callable that gets a `BatchProgress` after each item.

        Returns:
            One result per item, in input order (a `ChatResponse` for a template).
        """
        return await run_map(
            self,
            fn_or_prompt,
            items,
            concurrency=concurrency,
            default_concurrency=self._limits.max_concurrency or self.pool_config.max_connections,
            return_exceptions=return_exceptions,
            progress=progress,
        )

    @overload
    def map_as_completed(
        self: _MapHost,
        fn_or_prompt: Callable[[T], Awaitable[R]],
        items: Items[T],
        *,
        concurrency: int | None = None,
        return_exceptions: Literal[False] = False,
        progress: ProgressOption = None,
    ) -> AsCompleted[R]: ...

    @overload
    def map_as_completed(
        self: _MapHost,
        fn_or_prompt: Callable[[Any], Awaitable[Any]] | str,
        items: Items[Any],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
        progress: ProgressOption = None,
    ) -> AsCompleted[Any]: ...

    def map_as_completed(
        self: _MapHost,
        fn_or_prompt: Callable[[Any], Awaitable[Any]] | str,
        items: Items[Any],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
        progress: ProgressOption = None,
    ) -> AsCompleted[Any]:
        """Like `map`, but yield `(index, result)` as each item finishes.

        Use `async for index, result in client.map_as_completed(...)`, or open it with
        `async with ... as results:` when you may `break` early. Arguments as for `map`.
        """
        return start_map(
            self,
            fn_or_prompt,
            items,
            concurrency=concurrency,
            default_concurrency=self._limits.max_concurrency or self.pool_config.max_connections,
            return_exceptions=return_exceptions,
            progress=progress,
        )
