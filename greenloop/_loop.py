"""greenloop.Loop: an asyncio event loop whose iterations run on a hub greenlet.

Transports, servers, subprocesses, signals and the sock_* methods come from asyncio's public
``SelectorEventLoop`` (their behaviour *is* the spec, so we reuse rather than re-derive them).
What greenloop owns is the run loop itself: :meth:`Loop._run_iterations` is the only place
where callbacks are called, and it runs on a *hub* greenlet so that a task step that makes a
blocking-style call can keep its stack while another hub carries on (see ``_hub.py``).

asyncio internals relied on (guarded by the 3.11/3.12/3.13 test matrix):
``_ready`` (deque of Handles), ``_scheduled`` (heap of TimerHandles with ``_when``,
``_cancelled``, ``_scheduled``), ``_timer_cancelled_count``, ``_stopping``, ``_selector``,
``_process_events``, ``_debug`` / ``slow_callback_duration`` / ``_current_handle``, and the
run_forever set-up steps (``_check_closed``, ``_check_running``, ``_thread_id``,
``_set_coroutine_origin_tracking``, the asyncgen hooks, ``events._set_running_loop``), and
the slots of ``events.Handle`` / ``TimerHandle``, which greenloop's lean subclasses fill.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import math
import os
import select
import selectors
import sys
import threading
from asyncio import base_events, events, selector_events
from collections.abc import Coroutine, Generator
from contextvars import Context, copy_context
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from greenlet import getcurrent, greenlet

from . import _hub
from ._poller import _EpollSelector, default_selector

# For Loop._poll: epoll event bits as selectors interprets them (anything but EPOLLOUT counts
# as readable, anything but EPOLLIN as writable, so errors and hang-ups wake both sides).
_NOT_EPOLLIN = ~getattr(select, "EPOLLIN", 0)
_NOT_EPOLLOUT = ~getattr(select, "EPOLLOUT", 0)
_EVENT_READ = selectors.EVENT_READ
_EVENT_WRITE = selectors.EVENT_WRITE
# Events taken per epoll_wait. selectors asks for one slot per registered fd, so every poll
# allocates (and the kernel fills) a buffer of 12 bytes per fd: 196 KiB at 16,384 connections.
# Level-triggered epoll reports the rest at the next poll, one iteration later (libuv and
# libev also use a bounded buffer).
_MAX_EVENTS = 1024
_BASE_TIME = base_events.BaseEventLoop.time

_T = TypeVar("_T")

__all__ = ["PRIORITY_DEFAULT", "PRIORITY_MAX", "PRIORITY_MIN", "GreenTask", "Loop"]

# Green-thread scheduling priorities. PRIORITY_DEFAULT is the level of asyncio's callbacks
# and tasks. Every loop iteration runs the raised levels first (highest first), then the
# default level, then the lowered levels: priority orders the work of an iteration and
# never starves a level, because each level's batch runs in every iteration.
PRIORITY_MIN = -3
PRIORITY_DEFAULT = 0
PRIORITY_MAX = 3

# asyncio's tuning constants, reused so timer compaction behaves identically.
_MAX_TIMEOUT: float = base_events.MAXIMUM_SELECT_TIMEOUT  # type: ignore[attr-defined]
_MIN_TIMERS_TO_COMPACT: int = base_events._MIN_SCHEDULED_TIMER_HANDLES  # type: ignore[attr-defined]
_CANCELLED_FRACTION_TO_COMPACT: float = base_events._MIN_CANCELLED_TIMER_HANDLES_FRACTION  # type: ignore[attr-defined]


# OS thread id -> the greenloop loop running on it. The same fact as asyncio's running-loop
# record, without the getpid() system call that asyncio makes on every lookup to notice a
# fork: blocking-style calls look it up on every wait. Cleared in a forked child, which
# (as in asyncio) does not inherit a running loop.
_running_loops: dict[int, Loop] = {}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_running_loops.clear)


class GreenTask(asyncio.Task):  # type: ignore[type-arg]
    """asyncio's Task, plus delivery of ``cancel()`` to a blocking-style call in progress.

    A task that is suspended inside a blocking-style call (``greenloop.sleep`` and friends)
    has no ``_fut_waiter`` asyncio could cancel, so the call's own waiter future is kept here
    and cancelled instead, exactly as asyncio cancels the future an ``await`` is parked on.
    Those cancellations are counted here so ``cancelling()`` / ``uncancel()`` stay exact.
    """

    # _gl_waiter: the future a blocking-style call in this task waits on, else None.
    # _gl_cancels: cancel() requests delivered through _gl_waiter (not counted by asyncio).
    # Slots, unset until first used (read with a default): no dict is made for them, so a
    # task that blocks keeps no extra object alive. (Other attributes still go to the dict
    # asyncio's C Task makes on demand, as they do on asyncio's own tasks.)
    __slots__ = ("_gl_cancels", "_gl_waiter")

    _gl_waiter: asyncio.Future[Any] | Any | None
    _gl_cancels: int

    def cancel(self, msg: Any | None = None) -> bool:
        waiter = getattr(self, "_gl_waiter", None)
        if (
            waiter is not None
            and not self.done()
            and (
                waiter.cancel(msg)
                # The wait is over but the step has not resumed: raise at the wait, not at
                # the task's next await (asyncio raises at the await it resumes from).
                or (waiter.done() and _hub.cancel_queued_wakeup(self.get_loop(), waiter, msg))  # type: ignore[arg-type]
            )
        ):
            self._log_traceback = False
            self._gl_cancels = getattr(self, "_gl_cancels", 0) + 1
            return True
        return super().cancel(msg)

    def cancelling(self) -> int:
        return super().cancelling() + getattr(self, "_gl_cancels", 0)

    def uncancel(self) -> int:
        if getattr(self, "_gl_cancels", 0):
            self._gl_cancels -= 1
            return self.cancelling()
        return super().uncancel()


# asyncio builds a task's repr (in logs, error messages, debug output) from the class
# __name__; users and tests match on "<Task ...". The qualname still says GreenTask.
GreenTask.__name__ = "Task"


if sys.version_info >= (3, 12):

    def eager_task_factory(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Task[Any]:
        """Like ``asyncio.eager_task_factory``, creating GreenTasks (3.12+)."""
        return GreenTask(coro, loop=loop, name=name, context=context, eager_start=True)  # type: ignore[call-arg]


class Handle(events.Handle):
    """asyncio's Handle, built by a non-debug loop without the ``loop.get_debug()`` call its
    ``__init__`` makes (no traceback is captured unless the loop is in debug mode).

    Named like asyncio's so that reprs are identical; every loop and task callback goes
    through one, so the saved call is a tenth of a non-debug ``call_soon``.
    """

    __slots__ = ()

    def __init__(self, callback: Any, args: Any, loop: Any, context: Context | None) -> None:
        self._context = copy_context() if context is None else context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None


class TimerHandle(events.TimerHandle):
    """asyncio's TimerHandle, built as :class:`Handle` is (non-debug loops only)."""

    __slots__ = ()

    def __init__(self, when: float, callback: Any, args: Any, loop: Any, context: Context | None) -> None:
        Handle.__init__(self, callback, args, loop, context)  # type: ignore[arg-type]  # same slots
        self._when = when
        self._scheduled = False


