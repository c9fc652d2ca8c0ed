"""The loop watch reports real blocks at the right line, within ±20 %, and nothing else."""

from __future__ import annotations

import _weakrefset
import json
import os
import threading
import time

import pytest
from fastapi import FastAPI

from helpers import load, serve
from helpers.loopwatch import LoopBlock, LoopWatch, _Stall, is_library_file
from tests import apps


@pytest.fixture
def server():
    with serve(apps.app, name="watched") as running:
        # warm up so one-time costs don't count as blocks: the first request, and starting
        # the worker threads (Thread.start() waits on the loop for each new thread to run)
        load(running, "/")
        load(running, "/def-sleep?seconds=0.05", n=5)
        running.clear_loop_blocks()
        yield running


def code_blocks(blocks):
    """Blocks the app's code caused; a garbage-collection pause can land anywhere."""
    return [b for b in blocks if not b.is_garbage_collection]


def only_block(result):
    blocks = code_blocks(result.loop_blocks)
    assert len(blocks) == 1, [str(b) for b in result.loop_blocks]
    return blocks[0]


def test_time_sleep_in_async_def_is_reported_at_its_line(server):
    block = only_block(load(server, "/blocking-sleep"))
    assert 480 * 0.8 <= block.duration_ms <= 480 * 1.2
    assert block.filename.endswith("apps.py")
    assert block.code == "time.sleep(0.48)  # BLOCKS THE LOOP: the loop watch must point here"
    assert block.where.startswith("apps.py:")
    assert "480" not in block.where and "blocked" in str(block)


def test_pure_python_loop_in_async_def_is_reported(server):
    block = only_block(load(server, "/cpu"))
    assert 300 * 0.8 <= block.duration_ms <= 300 * 1.2
    assert block.filename.endswith("apps.py")
    assert "spins" in block.code or "perf_counter" in block.code


@pytest.mark.parametrize("path", ["/def-sleep?seconds=0.5", "/sleep?seconds=0.5"])
def test_waiting_the_right_way_reports_no_block(server, path):
    result = load(server, path, n=10)
    assert result.ok == 10
    assert code_blocks(result.loop_blocks) == []
    assert code_blocks(server.loop_blocks) == []


def test_blocks_are_listed_on_the_server_too(server):
    load(server, "/blocking-sleep")
    load(server, "/cpu")
    assert [b.filename.endswith("apps.py") for b in code_blocks(server.loop_blocks)] == [True, True]


def test_threshold_must_be_positive():
    with pytest.raises(ValueError, match="threshold_ms must be positive"):
        LoopWatch("x", threshold_ms=0)


def test_library_files_are_recognised():
    import asyncio

    assert is_library_file(asyncio.__file__)
    assert is_library_file("<frozen importlib._bootstrap>")
    assert not is_library_file(apps.__file__)


def test_outside_a_notebook_the_location_is_file_and_line():
    from helpers.loopwatch import LoopBlock, notebook_cell_number

    assert notebook_cell_number("/tmp/ipykernel_1/123.py") is None
    block = LoopBlock(1.0, 1.5, "/srv/app.py", 12, "time.sleep(0.5)")
    assert block.where == "app.py:12"
    assert str(block) == "loop blocked 500 ms at app.py:12 `time.sleep(0.5)`"


def test_a_garbage_collection_pause_is_named_as_such(server):
    # an explicit gc.collect() on the loop: nothing else to blame, the watchdog cannot sample it
    many_live_objects = [[i] for i in range(1_500_000)]  # a full collection must visit them all
    result = load(server, "/collect-garbage")
    del many_live_objects
    assert result.ok == 1
    block = max(result.loop_blocks, key=lambda b: b.duration_ms)
    assert block.duration_ms >= 50 and block.gc_ms >= block.duration_ms / 2, str(block)
    if block.is_garbage_collection:  # no sample got in: the collection is all there is to say
        assert str(block).startswith("loop blocked")
        assert "garbage collection (generation 2)" in str(block)
    else:  # sampled: the line that asked for it, with the collection as its share
        assert "of it garbage collection)" in str(block), str(block)


def test_a_c_call_that_keeps_the_gil_is_reported(server):
    import time

    n = 2_000_000
    began = time.perf_counter()
    sum(range(n))
    n = int(n * 0.15 / (time.perf_counter() - began))  # about 150 ms of one C call
    result = load(server, f"/c-call?n={n}")
    assert result.ok == 1
    call_ms = json.loads(result.records[0].body)["seconds"] * 1000
    (block,) = code_blocks(result.loop_blocks)
    # the watchdog cannot sample during the call, so the block says why it names no line
    assert block.function == "<unsampled>" and "never released the GIL" in str(block), (
        f"{block}\n{block.evidence}"
    )
    assert 0.8 * call_ms <= block.duration_ms <= 1.2 * call_ms + 20


