"""`client.stream` end to end over loopback: the simulated server and a scripted SSE server.

Every test runs on asyncio and trio; the ones that touch the pool's protocols also on
HTTP/1.1 and HTTP/2 (cleartext prior knowledge).
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator

import anyio
import pytest
from tests._servers import serving
from tests._sse_server import ScriptedSSE

import surge
from surge import LLMClient
from surge.testing import ChatRequest, Failure, Reply, SimulatedServer, ToolCall

pytestmark = pytest.mark.anyio

WORDS = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(params=[False, True], ids=["http1", "http2"])
def http2(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedSSE]:
    async with serving(ScriptedSSE()) as server:
        yield server


def chunk(content: str | None = None, finish: str | None = None, **delta: object) -> bytes:
    if content is not None:
        delta["content"] = content
    event = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


async def collect(stream: surge.ChatStream, into: list[str]) -> None:
    """Read the stream's text pieces into `into` (kept when the stream fails midway)."""
    async for text in stream.text_deltas():
        into.append(text)


async def test_stream_gives_the_same_answer_as_chat(http2: bool) -> None:
    async with (
        SimulatedServer(reply=WORDS, stream_tokens_per_second=float("inf")) as server,
        LLMClient(base_url=server.url, http2=http2) as client,
    ):
        whole = await client.chat("hi")
        async with client.stream("hi") as stream:
            pieces = [text async for text in stream.text_deltas()]
            assert stream.text == WORDS
            response = await stream.response()
        assert client.pool_stats().in_use == 0
        url = server.url
    assert "".join(pieces) == WORDS
    assert pieces == [w + " " for w in WORDS.split()[:-1]] + ["dog"]
    assert response.text == whole.text == WORDS
    assert response.finish_reason == whole.finish_reason == "stop"
    assert response.usage == whole.usage
    assert response.request_id is not None
    assert response.request_id == stream.request_id
    assert len(response.attempts) == 1
    assert response.endpoint == url
    assert response.timings.http_version == ("HTTP/2" if http2 else "HTTP/1.1")


async def test_a_finished_stream_gives_its_connection_back_for_reuse(http2: bool) -> None:
    async with (
        SimulatedServer(reply=WORDS) as server,
        LLMClient(base_url=server.url, http2=http2) as client,
    ):
        for _ in range(3):
            async with client.stream("hi") as stream:
                assert (await stream.response()).text == WORDS
        stats = client.pool_stats()
        assert (stats.connections_opened, stats.in_use, stats.idle) == (1, 0, 1)
        assert server.stats.cancelled == 0
        assert server.stats.served == 3


async def test_chunks_are_typed_and_usage_comes_last() -> None:
    seen: list[ChatRequest] = []

    def reply(request: ChatRequest) -> str:
        seen.append(request)
        return "a b"

    async with SimulatedServer(reply=reply) as server, LLMClient(base_url=server.url) as client:
        async with client.stream("hi") as stream:
            chunks = [c async for c in stream]
        async with client.stream("hi", include_usage=False) as stream:
            without = [c async for c in stream]
    assert [(c.role, c.content, c.finish_reason) for c in chunks] == [
        ("assistant", "", None),
        (None, "a ", None),
        (None, "b", None),
        (None, None, "stop"),
        (None, None, None),
    ]
    assert chunks[-1].usage == surge.Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)
    assert all(c.usage is None for c in chunks[:-1])
    assert seen[0].params["stream"] is True
    assert seen[0].params["stream_options"] == {"include_usage": True}
    assert "stream_options" not in seen[1].params
    assert [c.usage for c in without] == [None] * 4


async def test_tool_call_deltas_assemble_like_a_whole_response(http2: bool) -> None:
    calls = [
        ToolCall(name="lookup", arguments={"city": "Paris", "days": 3}, id="call_1"),
        ToolCall(name="book", arguments='{"seat": "12A"}', id="call_2"),
    ]
    async with (
        SimulatedServer(reply=lambda _: Reply(tool_calls=calls)) as server,
        LLMClient(base_url=server.url, http2=http2) as client,
    ):
        whole = await client.chat("hi")
        async with client.stream("hi") as stream:
            chunks = [c async for c in stream]
            response = await stream.response()
    fragments = [d.arguments for c in chunks for d in c.tool_calls if d.index == 0]
    assert "".join(fragments) == '{"city": "Paris", "days": 3}'
    assert len([f for f in fragments if f]) > 1  # it really came in pieces
    assert [c.model_dump() for c in response.tool_calls] == [
        c.model_dump() for c in whole.tool_calls
    ]
    assert response.finish_reason == whole.finish_reason == "tool_calls"
    assert response.message.content is None


