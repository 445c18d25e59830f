"""Figure 2's benchmark (demos/load/seda.py): every implementation runs and reports, and the
figure's summary computes each pool's share of its peak and the time its growth costs; the floor
bench's share of the rate kept across client counts (its Figure 3 counterpart)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from demos import figures
from demos.load import seda, servers


@pytest.mark.parametrize("impl", sorted(seda.IMPLS))
def test_each_implementation_completes_requests(impl: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "demos.load.seda", "--impl", impl, "--n", "4", "--seconds", "0.3"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=servers.REPO,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["impl"] == impl
    assert result["n"] == 4
    # Thousands of 8 KiB cached reads in 0.3 s on any implementation; zero means a stall.
    assert result["rps"] > 1000, result
    assert result["rss_max"] > 0


def test_bare_greenlets_keep_every_worker_busy() -> None:
    """The floor's round-robin gives each worker a turn per round: with a pool of 3, all three
    complete requests (a scheduler that only ever resumed one would still show a rate)."""
    code = (
        "import collections, os, greenlet\n"
        "from demos.load import seda\n"
        "fd, path = seda._cached_file()\n"
        "seen = collections.Counter()\n"
        "real = os.pread\n"
        "def pread(*a):\n"
        "    seen[id(greenlet.getcurrent())] += 1\n"
        "    return real(*a)\n"
        "os.pread = pread\n"
        "r = seda.run_greenlet(3, 0.2, fd)\n"
        "os.unlink(path)\n"
        "print(len(seen), min(seen.values()))\n"
        "os._exit(0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=servers.REPO, check=True
    )
    workers, fewest = map(int, out.stdout.split())
    assert workers == 3
    assert fewest > 100


def test_figure2_summary_share_and_cost_of_growth() -> None:
    ok = {
        "greenloop": [{"n": 100, "rps": 400_000.0}, {"n": 100_000, "rps": 320_000.0}],
        "greenlet": [{"n": 100, "rps": 500_000.0}, {"n": 1_000_000, "rps": 250_000.0}],
    }
    lines = figures._fig2_summary(ok)
    # 1/320k - 1/400k = 0.625 µs; 1/250k - 1/500k = 2 µs
    assert lines == [
        "greenloop at 100,000 threads: 80% of its peak (0.62 µs more per request than at its peak).",
        "bare greenlets at 1,000,000 threads: 50% of its peak (2.00 µs more per request than at its peak).",
    ]
    assert figures._fig2_summary({"greenloop": [], "threads": [{"n": 10, "rps": 1.0}]}) == []


def test_floor_share_table_divides_by_the_first_client_count() -> None:
    from demos.bench import floor

    def runs(*rates: float) -> list[dict[str, float]]:
        return [{"rps": r, "cpu_us": 1e6 / r, "errors": 0} for r in rates]

    med = {
        64: floor.medians(
            {"knot-c": runs(40_000, 50_000, 45_000), "uvloop-httptools": runs(60_000, 60_000, 60_000)}
        ),
        16384: floor.medians(
            {"knot-c": runs(27_000, 30_000, 29_000), "uvloop-httptools": runs(48_000, 45_000, 40_000)}
        ),
    }
    assert med[64]["knot-c"]["rps"] == 45_000
    assert med[16384]["knot-c"]["low"] == 27_000
    assert floor.share_table(med).splitlines()[2:] == [
        "| knot-c | 64% |",  # 29,000 / 45,000
        "| uvloop-httptools | 75% |",  # 45,000 / 60,000
    ]


@pytest.mark.parametrize("bad", ["64,x", "0", "64,64", ""])
def test_floor_rejects_bad_client_counts(bad: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "demos.bench.floor", "--clients", bad, "--no-write"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=servers.REPO,
        check=False,
    )
    assert out.returncode == 2
    assert "--clients" in out.stderr
