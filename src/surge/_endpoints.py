"""Several servers behind one client: `Endpoint`, strategies, and cooldown.

A client with `endpoints=[...]` sends each call to one of them, picked by a strategy:

- "fallback": always the first healthy endpoint, in the order given; the next one only
  when it fails with a retryable error.
- "round_robin": calls take turns, one endpoint after the other.
- "weighted": calls are spread in proportion to `Endpoint.weight` (smooth weighted
  round robin, so the spread is exact and deterministic, not random).

Whatever the strategy, a retry goes to an endpoint this call has not tried yet when there
is one, at once; only going back to an endpoint already tried waits for the backoff. An
endpoint that fails `Cooldown.after` times in a row is skipped for `Cooldown.seconds`
(a circuit breaker): after that one call may try it again, and one more failure sends it
straight back to cooldown. When every endpoint is cooling down, the one whose cooldown
ends first is tried rather than failing the call outright.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import httpx

from surge._errors import ConfigError

if TYPE_CHECKING:
    from surge._store import SharedHealth

__all__ = ["Cooldown", "Endpoint", "Router", "Strategy", "check_base_url"]

Strategy = Literal["fallback", "round_robin", "weighted"]
"""How a client with several endpoints picks one per call."""

_STRATEGIES = ("fallback", "round_robin", "weighted")

log = logging.getLogger("surge")


def check_base_url(base_url: str) -> str:
    """Validate an API root and return it without a trailing slash.

    Raises:
        ConfigError: It is not an http(s) URL with a host, or it carries credentials.
    """
    if not isinstance(base_url, str):
        raise ConfigError(f"base_url must be a str, not {type(base_url).__name__}")
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"base_url must be an http:// or https:// URL with a host, "
            f"like 'http://127.0.0.1:8080/v1'; got {base_url!r}"
        )
    if url.userinfo:
        raise ConfigError("base_url must not carry credentials; pass api_key= instead")
    return base_url.rstrip("/")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible server a client may send calls to.

    ```python
    surge.LLMClient(endpoints=[
        surge.Endpoint("https://api.openai.com/v1", api_key=key, model="gpt-4o-mini"),
        surge.Endpoint("http://127.0.0.1:8080/v1", model="llama-3.1-8b"),
    ])
    ```

    Args:
        base_url: The server's API root, e.g. "http://127.0.0.1:8080/v1".
        api_key: Its API key; None uses the client's `api_key=` argument (never
            `$OPENAI_API_KEY`, which belongs with `$OPENAI_BASE_URL`). Never shown in a repr,
            log line or error message.
        model: The model to ask this endpoint for when the call names none; None uses the
            client's model.
        weight: Its share of calls under the "weighted" strategy (> 0).

    Raises:
        ConfigError: A bad URL or weight.
    """

    base_url: str
    api_key: str | None = dataclasses.field(default=None, repr=False)
    model: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", check_base_url(self.base_url))
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float):
            raise ConfigError(f"Endpoint weight must be a number; got {self.weight!r}")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ConfigError(f"Endpoint weight must be a finite number > 0; got {self.weight!r}")

    def __repr__(self) -> str:
        key = ", api_key=<set>" if self.api_key else ""
        model = f", model={self.model!r}" if self.model is not None else ""
        weight = f", weight={self.weight!r}" if self.weight != 1.0 else ""
        return f"Endpoint({self.base_url!r}{model}{weight}{key})"

    __str__ = __repr__


@dataclasses.dataclass(frozen=True)
class Cooldown:
    """When to skip an endpoint that keeps failing.

    Args:
        after: Consecutive retryable failures (connection errors, timeouts, 429, 5xx)
            that put an endpoint in cooldown (>= 1).
        seconds: How long it is skipped (>= 0; 0 turns cooldown off).

    Raises:
        ConfigError: A value out of range.
    """

    after: int = 3
    seconds: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.after, bool) or not isinstance(self.after, int) or self.after < 1:
            raise ConfigError(f"Cooldown after= must be an int >= 1; got {self.after!r}")
        if not (isinstance(self.seconds, int | float) and 0 <= self.seconds < math.inf):
            raise ConfigError(f"Cooldown seconds= must be finite and >= 0; got {self.seconds!r}")


class _Health:
    __slots__ = ("current", "failures", "until")

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0
        self.current = 0.0  # smooth weighted round robin's running score


