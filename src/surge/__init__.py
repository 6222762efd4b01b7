"""surge: an async LLM client that keeps its promise under concurrency.

Fire 20, 1,000 or 10,000 calls with `asyncio.gather` and they run at the same time; every
answer comes back typed, with timings that say whether the client or the server made it wait.
"""

from __future__ import annotations

from surge._attempt import Attempt
from surge._client import LLMClient, OutputMode
from surge._config import PoolConfig
from surge._endpoints import Cooldown, Endpoint
from surge._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConflictError,
    ConnectError,
    ConnectTimeout,
    DeadlineExceeded,
    LimitsUnavailable,
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
from surge._functions import PromptFunction, RenderedPrompt, function
from surge._http import http_client
from surge._httpx2 import httpx2_client
from surge._parsing import parse
from surge._progress import BatchProgress
from surge._prompt_template import Image
from surge._rates import RateLimit
from surge._redis_store import RedisStore
from surge._retry import RetryPolicy
from surge._store import LimitsStore
from surge._streaming.chunks import StreamChunk, ToolCallDelta
from surge._streaming.sse import ServerSentEvent, SSEDecoder
from surge._streaming.stream import ChatStream
from surge._streaming.structured import StructuredStream
from surge._structured.run import StructuredOutputError, StructuredResult
from surge._timings import PoolStats, Timings
from surge._types import (
    ChatResponse,
    Choice,
    FunctionCall,
    Message,
    ResponseMessage,
    ToolCall,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BatchProgress",
    "ChatResponse",
    "ChatStream",
    "Choice",
    "ConfigError",
    "ConflictError",
    "ConnectError",
    "ConnectTimeout",
    "Cooldown",
    "DeadlineExceeded",
    "Endpoint",
    "FunctionCall",
    "Image",
    "LLMClient",
    "LimitsStore",
    "LimitsUnavailable",
    "Message",
    "NotFoundError",
    "OutputMode",
    "OutputParseError",
    "PermissionDeniedError",
    "PoolConfig",
    "PoolStats",
    "PoolTimeout",
    "PromptFunction",
    "RateLimit",
    "RateLimitError",
    "ReadTimeout",
    "RedisStore",
    "RemoteProtocolError",
    "RenderedPrompt",
    "ResponseFormatError",
    "ResponseMessage",
    "RetryPolicy",
    "SSEDecoder",
    "ServerError",
    "ServerSentEvent",
    "StreamChunk",
    "StructuredOutputError",
    "StructuredResult",
    "StructuredStream",
    "SurgeError",
    "Timeout",
    "Timings",
    "ToolCall",
    "ToolCallDelta",
    "TransportError",
    "UnprocessableEntityError",
    "Usage",
    "WriteTimeout",
    "__version__",
    "function",
    "http_client",
    "httpx2_client",
    "parse",
]
