"""How close can threads come to events on CPython? Knot-C beside its floor and the event servers.

    python -m demos.bench.floor [--clients 256[,16384...]] [--seconds 6] [--rounds 5] [--no-write]

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

With several client counts (``--clients 64,16384``) every round loads every server at every
count, and a last table gives the share of its rate each server keeps at each count against
the first: the same question as Figure 3's "16,384 clients keep 90 % of the peak", asked of
the floor and of the event servers in the same run.

Writes results/floor-<date>-<commit>.{md,json} unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from demos.load import report, servers, tree, tuning, wrk

SERVERS = ("knot-c", "bare-greenlets", "greenloop-httptools", "uvloop-httptools")
REFERENCE = "uvloop-httptools"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def measure(
    names: list[str], counts: list[int], seconds: float, rounds: int
) -> dict[int, dict[str, list[dict[str, float]]]]:
    paths = tree.generate()
    root = os.path.dirname(paths)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, load_cpus = ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 else (None, None)
    runs: dict[int, dict[str, list[dict[str, float]]]] = {c: {name: [] for name in names} for c in counts}
    running: dict[str, servers.Server] = {}
    try:
        for name in names:
            running[name] = servers.Server(name, root, cpus=server_cpus)
        for name in names:  # warm up: page cache, file cache, specialised bytecode
            wrk.run(running[name], 64, 3.0, paths, cpus=load_cpus)
            running[name].wait_idle()
        for i in range(rounds):
            for clients in counts:
                for name in names:
                    server = running[name]
                    cpu0 = server.cpu_seconds()
                    r = wrk.run(server, clients, seconds, paths, cpus=load_cpus)
                    cpu_us = (server.cpu_seconds() - cpu0) * 1e6 / max(1, r["requests"])
                    server.wait_idle()
                    runs[clients][name].append({"rps": r["rps"], "cpu_us": cpu_us, "errors": r["errors"]})
                    print(
                        f"[round {i + 1}/{rounds}] {clients:6,} clients {name:20} {r['rps']:9,.0f} req/s  "
                        f"{cpu_us:6.1f} us CPU per request  errors {r['errors']}",
                        flush=True,
                    )
    finally:
        for server in running.values():
            server.stop()
    return runs


def medians(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        name: {
            "rps": statistics.median(r["rps"] for r in rs),
            "cpu_us": statistics.median(r["cpu_us"] for r in rs),
            "low": min(r["rps"] for r in rs),
            "high": max(r["rps"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
        }
        for name, rs in runs.items()
    }


def table(med: dict[str, dict[str, float]]) -> str:
    ref = med.get(REFERENCE)
    rows = []
    for name, m in med.items():
        ratio = f"{m['rps'] / ref['rps']:.2f}x" if ref else ""
        spread = f"{m['low']:,.0f}-{m['high']:,.0f}"
        rows.append([name, m["rps"], spread, m["cpu_us"], ratio, m["errors"]])
    header = ["server", "req/s (median)", "lowest-highest", "CPU µs per request", f"/ {REFERENCE}", "errors"]
    return report.markdown_table(header, rows)


def share_table(med: dict[int, dict[str, dict[str, float]]]) -> str:
    """Each server's median rate at each client count over its median rate at the first."""
    counts = list(med)
    first = med[counts[0]]
    rows = []
    for name in first:
        cells = [f"{med[c][name]['rps'] / first[name]['rps']:.0%}" for c in counts[1:]]
        rows.append([name, *cells])
    header = ["server", *(f"{c:,} clients / {counts[0]:,}" for c in counts[1:])]
    return report.markdown_table(header, rows)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.bench.floor", description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="256", help="a client count, or several: 64,16384")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    try:
        counts = [int(c) for c in args.clients.split(",")]
    except ValueError:
        p.error(f"--clients takes client counts separated by commas, like 64,16384, not {args.clients!r}")
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        p.error(f"--clients needs distinct counts of at least 1, not {args.clients!r}")
    if not wrk.have_wrk():
        sys.exit("demos.bench.floor needs wrk (make system-deps installs it)")
    info = report.machine_info()
    with tuning.apply() as notes:  # 16,384 clients need the kernel's port range widened
        info["tuning"] = notes
        runs = measure(args.servers.split(","), counts, args.seconds, args.rounds)
    med = {c: medians(rs) for c, rs in runs.items()}
    if len(counts) == 1:
        text = table(med[counts[0]])
    else:
        text = "\n\n".join(f"{c:,} clients:\n\n{table(m)}" for c, m in med.items())
        text += "\n\nShare of the rate kept, against the first client count:\n\n" + share_table(med)
    shown = ", ".join(f"{c:,}" for c in counts)
    command = "python -m demos.bench.floor " + " ".join(sys.argv[1:])
    report.publish(
        f"Threads against events on one request path: {shown} clients, median of {args.rounds} rounds",
        info,
        command.strip(),
        text,
        directory=RESULTS,
        name="floor",
        data={
            "args": vars(args),
            "runs": {str(c): rs for c, rs in runs.items()},
            "median": {str(c): m for c, m in med.items()},
        },
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
