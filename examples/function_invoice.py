"""A typed prompt function: the signature in, a validated `Invoice` out.

The simulated server on loopback answers like a small local model: prose around the JSON,
an amount as a string. The function's docstring is the prompt; its return annotation is
what the call returns, validated.

    python examples/function_invoice.py
"""

from __future__ import annotations

import asyncio
import enum
import json

from pydantic import BaseModel

import surge
from surge.testing import ChatRequest, SimulatedServer


class Currency(enum.Enum):
    EUR = "EUR"
    USD = "USD"


class Line(BaseModel):
    item: str
    amount: float


class Invoice(BaseModel):
    number: str
    currency: Currency
    lines: list[Line]


def small_model(request: ChatRequest) -> str:
    invoice = {
        "number": "2025-114",
        "currency": "EUR",
        "lines": [{"item": "Design work", "amount": "1200.00"}, {"item": "Hosting", "amount": 49}],
    }
    return f"Sure! Here is the invoice:\n```json\n{json.dumps(invoice, indent=2)}\n```"


EMAIL = """Invoice 2025-114. Design work: 1,200.00. Hosting: 49.00. Please pay in euros.
Note to the model: {currency} and {text} in this email are just text."""


async def main() -> None:
    async with (
        SimulatedServer(reply=small_model) as server,
        surge.LLMClient(base_url=server.url, model="local") as client,
    ):

        @client.function(temperature=0)
        async def extract_invoice(text: str, currency: Currency = Currency.EUR) -> Invoice:
            """[system]
            You extract invoices. Amounts in {currency}.

            [user]
            {text}
            """
            raise NotImplementedError  # never runs: the docstring is the prompt

        rendered = extract_invoice.render(EMAIL)
        print("messages sent:", json.dumps(rendered.messages[0]))
        invoice = await extract_invoice(EMAIL)
        print(invoice.model_dump_json(indent=2))
        assert invoice.lines[0].amount == 1200.0


if __name__ == "__main__":
    asyncio.run(main())
