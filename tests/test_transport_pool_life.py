"""The pool's life under pressure (issue 9, items 16-19 and running out of file descriptors).

Real loopback servers; asyncio and trio unless a test says why not.
"""

from __future__ import annotations

import asyncio
import os
import resource
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import httpx
import pytest
import trustme

import surge
from _h2server import ScriptedH2Server
from _pool_client import pool_client
from _servers import H2Server, RawServer, running, serving

HERE = Path(__file__).parent
SRC = HERE.parent / "src"


# ---------------------------------------------------------------------- 16: fds >= 1024
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])  # asyncio's check reads no fd
async def test_trio_reuses_connections_whose_fd_is_above_1024(anyio_backend: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.fail("needs RLIMIT_NOFILE >= 1200 to open an fd above 1024")
    if soft != resource.RLIM_INFINITY and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        async with serving(RawServer()) as srv:
            http, pool = pool_client()
            async with http:
                for _ in range(3):
                    assert (await http.get(srv.url)).status_code == 200
            assert pool.stats().connections_opened == 1
            assert srv.connections_opened == 1
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---------------------------------------------------------------------- 17: aclose
@pytest.mark.anyio
async def test_aclose_fails_waiters_and_leaves_counts_at_zero(anyio_backend: str) -> None:
    async with serving(RawServer()) as srv:
        http, pool = pool_client(max_connections=1)
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await http.get(srv.url + "/?hold=1")
            except httpx.HTTPError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(call)
            await srv.wait_for(lambda s: s.in_flight == 1)
            with anyio.fail_after(5):
                while pool.stats().waiting != 5:
                    await anyio.lowlevel.checkpoint()
            await pool.aclose()
        waiter_errors = [e for e in errors if isinstance(e, httpx.ConnectError)]
        assert len(waiter_errors) == 5
        assert all("closed" in str(e) for e in waiter_errors)
        assert len(errors) == 6  # and the one in flight lost its connection
        (origin,) = pool._origins.values()
        assert (origin.active, origin.opening, origin.n_waiting, origin.in_use) == (0, 0, 0, 0)
        stats = pool.stats()
        assert (stats.in_use, stats.waiting, stats.idle) == (0, 0, 0)
        srv.release()


@pytest.mark.anyio
async def test_aclose_during_an_http2_connect_fails_it_and_closes_the_socket(
    anyio_backend: str,
) -> None:
    async with serving(ScriptedH2Server(hold_preface=True)) as srv:
        http, pool = pool_client(http2=True)
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await http.get(srv.url)
            except httpx.HTTPError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await srv.wait_for(lambda s: s.connections_opened == 1)
            await pool.aclose()
            srv.release_preface()
        assert [type(e) for e in errors] == [httpx.ConnectError]
        assert "closed" in str(errors[0])
        await srv.wait_for(lambda s: s.connections_closed == 1)
        (origin,) = pool._origins.values()
        assert (origin.active, origin.opening, origin.n_waiting, origin.in_use) == (0, 0, 0, 0)


# ---------------------------------------------------------------------- 18: loops and forks
def test_http_client_survives_its_first_event_loop() -> None:
    # asyncio and trio both, in turn: each new loop gets the pool afresh.
    import trio

    with running(RawServer()) as srv:
        http = surge.http_client()

        async def get() -> int:
            return (await http.get(srv.url)).status_code

        assert asyncio.run(get()) == 200
        assert asyncio.run(get()) == 200  # was: RuntimeError: Event loop is closed
        assert trio.run(get) == 200
        assert asyncio.run(get()) == 200
        asyncio.run(http.aclose())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_http_client_after_fork_uses_its_own_connections() -> None:
    # Run in a fresh interpreter so that forking does not copy pytest's threads.
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        sys.path[:0] = [{str(HERE)!r}, {str(SRC)!r}]
        import surge
        from _servers import RawServer, running

        with running(RawServer()) as srv:
            http = surge.http_client()

            async def get(tag):
                response = await http.get(srv.url + "/?tag=" + tag)
                return response.json()["path"]

            assert asyncio.run(get("parent-1")) == "/?tag=parent-1"
            pid = os.fork()  # the pool holds an idle connection of the parent
            if pid == 0:
                ok = asyncio.run(asyncio.wait_for(get("child"), 10)) == "/?tag=child"
                os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, status
            # No answer meant for the child, no hang: the parent's pool is its own.
            assert asyncio.run(asyncio.wait_for(get("parent-2"), 10)) == "/?tag=parent-2"
            print("connections", srv.connections_opened)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["connections", "3"]


# ---------------------------------------------------------------------- 19: shared SSLContext
@pytest.mark.anyio
async def test_pools_sharing_an_ssl_context_do_not_flip_each_other(
    anyio_backend: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with serving(H2Server(tls=(str(chain), str(key)), max_streams=1)) as srv:
        http_a, pool_a = pool_client(http2=True, verify=ctx)
        http_b, pool_b = pool_client(verify=ctx)
        async with http_a, http_b:
            assert (await http_a.get(srv.url)).http_version == "HTTP/2"
            # A pool without http2 on the same context, after A: HTTP/1.1 (the server
            # offers both).
            assert (await http_b.get(srv.url)).http_version == "HTTP/1.1"
            # A opens a second connection (one stream each): still HTTP/2.
            results: list[str] = []

            async def call() -> None:
                results.append((await http_a.get(srv.url + "/?hold=1")).http_version)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(call)
                await srv.wait_for(lambda s: s.in_flight == 2)
                srv.release()
            assert results == ["HTTP/2", "HTTP/2"]
            assert pool_a.stats().connections_opened == 2
            # ... and B's connections opened after A's (to a second server, whose held
            # requests have not been released) are still HTTP/1.1.
            versions: list[str] = []
            async with serving(H2Server(tls=(str(chain), str(key)))) as srv2:

                async def call_b() -> None:
                    versions.append((await http_b.get(srv2.url + "/?hold=1")).http_version)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(call_b)
                    tg.start_soon(call_b)
                    await srv2.wait_for(lambda s: s.in_flight == 2)
                    srv2.release()
            assert versions == ["HTTP/1.1", "HTTP/1.1"]
            assert pool_b.stats().connections_opened == 3


# ---------------------------------------------------------------------- running out of fds
_EMFILE_SCRIPT = """
import logging, resource, sys
sys.path[:0] = [{src!r}]
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
import anyio, surge

records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("surge").addHandler(handler)

async def main():
    http = surge.http_client()
    codes = []

    async def call(i):
        codes.append((await http.get({url!r} + "/?latency=0.05&i=%d" % i)).status_code)

    async with http, anyio.create_task_group() as tg:
        for i in range(1000):
            tg.start_soon(call, i)
    fd_warnings = [r for r in records if "file descriptors" in r.getMessage()]
    # The limit it names is the connections it had open (none closed meanwhile).
    named = [int(w.args[2]) for w in fd_warnings]
    opened = http._transport.stats().connections_opened
    print(len(codes), codes.count(200), len(fd_warnings), named == [opened])

anyio.run(main, backend={backend!r})
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_running_out_of_file_descriptors_queues_instead_of_failing(backend: str) -> None:
    with running(RawServer()) as srv:
        script = _EMFILE_SCRIPT.format(src=str(SRC), url=srv.url, backend=backend)
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1000", "1000", "1", "True"]
