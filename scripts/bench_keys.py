"""Removing what a benchmark wrote to Redis: every key under its own namespace, nothing else."""

from __future__ import annotations

from typing import Any


def drop_namespace(client: Any, namespace: str) -> None:
    """Delete every key under ``namespace:`` in batches of 500."""
    keys = list(client.scan_iter(f"{namespace}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
