"""Reading answers: status errors, Retry-After, malformed bodies (pure logic, no network)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest

import surge
from surge._decode import decode_chat, status_error
from surge._headers import retry_after

URL = "http://127.0.0.1:9/v1/chat/completions"


def _headers(**values: str) -> httpx.Headers:
    return httpx.Headers({k.replace("_", "-"): v for k, v in values.items()})


def test_retry_after_prefers_milliseconds() -> None:
    assert retry_after(_headers(retry_after_ms="1500", retry_after="9")) == 1.5


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after(_headers(retry_after="2.5")) == 2.5
    when = datetime(2030, 1, 1, 0, 0, 10, tzinfo=timezone.utc)
    now = datetime(2030, 1, 1, 0, 0, 0, tzinfo=timezone.utc).timestamp()
    assert retry_after(_headers(retry_after=format_datetime(when, usegmt=True)), now=now) == 10.0


@pytest.mark.parametrize("value", ["soon", "", "-"])
def test_retry_after_garbage_is_none(value: str) -> None:
    assert retry_after(_headers(retry_after=value)) is None


def test_retry_after_never_negative() -> None:
    assert retry_after(_headers(retry_after="-4")) == 0.0


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, surge.BadRequestError),
        (401, surge.AuthenticationError),
        (403, surge.PermissionDeniedError),
        (404, surge.NotFoundError),
        (409, surge.ConflictError),
        (422, surge.UnprocessableEntityError),
        (429, surge.RateLimitError),
        (500, surge.ServerError),
        (503, surge.ServerError),
        (418, surge.APIStatusError),
    ],
)
def test_status_maps_to_a_typed_error(status: int, kind: type[surge.APIStatusError]) -> None:
    body = json.dumps({"error": {"message": "nope, said the server", "type": "x"}}).encode()
    error = status_error(status, _headers(x_request_id="req-42"), body, method="POST", url=URL)
    assert type(error) is kind
    assert isinstance(error, surge.APIStatusError)
    assert error.status_code == status
    assert error.request_id == "req-42"
    assert error.body == {"error": {"message": "nope, said the server", "type": "x"}}
    assert "nope, said the server" in str(error)
    assert str(status) in str(error)
    assert "req-42" in str(error)


def test_rate_limit_carries_retry_after() -> None:
    error = status_error(429, _headers(retry_after="3"), b"{}", method="POST", url=URL)
    assert isinstance(error, surge.RateLimitError)
    assert error.retry_after == 3.0


def test_non_json_error_body_is_kept_and_previewed() -> None:
    body = b"<html>" + b"x" * 1000 + b"</html>"
    error = status_error(502, _headers(), body, method="POST", url=URL)
    assert isinstance(error, surge.ServerError)
    assert error.body == body.decode()
    assert "<html>" in str(error)
    assert "1013 bytes in all" in str(error)


def test_echoed_api_key_is_redacted() -> None:
    key = "sk-very-secret-key-0123"
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode()
    error = status_error(401, _headers(), body, method="POST", url=URL, secret=key)
    assert key not in str(error)
    assert "***" in str(error)


def test_a_key_too_short_to_be_a_secret_is_not_blanked_out_of_the_message() -> None:
    # "EMPTY" or "x" as the key of a local server: replacing it would garble the message.
    body = json.dumps({"error": {"message": "model xyz not found"}}).encode()
    error = status_error(404, _headers(), body, method="POST", url=URL, secret="x")
    assert str(error) == f"POST {URL} returned 404: model xyz not found"


def test_a_fastapi_detail_is_the_message_and_litellm_call_ids_are_request_ids() -> None:
    body = json.dumps({"detail": "Not Found"}).encode()
    error = status_error(404, _headers(x_litellm_call_id="call-7"), body, method="POST", url=URL)
    assert str(error) == f"POST {URL} returned 404: Not Found (request id call-7)"
    assert isinstance(error, surge.NotFoundError)
    assert error.request_id == "call-7"


def _completion(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        "vendor_extra": {"kept": True},
    }
    body.update(overrides)
    return json.dumps(body).encode()


def test_decode_chat_types_and_keeps_unknown_fields() -> None:
    response = decode_chat(_completion(), status_code=200, url=URL)
    assert response.text == "hi"
    assert response.usage is not None
    assert response.usage.total_tokens == 4
    assert response.finish_reason == "stop"
    assert response.raw["vendor_extra"] == {"kept": True}
    assert response.vendor_extra == {"kept": True}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<!DOCTYPE html><html><body>Bad gateway</body></html>", "not valid JSON"),
        (b'{"id": "c1", "choices": [{"message": {"content": "tru', "not valid JSON"),
        (b"[1, 2, 3]", "list"),
        (_completion(choices=[]), "no choices"),
        (_completion(choices=[{"index": 0}]), "choices.0.message"),
        (b"\xff\xfe not utf-8", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_malformed_bodies_give_response_format_error(body: bytes, says: str) -> None:
    with pytest.raises(surge.ResponseFormatError) as info:
        decode_chat(body, status_code=200, url=URL)
    assert says in str(info.value)
    assert info.value.body == body
    assert URL in str(info.value)
