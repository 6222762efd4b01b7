"""surge's connection pool and everything under it: it moves HTTP requests, nothing more.

The layers, top to bottom: `pool.PoolTransport` (the httpx transport), `origin.Origin`
(one origin's connections, streams and waiters), `h1`/`h2` (one connection), `h1_parser`
(sans-IO HTTP/1.1), `h2_protocol` (sans-IO HTTP/2), and `backend*` (clocks, timers and
sockets on asyncio or trio). It knows nothing of LLMs, JSON or pydantic models, so any httpx
user can run on it; the wall is kept by tests/test_walls.py. See docs/architecture.md.
"""
