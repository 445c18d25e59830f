"""What every results file states: the machine, the versions, the command; and the plots."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

from .. import gc_policy
from ..machine import cpu_model as _cpu_model

RESULTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "docs", "results")
PACKAGES = ["greenloop", "greenlet", "gevent", "uvloop", "aiohttp", "httptools", "matplotlib"]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(RESULTS_DIR),
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def machine_info() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    wrk = "not installed"
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        wrk = (out.stdout or out.stderr).split("\n", 1)[0].strip()
    load = os.getloadavg()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} logical CPUs",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions,
        "gc": gc_policy.describe(),
        "wrk": wrk,
        "commit": _git_commit(),
        "load_before": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min)",
    }


def machine_markdown(info: dict[str, Any], command: str) -> str:
    pkgs = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    return "\n".join(
        [
            f"- command: `{command}`",
            f"- date: {info['date']}; commit {info['commit']}",
            f"- machine: {info['cpu']}; {info['os']}; load average before the run {info['load_before']}",
            f"- {info['python']}; {pkgs}; {info['wrk']}",
            *([f"- GC: {info['gc']}"] if "gc" in info else []),
            *(f"- kernel: {note}" for note in info.get("tuning", [])),
        ]
    )


def publish(
    title: str,
    info: dict[str, Any],
    command: str,
    body: str,
    *,
    directory: str,
    name: str,
    data: dict[str, Any],
    write: bool = True,
) -> None:
    """Print a benchmark's results (title, machine, body); unless ``write`` is false, also
    keep them as DIRECTORY/NAME-<date>-<commit>.md, and ``data`` with the machine as .json."""
    doc = "\n".join([f"# {title}", "", machine_markdown(info, command), "", body, ""])
    print(doc)
    if not write:
        return
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, f"{name}-{info['date'][:10]}-{info['commit']}")
    with open(stem + ".md", "w") as f:
        f.write(doc)
    with open(stem + ".json", "w") as f:
        json.dump({"machine": info, **data}, f, indent=1)
    print(f"wrote {stem}.md and .json", file=sys.stderr)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


Series = dict[str, list[tuple[float, dict[str, float]]]]


def plot(path: str, title: str, series: Series, panels: list[dict[str, Any]]) -> None:
    """Line plots with a log2 x axis, one panel per entry of ``panels``.

    ``series`` maps a label to its points, (x, {key: y, ...}); each panel names the ``key``
    it shows and its ``ylabel`` (``log_y`` and ``xlabel`` optional).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for i, (label, points) in enumerate(series.items()):
            xs = [x for x, _ in points]
            ys = [values[panel["key"]] for _, values in points]
            # Ten colours, then the same colours dashed: an eleventh series must not look
            # like the first.
            style = {"color": f"C{i % 10}", "linestyle": ("-", "--", ":", "-.")[i // 10 % 4]}
            ax.plot(xs, ys, marker="o", markersize=3, label=label, **style)
        ax.set_xscale("log", base=panel.get("xbase", 2))
        if panel.get("log_y"):
            ax.set_yscale("log")
        ax.set_xlabel(panel.get("xlabel", "simultaneous clients"))
        ax.set_ylabel(panel["ylabel"])
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(bottom=0 if not panel.get("log_y") else None)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
