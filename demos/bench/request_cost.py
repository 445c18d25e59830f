"""What one request costs each server in user space: instructions (valgrind) and Python bytecodes.

    python -m demos.bench.request_cost            # knot-c, greenloop-httptools, uvloop-httptools
    python -m demos.bench.request_cost --servers knot-c,bare-greenlets --requests 2000 --no-write

One client asks a server for the same cached file, one request at a time: first N requests on
one kept-alive connection (the cost of a request), then N requests on a new connection each
(less the former: the cost of a connection: accept, its thread or transport, its parser,
close). The server runs under callgrind, and only a window opened after a warm-up is counted
(``callgrind_control --zero``, then ``--dump``), so start-up and imports are not in it. Its
instructions are split by where they run: CPython's bytecode loop, the rest of CPython,
greenlet, httptools, uvloop, libc. A second run of the server under a tracer counts the
Python bytecodes each function executes per kept-alive request (``sys.settrace`` opcode
events), and sums them by layer: the loop, sockets and threads (greenloop, asyncio,
selectors) against the server's own request code (demos/).

Why: the floor bench (demos/bench/floor.py) times Knot-C at about 0.65x the event-style
server on uvloop. The kernel's half of a request costs both about the same, so the rest of
the gap is here, in Python executed per request, and this says in which layer. Instructions
are not time (cache misses weigh differently, and the kernel is not counted); they are free
of the machine's noise, so a change of a few percent shows in one run. The per-connection
figures vary between runs by some 10-30 %: whether the acceptor finds the next connection
already queued or waits for it depends on timing.

Read the bytecode counts on 3.11: on 3.12 and 3.13 the opcode tracer misses frames (Knot-C
comes out at 855 and 824 bytecodes per request against 1,064 on 3.11, with no count at all
for the loop's run function), while the instruction counts stay whole.

Needs valgrind (``apt-get install valgrind``). About a minute per server.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from demos.load import report, servers, tree

SERVERS = ("knot-c", "greenloop-httptools", "uvloop-httptools")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
WARMUP = 200
# Where a function's instructions run, by the object file callgrind names for it.
PLACES = (
    ("greenlet", "_greenlet"),
    ("httptools", "httptools"),
    ("uvloop", "uvloop"),
    ("libc", "libc.so"),
    ("CPython", "libpython"),
)


# -- the client ------------------------------------------------------------------------------


class Client:
    """Blocking HTTP/1.1 GETs of one path, each answer read whole before the next request."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        self.sock: socket.socket | None = None

    def get(self, fresh: bool) -> None:
        if fresh and self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(self.request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += self._recv()
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"the server answered {head.splitlines()[0]!r}, not 200")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += self._recv()

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def _cached_path(paths_file: str) -> str:
    with open(paths_file) as f:
        return f.readline().strip()


# -- instructions (callgrind) -----------------------------------------------------------------


