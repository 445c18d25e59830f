"""greenloop.green.threading and greenloop.green.queue: the stdlib's behaviour, cooperatively.

The first half runs every behaviour test twice, through the ``impl`` fixture: on the stdlib's
primitives with real threads (the reference: if a test fails there, the test is wrong) and
on greenloop's with green threads. The second half covers what only the green versions
promise: FIFO hand-off, use from asyncio tasks, cancellation, waking across OS threads,
plain code driving the main thread's loop, and a closing loop unwinding its waiters.
"""

from __future__ import annotations

import asyncio
import queue
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import greenloop
from greenloop import _green
from greenloop.green import queue as gqueue
from greenloop.green import threading as gthreading
from greenloop.green.threading import _GRANTED, _WaitQueue

TIMEOUT = 10.0  # a bound on any wait that should end much sooner: a hang fails, not stalls
SLACK = 0.01  # timers may fire up to the clock resolution early
PY313 = sys.version_info >= (3, 13)
pytestmark = pytest.mark.timeout(60)
needs_shutdown = pytest.mark.skipif(not PY313, reason="Queue.shutdown() and queue.ShutDown are new in 3.13")


def exact(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern for exactly this message."""
    return f"^{re.escape(message)}$"


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """("ok", result) or (exception type, message): what a call does, comparably."""
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:
        return (type(exc), str(exc))


# -- the two implementations ----------------------------------------------------------------


class _Thread:
    """A real thread whose join() returns the function's result or raises its exception."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._result: tuple[bool, Any] = (False, None)
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._result = (True, fn(*args))
        except BaseException as exc:
            self._result = (False, exc)

    def join(self, timeout: float = TIMEOUT) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "thread did not finish"
        ok, value = self._result
        if not ok:
            raise value
        return value


class Stdlib:
    """The reference: the stdlib's primitives on real threads."""

    name = "stdlib"
    threading: Any = threading
    queue: Any = queue
    sleep = staticmethod(time.sleep)

    @staticmethod
    def run(body: Callable[[], Any]) -> Any:
        return body()

    @staticmethod
    def spawn(fn: Callable[..., Any], *args: Any) -> Any:
        return _Thread(fn, args)

    def wait_until(self, predicate: Callable[[], Any]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            assert time.monotonic() < deadline, "condition never became true"
            self.sleep(0.002)


class Green(Stdlib):
    """greenloop's primitives on green threads, the test body itself on one."""

    name = "greenloop"
    threading = gthreading
    queue = gqueue
    sleep = staticmethod(greenloop.sleep)

    @staticmethod
    def run(body: Callable[[], Any]) -> Any:
        async def main() -> Any:
            return await asyncio.wait_for(greenloop.spawn(body), TIMEOUT)

        return greenloop.run(main())

    @staticmethod
    def spawn(fn: Callable[..., Any], *args: Any) -> Any:
        return greenloop.spawn(fn, *args)  # GreenThread.join(timeout) returns or raises


@pytest.fixture(params=[Stdlib, Green], ids=["stdlib", "greenloop"])
def impl(request: pytest.FixtureRequest) -> Stdlib:
    return request.param()  # type: ignore[no-any-return]


def green_run(main: Callable[[], Any]) -> Any:
    """Run the coroutine function ``main`` on a new greenloop loop, bounded by TIMEOUT."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), TIMEOUT)

    return greenloop.run(bounded())


async def until(predicate: Callable[[], Any]) -> None:
    """From async code: wait until ``predicate()`` is true."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.001)


# == shared behaviour: the stdlib on real threads, greenloop on green threads ================

LOCK_REPR = re.compile(r"<(locked|unlocked) \S+ object at 0x[0-9a-f]+>")
RLOCK_REPR = re.compile(r"<(locked|unlocked) \S+ object owner=.+ count=(\d+) at 0x[0-9a-f]+>")


def test_lock_basics(impl: Stdlib) -> None:
    def body() -> None:
        lock = impl.threading.Lock()
        assert not lock.locked()
        assert lock.acquire() is True
        assert lock.locked()
        assert lock.acquire(False) is False
        assert lock.acquire(timeout=0) is False
        start = time.monotonic()
        assert lock.acquire(timeout=0.03) is False
        assert time.monotonic() - start >= 0.03 - SLACK
        assert LOCK_REPR.fullmatch(repr(lock)) and repr(lock).startswith("<locked ")
        lock.release()
        assert LOCK_REPR.fullmatch(repr(lock)) and repr(lock).startswith("<unlocked ")
        with pytest.raises(RuntimeError, match=exact("release unlocked lock")):
            lock.release()
        with lock:
            assert lock.locked()
        assert not lock.locked()
        assert lock.acquire_lock() and lock.locked_lock()
        lock.release_lock()
        assert weakref.ref(lock)() is lock

    impl.run(body)


def test_lock_waiter_proceeds_when_another_thread_releases(impl: Stdlib) -> None:
    def body() -> None:
        lock = impl.threading.Lock()
        lock.acquire()
        events = []

        def waiter() -> bool:
            ok = lock.acquire(timeout=TIMEOUT)
            events.append("acquired")
            return bool(ok)

        w = impl.spawn(waiter)
        impl.sleep(0.02)
        events.append("released")
        impl.spawn(lock.release).join()  # a plain Lock may be released by any thread
        assert w.join() is True
        assert events == ["released", "acquired"]
        assert lock.locked()
        lock.release()

    impl.run(body)


LOCK_ARGS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((False,), {}),
    ((True, 0), {}),
    ((True, 0.0), {}),
    ((True, -1), {}),
    ((True, -1.0), {}),
    ((True, -0.9999999999), {}),
    ((True, -1.0000000001), {}),
    ((True, -2), {}),
    ((True, -1e-10), {}),
    ((False, -1), {}),
    ((False, 0), {}),
    ((False, 1.5), {}),
    ((True, float("nan")), {}),
    ((True, float("inf")), {}),
    ((True, float("-inf")), {}),
    ((True, 1e10), {}),
    ((True, 10**10), {}),
    ((True, 9223372036.0), {}),
    ((True, "1"), {}),
    ((True, True), {}),
    ((None,), {}),
    ((2.5,), {}),
    (("",), {}),
    ((), {"timeout": 0.5}),
    ((), {"blocking": False}),
    ((), {"blocking": False, "timeout": 1}),
]


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_acquire_checks_arguments_exactly_like_the_stdlib(kind: str) -> None:
    for args, kwargs in LOCK_ARGS:
        ours, ref = getattr(gthreading, kind)(), getattr(threading, kind)()
        assert outcome(ours.acquire, *args, **kwargs) == outcome(ref.acquire, *args, **kwargs), (args, kwargs)
    # And on a lock someone else holds (only the calls that do not block).
    for args in [(False,), (True, 0), (True, 0.0), (False, 0), (True, -2), (True, float("nan"))]:
        ours, ref = gthreading.Lock(), threading.Lock()
        ours.acquire()
        ref.acquire()
        assert outcome(ours.acquire, *args) == outcome(ref.acquire, *args), args


def test_rlock_basics(impl: Stdlib) -> None:
    def body() -> None:
        rlock = impl.threading.RLock()
        m = RLOCK_REPR.fullmatch(repr(rlock))
        assert m and m.groups() == ("unlocked", "0")
        with pytest.raises(RuntimeError, match=exact("cannot release un-acquired lock")):
            rlock.release()
        assert rlock.acquire() and rlock.acquire(False) and rlock.acquire(timeout=0)
        assert rlock._is_owned() and rlock._recursion_count() == 3
        m = RLOCK_REPR.fullmatch(repr(rlock))
        assert m and m.groups() == ("locked", "3")

        def other() -> Any:
            # Not the owner: cannot take it without waiting, cannot release it.
            return (rlock.acquire(False), rlock._is_owned(), rlock._recursion_count(), outcome(rlock.release))

        assert impl.spawn(other).join() == (
            False,
            False,
            0,
            (RuntimeError, "cannot release un-acquired lock"),
        )
        state = rlock._release_save()
        assert state[0] == 3 and not rlock._is_owned()
        assert impl.spawn(lambda: rlock.acquire(False) and (rlock.release() or True)).join() is True
        rlock._acquire_restore(state)
        assert rlock._recursion_count() == 3
        for _ in range(3):
            rlock.release()
        assert not rlock._is_owned()
        with pytest.raises(RuntimeError, match=exact("cannot release un-acquired lock")):
            rlock._release_save()
        with rlock, rlock:
            assert rlock._recursion_count() == 2

    impl.run(body)


def test_rlock_waiter_proceeds_after_the_last_release(impl: Stdlib) -> None:
    def body() -> None:
        rlock = impl.threading.RLock()
        events = []

        def holder() -> None:
            with rlock:
                with rlock:
                    events.append("holding")
                    impl.sleep(0.03)
                events.append("inner released")
                impl.sleep(0.01)
                events.append("released")

        h = impl.spawn(holder)
        impl.wait_until(lambda: events)
        assert rlock.acquire(timeout=TIMEOUT)
        events.append("acquired")
        rlock.release()
        h.join()
        assert events == ["holding", "inner released", "released", "acquired"]

    impl.run(body)


def test_condition(impl: Stdlib) -> None:
    def body() -> None:
        th = impl.threading
        cond = th.Condition()
        assert re.fullmatch(
            r"<Condition\(<unlocked .+ object owner=.+ count=0 at 0x[0-9a-f]+>, 0\)>", repr(cond)
        )
        for call in (cond.wait, cond.notify, cond.notify_all, lambda: cond.wait_for(lambda: False)):
            with pytest.raises(RuntimeError, match=r"^cannot (wait|notify) on un-acquired lock$"):
                call()
        with cond:
            assert cond.wait(0) is False
            assert cond.wait(-1) is False
            start = time.monotonic()
            assert cond.wait(0.02) is False
            assert time.monotonic() - start >= 0.02 - SLACK
            assert cond.wait_for(lambda: "yes") == "yes"
            assert cond.wait_for(lambda: 0, 0.01) == 0
            cond.notify()  # nobody waits: nothing happens
            with pytest.warns(DeprecationWarning, match="notifyAll"):
                cond.notifyAll()

        woken = []

        def waiter(i: int) -> bool:
            with cond:
                ok = cond.wait(TIMEOUT)
                woken.append(i)
                return bool(ok)

        waiters = [impl.spawn(waiter, i) for i in range(4)]
        impl.wait_until(lambda: len(cond._waiters) == 4)
        assert re.search(r", 4\)>$", repr(cond))
        with cond:
            cond.notify()
        impl.wait_until(lambda: len(woken) == 1)
        with cond:
            cond.notify(2)
        impl.wait_until(lambda: len(woken) == 3)
        with cond:
            cond.notify_all()
        assert [w.join() for w in waiters] == [True] * 4
        assert sorted(woken) == [0, 1, 2, 3]

    impl.run(body)


def test_condition_wait_for_and_reentrant_lock(impl: Stdlib) -> None:
    def body() -> None:
        th = impl.threading
        cond = th.Condition(th.RLock())
        box: list[int] = []

        def consumer() -> int:
            with cond, cond:  # held twice: wait() must release it fully, then restore both
                assert cond.wait_for(lambda: box, TIMEOUT)
                return int(cond._lock._recursion_count())

        c = impl.spawn(consumer)
        impl.wait_until(lambda: len(cond._waiters) == 1)
        with cond:
            box.append(1)
            cond.notify()
        assert c.join() == 2

        plain = th.Condition(th.Lock())  # a lock without owners
        with plain:
            assert plain.wait(0.01) is False
        with pytest.raises(RuntimeError, match=exact("cannot notify on un-acquired lock")):
            plain.notify()

    impl.run(body)


def test_semaphore(impl: Stdlib) -> None:
    def body() -> None:
        th = impl.threading
        with pytest.raises(ValueError, match=exact("semaphore initial value must be >= 0")):
            th.Semaphore(-1)
        sem = th.Semaphore(2)
        assert re.fullmatch(r"<\S*threading\.Semaphore at 0x[0-9a-f]+: value=2>", repr(sem))
        assert sem.acquire() and sem.acquire(False)
        assert not sem.acquire(False) and not sem.acquire(timeout=0) and not sem.acquire(timeout=-1)
        start = time.monotonic()
        assert sem.acquire(timeout=0.02) is False
        assert time.monotonic() - start >= 0.02 - SLACK
        with pytest.raises(ValueError, match=exact("can't specify timeout for non-blocking acquire")):
            sem.acquire(False, 1)
        for n in (0, -1):
            with pytest.raises(ValueError, match=exact("n must be one or more")):
                sem.release(n)
        got = []

        def taker(i: int) -> None:
            assert sem.acquire(timeout=TIMEOUT)
            got.append(i)

        takers = [impl.spawn(taker, i) for i in range(3)]
        impl.sleep(0.02)
        assert got == []
        sem.release(2)
        impl.wait_until(lambda: len(got) == 2)
        sem.release()
        for t in takers:
            t.join()
        assert sorted(got) == [0, 1, 2] and sem._value == 0
        sem.release(3)
        with sem:
            assert sem._value == 2
        assert sem._value == 3

        bounded = th.BoundedSemaphore(2)
        assert re.fullmatch(r"<\S*threading\.BoundedSemaphore at 0x[0-9a-f]+: value=2/2>", repr(bounded))
        with pytest.raises(ValueError, match=exact("Semaphore released too many times")):
            bounded.release()
        bounded.acquire()
        with pytest.raises(ValueError, match=exact("Semaphore released too many times")):
            bounded.release(2)
        bounded.release()
        assert bounded._value == 2

    impl.run(body)


def test_event(impl: Stdlib) -> None:
    def body() -> None:
        ev = impl.threading.Event()
        assert re.fullmatch(r"<\S*threading\.Event at 0x[0-9a-f]+: unset>", repr(ev))
        assert not ev.is_set()
        assert ev.wait(0) is False and ev.wait(-1) is False
        start = time.monotonic()
        assert ev.wait(0.02) is False
        assert time.monotonic() - start >= 0.02 - SLACK
        waiters = [impl.spawn(ev.wait, TIMEOUT) for _ in range(3)]
        impl.sleep(0.02)
        ev.set()
        assert [w.join() for w in waiters] == [True] * 3
        assert ev.is_set() and ev.wait() is True and ev.wait(0) is True
        assert repr(ev).endswith(": set>")
        with pytest.warns(DeprecationWarning, match="isSet"):
            assert ev.isSet()
        ev.clear()
        assert not ev.is_set() and ev.wait(0.001) is False

    impl.run(body)


def test_barrier(impl: Stdlib) -> None:
    def body() -> None:
        th = impl.threading
        assert th.BrokenBarrierError is threading.BrokenBarrierError
        if PY313:
            with pytest.raises(ValueError, match=r"^parties must be > 0$"):
                th.Barrier(0)
        else:
            th.Barrier(0)
        actions = []
        barrier = th.Barrier(3, action=lambda: actions.append("tripped"))
        assert re.fullmatch(r"<\S*threading\.Barrier at 0x[0-9a-f]+: waiters=0/3>", repr(barrier))
        assert barrier.parties == 3
        for _round in range(2):
            parties = [impl.spawn(barrier.wait) for _ in range(3)]
            assert sorted(p.join() for p in parties) == [0, 1, 2]
        assert actions == ["tripped", "tripped"]

        parties = [impl.spawn(barrier.wait) for _ in range(2)]
        impl.wait_until(lambda: barrier.n_waiting == 2)
        assert repr(barrier).endswith("waiters=2/3>")
        barrier.abort()
        for p in parties:
            with pytest.raises(th.BrokenBarrierError):
                p.join()
        assert barrier.broken and repr(barrier).endswith(": broken>")
        with pytest.raises(th.BrokenBarrierError):
            barrier.wait()
        barrier.reset()
        assert not barrier.broken and barrier.n_waiting == 0

        parties = [impl.spawn(barrier.wait) for _ in range(2)]
        impl.wait_until(lambda: barrier.n_waiting == 2)
        barrier.reset()  # the parties waiting get BrokenBarrierError, the barrier stays usable
        for p in parties:
            with pytest.raises(th.BrokenBarrierError):
                p.join()
        assert not barrier.broken

        quick = th.Barrier(2, timeout=0.02)
        with pytest.raises(th.BrokenBarrierError):
            quick.wait()
        assert quick.broken

    impl.run(body)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("Queue", [1, 3, 2]), ("LifoQueue", [2, 3, 1]), ("PriorityQueue", [1, 2, 3])],
)
def test_queue_order(impl: Stdlib, kind: str, expected: list[int]) -> None:
    def body() -> None:
        q = getattr(impl.queue, kind)()
        for item in (1, 3, 2):
            q.put(item)
        assert q.qsize() == 3
        assert [q.get() for _ in range(3)] == expected
        assert repr(getattr(impl.queue, kind)[int]).endswith(f"{kind}[int]")

    impl.run(body)


