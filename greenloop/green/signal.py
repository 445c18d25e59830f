"""Cooperative ``signal`` (work in progress)."""

from __future__ import annotations

__implements__: list[str] = []
