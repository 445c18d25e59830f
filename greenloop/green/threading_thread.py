"""Green ``threading.Thread`` and the thread-identity functions of a patched ``threading``.

The synchronisation primitives (Lock, RLock, Condition, Event, Semaphore, BoundedSemaphore,
Barrier) live in ``greenloop.green.threading``; this module supplies what makes a *thread*:

* ``Thread.start()`` on a thread that has a greenloop loop (the main thread, a green thread,
  a task) starts a green thread on that loop. Anywhere else (an executor worker, a thread a
  C library started, under a running non-greenloop asyncio loop) it starts a real OS thread,
  exactly as the original would: patched code used from real threads behaves as the original.
* ``get_ident()`` and ``current_thread()`` tell green threads apart: each green thread has
  its own ident and ``Thread`` object (greenloop.spawn()'s green threads get a dummy one, as
  threads started by ``_thread.start_new_thread`` do in CPython). Outside green threads
  (the main greenlet, asyncio tasks, real OS threads) they are the originals.
  ``get_native_id()`` stays the original: it is the kernel's id of the OS thread, which all
  the green threads of a loop share (``Thread.native_id`` likewise), as with gevent.
* ``enumerate()`` / ``active_count()`` list what CPython (and gevent) list: the real threads,
  the green threads started through ``Thread``, and the dummy ``Thread`` of each live green
  thread that asked for ``current_thread()`` (spawn()'s, ``_thread.start_new_thread``'s).
  A green thread that never did is not listed, as a ``start_new_thread`` thread is not; unlike
  CPython 3.11's dummies, a dummy leaves the list when its green thread ends.
* ``local`` is per green thread (CPython's pure-Python ``_threading_local`` algorithm, keyed
  on the ``current_thread()`` above).
* ``_shutdown()``, which the interpreter calls at exit, first joins the non-daemon green
  threads (driving the main thread's loop), so a patched program exits when its threads are
  done, exactly as a threaded program does.

``Thread`` subclasses the original ``threading.Thread`` (through the unpatched copy in
``_realthreads``), so ``isinstance`` checks against the original class still hold, and the
real-thread fallback is the original code.
"""

from __future__ import annotations

import _thread
import asyncio
import importlib.util
import os as _os
import sys
import weakref
from asyncio import events
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from greenlet import GreenletExit, getcurrent

from greenloop import _green
from greenloop._loop import Loop
from greenloop.monkey import original_module as _original_module

from ._realthreads import threading as _real
from .signal import raise_out_of_loop as _raise_out_of_loop

__implements__ = [
    "Thread",
    "Timer",
    "local",
    "get_ident",
    "current_thread",
    "enumerate",
    "active_count",
    "_shutdown",
]
# Not currentThread / activeCount: the originals warn, then call the module's (patched)
# current_thread() / active_count().
__all__ = [
    "Thread",
    "Timer",
    "active_count",
    "current_thread",
    "enumerate",
    "get_ident",
    "local",
]

_orig_get_ident = _thread.get_ident
_orig_get_native_id = _thread.get_native_id
# The identity original: it works on the threading module's own state (its globals).
_orig_shutdown = _original_module("threading").__dict__["_shutdown"]
_newname = _original_module("threading").__dict__["_newname"]
_MAIN_IDENT = _real.main_thread().ident
# Green threads started through Thread.start(), by ident, while they are alive.
_green_active: dict[int, Thread] = {}
# The Thread object of each green thread that has one (GreenThread has no __dict__). A Thread
# started here is removed when its function returns; a dummy refers to its green thread
# weakly, so its entry goes when the green thread does.
_pythreads: weakref.WeakKeyDictionary[Any, Thread] = weakref.WeakKeyDictionary()
# The dummies, by ident, while anything refers to them (enumerate() skips finished ones).
_green_dummies: weakref.WeakValueDictionary[int, _DummyGreenThread] = weakref.WeakValueDictionary()


def _green_loop() -> Loop | None:
    """The loop a thread started here runs on as a green thread; None means a real thread."""
    loop = events._get_running_loop()
    if loop is None:
        if _orig_get_ident() != _MAIN_IDENT:
            return None
        return _green.main_thread_loop()
    return loop if isinstance(loop, Loop) else None


def get_ident() -> int:
    """A nonzero integer identifying the current green thread (or OS thread outside them)."""
    gt = getattr(getcurrent(), "gt", None)
    if gt is None:
        return _orig_get_ident()
    return id(gt)


def current_thread() -> Any:
    """The ``Thread`` object of the current green thread (or OS thread outside them)."""
    gt = getattr(getcurrent(), "gt", None)
    if gt is None:
        return _real.current_thread()
    thread = _pythreads.get(gt)
    if thread is None:
        thread = _DummyGreenThread(gt)
    return thread


def enumerate() -> list[Any]:
    """All live threads: the real ones, the green threads started through ``Thread`` and the
    dummy ``Thread`` of each live green thread that asked for ``current_thread()``."""
    threads: list[Any] = _real.enumerate()
    threads += _green_active.values()
    threads += [t for t in list(_green_dummies.values()) if t.is_alive()]
    return threads


