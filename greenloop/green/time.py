"""Cooperative ``time``: ``sleep`` suspends only the calling green thread or task.

On an OS thread without a greenloop loop it is the original ``time.sleep``.
"""

from __future__ import annotations

from greenloop._green import sleep as _green_sleep

__implements__ = ["sleep"]
__all__ = ["sleep"]


def sleep(secs: float, /) -> None:
    """Delay execution for a given number of seconds; other green threads keep running."""
    # time.sleep accepts any real number and rejects the rest with TypeError, as here.
    if not isinstance(secs, (int, float)):
        secs = float(secs)  # raises TypeError for non-numbers, as time.sleep does
    if secs < 0:
        raise ValueError("sleep length must be non-negative")
    _green_sleep(secs)
