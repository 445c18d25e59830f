"""Cooperative ``queue``: Queue, LifoQueue, PriorityQueue and SimpleQueue.

Theory of operation
-------------------
``Queue`` keeps the stdlib's shape, because code relies on it: subclasses override
``_init``/``_qsize``/``_put``/``_get``; programs write ``with q.mutex: q.queue.clear()``; the
attributes ``mutex``, ``not_empty``, ``not_full``, ``all_tasks_done`` and
``unfinished_tasks`` exist. All state is guarded by ``mutex`` (a green Lock that nobody holds
across a wait), so the queue is shared safely between green threads, tasks and OS threads.

What differs is how blocked callers wait. The stdlib wakes a waiter and lets it race every
newcomer for the item (a newcomer can take it first, and the waiter queues up again at the
back). Here a ``put()`` that finds getters waiting *promises* the item to the first of them,
and a ``get()`` that frees a slot promises it to the first waiting putter: waiters are served
in arrival order. A promised item is still in ``q.queue`` until its getter runs (so
``_get`` picks it, and priorities hold), but it no longer counts as available:
``qsize()``/``empty()`` report what a newcomer could get, and ``full()`` counts promised
slots as taken. A promise given to a waiter that is cancelled before it collects it passes
to the next waiter.

A ``notify()`` on ``not_empty``/``not_full`` from outside (after changing ``q.queue`` by
hand) makes the queue re-check its waiters, as it would wake the stdlib's.

``SimpleQueue`` hands items directly to waiting getters. Like the C original, its ``put()``
may be called from a signal handler, ``__del__`` or a weakref callback that interrupts a
``get()`` in the same OS thread: it takes no lock unless getters wait, and then a reentrant
one.

Polling
-------
Threaded code also waits by polling: ``while not q.empty(): ...`` until a consumer thread has
drained the queue, ``get(block=False)`` in a loop. With OS threads the other thread runs
meanwhile (preemption); a green one runs only when the poller yields, so such a loop would
spin forever. So the queue counts the polls it answers (``qsize()``, ``empty()``, ``full()``,
and non-blocking ``get``/``put`` that fail) and every ``_POLL_YIELD``-th one yields, as
``time.sleep(0)`` would, outside the mutex. A loop that polls while doing real work (``while
not q.empty(): q.get()``) pays one switch per ``_POLL_YIELD`` polls. Where the caller cannot
block (a plain loop callback), the poll does not yield.

``Empty``, ``Full`` and (3.13) ``ShutDown`` are the stdlib's own classes, so ``except
queue.Empty`` catches ours whenever the name was looked up.
"""

from __future__ import annotations

import queue as _std_queue
import sys
import types
from collections import deque
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any, Final

from greenloop import _green
from greenloop.monkey import original_module

from .threading import (
    _GRANTED,
    _WOKEN,
    Condition,
    Lock,
    _timeout_ns,
    _wait_seconds,
    _Waiter,
    _WaitQueue,
    _wake,
)
from .threading import _monotonic as _now

__implements__ = ["LifoQueue", "PriorityQueue", "Queue", "SimpleQueue"]
__all__ = ["Empty", "Full", "LifoQueue", "PriorityQueue", "Queue", "SimpleQueue"]

_HAS_SHUTDOWN: Final = sys.version_info >= (3, 13)

Empty = _std_queue.Empty
Full = _std_queue.Full
_ShutDown: type[Exception] = getattr(_std_queue, "ShutDown", Exception)
if _HAS_SHUTDOWN:
    ShutDown = _ShutDown
    __all__ = ["Empty", "Full", "LifoQueue", "PriorityQueue", "Queue", "ShutDown", "SimpleQueue"]

# SimpleQueue's guard must be reentrant (see the module docstring): a real one, unpatched.
_real_rlock: Final = original_module("_thread").RLock

# Every this many polls of one queue yield (see "Polling" above). Small enough that a spinning
# poller lets the others run within microseconds, large enough that a draining loop barely
# notices.
_POLL_YIELD: Final = 32


def _poll_due(queue: Any) -> bool:
    """Count a poll of ``queue``; True for every ``_POLL_YIELD``-th one."""
    polls = queue._polls = queue._polls + 1
    return not polls % _POLL_YIELD