def test_queue_bounds_timeouts_and_errors(impl: Stdlib) -> None:
    def body() -> None:
        qm = impl.queue
        assert qm.Empty is queue.Empty and qm.Full is queue.Full
        q = qm.Queue(2)
        assert q.empty() and not q.full() and q.qsize() == 0 and q.maxsize == 2
        q.put(1)
        q.put_nowait(2)
        assert q.full() and not q.empty() and q.qsize() == 2
        with pytest.raises(queue.Full):
            q.put_nowait(3)
        with pytest.raises(queue.Full):
            q.put(3, block=False, timeout=-1)  # the timeout is ignored when not blocking
        start = time.monotonic()
        with pytest.raises(queue.Full):
            q.put(3, timeout=0.02)
        assert time.monotonic() - start >= 0.02 - SLACK
        with pytest.raises(ValueError, match=exact("'timeout' must be a non-negative number")):
            q.put(3, timeout=-1)
        with pytest.raises(ValueError, match=exact("'timeout' must be a non-negative number")):
            q.get(timeout=-1)  # even with items in the queue, as the stdlib checks first
        assert q.get_nowait() == 1 and q.get() == 2
        with pytest.raises(queue.Empty):
            q.get_nowait()
        with pytest.raises(queue.Empty):
            q.get(False, -5)
        with pytest.raises(queue.Empty):
            q.get(timeout=0)
        start = time.monotonic()
        with pytest.raises(queue.Empty):
            q.get(timeout=0.02)
        assert time.monotonic() - start >= 0.02 - SLACK
        unbounded = qm.Queue()
        unbounded.put(1, timeout=-1)  # never waits, so the timeout is never looked at
        assert not unbounded.full()

        # A blocked get() is woken by a put() from another thread, a blocked put() by a get().
        getter = impl.spawn(q.get, True, TIMEOUT)
        impl.sleep(0.02)
        q.put("x")
        assert getter.join() == "x"
        q.put(1)
        q.put(2)
        putter = impl.spawn(q.put, 3, True, TIMEOUT)
        impl.sleep(0.02)
        assert q.get() == 1
        putter.join()
        assert [q.get(), q.get()] == [2, 3]

    impl.run(body)


