"""Pure-async micro-benchmarks of an asyncio event loop: asyncio's own, uvloop and greenloop.

Every benchmark is a function ``bench(loop_factory, scale=1.0) -> float`` that creates a fresh
loop with ``loop_factory``, does a short warm-up, then times a bounded number of operations in
five rounds and returns the cheapest round's **seconds per operation** (CPU time by default,
see ``use_wall_clock``). Nothing here is a test: there are no thresholds.

One measurement in a fresh process (what the driver, ``python -m demos.bench``, runs)::

    python -m demos.bench.loop_micro --loop greenloop --bench sleep0_pingpong
    python -m demos.bench.loop_micro --list

The TCP echo benchmarks run both ends on the loop under test: the server in a forked child
pinned to CPU 0, the client in this process pinned to CPU 1, over 127.0.0.1 only. Each client
connection sends a bounded number of messages and waits for each echo before sending the next,
so a run always ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

__all__ = ["BENCHMARKS", "LOOPS", "Benchmark", "LoopFactory", "loop_factory", "main"]

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

LOOPS = ("asyncio", "uvloop", "greenloop")

# Where the echo server and client run. With both on one core every round trip would include
# a context switch on that core and measure the kernel scheduler as much as the loop.
SERVER_CPU = 0
CLIENT_CPU = 1

# Enough descriptors for the 1,000-connection echo rows: each end holds one socket per
# connection, plus the listener, the control pipe and the loop's own self-pipe and epoll fd.
_NOFILE_WANTED = 4096

ECHO_MESSAGE = b"x" * 128
_CONNECT_BATCH = 100  # connect in batches: 1,000 simultaneous SYNs could overflow the backlog
_SERVER_BACKLOG = 2048


# What "time" means. The callback/task benchmarks are single-threaded and never wait, so on
# an idle machine this thread's CPU time equals the elapsed time; on a shared one it leaves
# out the time other processes held the CPU, which is most of the noise. The echo benchmarks
# likewise count the CPU time both processes (client and server) spent, per message. Both
# are the loop's own cost; use_wall_clock() switches every benchmark to elapsed time.
_micro_clock: Callable[[], float] = time.thread_time
_wall_clock = False


def use_wall_clock() -> None:
    """Time every benchmark by elapsed (wall-clock) time instead of CPU time."""
    global _micro_clock, _wall_clock
    _micro_clock = time.perf_counter
    _wall_clock = True


# Operations executed so far in this process, warm-up included, so that a whole-process
# measurement (instruction counts, see instructions.py) can be divided by the exact number.
_ops_done = 0


def _count_ops(n: int) -> int:
    global _ops_done
    _ops_done += n
    return n


def loop_factory(name: str) -> LoopFactory:
    """The factory for one of LOOPS; imports uvloop and greenloop only when asked for."""
    if name == "asyncio":
        # Not asyncio.new_event_loop(): that follows whatever policy is installed, and the
        # baseline must be the stdlib's selector loop whatever the environment does.
        return asyncio.SelectorEventLoop
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "greenloop":
        import greenloop

        return greenloop.new_event_loop
    raise ValueError(f"unknown loop {name!r}; choose one of {', '.join(LOOPS)}")


# Timed rounds per measurement, each with a fifth of the operations; the measurement is the
# cheapest round. Noise on a shared machine only ever adds cost (another process's cache
# traffic, an interrupt accounted to us), so the minimum of a few rounds is the best estimate
# of the loop's own cost; the driver's median over fresh processes covers the rest.
ROUNDS = 5


async def _best_of_rounds(round_: Callable[[int], Awaitable[float]], ops: int) -> float:
    """Run ``round_(ops // 10)`` as warm-up, then ROUNDS rounds; return the lowest s/op.

    The warm-up runs on the same loop so that first-call costs (imports, allocator growth,
    specialisation of the interpreter's bytecode) are paid before any clock starts.
    """
    await round_(max(1, ops // 10))
    best = math.inf
    for _ in range(ROUNDS):
        gc.collect()  # no garbage from the previous round is collected inside this one
        best = min(best, await round_(max(1, ops // ROUNDS)))
    return best


def _run(factory: LoopFactory, body: Callable[[int], Awaitable[float]], ops: int) -> float:
    loop = factory()
    try:
        return loop.run_until_complete(_best_of_rounds(body, ops))
    finally:
        loop.close()


# Operations per callback/task benchmark at scale 1, split over the timed rounds: about
# 0.3-0.5 s on asyncio's loop on the reference machine. The warm-up adds a tenth of that.
MICRO_OPS = {
    "call_soon_chain": 100_000,
    "call_soon_batch": 250_000,
    "task_create_await": 30_000,
    "future_round_trip": 50_000,
    "sleep0_pingpong": 150_000,
}


def _ops(bench: str, scale: float) -> int:
    return max(10, int(MICRO_OPS[bench] * scale))


# -- callbacks, tasks and futures ------------------------------------------------------------


def call_soon_chain(factory: LoopFactory, scale: float = 1.0) -> float:
    """One callback per loop iteration: each callback call_soon()s the next.

    The ready queue never holds more than one handle, so this is the cost of one full
    iteration of the run loop (the I/O poll, timers, the dequeue) plus one call_soon.
    """

    async def body(n: int) -> float:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        remaining = n

        def step() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining:
                loop.call_soon(step)
            else:
                done.set_result(None)

        t0 = _micro_clock()
        loop.call_soon(step)
        await done
        return (_micro_clock() - t0) / _count_ops(n)

    return _run(factory, body, _ops("call_soon_chain", scale))


_BATCH = 1000


def call_soon_batch(factory: LoopFactory, scale: float = 1.0) -> float:
    """Batches of 1,000 callbacks queued at once: per-callback cost, iteration amortised.

    Each batch is queued from one callback, so it runs in one loop iteration; the last
    callback of a batch queues the next batch.
    """

    async def body(n: int) -> float:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        batches = max(1, n // _BATCH)
        left = batches

        def noop() -> None:
            pass

        def queue_batch() -> None:
            nonlocal left
            left -= 1
            call_soon = loop.call_soon
            for _ in range(_BATCH - 1):
                call_soon(noop)
            call_soon(queue_batch if left else finish)

        def finish() -> None:
            done.set_result(None)

        t0 = _micro_clock()
        loop.call_soon(queue_batch)
        await done
        return (_micro_clock() - t0) / _count_ops(batches * _BATCH)

    return _run(factory, body, _ops("call_soon_batch", scale))


def task_create_await(factory: LoopFactory, scale: float = 1.0) -> float:
    """Create a task for a coroutine that returns at once, and await it; one op per task.

    Covers the task constructor (the loop's create_task), its first step, the done-callback
    that wakes the awaiting task, and that task's next step.
    """

    async def child() -> None:
        return None

    async def body(n: int) -> float:
        loop = asyncio.get_running_loop()
        create_task = loop.create_task
        t0 = _micro_clock()
        for _ in range(n):
            await create_task(child())
        return (_micro_clock() - t0) / _count_ops(n)

    return _run(factory, body, _ops("task_create_await", scale))


def future_round_trip(factory: LoopFactory, scale: float = 1.0) -> float:
    """A task awaits a fresh future that a loop callback resolves: create, resolve, wake."""

    async def body(n: int) -> float:
        loop = asyncio.get_running_loop()
        create_future = loop.create_future
        call_soon = loop.call_soon
        t0 = _micro_clock()
        for _ in range(n):
            fut = create_future()
            call_soon(fut.set_result, None)
            await fut
        return (_micro_clock() - t0) / _count_ops(n)

    return _run(factory, body, _ops("future_round_trip", scale))


def sleep0_pingpong(factory: LoopFactory, scale: float = 1.0) -> float:
    """Two tasks alternate on ``await asyncio.sleep(0)``; one op is one yield (one task step).

    sleep(0) yields to the loop without a future, so this is the bare cost of suspending a
    task and running its next step: the number the design notes' hub argument is about.
    """

    async def player(turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)

    async def body(n: int) -> float:
        turns = max(1, n // 2)
        t0 = _micro_clock()
        await asyncio.gather(player(turns), player(turns))
        return (_micro_clock() - t0) / _count_ops(2 * turns)

    return _run(factory, body, _ops("sleep0_pingpong", scale))


# -- TCP echo --------------------------------------------------------------------------------


class _EchoServerProtocol(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _stream_echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _serve(factory: LoopFactory, kind: str, conn: Connection, parent_end: Connection) -> None:
    """The echo server, in a forked child: report the port on ``conn``, serve until EOF on it."""
    parent_end.close()  # else our own copy of the parent's end would keep the pipe open forever
    _pin(SERVER_CPU)
    _raise_nofile()
    loop = factory()
    handlers: set[asyncio.Task[None]] = set()

    async def serve() -> None:
        stop = loop.create_future()
        if kind == "streams":

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                task = asyncio.current_task()
                assert task is not None
                handlers.add(task)
                try:
                    await _stream_echo_handler(reader, writer)
                finally:
                    handlers.discard(task)

            server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=_SERVER_BACKLOG)
        else:
            server = await loop.create_server(_EchoServerProtocol, "127.0.0.1", 0, backlog=_SERVER_BACKLOG)

        def on_control() -> None:
            try:
                request = conn.recv()
            except EOFError:
                # EOF on the control pipe (the parent closed it, or died) is the stop signal.
                if not stop.done():
                    stop.set_result(None)
                return
            if request == "cpu":
                conn.send(time.process_time())

        loop.add_reader(conn.fileno(), on_control)
        conn.send(server.sockets[0].getsockname()[1])
        await stop
        loop.remove_reader(conn.fileno())
        server.close()
        # The client closed its connections before signalling; let the handlers see EOF and
        # finish, so that no pending task is destroyed (and reported) at exit.
        if handlers:
            await asyncio.wait(list(handlers), timeout=5)

    try:
        loop.run_until_complete(serve())
    finally:
        loop.close()
        conn.close()


class _EchoServer:
    """Context manager: the echo server child process, stopped and reaped on exit."""

    def __init__(self, factory: LoopFactory, kind: str) -> None:
        # fork, not spawn: the child gets the loop factory itself (any callable, no pickling)
        # and starts in milliseconds. No loop and no thread exists in this process yet.
        ctx = multiprocessing.get_context("fork")
        self._conn, child_end = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(factory, kind, child_end, self._conn), daemon=True)
        self._proc.start()
        child_end.close()
        if not self._conn.poll(30):
            self._proc.kill()
            raise RuntimeError("echo server did not start within 30 s")
        self.port: int = self._conn.recv()

    def cpu(self) -> float:
        """The server process's CPU time so far (asked over the control pipe)."""
        self._conn.send("cpu")
        return float(self._conn.recv())

    def __enter__(self) -> _EchoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


class _EchoClock:
    """Seconds per message of one timed round: CPU time of both ends, or elapsed time."""

    def __init__(self, server: _EchoServer) -> None:
        self._server = server
        self._t0 = self._client0 = self._server0 = 0.0

    def start(self) -> None:
        # The server is idle between rounds, so asking it (a blocking pipe round trip) here
        # and in stop() adds nothing to either count.
        self._server0 = self._server.cpu()
        self._client0 = time.process_time()
        self._t0 = time.perf_counter()

    def stop(self, messages: int) -> float:
        elapsed = time.perf_counter() - self._t0
        client = time.process_time() - self._client0
        server = self._server.cpu() - self._server0
        return (elapsed if _wall_clock else client + server) / messages


async def _connect_all(conns: int, connect: Callable[[], Awaitable[Any]]) -> list[Any]:
    out: list[Any] = []
    for start in range(0, conns, _CONNECT_BATCH):
        batch = min(_CONNECT_BATCH, conns - start)
        out.extend(await asyncio.gather(*(connect() for _ in range(batch))))
    return out


def _echo_streams(factory: LoopFactory, conns: int, total: int, scale: float) -> float:
    per_conn = max(2, int(total * scale) // conns)
    msg = ECHO_MESSAGE
    size = len(msg)

    async def ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: int) -> None:
        for _ in range(count):
            writer.write(msg)
            await writer.drain()
            await reader.readexactly(size)

    with _EchoServer(factory, "streams") as server:

        async def body(_: int) -> float:
            pairs = await _connect_all(conns, lambda: asyncio.open_connection("127.0.0.1", server.port))
            clock = _EchoClock(server)

            async def round_(count: int) -> float:
                clock.start()
                await asyncio.gather(*(ping(r, w, count) for r, w in pairs))
                return clock.stop(_count_ops(conns * count))

            sec_per_op = await _best_of_rounds(round_, per_conn)
            for _, w in pairs:
                w.close()
            await asyncio.gather(*(w.wait_closed() for _, w in pairs), return_exceptions=True)
            return sec_per_op

        loop = factory()
        try:
            return loop.run_until_complete(body(0))
        finally:
            loop.close()


class _EchoClientProtocol(asyncio.Protocol):
    """Sends one message, waits for all of its echo, sends the next, ``count`` times."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] | None = None
        self.remaining = 0
        self.pending = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def start(self, count: int) -> asyncio.Future[None]:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.remaining = count
        self.pending = len(ECHO_MESSAGE)
        self.transport.write(ECHO_MESSAGE)
        return self.done

    def data_received(self, data: bytes) -> None:
        # TCP may split or merge the echo; count bytes, not reads.
        self.pending -= len(data)
        if self.pending > 0:
            return
        self.remaining -= 1
        if self.remaining:
            self.pending = len(ECHO_MESSAGE)
            assert self.transport is not None
            self.transport.write(ECHO_MESSAGE)
        elif self.done is not None and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("echo server closed the connection"))


def _echo_protocol(factory: LoopFactory, conns: int, total: int, scale: float) -> float:
    per_conn = max(2, int(total * scale) // conns)

    with _EchoServer(factory, "protocol") as server:

        async def body(_: int) -> float:
            loop = asyncio.get_running_loop()
            pairs = await _connect_all(
                conns, lambda: loop.create_connection(_EchoClientProtocol, "127.0.0.1", server.port)
            )
            protocols: list[_EchoClientProtocol] = [p for _, p in pairs]
            clock = _EchoClock(server)

            async def round_(count: int) -> float:
                clock.start()
                await asyncio.gather(*(p.start(count) for p in protocols))
                return clock.stop(_count_ops(conns * count))

            sec_per_op = await _best_of_rounds(round_, per_conn)
            for t, _ in pairs:
                t.close()
            await asyncio.sleep(0)  # let connection_lost run before the loop closes
            return sec_per_op

        loop = factory()
        try:
            return loop.run_until_complete(body(0))
        finally:
            loop.close()


# Messages in a full-scale run, per connection count. One connection is latency-bound (one
# message in flight); with 100 or 1,000 every connection has one in flight, so each loop
# iteration handles many events and the per-message cost falls.
_ECHO_TOTAL = {1: 4_000, 100: 8_000, 1000: 10_000}


def _echo_bench(kind: str, conns: int) -> Callable[[LoopFactory, float], float]:
    run = _echo_streams if kind == "streams" else _echo_protocol

    def bench(factory: LoopFactory, scale: float = 1.0) -> float:
        return run(factory, conns, _ECHO_TOTAL[conns], scale)

    bench.__name__ = f"echo_{kind}_{conns}"
    api = "StreamReader/StreamWriter (open_connection, start_server)" if kind == "streams" else "a Protocol"
    bench.__doc__ = (
        f"TCP echo of {len(ECHO_MESSAGE)}-byte messages over {api}, {conns} concurrent "
        "connection(s); one op is one message round trip. Both ends on the loop under test."
    )
    return bench


@dataclass(frozen=True)
class Benchmark:
    name: str
    fn: Callable[[LoopFactory, float], float]
    echo: bool = False  # TCP echo: client and server processes
    conns: int = 0  # concurrent connections of an echo benchmark

    @property
    def doc(self) -> str:
        return " ".join((self.fn.__doc__ or "").split())


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("call_soon_chain", call_soon_chain),
        Benchmark("call_soon_batch", call_soon_batch),
        Benchmark("task_create_await", task_create_await),
        Benchmark("future_round_trip", future_round_trip),
        Benchmark("sleep0_pingpong", sleep0_pingpong),
        *(
            Benchmark(f"echo_{kind}_{conns}", _echo_bench(kind, conns), echo=True, conns=conns)
            for kind in ("streams", "protocol")
            for conns in (1, 100, 1000)
        ),
    ]
}


# -- process set-up --------------------------------------------------------------------------


def _pin(cpu: int) -> bool:
    """Pin this process to ``cpu`` if the machine lets us use both benchmark CPUs."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return False
    if not {SERVER_CPU, CLIENT_CPU} <= allowed:
        return False  # a single usable core: pinning would only stack both ends on it
    os.sched_setaffinity(0, {cpu})
    return True


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = _NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(_NOFILE_WANTED, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _settle_malloc() -> None:
    """Put glibc's malloc in the same state for every loop: 256 KiB buffers from the heap.

    asyncio's socket transports (which greenloop reuses) recv() into a fresh 256 KiB buffer
    per read. glibc serves blocks above its mmap threshold (128 KiB at start) with mmap, so
    each read costs mmap + mremap + munmap, until the process happens to free one block
    larger than that: the threshold then rises to its size for good. Whether an import did
    so decides the echo rows by a factor of 2 or more, whichever loop is measured. Freeing
    one 1 MiB block here raises the threshold in every run, as it is in any server that has
    been up for a while; the forked echo server inherits the state.
    """
    block = bytes(1 << 20)
    del block


def measure(loop: str, bench: str, scale: float = 1.0, wall_clock: bool = False) -> dict[str, Any]:
    """One measurement in this process: pinned to CLIENT_CPU, descriptors raised."""
    pinned = _pin(CLIENT_CPU)
    _raise_nofile()
    _settle_malloc()
    if wall_clock:
        use_wall_clock()
    b = BENCHMARKS[bench]
    sec = b.fn(loop_factory(loop), scale)
    return {
        "loop": loop,
        "bench": bench,
        "scale": scale,
        "sec_per_op": sec,
        "ops_executed": _ops_done,
        "clock": "wall" if wall_clock else ("client+server cpu" if b.echo else "thread cpu"),
        "pinned": pinned,
        "cpus": sorted(os.sched_getaffinity(0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demos.bench.loop_micro", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--loop", choices=LOOPS, default="greenloop")
    parser.add_argument("--bench", choices=list(BENCHMARKS), help="the benchmark to run once")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the operation counts (default 1)")
    parser.add_argument(
        "--wall-clock", action="store_true", help="report elapsed time per operation instead of CPU time"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and what they measure")
    args = parser.parse_args(argv)
    if args.list:
        for b in BENCHMARKS.values():
            print(f"{b.name}: {b.doc}")
        return 0
    if args.bench is None:
        parser.error("--bench is required (see --list)")
    result = measure(args.loop, args.bench, args.scale, args.wall_clock)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.loop} {args.bench}: {result['sec_per_op'] * 1e6:.3f} µs/op ({result['clock']} time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
