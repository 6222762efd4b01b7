"""The httpx side of surge: `http_client()`, one client per event loop, error translation.

This is the only module that turns httpx's exceptions into surge's (`translate_error`), and
the only one that decides which `httpx.AsyncClient` serves the current event loop
(`LoopLocalClient`). An `httpx.AsyncClient` and its connections belong to the event loop
that opened them; using them from another loop (a second `asyncio.run`, pytest-asyncio's
loop per test, Jupyter) is what produced "Event loop is closed" errors in other clients.
So surge keeps one client per loop, made lazily, and drops the clients of loops that have
ended, and of a parent process after `os.fork`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx
import pydantic_core

from surge._config import PoolConfig
from surge._decode import status_error
from surge._errors import (
    ConnectError,
    ConnectTimeout,
    PoolTimeout,
    ReadTimeout,
    RemoteProtocolError,
    SurgeError,
    Timeout,
    TransportError,
    WriteTimeout,
)
from surge._timings import PHASE_EXTENSION, PoolStats
from surge._transport.pool import PoolTransport

if TYPE_CHECKING:
    import httpx2

    AnyAsyncClient: TypeAlias = httpx.AsyncClient | httpx2.AsyncClient
else:
    AnyAsyncClient: TypeAlias = Any  # httpx2 is optional: never imported here at run time

__all__ = [
    "AnyAsyncClient",
    "LoopLocalClient",
    "current_loop",
    "http_client",
    "httpx_timeout",
    "pool_transport",
    "post_json",
    "translate_error",
]


def httpx_timeout(config: PoolConfig) -> httpx.Timeout:
    """Return the `httpx.Timeout` matching a `PoolConfig`'s timeouts."""
    return httpx.Timeout(
        connect=config.connect, read=config.read, write=config.write, pool=config.pool
    )


def http_client(pool: PoolConfig | float | None = None, **pool_kwargs: Any) -> httpx.AsyncClient:
    """Return an `httpx.AsyncClient` whose transport is surge's connection pool.

    Hand it to any library that takes an httpx client, so it gets surge's pool:

    ```python
    from openai import AsyncOpenAI
    import surge

    client = AsyncOpenAI(http_client=surge.http_client(max_connections=5000))
    ```

    Like any `httpx.AsyncClient`, the returned client belongs to the event loop it is
    first used on. Each response carries its `surge.Timings` in
    `response.extensions["surge.timings"]`.

    Args:
        pool: A ready `PoolConfig`. Give this or keyword arguments, not both.
        **pool_kwargs: `PoolConfig` fields, e.g. `max_connections=5000, http2=True`.

    Returns:
        A new `httpx.AsyncClient`; close it with `await client.aclose()`.

    Raises:
        ConfigError: Both `pool` and keyword arguments were given, or an unknown keyword.
        pydantic.ValidationError: A value is out of range.
    """
    config = PoolConfig.from_kwargs(pool, pool_kwargs)
    return _new_client(config)


def pool_transport(config: PoolConfig) -> httpx.AsyncBaseTransport:
    """Return the transport that `http_client` and `httpx2_client` put in their clients.

    The one place that decides which transport surge's clients run on, so that the httpx2
    adapter (`surge._httpx2_adapter`) wraps the same transport as `http_client`.
    """
    return PoolTransport(config)


def _new_client(config: PoolConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=pool_transport(config),
        timeout=httpx_timeout(config),
        # The pool transport does TLS itself (from `config.verify`); environment proxies
        # are not supported by it, so do not let httpx pretend to honour them.
        trust_env=False,
    )


