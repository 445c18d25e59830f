"""Run one load point: N closed-loop keep-alive clients for D seconds against a server.

Uses wrk with demos/load/knot.lua when wrk is installed (Debian package ``wrk``: ``make
system-deps`` installs it), else the greenloop load generator in demos/load/client.py. Either
way the load runs in its own process pinned to the given CPUs, and the result is a dict:

    requests, bytes, seconds, rps, mbit_s, errors (sum), connect/read/write/status/timeout,
    p50_ms, p99_ms, max_ms, rss_max (bytes, sampled from the server while loaded), tool
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
from typing import Any

from .servers import REPO, Server

LUA = os.path.join(os.path.dirname(__file__), "knot.lua")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _limits_and_affinity(cpus: set[int] | None) -> Any:
    def setup() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


def run(
    server: Server,
    clients: int,
    duration: float,
    paths_file: str,
    *,
    per_conn: int = 10,
    cpus: set[int] | None = None,
    timeout: float = 10.0,
    tool: str | None = None,
) -> dict[str, Any]:
    tool = tool or ("wrk" if have_wrk() else "client")
    if tool == "wrk":
        threads = max(1, min(clients, len(cpus) if cpus else 2))
        cmd = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{round(duration)}s"]
        cmd += ["--timeout", f"{timeout:g}s"]
        cmd += ["-s", LUA, server.url, "--", paths_file, str(per_conn)]
    else:
        cmd = [sys.executable, "-m", "demos.load.client", "--port", str(server.port)]
        cmd += ["--clients", str(clients), "--duration", str(duration), "--paths", paths_file]
        cmd += ["--per-conn", str(per_conn), "--timeout", str(timeout)]
    rss = [server.rss()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            rss.append(server.rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=duration + timeout + 60,
            preexec_fn=_limits_and_affinity(cpus),
            check=False,
            cwd=REPO,
        )
    finally:
        stop.set()
        sampler.join()
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("KNOT-RESULT ")), None)
    if line is None:
        output = (proc.stdout + proc.stderr).strip()[-2000:]
        raise RuntimeError(f"{tool} failed (status {proc.returncode}): {output}")
    r = json.loads(line.split(" ", 1)[1])
    seconds = r["duration_us"] / 1e6
    errors = {k: r[k] for k in ("connect", "read", "write", "status", "timeout")}
    return {
        "tool": tool,
        "clients": clients,
        "requests": r["requests"],
        "bytes": r["bytes"],
        "seconds": seconds,
        "rps": r["requests"] / seconds,
        "mbit_s": r["bytes"] * 8 / seconds / 1e6,
        "errors": sum(errors.values()),
        **errors,
        "p50_ms": r["p50_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "max_ms": r["max_us"] / 1e3,
        "rss_max": max(rss),
        "server_alive": server.alive(),
    }
