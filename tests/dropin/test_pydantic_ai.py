"""pydantic-ai 2.x (openai 3.x, httpx2) over `surge.httpx2_client()`, against the simulator."""

from __future__ import annotations

import warnings
from typing import Any

import anyio
import pytest
from _cases import BURST, held_server, idle, long_stream_server, record_timings, refused_url
from _env import need

import surge
from surge.testing import Failure, SimulatedServer

pydantic_ai = need("current", "pydantic_ai")
openai = need("current", "openai", openai_major=3)

from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.exceptions import ModelAPIError, ModelHTTPError  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    # pydantic-ai runs agents on asyncio only: on trio its run loop calls
    # asyncio.get_running_loop() ("RuntimeError: no running event loop").
    return "asyncio"


def _agent(url: str, http: Any, **openai_kwargs: Any) -> Agent[None, str]:
    if openai_kwargs:  # the SDK's own settings (max_retries, timeout) on a client of ours
        client = openai.AsyncOpenAI(
            base_url=url, api_key="sk-test", http_client=http, **openai_kwargs
        )
        provider = OpenAIProvider(openai_client=client)
    else:
        provider = OpenAIProvider(base_url=url, api_key="sk-test", http_client=http)
    return Agent(OpenAIChatModel("surge-sim", provider=provider))


async def test_a_run_with_no_warning_and_timings() -> None:
    async with SimulatedServer(reply="from the simulator") as server:
        http = surge.httpx2_client()
        seen = record_timings(http)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            agent = _agent(server.url, http)
            result = await agent.run("hi")
        assert [str(w.message) for w in caught] == []
        assert result.output == "from the simulator"
        assert len(seen) == 1
        assert seen[0].ttfb > 0
        await http.aclose()


def test_the_httpx_flavour_is_what_pydantic_ai_deprecates() -> None:
    # The contrast that makes the test above mean something: the same provider given an
    # httpx client (surge.http_client) warns, and -W error would turn that into an error.
    with pytest.warns(pydantic_ai.PydanticAIDeprecationWarning):
        OpenAIProvider(
            base_url="http://127.0.0.1:9/v1", api_key="k", http_client=surge.http_client()
        )


async def test_a_burst_reaches_the_server_at_once() -> None:
    async with held_server(BURST) as server:
        http = surge.httpx2_client()
        agent = _agent(server.url, http)
        outputs: list[str] = []

        async def one() -> None:
            outputs.append((await agent.run("hi")).output)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(BURST):
                    tg.start_soon(one)
        await http.aclose()
        assert outputs == ["ok"] * BURST
        assert server.stats.peak_in_flight == BURST


async def test_errors_come_out_as_pydantic_ais() -> None:
    failures = [Failure.status(429, first=1), Failure.status(500, requests=[1])]
    async with SimulatedServer(failures=failures) as server:
        http = surge.httpx2_client()
        agent = _agent(server.url, http, max_retries=0)
        with pytest.raises(ModelHTTPError) as limited:
            await agent.run("a")
        assert limited.value.status_code == 429
        with pytest.raises(ModelHTTPError) as failed:
            await agent.run("b")
        assert failed.value.status_code == 500
        await http.aclose()
    async with SimulatedServer(failures=Failure.stall()) as server:
        http = surge.httpx2_client()
        agent = _agent(server.url, http, max_retries=0, timeout=0.3)
        with pytest.raises(ModelAPIError) as timed_out:
            await agent.run("c")
        assert isinstance(timed_out.value.__cause__, openai.APITimeoutError)
        await http.aclose()
    http = surge.httpx2_client()
    agent = _agent(refused_url(), http, max_retries=0)
    with pytest.raises(ModelAPIError) as refused:
        await agent.run("d")
    assert isinstance(refused.value.__cause__, openai.APIConnectionError)
    assert not isinstance(refused.value.__cause__, openai.APITimeoutError)
    await http.aclose()


async def test_a_stream_left_early_frees_the_server() -> None:
    async with long_stream_server() as server:
        http = surge.httpx2_client()
        agent = _agent(server.url, http)
        with anyio.fail_after(5):
            async with agent.run_stream("hi") as result:
                async for text in result.stream_output(debounce_by=None):
                    if text:
                        break
        await idle(server)
        assert server.stats.served == 0
        await http.aclose()
