"""Typed stream chunks, and their assembly into the `ChatResponse` of the whole stream.

A `chat.completion.chunk` event becomes a `StreamChunk` (plain slotted objects, not
pydantic models: a stream may carry tens of thousands of them). `Assembler` collects
every chunk's content and tool-call fragments and builds, at the end, the same
`ChatResponse` a non-streaming call would have returned.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

from surge._errors import ResponseFormatError, preview, status_error_class
from surge._types import ChatResponse, Usage

__all__ = ["Assembler", "StreamChunk", "ToolCallDelta", "decode_event"]


class ToolCallDelta:
    """A fragment of one tool call, as streamed.

    Attributes:
        index: Which tool call of the message it belongs to.
        id: The call's id (usually only in its first fragment).
        name: The function's name (usually only in the first fragment).
        arguments: The next piece of the JSON arguments ("" when none).
    """

    __slots__ = ("arguments", "id", "index", "name")

    def __init__(self, index: int, id: str | None, name: str | None, arguments: str) -> None:
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments

    def __repr__(self) -> str:
        return (
            f"ToolCallDelta(index={self.index}, id={self.id!r}, name={self.name!r}, "
            f"arguments={self.arguments!r})"
        )


class StreamChunk:
    """One chunk of a streamed chat completion.

    Attributes:
        content: The next piece of the text (None when this chunk carries none).
        tool_calls: Tool-call fragments in this chunk (empty when none).
        finish_reason: Why generation stopped, in the chunk that says so; else None.
        usage: Token counts, in the chunk that carries them (with
            `stream_options.include_usage`, a last chunk with no choices).
        index: The choice this chunk belongs to (0 unless `n` > 1 was asked).
        role: The role, in the first chunk ("assistant").
        refusal: The next piece of a refusal (OpenAI structured outputs).
        raw: The decoded event exactly as the server sent it (llama.cpp's `timings`
            and other extras are there).
    """

    __slots__ = (
        "content",
        "finish_reason",
        "index",
        "raw",
        "refusal",
        "role",
        "tool_calls",
        "usage",
    )

    def __init__(
        self,
        raw: dict[str, Any],
        content: str | None = None,
        tool_calls: tuple[ToolCallDelta, ...] = (),
        finish_reason: str | None = None,
        usage: Usage | None = None,
        index: int = 0,
        role: str | None = None,
        refusal: str | None = None,
    ) -> None:
        self.raw = raw
        self.content = content
        self.tool_calls = tool_calls
        self.finish_reason = finish_reason
        self.usage = usage
        self.index = index
        self.role = role
        self.refusal = refusal

    def __repr__(self) -> str:
        parts = [f"content={self.content!r}"]
        if self.tool_calls:
            parts.append(f"tool_calls={list(self.tool_calls)!r}")
        if self.finish_reason is not None:
            parts.append(f"finish_reason={self.finish_reason!r}")
        if self.usage is not None:
            parts.append(f"usage={self.usage!r}")
        return f"StreamChunk({', '.join(parts)})"


def _bad(url: str, why: str, data: str | bytes) -> ResponseFormatError:
    return ResponseFormatError(
        f"{url} streamed {why}; the event's data starts {preview(data)}",
        body=data if isinstance(data, bytes) else data.encode("utf-8", "replace"),
        status_code=200,
        url=url,
    )


def decode_event(data: str | bytes, url: str) -> list[StreamChunk]:
    """Turn one event's data into chunks (one per choice; one for a usage-only event).

    Raises:
        APIStatusError: The event is an `{"error": ...}` object (a subclass chosen by
            the error's status or code; `ServerError` when it names none).
        ResponseFormatError: The data is not JSON, or not a chunk object.
    """
    try:
        event = pydantic_core.from_json(data)
    except ValueError as exc:
        if isinstance(data, bytes):  # invalid UTF-8 inside: decode as SSE says, retry
            return decode_event(data.decode("utf-8", "replace"), url)
        raise _bad(url, f"an event that is not JSON ({exc})", data) from None
    if not isinstance(event, dict):
        raise _bad(url, f"a JSON {type(event).__name__} instead of a chunk object", data)
    choices = event.get("choices")
    usage_raw = event.get("usage")
    if usage_raw is None and choices and len(choices) == 1 and type(choices[0]) is dict:
        # The hot path: one choice, no usage (tens of thousands of these per stream).
        choice = choices[0]
        delta = choice.get("delta") or _EMPTY
        if type(delta) is not dict:
            raise _bad(url, "a delta that is not an object", data)
        content = delta.get("content")
        if type(content) is not str and content is not None:
            raise _bad(url, "a delta whose content is not a string", data)
        if len(delta) == 1 and "content" in delta:  # the commonest delta: text alone
            return [
                StreamChunk(
                    event,
                    content,
                    (),
                    choice.get("finish_reason"),
                    None,
                    choice.get("index", 0),
                )
            ]
        raw_calls = delta.get("tool_calls")
        return [
            StreamChunk(
                event,
                content,
                tuple(_tool_delta(c, i) for i, c in enumerate(raw_calls)) if raw_calls else (),
                choice.get("finish_reason"),
                None,
                choice.get("index", 0),
                delta.get("role"),
                delta.get("refusal"),
            )
        ]
    if "error" in event and not choices:
        raise stream_error(event, url)
    usage = Usage.model_validate(usage_raw) if isinstance(usage_raw, dict) else None
    if not choices:
        if choices is None and usage is None:
            raise _bad(url, "a JSON object that has no choices", data)
        return [StreamChunk(event, usage=usage)]
    out: list[StreamChunk] = []
    for choice in choices:
        if not isinstance(choice, dict):
            raise _bad(url, "a choice that is not an object", data)
        delta = choice.get("delta") or _EMPTY
        if not isinstance(delta, dict):
            raise _bad(url, "a delta that is not an object", data)
        content = delta.get("content")
        if not isinstance(content, str) and content is not None:
            raise _bad(url, "a delta whose content is not a string", data)
        raw_calls = delta.get("tool_calls")
        calls = tuple(_tool_delta(c, i) for i, c in enumerate(raw_calls)) if raw_calls else ()
        out.append(
            StreamChunk(
                event,
                content,
                calls,
                choice.get("finish_reason"),
                usage,
                choice.get("index", 0),
                delta.get("role"),
                delta.get("refusal"),
            )
        )
        usage = None  # counted once
    return out


_EMPTY: dict[str, Any] = {}


def _tool_delta(raw: Any, position: int) -> ToolCallDelta:
    if not isinstance(raw, dict):
        return ToolCallDelta(position, None, None, "")
    function = raw.get("function") or {}
    index = raw.get("index")
    return ToolCallDelta(
        index if isinstance(index, int) else position,
        raw.get("id") or None,
        function.get("name") or None,
        function.get("arguments") or "",
    )


def stream_error(event: dict[str, Any], url: str) -> Exception:
    """The typed error for an `{"error": ...}` event sent in the middle of a stream."""
    error = event.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    code: Any = None
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), int) else error.get("status")
    status = code if isinstance(code, int) and 400 <= code <= 599 else 500
    kind = status_error_class(status)
    return kind(
        f"POST {url}: the server sent an error in the stream: {message or preview(str(error))}",
        status_code=status,
        body=event,
        method="POST",
        url=url,
    )


class _Call:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class _Choice:
    __slots__ = ("calls", "content", "finish_reason", "refusal", "role")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, _Call] = {}
        self.finish_reason: str | None = None
        self.role = "assistant"


class Assembler:
    """Collects a stream's chunks into the final `ChatResponse`."""

    __slots__ = ("_choices", "_first", "usage")

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self._first: dict[str, Any] | None = None
        self.usage: Usage | None = None

    def add(self, chunk: StreamChunk) -> None:
        """Take one chunk into account."""
        if self._first is None:
            self._first = chunk.raw
        if chunk.usage is not None:
            self.usage = chunk.usage
            if not chunk.raw.get("choices"):  # the usage-only last chunk
                return
        choice = self._choices.get(chunk.index)
        if choice is None:
            choice = self._choices[chunk.index] = _Choice()
        content = chunk.content
        if content:
            choice.content.append(content)
            if (
                not (chunk.tool_calls or chunk.role or chunk.refusal)
                and chunk.finish_reason is None
            ):
                return  # the common chunk: one more piece of text
        if chunk.refusal:
            choice.refusal.append(chunk.refusal)
        if chunk.role:
            choice.role = chunk.role
        if chunk.finish_reason is not None:
            choice.finish_reason = chunk.finish_reason
        for delta in chunk.tool_calls:
            call = choice.calls.get(delta.index)
            if call is None:
                call = choice.calls[delta.index] = _Call()
            if delta.id and not call.id:
                call.id = delta.id
            if delta.name and not call.name:
                call.name = delta.name
            if delta.arguments:
                call.arguments.append(delta.arguments)

    def text(self, choice: int = 0) -> str:
        """The text of a choice so far."""
        entry = self._choices.get(choice)
        if entry is None or not entry.content:
            return ""
        if len(entry.content) > 1:
            entry.content[:] = ["".join(entry.content)]
        return entry.content[0]

    def tool_arguments(self, index: int = 0, choice: int = 0) -> str:
        """The arguments of tool call `index` so far."""
        entry = self._choices.get(choice)
        call = entry.calls.get(index) if entry is not None else None
        return "".join(call.arguments) if call is not None else ""

    def response(self) -> ChatResponse:
        """The `ChatResponse` of everything seen, as a non-streaming call gives it."""
        first = self._first or {}
        choices = []
        for index in sorted(self._choices) or [0]:
            choice = self._choices.get(index) or _Choice()
            message: dict[str, Any] = {
                "role": choice.role,
                # null beside tool calls or a refusal and nothing else, as a reply gives it
                "content": "".join(choice.content)
                if choice.content or not (choice.calls or choice.refusal)
                else None,
            }
            if choice.refusal:
                message["refusal"] = "".join(choice.refusal)
            if choice.calls:
                message["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": "".join(call.arguments)},
                    }
                    for _, call in sorted(choice.calls.items())
                ]
            choices.append(
                {"index": index, "message": message, "finish_reason": choice.finish_reason}
            )
        raw: dict[str, Any] = {
            "id": first.get("id", ""),
            "object": "chat.completion",
            "created": first.get("created", 0),
            "model": first.get("model", ""),
            "choices": choices,
        }
        if first.get("system_fingerprint") is not None:
            raw["system_fingerprint"] = first["system_fingerprint"]
        if self.usage is not None:
            raw["usage"] = self.usage.model_dump()
        response = ChatResponse.model_validate(raw)
        response._raw = raw
        return response
