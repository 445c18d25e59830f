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
from collections.abc import Callable
from typing import Any

from greenloop import _green

from .threading_thread import _green_loop, get_ident, local

__implements__ = [
    "start_new_thread",
    "start_new",
    "allocate_lock",
    "allocate",
    "get_ident",
    "RLock",
    "_local",
]
__all__ = ["RLock", "allocate", "allocate_lock", "get_ident", "start_new", "start_new_thread"]

_orig_start_new_thread = _thread_module.start_new_thread
_local = local


def start_new_thread(
    function: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None, /
) -> int:
    """Start a new (green) thread running ``function(*args, **kwargs)``; return its ident."""
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")
    if _green_loop() is None:
        return _orig_start_new_thread(function, args, kwargs or {})

    def bootstrap() -> None:
        try:
            function(*args, **(kwargs or {}))
        except SystemExit:
            pass
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
                raise
            # What CPython prints for an exception escaping a _thread thread.
            print(f"Exception ignored in thread started by: {function!r}", file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)

    gt = _green.spawn(bootstrap)
    return id(gt)


start_new = start_new_thread


def allocate_lock() -> Any:
    """A new (green) lock object."""
    from greenloop.green.threading import Lock  # type: ignore[import-not-found,unused-ignore]

    return Lock()


allocate = allocate_lock


def RLock() -> Any:
    """A new (green) reentrant lock."""
    from greenloop.green.threading import RLock as _RLock  # type: ignore[import-not-found,unused-ignore]

    return _RLock()
