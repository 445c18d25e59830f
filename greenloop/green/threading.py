"""Cooperative ``threading`` synchronisation: Lock, RLock, Condition, Semaphore,
BoundedSemaphore, Event, Barrier.

Theory of operation
-------------------
Every primitive keeps its blocked callers in a FIFO of :class:`_Waiter` objects. A waiter is
whatever can block the caller without stalling anyone else:

* on a greenloop loop's OS thread (a green thread, an asyncio task, or the main greenlet
  driving the main thread's loop): an asyncio future, waited on with ``_green.wait()``;
* on any other OS thread (an executor worker, a thread a C library started), or under a
  running loop that is not greenloop's: a real ``_thread`` lock acquired in advance, so the
  caller blocks that OS thread and nothing else, exactly as the original primitive would.

A primitive never lets a newcomer overtake its waiters: ``release()`` hands the lock (or the
semaphore unit, or the notification) directly to the first waiter, and while anyone waits the
resource stays taken, so acquisition order is arrival order (FIFO-fair, no barging). Every
operation is O(1) (``notify_all`` and ``Event.set`` are O(woken waiters)): a waiter that gives
up (timeout, cancellation) is not searched for in the deque but marked abandoned where it is
and skipped when it reaches the front; the deque is compacted when abandoned entries
outnumber live ones, which keeps memory bounded at amortised O(1) cost.

Waiter states move PENDING -> GRANTED (by the releaser) or PENDING -> ABANDONED (by the
waiter itself), always under the primitive's guard, so that a hand-off racing with a timeout
or a cancellation is decided exactly once:

* the hand-off wins a race with a *timeout*: the call succeeds (it did acquire);
* the hand-off wins a race with a *cancellation* (possible only when the releaser is on
  another OS thread): the waiter passes what it was given to the next waiter before raising
  CancelledError, so a cancelled waiter never swallows a release.

The guard is a real ``_thread`` lock, held only for a few bytecodes and never across a wait,
which is what makes every primitive safe to share between green code and real OS threads:
a releaser on another OS thread wakes a green waiter through ``loop.call_soon_threadsafe``.
(A Lock's locked state is itself a real lock, so an uncontended acquire is one atomic call.)
The guards are not reentrant, so (unlike the C originals) a ``release()`` made from a signal
handler or ``__del__`` that interrupts an operation on the *same* primitive in the same OS
thread would deadlock.

Conditions keep their waiters' states under the user's lock instead, as the stdlib does, and
``Condition.wait()`` takes the lock back even when the wait was cancelled: the caller's
``with cond:`` must find the lock held on the way out. A cancellation that arrives while it
is taking the lock back is held until the lock is taken and then raised.

Identity: ``RLock`` ownership is per green thread, per asyncio task on a greenloop loop,
and otherwise per greenlet (in practice per OS thread: each has its own main greenlet),
which is what ``threading.get_ident()`` means once green threads and tasks can block.

Supported: any primitive may be shared by green threads and tasks of any greenloop loop (one
per OS thread), plain code on the main thread (which drives the main thread's loop while it
waits), and real OS threads. Not covered: locks created before patching are the originals
and block the whole OS thread when contended; a Condition built on such a lock takes it back
the blocking way.
"""

from __future__ import annotations

import _thread
import asyncio
import math
import operator
import sys
import threading as _std_threading
import time
import warnings
from asyncio import events
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

from greenlet import getcurrent

from greenloop import _green
from greenloop._loop import Loop
from greenloop.monkey import original_module

__implements__ = [
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    # threading's private names for its lock factories: the pure-Python ``_PyRLock`` and the
    # original ``Condition`` (in code that captured it before patching) build their inner
    # locks with ``_allocate_lock()``; ``_CRLock`` is what ``RLock()`` returns.
    "_allocate_lock",
    "_CRLock",
]
__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
]

