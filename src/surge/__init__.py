"""surge: an async LLM client that keeps its promise under concurrency."""

from __future__ import annotations

from surge._config import PoolConfig
from surge._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConflictError,
    ConnectError,
    ConnectTimeout,
    NotFoundError,
    OutputParseError,
    PermissionDeniedError,
    PoolTimeout,
    RateLimitError,
    ReadTimeout,
    RemoteProtocolError,
    ResponseFormatError,
    ServerError,
    SurgeError,
    Timeout,
    TransportError,
    UnprocessableEntityError,
    WriteTimeout,
)
from surge._timings import PoolStats, Timings

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "ConnectError",
    "ConnectTimeout",
    "NotFoundError",
    "OutputParseError",
    "PermissionDeniedError",
    "PoolConfig",
    "PoolStats",
    "PoolTimeout",
    "RateLimitError",
    "ReadTimeout",
    "RemoteProtocolError",
    "ResponseFormatError",
    "ServerError",
    "SurgeError",
    "Timeout",
    "Timings",
    "TransportError",
    "UnprocessableEntityError",
    "WriteTimeout",
    "__version__",
]