async def test_timings_show_time_to_first_token_and_the_longest_gap() -> None:
    async with (
        SimulatedServer(
            reply="one two three four", latency=0.1, stream_tokens_per_second=10
        ) as server,
        LLMClient(base_url=server.url) as client,
        client.stream("hi") as stream,
    ):
        response = await stream.response()
    timings = response.timings
    assert timings.ttfb >= 0.1  # the server's latency, before its first byte
    # The first content token is due one interval (0.1 s) after the role chunk.
    assert timings.ttft >= timings.ttfb + 0.05
    assert 0.05 <= timings.max_gap < timings.total
    assert timings.total >= timings.ttft + 0.2  # three more intervals to the end
    assert "ttft=" in str(timings)
    assert "max_gap=" in str(timings)


async def test_time_to_first_token_counts_from_sending_not_from_waiting_for_a_place() -> None:
    async with (
        SimulatedServer(reply="one two", stream_tokens_per_second=100) as server,
        LLMClient(base_url=server.url, max_concurrency=1) as client,
    ):
        got: list[surge.Timings] = []

        async def second() -> None:
            async with client.stream("second") as stream:
                got.append((await stream.response()).timings)

        async with anyio.create_task_group() as group, client.stream("first") as first:
            group.start_soon(second)
            await anyio.sleep(0.5)  # the second waits this long for its place
            await first.response()
    (timings,) = got
    assert timings.throttled >= 0.45  # the wait for max_concurrency is the caller's ...
    assert timings.ttft < 0.25  # ... and not in ttft: the server's first token came fast


async def test_idle_timeout_between_chunks_names_the_wait(scripted: ScriptedSSE) -> None:
    url = scripted.script("/stall", [chunk("", role="assistant"), chunk("hi")], ending="stall")
    async with LLMClient(base_url=url, timeout=0.3, retry=False) as client:
        async with client.stream("x") as stream:
            texts: list[str] = []
            with pytest.raises(surge.ReadTimeout, match="waiting for the next chunk") as info:
                await collect(stream, texts)
        assert client.pool_stats().in_use == 0
    assert texts == ["hi"]
    assert "0.3 s" in str(info.value)


async def test_a_silent_server_before_the_first_chunk_is_retried(scripted: ScriptedSSE) -> None:
    url = scripted.script("/silent", [], ending="stall")
    policy = surge.RetryPolicy(max_attempts=2, backoff=0.01, jitter=False)
    async with LLMClient(base_url=url, timeout=0.2, retry=policy) as client:
        with pytest.raises(surge.ReadTimeout, match="waiting for the next chunk") as info:
            async with client.stream("x"):
                pass
    assert len(info.value.call_attempts) == 2
    assert scripted.served["/silent"] == 2


async def test_deadline_covers_the_whole_stream() -> None:
    async with (
        SimulatedServer(reply=" ".join(["w"] * 100), stream_tokens_per_second=20) as server,
        LLMClient(base_url=server.url) as client,
    ):
        got: list[str] = []
        with anyio.fail_after(5):
            async with client.stream("hi", deadline=0.4) as stream:
                with pytest.raises(surge.DeadlineExceeded, match="reading the stream") as info:
                    await collect(stream, got)
        assert client.pool_stats().in_use == 0
    assert info.value.deadline == 0.4
    assert 2 <= len(got) < 100


async def test_failures_before_the_first_chunk_are_retried(http2: bool) -> None:
    async with (
        SimulatedServer(reply="fine", failures=Failure.status(503, first=1)) as server,
        LLMClient(
            base_url=server.url,
            http2=http2,
            retry=surge.RetryPolicy(backoff=0.01, jitter=False),
        ) as client,
    ):
        async with client.stream("hi") as stream:
            response = await stream.response()
        assert server.stats.requests == 2
    assert response.text == "fine"
    assert [a.status_code for a in response.attempts] == [503, 200]