# The originals, whatever has been patched since: waiters on real OS threads block on real
# locks, and "is this the waiter's OS thread" must compare real thread idents (a patched
# get_ident() tells green threads apart).
_real_thread = original_module("_thread")
_allocate_real_lock: Final[Callable[[], _thread.LockType]] = _real_thread.allocate_lock
_os_thread_ident: Final[Callable[[], int]] = _real_thread.get_ident
_monotonic: Final = time.monotonic

#: The stdlib's own class, so ``except threading.BrokenBarrierError`` catches ours whether
#: the name was looked up before or after patching.
BrokenBarrierError = _std_threading.BrokenBarrierError

# -- argument checks, as _thread's C code does them -----------------------------------------

_PY311: Final = sys.version_info < (3, 12)
_PY313: Final = sys.version_info >= (3, 13)
_NEGATIVE_TIMEOUT: Final = (
    "timeout value must be a non-negative number" if _PY313 else "timeout value must be positive"
)
_INT_TOO_LARGE: Final = "timestamp too large to convert to C " + ("PyTime_t" if _PY313 else "_PyTime_t")
_NS_LIMIT: Final = 2**63  # _PyTime_t is a signed 64-bit count of nanoseconds
_FLOAT_NS_LIMIT: Final = float(_NS_LIMIT)
_UNSET_NS: Final = -1_000_000_000  # timeout=-1 means "no timeout"


def _timeout_ns(timeout: object, *, ceiling: bool = False) -> int:
    """A timeout in integer nanoseconds, converted (and rejected) as CPython's C code does.

    Floats are rounded away from zero (``_PyTime_ROUND_TIMEOUT``, as the locks do) or up
    (``ceiling``, as ``_queue.SimpleQueue`` does); anything else must be an integer.
    """
    if isinstance(timeout, float):
        if math.isnan(timeout):
            raise ValueError("Invalid value NaN (not a number)")
        scaled = timeout * 1e9
        if not -_FLOAT_NS_LIMIT <= scaled < _FLOAT_NS_LIMIT:
            raise OverflowError("timestamp out of range for platform time_t")
        return math.ceil(scaled) if ceiling or scaled >= 0 else math.floor(scaled)
    ns = operator.index(timeout) * 1_000_000_000  # type: ignore[arg-type]
    if not -_NS_LIMIT <= ns < _NS_LIMIT:
        raise OverflowError(_INT_TOO_LARGE)
    return ns


def _lock_wait(blocking: object, timeout: object) -> float | None:
    """How long ``acquire(blocking, timeout)`` may wait: None forever, 0.0 not at all, or seconds.

    Validates like ``_thread.lock.acquire``: same exceptions, messages and order, per Python
    version. The timeout is converted to integer nanoseconds rounding away from zero first,
    which is why -0.9999999999 still means "no timeout" and -1.0000000001 is rejected.
    """
    # 3.11 parses ``blocking`` as a C int, 3.12+ as a truth value.
    block = operator.index(blocking) != 0 if _PY311 else bool(blocking)  # type: ignore[arg-type]
    ns = _timeout_ns(timeout)
    if not block:
        if ns != _UNSET_NS:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return 0.0
    if ns == _UNSET_NS:
        return None
    if ns < 0:
        raise ValueError(_NEGATIVE_TIMEOUT)
    return ns / 1e9


def _wait_seconds(timeout: object) -> float:
    """A positive timeout given to a wait that the stdlib forwards to ``lock.acquire(True, timeout)``."""
    seconds = _lock_wait(True, timeout)
    assert seconds is not None  # only called with timeout > 0
    return seconds


# -- waiters --------------------------------------------------------------------------------

_PENDING: Final = 0  # queued, waiting
_GRANTED: Final = 1  # handed what it waited for (a lock, a unit, a notification, an item)
_ABANDONED: Final = 2  # gave up (timeout, cancellation); still in the deque until skipped
_WOKEN: Final = 3  # woken without being granted anything (queue shutdown): re-check


