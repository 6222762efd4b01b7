"""openai-agents (openai 3.x, httpx2): a chat-completions model over `surge.httpx2_client()`."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from _cases import BURST, held_server, idle, long_stream_server, record_timings, refused_url
from _env import need

import surge
from surge.testing import Failure, SimulatedServer

agents = need("current", "agents")
openai = need("current", "openai", openai_major=3)

agents.set_tracing_disabled(True)  # tracing would export to api.openai.com: loopback only

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    # openai-agents runs on asyncio only: its Runner calls asyncio.create_task.
    return "asyncio"


def _agent(url: str, http: Any, **openai_kwargs: Any) -> Any:
    client = openai.AsyncOpenAI(base_url=url, api_key="sk-test", http_client=http, **openai_kwargs)
    model = agents.OpenAIChatCompletionsModel(model="surge-sim", openai_client=client)
    return agents.Agent(name="sim", instructions="Answer.", model=model)


async def test_a_run_with_timings() -> None:
    async with SimulatedServer(reply="from the simulator") as server:
        http = surge.httpx2_client()
        seen = record_timings(http)
        result = await agents.Runner.run(_agent(server.url, http), "hi")
        assert result.final_output == "from the simulator"
        assert len(seen) == 1
        assert seen[0].ttfb > 0
        await http.aclose()


async def test_a_burst_reaches_the_server_at_once() -> None:
    async with held_server(BURST) as server:
        http = surge.httpx2_client()
        agent = _agent(server.url, http)
        outputs: list[str] = []

        async def one() -> None:
            outputs.append((await agents.Runner.run(agent, "hi")).final_output)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(BURST):
                    tg.start_soon(one)
        await http.aclose()
        assert outputs == ["ok"] * BURST
        assert server.stats.peak_in_flight == BURST


async def test_the_sdk_raises_openais_error_types() -> None:
    failures = [Failure.status(429, first=1), Failure.status(500, requests=[1])]
    async with SimulatedServer(failures=failures) as server:
        http = surge.httpx2_client()
        agent = _agent(server.url, http, max_retries=0)
        with pytest.raises(openai.RateLimitError):
            await agents.Runner.run(agent, "a")
        with pytest.raises(openai.InternalServerError):
            await agents.Runner.run(agent, "b")
        await http.aclose()
    async with SimulatedServer(failures=Failure.stall()) as server:
        http = surge.httpx2_client()
        agent = _agent(server.url, http, max_retries=0, timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            await agents.Runner.run(agent, "c")
        await http.aclose()
    http = surge.httpx2_client()
    with pytest.raises(openai.APIConnectionError) as refused:
        await agents.Runner.run(_agent(refused_url(), http, max_retries=0), "d")
    assert not isinstance(refused.value, openai.APITimeoutError)
    await http.aclose()


async def test_a_stream_left_early_frees_the_server() -> None:
    async with long_stream_server() as server:
        http = surge.httpx2_client()
        with anyio.fail_after(5):
            result = agents.Runner.run_streamed(_agent(server.url, http), "hi")
            async for event in result.stream_events():
                if event.type == "raw_response_event" and getattr(event.data, "delta", ""):
                    break
            result.cancel()
            async for _ in result.stream_events():  # let the run wind down
                pass
        await idle(server)
        assert server.stats.served == 0
        await http.aclose()
