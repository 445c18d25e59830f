"""Figure 2 of the paper: SEDA's threaded-server benchmark, on greenloop, bare greenlets, OS threads, asyncio.

    python -m demos.load.seda --impl greenloop|greenlet|threads|asyncio|asyncio-dispatch --n N [--seconds S]

Prints one JSON line: completed requests per second, with N threads in the pool.

The benchmark (after SEDA's, as the paper repeats it): requests are generated inside the
process, no network; each request is an 8 KiB read from a cached file (``os.pread`` of a
file just written, so it sits in the OS page cache). A producer keeps a request queue full;

* threaded server (greenloop green threads, or real OS threads): a preallocated pool of N
  threads, each looping ``take a request from the queue -> read 8 KiB -> count it ->
  yield``. The yield stands for the blocking point a real request has (writing the answer):
  every request costs one trip through the scheduler, so the cost of scheduling among N
  threads is what is measured as N grows;
* bare greenlets (greenlet): the same pool with no event loop at all, a deque of greenlets
  as the run queue and a plain loop switching to each in turn. The floor any scheduler built on
  greenlet pays: the switch itself, whose cost grows with N as each thread's saved C stack
  and frames fall out of the caches;
* event server (asyncio): one consumer task pulls requests from the queue and handles them,
  yielding to the loop after each batch, as SEDA's event server does;
* event dispatch (asyncio-dispatch): every request is its own event, a callback the loop
  runs (``call_soon``): the event-side dual of one scheduler trip per request.

Throughput is measured over ``seconds`` after a short warm-up, once all N threads exist.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any

from demos import gc_policy

READ = 8192
WARMUP = 0.5


def _cached_file() -> tuple[int, str]:
    fd, path = tempfile.mkstemp(prefix="seda-")
    os.write(fd, os.urandom(READ))
    os.pread(fd, READ, 0)  # now it is in the page cache
    return fd, path


def _rss() -> int:
    """Peak RSS of this process (not ru_maxrss: Linux carries that over exec from the parent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_greenloop(n: int, seconds: float, fd: int) -> dict[str, Any]:
    import greenloop

    waiting: collections.deque[Any] = collections.deque()  # parked workers' futures
    queue: collections.deque[int] = collections.deque()
    state = {"done": 0, "running": True}

    def take() -> int:
        """The green queue's get(): an item now, or park until the producer hands one over."""
        if queue:
            return queue.popleft()
        loop = greenloop.current_green_thread().get_loop()
        fut = loop.create_future()
        waiting.append(fut)
        return greenloop.await_(fut)

    def worker() -> None:
        while state["running"]:
            take()
            os.pread(fd, READ, 0)
            state["done"] += 1
            greenloop.sleep(0)

    def producer() -> None:
        while state["running"]:
            for _ in range(max(0, n - len(queue) - 0)):  # keep one request per thread queued
                if waiting:
                    waiting.popleft().set_result(1)
                else:
                    queue.append(1)
            greenloop.sleep(0)
        while waiting:
            waiting.popleft().set_result(0)

    def main() -> dict[str, Any]:
        t0 = time.perf_counter()
        workers = [greenloop.spawn(worker) for _ in range(n)]
        greenloop.sleep(0)
        spawn_s = time.perf_counter() - t0
        prod = greenloop.spawn(producer)
        greenloop.sleep(WARMUP)
        d0, t1 = state["done"], time.perf_counter()
        greenloop.sleep(seconds)
        d1, t2 = state["done"], time.perf_counter()
        state["running"] = False
        # No joins: ending a million parked threads one by one takes minutes and measures
        # nothing; the process exits right after printing (os._exit in main()).
        del prod, workers
        return {"rps": (d1 - d0) / (t2 - t1), "spawn_s": spawn_s}

    return greenloop.spawn(main).join()


def run_greenlet(n: int, seconds: float, fd: int) -> dict[str, Any]:
    import greenlet

    hub = greenlet.getcurrent()  # the scheduler: round-robin over a deque, nothing else
    ready: collections.deque[Any] = collections.deque()
    waiting: collections.deque[Any] = collections.deque()  # parked workers' greenlets
    queue: collections.deque[int] = collections.deque()
    state = {"done": 0, "running": True}

    def take() -> int:
        if queue:
            return queue.popleft()
        waiting.append(greenlet.getcurrent())
        return hub.switch()  # the producer hands a request over in the switch back

    def worker(_first: int) -> None:  # the first switch(1) starts it
        me = greenlet.getcurrent()
        while state["running"]:
            take()
            os.pread(fd, READ, 0)
            state["done"] += 1
            ready.append(me)
            hub.switch()

    t0 = time.perf_counter()
    workers = [greenlet.greenlet(worker) for _ in range(n)]
    ready.extend(workers)
    spawn_s = time.perf_counter() - t0
    warm_until = time.perf_counter() + WARMUP
    d0, t1 = 0, 0.0  # the window's start, once the warm-up is over (t1 > 0)
    while True:
        # The producer's turn, as in run_greenloop: one request per thread queued or handed over.
        for _ in range(max(0, n - len(queue))):
            if waiting:
                ready.append(waiting.popleft())  # its switch(1) below is the request
            else:
                queue.append(1)
        for _ in range(len(ready)):
            ready.popleft().switch(1)
        now = time.perf_counter()  # between rounds, as run_greenloop reads it between sleeps
        if not t1 and now >= warm_until:
            d0, t1 = state["done"], now
        elif t1 and now - t1 >= seconds:
            break
    state["running"] = False
    d1, t2 = state["done"], now
    return {"rps": (d1 - d0) / (t2 - t1), "spawn_s": spawn_s}


def run_threads(n: int, seconds: float, fd: int) -> dict[str, Any]:
    import queue as queue_mod

    threading.stack_size(256 * 1024)
    q: queue_mod.Queue[int] = queue_mod.Queue(maxsize=max(1, n))
    state = {"done": 0, "running": True}
    lock = threading.Lock()

    def worker() -> None:
        while q.get():
            os.pread(fd, READ, 0)
            with lock:
                state["done"] += 1
            time.sleep(0)  # the blocking point: let the kernel schedule another thread

    t0 = time.perf_counter()
    workers = []
    try:
        for _ in range(n):
            t = threading.Thread(target=worker, daemon=True)
            t.start()
            workers.append(t)
    except RuntimeError as exc:  # can't start new thread: the machine's limit
        return {"error": f"{type(exc).__name__}: {exc} after {len(workers)} threads"}
    spawn_s = time.perf_counter() - t0

    def producer() -> None:
        while state["running"]:
            q.put(1)
        for _ in workers:
            q.put(0)

    threading.Thread(target=producer, daemon=True).start()
    time.sleep(WARMUP)
    d0, t1 = state["done"], time.perf_counter()
    time.sleep(seconds)
    d1, t2 = state["done"], time.perf_counter()
    state["running"] = False
    return {"rps": (d1 - d0) / (t2 - t1), "spawn_s": spawn_s}


def run_asyncio(n: int, seconds: float, fd: int) -> dict[str, Any]:
    import asyncio

    async def main() -> dict[str, Any]:
        q: asyncio.Queue[int] = asyncio.Queue()
        state = {"done": 0, "running": True}

        async def producer() -> None:
            while state["running"]:
                for _ in range(1024 - q.qsize()):
                    q.put_nowait(1)
                await asyncio.sleep(0)

        async def consumer() -> None:  # the single event handler
            while state["running"]:
                for _ in range(q.qsize()):
                    q.get_nowait()
                    os.pread(fd, READ, 0)
                    state["done"] += 1
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(producer()), asyncio.create_task(consumer())]
        await asyncio.sleep(WARMUP)
        d0, t1 = state["done"], time.perf_counter()
        await asyncio.sleep(seconds)
        d1, t2 = state["done"], time.perf_counter()
        state["running"] = False
        await asyncio.gather(*tasks)
        return {"rps": (d1 - d0) / (t2 - t1), "spawn_s": 0.0}

    return asyncio.run(main())