class Router:
    """Picks the endpoint of each attempt and tracks each endpoint's health.

    Shared by a client and the clients derived from it with the same endpoints.

    Args:
        endpoints: The endpoints (at least one).
        strategy: "fallback", "round_robin" or "weighted".
        cooldown: When to skip a failing endpoint.
        clock: The time source, in seconds (for tests).

    Raises:
        ConfigError: No endpoints, a non-`Endpoint` item, or an unknown strategy.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        strategy: Strategy = "fallback",
        cooldown: Cooldown | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(endpoints, Endpoint | str) or not isinstance(endpoints, Sequence):
            raise ConfigError("endpoints must be a list of surge.Endpoint")
        if not endpoints:
            raise ConfigError("endpoints must hold at least one surge.Endpoint")
        for i, item in enumerate(endpoints):
            if not isinstance(item, Endpoint):
                raise ConfigError(
                    f"endpoints[{i}] must be a surge.Endpoint, not {type(item).__name__}"
                )
        if strategy not in _STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(_STRATEGIES)}; got {strategy!r}")
        if cooldown is not None and not isinstance(cooldown, Cooldown):
            raise ConfigError(f"cooldown must be a surge.Cooldown, not {type(cooldown).__name__}")
        self.endpoints = tuple(endpoints)
        self.strategy: Strategy = strategy
        self.cooldown = cooldown if cooldown is not None else Cooldown()
        self._clock = clock
        self._health = [_Health() for _ in self.endpoints]
        self._turn = 0
        # Cool-downs shared with other processes (a `LimitsStore`'s), or None.
        self.shared: SharedHealth | None = None

    async def sync(self) -> None:
        """Learn the cool-downs other processes started (with a shared store)."""
        if self.shared is None or len(self.endpoints) < 2:
            return  # one endpoint is tried whatever its health
        left = await self.shared.cooling([e.base_url for e in self.endpoints])
        now = self._clock()
        for health, seconds in zip(self._health, left, strict=True):
            if seconds > 0:
                health.until = max(health.until, now + seconds)

    async def share_failure(self, index: int) -> None:
        """Tell other processes about a cool-down `failed` just started (with a shared store)."""
        if self.shared is not None and len(self.endpoints) > 1:
            await self.shared.cool_down(self.endpoints[index].base_url, self.cooldown.seconds)

    def plan(self) -> list[int]:
        """Return the order in which one call should try the endpoints (indices)."""
        n = len(self.endpoints)
        if n == 1 or self.strategy == "fallback":
            return list(range(n))
        if self.strategy == "round_robin":
            first = self._turn % n
            self._turn += 1
        else:
            first = self._smooth_weighted()
        rest = sorted((i for i in range(n) if i != first), key=lambda i: -self.endpoints[i].weight)
        return [first, *rest]

    def _smooth_weighted(self) -> int:
        total = 0.0
        best = 0
        for i, endpoint in enumerate(self.endpoints):
            health = self._health[i]
            health.current += endpoint.weight
            total += endpoint.weight
            if health.current > self._health[best].current:
                best = i
        self._health[best].current -= total
        return best

    def cooling(self, index: int) -> bool:
        """Whether endpoint `index` is in cooldown now."""
        return self._health[index].until > self._clock()

    def choose(self, plan: Sequence[int], tried: set[int], last: int | None) -> tuple[int, bool]:
        """Pick the endpoint of the next attempt.

        Args:
            plan: The call's order, from `plan()`.
            tried: Endpoints this call already tried.
            last: The endpoint of the previous attempt, if any.

        Returns:
            The endpoint's index, and whether it is new to this call (then no backoff is
            needed before trying it).
        """
        healthy = [i for i in plan if not self.cooling(i)]
        for i in healthy:
            if i not in tried:
                return i, True
        if healthy:
            if last is not None and last in plan:
                # Go round the plan, starting after the last endpoint tried.
                start = plan.index(last) + 1
                for i in [*plan[start:], *plan[:start]]:
                    if i in healthy:
                        return i, False
            return healthy[0], False
        soonest = min(plan, key=lambda i: self._health[i].until)
        return soonest, soonest not in tried

    def succeeded(self, index: int) -> None:
        """Record a success: the endpoint is healthy again."""
        health = self._health[index]
        health.failures = 0
        health.until = 0.0

    def failed(self, index: int) -> bool:
        """Record a retryable failure; start a cooldown after `Cooldown.after` in a row.

        Returns:
            True when this failure started (or extended) a cooldown.
        """
        health = self._health[index]
        health.failures += 1
        if health.failures >= self.cooldown.after and self.cooldown.seconds > 0:
            if len(self.endpoints) > 1 and not self.cooling(index):
                log.warning(
                    "surge: endpoint %s failed %d times in a row; skipping it for %g s",
                    self.endpoints[index].base_url,
                    health.failures,
                    self.cooldown.seconds,
                )
            health.until = self._clock() + self.cooldown.seconds
            return True
        return False

    def derive(
        self,
        *,
        base_url: str | None = None,
        endpoints: Sequence[Endpoint] | None = None,
        strategy: Strategy | None = None,
    ) -> Router:
        """Return the router of a derived client: this one (health shared) when unchanged.

        Args:
            base_url: One API root replacing the endpoints.
            endpoints: Other endpoints.
            strategy: Another strategy.

        Raises:
            ConfigError: Both `base_url` and `endpoints`, or a bad value.
        """
        if base_url is not None:
            if endpoints is not None:
                raise ConfigError("give either base_url= or endpoints=, not both")
            router = Router([Endpoint(base_url)], strategy or self.strategy, self.cooldown)
        elif endpoints is None and strategy is None:
            return self
        else:
            router = Router(
                self.endpoints if endpoints is None else endpoints,
                strategy or self.strategy,
                self.cooldown,
                self._clock,
            )
        router.shared = self.shared
        return router

    def __repr__(self) -> str:
        return f"Router({list(self.endpoints)!r}, strategy={self.strategy!r})"
