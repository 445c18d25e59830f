"""greenloop: an asyncio event loop on which threaded, blocking-style code scales.

Green threads and asyncio tasks share one scheduler; blocking-style calls become waits on
the loop. See README.md and docs/design.md.
"""

from __future__ import annotations

from ._hub import BlockingCallError
from ._loop import GreenTask, Loop
from ._runner import EventLoopPolicy, install, new_event_loop, run

__all__ = [
    "BlockingCallError",
    "EventLoopPolicy",
    "GreenTask",
    "Loop",
    "install",
    "new_event_loop",
    "run",
]
__version__ = "0.1.0"