def test_queue_join_and_task_done(impl: Stdlib) -> None:
    def body() -> None:
        q = impl.queue.Queue()
        done = []

        def worker() -> None:
            while True:
                item = q.get(timeout=TIMEOUT)
                if item is None:
                    q.task_done()
                    return
                impl.sleep(0.001)
                done.append(item)
                q.task_done()

        workers = [impl.spawn(worker) for _ in range(3)]
        for i in range(12):
            q.put(i)
        q.join()
        assert sorted(done) == list(range(12)) and q.unfinished_tasks == 0
        for _ in workers:
            q.put(None)
        for w in workers:
            w.join()
        q.join()
        with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
            q.task_done()

    impl.run(body)


def test_queue_cleared_by_hand_under_its_mutex(impl: Stdlib) -> None:
    def body() -> None:
        q = impl.queue.Queue(2)
        q.put(1)
        q.put(2)
        putter = impl.spawn(q.put, 3, True, TIMEOUT)
        impl.sleep(0.02)
        # The usual idiom: empty it in place, then tell the waiting putters.
        with q.mutex:
            q.queue.clear()
            q.unfinished_tasks = 0
            q.all_tasks_done.notify_all()
            q.not_full.notify_all()
        putter.join()
        assert q.qsize() == 1 and q.get_nowait() == 3

    impl.run(body)


