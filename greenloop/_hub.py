"""Hubs and parking: the only module that switches greenlets.

Theory of operation
-------------------
``Loop.run_forever()`` runs the loop's iterations on a *hub* greenlet. Task steps and
callbacks run on the hub as in asyncio, with no switch at all. Greenlets leave the hub only
here:

* ``park(loop, fut)`` suspends the calling greenlet until ``fut`` is done. A green thread
  switches to the hub. A task step running *on* the hub cannot switch to itself, so it hands
  the loop to another hub (from a pool) and keeps its own stack; it is now an ex-hub whose
  only job is to finish that step. When ``fut`` completes, its done-callback, running on the
  current hub, switches into the parked greenlet (usually that callback *is* the greenlet's
  bound ``switch``: no Python runs to wake it).
* An ex-hub that finishes its step notices, in ``Loop._run_iterations``, that it is no longer
  the hub. The hub that woke it is suspended in the waking callback, so rather than switch
  back, the ex-hub takes the loop over (``take_over``) and that hub goes to the pool; it
  finishes its batch of callbacks when it is next handed the loop.
* The hub that observes ``stop()`` returns, which resumes ``run_forever()``'s caller (every
  hub's parent is that caller, so parent chains never form a cycle).

asyncio's "current task" is left before switching away and re-entered after, otherwise the
next task step on the new hub fails with "Cannot enter into task ... while another task ...
is being executed".

Nothing here runs inside a signal handler: asyncio's signal support only writes to the
self-pipe, and handlers run later as ordinary callbacks (greenlet forbids switching in a
signal handler).
"""

from __future__ import annotations

import asyncio
import functools
import operator
import sys
import threading
from asyncio import tasks as _tasks
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from greenlet import GreenletExit, getcurrent, greenlet

from . import _loop

if TYPE_CHECKING:
    from ._loop import Loop

__all__ = ["BlockingCallError", "Waiter", "park", "run_hub", "take_over", "unwind_parked", "yield_now"]

_enter_task = _tasks._enter_task
_leave_task = _tasks._leave_task
# loop -> its running task: the dict behind asyncio.current_task() on 3.11-3.13 (C-owned),
# read directly because park() needs it on every wait.
_current_tasks: dict[Any, asyncio.Task[Any]] = _tasks._current_tasks  # type: ignore[attr-defined]


class BlockingCallError(RuntimeError):
    """A blocking-style call was made where it would stall or reorder the event loop."""


def run_hub(loop: Loop) -> None:
    """Body of run_forever(): run iterations on a hub until stop().

    New hubs are created here, on the runner greenlet, and never deep inside a blocked task
    step: a greenlet starts with the Python recursion depth of the greenlet that first
    switches into it, so hubs created by hubs would inherit ever deeper stacks.
    """
    loop._runner = getcurrent()
    # A run starts with an empty pool (kill_pooled() emptied it when the last run ended), and
    # the runner is switched back to only to make a hub that the pool could not provide.
    made = 0
    while True:
        hub = _HubGreenlet(functools.partial(_hub_main, loop), parent=loop._runner)
        hub.resume = hub.switch  # a cycle, broken when _hub_main() ends
        loop._hub = hub
        # Hubs start at different depths of the C stack (see _deeper): the first at the
        # runner's own, each of the next few a band deeper where there is room.
        if 0 < made < _BANDS and _room_for_bands():
            got = _deeper(_BAND_CALLS * made, hub.switch)
        else:
            got = hub.switch()
        made += 1
        if got is not _NEW_HUB:
            return  # the hub that observed stop() returned


# A greenlet's stack starts where it is first switched to, and a switch copies to the heap
# whatever part of the C stack the target greenlet could overwrite: from the current stack
# pointer up to where the target's stack starts. Two hubs started at the same depth overlap
# entirely, so each switch between a hub and an ex-hub (a task step blocked in the middle)
# copies the deeper one's whole stack out and back in. Started a band apart, the switch
# from the shallower to the deeper copies nothing, and only the hub's few frames move on the
# way back. Measured at 16 calls: the paired wait-and-wake round trip in a task 5-8 % faster
# (demos.bench.green --worker wake-paired), and ~1k fewer instructions (valgrind).
_BAND_CALLS = 16  # C-level calls per band; each is one Python frame of recursion depth
_BANDS = 4  # hubs beyond the fourth all start at the runner's depth


