"""`surge.httpx2_client()`: surge's pool for the SDKs on httpx2 (openai 3.x, pydantic-ai 2.x).

httpx2 is an optional extra (`pip install "surge[httpx2]"`, Python 3.11+): nothing here
imports it until a function is called, so `import surge` never loads it. The adapter that
puts surge's one transport inside an `httpx2.AsyncClient` is in `surge._httpx2_adapter`.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from surge._config import PoolConfig
from surge._errors import ConfigError

if TYPE_CHECKING:
    import httpx2

__all__ = ["httpx2_client", "is_httpx2_client", "require_httpx2"]

_MISSING = (
    "surge.httpx2_client needs the httpx2 package: "
    'pip install "surge[httpx2]" (Python 3.11+); for clients on httpx use surge.http_client()'
)


def require_httpx2() -> ModuleType:
    """Import and return the adapter module (and httpx2 with it).

    Raises:
        ConfigError: httpx2 is not installed; the message names the `surge[httpx2]` extra.
    """
    try:
        return importlib.import_module("surge._httpx2_adapter")
    except ImportError as exc:
        if exc.name not in ("httpx2", "httpcore2"):
            raise
        raise ConfigError(_MISSING) from None


def is_httpx2_client(client: object) -> bool:
    """Tell whether `client` is an `httpx2.AsyncClient`, without importing httpx2."""
    module = sys.modules.get("httpx2")
    return module is not None and isinstance(client, module.AsyncClient)


def httpx2_client(pool: PoolConfig | float | None = None, **pool_kwargs: Any) -> httpx2.AsyncClient:
    """Return an `httpx2.AsyncClient` whose transport is surge's connection pool.

    The same pool as `surge.http_client()` (same `PoolConfig`, the same `surge.Timings` in
    `response.extensions["surge.timings"]`), for the SDKs that take an httpx2 client:

    ```python
    from openai import AsyncOpenAI  # openai 3.x
    import surge

    client = AsyncOpenAI(http_client=surge.httpx2_client(max_connections=5000))
    ```

    Like any async HTTP client, it belongs to the event loop it is first used on.

    Args:
        pool: A ready `PoolConfig`. Give this or keyword arguments, not both.
        **pool_kwargs: `PoolConfig` fields, e.g. `max_connections=5000, http2=True`.

    Returns:
        A new `httpx2.AsyncClient`; close it with `await client.aclose()`.

    Raises:
        ConfigError: httpx2 is not installed (`pip install "surge[httpx2]"`), both `pool`
            and keyword arguments were given, or an unknown keyword.
        pydantic.ValidationError: A value is out of range.
    """
    config = PoolConfig.from_kwargs(pool, pool_kwargs)
    adapter = require_httpx2()
    from surge._http import pool_transport

    module: Any = sys.modules["httpx2"]
    client: httpx2.AsyncClient = module.AsyncClient(
        transport=adapter.Httpx2Transport(pool_transport(config)),
        timeout=module.Timeout(
            connect=config.connect, read=config.read, write=config.write, pool=config.pool
        ),
        # As for http_client: the pool does TLS itself and honours no environment proxies.
        trust_env=False,
    )
    return client
