"""A lean h2c (HTTP/2 prior knowledge) server for benchmarks/h2_cpu.py (loopback only).

Answers every request with the same small chat completion as `_server.py` after a fixed
latency. Raw asyncio protocol on the `h2` package, in its own process, so that its CPU is
not counted with the client's. Allows 1,000 concurrent streams per connection.

    python benchmarks/_h2_server.py --latency 0.3

prints `PORT <n>` once it listens; stops on SIGTERM or after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import h2.config
import h2.connection
import h2.events
import h2.settings
from _server import _COMPLETION  # type: ignore[import-not-found]

_HEADERS = [
    (b":status", b"200"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_COMPLETION)).encode()),
]


class _Conn(asyncio.Protocol):
    def __init__(self, latency: float, loop: asyncio.AbstractEventLoop) -> None:
        self.latency = latency
        self.loop = loop
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000},
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(1 << 30)
        self._flush()

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.loop.call_later(self.latency, self._answer, event.stream_id)
        self._flush()

    def _answer(self, sid: int) -> None:
        with contextlib.suppress(Exception):  # reset by the client meanwhile
            self.h2.send_headers(sid, _HEADERS)
            self.h2.send_data(sid, _COMPLETION, end_stream=True)
        self._flush()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _main(latency: float, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(latency, loop), "127.0.0.1", 0, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    asyncio.run(_main(args.latency, args.max_seconds))


if __name__ == "__main__":
    main()
