"""Typed prompt functions: a Python signature in, a validated value of its return type out.

```python
@client.function
async def extract_invoice(text: str, currency: Currency = "EUR") -> Invoice:
    '''Extract the invoice from the text below. Amounts in {currency}.

    {text}
    '''


invoice = await extract_invoice(email_text)  # an Invoice, validated
```

The function's body never runs: its docstring (dedented), or `prompt=`, is the template
(`surge._prompt_template`), its parameters fill it, and its return annotation is the output
type, asked for through `LLMClient.structured` (or `chat` for `str`). The decorated object
keeps the signature for type checkers (`ParamSpec`), so a wrong argument is a type error.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from surge._errors import ConfigError
from surge._prompt_template import Template
from surge._structured.modes import OutputMode
from surge._structured.run import StructuredResult
from surge._types import ChatResponse, MessageInput, dump_messages

__all__ = ["PromptClient", "PromptFunction", "RenderedPrompt", "function"]

P = ParamSpec("P")
R = TypeVar("R")

PromptSource = str | Callable[..., str | Sequence[MessageInput]]
"""A template string, or a function of the same parameters returning the prompt text (one
user message, taken literally) or the messages."""


class PromptClient(Protocol):
    """What a prompt function needs from a client (`LLMClient` is one)."""

    @property
    def model(self) -> str | None:
        """The default model."""
        ...

    async def chat(
        self, messages: Sequence[MessageInput] | str, *, model: str | None = None, **params: Any
    ) -> ChatResponse:
        """Ask for one chat completion."""
        ...

    async def structured_response(
        self,
        output_type: Any,
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None = None,
        max_retries: int = 2,
        model: str | None = None,
        **params: Any,
    ) -> StructuredResult[Any]:
        """Ask for a value of `output_type`."""
        ...

    def preview_structured(
        self,
        output_type: Any,
        messages: Sequence[MessageInput] | str,
        *,
        mode: OutputMode | None = None,
        model: str | None = None,
        **params: Any,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The messages and parameters `structured` would send first."""
        ...


