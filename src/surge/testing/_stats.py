"""Live counters of the simulated server, readable from any thread, and their snapshot."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import anyio

__all__ = ["ServerStats", "StatsRecorder"]


def _empty() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A snapshot of what the simulated server has seen since it started or was reset.

    Attributes:
        requests: HTTP requests received, on every route.
        served: Requests answered with a complete response (any status, injected error
            statuses included). Dropped and stalled requests are not counted.
        in_flight: Requests inside the server now: queued for a slot, in a slot, or being
            sent.
        peak_in_flight: The most requests inside the server at once.
        active: Chat completions holding a slot now.
        peak_active: The most chat completions holding a slot at once; never more than
            `slots` when slots are limited.
        queued: Chat completions waiting for a slot now.
        connections_opened: Distinct client connections seen, counted by the client's
            (host, port). A port the operating system reuses for a new connection after
            a reset is counted again; one reused within one test is not.
        http_versions: Requests per HTTP version, e.g. `{"1.1": 10, "2": 3}`.
        failures: Injected failures per kind, e.g. `{"status": 2, "drop_mid_body": 1}`.
        cancelled: Chat completions the client abandoned before the server finished
            answering (it closed the connection, or reset the HTTP/2 stream); the server
            stopped generating them at once. `SimulatedServer.cancellations()` says when.
    """

    requests: int = 0
    served: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    active: int = 0
    peak_active: int = 0
    queued: int = 0
    connections_opened: int = 0
    http_versions: Mapping[str, int] = field(default_factory=_empty)
    failures: Mapping[str, int] = field(default_factory=_empty)
    cancelled: int = 0


class StatsRecorder:
    """The server's mutable counters.

    Updates come from the server's event loop; snapshots and blocking waits may come from
    any thread. A `threading.Condition` guards the counters, so a snapshot is always
    consistent. Async waiters (`wait_for`) live in the server's loop and are checked after
    each update.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._async_waiters: list[tuple[Callable[[ServerStats], bool], anyio.Event]] = []
        self._clients: set[object] = set()
        self._zero()

    def _zero(self) -> None:
        self._requests = 0
        self._served = 0
        self._peak_in_flight = 0
        self._peak_active = 0
        self._versions: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._cancelled: dict[str, float] = {}
        self._clients.clear()
        # in_flight, active and queued describe the present, so a reset keeps them.
        if not hasattr(self, "_in_flight"):
            self._in_flight = 0
            self._active = 0
            self._queued = 0
        self._peak_in_flight = self._in_flight
        self._peak_active = self._active

    def reset(self) -> None:
        """Zero the counters; requests in the server now stay counted as in flight."""
        with self._cond:
            self._zero()
            # May run in any thread: wake blocking waiters only (async ones belong to the
            # server's loop, and a reset only lowers counters).
            self._cond.notify_all()

    def snapshot(self) -> ServerStats:
        """Return a consistent copy of the counters."""
        with self._cond:
            return self._snapshot()

    def _snapshot(self) -> ServerStats:
        return ServerStats(
            requests=self._requests,
            served=self._served,
            in_flight=self._in_flight,
            peak_in_flight=self._peak_in_flight,
            active=self._active,
            peak_active=self._peak_active,
            queued=self._queued,
            connections_opened=len(self._clients),
            http_versions=MappingProxyType(dict(self._versions)),
            failures=MappingProxyType(dict(self._failures)),
            cancelled=len(self._cancelled),
        )

    def _changed(self) -> None:
        # Called with the lock held.
        self._cond.notify_all()
        if self._async_waiters:
            stats = self._snapshot()
            for predicate, event in self._async_waiters:
                if predicate(stats):
                    event.set()

    def request_started(self, client: object, http_version: str) -> None:
        """Count a request entering the server."""
        with self._cond:
            self._requests += 1
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            self._versions[http_version] = self._versions.get(http_version, 0) + 1
            if client is not None:
                self._clients.add(client)
            self._changed()

    def request_finished(self, *, served: bool) -> None:
        """Count a request leaving the server, answered in full or not."""
        with self._cond:
            self._in_flight -= 1
            if served:
                self._served += 1
            self._changed()

    def queued(self, delta: int) -> None:
        """Count a chat completion joining (+1) or leaving (-1) the slot queue."""
        with self._cond:
            self._queued += delta
            self._changed()

    def active(self, delta: int) -> None:
        """Count a chat completion taking (+1) or giving back (-1) a slot."""
        with self._cond:
            self._active += delta
            self._peak_active = max(self._peak_active, self._active)
            self._changed()

    def cancelled(self, request_id: str, at: float) -> None:
        """Count a chat completion the client abandoned (seen at `time.monotonic()` `at`)."""
        with self._cond:
            self._cancelled[request_id] = at
            self._changed()

    def cancellations(self) -> dict[str, float]:
        """Request id -> `time.monotonic()` when the server saw the client abandon it."""
        with self._cond:
            return dict(self._cancelled)

    def failure(self, kind: str) -> None:
        """Count one injected failure of `kind`."""
        with self._cond:
            self._failures[kind] = self._failures.get(kind, 0) + 1
            self._changed()

    async def wait_for(self, predicate: Callable[[ServerStats], bool]) -> ServerStats:
        """Wait, inside the server's event loop, until `predicate(stats)` is true."""
        event = anyio.Event()
        entry = (predicate, event)
        with self._cond:
            stats = self._snapshot()
            if predicate(stats):
                return stats
            self._async_waiters.append(entry)
        try:
            await event.wait()
        finally:
            with self._cond:
                self._async_waiters.remove(entry)
        return self.snapshot()

    def wait_for_blocking(
        self, predicate: Callable[[ServerStats], bool], timeout: float | None
    ) -> ServerStats | None:
        """Block this thread until `predicate(stats)` is true; None on timeout."""
        with self._cond:
            if self._cond.wait_for(lambda: predicate(self._snapshot()), timeout):
                return self._snapshot()
            return None