def _set_result_unless_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Waiter:
    """One blocked caller: a future on its loop, or (on a foreign OS thread) a real lock."""

    __slots__ = ("fut", "lock", "state", "thread", "value")

    def __init__(self, what: str) -> None:
        self.state = _PENDING
        self.value: Any = None  # what a hand-off carries, where it carries something
        self.thread = _os_thread_ident()
        running = events._get_running_loop()
        # Under a running loop that is not greenloop's, behave like the original primitive
        # (block the OS thread) rather than raise: the stdlib lock would block there too.
        loop = None if running is not None and not isinstance(running, Loop) else _green._resolve_loop(what)
        if loop is None:
            self.fut: asyncio.Future[None] | None = None
            self.lock: Any = _allocate_real_lock()
            self.lock.acquire()
        else:
            self.fut = loop.create_future()
            self.lock = None

    def block(self, timeout: float | None, what: str) -> bool:
        """Wait to be woken: True if woken, False if ``timeout`` passed first.

        Cancellation (and anything else raised while waiting) propagates; the caller then
        decides, under its guard, whether it was granted something it must pass on.
        """
        fut = self.fut
        if fut is None:
            return bool(self.lock.acquire(True, -1 if timeout is None else timeout))
        try:
            _green.wait(fut, timeout, what)
        except TimeoutError:
            return False
        return True

    def fresh_future(self) -> None:
        """After a deferred cancellation: keep this place in the queue, wait on a new future."""
        fut = self.fut
        if fut is not None and fut.done():
            self.fut = fut.get_loop().create_future()


def _wake(waiter: _Waiter, state: int = _GRANTED) -> None:
    """Record the outcome and wake the waiter; called under the guard that owns its state."""
    waiter.state = state
    fut = waiter.fut
    if fut is None:
        waiter.lock.release()
    elif waiter.thread == _os_thread_ident():
        if not fut.done():
            fut.set_result(None)
    else:
        try:
            fut.get_loop().call_soon_threadsafe(_set_result_unless_done, fut)
        except RuntimeError:
            # The loop is closed. close() unwound every greenlet parked on it first, and each
            # of them gave up its place under this same guard, so no waiter we could pick is
            # left on a closed loop: there is nobody to wake.
            pass


class _WaitQueue:
    """FIFO of waiters: O(1) append and pop; abandoned entries are skipped, not searched for."""

    __slots__ = ("_dead", "_q")

    # Compact only past this many abandoned entries, and only when they are the majority.
    _COMPACT_MIN = 64

    def __init__(self) -> None:
        self._q: deque[_Waiter] = deque()
        self._dead = 0

    def __len__(self) -> int:
        """The number of live (pending) waiters."""
        return len(self._q) - self._dead

    def append(self, waiter: _Waiter) -> None:
        self._q.append(waiter)

    def appendleft(self, waiter: _Waiter) -> None:
        """Put a waiter just taken with popleft() back at the front."""
        self._q.appendleft(waiter)

    def popleft(self) -> _Waiter | None:
        """The first pending waiter, removed; None if there is none."""
        q = self._q
        while q:
            waiter = q.popleft()
            if waiter.state == _PENDING:
                return waiter
            self._dead -= 1
        return None

    def abandon(self, waiter: _Waiter) -> None:
        """A pending waiter gives up its place (it stays in the deque until skipped)."""
        if waiter.state != _PENDING:
            return
        waiter.state = _ABANDONED
        self._dead += 1
        if self._dead > self._COMPACT_MIN and self._dead * 2 > len(self._q):
            self._q = deque(w for w in self._q if w.state == _PENDING)
            self._dead = 0


# -- identity -------------------------------------------------------------------------------


def _owner_id() -> object:
    """Who is acquiring: the green thread, else the task on a greenloop loop, else the greenlet.

    Tasks must count as distinct owners on greenloop: two tasks on one OS thread could
    otherwise both "re-enter" an RLock that one of them holds across a blocking call, and a
    task's steps run on whichever hub greenlet is current, so the greenlet would not identify
    it either. On any other loop nothing blocks cooperatively, so tasks share their thread's
    identity, as with the stdlib's RLock. The green thread is checked first because close()
    unwinds green threads while no loop is running.
    """
    glet = getcurrent()
    if glet.parent is None:  # an OS thread's main greenlet: neither a green thread nor a hub
        return glet
    gt = getattr(glet, "gt", None)
    if gt is not None:
        return gt
    loop = events._get_running_loop()
    if isinstance(loop, Loop):
        task = asyncio.current_task(loop)
        if task is not None:
            return task
    return glet


