"""Reading a JSON document as it streams in, in time linear in its length.

`surge.parse(prefix, T, partial=True)` on every prefix of a stream costs O(n) per call and
O(n^2) in all. `PartialReader` keeps the reader's state between pieces instead: each piece
is scanned once (a token cut by a piece boundary, a number or an escape, is read again
when the next piece arrives), completed values are validated once, when they close, and
shared by every later partial value; a partial value only rebuilds the containers still
open around the end of the text (the spine), so it costs the depth of the document and
the width of the open containers, not its length.

What a partial value holds matches `surge.parse(..., partial=True)`: fields not seen yet
take their default, else `[]` for lists, `{}` for maps, `None` otherwise; a string being
written shows what arrived so far; a number or literal that may still grow is left out.

Text that is not clean JSON (single quotes, comments, a second document, prose with braces
before the JSON) makes the reader fall back to `surge.parse(text, T, partial=True)` on the
whole text, run again only when the text has grown by half since the last run, so that
even then the total work stays linear (at most three times the length, and once more
for `finish`).
"""

from __future__ import annotations

import re
from typing import Any

from surge._errors import OutputParseError
from surge._parsing._shapes import Shape, shape_of
from surge._parsing._targets import parse

__all__ = ["PartialReader"]

_KEY, _COLON, _VALUE, _COMMA = range(4)
_ABSENT: Any = object()
_WS = re.compile(r"[ \t\r\n]*")
_STR_RUN = re.compile(r'[^"\\]*')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_RUN = re.compile(r"[-+0-9.eE]+")
_OPENER = re.compile(r"[{\[]")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}
_REPARSE_GROWTH = 1.5


class _Frame:
    __slots__ = ("depth", "is_obj", "items", "key", "shape", "start", "state", "valid")

    def __init__(self, is_obj: bool, shape: Shape, depth: int, start: int) -> None:
        self.is_obj = is_obj
        self.shape = shape
        self.items: Any = {} if is_obj else []
        self.key: str | None = None
        self.state = _KEY if is_obj else _VALUE
        self.depth = depth
        self.start = start
        self.valid = True  # every value completed inside it validated


def _fits(shape: Shape, is_obj: bool) -> Shape:
    kind = shape.kind
    if is_obj and kind in ("model", "dict", "union", "any", "other"):
        return shape
    if not is_obj and kind in ("list", "any", "other"):
        return shape
    return shape_of(None)