async def test_failures_after_the_first_chunk_are_not_retried() -> None:
    async with (
        SimulatedServer(reply=WORDS, failures=Failure.drop_mid_body(first=1)) as server,
        LLMClient(base_url=server.url) as client,
    ):
        got: list[str] = []
        async with client.stream("hi") as stream:
            with pytest.raises(surge.RemoteProtocolError):
                await collect(stream, got)
        assert server.stats.requests == 1
        assert client.pool_stats().in_use == 0
    assert got == [w + " " for w in WORDS.split()[: len(got)]]
    assert got


async def test_max_concurrency_is_held_for_the_whole_stream() -> None:
    async with (
        SimulatedServer(reply="a b c") as server,
        LLMClient(base_url=server.url, max_concurrency=1) as client,
    ):
        order: list[str] = []

        async def second() -> None:
            async with client.stream("two") as stream:
                order.append("second opened")
                await stream.response()

        async with anyio.create_task_group() as group, client.stream("one") as stream:
            group.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            assert server.stats.requests == 1  # the second waits for our place
            await stream.response()
            order.append("first done")
        assert order == ["first done", "second opened"]
        assert server.stats.requests == 2


async def test_chat_with_stream_true_points_to_client_stream() -> None:
    client = LLMClient(base_url="http://127.0.0.1:9")
    with pytest.raises(surge.ConfigError, match=r"client\.stream\("):
        await client.chat("hi", stream=True)


async def test_an_error_event_raises_a_typed_error(scripted: ScriptedSSE) -> None:
    error = b'data: {"error": {"message": "the model fell over", "code": 500}}\n\n'
    url = scripted.script("/err", [chunk("", role="assistant"), chunk("par"), error])
    async with LLMClient(base_url=url) as client:
        async with client.stream("x") as stream:
            with pytest.raises(surge.ServerError, match="the model fell over"):
                await stream.response()
            assert stream.text == "par"
        assert client.pool_stats().in_use == 0
    assert scripted.served["/err"] == 1  # after the first chunk: never retried


async def test_an_error_event_with_plain_text_data_raises_a_typed_error(
    scripted: ScriptedSSE,
) -> None:
    error = b"event: error\ndata: the model is overloaded\n\n"
    url = scripted.script("/plain-err", [chunk("", role="assistant"), chunk("par"), error])
    async with LLMClient(base_url=url) as client, client.stream("x") as stream:
        with pytest.raises(surge.ServerError, match="the model is overloaded") as info:
            await stream.response()
    assert info.value.status_code == 500
    assert info.value.body == {"error": {"message": "the model is overloaded"}}


async def test_a_server_silent_after_done_is_not_waited_for(scripted: ScriptedSSE) -> None:
    url = scripted.script("/quiet", [chunk("", role="assistant"), chunk("hi"), DONE], "stall")
    async with LLMClient(base_url=url, timeout=30) as client:
        with anyio.fail_after(5):  # not the 30 s read timeout: DRAIN_SECONDS, then close
            async with client.stream("x") as stream:
                assert [c.content async for c in stream] == ["", "hi"]
                response = await stream.response()
        assert response.text == "hi"
        stats = client.pool_stats()
        assert (stats.in_use, stats.idle) == (0, 0)  # its body never ended: closed


async def test_max_gap_is_the_longest_wait_between_chunks(scripted: ScriptedSSE) -> None:
    pieces = [chunk("", role="assistant"), chunk("a"), 0.4, chunk("b"), chunk("c"), DONE]
    url = scripted.script("/gap", pieces)
    async with LLMClient(base_url=url) as client, client.stream("x") as stream:
        response = await stream.response()
    assert response.text == "abc"
    assert response.timings.max_gap >= 0.35  # the pause, not the last (short) gap


async def test_a_stream_without_done_is_an_error_unless_allowed(scripted: ScriptedSSE) -> None:
    url = scripted.script("/nodone", [chunk("", role="assistant"), chunk("hello")])
    async with LLMClient(base_url=url, retry=False) as client:
        async with client.stream("x") as stream:
            with pytest.raises(surge.RemoteProtocolError, match=r"without sending \[DONE\]"):
                await stream.response()
        async with client.stream("x", allow_truncated=True) as stream:
            response = await stream.response()
    assert response.text == "hello"