def active_count() -> int:
    """The number of live threads, green ones included (``len(enumerate())``)."""
    return len(enumerate())


def _excepthook(args: Any) -> None:
    # Whatever the program installed as threading.excepthook, looked up when it is needed.
    hook = getattr(sys.modules.get("threading"), "excepthook", None) or _real.excepthook
    try:
        hook(args)
    except Exception as exc:
        # What the original does when the hook itself fails.
        exc.__suppress_context__ = True
        del exc
        stderr = sys.stderr if sys.stderr is not None else getattr(args.thread, "_stderr", None)
        print("Exception in threading.excepthook:", file=stderr, flush=True)
        sys_hook = getattr(sys, "excepthook", None) or sys.__excepthook__
        sys_hook(*sys.exc_info())


_real_thread_init = _real.Thread.__init__


class Thread(_real.Thread):  # type: ignore[misc,name-defined]
    """``threading.Thread``, run as a green thread when started where a greenloop loop is."""

    _gl_gt: _green.GreenThread[None] | None = None
    _gl_done = False

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        if not name:
            # Named as the original names it, through the threading module's own counter
            # (the sealed copy's __init__ would not see a program or test replacing it).
            name = _newname("Thread-%d")
            if target is not None:
                try:
                    name += f" ({target.__name__})"
                except AttributeError:
                    pass
        _real_thread_init(self, group, target, name, args, kwargs, daemon=daemon)
        if not isinstance(self, Thread):
            # The original _MainThread / _DummyThread call ``Thread.__init__(self, ...)`` by
            # name, which after patching is this method: give them the original's, only.
            return
        if daemon is None:  # inherit from the creating thread, green or not
            self._daemonic = current_thread().daemon
        self._gl_on_done: list[Callable[[], object]] = []
        # The original reads threading.excepthook from its own namespace; honour the one the
        # program set on the (patched) module, for real and green threads alike.
        self._invoke_excepthook = self._gl_invoke_excepthook

    def _gl_invoke_excepthook(self, thread: Any) -> None:
        exc_type, exc_value, exc_tb = sys.exc_info()
        _excepthook(_real.ExceptHookArgs([exc_type, exc_value, exc_tb, thread]))

    def start(self) -> None:
        if not self._initialized:
            raise RuntimeError("thread.__init__() not called")
        if self._started.is_set():
            raise RuntimeError("threads can only be started once")
        loop = _green_loop()
        if loop is None:
            super().start()
            return
        gt = _green.spawn(self._gl_bootstrap)
        gt.name = self.name
        _pythreads[gt] = self
        self._gl_gt = gt
        self._ident = id(gt)
        self._native_id = _orig_get_native_id()
        _green_active[self._ident] = self
        self._started.set()

    def _gl_bootstrap(self) -> None:
        # threading.settrace() / setprofile() store the hooks in the module's globals.
        std = sys.modules.get("threading", _real)
        trace, profile = getattr(std, "_trace_hook", None), getattr(std, "_profile_hook", None)
        if trace is not None:
            sys.settrace(trace)
        if profile is not None:
            sys.setprofile(profile)
        try:
            self.run()
        except (asyncio.CancelledError, GreenletExit):
            raise  # cancellation, loop shutdown: the green thread machinery's business
        except KeyboardInterrupt as exc:
            # Ctrl-C landed in this green thread: it is meant for the main code.
            _raise_out_of_loop(self._gl_loop(), exc)
        except BaseException:
            self._invoke_excepthook(self)
        finally:
            self._gl_finish()

    def _gl_loop(self) -> Loop:
        assert self._gl_gt is not None
        loop: Loop = self._gl_gt.get_loop()  # type: ignore[assignment]
        return loop

    def _gl_finish(self) -> None:
        self._gl_done = True
        _green_active.pop(self._ident, None)  # type: ignore[arg-type]
        _pythreads.pop(self._gl_gt, None)  # it refers to its green thread: no cycle kept alive
        callbacks, self._gl_on_done = self._gl_on_done, []
        for callback in callbacks:
            callback()

    def is_alive(self) -> bool:
        if self._gl_gt is None:
            return bool(super().is_alive())
        return not self._gl_done

    def join(self, timeout: float | None = None) -> None:
        gt = self._gl_gt
        if gt is None:
            super().join(timeout)
            return
        if self is current_thread():
            raise RuntimeError("cannot join current thread")
        if self._gl_done:
            return
        if timeout is not None:
            timeout = max(timeout, 0.0)
        loop: Loop = gt.get_loop()  # type: ignore[assignment]
        if loop._thread_id is not None and loop._thread_id != _orig_get_ident():
            # From another OS thread: a real event, set from the loop's thread.
            done = _real.Event()
            loop.call_soon_threadsafe(self._gl_add_on_done, done.set)
            done.wait(timeout)
            return
        fut: asyncio.Future[None] = loop.create_future()
        self._gl_on_done.append(lambda: _green._set_result_unless_done(fut))
        try:
            _green.wait(fut, timeout, "Thread.join()")
        except TimeoutError:
            pass

    def _gl_add_on_done(self, callback: Callable[[], object]) -> None:
        if self._gl_done:
            callback()
        else:
            self._gl_on_done.append(callback)

    def __repr__(self) -> str:
        if self._gl_gt is None:
            return str(super().__repr__())
        status = "stopped" if self._gl_done else "started"
        if self._daemonic:
            status += " daemon"
        return f"<{type(self).__name__}({self._name}, {status} {self._ident}) green>"