def _self_costs(path: str) -> dict[tuple[str, str], int]:
    """(object file, function) -> instructions spent in the function itself, from a dump."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
    costs: collections.Counter[tuple[str, str]] = collections.Counter()
    ob = fn = ""
    after_calls = False
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        m = re.match(r"^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$", line)
        if m:
            callee, kind, ident, name = m.groups()
            if name:
                names[kind][ident] = name
            if not callee:
                if kind == "ob":
                    ob = names["ob"][ident]
                else:
                    fn = names["fn"][ident]
            continue
        if line.startswith("calls="):
            after_calls = True  # the next cost line is the call's inclusive cost: not ours
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            if after_calls:
                after_calls = False
                continue
            fields = line.split()
            if len(fields) >= 2:
                costs[ob, fn] += int(fields[1])
    return costs


def _place(ob: str, fn: str) -> str:
    for place, marker in PLACES:
        if marker in ob:
            if place == "CPython" and fn.startswith("_PyEval_EvalFrameDefault"):
                return "bytecode loop"
            return place
    return "other"


def instructions(name: str, root: str, path: str, requests: int) -> dict[str, Any]:
    """Instructions per kept-alive request and per connection, split by place."""
    out = tempfile.mkdtemp(prefix="request-cost-")
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", sys.executable]
    result: dict[str, Any] = {}
    with servers.Server(name, root, interpreter=valgrind, startup_timeout=180.0) as server:
        client = Client(server.port, path)
        try:
            for fresh in (False, True):
                for _ in range(WARMUP):
                    client.get(fresh)
                _callgrind_control("--zero", server.proc.pid)
                for _ in range(requests):
                    client.get(fresh)
                before = set(os.listdir(out))
                _callgrind_control("--dump", server.proc.pid)
                dump = _wait_for_new_file(out, before)
                costs = _self_costs(dump)
                places: collections.Counter[str] = collections.Counter()
                for (ob, fn), cost in costs.items():
                    places[_place(ob, fn)] += cost
                result["connection" if fresh else "request"] = {k: v / requests for k, v in places.items()}
        finally:
            client.close()
    shutil.rmtree(out, ignore_errors=True)
    per_conn = result["connection"]
    result["connection"] = {k: per_conn.get(k, 0.0) - result["request"].get(k, 0.0) for k in per_conn}
    return result


def _callgrind_control(what: str, pid: int) -> None:
    subprocess.run(["callgrind_control", what, str(pid)], check=True, capture_output=True)


def _wait_for_new_file(directory: str, before: set[str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = sorted(set(os.listdir(directory)) - before)
        if new:
            path = os.path.join(directory, new[0])
            time.sleep(0.5)  # callgrind writes the dump, then we read it
            return path
        time.sleep(0.1)
    raise RuntimeError(f"callgrind wrote no dump in {directory} within {timeout} s")


# -- bytecodes (a tracer in the server's process) ----------------------------------------------


def _traced(out: str, argv: list[str]) -> None:
    """Run ``python -m MODULE ARGS`` with every executed bytecode counted by function; each
    SIGUSR1 writes the counts so far to ``out``."""
    counts: collections.Counter[str] = collections.Counter()
    writing = [False]  # the dump's own bytecodes are not the server's

    def on_call(frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        key = f"{'/'.join(code.co_filename.split('/')[-2:])}:{code.co_qualname}"
        frame.f_trace_opcodes = True

        def on_opcode(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode" and not writing[0]:
                counts[key] += 1
            return on_opcode

        return on_opcode

    def dump(*_: Any) -> None:
        # Tracing stays on: switching it off and on again from a signal handler hangs a
        # greenloop server on 3.12 (seen with Knot); a flag is enough to leave the dump out.
        writing[0] = True
        try:
            snapshot = dict(counts)
            with open(out + ".tmp", "w") as f:
                json.dump(snapshot, f)
            os.replace(out + ".tmp", out)
        finally:
            writing[0] = False

    signal.signal(signal.SIGUSR1, dump)
    if argv[:1] != ["-m"] or len(argv) < 2:
        sys.exit(f"--traced runs a module: -m MODULE ARGS, not {argv!r}")
    sys.argv = [argv[1], *argv[2:]]
    import threading

    threading.settrace(on_call)
    sys.settrace(on_call)
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


def bytecodes(name: str, root: str, path: str, requests: int, fresh: bool = False) -> dict[str, float]:
    """Bytecodes per request by Python function (file:function): kept-alive requests, or
    each on a new connection (``fresh``)."""
    out = tempfile.mktemp(prefix="request-cost-", suffix=".json")
    tracer = [sys.executable, "-m", "demos.bench.request_cost", "--traced", out]

    def snapshot(pid: int) -> dict[str, int]:
        if os.path.exists(out):
            os.unlink(out)
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not os.path.exists(out):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the traced server wrote no counts")
            time.sleep(0.05)
        with open(out) as f:
            counts: dict[str, int] = json.load(f)
        os.unlink(out)
        return counts

    with servers.Server(name, root, interpreter=tracer, startup_timeout=120.0) as server:
        client = Client(server.port, path)
        try:
            for _ in range(WARMUP):
                client.get(fresh)
            first = snapshot(server.proc.pid)
            for _ in range(requests):
                client.get(fresh)
            last = snapshot(server.proc.pid)
        finally:
            client.close()
    return {k: (v - first.get(k, 0)) / requests for k, v in last.items() if v > first.get(k, 0)}


def _layer(key: str) -> str:
    """'server code' for the demo servers' own functions (the floor's hub excepted), else
    'loop, sockets, threads' (greenloop, asyncio, selectors, ...)."""
    top, _, function = key.partition(":")
    if top.split("/")[0] in ("knot", "uvloop_httptools") or (
        top.startswith("bare_greenlets/") and not function.startswith("Hub.")
    ):
        return "server code"
    return "loop, sockets, threads"


# -- the report ----------------------------------------------------------------------------------


def table(results: dict[str, dict[str, Any]]) -> str:
    places = ["bytecode loop", "CPython", "greenlet", "httptools", "uvloop", "libc", "other"]
    rows = []
    for name, r in results.items():
        req, conn = r["request"], r["connection"]
        rows.append([name, round(sum(req.values())), *(round(req.get(p, 0.0)) for p in places)])
        rows[-1].append(round(sum(conn.values())))
    bytecode_header = [
        "server",
        "bytecodes",
        "loop, sockets, threads",
        "server code",
        "top functions (bytecodes)",
    ]
    return "\n".join(
        [
            "Instructions per kept-alive request, and per connection beyond its requests (valgrind):",
            "",
            report.markdown_table(["server", "per request", *places, "per connection"], rows),
            "",
            "Python bytecodes executed per kept-alive request, by layer, and the functions with the most:",
            "",
            report.markdown_table(bytecode_header, _bytecode_rows(results, "bytecodes")),
            "",
            "Python bytecodes executed per connection, beyond its one request:",
            "",
            report.markdown_table(bytecode_header, _bytecode_rows(results, "connection bytecodes")),
        ]
    )


def _bytecode_rows(results: dict[str, dict[str, Any]], which: str) -> list[list[Any]]:
    rows = []
    for name, r in results.items():
        ops = r[which]
        layers: collections.Counter[str] = collections.Counter()
        for key, n in ops.items():
            layers[_layer(key)] += n
        top = ", ".join(f"{k} {v:.0f}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:8])
        loop, own = layers["loop, sockets, threads"], layers["server code"]
        rows.append([name, round(sum(ops.values())), round(loop), round(own), top])
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--traced"]:
        _traced(argv[1], argv[2:])
        return 0
    p = argparse.ArgumentParser(
        prog="python -m demos.bench.request_cost", description=__doc__.splitlines()[0]
    )
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, from demos.load.servers")
    p.add_argument("--requests", type=int, default=1000, help="requests counted per measurement")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    names = args.servers.split(",")
    for name in names:
        if name not in servers.SERVERS:
            p.error(f"unknown server {name!r}; choose from {', '.join(servers.SERVERS)}")
    if args.requests < 1:
        p.error("--requests must be at least 1")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            p.error(f"{tool} is not installed (apt-get install valgrind)")
    info = report.machine_info()
    paths = tree.generate()
    root, path = os.path.dirname(paths), _cached_path(paths)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"{name}: counting instructions, then bytecodes ...", file=sys.stderr, flush=True)
        results[name] = instructions(name, root, path, args.requests)
        results[name]["bytecodes"] = bytecodes(name, root, path, args.requests)
        fresh = bytecodes(name, root, path, args.requests, fresh=True)
        results[name]["connection bytecodes"] = {
            k: v - results[name]["bytecodes"].get(k, 0.0) for k, v in fresh.items()
        }
    command = "python -m demos.bench.request_cost " + " ".join(argv)
    report.publish(
        f"What one request costs in user space: {args.requests} requests for {path}, one at a time",
        info,
        command.strip(),
        table(results),
        directory=RESULTS,
        name="request-cost",
        data={"args": vars(args), "results": results},
        write=not args.no_write,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
