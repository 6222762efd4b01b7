"""Structured outputs: turn chat completions into typed values.

`LLMClient.structured` and `structured_response` land here. A call asks the server for
output of a type in one of three modes, reads the reply leniently (`surge._parsing.parse`)
and validates it, re-asking with the error shown to the model when that fails.

- `json_schema`: `response_format` json_schema, `strict: true` when the schema can be made
  strict (`surge._structured.strict`), else non-strict.
- `tools`: one forced function call whose arguments are the output.
- `prompt`: the schema is written into the prompt (`surge._structured.schema_prompt`); no server
  support needed.

With `mode=None` the endpoint decides: json_schema first; when the server rejects that
(an error status whose message names response_format / json_schema, like
llama-cpp-python's 500 "Input should be 'text' or 'json_object'"), `json_object` with the
schema (llama.cpp's extension) plus the schema in the prompt; when that is rejected too,
plain prompt mode. What an endpoint (base URL and model) accepted is remembered in the
client's shared memory, and concurrent first calls wait for one discovery instead of each
paying for it. See docs/structured-outputs.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

import httpx
import pydantic

from surge._errors import (
    APIStatusError,
    ConfigError,
    OutputParseError,
    ParseAttempt,
    TransportError,
)
from surge._structured.modes import MODES, Discovery, ModeMemory, OutputMode, Strategy
from surge._structured.plan import (
    OutputPlan,
    decode,
    plan_for,
    prompt_hint,
    reply_text,
    request_params,
)
from surge._types import ChatResponse, MessageInput, Usage, dump_messages

__all__ = [
    "ChatCaller",
    "StructuredOutputError",
    "StructuredResult",
    "preview_request",
    "run_structured",
]

T = TypeVar("T")

_FALLBACK: dict[Strategy, Strategy] = {"json_schema": "json_object", "json_object": "prompt"}
_RESERVED = ("response_format", "tools", "tool_choice", "functions", "function_call")
_REJECTION = re.compile(
    r"response_format|json_schema|json_object|structured output|guided_json|tool_choice",
    re.IGNORECASE,
)
_INVALID_SCHEMA = re.compile(r"invalid schema|schema is invalid|not permitted", re.IGNORECASE)
_MAX_ERRORS_SHOWN = 8


class ChatCaller(Protocol):
    """What structured outputs need from a client: where it points, and `chat`.

    `LLMClient` is one; the structured layer never imports it, so it sits beside the
    client rather than on top of it.
    """

    @property
    def base_url(self) -> str:
        """The server's API root (the key of what each endpoint accepts)."""
        ...

    @property
    def model(self) -> str | None:
        """The default model."""
        ...

    async def chat(
        self,
        messages: Sequence[MessageInput] | str,
        *,
        model: str | None = None,
        retry: Any = None,
        **params: Any,
    ) -> ChatResponse:
        """Ask for one chat completion."""
        ...


@dataclass
class StructuredResult(Generic[T]):
    """A validated value and how it was obtained.

    Attributes:
        value: The validated value.
        responses: Every chat completion received, in order (the last one produced `value`).
        attempts: How many replies were read (1 + the re-asks).
        usage: Token counts summed over every response.
        mode: The mode of the request that produced the value ("prompt" for the
            json_object fallback, which states the schema in the prompt).
        strategy: Like `mode`, but tells the json_object fallback apart.
        strict: Whether the schema was sent with `strict: true`.
    """

    value: T
    responses: list[ChatResponse]
    attempts: int
    usage: Usage
    mode: OutputMode
    strategy: Strategy = "json_schema"
    strict: bool = False

    @property
    def response(self) -> ChatResponse:
        """The response that produced the value."""
        return self.responses[-1]


class StructuredOutputError(OutputParseError):
    """No reply could be turned into the requested type.

    An `OutputParseError`, so `except surge.OutputParseError` catches it. `attempts` holds
    one `ParseAttempt` per reply (its full text and why it was not accepted).

    Attributes:
        reason: "invalid" (every reply failed to parse or validate), "refusal" (the model
            refused; not re-asked) or "length" (the reply was cut off by the token limit;
            not re-asked, raise `max_tokens`).
        responses: Every chat completion received.
        usage: Token counts summed over every response.
        refusal: The model's refusal text, for reason "refusal".
    """

    def __init__(
        self,
        message: str,
        *,
        raw: str,
        target: Any,
        attempts: Sequence[ParseAttempt],
        reason: Literal["invalid", "refusal", "length"],
        responses: list[ChatResponse],
        refusal: str | None = None,
    ) -> None:
        super().__init__(message, raw=raw, target=target, attempts=attempts)
        self.reason = reason
        self.responses = responses
        self.usage = _sum_usage(responses)
        self.refusal = refusal


def _is_rejection(exc: APIStatusError) -> bool:
    """Whether an error status says the server does not accept how we asked for structure."""
    if exc.status_code in (401, 403, 404, 408, 409, 429):
        return False
    return bool(_REJECTION.search(f"{exc} {exc.body}"))


# -- one request ----------------------------------------------------------------------------


