"""Checked by `mypy --strict --warn-unused-ignores tests/typing` in CI (.ci/run), not run.

A prompt function keeps its signature: right calls type-check to the return annotation, and
each wrong call below must stay an error (its `type: ignore` would otherwise be unused, which
`--warn-unused-ignores` reports).
"""

from __future__ import annotations

from pydantic import BaseModel

import surge


class Invoice(BaseModel):
    number: str
    total: float


client = surge.LLMClient(base_url="http://127.0.0.1:8080/v1")


@client.function
async def extract(text: str, currency: str = "EUR") -> Invoice:
    """Extract the invoice from {text}; amounts in {currency}."""
    raise NotImplementedError  # never runs: mypy would call a docstring-only body empty


@client.function(temperature=0, mode="tools")
async def summarise(text: str, words: int = 20) -> str:
    """Summarise in {words} words: {text}"""
    raise NotImplementedError


@surge.function
async def unbound(text: str) -> list[Invoice]:
    """{text}"""
    raise NotImplementedError


async def right() -> None:
    invoice: Invoice = await extract("...")
    invoice = await extract("...", currency="USD")
    summary: str = await summarise("...", words=5)
    invoices: list[Invoice] = await unbound.bind(client)("...")
    rendered: surge.RenderedPrompt = extract.render("...", "USD")
    print(invoice, summary, invoices, rendered.body)


async def wrong() -> None:
    await extract(42)  # type: ignore[arg-type]
    await extract("...", curency="USD")  # type: ignore[call-arg]
    await summarise("...", words="five")  # type: ignore[arg-type]
    wrong_type: int = await summarise("...")  # type: ignore[assignment]
    extract.render()  # type: ignore[call-arg]
    print(wrong_type)
