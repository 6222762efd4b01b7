"""A lean OpenAI-compatible HTTP/1.1 server for benchmarks/fanout.py (loopback only).

Answers `POST /v1/chat/completions` with a fixed small chat completion after a fixed
latency, and `GET /stats` with the number of requests served and the peak number in flight
since the last `GET /stats?reset=1`. Raw asyncio protocol, no framework, so that the
server's own CPU stays small next to the client under test (it runs in its own process).

    python benchmarks/_server.py --latency 1.5 [--port 0]

prints `PORT <n>` on stdout once it listens. It stops after --max-seconds (default 1800)
or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the benchmark server."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
    }
).encode()


class _State:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.in_flight = 0
        self.peak = 0
        self.requests = 0
        self.connections = 0


def _response(body: bytes, status: str = "200 OK") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class _Conn(asyncio.Protocol):
    def __init__(self, state: _State, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.loop = loop
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._process()

    def _process(self) -> None:
        while not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            method, target = head.split(" ", 2)[:2]
            state = self.state
            if method == "GET" and target.startswith("/stats"):
                body = json.dumps(
                    {
                        "peak_in_flight": state.peak,
                        "requests": state.requests,
                        "in_flight": state.in_flight,
                        "connections": state.connections,
                    }
                ).encode()
                if "reset" in target:
                    state.peak = state.in_flight
                    state.requests = 0
                    state.connections = 0
                self._send(_response(body))
                continue
            if method == "POST" and target.startswith("/v1/chat/completions"):
                state.requests += 1
                state.in_flight += 1
                state.peak = max(state.peak, state.in_flight)
                self.busy = True
                self.loop.call_later(state.latency, self._answer)
                return
            self._send(_response(b'{"error": "not found"}', "404 Not Found"))

    def _answer(self) -> None:
        self.state.in_flight -= 1
        self.busy = False
        self._send(_response(_COMPLETION))
        self._process()

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _main(port: int, latency: float, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    state = _State(latency)
    server = await loop.create_server(lambda: _Conn(state, loop), "127.0.0.1", port, backlog=16384)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=1.5)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    asyncio.run(_main(args.port, args.latency, args.max_seconds))
    sys.exit(0)


if __name__ == "__main__":
    main()
