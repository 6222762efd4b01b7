"""What every SDK's drop-in test needs: servers that prove a burst, a refused port, timings."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import anyio

import surge
from surge.testing import ChatRequest, SimulatedServer

__all__ = ["BURST", "held_server", "idle", "long_stream_server", "record_timings", "refused_url"]

BURST = 500
LONG_REPLY = " ".join(["word"] * 400)  # 400 tokens at 40 per second: 10 s if read to the end


def held_server(n: int = BURST, text: str = "ok") -> SimulatedServer:
    """A server that answers nobody until `n` chat requests are inside it at once.

    A client that sent the burst in waves (a connection limit, a semaphore) never gets
    there, and the test's time bound fails it.
    """
    server: SimulatedServer

    async def held(request: ChatRequest) -> str:
        await server.wait_for(lambda s: s.requests >= n)
        return text

    server = SimulatedServer(reply=held)
    return server


def long_stream_server(text: str = LONG_REPLY) -> SimulatedServer:
    """A server whose streamed reply (400 words by default) takes 10 s to read to the end."""
    return SimulatedServer(reply=text, stream_tokens_per_second=40)


async def idle(server: SimulatedServer) -> None:
    """Wait (5 s at most, far less than a full stream) until nothing is in flight."""
    with anyio.fail_after(5):
        await server.wait_for(lambda s: s.in_flight == 0)


def refused_url() -> str:
    """A loopback base URL nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def record_timings(http: Any) -> list[surge.Timings]:
    """Collect each response's `surge.Timings` through the client's response event hook.

    The route for SDKs that do not hand out the raw HTTP response (pydantic-ai,
    instructor, openai-agents): an httpx or httpx2 client's `event_hooks`.
    """
    seen: list[surge.Timings] = []

    async def hook(response: Any) -> None:
        seen.append(response.extensions["surge.timings"])

    hooks: list[Callable[..., Any]] = http.event_hooks["response"]
    hooks.append(hook)
    return seen
