"""Streaming against a server surge did not write: llama.cpp's `llama-server`.

The tiny random-weight model of tests/_tiny_model.py has a byte vocabulary (one token a
byte), so the server streams deltas that end inside a UTF-8 character, shown as U+FFFD,
and a last chunk with `usage`, empty `choices` and llama.cpp's own `timings`. Every
assertion is about the protocol, never about what the model says.
"""

from __future__ import annotations

import re

import httpx
import pytest
from pydantic import BaseModel

import surge
from _llama import LlamaServer, LlamaServerFactory

pytestmark = [pytest.mark.anyio, pytest.mark.realserver]


def metric(server: LlamaServer, name: str) -> float:
    text = httpx.get(f"{server.root}/metrics", timeout=10).text
    match = re.search(rf"^llamacpp:{name} (\S+)$", text, re.M)
    assert match is not None, text[:500]
    return float(match.group(1))


async def test_text_deltas_usage_chunk_and_replacement_characters(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=1, ctx=1024)
    params = {"max_tokens": 40, "ignore_eos": True, "temperature": 0, "seed": 3}
    async with surge.LLMClient(base_url=server.url) as client:
        async with client.stream("Hello there", **params) as stream:
            chunks = [c async for c in stream]
            response = await stream.response()
        whole = await client.chat("Hello there", **params)
    deltas = [c.content for c in chunks if c.content]
    assert "".join(deltas) == response.text == stream.text
    # One byte a token: a character's first bytes arrive alone, as U+FFFD.
    assert any("\ufffd" in d for d in deltas)
    assert response.finish_reason == "length"
    last = chunks[-1]
    assert last.raw["choices"] == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 40
    assert response.usage == last.usage
    assert whole.usage is not None
    counts = (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens)
    assert (last.usage.prompt_tokens, 40, last.usage.total_tokens) == counts
    assert set(last.raw["timings"]) >= {"predicted_n", "prompt_n"}
    assert response.timings.ttft > 0
    assert response.timings.max_gap > 0


class Pair(BaseModel):
    ok: bool
    n: int


async def test_stream_structured_with_a_json_schema_grammar(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=1, ctx=2048)
    async with surge.LLMClient(base_url=server.url) as client:
        values = client.stream_structured(
            Pair, "Give me a pair.", mode="json_schema", max_tokens=120, temperature=0, seed=5
        )
        async with values:
            seen = [v async for v in values]
    assert isinstance(values.result, Pair)
    assert seen[-1] == values.result
    assert values.mode == "json_schema"
    assert len(values.responses) == 1
    raw = values.responses[0].text
    assert Pair.model_validate_json(raw) == values.result  # the grammar made it valid JSON


async def test_an_abandoned_stream_frees_its_slot_for_the_next_call(
    llama_server: LlamaServerFactory,
) -> None:
    server = llama_server(parallel=1, ctx=4096, args=["--metrics"])
    async with surge.LLMClient(base_url=server.url) as client:
        async with client.stream("Tell me everything.", max_tokens=3000, ignore_eos=True) as s:
            read = 0
            async for chunk in s:
                read += bool(chunk.content)
                if read == 5:
                    break
        assert client.pool_stats().in_use == 0
        # One slot: this call waits for it, so it ends only once the server has stopped
        # the abandoned generation.
        after = await client.chat("hi", max_tokens=4, ignore_eos=True)
    assert after.usage is not None
    assert after.usage.completion_tokens == 4
    generated = metric(server, "tokens_predicted_total")
    # Generating all 3,000 tokens would count 3,004; the server stopped soon after we left.
    assert generated < 1000
