"""The `surge` command line: `surge demo` tells client waves from server waves."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import surge
from surge._cli import _verdict, _waves, main


def _demo(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "surge._cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_blames_the_client_pool_when_it_limits() -> None:
    out = _demo("-n", "12", "--latency", "0.2", "--max-connections", "3")
    assert "server         peak 3 requests in flight" in out
    assert "client pool    3 connection(s) opened" in out
    assert "waves from the CLIENT" in out
    assert "raise max_connections (now 3)" in out


def test_demo_blames_the_server_when_its_slots_limit() -> None:
    out = _demo("-n", "12", "--latency", "0.2", "--slots", "3")
    assert "3 being served at once" in out
    assert "waves from the SERVER" in out


def _args(latency: float) -> argparse.Namespace:
    return argparse.Namespace(latency=latency)


def _report(*timings: surge.Timings) -> dict[str, object]:
    return {"timings": list(timings), "limit": 6}


def test_verdict_reads_the_timings() -> None:
    client_waves = _report(*[surge.Timings(queued=q, ttfb=1.0) for q in (0, 0, 1.0, 1.0, 2.0)])
    server_waves = _report(*[surge.Timings(queued=0, ttfb=t) for t in (1.0, 1.0, 2.0, 3.0, 3.0)])
    no_waves = _report(*[surge.Timings(queued=0, ttfb=1.01) for _ in range(5)])
    assert "CLIENT" in _verdict(client_waves, 1.0, _args(1.0))
    assert "SERVER" in _verdict(server_waves, 1.0, _args(1.0))
    assert _verdict(no_waves, 1.0, _args(1.0)).startswith("no waves")
    assert _verdict(_report(), 1.0, _args(1.0)) == "no call completed."


def test_waves_count_groups_of_finish_times() -> None:
    assert _waves([], 1.0) == 0
    assert _waves([1.0, 1.01, 1.02], 1.0) == 1
    assert _waves([1.0, 1.01, 2.0, 2.02, 3.0], 1.0) == 3


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--max-connections", "0"])
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
