"""Reading a server's answer: error statuses, malformed bodies, chat completions.

Every way a body can be wrong becomes a typed error that keeps the whole body, so nothing is
lost: an error status becomes an `APIStatusError` subclass, a success status with a body
that is not a chat completion becomes a `ResponseFormatError` showing its first bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import pydantic
import pydantic_core

from surge._errors import RateLimitError, ResponseFormatError, preview, status_error_class
from surge._headers import retry_after
from surge._types import ChatResponse

__all__ = ["REQUEST_ID_HEADERS", "decode_chat", "request_id", "status_error"]

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "openai-request-id", "x-litellm-call-id")
"""Headers servers use for their request id, most common first."""


def request_id(headers: Mapping[str, str]) -> str | None:
    """Return the server's request id from the response headers, if it sent one."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        return text.replace(secret, "***")
    return text


def status_error(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    url: str,
    secret: str | None = None,
) -> Exception:
    """Build the typed error for an error status (4xx or 5xx).

    Args:
        status_code: The HTTP status.
        headers: The response headers.
        body: The raw response body.
        method: The request method, for the message.
        url: The request URL, for the message.
        secret: The API key, removed from the message should the server echo it.

    Returns:
        An `APIStatusError` subclass; the message quotes the server's own error message
        when the body is OpenAI-shaped (`{"error": {"message": ...}}`), else the body's
        first bytes.
    """
    text = body.decode("utf-8", errors="replace")
    decoded: Any = text
    message: str | None = None
    with contextlib.suppress(ValueError):
        decoded = pydantic_core.from_json(body) if body else None
    if isinstance(decoded, dict):
        error = decoded.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        elif isinstance(decoded.get("message"), str):
            message = decoded["message"]
        elif isinstance(decoded.get("detail"), str):
            message = decoded["detail"]
    shown = message if message is not None else (preview(body) if body else "(empty body)")
    rid = request_id(headers)
    summary = f"{method} {url} returned {status_code}: {_redact(shown, secret)}"
    if rid:
        summary += f" (request id {rid})"
    kind = status_error_class(status_code)
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "body": decoded,
        "request_id": rid,
        "headers": dict(headers),
        "method": method,
        "url": url,
    }
    if kind is RateLimitError:
        return RateLimitError(summary, retry_after=retry_after(headers), **kwargs)
    return kind(summary, **kwargs)


def decode_chat(body: bytes, *, status_code: int, url: str) -> ChatResponse:
    """Validate a success body as a chat completion.

    Args:
        body: The raw response body.
        status_code: The HTTP status (for the error, should there be one).
        url: The request URL (for the error).

    Returns:
        The typed `ChatResponse`, with `.raw` set to the decoded body.

    Raises:
        ResponseFormatError: The body is not JSON, not an object, not shaped like a chat
            completion, or has no choices. The message shows the first bytes.
    """

    def fail(why: str) -> ResponseFormatError:
        return ResponseFormatError(
            f"{url} answered {status_code} with {why}; body starts {preview(body)}",
            body=body,
            status_code=status_code,
            url=url,
        )

    try:
        data = pydantic_core.from_json(body)
    except ValueError as exc:
        raise fail(f"a body that is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise fail(f"JSON that is a {type(data).__name__}, not a chat completion object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise fail("a JSON object that has no choices, so it is not a chat completion")
    try:
        response = ChatResponse.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise fail(f"JSON that is not a chat completion ({problems})") from None
    response._raw = data
    return response
