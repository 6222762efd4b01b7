"""Failure injection: what can go wrong with a request, and which requests it hits."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

from surge._errors import ConfigError

__all__ = ["Failure", "FailureKind", "FailurePlan"]

FailureKind = Literal[
    "status", "drop_before_response", "drop_mid_body", "slow_first_byte", "non_json_body", "stall"
]
"""The kinds of failure the simulated server can inject."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One kind of failure and the chat completion requests it hits.

    Build one with the class methods (`Failure.status(429, retry_after=1.5, rate=0.2)`).
    Which requests fail is chosen by at most one selector; with none, every request fails:

    - `rate`: each request fails with this probability, drawn from the server's `seed`
      and the request number, so a given seed always fails the same request numbers;
    - `first`: requests 0 .. first-1 fail;
    - `every`: every N-th request fails (numbers N-1, 2N-1, ...);
    - `requests`: the requests with these numbers fail.

    Request numbers count chat completion requests from 0, in the order the server
    received them, since the server started (`ChatRequest.n`).

    Attributes:
        kind: What goes wrong.
        rate: Probability of failing each request, or None.
        first: Fail the first this many requests, or None.
        every: Fail every this-many-th request, or None.
        requests: Fail these request numbers, or None.
        status_code: For "status": the HTTP status sent.
        retry_after: For "status": seconds sent in `Retry-After` (and `retry-after-ms`).
        message: For "status": the error message in the JSON body (a default otherwise).
        seconds: For "slow_first_byte": seconds added to the latency.
    """

    kind: FailureKind
    rate: float | None = None
    first: int | None = None
    every: int | None = None
    requests: frozenset[int] | None = None
    status_code: int = 500
    retry_after: float | None = None
    message: str | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        chosen = [
            name
            for name in ("rate", "first", "every", "requests")
            if getattr(self, name) is not None
        ]
        if len(chosen) > 1:
            raise ConfigError(
                f"Failure takes at most one of rate=, first=, every=, requests=; "
                f"got {', '.join(chosen)}"
            )
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ConfigError(f"Failure rate must be between 0 and 1, got {self.rate}")
        if self.first is not None and self.first < 0:
            raise ConfigError(f"Failure first= must be >= 0, got {self.first}")
        if self.every is not None and self.every < 1:
            raise ConfigError(f"Failure every= must be >= 1, got {self.every}")
        if self.requests is not None and any(n < 0 for n in self.requests):
            raise ConfigError("Failure requests= must hold request numbers >= 0")
        if self.kind == "status" and not 400 <= self.status_code <= 599:
            raise ConfigError(
                f"Failure.status needs an error status 400-599, got {self.status_code}"
            )
        if self.retry_after is not None and not 0 <= self.retry_after < math.inf:
            raise ConfigError(f"retry_after must be finite seconds >= 0, got {self.retry_after}")
        if not 0 <= self.seconds < math.inf:
            raise ConfigError(
                f"slow_first_byte seconds must be finite and >= 0, got {self.seconds}"
            )

    @classmethod
    def status(
        cls,
        status_code: int,
        *,
        retry_after: float | None = None,
        message: str | None = None,
        rate: float | None = None,
        first: int | None = None,
        every: int | None = None,
        requests: Iterable[int] | None = None,
    ) -> Failure:
        """Answer with an error status and an OpenAI-style JSON error body.

        Sent at once, before the request takes a slot (as a gateway's rate limiter does).

        Args:
            status_code: The HTTP status, 400-599 (e.g. 429, 500, 503).
            retry_after: Seconds to send in `Retry-After` (as given, e.g. "1.5" or "2";
                the OpenAI SDK reads fractions) and in `retry-after-ms`; None = no header.
            message: The error message; a default naming the status otherwise.
            rate: Probability of hitting each request (see the class docstring).
            first: Hit the first this many requests.
            every: Hit every this-many-th request.
            requests: Hit the requests with these numbers.

        Returns:
            The failure, to pass in `SimulatedServer(failures=...)`.
        """
        return cls(
            "status",
            status_code=status_code,
            retry_after=retry_after,
            message=message,
            **_selector(rate, first, every, requests),
        )

    @classmethod
    def drop_before_response(
        cls,
        *,
        rate: float | None = None,
        first: int | None = None,
        every: int | None = None,
        requests: Iterable[int] | None = None,
    ) -> Failure:
        """Close the connection before any response byte (HTTP/2: reset the stream).

        The client sees the peer disconnect without a response (httpx:
        `RemoteProtocolError`). Happens at once, before the request takes a slot.

        Args:
            rate: Probability of hitting each request (see the class docstring).
            first: Hit the first this many requests.
            every: Hit every this-many-th request.
            requests: Hit the requests with these numbers.

        Returns:
            The failure.
        """
        return cls("drop_before_response", **_selector(rate, first, every, requests))

    @classmethod
    def drop_mid_body(
        cls,
        *,
        rate: float | None = None,
        first: int | None = None,
        every: int | None = None,
        requests: Iterable[int] | None = None,
    ) -> Failure:
        """Send the headers and part of the body, then close the connection.

        HTTP/1.1: the headers announce the full length, half the body is sent, then the
        socket closes. Streams: half the chunks are sent. HTTP/2: the stream is reset
        (the partial body may or may not reach the client first). Happens after latency.

        Args:
            rate: Probability of hitting each request (see the class docstring).
            first: Hit the first this many requests.
            every: Hit every this-many-th request.
            requests: Hit the requests with these numbers.

        Returns:
            The failure.
        """
        return cls("drop_mid_body", **_selector(rate, first, every, requests))

    @classmethod
    def slow_first_byte(
        cls,
        seconds: float,
        *,
        rate: float | None = None,
        first: int | None = None,
        every: int | None = None,
        requests: Iterable[int] | None = None,
    ) -> Failure:
        """Add `seconds` to the request's latency (it holds its slot meanwhile).

        Args:
            seconds: Extra seconds before the first byte.
            rate: Probability of hitting each request (see the class docstring).
            first: Hit the first this many requests.
            every: Hit every this-many-th request.
            requests: Hit the requests with these numbers.

        Returns:
            The failure.
        """
        return cls("slow_first_byte", seconds=seconds, **_selector(rate, first, every, requests))

    @classmethod
    def non_json_body(
        cls,
        *,
        rate: float | None = None,
        first: int | None = None,
        every: int | None = None,
        requests: Iterable[int] | None = None,
    ) -> Failure:
        """Answer 200 with an HTML page instead of JSON (a misconfigured proxy's answer).

        Args:
            rate: Probability of hitting each request (see the class docstring).
            first: Hit the first this many requests.
            every: Hit every this-many-th request.
            requests: Hit the requests with these numbers.

        Returns:
            The failure.
        """
        return cls("non_json_body", **_selector(rate, first, every, requests))

    @classmethod
    def stall(
        cls,
        *,
        rate: float | None = None,
        first: int | None = None,
        every: int | None = None,
        requests: Iterable[int] | None = None,
    ) -> Failure:
        """Never answer: the request waits until the client gives up or the server stops.

        Does not take a slot. Use it to test the client's read timeout.

        Args:
            rate: Probability of hitting each request (see the class docstring).
            first: Hit the first this many requests.
            every: Hit every this-many-th request.
            requests: Hit the requests with these numbers.

        Returns:
            The failure.
        """
        return cls("stall", **_selector(rate, first, every, requests))

    def hits(self, n: int, seed: int, index: int) -> bool:
        """Whether this failure hits request number `n`.

        Args:
            n: The request number (0-based).
            seed: The server's seed.
            index: This failure's position in the server's list (so two equal rates in
                one list draw independently).

        Returns:
            True when request `n` should fail this way.
        """
        if self.rate is not None:
            if self.rate >= 1.0:
                return True
            return random.Random(f"{seed}:{index}:{n}").random() < self.rate
        if self.first is not None:
            return n < self.first
        if self.every is not None:
            return (n + 1) % self.every == 0
        if self.requests is not None:
            return n in self.requests
        return True


class _Selector(TypedDict):
    rate: float | None
    first: int | None
    every: int | None
    requests: frozenset[int] | None


def _selector(
    rate: float | None, first: int | None, every: int | None, requests: Iterable[int] | None
) -> _Selector:
    return {
        "rate": rate,
        "first": first,
        "every": every,
        "requests": None if requests is None else frozenset(requests),
    }


class FailurePlan:
    """The server's failures, in order: the first that hits a request is applied."""

    def __init__(self, failures: Sequence[Failure] | Failure | None, seed: int) -> None:
        if failures is None:
            items: tuple[Failure, ...] = ()
        elif isinstance(failures, Failure):
            items = (failures,)
        else:
            items = tuple(failures)
        for item in items:
            if not isinstance(item, Failure):
                raise ConfigError(
                    f"failures= takes Failure objects (e.g. Failure.status(429)), "
                    f"not {type(item).__name__}"
                )
        self.failures = items
        self.seed = seed

    def pick(self, n: int) -> Failure | None:
        """Return the failure to apply to request number `n`, or None."""
        for index, failure in enumerate(self.failures):
            if failure.hits(n, self.seed, index):
                return failure
        return None
