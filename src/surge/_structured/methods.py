"""`LLMClient`'s structured-output calls: `structured`, `structured_response`, `preview_structured`.

A mixin of `LLMClient` (src/surge/_client.py), so the client's module holds only its own
floor. Each method is typed on `self` by the small protocol of what it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, overload

from surge._structured.modes import ModeMemory, OutputMode
from surge._structured.run import ChatCaller, StructuredResult, preview_request, run_structured
from surge._types import MessageInput

__all__ = ["StructuredMethods"]

T = TypeVar("T")


class _Host(ChatCaller, Protocol):
    _modes: ModeMemory


class StructuredMethods:
    """Typed outputs: ask for a type, get it validated (see docs/structured-outputs.md)."""

    @overload
    async def structured(
        self: _Host,
        output_type: type[T],
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None = None,
        max_retries: int = 2,
        model: str | None = None,
        **params: Any,
    ) -> T: ...

    @overload
    async def structured(
        self: _Host,
        output_type: Any,
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None = None,
        max_retries: int = 2,
        model: str | None = None,
        **params: Any,
    ) -> Any: ...

    async def structured(
        self: _Host,
        output_type: Any,
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None = None,
        max_retries: int = 2,
        model: str | None = None,
        **params: Any,
    ) -> Any:
        """Ask for output of a given type and return it validated.

        Args:
            output_type: A pydantic model, any type pydantic's `TypeAdapter` accepts
                (`list[Item]`, a union, an enum, `Literal[...]`), or a JSON Schema dict.
            messages: The conversation, as for `chat`.
            mode: "json_schema", "tools" or "prompt"; None picks per endpoint and falls
                back when a server rejects a mode (see docs/structured-outputs.md).
            max_retries: How many times to re-ask, showing the model its error, when the
                answer cannot be parsed or validated.
            model: The model for this call (default: the client's).
            **params: Other chat-completion parameters, as for `chat`.

        Returns:
            The validated value (an instance of `output_type`; plain JSON for a schema dict).

        Raises:
            OutputParseError: No attempt produced a valid value; carries every attempt.
            APIStatusError, TransportError, ResponseFormatError: as for `chat`.
        """
        result = await StructuredMethods.structured_response(
            self, output_type, messages, mode=mode, max_retries=max_retries, model=model, **params
        )
        return result.value

    async def structured_response(
        self: _Host,
        output_type: Any,
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None = None,
        max_retries: int = 2,
        model: str | None = None,
        **params: Any,
    ) -> StructuredResult[Any]:
        """Like `structured`, but also return every `ChatResponse`, the attempts and usage.

        Returns:
            A `StructuredResult` with `.value`, `.responses`, `.attempts`, `.usage` (summed
            over every attempt) and `.mode` (the mode that produced the value).
        """
        return await run_structured(
            self,
            output_type,
            messages,
            mode=mode,
            max_retries=max_retries,
            model=model,
            params=params,
            memory=self._modes,
        )

    def preview_structured(
        self: _Host,
        output_type: Any,
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None = None,
        model: str | None = None,
        **params: Any,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Return the messages and parameters `structured` would send first; send nothing.

        For tests and debugging: the schema instructions as written into the prompt and
        the `response_format` or `tools` of the mode the endpoint is known to accept (the
        first one tried when none is known yet).

        Raises:
            ConfigError: As for `structured`.
        """
        return preview_request(
            self, output_type, messages, mode=mode, model=model, params=params, memory=self._modes
        )
