"""Kernel settings that 16,384 loopback clients need, applied for a run and restored after.

With Linux's defaults the load generator, not the server, is what breaks first:

* net.ipv4.ip_local_port_range (32768-60999: 28,232 ports). Every closed connection holds
  its client port in TIME_WAIT for 60 s; with 16,384 open connections plus the TIME_WAITs of
  reconnections and earlier points, connect() runs out of ports and wrk stalls (measured
  here: 0 requests at 16,384 clients, whatever the server). Widened to 1024-65535.
* net.core.somaxconn (4096) and net.ipv4.tcp_max_syn_backlog: 16,384 clients connecting at
  once overflow the accept queue; dropped handshakes are retried after 1, 2, 4 ... s.

Needs root; otherwise ``apply`` reports what it would have changed and leaves it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

WANTED = {
    "net/ipv4/ip_local_port_range": "1024\t65535",
    "net/core/somaxconn": "65535",
    "net/ipv4/tcp_max_syn_backlog": "65535",
}


def _path(key: str) -> str:
    return os.path.join("/proc/sys", key)


@contextlib.contextmanager
def apply() -> Iterator[list[str]]:
    """Within the block the settings above hold; yields notes for the results file."""
    notes, saved = [], {}
    for key, value in WANTED.items():
        try:
            with open(_path(key)) as f:
                current = f.read().strip()
        except OSError:
            continue  # not Linux, or not this setting
        name, shown, was = key.replace("/", "."), " ".join(value.split()), " ".join(current.split())
        if current.split() == value.split():
            continue
        try:
            with open(_path(key), "w") as f:
                f.write(value)
            saved[key] = current
            notes.append(f"{name} set to {shown} for the run (was {was})")
        except OSError:
            notes.append(f"{name} is {was}: not root, so not raised to {shown} (many clients may stall)")
    try:
        yield notes
    finally:
        for key, value in saved.items():
            with contextlib.suppress(OSError), open(_path(key), "w") as f:
                f.write(value)
