"""A real Redis server on a free loopback port, for the shared-limits tests.

Uses Debian's `redis-server` binary (`.ci/run` installs it). Tests skip with a reason when
it is missing, except under CI (env CI=true), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

__all__ = ["RedisServer", "require_redis", "require_redis_py"]


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


def require_redis_py() -> None:
    """Skip without redis-py (fail under CI, where the dev extra installs it)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        _missing('needs redis-py (pip install "surge[redis]")')


def require_redis() -> str:
    """The path of redis-server, with redis-py; skip (or fail under CI) without them."""
    require_redis_py()
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("needs redis-server on PATH (apt-get install redis-server; .ci/run does)")
    assert binary is not None
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1, with no persistence; stop and start again."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.directory = tempfile.mkdtemp(prefix="surge-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:  # bounded: ready when it answers PING
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def remove(self) -> None:
        """Stop for good and delete the working directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