def current_loop() -> object:
    """Return a hashable token of the running event loop (asyncio or trio).

    Raises:
        RuntimeError: No asyncio or trio event loop is running in this thread.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
    raise RuntimeError("surge must be used from inside a running asyncio or trio event loop")


def _loop_is_finished(loop: object) -> bool:
    if isinstance(loop, asyncio.AbstractEventLoop):
        return loop.is_closed()
    try:  # a trio token: a finished run refuses new callbacks
        loop.run_sync_soon(_noop)  # type: ignore[attr-defined]
    except Exception:  # trio.RunFinishedError; trio need not be importable here
        return True
    return False


def _noop() -> None:
    return None


_instances: weakref.WeakSet[LoopLocalClient] = weakref.WeakSet()


def _forget_all_after_fork() -> None:
    for instance in list(_instances):
        instance.forget()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_all_after_fork)


class LoopLocalClient:
    """One `httpx.AsyncClient` per event loop, made lazily from one `PoolConfig`.

    Shared by an `LLMClient` and every client derived from it with `with_options`, so
    that many clients use one pool per loop.

    Args:
        config: The pool's limits.
        external: An `httpx.AsyncClient` or `httpx2.AsyncClient` supplied by the user. It
            is used as is, on whatever loop the user runs it, and never closed by surge.
    """

    def __init__(self, config: PoolConfig, external: AnyAsyncClient | None = None) -> None:
        self.config = config
        self.timeout = httpx_timeout(config)
        self.external = external
        self._clients: dict[object, httpx.AsyncClient] = {}
        self._last_loop: object = None
        self._last_client: httpx.AsyncClient | None = None
        self._last_pool: PoolTransport | None = None
        self._pid = os.getpid()
        self.closed = False
        _instances.add(self)

    def get(self) -> AnyAsyncClient:
        """Return the client for the running event loop, making it on first use.

        Raises:
            ConfigError: The client was closed.
            RuntimeError: No event loop is running.
        """
        if self.external is not None:
            return self.external
        loop = current_loop()
        if loop is self._last_loop and self._last_client is not None:
            return self._last_client
        return self._get_slow(loop)

    def _get_slow(self, loop: object) -> httpx.AsyncClient:
        if self.closed:
            from surge._errors import ConfigError

            raise ConfigError("this LLMClient is closed; make a new one")
        if os.getpid() != self._pid:  # belt and braces beside register_at_fork
            self.forget()
        for other in [key for key in self._clients if key is not loop]:
            if _loop_is_finished(other):
                _abandon(self._clients.pop(other))
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = _new_client(self.config)
        self._last_loop, self._last_client = loop, client
        self._last_pool = _pool_of(client)
        return client

    def pool(self) -> PoolTransport | None:
        """Return the running loop's own pool transport; None for a supplied client.

        Raises:
            ConfigError: The client was closed.
            RuntimeError: No event loop is running.
        """
        if self.external is not None:
            return None
        loop = current_loop()
        if loop is not self._last_loop or self._last_pool is None:
            self._get_slow(loop)
        return self._last_pool

    def current(self) -> AnyAsyncClient | None:
        """Return the running loop's client if one was made, without making one."""
        if self.external is not None:
            return self.external
        try:
            return self._clients.get(current_loop())
        except RuntimeError:
            return None

    def forget(self) -> None:
        """Drop every client without awaiting anything (after fork, or a dead loop)."""
        for client in self._clients.values():
            _abandon(client)
        self._clients.clear()
        self._last_loop, self._last_client, self._last_pool = None, None, None
        self._pid = os.getpid()

    async def aclose(self) -> None:
        """Close the running loop's client and drop the others' connections."""
        if self.closed:
            return
        self.closed = True
        mine = self.current() if self.external is None else None
        for client in self._clients.values():
            if client is not mine:
                _abandon(client)
        self._clients.clear()
        self._last_loop, self._last_client, self._last_pool = None, None, None
        if mine is not None:
            await mine.aclose()

    def stats(self) -> PoolStats:
        """Return the running loop's pool statistics (zeros before the first request)."""
        transport = _pool_of(self.current())
        return transport.stats() if transport is not None else PoolStats()

    def reset_stats(self) -> None:
        """Reset the running loop's pool counters and wait percentiles."""
        transport = _pool_of(self.current())
        if transport is not None:
            transport.reset_stats()


def _pool_of(client: AnyAsyncClient | None) -> PoolTransport | None:
    transport = getattr(client, "_transport", None)
    if not isinstance(transport, PoolTransport):  # surge.httpx2_client: the pool is inside
        transport = getattr(transport, "inner", None)
    return transport if isinstance(transport, PoolTransport) else None


def _abandon(client: httpx.AsyncClient) -> None:
    transport = _pool_of(client)
    if transport is not None:
        transport.abandon()


