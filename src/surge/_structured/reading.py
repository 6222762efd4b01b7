"""Reading one reply of a structured call: the value, or why there is none.

`read_reply` turns a chat completion into a validated value, or into the error to show the
model when re-asking, or ends the call (a refusal, a cut-off, a server that ignores
`tools`); `exhausted` and `all_failed` are the errors that end a call that ran out of
attempts or of modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic

from surge._errors import APIStatusError, OutputParseError, ParseAttempt
from surge._structured.failures import Reason, StructuredOutputError, server_message
from surge._structured.modes import Strategy
from surge._structured.plan import OutputPlan, decode, reply_text
from surge._types import ChatResponse

__all__ = ["all_failed", "exhausted", "explain", "read_reply"]

_MAX_ERRORS_SHOWN = 8


def explain(exc: Exception) -> str:
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


def read_reply(
    response: ChatResponse,
    plan: OutputPlan,
    strategy: Strategy,
    output_type: Any,
    responses: list[ChatResponse],
    failures: list[ParseAttempt],
    tried: Sequence[tuple[str, str]],
) -> tuple[Any, str | None]:
    """Return (value, None), or (None, why) to re-ask; raise for a refusal or a cut-off.

    In tools mode a reply with no tool call at all means the server ignores `tools`
    (llama.cpp's server does when the model's chat template has no tool support): the
    text is still accepted when it is a valid value, else the call ends at once, since
    re-asking cannot make the server call the tool.
    """
    text = reply_text(response, plan, strategy)
    refusal = response.message.refusal

    def fail(message: str, why: str, reason: Reason) -> StructuredOutputError:
        failures.append(ParseAttempt(text or refusal or "", why))
        return StructuredOutputError(
            message,
            raw=text or refusal or "",
            target=output_type,
            attempts=failures,
            reason=reason,
            responses=responses,
            refusal=refusal if reason == "refusal" else None,
            tried=tried,
        )

    if refusal:
        raise fail(f"the model refused to answer: {refusal}", f"refused: {refusal}", "refusal")
    if strategy == "tools" and not response.tool_calls:
        try:
            return decode(text, plan, strategy), None
        except (OutputParseError, pydantic.ValidationError):
            raise fail(
                f"tools mode: the server answered with text (finish_reason "
                f"{response.finish_reason!r}), not a call to the tool {plan.name!r}: it "
                "ignores `tools` (llama.cpp's server does when the model's chat template "
                "has no tool support); use mode='json_schema' or mode='prompt'",
                "answered with text, not a tool call",
                "unsupported",
            ) from None
    if response.finish_reason == "length":
        raise fail(
            "the reply was cut off by the token limit (finish_reason 'length') before the "
            "output was complete; raise max_tokens (or ask for less)",
            "cut off by the token limit",
            "length",
        )
    try:
        return decode(text, plan, strategy), None
    except (OutputParseError, pydantic.ValidationError) as exc:
        why = explain(exc)
        failures.append(ParseAttempt(text, why))
        return None, why


def exhausted(
    output_type: Any,
    plan: OutputPlan,
    strategy: Strategy,
    responses: list[ChatResponse],
    failures: list[ParseAttempt],
    tried: Sequence[tuple[str, str]],
    last: str | None = None,
) -> StructuredOutputError:
    count = len(responses)
    if last is None:
        last = failures[-1].error.split("\n", 1)[0] if failures else "no reply"
    return StructuredOutputError(
        f"no valid {plan.name} after {count} attempt{'s' if count != 1 else ''} "
        f"({strategy} mode); last error: {last}",
        raw=failures[-1].text if failures else "",
        target=output_type,
        attempts=failures,
        reason="invalid",
        responses=responses,
        tried=tried,
    )


def all_failed(
    output_type: Any,
    plan: OutputPlan,
    strategy: Strategy,
    responses: list[ChatResponse],
    failures: list[ParseAttempt],
    tried: Sequence[tuple[str, str]],
    exc: APIStatusError,
) -> StructuredOutputError:
    """The default mode's end when its last mode failed with an error status too."""
    return StructuredOutputError(
        f"no valid {plan.name}: every mode failed, the last one ({strategy}) with "
        f"{server_message(exc)}",
        raw=failures[-1].text if failures else "",
        target=output_type,
        attempts=failures,
        reason="rejected",
        responses=responses,
        tried=tried,
    )