def _deeper(calls: int, fn: Callable[[], Any]) -> Any:
    """``fn()``, called ``calls`` C-level calls deeper on the C stack than we are."""
    if calls:
        return _c_call(_deeper, calls - 1, fn)  # through C: a Python call uses no C stack
    return fn()


_c_call = operator.call
# Recursion depth that must be left (below sys.getrecursionlimit()) for bands to be used:
# code on the deepest band then still has about 250 levels more than the limit's default
# minus what the runner already used.
_MIN_HEADROOM = 300


def _room_for_bands() -> bool:
    """Whether a hub may start bands deeper: only on stacks known to be large (the main
    thread's, or a thread's of the default size: threading.stack_size() can choose far
    smaller ones), and with recursion depth to spare, since a hub inherits the depth it
    starts at. Asked only when a second to fourth hub is made, never on pure-async runs."""
    if threading.current_thread() is not threading.main_thread() and threading.stack_size():
        return False
    depth = 0
    frame: Any = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return sys.getrecursionlimit() - depth > _MIN_HEADROOM


_NEW_HUB = object()


class _HubGreenlet(greenlet):  # type: ignore[misc]
    """A hub's greenlet: ``resume`` is its own bound ``switch``, made once, which a task step
    it runs registers as the wake-up of every blocking-style wait (see ``park``)."""

    __slots__ = ("resume",)

    resume: Callable[..., Any]


def _hub_main(loop: Loop) -> None:
    me = getcurrent()
    try:
        if loop._run_iterations(me):
            return  # stop() observed: back to run_forever() in the runner greenlet
        # A step we ran blocked, was resumed by the hub and has finished, and we could not
        # take the loop over (see take_over): switch back to that hub and retire.
        current = loop._hub
        if current is None or loop._closed:  # type: ignore[attr-defined]
            return  # unwound by close(), or resumed by kill_pooled() to end
        # Not pooled: the pool holds only the runner's children (see _hand_over).
        loop._hub_retired.append(me)
        current.switch()  # resumed only by kill_pooled(), to end
    finally:
        del me.resume  # greenlet -> its bound switch -> greenlet: no cycle left for the GC


def take_over(loop: Loop, me: greenlet) -> bool:
    """Called by hub ``me``'s run loop when a step it ran blocked and has now finished.

    The hub that resumed the step is suspended in the callback that did it, a place from
    which it can go on running the loop whenever it is resumed. So rather than switch back
    to it, ``me`` takes the loop over and goes on with its own iteration; the other hub goes
    to the pool. A task step that blocks once costs two switches, not three. Returns False
    when ``me`` must stop running the loop instead (close() unwinding it, or a runner it
    cannot return to).
    """
    current = loop._hub
    if current is None or loop._closed:  # type: ignore[attr-defined]
        return False
    runner = loop._runner
    if me.parent is not runner:  # we parked across two run_forever() calls
        try:
            me.parent = runner
        except ValueError:  # the runner descends from us: retire in _hub_main instead
            return False
    loop._hub_pool.append(current)
    loop._hub = me
    loop._takeovers += 1
    return True


class _Wake:
    """Done-callback that resumes one parked greenlet, at most once."""

    __slots__ = ("glet",)

    def __init__(self, glet: greenlet) -> None:
        self.glet: greenlet | None = glet

    def __call__(self, arg: Any) -> None:
        glet = self.glet
        if glet is not None:
            self.glet = None
            glet.switch(arg)


class _PriorityWake(_Wake):
    """Wake-up for a green thread whose priority is not the default: queue, then switch."""

    __slots__ = ("loop", "priority")

    def __init__(self, glet: greenlet, loop: Loop, priority: int) -> None:
        self.glet = glet  # _Wake.__init__, without the call: this is every wait's path
        self.loop = loop
        self.priority = priority

    def __call__(self, arg: Any) -> None:
        glet = self.glet
        if glet is None:
            return
        loop = self.loop
        if self.priority >= loop._running_level and getcurrent() is loop._hub:
            self.glet = None  # its level is running (or already ran): go now
            glet.switch(arg)
        else:
            loop._call_soon_priority(self.priority, _Wake.__call__, self, arg)


