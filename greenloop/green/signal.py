"""Cooperative ``signal``: Python-level handlers run on the loop, as green threads.

CPython runs a signal handler in the main thread between two bytecodes of whatever runs
there: with greenloop that may be the hub in the middle of dispatching callbacks, where a
handler that blocks (sleeps, takes a lock, writes to a socket) would stall or reorder the
loop. While a greenloop loop runs on the main thread, the handler installed here instead
schedules the program's handler (``call_soon_threadsafe``, which also wakes a sleeping loop)
to run on a green thread of its own, where blocking calls are cooperative.

Any exception the handler raises (``sys.exit()`` in a SIGTERM handler, ``KeyboardInterrupt``,
or an ordinary error) propagates out of the loop, that is out of ``run_forever()`` /
``asyncio.run()`` or out of the blocking call that the main code made with no loop running:
in plain Python it would be raised in the main thread wherever it was, which under greenloop
is the code that runs the loop. It is re-raised by the loop itself, from a ready-queue entry
that does not catch it, so it leaves the loop exactly as an exception raised by a handler
during asyncio's ``select()`` does, and it is neither logged nor swallowed. With no loop
running, the handler runs at once, as in plain Python.

``SIG_DFL``, ``SIG_IGN`` and ``default_int_handler`` are installed as they are, so that
``getsignal(SIGINT) is default_int_handler`` still holds (``asyncio.run`` relies on it to
install its own Ctrl-C handling) and Ctrl-C raises ``KeyboardInterrupt`` at once, even in a
green thread that never blocks. If it lands in a green thread started through ``threading``
or ``_thread``, that thread ends and the ``KeyboardInterrupt`` is raised out of the loop as
above, to the main code, where plain Python would have raised it. ``getsignal`` returns what
the program installed.
"""

from __future__ import annotations

import signal as _signal
from asyncio import CancelledError, base_events, events
from collections.abc import Callable
from types import FrameType
from typing import Any

from greenlet import GreenletExit

from greenloop import _green
from greenloop._loop import Loop

_run_until_complete_cb = base_events._run_until_complete_cb  # type: ignore[attr-defined]

__implements__ = ["signal", "getsignal"]
__all__ = ["getsignal", "raise_out_of_loop", "signal"]

_orig_signal = _signal.signal
_orig_getsignal = _signal.getsignal
_PASS_THROUGH = (_signal.SIG_DFL, _signal.SIG_IGN, _signal.default_int_handler, None)

_Handler = Callable[[int, FrameType | None], Any] | int | _signal.Handlers | None


class _Reraise(events.Handle):
    """A ready-queue entry that raises: ``Handle._run`` would log an ordinary exception."""

    __slots__ = ()

    def _run(self) -> None:
        # The run_until_complete() that this exception aborts may already have its completion
        # callback queued (the future it waited on finished in this same iteration). Left in
        # the queue, it would stop the *next* run_forever() at once ("Event loop stopped
        # before Future completed"). Runs are never nested, so any such callback is stale.
        for handle in self._loop._ready:  # type: ignore[attr-defined]
            if handle._callback is _run_until_complete_cb:
                handle.cancel()
        raise self._args[0]


def raise_out_of_loop(loop: Loop, exc: BaseException) -> None:
    """Make ``exc`` leave ``loop`` at its next iteration, to the code that runs it.

    Call on the loop's OS thread while it runs: the hub is the only reader of the ready
    queue and runs on this thread, so appending to it is safe.
    """
    loop._ready.append(_Reraise(_reraise_marker, (exc,), loop, None))


def _run_handler(
    loop: Loop, handler: Callable[[int, FrameType | None], Any], signum: int, frame: FrameType | None
) -> None:
    """Body of the green thread a handler runs on; hands its exception to the loop."""
    try:
        handler(signum, frame)
    except (CancelledError, GreenletExit):
        raise  # the green thread was cancelled or the loop closed: not the handler's error
    except BaseException as exc:
        raise_out_of_loop(loop, exc)  # to the code that runs the loop (module docstring)
        del exc


def _reraise_marker(exc: BaseException) -> None:
    """The callback _Reraise names in debug reprs; the raise happens in _Reraise._run."""
    raise exc


class _OnLoop:
    """The handler CPython calls: runs the program's handler on a green thread when it can."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[[int, FrameType | None], Any]) -> None:
        self.handler = handler

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        loop = events._get_running_loop()
        if not isinstance(loop, Loop) or loop.is_closed():
            self.handler(signum, frame)
            return
        loop.call_soon_threadsafe(_green.spawn, _run_handler, loop, self.handler, signum, frame)


def signal(signalnum: int, handler: _Handler, /) -> _Handler:
    """Set the action for a signal; Python handlers run on a green thread while the loop runs."""
    installed = handler if handler in _PASS_THROUGH or not callable(handler) else _OnLoop(handler)
    previous = _orig_signal(signalnum, installed)  # type: ignore[arg-type]
    return previous.handler if isinstance(previous, _OnLoop) else previous


def getsignal(signalnum: int, /) -> _Handler:
    """The handler the program installed for a signal."""
    current = _orig_getsignal(signalnum)
    return current.handler if isinstance(current, _OnLoop) else current
