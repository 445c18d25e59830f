"""Knot's own per-request cost: ``Knot.converse`` driven in-process, without network or threads.

    python -m demos.bench.knot_path                    # best of 5 rounds of 100,000 requests
    python -m demos.bench.knot_path --requests 3000 --rounds 1    # (for valgrind, at two sizes)

A fake connection hands ``converse`` one keep-alive GET per ``recv`` from the document tree
of ``demos.load.tree`` (generated if missing) and counts what ``sendall`` is given: what is
left is the request path itself (parse, route, page cache, response head, queueing), the
part Knot shares with its gevent and OS-thread runtimes. Its difference to a server's CPU per
request under load is the cost of the loop, the switches and the kernel.
"""

from __future__ import annotations

import argparse
import time

from demos.knot.runtime import Runtime
from demos.knot.server import Client, Config, Knot
from demos.load import tree


class _FakeConnection:
    """Returns the next request on every recv() until ``count`` were sent; then EOF."""

    def __init__(self, requests: list[bytes], count: int) -> None:
        self.requests = requests
        self.count = count
        self.sent = 0

    def recv(self, size: int) -> bytes:
        if not self.count:
            return b""
        self.count -= 1
        return self.requests[self.count % len(self.requests)]

    def sendall(self, data: bytes) -> None:
        self.sent += len(data)

    def shutdown(self, how: int) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m demos.bench.knot_path", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=100_000, help="requests per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds; the cheapest is reported")
    args = p.parse_args(argv)
    with open(tree.generate()) as f:
        paths = [line.strip() for line in f if line.strip()][:300]
    requests = [b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path.encode() for path in paths]
    knot = Knot(Config(root=tree.DEFAULT_OUT), Runtime("C"))
    knot.converse(Client(_FakeConnection(requests, 3 * len(requests)), 15.0))  # fill the cache
    best = float("inf")
    for _ in range(args.rounds):
        client = Client(_FakeConnection(requests, args.requests), 15.0)
        start = time.perf_counter()
        knot.converse(client)
        best = min(best, (time.perf_counter() - start) / args.requests)
    print(f"Knot request path: {best * 1e6:.2f} µs per request (best of {args.rounds} x {args.requests:,})")


if __name__ == "__main__":
    main()
