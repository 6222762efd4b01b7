"""Prompt templates: `{name}` placeholders, role sections and images, compiled once.

A template is read once, when a prompt function is decorated: it is split into messages at
role lines (`[system]`, `[user]`, `[assistant]` alone on a line) and each message into
literal text and placeholders. Rendering then joins the pieces with the arguments' text in
one pass, so an argument is never read as template syntax: braces, `{name}` or a role line
inside a value stay text.

The syntax, in full:
- `{name}` is replaced by the argument `name` (an identifier; any other brace is text, so
  JSON examples in a prompt need no escaping);
- `{{name}}` is the literal text `{name}`;
- a line that is exactly `[system]`, `[user]` or `[assistant]` starts a message with that
  role; text before the first such line is a user message (or the only one).
"""

from __future__ import annotations

import base64
import enum
import mimetypes
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
import pydantic_core

from surge._errors import ConfigError

__all__ = ["Image", "Template", "render_value"]

Role = Literal["system", "user", "assistant"]

_ROLE_LINE = re.compile(r"^[ \t]*\[(system|user|assistant)\][ \t]*$", re.MULTILINE | re.IGNORECASE)
_PIECE = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Image:
    """An image for a prompt: a parameter typed `surge.Image` becomes an image content part.

    Attributes:
        url: An `https://` URL the server fetches, or a `data:` URL holding the image.
        detail: OpenAI's `detail` hint ("auto", "low" or "high"); None sends none.
    """

    url: str
    detail: Literal["auto", "low", "high"] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(
            ("http://", "https://", "data:")
        ):
            raise ConfigError(
                f"Image(url=...) takes an http(s):// or data: URL, not {self.url!r:.80}"
            )

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str = "image/png") -> Image:
        """Return an image sent inline as a `data:` URL.

        Args:
            data: The encoded image (PNG, JPEG, ...).
            media_type: Its MIME type.
        """
        return cls(f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}")

    @classmethod
    def from_path(cls, path: str | Path, media_type: str | None = None) -> Image:
        """Return the image in a file, sent inline; the type is guessed from the name if None.

        Raises:
            ConfigError: The type cannot be guessed from the file name.
        """
        path = Path(path)
        media_type = media_type or mimetypes.guess_type(path.name)[0]
        if media_type is None or not media_type.startswith("image/"):
            raise ConfigError(f"cannot tell the image type of {path.name!r}; give media_type=")
        return cls.from_bytes(path.read_bytes(), media_type)

    def content_part(self) -> dict[str, Any]:
        """The image as an OpenAI chat content part."""
        image_url: dict[str, Any] = {"url": self.url}
        if self.detail is not None:
            image_url["detail"] = self.detail
        return {"type": "image_url", "image_url": image_url}

    def __repr__(self) -> str:
        url = self.url if len(self.url) <= 60 else f"{self.url[:40]}...({len(self.url)} chars)"
        return f"Image(url={url!r})"


def render_value(value: Any) -> str:
    """The text an argument stands for in a prompt.

    Strings as they are; enums by value; pydantic models, dataclasses, lists, dicts, numbers,
    booleans and None as compact JSON (so `True` is `true`, as a model reads JSON).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, enum.Enum):
        value = value.value
        if isinstance(value, str):
            return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    return pydantic_core.to_json(value).decode()


@dataclass(frozen=True, slots=True)
class _Message:
    role: Role
    pieces: tuple[str | tuple[str], ...]  # literal text, or (name,) for a placeholder


class Template:
    """A prompt template compiled once; `render` fills it with arguments.

    Args:
        text: The template (see the module docstring for the syntax).
        names: The names a placeholder may use (the function's parameters).

    Raises:
        ConfigError: A placeholder names no parameter, or the template has no text.
    """

    __slots__ = ("_messages", "fields")

    def __init__(self, text: str, names: Collection[str]) -> None:
        sections: list[tuple[Role, str]] = []
        role: Role = "user"
        start = 0
        for match in _ROLE_LINE.finditer(text):
            sections.append((role, text[start : match.start()]))
            role = match.group(1).lower()  # type: ignore[assignment]
            start = match.end()
        sections.append((role, text[start:]))
        messages = []
        fields: list[str] = []
        for role, body in sections:
            body = body.strip("\n")
            if not body.strip():
                continue
            pieces = _compile(body)
            for piece in pieces:
                if isinstance(piece, tuple) and piece[0] not in fields:
                    fields.append(piece[0])
            messages.append(_Message(role, pieces))
        unknown = [f for f in fields if f not in names]
        if unknown:
            known = ", ".join(names) or "none"
            raise ConfigError(
                f"the prompt names {', '.join('{' + u + '}' for u in unknown)}, which "
                f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} "
                f"of the function (its parameters: {known}); write {{{{name}}}} for a literal "
                f"{{name}}"
            )
        if not messages:
            raise ConfigError("the prompt template is empty")
        self._messages = tuple(messages)
        self.fields: tuple[str, ...] = tuple(fields)
        """The parameters the template uses, in order of first use."""

    def render(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Fill the template with `values` and return the messages, in OpenAI's shape.

        A message that holds an `Image` (or a list of them) becomes a list of content
        parts; any other message's content is one string.
        """
        out: list[dict[str, Any]] = []
        for message in self._messages:
            parts: list[dict[str, Any]] = []
            text: list[str] = []
            for piece in message.pieces:
                if isinstance(piece, str):
                    text.append(piece)
                    continue
                value = values[piece[0]]
                images = _images(value)
                if images is None:
                    text.append(render_value(value))
                    continue
                if text:
                    parts.append({"type": "text", "text": "".join(text)})
                    text = []
                parts.extend(image.content_part() for image in images)
            if not parts:
                out.append({"role": message.role, "content": "".join(text)})
                continue
            if text:
                parts.append({"type": "text", "text": "".join(text)})
            if message.role != "user":
                raise ConfigError(f"images can only go in a user message, not a {message.role}")
            out.append({"role": message.role, "content": parts})
        return out


def _compile(body: str) -> tuple[str | tuple[str], ...]:
    pieces: list[str | tuple[str]] = []
    literal: list[str] = []
    at = 0
    for match in _PIECE.finditer(body):
        literal.append(body[at : match.start()])
        at = match.end()
        escaped, name = match.groups()
        if escaped is not None:
            literal.append("{" + escaped + "}")
            continue
        if literal and "".join(literal):
            pieces.append("".join(literal))
        literal = []
        pieces.append((name,))
    literal.append(body[at:])
    if "".join(literal):
        pieces.append("".join(literal))
    return tuple(pieces)


def _images(value: Any) -> list[Image] | None:
    if isinstance(value, Image):
        return [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, Image) for v in value):
        return list(value)
    return None
