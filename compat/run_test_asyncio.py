"""Run the interpreter's own ``test.test_asyncio`` against greenloop (and asyncio's loop).

    python -m compat.run_test_asyncio                  # greenloop: counts and failures
    python -m compat.run_test_asyncio --loop asyncio   # the reference: asyncio's own loop
    python -m compat.run_test_asyncio --check          # both; exit 1 if greenloop loses a test
    python -m compat.run_test_asyncio --write          # both; write compat/results/py3XX*

Each test module runs in its own worker subprocess (``compat._worker``), two at a time. A test
that hangs past ``--test-timeout`` or crashes its worker is recorded as an error and the
module resumes after it in a fresh worker; a module is cut off after ``--module-timeout``.
Exit status: 1 when --check finds a test greenloop loses, 2 when the harness itself is wrong
(a test of the greenloop run built asyncio's own loop, or a stale exclusion), else 0.
See compat/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._loops import LOOP_NAMES
from ._worker import OUTCOMES
from .exclusions import Exclusion, exclusions_for

COMPAT_DIR = Path(__file__).resolve().parent
REPO_ROOT = COMPAT_DIR.parent
RESULTS_DIR = COMPAT_DIR / "results"
DEFAULT_WORK_DIR = COMPAT_DIR / "_work"
VERSION_TAG = f"py{sys.version_info[0]}{sys.version_info[1]}"

# Wall time of the slowest modules, in seconds, measured on 3.11 with 2 workers on 2 cores
# (3.12 and 3.13 take up to twice as long). Used only to start the longest modules first, so
# that the run does not end waiting on one slow module started last; the others are ordered
# by file size, which tracks their run time well enough.
_SLOW_MODULES = {
    "test_tasks": 30.0,
    "test_events": 23.0,
    "test_subprocess": 21.0,
    "test_ssl": 10.0,
    "test_taskgroups": 6.6,
    "test_futures": 6.0,
    "test_sslproto": 4.6,
    "test_sock_lowlevel": 3.3,
    "test_sendfile": 2.7,
}

# Reruns of tests whose outcome differs between the loops: above this many, something is
# broken wholesale and rerunning would only add minutes.
_MAX_RERUNS = 200
# Separates the reason a worker died from the log it left, in a test's detail.
_LOG_TAIL = "--- worker log tail ---"


@dataclass
class TestOutcome:
    outcome: str
    detail: str = ""
    loops: dict[str, int] = field(default_factory=dict)


@dataclass
class ModuleRun:
    """Everything one loop did with one module, across however many workers it took."""

    loop: str
    module: str
    planned: list[str] = field(default_factory=list)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    results: dict[str, TestOutcome] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Options:
    work_dir: Path
    test_timeout: float
    module_timeout: float
    match: str | None
    verbose: bool


def _test_dir() -> Path:
    package = importlib.import_module("test.test_asyncio")
    assert package.__file__ is not None
    return Path(package.__file__).parent


def discover_modules() -> list[str]:
    """Every test_*.py module of the running interpreter's test.test_asyncio."""
    return sorted(path.stem for path in _test_dir().glob("test_*.py"))


def _module_weight(module: str) -> float:
    if module in _SLOW_MODULES:
        return _SLOW_MODULES[module]
    size = (_test_dir() / f"{module}.py").stat().st_size
    return size / 20_000  # ~1 s per 20 KB of test source, the typical ratio


