"""Stream a typed answer: partial values as they grow, list items as they close.

Runs against surge's simulated OpenAI-compatible server on loopback, which streams a JSON
report word by word. `client.stream_structured` shows the report filling in (fields not
written yet are None, lists []), `client.stream_items` hands out each finding the moment
its closing brace arrives, and a plain `client.stream` that is abandoned half-way frees
the server at once (it reports the cancellation).

    python examples/stream_structured.py
"""

from __future__ import annotations

import asyncio
import json
import time

from pydantic import BaseModel

import surge
from surge.testing import ChatRequest, SimulatedServer


class Finding(BaseModel):
    title: str
    severity: int


class Report(BaseModel):
    summary: str
    findings: list[Finding]


FINDINGS = [
    {"title": "Disk almost full on db-2", "severity": 3},
    {"title": "Certificate expires in 9 days", "severity": 2},
    {"title": "Backups older than a week", "severity": 3},
]


def reply(request: ChatRequest) -> str:
    """Answer like a model asked for JSON (json_schema mode wraps a list as {"value": ...})."""
    schema = request.params.get("response_format", {}).get("json_schema", {})
    if schema.get("name") == "Report":
        return json.dumps(
            {"summary": "Three issues need attention this week.", "findings": FINDINGS}
        )
    if "response_format" in request.params:
        return json.dumps({"value": FINDINGS})
    return " ".join(["word"] * 500)


async def main() -> None:
    async with (
        SimulatedServer(reply=reply, stream_tokens_per_second=200) as server,
        surge.LLMClient(base_url=server.url) as client,
    ):
        print("stream_structured: the report as it fills in")
        async with client.stream_structured(Report, "Summarise the ops alerts.") as reports:
            async for report in reports:
                last = report.findings[-1].title if report.findings else None
                print(f"  summary={report.summary!r:.44} findings={len(report.findings)} {last!r}")
        print(f"  final: {reports.result!r}"[:120])

        print("stream_items: each finding as soon as it is complete")
        async with client.stream_items(Finding, "List the ops alerts.") as findings:
            async for finding in findings:
                print(f"  severity {finding.severity}: {finding.title}")

        print("an abandoned stream frees the server")
        async with client.stream("Write a long essay.") as stream:
            async for _ in stream.text_deltas():
                if len(stream.text) > 40:
                    break
        left = time.monotonic()
        stats = await server.wait_for(lambda s: s.cancelled == 1)
        seen = server.cancellations()[stream.request_id or ""]
        print(
            f"  read {len(stream.text)} chars, left; server cancelled {stats.cancelled} stream "
            f"{(seen - left) * 1000:.1f} ms after; connections in use: {client.pool_stats().in_use}"
        )


if __name__ == "__main__":
    asyncio.run(main())
