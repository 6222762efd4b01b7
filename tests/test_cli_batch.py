"""`surge batch` in real subprocesses against the simulated server: formats, bad lines,
exit codes, and resuming after the process is killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from surge import Timings, Usage
from surge._batchfile import Summary, scan_output
from surge.testing import ChatRequest, Reply, SimulatedServer


def surge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "surge._cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


class Raw(str):
    """A line written as it is (other values are written as JSON)."""


def write_lines(path: Path, *lines: Any) -> Path:
    path.write_text(
        "".join((line if isinstance(line, Raw) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def openai_line(custom_id: str, text: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"messages": [{"role": "user", "content": text}], **body},
    }


class Recorder:
    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> Reply | str:
        self.requests.append(request)
        if "fail" in request.last_user_message:
            return Reply(content="rejected by the test", status=400)
        return f"re: {request.last_user_message}"


def test_openai_batch_format_in_and_out(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        openai_line("req-1", "one", model="model-a", temperature=0.5),
        openai_line("req-2", "two"),
    )
    out = tmp_path / "out.jsonl"
    recorder = Recorder()
    with SimulatedServer(reply=recorder) as server:
        result = surge(
            "batch", str(source), "-o", str(out), "--base-url", server.url,
            "--model", "default-model", "--system", "Be brief.",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {row["custom_id"]: row for row in read_rows(out)}
    assert sorted(rows) == ["req-1", "req-2"]
    for custom_id, text in (("req-1", "one"), ("req-2", "two")):
        row = rows[custom_id]
        assert sorted(row) == ["custom_id", "error", "id", "response"]
        assert row["id"].startswith("batch_req_")
        assert row["error"] is None
        assert row["response"]["status_code"] == 200
        assert row["response"]["request_id"].startswith("req_")
        assert row["response"]["body"]["object"] == "chat.completion"
        assert row["response"]["body"]["choices"][0]["message"]["content"] == f"re: {text}"
    sent = {r.last_user_message: r for r in recorder.requests}
    assert sent["one"].model == "model-a"  # the body's model wins over --model
    assert sent["one"].params["temperature"] == 0.5
    assert sent["two"].model == "default-model"
    assert [m["role"] for m in sent["two"].messages] == ["system", "user"]
    assert sent["two"].messages[0]["content"] == "Be brief."
    assert "results        2 written: 2 done, 0 failed; 0 skipped" in result.stdout


def test_the_simple_form_in_and_out(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        "just a prompt",
        {"id": "s1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7},
        {"messages": [{"role": "system", "content": "Mine."}, {"role": "user", "content": "x"}]},
    )
    out = tmp_path / "out.jsonl"
    recorder = Recorder()
    with SimulatedServer(reply=recorder) as server:
        result = surge(
            "batch", str(source), "-o", str(out), "--base-url", server.url, "--system", "S."
        )
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in read_rows(out)}
    assert sorted(rows) == ["line-1", "line-3", "s1"]
    assert rows["line-1"]["text"] == "re: just a prompt"
    assert rows["s1"]["text"] == "re: hi"
    assert rows["s1"]["error"] is None
    assert rows["s1"]["usage"]["total_tokens"] > 0
    sent = {r.last_user_message: r for r in recorder.requests}
    assert sent["hi"].params["max_tokens"] == 7
    assert [m["content"] for m in sent["x"].messages] == ["Mine.", "x"]  # had a system message


def test_bad_lines_are_reported_and_written_as_failures(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        openai_line("a", "fine"),
        Raw("{not json"),
        Raw(""),
        Raw("[1, 2]"),
        {"custom_id": "b", "method": "GET", "body": {"messages": [{"role": "user"}]}},
        openai_line("a", "again"),
        {"id": "e", "messages": []},
    )
    out = tmp_path / "out.jsonl"
    with SimulatedServer(reply=Recorder()) as server:
        result = surge("batch", str(source), "-o", str(out), "--base-url", server.url)
    assert result.returncode == 1
    errors = [line.split(": ", 1)[1] for line in result.stderr.splitlines()]
    assert sorted(errors) == sorted(
        [
            f"{source}:2: not JSON (Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1))",
            f"{source}:4: expected an object or a string, got [1, 2]",
            f"{source}:5: method must be POST, got 'GET'",
            f"{source}:6: duplicate id 'a' (first on line 1)",
            f"{source}:7: messages must be a non-empty list",
        ]
    )
    rows = read_rows(out)
    by_id = {row.get("custom_id", row["id"]): row for row in rows}
    assert sorted(by_id) == ["a", "b", "e", "line-2", "line-4", "line-6"]
    assert by_id["a"]["error"] is None
    assert by_id["b"]["response"] is None
    assert by_id["b"]["error"] == {
        "code": "InvalidLine",
        "message": "line 5: method must be POST, got 'GET'",
    }
    assert by_id["line-6"]["id"].startswith("batch_req_")  # written in the OpenAI form
    assert by_id["line-2"]["error"]["code"] == "InvalidLine"
    assert "failures       InvalidLine 5" in result.stdout


def test_a_failed_call_exits_1_and_keeps_the_servers_answer(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl", openai_line("ok", "fine"), openai_line("no", "fail")
    )
    out = tmp_path / "out.jsonl"
    with SimulatedServer(reply=Recorder()) as server:
        result = surge("batch", str(source), "-o", str(out), "--base-url", server.url)
    assert result.returncode == 1
    rows = {row["custom_id"]: row for row in read_rows(out)}
    assert rows["ok"]["error"] is None
    assert rows["no"]["response"]["status_code"] == 400
    assert rows["no"]["response"]["body"]["error"]["message"] == "rejected by the test"
    assert rows["no"]["error"]["code"] == "BadRequestError"
    assert "failures       BadRequestError 1" in result.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", "hi")
    missing = surge("batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    same = surge("batch", str(source), "-o", str(source))
    assert same.returncode == 2
    assert "must not be the input file" in same.stderr
    schema = surge("batch", str(source), "-o", str(tmp_path / "o.jsonl"), "--schema", "nomodule:X")
    assert schema.returncode == 2
    assert "cannot import 'nomodule'" in schema.stderr
    for bad in (["--concurrency", "0"], ["--rpm", "-1"], []):
        args = ["batch", str(source), *bad] + (["-o", "x.jsonl"] if bad else [])
        result = surge(*args)
        assert result.returncode == 2, bad
        assert "usage: surge batch" in result.stderr


def test_help_everywhere() -> None:
    for command in ([], ["batch"], ["probe"], ["demo"], ["simulate"]):
        result = surge(*command, "--help")
        assert result.returncode == 0
        assert result.stdout.startswith(f"usage: surge {' '.join(command)}".rstrip())


def test_schema_writes_the_parsed_value(tmp_path: Path) -> None:
    (tmp_path / "shapes.py").write_text(
        "from pydantic import BaseModel\n\n\n"
        "class Person(BaseModel):\n    name: str\n    age: int\n"
    )
    write_lines(tmp_path / "in.jsonl", openai_line("p", "Ada, 36"), "Alan, 41")
    out = tmp_path / "out.jsonl"

    def reply(request: ChatRequest) -> str:
        found = re.search(r"(Ada|Alan), (\d+)", json.dumps(request.messages))
        assert found is not None
        return json.dumps({"name": found[1], "age": found[2]})

    with SimulatedServer(reply=reply) as server:
        result = surge(
            "batch", "in.jsonl", "-o", "out.jsonl", "--base-url", server.url,
            "--schema", "shapes:Person", cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {row.get("custom_id", row["id"]): row for row in read_rows(out)}
    assert rows["p"]["value"] == {"name": "Ada", "age": 36}
    assert rows["line-2"]["value"] == {"name": "Alan", "age": 41}
    assert rows["line-2"]["text"] == '{"name": "Alan", "age": "41"}'


def test_a_rerun_skips_what_is_done_and_writes_nothing_twice(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", *(f"prompt {i}" for i in range(10)))
    out = tmp_path / "out.jsonl"
    with SimulatedServer() as server:
        first = surge("batch", str(source), "-o", str(out), "--base-url", server.url)
        second = surge("batch", str(source), "-o", str(out), "--base-url", server.url)
        assert server.stats.served == 10
    assert (first.returncode, second.returncode) == (0, 0)
    assert "10 id(s) already in the output" in second.stdout
    assert "0 written: 0 done, 0 failed; 10 skipped" in second.stdout
    assert sorted(Counter(row["id"] for row in read_rows(out)).values()) == [1] * 10


def test_resume_after_the_process_is_killed(tmp_path: Path) -> None:
    n = 60
    source = write_lines(
        tmp_path / "in.jsonl", *(openai_line(f"id-{i}", f"q{i}") for i in range(n))
    )
    out = tmp_path / "out.jsonl"

    async def stall_after_20(request: ChatRequest) -> str:
        if request.n >= 20:  # the rest hang: the process is killed with calls in flight
            await anyio.sleep(3600)
        return "ok"

    with SimulatedServer(reply=stall_after_20) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "surge._cli", "batch", str(source), "-o", str(out),
             "--base-url", server.url, "--concurrency", "5"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not (out.exists() and out.read_text().count("\n") == 20):
                assert process.poll() is None, "surge batch ended before it was killed"
                assert time.monotonic() < deadline, "20 results never appeared"
                time.sleep(0.02)
            # Five calls hang in the server; the last of them may still be on its way when
            # the 20th result is written (CI saw 2 of 5 there).
            while server.stats.in_flight != 5:
                assert time.monotonic() < deadline, f"{server.stats.in_flight} in flight, not 5"
                time.sleep(0.02)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert len(read_rows(out)) == 20

    with SimulatedServer() as server:
        rerun = surge("batch", str(source), "-o", str(out), "--base-url", server.url)
        assert server.stats.served == n - 20  # only what was not done is sent again
    assert rerun.returncode == 0, rerun.stderr
    assert "20 id(s) already in the output" in rerun.stdout
    ids = Counter(row["custom_id"] for row in read_rows(out))
    assert ids == Counter({f"id-{i}": 1 for i in range(n)})


def test_a_torn_last_line_is_cut_off_and_resent(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(
        '{"custom_id": "a", "error": null}\n{"id": "b"}\nnot json\n{"custom_id": "c", "err'
    )
    done = scan_output(out, sys.stderr)
    assert done == {"a", "b"}
    assert out.read_text() == '{"custom_id": "a", "error": null}\n{"id": "b"}\nnot json\n'
    err = capsys.readouterr().err
    assert "cut off a torn last line (23 bytes)" in err
    assert f"{out}:3: not a result line; left as it is" in err
    assert scan_output(tmp_path / "missing.jsonl", sys.stderr) == set()


def test_the_summary_counts_tokens_and_the_servers_peak(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", *(f"p{i}" for i in range(8)))
    out = tmp_path / "out.jsonl"
    with SimulatedServer(latency=0.3) as server:
        result = surge(
            "batch", str(source), "-o", str(out), "--base-url", server.url,
            "--concurrency", "4", "--rpm", "60000", "--tpm", "10000000",
        )  # fmt: skip
        assert server.stats.peak_in_flight == 4
    assert result.returncode == 0, result.stderr
    tokens = sum(row["usage"]["total_tokens"] for row in read_rows(out))
    prompt = sum(row["usage"]["prompt_tokens"] for row in read_rows(out))
    assert f"tokens         prompt {prompt}, completion {tokens - prompt}, total {tokens}" in (
        result.stdout
    )
    assert "server         up to 4 calls at once, as seen here" in result.stdout
    assert "batch: 8/8 finished (0 failed), 0 in flight" in result.stdout


def test_the_summary_sums_every_response_and_counts_only_time_at_the_server() -> None:
    summary = Summary()
    # A structured call that took a re-ask: both replies' tokens count. It waited 4 s
    # before its last request went out (its own limits, backoff, the pool, a connect).
    asked = SimpleNamespace(
        timings=Timings(), usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    )
    waits = Timings(throttled=1.0, backoff=2.0, queued=0.5, connect=0.5)
    answered = SimpleNamespace(
        timings=waits, usage=Usage(prompt_tokens=20, completion_tokens=3, total_tokens=23)
    )
    summary.success([asked, answered], started=0.0, ended=5.0)  # at the server 4.0-5.0
    plain = SimpleNamespace(timings=Timings(), usage=None)
    summary.success([plain], started=3.0, ended=3.9)  # at the server 3.0-3.9: apart
    assert dict(summary.tokens) == {"prompt": 30, "completion": 8, "total": 38}
    assert summary.peak_at_server() == 1
    summary.success([plain], started=4.5, ended=4.6)  # during the first one's 4.0-5.0
    assert summary.peak_at_server() == 2


@pytest.mark.parametrize("extra", [["--no-progress"]])
def test_no_progress(tmp_path: Path, extra: list[str]) -> None:
    source = write_lines(tmp_path / "in.jsonl", "hi")
    with SimulatedServer() as server:
        result = surge(
            "batch", str(source), "-o", str(tmp_path / "o"), "--base-url", server.url, *extra
        )
    assert result.returncode == 0
    assert "finished" not in result.stdout


NO_RICH = "import sys; sys.modules['rich'] = None; from surge._cli import main; sys.exit(main())"


def test_batch_and_demo_work_without_rich(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", "hi", "there")
    with SimulatedServer() as server:
        batch = subprocess.run(
            [sys.executable, "-c", NO_RICH, "batch", str(source), "-o", str(tmp_path / "o"),
             "--base-url", server.url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert batch.returncode == 0, batch.stderr
    assert "batch: 2/2 finished (0 failed), 0 in flight" in batch.stdout
    demo = subprocess.run(
        [sys.executable, "-c", NO_RICH, "demo", "-n", "5", "--latency", "0.05"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    assert "verdict" in demo.stdout


def test_on_a_terminal_the_progress_bar_is_rich(tmp_path: Path) -> None:
    import pty

    source = write_lines(tmp_path / "in.jsonl", *(f"p{i}" for i in range(5)))
    with SimulatedServer() as server:
        controller, terminal = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "surge._cli", "batch", str(source), "-o",
             str(tmp_path / "o"), "--base-url", server.url],
            stdout=terminal, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        os.close(controller)
        assert process.wait(timeout=120) == 0
    text = seen.decode("utf-8", errors="replace")
    assert "━" in text  # rich's bar
    assert "5/5" in text
    assert "batch: 5/5 finished" not in text  # not the plain lines
