"""Streaming chat completions: server-sent events, typed chunks, partial typed values.

- `sse.py`: the WHATWG event-stream decoder (bytes in, events out).
- `chunks.py`: `StreamChunk`, and the assembly of a stream into its `ChatResponse`.
- `stream.py`: `ChatStream`, what `LLMClient.stream` returns.
- `structured.py`: `stream_structured` and `stream_items`, partial typed values in linear
  time (on `surge._parsing._incremental.PartialReader`).
"""

from __future__ import annotations

__all__: list[str] = []