class _LevelWake:
    """The done-callback of a green thread that waits at a priority other than the default
    with no deadline (park()'s common case): one per thread greenlet, made at its first such
    wait and kept, like the greenlet's ``resume``.

    Called on the hub while the thread's level, or one below it, is running, it switches to
    the thread at once; otherwise it queues a Wakeup at the thread's level (``_PriorityWake``
    does the same with a Handle, for waits with a deadline). The level is read when the wait
    ends, so a priority changed meanwhile counts.
    """

    __slots__ = ("glet", "loop")

    def __init__(self, glet: greenlet) -> None:
        self.glet = glet
        self.loop: Loop | None = None  # set by every wait

    def __call__(self, arg: Any = None) -> None:
        glet = self.glet
        loop: Any = self.loop
        priority = glet.gt._priority
        if priority >= loop._running_level and getcurrent() is loop._hub:
            glet.resume()
        else:
            entry = _loop.Wakeup()
            entry._run = glet.resume
            entry.arg = arg
            loop._enqueue(priority, entry)


_TIMED_OUT = object()


class Waiter:
    """A one-shot result a blocking-style call parks on when no asyncio future is needed.

    It quacks like a future as far as ``park()``, ``cancel()`` and ``join()`` care (done,
    cancelled, cancel, result, add/remove_done_callback, get_loop). The difference is
    :meth:`wake`: called from a loop callback on the hub (a timer, a reader), it resumes the
    parked greenlet right there. An asyncio future would schedule its done-callback for the
    *next* iteration: one more poll per wake-up, which doubled the cost of ``sleep(0)``.
    Everything else (``set_result`` from arbitrary code, ``cancel``) defers like a future, so
    no caller is ever re-entered by the greenlet it wakes.
    """

    __slots__ = ("_callback", "_done", "_exception", "_loop", "_result")

    def __init__(self, loop: Loop) -> None:
        self._loop = loop
        self._callback: Any = None
        self._done = False
        self._result: Any = None
        self._exception: BaseException | None = None

    def get_loop(self) -> Loop:
        return self._loop

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return isinstance(self._exception, asyncio.CancelledError)

    def result(self) -> Any:
        if not self._done:
            raise asyncio.InvalidStateError("Result is not set.")
        if self._exception is not None:
            raise self._exception
        return self._result

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        if self._done:
            self._loop.call_soon(fn, self)
        else:
            self._callback = fn

    def remove_done_callback(self, fn: Any) -> int:
        if self._callback is fn:
            self._callback = None
            return 1
        return 0

    def wake(self, value: Any = None) -> None:
        """Complete (unless done) and, when called on the hub, resume the waiter now.

        Call it from a loop callback (a reader, a timer), never from a task step or a green
        thread: those would be re-entered by the greenlet they wake.
        """
        if self._done:
            return
        self._done = True
        self._result = value
        callback = self._callback
        if callback is not None:
            self._callback = None
            if getcurrent() is self._loop._hub:
                callback(self)
            else:
                self._loop.call_soon(callback, self, context=_wake_context(callback))

    def set_result(self, value: Any = None) -> None:
        if self._done:
            raise asyncio.InvalidStateError("invalid state")
        self._finish(value, None)

    def cancel(self, msg: Any | None = None) -> bool:
        if self._done:
            return False
        self._finish(None, asyncio.CancelledError(msg) if msg is not None else asyncio.CancelledError())
        return True

    def _finish(self, value: Any, exception: BaseException | None) -> None:
        self._done = True
        self._result = value
        self._exception = exception
        callback = self._callback
        if callback is not None:
            self._callback = None
            self._loop.call_soon(callback, self, context=_wake_context(callback))


def _wake_context(callback: Any) -> Any:
    """The context to schedule a waiter's wake-up with: a greenlet's bound switch needs none
    (see ``_loop.WAKE_CONTEXT``); anything else runs in a copy of the current one."""
    return _loop.WAKE_CONTEXT if _switched_greenlet(callback) is not None else None


def _switched_greenlet(callback: Any) -> greenlet | None:
    """The greenlet ``callback`` switches to, if it is a greenlet's bound ``switch``."""
    if type(callback) is _Switch and callback.__name__ == "switch":
        glet = callback.__self__
        if isinstance(glet, greenlet):
            return glet
    return None