@needs_shutdown
def test_queue_shutdown(impl: Stdlib) -> None:
    def body() -> None:
        qm = impl.queue
        assert qm.ShutDown is queue.ShutDown  # type: ignore[attr-defined]
        q = qm.Queue()
        assert q.is_shutdown is False
        getter = impl.spawn(q.get)
        impl.sleep(0.02)
        q.shutdown()
        assert q.is_shutdown
        with pytest.raises(qm.ShutDown):
            getter.join()
        with pytest.raises(qm.ShutDown):
            q.put(1)
        with pytest.raises(qm.ShutDown):
            q.get(False)

        # Not immediate: what is left can still be got, then get() raises.
        q = qm.Queue()
        q.put(1)
        q.put(2)
        q.shutdown()
        assert [q.get(), q.get_nowait()] == [1, 2]
        with pytest.raises(qm.ShutDown):
            q.get(timeout=1)

        # A blocked put() raises too.
        q = qm.Queue(1)
        q.put(1)
        putter = impl.spawn(q.put, 2)
        impl.sleep(0.02)
        q.shutdown()
        with pytest.raises(qm.ShutDown):
            putter.join()

        # Immediate: the items left are dropped, each one counting as a task done.
        q = qm.Queue()
        for i in range(3):
            q.put(i)
        assert q.get() == 0
        joiner = impl.spawn(q.join)
        q.shutdown(immediate=True)
        assert q.qsize() == 0 and q.unfinished_tasks == 1
        with pytest.raises(qm.ShutDown):
            q.get()
        q.task_done()
        joiner.join()

    impl.run(body)


