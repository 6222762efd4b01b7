"""A scripted event-stream server for streaming tests, in its own thread and loop.

Each request's path names a script registered with `ScriptedSSE.script`: a list of byte
strings, each written (as one HTTP/1.1 chunk) and drained before the next, so the client
sees reads cut where the script cuts them. The script's ending says how the answer ends:
"end" (the last chunk, keep-alive), "close" (the socket closes mid-body) or "stall" (the
server stays silent until the client leaves); "json" sends the pieces joined as one
`application/json` body instead (a server that ignored `stream: true`).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from tests._servers import _Base

__all__ = ["ScriptedSSE"]

Ending = Literal["end", "close", "stall", "json"]


class ScriptedSSE(_Base):
    """An HTTP/1.1 server answering each path with its script of event-stream bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: dict[str, tuple[list[bytes | float], Ending, int]] = {}
        self.served: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def script(
        self, path: str, pieces: list[bytes | float], ending: Ending = "end", status: int = 200
    ) -> str:
        """Register what `path` answers; return the base URL to give the client.

        A float among the pieces is a pause of that many seconds before the next one.
        """
        self.scripts[path] = (pieces, ending, status)
        return f"{self.url}{path}"

    async def _main(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        async with server:
            await self._stop.wait()
            # Connections still open (a stalled script) end here, not when the loop closes.
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._changed(connections_opened=1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1].removesuffix("/chat/completions")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self._changed(requests=1)
                with self.cond:
                    self.served[path] = self.served.get(path, 0) + 1
                pieces, ending, status = self.scripts[path]
                if status != 200:
                    body = b'{"error": {"message": "scripted failure"}}'
                    writer.write(
                        f"HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                    await writer.drain()
                    continue
                if ending == "json":
                    body = b"".join(p for p in pieces if isinstance(p, bytes))
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%s" % (len(body), body)
                    )
                    await writer.drain()
                    continue
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                for piece in pieces:
                    if isinstance(piece, float):  # a pause of that many seconds
                        await asyncio.sleep(piece)
                        continue
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                    await asyncio.sleep(0.001)  # a separate read on the client, usually
                if ending == "close":
                    return
                if ending == "stall":
                    await reader.read()  # until the client closes
                    return
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
            self._changed(connections_closed=1)
            self._tasks.discard(task)
