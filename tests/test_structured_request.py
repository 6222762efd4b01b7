"""The pieces of a structured request, as pure functions: instructions, re-asks, checks."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

import surge
from surge._decode import decode_chat
from surge._structured.plan import plan_for
from surge._structured.request import (
    check_arguments,
    reask_messages,
    shows_schema_to_model,
    with_instructions,
)


class Person(BaseModel):
    name: str


def test_instructions_go_at_the_end_of_the_last_user_message() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    out = with_instructions(messages, "Answer in JSON.")
    assert out[2] == {"role": "user", "content": "second\n\nAnswer in JSON."}
    assert out[:2] == messages[:2]
    assert messages[2]["content"] == "second"  # the caller's list is left as it was


def test_instructions_for_content_parts_an_empty_message_or_no_user_message() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}
    parts = with_instructions([{"role": "user", "content": [image]}], "JSON.")
    assert parts == [{"role": "user", "content": [image, {"type": "text", "text": "JSON."}]}]
    assert with_instructions([{"role": "user", "content": ""}], "JSON.") == [
        {"role": "user", "content": "JSON."}
    ]
    assert with_instructions([{"role": "system", "content": "Be terse."}], "JSON.") == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "JSON."},
    ]


@pytest.mark.parametrize(
    ("base_url", "shows"),
    [
        ("https://api.openai.com/v1", True),
        ("https://openai.com/v1", True),
        ("https://me.openai.azure.com/openai/v1", True),
        ("https://openai.com.example.invalid/v1", False),
        ("http://127.0.0.1:8080/v1", False),
    ],
)
def test_which_servers_show_the_schema_to_the_model(base_url: str, shows: bool) -> None:
    assert shows_schema_to_model(base_url) is shows


def test_a_tool_call_without_an_id_is_answered_under_a_made_up_one() -> None:
    body = {
        "id": "c",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"type": "function", "function": {"name": "Person", "arguments": "{}"}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    response = decode_chat(json.dumps(body).encode(), status_code=200, url="u")
    messages = reask_messages(response, plan_for(Person), "tools", "name is missing", "")
    assert [m["role"] for m in messages] == ["assistant", "tool"]
    assert messages[1]["tool_call_id"] == "call_0"
    assert messages[1]["content"].startswith("Error: name is missing\n")


@pytest.mark.parametrize("bad", [True, -1, 1.5])
def test_max_retries_must_be_an_int_of_zero_or_more(bad: object) -> None:
    with pytest.raises(surge.ConfigError, match="max_retries must be an integer >= 0"):
        check_arguments(None, bad, {})  # type: ignore[arg-type]
