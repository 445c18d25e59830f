"""How close can threads come to events on CPython? Knot-C beside its floor and the event servers.

    python -m demos.bench.floor [--clients 256] [--seconds 6] [--rounds 5] [--no-write]

Four servers answer the same wrk load (Figure 3's: the SPECweb99-like tree, closed-loop
keep-alive clients, 10 requests per connection) with the same request code (Knot's httptools
reader, page cache and response bytes):

  knot-c               Knot-C: thread-per-connection on greenloop's green threads
  bare-greenlets       the same blocking-style request code on bare greenlets and a
                       dozen-line epoll hub (demos/bare_greenlets): the floor for green
                       threads in Python, with none of an asyncio loop's guarantees
  greenloop-httptools  the code as asyncio Protocol callbacks, on greenloop's loop
  uvloop-httptools     the code as callbacks on uvloop (the issue's reference)

All four run from the start (server on CPU 0, wrk on CPU 1); each round loads every server
in turn, and the table gives the median over rounds of requests/s and of the server's CPU
time per request, with ratios to the uvloop server. Knot-C / bare greenlets is what greenloop
(its asyncio loop, its sockets) and Knot's protections cost; bare greenlets / uvloop is what
switching stacks in CPython costs against calling callbacks from C, which no Python
scheduler can remove.

Writes results/floor-<date>-<commit>.{md,json} unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

from demos.load import report, servers, tree, wrk

SERVERS = ("knot-c", "bare-greenlets", "greenloop-httptools", "uvloop-httptools")
REFERENCE = "uvloop-httptools"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def measure(names: list[str], clients: int, seconds: float, rounds: int) -> dict[str, list[dict[str, float]]]:
    paths = tree.generate()
    root = os.path.dirname(paths)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, load_cpus = ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 else (None, None)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    running: dict[str, servers.Server] = {}
    try:
        for name in names:
            running[name] = servers.Server(name, root, cpus=server_cpus)
        for name in names:  # warm up: page cache, file cache, specialised bytecode
            wrk.run(running[name], 64, 3.0, paths, cpus=load_cpus)
            running[name].wait_idle()
        for i in range(rounds):
            for name in names:
                server = running[name]
                cpu0 = server.cpu_seconds()
                r = wrk.run(server, clients, seconds, paths, cpus=load_cpus)
                cpu_us = (server.cpu_seconds() - cpu0) * 1e6 / max(1, r["requests"])
                server.wait_idle()
                runs[name].append({"rps": r["rps"], "cpu_us": cpu_us, "errors": r["errors"]})
                print(
                    f"[round {i + 1}/{rounds}] {name:20} {r['rps']:9,.0f} req/s  "
                    f"{cpu_us:6.1f} us CPU per request  errors {r['errors']}",
                    flush=True,
                )
    finally:
        for server in running.values():
            server.stop()
    return runs


def table(runs: dict[str, list[dict[str, float]]]) -> tuple[str, dict[str, Any]]:
    med = {
        name: {
            "rps": statistics.median(r["rps"] for r in rs),
            "cpu_us": statistics.median(r["cpu_us"] for r in rs),
            "low": min(r["rps"] for r in rs),
            "high": max(r["rps"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
        }
        for name, rs in runs.items()
    }
    ref = med.get(REFERENCE)
    rows = []
    for name, m in med.items():
        ratio = f"{m['rps'] / ref['rps']:.2f}x" if ref else ""
        spread = f"{m['low']:,.0f}-{m['high']:,.0f}"
        rows.append([name, m["rps"], spread, m["cpu_us"], ratio, m["errors"]])
    header = ["server", "req/s (median)", "lowest-highest", "CPU µs per request", f"/ {REFERENCE}", "errors"]
    return report.markdown_table(header, rows), med


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.bench.floor", description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=256)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if not wrk.have_wrk():
        sys.exit("demos.bench.floor needs wrk (make system-deps installs it)")
    info = report.machine_info()
    runs = measure(args.servers.split(","), args.clients, args.seconds, args.rounds)
    text, med = table(runs)
    command = "python -m demos.bench.floor " + " ".join(sys.argv[1:])
    report.publish(
        f"Threads against events on one request path: {args.clients} clients, median of {args.rounds} rounds",
        info,
        command.strip(),
        text,
        directory=RESULTS,
        name="floor",
        data={"args": vars(args), "runs": runs, "median": med},
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
