"""`surge.http_client` under the openai SDK, against the simulated server over loopback."""

from __future__ import annotations

import anyio
import pytest

import surge
from surge.testing import ChatRequest, SimulatedServer

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.anyio


async def test_openai_sdk_runs_on_surges_pool() -> None:
    async with SimulatedServer(reply="from the simulator") as server:
        http = surge.http_client(max_connections=50)
        client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", http_client=http)
        raw = await client.chat.completions.with_raw_response.create(
            model="surge-sim", messages=[{"role": "user", "content": "hi"}]
        )
        completion = raw.parse()
        assert completion.choices[0].message.content == "from the simulator"
        timings = raw.http_response.extensions["surge.timings"]
        assert isinstance(timings, surge.Timings)
        assert timings.ttfb > 0
        transport = http._transport
        assert isinstance(transport, surge._transport.pool.PoolTransport)
        assert transport.stats().requests == 1
        await client.close()


async def test_openai_sdk_burst_reaches_the_server_at_once() -> None:
    n = 200
    server: SimulatedServer

    async def held(request: ChatRequest) -> str:
        # No answer until all n requests are inside the server: a client that sent them
        # in waves would never get there (and the test's time bound would fail it).
        await server.wait_for(lambda s: s.requests >= n)
        return "ok"

    async with SimulatedServer(reply=held) as server:
        client = openai.AsyncOpenAI(
            base_url=server.url, api_key="sk-test", http_client=surge.http_client()
        )
        results: list[str | None] = []

        async def one(i: int) -> None:
            completion = await client.chat.completions.create(
                model="surge-sim", messages=[{"role": "user", "content": f"call {i}"}]
            )
            results.append(completion.choices[0].message.content)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
        await client.close()
        assert results == ["ok"] * n
        assert server.stats.peak_in_flight == n


async def test_openai_sdk_sees_its_own_error_types() -> None:
    failure = surge.testing.Failure.status(404, message="no such model")
    async with SimulatedServer(failures=failure) as server:
        client = openai.AsyncOpenAI(
            base_url=server.url, api_key="sk-test", http_client=surge.http_client(), max_retries=0
        )
        with pytest.raises(openai.NotFoundError, match="no such model"):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
        await client.close()
