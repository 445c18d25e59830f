"""Run one ``test.test_asyncio`` module on one loop and stream per-test outcomes as JSON lines.

Started by ``run_test_asyncio`` in a subprocess per module (``python -m compat._worker``), so a
hang or a crash costs one test, not the run: the runner reads what was streamed, marks the test
in progress, and starts a new worker that skips the tests already done.

Records (one JSON object per line, flushed as written):

* ``{"kind": "plan", "tests": [...], "excluded": {target: [...]}}`` once, after loading;
* ``{"kind": "start", "id": ...}`` before each test (a test with a start but no end hung or
  crashed the worker);
* ``{"kind": "end", "id": ..., "outcome": ..., "detail": ..., "loops": {...}}`` after it;
* ``{"kind": "done"}`` when the module finished.

Test ids are relative to ``test.test_asyncio`` (``test_events.EPollEventLoopTests.test_run_...``).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import json
import os
import sys
import time
import traceback
import types
import unittest
from collections.abc import Iterator
from typing import IO, Any

from . import _adapt, _loops
from .exclusions import exclusions_for, matches

PACKAGE = "test.test_asyncio"
OUTCOMES = ("passed", "failed", "error", "skipped")
# How much of a traceback is kept per failing test: enough to diagnose, small enough to ship.
_DETAIL_CHARS = 6000
# Severity, to combine several reports about one test (subtests, errors in cleanups).
_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def _format_error(err: Any) -> str:
    return "".join(traceback.format_exception(*err))


def relative_id(test_id: str) -> str:
    return test_id.removeprefix(PACKAGE + ".")


class _Stream:
    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives until exit

    def write(self, **record: Any) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()


class _JsonResult(unittest.TestResult):
    """Streams each test's outcome, re-installs the policy before it, and arms a watchdog."""

    def __init__(self, stream: _Stream, test_timeout: float) -> None:
        super().__init__()
        self._stream = stream
        self._test_timeout = test_timeout
        self._outcome: str | None = None
        self._detail = ""
        self._t0 = 0.0

    def _note(self, outcome: str, detail: str) -> None:
        if self._outcome is None or _RANK[outcome] > _RANK[self._outcome]:
            self._outcome = outcome
            self._detail = detail[-_DETAIL_CHARS:]

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        # Re-install the policy of the loop under test before *every* test: tearDown and
        # tearDownModule of many test_asyncio modules call set_event_loop_policy(None) or
        # install their own. startTest runs before setUp (unlike a wrapped setUp it does not
        # depend on subclasses calling super().setUp()), and IsolatedAsyncioTestCase creates
        # its Runner's loop lazily inside setUp, so it gets this policy too.
        asyncio.set_event_loop_policy(_loops.new_policy())
        _loops.count_loops()  # loops built by class/module fixtures belong to no test
        self._outcome = None
        self._detail = ""
        self._stream.write(kind="start", id=relative_id(test.id()))
        # A hung test: dump every thread's stack to stderr (the worker's log) and exit; the
        # runner sees a start without an end and resumes after it.
        faulthandler.dump_traceback_later(self._test_timeout, exit=True)
        self._t0 = time.monotonic()

    def stopTest(self, test: unittest.TestCase) -> None:
        faulthandler.cancel_dump_traceback_later()
        outcome = self._outcome or "error"
        detail = self._detail if self._outcome else "the test reported no outcome"
        self._stream.write(
            kind="end",
            id=relative_id(test.id()),
            outcome=outcome,
            detail=detail,
            loops=_loops.count_loops(),
            seconds=round(time.monotonic() - self._t0, 3),
        )
        super().stopTest(test)

    def _fixture_error(self, test: Any, err: Any) -> None:
        # setUpClass/tearDownModule & co. fail outside any test (unittest wraps them in an
        # _ErrorHolder): stream them as a test of their own, e.g. "test_x.Cls.setUpClass".
        description: str = test.id()
        fixture, _, where = description.partition(" (")
        name = relative_id(where.rstrip(")")) + "." + fixture if where else relative_id(description)
        self._stream.write(
            kind="end",
            id=name,
            outcome="error",
            detail=_format_error(err)[-_DETAIL_CHARS:],
            loops={},
            seconds=0.0,
        )

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._note("error", _format_error(err))
        else:
            self._fixture_error(test, err)

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._note("failed", _format_error(err))

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._note("passed", "")

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        if isinstance(test, unittest.TestCase):
            self._note("skipped", reason)
        else:  # a skipped class or module fixture, e.g. setUpModule raising SkipTest
            self._stream.write(
                kind="end", id=relative_id(test.id()), outcome="skipped", detail=reason, loops={}, seconds=0.0
            )

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        # The test behaves as its author specified for this platform: count it as passed.
        super().addExpectedFailure(test, err)
        self._note("passed", "expected failure")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._note("failed", "unexpected success of a test marked expectedFailure")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._note("failed" if failed else "error", f"{subtest.id()}: {_format_error(err)}")


