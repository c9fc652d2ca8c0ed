"""Per-thread CPU clocks and the calling thread's wake-ups, as the loop watch reads them."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from helpers import _thread_cpu

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux clocks")


@linux_only
def test_another_threads_cpu_clock_counts_its_work_not_its_sleep():
    ids: dict[str, int] = {}
    done = threading.Event()

    def busy() -> None:
        ids["busy"] = threading.get_native_id()
        deadline = time.thread_time() + 0.2
        while time.thread_time() < deadline:
            pass
        done.wait()

    def idle() -> None:
        ids["idle"] = threading.get_native_id()
        done.wait()

    threads = [threading.Thread(target=busy), threading.Thread(target=idle)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    while "busy" not in ids or "idle" not in ids:
        time.sleep(0.01)
    began = {name: _thread_cpu.cpu_ns(native_id) for name, native_id in ids.items()}
    time.sleep(0.4)
    spent = {name: _thread_cpu.cpu_ns(native_id) - began[name] for name, native_id in ids.items()}
    done.set()
    for thread in threads:
        thread.join()
    assert spent["busy"] >= 0.1e9, spent  # it burned up to 0.2 s of CPU after the first read
    assert spent["idle"] < 0.01e9, spent
    # a thread that has ended reads as None, never as garbage or a crash. join() returns when
    # Python is done with the thread, a moment before the OS thread is gone (one suite run read
    # the ended thread's 0.2 s just after join), so allow it that moment
    deadline = time.monotonic() + 2.0
    while _thread_cpu.cpu_ns(ids["busy"]) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _thread_cpu.cpu_ns(ids["busy"]) is None
    readings = _thread_cpu.read_all()
    assert threading.get_native_id() in readings and ids["busy"] not in readings


@linux_only
def test_own_wakeups_count_sleeps_not_computing():
    before = _thread_cpu.own_wakeups()
    for _ in range(20):
        time.sleep(0.001)
    after_sleeps = _thread_cpu.own_wakeups()
    deadline = time.thread_time() + 0.05
    while time.thread_time() < deadline:
        pass
    after_work = _thread_cpu.own_wakeups()
    assert before is not None and after_sleeps is not None and after_work is not None
    assert after_sleeps - before >= 20
    assert after_work - after_sleeps <= 2


def test_support_is_reported_honestly():
    assert _thread_cpu.supported() == sys.platform.startswith("linux")


@linux_only
def test_runqueue_wait_counts_waiting_for_a_core_not_sleeping():
    """The loop watch tells a loop thread kept off a core (the machine's doing) from one in a
    call such as time.sleep (the app's) by this figure."""
    import subprocess

    cores = len(os.sched_getaffinity(0))
    # twice as many CPU burners as cores: every running thread waits about half the time
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(2 * cores)]
    try:
        time.sleep(0.2)  # let them start
        clock = _thread_cpu.RunqueueClock(threading.get_native_id())
        before = clock.read_ns()
        time.sleep(0.4)
        slept = clock.read_ns()
        deadline = time.perf_counter() + 0.4
        while time.perf_counter() < deadline:
            pass
        computed = clock.read_ns()
        clock.close()
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert before is not None and slept is not None and computed is not None
    assert (slept - before) / 1e9 < 0.05, "a sleeping thread is not waiting for a core"
    assert (computed - slept) / 1e9 > 0.1, "a computing thread among burners waits for one"
    assert clock.read_ns() is None  # closed
    assert _thread_cpu.RunqueueClock(2**22 + 12345).read_ns() is None  # no such thread
