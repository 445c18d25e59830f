"""Driver: every loop micro-benchmark on asyncio, uvloop and greenloop, in one run, one table.

    python -m demos.bench                 # 15 repeats (about 5 minutes)
    python -m demos.bench --quick         # smoke run: 3 repeats at 1/10 of the operations
    python -m demos.bench --repeat 9 --bench sleep0_pingpong,task_create_await

Each measurement is a fresh ``python -m demos.bench.loop_micro`` process, so no loop inherits
another's warm caches, heap or imported modules. The machine is shared and noisy, so the loops
are interleaved (asyncio, uvloop, greenloop, asyncio, ... for each benchmark, and every repeat
goes through all benchmarks once): a burst of background load then hits all three loops
alike instead of one loop's whole series. The table shows medians over the repeats.

Results go to stdout as one Markdown table and to ``demos/bench/results/loop-<date>.{json,md}``
together with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..machine import cpu_model as _cpu_model
from ..machine import package_version as _version
from .loop_micro import BENCHMARKS, LOOPS

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results"

CLOCK_NOTE = {
    False: "Time is CPU time per operation: this thread's for the callback/task rows, client plus "
    "server process CPU per message for the echo rows (other processes' load does not count).",
    True: "Time is elapsed (wall-clock) time per operation.",
}
QUICK_SCALE = 0.1
QUICK_REPEAT = 3
# A measurement takes a few seconds at most; this only stops a hung one from stalling the run.
MEASUREMENT_TIMEOUT = 180.0


def _measure(loop: str, bench: str, scale: float, wall_clock: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "demos.bench.loop_micro", "--loop", loop, "--bench", bench, "--json"]
    cmd += ["--scale", repr(scale)] + (["--wall-clock"] if wall_clock else [])
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, timeout=MEASUREMENT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {MEASUREMENT_TIMEOUT:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if proc.stderr.strip():
        # A benchmark that logs (a destroyed task, a callback exception) is suspect; keep it.
        result["stderr"] = proc.stderr.strip()[-2000:]
    return result


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "greenloop"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    # Only greenloop/ matters for the numbers; a dirty bench dir is the normal case while editing.
    return head + ("+dirty greenloop/" if dirty else "")


def _greenloop_fingerprint() -> str:
    """Hash of greenloop's sources: the numbers belong to exactly this code.

    The working tree may change while a run is in progress (others commit to the same
    checkout); comparing the fingerprint at start and end catches that.
    """
    digest = hashlib.sha256()
    for path in sorted((REPO / "greenloop").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _machine(command: str) -> dict[str, Any]:
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = []
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cpus": affinity,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": {d: _version(d) for d in ("greenloop", "greenlet", "uvloop")},
        "git_commit": _git_commit(),
        "greenloop_sources_sha256": _greenloop_fingerprint(),
        "command": command,
        "loadavg_start": list(os.getloadavg()),
    }


def _summarise(runs: dict[str, dict[str, list[dict[str, Any]]]], loops: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for bench, per_loop in runs.items():
        row: dict[str, Any] = {"bench": bench}
        for loop in loops:
            values = [r["sec_per_op"] for r in per_loop[loop] if "sec_per_op" in r]
            row[loop] = {
                "median_us": statistics.median(values) * 1e6 if values else None,
                "runs_us": [v * 1e6 for v in values],
                "errors": [r["error"] for r in per_loop[loop] if "error" in r],
            }
        for base in ("asyncio", "uvloop"):
            key = f"greenloop/{base}"
            g, b = row.get("greenloop", {}).get("median_us"), row.get(base, {}).get("median_us")
            row[key] = g / b if g and b else None
            # Ratios of the runs made back to back (same repeat): their spread shows how much
            # of the median ratio the machine's noise could account for.
            if "greenloop" in loops and base in loops:
                paired = [
                    gr["sec_per_op"] / br["sec_per_op"]
                    for gr, br in zip(per_loop["greenloop"], per_loop[base], strict=True)
                    if "sec_per_op" in gr and "sec_per_op" in br
                ]
                row[key + " per-run"] = paired
        rows.append(row)
    return rows


def _fmt_us(v: float | None) -> str:
    if v is None:
        return "error"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _fmt_ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _table(rows: list[dict[str, Any]], loops: list[str]) -> str:
    head = ["benchmark", *(f"{loop} µs/op" for loop in loops)]
    ratios = [b for b in ("asyncio", "uvloop") if "greenloop" in loops and b in loops]
    head += [f"greenloop/{b}" for b in ratios]
    if "asyncio" in ratios:
        head.append("greenloop/asyncio per-run range")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in rows:
        cells = [row["bench"], *(_fmt_us(row[loop]["median_us"]) for loop in loops)]
        cells += [_fmt_ratio(row[f"greenloop/{b}"]) for b in ratios]
        if "asyncio" in ratios:
            paired = row["greenloop/asyncio per-run"]
            cells.append(f"{min(paired):.2f} to {max(paired):.2f}" if paired else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown(report: dict[str, Any], table: str) -> str:
    m = report["machine"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    return "\n".join(
        [
            f"# greenloop loop micro-benchmarks, {report['date']}",
            "",
            f"- command: `{m['command']}`",
            f"- machine: {m['cpu_model']}, {m['cores']} cores (usable {m['usable_cpus']}), "
            f"Linux {m['kernel']}, load average {m['loadavg_start'][0]:.2f} at start, "
            f"{m['loadavg_end'][0]:.2f} at end",
            f"- Python {m['python']}; {pkgs}; greenloop commit {m['git_commit']}, "
            f"sources sha256 {m['greenloop_sources_sha256']}"
            + (" (changed during the run!)" if m.get("greenloop_changed_during_run") else ""),
            f"- {report['repeat']} repeats per cell, scale {report['scale']}, "
            f"{report['duration_s']:.0f} s in all; cells are medians in µs per operation",
            "",
            table,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demos.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, help="fresh-process runs per benchmark and loop (default 15)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 repeats, 1/10 of the operations")
    parser.add_argument("--scale", type=float, help="multiply every benchmark's operation count")
    parser.add_argument("--bench", help="comma-separated benchmarks (default: all; see loop_micro --list)")
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated loops (default: all three)")
    parser.add_argument(
        "--wall-clock",
        action="store_true",
        help="elapsed time per operation instead of CPU time (see README)",
    )
    parser.add_argument("--no-write", action="store_true", help="print the table only, write no result files")
    args = parser.parse_args(argv)

    # 15: on this shared VM single runs of an echo row vary by +-40 %; the median of 15
    # moves by a few per cent between full runs, the median of 5 by up to 15 %.
    repeat = args.repeat or (QUICK_REPEAT if args.quick else 15)
    scale = args.scale or (QUICK_SCALE if args.quick else 1.0)
    benches = args.bench.split(",") if args.bench else list(BENCHMARKS)
    loops = args.loops.split(",")
    for name in benches:
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    for name in loops:
        if name not in LOOPS:
            parser.error(f"unknown loop {name!r}; choose from {', '.join(LOOPS)}")

    command = shlex.join(["python", "-m", "demos.bench", *(sys.argv[1:] if argv is None else argv)])
    machine = _machine(command)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {b: {loop: [] for loop in loops} for b in benches}
    t0 = time.monotonic()
    total = repeat * len(benches) * len(loops)
    done = 0
    for r in range(repeat):
        for bench in benches:
            for loop in loops:
                result = _measure(loop, bench, scale, args.wall_clock)
                runs[bench][loop].append(result)
                done += 1
                shown = (
                    f"{result['sec_per_op'] * 1e6:.2f} µs/op" if "sec_per_op" in result else result["error"]
                )
                print(
                    f"[{done}/{total}] repeat {r + 1}: {bench} on {loop}: {shown}",
                    file=sys.stderr,
                    flush=True,
                )
    duration = time.monotonic() - t0
    machine["loadavg_end"] = list(os.getloadavg())
    if _greenloop_fingerprint() != machine["greenloop_sources_sha256"]:
        machine["greenloop_changed_during_run"] = True
        print("warning: greenloop's sources changed during the run; rerun for clean numbers", file=sys.stderr)

    rows = _summarise(runs, loops)
    table = _table(rows, loops)
    print(table)
    print(f"\n{CLOCK_NOTE[args.wall_clock]}")
    slower = [row["bench"] for row in rows if (row.get("greenloop/asyncio") or 0) > 1.0]
    if "greenloop" in loops and "asyncio" in loops:
        verdict = "none" if not slower else ", ".join(slower)
        print(f"\nrows where greenloop's median is above asyncio's: {verdict}")

    if not args.no_write:
        now = dt.datetime.now(dt.UTC).astimezone()
        report = {
            "date": now.isoformat(timespec="seconds"),
            "repeat": repeat,
            "scale": scale,
            "clock": "wall" if args.wall_clock else "cpu",
            "duration_s": duration,
            "loops": loops,
            "machine": machine,
            "rows": rows,
            "runs": runs,
        }
        RESULTS.mkdir(exist_ok=True)
        stem = f"loop-{now:%Y-%m-%d}" + ("-quick" if args.quick else "")
        (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        (RESULTS / f"{stem}.md").write_text(
            _markdown(report, table + "\n\n" + CLOCK_NOTE[args.wall_clock]), encoding="utf-8"
        )
        print(f"wrote {RESULTS.relative_to(REPO)}/{stem}.{{json,md}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