def test_simple_queue(impl: Stdlib) -> None:
    def body() -> None:
        sq = impl.queue.SimpleQueue()
        assert sq.empty() and sq.qsize() == 0
        sq.put(1)
        sq.put_nowait(2)
        sq.put(3, block=False, timeout=-1)  # accepted and ignored
        assert sq.qsize() == 3 and not sq.empty()
        assert [sq.get(), sq.get_nowait(), sq.get(timeout=0)] == [1, 2, 3]
        with pytest.raises(queue.Empty):
            sq.get_nowait()
        with pytest.raises(queue.Empty):
            sq.get(False, -1)  # the timeout is ignored when not blocking
        with pytest.raises(queue.Empty):
            sq.get(timeout=0)
        with pytest.raises(ValueError, match=exact("'timeout' must be a non-negative number")):
            sq.get(timeout=-1)
        start = time.monotonic()
        with pytest.raises(queue.Empty):
            sq.get(timeout=0.02)
        assert time.monotonic() - start >= 0.02 - SLACK
        getters = [impl.spawn(sq.get, True, TIMEOUT) for _ in range(3)]
        impl.sleep(0.02)
        for item in "abc":
            sq.put(item)
        assert sorted(g.join() for g in getters) == ["a", "b", "c"]
        assert repr(impl.queue.SimpleQueue[int]).endswith("SimpleQueue[int]")

    impl.run(body)


@pytest.mark.parametrize("timeout", [float("nan"), "1", 1e10])
def test_simple_queue_timeout_checks_match_the_stdlib(timeout: Any) -> None:
    assert outcome(gqueue.SimpleQueue().get, True, timeout) == outcome(queue.SimpleQueue().get, True, timeout)


def test_exports() -> None:
    assert sorted(gthreading.__implements__) == sorted(
        # The public classes, and threading's private lock factories (patched too).
        [
            "Lock",
            "RLock",
            "Condition",
            "Semaphore",
            "BoundedSemaphore",
            "Event",
            "Barrier",
            "_allocate_lock",
            "_CRLock",
        ]
    )
    assert sorted(gqueue.__implements__) == sorted(["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"])
    for module, names in ((gthreading, gthreading.__all__), (gqueue, gqueue.__all__)):
        assert names == sorted(names)
        for name in names:
            assert hasattr(module, name)
    assert ("ShutDown" in gqueue.__all__) == PY313
    assert hasattr(gqueue.Queue, "shutdown") == hasattr(queue.Queue, "shutdown")
    for cls in (gqueue.Queue, gqueue.SimpleQueue, gthreading.Condition, gthreading.Event):
        std = getattr(queue, cls.__name__, None) or getattr(threading, cls.__name__)
        public = {n for n in dir(std) if not n.startswith("_")}
        assert public <= set(dir(cls)), public - set(dir(cls))


# == greenloop only ===========================================================================


@pytest.mark.parametrize(
    "kind", ["Lock", "RLock", "Semaphore", "Condition", "Queue.get", "Queue.put", "SimpleQueue"]
)
def test_fifo_fairness_among_100_green_threads(kind: str) -> None:
    """Waiters are served in arrival order, and a releaser cannot take it back while they wait."""
    n = 100
    order: list[int] = []

    async def main() -> None:
        if kind in ("Lock", "RLock", "Semaphore"):
            lock = getattr(gthreading, kind)() if kind != "Semaphore" else gthreading.Semaphore(1)
            lock.acquire()

            def waiter(i: int) -> None:
                lock.acquire()
                order.append(i)
                greenloop.sleep(0)  # give everyone else a chance to barge in
                lock.release()

            threads = [greenloop.spawn(waiter, i) for i in range(n)]
            await until(lambda: len(lock._waiters if kind != "RLock" else lock._block._waiters) == n)
            lock.release()
            assert lock.acquire(False) is False  # handed over, not free: no barging
        elif kind == "Condition":
            cond = gthreading.Condition()

            def waiter(i: int) -> None:
                with cond:
                    cond.wait()
                    order.append(i)

            threads = [greenloop.spawn(waiter, i) for i in range(n)]
            await until(lambda: len(cond._waiters) == n)
            with cond:
                for _ in range(n):
                    cond.notify()
        elif kind == "Queue.get":
            q = gqueue.Queue()
            threads = [greenloop.spawn(lambda i: order.append(i) or q.get(), i) for i in range(n)]
            await until(lambda: len(q._getters) == n)
            for i in range(n):
                q.put(i)
                assert q.qsize() == 0  # promised to a waiting getter, not up for grabs
                with pytest.raises(queue.Empty):
                    q.get_nowait()
            assert [await t for t in threads] == list(range(n))
            order[:] = list(range(n))
        elif kind == "Queue.put":
            q = gqueue.Queue(1)
            q.put(-1)
            threads = [greenloop.spawn(q.put, i) for i in range(n)]
            await until(lambda: len(q._putters) == n)
            for _ in range(n + 1):
                order.append(q.get())
                # The slot freed is promised to the next putter, if one is left.
                assert q.full() == (len(order) <= n)
            order.remove(-1)
        else:
            sq = gqueue.SimpleQueue()
            threads = [greenloop.spawn(sq.get) for _ in range(n)]
            await until(lambda: len(sq._getters) == n)
            for i in range(n):
                sq.put(i)
            assert [await t for t in threads] == list(range(n))
            order[:] = list(range(n))
        for t in threads:
            await t

    green_run(main)
    assert order == list(range(n))