async def test_a_stream_cut_mid_event_says_so(scripted: ScriptedSSE) -> None:
    url = scripted.script(
        "/cut", [chunk("", role="assistant"), chunk("a"), b'data: {"id": "chatcmpl'], "close"
    )
    async with LLMClient(base_url=url, retry=False) as client, client.stream("x") as stream:
        with pytest.raises(surge.RemoteProtocolError):
            await stream.response()
        assert stream.text == "a"


async def test_utf8_split_across_reads_inside_a_character(scripted: ScriptedSSE) -> None:
    text = "na\u00efve \u2603 \U0001f600"
    body = chunk(text)
    cut = body.index("\U0001f600".encode()) + 2  # inside the 4-byte character
    url = scripted.script("/utf8", [chunk("", role="assistant"), body[:cut], body[cut:], DONE])
    async with LLMClient(base_url=url) as client, client.stream("x") as stream:
        response = await stream.response()
    assert response.text == text


async def test_a_rejected_stream_options_is_asked_again_without(scripted: ScriptedSSE) -> None:
    seen: list[ChatRequest] = []

    def reply(request: ChatRequest) -> Reply | str:
        seen.append(request)
        if "stream_options" in request.params:
            return Reply(content="Unrecognized request argument: stream_options", status=400)
        return "ok"

    async with (
        SimulatedServer(reply=reply) as server,
        LLMClient(base_url=server.url) as client,
        client.stream("hi") as stream,
    ):
        response = await stream.response()
    assert response.text == "ok"
    assert response.usage is None
    assert ["stream_options" in r.params for r in seen] == [True, False]


# The SDK stops reading its own chain of event generators at [DONE] without closing them;
# on trio the collector warns about them (openai's, not surge's): collected in the test.
@pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai\._streaming\.\w+\.\w+|httpx\._models\.Response"
    r"\.aiter_bytes)' was garbage collected before it had been exhausted:ResourceWarning"
)
async def test_openai_sdk_streams_over_surge_http_client(http2: bool) -> None:
    import openai  # a dev dependency (the drop-in tests need it too)

    async with SimulatedServer(reply=WORDS, stream_tokens_per_second=float("inf")) as server:
        http = surge.http_client(http2=http2)
        client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-x", http_client=http)
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = []
        usage = None
        async for event in stream:
            if event.choices and event.choices[0].delta.content:
                pieces.append(event.choices[0].delta.content)
            if event.usage is not None:
                usage = event.usage
        transport = http._transport
        assert isinstance(transport, surge._transport.pool.PoolTransport)
        assert transport.stats().in_use == 0
        await http.aclose()
        del stream, event
        gc.collect()
    assert "".join(pieces) == WORDS
    assert usage is not None
    assert usage.completion_tokens == len(WORDS.split())


async def test_a_server_that_ignores_stream_true_still_works(scripted: ScriptedSSE) -> None:
    url = scripted.script("/whole", [json.dumps(_WHOLE).encode()], ending="json")
    async with LLMClient(base_url=url) as client, client.stream("hi") as stream:
        chunks = [c async for c in stream]
        response = await stream.response()
    assert [c.content for c in chunks] == ["whole"]
    assert response.text == "whole"
    assert response.usage == surge.Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)


async def test_a_whole_reply_of_two_choices_gives_one_chunk_each_and_usage_once(
    scripted: ScriptedSSE,
) -> None:
    two = dict(_WHOLE, choices=[
        {"index": 0, "message": {"role": "assistant", "content": "one"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "two"}, "finish_reason": "length"},
    ])  # fmt: skip
    url = scripted.script("/two", [json.dumps(two).encode()], ending="json")
    async with LLMClient(base_url=url) as client, client.stream("hi", n=2) as stream:
        chunks = [c async for c in stream]
    usage = surge.Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)
    assert [(c.index, c.content, c.role, c.finish_reason, c.usage) for c in chunks] == [
        (0, "one", "assistant", "stop", usage),
        (1, "two", "assistant", "length", None),
    ]


_WHOLE = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
