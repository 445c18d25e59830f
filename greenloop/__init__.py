"""greenloop: an asyncio event loop on which threaded, blocking-style code scales.

Green threads and asyncio tasks share one scheduler; blocking-style calls become waits on
the loop. See README.md and docs/design.md.
"""

from __future__ import annotations

import sys

from ._green import (
    GreenThread,
    await_,
    current_green_thread,
    sleep,
    spawn,
    wait_readable,
    wait_writable,
)
from ._hub import BlockingCallError
from ._loop import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN, GreenTask, Loop
from ._runner import EventLoopPolicy, install, new_event_loop, run
from .monkey import get_original, is_patched, patch_all

__all__ = [
    "PRIORITY_DEFAULT",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "BlockingCallError",
    "EventLoopPolicy",
    "GreenTask",
    "GreenThread",
    "Loop",
    "await_",
    "current_green_thread",
    "get_original",
    "install",
    "is_patched",
    "new_event_loop",
    "patch_all",
    "run",
    "sleep",
    "spawn",
    "wait_readable",
    "wait_writable",
]
__version__ = "0.1.0"

if sys.version_info >= (3, 12):
    from ._loop import eager_task_factory as eager_task_factory

    __all__ += ["eager_task_factory"]
