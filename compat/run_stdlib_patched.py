"""Run the interpreter's own stdlib tests under a monkey-patcher: greenloop's, gevent's, or none.

    python -m compat.run_stdlib_patched                      # greenloop, every file
    python -m compat.run_stdlib_patched --patch none         # the reference: unpatched
    python -m compat.run_stdlib_patched --patch gevent       # the peer, same runner
    python -m compat.run_stdlib_patched --patch all --write  # all three; write the results
    python -m compat.run_stdlib_patched test_queue test_select   # some files only

Each test file runs in a fresh interpreter (patching is process-wide and irreversible): the
patch function first, then ``unittest`` on ``test.<file>`` from the running interpreter's
own ``test`` package, with a wall-time limit per file. A file that exceeds it is killed and
counted as ``timeout`` (its tests count as not passed); the test that was running is named.
The same runner measures gevent, with ``gevent.monkey.patch_all()`` as the patch function,
so the two pass counts are comparable on the same files, machine and Python.

Exclusions (``EXCLUDED``) are tests skipped under every patcher, each with its reason; they
are reported as skips. ``--write`` stores the counts as JSON in ``compat/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
VERSION_TAG = f"py{sys.version_info[0]}{sys.version_info[1]}"

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
    # Busy-waits (``while not started[0]: pass``) for another thread to run: needs preemption,
    # which cooperative threads (greenloop's and gevent's) do not have.
    "test.test_threading.InterruptMainTests.test_can_interrupt_tight_loops": "needs preemption",
}
# How many times a file that hangs is restarted, each time with the test it hung in
# excluded (and counted as failed), so that one hang does not hide the rest of the file.
MAX_RESTARTS = 4

WORKER = r"""
import json, sys, time, unittest
name, excluded = sys.argv[1], json.loads(sys.argv[2])
__PATCH__
from test import support  # after patching, as a patched program would import it

def filter_suite(suite):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            filter_suite(test)
            continue
        test_id = test.id()
        for prefix, reason in excluded.items():
            if test_id == prefix or test_id.startswith(prefix + "."):
                method = getattr(test, test._testMethodName)
                setattr(test, test._testMethodName, unittest.skip("excluded: " + reason)(method))

suite = unittest.defaultTestLoader.loadTestsFromName("test." + name)
filter_suite(suite)
support.verbose = False
result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
print("@@RESULT " + json.dumps({
    "ran": result.testsRun,
    "failures": len(result.failures),
    "errors": len(result.errors),
    "skipped": len(result.skipped),
    "expected_failures": len(result.expectedFailures),
    "unexpected_successes": len(result.unexpectedSuccesses),
    "failed_ids": [t.id() for t, _ in result.failures + result.errors][:200],
}), flush=True)
"""

_RUNNING = re.compile(r"^(\w+) \(([\w.]+)\)")


def run_file(patcher: str, name: str, timeout: float) -> dict[str, Any]:
    """Run one stdlib test file under ``patcher``; restart it after each test it hangs in."""
    hung: dict[str, str] = {}
    for _ in range(MAX_RESTARTS + 1):
        record = _run_file_once(patcher, name, timeout, hung)
        stuck = record.get("stuck_in_id")
        if record["status"] != "timeout" or not stuck or stuck in hung:
            break
        hung[stuck] = f"hung past {timeout:.0f}s under {patcher}"
    if hung:
        record["hung"] = sorted(hung)
        # The hung tests ran as skips in the last run: count them as failed instead.
        record["skipped"] = max(0, record.get("skipped", 0) - len(hung))
        record["failures"] = record.get("failures", 0) + len(hung)
    return record


def _run_file_once(patcher: str, name: str, timeout: float, hung: dict[str, str]) -> dict[str, Any]:
    code = WORKER.replace("__PATCH__", PATCHERS[patcher])
    t0 = time.monotonic()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-c", code, name, json.dumps(EXCLUDED | hung)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # so that a timeout kills the children it started too
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        status = "ok"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        status = "timeout"
    elapsed = round(time.monotonic() - t0, 1)
    record: dict[str, Any] = {"file": name, "status": status, "seconds": elapsed}
    for line in out.splitlines():
        if line.startswith("@@RESULT "):
            record.update(json.loads(line[len("@@RESULT ") :]))
            break
    else:
        if status == "ok":
            record["status"] = f"crashed (exit {proc.returncode})"
        record["ran"] = sum(1 for line in err.splitlines() if _RUNNING.match(line))
        record["failures"] = record["errors"] = record["skipped"] = 0
        last = [m for m in map(_RUNNING.match, err.splitlines()) if m]
        record["stuck_in"] = last[-1].group(0) if last else None
        if last:
            # 3.11+ prints "test_x (module.Class.test_x)"; older ones "(module.Class)".
            qual = last[-1].group(2)
            record["stuck_in_id"] = (
                qual if qual.endswith("." + last[-1].group(1)) else f"{qual}.{last[-1].group(1)}"
            )
        record["stderr_tail"] = err[-2000:]
    if status == "ok" and "@@RESULT" in out:
        record["passed"] = (
            record["ran"] - record["failures"] - record["errors"] - record["skipped"] - len(hung)
        )
    else:
        # Killed or crashed: count the tests that reported "ok" before it happened.
        record["passed"] = sum(1 for line in err.splitlines() if line.endswith(" ... ok"))
    return record


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
            + (f"  stuck in {r['stuck_in']}" if r.get("stuck_in") else "")
        )
        totals["ran"] += r.get("ran", 0)
        totals["passed"] += r["passed"]
        totals["failed"] += failed
        totals["skipped"] += r.get("skipped", 0)
    t = totals
    print(f"{'total':24} {'':10} {t['ran']:5} {t['passed']:6} {t['failed']:6} {t['skipped']:7}")
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", default=FILES, help="test files (default: all)")
    parser.add_argument("--patch", choices=[*PATCHERS, "all"], default="greenloop")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per file run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="write compat/results/stdlib-patched-*.json")
    args = parser.parse_args(argv)
    patchers = list(PATCHERS) if args.patch == "all" else [args.patch]
    report: dict[str, Any] = {"python": sys.version.split()[0], "excluded": EXCLUDED, "runs": {}}
    for patcher in patchers:
        records = run_all(patcher, args.files, args.timeout, args.jobs)
        totals = summarize(patcher, records)
        report["runs"][patcher] = {"totals": totals, "files": records}
    if args.write:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"stdlib-patched-{VERSION_TAG}.json"
        for run in report["runs"].values():
            for r in run["files"]:
                r.pop("stderr_tail", None)
        path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