@dataclass(frozen=True)
class RenderedPrompt:
    """What a prompt function would send, from `PromptFunction.render`.

    Attributes:
        messages: The messages, in OpenAI's shape, schema instructions included where the
            output mode writes them into the prompt.
        params: Every other request parameter: `model` (when one is known),
            `response_format` or `tools` as the output mode needs, and the decorator's.
    """

    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body of the request: `{"messages": ..., **params}`."""
        return {"messages": self.messages, **self.params}


class PromptFunction(Generic[P, R]):
    """An async function whose body is a prompt; made by `@client.function` or `surge.function`.

    Call it like the function it decorates: `await fn(...)` returns a value of the return
    annotation. `render(...)` shows what would be sent; `bind(client)` gives a copy that
    uses another client.
    """

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]],
        *,
        client: PromptClient | None,
        prompt: PromptSource | None,
        system: str | None,
        mode: OutputMode | None,
        max_retries: int,
        model: str | None,
        params: Mapping[str, Any],
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(
                f"{_name(fn)} must be an `async def` function (it is awaited like one)"
            )
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._signature = inspect.signature(fn)
        self.output_type: Any = _return_type(fn)
        """The type a call returns (the function's return annotation)."""
        self._client = client
        self._mode = mode
        self._max_retries = max_retries
        self._model = model
        self._params = dict(params)
        self._prompt_fn: Callable[..., str | Sequence[MessageInput]] | None = None
        self._template: Template | None = None
        names = list(self._signature.parameters)
        if callable(prompt):
            self._prompt_fn = prompt
            if system is not None:
                self._template = Template(f"[system]\n{system}", names)
        else:
            text = prompt if prompt is not None else inspect.getdoc(fn)
            if not text:
                raise ConfigError(
                    f"{_name(fn)} has no prompt: write it as the docstring or give prompt="
                )
            if system is not None:
                text = f"[system]\n{system}\n[user]\n{text}"
            self._template = Template(text, names)
        self._system = system
        self._prompt = prompt

    def bind(self, client: PromptClient) -> PromptFunction[P, R]:
        """Return the same prompt function calling through `client`."""
        return PromptFunction(
            self._fn,
            client=client,
            prompt=self._prompt,
            system=self._system,
            mode=self._mode,
            max_retries=self._max_retries,
            model=self._model,
            params=self._params,
        )

    def messages(self, *args: P.args, **kwargs: P.kwargs) -> list[dict[str, Any]]:
        """The prompt's messages for these arguments, before any output instructions.

        Raises:
            TypeError: The arguments do not fit the signature (as calling the function).
        """
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = bound.arguments
        out = self._template.render(values) if self._template is not None else []
        if self._prompt_fn is not None:
            made = self._prompt_fn(**values)
            out += dump_messages(made)
        return out

    def render(self, *args: P.args, **kwargs: P.kwargs) -> RenderedPrompt:
        """Return the exact messages and parameters a call with these arguments would send.

        For a structured output type that is its first request (in the mode the endpoint
        is known to accept, else the first one tried); nothing is sent.
        """
        client = self._bound_client()
        messages = self.messages(*args, **kwargs)
        model = self._model if self._model is not None else client.model
        params = {**({"model": model} if model is not None else {}), **self._params}
        if self.output_type is str:
            return RenderedPrompt(messages, params)
        sent, extra = client.preview_structured(
            self.output_type, messages, mode=self._mode, model=self._model, **self._params
        )
        return RenderedPrompt(sent, {**params, **extra})

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Render the prompt with these arguments, ask, and return the validated value.

        Raises:
            StructuredOutputError: No reply gave a valid value of the return type.
            APIStatusError, TransportError: As for `LLMClient.chat`.
        """
        client = self._bound_client()
        messages = self.messages(*args, **kwargs)
        if self.output_type is str:
            response = await client.chat(messages, model=self._model, **self._params)
            return typing.cast("R", response.text)
        result = await client.structured_response(
            self.output_type,
            messages,
            mode=self._mode,
            max_retries=self._max_retries,
            model=self._model,
            **self._params,
        )
        return typing.cast("R", result.value)

    def _bound_client(self) -> PromptClient:
        if self._client is None:
            raise ConfigError(
                f"{_name(self._fn)} is not bound to a client: decorate it with "
                f"@client.function, or call {_name(self._fn)}.bind(client) first"
            )
        return self._client

    def __repr__(self) -> str:
        return f"<prompt function {_name(self._fn)}{self._signature}>"


def _name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else repr(fn)


def _return_type(fn: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # a name in an annotation that is not defined where fn is
        raise ConfigError(
            f"cannot resolve the annotations of {_name(fn)}: {exc}; define the types it "
            f"names at module level"
        ) from None
    if "return" not in hints:
        raise ConfigError(
            f"{_name(fn)} needs a return annotation: it is the type the call returns "
            f"(-> str for plain text)"
        )
    return hints["return"]


@overload
def function(
    fn: Callable[P, Awaitable[R]],
    /,
) -> PromptFunction[P, R]: ...


@overload
def function(
    fn: None = None,
    /,
    *,
    client: PromptClient | None = None,
    prompt: PromptSource | None = None,
    system: str | None = None,
    mode: OutputMode | None = None,
    max_retries: int = 2,
    model: str | None = None,
    **params: Any,
) -> Callable[[Callable[P, Awaitable[R]]], PromptFunction[P, R]]: ...


def function(
    fn: Callable[P, Awaitable[R]] | None = None,
    /,
    *,
    client: PromptClient | None = None,
    prompt: PromptSource | None = None,
    system: str | None = None,
    mode: OutputMode | None = None,
    max_retries: int = 2,
    model: str | None = None,
    **params: Any,
) -> PromptFunction[P, R] | Callable[[Callable[P, Awaitable[R]]], PromptFunction[P, R]]:
    """Turn an `async def` with a prompt for a docstring into a typed prompt function.

    Use bare (`@surge.function`, bound later with `.bind(client)`) or with arguments
    (`@surge.function(client=client, temperature=0)`); `@client.function` is the same,
    bound to that client.

    Args:
        fn: The function (when used bare).
        client: The client that sends the calls; None: bind one later with `.bind`.
        prompt: The template instead of the docstring, or a function of the same
            parameters returning the prompt text or the messages.
        system: A system message (a template too) put before the prompt.
        mode: The structured-output mode ("json_schema", "tools", "prompt"); None lets
            the endpoint decide, as for `LLMClient.structured`.
        max_retries: Re-asks after a reply that does not validate.
        model: The model (default: the client's).
        **params: Other chat-completion parameters sent with every call
            (`temperature=0`, `max_tokens=...`, `timeout=`, `deadline=`, ...).

    Returns:
        The `PromptFunction`, or a decorator that makes one.

    Raises:
        ConfigError: At decoration: no prompt, a placeholder that names no parameter,
            no return annotation, or a function that is not `async def`.
    """

    def decorate(f: Callable[P, Awaitable[R]]) -> PromptFunction[P, R]:
        return PromptFunction(
            f,
            client=client,
            prompt=prompt,
            system=system,
            mode=mode,
            max_retries=max_retries,
            model=model,
            params=params,
        )

    return decorate if fn is None else decorate(fn)
