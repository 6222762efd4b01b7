"""Interoperability with a server surge did not write: llama.cpp's `llama-server`.

The tier of docs/testing.md, "Testing against a real server": tests/_llama.py starts the
server with the tiny random-weight model of tests/_tiny_model.py. Its vocabulary is the 256
bytes (one token each) plus BOS/EOS/unk and its chat template is llama.cpp's ChatML
fallback, so token counts are exact: a prompt costs its template's UTF-8 bytes plus BOS.
The model talks nonsense (random bytes, invalid UTF-8 shown as U+FFFD); every assertion
is about the protocol, never about what the model says.
"""

from __future__ import annotations

import logging
from typing import Literal

import anyio
import httpx
import pydantic
import pytest

import surge
from _llama import LlamaServer, LlamaServerFactory
from surge._structured.plan import plan_for

pytestmark = [pytest.mark.anyio, pytest.mark.realserver]


def chatml_tokens(*user_messages: str) -> int:
    """Prompt tokens of a conversation of user messages: ChatML's bytes plus BOS."""
    prompt = "".join(f"<|im_start|>user\n{m}<|im_end|>\n" for m in user_messages)
    return len((prompt + "<|im_start|>assistant\n").encode()) + 1


def raw_chat(server: LlamaServer, body: dict[str, object]) -> httpx.Response:
    with httpx.Client(timeout=30) as http:
        return http.post(f"{server.url}/chat/completions", json=body)


# -- chat --------------------------------------------------------------------------------


async def test_chat_text_usage_and_length_at_max_tokens(llama_server: LlamaServerFactory) -> None:
    server = llama_server(parallel=1, ctx=1024)
    async with surge.LLMClient(base_url=server.url) as client:
        response = await client.chat(
            "Hello there", max_tokens=12, ignore_eos=True, temperature=0, seed=7
        )
        again = await client.chat("Hello there", max_tokens=12, ignore_eos=True, temperature=0)

    assert response.finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 12
    assert response.usage.prompt_tokens == chatml_tokens("Hello there") == 62
    assert response.usage.total_tokens == 74
    # The text is what the server sent, byte for byte (nonsense: random weights).
    assert response.text == response.raw["choices"][0]["message"]["content"]
    assert response.text == again.text  # greedy decoding is deterministic
    assert response.message.role == "assistant"
    assert response.tool_calls == []
    # llama.cpp's non-standard extras stay in .raw and as attributes.
    timings = response.raw["timings"]
    assert timings["predicted_n"] == 12
    assert timings["prompt_n"] + timings["cache_n"] == 62
    assert set(timings) >= {"prompt_ms", "predicted_ms", "predicted_per_second"}
    assert response.model_extra is not None
    assert response.model_extra["timings"] == timings
    assert response.raw["system_fingerprint"].startswith("b")
    # surge's own timings are a different object, untouched by the server's.
    assert isinstance(response.timings, surge.Timings)
    assert response.timings.http_version == "HTTP/1.1"
    assert again.timings.reused is True


async def test_max_tokens_beyond_the_slot_stops_at_the_context(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=2, ctx=512)  # 256 tokens a slot
    async with surge.LLMClient(base_url=server.url) as client:
        response = await client.chat("hi", max_tokens=1000, ignore_eos=True)
    assert response.finish_reason == "length"
    assert response.usage is not None
    prompt = chatml_tokens("hi")
    assert response.usage.prompt_tokens == prompt
    # The slot holds 256 tokens; generation stops when it is full.
    assert response.usage.completion_tokens == server.slot_context - prompt


# -- errors ------------------------------------------------------------------------------


async def test_prompt_over_the_context_is_a_bad_request_with_the_servers_message(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=2, ctx=2048)  # 1,024 tokens a slot
    prompt = "x" * 1100
    async with surge.LLMClient(base_url=server.url) as client:
        with pytest.raises(surge.BadRequestError) as caught:
            await client.chat(prompt, max_tokens=4)
        after = await client.chat("hi", max_tokens=2, ignore_eos=True)
    error = caught.value
    tokens = chatml_tokens(prompt)
    assert error.status_code == 400
    expected = (
        f"request ({tokens} tokens) exceeds the available context size (1024 tokens), "
        "try increasing it"
    )
    assert expected in str(error)
    assert error.body["error"]["type"] == "exceed_context_size_error"
    assert error.body["error"]["n_prompt_tokens"] == tokens
    assert error.body["error"]["n_ctx"] == 1024
    assert len(error.call_attempts) == 1  # a 400 is never retried
    # llama-server closes the connection after an error ("Connection: close"): the next
    # call opens a new one instead of failing on the closed one.
    assert after.finish_reason == "length"
    assert after.timings.reused is False


async def test_unknown_route_is_not_found(llama_server: LlamaServerFactory) -> None:
    server = llama_server(parallel=1, ctx=1024)
    async with surge.LLMClient(base_url=f"{server.root}/nowhere") as client:
        with pytest.raises(surge.NotFoundError) as caught:
            await client.chat("hi", max_tokens=2)
    assert caught.value.status_code == 404
    assert caught.value.body == {
        "error": {"message": "File Not Found", "type": "not_found_error", "code": 404}
    }
    assert "File Not Found" in str(caught.value)
    assert len(caught.value.call_attempts) == 1


