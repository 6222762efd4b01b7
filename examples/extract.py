"""Extract a typed record from free text with `LLMClient.structured`.

Runs against surge's simulated OpenAI-compatible server on loopback, scripted to behave
like a small local model behind llama-cpp-python: it rejects `response_format` json_schema
(500 "Input should be 'text' or 'json_object'") and answers sloppily (prose around the
JSON, a trailing comma), and gets the first answer's type wrong. surge falls back to
json_object, remembers that for the endpoint, and re-asks once with the error.

    python examples/extract.py
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Literal

from pydantic import BaseModel, Field

import surge
from surge.testing import ChatRequest, Reply, ReplyValue, SimulatedServer


class Attendee(BaseModel):
    name: str
    role: str | None = Field(default=None, description="Job title, if stated")


class Meeting(BaseModel):
    """A meeting described in an email."""

    title: str
    date: datetime.date
    duration_minutes: int = Field(ge=1)
    location: Literal["office", "remote", "client site"]
    attendees: list[Attendee]


EMAIL = """Hi all, quick reminder: the Q3 planning review is on 14 October 2025, 90 minutes,
over video. Joining: Priya Natarajan (CFO), Tom Becker and me, Lena Hoffmann (PM)."""

SLOPPY = """Sure, here is the meeting:
```json
{
  "title": "Q3 planning review",
  "date": "2025-10-14",
  "duration_minutes": "ninety",
  "location": "Remote",
  "attendees": [
    {"name": "Priya Natarajan", "role": "CFO"},
    {"name": "Tom Becker"},
    {"name": "Lena Hoffmann", "role": "PM"},
  ],
}
```"""


def llama_cpp_python_like(request: ChatRequest) -> ReplyValue:
    response_format = request.params.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return Reply(status=500, content="Input should be 'text' or 'json_object'")
    if request.messages[-1]["role"] == "user" and "could not be used" in str(
        request.messages[-1]["content"]
    ):
        return SLOPPY.replace('"ninety"', "90")  # the model fixes what it was told
    return SLOPPY


async def main() -> None:
    async with (
        SimulatedServer(reply=llama_cpp_python_like) as server,
        surge.LLMClient(base_url=server.url, model="local") as client,
    ):
        result = await client.structured_response(Meeting, f"Extract the meeting:\n{EMAIL}")
        meeting = result.value
        print(meeting.model_dump_json(indent=2))
        print(
            f"strategy={result.strategy} attempts={result.attempts} "
            f"tokens={result.usage.total_tokens}"
        )
        # The endpoint's strategy is remembered: this call goes straight to json_object.
        again = await client.structured_response(Meeting, f"Extract the meeting:\n{EMAIL}")
        print(f"second call: strategy={again.strategy} attempts={again.attempts}")


if __name__ == "__main__":
    asyncio.run(main())
