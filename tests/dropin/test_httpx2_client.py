"""`surge.httpx2_client()`: surge's pool inside an `httpx2.AsyncClient`, and LLMClient on one.

Needs only httpx2 (in the `test` extra, so in both environments), against the simulated server
and the raw servers of tests/_servers.py over loopback.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator

import anyio
import pytest
from _env import ENV, need

import surge
from surge._transport.pool import PoolTransport
from surge.testing import ChatRequest, Failure, SimulatedServer

httpx2 = need(ENV, "httpx2")

pytestmark = pytest.mark.anyio

BODY = {"model": "surge-sim", "messages": [{"role": "user", "content": "hi"}]}


def _pool(client: object) -> PoolTransport:
    transport = client._transport.inner  # type: ignore[attr-defined]
    assert isinstance(transport, PoolTransport)
    return transport


def _refused_url() -> str:
    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def test_a_chat_goes_through_surges_pool_with_timings() -> None:
    async with SimulatedServer(reply="from the simulator") as server:
        client = surge.httpx2_client(max_connections=7)
        assert isinstance(client, httpx2.AsyncClient)
        response = await client.post(f"{server.url}/chat/completions", json=BODY)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "from the simulator"
        timings = response.extensions["surge.timings"]
        assert isinstance(timings, surge.Timings)
        assert timings.http_version == "HTTP/1.1"
        assert timings.ttfb > 0
        assert timings.total >= timings.ttfb
        assert _pool(client).stats().requests == 1
        assert _pool(client)._config.max_connections == 7
        assert server.stats.requests == 1
        await client.aclose()


async def test_the_pool_config_reaches_the_transport_and_the_timeouts() -> None:
    client = surge.httpx2_client(surge.PoolConfig(max_connections=3, read=4.5))
    assert _pool(client)._config.max_connections == 3
    assert client.timeout.read == 4.5
    await client.aclose()
    with pytest.raises(surge.ConfigError, match="not both"):
        surge.httpx2_client(surge.PoolConfig(), max_connections=3)


async def test_a_burst_reaches_the_server_at_once() -> None:
    n = 500
    server: SimulatedServer

    async def held(request: ChatRequest) -> str:
        # No answer until all n requests are in: a client that sent them in waves never
        # gets there, and the time bound fails the test.
        await server.wait_for(lambda s: s.requests >= n)
        return "ok"

    async with SimulatedServer(reply=held) as server:
        client = surge.httpx2_client(max_connections=n)
        statuses: list[int] = []

        async def one() -> None:
            response = await client.post(f"{server.url}/chat/completions", json=BODY)
            statuses.append(response.status_code)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one)
        await client.aclose()
        assert statuses == [200] * n
        assert server.stats.peak_in_flight == n


async def test_transport_errors_come_out_as_httpx2_errors() -> None:
    client = surge.httpx2_client(read=0.2, connect=2.0)
    async with SimulatedServer(failures=Failure.stall(first=1)) as server:
        with pytest.raises(httpx2.ReadTimeout) as timeout:
            await client.post(f"{server.url}/chat/completions", json=BODY)
        assert timeout.value.request.url == f"{server.url}/chat/completions"
    async with SimulatedServer(failures=Failure.drop_before_response(first=2)) as server:
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.post(f"{server.url}/chat/completions", json=BODY)
    with pytest.raises(httpx2.ConnectError):
        await client.post(f"{_refused_url()}/chat/completions", json=BODY)
    await client.aclose()


async def test_a_stream_closed_early_frees_the_server_and_the_pool() -> None:
    reply = " ".join(["word"] * 400)  # 400 tokens at 40/s: 10 s if read to the end
    async with SimulatedServer(reply=reply, stream_tokens_per_second=40) as server:
        client = surge.httpx2_client()
        with anyio.fail_after(5):
            async with client.stream(
                "POST", f"{server.url}/chat/completions", json={**BODY, "stream": True}
            ) as response:
                # Leave with the body unread (the SDK tests break out of their iterators;
                # here no half-run async generator is left for trio's finalizer to flag).
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
            await server.wait_for(lambda s: s.in_flight == 0)
            # The half-read connection was closed, not returned: the next call opens another.
            again = await client.post(f"{server.url}/chat/completions", json=BODY)
        assert again.status_code == 200
        assert server.stats.connections_opened == 2
        assert server.stats.served == 1
        await client.aclose()


async def test_a_streamed_upload_goes_through_the_pool() -> None:
    seen: list[str] = []

    def reply(request: ChatRequest) -> str:
        seen.append(request.messages[-1]["content"])
        return "got it"

    async def body() -> AsyncIterator[bytes]:
        yield b'{"model": "m", "messages": [{"role": "user", '
        yield b'"content": "in two chunks"}]}'

    async with SimulatedServer(reply=reply) as server:
        client = surge.httpx2_client()
        response = await client.post(f"{server.url}/chat/completions", content=body())
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "got it"
        assert seen == ["in two chunks"]
        await client.aclose()


async def test_llmclient_takes_an_httpx2_client() -> None:
    async with SimulatedServer(reply="via httpx2") as server:
        http = surge.httpx2_client(max_connections=20)
        llm = surge.LLMClient(base_url=server.url, http_client=http, retry=False)
        response = await llm.chat("hi")
        assert response.text == "via httpx2"
        assert response.timings.ttfb > 0
        assert llm.pool_stats().requests == 1  # the pool inside the adapter
        await llm.aclose()
        assert not http.is_closed  # surge never closes a client it was given
        await http.aclose()


async def test_llmclient_on_an_httpx2_client_raises_surges_errors() -> None:
    failures = [Failure.status(429, first=1), Failure.status(500, requests=[1])]
    for http in (surge.httpx2_client(read=0.3), httpx2.AsyncClient(timeout=0.3)):
        async with SimulatedServer(failures=failures) as server:
            llm = surge.LLMClient(base_url=server.url, http_client=http, retry=False)
            with pytest.raises(surge.RateLimitError):
                await llm.chat("a")
            with pytest.raises(surge.ServerError):
                await llm.chat("b")
            assert (await llm.chat("c")).text != ""
            await http.aclose()
    async with SimulatedServer(failures=Failure.stall()) as server:
        http = httpx2.AsyncClient(timeout=0.2)
        llm = surge.LLMClient(base_url=server.url, http_client=http, retry=False)
        with pytest.raises(surge.ReadTimeout, match=r"POST http://127\.0\.0\.1"):
            await llm.chat("c")
        await http.aclose()
    http = httpx2.AsyncClient()
    llm = surge.LLMClient(base_url=_refused_url(), http_client=http, retry=False)
    with pytest.raises(surge.ConnectError):
        await llm.chat("d")
    await http.aclose()


def test_llmclient_refuses_other_clients_by_name() -> None:
    with pytest.raises(surge.ConfigError, match=r"httpx2\.AsyncClient, not dict"):
        surge.LLMClient(base_url="http://127.0.0.1:9/v1", http_client={})  # type: ignore[arg-type]


def test_a_missing_httpx2_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "httpx2", None)  # what `import httpx2` meets uninstalled
    monkeypatch.delitem(sys.modules, "surge._httpx2_adapter", raising=False)
    with pytest.raises(surge.ConfigError, match=r'pip install "surge\[httpx2\]"'):
        surge.httpx2_client()


async def test_llmclient_streams_over_an_httpx2_client() -> None:
    """client.stream over a supplied httpx2 client: deltas, errors, and leaving early."""
    for make in (surge.httpx2_client, httpx2.AsyncClient):
        http = make()
        async with SimulatedServer(reply="one two three") as server:
            llm = surge.LLMClient(base_url=server.url, http_client=http, retry=False)
            with anyio.fail_after(10):
                async with llm.stream("hi") as stream:
                    deltas = [text async for text in stream.text_deltas()]
                    response = await stream.response()
            assert "".join(deltas) == "one two three"
            assert len(deltas) == 3
            assert response.text == "one two three"
            assert response.finish_reason == "stop"
        async with SimulatedServer(failures=Failure.status(429, first=1)) as server:
            llm = surge.LLMClient(base_url=server.url, http_client=http, retry=False)
            with pytest.raises(surge.RateLimitError):
                async with llm.stream("hi") as stream:
                    pass
        async with SimulatedServer(failures=Failure.drop_mid_body(first=1)) as server:
            llm = surge.LLMClient(base_url=server.url, http_client=http, retry=False)
            with pytest.raises(surge.TransportError):
                async with llm.stream("hi") as stream:
                    await stream.response()
        await http.aclose()


# Leaving early leaves httpx2's own body generators (Response.aiter_raw, httpcore2's
# PoolByteStream) half-run, which trio's finalizer reports, as in the openai SDK tests.
@pytest.mark.filterwarnings("ignore:Async generator:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_stream_left_early_over_an_httpx2_client_stops_the_server() -> None:
    for make in (surge.httpx2_client, httpx2.AsyncClient):
        http = make()
        reply = " ".join(["word"] * 400)  # 10 s at 40 tokens/s if read to the end
        async with SimulatedServer(reply=reply, stream_tokens_per_second=40) as server:
            llm = surge.LLMClient(base_url=server.url, http_client=http, retry=False)
            with anyio.fail_after(5):
                async with llm.stream("hi") as stream:
                    async for _ in stream:  # the stream itself: no generator left half-run
                        break
                await server.wait_for(lambda s: s.cancelled == 1)
            assert server.stats.cancelled == 1
        await http.aclose()
