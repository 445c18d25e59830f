"""Real threaded programs, unmodified, run with ``python -m greenloop`` (each in a subprocess).

Every program below is plain threaded stdlib / requests code: nothing in it knows about
greenloop. The test writes it to a file, runs ``python -m greenloop prog.py`` and checks what
it printed. The clients run in the same process as the servers, on green threads too, so one
loop carries thousands of concurrent connections; the time bounds prove the waits overlap
(each is far below what the same work would take one at a time).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _util import not_select

# Loopback only: never let a proxy setting of the environment route the clients elsewhere.
ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()} | {"NO_PROXY": "*"}


def run_program(tmp_path: Path, source: str, *args: str, timeout: float = 60) -> list[str]:
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent(source))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "greenloop", str(prog), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=tmp_path,
        check=False,
    )
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        pytest.fail(f"exit code {proc.returncode} after {elapsed:.1f}s\n{proc.stdout}\n{proc.stderr[-5000:]}")
    return proc.stdout.split()


# A server that answers every request after 0.5 s: fetching N URLs one at a time takes N/2 s.
SLOW_SERVER = """
import http.server, threading, time

class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(0.5)
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024

server = Server(("127.0.0.1", 0), Slow)
threading.Thread(target=server.serve_forever, daemon=True).start()
BASE = "http://127.0.0.1:%d" % server.server_address[1]
N = 500
"""

CLIENT_THREADS = """
def fetch_all(fetch):
    results = [None] * N
    def one(i):
        results[i] = fetch(f"{BASE}/{i}")
    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [f"/{i}" for i in range(N)], results[:5]
    return time.monotonic() - t0
"""


@not_select
def test_threading_http_server_with_2000_keepalive_clients(tmp_path: Path) -> None:
    out = run_program(
        tmp_path,
        """
        import http.client, http.server, threading, time

        class Hello(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive
            def do_GET(self):
                body = b"hello " + self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 4096

        server = Server(("127.0.0.1", 0), Hello)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]

        N, REQUESTS = 2000, 2
        connected = threading.Barrier(N)
        ok = []
        def client(i):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for j in range(REQUESTS):
                conn.request("GET", f"/{i}/{j}")
                resp = conn.getresponse()
                assert resp.read() == f"hello /{i}/{j}".encode()
                if j == 0:
                    connected.wait()  # every client holds its connection open at once
            conn.close()
            ok.append(i)

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        server.shutdown()
        server.server_close()
        print(len(ok), time.monotonic() - t0 < 30)
        """,
    )
    assert out == ["2000", "True"]


@not_select
def test_threading_tcp_server_echo_with_1000_clients(tmp_path: Path) -> None:
    out = run_program(
        tmp_path,
        """
        import socket, socketserver, threading, time

        class Echo(socketserver.StreamRequestHandler):
            def handle(self):
                for line in self.rfile:
                    self.wfile.write(line.upper())

        class Server(socketserver.ThreadingTCPServer):
            request_queue_size = 2048
            daemon_threads = True

        server = Server(("127.0.0.1", 0), Echo)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        N = 1000
        together = threading.Barrier(N)
        replies = []
        def client(i):
            with socket.create_connection(server.server_address, timeout=60) as s:
                f = s.makefile("rwb")
                together.wait()  # 1,000 open connections at once
                for j in range(3):
                    f.write(b"echo %d %d\\n" % (i, j)); f.flush()
                    replies.append(f.readline() == b"ECHO %d %d\\n" % (i, j))
        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        server.shutdown()
        server.server_close()
        print(len(replies), all(replies), time.monotonic() - t0 < 30)
        """,
    )
    assert out == ["3000", "True", "True"]


def test_urllib_request_fetches_500_urls_concurrently(tmp_path: Path) -> None:
    out = run_program(
        tmp_path,
        SLOW_SERVER
        + CLIENT_THREADS
        + """
import urllib.request
elapsed = fetch_all(lambda url: urllib.request.urlopen(url, timeout=60).read().decode())
print("elapsed-ok", elapsed < 8, round(elapsed, 1))
""",
    )
    assert out[:2] == ["elapsed-ok", "True"], out


def test_requests_fetches_500_urls_concurrently(tmp_path: Path) -> None:
    out = run_program(
        tmp_path,
        SLOW_SERVER
        + CLIENT_THREADS
        + """
