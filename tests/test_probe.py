"""`surge probe` in real subprocesses against the simulated server: it finds the server's
slots, or blames the client's pool, and reports ttfb alone and the HTTP version."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from _llama import LlamaServerFactory
from surge._probe import Level, ProbeReport, first_wave, levels, verdict
from surge.testing import SimulatedServer

SERVER_VERDICT = re.compile(
    r"verdict        the server serves about (\d+) calls at a time; calls beyond that wait "
    r"on the server, not in your client\.\n"
)


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "surge._cli", "probe", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_probe_finds_six_server_slots() -> None:
    with SimulatedServer(latency=0.15, slots=6) as server:
        result = probe("--base-url", server.url, "--max-concurrency", "32")
    assert result.returncode == 0, result.stderr
    found = SERVER_VERDICT.search(result.stdout)
    assert found is not None, result.stdout
    assert 5 <= int(found[1]) <= 7
    ttfb = re.search(r"ttfb alone     ([\d.]+) ms at 1 in flight", result.stdout)
    assert ttfb is not None
    assert 140 <= float(ttfb[1]) < 1000  # the server's 150 ms, give or take a timer tick
    assert "protocol       HTTP/1.1 (HTTP/2 not offered; try --http2)" in result.stdout


def test_probe_blames_the_client_pool_when_it_is_the_limit() -> None:
    with SimulatedServer(latency=0.15) as server:
        result = probe(
            "--base-url", server.url, "--max-concurrency", "16", "--max-connections", "3"
        )
    assert result.returncode == 0, result.stderr
    assert (
        "verdict        your client's pool serves about 3 calls at a time (max_connections=3); "
        "calls beyond that wait in your client, not on the server." in result.stdout
    )


def test_probe_without_a_limit_and_over_http2() -> None:
    with SimulatedServer(latency=0.1) as server:
        result = probe("--base-url", server.url, "--max-concurrency", "8", "--http2")
    assert result.returncode == 0, result.stderr
    assert "protocol       HTTP/2 negotiated" in result.stdout
    assert (
        "verdict        the server served all 8 calls at once; no limit up to "
        "--max-concurrency 8." in result.stdout
    )


def test_probe_exit_codes() -> None:
    unreachable = probe("--base-url", "http://127.0.0.1:9/v1", "--max-concurrency", "2")
    assert unreachable.returncode == 1
    assert "ConnectError" in unreachable.stdout
    bad = probe("--base-url", "http://127.0.0.1:9/v1", "--extra-body", "{nope")
    assert bad.returncode == 2
    assert "--extra-body is not JSON" in bad.stderr
    usage = probe("--max-concurrency", "0")
    assert usage.returncode == 2
    assert "usage: surge probe" in usage.stderr


def test_burst_sizes_and_first_waves() -> None:
    assert levels(64) == [1, 2, 4, 8, 16, 32, 64]
    assert levels(6) == [1, 2, 4, 6]
    assert levels(1) == [1]
    assert first_wave([1.0, 1.1, 1.2, 2.0, 2.1, 3.0]) == 3
    assert first_wave([0.5, 0.55, 0.6]) == 3
    assert first_wave([0.5, 0.7, 0.74]) == 1  # a gap of 0.2 s is more than 0.5 s / 4
    assert first_wave([3.0, 6.0, 3.1, 3.05]) == 3  # in any order
    assert first_wave([1.0] * 6 + [2.0] * 6 + [3.0] * 4) == 6
    assert first_wave([1.0] * 7 + [6.0]) == 7  # a straggler
    assert first_wave([]) == 0


def test_the_slot_count_is_the_largest_first_wave_of_the_sizes_that_queued() -> None:
    report = ProbeReport(
        [Level(4, waves=[4, 3, 4]), Level(8, waves=[6, 5, 4]), Level(16, waves=[6, 6, 3])],
        max_connections=1000,
        http_version="HTTP/1.1",
        http2_offered=False,
    )
    assert report.slots == 6
    assert verdict(report, 16).startswith("the server serves about 6 calls at a time")
    unlimited = ProbeReport([Level(4, waves=[4])], 1000, "HTTP/1.1", False)
    assert unlimited.slots is None
    assert verdict(unlimited, 4).startswith("the server served all 4 calls at once")


@pytest.mark.realserver
@pytest.mark.parametrize("parallel", [6, 3])
def test_probe_finds_llama_servers_slots(llama_server: LlamaServerFactory, parallel: int) -> None:
    server = llama_server(parallel=parallel, ctx=1024 * parallel)
    result = probe(
        "--base-url", server.url, "--max-concurrency", "16", "--max-tokens", "300",
        "--rounds", "2",
        "--extra-body", '{"ignore_eos": true, "temperature": 0}',
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    found = SERVER_VERDICT.search(result.stdout)
    assert found is not None, result.stdout
    assert parallel - 1 <= int(found[1]) <= parallel + 1, result.stdout
