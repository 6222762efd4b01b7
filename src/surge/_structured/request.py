"""One structured request: its messages and parameters, its checks, and its re-ask.

Shared by the plain runner (`surge._structured.run`) and the streamed one
(`surge._streaming.structured`).
"""

from __future__ import annotations

from typing import Any

import httpx

from surge._errors import ConfigError
from surge._structured.modes import MODES, OutputMode, Strategy
from surge._structured.plan import OutputPlan, request_params
from surge._types import ChatResponse

__all__ = [
    "FALLBACK",
    "RESERVED",
    "build_request",
    "check_arguments",
    "reask_messages",
    "shows_schema_to_model",
    "with_instructions",
]

#: The strategy tried next when the server rejects one (``mode=None``).
FALLBACK: dict[Strategy, Strategy] = {"json_schema": "json_object", "json_object": "prompt"}
#: Parameters structured calls set themselves.
RESERVED = ("response_format", "tools", "tool_choice", "functions", "function_call")


def with_instructions(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
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


def build_request(
    plan: OutputPlan,
    base: list[dict[str, Any]],
    strategy: Strategy,
    hint: str,
    params: dict[str, Any],
    strict: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and parameters of one request for `strategy` (before any re-ask)."""
    conversation = with_instructions(base, hint) if hint else base
    return conversation, {**params, **request_params(plan, strategy, strict)}


def check_arguments(mode: OutputMode | None, max_retries: int, params: dict[str, Any]) -> None:
    if mode is not None and mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)} or None; got {mode!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigError(f"max_retries must be an integer >= 0; got {max_retries!r}")
    reserved = [name for name in RESERVED if name in params]
    if reserved:
        raise ConfigError(
            f"structured() sets {', '.join(reserved)} itself; remove it, or choose how "
            "structure is asked for with mode='json_schema' | 'tools' | 'prompt'"
        )


def shows_schema_to_model(base_url: str) -> bool:
    """Whether the server itself shows a json_schema's schema to the model (OpenAI does)."""
    host = httpx.URL(base_url).host
    return host == "openai.com" or host.endswith((".openai.com", ".openai.azure.com"))


def reask_messages(
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