def test_a_block_with_no_sample_says_so():
    watch = LoopWatch("unit", threshold_ms=10)
    watch._file(10.0, 10.2)
    (block,) = watch.blocks
    assert block.function == "<unsampled>" and round(block.duration_ms) == 200
    assert str(block) == (
        "loop blocked 200 ms by C code that never released the GIL "
        "(no Python line could be sampled)"
    )


# -- the real culprit ----------------------------------------------------------------------------
WORKERS_LINE = "burn_for(seconds)  # WORKERS' LINE"


def test_cpu_bound_def_workers_are_blamed_for_the_loops_wait_for_the_gil(server):
    """Four `def` endpoints burning CPU starve the loop's thread of the GIL: every block names
    the workers and their line, not the innocent line the loop thread was waiting at."""
    from helpers import load_with_monitor

    load(server, "/def-cpu?seconds=0.05", n=4)  # start four workers
    server.clear_loop_blocks()
    traffic, probes = load_with_monitor(
        server, "/def-cpu?seconds=0.3", 4, ["/"] * 16, every_s=0.025
    )
    assert traffic.ok == 4 and probes.ok == 16
    blocks = traffic.loop_blocks
    # the loop really was held: the probes' worst wait is far above a free loop's few ms
    assert probes.max_s > 0.05, probes.max_s
    assert blocks, "the loop was held but no block was filed"
    for block in blocks:
        assert block.waited_for_gil, f"{block}\n{block.evidence}"
        # the workers' line, or, when no sample caught any of them at it, the endpoint they ran
        assert block.code.startswith(WORKERS_LINE) or block.code == "def_cpu()", (
            f"{block}\n{block.evidence}"
        )
        assert block.filename.endswith("apps.py")
        assert all(run.name.startswith("worker ") for run in block.threads), str(block)
        opening = f"loop blocked {block.duration_ms:.0f} ms waiting for the GIL while worker "
        assert str(block).startswith(opening)


def test_a_heavy_main_thread_is_blamed_not_the_idle_loop(server):
    """Code in the notebook's own thread (here: the test's) that keeps the GIL starves the
    server's loop too; the block names that thread and its line."""
    n = 2_000_000
    began = time.perf_counter()
    sum(range(n))
    n = int(n * 0.25 / (time.perf_counter() - began))  # about 250 ms of one C call
    time.sleep(0.05)
    server.watch.settle(time.perf_counter())  # the calibration's own block is filed by now
    server.clear_loop_blocks()
    sum(range(n))  # MAIN THREAD: one C call that keeps the GIL
    server.watch.settle(time.perf_counter())
    blocks = server.loop_blocks
    assert len(blocks) == 1, [(str(b), b.evidence) for b in blocks]
    (block,) = blocks
    assert block.waited_for_gil, (str(block), block.evidence)
    assert [run.name for run in block.threads] == ["the main thread"]
    # one C call: no sample can catch the thread inside it, so the block says where it was
    # right after (or, when a sample did catch it, the line itself)
    assert "waiting for the GIL while the main thread ran " in str(block)
    assert ":0" not in str(block)


def test_a_big_response_names_the_route_and_what_fastapi_was_doing(server):
    """70,000 models validated and encoded on the loop: no app code is on the stack, so the
    block names the request, its endpoint, and the phase."""
    apps.many_items()  # built beforehand, so the request does only FastAPI's part
    result = load(server, "/items")
    assert result.ok == 1
    block = max(result.loop_blocks, key=lambda b: b.duration_ms)
    assert "GET /items → items() at apps.py:" in block.request, (str(block), block.evidence)
    assert "GET /items → items() at apps.py:" in str(block)
    if block.cause == "loop":  # sampled: the phase is read off FastAPI's frames
        assert "response" in block.phase, (str(block), block.evidence)
    else:  # the watchdog got no sample in: the block ended as that response went out
        assert "it ended as the loop sent the response of GET /items" in str(block)


def test_garbage_collection_is_a_share_of_the_block_not_its_culprit():
    from helpers.loopwatch import CAUSE_LOOP, LoopBlock

    block = LoopBlock(1.0, 2.4, "/srv/app.py", 7, "return build()", cause=CAUSE_LOOP, gc_ms=800)
    assert str(block) == (
        "loop blocked 1400 ms at app.py:7 `return build()` (800 ms of it garbage collection)"
    )
    assert not block.is_garbage_collection


