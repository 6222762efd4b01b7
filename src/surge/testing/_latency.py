"""Latency distributions for the simulated server: callables sampled once per request."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from surge._errors import ConfigError

__all__ = ["Latency", "latency_sampler", "lognormal", "uniform"]

Latency = float | Callable[[], float]
"""Seconds before the first byte: a fixed number, or a callable sampled per request."""


def uniform(low: float, high: float, *, seed: int | None = None) -> Callable[[], float]:
    """Latency drawn uniformly between `low` and `high` seconds.

    Args:
        low: The shortest latency, in seconds (>= 0).
        high: The longest latency, in seconds (>= low).
        seed: Seed of the generator, for a reproducible sequence; None = random.

    Returns:
        A callable returning one latency per call.

    Raises:
        ConfigError: The bounds are negative or reversed.
    """
    if not (0 <= low <= high) or math.isinf(high):
        raise ConfigError(f"uniform(low, high) needs 0 <= low <= high < inf, got {low}, {high}")
    rng = random.Random(seed)

    def sample() -> float:
        return rng.uniform(low, high)

    return sample


def lognormal(median: float, sigma: float, *, seed: int | None = None) -> Callable[[], float]:
    """Latency drawn from a log-normal distribution, the usual shape of LLM response times.

    Args:
        median: The median latency, in seconds (> 0).
        sigma: The standard deviation of the latency's logarithm (>= 0); 0.5 gives a p99
            about 3.2 times the median.
        seed: Seed of the generator, for a reproducible sequence; None = random.

    Returns:
        A callable returning one latency per call.

    Raises:
        ConfigError: `median` is not positive or `sigma` is negative.
    """
    if not median > 0 or not sigma >= 0 or math.isinf(median):
        raise ConfigError(f"lognormal(median, sigma) needs median > 0, sigma >= 0, got {median}")
    rng = random.Random(seed)
    mu = math.log(median)

    def sample() -> float:
        return rng.lognormvariate(mu, sigma)

    return sample


def latency_sampler(latency: Latency) -> Callable[[], float]:
    """Turn a `Latency` setting into a callable that returns a checked number of seconds.

    Args:
        latency: A fixed number of seconds or a callable.

    Returns:
        A callable returning seconds >= 0.

    Raises:
        ConfigError: A fixed latency is negative or not a number, or `latency` is neither.
    """
    if callable(latency):
        user = latency

        def checked() -> float:
            value = user()
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"latency callable returned {value!r}; expected seconds >= 0")
            return float(value)

        return checked
    if isinstance(latency, bool) or not isinstance(latency, (int, float)):
        raise ConfigError(f"latency must be seconds or a callable, not {type(latency).__name__}")
    if not 0 <= latency < math.inf:
        raise ConfigError(f"latency must be finite seconds >= 0, got {latency}")
    fixed = float(latency)
    return lambda: fixed