def cancel_queued_wakeup(loop: Loop, waiter: Any, msg: Any | None) -> bool:
    """Deliver ``task.cancel()`` to a task step whose blocking-style wait is over (``waiter``
    is done) but which has not resumed yet: its queued wake-up throws CancelledError into
    the wait instead, as asyncio throws it into the ``await`` a task resumes from, and the
    result is never seen. False if no wake-up for ``waiter`` is queued. Scans the ready
    queue: cancel() of a task in this window is rare."""
    for entry in loop._ready:  # type: ignore[attr-defined]
        if entry._cancelled:
            continue
        if type(entry) is _loop.Wakeup:  # a switch, queued by the future or the Waiter
            if entry.arg is waiter:
                if type(entry._run) is _Switch:  # (else converted by an earlier cancel())
                    entry._run = functools.partial(entry._run.__self__.throw, _cancelled_error(msg))
                return True
            continue
        # A wait with a timeout: a Handle calls its _Wake with the waiter.
        callback = getattr(entry, "_callback", None)
        args = getattr(entry, "_args", None)
        if not args or args[0] is not waiter:
            continue
        if type(callback) is functools.partial and callback.func is _throw_into:
            return True  # converted by an earlier cancel()
        if isinstance(callback, _Wake) and callback.glet is not None:
            entry._callback = functools.partial(_throw_into, callback.glet, _cancelled_error(msg))
            callback.glet = None  # nor may its timer wake it now
            return True
    return False


def _throw_into(glet: greenlet, exc: BaseException, _arg: Any) -> None:
    glet.throw(exc)


def _cancelled_error(msg: Any | None) -> asyncio.CancelledError:
    return asyncio.CancelledError(msg) if msg is not None else asyncio.CancelledError()


def _refuse_park(me: greenlet, hub: greenlet | None, what: str) -> None:
    """Raise why a call outside any task cannot park here (call it only if one of these holds)."""
    if me is hub:
        raise BlockingCallError(
            f"{what} was called from a plain event loop callback; it would block the "
            "loop and reorder the callbacks queued after it. Call it from a green thread "
            "(greenloop.spawn) or an asyncio task, or await the async equivalent"
        )
    raise BlockingCallError(f"{what} needs the event loop to be running")


def _deliver_cancel(gt: Any) -> None:
    """Raise the CancelledError that ``gt.cancel()`` left for the thread's next blocking point."""
    gt._gl_must_cancel = False
    raise asyncio.CancelledError(gt._gl_cancel_msg)


def park(
    loop: Loop, fut: asyncio.Future[Any] | Waiter, timeout: float | None = None, what: str = "call"
) -> Any:
    """Suspend the current green context until ``fut`` is done; return its result.

    Raises TimeoutError if ``timeout`` passes first (``fut`` is then left untouched), and
    CancelledError if the green thread was cancelled when it had nothing to wait on.
    Must be called on the loop's OS thread while the loop is running. This is the hot path
    of every blocking-style call: keep it lean.
    """
    me = getcurrent()
    gt = getattr(me, "gt", None)
    if gt is not None and timeout is None and _current_tasks.get(loop) is None:
        # The common wait (a thread-per-connection server makes one per request): a green
        # thread with no deadline. At the default priority fut's done-callback is the
        # thread's own bound switch, made once (``resume``), so waking it runs no Python at
        # all and allocates nothing: with thousands of threads waiting, an object per wait
        # would be promoted by young collections by the thousand and bring full collections
        # (which walk every live object) sooner. At another priority it is the thread's
        # _LevelWake, made once too. Only fut can wake us; a wait that ends any other way
        # (an exception thrown in) disarms that callback below.
        if gt._gl_must_cancel:
            _deliver_cancel(gt)
        if gt._priority:
            wake = me.level_wake or _new_level_wake(me)
            wake.loop = loop
        else:
            wake = me.resume
        if type(fut) is Waiter and not fut._done:
            fut._callback = wake  # add_done_callback(), without the call
        else:
            # With this context, the future's call_soon() queues a Wakeup, not a Handle.
            fut.add_done_callback(wake, context=_loop.WAKE_CONTEXT)
        gt._gl_waiter = fut
        got = None
        try:
            got = loop._hub.switch()  # type: ignore[union-attr]
        finally:
            gt._gl_waiter = None
            if got is None:  # not woken by fut: an exception was thrown in
                _disarm(loop, fut, wake)
        result = _result(fut)
        if gt._gl_must_cancel:
            # cancel() came after the wait was over but before this green thread resumed:
            # raise here, as asyncio raises at the await a task resumes from.
            _deliver_cancel(gt)
        return result
    return _park(loop, fut, timeout, what)


