"""CPU time per thread of this process, from Linux's ``/proc`` (empty elsewhere).

The loop watch needs to know which threads actually ran while the event loop was held: a
thread that used the CPU while the loop's thread waited for the GIL is the one that held it.
Python offers only the calling thread's CPU clock, so this reads the kernel's per-thread
scheduler statistics instead. Reading a file never touches a thread that has already exited.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TASKS = "/proc/self/task"


@dataclass(frozen=True)
class ThreadCPU:
    """One thread's totals since it started."""

    cpu_ns: int
    """Nanoseconds it has run on a CPU."""
    runs: int
    """How many times the OS scheduled it onto a CPU (each wake-up counts once)."""
    queued_ns: int = 0
    """Nanoseconds it was ready to run but waited for a CPU (a crowded machine)."""


def read_one(native_id: int) -> ThreadCPU | None:
    """One thread's totals, or None where they cannot be read."""
    try:
        fd = os.open(f"{_TASKS}/{native_id}/schedstat", os.O_RDONLY)
    except OSError:
        return None
    try:
        fields = os.read(fd, 128).split()
    except OSError:
        return None
    finally:
        os.close(fd)
    return ThreadCPU(int(fields[0]), int(fields[2]), int(fields[1])) if len(fields) >= 3 else None


def read_all() -> dict[int, ThreadCPU]:
    """Every thread's totals, by native thread id; ``{}`` where ``/proc`` is not available."""
    try:
        native_ids = os.listdir(_TASKS)
    except OSError:
        return {}
    readings: dict[int, ThreadCPU] = {}
    for native_id in native_ids:
        try:
            fd = os.open(f"{_TASKS}/{native_id}/schedstat", os.O_RDONLY)
        except OSError:
            continue  # the thread ended between listing and opening
        try:
            fields = os.read(fd, 128).split()
        except OSError:
            continue
        finally:
            os.close(fd)
        if len(fields) >= 3:
            readings[int(native_id)] = ThreadCPU(int(fields[0]), int(fields[2]), int(fields[1]))
    return readings


def supported() -> bool:
    """True when per-thread readings are available (Linux with scheduler statistics)."""
    return bool(read_all())
