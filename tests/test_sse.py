"""The SSE decoder and the chunk assembly: pure logic, no network (so no event loop)."""

from __future__ import annotations

import json

import pytest

import surge
from surge._streaming.chunks import Assembler, decode_event
from surge._streaming.sse import ServerSentEvent, SSEDecoder


def decode_all(pieces: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    out: list[ServerSentEvent] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    out.extend(decoder.close())
    return out


STREAM = (
    "\ufeff: a comment\r\n"
    "event: delta\r\n"
    "id: 7\r\n"
    "retry: 1500\r\n"
    'data: {"text": "h\u00e9llo \u2603 \U0001f600"}\r\n'
    "\r\n"
    "data: first line\n"
    "data:second line\n"
    "data\n"
    "\n"
    "id: bad\x00id\r"
    "data: after a CR\r"
    "\r"
    "event: ignored-without-data\n"
    "\n"
    "unknown: field\n"
    "data: [DONE]\n"
    "\n"
).encode()

EXPECTED = [
    ServerSentEvent('{"text": "h\u00e9llo \u2603 \U0001f600"}', "delta", "7", 1500),
    ServerSentEvent("first line\nsecond line\n", "message", "7", None),
    ServerSentEvent("after a CR", "message", "7", None),
    ServerSentEvent("[DONE]", "message", "7", None),
]


def test_whatwg_fields_comments_and_line_ends() -> None:
    assert decode_all([STREAM]) == EXPECTED


def test_every_split_point_gives_the_same_events() -> None:
    # Every cut: inside CRLF, inside the BOM, inside each multi-byte UTF-8 character.
    for cut in range(len(STREAM) + 1):
        assert decode_all([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_one_byte_at_a_time() -> None:
    assert decode_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_three_way_splits_inside_a_four_byte_character() -> None:
    data = "data: \U0001f600!\n\n".encode()
    start = data.index(b"\xf0")
    for a in range(start, start + 4):
        for b in range(a, start + 5):
            events = decode_all([data[:a], data[a:b], data[b:]])
            assert [e.data for e in events] == ["\U0001f600!"], (a, b)


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert [e.data for e in decode_all([b"data: a\xffb\n\n"])] == ["a\ufffdb"]


def test_cr_then_lf_in_the_next_read_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    # The CR ended the data line at once; the blank line needs one more line end.
    events = decoder.feed(b"\n\r")
    assert [e.data for e in events] == ["x"]


def test_an_event_dispatches_as_soon_as_its_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.pending
    assert [e.data for e in decoder.feed(b"\n")] == ["a"]
    assert not decoder.pending


def test_last_event_id_and_retry_are_kept() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 3\nretry: x1\nretry: 250\ndata: a\n\n")
    assert (decoder.last_event_id, decoder.retry) == ("3", 250)


def chunk_event(**delta: object) -> str:
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 5,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
    )


def test_tool_call_fragments_assemble_into_the_final_response() -> None:
    assembler = Assembler()
    events = [
        chunk_event(role="assistant", content=None),
        chunk_event(
            tool_calls=[{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f"}}]
        ),
        chunk_event(tool_calls=[{"index": 0, "function": {"arguments": '{"x": '}}]),
        chunk_event(
            tool_calls=[{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}]
        ),
        chunk_event(tool_calls=[{"index": 0, "function": {"arguments": "1}"}}]),
    ]
    for data in events:
        for chunk in decode_event(data, "http://x"):
            assembler.add(chunk)
    final = json.dumps(
        {
            "id": "c1",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
        }
    )
    usage = json.dumps(
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "total_tokens": 9}}
    )
    for data in (final, usage):
        for chunk in decode_event(data, "http://x"):
            assembler.add(chunk)
    response = assembler.response()
    assert [(c.id, c.function.name, c.function.arguments) for c in response.tool_calls] == [
        ("call_a", "f", '{"x": 1}'),
        ("call_b", "g", "{}"),
    ]
    assert response.message.content is None
    assert response.finish_reason == "tool_calls"
    assert response.usage == surge.Usage(prompt_tokens=3, completion_tokens=0, total_tokens=9)
    assert (response.id, response.model, response.created) == ("c1", "m", 5)
    assert assembler.tool_arguments(0) == '{"x": 1}'


def test_an_error_event_raises_a_typed_error_naming_the_message() -> None:
    data = json.dumps({"error": {"message": "slow down", "code": 429}})
    with pytest.raises(surge.RateLimitError, match="error in the stream: slow down") as info:
        decode_event(data, "http://x/v1/chat/completions")
    assert info.value.status_code == 429
    with pytest.raises(surge.ServerError, match="model crashed"):
        decode_event(json.dumps({"error": "model crashed"}), "http://x")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("not json", "not JSON"),
        ("[1]", "a JSON list"),
        ('{"id": 1}', "no choices"),
        ('{"choices": [5]}', "a choice that is not an object"),
        # A hostile or broken server: each shape on the one-choice path and on the general
        # one (two choices, or usage beside them), never an untyped TypeError.
        ('{"choices": [{"delta": ["content"]}]}', "a delta that is not an object"),
        ('{"choices": [{"delta": 5}]}', "a delta that is not an object"),
        ('{"choices": [{"delta": {"content": 5}}]}', "content is not a string"),
        ('{"choices": [{"delta": {"content": [], "role": "x"}}]}', "content is not a string"),
        ('{"choices": [{"delta": 5}, {}]}', "a delta that is not an object"),
        ('{"choices": [{"delta": {"content": 5}}], "usage": {}}', "content is not a string"),
    ],
)
def test_a_malformed_event_is_a_response_format_error(data: str, why: str) -> None:
    with pytest.raises(surge.ResponseFormatError, match=why):
        decode_event(data, "http://x")


