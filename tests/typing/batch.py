"""`client.map` and `client.map_as_completed` keep the function's result type."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

import surge
from surge._batch import AsCompleted


async def length(text: str) -> int:
    return len(text)


async def main(client: surge.LLMClient) -> None:
    assert_type(await client.map(length, ["a", "bb"]), list[int])
    async for index, result in client.map_as_completed(length, ["a", "bb"]):
        assert_type(index, int)
        assert_type(result, int)
    # With return_exceptions=True a result may be an exception: typed Any.
    assert_type(
        client.map_as_completed(length, ["a"], return_exceptions=True),
        AsCompleted[Any],
    )
    # A prompt template string: the replies are typed Any.
    assert_type(client.map_as_completed("Say {item}", ["a"]), AsCompleted[Any])
