"""Scale benchmarks: greenloop green threads beside gevent greenlets and asyncio tasks.

    make bench-green                        # = python -m demos.bench.green: the full run
    python -m demos.bench.green --quick     # smoke run: 1,000 and 10,000 threads, one repeat
    python -m demos.bench.green --sizes 1000,100000 --repeat 5 --frameworks greenloop,gevent
    python -m demos.bench.green --big-repeat 1      # the 1,000,000 size once, the others 3 times
    python -m demos.bench.green --from-json demos/bench/results/green-DATE.json   # re-render

Two families of measurement, each configuration in a fresh process so that memory readings
start clean and no run inherits another's heap, pools or caches:

* **scale** (one process per framework and size N): N threads are started and left blocked,
  half in a sleep and half in a socket ``recv``. Measured while they are all blocked: memory
  per blocked thread (VmRSS after minus before, after ``gc.collect()``, divided by N), the
  start cost (spawn until every thread has blocked, per thread), the cost of a spawn + join of
  one more short-lived thread, and the cost of a switch (a ``sleep(0)`` yield between two
  running threads). Then every thread is woken and must run to completion.
* **wake** (one process per runner and kind): a wait-and-wake round trip (a future completed
  by a callback, a ``sleep(0)``, a socket becoming readable) made blocking-style inside an
  asyncio task on greenloop, compared with the same round trip written as ``await``. Also
  *interleaved* (``--worker wake-paired``): one task alternates 1,000 blocking-style round
  trips with 1,000 awaited ones, 200 times, and the median of the 200 pair ratios is reported;
  a pair runs within milliseconds, so it is the ratio this noisy host measures most stably.

The machine is shared and noisy: frameworks are interleaved (greenloop, gevent, asyncio, then
again for the next repeat), cells are medians over repeats, times are CPU time (see _Span),
and ratios are also given per repeat (runs made back to back) so their spread shows what the
noise could account for. Results: a Markdown report on stdout and
``demos/bench/results/green-<date>[-quick].{json,md}``; the JSON is rewritten after every
configuration, so an interrupted run keeps what it measured (``--from-json`` renders it).

Other sessions commit to greenloop/ while a long run lasts, so the committed results were
measured on an exported snapshot, one version throughout::

    mkdir -p DIR/demos/bench && git archive HEAD greenloop pyproject.toml | tar -x -C DIR
    cp demos/__init__.py DIR/demos/; cp demos/bench/__init__.py demos/bench/green.py DIR/demos/bench/
    cd DIR && GREENLOOP_BENCH_COMMIT=$(git -C /path/to/repo rev-parse --short HEAD) \\
        /path/to/repo/.venv/bin/python -m demos.bench.green --big-repeat 2

Limits of this machine that shape the numbers:

* One descriptor per receiving socket, and the hard RLIMIT_NOFILE here is 20,000 with no
  CAP_SYS_RESOURCE to raise it (setrlimit fails with EPERM). So at most about 19,700 threads
  block in a real socket ``recv``; the rest of the "recv" half waits on a future, which is what
  a green ``recv`` parks on, minus the fd. Where the hard limit allows it (500,001 descriptors
  for 1,000,000 threads), the whole half blocks in ``recv`` with no change to this file.
* Time (measured here): the full run (``--big-repeat 2``) took 18 minutes at a load average
  near 1.3; one 1,000,000 round of the three frameworks takes 6 minutes then, and about 18
  minutes under a load average of 7 to 13 from other sessions. The default (three 1,000,000
  rounds) is thus 30 minutes to well over an hour. ``--quick`` took 21 seconds. Most of a
  1,000,000 run is set-up, tear-down and the idle wait for the sleepers' deadline. Memory: a
  1,000,000 greenloop or gevent run peaks near 8.5 GiB of RSS; check ``free`` before a run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import importlib.util
import json
import os
import platform
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..machine import cpu_model as _cpu_model
from ..machine import package_version as _version

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results"

FRAMEWORKS = ("greenloop", "gevent", "asyncio", "uvloop")
DEFAULT_FRAMEWORKS = ("greenloop", "gevent", "asyncio")
FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
WAKE_KINDS = ("future", "future-handoff", "sleep0", "socket")
WAKE_RUNNERS = (
    "greenloop-task-block",
    "greenloop-task-await",
    "greenloop-thread-block",
    "asyncio-task-await",
    "gevent-greenlet",
)

# Descriptors kept out of the receivers' share: stdio, the loop's epoll fd and self-pipe,
# gevent's own fds, the sender socket, whatever the interpreter opens on import.
_FD_RESERVE = 256
# Operations per measurement: at the full size each chunk lasts a fraction of a second, long
# enough to average over the loop's own periodic work (garbage collection, timer compaction).
FULL_OPS = 20_000
QUICK_OPS = 2_000
FULL_WAKE_OPS = 20_000
PAIRED_WAKE_OPS = 200_000  # per side, in 200 chunks of 1,000
QUICK_WAKE_OPS = 2_000
CHUNKS = 5
# Sleepers sleep until a deadline set before they are spawned (see _hold_seconds); a run in
# which one wakes before the measurements end is retried once with this much more time.
HOLD_FACTOR = 3.0
HOLD_RETRY_FACTOR = 6.0
# The quick run's sizes set up in a second or two; a tight deadline keeps it short, and the
# rare early wake-up costs one rerun of a small configuration.
QUICK_HOLD_FACTOR = 1.5
# Memory the orchestrator wants free before a run of N threads: a generous guess per thread
# (gevent and greenloop need about 6 to 10 KiB of user memory, the kernel's unix socket about
# 2 KiB more per receiver) plus the interpreter.
_KIB_NEEDED_PER_THREAD = 12
_KIB_NEEDED_BASE = 512 * 1024


# -- helpers used by the workers -------------------------------------------------------------


def _rss_kib() -> int:
    """VmRSS of this process in KiB: what the kernel counts as resident, allocator slack included."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _hwm_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _settled_rss_kib() -> int:
    # Garbage from the set-up (cycles through frames and futures) would otherwise be counted as
    # the blocked threads' memory, or freed in the middle of a later measurement.
    gc.collect()
    return _rss_kib()


def _tracked_objects() -> int:
    """Objects the cyclic garbage collector tracks (read after ``_settled_rss_kib``)."""
    return len(gc.get_objects())