def _new_level_wake(glet: greenlet) -> _LevelWake:
    wake = glet.level_wake = _LevelWake(glet)
    return wake


def _park(loop: Loop, fut: asyncio.Future[Any] | Waiter, timeout: float | None, what: str) -> Any:
    """park() for every other wait: with a timeout, in a task step, or in a greenlet that is
    not a green thread."""
    me = getcurrent()
    gt = getattr(me, "gt", None)
    hub = loop._hub
    task: Any = _current_tasks.get(loop)
    if task is None:
        if me is hub or hub is None:
            _refuse_park(me, hub, what)
        priority = 0
        if gt is not None:
            if gt._gl_must_cancel:
                _deliver_cancel(gt)
            priority = gt._priority
        owner: Any = gt
    else:
        gt = None
        owner = task
        priority = 0
    if timeout is None and not priority:
        # As in park()'s common case: the greenlet's own switch is the done-callback.
        try:
            wake = me.resume  # a green thread's or a hub's (a task step's) own bound switch
        except AttributeError:
            wake = me.switch  # a greenlet of the user's own
        context: Any = _loop.WAKE_CONTEXT
    else:
        wake = _PriorityWake(me, loop, priority) if priority else _Wake(me)
        context = None
    if owner is not None:
        owner._gl_waiter = fut
    if type(fut) is Waiter and not fut._done:
        fut._callback = wake
    else:
        fut.add_done_callback(wake, context=context)
    timer = loop.call_later(timeout, wake, _TIMED_OUT) if timeout is not None else None
    if owner is None:
        loop._parked[me] = None  # close() finds green threads and tasks without it
    got = None
    try:
        if task is None:
            got = hub.switch()  # type: ignore[union-attr]
        else:
            # asyncio's current task is left while we are away (see the module docstring)
            _leave_task(loop, task)
            try:
                got = hub.switch() if me is not hub else _hand_over(loop)  # type: ignore[union-attr]
            finally:
                _enter_task(loop, task)
    finally:
        if owner is None:
            del loop._parked[me]
        else:
            owner._gl_waiter = None
        if timer is not None:
            timer.cancel()
        if type(wake) is _Switch:
            if got is None:  # not woken by fut: an exception was thrown in
                _disarm(loop, fut, wake)
        else:
            wake.glet = None
    if got is _TIMED_OUT:
        fut.remove_done_callback(wake)
        raise TimeoutError
    result = _result(fut)
    if gt is not None and gt._gl_must_cancel:
        _deliver_cancel(gt)  # see park()
    return result


def _result(fut: asyncio.Future[Any] | Waiter) -> Any:
    if type(fut) is Waiter:  # result(), without the call (a Waiter is done when it wakes us)
        if fut._exception is not None:
            raise fut._exception
        return fut._result
    return fut.result()


# The type of a greenlet's bound switch: that of every bound method of a C type, so where
# the callback is not known to be a switch, check its __self__ and name too.
_Switch = type(getcurrent().switch)


def _disarm(loop: Loop, fut: asyncio.Future[Any] | Waiter, switch: Any) -> None:
    """A wait ended other than by ``fut``'s callback: make sure that callback never runs.

    Rare (an exception thrown into the parked greenlet), so a scan of the ready queue for a
    callback that was already scheduled is affordable.
    """
    if fut.remove_done_callback(switch):
        return
    queues: tuple[Any, ...] = (loop._ready,)  # type: ignore[attr-defined]
    resume = None
    if type(switch) is _LevelWake:
        # It may have run already and queued the thread's resume, at the thread's level.
        resume = switch.glet.resume
        queues = (loop._ready, *loop._prio_ready)  # type: ignore[attr-defined]
    for queue in queues:
        for handle in queue:
            callback = getattr(handle, "_callback", None)  # a Wakeup's is its _run
            if callback is switch or (resume is not None and callback is resume):
                handle.cancel()


