"""Cooperative ``selectors``: the stdlib selector classes over the cooperative ``select``.

The stdlib binds each class's system call when the class is created
(``EpollSelector._selector_cls = select.epoll``), so patching ``select`` alone does not reach
them; these subclasses rebind it. Everything else, the key bookkeeping included, is the
stdlib's own code.
"""

from __future__ import annotations

import selectors as _selectors
import sys
from typing import Any

from . import select as _green_select

__implements__ = ["SelectSelector", "PollSelector", "EpollSelector", "DefaultSelector"]
__all__ = ["DefaultSelector", "EpollSelector", "PollSelector", "SelectSelector"]


class SelectSelector(_selectors.SelectSelector):
    """``selectors.SelectSelector`` whose waits are cooperative."""

    def _select(self, r: Any, w: Any, _: Any, timeout: float | None = None) -> Any:
        r, w, x = _green_select.select(r, w, w, timeout)
        return r, w + x, []


class PollSelector(_selectors.PollSelector):
    """``selectors.PollSelector`` whose waits are cooperative."""

    _selector_cls = _green_select.poll


class EpollSelector(_selectors.EpollSelector):
    """``selectors.EpollSelector`` whose waits are cooperative."""

    _selector_cls = _green_select.epoll  # type: ignore[assignment]


DefaultSelector = EpollSelector


def _after_patch() -> None:
    # Stdlib modules that copied a selector class when they were imported, before patching.
    socketserver = sys.modules.get("socketserver")
    if socketserver is not None and getattr(socketserver, "_ServerSelector", None) in (
        _selectors.PollSelector,
        _selectors.SelectSelector,
    ):
        socketserver._ServerSelector = PollSelector  # type: ignore[attr-defined]


# The rest (BaseSelector, SelectorKey, EVENT_READ, ...) is the original module's.
for _name in dir(_selectors):
    if not _name.startswith("__") and _name not in globals():
        globals()[_name] = getattr(_selectors, _name)
del _name
