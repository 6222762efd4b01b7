"""Streamed structured outputs: partial typed values, and list items as they close.

`LLMClient.stream_structured` and `stream_items` land here. The request is the one
`structured()` sends (same modes, same fallback from json_schema to json_object to prompt
when a server rejects a mode, same memory of what each endpoint accepts); the streamed
text (the content, or in tools mode the forced call's argument fragments) is fed to a
`PartialReader`, which scans each piece once, so the whole stream costs time linear in
its length. The last value is the reply validated exactly as `structured()` validates
it (`_structured.run._read`).

Re-asks: a reply that fails validation is re-asked as `structured()` does (up to
`max_retries`); for `stream_structured` the partial values then start again from the new
reply. `stream_items` never re-asks once it has handed out an item (the items could not be
taken back): it raises the validation error instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from surge._errors import APIStatusError, ConfigError, ParseAttempt
from surge._parsing._incremental import PartialReader
from surge._streaming.stream import ChatStream
from surge._structured.failures import (
    is_grammar_failure,
    is_rejection,
    is_schema_invalid,
    server_message,
)
from surge._structured.modes import Discovery, ModeMemory, OutputMode, Strategy
from surge._structured.plan import OutputPlan, plan_for, prompt_hint
from surge._structured.reading import all_failed, exhausted, read_reply
from surge._structured.request import (
    FALLBACK,
    build_request,
    check_arguments,
    reask_messages,
    shows_schema_to_model,
)
from surge._types import ChatResponse, MessageInput, dump_messages

__all__ = ["StreamCaller", "StructuredStream"]

T = TypeVar("T")
_NOTHING: Any = object()


class StreamCaller(Protocol):
    """What streamed structured outputs need from a client."""

    @property
    def base_url(self) -> str:
        """The server's API root."""
        ...

    @property
    def model(self) -> str | None:
        """The default model."""
        ...

    def stream(
        self, messages: Sequence[MessageInput] | str, *, model: str | None = None, **params: Any
    ) -> ChatStream:
        """Stream one chat completion."""
        ...