def _flatten(suite: unittest.TestSuite | unittest.TestCase) -> Iterator[unittest.TestCase]:
    if isinstance(suite, unittest.TestSuite):
        for item in suite:
            yield from _flatten(item)
    else:
        yield suite


def _read_ids(path: str | None) -> set[str]:
    if not path:
        return set()
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


def run_module(args: argparse.Namespace) -> None:
    stream = _Stream(args.out)
    _loops.install(args.loop)
    name = f"{PACKAGE}.{args.module}"
    try:
        module: types.ModuleType = importlib.import_module(name)
    except unittest.SkipTest as exc:  # the whole module skips itself, e.g. test_windows_events
        if any(e.target == args.module for e in exclusions_for()):
            stream.write(kind="plan", tests=[], excluded={args.module: [args.module]})
        else:
            stream.write(kind="plan", tests=[args.module], excluded={})
            stream.write(
                kind="end", id=args.module, outcome="skipped", detail=str(exc), loops={}, seconds=0.0
            )
        stream.write(kind="done")
        return
    _adapt.adapt(args.module, module)
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)

    exclusions = [e for e in exclusions_for() if matches(args.module, e.target)]
    excluded: dict[str, list[str]] = {e.target: [] for e in exclusions}
    plan: list[unittest.TestCase] = []
    for test in _flatten(suite):
        test_id = relative_id(test.id())
        hit = next((e for e in exclusions if matches(e.target, test_id)), None)
        if hit is not None:
            excluded[hit.target].append(test_id)
        else:
            plan.append(test)
    stream.write(kind="plan", tests=[relative_id(t.id()) for t in plan], excluded=excluded)

    skip = _read_ids(args.skip)
    only = _read_ids(args.only)
    todo = [
        t
        for t in plan
        if relative_id(t.id()) not in skip
        and (not only or relative_id(t.id()) in only)
        and (not args.match or args.match in t.id())
    ]
    unittest.TestSuite(todo).run(_JsonResult(stream, args.test_timeout))
    stream.write(kind="done")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m compat._worker")
    parser.add_argument("--loop", choices=_loops.LOOP_NAMES, required=True)
    parser.add_argument("--module", required=True, help="test module, e.g. test_events")
    parser.add_argument("--out", required=True, help="JSON-lines file to append records to")
    parser.add_argument("--skip", help="file of test ids not to run (done by a previous worker)")
    parser.add_argument("--only", help="file of test ids to run, and no others")
    parser.add_argument("--match", help="run only tests whose id contains this string")
    parser.add_argument("--test-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    faulthandler.enable()  # a crash (e.g. in greenlet) leaves its stack in the log
    run_module(args)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter shutdown: a test that leaked a non-daemon thread or a child process
    # must not turn a finished module into a hang. Everything was streamed and flushed.
    os._exit(0)


if __name__ == "__main__":
    main()