def run_asyncio_dispatch(n: int, seconds: float, fd: int) -> dict[str, Any]:
    import asyncio

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        state = {"done": 0, "running": True, "pending": 0}

        def handle(_request: int) -> None:  # the event handler
            os.pread(fd, READ, 0)
            state["done"] += 1
            state["pending"] -= 1

        async def producer() -> None:
            while state["running"]:
                for _ in range(1024 - state["pending"]):
                    loop.call_soon(handle, 1)
                    state["pending"] += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(producer())
        await asyncio.sleep(WARMUP)
        d0, t1 = state["done"], time.perf_counter()
        await asyncio.sleep(seconds)
        d1, t2 = state["done"], time.perf_counter()
        state["running"] = False
        await task
        return {"rps": (d1 - d0) / (t2 - t1), "spawn_s": 0.0}

    return asyncio.run(main())


IMPLS = {
    "greenloop": run_greenloop,
    "greenlet": run_greenlet,
    "threads": run_threads,
    "asyncio": run_asyncio,
    "asyncio-dispatch": run_asyncio_dispatch,
}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.load.seda", description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=list(IMPLS), required=True)
    p.add_argument("--n", type=int, default=1, help="threads in the pool (ignored by asyncio)")
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args()
    fd, path = _cached_file()
    gc_policy.apply()  # as the web servers do: with a million threads it matters most
    try:
        result = IMPLS[args.impl](args.n, args.seconds, fd)
    finally:
        os.unlink(path)  # the fd stays open: pool threads may still be reading until os._exit
    result.update(impl=args.impl, n=args.n, rss_max=_rss())
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # OS-thread pools: do not wait for stragglers at interpreter exit


if __name__ == "__main__":
    main()
