"""Green threads and the blocking-style calls: spawn, sleep, await_, wait_readable/writable.

Every blocking-style call here resolves to one thing: wait until an asyncio future is done
(:func:`wait`). Where it is called decides how:

* on a green thread, or in an asyncio task on a running greenloop loop: park this greenlet
  (``_hub.park``); the rest of the loop keeps running;
* on the main thread's main greenlet with no loop running (a plain script): drive the loop
  until the future is done, as ``run_until_complete`` does;
* on any other OS thread: behave like the blocking original (that thread blocks, nothing else).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import select
import threading
import time as _time
from asyncio import events
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet

from . import _hub
from ._loop import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN, WAKE_CONTEXT, Loop, _running_loops

_T = TypeVar("_T")

__all__ = [
    "GreenThread",
    "await_",
    "current_green_thread",
    "sleep",
    "spawn",
    "wait",
    "wait_readable",
    "wait_writable",
]

_ORIGINAL_SLEEP = _time.sleep
_get_ident = threading.get_ident
_current_task_of = _hub._current_tasks.get
_enter_task, _leave_task = _hub._enter_task, _hub._leave_task
_Future = asyncio.Future
_main_thread_loop: Loop | None = None
_names = itertools.count(1)
# Finished green-thread greenlets kept for reuse: creating a greenlet maps a fresh stack chunk
# (~8 µs measured here) while reusing one costs a switch (~0.6 µs).
_POOL_MAX = 1024


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """asyncio's running loop of this OS thread, found without asyncio's getpid() call
    when it is a greenloop loop (see ``_loop._running_loops``)."""
    return _running_loops.get(_get_ident()) or events._get_running_loop()


def _resolve_loop(what: str) -> Loop | None:
    """The loop a blocking-style call on this thread waits on; None means "block for real"."""
    green = _running_loops.get(_get_ident())
    if green is not None:
        return green  # the common case, on every wait: no further call
    loop = events._get_running_loop()
    if loop is not None:
        if not isinstance(loop, Loop):
            raise RuntimeError(
                f"{what} needs a greenloop event loop, but the running loop is a "
                f"{type(loop).__module__}.{type(loop).__qualname__}; run the program with "
                "greenloop.run(main()) or asyncio.run(main(), loop_factory=greenloop.new_event_loop)"
            )
        return loop
    if threading.current_thread() is not threading.main_thread():
        return None
    return main_thread_loop()


def main_thread_loop() -> Loop:
    """The loop that plain (non-async) code on the main thread drives when it blocks."""
    global _main_thread_loop
    loop = _main_thread_loop
    if loop is None or loop.is_closed():
        loop = _main_thread_loop = Loop()
    return loop


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (timeout >= 0):  # also rejects NaN
        raise ValueError(f"timeout must be a non-negative number or None, not {timeout!r}")


def wait(fut: asyncio.Future[_T] | _hub.Waiter, timeout: float | None = None, what: str = "wait()") -> _T:
    """Block (cooperatively) until ``fut`` is done and return its result.

    Raises TimeoutError after ``timeout`` seconds (the future is left as it is).
    """
    if timeout is not None:
        _check_timeout(timeout)
    loop = fut.get_loop()
    if not isinstance(loop, Loop):
        raise TypeError(f"{what}: the future belongs to {loop!r}, not to a greenloop loop")
    if loop._hub is None:
        if getcurrent().parent is not None and threading.current_thread() is threading.main_thread():
            # A green thread or hub of a stopped loop: nothing would ever switch back to it.
            raise _hub.BlockingCallError(f"{what} was called on a greenlet whose loop is not running")
        return _drive(loop, fut, timeout)
    return _hub.park(loop, fut, timeout, what)  # type: ignore[no-any-return]


def _drive(loop: Loop, fut: asyncio.Future[_T] | _hub.Waiter, timeout: float | None) -> _T:
    """Run ``loop`` on this (main) greenlet until ``fut`` is done or ``timeout`` passes."""
    if timeout is None and isinstance(fut, asyncio.Future):
        return loop.run_until_complete(fut)
    stop = loop.create_future()

    def wake(_: object) -> None:
        if not stop.done():
            stop.set_result(None)

    fut.add_done_callback(wake)
    timer = loop.call_later(timeout, wake, None) if timeout is not None else None
    try:
        loop.run_until_complete(stop)
    finally:
        if timer is not None:
            timer.cancel()
        fut.remove_done_callback(wake)
    if not fut.done():
        raise TimeoutError
    return fut.result()  # type: ignore[no-any-return]


# -- blocking-style primitives -------------------------------------------------------------


def sleep(seconds: float) -> None:
    """Sleep cooperatively: only the calling green thread or task waits."""
    if not (seconds >= 0):
        raise ValueError("sleep length must be non-negative")
    loop = _running_loops.get(_get_ident()) or _resolve_loop("greenloop.sleep()")
    if loop is None:
        _ORIGINAL_SLEEP(seconds)
        return
    if seconds == 0 and loop._hub is not None:
        _hub.yield_now(loop, "greenloop.sleep()")  # no timer, no waiter: straight to the ready queue
        return
    waiter = _hub.Waiter(loop)
    timer = loop.call_later(seconds, waiter.wake)
    try:
        wait(waiter, None, "greenloop.sleep()")
    finally:
        timer.cancel()


def _set_result_unless_done(fut: asyncio.Future[Any], value: Any = None) -> None:
    if not fut.done():
        fut.set_result(value)


def _wait_fd(fd: Any, timeout: float | None, write: bool) -> None:
    what = "greenloop.wait_writable()" if write else "greenloop.wait_readable()"
    _check_timeout(timeout)
    if not isinstance(fd, int):
        fd = fd.fileno()
    loop = _resolve_loop(what)
    if loop is None:
        r, w, _ = select.select([] if write else [fd], [fd] if write else [], [], timeout)
        if not (r or w):
            raise TimeoutError
        return
    key = loop._selector._fd_to_key.get(fd)  # type: ignore[attr-defined]  # get_map() raises inside
    if key is not None:
        reader, writer = key.data
        other = writer if write else reader
        if other is not None and not other.cancelled():
            raise RuntimeError(
                f"{what}: fd {fd} is already being waited on for "
                f"{'writing' if write else 'reading'} by another green thread, task or reader "
                "callback; only one waiter per fd and direction is supported"
            )
    waiter = _hub.Waiter(loop)
    if write:
        loop.add_writer(fd, waiter.wake)
    else:
        loop.add_reader(fd, waiter.wake)
    try:
        wait(waiter, timeout, what)
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def wait_readable(fd: Any, timeout: float | None = None) -> None:
    """Wait until ``fd`` (an int or an object with ``fileno()``) is readable.

    Raises TimeoutError if ``timeout`` seconds pass first.
    """
    _wait_fd(fd, timeout, write=False)


def wait_writable(fd: Any, timeout: float | None = None) -> None:
    """Wait until ``fd`` is writable. Raises TimeoutError if ``timeout`` seconds pass first."""
    _wait_fd(fd, timeout, write=True)


def await_(awaitable: Awaitable[_T], timeout: float | None = None) -> _T:
    """From sync code on a green thread or inside a task: wait for an awaitable's result.

    A coroutine is run as a task on the loop; cancelling the waiting green thread or task
    cancels that task, as ``await`` would.
    """
    green = _running_loops.get(_get_ident())  # _running_loop(), inlined for the common case
    # (``_loop`` rather than get_loop(): an attribute, not a call; the type is checked first)
    if green is not None and timeout is None and type(awaitable) is _Future and awaitable._loop is green:  # type: ignore[attr-defined]
        # The common case, a future of the running loop: nothing to wrap, and no timeout that
        # would have to cancel it (a cancelled green thread or task cancels it, as await does).
        hub = green._hub
        if hub is not None:
            task: Any = _current_task_of(green)
            if task is None:
                return _hub.park(green, awaitable, None, "greenloop.await_()")  # type: ignore[no-any-return]
            # _hub.park()'s path for a task step, inlined: the call alone cost 4 % of a round
            # trip on 3.12 (valgrind), and this is what `await fut` is compared with. The
            # helpers are module globals, not _hub attributes: one lookup each, not two.
            me = getcurrent()
            try:
                wake = me.resume  # the hub's (or ex-hub's) own bound switch, made once
            except AttributeError:
                wake = me.switch  # a greenlet of the user's own, inside the task step
            task._gl_waiter = awaitable
            awaitable.add_done_callback(wake, context=WAKE_CONTEXT)
            got = None
            _leave_task(green, task)
            try:
                if me is not hub:
                    got = hub.switch()
                elif pool := green._hub_pool:  # _hub._hand_over(), inlined
                    hub = pool.pop()
                    green._hub = hub
                    got = hub.switch()
                else:
                    got = _hub._hand_over(green)
            finally:
                _enter_task(green, task)
                task._gl_waiter = None
                if got is None:  # not woken by the future: an exception was thrown in
                    _hub._disarm(green, awaitable, wake)
            return awaitable.result()  # type: ignore[no-any-return]
        return wait(awaitable, None, "greenloop.await_()")  # type: ignore[no-any-return]
    loop = green if green is not None else events._get_running_loop()
    if loop is None and threading.current_thread() is threading.main_thread():
        loop = main_thread_loop()
    if loop is None:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # it can never run here; don't also warn "never awaited"
        raise RuntimeError(
            "greenloop.await_() was called outside any green context (no greenloop loop runs "
            "on this OS thread); call it from a green thread, an asyncio task on a greenloop "
            "loop, or the main thread, or use asyncio.run_coroutine_threadsafe() from other threads"
        )
    if not isinstance(loop, Loop):
        _resolve_loop("greenloop.await_()")  # raises the explanatory error
    assert isinstance(loop, Loop)
    fut = asyncio.ensure_future(awaitable, loop=loop)
    try:
        return wait(fut, timeout, "greenloop.await_()")
    except BaseException:
        if not fut.done():
            fut.cancel()
        raise


# -- green threads --------------------------------------------------------------------------


class GreenThread(asyncio.Future, Generic[_T]):  # type: ignore[type-arg]
    """A function running on its own green thread; also an asyncio future of its result.

    ``join()`` from blocking-style code, ``await gt`` from async code, and every asyncio
    helper that accepts futures (``gather``, ``wait``, ``wait_for``) work on it.
    """

    # Slots, so no dict is made for our own attributes (others still go to the dict the C
    # Future makes on demand): a blocked green thread keeps as few objects alive as it can,
    # for memory and because each one is walked by every full garbage collection.
    __slots__ = (
        "_args",
        "_context",
        "_fn",
        "_fn_name",
        "_gl_cancel_msg",
        "_gl_had_waiters",
        "_gl_must_cancel",
        "_gl_waiter",
        "_glet",
        "_kwargs",
        "_priority",
        "name",
    )

    _gl_waiter: asyncio.Future[Any] | Any | None
    _gl_must_cancel: bool
    _gl_cancel_msg: Any
    _gl_had_waiters: bool

    def __init__(
        self,
        fn: Callable[..., _T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        loop: Loop,
        name: str | None = None,
        context: contextvars.Context | None = None,
        priority: int = PRIORITY_DEFAULT,
    ) -> None:
        super().__init__(loop=loop)
        self.name = name if name is not None else f"GreenThread-{next(_names)}"
        self._fn = fn
        self._fn_name = getattr(fn, "__qualname__", None) or repr(fn)
        self._args = args
        self._kwargs = kwargs
        self._context = context if context is not None else contextvars.copy_context()
        self._glet: greenlet | None = None
        self.priority = priority
        self._gl_waiter = None
        self._gl_must_cancel = False
        self._gl_cancel_msg = None
        self._gl_had_waiters = False

    @property
    def priority(self) -> int:
        """Scheduling priority, PRIORITY_MIN..PRIORITY_MAX; takes effect at the next wake-up."""
        return self._priority

    @priority.setter
    def priority(self, value: int) -> None:
        self._priority = _check_priority(value)

    def __repr__(self) -> str:
        state = "finished" if self.done() else ("running" if self._glet is not None else "pending")
        return f"<GreenThread {self.name!r} {state} fn={self._fn_name!r}>"

    def get_name(self) -> str:
        return self.name

    # A GreenThread is its own entry in the loop's ready queue until it starts: it speaks the
    # part of asyncio's Handle protocol the run loop uses (_cancelled, _run; _callback for the
    # debug-mode report), so a spawn makes no Handle, copies no context and binds no method.
    # Three objects fewer per spawn: every connection of a server starts a thread, and with
    # thousands of them the objects that survive a young collection bring on full ones.
    _cancelled = False
    _callback = None

    def _run(self) -> None:
        """Start: called by the run loop, on the hub. Never raises into it (as a Handle)."""
        if self.done():  # cancelled before it started
            return
        try:
            self._start()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # report it as a Handle would; the loop goes on
            self._glet = None
            self._loop._green_live.discard(self)  # type: ignore[attr-defined]
            if not self.done():  # and a joiner gets the error rather than waiting forever
                self.set_exception(exc)
                self._log_traceback = False  # reported here, not again when collected
            self._loop.call_exception_handler(  # type: ignore[attr-defined]
                {"message": f"Exception while starting {self!r}", "exception": exc, "green_thread": self}
            )

    def _start(self) -> None:
        loop: Loop = self.get_loop()  # type: ignore[assignment]
        pool = loop._green_pool
        if pool:
            glet = pool.pop()
        else:
            glet = _ThreadGreenlet(_green_main, parent=loop._hub)
            glet.resume = glet.switch  # a cycle, broken when the greenlet leaves the pool
            glet.level_wake = None  # made at its first wait at a priority (see _hub.park)
        self._glet = glet
        # The thread's contextvars context is its greenlet's own (greenlet switches it with
        # the stack), so fn runs in it without Context.run: one C-level call fewer on every
        # green thread's stack, which every switch into the thread copies back.
        glet.gr_context = self._context
        # Handed over as an attribute, not as a switch() argument: greenlet keeps the
        # arguments of a greenlet's first switch for as long as its run function runs, and
        # a pooled green-thread greenlet's never returns (it would keep its first thread).
        glet.gt = self
        loop._green_live.add(self)
        glet.switch()

    def _run_fn(self) -> BaseException | None:
        """Run the function on the current greenlet; returns an exception to re-raise."""
        try:
            kwargs = self._kwargs
            fn, args = self._fn, self._args
            # A call with *args (CALL_FUNCTION_EX) re-enters the interpreter from C on 3.11
            # and 3.12, so every green thread would keep one more C eval frame on its stack,
            # saved and restored at each switch; a plain call of a Python function does not.
            if kwargs:
                result = fn(*args, **kwargs)
            elif not args:
                result = fn()
            elif len(args) == 1:
                # The one-argument tuple (a server's connection thread) is dropped before the
                # call: the thread would otherwise keep it, one more object, for its lifetime.
                arg = args[0]
                self._args = args = ()
                result = fn(arg)
            else:
                result = fn(*args)
        except asyncio.CancelledError as exc:
            super().cancel(exc.args[0] if exc.args else None)
        except GreenletExit:
            super().cancel("the event loop was closed while this green thread was waiting")
        except (SystemExit, KeyboardInterrupt) as exc:
            self.set_exception(exc)
            self._log_traceback = False  # re-raised through the hub: it is not lost
            return exc
        except BaseException as exc:
            self.set_exception(exc)
            if not self._callbacks_pending():
                self.get_loop().call_exception_handler(
                    {
                        "message": f"Unhandled exception in green thread {self.name!r}",
                        "exception": exc,
                        "green_thread": self,
                    }
                )
                self._log_traceback = False
        else:
            self.set_result(result)
        finally:
            self._glet = None
            self._loop._green_live.discard(self)  # type: ignore[attr-defined]
            # A finished thread must not keep its function's arguments (a socket...) alive.
            self._fn = _finished  # type: ignore[assignment]
            self._args = ()
            self._kwargs = {}
        return None

    def _callbacks_pending(self) -> bool:
        # set_exception() has already scheduled the done-callbacks; a joiner or awaiter is
        # one of them. There is no public way to ask, so look at what was scheduled.
        return self._gl_had_waiters

    def add_done_callback(self, fn: Callable[[Any], object], *, context: Any = None) -> None:
        self._gl_had_waiters = True
        super().add_done_callback(fn, context=context)

    def cancel(self, msg: Any | None = None) -> bool:
        """Raise CancelledError inside the function at its current (or next) blocking point."""
        if self.done():
            return False
        if self._glet is None:
            return super().cancel(msg)
        waiter = self._gl_waiter
        if waiter is not None and waiter.cancel(msg):
            return True
        self._gl_must_cancel = True
        self._gl_cancel_msg = msg
        return True

    def join(self, timeout: float | None = None) -> _T:
        """Wait for the function to finish; return its result or raise its exception.

        Raises TimeoutError if ``timeout`` seconds pass first.
        """
        _check_timeout(timeout)
        if self.done():
            return self.result()  # type: ignore[no-any-return]
        if self._glet is not None and self._glet is getcurrent():
            raise RuntimeError(f"{self!r} cannot join itself: it would wait forever")
        loop: Loop = self.get_loop()  # type: ignore[assignment]
        if loop._thread_id is not None and loop._thread_id != threading.get_ident():
            return self._join_from_os_thread(loop, timeout)
        return wait(self, timeout, "GreenThread.join()")  # type: ignore[no-any-return]

    def _join_from_os_thread(self, loop: Loop, timeout: float | None) -> _T:
        done = threading.Event()
        loop.call_soon_threadsafe(self.add_done_callback, lambda _: done.set())
        if not done.wait(timeout):
            raise TimeoutError
        return self.result()  # type: ignore[no-any-return]


class _ThreadGreenlet(greenlet):  # type: ignore[misc]
    """The greenlet of green threads: ``gt`` is the thread it runs (None while pooled), and
    ``resume`` its own bound ``switch``, made once (see ``_hub.park``); ``level_wake`` its
    wake-up for waits at a priority other than the default, made once too.

    Slots rather than attributes in the greenlet's __dict__: one object fewer per thread.
    """

    __slots__ = ("gt", "level_wake", "resume")

    gt: GreenThread[Any] | None
    resume: Callable[..., Any]
    level_wake: Any  # a _hub._LevelWake, or None


def _finished() -> None:
    """Stands in for the function of a finished green thread."""


def _green_main() -> None:
    """Body of every green-thread greenlet: run jobs, then wait in the pool for another.

    ``GreenThread._start`` puts the job in the greenlet's ``gt`` attribute, which is also how
    ``park()`` and ``current_green_thread()`` tell which green thread is running.
    """
    me = getcurrent()
    try:
        while True:
            gt: GreenThread[Any] = me.gt
            loop: Loop = gt.get_loop()  # type: ignore[assignment]
            reraise = gt._run_fn()
            me.gt = None
            me.gr_context = None  # a pooled greenlet must not keep the thread's context alive
            del gt
            hub = loop._hub
            if reraise is not None:
                me.parent = hub  # the exception surfaces in the hub, then out of run_forever
                raise reraise
            if hub is None or loop.is_closed() or len(loop._green_pool) >= _POOL_MAX:
                if hub is not None:
                    me.parent = hub
                return
            loop._green_pool.append(me)
            hub.switch()  # resumed by the next GreenThread._start that takes us from the pool
    finally:
        del me.resume  # greenlet -> its bound switch -> greenlet: no cycle left for the GC
        me.level_wake = None  # (the same cycle, through the wake-up's glet)


def _check_priority(priority: Any) -> int:
    if type(priority) is not int or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(
            f"priority must be an int from {PRIORITY_MIN} to {PRIORITY_MAX} "
            f"(default {PRIORITY_DEFAULT}), not {priority!r}"
        )
    return priority


def spawn(
    fn: Callable[..., _T], *args: Any, priority: int = PRIORITY_DEFAULT, **kwargs: Any
) -> GreenThread[_T]:
    """Start ``fn(*args, **kwargs)`` on a new green thread and return its GreenThread.

    The green thread starts at the loop's next iteration, in a copy of the caller's
    contextvars context. ``priority`` (keyword, reserved) orders it against other work:
    levels above PRIORITY_DEFAULT run before asyncio's callbacks in each loop iteration,
    levels below after them; every level runs in every iteration (none starves).
    """
    loop = _running_loop()
    if loop is None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "greenloop.spawn() needs a greenloop loop on this OS thread: call it from "
                "the main thread, a green thread, or a task on a greenloop loop"
            )
        loop = main_thread_loop()
    if not isinstance(loop, Loop):
        _resolve_loop("greenloop.spawn()")
    assert isinstance(loop, Loop)
    loop._check_closed()
    if not callable(fn):
        raise TypeError(f"greenloop.spawn() needs a callable, not {type(fn).__name__}")
    gt: GreenThread[_T] = GreenThread(fn, args, kwargs, loop=loop, priority=priority)  # checks it
    loop._enqueue(gt._priority, gt)
    return gt


def current_green_thread() -> GreenThread[Any] | None:
    """The GreenThread running this code, or None (a task, a callback, the main greenlet)."""
    return getattr(getcurrent(), "gt", None)
