"""Chunked-body throughput: surge's HTTP/1.1 parser beside h11 (the parser under httpx).

Decodes one chunked response of `--mb` MiB in 64 KiB reads, as a socket delivers it, with
7-byte chunks (the worst case) and 100-byte chunks (server-sent-event sized), and prints
MB/s for each parser and their ratio. Pure CPU, no sockets.

    .venv/bin/python benchmarks/chunked.py [--mb 4] [--runs 5]
"""

from __future__ import annotations

import argparse
import sys
import time

import h11

from surge._transport.h1_parser import ResponseParser

READ = 65536


def _body(mb: int, size: int) -> tuple[bytes, int]:
    payload = b"x" * (mb * 1024 * 1024)
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    parts = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces]
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"".join(parts) + b"0\r\n\r\n", len(payload)


def _surge(raw: bytes) -> int:
    parser = ResponseParser()
    parser.start(False)
    got = 0
    for i in range(0, len(raw), READ):
        parser.feed(raw[i : i + READ])
        got += sum(map(len, parser.chunks))
        parser.chunks = []
    assert parser.complete
    return got


def _h11(raw: bytes) -> int:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    got = 0
    for i in range(0, len(raw), READ):
        conn.receive_data(raw[i : i + READ])
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage):
                break
            if isinstance(event, h11.Data):
                got += len(event.data)
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(
        f"python {sys.version.split()[0]}, h11 {h11.__version__}; "
        f"{args.mb} MiB in {READ}-byte reads, best of {args.runs}"
    )
    print(f"{'chunk':>6} {'surge MB/s':>11} {'h11 MB/s':>9} {'surge/h11':>10}")
    for size in (7, 100):
        raw, n = _body(args.mb, size)
        best = {}
        for name, fn in (("surge", _surge), ("h11", _h11)):
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                assert fn(raw) == n
                times.append(time.perf_counter() - t0)
            best[name] = n / min(times) / 1e6
        ratio = best["surge"] / best["h11"]
        print(f"{size:>6} {best['surge']:>11.1f} {best['h11']:>9.1f} {ratio:>9.2f}x")


if __name__ == "__main__":
    main()