def _describe_owner(owner: object) -> object:
    get_name = getattr(owner, "get_name", None)  # GreenThread and Task
    return get_name() if get_name is not None else owner


# -- Lock -----------------------------------------------------------------------------------


class _Guarded:
    """Shared machinery: a real lock guarding the state, and a FIFO of waiters."""

    __slots__ = ("_guard", "_waiters")

    def __init__(self) -> None:
        self._guard = _allocate_real_lock()
        self._waiters = _WaitQueue()

    def _give_back(self) -> None:
        """Pass on what a leaving waiter was granted; called with the guard held."""

    def _await(self, waiter: _Waiter, seconds: float | None, what: str) -> bool:
        """Wait for a grant on ``waiter`` (already queued); False on timeout."""
        try:
            if waiter.block(seconds, what):
                return True  # only a grant wakes a waiter
        except BaseException:
            with self._guard:
                if waiter.state == _GRANTED:
                    self._give_back()
                else:
                    self._waiters.abandon(waiter)
            raise
        with self._guard:
            if waiter.state == _GRANTED:
                return True  # the hand-off raced with the timeout and won
            self._waiters.abandon(waiter)
        return False


class Lock(_Guarded):
    """A primitive lock; blocking in ``acquire()`` suspends only the calling green thread or task.

    Like ``threading.Lock``: any thread may release it, and ``release()`` of an unlocked lock
    raises RuntimeError. Unlike it, waiters acquire in arrival order.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # threading.Lock was never subclassable (a function before 3.13, a final type since).
        raise TypeError("type 'threading.Lock' is not an acceptable base type")

    __slots__ = ("__weakref__", "_held")

    def __init__(self) -> None:
        super().__init__()
        # A real lock, held exactly while this one is locked, including while release() hands
        # it to a waiter: so a newcomer takes it with one atomic call, and only when nobody
        # waits (no barging). Waiters queue up and the releaser hands over under the guard.
        self._held = _allocate_real_lock()

    def __repr__(self) -> str:
        cls = type(self)
        state = "locked" if self._held.locked() else "unlocked"
        name = "lock" if cls is Lock else cls.__qualname__  # the C type's name: _thread.lock
        return f"<{state} {cls.__module__}.{name} object at {id(self):#x}>"

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the lock, waiting for it unless ``blocking`` is false, at most ``timeout`` seconds.

        Returns True if acquired, False if not (non-blocking, or the timeout passed).
        """
        if timeout == -1:  # the common calls, without the full argument check
            if blocking is True:
                return self._held.acquire(False) or self._acquire_slow(None, "Lock.acquire()")
            if blocking is False:
                return self._held.acquire(False)
        return self._acquire(_lock_wait(blocking, timeout), "Lock.acquire()")

    acquire_lock = acquire
    __enter__ = acquire

    def _acquire(self, seconds: float | None, what: str) -> bool:
        if self._held.acquire(False):
            return True
        if seconds == 0:
            return False
        return self._acquire_slow(seconds, what)

    def _acquire_slow(self, seconds: float | None, what: str) -> bool:
        waiter = _Waiter(what)  # allocated outside the guard
        guard = self._guard
        guard.acquire()
        try:
            if self._held.acquire(False):  # released meanwhile (by another OS thread)
                return True
            self._waiters.append(waiter)
        finally:
            guard.release()
        return self._await(waiter, seconds, what)

    def release(self) -> None:
        """Release the lock: hand it to the first waiter, or unlock it if nobody waits."""
        guard = self._guard
        guard.acquire()
        try:
            self._release()
        finally:
            guard.release()

    release_lock = release

    def _release(self) -> None:
        # Guard held. A live waiter implies the lock is held; if there is none, releasing the
        # real lock raises the original's RuntimeError("release unlocked lock") as needed.
        if self._waiters._q:
            waiter = self._waiters.popleft()
            if waiter is not None:
                _wake(waiter)
                return
        self._held.release()

    _give_back = _release

    def __exit__(self, *args: object) -> None:
        self.release()

    def locked(self) -> bool:
        """Whether the lock is held."""
        return self._held.locked()

    locked_lock = locked

    def _acquire_shielded(self, what: str) -> asyncio.CancelledError | None:
        """Acquire, holding off cancellation until the lock is held; return that cancellation.

        ``Condition.wait()`` takes its lock back this way: it must return (or raise) with the
        lock held, whatever interrupts it.
        """
        if self._held.acquire(False):
            return None
        waiter = _Waiter(what)
        with self._guard:
            if self._held.acquire(False):
                return None
            self._waiters.append(waiter)
        deferred: asyncio.CancelledError | None = None
        while True:
            try:
                waiter.block(None, what)
                return deferred
            except asyncio.CancelledError as exc:
                if deferred is None:
                    deferred = exc
                with self._guard:
                    if waiter.state == _GRANTED:
                        return deferred
                    waiter.fresh_future()
            except BaseException:
                # GreenletExit (the loop is closing) or KeyboardInterrupt: give up the place,
                # or keep the lock if it was handed over (the caller's ``with`` releases it).
                with self._guard:
                    self._waiters.abandon(waiter)
                raise

    def _release_save(self) -> None:
        self.release()

    def _acquire_restore(self, state: object) -> None:
        deferred = self._acquire_shielded("Condition.wait()")
        if deferred is not None:
            raise deferred

    def _at_fork_reinit(self) -> None:
        _Guarded.__init__(self)
        self._held = _allocate_real_lock()