def test_llama_cpp_usage_chunk_keeps_its_timings() -> None:
    data = json.dumps(
        {
            "choices": [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            "timings": {"predicted_ms": 1.5},
        }
    )
    [chunk] = decode_event(data, "http://x")
    assert chunk.content is None
    assert chunk.usage == surge.Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)
    assert chunk.raw["timings"] == {"predicted_ms": 1.5}


def test_a_leading_byte_order_mark_is_dropped_wherever_the_read_cuts_it() -> None:
    data = b"\xef\xbb\xbfdata: x\n\n"
    for cut in range(len(data) + 1):
        assert [e.data for e in decode_all([data[:cut], data[cut:]])] == ["x"], cut
    # Only at the very start: later it is part of a field name (an unknown field).
    assert decode_all([b"data: a\n\n\xef\xbb\xbfdata: b\n\n"]) == [ServerSentEvent("a")]


# Many events per read take a fast path (split at blank lines, one `data: ` line taken
# whole); it must give what the line-by-line reading gives, which one byte per read uses
# (a read of one byte never holds a blank line).
MANY = (
    "data: a\n\n"
    "data: b\r\n\r\n"
    "data: c\r\r"
    "data: d1\ndata: d2\n\n"  # two data lines: one event joined by a newline
    "event: e\ndata: typed\n\n"
    "data: after-typed\n\n"  # the type does not carry over
    "id: 9\ndata: with-id\n\n"
    "data: keeps-id\n\n"
    "retry: 40\n\n"  # a retry alone dispatches nothing
    "data: after-retry\n\n"
    "\n\n\n"  # blank lines with nothing pending
    "data: \u00e9\u2603\U0001f600\n\n"
    "data:no-space\n\n"
    "data:  two-spaces\n\n"
    ": comment\n\n"
    "data: \n\n"  # empty data is an event
    "data: x\n"
    "\n"
    "data: last-unfinished"
).encode()

MANY_EXPECTED = [
    ServerSentEvent("a"),
    ServerSentEvent("b"),
    ServerSentEvent("c"),
    ServerSentEvent("d1\nd2"),
    ServerSentEvent("typed", "e"),
    ServerSentEvent("after-typed"),
    ServerSentEvent("with-id", id="9"),
    ServerSentEvent("keeps-id", id="9"),
    ServerSentEvent("after-retry", id="9"),
    ServerSentEvent("\u00e9\u2603\U0001f600", id="9"),
    ServerSentEvent("no-space", id="9"),
    ServerSentEvent(" two-spaces", id="9"),
    ServerSentEvent("", id="9"),
    ServerSentEvent("x", id="9"),
]