# The context a parked greenlet passes to its future's add_done_callback() together with its
# own bound switch: call_soon() then queues a Wakeup instead of a Handle. The context is
# never entered (a switch runs the resumed greenlet in that greenlet's own context), so one
# shared object serves every wait, and the future does not copy the waiter's context.
WAKE_CONTEXT = Context()


class Wakeup:
    """A ready-queue entry that resumes a parked greenlet (queued by call_soon() for a
    callback scheduled with ``WAKE_CONTEXT``, which must be a greenlet's bound switch).

    ``_run`` is that switch itself, so the run loop resumes the greenlet with no Python
    frame, no Context.run() and no Handle built per wake-up. The greenlet gets no value from
    the switch (parked code reads the future it waited on), and a switch never raises into
    the caller: what the resumed greenlet raises stays in it.
    """

    # Built without __init__ (call_soon sets the slots); cancel() and repr() are rare, so
    # _cancelled is the class's until cancel() sets it in a __dict__ made then.
    __slots__ = ("__dict__", "_run", "arg")

    _run: Any
    arg: Any  # what the callback was scheduled with (the future), for close()'s report
    _cancelled = False

    @property
    def _callback(self) -> Any:  # as a Handle has, for _hub._disarm() and debug reports
        return self._run

    @property
    def _args(self) -> tuple[Any, ...]:
        return (self.arg,)

    def cancel(self) -> None:
        self._cancelled = True

    def __repr__(self) -> str:
        return f"<Wakeup {self._run!r}({self.arg!r})>"


def _nothing() -> None:
    pass