# -- RLock ----------------------------------------------------------------------------------


class RLock:
    """A reentrant lock, owned per green thread, asyncio task or OS thread.

    Like ``threading.RLock``: the owner may acquire it again; it must release it as many
    times; nobody else may release it.
    """

    __slots__ = ("__weakref__", "_block", "_count", "_owner", "_owner_thread")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if (args or kwargs) and _PY313:
            # As threading.RLock() does since 3.13 (the arguments were always ignored).
            warnings.warn(
                "Passing arguments to RLock is deprecated and will be removed in 3.15",
                DeprecationWarning,
                stacklevel=2,
            )
        self._block = Lock()
        self._owner: object = None
        self._owner_thread = 0  # the owner's OS thread (see _mine())
        self._count = 0

    def __repr__(self) -> str:
        cls = type(self)
        state = "locked" if self._block._held.locked() else "unlocked"
        owner = _describe_owner(self._owner)
        return (
            f"<{state} {cls.__module__}.{cls.__qualname__} object owner={owner!r} "
            f"count={self._count} at {id(self):#x}>"
        )

    def _mine(self) -> bool:
        """Whether the caller owns the lock."""
        owner = self._owner
        if owner is None:
            return False
        if owner is _owner_id():
            return True
        # close() unwinds a task blocked in a blocking-style call while no loop is running,
        # so _owner_id() cannot name the task; it is still the one entered on its loop.
        return (
            isinstance(owner, asyncio.Task)
            and self._owner_thread == _os_thread_ident()
            and events._get_running_loop() is None
            and asyncio.current_task(owner.get_loop()) is owner
        )

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the lock, or take it once more if the caller already owns it.

        ``blocking`` and ``timeout`` as for ``Lock.acquire()``; returns True if acquired.
        """
        # The C RLock validates its arguments before looking at the owner.
        if timeout == -1 and (blocking is True or blocking is False):
            seconds = None if blocking else 0.0
        else:
            seconds = _lock_wait(blocking, timeout)
        me = _owner_id()
        if self._owner is me:
            self._count += 1
            return True
        block = self._block
        if not (
            block._held.acquire(False) or (seconds != 0 and block._acquire_slow(seconds, "RLock.acquire()"))
        ):
            return False
        self._owner = me
        self._owner_thread = _os_thread_ident()
        self._count = 1
        return True

    def release(self) -> None:
        """Release once; the lock is free again when every acquisition has been released."""
        if not self._mine():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *args: object) -> None:
        self.release()

    # The interface Condition uses (the stdlib's RLock has the same private methods).

    def _release_save(self) -> tuple[int, object]:
        if self._count == 0:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._block.release()
        return state

    def _acquire_restore(self, state: tuple[int, object]) -> None:
        deferred = self._restore_shielded(state)
        if deferred is not None:
            raise deferred

    def _restore_shielded(self, state: tuple[int, object]) -> asyncio.CancelledError | None:
        count, owner = state
        deferred = self._block._acquire_shielded("Condition.wait()")
        self._owner = owner
        self._owner_thread = _os_thread_ident()
        self._count = count
        return deferred

    def _is_owned(self) -> bool:
        return self._mine()

    def _recursion_count(self) -> int:
        return self._count if self._mine() else 0

    def _at_fork_reinit(self) -> None:
        self._block._at_fork_reinit()
        self._owner = None
        self._count = 0


# -- Condition ------------------------------------------------------------------------------


class Condition:
    """A condition variable; ``notify()`` wakes waiters in the order they started waiting.

    Works with any lock that has ``acquire``/``release``, as ``threading.Condition`` does;
    with greenloop's Lock and RLock (the default), a cancelled ``wait()`` still returns with
    the lock held, and a notification given to a waiter that is cancelled before it could act
    on it passes to the next waiter.
    """

    def __init__(self, lock: Any = None) -> None:
        if lock is None:
            lock = RLock()
        self._lock = lock
        self.acquire: Callable[..., bool] = lock.acquire
        self.release: Callable[[], None] = lock.release
        self._waiters = _WaitQueue()

    def __repr__(self) -> str:
        return f"<Condition({self._lock}, {len(self._waiters)})>"

    def __enter__(self) -> bool:
        return bool(self._lock.__enter__())

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.__exit__(exc_type, exc, tb)

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()
        self._waiters = _WaitQueue()

    # The lock protocol, with the stdlib's fallbacks for locks that lack the private methods.

    def _release_save(self) -> Any:
        save = getattr(self._lock, "_release_save", None)
        if save is not None:
            return save()
        self._lock.release()
        return None

    def _acquire_restore(self, state: Any) -> None:
        deferred = self._restore(state)
        if deferred is not None:
            raise deferred

    def _restore(self, state: Any) -> asyncio.CancelledError | None:
        lock = self._lock
        if isinstance(lock, RLock):
            return lock._restore_shielded(state)
        if isinstance(lock, Lock):
            return lock._acquire_shielded("Condition.wait()")
        restore = getattr(lock, "_acquire_restore", None)
        if restore is not None:
            restore(state)
        else:
            lock.acquire()
        return None

    def _is_owned(self) -> bool:
        is_owned = getattr(self._lock, "_is_owned", None)
        if is_owned is not None:
            return bool(is_owned())
        # A lock without owners: held by someone if it cannot be taken now.
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait until notified or ``timeout`` seconds pass, take the lock back.

        Returns True if notified, False on timeout. Raises RuntimeError if the caller does not
        hold the lock.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = _Waiter("Condition.wait()")
        self._waiters.append(waiter)
        saved = self._release_save()
        try:
            if timeout is None:
                waiter.block(None, "Condition.wait()")
            elif timeout > 0:
                waiter.block(_wait_seconds(timeout), "Condition.wait()")
            # else: a poll; only a notification that already happened counts (checked below)
        except BaseException:
            self._restore(saved)  # a second cancellation folds into the one propagating
            self._leave(waiter)
            raise
        deferred = self._restore(saved)
        if deferred is not None:
            self._leave(waiter)
            raise deferred
        if waiter.state == _GRANTED:
            return True
        self._waiters.abandon(waiter)
        return False

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter leaves by an exception (lock held): never let it swallow a notification."""
        if waiter.state == _GRANTED:
            self._notify(1)
        else:
            self._waiters.abandon(waiter)

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true or ``timeout`` seconds pass; return its last value."""
        deadline = None
        remaining = timeout
        result = predicate()
        while not result:
            if remaining is not None:
                if deadline is None:
                    deadline = _monotonic() + remaining
                else:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters, longest-waiting first. The caller must hold the lock."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._notify(n)

    def _notify(self, n: int) -> None:
        waiters = self._waiters
        while n > 0:
            waiter = waiters.popleft()
            if waiter is None:
                return
            _wake(waiter)
            n -= 1

    def notify_all(self) -> None:
        """Wake up every waiter. The caller must hold the lock."""
        self.notify(len(self._waiters))

    def notifyAll(self) -> None:
        """Deprecated alias of notify_all()."""
        warnings.warn("notifyAll() is deprecated, use notify_all() instead", DeprecationWarning, stacklevel=2)
        self.notify_all()


# -- Semaphore ------------------------------------------------------------------------------


class Semaphore(_Guarded):
    """A counting semaphore; ``release()`` hands units to waiters in arrival order."""

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        super().__init__()
        # Invariant: _value > 0 only while nobody waits (units go to waiters first).
        self._value = value

    def __repr__(self) -> str:
        cls = type(self)
        return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: value={self._value}>"

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a unit, waiting for one unless ``blocking`` is false, at most ``timeout`` seconds.

        Returns True if a unit was taken, False if not.
        """
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        guard = self._guard
        guard.acquire()  # (cheaper than ``with`` on this hot path; nothing here can raise)
        if self._value > 0:
            self._value -= 1
            guard.release()
            return True
        guard.release()
        if not blocking or (timeout is not None and not timeout > 0):
            return False
        seconds = None if timeout is None else _wait_seconds(timeout)
        waiter = _Waiter("Semaphore.acquire()")
        with self._guard:
            if self._value > 0:
                self._value -= 1
                return True
            self._waiters.append(waiter)
        return self._await(waiter, seconds, "Semaphore.acquire()")

    def __enter__(self) -> bool:
        return self.acquire()

    def release(self, n: int = 1) -> None:
        """Return ``n`` units: waiters get them first, the rest raises the count."""
        if n < 1:
            raise ValueError("n must be one or more")
        with self._guard:
            self._release(n)

    def _release(self, n: int) -> None:
        waiters = self._waiters
        if waiters._q:
            while n:
                waiter = waiters.popleft()
                if waiter is None:
                    break
                _wake(waiter)
                n -= 1
        self._value += n

    def _give_back(self) -> None:
        self._release(1)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """A semaphore whose count may not rise above its initial value."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial_value = value

    def __repr__(self) -> str:
        cls = type(self)
        return (
            f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}:"
            f" value={self._value}/{self._initial_value}>"
        )

    def release(self, n: int = 1) -> None:
        """Return ``n`` units; ValueError if that would exceed the initial value."""
        if n < 1:
            raise ValueError("n must be one or more")
        with self._guard:
            # Units handed to waiters are acquired units, so _value alone is what is free.
            if self._value + n > self._initial_value:
                raise ValueError("Semaphore released too many times")
            self._release(n)


# -- Event ----------------------------------------------------------------------------------


class Event(_Guarded):
    """A flag that green threads, tasks and OS threads can wait for."""

    def __init__(self) -> None:
        super().__init__()
        self._flag = False

    def __repr__(self) -> str:
        cls = type(self)
        status = "set" if self._flag else "unset"
        return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: {status}>"

    def _at_fork_reinit(self) -> None:
        _Guarded.__init__(self)

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._flag

    def isSet(self) -> bool:
        """Deprecated alias of is_set()."""
        warnings.warn("isSet() is deprecated, use is_set() instead", DeprecationWarning, stacklevel=2)
        return self.is_set()

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        with self._guard:
            self._flag = True
            waiters = self._waiters
            while (waiter := waiters.popleft()) is not None:
                _wake(waiter)

    def clear(self) -> None:
        """Reset the flag."""
        with self._guard:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or ``timeout`` seconds pass; True if it was set."""
        if self._flag:
            return True
        if timeout is not None and not timeout > 0:
            return False
        seconds = None if timeout is None else _wait_seconds(timeout)
        waiter = _Waiter("Event.wait()")
        with self._guard:
            if self._flag:
                return True
            self._waiters.append(waiter)
        return self._await(waiter, seconds, "Event.wait()")