def _yield() -> None:
    """``sleep(0)`` where the caller may block; nothing where it may not."""
    try:
        _green.sleep(0)
    except RuntimeError:
        # BlockingCallError (a plain loop callback, a green thread of a stopped loop), or a
        # running loop that is not greenloop's: polling must not fail, so just go on.
        pass


def _polled(queue: Any) -> None:
    """A poll answered with no lock held: every ``_POLL_YIELD``-th one yields."""
    if _poll_due(queue):
        _yield()


class _QueueCondition(Condition):
    """``not_empty`` / ``not_full``: a notify also makes the queue re-check its own waiters."""

    def __init__(self, lock: Lock, recheck: Callable[[], None]) -> None:
        super().__init__(lock)
        self._recheck = recheck

    def notify(self, n: int = 1) -> None:
        super().notify(n)
        self._recheck()


class Queue:
    """A FIFO queue for green threads, tasks and OS threads; waiters are served in arrival order.

    If ``maxsize`` is <= 0 the queue is unbounded.
    """

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._init(maxsize)
        self.mutex = Lock()
        self.not_empty = _QueueCondition(self.mutex, self._grant_getters)
        self.not_full = _QueueCondition(self.mutex, self._grant_putters)
        self.all_tasks_done = Condition(self.mutex)
        self.unfinished_tasks = 0
        if _HAS_SHUTDOWN:
            self.is_shutdown = False
        self._getters = _WaitQueue()
        self._putters = _WaitQueue()
        # Promises not yet collected: items for woken getters, free slots for woken putters.
        self._promised_items = 0
        self._promised_slots = 0

    __class_getitem__: Any = classmethod(types.GenericAlias)

    _polls = 0  # a class default: subclasses that skip __init__ still poll

    def _missed(self, what: str) -> None:
        """A non-blocking get/put found nothing (mutex held): a poll, yielding outside it."""
        if _poll_due(self):
            mutex = self.mutex
            mutex.release()
            try:
                _yield()
            finally:
                deferred = mutex._acquire_shielded(what)
            if deferred is not None:
                raise deferred

    # -- what a newcomer would find (mutex held) --------------------------------------------

    def _ready(self) -> bool:
        return self._qsize() > self._promised_items

    def _no_room(self) -> bool:
        return 0 < self.maxsize <= self._qsize() + self._promised_slots

    def _grant_getters(self) -> None:
        getters = self._getters
        if not getters._q:  # the common case, checked cheaply
            return
        while getters and self._qsize() > self._promised_items:
            waiter = getters.popleft()
            if waiter is None:
                return
            self._promised_items += 1
            _wake(waiter)

    def _grant_putters(self) -> None:
        putters = self._putters
        if not putters._q:
            return
        while putters and not self._no_room():
            waiter = putters.popleft()
            if waiter is None:
                return
            self._promised_slots += 1
            _wake(waiter)

    def _await_turn(self, waiters: _WaitQueue, seconds: float | None, what: str) -> None:
        """With the mutex held: queue up, wait with it released, then take it back.

        Collects the promise if one was made; the caller re-checks its condition either way
        (a timeout, a shutdown, or a queue changed by hand all come back here without one).
        """
        waiter = _Waiter(what)
        waiters.append(waiter)
        mutex = self.mutex
        mutex.release()
        try:
            waiter.block(seconds, what)
        except BaseException:
            mutex._acquire_shielded(what)  # a second cancellation folds into this one
            self._leave(waiters, waiter)
            raise
        deferred = mutex._acquire_shielded(what)
        if deferred is not None:
            self._leave(waiters, waiter)
            raise deferred
        if waiter.state == _GRANTED:
            self._collect(waiters)
        else:
            waiters.abandon(waiter)

    def _collect(self, waiters: _WaitQueue) -> None:
        if waiters is self._getters:
            self._promised_items -= 1
        else:
            self._promised_slots -= 1

    def _leave(self, waiters: _WaitQueue, waiter: _Waiter) -> None:
        """A waiter leaves by an exception: a promise made to it goes to the next one."""
        if waiter.state != _GRANTED:
            waiters.abandon(waiter)
            return
        self._collect(waiters)
        if waiters is self._getters:
            self._grant_getters()
        else:
            self._grant_putters()

    # -- the public API ---------------------------------------------------------------------

    def task_done(self) -> None:
        """Mark one item fetched by get() as processed; join() returns when none is left.

        Raises ValueError if called more times than items were put.
        """
        with self.all_tasks_done:
            unfinished = self.unfinished_tasks - 1
            if unfinished <= 0:
                if unfinished < 0:
                    raise ValueError("task_done() called too many times")
                self.all_tasks_done.notify_all()
            self.unfinished_tasks = unfinished

    def join(self) -> None:
        """Wait until every item put has been fetched and marked done with task_done()."""
        with self.all_tasks_done:
            while self.unfinished_tasks:
                self.all_tasks_done.wait()

    def qsize(self) -> int:
        """The number of items a get() could take now (approximate: it may change at once)."""
        with self.mutex:
            size = max(0, self._qsize() - self._promised_items)
        _polled(self)
        return size

    def empty(self) -> bool:
        """Whether a get() would find nothing now (approximate)."""
        with self.mutex:
            empty = not self._ready()
        _polled(self)
        return empty

    def full(self) -> bool:
        """Whether a put() would have to wait now (approximate)."""
        with self.mutex:
            full = self._no_room()
        _polled(self)
        return full

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item`` into the queue, waiting for a free slot if needed (and allowed).

        Raises Full if none came in ``timeout`` seconds (or at once, if not ``block``); on
        3.13, ShutDown if the queue is shut down.
        """
        self.mutex.acquire()
        try:
            if _HAS_SHUTDOWN and self.is_shutdown:
                raise _ShutDown
            if self.maxsize > 0:
                if not block:
                    if self._no_room():
                        self._missed("Queue.put()")
                        raise Full
                elif timeout is None:
                    while self._no_room():
                        self._await_turn(self._putters, None, "Queue.put()")
                        if _HAS_SHUTDOWN and self.is_shutdown:
                            raise _ShutDown
                elif timeout < 0:
                    raise ValueError("'timeout' must be a non-negative number")
                else:
                    deadline = _now() + timeout
                    while self._no_room():
                        remaining = deadline - _now()
                        if remaining <= 0.0:
                            raise Full
                        self._await_turn(self._putters, _wait_seconds(remaining), "Queue.put()")
                        if _HAS_SHUTDOWN and self.is_shutdown:
                            raise _ShutDown
            self._put(item)
            self.unfinished_tasks += 1
            self._grant_getters()
            if self.not_empty._waiters:  # code waiting on not_empty itself, as with the stdlib's
                self.not_empty._notify(1)
        finally:
            self.mutex.release()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item, waiting for one if needed (and allowed).

        Raises Empty if none came in ``timeout`` seconds (or at once, if not ``block``); on
        3.13, ShutDown if the queue is shut down and has nothing left for this call.
        """
        self.mutex.acquire()
        try:
            if _HAS_SHUTDOWN and self.is_shutdown and not self._ready():
                raise _ShutDown
            if not block:
                if not self._ready():
                    self._missed("Queue.get()")
                    raise Empty
            elif timeout is None:
                while not self._ready():
                    self._await_turn(self._getters, None, "Queue.get()")
                    if _HAS_SHUTDOWN and self.is_shutdown and not self._ready():
                        raise _ShutDown
            elif timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
            else:
                deadline = _now() + timeout
                while not self._ready():
                    remaining = deadline - _now()
                    if remaining <= 0.0:
                        raise Empty
                    self._await_turn(self._getters, _wait_seconds(remaining), "Queue.get()")
                    if _HAS_SHUTDOWN and self.is_shutdown and not self._ready():
                        raise _ShutDown
            item = self._get()
            self._grant_putters()
            if self.not_full._waiters:
                self.not_full._notify(1)
            return item
        finally:
            self.mutex.release()

    def put_nowait(self, item: Any) -> None:
        """put() without waiting: Full if there is no free slot now."""
        return self.put(item, block=False)

    def get_nowait(self) -> Any:
        """get() without waiting: Empty if there is no item now."""
        return self.get(block=False)

    def shutdown(self, immediate: bool = False) -> None:
        """Shut the queue down (3.13+): put() raises ShutDown, get() once nothing is left.

        Blocked callers wake up. With ``immediate``, the items left are discarded (each
        counting as a task done) and get() raises ShutDown at once.
        """
        with self.mutex:
            self.is_shutdown = True
            if immediate:
                while self._qsize():
                    self._get()
                    if self.unfinished_tasks > 0:
                        self.unfinished_tasks -= 1
                self.all_tasks_done._notify(len(self.all_tasks_done._waiters))
            for waiters in (self._getters, self._putters):
                while (waiter := waiters.popleft()) is not None:
                    _wake(waiter, _WOKEN)
            for cond in (self.not_empty, self.not_full):
                cond._notify(len(cond._waiters))

    # -- storage: override these to change the order ---------------------------------------

    def _init(self, maxsize: int) -> None:
        self.queue: Any = deque()

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        self.queue.append(item)

    def _get(self) -> Any:
        return self.queue.popleft()