def _with_instructions(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Append `text` to the last user message (every chat template accepts that)."""
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = f"{content}\n\n{text}" if content else text
                return out
            if isinstance(content, list):
                message["content"] = [*content, {"type": "text", "text": text}]
                return out
    out.append({"role": "user", "content": text})
    return out


def _request(
    plan: OutputPlan,
    base: list[dict[str, Any]],
    strategy: Strategy,
    hint: str,
    params: dict[str, Any],
    strict: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and parameters of one request for `strategy` (before any re-ask)."""
    conversation = _with_instructions(base, hint) if hint else base
    return conversation, {**params, **request_params(plan, strategy, strict)}


def preview_request(
    client: ChatCaller,
    output_type: Any,
    messages: Sequence[MessageInput] | str,
    *,
    mode: OutputMode | None,
    model: str | None,
    params: dict[str, Any],
    memory: ModeMemory,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and parameters the first request of `run_structured` would send.

    With `mode=None` that is the strategy the endpoint is known to accept, else the first
    one tried (json_schema). Sends nothing.

    Raises:
        ConfigError: As for `run_structured`.
    """
    _check_arguments(mode, 0, params)
    plan = plan_for(output_type)
    chosen_model = model if model is not None else client.model
    strategy = mode or memory.get(f"{client.base_url} {chosen_model or ''}") or "json_schema"
    schema_in_prompt = mode is None and not _shows_schema_to_model(client.base_url)
    hint = prompt_hint(plan, strategy, schema_in_prompt)
    return _request(plan, dump_messages(messages), strategy, hint, params, plan.strict.strict)


def _check_arguments(mode: OutputMode | None, max_retries: int, params: dict[str, Any]) -> None:
    if mode is not None and mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)} or None; got {mode!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigError(f"max_retries must be an integer >= 0; got {max_retries!r}")
    reserved = [name for name in _RESERVED if name in params]
    if reserved:
        raise ConfigError(
            f"structured() sets {', '.join(reserved)} itself; remove it, or choose how "
            "structure is asked for with mode='json_schema' | 'tools' | 'prompt'"
        )


def _shows_schema_to_model(base_url: str) -> bool:
    """Whether the server itself shows a json_schema's schema to the model (OpenAI does)."""
    host = httpx.URL(base_url).host
    return host == "openai.com" or host.endswith((".openai.com", ".openai.azure.com"))


def _explain(exc: Exception) -> str:
    """The error in words, as shown to the model when re-asking."""
    if isinstance(exc, pydantic.ValidationError):
        errors = exc.errors(include_url=False)
        lines = [
            f"- {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in errors[:_MAX_ERRORS_SHOWN]
        ]
        if len(errors) > _MAX_ERRORS_SHOWN:
            lines.append(f"- ... and {len(errors) - _MAX_ERRORS_SHOWN} more")
        return f"{len(errors)} validation error(s):\n" + "\n".join(lines)
    if isinstance(exc, OutputParseError):
        head = str(exc).split("\n", 1)[0]
        reasons = [a.error for a in exc.attempts[:_MAX_ERRORS_SHOWN] if a.error]
        return head + "".join(f"\n- {r}" for r in dict.fromkeys(reasons))
    return str(exc)


def _reask(
    response: ChatResponse, plan: OutputPlan, strategy: Strategy, why: str, schema_hint: str
) -> list[dict[str, Any]]:
    """The messages that show the model its bad reply and the error."""
    message = response.message
    calls = response.tool_calls
    if strategy == "tools" and calls:
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": message.content,
            "tool_calls": [c.model_dump(exclude_none=True) for c in calls],
        }
        answers = [
            {
                "role": "tool",
                "tool_call_id": call.id or f"call_{i}",
                "content": f"Error: {why}\nCall {plan.name} again with corrected arguments.",
            }
            for i, call in enumerate(calls)
        ]
        return [assistant, *answers]
    ask = f"Your answer could not be used: {why}\n\nAnswer again with only the corrected JSON."
    if schema_hint:
        ask += f"\n{schema_hint}"
    return [
        {"role": "assistant", "content": message.content or ""},
        {"role": "user", "content": ask},
    ]


def _sum_usage(responses: Sequence[ChatResponse]) -> Usage:
    total = Usage()
    for response in responses:
        if response.usage is not None:
            total = total + response.usage
    return total


# -- the runner -----------------------------------------------------------------------------


async def run_structured(
    client: ChatCaller,
    output_type: Any,
    messages: Sequence[MessageInput] | str,
    *,
    mode: OutputMode | None,
    max_retries: int,
    model: str | None,
    params: dict[str, Any],
    memory: ModeMemory,
) -> StructuredResult[Any]:
    """Ask for output of `output_type`, falling back and re-asking as needed.

    Args:
        client: The client whose `chat` sends every request.
        output_type: A type `pydantic.TypeAdapter` accepts, or a JSON Schema dict.
        messages: The conversation.
        mode: "json_schema", "tools" or "prompt" (honoured without fallback), or None to
            let the endpoint decide (json_schema, then json_object, then prompt).
        max_retries: How many times to re-ask after a reply that does not parse or validate.
        model: The model for this call (default: the client's).
        params: Other chat-completion parameters.
        memory: Strategy per endpoint, shared by the client and its `with_options` clones.

    Returns:
        The value with every response, the attempt count, summed usage and the mode used.

    Raises:
        ConfigError: A bad argument (unknown mode, negative max_retries, `response_format`
            or `tools` in params, an output type pydantic cannot describe).
        StructuredOutputError: No reply gave a valid value, the model refused, or the
            reply was cut off by the token limit.
        APIStatusError, TransportError, ResponseFormatError: As for `chat`; with
            `mode=None`, a rejection of the structured-output request is handled by
            falling back instead.
    """
    _check_arguments(mode, max_retries, params)
    plan = plan_for(output_type)
    base = dump_messages(messages)
    chosen_model = model if model is not None else client.model
    key = f"{client.base_url} {chosen_model or ''}"
    schema_in_prompt = mode is None and not _shows_schema_to_model(client.base_url)

    discovery: Discovery | None = None
    if mode is None:
        strategy, discovery = await memory.remembered_or_discover(key)
    else:
        strategy = mode
    strict = plan.strict.strict
    learn = mode is None  # remember what the endpoint accepted
    responses: list[ChatResponse] = []
    failures: list[ParseAttempt] = []
    reasks: list[dict[str, Any]] = []
    try:
        while True:
            hint = prompt_hint(plan, strategy, schema_in_prompt)
            conversation, sent_params = _request(plan, base, strategy, hint, params, strict)
            try:
                response = await _send(
                    client,
                    [*conversation, *reasks],
                    model,
                    sent_params,
                    probing=mode is None and memory.get(key) != strategy,
                )
            except APIStatusError as exc:
                if mode is not None or strategy == "prompt" or not _is_rejection(exc):
                    raise
                if (
                    strict
                    and strategy in ("json_schema", "tools")
                    and _INVALID_SCHEMA.search(str(exc))
                ):
                    strict = False  # this schema, not the endpoint: retry non-strict
                    learn = False
                    continue
                strategy = _FALLBACK.get(strategy, "prompt")
                continue
            if learn:
                memory.learn(key, strategy)
            memory.finish(discovery, key)
            discovery = None
            responses.append(response)
            value, error = _read(response, plan, strategy, output_type, responses, failures)
            if error is None:
                return StructuredResult(
                    value=value,
                    responses=responses,
                    attempts=len(responses),
                    usage=_sum_usage(responses),
                    mode="prompt" if strategy == "json_object" else strategy,
                    strategy=strategy,
                    strict=strict and strategy in ("json_schema", "tools"),
                )
            if len(responses) > max_retries:
                raise _exhausted(output_type, plan, strategy, responses, failures)
            if hint:
                retry_hint = "Follow the schema given above."
            else:  # the server may ignore response_format: now show the schema
                retry_hint = "" if strategy == "tools" else plan.object_prompt_text
            reasks += _reask(response, plan, strategy, error, retry_hint)
    finally:
        memory.finish(discovery, key)


async def _send(
    client: ChatCaller,
    messages: list[dict[str, Any]],
    model: str | None,
    params: dict[str, Any],
    *,
    probing: bool,
) -> ChatResponse:
    """Send one request through `client.chat`.

    A probe of a strategy the endpoint has not accepted yet goes without retries first,
    so that a rejection is seen at once (llama-cpp-python answers 500, which the retry
    policy would retry); when it failed for another, transient reason it is sent again
    the normal way, with the client's retries.
    """
    if not probing or "retry" in params:
        return await client.chat(messages, model=model, **params)
    try:
        return await client.chat(messages, model=model, retry=False, **params)
    except APIStatusError as exc:
        if _is_rejection(exc) or not (exc.status_code >= 500 or exc.status_code in (408, 429)):
            raise
    except TransportError:
        pass
    return await client.chat(messages, model=model, **params)


def _read(
    response: ChatResponse,
    plan: OutputPlan,
    strategy: Strategy,
    output_type: Any,
    responses: list[ChatResponse],
    failures: list[ParseAttempt],
) -> tuple[Any, str | None]:
    """Return (value, None), or (None, why) to re-ask; raise for a refusal or a cut-off."""
    text = reply_text(response, plan, strategy)
    refusal = response.message.refusal
    if refusal:
        failures.append(ParseAttempt(text or refusal, f"refused: {refusal}"))
        raise StructuredOutputError(
            f"the model refused to answer: {refusal}",
            raw=text or refusal,
            target=output_type,
            attempts=failures,
            reason="refusal",
            responses=responses,
            refusal=refusal,
        )
    if response.finish_reason == "length":
        failures.append(ParseAttempt(text, "cut off by the token limit"))
        raise StructuredOutputError(
            "the reply was cut off by the token limit (finish_reason 'length') before the "
            "output was complete; raise max_tokens (or ask for less)",
            raw=text,
            target=output_type,
            attempts=failures,
            reason="length",
            responses=responses,
        )
    try:
        return decode(text, plan, strategy), None
    except (OutputParseError, pydantic.ValidationError) as exc:
        why = _explain(exc)
        failures.append(ParseAttempt(text, why))
        return None, why


def _exhausted(
    output_type: Any,
    plan: OutputPlan,
    strategy: Strategy,
    responses: list[ChatResponse],
    failures: list[ParseAttempt],
) -> StructuredOutputError:
    count = len(responses)
    last = failures[-1].error.split("\n", 1)[0] if failures else "no reply"
    return StructuredOutputError(
        f"no valid {plan.name} after {count} attempt{'s' if count != 1 else ''} "
        f"({strategy} mode); last error: {last}",
        raw=failures[-1].text if failures else "",
        target=output_type,
        attempts=failures,
        reason="invalid",
        responses=responses,
    )
