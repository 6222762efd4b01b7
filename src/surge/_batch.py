"""Ordered fan-out over many items: what `client.map` and `client.map_as_completed` run.

A run starts at most `concurrency` workers, each taking the next item from the input when
it is free, so the input is consumed lazily (a generator of a million items is never
materialised; at most `concurrency` items are pulled ahead of those finished) and no task is
made per item. `map` puts each result in its item's slot; `map_as_completed` hands
`(index, result)` pairs out as they finish, through a stream as long as the concurrency, so
a slow consumer holds the workers back instead of piling results up. Each call still goes
through the client's own limits, retries and deadline (`CallPath`). Runs on asyncio and
trio alike (anyio).
"""

from __future__ import annotations

import string
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import anyio
from anyio.abc import ObjectSendStream, TaskGroup

from surge._call import CALL_OBSERVER
from surge._errors import ConfigError
from surge._progress import ProgressOption, ProgressTracker, resolve_progress
from surge._types import ChatResponse

__all__ = [
    "AsCompleted",
    "ChatFunction",
    "check_template",
    "render_prompt",
    "run_map",
    "start_map",
]

T = TypeVar("T")
R = TypeVar("R")

_END: Any = object()


class ChatFunction(Protocol):
    """What a prompt template needs of a client: `chat` with one user message."""

    async def chat(self, messages: str) -> ChatResponse:
        """Ask for one completion."""
        ...


_FORMATTER = string.Formatter()