class PartialReader:
    """A JSON document read piece by piece into partial values of a target type.

    Args:
        target: The type (or JSON Schema dict: values stay plain JSON) of the document.
            Its root must be an object or an array; text before the first `{` or `[`
            (prose, a markdown fence) is skipped, and so is anything after the root closes.

    Attributes:
        scanned: Characters examined so far: the work done, for tests of linearity.
        failed: The text stopped being clean JSON; partial values now come from the
            throttled re-parse (see the module docstring).
        items: For an array at the root, or directly inside the root object: each of its
            items that is complete and valid, in order (for `stream_items`).
        items_broken: An item of that array closed but did not validate; later items are
            not collected (the final parse decides).
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        self.shape = shape_of(target)
        self.scanned = 0
        self.failed = False
        self.items: list[Any] = []
        self.items_broken = False
        self._buf = ""
        self._offset = 0  # the text's position of _buf[0]
        self._stack: list[_Frame] = []
        self._root: Any = _ABSENT
        self._started = False
        self._str: list[str] | None = None
        self._str_key = False
        self._changed = False
        self._items_frame: _Frame | None = None
        self._pieces: list[str] = []  # every piece fed, for the fallback
        self._length = 0
        self._reparsed_at = 0
        self._fallback: Any = None

    @property
    def done(self) -> bool:
        """Whether the root value has closed."""
        return self._root is not _ABSENT

    def text(self) -> str:
        """All the text fed so far."""
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    def feed(self, piece: str) -> bool:
        """Read the next piece of text; return whether the partial value changed."""
        if not piece:
            return False
        self._pieces.append(piece)
        self._length += len(piece)
        if self.failed:
            return self._reparse(final=False)
        if self.done:
            return False
        buf = self._buf + piece if self._buf else piece
        self.scanned += len(buf)
        self._changed = False
        try:
            i = self._scan(buf)
        except ValueError:
            self.failed = True
            self._buf = ""
            return self._reparse(final=False)
        self._offset += i
        self._buf = buf[i:]
        return self._changed

    def finish(self) -> bool:
        """Say the text is complete; return whether the value changed.

        In fallback mode the whole text is parsed once more, so the value covers all of it.
        """
        return self._reparse(final=True) if self.failed else False

    def value(self) -> Any:
        """The partial value of what was read so far (None before the root opens)."""
        if self.failed:
            return self._fallback
        if self._root is not _ABSENT:
            return self._root
        if not self._stack:
            return None
        partial: Any = _ABSENT
        if self._str is not None and not self._str_key:
            top = self._stack[-1]
            shape = (
                top.shape.pick(top.items).child(top.key) if top.is_obj else top.shape.child(None)
            )
            if shape.kind in ("str", "any", "other"):
                partial = "".join(self._str)
        for frame in reversed(self._stack):
            partial = self._build(frame, partial)
        return partial

    # -- building values -----------------------------------------------------------------

    def _build(self, frame: _Frame, partial: Any) -> Any:
        if not frame.is_obj:
            items = frame.items
            return [*items, partial] if partial is not _ABSENT else list(items)
        written = frame.items
        if partial is not _ABSENT and frame.key is not None:
            written = {**written, frame.key: partial}
        shape = frame.shape.pick(written)
        if shape.kind == "model":
            return shape.build(written)
        return dict(written)

    def _complete(self, finished: tuple[Any, bool]) -> None:
        """A value closed: store it in the open container (or as the root)."""
        value, valid = finished
        self._changed = True
        if not self._stack:
            self._root = value
            return
        frame = self._stack[-1]
        if not valid:
            frame.valid = False
        if frame.is_obj:
            frame.items[frame.key] = value
            frame.key = None
        else:
            frame.items.append(value)
            if frame is self._items_frame and not self.items_broken:
                if valid:
                    self.items.append(value)
                else:
                    self.items_broken = True
        frame.state = _COMMA

    def _child_shape(self) -> Shape:
        if not self._stack:
            return self.shape
        frame = self._stack[-1]
        if frame.is_obj:
            return frame.shape.pick([*frame.items, frame.key or ""]).child(frame.key)
        return frame.shape.child(None)

    def _open(self, is_obj: bool, at: int) -> None:
        depth = len(self._stack)
        shape = _fits(self._child_shape(), is_obj)
        frame = _Frame(is_obj, shape, depth, self._offset + at)
        if not is_obj and self._items_frame is None and depth <= 1:
            parent = self._stack[-1] if self._stack else None
            if parent is None or parent.key == "value":
                self._items_frame = frame
        self._stack.append(frame)
        self._changed = True

    def _close(self) -> None:
        frame = self._stack.pop()
        shape = frame.shape.pick(frame.items) if frame.is_obj else frame.shape
        value, valid = shape.finish(frame.items)
        self._complete((value, valid and frame.valid))

    # -- the scanner ---------------------------------------------------------------------

    def _scan(self, buf: str) -> int:
        """Read `buf` as far as it goes; return how much was consumed.

        Raises:
            ValueError: The text is not clean JSON.
        """
        n = len(buf)
        i = 0
        while i < n:
            if self._str is not None:
                j = _STR_RUN.match(buf, i).end()  # type: ignore[union-attr]
                if j > i:
                    self._str.append(buf[i:j])
                    if not self._str_key:
                        self._changed = True
                    i = j
                if i >= n:
                    break
                if buf[i] == '"':
                    i += 1
                    self._end_string()
                    continue
                if i + 1 >= n:
                    break  # an escape cut by the piece boundary
                e = buf[i + 1]
                if e == "u":
                    if i + 6 > n:
                        break
                    code = int(buf[i + 2 : i + 6], 16)
                    if 0xD800 <= code < 0xDC00:
                        if i + 12 > n:
                            break
                        if buf[i + 6 : i + 8] == "\\u":
                            low = int(buf[i + 8 : i + 12], 16)
                            self._str.append(chr(0x10000 + ((code - 0xD800) << 10) + low - 0xDC00))
                            i += 12
                            continue
                        self._str.append("\ufffd")
                    else:
                        self._str.append(chr(code) if not 0xDC00 <= code < 0xE000 else "\ufffd")
                    i += 6
                else:
                    plain = _ESCAPES.get(e)
                    if plain is None:
                        raise ValueError(f"bad escape \\{e}")
                    self._str.append(plain)
                    i += 2
                if not self._str_key:
                    self._changed = True
                continue
            i = _WS.match(buf, i).end()  # type: ignore[union-attr]
            if i >= n:
                break
            c = buf[i]
            if not self._started:
                m = _OPENER.search(buf, i)
                if m is None:
                    return n
                self._started = True
                i = m.start()
                self._open(buf[i] == "{", i)
                i += 1
                continue
            if not self._stack:
                return n  # the root has closed: ignore the rest
            frame = self._stack[-1]
            state = frame.state
            if frame.is_obj and state != _VALUE:
                if state == _KEY and c == '"':
                    self._str, self._str_key = [], True
                elif state == _COLON and c == ":":
                    frame.state = _VALUE
                elif state == _COMMA and c == ",":
                    frame.state = _KEY
                elif c == "}" and state in (_KEY, _COMMA):
                    self._close()
                else:
                    raise ValueError(f"unexpected {c!r} in an object")
                i += 1
                continue
            if not frame.is_obj and state == _COMMA:
                if c == ",":
                    frame.state = _VALUE
                elif c == "]":
                    self._close()
                else:
                    raise ValueError(f"unexpected {c!r} in an array")
                i += 1
                continue
            # A value starts here.
            if c == '"':
                self._str, self._str_key = [], False
                self._changed = True
                i += 1
            elif c == "{" or c == "[":
                self._open(c == "{", i)
                i += 1
            elif c == "]" and not frame.is_obj:
                self._close()  # `[]`, or a trailing comma
                i += 1
            elif c == "-" or "0" <= c <= "9":
                end = _NUMBER_RUN.match(buf, i).end()  # type: ignore[union-attr]
                if end >= n:
                    break  # may still grow
                token = buf[i:end]
                if _NUMBER.fullmatch(token) is None:
                    raise ValueError(f"bad number {token!r}")
                number = float(token) if any(x in token for x in ".eE") else int(token)
                self._complete(self._child_shape().finish(number))
                i = end
            elif c in _LITERALS:
                word, literal = _LITERALS[c]
                if buf.startswith(word, i):
                    self._complete(self._child_shape().finish(literal))
                    i += len(word)
                elif word.startswith(buf[i:]):
                    break
                else:
                    raise ValueError(f"unexpected {buf[i : i + 8]!r}")
            else:
                raise ValueError(f"unexpected {c!r} where a value should start")
        return i

    def _end_string(self) -> None:
        assert self._str is not None
        text = "".join(self._str)
        self._str = None
        frame = self._stack[-1]
        if self._str_key:
            frame.key = text
            frame.state = _COLON
        else:
            self._complete(self._child_shape().finish(text))

    # -- the fallback --------------------------------------------------------------------

    def _reparse(self, *, final: bool) -> bool:
        if not final and self._length < self._reparsed_at * _REPARSE_GROWTH:
            return False
        self._reparsed_at = self._length
        text = self.text()
        self.scanned += len(text)
        try:
            value = parse(text, self.target, partial=True)
        except OutputParseError:
            return False
        if value is None or value == self._fallback:
            return False
        self._fallback = value
        return True
