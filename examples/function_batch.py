"""Typed prompt functions in a batch: 200 reviews classified at once, a `Literal` out.

`@surge.function` defines the function once, unbound; `.bind(client)` gives it a client.
Calls run concurrently through the client's pool like any other call.

    python examples/function_batch.py
"""

from __future__ import annotations

import asyncio
from typing import Literal

import surge
from surge.testing import ChatRequest, SimulatedServer

Sentiment = Literal["positive", "negative", "neutral"]


@surge.function(mode="prompt", max_tokens=5)
async def sentiment(review: str, product: str = "headphones") -> Sentiment:
    """Is this review of our {product} positive, negative or neutral?

    Review: {review}
    """
    raise NotImplementedError  # never runs


def classifier(request: ChatRequest) -> str:
    text = request.last_user_message.split("Review:", 1)[1]
    if "love" in text:
        return "Positive."
    return '"negative"' if "broke" in text else "neutral"


REVIEWS = ["I love them", "They broke after a week", "They are headphones"] * 67


async def main() -> None:
    async with (
        SimulatedServer(reply=classifier, latency=0.2) as server,
        surge.LLMClient(base_url=server.url) as client,
    ):
        classify = sentiment.bind(client)
        labels = await asyncio.gather(*(classify(review) for review in REVIEWS))
        counts = {label: labels.count(label) for label in ("positive", "negative", "neutral")}
        print(
            f"{len(labels)} reviews: {counts}; server peak in flight {server.stats.peak_in_flight}"
        )
        assert counts == {"positive": 67, "negative": 67, "neutral": 67}


if __name__ == "__main__":
    asyncio.run(main())