def _full_gc_s() -> float:
    """Seconds one full collection takes now (median of 3): it walks every tracked object,
    live ones too, so this is the pause that N blocked threads add to each full collection."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _raise_nofile() -> int:
    """Raise the soft descriptor limit to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _recv_split(n: int, nofile: int) -> tuple[int, int, int]:
    """How N threads are blocked: (in sleep, in a socket recv, on a future).

    Half sleep. The other half each need a socket of their own (one waiter per socket, in all
    three frameworks), so they block in a real ``recv`` as far as the descriptor limit allows;
    any beyond it wait on a future, the primitive a green ``recv`` parks on, minus the fd.
    """
    n_sleep = n - n // 2
    budget = max(0, nofile - _FD_RESERVE)
    n_recv = min(n // 2, budget)
    return n_sleep, n_recv, n // 2 - n_recv


def _bind_receivers(count: int, make: Callable[[int, int], socket.socket]) -> list[tuple[Any, bytes]]:
    """``count`` unix datagram sockets, each bound to an abstract address nobody else uses.

    Datagram sockets need one descriptor per receiver (a socketpair would need two) and one
    shared sender can wake any of them, so the descriptor limit goes twice as far.
    """
    prefix = f"\0greenloop-bench-{os.getpid()}-".encode()
    out = []
    for i in range(count):
        sock = make(socket.AF_UNIX, socket.SOCK_DGRAM)
        addr = prefix + str(i).encode()
        sock.bind(addr)
        out.append((sock, addr))
    return out


def _make_sender() -> socket.socket:
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    # A unix datagram stays charged to the sender's buffer until its receiver reads it, so the
    # release loop meets EAGAIN after a few hundred sends and must yield to the receivers.
    sender.setblocking(False)
    return sender


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class _Span:
    """CPU and wall-clock time of a stretch of code.

    Both are kept; the tables use CPU time. On this shared 2-core machine other agents' load
    stretches wall time by whatever share of a core the scheduler gave us, while the process's
    CPU time only counts what our code cost (cache interference from neighbours remains).
    Nothing measured with it sleeps: every wait is for a ready callback, never for time.
    """

    __slots__ = ("cpu0", "wall0")

    def __init__(self) -> None:
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()

    def per(self, ops: int) -> tuple[float, float]:
        return (time.process_time() - self.cpu0) / ops, (time.perf_counter() - self.wall0) / ops


def _chunk_stats(prefix: str, chunks: list[tuple[float, float]]) -> dict[str, Any]:
    """Median CPU and wall µs over the chunks, and every chunk, under ``prefix``."""
    return {
        f"{prefix}_us": _median([c for c, _ in chunks]) * 1e6,
        f"{prefix}_wall_us": _median([w for _, w in chunks]) * 1e6,
        f"{prefix}_chunks_cpu_us": [c * 1e6 for c, _ in chunks],
        f"{prefix}_chunks_wall_us": [w * 1e6 for _, w in chunks],
    }


def _hold_seconds(
    first: tuple[int, float], n_sleep: int, gc_s: float, measure_s: float, factor: float
) -> float:
    """How long the sleepers sleep: past the rest of the set-up and the measurements.

    Their deadline is fixed when they are spawned, so it is extrapolated from what was timed
    at scale just before: starting the other half (``first``: count, wall seconds), one
    garbage collection over it (two more come), and the measurements as they ran warm. Too
    short shows as early wake-ups and the run is retried with a larger factor; too long only
    leaves the process idle at the end.
    """
    count, wall = first
    return factor * (wall * n_sleep / max(count, 1) + 2 * gc_s + measure_s) + 0.3


class _State:
    """Counters shared by the blocked threads and the driver (one OS thread: no locking)."""

    __slots__ = ("blocked", "done", "early", "released")

    def __init__(self) -> None:
        self.blocked = 0
        self.done = 0
        self.early = 0
        self.released = False


def _noop() -> None:
    return None


# -- the scale worker, blocking style (greenloop green threads, gevent greenlets) -------------


@dataclass
class _SyncApi:
    """One framework's blocking-style primitives, so greenloop and gevent share one driver."""

    spawn: Callable[..., Any]
    join: Callable[[Any], Any]
    sleep: Callable[[float], None]
    new_waitable: Callable[[], Any]
    wait: Callable[[Any], Any]
    wake: Callable[[Any], None]
    recv: Callable[[Any], bytes]
    make_socket: Callable[[int, int], Any]
    recv_impl: str


def _sleeper(st: _State, api: _SyncApi, deadline: float) -> None:
    st.blocked += 1
    api.sleep(max(0.0, deadline - time.monotonic()))
    if not st.released:
        st.early += 1
    st.done += 1


def _receiver(st: _State, api: _SyncApi, sock: Any) -> None:
    st.blocked += 1
    api.recv(sock)
    st.done += 1


def _future_waiter(st: _State, api: _SyncApi, slots: list[Any], i: int) -> None:
    # Created here, not by the driver: what a thread waits on is part of what it costs.
    w = slots[i] = api.new_waitable()
    st.blocked += 1
    api.wait(w)
    st.done += 1


def _yielder(api: _SyncApi, k: int) -> None:
    sleep = api.sleep
    for _ in range(k):
        sleep(0)


def _sync_spawn_join(api: _SyncApi, ops: int, chunks: int) -> list[tuple[float, float]]:
    """(CPU, wall) seconds per spawn + join of a thread that returns at once, per chunk."""
    spawn, join = api.spawn, api.join
    per_chunk = max(1, ops // chunks)
    out = []
    for _ in range(chunks):
        span = _Span()
        for _ in range(per_chunk):
            join(spawn(_noop))
        out.append(span.per(per_chunk))
    return out


def _sync_switch(api: _SyncApi, ops: int, chunks: int) -> list[tuple[float, float]]:
    """(CPU, wall) seconds per ``sleep(0)`` yield while two threads take turns, per chunk."""
    k = max(1, ops // chunks // 2)
    out = []
    for _ in range(chunks):
        span = _Span()
        a = api.spawn(_yielder, api, k)
        b = api.spawn(_yielder, api, k)
        api.join(a)
        api.join(b)
        out.append(span.per(2 * k))
    return out


def _release_receivers(sender: socket.socket, receivers: list[tuple[Any, bytes]], pause: Any) -> None:
    for _, addr in receivers:
        while True:
            try:
                sender.sendto(b"x", addr)
                break
            except BlockingIOError:
                pause()


def _scale_sync(
    api: _SyncApi, n: int, *, nofile: int, ops: int, chunks: int, factor: float
) -> dict[str, Any]:
    n_sleep, n_recv, n_future = _recv_split(n, nofile)
    receivers = _bind_receivers(n_recv, api.make_socket)
    sender = _make_sender()
    st = _State()
    # Allocated before the baseline reading: the driver's bookkeeping is not a thread's cost.
    threads: list[Any] = [None] * n
    slots: list[Any] = [None] * n
    # Warm-up with nothing else live: pays first-call costs and gives the timing estimate for
    # the sleepers' deadline. A few threads only, so pools it fills stay negligible.
    warm_ops = max(ops // 10, 100)
    t0 = time.perf_counter()
    warm_sj = _sync_spawn_join(api, warm_ops, 1)[0]
    warm_sw = _sync_switch(api, warm_ops, 1)[0]
    measure_s = (time.perf_counter() - t0) * 10
    rss0 = _settled_rss_kib()
    objects0 = _tracked_objects()

    # Odd slots first: the receivers, then the future waiters.
    span = _Span()
    spawn = api.spawn
    for j, i in enumerate(range(1, n, 2)):
        if j < n_recv:
            threads[i] = spawn(_receiver, st, api, receivers[j][0])
        else:
            threads[i] = spawn(_future_waiter, st, api, slots, i)
    # A yield runs after every start queued before it (FIFO in all three), so by the time the
    # count is complete every thread has reached its blocking call.
    while st.blocked < n - n_sleep:
        api.sleep(0)
    first_cpu, first_wall = span.per(1)
    t_gc = time.perf_counter()
    gc.collect()
    gc_s = time.perf_counter() - t_gc

    # Even slots: the sleepers, all until one deadline past the measurements.
    hold = _hold_seconds((n - n_sleep, first_wall), n_sleep, gc_s, measure_s, factor)
    deadline = time.monotonic() + hold
    span = _Span()
    for i in range(0, n, 2):
        threads[i] = spawn(_sleeper, st, api, deadline)
    while st.blocked < n:
        api.sleep(0)
    api.sleep(0)
    second_cpu, second_wall = span.per(1)
    start_cpu, start_wall = (first_cpu + second_cpu) / n, (first_wall + second_wall) / n
    rss1 = _settled_rss_kib()
    objects1 = _tracked_objects()
    gc_pause = _full_gc_s()

    sj = _sync_spawn_join(api, ops, chunks)
    sw = _sync_switch(api, ops, chunks)
    measured_at = time.monotonic()

    st.released = True
    t_release = time.perf_counter()
    _release_receivers(sender, receivers, lambda: api.sleep(0.0005))
    for w in slots:
        if w is not None:
            api.wake(w)
    failures = 0
    # The woken half first, then the sleepers, which finish at their deadline.
    for gt in threads[1::2] + threads[0::2]:
        if gt is threads[0]:
            woken_s = time.perf_counter() - t_release
        try:
            api.join(gt)
        except Exception:
            failures += 1
    done_s = time.perf_counter() - t_release
    sender.close()
    for sock, _ in receivers:
        sock.close()
    return {
        "n": n,
        "n_sleep": n_sleep,
        "n_recv": n_recv,
        "n_future": n_future,
        "recv_impl": api.recv_impl,
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "kib_per_thread": (rss1 - rss0) / n,
        "objects_per_thread": (objects1 - objects0) / n,
        "gc_pause_ms": gc_pause * 1e3,
        "start_us_per_thread": start_cpu * 1e6,
        "start_wall_us_per_thread": start_wall * 1e6,
        **_chunk_stats("spawn_join", sj),
        **_chunk_stats("switch", sw),
        "warm_spawn_join_us": warm_sj[0] * 1e6,
        "warm_switch_us": warm_sw[0] * 1e6,
        "completed": st.done,
        "failures": failures,
        "early_wakes": st.early,
        "hold_s": hold,
        "sleep_margin_s": deadline - measured_at,
        "release_to_woken_done_s": woken_s,
        "release_to_done_s": done_s,
    }


def _greenloop_api() -> tuple[_SyncApi, Callable[[Callable[[], Any]], Any]]:
    import greenloop

    def join(gt: Any) -> Any:
        return gt.join()

    gsock = _green_socket_module()
    if gsock is not None:
        make_socket = gsock.socket

        def recv(sock: Any) -> bytes:
            return sock.recv(1)  # type: ignore[no-any-return]

        recv_impl = "greenloop.green.socket.socket.recv"
    else:
        wait_readable = greenloop.wait_readable

        def make_socket(family: int, kind: int) -> socket.socket:
            sock = socket.socket(family, kind)
            sock.setblocking(False)
            return sock

        def recv(sock: Any) -> bytes:
            # What a green socket's recv does: try, and wait for readiness only on EAGAIN.
            while True:
                try:
                    return sock.recv(1)  # type: ignore[no-any-return]
                except BlockingIOError:
                    wait_readable(sock)

        recv_impl = "stdlib non-blocking socket + greenloop.wait_readable"

    def new_future() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    def wake(fut: asyncio.Future[Any]) -> None:
        fut.set_result(None)

    api = _SyncApi(
        spawn=greenloop.spawn,
        join=join,
        sleep=greenloop.sleep,
        new_waitable=new_future,
        wait=greenloop.await_,
        wake=wake,
        recv=recv,
        make_socket=make_socket,
        recv_impl=recv_impl,
    )

    def run(driver: Callable[[], Any]) -> Any:
        async def main() -> Any:
            # The driver is itself a green thread, as in a threaded server's main loop.
            return await greenloop.spawn(driver)

        return greenloop.run(main())

    return api, run


# How greenloop's receivers block: "green" is greenloop.green.socket (the cooperative socket
# class), "wait-readable" a stdlib non-blocking socket plus greenloop.wait_readable (what the
# green socket does inside, without its epoll-registration caching), "auto" the first if it
# can be imported. Set from --greenloop-recv in the workers.
GREENLOOP_RECV = ("auto", "green", "wait-readable")
_greenloop_recv = "auto"


def _green_socket_module() -> Any:
    """greenloop's cooperative socket module if it is to be used, else None."""
    if _greenloop_recv == "wait-readable":
        return None
    if importlib.util.find_spec("greenloop.green.socket") is None:
        if _greenloop_recv == "green":
            raise RuntimeError("--greenloop-recv green: greenloop.green.socket does not exist yet")
        return None
    from greenloop.green import socket as gsock

    return gsock if hasattr(gsock, "socket") else None


def _gevent_api() -> tuple[_SyncApi, Callable[[Callable[[], Any]], Any]]:
    import gevent
    import gevent.event
    import gevent.socket

    def join(g: Any) -> Any:
        # Greenlet.join() never raises; get() does, like GreenThread.join().
        return g.get()

    def recv(sock: Any) -> bytes:
        return sock.recv(1)  # type: ignore[no-any-return]

    def wake(ar: Any) -> None:
        ar.set(None)

    api = _SyncApi(
        spawn=gevent.spawn,
        join=join,
        sleep=gevent.sleep,
        new_waitable=gevent.event.AsyncResult,
        wait=lambda ar: ar.get(),
        wake=wake,
        recv=recv,
        make_socket=gevent.socket.socket,
        recv_impl="gevent.socket.socket.recv",
    )

    def run(driver: Callable[[], Any]) -> Any:
        # gevent's own idiom: the main greenlet blocks, the hub runs everything else.
        return driver()

    return api, run


# -- the scale worker, async (asyncio tasks, on asyncio's loop or uvloop) ---------------------


async def _a_sleeper(st: _State, deadline: float) -> None:
    st.blocked += 1
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    if not st.released:
        st.early += 1
    st.done += 1


async def _a_receiver(st: _State, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    st.blocked += 1
    await loop.sock_recv(sock, 1)
    st.done += 1


async def _a_future_waiter(st: _State, loop: asyncio.AbstractEventLoop, slots: list[Any], i: int) -> None:
    fut = slots[i] = loop.create_future()
    st.blocked += 1
    await fut
    st.done += 1


async def _a_noop() -> None:
    return None


async def _a_yielder(k: int) -> None:
    for _ in range(k):
        await asyncio.sleep(0)


async def _a_spawn_join(loop: asyncio.AbstractEventLoop, ops: int, chunks: int) -> list[tuple[float, float]]:
    per_chunk = max(1, ops // chunks)
    out = []
    for _ in range(chunks):
        span = _Span()
        for _ in range(per_chunk):
            await loop.create_task(_a_noop())
        out.append(span.per(per_chunk))
    return out


async def _a_switch(loop: asyncio.AbstractEventLoop, ops: int, chunks: int) -> list[tuple[float, float]]:
    k = max(1, ops // chunks // 2)
    out = []
    for _ in range(chunks):
        span = _Span()
        a = loop.create_task(_a_yielder(k))
        b = loop.create_task(_a_yielder(k))
        await a
        await b
        out.append(span.per(2 * k))
    return out


async def _scale_async(n: int, *, nofile: int, ops: int, chunks: int, factor: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    n_sleep, n_recv, n_future = _recv_split(n, nofile)

    def make_socket(family: int, kind: int) -> socket.socket:
        sock = socket.socket(family, kind)
        sock.setblocking(False)
        return sock

    receivers = _bind_receivers(n_recv, make_socket)
    sender = _make_sender()
    st = _State()
    threads: list[Any] = [None] * n
    slots: list[Any] = [None] * n
    warm_ops = max(ops // 10, 100)
    t0 = time.perf_counter()
    warm_sj = (await _a_spawn_join(loop, warm_ops, 1))[0]
    warm_sw = (await _a_switch(loop, warm_ops, 1))[0]
    measure_s = (time.perf_counter() - t0) * 10
    rss0 = _settled_rss_kib()
    objects0 = _tracked_objects()

    # The same order and deadline as _scale_sync.
    span = _Span()
    create_task = loop.create_task
    for j, i in enumerate(range(1, n, 2)):
        if j < n_recv:
            threads[i] = create_task(_a_receiver(st, loop, receivers[j][0]))
        else:
            threads[i] = create_task(_a_future_waiter(st, loop, slots, i))
    # Plain yields, as in the blocking-style driver (an Event would add a wake-up per thread).
    while st.blocked < n - n_sleep:  # noqa: ASYNC110
        await asyncio.sleep(0)
    first_cpu, first_wall = span.per(1)
    t_gc = time.perf_counter()
    gc.collect()
    gc_s = time.perf_counter() - t_gc

    hold = _hold_seconds((n - n_sleep, first_wall), n_sleep, gc_s, measure_s, factor)
    deadline = time.monotonic() + hold
    span = _Span()
    for i in range(0, n, 2):
        threads[i] = create_task(_a_sleeper(st, deadline))
    while st.blocked < n:  # noqa: ASYNC110
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    second_cpu, second_wall = span.per(1)
    start_cpu, start_wall = (first_cpu + second_cpu) / n, (first_wall + second_wall) / n
    rss1 = _settled_rss_kib()
    objects1 = _tracked_objects()
    gc_pause = _full_gc_s()

    sj = await _a_spawn_join(loop, ops, chunks)
    sw = await _a_switch(loop, ops, chunks)
    measured_at = time.monotonic()

    st.released = True
    t_release = time.perf_counter()
    for _, addr in receivers:
        while True:
            try:
                sender.sendto(b"x", addr)
                break
            except BlockingIOError:
                await asyncio.sleep(0.0005)
    for fut in slots:
        if fut is not None:
            fut.set_result(None)
    failures = 0
    for task in threads[1::2] + threads[0::2]:
        if task is threads[0]:
            woken_s = time.perf_counter() - t_release
        try:
            await task
        except Exception:
            failures += 1
    done_s = time.perf_counter() - t_release
    sender.close()
    for sock, _ in receivers:
        sock.close()
    return {
        "n": n,
        "n_sleep": n_sleep,
        "n_recv": n_recv,
        "n_future": n_future,
        "recv_impl": "loop.sock_recv on a non-blocking stdlib socket",
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "kib_per_thread": (rss1 - rss0) / n,
        "objects_per_thread": (objects1 - objects0) / n,
        "gc_pause_ms": gc_pause * 1e3,
        "start_us_per_thread": start_cpu * 1e6,
        "start_wall_us_per_thread": start_wall * 1e6,
        **_chunk_stats("spawn_join", sj),
        **_chunk_stats("switch", sw),
        "warm_spawn_join_us": warm_sj[0] * 1e6,
        "warm_switch_us": warm_sw[0] * 1e6,
        "completed": st.done,
        "failures": failures,
        "early_wakes": st.early,
        "hold_s": hold,
        "sleep_margin_s": deadline - measured_at,
        "release_to_woken_done_s": woken_s,
        "release_to_done_s": done_s,
    }


def _async_runner(framework: str) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    if framework == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        # asyncio's own selector loop, whatever policy the environment installs.
        factory = asyncio.SelectorEventLoop

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        # asyncio.run() takes loop_factory only from 3.12; the Runner has it on 3.11.
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run


def scale_worker(framework: str, n: int, ops: int, chunks: int, factor: float) -> dict[str, Any]:
    """One scale measurement in this process; returns the JSON-able result."""
    nofile = _raise_nofile()
    t0 = time.perf_counter()
    if framework in ("greenloop", "gevent"):
        api, run = _greenloop_api() if framework == "greenloop" else _gevent_api()
        result = run(lambda: _scale_sync(api, n, nofile=nofile, ops=ops, chunks=chunks, factor=factor))
    elif framework in ("asyncio", "uvloop"):
        result = _async_runner(framework)(
            _scale_async(n, nofile=nofile, ops=ops, chunks=chunks, factor=factor)
        )
    else:
        raise ValueError(f"unknown framework {framework!r}")
    result.update(
        framework=framework,
        nofile=nofile,
        wall_s=time.perf_counter() - t0,
        peak_rss_kib=_hwm_kib(),
    )
    return result


# -- the wake worker: one wait-and-wake round trip, blocking-style vs await -------------------


def _gl_recv(sock: socket.socket) -> bytes:
    import greenloop

    while True:
        try:
            return sock.recv(1)
        except BlockingIOError:
            greenloop.wait_readable(sock)


def _gl_rounds(kind: str, loop: asyncio.AbstractEventLoop, pair: Any) -> Callable[[int], None]:
    """Blocking-style round trips, callable on a green thread or inside a task step."""
    import greenloop

    await_, sleep = greenloop.await_, greenloop.sleep
    call_soon, create_future = loop.call_soon, loop.create_future

    if kind in ("future", "future-handoff"):
        # On a green thread there is no hand-off: a round of "future-handoff" is two plain
        # round trips there, as it is for gevent.
        per_round = 2 if kind == "future-handoff" else 1

        def rounds(k: int) -> None:
            for _ in range(k * per_round):
                fut = create_future()
                call_soon(fut.set_result, None)
                await_(fut)

    elif kind == "sleep0":

        def rounds(k: int) -> None:
            for _ in range(k):
                sleep(0)

    else:
        a, b = pair
        gsock = _green_socket_module()
        recv: Callable[[Any], bytes] = (lambda s: s.recv(1)) if gsock is not None else _gl_recv
        if gsock is not None:
            a = gsock.socket(a.family, a.type, fileno=a.detach())

        def rounds(k: int) -> None:
            for _ in range(k):
                call_soon(b.send, b"x")
                recv(a)

    return rounds


def _await_rounds(
    kind: str, loop: asyncio.AbstractEventLoop, pair: Any, block_second: bool
) -> Callable[[int], Coroutine[Any, Any, None]]:
    """``await`` round trips; with ``block_second``, a handoff round's second wait blocks."""
    call_soon, create_future = loop.call_soon, loop.create_future
    if kind == "future-handoff":
        import greenloop

        await_ = greenloop.await_

        async def rounds(k: int) -> None:
            for _ in range(k):
                fut = create_future()
                call_soon(fut.set_result, None)
                await fut
                # The task step resumed by that await starts on the hub, so a blocking call
                # here is the first of its step: it hands the loop to another hub.
                fut = create_future()
                call_soon(fut.set_result, None)
                if block_second:
                    await_(fut)
                else:
                    await fut

    elif kind == "future":

        async def rounds(k: int) -> None:
            for _ in range(k):
                fut = create_future()
                call_soon(fut.set_result, None)
                await fut

    elif kind == "sleep0":

        async def rounds(k: int) -> None:
            for _ in range(k):
                await asyncio.sleep(0)

    else:
        a, b = pair

        async def rounds(k: int) -> None:
            for _ in range(k):
                call_soon(b.send, b"x")
                await loop.sock_recv(a, 1)

    return rounds


def _socketpair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _time_sync(rounds: Callable[[int], None], ops: int, chunks: int) -> list[tuple[float, float]]:
    rounds(max(ops // 10, 10))  # warm-up
    per_chunk = max(1, ops // chunks)
    out = []
    for _ in range(chunks):
        span = _Span()
        rounds(per_chunk)
        out.append(span.per(per_chunk))
    return out


async def _time_async(
    rounds: Callable[[int], Coroutine[Any, Any, None]], ops: int, chunks: int
) -> list[tuple[float, float]]:
    await rounds(max(ops // 10, 10))
    per_chunk = max(1, ops // chunks)
    out = []
    for _ in range(chunks):
        span = _Span()
        await rounds(per_chunk)
        out.append(span.per(per_chunk))
    return out


def wake_worker(runner: str, kind: str, ops: int, chunks: int) -> dict[str, Any]:
    """Seconds per wait-and-wake round trip of ``kind`` made by ``runner``; JSON-able."""
    pair = _socketpair()
    if runner.startswith("greenloop"):
        import greenloop

        async def gl_main() -> list[tuple[float, float]]:
            loop = asyncio.get_running_loop()
            if runner == "greenloop-task-block" and kind == "future-handoff":
                return await _time_async(_await_rounds(kind, loop, pair, True), ops, chunks)
            if runner == "greenloop-task-block":
                rounds = _gl_rounds(kind, loop, pair)

                async def in_task(k: int) -> None:
                    # A plain call from the coroutine: the blocking waits happen inside this
                    # task's step, on the hub and then on the ex-hub that keeps the step.
                    rounds(k)

                return await _time_async(in_task, ops, chunks)
            if runner == "greenloop-task-await":
                return await _time_async(_await_rounds(kind, loop, pair, False), ops, chunks)
            rounds = _gl_rounds(kind, loop, pair)
            return await greenloop.spawn(_time_sync, rounds, ops, chunks)  # type: ignore[no-any-return]

        per_op = greenloop.run(gl_main())
    elif runner == "asyncio-task-await":

        async def aio_main() -> list[tuple[float, float]]:
            loop = asyncio.get_running_loop()
            return await _time_async(_await_rounds(kind, loop, pair, False), ops, chunks)

        per_op = _async_runner("asyncio")(aio_main())
    elif runner == "gevent-greenlet":
        per_op = _time_sync(_gevent_rounds(kind, pair), ops, chunks)
    else:
        raise ValueError(f"unknown runner {runner!r}")
    for sock in pair:
        sock.close()
    return {
        "runner": runner,
        "kind": kind,
        **_chunk_stats("round", per_op),
    }


PAIRED_CHUNKS = 200
PAIRED = "interleaved"  # its key among the wake runners' results


def paired_wake_worker(kind: str, ops: int, chunks: int = PAIRED_CHUNKS) -> dict[str, Any]:
    """Blocking-style and ``await`` round trips interleaved in one task; JSON-able.

    One coroutine alternates a chunk of blocking-style round trips (plain calls inside its
    step) with a chunk of the same round trips awaited, ``chunks`` times. Each pair of
    chunks runs within a few milliseconds, so a neighbour's load or a frequency change hits
    both sides alike and the pair's ratio survives noise that makes separate processes
    differ by 2x on this host. Reported: the median of the pair ratios, and the ratio of
    each side's fastest chunk.
    """
    import greenloop

    pair, block_pair = _socketpair(), _socketpair()  # the green socket takes over its fd
    per_chunk = max(1, ops // chunks)

    async def main() -> list[tuple[float, float]]:
        loop = asyncio.get_running_loop()
        handoff = kind == "future-handoff"
        block = _await_rounds(kind, loop, pair, True) if handoff else None
        sync_rounds = _gl_rounds(kind, loop, block_pair)
        awaited = _await_rounds(kind, loop, pair, False)
        out = []
        for i in range(chunks + chunks // 10):  # the first tenth warms up
            span = _Span()
            if block is not None:
                await block(per_chunk)
            else:
                sync_rounds(per_chunk)
            blk = span.per(per_chunk)[0]
            span = _Span()
            await awaited(per_chunk)
            aw = span.per(per_chunk)[0]
            if i >= chunks // 10:
                out.append((blk, aw))
        return out

    timed = greenloop.run(main())
    for sock in (*pair, *block_pair):
        sock.close()
    ratios = [_block_ratio(kind, b, a) or 0.0 for b, a in timed]
    best_b, best_a = min(b for b, _ in timed), min(a for _, a in timed)
    return {
        "kind": kind,
        "chunks": chunks,
        "per_chunk": per_chunk,
        "ratio_median": statistics.median(ratios),
        "ratio_best": _block_ratio(kind, best_b, best_a),
        "block_best_us": best_b * 1e6,
        "await_best_us": best_a * 1e6,
    }


def _gevent_rounds(kind: str, pair: Any) -> Callable[[int], None]:
    import gevent
    import gevent.event
    import gevent.socket

    run_callback = gevent.get_hub().loop.run_callback
    if kind in ("future", "future-handoff"):
        per_round = 2 if kind == "future-handoff" else 1
        async_result = gevent.event.AsyncResult

        def rounds(k: int) -> None:
            for _ in range(k * per_round):
                ar = async_result()
                run_callback(ar.set, None)
                ar.get()

    elif kind == "sleep0":
        sleep = gevent.sleep

        def rounds(k: int) -> None:
            for _ in range(k):
                sleep(0)

    else:
        a, b = pair
        ga = gevent.socket.socket(a.family, a.type, fileno=a.detach())

        def rounds(k: int) -> None:
            for _ in range(k):
                # b is a plain non-blocking socket: a send from a hub callback must not block.
                run_callback(b.send, b"x")
                ga.recv(1)

    return rounds


# -- the orchestrator -------------------------------------------------------------------------


def _mem_available_kib() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def _child(args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "demos.bench.green", *args, "--greenloop-recv", _greenloop_recv]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if proc.stderr.strip():
        result["stderr"] = proc.stderr.strip()[-2000:]
    return result


def _run_scale(framework: str, n: int, ops: int, factor: float) -> dict[str, Any]:
    need = n * _KIB_NEEDED_PER_THREAD + _KIB_NEEDED_BASE
    avail = _mem_available_kib()
    if avail < need:
        return {"error": f"skipped: {avail // 1024} MiB available, about {need // 1024} MiB needed"}
    # A 1,000,000 run took 3 to 8 minutes here under a load average of 7 to 13.
    timeout = 120 + n * 2e-3
    args = ["--worker", "scale", "--framework", framework, "--n", str(n), "--ops", str(ops)]
    result = _child([*args, "--hold-factor", repr(factor)], timeout)
    if result.get("early_wakes"):
        # The extrapolated deadline was too short: sleepers woke while being measured.
        first = result["early_wakes"]
        result = _child([*args, "--hold-factor", repr(HOLD_RETRY_FACTOR)], timeout)
        result["retried_after_early_wakes"] = first
    return result


def _git_commit() -> str | None:
    # Set when the benchmark runs on an exported snapshot of the tree (no .git there): other
    # sessions commit to greenloop/ while a full run lasts, and a run must measure one version.
    if os.environ.get("GREENLOOP_BENCH_COMMIT"):
        return os.environ["GREENLOOP_BENCH_COMMIT"] + " (exported snapshot)"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "greenloop"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty greenloop/" if dirty else "")


def _machine(command: str) -> dict[str, Any]:
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cpus": affinity,
        "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "mem_available_gib_start": round(_mem_available_kib() / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": {d: _version(d) for d in ("greenloop", "greenlet", "gevent", "uvloop")},
        "nofile_limit": [soft, hard],
        "greenloop_recv": _greenloop_recv,
        "green_socket": _green_socket_module() is not None,
        "git_commit": _git_commit(),
        "command": command,
        "loadavg_start": list(os.getloadavg()),
    }


# -- summarising ------------------------------------------------------------------------------

_SCALE_METRICS = (
    ("kib_per_thread", "memory per blocked thread, KiB"),
    ("objects_per_thread", "objects tracked by the GC per blocked thread"),
    ("gc_pause_ms", "one full garbage collection with all blocked, ms"),
    ("start_us_per_thread", "start (spawn until blocked), µs/thread"),
    ("spawn_join_us", "spawn + join of one more, µs"),
    ("switch_us", "switch (sleep(0) yield), µs"),
)


def _ok(r: dict[str, Any]) -> bool:
    return "error" not in r and r.get("completed") == r.get("n") and not r.get("failures")


def _summarise_scale(
    runs: dict[str, dict[str, list[dict[str, Any]]]], frameworks: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for size, per_fw in runs.items():
        for key, label in _SCALE_METRICS:
            row: dict[str, Any] = {"n": int(size), "metric": key, "label": label}
            for fw in frameworks:
                vals = [r[key] for r in per_fw.get(fw, []) if _ok(r)]
                row[fw] = statistics.median(vals) if vals else None
                row[fw + " runs"] = vals
            for base in ("gevent", "asyncio"):
                if "greenloop" in frameworks and base in frameworks and base != "greenloop":
                    g, b = row["greenloop"], row[base]
                    row[f"greenloop/{base}"] = g / b if g and b else None
                    row[f"greenloop/{base} per-run"] = [
                        gr[key] / br[key]
                        for gr, br in zip(per_fw.get("greenloop", []), per_fw.get(base, []), strict=False)
                        if _ok(gr) and _ok(br) and br[key]
                    ]
            rows.append(row)
        row = {"n": int(size), "metric": "completed", "label": "all threads ran to completion"}
        for fw in frameworks:
            rs = per_fw.get(fw, [])
            row[fw] = f"{sum(_ok(r) for r in rs)}/{len(rs)} runs"
            row[fw + " errors"] = [r["error"] for r in rs if "error" in r]
        rows.append(row)
    return rows


def _block_ratio(kind: str, blk: float | None, aw: float | None) -> float | None:
    """Blocking-style round trip over the await one, for the same kind."""
    if not blk or not aw:
        return None
    if kind == "future-handoff":
        # A round is one await plus one more wait, blocking or awaited: take the first
        # await's share out of both sides and compare the second waits alone.
        return (blk - aw / 2) / (aw / 2)
    return blk / aw


def _summarise_wake(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows = []
    for kind, per_runner in runs.items():
        row: dict[str, Any] = {"kind": kind}
        for runner, rs in per_runner.items():
            if runner == PAIRED:
                continue
            vals = [r["round_us"] for r in rs if "round_us" in r]
            row[runner] = statistics.median(vals) if vals else None
            row[runner + " runs"] = vals
        blk, aw = row.get("greenloop-task-block"), row.get("greenloop-task-await")
        row["block/await"] = _block_ratio(kind, blk, aw)
        # Not strict: a checkpoint taken mid-run can hold one more of one than of the other.
        pairs = zip(
            per_runner.get("greenloop-task-block", []),
            per_runner.get("greenloop-task-await", []),
            strict=False,
        )
        row["block/await per-run"] = [
            _block_ratio(kind, b["round_us"], a["round_us"])
            for b, a in pairs
            if "round_us" in b and "round_us" in a
        ]
        aio, gev, thr = (
            row.get("asyncio-task-await"),
            row.get("gevent-greenlet"),
            row.get("greenloop-thread-block"),
        )
        paired = [r["ratio_median"] for r in per_runner.get(PAIRED, []) if "ratio_median" in r]
        row["block/await interleaved"] = statistics.median(paired) if paired else None
        row["block/await interleaved per-run"] = paired
        row["block/asyncio"] = blk / aio if blk and aio else None
        row["thread/gevent"] = thr / gev if thr and gev else None
        rows.append(row)
    return rows


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.{digits}f}"


def _ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _range(vals: list[float]) -> str:
    return f"{min(vals):.2f} to {max(vals):.2f}" if vals else "n/a"


def _scale_table(rows: list[dict[str, Any]], frameworks: list[str]) -> str:
    bases = [b for b in ("gevent", "asyncio") if "greenloop" in frameworks and b in frameworks]
    head = ["N live", "metric", *frameworks, *(f"greenloop/{b}" for b in bases)]
    head += [f"greenloop/{b} per-run" for b in bases]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---:", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for row in rows:
        cells = [f"{row['n']:,}", row["label"], *(_fmt(row[fw]) for fw in frameworks)]
        if row["metric"] == "completed":
            cells += [""] * (2 * len(bases))
        else:
            cells += [_ratio(row.get(f"greenloop/{b}")) for b in bases]
            cells += [_range(row.get(f"greenloop/{b} per-run", [])) for b in bases]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _scaling(rows: list[dict[str, Any]], frameworks: list[str]) -> list[dict[str, Any]]:
    """Each framework's cost at every size relative to its cost with the smallest size."""
    out = []
    sizes = sorted({r["n"] for r in rows})
    for key in ("spawn_join_us", "switch_us", "kib_per_thread"):
        for fw in frameworks:
            by_n = {r["n"]: r[fw] for r in rows if r["metric"] == key}
            base = by_n.get(sizes[0])
            entry: dict[str, Any] = {"metric": key, "framework": fw, "values": by_n}
            entry["vs_smallest"] = {n: (v / base if v and base else None) for n, v in by_n.items()}
            out.append(entry)
    return out


def _scaling_table(scaling: list[dict[str, Any]]) -> str:
    sizes = sorted({n for e in scaling for n in e["values"]})
    head = ["metric", "framework", *(f"N={n:,}" for n in sizes), f"N={sizes[-1]:,} / N={sizes[0]:,}"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    labels = dict(_SCALE_METRICS)
    for e in scaling:
        cells = [labels[e["metric"]], e["framework"], *(_fmt(e["values"].get(n)) for n in sizes)]
        cells.append(_ratio(e["vs_smallest"].get(sizes[-1])))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _wake_table(rows: list[dict[str, Any]]) -> str:
    head = [
        "round trip (µs)",
        "greenloop task, blocking-style",
        "greenloop task, await",
        "greenloop green thread",
        "asyncio task, await",
        "gevent greenlet",
        "block/await (greenloop)",
        "block/await per-run",
        "block/await interleaved",
        "block/asyncio await",
        "green thread/gevent",
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    names = {
        "future": "future set by a callback",
        "future-handoff": "await + future wait (the wait hands the loop off)",
        "sleep0": "sleep(0)",
        "socket": "socket recv woken by a send",
    }
    for row in rows:
        cells = [names[row["kind"]]]
        cells += [
            _fmt(row.get(r))
            for r in (
                "greenloop-task-block",
                "greenloop-task-await",
                "greenloop-thread-block",
                "asyncio-task-await",
                "gevent-greenlet",
            )
        ]
        cells += [_ratio(row["block/await"]), _range(row["block/await per-run"])]
        interleaved = row.get("block/await interleaved")
        runs = row.get("block/await interleaved per-run") or []
        cells += [_ratio(interleaved) + (f" ({_range(runs)})" if len(runs) > 1 else "")]
        cells += [_ratio(row["block/asyncio"]), _ratio(row["thread/gevent"])]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _greenloop_split(scale_runs: dict[str, dict[str, list[dict[str, Any]]]], n: int) -> dict[str, int] | None:
    for r in scale_runs.get(str(n), {}).get("greenloop", []):
        if "n_recv" in r:
            return {k: r[k] for k in ("n_sleep", "n_recv", "n_future")}
    return None


def _targets(
    scale_rows: list[dict[str, Any]],
    scaling: list[dict[str, Any]],
    wake_rows: list[dict[str, Any]],
    scale_runs: dict[str, dict[str, list[dict[str, Any]]]],
) -> list[dict[str, Any]]:
    """The issue's done-when targets, judged from this run's numbers."""
    out: list[dict[str, Any]] = []
    sizes = sorted({r["n"] for r in scale_rows})
    big = sizes[-1] if sizes else None
    done_rows = [r for r in scale_rows if r["metric"] == "completed" and r["n"] == big]
    if done_rows and big is not None:
        cell = done_rows[0].get("greenloop", "n/a")
        runs_ok = isinstance(cell, str) and cell.split("/")[0] == cell.split("/")[1].split()[0] != "0"
        split = _greenloop_split(scale_runs, big)
        met: bool | str = runs_ok and big >= 1_000_000
        note = "" if big >= 1_000_000 else "largest size in this run is below 1,000,000"
        if met and split and split["n_future"]:
            # All ran to completion, but not half of them in a real recv: say so.
            met = "partly"
            note = (
                f"{split['n_sleep']:,} in sleep, only {split['n_recv']:,} in a real socket recv and "
                f"{split['n_future']:,} on a future: one descriptor per receiver, hard RLIMIT_NOFILE "
                "here is too low"
            )
        out.append(
            {
                "target": f"{big:,} concurrent green threads (half sleep, half recv) run to completion",
                "measured": cell,
                "met": met,
                "note": note,
            }
        )
    mem = [r for r in scale_rows if r["metric"] == "kib_per_thread"]
    for r in mem:
        g, gv = r.get("greenloop"), r.get("gevent")
        if g is not None and gv is not None:
            out.append(
                {
                    "target": f"memory per blocked green thread ≤ gevent's (N={r['n']:,})",
                    "measured": f"{g:.2f} KiB vs {gv:.2f} KiB ({g / gv:.2f}x)",
                    "met": g <= gv,
                    "note": "",
                }
            )
    for e in scaling:
        if e["framework"] == "greenloop" and e["metric"] in ("spawn_join_us", "switch_us"):
            v = e["vs_smallest"].get(big)
            out.append(
                {
                    "target": f"{dict(_SCALE_METRICS)[e['metric']]} at N={big:,} ≤ 1.2x N={sizes[0]:,}",
                    "measured": _ratio(v),
                    "met": v is not None and v <= 1.2 and big >= 1_000_000,
                    "note": _spread_note(scale_rows, e["metric"], sizes[0], big)
                    + ("" if big >= 1_000_000 else "; needs the 1,000,000 size"),
                }
            )
    for r in wake_rows:
        # The interleaved pairs, where measured: separate processes differ by up to 2x here.
        separate, v = r.get("block/await"), r.get("block/await interleaved")
        note = f"separate processes: {_ratio(separate)}" if v is not None else ""
        if v is None:
            v = separate
        out.append(
            {
                "target": f"blocking-style wait-and-wake in a task ≤ 1.5x await ({r['kind']})",
                "measured": _ratio(v),
                "met": v is not None and v <= 1.5,
                "note": note,
            }
        )
    return out


def _spread_note(rows: list[dict[str, Any]], metric: str, small: int, big: int) -> str:
    """The runs behind a scaling ratio: on a noisy machine the ratio alone hides their spread."""
    parts = []
    for n in (small, big):
        for r in rows:
            if r["n"] == n and r["metric"] == metric and r.get("greenloop runs"):
                vals = r["greenloop runs"]
                parts.append(f"N={n:,}: {len(vals)} runs, {min(vals):.2f} to {max(vals):.2f} µs")
    return "; ".join(parts)


def _targets_table(targets: list[dict[str, Any]]) -> str:
    out = ["| target | measured | met |", "|---|---|---|"]
    for t in targets:
        met = "**partly**" if t["met"] == "partly" else "yes" if t["met"] else "**no**"
        out.append(
            f"| {t['target']} | {t['measured']} | {met}{' (' + t['note'] + ')' if t['note'] else ''} |"
        )
    return "\n".join(out)


def _split_note(scale_runs: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    lines = []
    for size, per_fw in scale_runs.items():
        for fw, rs in per_fw.items():
            ok = [r for r in rs if "n_recv" in r]
            if ok:
                r = ok[0]
                lines.append(
                    f"- N={int(size):,} {fw}: {r['n_sleep']:,} in sleep, {r['n_recv']:,} in socket recv "
                    f"({r['recv_impl']}), {r['n_future']:,} on a future"
                )
                break
    return "\n".join(lines)


def _markdown(report: dict[str, Any], tables: dict[str, str]) -> str:
    m = report["machine"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    parts = [
        f"# greenloop scale benchmarks, {report['date']}",
        "",
        f"- command: `{m['command']}`",
        f"- machine: {m['cpu_model']}, {m['cores']} cores (usable {m['usable_cpus']}), "
        f"{m['mem_total_gib']} GiB ({m['mem_available_gib_start']} GiB available at start), "
        f"Linux {m['kernel']}, load average {m['loadavg_start'][0]:.2f} at start, "
        f"{m['loadavg_end'][0]:.2f} at end",
        f"- Python {m['python']}; {pkgs}; greenloop commit {m['git_commit']}",
        *(f"- resumed by: `{c}`" for c in report.get("resumed_by") or []),
        f"- descriptor limit (soft, hard) {m['nofile_limit'][0]:,}, {m['nofile_limit'][1]:,}; "
        f"greenloop's receivers: --greenloop-recv {m.get('greenloop_recv', 'auto')}",
        f"- {report['repeat']} repeats per cell (medians; {report.get('big_repeat')} above N=100,000), "
        f"{report['ops']:,} spawn+join and "
        f"switch operations per scale run, {report['wake_ops']:,} wake round trips per wake run "
        f"({report.get('wake_repeat')} runs per wake cell); "
        f"{report['duration_s']:.0f} s in all",
        "",
        "How the half that blocks in a socket recv was split (one descriptor per receiver):",
        "",
        report["split_note"],
        "",
        "## Live blocked threads, side by side",
        "",
        tables["scale"],
        "",
        "## The same, against each framework's own smallest size",
        "",
        tables["scaling"],
        "",
        "## Wait-and-wake round trip",
        "",
        tables["wake"],
        "",
        "## Targets",
        "",
        tables["targets"],
        "",
    ]
    return "\n".join(parts)


def _describe_scale(res: dict[str, Any], n: int) -> str:
    if "error" in res:
        return str(res["error"])
    return (
        f"{res['kib_per_thread']:.2f} KiB/thread, spawn+join {res['spawn_join_us']:.2f} µs, "
        f"switch {res['switch_us']:.2f} µs, {res['completed']:,}/{n:,} done, {res['wall_s']:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demos.bench.green", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="at most 10,000 threads, 1 repeat, fewer ops")
    parser.add_argument("--sizes", help="comma-separated thread counts (default 1000,10000,100000,1000000)")
    parser.add_argument("--repeat", type=int, help="fresh-process runs per cell (default 3; quick 1)")
    parser.add_argument(
        "--big-repeat",
        type=int,
        help="runs per cell for sizes above 100,000 (default: --repeat); one 1,000,000 round of "
        "the three frameworks takes 10 to 30 minutes here",
    )
    parser.add_argument("--frameworks", default=",".join(DEFAULT_FRAMEWORKS), help=f"from {FRAMEWORKS}")
    parser.add_argument("--ops", type=int, help="spawn+join and switch operations per scale run")
    parser.add_argument("--wake-ops", type=int, help="round trips per wake run")
    parser.add_argument(
        "--wake-repeat", type=int, help="fresh-process runs per wake cell (default 7; quick 1)"
    )
    parser.add_argument("--no-scale", action="store_true", help="skip the scale runs")
    parser.add_argument("--no-wake", action="store_true", help="skip the wait-and-wake runs")
    parser.add_argument("--no-write", action="store_true", help="print only, write no result files")
    parser.add_argument("--from-json", type=Path, help="render the report again from a saved JSON")
    parser.add_argument(
        "--resume",
        type=Path,
        help="continue an interrupted run from its JSON: same settings, measure only what is missing",
    )
    parser.add_argument(
        "--greenloop-recv",
        choices=GREENLOOP_RECV,
        default="auto",
        help="greenloop's socket: green (greenloop.green.socket), wait-readable (stdlib socket + "
        "greenloop.wait_readable), auto (green if importable; the default)",
    )
    # The worker side: one configuration, one JSON line on stdout.
    parser.add_argument("--worker", choices=("scale", "wake", "wake-paired"), help=argparse.SUPPRESS)
    parser.add_argument("--framework", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hold-factor", type=float, default=HOLD_FACTOR, help=argparse.SUPPRESS)
    parser.add_argument("--runner", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global _greenloop_recv
    _greenloop_recv = args.greenloop_recv

    if args.worker == "scale":
        print(
            json.dumps(scale_worker(args.framework, args.n, args.ops or FULL_OPS, CHUNKS, args.hold_factor))
        )
        return 0
    if args.worker == "wake":
        print(json.dumps(wake_worker(args.runner, args.kind, args.wake_ops or FULL_WAKE_OPS, CHUNKS)))
        return 0
    if args.worker == "wake-paired":
        print(json.dumps(paired_wake_worker(args.kind, args.wake_ops or PAIRED_WAKE_OPS)))
        return 0

    if args.from_json:
        return _rerender(args.from_json)
    frameworks = args.frameworks.split(",")
    for fw in frameworks:
        if fw not in FRAMEWORKS:
            parser.error(f"unknown framework {fw!r}; choose from {', '.join(FRAMEWORKS)}")
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else list(QUICK_SIZES if args.quick else FULL_SIZES)
    )
    if args.quick and max(sizes) > 10_000:
        parser.error("--quick runs at most 10,000 threads")
    repeat = args.repeat or (1 if args.quick else 3)
    ops = args.ops or (QUICK_OPS if args.quick else FULL_OPS)
    wake_ops = args.wake_ops or (QUICK_WAKE_OPS if args.quick else FULL_WAKE_OPS)

    command = shlex.join(["python", "-m", "demos.bench.green", *(sys.argv[1:] if argv is None else argv)])
    now = dt.datetime.now(dt.UTC).astimezone()
    meta: dict[str, Any] = {
        "date": now.isoformat(timespec="seconds"),
        "quick": args.quick,
        "repeat": repeat,
        "big_repeat": min(args.big_repeat or repeat, repeat),
        "sizes": sizes,
        "frameworks": frameworks,
        "ops": ops,
        "wake_ops": wake_ops,
        # Wake runs take about a second each, so they get more repeats than the scale runs.
        "wake_repeat": args.wake_repeat or (1 if args.quick else 7),
        "machine": _machine(command),
    }
    stem = f"green-{now:%Y-%m-%d}" + ("-quick" if args.quick else "")
    scale_runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    wake_runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    prior_s = 0.0
    if args.resume:
        # The saved run's settings win over this command line's, so the cells stay comparable.
        saved = json.loads(args.resume.read_text(encoding="utf-8"))
        meta = {k: saved.get(k) for k in _META_KEYS}
        meta["resumed_by"] = [*saved.get("resumed_by", []), command]
        stem = args.resume.stem
        scale_runs, wake_runs = saved.get("scale_runs", {}), saved.get("wake_runs", {})
        prior_s = saved.get("duration_s") or 0.0
        repeat, sizes, frameworks = meta["repeat"], meta["sizes"], meta["frameworks"]
        ops, wake_ops = meta["ops"], meta["wake_ops"]
        meta["wake_repeat"] = meta["wake_repeat"] or args.wake_repeat or repeat
        # More repeats may be asked for on resuming (more runs of the same cells), never fewer.
        meta["wake_repeat"] = max(meta["wake_repeat"], args.wake_repeat or 0)
        meta["big_repeat"] = min(repeat, max(meta["big_repeat"] or repeat, args.big_repeat or 0))
        _greenloop_recv = meta["machine"].get("greenloop_recv", "auto")
    quick = bool(meta["quick"])
    big_repeat = meta["big_repeat"] or repeat
    t0 = time.monotonic() - prior_s

    def checkpoint() -> None:
        # A full run takes the better part of an hour: keep what has been measured so far,
        # so that a crash or a stopped session leaves data to render (--from-json).
        if not args.no_write:
            meta["duration_s"] = time.monotonic() - t0
            meta["machine"]["loadavg_end"] = list(os.getloadavg())
            _write(stem, meta, scale_runs, wake_runs, final=False)

    if not args.no_scale:
        for r in range(repeat):
            for n in sizes:
                if n > 100_000 and r >= big_repeat:
                    continue
                for fw in frameworks:
                    cell = scale_runs.setdefault(str(n), {}).setdefault(fw, [])
                    if len(cell) > r:
                        continue  # measured before the run was resumed
                    res = _run_scale(fw, n, ops, QUICK_HOLD_FACTOR if quick else HOLD_FACTOR)
                    cell.append(res)
                    shown = _describe_scale(res, n)
                    print(f"[scale {r + 1}/{repeat}] N={n:,} {fw}: {shown}", file=sys.stderr, flush=True)
                    checkpoint()
    if not args.no_wake:
        paired_ops = max(wake_ops * 10, PAIRED_CHUNKS)
        for r in range(meta["wake_repeat"]):
            for kind in WAKE_KINDS:
                # Each runner in its own process, then the interleaved pairs (PAIRED).
                for runner in (*WAKE_RUNNERS, PAIRED):
                    cell = wake_runs.setdefault(kind, {}).setdefault(runner, [])
                    if len(cell) > r:
                        continue  # measured before the run was resumed
                    if runner == PAIRED:
                        cmd = ["--worker", "wake-paired", "--kind", kind, "--wake-ops", str(paired_ops)]
                    else:
                        cmd = ["--worker", "wake", "--runner", runner, "--kind", kind]
                        cmd += ["--wake-ops", str(wake_ops)]
                    res = _child(cmd, 300)
                    cell.append(res)
                    if "error" in res:
                        shown = res["error"]
                    elif runner == PAIRED:
                        shown = f"block/await {res['ratio_median']:.3f}x"
                    else:
                        shown = f"{res['round_us']:.2f} µs CPU"
                    print(
                        f"[wake {r + 1}/{meta['wake_repeat']}] {kind} {runner}: {shown}",
                        file=sys.stderr,
                        flush=True,
                    )
                    checkpoint()
    meta["duration_s"] = time.monotonic() - t0
    meta["machine"]["loadavg_end"] = list(os.getloadavg())
    md = _write(stem, meta, scale_runs, wake_runs, final=not args.no_write)
    print(md)
    return 0


_META_KEYS = (
    "date",
    "quick",
    "repeat",
    "big_repeat",
    "wake_repeat",
    "sizes",
    "frameworks",
    "ops",
    "wake_ops",
    "machine",
)


def _render(
    meta: dict[str, Any],
    scale_runs: dict[str, dict[str, list[dict[str, Any]]]],
    wake_runs: dict[str, dict[str, list[dict[str, Any]]]],
) -> tuple[dict[str, Any], str]:
    """The report (JSON-able) and its Markdown, from the raw runs."""
    frameworks = meta["frameworks"]
    scale_rows = _summarise_scale(scale_runs, frameworks) if scale_runs else []
    scaling = _scaling(scale_rows, frameworks) if scale_rows else []
    wake_rows = _summarise_wake(wake_runs) if wake_runs else []
    targets = _targets(scale_rows, scaling, wake_rows, scale_runs)
    tables = {
        "scale": _scale_table(scale_rows, frameworks) if scale_rows else "(not run)",
        "scaling": _scaling_table(scaling) if scaling else "(not run)",
        "wake": _wake_table(wake_rows) if wake_rows else "(not run)",
        "targets": _targets_table(targets),
    }
    report = {
        **meta,
        "split_note": _split_note(scale_runs),
        "scale_rows": scale_rows,
        "scaling": scaling,
        "wake_rows": wake_rows,
        "targets": targets,
        "scale_runs": scale_runs,
        "wake_runs": wake_runs,
    }
    return report, _markdown(report, tables)


def _write(
    stem: str,
    meta: dict[str, Any],
    scale_runs: dict[str, dict[str, list[dict[str, Any]]]],
    wake_runs: dict[str, dict[str, list[dict[str, Any]]]],
    *,
    final: bool,
) -> str:
    """Render, and write the JSON (always) and the Markdown (when ``final``); returns the Markdown."""
    report, md = _render({**meta, "complete": final}, scale_runs, wake_runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if final:
        (RESULTS / f"{stem}.md").write_text(md, encoding="utf-8")
        print(f"wrote {RESULTS.relative_to(REPO)}/{stem}.{{json,md}}", file=sys.stderr)
    return md


def _rerender(path: Path) -> int:
    """--from-json: render the tables again from a saved (possibly partial) run."""
    saved = json.loads(path.read_text(encoding="utf-8"))
    meta = {k: saved.get(k) for k in _META_KEYS}
    meta["resumed_by"] = saved.get("resumed_by", [])
    meta["duration_s"] = saved.get("duration_s", 0.0)
    md = _write(path.stem, meta, saved.get("scale_runs", {}), saved.get("wake_runs", {}), final=True)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