def _hand_over(loop: Loop) -> Any:
    """Park a task step that runs *on* the hub: another hub runs the loop meanwhile and this
    greenlet keeps the step's stack (it becomes an ex-hub)."""
    # Every pooled hub is alive and a child of the current runner: only a take-over pools a
    # hub, the displaced current one (whose parent is the runner), and kill_pooled() empties
    # the pool when a run ends. So a pooled hub is taken with no checks.
    pool = loop._hub_pool
    if pool:
        new_hub = pool.pop()
        loop._hub = new_hub
        return new_hub.switch()
    assert loop._runner is not None
    return loop._runner.switch(_NEW_HUB)  # run_hub() starts a fresh hub


class _Yield:
    """sleep(0)'s entry in a ready queue: resumes its greenlet when the queue reaches it.

    Also what ``cancel()`` of the yielding green thread or task finds as the thing it waits
    on: the greenlet is resumed in this very iteration anyway, so cancelling only notes that
    it must raise CancelledError when it does.
    """

    # _run is the yielding greenlet's own bound switch, so the run loop's handle._run()
    # resumes it with no Python frame in between, and no __init__ runs per entry. The other
    # attributes stay the class's until set: by cancel(), or when the yield ends otherwise
    # (an exception thrown in) and the run loop must skip the entry.
    __slots__ = ("__dict__", "_run")

    _run: Any
    _cancelled = False
    _callback = None  # for asyncio's slow-callback report in debug mode (_format_handle)
    cancelled = False
    cancel_msg: Any = None

    def cancel(self, msg: Any | None = None) -> bool:
        if self.cancelled or self._cancelled:
            return False
        self.cancelled = True
        self.cancel_msg = msg
        return True


def yield_now(loop: Loop, what: str) -> None:
    """``sleep(0)``: let every callback and green thread that is ready run once, then resume.

    A green thread with a priority yields to the others of its level (and those above).
    """
    me = getcurrent()
    hub = loop._hub
    task = _current_tasks.get(loop)
    entry = _Yield()
    if task is None:
        if me is hub or hub is None:
            _refuse_park(me, hub, what)
        gt = getattr(me, "gt", None)  # as in park()
        if gt is None:
            priority = 0
        else:
            if gt._gl_must_cancel:
                _deliver_cancel(gt)
            priority = gt._priority
        owner: Any = gt
    else:
        gt = None
        owner = task
        priority = 0
    try:
        entry._run = me.resume  # as in park()
    except AttributeError:
        entry._run = me.switch
    # loop._enqueue(priority, entry), written out: this is sleep(0)'s whole cost.
    if priority:
        loop._prio_ready[priority - _loop.PRIORITY_MIN].append(entry)
        loop._prio_pending += 1
    else:
        loop._ready.append(entry)  # type: ignore[attr-defined]
    if owner is None:
        loop._parked[me] = None
    else:
        owner._gl_waiter = entry
    resumed = False
    try:
        if task is None:
            hub.switch()  # type: ignore[union-attr]
        else:
            _leave_task(loop, task)  # as in park()
            try:
                hub.switch() if me is not hub else _hand_over(loop)  # type: ignore[union-attr]
            finally:
                _enter_task(loop, task)
        resumed = True
    finally:
        if owner is None:
            del loop._parked[me]
        else:
            owner._gl_waiter = None
        if not resumed:
            entry._cancelled = True  # ended otherwise: the queued entry must not resume us
    if entry.cancelled:
        raise asyncio.CancelledError(entry.cancel_msg)
    if gt is not None and gt._gl_must_cancel:
        _deliver_cancel(gt)


