"""llama.cpp's own `llama-server`, started on loopback for the real-server tier.

The tier checks surge against a server it did not write (docs/testing.md, "Testing against a
real server"). Only the binary comes from outside: `$SURGE_LLAMA_SERVER`, else
`../shared/realserver/llama-server` beside the checkout, else `build/llama-server`, where
`scripts/build-llama-server` puts the one it builds. The model is written at test time
(tests/_tiny_model.py).

Use it through the `llama_server` fixture of tests/conftest.py, a factory:

```python
pytestmark = [pytest.mark.anyio, pytest.mark.realserver]


async def test_hello(llama_server: LlamaServerFactory) -> None:
    server = llama_server(parallel=2, ctx=2048)
    async with surge.LLMClient(base_url=server.url) as client:
        ...
```

Each call starts one server process on a free port, waits for `GET /health` to answer 200
and returns a `LlamaServer`; the fixture stops every server it started when the test ends,
passed or failed. Without a binary the test skips, naming where it looked; under CI
(`CI=true`) it fails instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

__all__ = [
    "ENV_BINARY",
    "LlamaServer",
    "LlamaServerFactory",
    "find_binary",
    "llama_servers",
    "require_binary",
    "start_llama_server",
]

ENV_BINARY = "SURGE_LLAMA_SERVER"
"""Environment variable naming the `llama-server` binary to use."""

REPO = Path(__file__).resolve().parents[1]
SHARED_BINARY = REPO.parent / "shared" / "realserver" / "llama-server"
BUILT_BINARY = REPO / "build" / "llama-server"  # where scripts/build-llama-server puts it

STARTUP_TIMEOUT = 30.0
"""Seconds a server may take to answer /health with 200 (it takes well under one)."""

STOP_TIMEOUT = 5.0


@dataclasses.dataclass
class LlamaServer:
    """One running `llama-server` process.

    Attributes:
        root: The server's root URL, e.g. "http://127.0.0.1:41234" (for /health, /slots).
        url: The OpenAI-compatible API root to give a client: `root` + "/v1".
        port: The loopback port it listens on.
        parallel: Its slots (`--parallel`): requests beyond this wait inside the server.
        ctx: Its total context (`-c`), split evenly between the slots.
        process: The process.
        log_path: Where its stdout and stderr go (shown when a test fails).
    """

    root: str
    url: str
    port: int
    parallel: int
    ctx: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def slot_context(self) -> int:
        """Tokens one slot holds: `ctx // parallel`."""
        return self.ctx // self.parallel

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """Kill the process at once (SIGKILL) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop the process: SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()


LlamaServerFactory = Callable[..., LlamaServer]
"""`llama_server(parallel=6, ctx=6144, args=())`: start a server, return it."""


def find_binary() -> tuple[Path | None, str]:
    """Return the binary to use (or None) and a sentence saying where it was looked for."""
    configured = os.environ.get(ENV_BINARY)
    if configured:
        path = Path(configured)
        if path.is_file() and os.access(path, os.X_OK):
            return path, f"${ENV_BINARY}={configured}"
        return None, f"${ENV_BINARY}={configured} is not an executable file"
    for path in (SHARED_BINARY, BUILT_BINARY):
        if path.is_file() and os.access(path, os.X_OK):
            return path, str(path)
    return None, (
        f"no llama-server binary: ${ENV_BINARY} is not set and neither {SHARED_BINARY} nor "
        f"{BUILT_BINARY} exists (build one with scripts/build-llama-server; see docs/testing.md)"
    )


def require_binary() -> Path:
    """The binary; skip the test without one, or fail it under CI (CI=true)."""
    binary, where = find_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real-server tier cannot run under CI: {where}", pytrace=False)
        pytest.skip(where)
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(server: LlamaServer, timeout: float) -> None:
    """Poll GET /health until 200, the process dies, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited with {server.process.returncode} before it was "
                    f"ready:\n{server.log()[-3000:]}"
                )
            try:
                response = http.get(f"{server.root}/health")
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.02)  # a poll interval, bounded by the deadline above
    raise TimeoutError(
        f"llama-server did not answer /health with 200 within {timeout} s (last: {last}):\n"
        f"{server.log()[-3000:]}"
    )


def start_llama_server(
    binary: Path,
    model: Path,
    log_dir: Path,
    *,
    parallel: int = 6,
    ctx: int = 6144,
    args: Sequence[str] = (),
    timeout: float = STARTUP_TIMEOUT,
) -> LlamaServer:
    """Start `llama-server` on a free loopback port and wait until it is healthy.

    Args:
        binary: The `llama-server` executable.
        model: The `.gguf` model file.
        log_dir: Where to write the server's log.
        parallel: Slots (`--parallel`).
        ctx: Total context (`-c`), split evenly between the slots.
        args: Extra command-line arguments (`["--metrics"]`, `["--no-jinja"]`, ...).
        timeout: Seconds to wait for /health.

    Returns:
        The running server; the caller stops it.
    """
    last_error: Exception | None = None
    for _ in range(3):  # a port taken between _free_port() and the server's bind: try another
        port = _free_port()
        log_path = log_dir / f"llama-server-{port}.log"
        command = [
            str(binary),
            *("-m", str(model)),
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--parallel", str(parallel), "-c", str(ctx)),
            *("--threads", "1", "--threads-batch", "1"),
            "--no-webui",
            *args,
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        root = f"http://127.0.0.1:{port}"
        server = LlamaServer(root, f"{root}/v1", port, parallel, ctx, process, log_path)
        try:
            _wait_healthy(server, timeout)
        except RuntimeError as exc:  # exited early: maybe the port was taken
            last_error = exc
            continue
        except BaseException:
            server.kill()
            raise
        return server
    raise RuntimeError(f"llama-server did not start: {last_error}")


@contextlib.contextmanager
def llama_servers(binary: Path, model: Path, log_dir: Path) -> Iterator[LlamaServerFactory]:
    """A factory of servers that stops every server it started on exit."""
    started: list[LlamaServer] = []

    def factory(
        parallel: int = 6, ctx: int = 6144, args: Sequence[str] = (), **kwargs: float
    ) -> LlamaServer:
        server = start_llama_server(
            binary, model, log_dir, parallel=parallel, ctx=ctx, args=args, **kwargs
        )
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            server.stop()