class StructuredStream(Generic[T]):
    """Successive values of a streamed structured output: `async with`, then `async for`.

    Made by `LLMClient.stream_structured` (partial values, then the validated one) and
    `LLMClient.stream_items` (each list item once complete and valid). Use it as
    `async with client.stream_structured(...) as values: async for value in values:` so
    that leaving the loop early closes the stream at once; a bare `async for` closes it
    only when the stream ends.

    Attributes:
        result: Once the iteration has ended: the validated value.
        responses: The chat completions received (several after re-asks).
        mode: The mode of the request that produced the value.
    """

    def __init__(
        self,
        client: StreamCaller,
        output_type: Any,
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None,
        max_retries: int,
        model: str | None,
        params: dict[str, Any],
        memory: ModeMemory,
        items: bool,
    ) -> None:
        check_arguments(mode, max_retries, params)
        if "stream" in params:
            raise ConfigError("stream_structured() always streams; remove stream=")
        self._client = client
        self._type = output_type
        self._plan = plan_for(output_type)
        self._messages = dump_messages(messages)
        self._mode = mode
        self._max_retries = max_retries
        self._model = model
        self._params = params
        self._memory = memory
        self._items = items
        self._gen: AsyncIterator[Any] | None = None
        self.result: Any = None
        self.responses: list[ChatResponse] = []
        self.mode: OutputMode | None = None

    async def __aenter__(self) -> StructuredStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the stream now (safe to call twice)."""
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]

    def __aiter__(self) -> StructuredStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._gen is None:
            self._gen = self._run()
        value: T = await self._gen.__anext__()
        return value

    # -- the run -------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[Any]:
        client, plan, mode, memory = self._client, self._plan, self._mode, self._memory
        chosen_model = self._model if self._model is not None else client.model
        key = f"{client.base_url} {chosen_model or ''}"
        schema_in_prompt = mode is None and not shows_schema_to_model(client.base_url)
        discovery: Discovery | None = None
        if mode is None:
            strategy, discovery = await memory.remembered_or_discover(key)
        else:
            strategy = mode
        strict = plan.strict.strict
        learn = mode is None
        failures: list[ParseAttempt] = []
        reasks: list[dict[str, Any]] = []
        tried: list[tuple[str, str]] = []  # default mode: the modes that failed, and why
        handed = 0  # items handed out (stream_items)
        last: Any = _NOTHING  # the partial value handed out last
        try:
            while True:
                hint = prompt_hint(plan, strategy, schema_in_prompt)
                conversation, params = build_request(
                    plan, self._messages, strategy, hint, self._params, strict
                )
                stream = client.stream([*conversation, *reasks], model=self._model, **params)
                try:
                    await stream.__aenter__()
                except APIStatusError as exc:
                    # Always before the first value: the stream was refused at once.
                    grammar = is_grammar_failure(exc)
                    if (
                        mode is not None
                        or strategy == "prompt"
                        or not (grammar or is_rejection(exc))
                    ):
                        if tried:
                            raise all_failed(
                                self._type, plan, strategy, self.responses, failures, tried, exc
                            ) from exc
                        raise
                    if strict and strategy in ("json_schema", "tools") and is_schema_invalid(exc):
                        strict = False
                        learn = False
                        continue
                    if grammar:
                        learn = False
                    tried.append((strategy, server_message(exc)))
                    strategy = FALLBACK.get(strategy, "prompt")
                    continue
                try:
                    if learn:
                        memory.learn(key, strategy)
                    memory.finish(discovery, key)
                    discovery = None
                    feed = _Feed(plan, strategy)
                    async for chunk in stream:
                        if strategy == "tools":
                            piece = "".join(
                                d.arguments for d in chunk.tool_calls if feed.wants(d.index)
                            )
                        else:
                            piece = chunk.content or ""
                        if not piece or not feed.feed(piece):
                            continue
                        if self._items:
                            for item in feed.new_items(handed):
                                handed += 1
                                yield item
                        else:
                            last = feed.value()
                            yield last
                    response = await stream.response()
                finally:
                    await stream.aclose()
                self.responses.append(response)
                value, error = read_reply(
                    response, plan, strategy, self._type, self.responses, failures, tried
                )
                if error is None:
                    self.result = value
                    self.mode = "prompt" if strategy == "json_object" else strategy
                    if self._items:
                        for item in list(value)[handed:]:
                            yield item
                    elif value != last:  # the last partial may already be the whole value
                        yield value
                    return
                if len(self.responses) > self._max_retries or (self._items and handed):
                    raise exhausted(self._type, plan, strategy, self.responses, failures, tried)
                if hint:
                    retry_hint = "Follow the schema given above."
                else:
                    retry_hint = "" if strategy == "tools" else plan.object_prompt_text
                reasks += reask_messages(response, plan, strategy, error, retry_hint)
                last = _NOTHING
        finally:
            memory.finish(discovery, key)


class _Feed:
    """The streamed text of one reply, read by a `PartialReader` of the right target.

    In json_schema and tools modes a non-object output type is asked for wrapped as
    `{"value": ...}`; a model that answers with the bare value instead (its first bracket
    is `[` where `{` was expected) is read against the bare type.
    """

    def __init__(self, plan: OutputPlan, strategy: Strategy) -> None:
        self.plan = plan
        self.wrapped = plan.wrapped and strategy != "prompt"
        self.reader: PartialReader | None = None
        self._head: list[str] = []
        self._tool: int | None = None

    def wants(self, index: int) -> bool:
        """In tools mode: whether a fragment belongs to the call being read (the first)."""
        if self._tool is None:
            self._tool = index
        return index == self._tool

    def feed(self, piece: str) -> bool:
        if self.reader is None:
            self._head.append(piece)
            head = "".join(self._head)
            brace, bracket = head.find("{"), head.find("[")
            if brace < 0 and bracket < 0:
                return False
            first = "{" if bracket < 0 or 0 <= brace < bracket else "["
            if self.wrapped and first == "[":
                self.wrapped = False
            target = self.plan.object_target if self.wrapped else self.plan.target
            self.reader = PartialReader(target)
            self._head = []
            return self.reader.feed(head)
        return self.reader.feed(piece)

    def value(self) -> Any:
        assert self.reader is not None
        value = self.reader.value()
        if not self.wrapped or value is None:
            return value
        if isinstance(value, dict):
            return value.get("value")
        return getattr(value, "value", None)

    def new_items(self, handed: int) -> list[Any]:
        assert self.reader is not None
        return self.reader.items[handed:]