class _DummyGreenThread(Thread):
    """The ``Thread`` object of a green thread that ``threading`` did not start (spawn())."""

    def __init__(self, gt: _green.GreenThread[Any]) -> None:
        super().__init__(name=gt.name, daemon=True)
        # Weak: _pythreads maps the green thread to this object, which must not keep it alive.
        self._gl_gt_ref = weakref.ref(gt)
        self._ident = id(gt)
        self._native_id = _orig_get_native_id()
        self._started.set()
        _pythreads[gt] = self
        _green_dummies[self._ident] = self

    @property
    def _gl_gt(self) -> _green.GreenThread[Any] | None:  # type: ignore[override]
        return self._gl_gt_ref()

    @property
    def _gl_done(self) -> bool:  # type: ignore[override]
        return not self.is_alive()

    def is_alive(self) -> bool:
        gt = self._gl_gt
        return gt is not None and not gt.done()

    def join(self, timeout: float | None = None) -> None:
        raise RuntimeError("cannot join a dummy thread")


class Timer(Thread):
    """Call a function after a number of seconds, on its own (green) thread; ``cancel()`` stops it."""

    def __init__(
        self,
        interval: float,
        function: Callable[..., object],
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from greenloop.green.threading import Event  # type: ignore[import-not-found,unused-ignore]

        self.interval = interval
        self.function = function
        self.args = args if args is not None else []
        self.kwargs = kwargs if kwargs is not None else {}
        self.finished = Event()

    def cancel(self) -> None:
        """Stop the timer if it hasn't finished yet."""
        self.finished.set()

    def run(self) -> None:
        self.finished.wait(self.interval)
        if not self.finished.is_set():
            self.function(*self.args, **self.kwargs)
        self.finished.set()


def _load_local() -> type:
    """CPython's ``_threading_local.local``, keyed on the green ``current_thread()``."""
    import _threading_local

    spec = importlib.util.spec_from_file_location(
        "greenloop._green_threading_local", _threading_local.__file__
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Its lock only guards dict bookkeeping that never switches: an OS-level RLock is right.
    module.__dict__.update(current_thread=current_thread, RLock=_real.RLock)
    cls: type = module.local
    return cls


local = _load_local()


def _after_fork_in_child() -> None:
    """As the original does for real threads: in a forked child only the thread that forked
    exists. Every other green thread is marked finished (``is_alive()`` is False, ``join()``
    returns, exit does not wait for it) and cancelled, so that it never resumes its work in
    the child if the child runs the loop: it gets CancelledError at its blocking point."""
    me = getattr(getcurrent(), "gt", None)
    for thread in list(_green_active.values()):
        gt = thread._gl_gt
        if gt is None or gt is me:
            continue
        thread._gl_finish()
        gt.cancel()
    if me is not None:
        _only_thread_in_child(me)


def _only_thread_in_child(me: Any) -> None:
    """A green thread forked: in the child it is the only thread, the main one is gone.

    The main thread's code is suspended in the loop (the greenlet that runs it gets control
    back when the loop stops); resumed in the child it would run the rest of the parent's
    program a second time (test_socketserver's forking server: the child went on running
    the test suite). So the loop never stops in the child, and the child ends when this
    thread does, as a process whose last thread returns does (status 0; Python's own
    buffers are flushed, atexit handlers do not run: the interpreter is not finalised).
    """
    loop = me.get_loop()
    loop.stop = _stay_running  # an instance attribute: every stop() of this loop, from now on

    def exit_child(_: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # closed or replaced: nothing to flush
                pass
        _os._exit(0)

    me.add_done_callback(exit_child)


def _stay_running() -> None:
    pass


if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)


def _shutdown() -> None:
    """At interpreter exit: join non-daemon green threads, then the original shutdown."""
    if _orig_get_ident() == _MAIN_IDENT:
        while True:
            pending = [
                t
                for t in list(_green_active.values())
                if not t.daemon and not t._gl_done and _joinable_at_exit(t)
            ]
            if not pending:
                break
            for thread in pending:
                thread.join()
    _orig_shutdown()


def _joinable_at_exit(thread: Thread) -> bool:
    gt = thread._gl_gt
    if gt is None:
        return False
    loop = gt.get_loop()
    # A green thread of a loop that is closed (asyncio.run returned) can never finish.
    return not loop.is_closed() and not loop.is_running()


# As the originals present themselves (reprs, ``threading.__all__`` checks): the functions and
# classes that patching puts into ``threading``.
_obj: Any
for _obj in (Thread, Timer, local, get_ident, current_thread, enumerate, active_count):
    _obj.__module__ = "threading"
del _obj
