"""One pool per event loop: a client survives a second loop, another backend, a fork, and exit.

These tests drive event loops themselves (`asyncio.run`, `trio.run`), so they are plain
functions that run both backends in turn.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import trio

import surge
from surge.testing import SimulatedServer


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatedServer]:
    with SimulatedServer() as server:
        yield server


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Collect what Python could not raise (errors in __del__, callbacks on dead loops)."""
    seen: list[str] = []

    def hook(info: Any) -> None:
        seen.append(f"{info.exc_type.__name__}: {info.exc_value} in {info.object!r}")

    monkeypatch.setattr(sys, "unraisablehook", hook)
    return seen


async def _call(client: surge.LLMClient) -> tuple[str, int]:
    response = await client.chat("hello")
    return response.text, client.pool_stats().connections_opened


def test_one_client_across_loops_and_backends(
    server: SimulatedServer, unraisable: list[str]
) -> None:
    client = surge.LLMClient(base_url=server.url)  # made outside any loop
    first = asyncio.run(_call(client))
    second = asyncio.run(_call(client))  # a new loop: a new pool, not "Event loop is closed"
    third = trio.run(_call, client)
    fourth = asyncio.run(_call(client))
    assert [r[0] != "" for r in (first, second, third, fourth)] == [True] * 4
    # Each loop got a pool of its own, which opened its own connection.
    assert [r[1] for r in (first, second, third, fourth)] == [1, 1, 1, 1]
    asyncio.run(client.aclose())
    del client
    gc.collect()
    assert unraisable == []


def test_concurrent_loops_in_one_run_do_not_share_connections(server: SimulatedServer) -> None:
    client = surge.LLMClient(base_url=server.url)

    async def twice() -> int:
        await client.chat("a")
        await client.chat("b")
        return client.pool_stats().requests

    assert asyncio.run(twice()) == 2
    assert trio.run(twice) == 2
    # Closed, not left to the garbage collector: its open socket would warn (unclosed
    # socket) in whichever later test the collection happens to run.
    trio.run(client.aclose)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_child_after_fork_gets_a_fresh_pool(server: SimulatedServer, backend: str) -> None:
    client = surge.LLMClient(base_url=server.url)
    assert anyio.run(_call, client, backend=backend)[1] == 1  # the parent holds an idle connection
    before = server.stats.connections_opened
    pid = os.fork()
    if pid == 0:  # the child: must not reuse the parent's socket
        status = 1
        try:
            text, opened = anyio.run(_call, client, backend=backend)
            status = 0 if (text and opened == 1) else 3
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert server.stats.connections_opened == before + 1  # the child opened its own
    assert anyio.run(_call, client, backend=backend)[1] == 1  # the parent's pool is intact
    anyio.run(client.aclose, backend=backend)


@pytest.mark.parametrize("runner", ["asyncio.run(main())", "trio.run(main)"])
def test_no_noise_at_exit_without_aclose(server: SimulatedServer, runner: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, trio, surge
        client = surge.LLMClient(base_url={server.url!r})
        async def main():
            for _ in range(3):
                await client.chat("hi")
        {runner}
        print("done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "done"
    assert "Event loop is closed" not in result.stderr
    assert "Traceback" not in result.stderr
