"""How a structured-output request fails, and the error that ends a call.

A server can fail a structured request in ways a plain chat call never meets, and each
calls for a different move (found against llama.cpp's `llama-server`, tests/test_realserver.py):

- a *rejection*: the server does not accept how structure was asked for (llama-cpp-python's
  500 "Input should be 'text' or 'json_object'"): the endpoint needs another mode;
- a *grammar failure*: the server accepted the schema but its grammar engine could not turn
  it into output (llama.cpp's 500 "The model produced output that does not match the
  expected peg-native format", 400 "Failed to initialize samplers"): this schema needs
  another mode, the endpoint may be fine; retrying the same request is no use;
- a *context overflow*: the request does not fit the server's context (llama.cpp's 400
  "request (1268 tokens) exceeds the available context size (1024 tokens)", OpenAI's
  `context_length_exceeded`): the schema surge added to the prompt may be what overflowed.

`StructuredOutputError` ends a call that got no valid value; in the default mode it says
which modes were tried and why each failed (`tried`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from surge._errors import APIStatusError, OutputParseError, ParseAttempt
from surge._types import ChatResponse, Usage

__all__ = [
    "StructuredOutputError",
    "is_context_overflow",
    "is_grammar_failure",
    "is_rejection",
    "is_schema_invalid",
    "server_message",
    "sum_usage",
]

_REJECTION = re.compile(
    r"response_format|json_schema|json_object|structured output|guided_json|tool_choice",
    re.IGNORECASE,
)
_INVALID_SCHEMA = re.compile(r"invalid schema|schema is invalid|not permitted", re.IGNORECASE)
_GRAMMAR = re.compile(
    r"grammar|peg-native|does not match the expected|failed to initialize samplers",
    re.IGNORECASE,
)
_CONTEXT = re.compile(
    r"exceed_context_size|exceeds the available context|context_length_exceeded"
    r"|maximum context length|context window",
    re.IGNORECASE,
)
_NEVER = (401, 403, 404, 408, 409, 429)  # about the caller or the load, not the request


def _text(exc: APIStatusError) -> str:
    return f"{exc} {exc.body}"


def is_rejection(exc: APIStatusError) -> bool:
    """Whether an error status says the server does not accept how structure was asked for."""
    return exc.status_code not in _NEVER and bool(_REJECTION.search(_text(exc)))


def is_grammar_failure(exc: APIStatusError) -> bool:
    """Whether the server's grammar engine failed on this schema (retrying is no use)."""
    return exc.status_code not in _NEVER and bool(_GRAMMAR.search(_text(exc)))


def is_schema_invalid(exc: APIStatusError) -> bool:
    """Whether the server says the (strict) schema itself is invalid."""
    return bool(_INVALID_SCHEMA.search(str(exc)))


def is_context_overflow(exc: APIStatusError) -> bool:
    """Whether the request did not fit the server's context window."""
    return exc.status_code in (400, 413) and bool(_CONTEXT.search(_text(exc)))


def server_message(exc: APIStatusError) -> str:
    """The status and the server's own message, e.g. "500: The model produced ..."."""
    message: Any = None
    if isinstance(exc.body, dict):
        error = exc.body.get("error")
        message = error.get("message") if isinstance(error, dict) else exc.body.get("message")
    if not isinstance(message, str) or not message:
        message = str(exc).split(f"returned {exc.status_code}: ", 1)[-1]
    return f"{exc.status_code}: {message}"


def sum_usage(responses: Sequence[ChatResponse]) -> Usage:
    """Token counts summed over `responses`."""
    total = Usage()
    for response in responses:
        if response.usage is not None:
            total = total + response.usage
    return total


Reason = Literal["invalid", "refusal", "length", "unsupported", "rejected"]


class StructuredOutputError(OutputParseError):
    """No reply could be turned into the requested type.

    An `OutputParseError`, so `except surge.OutputParseError` catches it. `attempts` holds
    one `ParseAttempt` per reply (its full text and why it was not accepted).

    Attributes:
        reason: "invalid" (every reply failed to parse or validate), "refusal" (the model
            refused; not re-asked), "length" (the reply was cut off by the token limit; not
            re-asked, raise `max_tokens`), "unsupported" (tools mode, and the server
            answered with text instead of calling the tool: it ignores `tools`), or
            "rejected" (the default mode ran out of modes: the server rejected each).
        responses: Every chat completion received.
        usage: Token counts summed over every response.
        refusal: The model's refusal text, for reason "refusal".
        tried: In the default mode, every mode tried before the last one and why it
            failed, as (mode, why) pairs in order, e.g. `("json_schema", "500: The model
            produced output that does not match the expected peg-native format")`; the
            message lists them too. Empty when the first mode tried is the one that failed.
    """

    def __init__(
        self,
        message: str,
        *,
        raw: str,
        target: Any,
        attempts: Sequence[ParseAttempt],
        reason: Reason,
        responses: list[ChatResponse],
        refusal: str | None = None,
        tried: Sequence[tuple[str, str]] = (),
    ) -> None:
        if tried:
            earlier = "; ".join(f"{mode}: {why}" for mode, why in tried)
            message = f"{message}\nmodes tried before: {earlier}"
        super().__init__(message, raw=raw, target=target, attempts=attempts)
        self.reason = reason
        self.responses = responses
        self.usage = sum_usage(responses)
        self.refusal = refusal
        self.tried = list(tried)
