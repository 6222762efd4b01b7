"""instructor (over openai 2.x, httpx) on `surge.http_client()`, against the simulator.

instructor 1.17 pins jiter<0.15 and openai 3.x needs jiter>=0.16, so it installs beside
openai 2.x only today, and not in the main env either (its CLI deps make `import httpx`
load rich): an "instructor" drop-in test, in .venv-instructor (docs/drop-in.md).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pydantic
import pytest
from _cases import BURST, held_server, idle, long_stream_server, record_timings, refused_url
from _env import need

import surge
from surge.testing import ChatRequest, Failure, SimulatedServer

instructor = need("instructor", "instructor")
openai = need("instructor", "openai", openai_major=2)

from instructor.core import InstructorRetryException  # noqa: E402

pytestmark = pytest.mark.anyio


class User(pydantic.BaseModel):
    name: str
    age: int


ADA = json.dumps({"name": "Ada", "age": 36})
MESSAGES: Any = [{"role": "user", "content": "Who?"}]


def _client(url: str, http: Any, **openai_kwargs: Any) -> Any:
    sdk = openai.AsyncOpenAI(base_url=url, api_key="sk-test", http_client=http, **openai_kwargs)
    return instructor.from_openai(sdk, mode=instructor.Mode.JSON)


async def test_a_typed_answer_with_timings() -> None:
    async with SimulatedServer(reply=ADA) as server:
        http = surge.http_client()
        seen = record_timings(http)
        user = await _client(server.url, http).chat.completions.create(
            model="m", response_model=User, messages=MESSAGES
        )
        assert (type(user).__name__, user.model_dump()) == ("User", {"name": "Ada", "age": 36})
        assert len(seen) == 1
        assert seen[0].ttfb > 0
        await http.aclose()


async def test_validation_retries_over_the_sdks_retries() -> None:
    # instructor re-asks on a reply that does not validate (max_retries=2 here); under
    # that, openai's own max_retries=2 retries the 500. Four requests for one answer.
    replies = iter(['{"name": "Ada"}', ADA, ADA])

    def reply(request: ChatRequest) -> str:
        return next(replies)

    async with SimulatedServer(reply=reply, failures=Failure.status(500, first=1)) as server:
        http = surge.http_client()
        with anyio.fail_after(30):
            user = await _client(server.url, http).chat.completions.create(
                model="m", response_model=User, messages=MESSAGES, max_retries=2
            )
        assert (type(user).__name__, user.model_dump()) == ("User", {"name": "Ada", "age": 36})
        assert server.stats.requests == 3  # the 500, the invalid reply, the valid one
        await http.aclose()


async def test_a_burst_reaches_the_server_at_once() -> None:
    async with held_server(BURST, text=ADA) as server:
        http = surge.http_client()
        client = _client(server.url, http)
        users: list[User] = []

        async def one() -> None:
            users.append(
                await client.chat.completions.create(
                    model="m", response_model=User, messages=MESSAGES
                )
            )

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(BURST):
                    tg.start_soon(one)
        await http.aclose()
        assert [u.model_dump() for u in users] == [{"name": "Ada", "age": 36}] * BURST
        assert server.stats.peak_in_flight == BURST


async def test_the_sdks_error_types_come_through() -> None:
    failures = [Failure.status(429, first=1), Failure.status(500, requests=[1])]
    async with SimulatedServer(failures=failures) as server:
        http = surge.http_client()
        client = _client(server.url, http, max_retries=0)
        # instructor wraps what the SDK raised; the SDK's own error is the cause.
        with pytest.raises(InstructorRetryException) as limited:
            await client.chat.completions.create(model="m", response_model=User, messages=MESSAGES)
        assert isinstance(limited.value.__cause__, openai.RateLimitError)
        with pytest.raises(InstructorRetryException) as failed:
            await client.chat.completions.create(model="m", response_model=User, messages=MESSAGES)
        assert isinstance(failed.value.__cause__, openai.InternalServerError)
        await http.aclose()
    async with SimulatedServer(failures=Failure.stall()) as server:
        http = surge.http_client()
        client = _client(server.url, http, max_retries=0, timeout=0.3)
        with pytest.raises(InstructorRetryException) as timed_out:
            await client.chat.completions.create(model="m", response_model=User, messages=MESSAGES)
        assert isinstance(timed_out.value.__cause__, openai.APITimeoutError)
        await http.aclose()
    http = surge.http_client()
    client = _client(refused_url(), http, max_retries=0)
    with pytest.raises(InstructorRetryException) as refused:
        await client.chat.completions.create(model="m", response_model=User, messages=MESSAGES)
    assert isinstance(refused.value.__cause__, openai.APIConnectionError)
    assert not isinstance(refused.value.__cause__, openai.APITimeoutError)
    await http.aclose()


# Leaving a stream early leaves the SDK's own async generators half-run; trio's finalizer
# flags each when it is collected (asyncio does not). The SDK's behaviour, not the pool's.
@pytest.mark.filterwarnings("ignore:Async generator:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_partial_stream_left_early_is_freed_by_closing_the_client() -> None:
    # instructor's create_partial does not close the SDK's stream when the caller leaves
    # early (its inner async generators are only finalized later), so the request stays in
    # flight; closing the http client closes the pool's connection and frees the server.
    long_ada = json.dumps({"name": " ".join(["Ada"] * 400), "age": 36})
    async with long_stream_server(long_ada) as server:
        http = surge.http_client()
        client = _client(server.url, http)
        with anyio.fail_after(5):
            stream = client.chat.completions.create_partial(
                model="m", response_model=User, messages=MESSAGES
            )
            async for partial in stream:
                assert partial.model_dump() == {"name": None, "age": None}
                break
            await stream.aclose()
        assert server.stats.in_flight == 1
        await http.aclose()
        await idle(server)
        assert server.stats.served == 0
