"""The loop watch reports real blocks at the right line, within ±20 %, and nothing else."""

from __future__ import annotations

import json

import pytest

from helpers import load, serve
from helpers.loopwatch import LoopWatch, is_library_file
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
    result = load(server, path, n=5)
    assert result.ok == 5
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
    many_live_objects = [[i] for i in range(1_500_000)]  # a full collection must visit them all
    result = load(server, "/collect-garbage")
    del many_live_objects
    assert result.ok == 1
    (block,) = [b for b in result.loop_blocks if b.duration_ms >= 50]
    assert block.is_garbage_collection
    assert str(block).startswith("loop blocked") and "garbage collection (generation 2)" in str(block)


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
    assert block.function == "<unsampled>" and "never released the GIL" in str(block)
    assert 0.8 * call_ms <= block.duration_ms <= 1.2 * call_ms + 20


def test_a_block_with_no_sample_says_so():
    watch = LoopWatch("unit", threshold_ms=10)
    watch._file(10.0, 10.2)
    (block,) = watch.blocks
    assert block.function == "<unsampled>" and round(block.duration_ms) == 200
    assert str(block) == (
        "loop blocked 200 ms by C code that never released the GIL (no Python line could be sampled)"
    )