_TRANSLATION: tuple[tuple[type[httpx.HTTPError], type[TransportError]], ...] = (
    (httpx.PoolTimeout, PoolTimeout),
    (httpx.ConnectTimeout, ConnectTimeout),
    (httpx.ReadTimeout, ReadTimeout),
    (httpx.WriteTimeout, WriteTimeout),
    (httpx.TimeoutException, Timeout),
    (httpx.ConnectError, ConnectError),
    (httpx.RemoteProtocolError, RemoteProtocolError),
    (httpx.ReadError, RemoteProtocolError),
    (httpx.WriteError, RemoteProtocolError),
    (httpx.CloseError, RemoteProtocolError),
)


def translate_error(exc: httpx.HTTPError, method: str, url: str) -> SurgeError:
    """Return the surge error that stands for an httpx error.

    Args:
        exc: What httpx (or surge's pool, through httpx's exception types) raised.
        method: The request's method, for the message.
        url: The request's URL, for the message (never carries credentials).

    Returns:
        A `TransportError` subclass whose message names the request and what failed.
    """
    kind: type[TransportError] = TransportError
    for httpx_type, surge_type in _TRANSLATION:
        if isinstance(exc, httpx_type):
            kind = surge_type
            break
    detail = str(exc) or type(exc).__name__
    return kind(f"{method} {url}: {detail}", method=method, url=url)


async def post_json(
    http: LoopLocalClient,
    url: httpx.URL,
    body: Mapping[str, Any],
    *,
    timeout: httpx.Timeout | None,
    headers: httpx.Headers,
    secret: str | None,
    on_phase: Callable[[str], None] | None = None,
    stream: bool = False,
) -> httpx.Response:
    """POST a JSON body on the running loop's pool; return a 2xx response, body read.

    With `stream=True` the body of a success is left unread, for the caller to read and
    close (an error status's body is still read, for its message, and closed).

    On surge's own pool the request goes straight to the pool transport of the loop's
    `httpx.AsyncClient`: `AsyncClient.send` adds cookie handling, auth and redirect
    machinery that LLM calls never use, and that cost more client CPU per call (about
    160 µs) than the whole pool. A supplied `http_client` is used through `send`, as is.

    Args:
        http: The clients per event loop.
        url: Where to POST.
        body: The JSON body.
        timeout: This request's timeouts; None for the pool's.
        headers: The request headers.
        secret: The API key, removed from error messages should the server echo it.
        on_phase: Told by surge's pool when the request starts connecting and sending
            (see `surge._timings.PHASE_EXTENSION`); a supplied client never calls it.
        stream: Leave a success's body unread (see above).

    Returns:
        The response, with a status below 400 and its body read.

    Raises:
        APIStatusError: The server answered 4xx or 5xx (a subclass names which).
        TransportError: No complete answer arrived (translated from httpx).
    """
    content = pydantic_core.to_json(body)
    try:
        pool = http.pool()
        if pool is None:
            client = http.get()
            if not isinstance(client, httpx.AsyncClient):  # an httpx2 client
                from surge._httpx2_adapter import send_on_httpx2  # httpx2 is loaded: a client

                response = await send_on_httpx2(
                    client, url, content, headers, timeout, stream=stream
                )
            else:
                request = client.build_request(
                    "POST",
                    url,
                    content=content,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
                response = await client.send(request, stream=stream)
                if stream and response.status_code >= 400:
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
        else:
            request = httpx.Request(
                "POST",
                url,
                content=content,
                headers=headers,
                extensions={
                    "timeout": (timeout or http.timeout).as_dict(),
                    PHASE_EXTENSION: on_phase,
                },
            )
            response = await pool.handle_async_request(request)
            response.request = request
            if not stream or response.status_code >= 400:
                try:
                    await response.aread()
                except BaseException:
                    await response.aclose()  # surge's pool releases synchronously inside
                    raise
    except httpx.HTTPError as exc:
        raise translate_error(exc, "POST", str(url)) from None
    if response.status_code >= 400:
        raise status_error(
            response.status_code,
            response.headers,
            response.content,
            method="POST",
            url=str(url),
            secret=secret,
        )
    return response