import requests
session = requests.Session()
session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=N))
elapsed = fetch_all(lambda url: session.get(url, timeout=60).text)
print("elapsed-ok", elapsed < 8, round(elapsed, 1))
""",
    )
    assert out[:2] == ["elapsed-ok", "True"], out


def test_urllib3_fetches_500_urls_concurrently(tmp_path: Path) -> None:
    out = run_program(
        tmp_path,
        SLOW_SERVER
        + CLIENT_THREADS
        + """
import urllib3
pool = urllib3.PoolManager(maxsize=N)
elapsed = fetch_all(lambda url: pool.request("GET", url, timeout=60).data.decode())
print("elapsed-ok", elapsed < 8, round(elapsed, 1))
""",
    )
    assert out[:2] == ["elapsed-ok", "True"], out


def test_user_thread_pool_executor_fetching_urls(tmp_path: Path) -> None:
    out = run_program(
        tmp_path,
        SLOW_SERVER
        + """
import concurrent.futures, urllib.request
def fetch(i):
    with urllib.request.urlopen(f"{BASE}/{i}", timeout=60) as resp:
        return resp.read().decode()
t0 = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(max_workers=250) as pool:
    futures = {pool.submit(fetch, i): i for i in range(N)}
    results = {futures[f]: f.result() for f in concurrent.futures.as_completed(futures)}
elapsed = time.monotonic() - t0
assert results == {i: f"/{i}" for i in range(N)}
print("elapsed-ok", elapsed < 8, round(elapsed, 1))
""",
    )
    assert out[:2] == ["elapsed-ok", "True"], out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
def test_redis_client_on_1000_green_threads_beside_an_aiohttp_server(tmp_path: Path) -> None:
    port = _free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        out = run_program(
            tmp_path,
            """
            import asyncio, random, statistics, sys, threading, time
            import redis
            from aiohttp import web, ClientSession

            client = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), max_connections=1000)
            errors = []
            def worker(i):
                # 1,000 clients with think time: a load the loop can carry, not a saturating one.
                try:
                    for j in range(2):
                        time.sleep(random.uniform(0.3, 1.3))
                        client.set(f"k{i}", f"v{i}.{j}")
                        assert client.get(f"k{i}") == f"v{i}.{j}".encode()
                except Exception as exc:
                    errors.append(exc)

            async def hello(request):
                return web.Response(text="hi")

            async def probe(session, url, until):
                latencies = []
                while not until():
                    t0 = time.monotonic()
                    async with session.get(url) as resp:
                        assert await resp.text() == "hi"
                    latencies.append(time.monotonic() - t0)
                    await asyncio.sleep(0.01)
                return statistics.median(latencies), len(latencies)

            async def main():
                app = web.Application()
                app.router.add_get("/", hello)
                runner = web.AppRunner(app)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                url = "http://127.0.0.1:%d/" % site._server.sockets[0].getsockname()[1]
                async with ClientSession() as session:
                    t_end = time.monotonic() + 0.5
                    usual, _ = await probe(session, url, lambda: time.monotonic() > t_end)
                    threads = [threading.Thread(target=worker, args=(i,)) for i in range(1000)]
                    for t in threads:
                        t.start()
                    loaded, n = await probe(session, url, lambda: not any(t.is_alive() for t in threads))
                for t in threads:
                    t.join()
                await runner.cleanup()
                assert not errors, errors[:3]
                assert client.dbsize() == 1000
                print(n > 10, loaded < max(10 * usual, 0.05), round(usual * 1000, 1), round(loaded * 1000, 1))

            asyncio.run(main())
            client.close()
            """,
            str(port),
        )
        assert out[:2] == ["True", "True"], out
        print("aiohttp median latency, usual vs beside 1,000 redis clients (ms):", out[2:])
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)


def test_mixed_demo_threads_and_asyncio_on_one_loop(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parent.parent / "demos" / "mixed.py"
    out = run_program(tmp_path, demo.read_text(), "--seconds", "1.5")
    assert out[-1] == "OK", out
