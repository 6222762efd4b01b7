"""Shared fixtures: every async test runs on asyncio and on trio (anyio's pytest plugin).

The real-server tier (`@pytest.mark.realserver`, tests/_llama.py) adds `tiny_model`, the
test model written once per session, and `llama_server`, a factory of llama.cpp servers.
The shared-limits tests add `redis_server`, one real redis-server per session
(tests/_redis.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _llama import LlamaServerFactory, llama_servers, require_binary
from _redis import RedisServer, require_redis


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each `@pytest.mark.anyio` test once per backend."""
    return str(request.param)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama model of tests/_tiny_model.py, written once per session."""
    require_binary()  # no binary: skip (or fail under CI) before writing a model for nothing
    from _tiny_model import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("llama-model"))


@pytest.fixture
def llama_server(tiny_model: Path, tmp_path: Path) -> Iterator[LlamaServerFactory]:
    """A factory: `llama_server(parallel=6, ctx=6144, args=())` starts a llama-server.

    Every server started is stopped when the test ends, passed or failed.
    """
    with llama_servers(require_binary(), tiny_model, tmp_path) as factory:
        yield factory


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server per test session, on a free loopback port."""
    server = RedisServer(require_redis())
    server.start()
    yield server
    server.remove()
