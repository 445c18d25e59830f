"""make figures: the paper's Figures 3 and 2, measured here. PNG + Markdown under docs/results/.

    python -m demos.figures [--fig 3,2] [--quick] [--duration S] [--clients LIST]
                            [--servers LIST] [--pool-sizes LIST]

Figure 3 (web server bandwidth versus simultaneous clients): every server runs on CPU 0, and
each is loaded in turn from CPU 1 (one client count on every server, then the next) by
closed-loop keep-alive clients (wrk with demos/load/knot.lua, 10 requests per connection on
average) at 1 ... 16,384 clients over the document tree of demos/load/tree.py. Per point:
requests/s, Mbit/s, p99 latency, failed requests, and the server's peak RSS. Servers: Knot-C
and Knot-A on greenloop, the same Knot code on gevent and on OS threads, aiohttp on asyncio
and on uvloop, the event-style reference (uvloop + httptools with Knot's parser and cache), and
the floor for green threads: the same request code on bare greenlets and a dozen-line epoll hub.

Figure 2 (SEDA's threaded-server benchmark, demos/load/seda.py): requests per second versus
pool size, for greenloop green threads (1 ... 1,000,000), the same pool on bare greenlets
with a deque for a scheduler (the floor), OS threads (as far as the machine
allows: 10,000 by default), and two asyncio event servers: one consumer pulling requests in
batches (SEDA's), and one callback per request (the event dual of one thread switch each).

Each figure writes figureN.png, figureN.md (machine, versions, command, table) and
figureN.json (raw numbers) under docs/results/. --quick runs a short subset to check that
everything works; its numbers are not the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from demos.load import report, servers, tree, tuning, wrk

FIG3_SERVERS = [
    "knot-c",
    "knot-a",
    "knot-patched",
    "knot-gevent",
    "knot-threads",
    "aiohttp-asyncio",
    "aiohttp-uvloop",
    "aiohttp-static",
    "uvloop-httptools",
    "greenloop-httptools",
    "bare-greenlets",
]
FIG3_CLIENTS = [1, 4, 16, 64, 256, 1024, 4096, 16384]
FIG2_SIZES = {
    "greenloop": [1, 10, 100, 1000, 10_000, 100_000, 1_000_000],
    "greenlet": [1, 10, 100, 1000, 10_000, 100_000, 1_000_000],
    "threads": [1, 10, 100, 1000, 10_000],
    "asyncio": [1],
    "asyncio-dispatch": [1],
}


def cpu_split() -> tuple[set[int] | None, set[int] | None]:
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 else (None, None)


WARM_UP_S = 6.0  # per Figure 3 server, at 64 clients, before its first point


def figure3(args: argparse.Namespace, info: dict[str, Any]) -> None:
    paths = tree.generate()
    root = os.path.dirname(paths)
    server_cpus, load_cpus = cpu_split()
    names = args.servers.split(",") if args.servers else FIG3_SERVERS
    clients = [int(c) for c in args.clients.split(",")] if args.clients else FIG3_CLIENTS
    if args.quick:
        clients = clients[::3] if not args.clients else clients
    duration = args.duration or (2.0 if args.quick else 10.0)
    warm_up = 2.0 if args.quick else WARM_UP_S
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    total, step = len(names) * len(clients), 0
    # Every server runs from the start (idle ones cost nothing), and each client count is
    # measured on all of them in turn: this shared host's speed drifts by 20-30 % over
    # minutes, so servers measured one after the other, 20 minutes apart, were compared
    # across that drift; now the servers of one point are measured within a few minutes.
    running: dict[str, servers.Server] = {}
    try:
        for name in names:
            running[name] = servers.Server(name, root, cpus=server_cpus)
        labels = {name: server.label for name, server in running.items()}
        for name in names:
            # Warm up: the page cache, the OS's file cache, the interpreter's specialised code.
            # With 2 s, the first points of the first server measured were up to 2-3x low
            # (cold), which a second run of the same point did not reproduce.
            wrk.run(running[name], 64, warm_up, paths, cpus=load_cpus)
        for n in clients:
            for name in names:
                server = running[name]
                step += 1
                try:
                    # Opening thousands of connections takes seconds, and is part of the point:
                    # give the big points longer so that it does not dominate them.
                    r = wrk.run(server, n, duration * (2 if n >= 4096 else 1), paths, cpus=load_cpus)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    r = {"clients": n, "error": str(exc)[-300:], "rps": 0.0, "mbit_s": 0.0, "errors": -1}
                r["server_rss"] = server.rss()
                # A server that fell behind goes on answering after wrk has stopped; the next
                # server's point must not share CPU 0 with that.
                r["idle_after_s"] = server.wait_idle()
                results[name].append(r)
                print(
                    f"[fig3 {step:3}/{total}] {server.label:30} {n:6} clients: {r['rps']:9,.0f} req/s "
                    f"{r['mbit_s']:7,.0f} Mbit/s  errors {r['errors']}  "
                    f"RSS {r.get('rss_max', 0) / 2**20:5.0f} MiB",
                    flush=True,
                )
                if not server.alive():
                    print(f"  {name} died; restarting it", flush=True)
                    server.stop()
                    running[name] = servers.Server(name, root, cpus=server_cpus)
    finally:
        for server in running.values():
            server.stop()

    rows = []
    for name in names:
        for r in results[name]:
            rows.append(
                [
                    labels[name],
                    r["clients"],
                    r["rps"],
                    r["mbit_s"],
                    r.get("p99_ms", 0.0),
                    r["errors"],
                    r.get("rss_max", 0) / 2**20,
                ]
            )
    table = report.markdown_table(
        ["server", "clients", "requests/s", "Mbit/s", "p99 ms", "failed requests", "peak RSS MiB"], rows
    )
    summary = _fig3_summary(results, labels)
    series = {
        labels[n]: [
            (r["clients"], {"rps": r["rps"], "mbit_s": r["mbit_s"], "rss": r.get("rss_max", 0) / 2**20})
            for r in results[n]
            if "error" not in r
        ]
        for n in names
    }
    png = os.path.join(args.out, "figure3.png")
    report.plot(
        png,
        "Figure 3: web server throughput versus simultaneous clients",
        series,
        [
            {"key": "mbit_s", "ylabel": "bandwidth (Mbit/s)"},
            {"key": "rps", "ylabel": "requests/s"},
            {"key": "rss", "ylabel": "server peak RSS (MiB)", "log_y": True},
        ],
    )
    mean = tree.mean_size(paths) / 1024
    _write(
        args,
        "figure3",
        info,
        title="Figure 3: web server bandwidth versus simultaneous clients",
        body=f"- load: wrk (or the greenloop generator where wrk is missing), {duration:g} s per point after "
        f"a {warm_up:g} s warm-up, 10 requests per connection on average; SPECweb99-like tree, mean response "
        f"{mean:.1f} KiB; servers on CPU {server_cpus}, all running, each client count measured on every "
        f"server in turn; load on CPU {load_cpus}\n\n{summary}\n\n{table}",
        raw={"results": results, "labels": labels},
    )


# Knot-C's peak is reported as a ratio to each of these.
_FIG3_VERSUS = [
    ("aiohttp-uvloop", "aiohttp on uvloop"),
    ("knot-gevent", "Knot on gevent"),
    ("uvloop-httptools", "the event-style uvloop + httptools server"),
    ("greenloop-httptools", "the same event-style server on greenloop's loop"),
    ("bare-greenlets", "the bare-greenlet floor"),
]


def _fig3_summary(results: dict[str, list[dict[str, Any]]], labels: dict[str, str]) -> str:
    peaks = {n: max((r["rps"] for r in rs), default=0.0) for n, rs in results.items()}
    lines = ["Peak requests/s: " + ", ".join(f"{labels[n]} {p:,.0f}" for n, p in peaks.items()) + "."]
    knot = peaks.get("knot-c")
    if knot:
        for other, what in _FIG3_VERSUS:
            if peaks.get(other):
                lines.append(f"Knot-C peak / {what} peak: {knot / peaks[other]:.2f}.")
        last = results["knot-c"][-1]
        lines.append(
            f"Knot-C at {last['clients']:,} clients: {last['rps'] / knot:.0%} of its peak; "
            f"failed requests over all its points: {sum(max(0, r['errors']) for r in results['knot-c'])}."
        )
    # How much of its own peak each server keeps at the most clients: the 16,384-client
    # decline is shared by every server whose per-connection state is Python objects.
    most = max((r["clients"] for rs in results.values() for r in rs), default=0)
    kept = [
        f"{labels[n]} {rs[-1]['rps'] / peaks[n]:.0%}"
        for n, rs in results.items()
        if rs and rs[-1]["clients"] == most and peaks.get(n) and "error" not in rs[-1]
    ]
    if kept:
        lines.append(f"Share of its own peak kept at {most:,} clients: " + ", ".join(kept) + ".")
    return "\n".join(lines)


def _seda_point(impl: str, n: int, seconds: float, cpus: set[int] | None) -> dict[str, Any]:
    """One run of demos/load/seda.py in its own process: its JSON line, or an error."""
    cmd = [sys.executable, "-m", "demos.load.seda", "--impl", impl, "--n", str(n), "--seconds", str(seconds)]
    try:
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=max(600.0, n / 1000),
            check=False,
            cwd=servers.REPO,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        r: dict[str, Any] = json.loads(line) if line.startswith("{") else {"error": out.stderr.strip()[-300:]}
    except subprocess.TimeoutExpired:
        r = {"error": "timed out"}
    r.setdefault("impl", impl)
    r.setdefault("n", n)
    return r


def _median_point(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run of one point (by requests/s), with every run's rate kept beside it."""
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["rps"])
    if not ok:
        return runs[-1]
    point = dict(ok[(len(ok) - 1) // 2])  # the middle run (the lower of two middles)
    point["rps"] = statistics.median(r["rps"] for r in ok)
    point["rps_runs"] = [r["rps"] for r in runs if "error" not in r]
    point["rss_max"] = max(r["rss_max"] for r in ok)
    return point


def _fig2_summary(ok: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each green pool's share of its peak at 100,000 threads and beyond, and what the growth
    costs per request: the bare greenlets' growth is the part any scheduler on greenlet pays."""
    lines = []
    for impl, label in (("greenloop", "greenloop"), ("greenlet", "bare greenlets")):
        rs = ok.get(impl, [])
        if not rs:
            continue
        peak = max(r["rps"] for r in rs)
        for r in rs:
            if r["n"] >= 100_000:
                extra = (1 / r["rps"] - 1 / peak) * 1e6
                lines.append(
                    f"{label} at {r['n']:,} threads: {r['rps'] / peak:.0%} of its peak "
                    f"({extra:.2f} µs more per request than at its peak)."
                )
    return lines


def figure2(args: argparse.Namespace, info: dict[str, Any]) -> None:
    sizes = dict(FIG2_SIZES)
    if args.pool_sizes:
        chosen = [int(s) for s in args.pool_sizes.split(",")]
        sizes = {impl: [1] if impl.startswith("asyncio") else chosen for impl in sizes}
    if args.quick:
        sizes = {
            "greenloop": [1, 100, 10_000],
            "greenlet": [1, 100, 10_000],
            "threads": [1, 100],
            "asyncio": [1],
            "asyncio-dispatch": [1],
        }
    seconds = args.duration or (1.0 if args.quick else 5.0)
    repeat = 1 if args.quick else args.repeat
    cpus = cpu_split()[0]
    # Rounds over every point, not one point's runs back to back: this host's speed drifts
    # by 20-30 % over minutes, and a drift should spread over all points, not tilt the curve.
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {(i, n): [] for i, ns in sizes.items() for n in ns}
    for rnd in range(1, repeat + 1):
        for (impl, n), done in runs.items():
            t0 = time.monotonic()
            r = _seda_point(impl, n, seconds, cpus)
            done.append(r)
            shown = r.get("error") or f"{r['rps']:10,.0f} req/s, RSS {r['rss_max'] / 2**20:7,.0f} MiB"
            print(
                f"[fig2 {rnd}/{repeat}] {impl:9} N={n:>9,}: {shown}  ({time.monotonic() - t0:.0f} s)",
                flush=True,
            )
    results: dict[str, list[dict[str, Any]]] = {impl: [] for impl in sizes}
    for (impl, _), done in runs.items():
        results[impl].append(_median_point(done))
    ok = {impl: [r for r in rs if "error" not in r] for impl, rs in results.items()}

    def spread(r: dict[str, Any]) -> str:
        rates = r.get("rps_runs") or []
        return f"{min(rates):,.0f} - {max(rates):,.0f}" if len(rates) > 1 else ""

    rows = [
        [impl, r["n"], r.get("rps", 0.0), spread(r), r.get("rss_max", 0) / 2**20, r.get("error", "")]
        for impl, rs in results.items()
        for r in rs
    ]
    table = report.markdown_table(
        [
            "implementation",
            "pool size",
            "requests/s (median)",
            "runs: lowest - highest",
            "peak RSS MiB",
            "error",
        ],
        rows,
    )
    lines = _fig2_summary(ok)
    green = ok.get("greenloop", [])
    top = max((r["n"] for r in green), default=1)
    series = {}
    names = {
        "greenloop": "greenloop green threads",
        "greenlet": "bare greenlets, round-robin (the floor)",
        "threads": "OS threads",
        "asyncio": "asyncio, one consumer (no dispatch per request)",
        "asyncio-dispatch": "asyncio, one callback per request",
    }
    for impl, rs in ok.items():
        pts = [(r["n"], {"rps": r["rps"]}) for r in rs]
        if impl.startswith("asyncio") and pts:  # an event server has no pool: a flat reference line
            pts = [(1, pts[0][1]), (top, pts[0][1])]
        series[names[impl]] = pts
    png = os.path.join(args.out, "figure2.png")
    report.plot(
        png,
        "Figure 2: SEDA's threaded server benchmark (8 KiB cached reads)",
        series,
        [{"key": "rps", "ylabel": "requests/s", "xlabel": "threads in the pool", "xbase": 10}],
    )
    _write(
        args,
        "figure2",
        info,
        title="Figure 2: threaded server benchmark, throughput versus pool size",
        body=f"- {seconds:g} s per run after a 0.5 s warm-up, the median of {repeat} runs per point "
        "(taken in rounds over all points); each request is an 8 KiB pread of a cached file and one "
        f"trip through the scheduler (see demos/load/seda.py); pinned to CPU {cpus}\n\n"
        + "\n".join(lines)
        + f"\n\n{table}",
        raw={"results": results},
    )


def _write(
    args: argparse.Namespace, name: str, info: dict[str, Any], *, title: str, body: str, raw: dict
) -> None:
    command = "make figures (python -m demos.figures " + " ".join(sys.argv[1:]) + ")"
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write(f"# {title}\n\n{report.machine_markdown(info, command.replace(' )', ')'))}\n{body}\n\n")
        f.write(f"![{name}]({name}.png)\n")
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump({"machine": info, **raw}, f, indent=1)
    print(f"wrote {os.path.join(args.out, name)}.png, .md, .json", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.figures", description=__doc__.splitlines()[0])
    p.add_argument("--fig", default="3,2", help="which figures, in order")
    p.add_argument(
        "--quick", action="store_true", help="a short subset: checks the pipeline, not the figures"
    )
    p.add_argument("--duration", type=float, default=0.0, help="seconds per point")
    p.add_argument("--clients", default="", help="Figure 3 client counts (comma-separated)")
    p.add_argument("--servers", default="", help="Figure 3 servers: " + ",".join(servers.SERVERS))
    p.add_argument("--pool-sizes", default="", help="Figure 2 pool sizes (comma-separated)")
    p.add_argument("--repeat", type=int, default=3, help="Figure 2: runs per point (the median is shown)")
    p.add_argument("--out", default=report.RESULTS_DIR)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    info = report.machine_info()
    with tuning.apply() as notes:
        info["tuning"] = notes
        for note in notes:
            print("kernel:", note, flush=True)
        for fig in args.fig.split(","):
            {"3": figure3, "2": figure2}[fig.strip()](args, info)


if __name__ == "__main__":
    main()
