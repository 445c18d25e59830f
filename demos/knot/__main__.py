"""Knot: a static web server in plain thread-per-connection style (see server.py).

    python -m demos.knot --root DIR --port PORT [--host H] [--policy C|A]
                         [--runtime greenloop|gevent|threads] [--workers N]

Prints one line, "knot: serving ... on http://HOST:PORT/ ...", once every worker listens.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import sys

from demos import gc_policy

from .runtime import RUNTIMES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demos.knot", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="document root")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    p.add_argument("--policy", choices=("C", "A"), default="C", help="favour Connections or Accepting")
    p.add_argument("--runtime", choices=RUNTIMES, default="greenloop")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--max-conns", type=int, default=0, help="default: what the fd limit allows")
    p.add_argument("--cache-mb", type=float, default=64.0, help="page cache size")
    p.add_argument("--idle-timeout", type=float, default=15.0)
    p.add_argument("--request-timeout", type=float, default=10.0)
    p.add_argument("--send-timeout", type=float, default=15.0)
    return p.parse_args(argv)


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(65535)  # the kernel caps it at net.core.somaxconn
    return sock


def worker(args: argparse.Namespace, port: int, reuse_port: bool, ready_fd: int | None) -> None:
    from . import runtime

    rt = runtime.load(args.runtime, args.policy)  # gevent monkey-patches here, before the rest
    from .server import Config, Knot

    fd_limit = raise_fd_limit()
    cfg = Config(
        root=args.root,
        max_conns=args.max_conns or max(16, fd_limit - 64),  # leave room for files and pipes
        cache_bytes=int(args.cache_mb * (1 << 20)),
        idle_timeout=args.idle_timeout,
        request_timeout=args.request_timeout,
        send_timeout=args.send_timeout,
    )
    knot = Knot(cfg, rt)
    sock = listen(args.host, port, reuse_port)
    if ready_fd is None:
        announce(args, sock.getsockname()[1])
    else:
        os.write(ready_fd, b".")
        os.close(ready_fd)
    gc_policy.apply()
    rt.run(lambda: knot.accept_forever(sock))


def announce(args: argparse.Namespace, port: int) -> None:
    host = f"[{args.host}]" if ":" in args.host else args.host
    workers = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    print(
        f"knot: serving {args.root} on http://{host}:{port}/ "
        f"(runtime {args.runtime}, policy {args.policy}, {workers})",
        flush=True,
    )


def prefork(args: argparse.Namespace) -> None:
    """N processes, each with its own listening socket on one port: the kernel spreads the
    connections (SO_REUSEPORT). The parent only picks the port and waits."""
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    probe.bind((args.host, args.port))  # bound, never listening: it gets no connections
    port = probe.getsockname()[1]
    ready_r, ready_w = os.pipe()
    children: list[int] = []
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.close(ready_r)
            probe.close()
            try:
                worker(args, port, reuse_port=True, ready_fd=ready_w)
            finally:
                os._exit(1)
        children.append(pid)
    os.close(ready_w)
    for _ in children:
        if not os.read(ready_r, 1):
            break  # a worker died before listening; its exit status says why
    probe.close()
    announce(args, port)
    status = 0
    for pid in children:
        _, code = os.waitpid(pid, 0)
        status = status or os.waitstatus_to_exitcode(code)
    sys.exit(0 if stopping else min(255, abs(status)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.workers > 1:
        prefork(args)
    else:
        try:
            worker(args, args.port, reuse_port=False, ready_fd=None)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
