"""The floor for green threads in Python: Knot's request code on bare greenlets and an epoll hub.

    python -m demos.bare_greenlets --root DIR --port PORT [--host 127.0.0.1]

A measuring instrument, not a server to deploy. One greenlet per connection runs the same
request path as the event-style reference server (demos/uvloop_httptools: Knot's httptools
reader, path checks, page cache and response bytes), in blocking style, and a hub of a dozen
lines switches to whichever greenlet's socket epoll reports ready. Nothing else: no asyncio
loop, no callbacks or timers, no ordering guarantees, no cancellation, priorities, timeouts,
connection limits or disk threads (a cache miss reads the file right on the hub's thread).

So its throughput is what thread-per-connection code costs on CPython when the scheduler
costs next to nothing. Beside it, Knot-C on greenloop shows what greenloop's asyncio loop
and Knot's protections add, and the same request code as uvloop callbacks shows what
switching stacks costs against calling a callback (``make floor``).

Prints "bare-greenlets: serving DIR on http://HOST:PORT/" once listening.
"""

from __future__ import annotations

import argparse
import select
import socket
from typing import Any

from greenlet import getcurrent, greenlet

from demos import gc_policy
from demos.knot.files import Entry, PageCache, load, resolved_root
from demos.knot.http import Limits, RequestReader, cached_answer, error_response, route

RECV_SIZE = 65536
MAX_ENTRY = 4 << 20


class Hub:
    """epoll and the greenlets waiting on it: one waiter per fd and direction."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.waiting: dict[tuple[int, int], Any] = {}
        self.events: dict[int, int] = {}  # fd -> the event mask registered for it
        self.ready: list[Any] = []  # new greenlets, started at the next turn
        self.glet = greenlet(self.run)

    def wait(self, fd: int, event: int) -> None:
        """Park the calling greenlet until ``fd`` is ready for ``event`` (EPOLLIN/EPOLLOUT)."""
        mask = self.events.get(fd, 0)
        if not mask & event:
            # Level-triggered and left registered between waits, as greenloop's sockets do.
            (self.epoll.modify if mask else self.epoll.register)(fd, mask | event)
            self.events[fd] = mask | event
        self.waiting[fd, event] = getcurrent()
        self.glet.switch()

    def forget(self, fd: int) -> None:
        if self.events.pop(fd, 0):
            self.epoll.unregister(fd)

    def spawn(self, fn: Any, *args: Any) -> None:
        self.ready.append(greenlet(lambda: fn(*args), parent=self.glet))

    def run(self) -> None:
        pop = self.waiting.pop
        while True:
            while self.ready:
                started, self.ready = self.ready, []
                for glet in started:
                    glet.switch()
            for fd, event in self.epoll.poll():
                if event & ~select.EPOLLOUT:  # readable, or an error / hang-up: wake both
                    glet = pop((fd, select.EPOLLIN), None)
                    if glet is not None:
                        glet.switch()
                if event & ~select.EPOLLIN:
                    glet = pop((fd, select.EPOLLOUT), None)
                    if glet is not None:
                        glet.switch()


class Server:
    def __init__(self, root: str, hub: Hub) -> None:
        self.root = resolved_root(root)
        self.cache = PageCache(64 << 20)
        self.limits = Limits()
        self.hub = hub

    def accept_forever(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                self.hub.wait(listener.fileno(), select.EPOLLIN)
                continue
            except OSError:  # out of descriptors, a client that gave up: try the next
                self.hub.wait(listener.fileno(), select.EPOLLIN)
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.hub.spawn(self.connection, conn)

    def connection(self, conn: socket.socket) -> None:
        fd = conn.fileno()
        reader = RequestReader(self.limits)
        try:
            self.converse(conn, fd, reader)
        except OSError:
            pass  # reset, broken pipe
        finally:
            reader.close()
            self.hub.forget(fd)
            conn.close()

    def converse(self, conn: socket.socket, fd: int, reader: RequestReader) -> None:
        drained = False
        while True:
            if drained:  # the last read was short: the next would find nothing yet
                self.hub.wait(fd, select.EPOLLIN)
            try:
                data = conn.recv(RECV_SIZE)
            except BlockingIOError:
                drained = True
                continue
            if not data:
                return
            drained = len(data) < RECV_SIZE
            error = reader.feed(data)
            out, close = self.answers(reader)
            if error and not close:
                out.append(error_response(error, keep_alive=False, head_only=reader.head_only()))
                close = True
            if out:
                self.sendall(conn, fd, b"".join(out))
            if close:
                return

    def answers(self, reader: RequestReader) -> tuple[list[bytes], bool]:
        """The answers to every complete request, and whether the connection ends after them."""
        out: list[bytes] = []
        done = reader.done
        while done:
            req = done.popleft()
            entry: Entry | int | bytes = route(req)
            if isinstance(entry, bytes):
                key = entry
                entry = self.cache.get(key)
                if entry is None:  # a miss: read the file (here, blocking the hub) and keep it
                    entry = load(self.root, key, MAX_ENTRY)
                    if isinstance(entry, Entry):
                        self.cache.put(key, entry)
                if isinstance(entry, Entry) and entry.body is None:
                    entry = 500  # too big for the cache: streaming is Knot's job, not the floor's
            if not cached_answer(req, entry, out):
                return out, True
        return out, False

    def sendall(self, conn: socket.socket, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[conn.send(view) :]
            except BlockingIOError:
                self.hub.wait(fd, select.EPOLLOUT)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.bare_greenlets", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8083)
    args = p.parse_args()
    hub = Hub()
    server = Server(args.root, hub)
    listener = socket.create_server((args.host, args.port), backlog=65535, reuse_port=False)
    port = listener.getsockname()[1]
    print(f"bare-greenlets: serving {args.root} on http://{args.host}:{port}/", flush=True)
    gc_policy.apply()
    hub.spawn(server.accept_forever, listener)
    try:
        hub.glet.switch()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
