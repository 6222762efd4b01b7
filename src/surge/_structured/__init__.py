"""Structured outputs: asking for a type in one of three modes and reading it back.

`run` drives a call (modes, fallbacks, re-asks); `plan` computes once per type what is sent
and how the reply is read; `strict` makes OpenAI-strict schemas; `schema_prompt` writes a
schema compactly into a prompt; `modes` remembers what each endpoint accepts; `failures`
tells apart how a request fails (and holds `StructuredOutputError`); `reading` reads one
reply. The text is read by the parser (`surge._parsing`), which knows nothing of this layer.
"""
