"""Fixtures shared by the behaviour tests.

Every behaviour test runs twice, through one table of loop factories (``LOOP_FACTORIES``):
on asyncio's own selector loop, which is the reference, and on greenloop's loop.

* Sync tests take ``loop`` (a fresh loop, closed and checked after the test) or
  ``loop_factory`` (to create loops themselves); both are parametrised ``asyncio`` /
  ``greenloop``.
* ``@pytest.mark.asyncio`` tests are parametrised the same way by pytest-asyncio's
  ``pytest_asyncio_loop_factories`` hook, so the project's async tests run on greenloop.
* ``@pytest.mark.greenloop_bug("diagnosis")`` marks a test that fails only on greenloop:
  its greenloop variant becomes a strict xfail, the asyncio variant still has to pass.
* An autouse check fails any test that leaks file descriptors, leaves live greenlets
  behind, leaves a loop it created unclosed, or makes calls to a loop's default exception
  handler that it did not ask for (tests that expect such calls take ``loop_errors``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _util import LOOP_ERRORS, LOOP_FACTORIES, LOOP_NAMES, LOOPS, LoopFactory, live_greenlets


def item_loop_name(item: pytest.Item) -> str | None:
    """Which loop a collected test runs on, if it is parametrised by loop."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    params = callspec.params
    if "loop_factory" in params:
        return str(params["loop_factory"])
    factory = params.get("_asyncio_loop_factory")
    if isinstance(factory, LoopFactory):
        return factory.name
    return None


# -- pytest hooks --------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "greenloop_bug(reason): a known greenloop bug; the greenloop variant is a strict xfail",
    )


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    """pytest-asyncio: run every ``@pytest.mark.asyncio`` test on each loop."""
    return dict(LOOP_FACTORIES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("greenloop_bug")
        if marker is None:
            continue
        name = item_loop_name(item)
        if name is None:
            raise pytest.UsageError(f"{item.nodeid}: greenloop_bug needs a loop-parametrised test")
        if name == "greenloop":
            reason = marker.args[0] if marker.args else marker.kwargs["reason"]
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"greenloop bug: {reason}"))


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        # A failed test's traceback keeps its sockets and loops alive: don't pile leak
        # reports on top of the failure.
        item.stash[_CALL_FAILED] = True
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    gc.unfreeze()


# -- loops -----------------------------------------------------------------------------------


@pytest.fixture(params=LOOP_NAMES)
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """A factory of new loops: asyncio's selector loop, then greenloop's."""
    return LOOP_FACTORIES[request.param]


@pytest.fixture
def loop_name(request: pytest.FixtureRequest) -> str:
    """'asyncio' or 'greenloop': the loop this test runs on (sync or async test)."""
    name = item_loop_name(request.node)
    assert name is not None, "this test is not parametrised by loop"
    return name


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close ``loop`` the way asyncio.Runner does, and check that it closed cleanly."""
    assert not loop.is_running()
    if not loop.is_closed():
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            assert not pending, f"test left tasks pending: {pending}"
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
    assert loop.is_closed()
    assert not loop.is_running()
    loop.close()  # idempotent


@pytest.fixture
def loop(loop_factory: LoopFactory) -> Iterator[asyncio.AbstractEventLoop]:
    """A new loop of each kind; closed (and checked) after the test."""
    lp = loop_factory()
    try:
        yield lp
    finally:
        close_loop(lp)


@pytest.fixture
def green_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A greenloop loop, for the few tests of behaviour where greenloop improves on asyncio."""
    lp = LOOP_FACTORIES["greenloop"]()
    try:
        yield lp
    finally:
        close_loop(lp)


@pytest.fixture
def loop_errors() -> list[dict[str, Any]]:
    """Contexts passed to a default exception handler; the test checks them itself."""
    return LOOP_ERRORS


# -- leak checks -----------------------------------------------------------------------------


def _open_fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the fd listdir itself used, already closed
            pass
    return fds


@pytest.fixture(autouse=True)
def _leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    gc.collect()
    # Move everything alive now to the permanent generation: the scans below then cost
    # only as much as the objects this test created.
    gc.freeze()
    fds_before = _open_fds()
    LOOP_ERRORS.clear()
    LOOPS.clear()
    yield
    problems = []

    unclosed = [lp for lp in LOOPS if not lp.is_closed()]
    for lp in unclosed:  # close them so they do not also show up as leaked fds
        if not lp.is_running():
            lp.close()
    if unclosed:
        problems.append(f"loops left unclosed: {unclosed}")
    del unclosed

    deadline = time.monotonic() + 2.0
    while True:  # let executor threads, transports and finalizers settle
        gc.collect()
        leaked_fds = {fd: path for fd, path in _open_fds().items() if fds_before.get(fd) != path}
        live = live_greenlets()
        if (not leaked_fds and not live) or time.monotonic() > deadline:
            break
        del live
        time.sleep(0.02)
    if leaked_fds:
        problems.append(f"file descriptors leaked: {leaked_fds}")
    if live:
        problems.append(f"greenlets left alive: {live}")
    del live

    if LOOP_ERRORS and "loop_errors" not in request.fixturenames:
        shown = [{k: v for k, v in ctx.items() if k != "loop"} for ctx in LOOP_ERRORS]
        problems.append(f"unexpected calls to the loop exception handler: {shown}")
    LOOP_ERRORS.clear()
    if problems and not request.node.stash.get(_CALL_FAILED, False):
        pytest.fail("; ".join(problems), pytrace=False)
