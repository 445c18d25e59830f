"""A closed-loop HTTP load generator written on greenloop: the fallback when wrk is absent.

    python -m demos.load.client --port PORT --clients N --duration S [--paths FILE]
                                [--per-conn K] [--host H]

Each client is a green thread in plain blocking style: connect, send a request, read the
whole answer, send the next; after K requests it asks for "Connection: close" and reconnects.
Clients walk the same paths file as the wrk script, each from its own offset. Prints one
JSON line: the same fields as demos/load/knot.lua's result.

It is Python, so one core of it drives fewer requests than wrk does: use wrk for the figures.
"""

from __future__ import annotations

import argparse
import json
import socket
import time

import httptools

from demos.knot import runtime as knot_runtime

from .tree import DEFAULT_OUT


class Stats:
    def __init__(self) -> None:
        self.requests = self.bytes = 0
        self.connect = self.read = self.write = self.status = self.timeout = 0
        self.latencies: list[float] = []


class _Response:
    """httptools callbacks for one answer: counts body bytes, notes completion."""

    def __init__(self) -> None:
        self.status = 0
        self.body = 0
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


def _request(path: str, host: str, close: bool) -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{conn}\r\n".encode()


def client(
    rt: knot_runtime.Runtime,
    addr: tuple[str, int],
    paths: list[str],
    *,
    start: int,
    per_conn: int,
    deadline: float,
    stats: Stats,
    timeout: float,
) -> None:
    i = start
    host = f"{addr[0]}:{addr[1]}"
    while time.monotonic() < deadline:
        sock = rt.wrap(socket.socket())
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except OSError:
            stats.connect += 1
            sock.close()
            rt.sleep(0.01)
            continue
        try:
            for n in range(per_conn):
                if time.monotonic() >= deadline:
                    break
                t0 = time.monotonic()
                sock.sendall(_request(paths[i % len(paths)], host, close=n == per_conn - 1))
                i += 1
                resp = _Response()
                parser = httptools.HttpResponseParser(resp)
                while not resp.complete:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionResetError("closed mid-answer")
                    parser.feed_data(data)
                stats.latencies.append(time.monotonic() - t0)
                stats.requests += 1
                stats.bytes += resp.body
                if not 200 <= parser.get_status_code() < 400:
                    stats.status += 1
        except TimeoutError:
            stats.timeout += 1
        except (OSError, httptools.HttpParserError):
            stats.read += 1
        finally:
            sock.close()


def run(
    host: str,
    port: int,
    *,
    clients: int,
    duration: float,
    paths_file: str,
    per_conn: int = 10,
    timeout: float = 10.0,
) -> dict[str, float]:
    rt = knot_runtime.load("greenloop")
    with open(paths_file) as f:
        paths = f.read().split()
    stats = Stats()

    def main() -> float:
        import greenloop

        t0 = time.monotonic()
        deadline = t0 + duration
        threads = [
            greenloop.spawn(
                client,
                rt,
                (host, port),
                paths,
                start=k * 7919,
                per_conn=per_conn,
                deadline=deadline,
                stats=stats,
                timeout=timeout,
            )
            for k in range(clients)
        ]
        for t in threads:
            t.join()
        return time.monotonic() - t0

    elapsed = rt.run(main)
    lat = sorted(stats.latencies) or [0.0]
    return {
        "requests": stats.requests,
        "bytes": stats.bytes,
        "duration_us": int(elapsed * 1e6),
        "connect": stats.connect,
        "read": stats.read,
        "write": stats.write,
        "status": stats.status,
        "timeout": stats.timeout,
        "p50_us": int(lat[len(lat) // 2] * 1e6),
        "p99_us": int(lat[int(len(lat) * 0.99)] * 1e6),
        "max_us": int(lat[-1] * 1e6),
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.load.client", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--paths", default=f"{DEFAULT_OUT}/paths.txt")
    p.add_argument("--per-conn", type=int, default=10)
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()
    result = run(
        args.host,
        args.port,
        clients=args.clients,
        duration=args.duration,
        paths_file=args.paths,
        per_conn=args.per_conn,
        timeout=args.timeout,
    )
    print("KNOT-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
