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
llama-cpp-python's 500 "Input should be 'text' or 'json_object'") or its grammar fails on
the schema (llama.cpp's 500 "... does not match the expected peg-native format"),
`json_object` with the schema (llama.cpp's extension) plus the schema in the prompt; when
that fails too, plain prompt mode. A schema written into the prompt that overflows the
server's context is dropped (the server enforces it anyway). What an endpoint (base URL and
model) accepted is remembered in the client's shared memory, and concurrent first calls
wait for one discovery instead of each paying for it. How requests fail is told apart in
`failures`; how one reply is read, in `reading`. See docs/structured-outputs.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from surge._errors import (
    APIStatusError,
    ParseAttempt,
    TransportError,
)
from surge._structured.failures import (
    StructuredOutputError,
    is_context_overflow,
    is_grammar_failure,
    is_rejection,
    is_schema_invalid,
    server_message,
    sum_usage,
)
from surge._structured.modes import Discovery, ModeMemory, OutputMode, Strategy
from surge._structured.plan import (
    plan_for,
    prompt_hint,
)
from surge._structured.reading import all_failed, exhausted, read_reply
from surge._structured.request import (
    FALLBACK,
    build_request,
    check_arguments,
    reask_messages,
    shows_schema_to_model,
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


# -- one request ----------------------------------------------------------------------------


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
    check_arguments(mode, 0, params)
    plan = plan_for(output_type)
    chosen_model = model if model is not None else client.model
    strategy = mode or memory.get(f"{client.base_url} {chosen_model or ''}") or "json_schema"
    schema_in_prompt = mode is None and not shows_schema_to_model(client.base_url)
    hint = prompt_hint(plan, strategy, schema_in_prompt)
    return build_request(plan, dump_messages(messages), strategy, hint, params, plan.strict.strict)


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
    check_arguments(mode, max_retries, params)
    plan = plan_for(output_type)
    base = dump_messages(messages)
    chosen_model = model if model is not None else client.model
    key = f"{client.base_url} {chosen_model or ''}"
    schema_in_prompt = mode is None and not shows_schema_to_model(client.base_url)

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
    tried: list[tuple[str, str]] = []  # default mode: the modes that failed, and why
    hints = True  # False once the schema in the prompt overflowed the context
    try:
        while True:
            hint = prompt_hint(plan, strategy, schema_in_prompt)
            if not hints and strategy != "prompt":
                hint = ""
            conversation, sent_params = build_request(plan, base, strategy, hint, params, strict)
            try:
                response = await _send(
                    client,
                    [*conversation, *reasks],
                    model,
                    sent_params,
                    guarded=strategy != "prompt",
                )
            except APIStatusError as exc:
                if is_context_overflow(exc):
                    if reasks:  # the re-asks, not the question, outgrew the context
                        raise exhausted(
                            output_type,
                            plan,
                            strategy,
                            responses,
                            failures,
                            tried,
                            f"re-asking exceeded the server's context ({server_message(exc)})",
                        ) from exc
                    if hint and strategy != "prompt":
                        # The schema surge wrote into the prompt made it too long; the
                        # server enforces the schema itself, so ask without it.
                        hints = False
                        continue
                grammar = is_grammar_failure(exc)
                if mode is not None or strategy == "prompt" or not (grammar or is_rejection(exc)):
                    if tried:
                        raise all_failed(
                            output_type, plan, strategy, responses, failures, tried, exc
                        ) from exc
                    raise
                if strict and strategy in ("json_schema", "tools") and is_schema_invalid(exc):
                    strict = False  # this schema, not the endpoint: retry non-strict
                    learn = False
                    continue
                if grammar:
                    learn = False  # this schema failed, not the endpoint
                tried.append((strategy, server_message(exc)))
                strategy = FALLBACK.get(strategy, "prompt")
                continue
            if learn:
                memory.learn(key, strategy)
            memory.finish(discovery, key)
            discovery = None
            responses.append(response)
            value, error = read_reply(
                response, plan, strategy, output_type, responses, failures, tried
            )
            if error is None:
                return StructuredResult(
                    value=value,
                    responses=responses,
                    attempts=len(responses),
                    usage=sum_usage(responses),
                    mode="prompt" if strategy == "json_object" else strategy,
                    strategy=strategy,
                    strict=strict and strategy in ("json_schema", "tools"),
                )
            if len(responses) > max_retries:
                raise exhausted(output_type, plan, strategy, responses, failures, tried)
            if hint:
                retry_hint = "Follow the schema given above."
            elif not hints:  # the schema did not fit beside the question
                retry_hint = ""
            else:  # the server may ignore response_format: now show the schema
                retry_hint = "" if strategy == "tools" else plan.object_prompt_text
            reasks += reask_messages(response, plan, strategy, error, retry_hint)
    finally:
        memory.finish(discovery, key)


async def _send(
    client: ChatCaller,
    messages: list[dict[str, Any]],
    model: str | None,
    params: dict[str, Any],
    *,
    guarded: bool,
) -> ChatResponse:
    """Send one request through `client.chat`.

    A request that asks the server for structure (every mode but prompt) goes without
    retries first, so that a rejection or a grammar failure is seen at once instead of
    being retried as if the server were down (llama-cpp-python answers a rejection with
    500, llama.cpp a grammar failure with 500). When it failed for another, transient
    reason, it is sent again the normal way, with the client's retries.
    """
    if not guarded or "retry" in params:
        return await client.chat(messages, model=model, **params)
    try:
        return await client.chat(messages, model=model, retry=False, **params)
    except APIStatusError as exc:
        transient = exc.status_code >= 500 or exc.status_code in (408, 429)
        if not transient or is_rejection(exc) or is_grammar_failure(exc):
            raise
    except TransportError:
        pass
    return await client.chat(messages, model=model, **params)
