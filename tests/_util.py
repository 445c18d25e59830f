"""Helpers for the behaviour tests: the loop factories and small utilities."""

from __future__ import annotations

import asyncio
import gc
import re
import selectors
import socket
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import greenlet
import pytest

import greenloop
from greenloop._poller import poller_name

_T = TypeVar("_T")

# Contexts passed to a loop's default exception handler (see conftest's leak check).
LOOP_ERRORS: list[dict[str, Any]] = []
# Every loop created through a factory (the leak check fails a test that leaves one open).
LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

# A generous bound on any single wait, so that a hang fails the test instead of the run.
TIMEOUT = 10.0


# The readiness API greenloop's loops use in this run (epoll unless GREENLOOP_POLLER says).
POLLER = poller_name()
_SELECTOR: type[selectors.BaseSelector] = getattr(
    selectors, {"epoll": "EpollSelector", "poll": "PollSelector", "select": "SelectSelector"}[POLLER]
)
needs_epoll = pytest.mark.skipif(
    POLLER != "epoll",
    reason=f"checks what epoll does (errors at registration, files it forgets on close); "
    f"GREENLOOP_POLLER={POLLER} keeps no per-file state in the kernel",
)
not_select = pytest.mark.skipif(
    POLLER == "select", reason="select() cannot watch descriptors numbered 1024 (FD_SETSIZE) or more"
)


class LoopFactory:
    """A named loop factory whose loops record calls to their default exception handler."""

    def __init__(self, name: str, make: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.name = name
        self._make = make

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = self._make()
        default = loop.default_exception_handler

        def recording_default_handler(context: dict[str, Any]) -> None:
            LOOP_ERRORS.append(context)
            default(context)

        # call_exception_handler() calls self.default_exception_handler when no custom
        # handler is set: shadowing it on the instance records those calls and leaves
        # get_exception_handler() / set_exception_handler() as they are.
        loop.default_exception_handler = recording_default_handler  # type: ignore[method-assign]
        LOOPS.add(loop)
        return loop

    def __repr__(self) -> str:
        return f"LoopFactory({self.name!r})"


LOOP_FACTORIES: dict[str, LoopFactory] = {
    # asyncio's loop on the same readiness API as greenloop's (GREENLOOP_POLLER), so that a
    # comparison never sets epoll's behaviour against poll's or select's.
    "asyncio": LoopFactory("asyncio", lambda: asyncio.SelectorEventLoop(_SELECTOR())),
    "greenloop": LoopFactory("greenloop", greenloop.new_event_loop),
}
LOOP_NAMES = list(LOOP_FACTORIES)


def run(loop: asyncio.AbstractEventLoop, aw: Awaitable[_T], timeout: float = TIMEOUT) -> _T:
    """Run ``aw`` to completion on ``loop``, failing instead of hanging past ``timeout``."""

    async def bounded() -> _T:
        return await asyncio.wait_for(aw, timeout)

    return loop.run_until_complete(bounded())


def error_of(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[type[BaseException], str]:
    """The type and message of the exception ``fn(*args, **kwargs)`` raises."""
    try:
        fn(*args, **kwargs)
    except BaseException as exc:
        return type(exc), str(exc)
    raise AssertionError(f"{fn!r} did not raise")


_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def reference_error(op: Callable[[asyncio.AbstractEventLoop], Any]) -> tuple[type[BaseException], str]:
    """What ``op(loop)`` raises on asyncio's own loop: the spec for every loop."""
    ref = LOOP_FACTORIES["asyncio"]()
    try:
        return error_of(op, ref)
    finally:
        ref.close()


def assert_same_error(loop: asyncio.AbstractEventLoop, op: Callable[[asyncio.AbstractEventLoop], Any]) -> str:
    """``op(loop)`` raises exactly what it raises on asyncio's loop; return the message."""
    expected_type, expected_msg = reference_error(op)
    got_type, got_msg = error_of(op, loop)
    assert got_type is expected_type, (got_type, got_msg, expected_msg)
    assert _ADDRESS.sub("", got_msg) == _ADDRESS.sub("", expected_msg)
    return got_msg


def has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def live_greenlets() -> list[greenlet.greenlet]:
    """Greenlets that are started or startable and not finished, main greenlets excepted.

    The leak check freezes every object that existed before a test (gc.freeze), so this
    scans only what the test created. Main greenlets (one per thread) have no parent.
    """
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, greenlet.greenlet) and not obj.dead and obj.parent is not None
    ]
