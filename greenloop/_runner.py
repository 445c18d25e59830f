"""Installing greenloop: new_event_loop, EventLoopPolicy, install, run."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._loop import Loop

_T = TypeVar("_T")

__all__ = ["EventLoopPolicy", "install", "new_event_loop", "run"]


def new_event_loop() -> Loop:
    """Return a new greenloop event loop (usable as asyncio's ``loop_factory``)."""
    return Loop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An asyncio event loop policy whose loops are greenloop loops.

    ``asyncio.set_event_loop_policy(greenloop.EventLoopPolicy())``
    """

    def _loop_factory(self) -> Loop:  # type: ignore[override]
        return new_event_loop()


def install() -> None:
    """Make greenloop the loop asyncio creates (shorthand for setting the policy)."""
    if sys.version_info >= (3, 14):
        raise RuntimeError(
            "greenloop.install() relies on event loop policies, which are deprecated "
            "from Python 3.14; use greenloop.run(main()) or "
            "asyncio.run(main(), loop_factory=greenloop.new_event_loop) instead"
        )
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run a coroutine on a new greenloop loop, like :func:`asyncio.run`."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
