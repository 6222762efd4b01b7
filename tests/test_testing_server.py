"""The simulated OpenAI-compatible server (`surge.testing`), over real loopback sockets."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme

import surge
from surge import ConfigError
from surge.testing import (
    ChatRequest,
    Failure,
    Reply,
    ServerStats,
    SimulatedServer,
    ToolCall,
    _server,
    lognormal,
    uniform,
)

pytestmark = pytest.mark.timeout(60)


def chat(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


async def post(client: httpx.AsyncClient, server: SimulatedServer, body: Any) -> httpx.Response:
    return await client.post(f"{server.url}/chat/completions", json=body)


async def read_sse(response: httpx.Response) -> list[Any]:
    """Parse an SSE body into JSON events, with "[DONE]" kept as the string."""
    events: list[Any] = []
    async for line in response.aiter_lines():
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def read_into(
    received: list[bytes], client: httpx.AsyncClient, server: SimulatedServer, body: Any
) -> None:
    async with client.stream("POST", f"{server.url}/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for piece in response.aiter_bytes():
            received.append(piece)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# -- shape of answers ------------------------------------------------------------------


@pytest.mark.anyio
async def test_completion_has_openai_shape() -> None:
    async with SimulatedServer() as server, httpx.AsyncClient() as client:
        response = await post(client, server, chat("what is two plus two"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert list(body)[:6] == ["id", "object", "created", "model", "choices", "usage"]
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-test"
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": "You said: what is two plus two"}
    usage = body["usage"]
    assert usage["prompt_tokens"] == 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] > 0


@pytest.mark.anyio
async def test_models_route_lists_the_model() -> None:
    async with SimulatedServer(model="tiny") as server, httpx.AsyncClient() as client:
        listing = await client.get(f"{server.url}/models")
        one = await client.get(f"{server.url}/models/tiny")
    assert listing.status_code == 200
    assert [m["id"] for m in listing.json()["data"]] == ["tiny"]
    assert listing.json()["object"] == "list"
    assert one.json()["id"] == "tiny"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("GET", "/models/other", 404), ("GET", "/chat/completions", 405)],
)
async def test_unknown_routes_get_openai_error_bodies(method: str, path: str, status: int) -> None:
    async with SimulatedServer() as server, httpx.AsyncClient() as client:
        response = await client.request(method, f"{server.url}{path}")
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "param"),
    [(b"{not json", None), (b"[1, 2]", None), (b'{"model": "m"}', "messages")],
)
async def test_bad_bodies_get_400(content: bytes, param: str | None) -> None:
    async with SimulatedServer() as server, httpx.AsyncClient() as client:
        response = await client.post(f"{server.url}/chat/completions", content=content)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param
    assert server.stats.served == 1


# -- scripted replies --------------------------------------------------------------------


@pytest.mark.anyio
async def test_reply_function_sees_the_request() -> None:
    seen: list[ChatRequest] = []

    def reply(request: ChatRequest) -> str:
        seen.append(request)
        return (
            f"#{request.n}: {request.last_user_message.upper()} t={request.params['temperature']}"
        )

    async with SimulatedServer(reply=reply) as server, httpx.AsyncClient() as client:
        first = await post(client, server, chat("abc", temperature=0.5))
        second = await post(client, server, chat("xyz", temperature=1))
    assert first.json()["choices"][0]["message"]["content"] == "#0: ABC t=0.5"
    assert second.json()["choices"][0]["message"]["content"] == "#1: XYZ t=1"
    assert seen[0].model == "gpt-test"
    assert seen[0].body["messages"][0]["content"] == "abc"
    assert seen[0].http_version == "1.1"
    assert not seen[0].stream


@pytest.mark.anyio
async def test_plain_string_reply_and_response_format_ignored() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    async with SimulatedServer(reply='{"a": 1}') as server, httpx.AsyncClient() as client:
        response = await post(client, server, chat(response_format=schema))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == '{"a": 1}'


@pytest.mark.anyio
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_cuts_the_reply_with_finish_reason_length(field: str) -> None:
    # As llama.cpp's server does (tests/test_realserver.py): stop there, say "length".
    async with (
        SimulatedServer(reply="one two three four five") as server,
        httpx.AsyncClient() as client,
    ):
        cut = (await post(client, server, chat(**{field: 3}))).json()
        whole = (await post(client, server, chat(**{field: 5}))).json()
        streamed = await read_sse(
            await client.post(
                f"{server.url}/chat/completions", json=chat(stream=True, **{field: 2})
            )
        )
    assert cut["choices"][0]["message"]["content"] == "one two three "
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 3
    assert whole["choices"][0]["message"]["content"] == "one two three four five"
    assert whole["choices"][0]["finish_reason"] == "stop"
    chunks = [c for c in streamed if isinstance(c, dict)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.anyio
async def test_async_reply_function_and_partial_dict_body() -> None:
    async def reply(request: ChatRequest) -> Mapping[str, Any]:
        await anyio.lowlevel.checkpoint()
        return {
            "choices": [{"message": {"content": "from a dict"}, "finish_reason": "length"}],
            "system_fingerprint": "fp_sim",
        }

    async with SimulatedServer(reply=reply) as server, httpx.AsyncClient() as client:
        body = (await post(client, server, chat())).json()
    assert body["object"] == "chat.completion"
    assert body["system_fingerprint"] == "fp_sim"
    assert body["choices"][0] == {
        "message": {"content": "from a dict", "role": "assistant"},
        "finish_reason": "length",
        "index": 0,
        "logprobs": None,
    }
    assert body["usage"]["completion_tokens"] == 3


@pytest.mark.anyio
async def test_tool_call_replies() -> None:
    reply = Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1")])
    async with SimulatedServer(reply=lambda _r: reply) as server, httpx.AsyncClient() as client:
        body = (await post(client, server, chat(tools=[{"type": "function"}]))).json()
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]


@pytest.mark.anyio
async def test_reply_with_status_and_headers() -> None:
    reply = Reply(content="context too long", status=400, headers={"x-extra": "1"})
    async with SimulatedServer(reply=lambda _r: reply) as server, httpx.AsyncClient() as client:
        response = await post(client, server, chat())
    assert response.status_code == 400
    assert response.headers["x-extra"] == "1"
    assert response.json()["error"]["message"] == "context too long"


@pytest.mark.anyio
async def test_failing_reply_function_gives_500_naming_it() -> None:
    def reply(request: ChatRequest) -> str:
        raise LookupError("no script for this")

    async with SimulatedServer(reply=reply) as server, httpx.AsyncClient() as client:
        response = await post(client, server, chat())
        wrong = SimulatedServer(reply=lambda _r: 42)  # type: ignore[arg-type]
        async with wrong:
            bad_type = await post(client, wrong, chat())
    assert response.status_code == 500
    assert "LookupError: no script for this" in response.json()["error"]["message"]
    assert bad_type.status_code == 500
    assert "expected str, dict or Reply" in bad_type.json()["error"]["message"]


# -- streaming ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stream_matches_the_plain_answer() -> None:
    server = SimulatedServer(stream_tokens_per_second=float("inf"))
    async with server, httpx.AsyncClient() as client:
        plain = (await post(client, server, chat("one two three four"))).json()
        body = chat("one two three four", stream=True, stream_options={"include_usage": True})
        url = f"{server.url}/chat/completions"
        async with client.stream("POST", url, json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = await read_sse(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert len(chunks) > 4  # one chunk per word, not one blob
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [f["choices"][0]["finish_reason"] for f in finals] == ["stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]


@pytest.mark.anyio
async def test_stream_without_usage_and_with_tool_calls() -> None:
    reply = Reply(tool_calls=[ToolCall("lookup", '{"q": "surge pool"}')])
    async with SimulatedServer(reply=lambda _r: reply) as server, httpx.AsyncClient() as client:
        url = f"{server.url}/chat/completions"
        async with client.stream("POST", url, json=chat(stream=True)) as response:
            events = await read_sse(response)
    chunks = events[:-1]
    assert all("usage" not in c for c in chunks)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk["choices"][0]["delta"].get("tool_calls", []):
            call = calls.setdefault(delta["index"], {"name": "", "arguments": ""})
            call["name"] += delta["function"].get("name") or ""
            call["arguments"] += delta["function"]["arguments"]
    assert calls == {0: {"name": "lookup", "arguments": '{"q": "surge pool"}'}}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# -- slots and counters --------------------------------------------------------------


@pytest.mark.anyio
async def test_slots_queue_fifo_and_cap_active_requests() -> None:
    n_requests, n_slots = 8, 3
    order: list[int] = []

    async def reply(request: ChatRequest) -> str:
        order.append(request.n)
        # Hold the first slots until every request is inside the server.
        await server.wait_for(lambda s: s.peak_in_flight == n_requests)
        return "ok"

    server = SimulatedServer(slots=n_slots, reply=reply)
    async with server, httpx.AsyncClient() as client:
        async with anyio.create_task_group() as group:
            for i in range(n_requests):
                group.start_soon(post, client, server, chat(f"r{i}"))
        stats = server.stats
    assert stats.peak_in_flight == n_requests
    assert stats.peak_active == n_slots
    assert stats.requests == stats.served == n_requests
    assert stats.in_flight == stats.active == stats.queued == 0
    assert sorted(order) == list(range(n_requests))


@pytest.mark.anyio
async def test_one_slot_serves_in_arrival_order() -> None:
    n_requests = 6
    order: list[int] = []

    async def reply(request: ChatRequest) -> str:
        order.append(request.n)
        await server.wait_for(lambda s: s.peak_in_flight == n_requests)
        return "ok"

    server = SimulatedServer(slots=1, reply=reply)
    async with server, httpx.AsyncClient() as client, anyio.create_task_group() as group:
        for i in range(n_requests):
            group.start_soon(post, client, server, chat(f"r{i}"))
    assert order == list(range(n_requests))  # FIFO: n is the arrival order
    assert server.stats.peak_active == 1


@pytest.mark.anyio
async def test_unlimited_slots_serve_everything_at_once() -> None:
    n_requests = 20

    async def reply(request: ChatRequest) -> str:
        await server.wait_for(lambda s: s.peak_active == n_requests)
        return "ok"

    server = SimulatedServer(reply=reply, latency=uniform(0.0, 0.01, seed=1))
    async with server, httpx.AsyncClient() as client, anyio.create_task_group() as group:
        for _ in range(n_requests):
            group.start_soon(post, client, server, chat())
    assert server.stats.peak_active == n_requests


@pytest.mark.anyio
async def test_counters_connections_versions_and_reset() -> None:
    async with SimulatedServer() as server:
        async with httpx.AsyncClient() as one, httpx.AsyncClient() as two:
            for _ in range(3):
                assert (await post(one, server, chat())).status_code == 200
            await two.get(f"{server.url}/models")
        stats = server.stats
        assert stats.requests == stats.served == 4
        assert stats.connections_opened == 2
        assert dict(stats.http_versions) == {"1.1": 4}
        server.reset_stats()
        assert server.stats == ServerStats()


# -- failures -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_status_failure_with_retry_after() -> None:
    failure = Failure.status(429, retry_after=1.5, first=2)
    async with SimulatedServer(failures=failure) as server, httpx.AsyncClient() as client:
        responses = [await post(client, server, chat()) for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 200]
    limited = responses[0]
    assert limited.headers["retry-after"] == "1.5"
    assert limited.headers["retry-after-ms"] == "1500"
    assert limited.headers["x-request-id"]
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert dict(server.stats.failures) == {"status": 2}


@pytest.mark.anyio
async def test_drop_before_response_closes_without_a_byte() -> None:
    failure = Failure.drop_before_response(requests=[0])
    async with SimulatedServer(failures=failure) as server, httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await post(client, server, chat())
        assert (await post(client, server, chat())).status_code == 200
        stats = await server.wait_for(lambda s: s.in_flight == 0)
    assert stats.served == 1
    assert dict(stats.failures) == {"drop_before_response": 1}


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True])
async def test_drop_mid_body_sends_headers_then_closes(stream: bool) -> None:
    failure = Failure.drop_mid_body(every=1)
    async with SimulatedServer(failures=failure) as server, httpx.AsyncClient() as client:
        received: list[bytes] = []
        with pytest.raises(httpx.RemoteProtocolError, match=r"complete message body"):
            await read_into(received, client, server, chat(stream=stream))
        assert b"".join(received)  # part of the body did arrive
        stats = await server.wait_for(lambda s: s.in_flight == 0)
    assert stats.served == 0


@pytest.mark.anyio
async def test_non_json_body_is_an_html_200() -> None:
    failure = Failure.non_json_body(requests={1})
    async with SimulatedServer(failures=failure) as server, httpx.AsyncClient() as client:
        good = await post(client, server, chat())
        html = await post(client, server, chat())
    assert good.json()["object"] == "chat.completion"
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert html.text.startswith("<!DOCTYPE html>")
    with pytest.raises(json.JSONDecodeError):
        html.json()


@pytest.mark.anyio
async def test_slow_first_byte_and_stall_trip_the_client_read_timeout() -> None:
    failures = [Failure.slow_first_byte(60, requests=[0]), Failure.stall(requests=[1])]
    timeout = httpx.Timeout(5.0, read=0.3)
    async with SimulatedServer(failures=failures) as server:
        async with httpx.AsyncClient(timeout=timeout) as client:
            with pytest.raises(httpx.ReadTimeout):
                await post(client, server, chat())
            with pytest.raises(httpx.ReadTimeout):
                await post(client, server, chat())
        async with httpx.AsyncClient() as patient:  # default timeouts: no flake under load
            assert (await post(patient, server, chat())).status_code == 200
        # The clients gave up; the server notices the disconnects and frees their slots.
        stats = await server.wait_for(lambda s: s.in_flight == 0)
    assert dict(stats.failures) == {"slow_first_byte": 1, "stall": 1}
    assert stats.served == 1


@pytest.mark.anyio
async def test_failure_selection_is_deterministic() -> None:
    async def codes(seed: int) -> list[int]:
        failures = [Failure.status(503, rate=0.3), Failure.status(500, every=5)]
        server = SimulatedServer(failures=failures, seed=seed)
        async with server, httpx.AsyncClient() as client:
            return [(await post(client, server, chat())).status_code for _ in range(30)]

    first, again, other = await codes(7), await codes(7), await codes(8)
    assert first == again
    assert first != other
    assert 0 < first.count(503) < 30
    # every=5 hits requests 4, 9, ... unless the 503 rule (listed first) took them.
    assert all((n + 1) % 5 == 0 for n, code in enumerate(first) if code == 500)
    assert first.count(500) > 0


def test_failure_selectors() -> None:
    assert [n for n in range(10) if Failure.stall(every=3).hits(n, 0, 0)] == [2, 5, 8]
    assert [n for n in range(10) if Failure.stall(first=2).hits(n, 0, 0)] == [0, 1]
    assert [n for n in range(10) if Failure.stall(requests=[3, 7]).hits(n, 0, 0)] == [3, 7]
    assert all(Failure.stall().hits(n, 0, 0) for n in range(5))
    assert not any(Failure.stall(rate=0.0).hits(n, 0, 0) for n in range(50))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Failure.status(200),
        lambda: Failure.stall(rate=1.5),
        lambda: Failure.stall(rate=0.1, first=2),
        lambda: Failure.stall(every=0),
        lambda: Failure.slow_first_byte(-1),
        lambda: SimulatedServer(slots=0),
        lambda: SimulatedServer(latency=-1),
        lambda: SimulatedServer(stream_tokens_per_second=0),
        lambda: SimulatedServer(failures=["429"]),  # type: ignore[list-item]
        lambda: SimulatedServer(tls=("missing.pem", "missing.key")),
        lambda: uniform(2, 1),
        lambda: lognormal(0, 1),
    ],
)
def test_bad_settings_raise_config_error(make: Any) -> None:
    with pytest.raises(ConfigError):
        make()


# -- HTTP/2 and TLS ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_h2c_prior_knowledge() -> None:
    server = SimulatedServer()
    async with server, httpx.AsyncClient(http1=False, http2=True) as client:
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(post, client, server, chat())
        response = await post(client, server, chat())
    assert response.http_version == "HTTP/2"
    assert response.json()["object"] == "chat.completion"
    assert dict(server.stats.http_versions) == {"2": 6}
    assert server.stats.connections_opened == 1


@pytest.mark.anyio
async def test_h2_connection_carries_as_many_streams_at_once_as_it_allows() -> None:
    # hypercorn's stream tree holds 1000: at a limit of 1000, the 1000th stream beside one
    # that had just ended killed the connection's sender silently and every call hung.
    limit = _server._H2_MAX_STREAMS

    async def reply(request: ChatRequest) -> str:
        if request.n > 0:  # hold every stream until all are open at once
            await server.wait_for(lambda s: s.peak_in_flight == limit)
        return "ok"

    server = SimulatedServer(reply=reply)
    async with server:
        client = surge.LLMClient(base_url=server.url, http2=True, max_connections=1)
        async with client:
            await client.chat([{"role": "user", "content": "first"}])
            answers: list[str] = []

            async def call(i: int) -> None:
                answers.append((await client.chat([{"role": "user", "content": str(i)}])).text)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    for i in range(limit):
                        group.start_soon(call, i)
        stats = server.stats
    assert answers == ["ok"] * limit
    assert (stats.connections_opened, stats.peak_in_flight, stats.served) == (1, limit, limit + 1)
    assert dict(stats.http_versions) == {"2": limit + 1}


@pytest.mark.anyio
async def test_h2_drops_reset_the_stream_and_keep_the_connection() -> None:
    failures = [Failure.drop_before_response(requests=[0]), Failure.drop_mid_body(requests=[1])]
    async with SimulatedServer(failures=failures) as server:
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            for _ in range(2):
                with pytest.raises(httpx.RemoteProtocolError, match="StreamReset"):
                    await post(client, server, chat())
            assert (await post(client, server, chat())).status_code == 200
        stats = await server.wait_for(lambda s: s.in_flight == 0)
    assert stats.connections_opened == 1
    assert stats.served == 1


@pytest.mark.anyio
async def test_tls_with_alpn_h2(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async with SimulatedServer(tls=server_ssl) as server:
        assert server.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(http2=True, verify=client_ssl) as client:
            response = await post(client, server, chat())
        async with httpx.AsyncClient(verify=client_ssl) as client:
            http1 = await post(client, server, chat())
    assert response.http_version == "HTTP/2"
    assert http1.http_version == "HTTP/1.1"
    assert response.json()["choices"][0]["message"]["content"] == "You said: hello there"
    assert dict(server.stats.http_versions) == {"2": 1, "1.1": 1}


def test_tls_from_cert_and_key_files(
    ca: trustme.CA, client_ssl: ssl.SSLContext, tmp_path: Path
) -> None:
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    with SimulatedServer(tls=(str(certfile), str(keyfile))) as server:
        response = httpx.post(f"{server.url}/chat/completions", json=chat(), verify=client_ssl)
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"


# -- the sync context manager ------------------------------------------------------------


def test_sync_server_runs_in_a_background_thread() -> None:
    with SimulatedServer(slots=1, reply="sync") as server:
        assert server.url.startswith("http://127.0.0.1:")
        with httpx.Client() as client:
            response = client.post(f"{server.url}/chat/completions", json=chat())
            models = client.get(f"{server.url}/models")
        stats = server.wait_for_blocking(lambda s: s.served == 2, timeout=10)
    assert response.json()["choices"][0]["message"]["content"] == "sync"
    assert models.status_code == 200
    assert stats.requests == 2
    with pytest.raises(ConfigError):
        server.url  # noqa: B018 - not running any more


def test_sync_server_restarts_with_fresh_request_numbers() -> None:
    server = SimulatedServer(failures=Failure.stall(first=1))
    timeout = httpx.Timeout(5.0, read=0.2)
    for _run in range(2):
        with server, httpx.Client(timeout=timeout) as client:
            with pytest.raises(httpx.ReadTimeout):  # request 0 of each run stalls
                client.post(f"{server.url}/chat/completions", json=chat())
            answer = httpx.post(f"{server.url}/chat/completions", json=chat())
            assert answer.status_code == 200
    assert server.stats.failures == {"stall": 2}


@pytest.mark.anyio
async def test_exit_does_not_hang_on_a_stalled_request() -> None:
    outcomes: list[object] = []

    async def stalled(client: httpx.AsyncClient, server: SimulatedServer) -> None:
        try:
            outcomes.append((await post(client, server, chat())).status_code)
        except httpx.TransportError as exc:
            outcomes.append(type(exc))

    server = SimulatedServer(failures=Failure.stall())
    async with httpx.AsyncClient() as client, anyio.create_task_group() as group, server:
        group.start_soon(stalled, client, server)
        await server.wait_for(lambda s: s.in_flight == 1)
    assert outcomes in ([500], [httpx.RemoteProtocolError])
    assert server.stats.served == 0


def test_sync_wait_for_blocking_times_out() -> None:
    with SimulatedServer() as server:
        with pytest.raises(TimeoutError):
            server.wait_for_blocking(lambda s: s.requests == 1, timeout=0.05)
        with pytest.raises(ConfigError):
            anyio.run(server.wait_for, lambda s: True)


@pytest.mark.anyio
async def test_async_server_refuses_to_start_twice() -> None:
    async with SimulatedServer() as server:
        with pytest.raises(ConfigError, match="already running"):
            await server.__aenter__()


def test_import_surge_does_not_import_hypercorn() -> None:
    code = "import sys, surge; assert 'hypercorn' not in sys.modules, 'hypercorn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- surge simulate ----------------------------------------------------------------------


def test_simulate_flag_parsers() -> None:
    from surge.testing._cli import parse_failure, parse_latency

    assert parse_latency("0.25") == 0.25
    sampler = parse_latency("uniform:0.1:0.2")
    assert callable(sampler)
    assert all(0.1 <= sampler() <= 0.2 for _ in range(20))
    assert parse_failure("429:0.1", retry_after=2) == Failure.status(429, retry_after=2, rate=0.1)
    assert parse_failure("drop:0.5") == Failure.drop_before_response(rate=0.5)
    assert parse_failure("slow:3:0.2") == Failure.slow_first_byte(3, rate=0.2)
    for bad in ("explode:0.1", "429:lots", "drop"):
        with pytest.raises(ConfigError):
            parse_failure(bad)
    with pytest.raises(ConfigError):
        parse_latency("gamma:1:2")


def test_surge_simulate_serves_until_interrupted() -> None:
    import signal

    command = [sys.executable, "-m", "surge._cli", "simulate", "--port", "0", "--reply", "hi"]
    code = "import sys; from surge._cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", code, *command[3:]]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("surge simulate: serving on http://127.0.0.1:"), first
            url = first.rsplit(" ", 1)[1].strip()
            response = httpx.post(f"{url}/chat/completions", json=chat())
            assert response.json()["choices"][0]["message"]["content"] == "hi"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "requests=1" in err
