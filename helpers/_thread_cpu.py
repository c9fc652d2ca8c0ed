"""CPU time of this process's threads, and of whole processes, read without letting go of the
GIL (Linux).

The loop watch needs to know which threads ran while the event loop was held: a thread that
used the CPU while the loop's thread waited for the GIL is the one that held it. Python offers
only the calling thread's CPU clock. Linux gives every thread a CPU clock of its own, addressed
by its thread id (the encoding glibc's ``pthread_getcpuclockid`` uses); reading one is a single
``clock_gettime`` that keeps the GIL. That matters: reading ``/proc`` files instead would hand
the GIL over at every system call, and under the very contention being measured each hand-over
can wait tens of milliseconds. A thread that has ended makes the call fail; it never crashes.
"""

from __future__ import annotations

import os
import sys
import threading
import time

_CPUCLOCK_PERTHREAD_SCHED = 6  # Linux: per-thread (4) scheduler clock (2)
_CPUCLOCK_PROCESS_SCHED = 2  # Linux: a whole process's (0) scheduler clock (2)


def _clock_of(native_id: int) -> int:
    return ((~native_id) << 3) | _CPUCLOCK_PERTHREAD_SCHED


def cpu_ns(native_id: int) -> int | None:
    """Nanoseconds the thread ``native_id`` has run on a CPU; None if it has ended (or off
    Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return time.clock_gettime_ns(_clock_of(native_id))
    except OSError:
        return None


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds the process ``pid`` has run, all its threads together; None if it has ended
    (or off Linux). Nanosecond-precise, unlike the 10 ms ticks of ``/proc/<pid>/stat``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return time.clock_gettime_ns(((~pid) << 3) | _CPUCLOCK_PROCESS_SCHED) / 1e9
    except OSError:
        return None


class RunqueueClock:
    """How long one thread of this process has spent ready to run but waiting for a CPU
    (Linux's schedstat), in nanoseconds. A thread in ``time.sleep`` or a blocking read is not
    waiting for a CPU; one the machine keeps off its cores is. The file stays open, so a reading
    is one ``pread``; it still lets go of the GIL, so read it rarely (every 50 ms at most)."""

    def __init__(self, native_id: int) -> None:
        try:
            self._fd: int | None = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def read_ns(self) -> int | None:
        """The thread's total wait for a CPU so far; None where it cannot be read."""
        fd = self._fd
        if fd is None:
            return None
        try:
            return int(os.pread(fd, 128, 0).split()[1])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def read_all() -> dict[int, int]:
    """CPU nanoseconds of every thread ``threading`` knows, by native id; ``{}`` off Linux."""
    readings = {}
    for thread in threading.enumerate():
        native_id = thread.native_id
        if native_id is not None and (spent := cpu_ns(native_id)) is not None:
            readings[native_id] = spent
    return readings


def supported() -> bool:
    """True where other threads' CPU clocks can be read (Linux)."""
    return cpu_ns(threading.get_native_id()) is not None


def own_wakeups() -> int | None:
    """How often the calling thread has gone to sleep and been woken (voluntary context
    switches); None where the OS does not count them per thread.

    A thread waiting for the GIL wakes every switch interval (5 ms) to ask for it again; one in
    ``time.sleep`` or a blocking read wakes once. The count tells the two apart.
    """
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    except (ImportError, AttributeError, OSError):
        return None