class _SocketTransport(selector_events._SelectorSocketTransport):  # type: ignore[name-defined,misc]
    """asyncio's socket transport, freed by reference counting once its connection is lost.

    asyncio keeps a bound method of the transport on the transport (``_read_ready_cb``, and
    from 3.12 ``_write_ready``), a reference cycle: every closed transport, with its socket
    and whatever the protocol still holds, stays in memory until a full garbage collection,
    which at 16,384 connections comes only every second or two (3.12 clears the cycle in
    close(), but not when a connection is lost without one).
    """

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            super()._call_connection_lost(exc)
        finally:
            # The reader and writer were removed when the connection was lost; harmless
            # functions rather than None, in case a stale callback still runs.
            self._read_ready_cb = _nothing
            if "_write_ready" in self.__dict__:  # 3.12+: a bound method on the instance
                self._write_ready = _nothing


class Loop(asyncio.SelectorEventLoop):
    """The greenloop event loop: asyncio's API, greenloop's scheduler."""

    # greenloop's own state lives in slots, not in the instance __dict__. CPython shares the
    # dict keys of instances (and specialises attribute access on them) only up to 30 keys;
    # asyncio's loop already uses 24-26, and 9 more made every ``loop.call_soon`` and
    # ``self._ready`` lookup in asyncio's code take the slow, unspecialised path (+11 %
    # instructions per callback, measured with cachegrind).
    __slots__ = (
        "_debug_t0",
        "_green_live",
        "_green_pool",
        "_hub",
        "_hub_pool",
        "_hub_retired",
        "_old_agen_hooks_gl",
        "_parked",
        "_prio_pending",
        "_prio_ready",
        "_runner",
        "_running_level",
        "_takeovers",
    )

    if TYPE_CHECKING:
        # asyncio internals this class relies on (typeshed omits private names); the
        # 3.11/3.12/3.13 test matrix and compat/ guard them.
        _ready: collections.deque[Any]  # Handles
        _scheduled: list[Any]  # heap of TimerHandles
        _timer_cancelled_count: int
        _stopping: bool
        _closed: bool
        _debug: bool
        _clock_resolution: float
        _thread_id: int | None
        _current_handle: asyncio.Handle | None
        _selector: selectors.BaseSelector
        _signal_handlers: dict[int, asyncio.Handle]
        _task_factory: Any

        def _process_events(self, event_list: list[tuple[selectors.SelectorKey, int]]) -> None: ...
        def _remove_reader(self, fd: Any) -> bool: ...
        def _remove_writer(self, fd: Any) -> bool: ...
        def _check_closed(self) -> None: ...
        def _check_thread(self) -> None: ...
        def _check_callback(self, callback: Any, method: str) -> None: ...
        def _check_running(self) -> None: ...
        def _write_to_self(self) -> None: ...
        def _set_coroutine_origin_tracking(self, enabled: bool) -> None: ...
        def _asyncgen_firstiter_hook(self, agen: Any) -> None: ...
        def _asyncgen_finalizer_hook(self, agen: Any) -> None: ...

    def __init__(self) -> None:
        super().__init__(default_selector())
        # The greenlet currently running the loop's iterations (None while not running),
        # the greenlet that called run_forever(), and parked hubs ready for reuse.
        self._hub: greenlet | None = None
        self._runner: greenlet | None = None
        self._hub_pool: list[greenlet] = []  # hubs that may run the loop (see _hub._hand_over)
        self._hub_retired: list[greenlet] = []  # hubs that cannot (see _hub._hub_main)
        self._takeovers = 0  # ex-hubs that took the loop back (_hub.take_over); for debug mode
        self._debug_t0 = 0.0  # when the callback that debug mode times last started
        # Greenlets suspended in a blocking-style call, so close() can unwind them.
        # Suspended greenlets that close() must unwind, found without a per-wait registration
        # for the common ones: green threads from _green_live (started, not finished), task
        # steps through their task's _gl_waiter. Only other greenlets that park (no green
        # thread, no task) are entered in _parked, each for the time it waits.
        self._parked: dict[greenlet, None] = {}
        self._green_live: set[Any] = set()
        # Ready queues for green threads whose priority is not the default; the default
        # level is asyncio's own _ready deque, so callbacks keep their FIFO order.
        self._prio_ready: list[collections.deque[Any]] = [
            collections.deque() for _ in range(PRIORITY_MIN, PRIORITY_MAX + 1)
        ]
        self._prio_pending = 0
        # The level whose batch is running: a green thread woken at this level or above is
        # switched to at once instead of waiting for its level's next batch.
        self._running_level = PRIORITY_DEFAULT
        # Finished green-thread greenlets kept for reuse (see _green.py).
        self._green_pool: list[greenlet] = []
        self._old_agen_hooks_gl: Any = None

    # -- transports ----------------------------------------------------------------------

    def _make_socket_transport(  # type: ignore[override]
        self,
        sock: Any,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> asyncio.Transport:
        return _SocketTransport(self, sock, protocol, waiter, extra, server)

    # -- tasks ---------------------------------------------------------------------------

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Task[_T]:
        if self._task_factory is not None:
            return super().create_task(coro, name=name, context=context)
        self._check_closed()
        task: Any = GreenTask(coro, loop=self, name=name, context=context)
        if task._source_traceback:
            del task._source_traceback[-1]  # drop this frame, as asyncio does
        return task  # type: ignore[no-any-return]

    # -- callbacks ---------------------------------------------------------------------------
    # asyncio's own, with the same checks and errors, minus a call chain (call_soon ->
    # _check_closed, _call_soon, Handle -> get_debug) that costs a fifth of a callback. In
    # debug mode asyncio's Handle classes capture the creation traceback; each method drops
    # its own frame from it, as asyncio's do.

    def call_soon(self, callback: Any, *args: Any, context: Context | None = None) -> Any:  # type: ignore[override]
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if context is WAKE_CONTEXT:
            if self._debug:
                self._check_thread()
            wakeup = Wakeup()
            wakeup._run = callback
            wakeup.arg = args[0] if args else None
            self._ready.append(wakeup)
            return wakeup
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
            handle: Any = self._call_soon(callback, args, context)
            if handle._source_traceback:
                del handle._source_traceback[-1]
            return handle
        handle = Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def _call_soon(self, callback: Any, args: Any, context: Any) -> Any:
        handle: Any
        if self._debug:
            handle = events.Handle(callback, args, self, context)
            if handle._source_traceback:
                del handle._source_traceback[-1]
        else:
            handle = Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_at(  # type: ignore[override]
        self, when: float, callback: Any, *args: Any, context: Context | None = None
    ) -> Any:
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed:
            raise RuntimeError("Event loop is closed")
        timer: Any
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
            timer = events.TimerHandle(when, callback, args, self, context)
            if timer._source_traceback:
                del timer._source_traceback[-1]
        else:
            timer = TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._scheduled, timer)
        timer._scheduled = True
        return timer

    def call_later(  # type: ignore[override]
        self, delay: float, callback: Any, *args: Any, context: Context | None = None
    ) -> Any:
        if delay is None:
            raise TypeError("delay must not be None")
        timer: Any = self.call_at(self.time() + delay, callback, *args, context=context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
        return timer

    # -- running -------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        self._old_agen_hooks_gl = sys.get_asyncgen_hooks()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            _running_loops[self._thread_id] = self
            _hub.run_hub(self)
        finally:
            # Retired hubs belong to this OS thread: end them now, while we are on it.
            _hub.kill_pooled(self)
            self._stopping = False
            _running_loops.pop(self._thread_id, None)  # type: ignore[arg-type]
            self._thread_id = None
            self._hub = None
            self._runner = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*self._old_agen_hooks_gl)
            self._old_agen_hooks_gl = None

    def _poll(self, timeout: float | None) -> None:
        """Wait for I/O (at most ``timeout`` seconds, None = no limit); queue the ready handles.

        asyncio's ``_process_events(selector.select(timeout))`` in one pass for epoll: the
        selector's result list, its per-event key lookup method and ``_add_callback`` cost a
        Python call each per event, and one event per message is the common case.
        """
        selector: Any = self._selector
        if type(selector) is not _EpollSelector:
            self._process_events(selector.select(timeout))
            return
        if timeout is None:
            timeout = -1
        elif timeout > 0:
            timeout = math.ceil(timeout * 1e3) * 1e-3  # at least that long: epoll counts in ms
        fd_to_key = selector._fd_to_key
        try:
            events = selector._selector.poll(timeout, min(len(fd_to_key), _MAX_EVENTS) or 1)
        except InterruptedError:
            return
        append = self._ready.append
        for fd, event in events:
            key = fd_to_key.get(fd)
            if key is None:
                continue
            # A SelectorKey is (fileobj, fd, events, data): indexing a tuple is specialised
            # by CPython, a namedtuple's field names are not.
            reader, writer = key[3]
            wanted = key[2]
            # Errors and hang-ups count as both readable and writable, as in selectors.
            if event & _NOT_EPOLLOUT and wanted & _EVENT_READ and reader is not None:
                if reader._cancelled:
                    self._remove_reader(fd)
                else:
                    append(reader)
            if event & _NOT_EPOLLIN and wanted & _EVENT_WRITE and writer is not None:
                if writer._cancelled:
                    self._remove_writer(fd)
                else:
                    append(writer)

    def _run_iterations(self, me: greenlet) -> bool:
        """Run loop iterations on hub ``me``: the only place where callbacks are called.

        Returns True when stop() was observed. A task step that ``me`` runs may make a
        blocking-style call: another hub runs the loop meanwhile, and when the step has
        finished ``me`` takes the loop back (``_hub.take_over``) and goes on; False when it
        cannot and must stop running the loop instead.
        """
        handle: Any
        ready = self._ready
        scheduled = self._scheduled
        fd_to_key = self._selector._fd_to_key  # type: ignore[attr-defined]
        heappop = heapq.heappop
        time = self.time
        if getattr(time, "__func__", None) is _BASE_TIME:
            # asyncio's loop.time() is time.monotonic(): call that, not a Python frame around
            # it, twice an iteration whenever a timer is pending (a server's reaper, any sleep).
            time = _monotonic
        # While the runner stays the same, a hub of this run_forever() can take the loop back
        # without take_over()'s checks: its parent is that runner.
        runner = self._runner
        just_waited = False  # the previous iteration's poll was one that could block
        while True:
            # Timers: drop cancelled ones lazily, compacting only when they dominate.
            n_timers = len(scheduled)
            if (
                n_timers > _MIN_TIMERS_TO_COMPACT
                and self._timer_cancelled_count / n_timers > _CANCELLED_FRACTION_TO_COMPACT
            ):
                live = []
                for handle in scheduled:
                    if handle._cancelled:
                        handle._scheduled = False
                    else:
                        live.append(handle)
                heapq.heapify(live)
                scheduled[:] = live
                self._timer_cancelled_count = 0
            else:
                while scheduled and scheduled[0]._cancelled:
                    self._timer_cancelled_count -= 1
                    heappop(scheduled)._scheduled = False

            if ready or self._stopping or self._prio_pending:
                # With callbacks ready, polling is only for fairness towards I/O. When nothing
                # but the self-pipe is registered and no signal handler is installed, there is
                # no I/O to be fair to: call_soon_threadsafe() appends to _ready itself and the
                # self-pipe only has to wake a *sleeping* loop, so skip the syscall. Nor right
                # after a poll that waited: the I/O state is as fresh as it gets (typically
                # that poll's events just queued these callbacks, a reader waking a task), and
                # the next iteration polls again, so I/O is never more than one iteration late.
                if just_waited:
                    just_waited = False
                elif len(fd_to_key) > 1 or self._signal_handlers:
                    self._poll(0)
            else:
                timeout: float | None = None
                if scheduled:
                    timeout = min(max(0.0, scheduled[0]._when - time()), _MAX_TIMEOUT)
                self._poll(timeout)
                just_waited = timeout != 0

            if scheduled:
                end_time = time() + self._clock_resolution
                while scheduled and scheduled[0]._when < end_time:
                    handle = heappop(scheduled)
                    handle._scheduled = False
                    ready.append(handle)

            # Green threads with a raised priority run before asyncio's callbacks.
            if self._prio_pending and not self._run_priority_levels(me, 1, PRIORITY_MAX):
                return False

            # Run the callbacks that are ready now; those they schedule wait for the next
            # iteration, after another I/O poll. FIFO: the deque is consumed in order.
            ntodo = len(ready)
            if self._debug:
                for _ in range(ntodo):
                    try:
                        handle = ready.popleft()
                    except IndexError:  # see below
                        break
                    if handle._cancelled:
                        continue
                    self._run_debug(handle)
                    if self._hub is not me:
                        if not _hub.take_over(self, me):
                            return False
                        runner = self._runner
            else:
                for _ in range(ntodo):
                    # A hub that was displaced by an ex-hub taking over (_hub.take_over)
                    # finishes this iteration when it next becomes the hub; other hubs may
                    # have drained the queue meanwhile. (A try costs nothing on 3.11+.)
                    try:
                        handle = ready.popleft()  # specialised by CPython; a bound method is not
                    except IndexError:
                        break
                    if handle._cancelled:
                        continue
                    handle._run()
                    # The step just run may have blocked and been resumed by another hub,
                    # which ran the loop meanwhile: take it back (one compare when not).
                    current = self._hub
                    if current is not me:
                        if current is not None and self._runner is runner:
                            self._hub_pool.append(current)  # take_over(), inlined
                            self._hub = me
                            self._takeovers += 1
                        elif _hub.take_over(self, me):
                            runner = self._runner
                        else:
                            return False
            handle = None  # break reference cycles through a failed callback

            # Green threads with a lowered priority run after asyncio's callbacks.
            if self._prio_pending and not self._run_priority_levels(me, PRIORITY_MIN, -1):
                return False
            if self._stopping:
                return True

    def _run_priority_levels(self, me: greenlet, low: int, high: int) -> bool:
        """Run one batch of each non-empty priority level from ``high`` down to ``low``.

        Returns False if ``me`` stopped being the hub (see _run_iterations).
        """
        for level in range(high, low - 1, -1):
            queue = self._prio_ready[level - PRIORITY_MIN]
            ntodo = len(queue)
            if not ntodo:
                continue
            for _ in range(ntodo):
                # Counted and labelled per entry, not per batch: a hub displaced in here
                # (see _run_iterations) comes back to a queue and a level others have changed.
                try:
                    handle = queue.popleft()
                except IndexError:
                    break
                self._prio_pending -= 1
                self._running_level = level
                if handle._cancelled:
                    continue
                if self._debug:
                    self._run_debug(handle)
                else:
                    handle._run()
                if self._hub is not me and not _hub.take_over(self, me):
                    self._running_level = PRIORITY_DEFAULT
                    return False
        self._running_level = PRIORITY_DEFAULT
        handle = None  # see _run_debug: don't keep the last callback alive via f_back
        return True

    def _enqueue(self, priority: int, entry: Any) -> None:
        """Queue an entry of greenloop's own (it has ``_cancelled`` and ``_run``) at
        ``priority``; on the loop's thread only."""
        if priority == PRIORITY_DEFAULT:
            self._ready.append(entry)
        else:
            self._prio_ready[priority - PRIORITY_MIN].append(entry)
            self._prio_pending += 1

    def _call_soon_priority(self, priority: int, callback: Any, *args: Any) -> None:
        """call_soon() at a green-thread priority; PRIORITY_DEFAULT is plain call_soon()."""
        if priority == PRIORITY_DEFAULT:
            self._call_soon(callback, args, None)
            return
        self._check_closed()
        # _enqueue(), written out: this is every wake-up of a prioritised green thread.
        self._prio_ready[priority - PRIORITY_MIN].append(asyncio.Handle(callback, args, self, None))
        self._prio_pending += 1
        if self._thread_id is None or self._thread_id != threading.get_ident():
            self._write_to_self()

    def _run_debug(self, handle: asyncio.Handle) -> None:
        try:
            self._current_handle = handle
            self._debug_t0 = t0 = self.time()
            takeovers = self._takeovers
            handle._run()
            now = self.time()
            hub = self._hub
            if hub is None:
                dt = 0.0  # a step unwound by close(), long after the loop stopped
            elif hub is not getcurrent():
                # A task step that blocked (this hub handed the loop on) and has now finished
                # on the greenlet that kept it: the loop waited only for the part since the
                # callback that resumed it started. (Its earlier parts were timed as those
                # callbacks, on the hub that ran them.)
                dt = now - self._debug_t0
            elif takeovers == self._takeovers:
                dt = now - t0
            else:
                # This callback woke an ex-hub, which took over: we are back only now that
                # we were handed the loop again, and that wait is not the callback's.
                dt = 0.0
            if dt >= self.slow_callback_duration:
                # Looked up at call time: tests (and users) may replace asyncio's logger.
                base_events.logger.warning(  # type: ignore[attr-defined]
                    "Executing %s took %.3f seconds",
                    base_events._format_handle(handle),  # type: ignore[attr-defined]
                    dt,
                )
        finally:
            self._current_handle = None
            # A traceback that escaped through this frame keeps it (and its locals) alive via
            # f_back; drop the handle so a failed task is not kept alive in a cycle.
            handle = None  # type: ignore[assignment]

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if not self.is_closed() and (self._hub_pool or self._green_pool or _hub.has_parked(self)):
            _hub.unwind_parked(self)
        super().close()
        # As asyncio's close() empties the ready queue: the levels' entries (wake-ups of
        # prioritised threads) must not keep their greenlets alive with the closed loop.
        for queue in self._prio_ready:
            queue.clear()
        self._prio_pending = 0
