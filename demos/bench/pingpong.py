"""Green socket ping-pong: the wait path of blocking-style code, greenloop beside gevent.

    python -m demos.bench.pingpong [--pairs 50] [--rounds 3000] [--repeat 5]

Each of ``pairs`` socket pairs has two threads: one sends 100 bytes and waits for the echo,
the other receives and echoes, ``rounds`` times. Every message is one blocking ``recv`` that
parks its thread, one readiness event, one wake-up and one ``sendall``: the path Knot takes
per request. The same plain blocking code runs on greenloop's green threads and cooperative
socket and on gevent after ``monkey.patch_all()``; an asyncio Protocol doing the same on
asyncio's loop and on uvloop is the event-style reference. Each run is a fresh process;
the table gives the median CPU time per round trip (two messages) and greenloop's ratios.

The ``greenlet`` runner is the floor for green threads in Python: the same two functions on
bare greenlets, switched by a dozen-line epoll hub that keeps none of an asyncio loop's
guarantees (no callbacks, timers, ordering, cancellation or priorities). What greenloop costs
above it is the price of being an asyncio loop; what it costs above uvloop's Protocol is, in
addition, that of switching stacks instead of calling a callback.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

RUNNERS = ("greenloop", "greenlet", "gevent", "asyncio", "uvloop")


def _side_a(sock: Any, n: int) -> None:
    for _ in range(n):
        sock.sendall(b"x" * 100)
        sock.recv(1000)


def _side_b(sock: Any, n: int) -> None:
    for _ in range(n):
        sock.sendall(sock.recv(1000))


def _threads(spawn: Any, socketpair: Any, pairs: int, rounds: int) -> list[Any]:
    threads = []
    for _ in range(pairs):
        a, b = socketpair()
        threads += [spawn(_side_a, a, rounds), spawn(_side_b, b, rounds)]
    return threads


def run(runner: str, pairs: int, rounds: int) -> float:
    """CPU seconds per round trip, in this process."""
    if runner == "gevent":
        from gevent import monkey

        monkey.patch_all()
        import socket

        import gevent

        start = time.process_time()
        gevent.joinall(_threads(gevent.spawn, socket.socketpair, pairs, rounds))
    elif runner == "greenloop":
        import greenloop
        from greenloop.green import socket as gsocket

        def main() -> None:
            for gt in _threads(greenloop.spawn, gsocket.socketpair, pairs, rounds):
                gt.join()

        start = time.process_time()
        greenloop.spawn(main).join()
    elif runner == "greenlet":
        start = time.process_time()
        _run_bare_greenlets(pairs, rounds)
    else:
        start = time.process_time()
        _run_protocols(runner, pairs, rounds)
    return (time.process_time() - start) / (pairs * rounds)


class _BareSocket:
    """recv/sendall on a non-blocking socket for bare greenlets: wait in the hub's epoll when
    the last read was short (the next one would find nothing), as greenloop's socket does."""

    def __init__(self, sock: Any, hub: Any) -> None:
        # Imported here, once: gevent's runner must patch the stdlib before anything imports it.
        import select

        from greenlet import getcurrent

        self.sock, self.hub, self.drained, self.registered = sock, hub, False, False
        self.epollin, self.getcurrent = select.EPOLLIN, getcurrent
        sock.setblocking(False)

    def recv(self, size: int) -> bytes:
        while True:
            if self.drained:
                fd = self.sock.fileno()
                if not self.registered:
                    self.hub.epoll.register(fd, self.epollin)
                    self.registered = True
                self.hub.waiting[fd] = self.getcurrent()
                self.hub.switch()
            try:
                data: bytes = self.sock.recv(size)
            except BlockingIOError:
                self.drained = True
                continue
            self.drained = len(data) < size
            return data

    def sendall(self, data: bytes) -> None:
        self.sock.send(data)  # 100 bytes into an empty socket buffer: never partial


def _run_bare_greenlets(pairs: int, rounds: int) -> None:
    import select
    import socket

    from greenlet import greenlet

    def hub_main() -> None:
        for glet in list(live):
            glet.switch()  # runs until its first wait
        pop = hub.waiting.pop
        while live:
            for fd, _ in hub.epoll.poll():
                glet = pop(fd, None)
                if glet is not None:
                    glet.switch()

    hub = greenlet(hub_main)
    hub.epoll, hub.waiting = select.epoll(), {}
    live: list[Any] = []
    socks: list[Any] = []

    def spawn(fn: Any, sock: Any, n: int) -> None:
        def body() -> None:
            fn(_BareSocket(sock, hub), n)
            live.remove(glet)

        glet = greenlet(body, parent=hub)
        live.append(glet)
        socks.append(sock)

    _threads(spawn, socket.socketpair, pairs, rounds)
    hub.switch()
    hub.epoll.close()
    for sock in socks:
        sock.close()


def _run_protocols(runner: str, pairs: int, rounds: int) -> None:
    import asyncio
    import socket

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    class Ping(asyncio.Protocol):
        def __init__(self, done: asyncio.Future[None]) -> None:
            self.left, self.done = rounds, done

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            transport.write(b"x" * 100)

        def data_received(self, data: bytes) -> None:
            self.left -= 1
            if self.left:
                self.transport.write(b"x" * 100)
            elif not self.done.done():
                self.done.set_result(None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        waits = []
        for _ in range(pairs):
            a, b = socket.socketpair()
            await loop.connect_accepted_socket(Echo, b)
            done = loop.create_future()
            waits.append(done)
            await loop.connect_accepted_socket(lambda d=done: Ping(d), a)
        await asyncio.gather(*waits)

    if runner == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.bench.pingpong", description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--runners", default=",".join(RUNNERS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(run(args.worker, args.pairs, args.rounds)))
        return
    runners = args.runners.split(",")
    times: dict[str, list[float]] = {r: [] for r in runners}
    for _ in range(args.repeat):
        for r in runners:  # interleaved, each in a fresh process
            cmd = [sys.executable, "-m", "demos.bench.pingpong", "--worker", r]
            cmd += ["--pairs", str(args.pairs), "--rounds", str(args.rounds)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            times[r].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {r: statistics.median(v) * 1e6 for r, v in times.items()}
    print(f"green socket ping-pong, {args.pairs} pairs x {args.rounds} rounds, median of {args.repeat}")
    print("| runner | µs CPU per round trip | greenloop/runner |")
    print("|---|---:|---:|")
    for r in runners:
        ratio = f"{med['greenloop'] / med[r]:.2f}x" if "greenloop" in med else ""
        print(f"| {r} | {med[r]:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
