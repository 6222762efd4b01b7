"""Structured outputs meeting what real servers do, scripted on the simulated server.

Each failure here was first seen against llama.cpp's `llama-server` (tests/test_realserver.py
runs them there); scripted, they run everywhere, on asyncio and trio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import surge
from surge.testing import ChatRequest, Reply, ReplyValue, SimulatedServer

pytestmark = pytest.mark.anyio


class Count(BaseModel):
    n: int
    role: Literal["admin", "user"]


COUNT = '{"n": 3, "role": "admin"}'
PEG = "The model produced output that does not match the expected peg-native format"
CONTEXT = (
    "request (1268 tokens) exceeds the available context size (1024 tokens), try increasing it"
)
REJECTED = "Input should be 'text' or 'json_object' (response_format)"


class Script:
    """Answers the n-th request with the n-th answer (the last repeats), recording each."""

    def __init__(self, *answers: ReplyValue | Callable[[ChatRequest], ReplyValue]) -> None:
        self.answers = answers
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> ReplyValue:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return answer(request) if callable(answer) else answer

    def formats(self) -> list[str | None]:
        out = []
        for request in self.requests:
            response_format = request.params.get("response_format")
            if isinstance(response_format, Mapping):
                out.append(str(response_format.get("type")))
            else:
                out.append("tools" if "tools" in request.params else None)
        return out


@asynccontextmanager
async def serve(script: Script, **client: Any) -> Any:
    async with (
        SimulatedServer(reply=script) as server,
        surge.LLMClient(base_url=server.url, **client) as llm,
    ):
        yield llm


def status(code: int, message: str) -> Reply:
    return Reply(status=code, content=message)


# -- grammar failures ------------------------------------------------------------------------


async def test_explicit_mode_grammar_failure_is_sent_once() -> None:
    script = Script(status(500, PEG))
    async with serve(script) as client:
        with pytest.raises(surge.ServerError) as caught:
            await client.structured(Count, "How many?", mode="json_schema")
    assert len(script.requests) == 1
    assert len(caught.value.call_attempts) == 1
    assert f"returned 500: {PEG}" in str(caught.value)


async def test_default_mode_moves_on_after_a_grammar_failure_and_learns_nothing() -> None:
    script = Script(status(500, PEG), status(500, PEG), COUNT, COUNT)
    async with serve(script) as client:
        result = await client.structured_response(Count, "How many?")
        assert script.formats() == ["json_schema", "json_object", None]
        assert (result.value, result.mode, result.strategy) == (
            Count(n=3, role="admin"),
            "prompt",
            "prompt",
        )
        # A grammar failure is about that schema: the next call tries json_schema again.
        again = await client.structured_response(Count, "And now?")
    assert script.formats()[3] == "json_schema"
    assert again.strategy == "json_schema"


async def test_a_transient_500_is_still_retried() -> None:
    script = Script(status(500, "CUDA out of memory"), COUNT)
    policy = surge.RetryPolicy(backoff=0.01, jitter=False)
    async with serve(script, retry=policy) as client:
        result = await client.structured_response(Count, "How many?", mode="json_schema")
    assert result.value == Count(n=3, role="admin")
    assert script.formats() == ["json_schema", "json_schema"]


# -- context overflow ------------------------------------------------------------------------


async def test_default_mode_drops_the_schema_hint_that_overflowed() -> None:
    script = Script(status(400, CONTEXT), COUNT)
    async with serve(script) as client:
        result = await client.structured_response(Count, "How many?")
    assert result.value == Count(n=3, role="admin")
    assert script.formats() == ["json_schema", "json_schema"]
    first, second = (r.body["messages"][-1]["content"] for r in script.requests)
    assert first.startswith("How many?\n\n")  # with the schema written into the prompt
    assert second == "How many?"  # without it: the server enforces the schema itself


async def test_a_question_that_does_not_fit_is_the_servers_bad_request() -> None:
    script = Script(status(400, CONTEXT))
    async with serve(script) as client:
        with pytest.raises(surge.BadRequestError) as caught:
            await client.structured(Count, "How many?", mode="json_schema")
    assert CONTEXT in str(caught.value)
    assert len(script.requests) == 1


async def test_reasks_that_outgrow_the_context_end_the_call() -> None:
    script = Script("not json", status(400, CONTEXT))
    async with serve(script) as client:
        with pytest.raises(surge.StructuredOutputError) as caught:
            await client.structured(Count, "How many?", mode="prompt")
    error = caught.value
    assert error.reason == "invalid"
    assert str(error).startswith(
        f"no valid Count after 1 attempt (prompt mode); last error: re-asking exceeded the "
        f"server's context (400: {CONTEXT})"
    )
    assert len(script.requests) == 2


# -- tools ignored ----------------------------------------------------------------------------


async def test_tools_mode_text_reply_means_tools_are_ignored() -> None:
    script = Script(Reply(content="Sure! Three admins.", finish_reason="stop"))
    async with serve(script) as client:
        with pytest.raises(surge.StructuredOutputError) as caught:
            await client.structured(Count, "How many?", mode="tools")
    error = caught.value
    assert error.reason == "unsupported"
    assert len(script.requests) == 1  # not re-asked
    assert str(error).startswith(
        "tools mode: the server answered with text (finish_reason 'stop'), not a call to the "
        "tool 'Count': it ignores `tools`"
    )
    assert error.attempts[0].text == "Sure! Three admins."


async def test_tools_mode_text_that_is_a_valid_value_is_accepted() -> None:
    script = Script(COUNT)
    async with serve(script) as client:
        result = await client.structured_response(Count, "How many?", mode="tools")
    assert result.value == Count(n=3, role="admin")
    assert result.mode == "tools"


# -- the default mode's end ------------------------------------------------------------------


async def test_default_mode_lists_every_mode_that_failed() -> None:
    script = Script(status(500, REJECTED), status(500, PEG), status(400, "no such model"))
    async with serve(script) as client:
        with pytest.raises(surge.StructuredOutputError) as caught:
            await client.structured(Count, "How many?")
    error = caught.value
    assert script.formats() == ["json_schema", "json_object", None]
    assert error.reason == "rejected"
    assert error.tried == [("json_schema", f"500: {REJECTED}"), ("json_object", f"500: {PEG}")]
    assert str(error).splitlines()[:2] == [
        "no valid Count: every mode failed, the last one (prompt) with 400: no such model",
        f"modes tried before: json_schema: 500: {REJECTED}; json_object: 500: {PEG}",
    ]
    assert isinstance(error.__cause__, surge.BadRequestError)


async def test_default_mode_cut_off_after_fallbacks_names_them() -> None:
    script = Script(status(500, PEG), status(500, PEG), Reply(content="{", finish_reason="length"))
    async with serve(script) as client:
        with pytest.raises(surge.StructuredOutputError) as caught:
            await client.structured(Count, "How many?")
    error = caught.value
    assert error.reason == "length"
    assert error.tried == [("json_schema", f"500: {PEG}"), ("json_object", f"500: {PEG}")]
    assert str(error).splitlines()[1] == (
        f"modes tried before: json_schema: 500: {PEG}; json_object: 500: {PEG}"
    )
