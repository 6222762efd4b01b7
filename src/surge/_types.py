"""Typed models of the OpenAI chat-completions wire format.

Requests are built from `Message`s (or plain dicts); responses are validated into
`ChatResponse`. Every model tolerates fields it does not know, so a server that adds
fields (vLLM's `reasoning_content`, llama.cpp's `timings`) loses nothing: unknown fields
stay reachable as attributes and in `ChatResponse.raw`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr

from surge._timings import Timings

if TYPE_CHECKING:
    from surge._attempt import Attempt

__all__ = [
    "ChatResponse",
    "Choice",
    "FunctionCall",
    "Message",
    "MessageInput",
    "ResponseMessage",
    "ToolCall",
    "Usage",
    "dump_messages",
]


class _Lenient(BaseModel):
    """A wire model that keeps unknown fields instead of failing on them."""

    model_config = ConfigDict(extra="allow")


class FunctionCall(_Lenient):
    """The function a tool call invokes.

    Attributes:
        name: The function's name.
        arguments: Its arguments as the model wrote them: a JSON string, not yet parsed.
    """

    name: str
    arguments: str = ""


class ToolCall(_Lenient):
    """One tool call requested by the model.

    Attributes:
        id: The call's id, to quote back in the `tool` message that answers it.
        type: Always "function" today.
        function: What to call, with which arguments.
    """

    id: str = ""
    type: str = "function"
    function: FunctionCall


class Message(_Lenient):
    """One message of a conversation, as sent to the server.

    Build them directly or with `Message.system(...)`, `Message.user(...)`,
    `Message.assistant(...)`, `Message.tool(...)`. Plain dicts work too wherever messages
    are accepted.

    Attributes:
        role: "system", "user", "assistant", "tool" (or "developer" for newer models).
        content: The text, or a list of content parts (text, images) as OpenAI defines them.
        name: An optional participant name.
        tool_calls: Tool calls an assistant message made (when replaying history).
        tool_call_id: For a `tool` message: the id of the call it answers.
    """

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        """Return a system message."""
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str | list[dict[str, Any]]) -> Message:
        """Return a user message."""
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str | None, *, tool_calls: list[ToolCall] | None = None) -> Message:
        """Return an assistant message (for replaying a conversation)."""
        return cls(role="assistant", content=content, tool_calls=tool_calls)

    @classmethod
    def tool(cls, content: str, *, tool_call_id: str) -> Message:
        """Return a tool message answering the tool call `tool_call_id`."""
        return cls(role="tool", content=content, tool_call_id=tool_call_id)


MessageInput = Message | Mapping[str, Any]
"""A message as callers may give it: a `Message` or a plain dict in OpenAI's shape."""


def dump_messages(messages: Sequence[MessageInput] | str) -> list[dict[str, Any]]:
    """Turn messages as given by a caller into the JSON-ready list the server expects.

    Args:
        messages: `Message`s or dicts; a lone string is taken as one user message.

    Returns:
        A new list of plain dicts.

    Raises:
        TypeError: An item is neither a `Message` nor a mapping, or `messages` is a bare
            dict rather than a list.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence):
        raise TypeError(
            f"messages must be a list of messages (dicts or surge.Message), "
            f"not {type(messages).__name__}"
        )
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if isinstance(message, Message):
            out.append(message.model_dump(exclude_none=True))
        elif isinstance(message, Mapping):
            out.append(dict(message))
        else:
            raise TypeError(
                f"messages[{i}] must be a dict or surge.Message, not {type(message).__name__}"
            )
    return out


class ResponseMessage(_Lenient):
    """The assistant's message inside a choice.

    Attributes:
        role: "assistant".
        content: The text, or None when the model only called tools or refused.
        tool_calls: The tool calls the model made, if any.
        refusal: The refusal text, when the model declined (OpenAI structured outputs).
    """

    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class Choice(_Lenient):
    """One completion choice.

    Attributes:
        index: The choice's position (0 unless `n` > 1 was asked).
        message: The assistant's message.
        finish_reason: Why generation stopped: "stop", "length", "tool_calls",
            "content_filter", or a server's own word; None if not said.
    """

    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = None


class Usage(_Lenient):
    """Token counts of one completion.

    Attributes:
        prompt_tokens: Tokens in the request.
        completion_tokens: Tokens generated.
        total_tokens: Their sum.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class ChatResponse(_Lenient):
    """A chat completion, typed.

    Attributes:
        id: The server's completion id.
        object: "chat.completion".
        created: Unix time the server created it.
        model: The model that answered.
        choices: The choices; at least one.
        usage: Token counts, when the server sent them.
        system_fingerprint: The backend configuration, when the server sent it.
    """

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    _timings: Timings = PrivateAttr(default_factory=Timings)
    _request_id: str | None = PrivateAttr(default=None)
    _attempts: tuple[Any, ...] = PrivateAttr(default=())
    _endpoint: str | None = PrivateAttr(default=None)

    @property
    def text(self) -> str:
        """The first choice's text content ("" when it has none, e.g. only tool calls)."""
        return self.choices[0].message.content or ""

    @property
    def message(self) -> ResponseMessage:
        """The first choice's message."""
        return self.choices[0].message

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The first choice's tool calls (empty when there are none)."""
        return self.choices[0].message.tool_calls or []

    @property
    def finish_reason(self) -> str | None:
        """The first choice's finish reason."""
        return self.choices[0].finish_reason

    @property
    def raw(self) -> dict[str, Any]:
        """The decoded JSON body exactly as the server sent it."""
        return self._raw

    @property
    def timings(self) -> Timings:
        """Where the call spent its time: queued in the client, connecting, at the server."""
        return self._timings

    @property
    def request_id(self) -> str | None:
        """The server's request id (`x-request-id` header), when it sent one."""
        return self._request_id

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """Every attempt the call made, oldest first; the last one is this answer.

        `len(response.attempts) - 1` is the number of retries. Each `surge.Attempt` says
        where it went, its status or error, and how long the call waited after it.
        """
        return self._attempts

    @property
    def endpoint(self) -> str | None:
        """The API root that served this answer (one of the client's endpoints)."""
        return self._endpoint
