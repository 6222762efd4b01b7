"""`LLMClient` end to end against the simulated server over loopback, on asyncio and trio."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

import surge
from surge import LLMClient, Message
from surge.testing import ChatRequest, Failure, Reply, SimulatedServer

pytestmark = pytest.mark.anyio

SECRET = "sk-test-0123456789-do-not-print"


@pytest.fixture
async def server() -> AsyncIterator[SimulatedServer]:
    async with SimulatedServer() as server:
        yield server


class Recorder:
    """A scripted reply that remembers every request it answered."""

    def __init__(self, text: str = "ok") -> None:
        self.text = text
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> str:
        self.requests.append(request)
        return self.text


async def test_chat_returns_a_typed_response() -> None:
    async with (
        SimulatedServer(reply="Hello from the simulator") as server,
        LLMClient(base_url=server.url, model="m") as client,
    ):
        response = await client.chat([{"role": "user", "content": "hi"}])
    assert isinstance(response, surge.ChatResponse)
    assert response.text == "Hello from the simulator"
    assert response.finish_reason == "stop"
    assert response.usage is not None
    assert response.usage.total_tokens > 0
    assert response.raw["choices"][0]["message"]["content"] == "Hello from the simulator"
    assert response.request_id
    assert response.timings.total >= response.timings.ttfb > 0


async def test_messages_as_dicts_models_or_a_string() -> None:
    recorder = Recorder()
    async with SimulatedServer(reply=recorder) as server, LLMClient(base_url=server.url) as client:
        await client.chat([Message.system("be brief"), {"role": "user", "content": "a"}])
        await client.chat("just a string")
    assert recorder.requests[0].messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a"},
    ]
    assert recorder.requests[1].messages == [{"role": "user", "content": "just a string"}]


async def test_extra_params_pass_through_and_model_resolution() -> None:
    recorder = Recorder()
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with (
        SimulatedServer(reply=recorder) as server,
        LLMClient(base_url=server.url, model="default-model") as client,
    ):
        await client.chat("x", temperature=0.25, max_tokens=7, seed=3, tools=tools)
        await client.chat("y", model="other-model", response_format={"type": "json_object"})
        await client.with_options(model=None).chat("z")
    first, second, third = (r.body for r in recorder.requests)
    assert first["model"] == "default-model"
    assert (first["temperature"], first["max_tokens"], first["seed"]) == (0.25, 7, 3)
    assert first["tools"] == tools
    assert second["model"] == "other-model"
    assert second["response_format"] == {"type": "json_object"}
    assert "model" not in third


async def test_messages_must_be_a_list() -> None:
    client = LLMClient(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TypeError, match="messages"):
        await client.chat({"role": "user", "content": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"messages\[1\]"):
        await client.chat([{"role": "user", "content": "x"}, 42])  # type: ignore[list-item]


async def test_streaming_is_refused_clearly() -> None:
    client = LLMClient(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(surge.ConfigError, match="stream"):
        await client.chat("x", stream=True)


async def test_with_options_shares_one_pool(server: SimulatedServer) -> None:
    async with LLMClient(base_url=server.url, model="a") as client:
        other = client.with_options(model="b")
        for _ in range(3):
            await client.chat("x")
            await other.chat("y")
        assert client.pool_stats().requests == 6
        assert other.pool_stats() == client.pool_stats()
        await other.aclose()  # a derived client leaves the shared pool open
        await client.chat("still open")
    assert server.stats.connections_opened == 1


async def test_supplied_http_client_is_used_and_left_open(server: SimulatedServer) -> None:
    http = surge.http_client(max_connections=4)
    async with LLMClient(base_url=server.url, http_client=http) as client:
        await client.chat("x")
        assert client.pool_stats().requests == 1
    response = await http.post(
        f"{server.url}/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 200
    assert isinstance(response.extensions["surge.timings"], surge.Timings)
    await http.aclose()


async def test_plain_httpx_client_still_gets_timings(server: SimulatedServer) -> None:
    async with (
        httpx.AsyncClient() as http,
        LLMClient(base_url=server.url, http_client=http) as client,
    ):
        response = await client.chat("x")
        assert response.timings.total > 0
        assert client.pool_stats() == surge.PoolStats()


async def test_closed_client_refuses_calls(server: SimulatedServer) -> None:
    client = LLMClient(base_url=server.url)
    await client.chat("x")
    await client.aclose()
    await client.aclose()  # twice is harmless
    with pytest.raises(surge.ConfigError, match="closed"):
        await client.chat("x")


# A fast policy: retries cost milliseconds, and a Retry-After over one second ends the call
# at once with the server's error (instead of sleeping for it).
FAST = surge.RetryPolicy(backoff=0.001, max_backoff=0.002, max_retry_after=1.0)


@pytest.mark.parametrize(
    ("status", "kind", "attempts"),
    [
        (400, surge.BadRequestError, 1),  # never retried
        (401, surge.AuthenticationError, 1),
        (404, surge.NotFoundError, 1),
        (429, surge.RateLimitError, 1),  # retryable, but asks for 2 s: over the cap of 1 s
        (500, surge.ServerError, 3),  # retried to max_attempts
        (503, surge.ServerError, 3),
    ],
)
async def test_error_statuses_raise_typed_errors(
    status: int, kind: type[surge.APIStatusError], attempts: int
) -> None:
    failure = Failure.status(
        status, retry_after=2 if status == 429 else None, message=f"injected {status}"
    )
    async with (
        SimulatedServer(failures=failure) as server,
        LLMClient(base_url=server.url, retry=FAST) as client,
    ):
        with pytest.raises(kind) as info:
            await client.chat("x")
        assert server.stats.requests == attempts
    error = info.value
    assert error.status_code == status
    assert f"injected {status}" in str(error)
    assert isinstance(error.body, dict)
    assert error.body["error"]["message"] == f"injected {status}"
    assert error.request_id
    assert [a.status_code for a in error.call_attempts] == [status] * attempts
    if isinstance(error, surge.RateLimitError):
        assert error.retry_after == 2.0


async def test_html_page_with_200_is_a_response_format_error() -> None:
    async with (
        SimulatedServer(failures=Failure.non_json_body()) as server,
        LLMClient(base_url=server.url) as client,
    ):
        with pytest.raises(surge.ResponseFormatError) as info:
            await client.chat("x")
    assert "not valid JSON" in str(info.value)
    assert info.value.body.lstrip().startswith(b"<")


async def test_dropped_mid_body_is_a_remote_protocol_error() -> None:
    async with (
        SimulatedServer(failures=Failure.drop_mid_body()) as server,
        LLMClient(base_url=server.url) as client,
    ):
        with pytest.raises(surge.RemoteProtocolError) as info:
            await client.chat("x")
        url = server.url
    assert info.value.url == f"{url}/chat/completions"


async def test_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with LLMClient(base_url=f"http://127.0.0.1:{port}/v1") as client:
        with pytest.raises(surge.ConnectError, match=str(port)):
            await client.chat("x")


async def test_server_that_never_answers_is_a_read_timeout() -> None:
    async with (
        SimulatedServer(failures=Failure.stall()) as server,
        LLMClient(base_url=server.url, read=0.2) as client,
    ):
        with pytest.raises(surge.ReadTimeout):
            await client.chat("x")
        with pytest.raises(surge.ReadTimeout):
            await client.with_options(timeout=None).chat("x", timeout=0.1)
        assert client.pool_stats().in_use == 0


async def test_pool_timeout_says_which_limit_to_raise() -> None:
    async with (
        SimulatedServer(failures=Failure.stall(first=1)) as server,
        LLMClient(base_url=server.url, max_connections=1, pool=0.1) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_ignore_errors, client.chat("holds the only connection"))
        await server.wait_for(lambda s: s.in_flight == 1)
        with pytest.raises(surge.PoolTimeout) as info:
            await client.chat("waits")
        with anyio.fail_after(5), pytest.raises(surge.PoolTimeout):  # a call's timeout=
            await client.chat("waits", timeout=30)  # is its read timeout, pool= still holds
        tg.cancel_scope.cancel()
    assert "max_connections" in str(info.value)
    assert isinstance(info.value, TimeoutError)


async def _ignore_errors(call: Any) -> None:
    with contextlib.suppress(surge.SurgeError):
        await call


async def test_the_api_key_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[ChatRequest] = []

    def refuse(request: ChatRequest) -> Reply:
        seen.append(request)
        return Reply(status=401, content=f"Incorrect API key provided: {SECRET}")

    async with (
        SimulatedServer(reply=refuse) as server,
        LLMClient(base_url=server.url, api_key=SECRET) as client,
    ):
        with pytest.raises(surge.AuthenticationError) as info:
            await client.chat("x")
        timings = client.pool_stats()
    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"
    shown = [str(info.value), repr(info.value), repr(client), repr(timings), caplog.text]
    shown += [repr(client._settings), repr(client.endpoints), repr(client.with_options(model="m"))]
    shown += [str(arg) for arg in info.value.args]
    assert all(SECRET not in text for text in shown)
    assert "***" in str(info.value)


async def test_deadline_names_the_server_when_the_server_is_slow() -> None:
    async with (
        SimulatedServer(failures=Failure.stall()) as server,
        LLMClient(base_url=server.url, deadline=0.3, retry=False) as client,
    ):
        with pytest.raises(surge.DeadlineExceeded, match="waiting for the server's answer"):
            await client.chat("x")
        assert client.pool_stats().in_use == 0


async def test_deadline_names_the_pool_when_no_connection_is_free() -> None:
    async with (
        SimulatedServer(failures=Failure.stall(first=1)) as server,
        LLMClient(base_url=server.url, max_connections=1, retry=False) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_ignore_errors, client.chat("holds the only connection"))
        await server.wait_for(lambda s: s.in_flight == 1)
        with pytest.raises(surge.DeadlineExceeded, match=r"waiting for a connection \(attempt 1\)"):
            await client.chat("waits", deadline=0.2)
        tg.cancel_scope.cancel()
