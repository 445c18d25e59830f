"""Starting and stopping the servers under test, each in its own process, pinned to CPUs.

Every server prints one line with "http://HOST:PORT/" once it listens; ``Server`` waits for
it, so a load can start the moment ``start`` returns. RSS is read from /proc (the server and
any pre-forked workers together).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time

# name -> (command after the interpreter, label in tables and plots); then come --root and --port
KNOT = ["-m", "demos.knot"]
SERVERS: dict[str, tuple[list[str], str]] = {
    "knot-c": ([*KNOT, "--runtime", "greenloop", "--policy", "C"], "Knot-C (greenloop)"),
    "knot-a": ([*KNOT, "--runtime", "greenloop", "--policy", "A"], "Knot-A (greenloop)"),
    # The OS-threads code, unmodified, with its threads and sockets made green by patch_all().
    "knot-patched": (["-m", "greenloop", *KNOT, "--runtime", "threads"], "Knot (python -m greenloop)"),
    "knot-gevent": ([*KNOT, "--runtime", "gevent", "--policy", "C"], "Knot (gevent)"),
    "knot-threads": ([*KNOT, "--runtime", "threads"], "Knot (OS threads)"),
    "aiohttp-asyncio": (["-m", "demos.aiohttp_baseline", "--loop", "asyncio"], "aiohttp (asyncio)"),
    "aiohttp-uvloop": (["-m", "demos.aiohttp_baseline", "--loop", "uvloop"], "aiohttp (uvloop)"),
    "aiohttp-static": (
        ["-m", "demos.aiohttp_baseline", "--loop", "uvloop", "--variant", "static"],
        "aiohttp web.static (uvloop)",
    ),
    "uvloop-httptools": (["-m", "demos.uvloop_httptools"], "uvloop + httptools (events)"),
    # Knot's request code on bare greenlets and a minimal epoll hub: the floor for green
    # threads in Python (demos.bench.floor; not in Figure 3's default set).
    "bare-greenlets": (["-m", "demos.bare_greenlets"], "bare greenlets (floor)"),
    # The event-style server on asyncio's own loop: what greenloop's loop is a drop-in for.
    "asyncio-httptools": (
        ["-m", "demos.uvloop_httptools", "--loop", "asyncio"],
        "asyncio + httptools (events)",
    ),
    # The same event-style server on greenloop's loop: events and threads on one mechanism.
    "greenloop-httptools": (
        ["-m", "demos.uvloop_httptools", "--loop", "greenloop"],
        "greenloop + httptools (events)",
    ),
}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # demos/ importable
_READY = re.compile(r"http://\[?[^\s\]]*\]?:(\d+)/")


class Server:
    def __init__(
        self,
        name: str,
        root: str,
        *,
        cpus: set[int] | None = None,
        port: int = 0,
        extra: list[str] | None = None,
        startup_timeout: float = 20.0,
        nofile: int | None = None,
        interpreter: list[str] | None = None,
    ) -> None:
        args, self.label = SERVERS[name]
        self.name = name
        root = os.path.abspath(root)
        # interpreter: the command that runs the server's arguments, if not plain Python
        # (valgrind, or a tracer: demos.bench.request_cost)
        cmd = [*(interpreter or [sys.executable]), *args, "--root", root, "--port", str(port), *(extra or [])]

        def setup() -> None:  # in the child, before exec
            if cpus:
                os.sched_setaffinity(0, cpus)
            if nofile:  # a low descriptor limit, hard too (tests of running out of them)
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        # Only two system calls run between fork and exec: safe even with threads around.
        preexec = setup if cpus or nofile else None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=preexec, cwd=REPO)  # noqa: PLW1509
        deadline = time.monotonic() + startup_timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            match = _READY.search(line)
            if match:
                self.port = int(match.group(1))
                break
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {self.proc.returncode} before listening")
        else:
            self.stop()
            raise RuntimeError(f"{name} did not start listening within {startup_timeout} s: {line!r}")
        self.url = f"http://127.0.0.1:{self.port}/"

    def _pids(self) -> list[int]:
        """The server's process and its pre-forked workers."""
        return [self.proc.pid, *children(self.proc.pid)]

    def rss(self) -> int:
        """Resident memory (bytes) of the server and its worker processes."""
        total = 0
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server and its worker processes have used so far."""
        total = 0
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
            except (OSError, IndexError, ValueError):
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, timeout: float = 60.0) -> float:
        """Wait until the server has finished the work a load left it (connections to close,
        requests queued before the clients went); returns the seconds waited."""
        t0 = time.monotonic()
        last = self.cpu_seconds()
        while time.monotonic() - t0 < timeout:
            time.sleep(0.5)
            now = self.cpu_seconds()
            if now - last < 0.02:  # under 4 % of a CPU for half a second
                break
            last = now
        return time.monotonic() - t0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (pre-forked workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []
