"""Cooperative ``select``: ``select()``, ``poll()`` and ``epoll()`` that wait on the loop.

How the waits work: an epoll descriptor is itself pollable, readable when one of the fds in
its interest list is ready. So every stand-in keeps (or, for ``select()``, makes) a private
epoll holding the caller's fds and the green thread waits for *that one fd* to become
readable on the loop (``greenloop.wait_readable``). The fds the caller passed never touch the
loop's own selector, so two green threads may watch the same fd, and the loop's
one-waiter-per-fd rule does not apply. After the wake-up the real call is made with a zero
timeout, so the result (and every error) is exactly what the original would report.

Regular files cannot be added to an epoll set (EPERM); poll and select report them ready at
once, and the zero-timeout call does the same here before any wait.

On an OS thread with no greenloop loop, and for zero timeouts, the originals are called.
"""

from __future__ import annotations

import math
import select as _select_module
import time as _time
from typing import Any

from greenloop import _green
from greenloop._hub import BlockingCallError

__implements__ = ["select", "poll", "epoll"]
__all__ = ["epoll", "poll", "select"]

_orig_select = _select_module.select
_orig_poll = _select_module.poll
_orig_epoll = _select_module.epoll
_monotonic = _time.monotonic

_EPOLLIN = _select_module.EPOLLIN
_EPOLLOUT = _select_module.EPOLLOUT
_EPOLLPRI = _select_module.EPOLLPRI
_POLL_DEFAULT = _select_module.POLLIN | _select_module.POLLPRI | _select_module.POLLOUT


def _fileno(obj: Any) -> int:
    if isinstance(obj, int):
        return obj
    return int(obj.fileno())


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else _monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - _monotonic())


def _wait_epoll(ep: Any, timeout: float | None) -> bool:
    """Wait until the private epoll ``ep`` has a ready fd; False if ``timeout`` passed."""
    try:
        _green.wait_readable(ep.fileno(), timeout)
    except TimeoutError:
        return False
    return True


def select(rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None, /) -> Any:
    """Wait until one or more file descriptors are ready for some kind of I/O."""
    if timeout is not None:
        if not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be a float or None")
        timeout = float(timeout)
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    if timeout == 0:
        return _orig_select(rlist, wlist, xlist, 0)
    loop = _green._resolve_loop("select.select()")
    if loop is None:
        return _orig_select(rlist, wlist, xlist, timeout)
    # Iterables may be consumed only once; select() accepts any sequence. Lists and tuples go
    # to the original as they are: it reads a list's length as it goes, so a list that
    # fileno() mutates is handled exactly as the original handles it.
    rlist, wlist, xlist = (x if type(x) in (list, tuple) else list(x) for x in (rlist, wlist, xlist))
    ready = _orig_select(rlist, wlist, xlist, 0)
    if ready[0] or ready[1] or ready[2]:
        return ready
    masks: dict[int, int] = {}
    for objs, mask in ((rlist, _EPOLLIN), (wlist, _EPOLLOUT), (xlist, _EPOLLPRI)):
        for obj in objs:
            fd = _fileno(obj)
            masks[fd] = masks.get(fd, 0) | mask
    if not masks:  # select() with no fds is a sleep
        if timeout is None:
            raise BlockingCallError(
                "select.select() with no file descriptors and no timeout would wait forever"
            )
        _green.sleep(timeout)
        return [], [], []
    deadline = _deadline(timeout)
    with _orig_epoll() as ep:
        for fd, mask in masks.items():
            try:
                ep.register(fd, mask)
            except PermissionError:  # a regular file: always ready, reported below
                return _orig_select(rlist, wlist, xlist, 0)
        while True:
            if not _wait_epoll(ep, _remaining(deadline)):
                return [], [], []
            ready = _orig_select(rlist, wlist, xlist, 0)
            if ready[0] or ready[1] or ready[2]:
                return ready
            # Readiness seen by the epoll was consumed before we looked (another reader):
            # drain the private epoll's report and wait again.
            ep.poll(0)