def _read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    if path.exists():
        with path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut short by a crash: nothing after it was written
    return records


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The worker leads its own process group (start_new_session), which also holds any
    # child process a test spawned; end exactly that group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_module(loop: str, module: str, opts: Options, only: Sequence[str] = ()) -> ModuleRun:
    """Run ``module`` on ``loop`` in as many workers as hangs and crashes require."""
    run = ModuleRun(loop=loop, module=module)
    job_dir = opts.work_dir / VERSION_TAG / loop / (module + (".rerun" if only else ""))
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    start = time.monotonic()
    done: set[str] = set()
    if only:
        (job_dir / "only.txt").write_text("\n".join(only) + "\n", encoding="utf-8")
    while True:
        run.workers += 1
        attempt = run.workers
        out = job_dir / f"records.{attempt}.jsonl"
        log = job_dir / f"worker.{attempt}.log"
        skip = job_dir / f"skip.{attempt}.txt"
        skip.write_text("".join(t + "\n" for t in sorted(done)), encoding="utf-8")
        cmd = [
            sys.executable,
            "-m",
            "compat._worker",
            "--loop",
            loop,
            "--module",
            module,
            "--out",
            str(out),
            "--skip",
            str(skip),
            "--test-timeout",
            str(opts.test_timeout),
        ]
        if only:
            cmd += ["--only", str(job_dir / "only.txt")]
        if opts.match:
            cmd += ["--match", opts.match]
        # Tests write scratch files (test.support's TESTFN) into the current directory: give
        # each worker a private one, as regrtest does.
        cwd = tempfile.mkdtemp(prefix=f"compat-{module}-", dir=job_dir)
        remaining = opts.module_timeout - (time.monotonic() - start)
        with log.open("wb") as log_file:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            cut_off = False
            try:
                proc.wait(timeout=max(remaining, 1.0))
            except subprocess.TimeoutExpired:
                cut_off = True
                _kill_group(proc)
        shutil.rmtree(cwd, ignore_errors=True)

        records = _read_records(out)
        in_progress: str | None = None
        finished = False
        for rec in records:
            kind = rec.get("kind")
            if kind == "plan" and not run.planned:
                run.planned = rec["tests"]
                run.excluded = rec["excluded"]
            elif kind == "start":
                in_progress = rec["id"]
            elif kind == "end":
                run.results[rec["id"]] = TestOutcome(rec["outcome"], rec["detail"], rec["loops"])
                done.add(rec["id"])
                if rec["id"] == in_progress:
                    in_progress = None
            elif kind == "done":
                finished = True
        if finished and not cut_off:
            break

        # The worker died or was cut off: blame the test it was running, then go on.
        tail = _tail(log)
        if cut_off:
            why = f"module time limit ({opts.module_timeout:.0f}s) exceeded"
        elif "Timeout (" in tail:
            why = f"hung: no result after {opts.test_timeout:.0f}s (per-test limit)"
        else:
            why = f"worker died with exit status {proc.returncode}"
        if in_progress is not None:
            run.results[in_progress] = TestOutcome("error", f"{why}\n{_LOG_TAIL}\n{tail}")
            done.add(in_progress)
        if not run.planned:
            run.problems.append(f"{why} before listing its tests; log: {log}")
            run.results[module] = TestOutcome("error", f"{why} while loading\n{tail}")
            break
        pending = [t for t in (only or run.planned) if t not in done]
        if cut_off or not pending or in_progress is None:
            # Out of time, nothing left, or no test to blame (it died between tests, where
            # a retry would die again): what did not run is an error of the module.
            for test_id in pending:
                run.results[test_id] = TestOutcome("error", f"not run: {why}")
            if pending:
                run.problems.append(f"{len(pending)} tests not run: {why}; log: {log}")
            break
    run.seconds = time.monotonic() - start
    if opts.match or only:
        run.planned = [t for t in run.planned if t in run.results]
    return run


def run_all(jobs: Iterable[tuple[str, str]], opts: Options, parallel: int) -> list[ModuleRun]:
    """Run (loop, module) jobs ``parallel`` at a time, longest first; report as they finish."""
    ordered = sorted(jobs, key=lambda job: -_module_weight(job[1]))
    total = len(ordered)
    finished = 0
    lock = threading.Lock()

    def one(job: tuple[str, str]) -> ModuleRun:
        nonlocal finished
        run = run_module(job[0], job[1], opts)
        counts = Counter(r.outcome for r in run.results.values())
        with lock:
            finished += 1
            summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
            print(
                f"[{finished:>2}/{total}] {run.loop:<9} {run.module:<24} {summary or 'no tests'}"
                f" ({run.seconds:.1f}s{f', {run.workers} workers' if run.workers > 1 else ''})",
                flush=True,
            )
            for problem in run.problems:
                print(f"        ! {problem}", flush=True)
        return run

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, ordered))


# -- aggregation ---------------------------------------------------------------------------


def _counts(outcomes: Iterable[str]) -> dict[str, int]:
    c = Counter(outcomes)
    return {"passed": c["passed"], "failed": c["failed"], "errors": c["error"], "skipped": c["skipped"]}


