"""What an `LLMClient` sends with every call, and the checks on it.

`Settings` is frozen: `LLMClient.with_options` derives changed copies, so clients that
share a pool never share mutable settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from surge._endpoints import Endpoint
from surge._errors import ConfigError
from surge._retry import RetryPolicy

__all__ = ["DEFAULT_BASE_URL", "UNSET", "USER_AGENT", "Settings", "check_timeout"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""Where requests go when neither `base_url` nor `OPENAI_BASE_URL` says otherwise."""

USER_AGENT = "surge/0.1.0"


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()
"""Marks an argument that was not given (where None is a meaningful value)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a client sends with every call; `with_options` derives changed copies."""

    base_url: str
    api_key: str | None = dataclasses.field(repr=False)  # never shown, not even in a traceback
    model: str | None
    timeout: float | None
    headers: tuple[tuple[str, str], ...]
    retry: RetryPolicy
    deadline: float | None

    def request_headers(self, endpoint: Endpoint | None = None) -> dict[str, str]:
        """Return the headers of a call to `endpoint` (or to `base_url`)."""
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": USER_AGENT,
        }
        key = self.key_for(endpoint)
        if key:
            headers["authorization"] = f"Bearer {key}"
        headers.update(self.headers)
        return headers

    def key_for(self, endpoint: Endpoint | None) -> str | None:
        """Return the API key a call to `endpoint` sends: its own, else the client's."""
        if endpoint is not None and endpoint.api_key is not None:
            return endpoint.api_key
        return self.api_key


def check_timeout(timeout: float | None) -> float | None:
    """Return `timeout` if it is None or positive.

    Raises:
        ConfigError: It is zero or negative.
    """
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds or None; got {timeout!r}")
    return timeout