class poll:
    """Cooperative ``select.poll()`` object: register fds, then ``poll(timeout_ms)``."""

    def __init__(self) -> None:
        self._poll = _orig_poll()
        self._epoll = _orig_epoll()
        self._unpollable: set[int] = set()  # regular files: always ready

    def register(self, fd: Any, eventmask: int = _POLL_DEFAULT, /) -> None:
        fd = _fileno(fd)
        self._poll.register(fd, eventmask)
        # poll and epoll share event bit values on Linux (POLLIN == EPOLLIN, ...).
        try:
            try:
                self._epoll.modify(fd, eventmask)
            except FileNotFoundError:
                self._epoll.register(fd, eventmask)
        except PermissionError:
            self._unpollable.add(fd)

    def modify(self, fd: Any, eventmask: int, /) -> None:
        fd = _fileno(fd)
        self._poll.modify(fd, eventmask)
        if fd not in self._unpollable:
            try:
                self._epoll.modify(fd, eventmask)
            except FileNotFoundError:  # closed and reused: the kernel forgot it
                self._epoll.register(fd, eventmask)

    def unregister(self, fd: Any, /) -> None:
        fd = _fileno(fd)
        self._poll.unregister(fd)
        self._unpollable.discard(fd)
        try:
            self._epoll.unregister(fd)
        except OSError:  # already closed: the kernel dropped it from the set
            pass

    def poll(self, timeout: float | None = None, /) -> list[tuple[int, int]]:
        """Like ``select.poll().poll``: ``timeout`` in milliseconds, None or negative = forever."""
        if timeout is not None:
            timeout = math.ceil(timeout) if isinstance(timeout, float) else int(timeout)
            if timeout < 0:
                timeout = None
        if timeout == 0:
            return self._poll.poll(0)
        loop = _green._resolve_loop("select.poll().poll()")
        if loop is None:
            return self._poll.poll(timeout)
        events = self._poll.poll(0)
        if events or self._unpollable:
            return events
        deadline = _deadline(None if timeout is None else timeout / 1000)
        while True:
            if not _wait_epoll(self._epoll, _remaining(deadline)):
                return []
            events = self._poll.poll(0)
            if events:
                return events
            self._epoll.poll(0)

    def __del__(self) -> None:
        self._epoll.close()


class epoll:
    """Cooperative ``select.epoll``: the real epoll object, with a ``poll`` that waits on the loop."""

    def __init__(self, sizehint: int = -1, flags: int = 0) -> None:
        self._epoll = _orig_epoll(sizehint, flags)

    @classmethod
    def fromfd(cls, fd: int, /) -> epoll:
        obj = cls.__new__(cls)
        obj._epoll = _orig_epoll.fromfd(fd)
        return obj

    @property
    def closed(self) -> bool:
        return bool(self._epoll.closed)

    def close(self) -> None:
        self._epoll.close()

    def fileno(self) -> int:
        return int(self._epoll.fileno())

    def register(self, fd: Any, eventmask: int = _EPOLLIN | _EPOLLPRI | _EPOLLOUT) -> None:
        self._epoll.register(fd, eventmask)

    def modify(self, fd: Any, eventmask: int) -> None:
        self._epoll.modify(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        self._epoll.unregister(fd)

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        """Wait for events; ``timeout`` in seconds, None or negative = forever."""
        if timeout is not None:
            timeout = float(timeout)
            if timeout < 0:
                timeout = None
        if timeout == 0:
            return self._epoll.poll(0, maxevents)
        loop = _green._resolve_loop("select.epoll().poll()")
        if loop is None:
            return self._epoll.poll(-1 if timeout is None else timeout, maxevents)
        events = self._epoll.poll(0, maxevents)
        if events:
            return events
        deadline = _deadline(timeout)
        while True:
            if not _wait_epoll(self._epoll, _remaining(deadline)):
                return []
            events = self._epoll.poll(0, maxevents)
            if events:
                return events

    def __enter__(self) -> epoll:
        if self._epoll.closed:
            raise ValueError("I/O operation on closed epoll object")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Everything else (constants, error, devpoll-less platforms' names) is the original module's.
for _name in dir(_select_module):
    if not _name.startswith("__") and _name not in globals():
        globals()[_name] = getattr(_select_module, _name)
del _name
