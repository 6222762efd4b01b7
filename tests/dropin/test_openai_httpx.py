"""openai 2.x (on httpx) over `surge.http_client()`, against the simulated server."""

from __future__ import annotations

import pytest
from _env import need
from _openai_cases import burst, chat_with_timings, errors, sdk_retries, stream_early_exit

import surge

openai = need("legacy", "openai", openai_major=2)

pytestmark = pytest.mark.anyio


async def test_chat_with_timings_from_the_raw_response() -> None:
    await chat_with_timings(openai, surge.http_client)


async def test_a_burst_reaches_the_server_at_once() -> None:
    await burst(openai, surge.http_client)


async def test_the_sdk_raises_its_own_error_types() -> None:
    await errors(openai, surge.http_client)


async def test_the_sdks_own_retries_run_on_the_pool() -> None:
    await sdk_retries(openai, surge.http_client)


# Leaving a stream early leaves the SDK's own async generators half-run; trio's finalizer
# flags each when it is collected (asyncio does not). The SDK's behaviour, not the pool's.
@pytest.mark.filterwarnings("ignore:Async generator:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_stream_left_early_frees_the_server() -> None:
    await stream_early_exit(openai, surge.http_client)
