"""Making the loop under test (greenloop, or asyncio's own as the reference) the one asyncio's
test suite gets, and counting which loops the tests really ran on.

``test.test_asyncio`` obtains loops in four ways, and each is redirected in the greenloop run:

* the policy (``asyncio.new_event_loop()``, ``asyncio.run``, ``IsolatedAsyncioTestCase``):
  greenloop's policy is installed before every test (see ``_worker``), and
  ``asyncio.DefaultEventLoopPolicy`` is rebound to it, because ``set_event_loop_policy(None)``
  (which many tests call in tearDown) makes asyncio instantiate ``asyncio.DefaultEventLoopPolicy``
  afresh on the next ``get_event_loop_policy()``;
* ``asyncio.SelectorEventLoop(selector)`` / ``asyncio.EventLoop()`` (the loop-parametrised
  mixins of test_events, test_sendfile and test_sock_lowlevel, and the functional tests of
  test_server, test_buffered_proto, test_sslproto, test_unix_events): rebound to a
  ``greenloop.Loop`` subclass that turns the selector argument into greenloop's own choice of
  poller, so the Select/Poll/EPoll variants run greenloop over select, poll and epoll;
* ``asyncio.BaseEventLoop()`` doubles built by a few modules: see ``_adapt``;
* ``test_utils.TestLoop``, the virtual-clock double: left alone (its clock hooks into
  ``BaseEventLoop._run_once``, which greenloop replaces), so those tests exercise Task and
  Future classes on the double in both runs and are reported as not running on greenloop.

Every loop constructed in the worker is counted by kind (``count_loops``), per test, so the
runner can assert that the greenloop run created no asyncio loop and report how many tests ran
on greenloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
from asyncio import base_events
from collections import Counter
from collections.abc import Iterator
from typing import Any

__all__ = ["LOOP_NAMES", "count_loops", "install", "make_loop", "new_policy"]

LOOP_NAMES = ("greenloop", "asyncio")

# asyncio's own classes, captured before install() rebinds the public names.
_ASYNCIO_SELECTOR_LOOP: type[asyncio.AbstractEventLoop] = asyncio.SelectorEventLoop
_ASYNCIO_POLICY: type[asyncio.AbstractEventLoopPolicy] = asyncio.DefaultEventLoopPolicy
_ORIGINAL_INIT = base_events.BaseEventLoop.__init__

# Which GREENLOOP_POLLER value stands for the selector a test passed to SelectorEventLoop().
_POLLER_OF: dict[type[selectors.BaseSelector], str] = {selectors.SelectSelector: "select"}
if hasattr(selectors, "PollSelector"):
    _POLLER_OF[selectors.PollSelector] = "poll"
if hasattr(selectors, "EpollSelector"):
    _POLLER_OF[selectors.EpollSelector] = "epoll"

_loop_name: str | None = None
_loop_counts: Counter[str] = Counter()
_greenloop: Any = None  # the greenloop module, imported only for the greenloop run


def _is_greenloop(loop_type: type) -> bool:
    # By module name rather than isinstance, so the asyncio run never imports greenloop.
    return any(cls.__module__.partition(".")[0] == "greenloop" for cls in loop_type.__mro__)


def _kind(loop: object) -> str:
    """greenloop, asyncio (asyncio's concrete loop), or double (BaseEventLoop, TestLoop...)."""
    if _is_greenloop(type(loop)):
        return "greenloop"
    if isinstance(loop, _ASYNCIO_SELECTOR_LOOP):
        return "asyncio"
    return "double"


def _counting_init(self: base_events.BaseEventLoop, *args: Any, **kwargs: Any) -> None:
    # Every loop class, greenloop's included, runs BaseEventLoop.__init__ exactly once.
    _loop_counts[_kind(self)] += 1
    _ORIGINAL_INIT(self, *args, **kwargs)


def count_loops() -> dict[str, int]:
    """Loops constructed since the last call, by kind; resets the counts."""
    counts = dict(_loop_counts)
    _loop_counts.clear()
    return counts


@contextlib.contextmanager
def _forced_poller(name: str | None) -> Iterator[None]:
    # GREENLOOP_POLLER is greenloop's documented switch for the poller of new loops. The
    # worker creates these loops on its main thread, so the brief change of the process
    # environment cannot leak into a loop created concurrently elsewhere.
    if name is None:
        yield
        return
    old = os.environ.get("GREENLOOP_POLLER")
    os.environ["GREENLOOP_POLLER"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["GREENLOOP_POLLER"]
        else:
            os.environ["GREENLOOP_POLLER"] = old


def _make_selector_loop_class(greenloop: Any) -> type:
    loop_cls: type = greenloop.Loop

    class _AnyGreenloop(type):
        # isinstance(loop, asyncio.SelectorEventLoop) must stay true for the loops greenloop's
        # policy creates (plain greenloop.Loop), as it is for asyncio's own policy loops.
        def __instancecheck__(cls, obj: object) -> bool:
            return isinstance(obj, loop_cls)

        def __subclasscheck__(cls, sub: type) -> bool:
            return issubclass(sub, loop_cls)

    class SelectorEventLoop(loop_cls, metaclass=_AnyGreenloop):  # type: ignore[misc]
        """``asyncio.SelectorEventLoop`` in the greenloop run: a greenloop loop whose poller
        is the kind of selector the test asked for (greenloop always opens its own)."""

        def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
            poller = None
            if selector is not None:
                poller = _POLLER_OF.get(type(selector))
                if poller is None:
                    raise TypeError(
                        f"compat: no greenloop poller stands for {type(selector).__name__}; "
                        "teach compat/_loops.py about it"
                    )
                selector.close()
            with _forced_poller(poller):
                super().__init__()
            if poller is not None:
                # Guard against GREENLOOP_POLLER being ignored: the variant would silently
                # test the default poller under the wrong name.
                wanted = next(t for t, n in _POLLER_OF.items() if n == poller)
                if not isinstance(self._selector, wanted):
                    raise AssertionError(
                        f"compat: asked greenloop for {poller}, got {type(self._selector).__name__}"
                    )

    SelectorEventLoop.__qualname__ = SelectorEventLoop.__name__ = "GreenloopSelectorEventLoop"
    return SelectorEventLoop


def install(loop_name: str) -> None:
    """Make ``loop_name``'s loop the one asyncio hands out; call once, before importing tests."""
    global _loop_name, _greenloop
    if loop_name not in LOOP_NAMES:
        raise ValueError(f"unknown loop {loop_name!r}; choose one of {', '.join(LOOP_NAMES)}")
    if _loop_name is not None:
        raise RuntimeError("compat: install() may be called only once per process")
    _loop_name = loop_name
    # setattr: mypy rejects assigning to a method of a class.
    setattr(base_events.BaseEventLoop, "__init__", _counting_init)  # noqa: B010
    if loop_name == "greenloop":
        import greenloop

        _greenloop = greenloop
        selector_loop = _make_selector_loop_class(greenloop)
        rebind: dict[str, Any] = {
            "DefaultEventLoopPolicy": greenloop.EventLoopPolicy,
            "SelectorEventLoop": selector_loop,
        }
        if hasattr(asyncio, "EventLoop"):  # 3.13+: the platform's default loop class
            rebind["EventLoop"] = selector_loop
        # Both the package and the module it re-exports from, whichever a test spells out.
        for namespace in (asyncio, asyncio.unix_events):
            for attr, value in rebind.items():
                setattr(namespace, attr, value)
    asyncio.set_event_loop_policy(new_policy())


def new_policy() -> asyncio.AbstractEventLoopPolicy:
    """A fresh policy of the loop under test."""
    if _greenloop is not None:
        policy: asyncio.AbstractEventLoopPolicy = _greenloop.EventLoopPolicy()
        return policy
    return _ASYNCIO_POLICY()


def make_loop() -> asyncio.AbstractEventLoop:
    """A new loop of the loop under test, for the adaptations in ``_adapt``."""
    if _greenloop is not None:
        loop: asyncio.AbstractEventLoop = _greenloop.new_event_loop()
        return loop
    return _ASYNCIO_SELECTOR_LOOP()