async def test_server_killed_mid_call_is_a_transport_error(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=1, ctx=2048)

    async def kill_when_busy() -> None:
        # /slots says when the call is being generated: then kill the server.
        async with httpx.AsyncClient() as http:
            with anyio.fail_after(10):
                while True:
                    slots = (await http.get(f"{server.root}/slots")).json()
                    if any(s["is_processing"] for s in slots):
                        break
                    await anyio.sleep(0.005)  # a poll interval, bounded above
        server.kill()

    async with (
        surge.LLMClient(base_url=server.url, retry=False) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(kill_when_busy)
        with pytest.raises(surge.TransportError) as caught:
            # 2,000 tokens at ~0.2 ms each: generating for far longer than the poll.
            await client.chat("hi", max_tokens=2000, ignore_eos=True)
    assert type(caught.value) is surge.RemoteProtocolError
    assert str(caught.value) == (
        f"POST {server.url}/chat/completions: "
        "server closed the connection without sending a response"
    )
    assert server.process.returncode == -9


async def test_killed_server_is_retried_then_reported(llama_server: LlamaServerFactory) -> None:
    server = llama_server(parallel=1, ctx=1024)
    server.kill()
    policy = surge.RetryPolicy(max_attempts=2, backoff=0.01, jitter=False)
    async with surge.LLMClient(base_url=server.url, retry=policy) as client:
        with pytest.raises(surge.ConnectError) as caught:
            await client.chat("hi", max_tokens=2)
    assert len(caught.value.call_attempts) == 2
    assert f"127.0.0.1:{server.port}" in str(caught.value)


# -- the seed scenario: 20 calls, 6 slots ------------------------------------------------


async def twenty_calls(client: surge.LLMClient, max_tokens: int) -> list[surge.ChatResponse]:
    responses: list[surge.ChatResponse] = []

    async def one() -> None:
        responses.append(await client.chat("hi", max_tokens=max_tokens, ignore_eos=True))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    return responses


def assert_server_queued(responses: list[surge.ChatResponse], slots: int) -> None:
    """Assert that the first bytes are spread over the waves a slotted server must make.

    A server with `slots` slots generates at most that many answers at once, so the busy
    time it needs is at least the sum of every call's own generation time (`predicted_ms`,
    its own figure) over `slots`; the last answer comes at least that long, less the first
    call's own generation, after the first. Load on the test machine stretches both sides
    alike, so the bound holds however busy the machine is. That the spread shows up in
    `ttfb` (and not `queued`) is what surge's timings promise.
    """
    ttfbs = sorted(r.timings.ttfb for r in responses)
    first = min(responses, key=lambda r: r.timings.ttfb)
    generation = [r.raw["timings"]["predicted_ms"] / 1000 for r in responses]
    needed = sum(generation) / slots - first.raw["timings"]["predicted_ms"] / 1000
    assert needed >= 2 * min(generation)  # several waves: at least two more after the first
    assert ttfbs[-1] - ttfbs[0] >= needed - 0.02, (ttfbs, generation)


async def test_twenty_calls_on_six_slots_wait_in_the_server_not_the_client(
    llama_server: LlamaServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Enough HTTP threads to read all 20 requests at once: the server queues them itself.
    server = llama_server(parallel=6, ctx=6144, args=["--threads-http", "24"])
    with caplog.at_level(logging.WARNING, logger="surge"):
        async with surge.LLMClient(base_url=server.url) as client:
            responses = await twenty_calls(client, max_tokens=300)
            stats = client.pool_stats()
    assert len(responses) == 20
    assert all(r.usage is not None and r.usage.completion_tokens == 300 for r in responses)
    # No call waited in the client: every one was sent at once, on its own connection.
    assert max(r.timings.queued for r in responses) < 0.005
    assert stats.connections_opened == 20
    # The server's six slots answer in waves (6, 6, 6, then the last 2): that wait is ttfb.
    assert_server_queued(responses, slots=6)
    assert [r for r in caplog.records if r.name == "surge"] == []


async def test_one_connection_queues_in_the_client_and_warns_once(
    llama_server: LlamaServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = llama_server(parallel=6, ctx=6144, args=["--threads-http", "24"])
    with caplog.at_level(logging.WARNING, logger="surge"):
        async with surge.LLMClient(base_url=server.url, max_connections=1) as client:
            responses = await twenty_calls(client, max_tokens=300)
            stats = client.pool_stats()
    assert stats.connections_opened == 1
    ordered = sorted(responses, key=lambda r: r.timings.queued)
    assert ordered[0].timings.queued < 0.005
    # The call that waited longest waited for the 19 others to be answered, one at a time.
    others = sum(r.timings.ttfb for r in ordered[:-1])
    assert ordered[-1].timings.queued >= 0.9 * others
    assert others >= 19 * min(r.raw["timings"]["predicted_ms"] / 1000 for r in responses)
    warnings_ = [r for r in caplog.records if r.name == "surge"]
    assert len(warnings_) == 1
    assert warnings_[0].levelno == logging.WARNING
    message = warnings_[0].getMessage()
    assert f"for a free connection to {server.root}" in message
    assert "All max_connections=1 connections to that origin were busy" in message


# -- structured outputs ------------------------------------------------------------------
#
# With a grammar (json_schema, json_object) the server makes even this model write JSON
# that fits the schema; string contents are random bytes, which its own output parser then
# rejects (500). Without one (prompt mode; tools, which it ignores) the model writes noise.


class Count(pydantic.BaseModel):
    n: int
    role: Literal["admin", "user"]


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20, description="The person's full name")
    age: int
    role: Literal["admin", "user"]


PEG_FAILURE = "500: The model produced output that does not match the expected peg-native format"
GREEDY = {"temperature": 0, "max_tokens": 64}  # deterministic, and short
ROOMY = {"temperature": 0, "max_tokens": 400}  # room for a whole Person


async def test_json_schema_mode_gets_a_value_from_the_grammar(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=1, ctx=1024)
    async with surge.LLMClient(base_url=server.url) as client:
        result = await client.structured_response(Count, "Count.", mode="json_schema", **GREEDY)
    assert isinstance(result.value, Count)
    assert (result.mode, result.strict, result.attempts) == ("json_schema", True, 1)
    assert Count.model_validate_json(result.response.text) == result.value


async def test_a_schema_the_grammar_fails_on_is_not_retried(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=1, ctx=1024)
    async with surge.LLMClient(base_url=server.url) as client:
        with pytest.raises(surge.ServerError) as caught:
            await client.structured(Person, "Who?", mode="json_schema", **ROOMY)
    assert caught.value.status_code == 500
    assert str(caught.value).endswith(PEG_FAILURE)
    assert len(caught.value.call_attempts) == 1  # one request, not three


async def test_tools_mode_says_the_server_ignores_tools(llama_server: LlamaServerFactory) -> None:
    server = llama_server(parallel=1, ctx=1024)
    async with surge.LLMClient(base_url=server.url) as client:
        with pytest.raises(surge.StructuredOutputError) as caught:
            await client.structured(Count, "Count.", mode="tools", **GREEDY)
    error = caught.value
    assert error.reason == "unsupported"
    assert len(error.responses) == 1  # not re-asked: the server will not call the tool
    assert error.responses[0].tool_calls == []
    assert "not a call to the tool 'Count': it ignores `tools`" in str(error)
    assert error.tried == []


async def test_prompt_mode_with_a_model_that_writes_noise(llama_server: LlamaServerFactory) -> None:
    server = llama_server(parallel=1, ctx=1024)
    async with surge.LLMClient(base_url=server.url) as client:
        with pytest.raises(surge.StructuredOutputError) as caught:
            await client.structured(Count, "Count.", mode="prompt", **GREEDY)
    error = caught.value
    assert error.reason == "length"
    assert len(error.responses) == 1
    assert error.responses[0].usage is not None
    assert error.responses[0].usage.completion_tokens == 64


async def test_default_mode_gets_a_value_with_json_schema(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=1, ctx=1024)
    async with surge.LLMClient(base_url=server.url) as client:
        result = await client.structured_response(Count, "Count.", **GREEDY)
    assert isinstance(result.value, Count)
    assert (result.mode, result.strategy, result.attempts) == ("json_schema", "json_schema", 1)


async def test_default_mode_drops_its_schema_hint_when_it_overflows_the_slot(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=2, ctx=512)  # 256 tokens a slot
    question = "Count the admins and users in the list I gave you, please. " * 2
    async with surge.LLMClient(base_url=server.url) as client:
        result = await client.structured_response(Count, question, **GREEDY)
    assert isinstance(result.value, Count)
    assert result.mode == "json_schema"
    # What was sent is the bare question: the schema in the prompt would not have fitted.
    usage = result.response.usage
    assert usage is not None
    assert usage.prompt_tokens == chatml_tokens(question)
    hint = plan_for(Count).object_prompt_text
    assert chatml_tokens(f"{question}\n\n{hint}") > server.slot_context


async def test_default_mode_ends_saying_which_modes_failed_and_why(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=1, ctx=1024)
    async with surge.LLMClient(base_url=server.url) as client:
        with pytest.raises(surge.StructuredOutputError) as caught:
            await client.structured(Person, "Who?", **ROOMY)
    error = caught.value
    # json_schema and json_object: the grammar's output fails the server's own parser, once
    # each; prompt mode: the model writes noise until max_tokens.
    assert error.tried == [("json_schema", PEG_FAILURE), ("json_object", PEG_FAILURE)]
    assert error.reason == "length"
    assert error.responses[-1].finish_reason == "length"
    assert error.responses[-1].usage is not None
    assert error.responses[-1].usage.completion_tokens == 400
    message = str(error)
    assert message.startswith("the reply was cut off by the token limit")
    assert f"modes tried before: json_schema: {PEG_FAILURE}; json_object: {PEG_FAILURE}" in (
        message
    )
