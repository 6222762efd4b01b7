"""Which structured-output strategy each endpoint accepts, learned once per endpoint.

A client and every client derived from it with `with_options` share one `ModeMemory`, so a
batch of 1,000 `structured` calls pays for discovering a server's support once. While one
call of an event loop discovers an endpoint, the other calls of that loop wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.lowlevel

__all__ = ["MODES", "ModeMemory", "OutputMode", "Strategy"]

OutputMode = Literal["json_schema", "tools", "prompt"]
"""How `structured` asks for typed output; see docs/structured-outputs.md."""

Strategy = Literal["json_schema", "json_object", "tools", "prompt"]
"""How one request asks for structure: an `OutputMode`, or "json_object" (the fallback
that sends `response_format={"type": "json_object", "schema": ...}` and states the schema
in the prompt)."""

MODES: tuple[OutputMode, ...] = ("json_schema", "tools", "prompt")
"""The modes a caller may name."""


@dataclass
class Discovery:
    """One call finding out what an endpoint accepts; the others of its loop wait on it."""

    token: object
    done: anyio.Event = field(default_factory=anyio.Event)


class ModeMemory:
    """The strategy each endpoint accepts, and the discoveries under way.

    Keys name an endpoint (its base URL and model).
    """

    __slots__ = ("_running", "_strategies")

    def __init__(self) -> None:
        self._strategies: dict[str, Strategy] = {}
        self._running: dict[str, Discovery] = {}

    def get(self, key: str) -> Strategy | None:
        """Return the strategy learned for `key`, if any."""
        return self._strategies.get(key)

    def learn(self, key: str, strategy: Strategy) -> None:
        """Remember that the endpoint `key` accepts `strategy`."""
        self._strategies[key] = strategy

    async def remembered_or_discover(self, key: str) -> tuple[Strategy, Discovery | None]:
        """Return the remembered strategy, or json_schema plus a discovery to finish.

        A call that gets a `Discovery` must pass it to `finish` when it knows (or gives
        up); meanwhile the other calls of its event loop wait here. Calls on another event
        loop do not wait (an `anyio.Event` belongs to one loop): they probe on their own.
        """
        while True:
            remembered = self._strategies.get(key)
            if remembered is not None:
                return remembered, None
            token = anyio.lowlevel.current_token()
            running = self._running.get(key)
            if running is None:
                discovery = self._running[key] = Discovery(token)
                return "json_schema", discovery
            if running.token != token:
                return "json_schema", None
            await running.done.wait()

    def finish(self, discovery: Discovery | None, key: str) -> None:
        """End a discovery (learned or not) and wake the calls waiting for it."""
        if discovery is not None:
            if self._running.get(key) is discovery:
                del self._running[key]
            discovery.done.set()
