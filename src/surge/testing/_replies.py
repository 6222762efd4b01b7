"""Scripted replies: the request view a reply function gets, and the answer it gives back.

Also turns an answer into OpenAI's exact chat completion body, or into the
`chat.completion.chunk` events of a stream.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from surge._errors import ConfigError

__all__ = [
    "ChatRequest",
    "Completion",
    "Reply",
    "ReplyFunction",
    "ReplyValue",
    "ToolCall",
    "count_tokens",
    "default_reply",
    "error_body",
    "split_tokens",
]

_TOKEN = re.compile(r"\s*\S+\s*|\s+")


def split_tokens(text: str) -> list[str]:
    """Split `text` into word-sized tokens whose concatenation is exactly `text`."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """A deterministic token count: the number of `split_tokens` pieces (words)."""
    return len(split_tokens(text))


def _max_tokens(request: ChatRequest) -> int | None:
    """The request's `max_completion_tokens` or `max_tokens`, when it is a whole number."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.params.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text ones
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion request, as the reply function sees it.

    Attributes:
        n: The request's number: chat completion requests counted from 0 in arrival order
            since the server started.
        body: The raw JSON body, as sent.
        messages: `body["messages"]`.
        model: `body["model"]` (the server's model name when absent).
        stream: Whether the client asked for a stream.
        params: Everything else in the body (temperature, tools, response_format, ...).
        headers: The request headers, names in lower case.
        http_version: "1.1" or "2".
    """

    n: int
    body: Mapping[str, Any]
    messages: Sequence[Mapping[str, Any]]
    model: str
    stream: bool
    params: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    http_version: str = "1.1"

    @property
    def last_user_message(self) -> str:
        """The text of the last message with role "user" ("" when there is none)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _message_text(message.get("content"))
        return ""

    @property
    def prompt_tokens(self) -> int:
        """A deterministic token count of every message's text."""
        return sum(count_tokens(_message_text(m.get("content"))) for m in self.messages)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool (function) call in a scripted reply.

    Attributes:
        name: The function's name.
        arguments: Its arguments: a JSON string sent as is, or a mapping that is encoded.
        id: The call's id; "call_<n>_<i>" when None.
    """

    name: str
    arguments: str | Mapping[str, Any] = "{}"
    id: str | None = None

    def to_openai(self, default_id: str) -> dict[str, Any]:
        """Return the call in OpenAI's `tool_calls` shape."""
        arguments = self.arguments
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        return {
            "id": self.id or default_id,
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        }


@dataclass(frozen=True, slots=True)
class Reply:
    """A scripted answer with more control than a plain string.

    Attributes:
        content: The assistant's text (None with tool calls only).
        tool_calls: Tool calls to answer with (`ToolCall`s or dicts already in OpenAI's
            shape).
        finish_reason: "stop" by default, "tool_calls" when there are tool calls.
        usage: The `usage` object; counted from the text when None.
        status: The HTTP status. Not 2xx: an OpenAI-style error body is sent instead,
            with `content` as its message.
        headers: Extra response headers.
    """

    content: str | None = None
    tool_calls: Sequence[ToolCall | Mapping[str, Any]] = ()
    finish_reason: str | None = None
    usage: Mapping[str, int] | None = None
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


ReplyValue = str | Mapping[str, Any] | Reply
"""What a reply function returns: the text, a (partial) completion body, or a `Reply`."""

ReplyFunction = Callable[[ChatRequest], ReplyValue | Awaitable[ReplyValue]]
"""A reply function: sync or async, called once per chat completion that is answered."""


def default_reply(request: ChatRequest) -> str:
    """The default answer: a short, deterministic echo of the last user message."""
    text = " ".join(request.last_user_message.split())
    if len(text) > 200:
        text = text[:200] + "..."
    return f"You said: {text}" if text else "Hello from surge-sim."


@dataclass(slots=True)
class Completion:
    """One answer, normalised: what to send, whole or as a stream.

    Attributes:
        status: The HTTP status.
        headers: Extra response headers.
        body: The full JSON body for a non-streamed answer or an error.
        content: The text, for streaming.
        tool_calls: Tool calls in OpenAI's shape, for streaming.
        finish_reason: The finish reason, for streaming.
        usage: The usage object.
    """

    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def completion_id(self) -> str:
        """The completion's id (shared by every chunk of a stream)."""
        return str(self.body.get("id", ""))

    @classmethod
    def build(cls, value: object, request: ChatRequest) -> Completion:
        """Normalise a reply function's return value.

        Args:
            value: A string, a mapping (full or partial completion body), or a `Reply`.
            request: The request being answered.

        Returns:
            The completion to send.

        Raises:
            ConfigError: `value` has a type or shape the server cannot send.
        """
        if isinstance(value, str):
            value = Reply(content=value)
        if isinstance(value, Reply):
            return cls._from_reply(value, request)
        if isinstance(value, Mapping):
            return cls._from_body(dict(value), request)
        raise ConfigError(
            f"reply function returned {type(value).__name__}; expected str, dict or Reply"
        )

    @classmethod
    def _from_reply(cls, reply: Reply, request: ChatRequest) -> Completion:
        headers = {str(k).lower(): str(v) for k, v in reply.headers.items()}
        if not 200 <= reply.status <= 299:
            message = reply.content or f"simulated error {reply.status}"
            return cls(reply.status, headers, error_body(reply.status, message))
        calls = [
            call.to_openai(f"call_{request.n}_{i}") if isinstance(call, ToolCall) else dict(call)
            for i, call in enumerate(reply.tool_calls)
        ]
        content, finish_reason = reply.content, reply.finish_reason
        limit = _max_tokens(request)
        if limit is not None and content and not calls and finish_reason is None:
            # As llama.cpp (and OpenAI) do: stop at max_tokens, finish_reason "length".
            pieces = split_tokens(content)
            if len(pieces) > limit:
                content, finish_reason = "".join(pieces[:limit]), "length"
        answer: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            answer["tool_calls"] = calls
        elif content is None:
            answer["content"] = ""
        finish = finish_reason or ("tool_calls" if calls else "stop")
        body: dict[str, Any] = {
            "choices": [{"index": 0, "message": answer, "finish_reason": finish}],
        }
        if reply.usage is not None:
            body["usage"] = dict(reply.usage)
        completion = cls._from_body(body, request)
        completion.status = reply.status
        completion.headers = headers
        return completion

    @classmethod
    def _from_body(cls, body: dict[str, Any], request: ChatRequest) -> Completion:
        body.setdefault("id", f"chatcmpl-sim{request.n}-{uuid.uuid4().hex[:12]}")
        body.setdefault("object", "chat.completion")
        body.setdefault("created", int(time.time()))
        body.setdefault("model", request.model)
        choices = body.get("choices")
        if choices is None:
            choices = [{"message": {"role": "assistant", "content": ""}}]
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise ConfigError("reply body's 'choices' must be a list of objects")
        filled = []
        for index, choice in enumerate(choices):
            choice = dict(choice)
            message = dict(choice.get("message") or {})
            message.setdefault("role", "assistant")
            message.setdefault("content", None if message.get("tool_calls") else "")
            choice["message"] = message
            choice.setdefault("index", index)
            choice.setdefault(
                "finish_reason", "tool_calls" if message.get("tool_calls") else "stop"
            )
            choice.setdefault("logprobs", None)
            filled.append(choice)
        body["choices"] = filled
        first: dict[str, Any] = filled[0]["message"] if filled else {"content": ""}
        content = first.get("content")
        text = content if isinstance(content, str) else ""
        calls = [dict(c) for c in first.get("tool_calls") or []]
        if "usage" not in body:
            completion_tokens = count_tokens(text) + sum(
                count_tokens(str(c.get("function", {}).get("arguments", ""))) for c in calls
            )
            body["usage"] = {
                "prompt_tokens": request.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": request.prompt_tokens + completion_tokens,
            }
        order = ("id", "object", "created", "model", "choices", "usage")
        ordered = {key: body[key] for key in order}
        ordered.update((key, value) for key, value in body.items() if key not in ordered)
        return cls(
            status=200,
            headers={},
            body=ordered,
            content=content if isinstance(content, str) else None,
            tool_calls=calls,
            finish_reason=str(filled[0].get("finish_reason") if filled else "stop"),
            usage=dict(body["usage"]) if isinstance(body["usage"], dict) else {},
        )

    def stream_events(self, include_usage: bool) -> Iterator[dict[str, Any]]:
        """Yield the `chat.completion.chunk` objects of this answer, in order.

        The first chunk carries the role, then one chunk per content token, then the
        tool calls (name first, then their arguments in pieces), then the finish reason,
        then (with `include_usage`) a last chunk with empty choices and the usage.

        Args:
            include_usage: The request's `stream_options.include_usage`.

        Yields:
            Chunk objects, to be sent as `data: <json>` lines.
        """
        base = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.body.get("created", int(time.time())),
            "model": self.body.get("model", ""),
            "system_fingerprint": None,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            event = dict(base)
            event["choices"] = [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ]
            if include_usage:
                event["usage"] = None
            return event

        yield chunk({"role": "assistant", "content": "" if self.content is not None else None})
        for token in split_tokens(self.content or ""):
            yield chunk({"content": token})
        for index, call in enumerate(self.tool_calls):
            function = call.get("function", {})
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.get("id"),
                            "type": "function",
                            "function": {"name": function.get("name"), "arguments": ""},
                        }
                    ]
                }
            )
            for piece in split_tokens(str(function.get("arguments", ""))):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, self.finish_reason)
        if include_usage:
            event = dict(base)
            event["choices"] = []
            event["usage"] = self.usage
            yield event


_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """Return OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.

    Args:
        status: The HTTP status it goes with (chooses `type` and `code`).
        message: The human-readable message.
        param: The offending request parameter, when there is one.

    Returns:
        The JSON-ready body.
    """
    kind, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "error", None))
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
