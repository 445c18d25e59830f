"""Cooperative ``signal``: Python-level handlers run on the loop, as green threads.

CPython runs a signal handler in the main thread between two bytecodes of whatever runs
there: with greenloop that may be the hub in the middle of dispatching callbacks, where a
handler that blocks (sleeps, takes a lock, writes to a socket) would stall or reorder the
loop. While a greenloop loop runs on the main thread, the handler installed here instead
schedules the program's handler (``call_soon_threadsafe``, which also wakes a sleeping loop)
to run on a green thread of its own, where blocking calls are cooperative. An exception it
raises (``sys.exit()`` in a SIGTERM handler, ``KeyboardInterrupt``) propagates out of the
loop to the main code, as it would reach the main thread in plain Python. With no loop
running, the handler runs at once, as in plain Python.

``SIG_DFL``, ``SIG_IGN`` and ``default_int_handler`` are installed as they are (Ctrl-C raises
``KeyboardInterrupt`` immediately). ``getsignal`` returns what the program installed.
"""

from __future__ import annotations

import signal as _signal
from asyncio import events
from collections.abc import Callable
from types import FrameType
from typing import Any

from greenloop import _green
from greenloop._loop import Loop

__implements__ = ["signal", "getsignal"]
__all__ = ["getsignal", "signal"]

_orig_signal = _signal.signal
_orig_getsignal = _signal.getsignal
_PASS_THROUGH = (_signal.SIG_DFL, _signal.SIG_IGN, _signal.default_int_handler, None)

_Handler = Callable[[int, FrameType | None], Any] | int | _signal.Handlers | None


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
        loop.call_soon_threadsafe(_green.spawn, self.handler, signum, frame)


def signal(signalnum: int, handler: _Handler, /) -> _Handler:
    """Set the action for a signal; Python handlers run on a green thread while the loop runs."""
    installed = handler if handler in _PASS_THROUGH or not callable(handler) else _OnLoop(handler)
    previous = _orig_signal(signalnum, installed)  # type: ignore[arg-type]
    return previous.handler if isinstance(previous, _OnLoop) else previous


def getsignal(signalnum: int, /) -> _Handler:
    """The handler the program installed for a signal."""
    current = _orig_getsignal(signalnum)
    return current.handler if isinstance(current, _OnLoop) else current
