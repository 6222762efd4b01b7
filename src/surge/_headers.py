"""Reading what a server's response headers ask of the client (`Retry-After`).

Header parsing, not body decoding: the limiters and the retry loop read it, so it sits below
both and imports nothing of surge.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

__all__ = ["retry_after"]


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Return how many seconds the server asked the client to wait, if it said.

    Reads `retry-after-ms` (milliseconds, OpenAI's), then `Retry-After` as seconds or as
    an HTTP date.

    Args:
        headers: The response headers (case-insensitive mapping).
        now: The current Unix time, for HTTP dates (default: the clock).

    Returns:
        Seconds (never negative), or None when neither header is present and valid.
    """
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
