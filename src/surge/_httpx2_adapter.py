"""surge's pool inside an `httpx2.AsyncClient`: the adapter between two httpx flavours.

httpx2 (the fork openai 3.x and pydantic-ai 2.x moved to) has the same transport interface
as httpx (`handle_async_request(request) -> response`, the `"timeout"` extension as a dict)
but its own classes: its client asserts that the response's stream is an
`httpx2.AsyncByteStream`, and `except httpx2.ReadTimeout` does not catch `httpx.ReadTimeout`.
So this adapter hands httpx2's request to the one transport surge has (built by
`surge._http.pool_transport`), rebuilds the response around an `httpx2.AsyncByteStream`, and
raises each httpx exception as the httpx2 exception of the same name. There is no second pool.

The request passes through as is when its body is in memory (what every SDK sends): the pool
reads only `method`, `url` (`raw_scheme`, `raw_host`, `port`, `raw_path`, `netloc`),
`headers` (`raw`, `get`), `content` and `extensions`, which httpx2's `Request` has with the
same meaning. A streamed upload is wrapped in an `httpx.Request` whose stream reads
httpx2's. This module imports httpx2 at the top: import it only through `surge._httpx2`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import httpx
import httpx2

__all__ = ["Httpx2Transport", "send_on_httpx2", "to_httpx2_error"]


def _error_map() -> dict[type[Exception], type[Exception]]:
    pairs: dict[type[Exception], type[Exception]] = {}
    for name in httpx.__all__:
        # vars(), not getattr: httpx2's module __getattr__ warns about deprecated names.
        ours, theirs = getattr(httpx, name), vars(httpx2).get(name)
        if (
            isinstance(ours, type)
            and issubclass(ours, Exception)
            and isinstance(theirs, type)
            and issubclass(theirs, Exception)
            and ours.__module__.startswith("httpx")
        ):
            pairs[ours] = theirs
    return pairs


_TO_HTTPX2 = _error_map()
_TO_HTTPX = {theirs: ours for ours, theirs in _TO_HTTPX2.items()}


def to_httpx2_error(exc: Exception, request: httpx2.Request | None) -> Exception:
    """Return the httpx2 exception of the same kind as an httpx one, with the same message.

    Args:
        exc: What the pool raised (an httpx exception, or anything else).
        request: The httpx2 request it concerns, set on request errors.

    Returns:
        The httpx2 counterpart of the nearest httpx class in `exc`'s MRO, or `exc` itself
        when it is not an httpx exception.
    """
    for cls in type(exc).__mro__:
        theirs = _TO_HTTPX2.get(cls)
        if theirs is None:
            continue
        if issubclass(theirs, httpx2.RequestError):
            return theirs(str(exc), request=request)
        try:
            return theirs(str(exc))
        except TypeError:  # HTTPStatusError and friends need more than a message
            return exc
    return exc


class _Body(httpx2.AsyncByteStream):
    """An httpx2 stream over the pool's body stream; errors come out as httpx2's."""

    __slots__ = ("_inner", "_request")

    def __init__(self, inner: httpx.AsyncByteStream, request: httpx2.Request) -> None:
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.HTTPError as exc:
            raise to_httpx2_error(exc, self._request) from exc

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except httpx.HTTPError as exc:
            raise to_httpx2_error(exc, self._request) from exc


class _Upload(httpx.AsyncByteStream):
    """An httpx stream over an httpx2 request's streamed body."""

    __slots__ = ("_inner",)

    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk


class Httpx2Transport(httpx2.AsyncBaseTransport):
    """An `httpx2.AsyncBaseTransport` that sends through an httpx transport (surge's pool).

    Args:
        inner: The httpx transport, e.g. what `surge._http.pool_transport` builds. Closed
            with this transport.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send an httpx2 request through the inner transport; return an httpx2 response.

        Raises:
            httpx2.TransportError: The httpx2 counterpart of what the pool raised.
        """
        try:
            request.content  # noqa: B018 - raises when the body is a stream
            sent = cast(httpx.Request, request)  # duck-typed: see the module docstring
        except httpx2.RequestNotRead:
            sent = httpx.Request(
                request.method,
                str(request.url),
                headers=request.headers.raw,
                stream=_Upload(cast(httpx2.AsyncByteStream, request.stream)),
                extensions=request.extensions,
            )
        try:
            response = await self.inner.handle_async_request(sent)
        except httpx.HTTPError as exc:
            raise to_httpx2_error(exc, request) from exc
        return httpx2.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=_Body(cast(httpx.AsyncByteStream, response.stream), request),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        """Close the inner transport (surge's pool: every connection)."""
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"<Httpx2Transport over {self.inner!r}>"


def _to_httpx(exc: httpx2.HTTPError) -> httpx.HTTPError:
    """The httpx counterpart of an httpx2 error, of the same name where there is one."""
    for cls in type(exc).__mro__:
        ours = _TO_HTTPX.get(cls)
        if ours is not None and issubclass(ours, httpx.RequestError):
            return ours(str(exc))
    return httpx.TransportError(str(exc) or type(exc).__name__)


class _Httpx2Body(httpx.AsyncByteStream):
    """An httpx2 response's raw body as an httpx byte stream, httpx2's errors translated.

    An iterator object, not an async generator, so that leaving a stream early leaves no
    half-run generator of surge's behind; `aclose` closes httpx2's iterator and response.
    """

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response
        self._raw = response.aiter_raw()

    def __aiter__(self) -> _Httpx2Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._raw.__anext__()
        except httpx2.HTTPError as exc:
            raise _to_httpx(exc) from exc

    async def aclose(self) -> None:
        try:
            await self._raw.aclose()
        finally:
            await self._response.aclose()


async def send_on_httpx2(
    client: httpx2.AsyncClient,
    url: httpx.URL,
    content: bytes,
    headers: httpx.Headers,
    timeout: httpx.Timeout | None,
    *,
    stream: bool = False,
) -> httpx.Response:
    """POST through a user's `httpx2.AsyncClient`; return the response as httpx's.

    For `LLMClient(http_client=<an httpx2 client>)`: the call path above speaks httpx, so
    the reply comes back as an `httpx.Response` (status, headers, body, extensions, the
    `surge.timings` among them), and httpx2's errors as httpx's of the same name, for
    `surge._http.translate_error` to turn into surge's, once.

    Args:
        client: The user's client.
        url: Where to POST.
        content: The body.
        headers: The request headers.
        timeout: This request's timeouts; None for the client's.
        stream: Leave a success's body unread: the response's stream reads it from httpx2
            (errors translated) and closing it closes the httpx2 response. An error
            status's body is read and closed, as without `stream`.

    Raises:
        httpx.HTTPError: The httpx counterpart of what httpx2 raised.
    """
    try:
        request = client.build_request(
            "POST",
            str(url),
            content=content,
            headers=headers.raw,
            timeout=httpx2.Timeout(**timeout.as_dict())
            if timeout is not None
            else httpx2.USE_CLIENT_DEFAULT,
        )
        response = await client.send(request, stream=stream)
        if stream and response.status_code < 400:
            return httpx.Response(
                response.status_code,
                headers=response.headers.raw,
                stream=_Httpx2Body(response),
                extensions=response.extensions,
            )
        try:
            body = await response.aread()
        finally:
            await response.aclose()
    except httpx2.HTTPError as exc:
        raise _to_httpx(exc) from exc
    return httpx.Response(
        response.status_code,
        headers=response.headers.raw,
        content=body,
        extensions=response.extensions,
    )
