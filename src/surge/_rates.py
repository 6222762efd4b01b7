"""Rates as the caller states them and as the server reports them.

`RateLimit` is the caller's setting (requests and tokens per minute); `parse_reset` and
`header_int` read the `x-ratelimit-*` headers OpenAI-compatible servers send;
`estimate_tokens` guesses a request's tokens before it is sent. The limiters that act on
these live in `surge._limits` (in process) and `surge._redis_limiters` (shared).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RateLimit", "estimate_tokens", "header_int", "parse_reset"]


class RateLimit(BaseModel):
    """How fast requests may start, per endpoint.

    Attributes:
        requests_per_minute: Most requests started per minute, paced evenly; None = no
            limit of the caller's own.
        tokens_per_minute: Most tokens per minute, counted from an estimate of each
            request (characters of the messages / 4, plus `max_tokens`) and corrected by
            the `usage` the server reports; None = no limit of the caller's own.
        adaptive: Read the server's `x-ratelimit-remaining-*` / `x-ratelimit-reset-*`
            headers and `Retry-After`, and slow down before the server answers 429.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    adaptive: bool = True


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")


def parse_reset(value: str | None) -> float | None:
    """Parse an `x-ratelimit-reset-*` value into seconds.

    OpenAI sends Go-style durations ("6m0s", "1s", "20ms", "1h2m3.5s"); some servers send
    plain seconds ("1.5").

    Args:
        value: The header value, or None.

    Returns:
        Seconds (>= 0), or None when the value is missing or unreadable.
    """
    if not value:
        return None
    text = value.strip().lower()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        number, unit = float(match.group(1)), match.group(2)
        total += number * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}[unit]
        position = match.end()
    if position == 0 or position != len(text):
        return None
    return total


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """Read header `name` as a count (>= 0); None when it is missing or unreadable."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return max(0, int(float(value)))
    except ValueError:
        return None


def _text_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(str(part.get("text", ""))) if isinstance(part, Mapping) else 0 for part in content
        )
    return 0


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """Estimate a chat request's tokens before sending it.

    Characters of every message's text / 4 (rounded up), plus `max_completion_tokens` or
    `max_tokens` when the request sets one. The estimate is corrected by the server's
    `usage` once the response arrives.

    Args:
        body: The JSON request body.

    Returns:
        The estimate (>= 1).
    """
    chars = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                chars += _text_length(message.get("content"))
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    completion = limit if isinstance(limit, int) and not isinstance(limit, bool) else 0
    return max(1, -(-chars // 4) + max(0, completion))
