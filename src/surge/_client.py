"""`LLMClient`: typed chat completions over one shared connection pool.

This is the only module that knows it is talking to an LLM. Below it, `_http` picks the
event loop's `httpx.AsyncClient` and translates httpx's errors; below that, the pool
(`surge._transport`) moves bytes. `_call.CallPath` carries each call through the limits,
retries and endpoints; structured outputs (`surge._structured`) build on `chat`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from surge._batch_methods import BatchMethods
from surge._call import CallPath
from surge._config import PoolConfig
from surge._endpoints import Cooldown, Endpoint, Router, Strategy
from surge._errors import ConfigError
from surge._functions import FunctionMethods
from surge._http import AnyAsyncClient, LoopLocalClient
from surge._httpx2 import is_httpx2_client
from surge._limits import ClientLimits
from surge._rates import RateLimit
from surge._retry import RetryPolicy, check_deadline, resolve_policy
from surge._settings import DEFAULT_BASE_URL, UNSET, Settings, check_timeout
from surge._store import LimitsStore
from surge._streaming.methods import StreamingMethods
from surge._structured.methods import StructuredMethods
from surge._structured.modes import ModeMemory, OutputMode
from surge._timings import PoolStats
from surge._types import ChatResponse, MessageInput, dump_messages

__all__ = ["LLMClient", "OutputMode"]


class LLMClient(StructuredMethods, StreamingMethods, BatchMethods, FunctionMethods):
    """An async client for any OpenAI-compatible chat-completions server.

    One client holds one connection pool per event loop, made lazily, so it may be
    created anywhere (even outside a loop) and used from several loops in turn. Derive
    clients for other models or settings with `with_options`: they share the pool.

    ```python
    async with surge.LLMClient(base_url="http://127.0.0.1:8080/v1", max_connections=500) as client:
        response = await client.chat([{"role": "user", "content": "Hello"}])
        print(response.text, response.timings)
    ```

    Args:
        base_url: The server's API root, e.g. "http://127.0.0.1:8080/v1". Defaults to
            `$OPENAI_BASE_URL`, then OpenAI's.
        api_key: Sent as a bearer token. Defaults to `$OPENAI_API_KEY` (but not with
            `endpoints=`, which may be other providers); None sends no `Authorization`
            header (fine for most local servers). Never shown in a repr, log line,
            exception message or timing record. An `Endpoint` without a key of its own
            uses this one.
        model: The default model for calls that do not name one. When None and the call
            names none either, no `model` is sent (servers with one model accept that).
        pool: The connection pool's limits as a `PoolConfig`; or give its fields as
            keyword arguments (`max_connections=500, http2=True`), not both.
        http_client: An `httpx.AsyncClient` or `httpx2.AsyncClient` to use instead of
            making one (for example `surge.http_client(...)` shared with the openai SDK 2.x,
            or `surge.httpx2_client(...)` with openai 3.x). surge does not close it.
            Cannot be combined with pool settings.
        timeout: Seconds the server may take to answer each call (read timeout); None
            keeps the pool's `read` setting.
        headers: Extra headers sent with every call.
        retry: When to retry a failed call: a `RetryPolicy`; None or True for the default
            (3 attempts, backoff with jitter, `Retry-After` honoured); False for none.
        deadline: Seconds one call may take in all (limits, attempts, backoff and
            fallbacks); None = no total limit. Running out raises `DeadlineExceeded`.
        max_concurrency: Most calls in flight at once, shared with the clients derived by
            `with_options`; the rest wait FIFO. Unlike `max_connections` (sockets per
            origin), it bounds what the server sees. None = no limit.
        rate_limit: Requests and tokens per minute per endpoint, as a `RateLimit`. None =
            only slow down when the server's `x-ratelimit-*` headers ask for it.
        endpoints: Several servers instead of `base_url`: a list of `Endpoint`.
        strategy: How calls pick an endpoint: "fallback" (in order, the next on a
            retryable failure), "round_robin" or "weighted".
        cooldown: When an endpoint that keeps failing is skipped (`Cooldown`).
        limits_store: Where `max_concurrency`, `rate_limit`, the server's rate-limit
            hints and endpoint cool-downs live: None keeps them in this process; a
            `surge.RedisStore` shares them with every process using the same namespace
            (see docs/scaling.md).
        **pool_kwargs: `PoolConfig` fields.

    Raises:
        ConfigError: A setting cannot work (bad URL, both `pool` and pool keywords, pool
            settings with `http_client`, an unknown keyword, `base_url` with `endpoints`).
        pydantic.ValidationError: A pool setting is out of range.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        *,
        pool: PoolConfig | float | None = None,
        http_client: AnyAsyncClient | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | bool | None = None,
        deadline: float | None = None,
        max_concurrency: int | None = None,
        rate_limit: RateLimit | None = None,
        endpoints: Sequence[Endpoint] | None = None,
        strategy: Strategy = "fallback",
        cooldown: Cooldown | None = None,
        limits_store: LimitsStore | None = None,
        **pool_kwargs: Any,
    ) -> None:
        config = PoolConfig.from_kwargs(pool, pool_kwargs)
        if limits_store is not None:
            if not isinstance(limits_store, LimitsStore):
                raise ConfigError(
                    f"limits_store must be a surge.RedisStore (a LimitsStore), "
                    f"not {type(limits_store).__name__}"
                )
            limits_store.check_backend()
        if endpoints is not None and base_url is not None:
            raise ConfigError("give either base_url= or endpoints=, not both")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        router = Router(endpoints or [Endpoint(base_url)], strategy, cooldown)
        if http_client is not None:
            if pool is not None or pool_kwargs:
                raise ConfigError(
                    "pool settings cannot apply to a supplied http_client; "
                    "give either http_client= or pool settings"
                )
            if not isinstance(http_client, httpx.AsyncClient) and not is_httpx2_client(http_client):
                raise ConfigError(
                    "http_client must be an httpx.AsyncClient or an httpx2.AsyncClient, "
                    f"not {type(http_client).__name__}"
                )
        self._settings = Settings(
            base_url=router.endpoints[0].base_url,
            # $OPENAI_API_KEY belongs with $OPENAI_BASE_URL: it is never sent to endpoints
            # the caller listed, which may be other providers.
            api_key=api_key
            if api_key is not None or endpoints is not None
            else os.environ.get("OPENAI_API_KEY"),
            model=model,
            timeout=check_timeout(timeout),
            headers=tuple((k.lower(), v) for k, v in (headers or {}).items()),
            retry=resolve_policy(retry),
            deadline=check_deadline(deadline),
        )
        if limits_store is not None:
            router.shared = limits_store.health()
        self._router = router
        self._limits = ClientLimits(max_concurrency, rate_limit, limits_store)
        self._http = LoopLocalClient(config, external=http_client)
        self._owns_pool = True
        # Which structured-output mode each endpoint accepts, learned once per endpoint
        # and shared by every client derived with `with_options`.
        self._modes = ModeMemory()
        self._call = CallPath(self._settings, self._router, self._limits, self._http)

    # -- configuration -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server's API root."""
        return self._settings.base_url

    @property
    def model(self) -> str | None:
        """The default model."""
        return self._settings.model

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The servers calls go to (one `Endpoint` for `base_url` when none were given)."""
        return self._router.endpoints

    @property
    def pool_config(self) -> PoolConfig:
        """The connection pool's limits (shared with every client derived by `with_options`)."""
        return self._http.config

    def with_options(
        self,
        *,
        base_url: str = UNSET,
        api_key: str | None = UNSET,
        model: str | None = UNSET,
        timeout: float | None = UNSET,
        headers: Mapping[str, str] = UNSET,
        retry: RetryPolicy | bool | None = UNSET,
        deadline: float | None = UNSET,
        max_concurrency: int | None = UNSET,
        rate_limit: RateLimit | None = UNSET,
        endpoints: Sequence[Endpoint] = UNSET,
        strategy: Strategy = UNSET,
    ) -> LLMClient:
        """Return a client with some settings changed that shares this client's pool.

        Many clients, one pool, is the normal way to call several models or servers. The
        derived client does not own the pool: closing it leaves the pool open; closing
        the client that made the pool closes it for all. It also shares this client's
        concurrency limit, rate limiters and endpoint health, unless it changes them.

        Args:
            base_url: Another API root (replacing the endpoints).
            api_key: Another API key.
            model: Another default model.
            timeout: Another read timeout, in seconds.
            headers: Extra headers, replacing this client's extra headers.
            retry: Another retry policy (False for none).
            deadline: Another total deadline per call, in seconds.
            max_concurrency: A concurrency limit of the derived client's own (None: none).
            rate_limit: Rate limits of the derived client's own.
            endpoints: Other endpoints.
            strategy: Another strategy for the endpoints.

        Returns:
            A new `LLMClient`.
        """
        changes: dict[str, Any] = {}
        router = self._router.derive(
            base_url=None if base_url is UNSET else base_url,
            endpoints=None if endpoints is UNSET else endpoints,
            strategy=None if strategy is UNSET else strategy,
        )
        if router is not self._router:
            changes["base_url"] = router.endpoints[0].base_url
        if retry is not UNSET:
            changes["retry"] = resolve_policy(retry)
        if deadline is not UNSET:
            changes["deadline"] = check_deadline(deadline)
        limits = {
            k: v
            for k, v in (("max_concurrency", max_concurrency), ("rate_limit", rate_limit))
            if v is not UNSET
        }
        if api_key is not UNSET:
            changes["api_key"] = api_key
        if model is not UNSET:
            changes["model"] = model
        if timeout is not UNSET:
            changes["timeout"] = check_timeout(timeout)
        if headers is not UNSET:
            changes["headers"] = tuple((k.lower(), v) for k, v in headers.items())
        clone = object.__new__(LLMClient)
        clone._settings = dataclasses.replace(self._settings, **changes)
        clone._router = router
        clone._limits = self._limits.derive(limits) if limits else self._limits
        clone._http = self._http
        clone._owns_pool = False
        clone._modes = self._modes
        clone._call = CallPath(clone._settings, router, clone._limits, self._http)
        return clone

    def __repr__(self) -> str:
        key = "<set>" if self._settings.api_key else None
        where = f"base_url={self._settings.base_url!r}"
        if len(self._router.endpoints) > 1:
            where = (
                f"endpoints={list(self._router.endpoints)!r}, strategy={self._router.strategy!r}"
            )
        limit = self._limits.max_concurrency
        return (
            f"LLMClient({where}, model={self._settings.model!r}, api_key={key}, "
            f"max_concurrency={limit}, pool={self._http.config!r})"
        )

    # -- calls ---------------------------------------------------------------------------

    async def chat(
        self,
        messages: Sequence[MessageInput] | str,
        *,
        model: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | bool | None = None,
        deadline: float | None = UNSET,
        **params: Any,
    ) -> ChatResponse:
        """Ask for a chat completion.

        Args:
            messages: The conversation: dicts in OpenAI's shape or `surge.Message`s. A
                lone string is taken as one user message.
            model: The model for this call (default: the endpoint's, then the client's).
            timeout: Seconds the server may take to answer this call (read timeout).
            retry: The retry policy of this call (default: the client's; False: none).
            deadline: Seconds this call may take in all, retries included (default: the
                client's; None: no limit).
            **params: Any other chat-completion parameters, sent as given:
                `temperature`, `max_tokens`, `response_format`, `tools`, `seed`, ...

        Returns:
            The typed completion, with `.text`, `.usage`, `.timings`, `.raw`,
            `.attempts` and `.endpoint`.

        Raises:
            APIStatusError: The server answered with an error status (a subclass names
                which: `RateLimitError`, `ServerError`, ...).
            TransportError: No complete answer arrived (`ConnectError`, `ReadTimeout`,
                `PoolTimeout`, `RemoteProtocolError`, `DeadlineExceeded`, ...).
            ResponseFormatError: The server answered 2xx with a body that is not a chat
                completion.

            Errors that end a call after retries carry every attempt in `.call_attempts`.
        """
        if params.get("stream"):
            raise ConfigError(
                "chat() reads whole responses; to stream, use "
                "`async with client.stream(messages) as stream:` instead of stream=True"
            )
        body: dict[str, Any] = {"messages": dump_messages(messages)}
        if model is not None:  # else the endpoint's or the client's, per attempt
            body["model"] = model
        body.update(params)
        return await self._call.post_chat(
            body, timeout=check_timeout(timeout), retry=retry, deadline=deadline
        )

    # -- pool ----------------------------------------------------------------------------

    def pool_stats(self) -> PoolStats:
        """Return the connection pool's statistics for the running event loop.

        Returns:
            A `PoolStats` snapshot: connections in use and idle, requests waiting, and
            wait percentiles since the last `reset_pool_stats()`. Zeros before the first
            call on this loop, or when a supplied `http_client` does not use surge's pool.
        """
        return self._http.stats()

    def reset_pool_stats(self) -> None:
        """Reset the pool's counters and wait percentiles for the running event loop."""
        self._http.reset_stats()

    # -- lifetime ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the pool's connections (if this client made the pool).

        A client derived with `with_options`, or one given an `http_client`, leaves the
        pool open. Calling `aclose` twice is harmless.
        """
        if self._owns_pool and self._http.external is None:
            await self._http.aclose()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