# -- Barrier --------------------------------------------------------------------------------

# Barrier states. A round *fills* as parties arrive, *drains* as the released parties leave;
# newcomers wait while it drains or resets, so that rounds never mix.
_FILLING: Final = 0
_DRAINING: Final = 1
_RESETTING: Final = -1
_BROKEN: Final = -2


class Barrier:
    """A barrier for a fixed number of parties, as ``threading.Barrier``."""

    def __init__(
        self, parties: int, action: Callable[[], object] | None = None, timeout: float | None = None
    ) -> None:
        if _PY313 and parties < 1:
            raise ValueError("parties must be > 0")
        self._cond = Condition(Lock())
        self._action = action
        self._timeout = timeout
        self._parties = parties
        self._state = _FILLING
        self._count = 0  # parties inside wait() in this round

    def __repr__(self) -> str:
        cls = type(self)
        if self.broken:
            return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: broken>"
        where = f"{cls.__module__}.{cls.__qualname__} at {id(self):#x}"
        return f"<{where}: waiters={self.n_waiting}/{self.parties}>"

    def wait(self, timeout: float | None = None) -> int:
        """Wait until all parties have called wait(); return this party's arrival index.

        Raises BrokenBarrierError if the barrier is (or becomes) broken or reset, or if
        ``timeout`` (default: the barrier's) passes first, which breaks it.
        """
        if timeout is None:
            timeout = self._timeout
        cond = self._cond
        with cond:
            while self._state in (_DRAINING, _RESETTING):
                cond.wait()
            if self._state == _BROKEN:
                raise BrokenBarrierError
            index = self._count
            self._count += 1
            try:
                if index + 1 == self._parties:
                    self._trip()
                else:
                    self._wait_for_trip(timeout)
                return index
            finally:
                self._count -= 1
                # The last party out of a drained or reset round opens the next one.
                if self._count == 0 and self._state in (_DRAINING, _RESETTING):
                    self._state = _FILLING
                    cond.notify_all()

    def _trip(self) -> None:
        try:
            if self._action:
                self._action()
        except BaseException:
            self._break()
            raise
        self._state = _DRAINING
        self._cond.notify_all()

    def _wait_for_trip(self, timeout: float | None) -> None:
        if not self._cond.wait_for(lambda: self._state != _FILLING, timeout):
            self._break()
            raise BrokenBarrierError
        if self._state < 0:  # broken or reset while we waited
            raise BrokenBarrierError

    def reset(self) -> None:
        """Return the barrier to its initial state; parties waiting get BrokenBarrierError."""
        with self._cond:
            if self._count > 0:
                if self._state in (_FILLING, _BROKEN):
                    self._state = _RESETTING
            else:
                self._state = _FILLING
            self._cond.notify_all()

    def abort(self) -> None:
        """Break the barrier: current and future wait() calls raise BrokenBarrierError."""
        with self._cond:
            self._break()

    def _break(self) -> None:
        self._state = _BROKEN
        self._cond.notify_all()

    @property
    def parties(self) -> int:
        """The number of parties needed to trip the barrier."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """The number of parties currently waiting."""
        return self._count if self._state == _FILLING else 0

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return self._state == _BROKEN


# As the originals present themselves (reprs such as ``<unlocked _thread.lock object ...>`` and
# ``<threading.Event at ...: unset>``, ``threading.__all__`` checks).
_allocate_lock = Lock
_CRLock = RLock

_cls: type
for _cls in (Lock, RLock):
    _cls.__module__ = "_thread"
for _cls in (Barrier, BoundedSemaphore, Condition, Event, Semaphore):
    _cls.__module__ = "threading"
del _cls