def test_tasks_use_the_primitives_with_blocking_calls() -> None:
    async def main() -> None:
        lock = gthreading.Lock()
        order: list[int] = []

        async def worker(i: int) -> None:
            with lock:  # a blocking-style acquire inside a task suspends only this task
                order.append(i)
                greenloop.sleep(0.002)
                await asyncio.sleep(0)
                assert asyncio.current_task() is task_of[i]

        task_of = {i: asyncio.ensure_future(worker(i)) for i in range(10)}
        await asyncio.gather(*task_of.values())
        assert order == list(range(10))

        # RLock ownership is per task: another task is not the owner.
        rlock = gthreading.RLock()
        seen = []

        async def owner() -> None:
            with rlock:
                greenloop.sleep(0.03)  # holds it across a blocking call
                seen.append("owner done")

        async def other() -> None:
            await asyncio.sleep(0.01)
            seen.append(rlock.acquire(False))
            with rlock:
                seen.append("other got it")

        await asyncio.gather(owner(), other())
        assert seen == [False, "owner done", "other got it"]

        # A task and a green thread on one bounded queue.
        q = gqueue.Queue(maxsize=2)
        producer = greenloop.spawn(lambda: [q.put(i) for i in range(30)])
        assert [q.get() for _ in range(30)] == list(range(30))
        await producer

        # Waits with timeouts inside a task.
        ev = gthreading.Event()
        start = time.monotonic()
        assert ev.wait(0.02) is False
        assert time.monotonic() - start >= 0.02 - SLACK
        with pytest.raises(queue.Empty):
            q.get(timeout=0.01)

    green_run(main)


def test_task_timeout_around_a_blocking_acquire_leaves_the_lock_consistent() -> None:
    async def main() -> None:
        lock = gthreading.Lock()
        lock.acquire()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):  # noqa: ASYNC100 (a blocking-style call is a checkpoint)
                lock.acquire()
        assert lock.locked() and len(lock._waiters) == 0
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        lock.release()
        assert not lock.locked()

        cond = gthreading.Condition()
        with cond:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.02):  # noqa: ASYNC100 (so is Condition.wait())
                    cond.wait()
            assert cond._is_owned()  # wait() took the lock back before raising
        assert len(cond._waiters) == 0

    green_run(main)


def test_cancelled_green_thread_leaves_the_primitives_consistent() -> None:
    async def main() -> None:
        lock = gthreading.Lock()
        lock.acquire()
        got = []

        def waiter(i: int) -> None:
            with lock:
                got.append(i)

        first, second = greenloop.spawn(waiter, 1), greenloop.spawn(waiter, 2)
        await until(lambda: len(lock._waiters) == 2)
        assert first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert len(lock._waiters) == 1
        lock.release()
        await second
        assert got == [2] and not lock.locked()

        sem = gthreading.Semaphore(0)
        taker = greenloop.spawn(sem.acquire)
        await until(lambda: len(sem._waiters) == 1)
        taker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taker
        sem.release()
        assert sem._value == 1

        q = gqueue.Queue()
        getter = greenloop.spawn(q.get)
        await until(lambda: len(q._getters) == 1)
        getter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await getter
        q.put(1)
        assert q.qsize() == 1 and q.get_nowait() == 1

    green_run(main)


def test_cancelled_condition_waiter_takes_the_lock_back_first() -> None:
    """A cancellation that comes while wait() is taking the lock back waits for the lock."""

    async def main() -> None:
        cond = gthreading.Condition()
        seen = []

        def waiter() -> None:
            with cond:
                try:
                    cond.wait()
                except asyncio.CancelledError:
                    seen.append(("owned when cancelled", cond._is_owned()))
                    raise

        def notifier() -> None:
            with cond:
                cond.notify()
                greenloop.sleep(0.03)  # the notified waiter now waits for the lock
                seen.append("notifier done")

        w = greenloop.spawn(waiter)
        await until(lambda: len(cond._waiters) == 1)
        n = greenloop.spawn(notifier)
        await asyncio.sleep(0.01)
        w.cancel()
        await n
        with pytest.raises(asyncio.CancelledError):
            await w
        assert seen == ["notifier done", ("owned when cancelled", True)]
        assert not cond._lock._block.locked()

    green_run(main)


def test_a_notified_waiter_that_is_cancelled_passes_the_notification_on() -> None:
    async def main() -> None:
        cond = gthreading.Condition()
        woken = []

        def waiter(i: int) -> None:
            with cond:
                cond.wait()
                woken.append(i)

        first, second = greenloop.spawn(waiter, 1), greenloop.spawn(waiter, 2)
        await until(lambda: len(cond._waiters) == 2)
        with cond:
            cond.notify()  # to `first`, which is cancelled before it has the lock back
            first.cancel()
            greenloop.sleep(0.01)  # `first` now waits for the lock, its cancellation held
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert woken == [2]

    green_run(main)


def release_from_os_thread(fn: Callable[[], Any]) -> None:
    """Run ``fn`` on a real thread, blocking the loop meanwhile (so its wake-up is in flight)."""
    t = threading.Thread(target=fn)
    t.start()
    t.join(TIMEOUT)