def _by_loop(runs: list[ModuleRun]) -> dict[str, dict[str, ModuleRun]]:
    table: dict[str, dict[str, ModuleRun]] = {}
    for run in runs:
        table.setdefault(run.loop, {})[run.module] = run
    return table


def _regressions(by_loop: dict[str, dict[str, ModuleRun]]) -> list[tuple[str, str, TestOutcome]]:
    """Tests that pass on asyncio's loop but not on greenloop: (module, id, greenloop outcome)."""
    found = []
    for module, ref in by_loop["asyncio"].items():
        green = by_loop["greenloop"].get(module)
        if green is None:
            continue
        for test_id, outcome in ref.results.items():
            got = green.results.get(test_id)
            if outcome.outcome == "passed" and (got is None or got.outcome != "passed"):
                found.append((module, test_id, got or TestOutcome("error", "missing from the greenloop run")))
    return sorted(found, key=lambda item: item[1])


def rerun_differences(by_loop: dict[str, dict[str, ModuleRun]], opts: Options) -> list[str]:
    """Re-run, once, each test that failed on one loop and passed on the other.

    Under load (CI, a shared machine) a few asyncio tests are timing-sensitive. A test whose
    failure does not reproduce in a fresh worker takes its rerun outcome, so neither the gate
    nor the committed results flip on noise; it is listed as flaky (and may still be an
    order-dependent bug: the rerun runs it without the tests that preceded it).
    """
    wanted: dict[tuple[str, str], list[str]] = {}
    for module, ref in by_loop["asyncio"].items():
        green = by_loop["greenloop"].get(module)
        if green is None:
            continue
        for test_id, a in ref.results.items():
            g = green.results.get(test_id)
            if g is None:
                continue
            if a.outcome == "passed" and g.outcome in ("failed", "error"):
                wanted.setdefault(("greenloop", module), []).append(test_id)
            elif g.outcome == "passed" and a.outcome in ("failed", "error"):
                wanted.setdefault(("asyncio", module), []).append(test_id)
    if not wanted or sum(map(len, wanted.values())) > _MAX_RERUNS:
        return []
    print(
        f"re-running {sum(map(len, wanted.values()))} tests whose outcome differs between the loops",
        flush=True,
    )
    flaky = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        reruns = list(pool.map(lambda job: (job, run_module(job[0], job[1], opts, only=wanted[job])), wanted))
    for (loop, module), rerun in reruns:
        first = by_loop[loop][module].results
        for test_id in wanted[(loop, module)]:
            again = rerun.results.get(test_id)
            if again is not None and again.outcome == "passed":
                flaky.append(
                    f"{test_id} on {loop} (first run: {first[test_id].outcome}: "
                    f"{_last_line(first[test_id].detail)})"
                )
                first[test_id] = again
    return sorted(flaky)