if not _HAS_SHUTDOWN:
    del Queue.shutdown  # the stdlib's Queue gained shutdown() in 3.13


class PriorityQueue(Queue):
    """A queue that returns the lowest entry first (entries are often ``(priority, data)``)."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        heappush(self.queue, item)

    def _get(self) -> Any:
        return heappop(self.queue)


class LifoQueue(Queue):
    """A queue that returns the most recently added entry first."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        self.queue.append(item)

    def _get(self) -> Any:
        return self.queue.pop()


class SimpleQueue:
    """An unbounded FIFO queue without task tracking; put() never blocks."""

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._getters = _WaitQueue()
        self._guard = _real_rlock()

    __class_getitem__: Any = classmethod(types.GenericAlias)

    _polls = 0  # see "Polling" above

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item`` into the queue (``block`` and ``timeout`` are accepted and ignored)."""
        self._items.append(item)
        # Looking at the getters without the guard is safe: a getter queues itself before it
        # delivers to itself (see get()), so an item is never left behind a waiter.
        if self._getters._q:
            self._deliver()

    def put_nowait(self, item: Any) -> None:
        """The same as put(item)."""
        self.put(item, block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item, waiting for one if needed (and allowed).

        Raises Empty if none came in ``timeout`` seconds (or at once, if not ``block``).
        """
        seconds: float | None = None
        if block and timeout is not None:
            ns = _timeout_ns(timeout, ceiling=True)
            if ns < 0:
                raise ValueError("'timeout' must be a non-negative number")
            seconds = ns / 1e9
        try:
            return self._items.popleft()
        except IndexError:
            pass
        if not block or seconds == 0:
            _polled(self)
            raise Empty
        waiter = _Waiter("SimpleQueue.get()")
        with self._guard:
            self._getters.append(waiter)
        self._deliver()  # an item put since we looked must not wait behind us
        try:
            woke = waiter.block(seconds, "SimpleQueue.get()")
        except BaseException:
            with self._guard:
                if waiter.state == _GRANTED:
                    # Handed an item we will not return: it goes back to the front.
                    self._items.appendleft(waiter.value)
                    waiter.value = None
                else:
                    self._getters.abandon(waiter)
            self._deliver()
            raise
        if not woke:
            with self._guard:
                if waiter.state != _GRANTED:
                    self._getters.abandon(waiter)
                    raise Empty
        item = waiter.value
        waiter.value = None
        return item

    def _deliver(self) -> None:
        """Give queued items to waiting getters, first to first."""
        with self._guard:
            items = self._items
            getters = self._getters
            while items and getters:
                waiter = getters.popleft()
                if waiter is None:
                    return
                try:
                    item = items.popleft()
                except IndexError:  # a get() interrupted by a reentrant call took it
                    getters.appendleft(waiter)
                    return
                waiter.value = item
                _wake(waiter)

    def get_nowait(self) -> Any:
        """get() without waiting: Empty if there is no item now."""
        return self.get(block=False)

    def empty(self) -> bool:
        """Whether the queue is empty now (approximate)."""
        _polled(self)
        return not self._items

    def qsize(self) -> int:
        """The number of items in the queue now (approximate)."""
        _polled(self)
        return len(self._items)
