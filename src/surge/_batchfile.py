"""`surge batch`: JSONL requests in, JSONL results out, resumable.

Input lines are OpenAI Batch API requests (`{"custom_id", "method": "POST", "url":
"/v1/chat/completions", "body": {...}}`, as vLLM's `run-batch` also reads) or the simple form
(a JSON string, the prompt; or `{"id", "messages", ...}`). Each result is written in the form
of its request as soon as it completes, one `write` and a flush per line, so a kill loses
nothing already answered; a rerun with the same output skips every id already there (a torn
last line from a kill is cut off first), so no id is ever written twice. A line that cannot be
read becomes a failure line naming its line number; it does not stop the batch.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from surge._errors import APIStatusError, ConfigError

__all__ = [
    "BatchRequest",
    "InvalidLine",
    "Summary",
    "count_lines",
    "load_schema",
    "read_requests",
    "result_line",
    "run_batch",
    "scan_output",
]

Style = Literal["openai", "simple"]


class InvalidLine(ConfigError):
    """An input line that is not a request surge can send (its number is in the message)."""


@dataclass(slots=True)
class BatchRequest:
    """One input line: its number, id, form, and the chat body to send (or why not).

    Attributes:
        line: The line number, from 1.
        id: `custom_id`, `id`, or "line-N" when the line has none.
        style: "openai" for a Batch API line, else "simple"; the result is written alike.
        body: The chat-completion body (messages and parameters).
        error: Why the line cannot be sent, when it cannot.
    """

    line: int
    id: str
    style: Style
    body: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _parse(line_no: int, text: str) -> BatchRequest:
    """Read one non-blank input line."""
    fallback = f"line-{line_no}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return BatchRequest(line_no, fallback, "simple", error=f"not JSON ({exc})")
    if isinstance(data, str):
        return BatchRequest(line_no, fallback, "simple", {"messages": _user(data)})
    if not isinstance(data, dict):
        return BatchRequest(
            line_no, fallback, "simple", error=f"expected an object or a string, got {data!r:.60}"
        )
    if "custom_id" in data or "body" in data:
        return _parse_openai(line_no, data)
    if "messages" in data:
        ident = data.get("id", fallback)
        body = {k: v for k, v in data.items() if k != "id"}
        error = _check_messages(body.get("messages"))
        return BatchRequest(line_no, str(ident), "simple", body, error)
    return BatchRequest(
        line_no,
        str(data.get("id", fallback)),
        "simple",
        error='expected a prompt string, {"messages": [...]} or an OpenAI batch line '
        '{"custom_id", "method", "url", "body"}',
    )


def _parse_openai(line_no: int, data: dict[str, Any]) -> BatchRequest:
    ident = data.get("custom_id")
    if not isinstance(ident, str) or not ident:
        return BatchRequest(
            line_no, f"line-{line_no}", "openai", error="custom_id must be a non-empty string"
        )
    method, url, body = data.get("method", "POST"), data.get("url"), data.get("body")
    error = None
    if method != "POST":
        error = f"method must be POST, got {method!r}"
    elif url is not None and (not isinstance(url, str) or not url.endswith("/chat/completions")):
        error = f"url must be /v1/chat/completions, got {url!r}"
    elif not isinstance(body, dict):
        error = "body must be an object with messages"
    else:
        error = _check_messages(body.get("messages"))
    return BatchRequest(line_no, ident, "openai", body if isinstance(body, dict) else {}, error)


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    return None


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def read_requests(path: Path, done: set[str], skipped: list[int]) -> Iterator[BatchRequest]:
    """Yield the input's requests lazily, leaving out ids in `done`.

    A second line with an id already seen becomes an invalid line with id "line-N".

    Args:
        path: The input JSONL file.
        done: Ids already in the output (not sent again).
        skipped: `skipped[0]` is incremented for each line left out.
    """
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            request = _parse(number, text)
            if request.id in done:
                skipped[0] += 1
                continue
            if request.id in first_line:
                request.error = (
                    f"duplicate id {request.id!r} (first on line {first_line[request.id]})"
                )
                request.id = f"line-{number}"
                if request.id in done:
                    skipped[0] += 1
                    continue
            else:
                first_line[request.id] = number
            yield request


def count_lines(path: Path) -> int:
    """Non-blank lines in a file (for the progress bar's total)."""
    with path.open("rb") as data:
        return sum(1 for line in data if line.strip())


def scan_output(path: Path, warn: TextIO) -> set[str]:
    """Read the ids already in an output file, cutting off a torn last line.

    A process killed mid-write can leave a last line without its newline; it is removed
    (truncated) so that the next result starts on a line of its own and the torn id is sent
    again.

    Returns:
        The `custom_id` (or `id`) of every complete result line.
    """
    if not path.exists():
        return set()
    done: set[str] = set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        print(f"surge batch: {path}: cut off a torn last line ({len(data) - end} bytes)", file=warn)
        with path.open("r+b") as out:
            out.truncate(end)
    for number, raw in enumerate(data[:end].splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            ident = row.get("custom_id") or row["id"]
        except (ValueError, KeyError, AttributeError, TypeError):
            print(f"surge batch: {path}:{number}: not a result line; left as it is", file=warn)
            continue
        done.add(str(ident))
    return done


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"code": type(exc).__name__, "message": str(exc)}


def result_line(
    request: BatchRequest, outcome: Any, value: Any = None, has_value: bool = False
) -> dict[str, Any]:
    """The output line for one request: a `ChatResponse` (with a parsed `value`) or an error."""
    from surge._types import ChatResponse

    ok = isinstance(outcome, ChatResponse)
    if request.style == "openai":
        row: dict[str, Any] = {
            "id": f"batch_req_{uuid.uuid4().hex[:24]}",
            "custom_id": request.id,
            "response": None,
            "error": None,
        }
        if ok:
            row["response"] = {
                "status_code": 200,
                "request_id": outcome.request_id or "",
                "body": outcome.raw,
            }
        else:
            if isinstance(outcome, APIStatusError):
                row["response"] = {
                    "status_code": outcome.status_code,
                    "request_id": outcome.request_id or "",
                    "body": outcome.body,
                }
            row["error"] = _failure(outcome)
    elif ok:
        usage = outcome.usage.model_dump() if outcome.usage is not None else None
        row = {"id": request.id, "text": outcome.text, "usage": usage, "error": None}
    else:
        row = {"id": request.id, "error": _failure(outcome)}
    if has_value:
        row["value"] = value
    return row


def load_schema(spec: str) -> Any:
    """Import `module:Name` (the current directory first on the path) and check pydantic takes it.

    Raises:
        ConfigError: The spec is malformed, the import fails, or the object is not a type.
    """
    from pydantic import TypeAdapter

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--schema takes module:Model, got {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
        TypeAdapter(target)
    except ImportError as exc:
        raise ConfigError(f"--schema {spec}: cannot import {module_name!r}: {exc}") from None
    except AttributeError:
        raise ConfigError(f"--schema {spec}: {module_name!r} has no {attr!r}") from None
    except Exception as exc:
        raise ConfigError(f"--schema {spec}: not a type pydantic can validate: {exc}") from None
    finally:
        sys.path.pop(0)
    return target


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


class Summary:
    """What a batch did, gathered per result in O(1) and printed at the end."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.done = 0
        self.failures: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self.latency = array("d")
        self.ttfb = array("d")
        self.queued = array("d")
        self.at_server = array("d")  # start, end pairs of the time each call was at the server

    def success(self, responses: list[Any], started: float, ended: float) -> None:
        """Count a request that succeeded, with every response it took."""
        self.done += 1
        last = responses[-1].timings
        self.latency.append(ended - started)
        self.ttfb.append(last.ttfb)
        self.queued.append(last.queued)
        waited = last.throttled + last.backoff + last.queued + last.connect
        self.at_server.extend((started + waited, ended))
        for response in responses:
            if response.usage is not None:
                self.tokens["prompt"] += response.usage.prompt_tokens
                self.tokens["completion"] += response.usage.completion_tokens
                self.tokens["total"] += response.usage.total_tokens

    def failure(self, exc: BaseException) -> None:
        """Count a request that failed."""
        self.failures[type(exc).__name__] += 1

    def peak_at_server(self) -> int:
        """The most calls at the server at once, as seen from here."""
        events = sorted(
            (t, 1 if i % 2 == 0 else -1) for i, t in enumerate(self.at_server)
        )  # an end sorts before a start at the same instant
        peak = current = 0
        for _, step in events:
            current += step
            peak = max(peak, current)
        return peak

    def lines(self, skipped: int, pool: Any) -> list[str]:
        """The summary, as lines of text."""
        wall = time.perf_counter() - self.started
        failed = sum(self.failures.values())
        written = self.done + failed
        rate = written / wall if wall > 0 else 0.0
        out = [
            f"results        {written} written: {self.done} done, {failed} failed; "
            f"{skipped} skipped (already in the output)",
        ]
        if self.failures:
            kinds = ", ".join(f"{k} {n}" for k, n in self.failures.most_common())
            out.append(f"failures       {kinds}")
        out.append(
            f"tokens         prompt {self.tokens['prompt']}, completion "
            f"{self.tokens['completion']}, total {self.tokens['total']}"
        )
        out.append(f"wall time      {wall:.2f} s, {rate:.1f} results/s")
        for label, values in (
            ("latency", self.latency),
            ("ttfb (server)", self.ttfb),
            ("queued (pool)", self.queued),
        ):
            ordered = sorted(values)
            out.append(
                f"{label + ' ms':<19}p50 {_pct(ordered, 0.5) * 1000:.1f}, "
                f"p90 {_pct(ordered, 0.9) * 1000:.1f}, p99 {_pct(ordered, 0.99) * 1000:.1f}, "
                f"max {(ordered[-1] if ordered else 0.0) * 1000:.1f}"
            )
        out.append(f"server         up to {self.peak_at_server()} calls at once, as seen here")
        out.append(
            f"client pool    {pool.connections_opened} connection(s) opened; waits p90 "
            f"{pool.wait_seconds_p90 * 1000:.1f} ms, max {pool.wait_seconds_max * 1000:.1f} ms"
        )
        return out


def run_batch(args: Any) -> int:
    """Run `surge batch` with parsed arguments; return the exit status (0, 1 or 2)."""
    import asyncio

    source, target = Path(args.input), Path(args.output)
    try:
        if not source.is_file():
            raise ConfigError(f"input file {str(source)!r} does not exist")
        if target.exists() and target.resolve() == source.resolve():
            raise ConfigError("the output file must not be the input file")
        schema = load_schema(args.schema) if args.schema else None
    except ConfigError as exc:
        print(f"surge batch: {exc}", file=sys.stderr)
        return 2
    done = scan_output(target, sys.stderr)
    total = max(count_lines(source) - len(done), 0)
    print(f"surge batch: {source} -> {target}; {len(done)} id(s) already in the output")
    return asyncio.run(_run(args, source, target, schema, done, total))


async def _run(
    args: Any, source: Path, target: Path, schema: Any, done: set[str], total: int
) -> int:
    from pydantic import TypeAdapter

    from surge._batch import start_map
    from surge._client import LLMClient
    from surge._rates import RateLimit

    rate = None
    if args.rpm is not None or args.tpm is not None:
        rate = RateLimit(requests_per_minute=args.rpm, tokens_per_minute=args.tpm)
    client = LLMClient(
        base_url=args.base_url, api_key=args.api_key, model=args.model, rate_limit=rate
    )
    adapter = TypeAdapter(schema) if schema is not None else None
    summary, skipped = Summary(), [0]
    pending: dict[int, BatchRequest] = {}

    def numbered() -> Iterator[BatchRequest]:
        for index, request in enumerate(read_requests(source, done, skipped)):
            pending[index] = request
            yield request

    async def one(request: BatchRequest) -> tuple[Any, Any]:
        if request.error is not None:
            raise InvalidLine(f"line {request.line}: {request.error}")
        params = dict(request.body)
        messages = params.pop("messages")
        model = params.pop("model", None)
        if args.system and not any(
            isinstance(m, dict) and m.get("role") == "system" for m in messages
        ):
            messages = [{"role": "system", "content": args.system}, *messages]
        started = time.perf_counter()
        if adapter is None:
            chat = await client.chat(messages, model=model, **params)
            summary.success([chat], started, time.perf_counter())
            return chat, None
        result = await client.structured_response(schema, messages, model=model, **params)
        summary.success(result.responses, started, time.perf_counter())
        return result.response, adapter.dump_python(result.value, mode="json")

    results = start_map(
        client,
        one,
        numbered(),
        concurrency=args.concurrency,
        default_concurrency=args.concurrency,
        return_exceptions=True,
        progress=args.progress,
        total=total,
        label="batch",
    )
    with target.open("a", encoding="utf-8") as out:
        async with client, results as pairs:
            async for index, outcome in pairs:
                request = pending.pop(index)
                if isinstance(outcome, BaseException):
                    summary.failure(outcome)
                    row = result_line(request, outcome)
                    if isinstance(outcome, InvalidLine):
                        print(
                            f"surge batch: {source}:{request.line}: {request.error}",
                            file=sys.stderr,
                        )
                else:
                    chat, value = outcome
                    row = result_line(request, chat, value, adapter is not None)
                # One write and a flush per result: a kill loses at most this line.
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
            pool = client.pool_stats()
    for line in summary.lines(skipped[0], pool):
        print(line)
    return 1 if summary.failures else 0