def test_many_events_in_one_read_match_one_byte_at_a_time() -> None:
    assert decode_all([MANY[i : i + 1] for i in range(len(MANY))]) == MANY_EXPECTED
    assert decode_all([MANY]) == MANY_EXPECTED


def test_many_events_split_at_every_one_or_two_points() -> None:
    # Every cut (inside CRLF, a CR pair, each UTF-8 character, a blank line) and every
    # pair of cuts near the multi-line and typed events, where state crosses reads.
    for cut in range(len(MANY) + 1):
        assert decode_all([MANY[:cut], MANY[cut:]]) == MANY_EXPECTED, cut
    start = MANY.index(b"data: d1")
    for a in range(start, start + 60):
        for b in range(a, start + 60):
            assert decode_all([MANY[:a], MANY[a:b], MANY[b:]]) == MANY_EXPECTED, (a, b)


def test_the_retry_field_goes_with_the_event_it_preceded() -> None:
    events = decode_all([b"retry: 5\ndata: r\n\ndata: s\n\n"])
    assert [(e.data, e.retry) for e in events] == [("r", 5), ("s", None)]


def test_payloads_give_plain_events_as_bytes_and_others_as_events() -> None:
    decoder = SSEDecoder()
    out = decoder.feed_payloads(b"data: a\n\nevent: error\ndata: b\n\ndata: c\n\ndata: d\n")
    assert out == [b"a", ServerSentEvent("b", "error"), b"c"]
    assert decoder.feed_payloads(b"\n") == [ServerSentEvent("d")]


def test_a_text_only_delta_keeps_its_index_and_finish_reason() -> None:
    event = json.dumps(
        {"choices": [{"index": 2, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
    )
    (chunk,) = decode_event(event.encode(), "u")
    assert (chunk.content, chunk.index, chunk.finish_reason) == ("hi", 2, "stop")
    assert (chunk.role, chunk.refusal, chunk.tool_calls, chunk.usage) == (None, None, (), None)
    (chunk,) = decode_event(chunk_event(content="hi", role="assistant").encode(), "u")
    assert (chunk.content, chunk.role) == ("hi", "assistant")


def assemble(*events: str) -> surge.ChatResponse:
    assembler = Assembler()
    for data in events:
        for chunk in decode_event(data, "http://x"):
            assembler.add(chunk)
    return assembler.response()


def test_tool_calls_come_out_in_index_order_with_their_first_id() -> None:
    response = assemble(
        chunk_event(tool_calls=[{"index": 1, "id": "call_b", "function": {"name": "g"}}]),
        chunk_event(tool_calls=[{"index": 0, "id": "call_a", "function": {"name": "f"}}]),
        # A server that repeats (or changes) an id later: the first one given stands.
        chunk_event(tool_calls=[{"index": 0, "id": "call_a2", "function": {"arguments": "{}"}}]),
        chunk_event(tool_calls=[{"index": 1, "function": {"arguments": "[]"}}]),
    )
    assert [(c.id, c.function.name, c.function.arguments) for c in response.tool_calls] == [
        ("call_a", "f", "{}"),
        ("call_b", "g", "[]"),
    ]


def test_refusal_pieces_and_the_role_are_assembled() -> None:
    response = assemble(
        chunk_event(role="developer", refusal="I can't "),
        chunk_event(refusal="help with that."),
    )
    assert response.message.refusal == "I can't help with that."
    assert response.message.role == "developer"
    assert response.message.content is None  # as a refusal's reply has it


def test_usage_sent_beside_several_choices_is_counted_once() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    event = json.dumps(
        {
            "choices": [
                {"index": 0, "delta": {"content": "a"}, "finish_reason": None},
                {"index": 1, "delta": {"content": "b"}, "finish_reason": None},
            ],
            "usage": usage,
        }
    )
    chunks = decode_event(event, "http://x")
    assert [(c.index, c.content) for c in chunks] == [(0, "a"), (1, "b")]
    assert [c.usage for c in chunks] == [surge.Usage(**usage), None]
