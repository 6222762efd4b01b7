"""Type-checked, never run, in the dropin-current env: see README.md beside it."""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import surge

provider = OpenAIProvider(
    base_url="http://127.0.0.1:8000/v1", api_key="sk-test", http_client=surge.httpx2_client()
)
agent: Agent[None, str] = Agent(OpenAIChatModel("m", provider=provider))
