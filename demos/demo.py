"""make demo: Knot (blocking threads on greenloop) beside aiohttp (events), under the same load.

    python -m demos.demo [--clients 16,256,1024,4096] [--duration 8] [--servers ...]

Generates the document tree (demos/load/tree.py), starts Knot-C on greenloop and the aiohttp
baseline on uvloop and on asyncio's loop side by side, then loads each in turn at a few client
counts with closed-loop keep-alive clients (wrk if installed, else the greenloop load
generator). About two minutes in all. Prints a comparison table and writes
docs/results/demo.png and docs/results/demo.md.

On a machine with two or more CPUs the servers share CPU 0 (only the one under load is busy)
and the load generator gets CPU 1, as in the paper's setup of one server machine and separate
clients.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

from demos.load import report, servers, tree, tuning, wrk

DEFAULT_SERVERS = ["knot-c", "aiohttp-uvloop", "aiohttp-asyncio"]


def cpu_split() -> tuple[set[int] | None, set[int] | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.demo", description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="16,256,1024,4096")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of load per point")
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help=", ".join(servers.SERVERS))
    p.add_argument("--out", default=report.RESULTS_DIR)
    args = p.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    names = args.servers.split(",")
    server_cpus, load_cpus = cpu_split()
    info = report.machine_info()

    print("generating the document tree ...", flush=True)
    paths = tree.generate()
    root = os.path.dirname(paths)
    tool = "wrk" if wrk.have_wrk() else "the greenloop load generator (wrk not installed)"
    total = len(names) * len(clients)
    print(f"load: {tool}; {total} points of {args.duration:g} s", end="")
    print(f"; servers on CPU {server_cpus}, load on {load_cpus}" if server_cpus else "")

    results: dict[str, list[dict]] = {}
    step = 0
    with contextlib.ExitStack() as stack:
        info["tuning"] = stack.enter_context(tuning.apply())
        for note in info["tuning"]:
            print("kernel:", note, flush=True)
        running = {}
        for name in names:  # side by side: all listening before any is loaded
            running[name] = stack.enter_context(servers.Server(name, root, cpus=server_cpus))
            print(f"  {running[name].label:28} {running[name].url}", flush=True)
        for name, server in running.items():
            wrk.run(server, 64, 1.0, paths, cpus=load_cpus)  # warm the page cache
            results[name] = []
            for n in clients:
                step += 1
                r = wrk.run(server, n, args.duration, paths, cpus=load_cpus)
                results[name].append(r)
                print(
                    f"[{step:2}/{total}] {server.label:28} {n:6} clients: {r['rps']:9,.0f} req/s "
                    f"{r['mbit_s']:7,.0f} Mbit/s  p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}"
                    f"  RSS {r['rss_max'] / 2**20:5.0f} MiB",
                    flush=True,
                )
        labels = {name: server.label for name, server in running.items()}

    header = ["clients", *(labels[n] + " req/s" for n in names)]
    rows = [[n, *(results[name][i]["rps"] for name in names)] for i, n in enumerate(clients)]
    if "knot-c" in names and len(names) > 1:
        base = next(n for n in names if n != "knot-c")
        header.append(f"Knot-C / {labels[base]}")
        for row, i in zip(rows, range(len(clients)), strict=True):
            row.append(results["knot-c"][i]["rps"] / max(1.0, results[base][i]["rps"]))
    table = report.markdown_table(header, rows)
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    print()
    print(table)
    print(f"\nfailed requests (all points): {errors}")

    os.makedirs(args.out, exist_ok=True)
    series = {
        labels[name]: [(r["clients"], {"rps": r["rps"], "mbit_s": r["mbit_s"]}) for r in results[name]]
        for name in names
    }
    png = os.path.join(args.out, "demo.png")
    report.plot(
        png,
        "Knot (threads on greenloop) vs aiohttp (events)",
        series,
        [{"key": "rps", "ylabel": "requests/s"}, {"key": "mbit_s", "ylabel": "Mbit/s"}],
    )
    command = "make demo (python -m demos.demo " + " ".join(sys.argv[1:]) + ")"
    with open(os.path.join(args.out, "demo.md"), "w") as f:
        f.write("# make demo\n\n")
        f.write(report.machine_markdown(info, command.replace(" )", ")")) + "\n")
        mean = tree.mean_size(paths) / 1024
        f.write(f"- load: {tool}, {args.duration:g} s per point, mean response {mean:.1f} KiB\n\n")
        f.write(table + f"\n\nFailed requests over all points: {errors}.\n\n![demo](demo.png)\n")
    with open(os.path.join(args.out, "demo.json"), "w") as f:
        json.dump({"machine": info, "results": results, "time": time.time()}, f, indent=1)
    print(f"wrote {png} and demo.md")


if __name__ == "__main__":
    main()
