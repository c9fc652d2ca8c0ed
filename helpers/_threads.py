"""Thread labels ("event loop", "worker 3"): the order they are listed in and a short summary.

Shared by the load generator's text summary and the plots' legends, so both list threads the
same way. Imports nothing from the rest of the package: it sits at the bottom.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["describe_threads", "thread_order"]

EVENT_LOOP = "event loop"
_MAX_LISTED = 6  # beyond this, a per-thread list is noise: say how many and how evenly used


def thread_order(name: str) -> tuple[int, int, str]:
    """Sort key: the event loop first, then workers by number (worker 2 before worker 10)."""
    number = name.rsplit(" ", 1)[-1]
    return (name != EVENT_LOOP, int(number) if number.isdigit() else 0, name)


def describe_threads(counts: Counter[str]) -> str:
    """``event loop: 10, worker 1: 3`` — or, for many threads, how many and how evenly used."""
    names = sorted(counts, key=thread_order)
    workers = [name for name in names if name.startswith("worker")]
    if len(names) <= _MAX_LISTED or not workers:
        return ", ".join(f"{name}: {counts[name]}" for name in names)
    others = ", ".join(f"{name}: {counts[name]}" for name in names if name not in workers)
    used = [counts[w] for w in workers]
    spread = f"{len(workers)} worker threads ({min(used)}–{max(used)} requests each)"
    return f"{others}, {spread}" if others else spread
