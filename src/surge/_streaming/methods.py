"""`LLMClient`'s streaming calls: `stream`, `stream_structured`, `stream_items`.

A mixin of `LLMClient` (src/surge/_client.py); each method is typed on `self` by the small
protocol of what it uses. See docs/streaming.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from surge._call import CallPath
from surge._errors import ConfigError
from surge._retry import RetryPolicy
from surge._settings import UNSET, check_timeout
from surge._streaming.stream import ChatStream, chat_stream
from surge._streaming.structured import StreamCaller, StructuredStream
from surge._structured.modes import ModeMemory, OutputMode
from surge._types import MessageInput, dump_messages

__all__ = ["StreamingMethods"]

T = TypeVar("T")


class _Host(StreamCaller, Protocol):
    _call: CallPath
    _modes: ModeMemory


class StreamingMethods:
    """Streamed answers: text deltas, partial typed values, list items as they close."""

    def stream(
        self: _Host,
        messages: Sequence[MessageInput] | str,
        *,
        model: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | bool | None = None,
        deadline: float | None = UNSET,
        include_usage: bool = True,
        allow_truncated: bool = False,
        **params: Any,
    ) -> ChatStream:
        """Stream a chat completion: `async with client.stream(messages) as stream:`.

        ```python
        async with client.stream("Tell me a story") as stream:
            async for text in stream.text_deltas():
                print(text, end="", flush=True)
            response = await stream.response()  # the whole answer, usage and timings
        ```

        The call holds its `max_concurrency` place and rate-limit turn until the block
        ends. Retries and endpoint fallback happen only before the first chunk arrives.
        Leaving the block early (break, an exception, a cancellation) closes the response
        at once, so the server stops generating. See docs/streaming.md.

        Args:
            messages: The conversation, as for `chat`.
            model: The model for this call.
            timeout: Seconds the server may stay silent: before the first chunk, and
                between chunks (read timeout, per read). `ReadTimeout` names which.
            retry: The retry policy until the first chunk (default: the client's).
            deadline: Seconds the whole call may take, the stream's end included.
            include_usage: Ask for a last chunk with the usage
                (`stream_options.include_usage`); a server that rejects it is asked
                again without.
            allow_truncated: Accept a stream that ends without `[DONE]` (else
                `RemoteProtocolError`).
            **params: Other chat-completion parameters, as for `chat`.

        Returns:
            A `ChatStream`, opened by `async with`.
        """
        if params.pop("stream", True) is False:
            raise ConfigError("stream() always streams; use chat() for a whole response")
        body: dict[str, Any] = {"messages": dump_messages(messages)}
        if model is not None:
            body["model"] = model
        body.update(params)
        return chat_stream(
            self._call,
            body,
            timeout=check_timeout(timeout),
            retry=retry,
            deadline=deadline,
            include_usage=include_usage,
            allow_truncated=allow_truncated,
        )

    def stream_structured(
        self: _Host,
        output_type: Any,
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None = None,
        max_retries: int = 2,
        model: str | None = None,
        **params: Any,
    ) -> StructuredStream[Any]:
        """Stream output of a given type: partial values as they grow, then the valid one.

        ```python
        async with client.stream_structured(Report, messages) as values:
            async for report in values:
                render(report)  # fields not written yet are None (lists [])
        ```

        Each partial value is yielded only when it changed; the last one is the reply
        validated as `structured()` validates it. The cost is linear in the reply's length
        (see docs/streaming.md). Modes, fallbacks and re-asks are those of `structured`;
        after a re-ask the partial values start again from the new reply.

        Args:
            output_type: As for `structured`.
            messages: The conversation.
            mode: "json_schema", "tools" (the call's argument fragments are read) or
                "prompt"; None picks per endpoint.
            max_retries: Re-asks after a reply that does not validate.
            model: The model for this call.
            **params: Other chat-completion parameters (and `stream()`'s own:
                `timeout`, `deadline`, `retry`, `include_usage`, `allow_truncated`).

        Returns:
            A `StructuredStream`: use `async with`, then `async for`.

        Raises:
            ConfigError: A bad argument (as for `structured`), at once.
        """
        return StructuredStream(
            self,
            output_type,
            messages,
            mode=mode,
            max_retries=max_retries,
            model=model,
            params=params,
            memory=self._modes,
            items=False,
        )

    def stream_items(
        self: _Host,
        item_type: type[T],
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None = None,
        max_retries: int = 2,
        model: str | None = None,
        **params: Any,
    ) -> StructuredStream[T]:
        """Stream a list output one complete item at a time (what batch extraction wants).

        ```python
        async with client.stream_items(Person, "List the people in: ...") as people:
            async for person in people:  # each a validated Person, as soon as it closes
                save(person)
        ```

        The output asked for is `list[item_type]`. Each item is validated when its
        closing bracket arrives and yielded at once; at the end the whole list is
        validated as `structured()` would, and any item not yielded yet follows. No
        re-ask happens once an item was yielded (the validation error is raised).

        Args:
            item_type: The type of one item.
            messages: The conversation.
            mode: As for `stream_structured`.
            max_retries: Re-asks, before any item was yielded.
            model: The model for this call.
            **params: As for `stream_structured`.

        Returns:
            A `StructuredStream` of items: use `async with`, then `async for`.
        """
        return StructuredStream(
            self,
            list[item_type],  # type: ignore[valid-type]
            messages,
            mode=mode,
            max_retries=max_retries,
            model=model,
            params=params,
            memory=self._modes,
            items=True,
        )
