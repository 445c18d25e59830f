"""User-space instructions per operation of every benchmark, counted by valgrind: noise-free.

    python -m demos.bench.instructions                       # every benchmark (slow: ~20 min)
    python -m demos.bench.instructions --bench call_soon_batch --loops asyncio,greenloop
    python -m demos.bench.instructions --wake future,sleep0      # wait-and-wake in a task

On a shared machine a 5 % difference between two loops can hide in the timing noise for
ever. The number of instructions the CPU executes does not depend on what else runs, so it
settles such a question in one run: cachegrind counts every user-space instruction (Python's
and the C code's) of ``loop_micro`` at two scales, and the difference, divided by the
difference in operations executed, is the cost of one operation without start-up and imports.
For the echo rows, the forked server is counted too (valgrind follows fork), so a row is the
user-space work of both ends per message.

Instructions are not time: cache misses weigh differently, and the kernel's share (most of
an echo message: the TCP stack) is invisible here. This complements the timed table; it does
not replace it. For syscalls, ``strace -f -c`` on the same command lines gives the counts.

``--wake`` counts the wait-and-wake round trip of ``demos.bench.green`` the same way: made
blocking-style inside a task (``greenloop-task-block``) against the same round trip written as
``await`` on greenloop's loop (``greenloop-task-await``), and on a green thread.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys

from .green import WAKE_KINDS, _block_ratio
from .loop_micro import BENCHMARKS, LOOPS

# Two small scales: valgrind runs Python ~50x slower, and only the difference matters. The echo
# rows with many connections need larger ones: each connection sends at least one message per
# timed round, so at small scales both runs would send the same number.
SCALES = (0.02, 0.06)
ECHO_SCALES = {1: (0.1, 0.3), 100: (0.2, 0.6), 1000: (0.5, 1.5)}
# One "I refs" summary per process: the client, and the forked echo server if any.
_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _irefs(loop: str, bench: str, scale: float) -> tuple[int, int]:
    """(instructions, operations executed) of one loop_micro run under cachegrind."""
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    cmd += [sys.executable, "-m", "demos.bench.loop_micro", "--loop", loop, "--bench", bench]
    cmd += ["--scale", repr(scale), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    counts = _IREFS.findall(proc.stderr)
    if proc.returncode != 0 or not counts or not proc.stdout.strip():
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-1500:]}")
    ops = int(json.loads(proc.stdout.strip().splitlines()[-1])["ops_executed"])
    return sum(int(c.replace(",", "")) for c in counts), ops


def instructions_per_op(loop: str, bench: str) -> float:
    b = BENCHMARKS[bench]
    low, high = ECHO_SCALES[b.conns] if b.echo else SCALES
    (ir0, ops0), (ir1, ops1) = _irefs(loop, bench, low), _irefs(loop, bench, high)
    if ops1 <= ops0:
        raise RuntimeError(f"{bench}: scales {low} and {high} ran the same number of operations")
    return (ir1 - ir0) / (ops1 - ops0)


WAKE_OPS = (4_000, 12_000)
WAKE_RUNNERS = ("greenloop-task-block", "greenloop-task-await", "greenloop-green")


def wake_instructions(runner: str, kind: str) -> float:
    """Instructions per wait-and-wake round trip of ``kind`` made by ``runner``."""
    counts = []
    for ops in WAKE_OPS:
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
        cmd += [sys.executable, "-m", "demos.bench.green", "--worker", "wake", "--runner", runner]
        cmd += ["--kind", kind, "--wake-ops", str(ops)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        found = _IREFS.findall(proc.stderr)
        if proc.returncode != 0 or not found:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-1500:]}")
        counts.append(int(found[0].replace(",", "")))
    # The worker makes ops // 10 warm-up round trips before the timed ones.
    return (counts[1] - counts[0]) / ((WAKE_OPS[1] - WAKE_OPS[0]) * 1.1)


def _wake_table(kinds: list[str]) -> None:
    print("| round trip | " + " | ".join(f"{r} instr" for r in WAKE_RUNNERS) + " | block/await |")
    print("|---|" + "---:|" * (len(WAKE_RUNNERS) + 1))
    for kind in kinds:
        counts = {runner: wake_instructions(runner, kind) for runner in WAKE_RUNNERS}
        # As in demos.bench.green: for the hand-off, the second wait of each round alone.
        ratio = _block_ratio(kind, counts["greenloop-task-block"], counts["greenloop-task-await"]) or 0.0
        cells = [kind, *(f"{counts[r]:,.0f}" for r in WAKE_RUNNERS), f"{ratio:.3f}x"]
        print("| " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demos.bench.instructions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--bench", help="comma-separated benchmarks (default: all)")
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated loops (default: all three)")
    parser.add_argument(
        "--wake", metavar="KINDS", help=f"count wait-and-wake round trips instead: {','.join(WAKE_KINDS)}"
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    if args.wake:
        kinds = args.wake.split(",")
        for kind in kinds:
            if kind not in WAKE_KINDS:
                parser.error(f"unknown round trip {kind!r}; choose from {', '.join(WAKE_KINDS)}")
        _wake_table(kinds)
        return 0
    benches = args.bench.split(",") if args.bench else list(BENCHMARKS)
    loops = args.loops.split(",")
    for name in benches:
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")

    head = ["benchmark", *(f"{loop} instr/op" for loop in loops)]
    if "greenloop" in loops and "asyncio" in loops:
        head.append("greenloop/asyncio")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for bench in benches:
        counts = {loop: instructions_per_op(loop, bench) for loop in loops}
        cells = [bench, *(f"{counts[loop]:,.0f}" for loop in loops)]
        if "greenloop" in counts and "asyncio" in counts:
            cells.append(f"{counts['greenloop'] / counts['asyncio']:.3f}x")
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