@pytest.mark.parametrize(("sampled", "collection"), [
    ((_weakrefset.__file__, 39, "_remove"), True),  # a callback the collection ran
    (("/srv/app.py", 7, "build"), False),  # the app's own line: it made the garbage
])
def test_a_collection_sampled_in_its_own_callbacks_is_the_collection(
    monkeypatch, sampled, collection
):
    from helpers import loopwatch

    watch = LoopWatch("unit", threshold_ms=10)
    monkeypatch.setattr(loopwatch, "_gc_share", lambda start, end: (0.4, 2))
    stall = _Stall()
    stall.loop_keys[sampled] = 20
    block = watch._judge(stall, None, 10.0, 10.408, loop_cpu_s=0.4, loop_wakeups=0)
    assert block.is_garbage_collection is collection, (str(block), block.evidence)
    assert round(block.gc_ms) == 400


def test_a_blocking_lifespan_shutdown_is_filed():
    with serve(apps.slow_shutdown_app, name="slow-shutdown") as running:
        load(running, "/")
    blocks = running.loop_blocks
    assert len(blocks) == 1, [str(b) for b in blocks]
    (block,) = blocks
    assert 300 * 0.8 <= block.duration_ms <= 300 * 1.3
    assert block.code == "time.sleep(0.3)  # SHUTDOWN: blocks the loop while the server stops"


def test_an_unsampled_block_never_shows_a_zero_location():
    from helpers.loopwatch import CAUSE_GC, CAUSE_UNSAMPLED, LoopBlock

    for cause in (CAUSE_UNSAMPLED, CAUSE_GC):
        block = LoopBlock(1.0, 1.2, "<unsampled>", 0, "C code that never released the GIL",
                          cause=cause)
        assert block.where == "" and ":0" not in str(block)


def test_threads_sharing_a_line_are_listed_together():
    from helpers.loopwatch import CAUSE_GIL, LoopBlock, ThreadRun

    runs = (
        ThreadRun("worker 10", "/srv/app.py", 9, "crunch()", 120.0),
        ThreadRun("worker 2", "/srv/app.py", 9, "crunch()", 110.0),
        ThreadRun("the main thread", "/srv/plot.py", 3, "draw()", 50.0),
    )
    block = LoopBlock(1.0, 1.3, "/srv/app.py", 9, "crunch()", cause=CAUSE_GIL, threads=runs)
    assert str(block) == (
        "loop blocked 300 ms waiting for the GIL while worker 2 and worker 10 ran app.py:9 "
        "`crunch()`; the main thread ran plot.py:3 `draw()`"
    )


def test_a_worker_no_sample_caught_is_named_by_its_endpoint():
    from helpers.loopwatch import CAUSE_GIL, LoopBlock, ThreadRun

    runs = (ThreadRun("worker 1", "/srv/app.py", 20, "report()", 80.0, False, True),)
    block = LoopBlock(1.0, 1.08, "/srv/app.py", 20, "report()", cause=CAUSE_GIL, threads=runs)
    assert str(block) == (
        "loop blocked 80 ms waiting for the GIL while worker 1 ran report() (app.py:20; "
        "no sample caught the line)"
    )


def test_without_per_thread_cpu_an_unsampled_block_claims_nothing_it_cannot_know():
    watch = LoopWatch("unit", threshold_ms=10)
    watch._cpu_supported = False  # as on a platform without per-thread CPU clocks
    watch._file(10.0, 10.2)
    (block,) = watch.blocks
    assert block.cause == "unsampled" and "cannot tell whose it was" in str(block)
    assert "C code" not in str(block)


@pytest.mark.parametrize(("others_share", "cause"), [(0.9, "gil"), (0.2, None)])
def test_a_gil_wait_needs_other_threads_that_ran_long_enough_to_hold_it(
    monkeypatch, others_share, cause
):
    """The loop's thread asked for the GIL all through a 100 ms block (400 wake-ups a second)
    and ran 8% of it. Another thread that ran 90% of it held the GIL; one that ran 20% could
    not have, as nobody in the process ran for the other 72%: the machine's doing, no block."""
    watch = LoopWatch("unit", threshold_ms=10)
    monkeypatch.setattr(watch, "_cpu_during", lambda *args: (0.1, {}))
    other = threading.get_ident()  # any thread but the loop's
    monkeypatch.setattr(watch, "_busy_threads", lambda *args: {other: (others_share, 90.0)})
    block = watch._judge(_Stall(), None, 10.0, 10.1, loop_cpu_s=0.008, loop_wakeups=40)
    assert (block.cause if block else None) == cause, block and (str(block), block.evidence)


class SlowToStart(threading.Thread):
    """A thread the OS takes 300 ms to run, as a busy machine does: ``start()`` waits for it."""

    def _bootstrap_inner(self) -> None:  # runs in the new thread, before it reports "started"
        time.sleep(0.3)
        super()._bootstrap_inner()  # type: ignore[misc]


