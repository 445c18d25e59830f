"""The mix no peer offers: threaded code and asyncio code in one process, on one loop.

Run it as ``python -m greenloop demos/mixed.py [--seconds N]`` (or plainly: it patches itself
if needed). Everything below shares one greenloop event loop on one OS thread, concurrently:

* an **aiohttp** server whose handler calls the *blocking* ``requests.get()`` on another
  local service; only that request's task waits, the server keeps answering;
* that other service is a plain threaded **socketserver** (``ThreadingTCPServer`` speaking
  just enough HTTP), each connection on its own green thread, answering after a delay;
* **green threads** feeding a plain ``queue.Queue``, which an **asyncio task** consumes with
  the blocking ``get()``;
* an aiohttp client hammering the server, to show that the latency of a route that does no
  blocking call stays low while the blocking route waits.

It prints one summary line per component and exits 0 when every part made progress.
"""

from __future__ import annotations

import greenloop
from greenloop import monkey

if not monkey.is_patched("socket"):  # run plainly: patch before anything below is imported
    monkey.patch_all()

# Imported after patching on purpose (modules that copy names at import see green ones).
import argparse
import asyncio
import queue
import socketserver
import statistics
import threading
import time

import requests
from aiohttp import ClientSession, web

BACKEND_DELAY = 0.2


class SlowBackend(socketserver.StreamRequestHandler):
    """A threaded service: reads a request line and headers, answers after a delay."""

    def handle(self) -> None:
        request_line = self.rfile.readline().decode()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        time.sleep(BACKEND_DELAY)  # blocking style: only this connection's green thread waits
        body = f"backend saw {request_line.split()[1]}".encode()
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )


class Backend(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


async def main(seconds: float) -> int:
    backend = Backend(("127.0.0.1", 0), SlowBackend)
    threading.Thread(target=backend.serve_forever, name="backend", daemon=True).start()
    backend_url = f"http://127.0.0.1:{backend.server_address[1]}"
    session = requests.Session()
    session.trust_env = False  # loopback only, whatever proxy the environment names
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=100))

    async def blocking_route(request: web.Request) -> web.Response:
        # A blocking library call inside an aiohttp handler: suspends only this task.
        reply = session.get(f"{backend_url}/{request.match_info['n']}", timeout=10)
        return web.Response(text=reply.text)

    async def fast_route(request: web.Request) -> web.Response:
        return web.Response(text="fast")

    app = web.Application()
    app.router.add_get("/proxy/{n}", blocking_route)
    app.router.add_get("/fast", fast_route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"

    # Green threads produce into a plain queue.Queue; an asyncio task consumes it.
    work: queue.Queue[int | None] = queue.Queue(maxsize=100)
    producers = 20

    def produce(i: int) -> None:
        for j in range(50):
            work.put(i * 1000 + j)
            time.sleep(0.001)
        work.put(None)

    async def consume() -> int:
        done = count = 0
        while done < producers:
            item = work.get()  # the blocking get(), called from a task
            if item is None:
                done += 1
            else:
                count += 1
        return count

    for i in range(producers):
        threading.Thread(target=produce, args=(i,), daemon=True).start()
    consumer = asyncio.create_task(consume())

    proxied = 0
    fast_latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with ClientSession() as client:

        async def proxy_calls() -> None:
            nonlocal proxied
            while time.monotonic() < deadline:
                batch = [client.get(f"{base}/proxy/{proxied + k}") for k in range(50)]
                for resp in await asyncio.gather(*batch):
                    assert (await resp.text()).startswith("backend saw /")
                    resp.release()
                    proxied += 1

        async def fast_calls() -> None:
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                async with client.get(f"{base}/fast") as resp:
                    assert await resp.text() == "fast"
                fast_latencies.append(time.monotonic() - t0)
                await asyncio.sleep(0.005)

        await asyncio.gather(proxy_calls(), fast_calls())
    consumed = await consumer
    await runner.cleanup()
    backend.shutdown()
    backend.server_close()

    median_ms = statistics.median(fast_latencies) * 1000
    # 50 concurrent proxied requests per BACKEND_DELAY: sequential code would manage 1 per delay.
    print(f"proxied requests through blocking requests.get(): {proxied} in {seconds:.1f}s")
    print(f"fast route while they waited: {len(fast_latencies)} requests, median {median_ms:.1f} ms")
    print(f"queue.Queue items from {producers} green threads consumed by a task: {consumed}")
    ok = proxied >= 50 and consumed == producers * 50 and median_ms < 50
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    ns = parser.parse_args()
    raise SystemExit(greenloop.run(main(ns.seconds)))