@pytest.mark.parametrize("kind", ["Lock", "Semaphore", "Condition", "Queue", "SimpleQueue"])
def test_cancelled_waiter_passes_on_a_racing_hand_off(kind: str) -> None:
    """An OS thread hands over to waiter 1, which is cancelled before it wakes: waiter 2 gets it."""

    async def main() -> None:
        got: list[Any] = []
        if kind == "Lock":
            lock = gthreading.Lock()
            lock.acquire()

            def wait(i: int) -> None:
                lock.acquire()
                got.append(i)
                lock.release()

            release, pending = lock.release, lambda: len(lock._waiters)
        elif kind == "Semaphore":
            sem = gthreading.Semaphore(0)

            def wait(i: int) -> None:
                sem.acquire()
                got.append(i)

            release, pending = sem.release, lambda: len(sem._waiters)
        elif kind == "Condition":
            cond = gthreading.Condition()

            def wait(i: int) -> None:
                with cond:
                    cond.wait()
                    got.append(i)

            def release() -> None:
                with cond:
                    cond.notify()

            def pending() -> int:
                return len(cond._waiters)
        elif kind == "Queue":
            q = gqueue.Queue()

            def wait(i: int) -> None:
                got.append((i, q.get()))

            release, pending = (lambda: q.put("item")), lambda: len(q._getters)
        else:
            sq = gqueue.SimpleQueue()

            def wait(i: int) -> None:
                got.append((i, sq.get()))

            release, pending = (lambda: sq.put("item")), lambda: len(sq._getters)

        first, second = greenloop.spawn(wait, 1), greenloop.spawn(wait, 2)
        await until(lambda: pending() == 2)

        def race() -> None:
            release_from_os_thread(release)  # granted to `first`; its wake-up is queued
            assert first.cancel()  # ... and the cancellation comes first

        await greenloop.spawn(race)
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert got in ([2], [(2, "item")])

    green_run(main)


def test_os_threads_wake_green_waiters_promptly() -> None:
    """Executor threads release, set, notify and put; green waiters wake at once."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lock = gthreading.Lock()
        lock.acquire()
        rlock = gthreading.RLock()
        ev = gthreading.Event()
        sem = gthreading.Semaphore(0)
        cond = gthreading.Condition()
        q = gqueue.Queue(1)
        sq = gqueue.SimpleQueue()
        barrier = gthreading.Barrier(2)

        def cond_wait() -> bool:
            with cond:
                return cond.wait(TIMEOUT)

        def cond_notify() -> None:
            with cond:
                cond.notify()

        def rlock_from_os_thread() -> None:
            rlock.acquire()
            time.sleep(0.02)
            rlock.release()

        cases: list[tuple[Callable[[], Any], Callable[[], Any]]] = [
            (lambda: lock.acquire(timeout=TIMEOUT), lock.release),
            (lambda: ev.wait(TIMEOUT), ev.set),
            (lambda: sem.acquire(timeout=TIMEOUT), sem.release),
            (cond_wait, cond_notify),
            (lambda: q.get(timeout=TIMEOUT), lambda: q.put(1)),
            (lambda: sq.get(timeout=TIMEOUT), lambda: sq.put(1)),
            (lambda: barrier.wait(TIMEOUT), lambda: barrier.wait(TIMEOUT)),
        ]
        for wait, wake in cases:

            def timed_wait(wait: Callable[[], Any] = wait) -> tuple[Any, float]:
                return wait(), time.monotonic()

            def timed_wake(wake: Callable[[], Any] = wake) -> float:
                time.sleep(0.01)
                at = time.monotonic()
                wake()
                return at

            waiter = greenloop.spawn(timed_wait)
            await asyncio.sleep(0.01)
            woken_at = await loop.run_in_executor(None, timed_wake)
            result, woke_at = await waiter
            assert result is not False  # not a timeout
            assert woke_at - woken_at < 0.5  # the self-pipe woke the loop, no timer did
        lock.release()  # the green waiter of the first case took it

        # A green waiter on an RLock held by an OS thread.
        fut = loop.run_in_executor(None, rlock_from_os_thread)
        await asyncio.sleep(0.005)
        assert greenloop.spawn(lambda: rlock.acquire(timeout=TIMEOUT) and (rlock.release() or True)).join(
            TIMEOUT
        )
        await fut

    green_run(main)


def test_os_thread_blocks_for_real_on_a_green_lock() -> None:
    """An executor thread waits on a lock a green thread holds; the loop keeps running."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lock = gthreading.Lock()
        events: list[str] = []
        ticks = []

        def holder() -> None:
            with lock:
                for _ in range(5):
                    ticks.append(1)
                    greenloop.sleep(0.01)
                events.append("green released")

        def os_side() -> bool:
            got = lock.acquire(timeout=TIMEOUT)
            events.append("os acquired")
            lock.release()
            return bool(got)

        h = greenloop.spawn(holder)
        await until(lock.locked)
        assert await loop.run_in_executor(None, os_side)
        await h
        assert events == ["green released", "os acquired"] and len(ticks) == 5

        # Timeouts on the OS side too, and a blocking get() from an OS thread.
        lock.acquire()
        assert await loop.run_in_executor(None, lock.acquire, True, 0.02) is False
        lock.release()
        q = gqueue.Queue()
        getter = loop.run_in_executor(None, q.get, True, TIMEOUT)
        await asyncio.sleep(0.01)
        greenloop.spawn(q.put, "to the os thread")
        assert await getter == "to the os thread"
        ev = gthreading.Event()
        waiter = loop.run_in_executor(None, ev.wait, TIMEOUT)
        await asyncio.sleep(0.01)
        ev.set()
        assert await waiter is True

    green_run(main)


def test_queue_join_with_green_workers_and_a_task() -> None:
    async def main() -> None:
        q = gqueue.Queue()
        results = []

        def worker() -> None:
            while True:
                item = q.get()
                greenloop.sleep(0.001)
                results.append(item * 2)
                q.task_done()

        workers = [greenloop.spawn(worker) for _ in range(4)]
        for i in range(40):
            q.put(i)
        q.join()  # blocking-style, from the task
        assert sorted(results) == [i * 2 for i in range(40)]
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        assert len(q._getters) == 0

    green_run(main)


