"""Run the interpreter's own stdlib tests under a monkey-patcher: greenloop's, gevent's, or none.

    python -m compat.run_stdlib_patched                      # greenloop, every file
    python -m compat.run_stdlib_patched --patch none         # the reference: unpatched
    python -m compat.run_stdlib_patched --patch gevent       # the peer, same runner
    python -m compat.run_stdlib_patched --patch all --write  # all three; write the results
    python -m compat.run_stdlib_patched test_queue test_select   # some files only
    python -m compat.run_stdlib_patched --table              # the README table, from results/

Each test file runs in a fresh interpreter (patching is process-wide and irreversible): the
patch function first, then ``unittest`` on ``test.<file>`` from the running interpreter's
own ``test`` package, with a wall-time limit per file. A file that exceeds it is killed and
counted as ``timeout`` (its tests count as not passed); the test that was running is named.
The same runner measures gevent, with ``gevent.monkey.patch_all()`` as the patch function,
so the two pass counts are comparable on the same files, machine and Python.

Exclusions (``EXCLUDED``) are tests skipped under every patcher, each with its reason; they
are reported as skips. ``--write`` stores the counts as JSON in
``compat/results/patched-py3XX.json``, merged into what is there: a run of some files under one
patcher replaces only those records. Every file run's full output is kept in
``compat/_work/patched/py3XX/<patcher>-<file>.log`` (git-ignored) for post-mortems.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
VERSION_TAG = f"py{sys.version_info[0]}{sys.version_info[1]}"
LOG_DIR = Path(__file__).resolve().parent / "_work" / "patched" / VERSION_TAG

FILES = [
    "test_socket",
    "test_threading",
    "test_thread",
    "test_queue",
    "test_select",
    "test_selectors",
    "test_time",
    "test_subprocess",
    "test_ssl",
    "test_socketserver",
    "test_httpservers",
    "test_urllib2_localnet",
    "test_logging",
]
# test_time is in the list for its sleep tests; its clock and strftime tests patch nothing
# but run anyway (they are counted for every patcher alike).

PATCHERS = {
    "none": "",
    "greenloop": "import greenloop.monkey\ngreenloop.monkey.patch_all()\n",
    "gevent": "from gevent import monkey\nmonkey.patch_all()\n",
}

# Tests excluded for every patcher: test id (or prefix) -> reason.
EXCLUDED: dict[str, str] = {
    # The C SimpleQueue blocks in C: with green producers and consumers on one OS thread a
    # blocking get() can never be woken. Not patchable by any monkey-patcher (gevent hangs too).
    "test.test_queue.CSimpleQueueTest.test_many_threads": "C _queue.SimpleQueue blocks the OS thread",
    # Same C SimpleQueue: the consumer blocks in C get() (test_order) or busy-loops on
    # get(timeout=1e-5), which never yields (test_many_threads_timeout). Both hang under
    # greenloop and gevent alike.
    "test.test_queue.CSimpleQueueTest.test_order": "C _queue.SimpleQueue blocks the OS thread",
    "test.test_queue.CSimpleQueueTest.test_many_threads_timeout": "C _queue.SimpleQueue blocks the OS thread",
    # 3.13: the readers busy-loop on ``q.get(False)`` / ``except Empty: pass`` until another
    # thread shuts the queue down: needs preemption.
    **{
        f"test.test_queue.{impl}{kind}Test.test_shutdown{how}_all_methods_in_many_threads": (
            "busy-waits on get(False): needs preemption"
        )
        for impl in ("C", "Py")
        for kind in ("Queue", "LifoQueue", "PriorityQueue")
        for how in ("", "_immediate")
    },
    # Busy-waits (``while not started[0]: pass``) for another thread to run: needs preemption,
    # which cooperative threads (greenloop's and gevent's) do not have.
    "test.test_threading.InterruptMainTests.test_can_interrupt_tight_loops": "needs preemption",
}
# How many times a file that hangs or crashes is restarted. Each restart skips the tests that
# already have an outcome and the one it hung or crashed in (counted as failed), so a hang
# costs one restart, not a rerun of the whole file.
MAX_RESTARTS = 8
# A test still running after this many seconds makes the worker dump every thread's stack
# into the log and exit (faulthandler's watchdog is a C thread: no patcher affects it).
TEST_TIMEOUT = 60.0

WORKER = r"""
import faulthandler, json, os, sys, time, unittest
name, skip, test_timeout, record_path = sys.argv[1:5]
skip, test_timeout = json.loads(skip), float(test_timeout)
# One JSON line per finished test, written with the original os.write to a file of its own:
# tests swap sys.stdout and sys.stderr, and patching replaces os.write.
record_fd = os.open(record_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_write = os.write
# Ctrl-C as in an interactive interpreter, whatever the runner was started from (a shell
# starts background jobs with SIGINT ignored, which test_threading's interrupt tests notice).
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
__PATCH__
from test import support  # after patching, as a patched program would import it

DONE = "@@done"

def filter_suite(suite):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            filter_suite(test)
            continue
        test_id = test.id()
        for prefix, reason in skip.items():
            if test_id == prefix or test_id.startswith(prefix + "."):
                method = getattr(test, test._testMethodName)
                reason = DONE if reason == DONE else "excluded: " + reason
                setattr(test, test._testMethodName, unittest.skip(reason)(method))
                break

suite = unittest.defaultTestLoader.loadTestsFromName("test." + name)
filter_suite(suite)
support.verbose = False

def record(test_id, outcome):
    _write(record_fd, (json.dumps({"id": test_id, "outcome": outcome}) + "\n").encode())

class Result(unittest.TextTestResult):
    def startTest(self, test):
        self._outcome_now = "passed"
        faulthandler.dump_traceback_later(test_timeout, exit=True)
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        # Still armed until the next test: class and module fixtures may hang too.
        faulthandler.dump_traceback_later(test_timeout, exit=True)
        if self._outcome_now is not None:
            record(test.id(), self._outcome_now)

    def _worse(self, outcome):
        order = ("passed", "skipped", "failed", "error")
        if order.index(outcome) > order.index(self._outcome_now or "passed"):
            self._outcome_now = outcome

    def addError(self, test, err):
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._worse("error")
        else:  # a class or module fixture: no startTest/stopTest around it
            record(test.id() if hasattr(test, "id") else str(test), "error")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._worse("failed")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._worse("failed" if issubclass(err[0], test.failureException) else "error")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._outcome_now = None if reason == DONE else "skipped"

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._worse("failed")

runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=Result)
runner.run(suite)
sys.stdout.flush()
sys.stderr.flush()
# Counted: leave without waiting for threads a failed test left running (the interpreter's
# exit would join them, under every patcher alike, and may wait forever).
_write(record_fd, b'{"id": "@@end", "outcome": "end"}\n')
os._exit(0)
"""

_RUNNING = re.compile(r"^(\w+) \(([\w.]+)\)")


def run_file(patcher: str, name: str, timeout: float) -> dict[str, Any]:
    """Run one stdlib test file under ``patcher``; after a hang or a crash, resume it after
    the test it happened in."""
    log_path = LOG_DIR / f"{patcher}-{name}.log"
    records_path = LOG_DIR / f"{patcher}-{name}.jsonl"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    records_path.unlink(missing_ok=True)
    outcomes: dict[str, str] = {}
    broken: dict[str, str] = {}  # test id -> what happened to it
    status = "ok"
    t0 = time.monotonic()
    for _ in range(MAX_RESTARTS + 1):
        skip = dict(EXCLUDED)
        skip.update(dict.fromkeys(outcomes, "@@done"))
        skip.update(dict.fromkeys(broken, "@@done"))
        status, stuck, finished = _run_file_once(
            patcher, name, timeout, skip=skip, log_path=log_path, records_path=records_path
        )
        outcomes = _read_outcomes(records_path)
        if finished:
            break
        if stuck is None or stuck in broken or stuck in outcomes:
            break  # no progress to resume from
        broken[stuck] = status
    for test_id in broken:
        outcomes[test_id] = "failed"
    counts = {
        k: sum(1 for o in outcomes.values() if o == k) for k in ("passed", "failed", "error", "skipped")
    }
    record: dict[str, Any] = {
        "file": name,
        "status": status if not finished else "ok",
        "seconds": round(time.monotonic() - t0, 1),
        "ran": len(outcomes),
        "passed": counts["passed"],
        "failures": counts["failed"],
        "errors": counts["error"],
        "skipped": counts["skipped"],
        "failed_ids": sorted(t for t, o in outcomes.items() if o in ("failed", "error")),
    }
    if broken:
        record["hung"] = sorted(f"{t} ({why})" for t, why in broken.items())
    return record


def _read_outcomes(path: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if item["id"] != "@@end":
                outcomes[item["id"]] = item["outcome"]
    return outcomes


def _run_file_once(
    patcher: str, name: str, timeout: float, *, skip: dict[str, str], log_path: Path, records_path: Path
) -> tuple[str, str | None, bool]:
    """One worker run: (status, the test it was in if it did not finish, whether it finished)."""
    code = WORKER.replace("__PATCH__", PATCHERS[patcher])
    t0 = time.monotonic()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    ends_before = records_path.read_text().count('"@@end"') if records_path.exists() else 0
    # Output goes to files, not pipes: a process a test forked and left behind inherits them,
    # and a pipe held open by it would keep the runner waiting for EOF (a test_socketserver
    # forking-server child once stalled a run that way).
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out_file,
        tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err_file,
    ):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-X",
                "faulthandler",
                "-c",
                code,
                name,
                json.dumps(skip),
                str(TEST_TIMEOUT),
                str(records_path),
            ],
            stdout=out_file,
            stderr=err_file,
            text=True,
            env=env,
            start_new_session=True,  # so that a timeout kills the children it started too
        )
        try:
            proc.wait(timeout=timeout)
            status = "ok"
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            status = f"file timeout ({timeout:.0f}s)"
        # Whatever the tests forked and left running (same process group) goes too.
        _kill_group(proc.pid)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    elapsed = round(time.monotonic() - t0, 1)
    finished = records_path.exists() and records_path.read_text().count('"@@end"') > ends_before
    if status == "ok" and not finished:
        hang = re.search(r"Timeout \(\d+:\d+:\d+\)!", err)
        status = f"hung past {TEST_TIMEOUT:.0f}s" if hang else f"crashed (exit {proc.returncode})"
    with open(log_path, "a") as log:
        log.write(f"=== {name} under {patcher}, skipping {len(skip)} ids\n")
        log.write(f"{err}\n--- stdout ---\n{out}\n=== {status}, exit {proc.returncode}, {elapsed}s\n")
    stuck = None
    if not finished:
        last = [m for m in map(_RUNNING.match, err.splitlines()) if m]
        if last:
            # 3.11+ prints "test_x (module.Class.test_x)"; older ones "(module.Class)".
            qual = last[-1].group(2)
            stuck = qual if qual.endswith("." + last[-1].group(1)) else f"{qual}.{last[-1].group(1)}"
    return status, stuck, finished


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, 9)
    except ProcessLookupError:
        pass  # nobody left in the group


def run_all(patcher: str, files: list[str], timeout: float, jobs: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda f: run_file(patcher, f, timeout), files))


def summarize(patcher: str, records: list[dict[str, Any]]) -> dict[str, int]:
    totals = {"ran": 0, "passed": 0, "failed": 0, "skipped": 0}
    print(f"\n== {patcher} (Python {sys.version.split()[0]})")
    print(f"{'file':24} {'status':10} {'ran':>5} {'passed':>6} {'failed':>6} {'skipped':>7} {'s':>6}")
    for r in records:
        failed = r.get("failures", 0) + r.get("errors", 0)
        print(
            f"{r['file']:24} {r['status'][:10]:10} {r.get('ran', 0):5} {r['passed']:6} {failed:6} "
            f"{r.get('skipped', 0):7} {r['seconds']:6}"
            + (f"  hung/crashed: {', '.join(r['hung'])}" if r.get("hung") else "")
        )
        totals["ran"] += r.get("ran", 0)
        totals["passed"] += r["passed"]
        totals["failed"] += failed
        totals["skipped"] += r.get("skipped", 0)
    t = totals
    print(f"{'total':24} {'':10} {t['ran']:5} {t['passed']:6} {t['failed']:6} {t['skipped']:7}")
    return totals


def results_path(tag: str = VERSION_TAG) -> Path:
    return RESULTS_DIR / f"patched-{tag}.json"


def write_report(report: dict[str, Any]) -> Path:
    """Merge ``report`` into this Python's results file: replace only the (patcher, file)
    records that were run, keep the others, recompute the totals."""
    path = results_path()
    old: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if old.get("python") != report["python"]:
        old = {}  # another patch release of the interpreter: its counts are not comparable
    runs: dict[str, Any] = old.get("runs", {})
    for patcher, run in report["runs"].items():
        files = {r["file"]: r for r in runs.get(patcher, {}).get("files", [])}
        for record in run["files"]:
            r = dict(record)
            r.pop("stderr_tail", None)
            r.pop("seconds", None)  # wall time on a shared machine: noise in the diff
            files[r["file"]] = r
        records = [files[f] for f in sorted(files, key=_file_order)]
        runs[patcher] = {"totals": _totals(records), "files": records}
    out = {"python": report["python"], "excluded": EXCLUDED, "runs": runs}
    RESULTS_DIR.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return path


def _file_order(name: str) -> tuple[int, str]:
    return (FILES.index(name) if name in FILES else len(FILES), name)


def _totals(records: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "ran": sum(r.get("ran", 0) for r in records),
        "passed": sum(r["passed"] for r in records),
        "failed": sum(r.get("failures", 0) + r.get("errors", 0) for r in records),
        "skipped": sum(r.get("skipped", 0) for r in records),
    }


def table() -> str:
    """The per-file pass counts of every results file, as markdown (compat/README.md)."""
    lines = []
    for path in sorted(RESULTS_DIR.glob("patched-py3*.json")):
        data = json.loads(path.read_text())
        runs = data["runs"]
        lines += [
            f"**Python {data['python']}**",
            "",
            "| file | tests | passed: none | greenloop | gevent |",
            "|---|---:|---:|---:|---:|",
        ]
        names = sorted({r["file"] for run in runs.values() for r in run["files"]}, key=_file_order)
        by = {p: {r["file"]: r for r in run["files"]} for p, run in runs.items()}
        rows = [*names, None]
        for name in rows:
            cells = []
            for patcher in ("none", "greenloop", "gevent"):
                if name is None:
                    t = runs.get(patcher, {}).get("totals")
                    cells.append(str(t["passed"]) if t else "-")
                    continue
                r = by.get(patcher, {}).get(name)
                if r is None:
                    cells.append("-")
                    continue
                cell = str(r["passed"])
                if r["status"] != "ok":
                    cell += f" ({r['status'].split()[0]})"
                elif r.get("hung"):
                    cell += f" ({len(r['hung'])} hung/crashed)"
                cells.append(cell)
            if name is None:
                tests = runs.get("none", {}).get("totals", {}).get("ran", "-")
                lines.append(f"| **total** | {tests} | " + " | ".join(f"**{c}**" for c in cells) + " |")
            else:
                ref = by.get("none", {}).get(name) or next(b[name] for b in by.values() if name in b)
                lines.append(f"| {name} | {ref.get('ran', '-')} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", default=FILES, help="test files (default: all)")
    parser.add_argument("--patch", choices=[*PATCHERS, "all"], default="greenloop")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per file run")
    parser.add_argument("--jobs", type=int, default=1, help="files run at once (default 1)")
    parser.add_argument(
        "--write", action="store_true", help="merge the counts into compat/results/patched-py3XX.json"
    )
    parser.add_argument("--table", action="store_true", help="print the README table and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table())
        return 0
    patchers = list(PATCHERS) if args.patch == "all" else [args.patch]
    report: dict[str, Any] = {"python": sys.version.split()[0], "runs": {}}
    for patcher in patchers:
        records = run_all(patcher, args.files, args.timeout, args.jobs)
        totals = summarize(patcher, records)
        report["runs"] = {patcher: {"totals": totals, "files": records}}
        if args.write:  # after each patcher: an interrupted --patch all keeps what it measured
            print(f"\nwrote {write_report(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