def test_waiting_for_a_new_thread_to_start_is_named_as_such():
    app = FastAPI()

    @app.get("/offload")
    async def offload() -> dict[str, bool]:
        worker = SlowToStart(target=lambda: None)
        worker.start()  # THE CALLER'S LINE
        worker.join()
        return {"ok": True}

    with serve(app, name="thread-start") as running:
        load(running, "/")
        running.clear_loop_blocks()
        result = load(running, "/offload")
    (block,) = code_blocks(result.loop_blocks)
    assert block.starting_a_thread, f"{block}\n{block.stack}"
    assert 0.8 * 300 <= block.duration_ms <= 1.2 * 300 + 20
    assert "starting a new worker thread (the OS was slow to run it), called from" in str(block)
    assert "THE CALLER'S LINE" in str(block)
    # a plain blocking call is not mistaken for one
    with serve(apps.app, name="plain") as running:
        load(running, "/")
        running.clear_loop_blocks()
        (plain,) = code_blocks(load(running, "/blocking-sleep").loop_blocks)
    assert not plain.starting_a_thread


def test_launching_a_process_pools_worker_is_named_as_such():
    """The stack the watch sampled when a pool started on demand launched its worker at submit
    (105-875 ms were seen on a busy machine), as ``LoopBlock.stack`` records it."""
    pool_file = os.path.join(os.path.dirname(os.__file__), "concurrent", "futures", "process.py")
    stack = (
        "/srv/app.py:12 in work",
        f"{pool_file}:790 in submit",
        f"{pool_file}:749 in _adjust_process_count",
        f"{pool_file}:766 in _spawn_process",
        f"{os.path.dirname(os.__file__)}/multiprocessing/process.py:121 in start",
    )
    block = LoopBlock(
        start_s=0.0, end_s=0.3, filename="/srv/app.py", lineno=12,
        code="await loop.run_in_executor(pool, burn, n)", stack=stack,
    )
    assert block.starting_a_process and not block.starting_a_thread
    assert "starting a process pool's worker process, called from app.py:12" in str(block)
    plain = LoopBlock(start_s=0.0, end_s=0.3, filename="/srv/app.py", lineno=12, code="burn(n)",
                      stack=("/srv/app.py:12 in work",))
    assert not plain.starting_a_process


@pytest.mark.parametrize(("samples", "waited_for_a_core_s", "filed"), [
    (1, 0.01, "loop"),  # asleep in time.sleep: the sampled line held the loop
    (0, 0.01, "unsampled"),  # the same, with no sample at all: filed without a line
    (1, 0.15, None),  # kept off a core most of the block: the machine's doing
])
def test_a_starved_watchdog_still_files_a_call_that_held_the_loop(
    monkeypatch, samples, waited_for_a_core_s, filed
):
    """A 218 ms time.sleep on the loop, on a machine so busy that the watchdog took one sample
    or none (seen beside four CPU-bound processes on two cores): the loop's thread used 5% of
    the block and nobody else ran. Whether it was asleep in a call or waiting for a core, only
    the OS's count of its wait for a CPU tells."""
    watch = LoopWatch("unit", threshold_ms=100)
    monkeypatch.setattr(watch, "_cpu_during", lambda *args: (0.218, {}))
    monkeypatch.setattr(watch, "_busy_threads", lambda *args: {})
    stall = _Stall()
    if samples:
        stall.loop_keys[("/srv/cafe.py", 20, "brew_blocking")] = samples
    watch._runqueue_baseline = (9.99, 0)  # the last reading before the block
    monkeypatch.setattr(watch, "_runqueue_reading",
                        lambda: (10.219, int(waited_for_a_core_s * 1e9)))
    block = watch._judge(stall, None, 10.0, 10.218, loop_cpu_s=0.012, loop_wakeups=4)
    assert (block.cause if block else None) == filed, block and (str(block), block.evidence)
    if filed == "loop":
        assert block.lineno == 20


def test_an_unsampled_block_names_the_response_it_ended_with_not_one_just_before_it():
    """No line sampled in a 340 ms block (pydantic-core encoding 40,000 rows keeps the GIL):
    the watch names the request whose response went out as it ended. A response answered in
    the heartbeat's last few ms before the block began (the app doctor's probe, seen) and one
    answered just after it are not that request."""
    from helpers._instrument import Instrumented, ThreadLabels

    instrumented = Instrumented(FastAPI(), ThreadLabels())
    for sent_s, path in ((10.002, "/probe"), (10.338, "/export"), (10.341, "/probe")):
        instrumented.responses.append((sent_s, {"type": "http", "method": "GET", "path": path}))
    watch = LoopWatch("unit", threshold_ms=50,
                      response_sent_between=instrumented.response_sent_between)
    block = watch._judge(_Stall(), None, 10.0, 10.34, loop_cpu_s=0.33, loop_wakeups=1)
    assert block is not None and block.cause == "unsampled", block and (str(block), block.evidence)
    assert block.request == "GET /export" and block.ended_with_response, str(block)
    assert "it ended as the loop sent the response of GET /export" in str(block)
