"""The exception tree: every error surge raises is a `SurgeError`.

This module imports nothing else of surge's, so any layer may raise from it. Errors are
raised where they are understood; httpx's own exceptions are translated into these once,
at the client's boundary (`surge._client`), and never reach users of `LLMClient`.

```
SurgeError
├── ConfigError                    a setting or argument that cannot work
├── TransportError                 the request did not get an HTTP answer
│   ├── ConnectError               could not open a connection
│   ├── RemoteProtocolError        the server broke the protocol or dropped the connection
│   └── Timeout                    (also a builtin TimeoutError)
│       ├── ConnectTimeout
│       ├── ReadTimeout
│       ├── WriteTimeout
│       ├── PoolTimeout            waited too long for a free connection
│       └── DeadlineExceeded       the call's total deadline ran out (names the phase)
├── APIStatusError                 the server answered with an error status
│   ├── BadRequestError            400
│   ├── AuthenticationError        401
│   ├── PermissionDeniedError      403
│   ├── NotFoundError              404
│   ├── ConflictError              409
│   ├── UnprocessableEntityError   422
│   ├── RateLimitError             429
│   └── ServerError                5xx
├── ResponseFormatError            a success status with a body that is not what was asked
├── LimitsUnavailable              the shared limits store (Redis) did not answer in time
└── OutputParseError               model output that cannot be read as the target type
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "ConnectError",
    "ConnectTimeout",
    "DeadlineExceeded",
    "LimitsUnavailable",
    "NotFoundError",
    "OutputParseError",
    "ParseAttempt",
    "PermissionDeniedError",
    "PoolTimeout",
    "RateLimitError",
    "ReadTimeout",
    "RemoteProtocolError",
    "ResponseFormatError",
    "ServerError",
    "SurgeError",
    "Timeout",
    "TransportError",
    "UnprocessableEntityError",
    "WriteTimeout",
    "preview",
    "status_error_class",
]

_PREVIEW_CHARS = 200


def preview(data: bytes | str, limit: int = _PREVIEW_CHARS) -> str:
    """Return a short, printable rendering of the start of `data` for error messages.

    Args:
        data: The body or text to show.
        limit: How many characters to keep before an ellipsis.

    Returns:
        A `repr`-style string (so control bytes and invalid UTF-8 stay visible), cut to
        `limit` characters with a note of the full size when it was longer.
    """
    text = data.decode("utf-8", errors="backslashreplace") if isinstance(data, bytes) else data
    unit = "bytes" if isinstance(data, bytes) else "chars"
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(data)} {unit} in all)"


class SurgeError(Exception):
    """Base class of every error raised by surge.

    Attributes:
        call_attempts: For an error that ended an `LLMClient` call, the record of every
            attempt the call made (`surge.Attempt`s, oldest first, the failing one last);
            empty when no attempt was made or the error was raised outside a call.
    """

    call_attempts: tuple[Any, ...] = ()


class ConfigError(SurgeError, ValueError):
    """A setting or argument that cannot work, found before anything is sent."""


class TransportError(SurgeError):
    """The request did not get a complete HTTP answer.

    Attributes:
        method: The HTTP method of the request, when known.
        url: The URL of the request, when known (never carries credentials).
    """

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None):
        super().__init__(message)
        self.method = method
        self.url = url


class ConnectError(TransportError):
    """A connection to the server could not be opened (refused, unreachable, DNS, TLS)."""


class RemoteProtocolError(TransportError):
    """The server broke the HTTP protocol, or closed the connection mid-answer."""


class Timeout(TransportError, TimeoutError):
    """A time limit ran out. Also a builtin `TimeoutError`, so either may be caught."""


class ConnectTimeout(Timeout):
    """Opening a connection (TCP and TLS handshakes) took longer than `PoolConfig.connect`."""


class ReadTimeout(Timeout):
    """The server sent nothing for longer than the read timeout (`PoolConfig.read`)."""


class WriteTimeout(Timeout):
    """Sending the request took longer than `PoolConfig.write`."""


class PoolTimeout(Timeout):
    """A request waited longer than `PoolConfig.pool` for a free connection.

    The message says how many requests were waiting and which limit to raise.
    """


class DeadlineExceeded(Timeout):
    """The call's total deadline (`deadline=`) ran out: retries, waits and fallbacks included.

    The message says which phase was running when time ran out: waiting for the
    concurrency limit, for the rate limit, for a free connection in the pool, opening a
    connection, waiting for the server's answer (each with the attempt number), or
    backing off before an attempt. (With a supplied `http_client` that is not surge's
    pool, the connection and server phases are one: "a connection or the server's answer".)

    Attributes:
        phase: What the call was doing when the deadline fired, in words.
        deadline: The deadline in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        phase: str,
        deadline: float,
        method: str | None = None,
        url: str | None = None,
    ):
        super().__init__(message, method=method, url=url)
        self.phase = phase
        self.deadline = deadline


