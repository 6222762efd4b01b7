"""Frozen, validated settings: `PoolConfig`.

Every default is chosen for LLM traffic: responses that take seconds to minutes, bursts of
hundreds or thousands of calls fired together, and servers that are often on the same
machine or network. The reasons are written beside each field.
"""

from __future__ import annotations

import ssl
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["POOL_FIELDS", "PoolConfig", "VerifyTypes"]

VerifyTypes = bool | str | ssl.SSLContext
"""TLS verification: True (system CAs), False (no checks), a CA bundle path, or a context."""


class PoolConfig(BaseModel):
    """Limits and timeouts of surge's connection pool.

    Every field is keyword-only and validated; a bad value raises a
    `pydantic.ValidationError` naming the field. Instances are frozen: derive a changed copy
    with `config.model_copy(update={...})`. Timeouts are in seconds; `None` means no limit.

    Attributes:
        max_connections: Most open connections per origin (scheme, host, port). Default
            1000: a burst of `asyncio.gather` calls should reach the server at once, not in
            waves; 1000 matches the largest bursts most providers accept, and stays well
            below the usual 1024+ file-descriptor limits only per origin.
        max_keepalive_connections: Most idle connections kept open per origin for reuse.
            Default 256: enough to serve the next burst of a batch job without new
            handshakes, few enough not to hoard sockets between bursts.
        keepalive_expiry: Seconds an idle connection is kept before it is closed. Default 15:
            shorter than the idle timeouts of common front ends (nginx 75 s, cloud load
            balancers 60 s), so a connection is rarely reused just as the server drops it;
            when that happens anyway, the pool retries once on a fresh connection.
        http2: Speak HTTP/2 (ALPN over TLS, prior knowledge over cleartext) and multiplex
            many calls on one connection. Default False: most OpenAI-compatible servers
            (vLLM, llama.cpp, Ollama) speak HTTP/1.1 only.
        connect: Seconds to open a connection, TCP and TLS. Default 10: a healthy server
            accepts in milliseconds; 10 s tells a dead host from a slow one quickly.
        read: Seconds to wait for the next bytes of a response. Default 600: a
            non-streamed completion sends nothing until the whole answer is generated,
            which can take minutes for long outputs on a loaded server.
        write: Seconds to send a request. Default 30: prompts can be megabytes (long
            contexts, images), but a stalled upload should not hang for minutes.
        pool: Seconds a request may wait for a free connection before `PoolTimeout`.
            Default None: with a bounded pool, queueing is the intended behaviour of a big
            batch, and surge logs a warning saying who waits and which limit to raise
            instead of failing calls that would have succeeded.
        verify: TLS verification: True (the system's CAs), False (none, for local
            experiments only), a path to a CA bundle, or an `ssl.SSLContext`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    max_keepalive_connections: int = Field(default=256, ge=0)
    keepalive_expiry: float = Field(default=15.0, ge=0)
    http2: bool = False
    connect: float | None = Field(default=10.0, gt=0)
    read: float | None = Field(default=600.0, gt=0)
    write: float | None = Field(default=30.0, gt=0)
    pool: float | None = Field(default=None, gt=0)
    verify: VerifyTypes = True

    def __repr__(self) -> str:
        changed = self.model_dump(exclude_defaults=True)
        args = ", ".join(f"{key}={value!r}" for key, value in changed.items())
        return f"PoolConfig({args})"

    __str__ = __repr__

    @classmethod
    def from_kwargs(cls, pool: PoolConfig | float | None, kwargs: dict[str, Any]) -> PoolConfig:
        """Build the config from either a `PoolConfig` or its fields as keyword arguments.

        Args:
            pool: A ready config, or None. A number is taken as the `pool` timeout
                field, so `LLMClient(max_connections=1, pool=5.0)` reads naturally.
            kwargs: `PoolConfig` fields given as keyword arguments (may be empty).

        Returns:
            `pool`, or a new config from `kwargs`, or the defaults.

        Raises:
            ConfigError: Both were given, or a keyword is not a `PoolConfig` field.
            pydantic.ValidationError: A value is out of range.
        """
        from surge._errors import ConfigError

        if isinstance(pool, (int, float)) and not isinstance(pool, bool):
            # `pool` is both the argument that takes a PoolConfig and the name of the
            # pool-timeout field: a number can only mean the timeout.
            kwargs = {**kwargs, "pool": pool}
            pool = None
        unknown = sorted(set(kwargs) - POOL_FIELDS)
        if unknown:
            raise ConfigError(
                f"unexpected keyword argument(s) {', '.join(unknown)}; "
                f"PoolConfig fields are: {', '.join(sorted(POOL_FIELDS))}"
            )
        if pool is not None:
            if kwargs:
                raise ConfigError(
                    f"give either pool=PoolConfig(...) or pool keyword arguments, not both "
                    f"(got pool= and {', '.join(sorted(kwargs))}=)"
                )
            if not isinstance(pool, PoolConfig):
                raise ConfigError(f"pool= must be a surge.PoolConfig, not {type(pool).__name__}")
            return pool
        return cls(**kwargs)


POOL_FIELDS: frozenset[str] = frozenset(PoolConfig.model_fields)
"""The names accepted as pool keyword arguments by `LLMClient` and `http_client`."""
