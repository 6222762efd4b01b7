"""Type-checked, never run, in the dropin-current env: see README.md beside it."""

from __future__ import annotations

import httpx2
from openai import AsyncOpenAI

import surge

http: httpx2.AsyncClient = surge.httpx2_client(max_connections=5000)
client = AsyncOpenAI(base_url="http://127.0.0.1:8000/v1", api_key="sk-test", http_client=http)
inline = AsyncOpenAI(api_key="sk-test", http_client=surge.httpx2_client())
llm = surge.LLMClient(base_url="http://127.0.0.1:8000/v1", http_client=surge.httpx2_client())
# The httpx flavour is what openai 3.x rejects: --warn-unused-ignores fails the day it is not.
legacy = AsyncOpenAI(api_key="sk-test", http_client=surge.http_client())  # type: ignore[arg-type]
