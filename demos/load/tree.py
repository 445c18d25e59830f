"""A deterministic document tree and request list, after SPECweb99's file set.

    python -m demos.load.tree [--out DIR] [--dirs N] [--requests N]

The tree has ``dirs`` directories ``dir00000 ...``, each holding 36 files in four size
classes, and ``index.html`` at the top:

    class   sizes (9 files each)        share of requests   mean response (Zipf within class)
    0       0.1, 0.2 ... 0.9 KiB        35 %                0.3 KiB
    1       1, 2 ... 9 KiB              50 %                3.2 KiB
    2       10, 20 ... 90 KiB           14 %                32 KiB
    3       100, 200 ... 900 KiB         1 %                318 KiB

Within a class, file k (1-based) is requested with weight 1/k (Zipf), and directory d with
weight 1/(d+1), so a few files are hot and the long tail is still visited. Responses
are 0.4 / 1 / 5 KiB at the quartiles, 9.4 KiB on average. A directory holds 4.5 MiB; the default 10
directories (45 MiB) fit the servers' default 64 MiB page caches: as in the paper's test, the
workload is small and there is little disk activity.

``paths.txt`` lists ``requests`` request paths drawn from that mix with a fixed seed; every
load generator walks it, so all servers see the same sequence. Contents are deterministic
too (no randomness in the bytes): the same arguments give a byte-identical tree.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random

CLASSES = [(0.35, 102), (0.50, 1024), (0.14, 10240), (0.01, 102400)]  # (share, size step)
FILES_PER_CLASS = 9
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_work", "tree")
_STAMP = ".tree.json"


def file_name(d: int, cls: int, k: int) -> str:
    return f"dir{d:05d}/class{cls}_{k}"


def file_size(cls: int, k: int) -> int:
    return CLASSES[cls][1] * k


def content(name: str, size: int) -> bytes:
    line = f"{name} greenloop knot test data 0123456789abcdefghijklmnopqrstuvwxyz\n".encode()
    return (line * (size // len(line) + 1))[:size]


def request_paths(dirs: int, count: int, seed: int = 1) -> list[str]:
    """``count`` request paths drawn from the mix described above."""
    rng = random.Random(seed)
    choices, weights = [], []
    for d in range(dirs):
        for cls, (share, _) in enumerate(CLASSES):
            zipf = [1 / k for k in range(1, FILES_PER_CLASS + 1)]
            for k, w in enumerate(zipf, 1):
                choices.append("/" + file_name(d, cls, k))
                weights.append(share * w / sum(zipf) / (d + 1))
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    return [choices[bisect.bisect(cumulative, rng.random() * total)] for _ in range(count)]


def generate(out: str = DEFAULT_OUT, dirs: int = 10, requests: int = 100_000) -> str:
    """Write the tree (unless an identical one is there already); return the paths file."""
    params = {"dirs": dirs, "requests": requests, "version": 1}
    stamp = os.path.join(out, _STAMP)
    paths_file = os.path.join(out, "paths.txt")
    try:
        with open(stamp) as f:
            if json.load(f) == params:
                return paths_file
    except (OSError, ValueError):
        pass
    os.makedirs(out, exist_ok=True)
    for d in range(dirs):
        os.makedirs(os.path.join(out, f"dir{d:05d}"), exist_ok=True)
        for cls in range(len(CLASSES)):
            for k in range(1, FILES_PER_CLASS + 1):
                name = file_name(d, cls, k)
                with open(os.path.join(out, name), "wb") as f:
                    f.write(content(name, file_size(cls, k)))
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write("<!doctype html><title>knot</title><p>greenloop's Knot demo tree</p>\n")
    with open(paths_file, "w") as f:
        f.writelines(p + "\n" for p in request_paths(dirs, requests))
    with open(stamp, "w") as f:
        json.dump(params, f)
    return paths_file


def mean_size(paths_file: str) -> float:
    """Mean response size (bytes) over a paths file."""
    with open(paths_file) as f:
        paths = f.read().split()
    total = 0
    for p in paths:
        cls, k = p.rsplit("/class", 1)[1].split("_")
        total += file_size(int(cls), int(k))
    return total / len(paths)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demos.load.tree", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--dirs", type=int, default=10)
    p.add_argument("--requests", type=int, default=100_000)
    args = p.parse_args()
    paths = generate(args.out, args.dirs, args.requests)
    print(f"tree in {args.out}; {paths}: mean response {mean_size(paths) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
