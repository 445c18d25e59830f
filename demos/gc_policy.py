"""The cyclic garbage collector's settings, the same for every demo server.

A server with thousands of open connections keeps tens of thousands of objects that the
cyclic GC tracks: Knot about 23 per connection (its thread, socket, HTTP parser and their
helpers), the event servers and aiohttp theirs. With CPython's default thresholds (700, 10,
10; 2,000 first on 3.13) the objects of every connection that lives longer than a few
hundred allocations are promoted to the oldest generation, and a full collection, which
walks every tracked object, runs each time the promoted objects reach a quarter of those
that survived the last one. Under 16,384 keep-alive clients (10 requests per connection)
Knot-C spent about 11 % of its time in full collections: ~360,000 objects, ~300 ms each,
one every ~2.5 s (measured with ``gc.callbacks``; ``perf`` showed ``gc_collect_main`` at
9 % of the server's samples, against none at 64 clients).

So every server calls :func:`apply` when its start-up is over, as long-running servers
commonly do:

* ``gc.freeze()``: modules, classes and the page cache are never garbage, and no
  collection walks them again;
* a first threshold of 100,000 instead of 700 (2,000): a connection's objects are mostly
  created and freed between two collections, so few reach the old generation. Reference
  cycles are still collected, at the latest after 100,000 net new tracked objects.

``DEMOS_GC=default`` leaves CPython's defaults (to measure what this changes).
"""

from __future__ import annotations

import gc
import os

YOUNG_THRESHOLD = 100_000


def _default() -> bool:
    return os.environ.get("DEMOS_GC", "").strip().lower() == "default"


def apply() -> None:
    """Set the servers' GC policy, unless ``DEMOS_GC=default``."""
    if not _default():
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def describe() -> str:
    """What :func:`apply` does in servers started with the current environment (for reports)."""
    if _default():
        return "every server with CPython's default GC thresholds (DEMOS_GC=default)"
    return (
        f"every server calls gc.freeze() after start-up and runs with a first GC threshold of "
        f"{YOUNG_THRESHOLD:,} (demos/gc_policy.py)"
    )