def unwind_parked(loop: Loop) -> None:
    """At close(): unwind every greenlet still parked, so their ``finally`` blocks run.

    A parked task step gets CancelledError at its blocking point and is reported as asyncio
    reports a pending task it destroys; a parked green thread gets GreenletExit, ends
    cancelled, and is reported the same way.
    """
    me = getcurrent()
    for glet, owner in _suspended(loop):
        if not _adopt(glet, me):
            continue
        if isinstance(owner, asyncio.Task):
            message = "Task was destroyed but it is pending!"
            context: dict[str, Any] = {"task": owner}
            exc: type[BaseException] = asyncio.CancelledError
        else:
            message = "Green thread was destroyed but it is pending!"
            context = {"green_thread": owner}
            exc = GreenletExit
        try:
            glet.throw(exc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # raised by the unwound code itself (a finally block)
            loop.call_exception_handler(
                {"message": f"Exception while unwinding {owner!r} at loop close", "exception": error}
            )
        # Reported after unwinding: on 3.12+ the handler runs in the task's context, which
        # the parked step had entered until now.
        loop.call_exception_handler({"message": message, **context})
    loop._parked.clear()
    loop._green_live.clear()  # what is left belongs to another OS thread: nothing to unwind
    kill_pooled(loop)
    pool = loop._green_pool
    while pool:
        _kill(pool.pop(), me)


def _suspended(loop: Loop) -> list[tuple[greenlet, Any]]:
    """Every greenlet suspended in a wait on ``loop``, with its task or green thread (or None).

    Green threads are the started, unfinished ones (``_green_live``). A task step is known by
    its task's ``_gl_waiter`` and its greenlet by the wake-up it left: among the waiter's
    done-callbacks, or, when the waiter is already done, in a handle on the ready queue.
    """
    found: dict[greenlet, Any] = dict.fromkeys(loop._parked)
    for gt in loop._green_live:
        if gt._glet is not None:
            found[gt._glet] = gt
    waiting = {}  # waiter -> its task (futures, Waiters and _Yields hash by identity)
    for task in asyncio.all_tasks(loop):
        fut = getattr(task, "_gl_waiter", None)
        if fut is not None:
            waiting[fut] = task
    for fut, task in waiting.items():
        if type(fut) is _Yield:
            callbacks = [fut]
        elif type(fut) is Waiter:
            callbacks = [fut._callback]
        else:
            callbacks = [cb for cb, _ in getattr(fut, "_callbacks", None) or ()]
        for cb in callbacks:
            glet = _resumes(cb)
            if glet is not None:
                found[glet] = task
    for handle in loop._ready:  # type: ignore[attr-defined]
        glet = _resumes(getattr(handle, "_callback", None))
        args = getattr(handle, "_args", None)
        if glet is not None and args and args[0] in waiting:
            found[glet] = waiting[args[0]]
    return list(found.items())


def _resumes(callback: Any) -> greenlet | None:
    """The greenlet a wake-up left by park() or yield_now() would resume, if it is one."""
    if type(callback) is _Switch:
        return _switched_greenlet(callback)
    if type(callback) is _Yield:
        return None if callback._cancelled else callback._run.__self__  # type: ignore[no-any-return]
    if isinstance(callback, _Wake):
        return callback.glet
    return None


def has_parked(loop: Loop) -> bool:
    """Is any green context suspended on ``loop`` (that close() must unwind)?"""
    if loop._parked or loop._green_live:
        return True
    return any(getattr(task, "_gl_waiter", None) is not None for task in asyncio.all_tasks(loop))


def kill_pooled(loop: Loop) -> None:
    """End the hubs parked in the pool (when run_forever() returns, and at close()).

    A pooled hub is suspended either in the callback with which it resumed an ex-hub that
    then took the loop over, or where it retired (both in ``_hub_main``). Either way,
    resumed while it is not the hub, it stops running the loop and returns. It is resumed
    rather than thrown GreenletExit: in a callback, the handle would report that exception
    as the callback's failure.
    """
    me = getcurrent()
    loop._hub = None
    for pool in (loop._hub_pool, loop._hub_retired):
        while pool:
            hub = pool.pop()
            if _adopt(hub, me):
                hub.switch()


def _kill(glet: greenlet, me: greenlet) -> None:
    if _adopt(glet, me):
        glet.throw(GreenletExit)


def _adopt(glet: greenlet, me: greenlet) -> bool:
    """Make ``me`` the parent of a live ``glet`` about to be resumed to end, so that it
    returns here; False if it is dead or another OS thread's (then it can only be dropped)."""
    if glet.dead:
        return False
    try:
        glet.parent = me
    except ValueError:
        return False
    return True
