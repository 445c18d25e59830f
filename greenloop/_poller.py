"""The I/O poller: which readiness API the loop waits on.

epoll is the default on Linux. Its registrations persist in the kernel between waits, so a
wait costs one ``epoll_wait`` however many fds are watched, and adding interest on an fd that
is already known is one ``epoll_ctl(MOD)``. ``poll`` is the fallback where epoll is missing.
``GREENLOOP_POLLER=epoll|poll|select`` overrides the choice (for tests and debugging).

Facts about epoll that this module depends on:

* Closing an fd removes it from the epoll set only when the last descriptor for the open file
  is closed. The loop's own map may therefore still list an fd number that the kernel has
  forgotten; when that number is reused by a new socket, ``MOD`` fails with ENOENT. We then
  register afresh instead of failing (asyncio's own selector raises FileNotFoundError here).
* Events are delivered for fd numbers, and the loop only dispatches events for fds in its map
  and only for the event kinds currently asked for, so a reused number never sees events it
  did not ask for. A dup'ed descriptor that stays open after its twin is closed can still
  raise readiness for the old file; callbacks treat readiness as a hint and retry on
  ``BlockingIOError``, so such a spurious wake-up costs one failed syscall, never data.
"""

from __future__ import annotations

import errno
import os
import selectors
from typing import Any

__all__ = ["default_selector", "poller_name"]


class _EpollSelector(selectors.EpollSelector):
    """``selectors.EpollSelector`` that survives a closed-and-reused fd number."""

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        try:
            return super().modify(fileobj, events, data)
        except FileNotFoundError:
            # The kernel dropped the fd when it was closed; the number now names a new file.
            # super().modify() already removed the stale key from the map.
            return self.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        try:
            return super().unregister(fileobj)
        except OSError as exc:  # pragma: no cover - selectors already ignores these
            if exc.errno in (errno.EBADF, errno.ENOENT):
                raise KeyError(fileobj) from None
            raise


_POLLERS: dict[str, type[selectors.BaseSelector]] = {"select": selectors.SelectSelector}
if hasattr(selectors, "PollSelector"):
    _POLLERS["poll"] = selectors.PollSelector
if hasattr(selectors, "EpollSelector"):
    _POLLERS["epoll"] = _EpollSelector


def poller_name() -> str:
    """The poller new loops use: ``$GREENLOOP_POLLER`` if set, else the best available."""
    name = os.environ.get("GREENLOOP_POLLER", "").strip().lower()
    if name:
        if name not in _POLLERS:
            raise ValueError(
                f"GREENLOOP_POLLER={name!r} is not available on this system; "
                f"choose one of {', '.join(sorted(_POLLERS))} or unset it"
            )
        return name
    for name in ("epoll", "poll", "select"):
        if name in _POLLERS:
            return name
    raise AssertionError("unreachable: select is always available")  # pragma: no cover


def default_selector() -> selectors.BaseSelector:
    return _POLLERS[poller_name()]()
