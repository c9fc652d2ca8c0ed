"""helpers.cpu: deterministic work, honest calibration, process pools under every start method."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from helpers import cpu

START_METHODS = [
    method
    for method in ("fork", "spawn", "forkserver")
    if method in multiprocessing.get_all_start_methods()
]


def sum_of_squares_mod(n: int) -> int:
    """What burn(n) must compute, in closed form: (0² + 1² + … + (n-1)²) mod the modulus."""
    return ((n - 1) * n * (2 * n - 1) // 6) % cpu._MODULUS


@pytest.mark.parametrize("n", [0, 1, 2, 10, 1_000, 123_457])
def test_burn_matches_closed_form(n: int) -> None:
    assert cpu.burn(n) == sum_of_squares_mod(n)


def test_burn_is_deterministic() -> None:
    assert cpu.burn(50_000) == cpu.burn(50_000)


def test_burn_rejects_negative_iterations() -> None:
    with pytest.raises(ValueError, match="iterations"):
        cpu.burn(-1)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(-5, 0), (0, 0), (1, 0), (2, 1), (3, 2), (10, 4), (100, 25), (1_000, 168), (10_000, 1229)],
)
def test_count_primes_known_values(limit: int, expected: int) -> None:
    assert cpu.count_primes(limit) == expected


def test_calibrate_scales_linearly_and_is_cached() -> None:
    one = cpu.calibrate(1.0)
    assert one > 0
    assert cpu.calibrate(0.5) == pytest.approx(one / 2, abs=1)
    assert cpu.calibrate(0) == 0
    assert cpu.calibrate(1.0) == one  # measured once per process, then reused


def test_calibrate_rejects_negative_seconds() -> None:
    with pytest.raises(ValueError, match="seconds"):
        cpu.calibrate(-0.1)


def test_calibration_is_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    # The budget is 0.3 s of this thread's CPU (about 0.14 s measured on a quiet 2-core box).
    # Wall time is not asserted: on a box shared with other test runs it only measures the load.
    monkeypatch.setattr(cpu, "_iterations_per_second", None)
    start = time.thread_time()
    cpu.calibrate(1.0)
    assert time.thread_time() - start < 0.3


def test_calibration_is_accurate_in_cpu_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # calibrate() promises "about" that much CPU time of this thread. CPU time is not immune to
    # sharing the cores, nor to the VM's speed drifting on its own: with two other processes
    # computing, the same burn took 0.33-0.46 s of CPU instead of 0.31-0.32 s on this 2-core VM
    # (caches, the VM's scheduling), and when calibrate() itself measured during such a moment,
    # a later burn took 0.21 s. With nothing else running, a burn sized to 0.4 s took 0.41-0.63
    # s of CPU over 12 runs in a row, and one sized to 0.3 s took 0.48 s three times in a row
    # (the suite failed on that at 1.5x). So: timed the way calibrate() times itself (the
    # fastest of three tries), within the 1.75x either way that drift was seen to cause; a rate
    # wrong by 2x or more still fails.
    # The rate is measured afresh here, not taken from this worker's cache: a whole run's CI
    # failed on a rate cached long before, in a slow moment (burns of 0.17-0.24 s, 1.76x fast).
    monkeypatch.setattr(cpu, "_iterations_per_second", None)
    iterations = cpu.calibrate(0.3)
    tries = []
    for _ in range(3):
        start = time.thread_time()
        cpu.burn(iterations)
        tries.append(time.thread_time() - start)
    assert 0.3 / 1.75 <= min(tries) <= 0.3 * 1.75, tries


@pytest.mark.parametrize("rate_off_by", [0.5, 1.0, 2.0])
def test_burn_for_burns_its_seconds_of_cpu_whatever_the_cached_rate(
    monkeypatch: pytest.MonkeyPatch, rate_off_by: float
) -> None:
    # The machine's speed drifts 1.5x and more between a calibration and a burn (see above), so
    # burn_for stops by this thread's CPU clock, not after a step count from the cached rate.
    # A rate cached 2x off either way must not change how much CPU the burn takes: it only
    # sizes the slices between clock readings (about 1 ms each), so a burn overshoots by a slice.
    cpu.calibrate(1.0)
    assert cpu._iterations_per_second is not None
    monkeypatch.setattr(cpu, "_iterations_per_second", cpu._iterations_per_second * rate_off_by)
    start = time.thread_time()
    cpu.burn_for(0.2)
    spent = time.thread_time() - start
    assert 0.2 <= spent <= 0.2 + 0.02, spent


def test_burn_for_lands_near_the_target_in_wall_time() -> None:
    # Quiet 2-core box: 0.30-0.32 s. The wall time can never be under the 0.3 s of CPU burned;
    # the upper bound allows a noisy neighbour, and the best of three filters one-off
    # interruptions. When other processes keep this thread off the core for most of every try
    # (seen here: 1.0-3.0 s while the rest of the project's suites ran), the wall clock is
    # measuring them, not burn_for, so the test says so and skips instead of failing.
    elapsed, core_share = [], []
    for _ in range(3):
        cpu_start = time.thread_time()
        wall = cpu.burn_for(0.3)
        elapsed.append(wall)
        core_share.append((time.thread_time() - cpu_start) / wall)
    assert all(e >= 0.3 for e in elapsed), elapsed
    if min(elapsed) > 0.6 and max(core_share) < 0.6:
        pytest.skip(
            f"machine too busy to judge wall time: this thread got at most "
            f"{max(core_share):.0%} of a core; wall times {elapsed}"
        )
    assert min(elapsed) <= 0.6, elapsed


@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_gives_same_results(method: str) -> None:
    burn_sizes = [100_000, 150_001]
    prime_limits = [5_000, 20_000]
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        burned = list(pool.map(cpu.burn, burn_sizes))
        primes = list(pool.map(cpu.count_primes, prime_limits))
        burn_for_elapsed = pool.submit(cpu.burn_for, 0.05).result(timeout=60)
    assert burned == [cpu.burn(n) for n in burn_sizes]
    assert primes == [cpu.count_primes(n) for n in prime_limits]
    # The worker calibrated itself and burned 0.05 s of its CPU; only a lower bound is
    # load-independent: wall time is never under the CPU time burned
    assert burn_for_elapsed >= 0.05