@needs_shutdown
def test_queue_shutdown_wakes_green_and_os_thread_waiters() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        q = gqueue.Queue()
        green_getter = greenloop.spawn(q.get)
        os_getter = loop.run_in_executor(None, q.get, True, TIMEOUT)
        await until(lambda: len(q._getters) == 2)
        q.shutdown()
        with pytest.raises(queue.ShutDown):  # type: ignore[attr-defined]
            await green_getter
        with pytest.raises(queue.ShutDown):  # type: ignore[attr-defined]
            await os_getter

    green_run(main)


@pytest.fixture
def main_thread_loop() -> Iterator[None]:
    """For tests whose plain code drives the main thread's loop: close it afterwards."""
    yield
    loop = _green._main_thread_loop
    if loop is not None and not loop.is_closed():
        loop.close()


def test_plain_code_drives_the_main_thread_loop_while_it_waits(main_thread_loop: None) -> None:
    lock = gthreading.Lock()

    def holder() -> None:
        with lock:
            greenloop.sleep(0.02)

    h = greenloop.spawn(holder)  # on the main thread's loop, which nothing runs yet
    assert not lock.locked()
    greenloop.sleep(0.005)  # runs the loop meanwhile: the holder takes the lock
    assert lock.locked()
    assert lock.acquire(timeout=TIMEOUT)  # runs the loop until the holder releases it
    h.join()
    lock.release()

    q = gqueue.Queue()
    greenloop.spawn(q.put, "from a green thread")
    assert q.get(timeout=TIMEOUT) == "from a green thread"
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)

    ev = gthreading.Event()
    t = threading.Timer(0.01, ev.set)  # a real thread wakes the main greenlet
    t.start()
    assert ev.wait(TIMEOUT) is True
    t.join()


def test_closing_the_loop_unwinds_blocked_waiters() -> None:
    lock = gthreading.Lock()
    q = gqueue.Queue()
    ev = gthreading.Event()
    cond = gthreading.Condition()

    def cond_wait() -> None:
        with cond:
            cond.wait()

    rlock = gthreading.RLock()

    async def task_holding_an_rlock() -> None:
        with rlock:
            greenloop.sleep(TIMEOUT)  # a task blocked while it owns the RLock

    async def main() -> list[Any]:
        lock.acquire()
        waiters = [greenloop.spawn(f) for f in (lock.acquire, q.get, ev.wait, cond_wait)]
        await asyncio.sleep(0.01)
        return waiters

    loop = greenloop.new_event_loop()
    try:
        task = loop.create_task(task_holding_an_rlock())
        waiters = loop.run_until_complete(main())
    finally:
        loop.close()
    assert all(w.cancelled() for w in waiters)
    # Unwinding the task released the RLock as its owner (no loop runs during close()).
    assert task.done() and (task.cancelled() or task.exception() is not None)
    assert rlock._count == 0 and not rlock._block.locked()
    for pending in (lock._waiters, q._getters, ev._waiters, cond._waiters):
        assert len(pending) == 0
    lock.release()
    assert not lock.locked() and not cond._lock._block.locked()
    q.put(1)
    assert q.get_nowait() == 1


def test_blocking_in_a_plain_callback_is_refused_and_leaves_no_waiter() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lock = gthreading.Lock()
        lock.acquire()
        done: asyncio.Future[BaseException] = loop.create_future()

        def callback() -> None:
            try:
                lock.acquire()
            except BaseException as exc:
                done.set_result(exc)

        loop.call_soon(callback)
        exc = await done
        assert isinstance(exc, greenloop.BlockingCallError) and "Lock.acquire()" in str(exc)
        assert len(lock._waiters) == 0
        lock.release()
        assert not lock.locked()

    green_run(main)


def test_under_another_asyncio_loop_a_contended_acquire_blocks_like_the_original() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lock = gthreading.Lock()
        held = threading.Event()

        def holder() -> None:
            lock.acquire()
            held.set()
            time.sleep(0.03)
            lock.release()

        fut = loop.run_in_executor(None, holder)
        held.wait(TIMEOUT)
        assert lock.acquire(timeout=TIMEOUT)  # blocks this OS thread, as threading.Lock would
        lock.release()
        await fut

        # Nothing blocks cooperatively on this loop, so its tasks share their thread's RLock
        # identity, as with the stdlib's RLock.
        rlock = gthreading.RLock()

        async def holder() -> None:
            with rlock:
                await asyncio.sleep(0.01)

        async def other() -> bool:
            got = rlock.acquire(False)
            rlock.release()
            return bool(got)

        task = asyncio.ensure_future(holder())
        await asyncio.sleep(0)
        assert await other() is True
        await task

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(main())


def test_abandoned_waiters_do_not_accumulate() -> None:
    async def main() -> None:
        lock = gthreading.Lock()
        lock.acquire()
        tries = [greenloop.spawn(lock.acquire, True, 0.01) for _ in range(2000)]
        assert not any([await t for t in tries])
        assert len(lock._waiters) == 0
        assert len(lock._waiters._q) <= 2 * _WaitQueue._COMPACT_MIN
        lock.release()
        assert not lock.locked()

    green_run(main)


def test_a_hand_off_that_races_a_timeout_counts_as_acquired() -> None:
    async def main() -> None:
        lock = gthreading.Lock()
        lock.acquire()
        result = greenloop.spawn(lock.acquire, True, 0.05)
        await until(lambda: len(lock._waiters) == 1)
        with lock._guard:  # what a release on another OS thread decides first
            waiter = lock._waiters.popleft()
            assert waiter is not None
            waiter.state = _GRANTED
        assert await result is True  # timed out, but the lock was already its own
        assert lock.locked()
        lock.release()
        assert not lock.locked()

    green_run(main)