class APIStatusError(SurgeError):
    """The server answered with an error status (4xx or 5xx).

    Attributes:
        status_code: The HTTP status code.
        body: The decoded JSON body when it was JSON, else the body as text.
        request_id: The server's request id (`x-request-id` and kin), when it sent one.
        headers: The response headers.
        method: The HTTP method of the request.
        url: The URL of the request.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        url: str | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.method = method
        self.url = url


class BadRequestError(APIStatusError):
    """400: the server rejected the request as malformed (a bad parameter, say)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """403: the API key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such route or model; check `base_url` and `model`."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the server's state."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but its content was refused."""


class RateLimitError(APIStatusError):
    """429: the server asks the client to slow down.

    Attributes:
        retry_after: Seconds the server asked to wait (`retry-after-ms` or `Retry-After`),
            when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: the server failed. Often transient."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """Return the most specific `APIStatusError` subclass for an HTTP status code.

    Args:
        status_code: An HTTP status code of 400 or more.

    Returns:
        The subclass for that code (`ServerError` for any 5xx), else `APIStatusError`.
    """
    if status_code >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status_code, APIStatusError)


class ResponseFormatError(SurgeError):
    """The server answered with a success status, but the body is not what was asked for.

    For example an HTML page, truncated or invalid JSON, or JSON that is not a chat
    completion. The message shows the first bytes of the body.

    Attributes:
        body: The raw body as received (nothing is lost).
        status_code: The HTTP status code.
        url: The URL of the request.
    """

    def __init__(
        self, message: str, *, body: bytes = b"", status_code: int = 200, url: str | None = None
    ):
        super().__init__(message)
        self.body = body
        self.status_code = status_code
        self.url = url


class LimitsUnavailable(SurgeError):
    """The shared limits store (`surge.RedisStore`) did not answer within its bound.

    Raised by a call only under `on_failure="raise"`, before the request is sent: the
    call did not run, and no limit was skipped. Not retried by `RetryPolicy`.

    Attributes:
        store: Where the store is, without credentials (e.g. "redis://127.0.0.1:6379/0").
    """

    def __init__(self, message: str, *, store: str) -> None:
        super().__init__(message)
        self.store = store


class ParseAttempt:
    """One candidate the lenient parser tried, and why it did not fit.

    Attributes:
        text: The candidate text (a fenced block, a JSON object found in prose, ...).
        error: Why it was rejected, in words.
    """

    __slots__ = ("error", "text")

    def __init__(self, text: str, error: str) -> None:
        self.text = text
        self.error = error

    def __repr__(self) -> str:
        return f"ParseAttempt(text={preview(self.text, 60)}, error={self.error!r})"


class OutputParseError(SurgeError, ValueError):
    """Model output could not be read as the target type.

    Attributes:
        raw: The full text that was parsed.
        target: The target type (or JSON Schema dict).
        attempts: Every candidate tried, with why it failed.
    """

    def __init__(
        self,
        message: str,
        *,
        raw: str,
        target: Any,
        attempts: Sequence[ParseAttempt] = (),
    ) -> None:
        self.raw = raw
        self.target = target
        self.attempts = list(attempts)
        lines = [message, f"  text: {preview(raw)}", f"  target: {_describe_target(target)}"]
        for i, attempt in enumerate(self.attempts, 1):
            lines.append(f"  candidate {i}: {preview(attempt.text, 80)}: {attempt.error}")
        super().__init__("\n".join(lines))


def _describe_target(target: Any) -> str:
    if isinstance(target, dict):
        title = target.get("title") or target.get("type") or "schema"
        return f"JSON Schema {title!s}"
    return getattr(target, "__name__", None) or repr(target)
