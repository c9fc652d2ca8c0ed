"""CPU-bound work for the demos: pure-Python loops that keep a core busy and hold the GIL.

They live in an importable module (not a notebook cell) because process pools started with
"spawn" or "forkserver" send work to workers by name, and a worker can only import a function
that lives in a module. No numpy, no sleeping, no I/O: nothing here ever lets go of the GIL
voluntarily, so other threads get a turn only at the interpreter's switch interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["burn", "burn_for", "calibrate", "count_primes"]

# The running total is kept small so every step costs the same (big ints would slow down as
# they grow), and the final value depends on every iteration, so none of it is skippable.
_MODULUS = 1_000_003

# Calibration: each timed sample must be long enough to dwarf timer resolution and loop start-up,
# and the whole measurement short enough to be invisible in a lesson (well under 0.3 s).
_SAMPLE_SECONDS = 0.02
_SAMPLES = 5
_FIRST_GUESS_ITERATIONS = 20_000

# burn_for reads the CPU clock between slices this long: it overshoots by at most one slice, and
# the clock's cost (a system call, under a microsecond) stays well under 0.1% of the work.
_CLOCK_CHECK_SECONDS = 0.001

_rate_lock = threading.Lock()
_iterations_per_second: float | None = None


def burn(iterations: int) -> int:
    """Run `iterations` steps of a tight pure-Python loop; returns a checksum of the work."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    total = 0
    for i in range(iterations):
        total = (total + i * i) % _MODULUS
    return total


def calibrate(seconds: float) -> int:
    """How many `burn` iterations take about `seconds` of CPU on this machine.

    Machines (and a laptop on battery vs a shared Binder host) differ several-fold in speed, so a
    fixed iteration count would make "1 second of work" mean anything from 0.3 s to 3 s. The
    speed is measured once per process (about 0.1-0.2 s) and cached. In a process pool, call
    this in the parent and submit `burn(n)`: every worker then does identical work and none of
    them spends time measuring.
    """
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    return round(_rate() * seconds)


def burn_for(seconds: float) -> float:
    """Burn `seconds` of this thread's CPU time; returns the wall time the burn took.

    It stops on the thread's CPU clock, not after a step count: the work a CPU-second buys drifts
    with what else runs on the host (a VM's neighbours, a busy sibling core), 1.5x and more
    between a calibration and a burn half a minute later. The wall time exceeds `seconds` when
    the core or the GIL is shared, which is exactly what the lessons measure; the one-off
    calibration (first call per process) is not included.
    """
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    clock = _cpu_clock()
    if clock is time.perf_counter:  # no fine CPU clock here: size the burn from the rate instead
        iterations = calibrate(seconds)  # the first call per process measures: not timed
        start = time.perf_counter()
        burn(iterations)
        return time.perf_counter() - start
    steps = max(1, calibrate(_CLOCK_CHECK_SECONDS))  # likewise
    start = time.perf_counter()
    done_at = clock() + seconds
    while clock() < done_at:
        burn(steps)
    return time.perf_counter() - start


def count_primes(limit: int) -> int:
    """Count the primes <= `limit` by trial division: a second, recognisable CPU workload."""
    if limit < 2:
        return 0
    count = 1  # 2, the only even prime; the loop below tries odd numbers only
    for candidate in range(3, limit + 1, 2):
        divisor = 3
        while divisor * divisor <= candidate:
            if candidate % divisor == 0:
                break
            divisor += 2
        else:
            count += 1
    return count


def _rate() -> float:
    global _iterations_per_second
    with _rate_lock:  # two threads calling at once should measure once, not twice, in contention
        if _iterations_per_second is None:
            _iterations_per_second = _measure_iterations_per_second()
        return _iterations_per_second


def _measure_iterations_per_second() -> float:
    clock = _cpu_clock()
    iterations = _FIRST_GUESS_ITERATIONS
    # Grow the sample until it takes long enough to time reliably.
    while True:
        elapsed = _time_burn(iterations, clock)
        if elapsed >= _SAMPLE_SECONDS:
            break
        scale = _SAMPLE_SECONDS / max(elapsed, 1e-4)
        iterations = int(iterations * min(max(scale * 1.2, 2.0), 100.0))
    # The fastest of a few samples is the machine's speed; slower ones were interrupted.
    fastest = min([elapsed] + [_time_burn(iterations, clock) for _ in range(_SAMPLES - 1)])
    return iterations / fastest


def _time_burn(iterations: int, clock: Callable[[], float]) -> float:
    start = clock()
    burn(iterations)
    return clock() - start


def _cpu_clock() -> Callable[[], float]:
    # This thread's CPU time ignores time spent waiting for the GIL or for a core, so a busy
    # kernel (a server thread, another process) does not make the machine look slower than it
    # is. Where that clock is coarse (Windows ticks at ~16 ms) wall time is the better choice.
    if time.get_clock_info("thread_time").resolution <= 1e-6:
        return time.thread_time
    return time.perf_counter