def _last_line(detail: str) -> str:
    """The line that says what went wrong: an exception's message, or why a worker died."""
    detail = detail.partition(_LOG_TAIL)[0]
    lines = [line for line in detail.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def loop_report(runs: Iterable[ModuleRun]) -> tuple[list[str], list[str]]:
    """Per-module loop counts, and tests of the greenloop run that built asyncio's own loop."""
    lines = []
    leaks = []
    for run in sorted(runs, key=lambda r: r.module):
        if run.loop != "greenloop":
            continue
        loops: Counter[str] = Counter()
        on_greenloop = 0
        for test_id, res in run.results.items():
            loops.update(res.loops)
            on_greenloop += bool(res.loops.get("greenloop"))
            if res.loops.get("asyncio"):
                leaks.append(test_id)
        lines.append(
            f"  {run.module:<24} {len(run.results):>5} tests, {on_greenloop:>5} on greenloop, "
            f"{loops['greenloop']:>5} greenloop loops, {loops['double']:>4} doubles, "
            f"{loops['asyncio']} asyncio loops"
        )
    return lines, sorted(leaks)


def stale_exclusions(runs: Iterable[ModuleRun], modules: Iterable[str]) -> list[Exclusion]:
    """Exclusions of this Python that matched no test in the modules that were run."""
    matched = {target for run in runs for target, ids in run.excluded.items() if ids}
    ran = set(modules)
    return [e for e in exclusions_for() if e.target.split(".")[0] in ran and e.target not in matched]


def write_results(by_loop: dict[str, dict[str, ModuleRun]]) -> tuple[Path, Path]:
    """compat/results/py3XX.json (counts) and py3XX-tests.txt (per-test outcomes)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    modules = sorted(set(by_loop["asyncio"]) | set(by_loop["greenloop"]))
    per_test: dict[str, dict[str, str]] = {}
    excluded_ids: dict[str, str] = {}
    module_table: dict[str, Any] = {}
    for module in modules:
        entry: dict[str, Any] = {}
        for loop in LOOP_NAMES:
            run = by_loop[loop].get(module)
            if run is None:
                continue
            entry[loop] = _counts(r.outcome for r in run.results.values())
            for test_id, res in run.results.items():
                per_test.setdefault(test_id, {})[loop] = res.outcome
            for target, ids in run.excluded.items():
                for test_id in ids:
                    excluded_ids[test_id] = target
            if loop == "greenloop":
                entry["tests_on_greenloop"] = sum(
                    bool(r.loops.get("greenloop")) for r in run.results.values()
                )
        entry["excluded"] = sum(1 for t, _ in excluded_ids.items() if t.split(".")[0] == module)
        module_table[module] = entry

    totals = {
        loop: _counts(r.outcome for run in by_loop[loop].values() for r in run.results.values())
        for loop in LOOP_NAMES
    }
    regressions = [test_id for _, test_id, _ in _regressions(by_loop)]
    document = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "totals": totals,
        "excluded": len(excluded_ids),
        "greenloop_only_failures": regressions,
        "exclusions": [
            {
                "target": e.target,
                "reason": e.reason,
                "tests": sum(1 for t in excluded_ids.values() if t == e.target),
            }
            for e in exclusions_for()
        ],
        "modules": module_table,
    }
    json_path = RESULTS_DIR / f"{VERSION_TAG}.json"
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    rows = ["# test id (relative to test.test_asyncio)\tasyncio\tgreenloop"]
    for test_id in sorted(set(per_test) | set(excluded_ids)):
        if test_id in excluded_ids:
            rows.append(f"{test_id}\texcluded\texcluded")
        else:
            outcomes = per_test[test_id]
            rows.append(f"{test_id}\t{outcomes.get('asyncio', '-')}\t{outcomes.get('greenloop', '-')}")
    tests_path = RESULTS_DIR / f"{VERSION_TAG}-tests.txt"
    tests_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return json_path, tests_path


def print_table() -> None:
    """The counts tables of compat/README.md, from the committed results files."""
    docs = [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(RESULTS_DIR.glob("py3*.json"), key=lambda p: int(p.stem[3:]))
    ]
    print("| Python | loop | passed | failed | errors | skipped | excluded |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for doc in docs:
        for loop in ("asyncio", "greenloop"):
            c = doc["totals"][loop]
            print(
                f"| {doc['python']} | {loop} | {c['passed']} | {c['failed']} | {c['errors']} "
                f"| {c['skipped']} | {doc['excluded']} |"
            )
    print()
    print("| Python | tests run | of which built a greenloop loop | greenloop-only failures |")
    print("|---|---:|---:|---:|")
    for doc in docs:
        run = sum(doc["totals"]["greenloop"].values())
        on_greenloop = sum(m.get("tests_on_greenloop", 0) for m in doc["modules"].values())
        print(f"| {doc['python']} | {run} | {on_greenloop} | {len(doc['greenloop_only_failures'])} |")


# -- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compat.run_test_asyncio",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--loop", choices=LOOP_NAMES, default="greenloop", help="the loop to test")
    mode.add_argument(
        "--check",
        action="store_true",
        help="run both loops; exit 1 if a test passes on asyncio but not on greenloop",
    )
    mode.add_argument(
        "--write",
        action="store_true",
        help=f"run both loops and write compat/results/{VERSION_TAG}.json and -tests.txt",
    )
    mode.add_argument("--table", action="store_true", help="print the README counts table and exit")
    parser.add_argument("--modules", nargs="+", metavar="MODULE", help="only these test modules")
    parser.add_argument("-k", "--match", help="only tests whose id contains this string")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="workers at a time (default 2)")
    parser.add_argument(
        "--test-timeout",
        type=float,
        default=60.0,
        help="seconds before a single test counts as hung (default 60)",
    )
    parser.add_argument(
        "--module-timeout", type=float, default=600.0, help="seconds before a module is cut off (default 600)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help="worker logs and raw records (default compat/_work)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print full tracebacks of failures")
    args = parser.parse_args(argv)

    if args.table:
        print_table()
        return 0
    all_modules = discover_modules()
    modules = all_modules
    if args.modules:
        unknown = sorted(set(args.modules) - set(all_modules))
        if unknown:
            parser.error(f"no such module in test.test_asyncio: {', '.join(unknown)}")
        modules = sorted(set(args.modules))
    if args.write and (args.modules or args.match):
        parser.error("--write records the whole suite; drop --modules/--match")
    loops = list(LOOP_NAMES) if (args.check or args.write) else [args.loop]
    opts = Options(args.work_dir.resolve(), args.test_timeout, args.module_timeout, args.match, args.verbose)

    print(
        f"test.test_asyncio of Python {sys.version.split()[0]} on {' and '.join(loops)}: "
        f"{len(modules)} modules, {args.jobs} at a time",
        flush=True,
    )
    started = time.monotonic()
    runs = run_all([(loop, m) for loop in loops for m in modules], opts, args.jobs)
    by_loop = _by_loop(runs)
    flaky = rerun_differences(by_loop, opts) if len(loops) == 2 else []
    elapsed = time.monotonic() - started

    status = 0
    print()
    for loop in loops:
        c = _counts(r.outcome for run in by_loop[loop].values() for r in run.results.values())
        print(
            f"{loop:<9}: {c['passed']} passed, {c['failed']} failed, {c['errors']} errors, "
            f"{c['skipped']} skipped"
        )
    excluded = sum(len(ids) for run in by_loop[loops[0]].values() for ids in run.excluded.values())
    print(f"excluded : {excluded} tests (compat/exclusions.py); wall time {elapsed:.0f}s")

    if "greenloop" in by_loop:
        lines, leaks = loop_report(by_loop["greenloop"].values())
        print("\nloops built per module in the greenloop run:")
        print("\n".join(lines))
        if leaks:
            # The conformance claim would be false for these: they ran on asyncio's own loop.
            status = 2
            print(f"\nHARNESS ERROR: {len(leaks)} tests built asyncio's own loop in the greenloop run:")
            for test_id in leaks:
                print(f"  {test_id}")
    if "asyncio" in by_loop:
        strays = [
            t
            for run in by_loop["asyncio"].values()
            for t, r in run.results.items()
            if r.loops.get("greenloop")
        ]
        if strays:
            status = 2
            print(f"\nHARNESS ERROR: {len(strays)} tests built a greenloop loop in the asyncio run")

    stale = stale_exclusions(runs, modules) if not args.match else []
    if stale:
        status = 2
        print("\nHARNESS ERROR: exclusions that match no test on this Python (remove them):")
        for e in stale:
            print(f"  {e.target}")

    if flaky:
        print(f"\n{len(flaky)} tests failed once and passed on a rerun (flaky, or order-dependent):")
        for line in flaky:
            print(f"  {line}")

    if len(loops) == 2:
        regressions = _regressions(by_loop)
        if regressions:
            if args.check:  # --write records them in the results instead
                status = status or 1
            print(f"\n{len(regressions)} tests pass on asyncio's loop but not on greenloop:")
            for _, test_id, got in regressions:
                print(f"  {test_id}: {got.outcome}: {_last_line(got.detail)}")
                if args.verbose:
                    print("    " + got.detail.replace("\n", "\n    "))
        else:
            print("\nevery test that passes on asyncio's loop passes on greenloop")
    else:
        bad = sorted(
            (t, r)
            for run in by_loop[loops[0]].values()
            for t, r in run.results.items()
            if r.outcome in ("failed", "error")
        )
        if bad:
            print(f"\n{len(bad)} tests failed or errored on {loops[0]}:")
            for test_id, res in bad:
                print(f"  {test_id}: {res.outcome}: {_last_line(res.detail)}")
                if args.verbose:
                    print("    " + res.detail.replace("\n", "\n    "))

    if args.write:
        json_path, tests_path = write_results(by_loop)
        print(f"\nwrote {json_path.relative_to(REPO_ROOT)} and {tests_path.relative_to(REPO_ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
