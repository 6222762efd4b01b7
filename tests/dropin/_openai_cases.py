"""The openai SDK's drop-in cases, shared by openai 2.x (httpx) and 3.x (httpx2) tests.

Each takes the `openai` module and the surge factory that fits it (`surge.http_client` for
2.x, `surge.httpx2_client` for 3.x).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import anyio
import pytest
from _cases import BURST, held_server, idle, long_stream_server, refused_url

import surge
from surge._transport.pool import PoolTransport
from surge.testing import Failure, SimulatedServer

__all__ = ["burst", "chat_with_timings", "errors", "sdk_retries", "stream_early_exit"]

MESSAGES: Any = [{"role": "user", "content": "hi"}]
Factory = Callable[..., Any]


def _pool(http: Any) -> PoolTransport:
    transport = http._transport
    transport = getattr(transport, "inner", transport)
    assert isinstance(transport, PoolTransport)
    return transport


async def chat_with_timings(openai: ModuleType, factory: Factory) -> None:
    async with SimulatedServer(reply="from the simulator") as server:
        http = factory(max_connections=50)
        client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", http_client=http)
        raw = await client.chat.completions.with_raw_response.create(
            model="surge-sim", messages=MESSAGES
        )
        assert raw.parse().choices[0].message.content == "from the simulator"
        timings = raw.http_response.extensions["surge.timings"]
        assert isinstance(timings, surge.Timings)
        assert timings.http_version == "HTTP/1.1"
        assert timings.ttfb > 0
        assert _pool(http).stats().requests == 1
        await client.close()


async def burst(openai: ModuleType, factory: Factory) -> None:
    async with held_server(BURST) as server:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", http_client=factory())
        results: list[str | None] = []

        async def one() -> None:
            completion = await client.chat.completions.create(model="m", messages=MESSAGES)
            results.append(completion.choices[0].message.content)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(BURST):
                    tg.start_soon(one)
        await client.close()
        assert results == ["ok"] * BURST
        assert server.stats.peak_in_flight == BURST


async def errors(openai: ModuleType, factory: Factory) -> None:
    failures = [Failure.status(429, first=1), Failure.status(500, requests=[1])]
    async with SimulatedServer(failures=failures) as server:
        client = openai.AsyncOpenAI(
            base_url=server.url, api_key="sk-test", http_client=factory(), max_retries=0
        )
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
        await client.close()
    async with SimulatedServer(failures=Failure.stall()) as server:
        client = openai.AsyncOpenAI(
            base_url=server.url,
            api_key="sk-test",
            http_client=factory(),
            max_retries=0,
            timeout=0.3,
        )
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
        await client.close()
    client = openai.AsyncOpenAI(
        base_url=refused_url(), api_key="sk-test", http_client=factory(), max_retries=0
    )
    with pytest.raises(openai.APIConnectionError) as refused:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    assert not isinstance(refused.value, openai.APITimeoutError)
    await client.close()


async def sdk_retries(openai: ModuleType, factory: Factory) -> None:
    # The SDK's own retries (max_retries=2 by default) run on top of surge's pool.
    async with SimulatedServer(failures=Failure.status(500, first=2)) as server:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", http_client=factory())
        with anyio.fail_after(30):
            completion = await client.chat.completions.create(model="m", messages=MESSAGES)
        assert completion.choices[0].message.content
        assert server.stats.requests == 3
        await client.close()


async def stream_early_exit(openai: ModuleType, factory: Factory) -> None:
    async with long_stream_server() as server:
        http = factory()
        client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", http_client=http)
        with anyio.fail_after(5):
            stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
            await stream.close()
        await idle(server)
        assert server.stats.served == 0
        assert _pool(http).stats().requests == 1
        await client.close()
