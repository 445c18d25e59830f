"""Cooperative ``_thread``: the low-level thread API over green threads.

``start_new_thread`` starts a green thread where a greenloop loop is (see
``threading_thread``), a real thread elsewhere; locks are the green locks, which behave as the
originals when used from real threads.
"""

from __future__ import annotations

import _thread as _thread_module
import asyncio
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

from greenloop import _green

from . import threading as _green_threading
from .signal import raise_out_of_loop as _raise_out_of_loop
from .threading_thread import _green_loop, get_ident, local

__implements__ = [
    "start_new_thread",
    "start_new",
    "allocate_lock",
    "allocate",
    "get_ident",
    "RLock",
    "_local",
    "_count",
]
__all__ = ["RLock", "allocate", "allocate_lock", "get_ident", "start_new", "start_new_thread"]


_orig_start_new_thread = _thread_module.start_new_thread
_orig_count = _thread_module._count
_local = local


def start_new_thread(
    function: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None, /
) -> int:
    """Start a new (green) thread running ``function(*args, **kwargs)``; return its ident."""
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")
    loop = _green_loop()
    if loop is None:
        return _orig_start_new_thread(function, args, kwargs or {})

    def bootstrap() -> None:
        global _started_alive
        _started_alive += 1
        try:
            function(*args, **(kwargs or {}))
        except SystemExit:
            pass
        except KeyboardInterrupt as exc:
            # Ctrl-C landed in this green thread: it is meant for the main code.
            _raise_out_of_loop(loop, exc)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            _report(function, exc)
        finally:
            _started_alive -= 1

    gt = _green.spawn(bootstrap)
    return id(gt)


start_new = start_new_thread


def _report(function: object, exc: BaseException) -> None:
    """What CPython does with an exception escaping a ``_thread`` thread."""
    msg = "Exception ignored in thread started by"
    # 3.13 names the function in the message and passes no object; earlier versions pass it.
    err_msg, obj = (f"{msg} {function!r}", None) if sys.version_info >= (3, 13) else (msg, function)
    hook = sys.unraisablehook
    if hook is not sys.__unraisablehook__:
        # A hook the program installed: give it the fields of sys.UnraisableHookArgs (the
        # default C hook accepts only the real struct, which Python code cannot create).
        hook(
            types.SimpleNamespace(  # type: ignore[arg-type]
                exc_type=type(exc),
                exc_value=exc,
                exc_traceback=exc.__traceback__,
                err_msg=err_msg,
                object=obj,
            )
        )
        return
    print(f"{msg}: {function!r}" if obj is not None else err_msg, file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


# Classes, not functions: stdlib code stores them as class attributes (``locktype =
# thread.allocate_lock``) and calls them through ``self``, which must not bind.
allocate_lock = _green_threading.Lock
allocate = allocate_lock
RLock = _green_threading.RLock


def _count() -> int:
    """Threads started by this module (and threading) that are still alive, green ones too.

    greenloop's own resolver threads are left out: the stdlib has no such threads.
    """
    from ._realthreads import internal_threads_alive  # here: it imports greenloop.monkey

    return _orig_count() + _started_alive - internal_threads_alive()


_started_alive = 0
