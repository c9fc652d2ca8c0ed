"""helpers.checks._core and fresh(): time limits around the learner's code (a busy loop is
interrupted), the learner's exceptions reworded, a stuck server stopped with its stderr caught,
load() as its module defines it, graded's short tracebacks, and fresh()'s validation."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI

from helpers import loadgen, loopwatch
from helpers.checks import _core, fresh
from helpers.checks._core import Check, describe_blocks, graded


def failure(function, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as caught:
        function(*args, **kwargs)
    return str(caught.value)


def test_passed_prints_one_line_and_fail_has_four_parts(capsys):
    with Check("Task 9 · demo") as check:
        check.passed("all good")
        message = failure(check.fail, measured="m", expected="e", cause="c", fix="f")
    assert capsys.readouterr().out == "✔ Task 9 · demo: all good\n"
    assert message.splitlines() == [
        "✘ Task 9 · demo", "  measured:     m", "  expected:     e", "  likely cause: c",
        "  fix:          f",
    ]


def test_stderr_is_caught_inside_a_check_and_restored_after(capfd):
    before = sys.stderr
    with Check("Task 9 · quiet") as check:
        print("a warning", file=sys.stderr)
    assert sys.stderr is before
    assert check.stderr.getvalue() == "a warning\n"
    assert capfd.readouterr().err == ""


def test_call_returns_the_result():
    with Check("Task 9 · call") as check:
        assert check.call(lambda a, b: a + b, 2, 3) == 5


def test_call_times_out_on_a_sleep():
    began = time.monotonic()
    with Check("Task 9 · sleep") as check:
        message = failure(check.call, time.sleep, 3, timeout_s=0.3)
    assert time.monotonic() - began < 1.0
    assert "no result after 0.3 s" in message and "never finished" in message


def test_call_interrupts_a_busy_loop():
    def spin():
        while True:
            pass

    with Check("Task 9 · busy") as check:
        message = failure(check.call, spin, timeout_s=0.3)
    assert "no result after 0.3 s" in message
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(
        t.name == "check: Task 9 · busy" for t in threading.enumerate()
    ):
        time.sleep(0.05)
    assert not any(t.name == "check: Task 9 · busy" for t in threading.enumerate())


def test_call_rewords_the_learners_exception_and_a_non_function():
    def broken():
        raise ZeroDivisionError("division by zero")

    with Check("Task 9 · errors") as check:
        message = failure(check.call, broken)
        assert "your code raised ZeroDivisionError: division by zero" in message
        assert "is not a function" in failure(check.call, 42)


def test_run_gives_a_coroutine_its_own_loop_and_a_time_limit():
    async def answer():
        await asyncio.sleep(0.01)
        return asyncio.get_running_loop()

    async def forever():
        await asyncio.Event().wait()

    async def blocks():
        time.sleep(2)

    with Check("Task 9 · run") as check:
        assert check.run(answer) is not None
        began = time.monotonic()
        assert "your coroutine is still waiting" in failure(check.run, forever, timeout_s=0.3)
        # a loop blocked by time.sleep fires no timer: the thread's own bound catches it
        assert "no result after" in failure(check.run, blocks, timeout_s=0.3)
    assert time.monotonic() - began < 3.0


def stuck_app() -> FastAPI:
    app = FastAPI()

    @app.get("/stuck")
    async def stuck():
        time.sleep(12)  # holds the server's loop far past the request's timeout and the stop's

    return app


def test_serve_stops_a_stuck_server_and_catches_its_stderr(capfd):
    began = time.monotonic()
    with Check("Task 9 · stuck") as check:
        with check.serve(stuck_app()) as server:
            result = check.load(server, "/stuck", timeout_s=0.5)
        assert result.errors == 1
    took = time.monotonic() - began
    # the request's 0.5 s and the stop's 2 s, plus starting a server and a load process, which
    # took up to 2.8 s at load average 8: well under the 12 s the loop is held
    assert took < 0.5 + _core.STOP_TIMEOUT_S + 5.0, took
    assert not server.running
    assert "did not stop within" in check.stderr.getvalue()  # the server's warning, caught
    assert capfd.readouterr().err == ""


def test_serve_fails_cleanly_on_an_app_that_does_not_start():
    with Check("Task 9 · no app") as check:
        message = failure(check.serve(object()).__enter__)
    assert "the app did not start" in message


def test_serve_names_the_exception_a_lifespan_raised():
    @asynccontextmanager
    async def lifespan(app):
        raise NotImplementedError()
        yield

    with Check("Task 9 · lifespan") as check:
        message = failure(check.serve(FastAPI(lifespan=lifespan)).__enter__)
    assert "the app did not start" in message and "(NotImplementedError)" in message, message


def test_load_ignores_a_replaced_load():
    app = FastAPI()

    @app.get("/")
    async def root():
        return {"ok": True}

    real = loadgen.load
    loadgen.load = lambda *args, **kwargs: "faked"
    try:
        with Check("Task 9 · load") as check, check.serve(app) as server:
            result = check.load(server, "/", n=3)
        assert isinstance(result, loadgen.LoadResult) and result.ok == 3
        assert loadgen.load is not real and loadgen.load.__code__.co_filename == loadgen.__file__
    finally:
        if loadgen.load(server.url, "/", timeout_s=1) == "faked":  # pragma: no cover
            loadgen.load = real


def test_graded_trims_the_traceback_and_rewords_other_errors():
    @graded
    def check_failing() -> None:
        with Check("Task 9 · graded") as check:
            check.fail(measured="m", expected="e", cause="c", fix="f")

    @graded
    def check_crashing() -> None:
        raise KeyError("gone")

    with pytest.raises(AssertionError) as caught:
        check_failing()
    frames = traceback.extract_tb(caught.value.__traceback__)
    # the caller's line and graded's wrapper; the check's own frames (check_failing, fail) cut
    assert [frame.name for frame in frames][1:] == ["check_function"]
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    message = failure(check_crashing)
    assert "the check could not run: KeyError: 'gone'" in message


def test_describe_blocks_empty():
    assert describe_blocks([]) == "no loop blocks"


def block_at(lineno: int, start_s: float, ms: float) -> loopwatch.LoopBlock:
    return loopwatch.LoopBlock(
        start_s=start_s, end_s=start_s + ms / 1000, filename="app.py", lineno=lineno,
        code=f"line_{lineno}()",
    )


def test_describe_blocks_adds_up_blocks_at_one_place_longest_first():
    blocks = [block_at(5, 0.0, 1000), block_at(9, 2.0, 300), block_at(5, 3.0, 2000)]
    assert describe_blocks(blocks) == (
        "loop blocked 3000 ms in 2 blocks at app.py:5 `line_5()`; "
        "loop blocked 300 ms at app.py:9 `line_9()`"
    )
    many = [block_at(line, float(line), 100 + line) for line in range(1, 6)]
    assert describe_blocks(many, limit=2).endswith("; ... and 3 more places")


@pytest.mark.parametrize("name", ["lesson1", "lessons01", "../lesson01", "", 1, None])
def test_fresh_refuses_anything_but_a_lesson_name(name):
    with pytest.raises(ValueError, match="lesson module name"):
        fresh(name)


def test_fresh_runs_the_core_and_the_lesson_again():
    module = fresh("lesson01")
    module.check_cook = None
    _core.Check = None
    try:
        again = fresh("lesson01")
        assert callable(again.check_cook)
        assert _core.Check is not None
    finally:
        fresh("lesson01")
