"""A simulated OpenAI-compatible server for tests, demos and benchmarks.

```python
from surge.testing import Failure, SimulatedServer

with SimulatedServer(latency=0.2, slots=4, failures=Failure.status(429, first=1)) as server:
    ...  # point any OpenAI-compatible client at server.url
```

See docs/testing.md. This package needs hypercorn (`pip install surge[sim]`); the core
library never imports it.
"""

from __future__ import annotations

from surge.testing._failures import Failure, FailureKind
from surge.testing._latency import Latency, lognormal, uniform
from surge.testing._replies import ChatRequest, Reply, ReplyFunction, ReplyValue, ToolCall
from surge.testing._server import SimulatedServer
from surge.testing._stats import ServerStats

__all__ = [
    "ChatRequest",
    "Failure",
    "FailureKind",
    "Latency",
    "Reply",
    "ReplyFunction",
    "ReplyValue",
    "ServerStats",
    "SimulatedServer",
    "ToolCall",
    "lognormal",
    "uniform",
]
