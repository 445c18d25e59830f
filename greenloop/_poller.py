"""The I/O poller: which readiness API the loop waits on.

epoll is the default on Linux. Its registrations persist in the kernel between waits, so a
wait costs one ``epoll_wait`` however many fds are watched, and adding interest on an fd that
is already known is one ``epoll_ctl(MOD)``. ``poll`` is the fallback where epoll is missing.
``GREENLOOP_POLLER=epoll|poll|select`` overrides the choice (for tests and debugging).

Facts about epoll that this module depends on:

* Closing an fd removes it from the epoll set only when the last descriptor for the open file
  is closed. The loop's map may therefore still list an fd number whose file the kernel has
  forgotten, or (with a dup'ed twin still open) still watches under that number. When the
  number is reused by a new file and the loop asks for events on it again, we always issue
  ``EPOLL_CTL_MOD`` (even if the mask is unchanged): ENOENT is how we learn the number now
  names another file. Then the parts of the registration that belonged to the closed file are
  dropped (their callbacks cancelled), and the epoll set is rebuilt from the map so that a
  dup'ed twin's registration, which can no longer be deleted by fd, stops delivering events.
  asyncio's own loop raises FileNotFoundError in this situation, or silently never wakes.
* The loop dispatches events only for fds in its map and only for the kinds asked for.
"""

from __future__ import annotations

import os
import select
import selectors
from typing import Any

__all__ = ["default_selector", "poller_name"]


class _EpollSelector(selectors.EpollSelector):
    """``selectors.EpollSelector`` that detects and cleans up closed-and-reused fd numbers."""

    _selector: select.epoll
    _fd_to_key: dict[int, selectors.SelectorKey]

    # The green socket's register and unregister: an int fd of its own, checked by the caller,
    # without the generic path's file-object lookups and mapping views (selectors' register
    # and asyncio's _remove_reader cost a dozen Python calls, once per connection each).
    def register_fd(self, fd: int, events: int, data: Any) -> None:
        if fd in self._fd_to_key:
            raise KeyError(f"{fd!r} (FD {fd}) is already registered")
        self._selector.register(fd, _epoll_mask(events))
        self._fd_to_key[fd] = selectors.SelectorKey(fd, fd, events, data)

    def unregister_fd(self, fd: int) -> None:
        del self._fd_to_key[fd]
        try:
            self._selector.unregister(fd)
        except OSError:  # closed already: epoll forgot it by itself (as selectors tolerates)
            pass

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self.get_key(fileobj)
        try:
            self._selector.modify(key.fd, _epoll_mask(events))
        except FileNotFoundError:
            return self._reused(key, events, data)
        key = key._replace(events=events, data=data)
        self._fd_to_key[key.fd] = key
        return key

    def _reused(self, stale: selectors.SelectorKey, events: int, data: Any) -> selectors.SelectorKey:
        """``stale.fd`` was closed and now names a new file: keep only what is new."""
        if isinstance(data, tuple) and isinstance(stale.data, tuple) and len(data) == 2:
            # asyncio's (reader, writer) handles: those carried over from the old key were
            # registered for the closed file and must never run for the new one.
            fresh: list[Any] = []
            bits = (selectors.EVENT_READ, selectors.EVENT_WRITE)
            for bit, handle, old in zip(bits, data, stale.data, strict=True):
                if handle is not None and handle is old:
                    handle.cancel()
                    events &= ~bit
                    fresh.append(None)
                else:
                    fresh.append(handle)
            data = tuple(fresh)
        del self._fd_to_key[stale.fd]
        self._rebuild()
        if not events:
            return stale._replace(events=0, data=data)
        return self.register(stale.fileobj, events, data)

    def _rebuild(self) -> None:
        # O(registered fds), only when a reused fd number is detected.
        old = self._selector
        self._selector = select.epoll()
        for key in self._fd_to_key.values():
            self._selector.register(key.fd, _epoll_mask(key.events))
        old.close()


def _epoll_mask(events: int) -> int:
    mask = 0
    if events & selectors.EVENT_READ:
        mask |= select.EPOLLIN
    if events & selectors.EVENT_WRITE:
        mask |= select.EPOLLOUT
    return mask


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
