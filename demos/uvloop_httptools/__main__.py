"""The event-style reference: Knot's parser and cache behind a uvloop Protocol.

    python -m demos.uvloop_httptools --root DIR --port PORT [--host H] [--loop uvloop|greenloop|asyncio]

The paper's duality argument says a good thread system and a good event system built on the
same mechanism perform alike. This server is the event half of that pair: the same httptools
request reader, path checks, page cache and response bytes as Knot (demos/knot/http.py and
files.py), driven by callbacks instead of threads. Knot on greenloop is measured against it.

Each connection is a state machine: bytes in -> parse -> answer every complete request from
the cache; on a miss, stop reading, load the file on the thread pool, and resume from the
same request when it arrives (answers stay in order). Idle and request timeouts are enforced
by one sweep a second over all connections, the usual event-server way.

``--loop greenloop`` runs the same server on greenloop's loop: the duality pair on one and the
same mechanism (Knot-C's loop, poller and sockets), so that row of Figure 3 separates what
the threads cost from what a loop written in Python costs next to uvloop's C.

Prints "uvloop-httptools: serving DIR on http://HOST:PORT/" once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from typing import Any

import uvloop

from demos import gc_policy
from demos.knot.files import Entry, PageCache, load, resolved_root
from demos.knot.http import Limits, RequestReader, cached_answer, error_response, route

MAX_ENTRY = 4 << 20
IDLE_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0


class Server:
    def __init__(self, root: str, cache_bytes: int) -> None:
        self.root = resolved_root(root)
        self.cache = PageCache(cache_bytes)
        self.limits = Limits()
        self.connections: set[HttpProtocol] = set()

    def sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        asyncio.get_running_loop().call_later(1.0, self.sweep)


class HttpProtocol(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.reader = RequestReader(server.limits)
        self.transport: Any = None
        self.error = 0
        self.loading: tuple[bytes, Any] | None = None  # (key, result) of a miss being read
        self.last_active = time.monotonic()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.server.connections.discard(self)
        self.reader.close()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self.error = self.error or self.reader.feed(data)
        if self.loading is None:
            self.answer_ready()

    def answer_ready(self) -> None:
        """Answer complete requests in order until one needs the disk or closes."""
        server, out = self.server, []
        done = self.reader.done
        while done:
            req = done[0]
            key = route(req)
            entry: Any = key
            if isinstance(key, bytes):
                entry = server.cache.get(key)
                if entry is None and self.loading is not None and self.loading[0] == key:
                    entry = self.loading[1]  # a miss that has just been read
                if entry is None:
                    self.read_file(key)
                    break
            self.loading = None
            done.popleft()
            if not cached_answer(req, entry, out):
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        else:
            if self.error:
                out.append(error_response(self.error, keep_alive=False, head_only=self.reader.head_only()))
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        if out:
            self.transport.write(b"".join(out))

    def read_file(self, key: bytes) -> None:
        self.transport.pause_reading()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, load, self.server.root, key, sys.maxsize)
        fut.add_done_callback(lambda f: self.file_read(key, f))

    def file_read(self, key: bytes, fut: asyncio.Future[Entry | int]) -> None:
        entry = fut.result()
        if isinstance(entry, Entry) and entry.size <= MAX_ENTRY:
            self.server.cache.put(key, entry)
        self.loading = (key, entry)
        if not self.transport.is_closing():
            self.transport.resume_reading()
            self.answer_ready()

    def check_timeouts(self, now: float) -> None:
        reader = self.reader
        if reader.in_request and now - reader.started > REQUEST_TIMEOUT:
            self.transport.write(error_response(408, keep_alive=False, head_only=reader.head_only()))
            self.transport.close()
        elif not reader.in_request and self.loading is None and now - self.last_active > IDLE_TIMEOUT:
            self.transport.close()


async def serve(args: argparse.Namespace) -> None:
    server = Server(args.root, int(args.cache_mb * (1 << 20)))
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: HttpProtocol(server), args.host, args.port, backlog=65535, reuse_address=True
    )
    for sock in srv.sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.sweep()
    gc_policy.apply()
    port = srv.sockets[0].getsockname()[1]
    print(f"uvloop-httptools: serving {args.root} on http://{args.host}:{port}/", flush=True)
    await srv.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.uvloop_httptools", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8082)
    p.add_argument("--cache-mb", type=float, default=64.0)
    p.add_argument("--loop", choices=("uvloop", "greenloop", "asyncio"), default="uvloop")
    args = p.parse_args()
    if args.loop == "greenloop":
        import greenloop

        run: Any = greenloop.run
    else:
        run = uvloop.run if args.loop == "uvloop" else asyncio.run
    try:
        run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