def check_template(template: str) -> None:
    """Check that a prompt template parses and names the item.

    Raises:
        ConfigError: Unbalanced braces, or no `{item}`/`{}`/`{field}` placeholder at all.
    """
    try:
        fields = [name for _, name, _, _ in _FORMATTER.parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(
            f"prompt template {template!r} cannot be read ({exc}); "
            "write literal braces as {{ and }}"
        ) from None
    if not fields:
        raise ConfigError(
            f"prompt template {template!r} has no placeholder: put {{item}} where the item goes"
        )


def render_prompt(template: str, item: Any) -> str:
    """Render a prompt template with one item.

    `{item}` (or `{}`) is the item; for a mapping item, `{key}` is its value, and
    `{item[key]}` / `{item.attr}` reach into it. The item's own text is inserted as it is:
    braces in it are text, never placeholders.

    Raises:
        ConfigError: The template names a field the item does not have.
    """
    try:
        if isinstance(item, (str, int, float)):  # the common case, and no Mapping check
            return template.format(item, item=item)
        fields = item if isinstance(item, Mapping) else {}
        return template.format(item, **{**fields, "item": item})
    except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"prompt template {template!r} cannot be rendered with item {item!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _call_for(client: ChatFunction, fn_or_prompt: Any) -> Callable[[Any], Awaitable[Any]]:
    if isinstance(fn_or_prompt, str):
        check_template(fn_or_prompt)
        return client.chat  # with the template rendered by the worker: one coroutine less
    if callable(fn_or_prompt):
        return fn_or_prompt  # type: ignore[no-any-return]
    raise ConfigError(
        "map() takes an async function of one item or a prompt template string, "
        f"not {type(fn_or_prompt).__name__}"
    )


def _check_concurrency(concurrency: int | None, default: int) -> int:
    if concurrency is None:
        return default
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be an int >= 1 or None, got {concurrency!r}")
    return concurrency


class _Source:
    """The items, pulled one at a time (under a lock for an async iterable) and numbered."""

    __slots__ = ("_aiter", "_iter", "_lock", "pulled", "sync")

    def __init__(self, items: Any) -> None:
        self.pulled = 0
        self._iter: Any = None
        self._aiter: Any = None
        self._lock: anyio.Lock | None = None
        if isinstance(items, AsyncIterable):
            self._aiter = aiter(items)
            self._lock = anyio.Lock()
        elif isinstance(items, Iterable) and not isinstance(items, (str, bytes)):
            self._iter = iter(items)
        else:
            raise ConfigError(
                f"items must be an iterable or an async iterable, not {type(items).__name__}"
            )
        self.sync = self._iter is not None

    def next_sync(self) -> tuple[int, Any] | None:
        """The next item of a plain iterable and its index, or None at the end."""
        item = next(self._iter, _END)
        if item is _END:
            return None
        self.pulled += 1
        return self.pulled - 1, item

    async def next(self) -> tuple[int, Any] | None:
        """The next item and its index, or None at the end."""
        if self.sync:
            return self.next_sync()
        assert self._lock is not None
        async with self._lock:
            item = await anext(self._aiter, _END)
        if item is _END:
            return None
        self.pulled += 1
        return self.pulled - 1, item


class _Run:
    """One run's workers and state, shared by `run_map` and `AsCompleted`."""

    def __init__(
        self,
        call: Callable[[Any], Awaitable[Any]],
        template: str | None,
        items: Any,
        concurrency: int,
        return_exceptions: bool,
        tracker: ProgressTracker | None,
    ) -> None:
        self.call = call
        self.template = template
        self.source = _Source(items)
        self.concurrency = concurrency
        self.return_exceptions = return_exceptions
        self.tracker = tracker
        self.error: BaseException | None = None
        self.results: list[Any] = []
        self.send: ObjectSendStream[tuple[int, Any]] | None = None

    async def run(self, group: TaskGroup) -> None:
        """Start up to `concurrency` workers, each with its first item."""
        for _ in range(self.concurrency):
            got = await self.source.next()
            if got is None:
                return
            group.start_soon(self.worker, got, group)

    async def worker(self, got: tuple[int, Any] | None, group: TaskGroup) -> None:
        call, template, tracker, source = self.call, self.template, self.tracker, self.source
        results, send = self.results, self.send
        while got is not None:
            index, item = got
            if tracker is not None:
                tracker.started()
            try:
                if template is None:
                    value = await call(item)
                else:
                    value = await call(render_prompt(template, item))
                ok = True
            except Exception as exc:
                if not self.return_exceptions:
                    if self.error is None:
                        self.error = exc
                    group.cancel_scope.cancel()
                    return
                value, ok = exc, False
            if tracker is not None:
                tracker.finished(ok)
            if send is None:
                # Workers finish in any order (trio even starts them in any order).
                if index >= len(results):
                    results.extend([None] * (index + 1 - len(results)))
                results[index] = value
            else:
                await send.send((index, value))
            got = source.next_sync() if source.sync else await source.next()


def _prepare(
    client: ChatFunction,
    fn_or_prompt: Any,
    items: Any,
    concurrency: int | None,
    default_concurrency: int,
    return_exceptions: bool,
    progress: ProgressOption,
    total: int | None,
    label: str,
) -> tuple[_Run, AbstractContextManager[Any]]:
    call = _call_for(client, fn_or_prompt)
    limit = _check_concurrency(concurrency, default_concurrency)
    sink, display = resolve_progress(progress, label)
    tracker = None
    if sink is not None:
        if total is None and hasattr(items, "__len__"):
            total = len(items)
        tracker = ProgressTracker(total, sink)
    template = fn_or_prompt if isinstance(fn_or_prompt, str) else None
    return _Run(call, template, items, limit, return_exceptions, tracker), display or nullcontext()


async def run_map(
    client: ChatFunction,
    fn_or_prompt: Any,
    items: Any,
    *,
    concurrency: int | None,
    default_concurrency: int,
    return_exceptions: bool,
    progress: ProgressOption,
    total: int | None = None,
) -> list[Any]:
    """Run `client.map`: one call per item, results in input order.

    Args:
        client: The client whose `chat` a prompt template calls.
        fn_or_prompt: An async function of one item, or a prompt template string.
        items: An iterable or async iterable, consumed lazily.
        concurrency: Most items in flight; None for `default_concurrency`.
        default_concurrency: The client's default.
        return_exceptions: Put each failure in its slot instead of raising the first.
        progress: None, True (terminal display) or a callable of `BatchProgress`.
        total: The number of items when known and `items` has no `len`.

    Returns:
        One result (or, with `return_exceptions`, exception) per item, in input order.
    """
    run, display = _prepare(
        client,
        fn_or_prompt,
        items,
        concurrency,
        default_concurrency,
        return_exceptions,
        progress,
        total,
        "map",
    )
    with display:
        token = CALL_OBSERVER.set(run.tracker.observe if run.tracker is not None else None)
        try:
            async with anyio.create_task_group() as group:
                await run.run(group)
        finally:
            CALL_OBSERVER.reset(token)
    if run.error is not None:
        raise run.error
    return run.results


class AsCompleted(Generic[R]):
    """The `(index, result)` pairs of `client.map_as_completed`, as they finish.

    Iterate it with `async for`. When you may stop early (`break`), open it with
    `async with` so that its workers are cancelled and awaited right there:

    ```python
    async with client.map_as_completed(summarise, documents) as results:
        async for index, summary in results:
            ...
    ```
    """

    def __init__(self, run: _Run, display: AbstractContextManager[Any]) -> None:
        self._iterator = self._iterate(run, display)

    async def _iterate(
        self, run: _Run, display: AbstractContextManager[Any]
    ) -> AsyncGenerator[tuple[int, R], None]:
        send, receive = anyio.create_memory_object_stream[tuple[int, Any]](run.concurrency)
        run.send = send

        async def produce() -> None:
            # `send` closes once every worker is done, which ends the loop below.
            async with send, anyio.create_task_group() as workers:
                await run.run(workers)

        with display:
            async with anyio.create_task_group() as group, receive:
                # The workers see the observer: a task copies the context it starts in.
                token = CALL_OBSERVER.set(run.tracker.observe if run.tracker else None)
                group.start_soon(produce)
                CALL_OBSERVER.reset(token)
                try:
                    async for pair in receive:
                        yield pair
                except GeneratorExit:  # closed early (`break` in `async with`): stop the rest
                    group.cancel_scope.cancel()
                    return
        if run.error is not None:
            raise run.error

    def __aiter__(self) -> AsyncIterator[tuple[int, R]]:
        return self._iterator

    async def __aenter__(self) -> AsyncIterator[tuple[int, R]]:
        return self._iterator

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._iterator.aclose()


def start_map(
    client: ChatFunction,
    fn_or_prompt: Any,
    items: Any,
    *,
    concurrency: int | None,
    default_concurrency: int,
    return_exceptions: bool,
    progress: ProgressOption,
    total: int | None = None,
    label: str = "map",
) -> AsCompleted[Any]:
    """Prepare `client.map_as_completed` (arguments as for `run_map`); checked at once."""
    run, display = _prepare(
        client,
        fn_or_prompt,
        items,
        concurrency,
        default_concurrency,
        return_exceptions,
        progress,
        total,
        label,
    )
    return AsCompleted(run, display)
