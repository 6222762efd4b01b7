"""Structured outputs against the simulated server over loopback, on asyncio and trio."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import pytest
from pydantic import BaseModel, Field

import surge
from surge._structured.run import StructuredOutputError
from surge.testing import ChatRequest, Reply, ReplyValue, SimulatedServer, ToolCall

pytestmark = pytest.mark.anyio


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="Full name")
    age: int
    email: str | None = None


class Settings(BaseModel):
    theme: str
    font_size: int = 12


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Opaque:
    """A class pydantic cannot describe."""


class Bag(BaseModel):
    counts: dict[str, int]


PERSON = '{"name": "Ada Lovelace", "age": 36}'
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
LLAMA_CPP_PYTHON_500 = (
    "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
    "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}]"
)


class Recorder:
    """A reply function that records every request and answers from a script."""

    def __init__(self, answer: Callable[[ChatRequest], ReplyValue]) -> None:
        self.answer = answer
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> ReplyValue:
        self.requests.append(request)
        return self.answer(request)

    def formats(self) -> list[str | None]:
        return [_format_type(r) for r in self.requests]


def _format_type(request: ChatRequest) -> str | None:
    response_format = request.params.get("response_format")
    return response_format.get("type") if isinstance(response_format, Mapping) else None


def _scripted(*answers: ReplyValue) -> Callable[[ChatRequest], ReplyValue]:
    """Answer the n-th request of a call with the n-th answer (the last one repeats)."""
    counter: Iterator[int] = iter(range(10**6))

    def answer(_request: ChatRequest) -> ReplyValue:
        i = next(counter)
        return answers[min(i, len(answers) - 1)]

    return answer


@asynccontextmanager
async def serve(answer: Callable[[ChatRequest], ReplyValue]) -> Any:
    recorder = Recorder(answer)
    async with (
        SimulatedServer(reply=recorder) as server,
        surge.LLMClient(base_url=server.url, model="m") as client,
    ):
        yield client, recorder


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else json.dumps(content)


# -- json_schema ----------------------------------------------------------------------------


async def test_json_schema_clean_reply_is_strict_and_typed() -> None:
    async with serve(lambda _r: Reply(content=PERSON, usage=USAGE)) as (client, rec):
        result = await client.structured_response(Person, "Ada Lovelace, 36.")
    assert result.value == Person(name="Ada Lovelace", age=36)
    assert (result.mode, result.strategy, result.attempts, result.strict) == (
        "json_schema",
        "json_schema",
        1,
        True,
    )
    assert result.usage.total_tokens == 15
    spec = rec.requests[0].params["response_format"]["json_schema"]
    assert spec["strict"] is True
    assert spec["name"] == "Person"
    assert spec["schema"]["additionalProperties"] is False
    assert spec["schema"]["required"] == ["name", "age", "email"]


@pytest.mark.parametrize(
    "reply",
    [
        f"```json\n{PERSON}\n```",
        f"Sure! Here is the person you asked for:\n{PERSON}\nLet me know if you need more.",
        '{"name": "Ada Lovelace", "age": 36,}',
    ],
    ids=["fenced", "prose", "trailing-comma"],
)
async def test_sloppy_replies_parse_in_every_mode(reply: str) -> None:
    async with serve(lambda _r: reply) as (client, rec):
        for mode in ("json_schema", "prompt"):
            value = await client.structured(Person, "Who?", mode=mode)  # type: ignore[arg-type]
            assert value == Person(name="Ada Lovelace", age=36)
    assert len(rec.requests) == 2


async def test_optional_field_null_from_strict_mode_gets_the_default() -> None:
    reply = '{"theme": "dark", "font_size": null}'
    async with serve(lambda _r: reply) as (client, rec):
        value = await client.structured(Settings, "Settings?", mode="json_schema")
    assert value == Settings(theme="dark", font_size=12)
    schema = rec.requests[0].params["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["font_size"]["type"] == ["integer", "null"]


async def test_open_dict_is_sent_non_strict() -> None:
    async with serve(lambda _r: '{"counts": {"a": 1}}') as (client, rec):
        result = await client.structured_response(Bag, "Count.", mode="json_schema")
    assert result.value == Bag(counts={"a": 1})
    assert result.strict is False
    assert rec.requests[0].params["response_format"]["json_schema"]["strict"] is False


# -- re-ask ---------------------------------------------------------------------------------


async def test_wrong_then_right_shows_the_error_to_the_model() -> None:
    bad = '{"name": "Ada Lovelace", "age": "thirty-six"}'
    more = {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37}
    answer = _scripted(Reply(content=bad, usage=USAGE), Reply(content=PERSON, usage=more))
    async with serve(answer) as (client, rec):
        result = await client.structured_response(Person, "Ada, 36.", mode="json_schema")
    assert result.value.age == 36
    assert result.attempts == 2
    assert len(result.responses) == 2
    assert result.usage.model_dump() == {
        "prompt_tokens": 40,
        "completion_tokens": 12,
        "total_tokens": 52,
    }
    second = rec.requests[1].messages
    assert second[0] == rec.requests[0].messages[0]
    assert second[-2] == {"role": "assistant", "content": bad}
    assert second[-1]["role"] == "user"
    assert "age" in second[-1]["content"]
    assert "'thirty-six' is not a number" in second[-1]["content"]
    assert "name: string" in second[-1]["content"]  # the schema, should the server ignore it


async def test_never_right_raises_with_every_attempt_and_summed_usage() -> None:
    replies = [f"I cannot say ({i})." for i in range(3)]
    answer = _scripted(*(Reply(content=r, usage=USAGE) for r in replies))
    async with serve(answer) as (client, rec):
        with pytest.raises(surge.OutputParseError) as caught:
            await client.structured(Person, "Who?", mode="prompt", max_retries=2)
    error = caught.value
    assert isinstance(error, StructuredOutputError)
    assert error.reason == "invalid"
    assert [a.text for a in error.attempts] == replies
    assert all(a.error for a in error.attempts)
    assert error.usage.total_tokens == 45
    assert len(error.responses) == 3
    assert len(rec.requests) == 3
    assert "after 3 attempts" in str(error)
    assert error.raw == replies[-1]


async def test_max_retries_zero_asks_once() -> None:
    async with serve(lambda _r: "no JSON here") as (client, rec):
        with pytest.raises(StructuredOutputError):
            await client.structured(Person, "Who?", max_retries=0)
    assert len(rec.requests) == 1


async def test_refusal_is_not_reasked() -> None:
    body = {"choices": [{"message": {"content": None, "refusal": "I can't help with that."}}]}
    async with serve(lambda _r: body) as (client, rec):
        with pytest.raises(StructuredOutputError) as caught:
            await client.structured(Person, "Who?")
    assert caught.value.reason == "refusal"
    assert caught.value.refusal == "I can't help with that."
    assert "refused" in str(caught.value)
    assert len(rec.requests) == 1


async def test_cut_off_reply_is_a_length_error() -> None:
    reply = Reply(content='{"name": "Ada Lov', finish_reason="length")
    async with serve(lambda _r: reply) as (client, rec):
        with pytest.raises(StructuredOutputError) as caught:
            await client.structured(Person, "Who?", max_tokens=5)
    assert caught.value.reason == "length"
    assert "max_tokens" in str(caught.value)
    assert len(rec.requests) == 1


# -- fallback -------------------------------------------------------------------------------


def _llama_cpp_python(request: ChatRequest) -> ReplyValue:
    if _format_type(request) == "json_schema":
        return Reply(status=500, content=LLAMA_CPP_PYTHON_500)
    return PERSON


async def test_rejected_json_schema_falls_back_once_and_is_remembered() -> None:
    async with serve(_llama_cpp_python) as (client, rec):
        first = await client.structured_response(Person, "Ada, 36.")
        assert first.strategy == "json_object"
        assert first.mode == "prompt"
        clone = client.with_options(timeout=30)
        values: list[Person] = []

        async def one() -> None:
            values.append(await clone.structured(Person, "Ada, 36."))

        async with anyio.create_task_group() as tg:
            for _ in range(19):
                tg.start_soon(one)
    assert values == [Person(name="Ada Lovelace", age=36)] * 19
    formats = rec.formats()
    assert formats.count("json_schema") == 1
    assert formats.count("json_object") == 20
    fallback = rec.requests[1]
    assert fallback.params["response_format"]["schema"]["properties"]["name"]["type"] == "string"
    assert "name: string" in fallback.last_user_message  # the schema is in the prompt too


async def test_memory_is_per_model() -> None:
    async with serve(_llama_cpp_python) as (client, rec):
        await client.structured(Person, "Ada, 36.")
        await client.with_options(model="other").structured(Person, "Ada, 36.")
        await client.structured(Person, "Ada, 36.", model="other")
    assert rec.formats() == [
        "json_schema",
        "json_object",
        "json_schema",
        "json_object",
        "json_object",
    ]


async def test_concurrent_first_calls_discover_once() -> None:
    async with serve(_llama_cpp_python) as (client, rec):
        values: list[Person] = []

        async def one() -> None:
            values.append(await client.structured(Person, "Ada, 36."))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert len(values) == 20
    assert rec.formats().count("json_schema") == 1
    assert len(rec.requests) == 21


async def test_server_rejecting_every_response_format_ends_in_prompt_mode() -> None:
    def answer(request: ChatRequest) -> ReplyValue:
        if "response_format" in request.params:
            return Reply(status=400, content="Unsupported parameter: response_format")
        return f"Here you go: {PERSON}"

    async with serve(answer) as (client, rec):
        first = await client.structured_response(Person, "Ada, 36.")
        second = await client.structured_response(Person, "Ada, 36.")
    assert (first.mode, second.mode) == ("prompt", "prompt")
    assert (first.strict, second.strict) == (False, False)  # no server-side schema at all
    assert rec.formats() == ["json_schema", "json_object", None, None]
    assert "name: string" in rec.requests[2].last_user_message


async def test_invalid_schema_rejection_retries_non_strict() -> None:
    def answer(request: ChatRequest) -> ReplyValue:
        spec = request.params["response_format"]["json_schema"]
        if spec["strict"]:
            return Reply(
                status=400,
                content="Invalid schema for response_format 'Person': 'format' is not permitted.",
            )
        return PERSON

    async with serve(answer) as (client, rec):
        result = await client.structured_response(Person, "Ada, 36.")
    assert result.strict is False
    assert result.strategy == "json_schema"
    assert len(rec.requests) == 2


async def test_explicit_mode_is_honoured_without_fallback() -> None:
    async with serve(_llama_cpp_python) as (client, rec):
        with pytest.raises(surge.ServerError) as caught:
            await client.structured(Person, "Ada, 36.", mode="json_schema", retry=False)
    assert "json_object" in str(caught.value)
    assert rec.formats() == ["json_schema"]


async def test_unrelated_server_error_is_not_a_fallback() -> None:
    async with serve(lambda _r: Reply(status=500, content="CUDA out of memory")) as (client, rec):
        for _ in range(2):
            with pytest.raises(surge.ServerError, match="CUDA"):
                await client.structured(Person, "Ada, 36.", retry=False)
    # Nothing was learned: the second call starts with json_schema again.
    assert rec.formats() == ["json_schema", "json_schema"]


async def test_transient_error_while_probing_is_sent_again() -> None:
    answer = _scripted(Reply(status=503, content="loading model"), PERSON, PERSON)
    async with serve(answer) as (client, rec):
        first = await client.structured_response(Person, "Ada, 36.")
        second = await client.structured_response(Person, "Ada, 36.")
    assert (first.strategy, second.strategy) == ("json_schema", "json_schema")
    assert first.attempts == 1
    assert rec.formats() == ["json_schema"] * 3


async def test_server_that_ignores_response_format_still_works() -> None:
    prose = f"Of course! The person is:\n\n```\n{PERSON}\n```\n\nAnything else?"
    async with serve(lambda _r: prose) as (client, rec):
        result = await client.structured_response(Person, "Ada Lovelace, 36.")
    assert result.value == Person(name="Ada Lovelace", age=36)
    assert result.mode == "json_schema"
    prompt = rec.requests[0].last_user_message
    assert prompt.startswith("Ada Lovelace, 36.")
    assert "name: string, // Full name" in prompt


# -- tools ----------------------------------------------------------------------------------


async def test_tools_mode_reads_the_forced_call() -> None:
    call = ToolCall(name="Person", arguments='{"name": "Ada Lovelace", "age": 36,}')
    async with serve(lambda _r: Reply(tool_calls=[call])) as (client, rec):
        result = await client.structured_response(Person, "Ada, 36.", mode="tools")
    assert result.value == Person(name="Ada Lovelace", age=36)
    assert result.mode == "tools"
    params = rec.requests[0].params
    assert params["tool_choice"] == {"type": "function", "function": {"name": "Person"}}
    (tool,) = params["tools"]
    assert tool["function"]["strict"] is True
    assert tool["function"]["parameters"]["additionalProperties"] is False
    assert tool["function"]["description"] == "A person mentioned in the text."


async def test_tools_mode_wraps_a_list_target() -> None:
    arguments = {"value": [{"name": "Ada", "age": 36}, {"name": "Alan", "age": 41}]}
    answer = _scripted(Reply(tool_calls=[ToolCall(name="output", arguments=arguments)]))
    async with serve(answer) as (client, rec):
        value = await client.structured(list[Person], "Ada 36, Alan 41.", mode="tools")
    assert [p.name for p in value] == ["Ada", "Alan"]
    parameters = rec.requests[0].params["tools"][0]["function"]["parameters"]
    assert parameters["type"] == "object"
    assert parameters["properties"]["value"]["type"] == "array"


async def test_tools_mode_reask_answers_the_call_with_the_error() -> None:
    bad = ToolCall(name="Person", arguments='{"name": "Ada"}', id="call_bad")
    good = ToolCall(name="Person", arguments=PERSON)
    answer = _scripted(Reply(tool_calls=[bad]), Reply(tool_calls=[good]))
    async with serve(answer) as (client, rec):
        result = await client.structured_response(Person, "Ada, 36.", mode="tools")
    assert result.attempts == 2
    assistant, tool = rec.requests[1].messages[-2:]
    assert assistant["tool_calls"][0]["id"] == "call_bad"
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == "call_bad"
    assert "age" in tool["content"]


# -- targets --------------------------------------------------------------------------------


async def test_union_target_is_wrapped_and_unwrapped() -> None:
    answer = _scripted('{"value": {"kind": "dog", "good": true}}', '{"kind": "cat", "lives": 9}')
    async with serve(answer) as (client, rec):
        dog = await client.structured(Cat | Dog, "A good dog.", mode="json_schema")  # type: ignore[arg-type]
        cat = await client.structured(Cat | Dog, "A cat.", mode="json_schema")  # type: ignore[arg-type]
    assert dog == Dog(kind="dog", good=True)
    assert cat == Cat(kind="cat", lives=9)  # a bare value, without the wrapper, is read too
    schema = rec.requests[0].params["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["value"]
    assert len(schema["properties"]["value"]["anyOf"]) == 2


async def test_list_target_in_prompt_mode_is_not_wrapped() -> None:
    reply = '[{"name": "Ada", "age": 36}, {"name": "Alan", "age": 41},]'
    async with serve(lambda _r: reply) as (client, rec):
        value = await client.structured(list[Person], "Ada 36, Alan 41.", mode="prompt")
    assert [p.age for p in value] == [36, 41]
    assert "[]" in rec.requests[0].last_user_message


async def test_json_schema_dict_target_gives_plain_json() -> None:
    schema = {
        "title": "Point",
        "type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
        "required": ["x", "y"],
    }
    async with serve(lambda _r: 'The point is {"x": 1, "y": 2}.') as (client, rec):
        value = await client.structured(schema, "Where?")
    assert value == {"x": 1, "y": 2}
    spec = rec.requests[0].params["response_format"]["json_schema"]
    assert spec["name"] == "Point"
    assert spec["strict"] is True


# -- arguments ------------------------------------------------------------------------------


async def test_bad_arguments_are_config_errors() -> None:
    async with serve(lambda _r: PERSON) as (client, rec):
        with pytest.raises(surge.ConfigError, match="response_format"):
            await client.structured(Person, "x", response_format={"type": "json_object"})
        with pytest.raises(surge.ConfigError, match="mode"):
            await client.structured(Person, "x", mode="xml")  # type: ignore[arg-type]
        with pytest.raises(surge.ConfigError, match="max_retries"):
            await client.structured(Person, "x", max_retries=-1)
        with pytest.raises(surge.ConfigError, match="output type"):
            await client.structured(Opaque, "x")
    assert rec.requests == []


async def test_tools_mode_reads_text_when_the_server_ignores_tools() -> None:
    async with serve(lambda _r: f"I'll just say it: {PERSON}") as (client, _rec):
        value = await client.structured(Person, "Ada, 36.", mode="tools")
    assert value == Person(name="Ada Lovelace", age=36)


async def test_json_schema_dict_list_target_is_wrapped_in_tools_mode() -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    call = ToolCall(name="output", arguments={"value": ["a", "b"]})
    async with serve(lambda _r: Reply(tool_calls=[call])) as (client, rec):
        value = await client.structured(schema, "Two letters.", mode="tools")
    assert value == ["a", "b"]
    parameters = rec.requests[0].params["tools"][0]["function"]["parameters"]
    assert parameters["properties"]["value"] == schema
