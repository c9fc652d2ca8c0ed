"""What every check shares: one success line, one kind of failure message, timeouts around the
learner's code, a server that is always stopped, and silence on stderr.

Lesson modules use it through :class:`Check`, in a public function marked :func:`graded`::

    @graded
    def check_async_chef(chef: Callable[..., Any]) -> None:
        # Task 1: the async chef serves six orders in about one oven time
        with Check("Task 1 · the async chef") as check:
            with check.serve(app) as server:
                result = check.load(server, "/cook", n=6)
            if result.wall_s > 1.0:
                check.fail(measured=..., expected=..., cause=..., fix=...)
            check.passed("6 orders in 0.52 s, about one oven time")
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import importlib
import io
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, NoReturn, TypeVar

# Modules, not the names the ``helpers`` package exports: a notebook cell that assigns
# ``helpers.load = ...`` does not reach these.
from helpers import loadgen, loopwatch
from helpers import server as servers

__all__ = [
    "Check", "ErrorNotes", "blame", "describe_blocks", "free_stuck_loop", "graded",
    "own_code_blocks", "stuck_line",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

STARTUP_TIMEOUT_S = 10.0
"""Longest a learner's app may take to start (its lifespan included)."""
STOP_TIMEOUT_S = 2.0
"""Longest a check waits for a server to stop; a server whose loop is stuck is abandoned."""
REQUEST_TIMEOUT_S = 10.0
"""Default bound on each request a check sends."""
CALL_TIMEOUT_S = 10.0
"""Default bound on a call into the learner's code."""
FREE_TIMEOUT_S = 2.0
"""Longest a check spends interrupting a server loop that the learner's busy code holds."""


class _Abandoned(BaseException):
    """Raised inside a learner's thread that overran its time, to stop a busy loop there."""


def graded(function: F) -> F:
    """Mark a public check function: a failure reaches the learner as its message alone, with
    the check's own frames cut from the traceback; any other error becomes a failure too."""

    @functools.wraps(function)
    def check_function(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except AssertionError as failure:
            raise failure.with_traceback(None) from None
        except Exception as error:
            raise AssertionError(
                f"✘ the check could not run: {type(error).__name__}: {error}\n"
                "  fix: run the cells above in order, then this one again"
            ) from None

    return check_function  # type: ignore[return-value]


def describe_blocks(blocks: Sequence[loopwatch.LoopBlock], limit: int = 3) -> str:
    """The loop watch's records in one readable line per place, longest first: blocks at the
    same line with the same cause are added up ("3008 ms in 2 blocks at ...")."""
    if not blocks:
        return "no loop blocks"
    places: dict[str, list[float]] = {}
    for block in blocks:
        # str(block) is "loop blocked N ms <where and why>": the part after the figure is the place
        place = str(block).split(" ms", 1)[1]
        places.setdefault(place, []).append(block.duration_ms)
    ranked = sorted(places.items(), key=lambda item: -sum(item[1]))
    lines = []
    for place, durations in ranked[:limit]:
        count = f" in {len(durations)} blocks" if len(durations) > 1 else ""
        lines.append(f"loop blocked {sum(durations):.0f} ms{count}{place}")
    if len(ranked) > limit:
        lines.append(f"... and {len(ranked) - limit} more places")
    return "; ".join(lines)


class ErrorNotes(logging.Handler):
    """Keeps the exceptions uvicorn logs for the endpoints, to quote on a 500."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            self.errors.append(f"{type(error).__name__}: {error}")


def stuck_line(server: servers.Server) -> str:
    """Where the server's loop is held right now, if its heartbeat has been silent for a
    second; empty otherwise."""
    return server.watch.held_at()


def free_stuck_loop(server: servers.Server, timeout_s: float = FREE_TIMEOUT_S) -> str:
    """A stopped server whose loop the learner's code still holds: interrupt that thread for up
    to ``timeout_s`` (each pending request may run the busy code in turn), so that a busy loop
    does not spin for the kernel's life; say where it was held. Empty when it had stopped."""
    thread = server.loop_thread
    if not thread.is_alive():
        return ""
    where = server.watch.held_at(silent_s=0.0)
    deadline = time.monotonic() + timeout_s
    while thread.is_alive() and time.monotonic() < deadline:
        _interrupt(thread)
        thread.join(0.1)
    return f"the event loop was still held at {where or 'an unknown line'} when the check ended"


def own_code_blocks(
    blocks: Sequence[loopwatch.LoopBlock], min_ms: float
) -> list[loopwatch.LoopBlock]:
    """Blocks of ``min_ms`` or more in which the loop's own thread ran the learner's code.

    Not the others: on a busy machine a correct fix's loop can wait 100 ms or more for the GIL
    or a core (seen: 116 ms beside four hashing workers at load average 4.8), for the OS to run
    a new threadpool worker (seen: 156 and 886 ms at `await run_in_threadpool(...)` beside a
    busy process), or for a process pool to launch a worker process (105-875 ms at
    `run_in_executor`), and that is the machine's contention, not the learner's code."""
    return [
        b for b in blocks
        if b.duration_ms >= min_ms
        and b.cause == loopwatch.CAUSE_LOOP
        and not loopwatch.is_library_file(b.filename)
        and not b.starting_a_thread
        and not b.starting_a_process
    ]


def blame(path: str, block: loopwatch.LoopBlock) -> str:
    """A loop block in a failure's words: "`/report` blocked the event loop for 480 ms at
    cell In[7], line 3 `time.sleep(0.5)`" when the learner's code held it, else the watch's
    own account."""
    if block.cause == loopwatch.CAUSE_LOOP and block.where:
        return (
            f"`{path}` blocked the event loop for {block.duration_ms:.0f} ms at "
            f"{block.where} `{block.code.split('  #')[0]}`"
        )
    return f"while `{path}` ran: {block}"


class Check:
    """One graded check: a name, its output on success, its message on failure, its limits.

    While the ``with`` block runs, everything written to ``sys.stderr`` (a server's log, a
    warning, the learner's own prints to stderr) is caught in :attr:`stderr` instead of reaching
    the cell: nbgrader scores a graded cell that wrote to stderr as 0.
    """

    def __init__(self, task: str) -> None:
        self.task = task
        self.stderr = io.StringIO()
        self._previous_stderr: Any = None

    # -- the with block: silence on stderr --------------------------------------------------
    def __enter__(self) -> Check:
        self._previous_stderr = sys.stderr
        sys.stderr = self.stderr
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Collect now, while stderr is still caught: a coroutine the learner created and never
        # awaited warns ("never awaited") when it is collected, which would otherwise happen in
        # some later cell and show there as red text.
        gc.collect()
        sys.stderr = self._previous_stderr

    # -- verdicts ---------------------------------------------------------------------------
    def passed(self, message: str) -> None:
        """Print the one success line."""
        print(f"✔ {self.task}: {message}")

    def fail(self, *, measured: str, expected: str, cause: str, fix: str) -> NoReturn:
        """Fail the check with what was measured, what was expected, why, and what to do."""
        raise AssertionError(
            f"✘ {self.task}\n"
            f"  measured:     {measured}\n"
            f"  expected:     {expected}\n"
            f"  likely cause: {cause}\n"
            f"  fix:          {fix}"
        )

    # -- the learner's code, under a time limit ---------------------------------------------
    def call(
        self, function: Callable[..., T], *args: Any, timeout_s: float = CALL_TIMEOUT_S,
        expected: str = "a result within the time limit",
    ) -> T:
        """Call the learner's ``function(*args)`` in a thread of its own, for at most
        ``timeout_s``; a hang or an exception fails the check (the kernel never hangs)."""
        if not callable(function):
            self.fail(
                measured=f"{function!r} is not a function",
                expected="a function defined in the cell above",
                cause="the cell that defines it has not run, or the name is reused",
                fix="run the cell with your solution, then this one",
            )
        outcome: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

        def run() -> None:
            try:
                outcome.put((True, function(*args)))
            except _Abandoned:
                pass
            except BaseException as error:  # the learner's exception, reported below
                outcome.put((False, error))

        thread = threading.Thread(target=run, name=f"check: {self.task}", daemon=True)
        thread.start()
        try:
            ok, value = outcome.get(timeout=timeout_s)
        except queue.Empty:
            _interrupt(thread)
            self.fail(
                measured=f"no result after {timeout_s:g} s",
                expected=expected,
                cause="your code never finished: an endless loop, or a wait that never ends",
                fix="make sure every loop ends and every wait has something that ends it",
            )
        if not ok:
            self.fail(
                measured=f"your code raised {type(value).__name__}: {value}",
                expected=expected,
                cause="an error in the solution cell",
                fix="run your solution on its own and read its traceback",
            )
        return value  # type: ignore[no-any-return]

    def run(
        self, make_coroutine: Callable[[], Coroutine[Any, Any, T]], *,
        timeout_s: float = CALL_TIMEOUT_S, expected: str = "a result within the time limit",
    ) -> T:
        """Run the learner's coroutine on a fresh event loop in a thread of its own, for at
        most ``timeout_s``, as pytest's async plugins do."""

        def on_its_own_loop() -> T:
            return asyncio.run(asyncio.wait_for(make_coroutine(), timeout_s))

        # the thread's own bound catches a coroutine that blocks its loop (no timer fires then)
        try:
            return self.call(on_its_own_loop, timeout_s=timeout_s + 1.0, expected=expected)
        except AssertionError as failure:
            if "TimeoutError" in str(failure):
                self.fail(
                    measured=f"no result after {timeout_s:g} s",
                    expected=expected,
                    cause="your coroutine is still waiting: an await that never ends",
                    fix="check what each await waits for",
                )
            raise

    # -- serving and loading ----------------------------------------------------------------
    @contextlib.contextmanager
    def serve(self, app: Any, *, threshold_ms: float = 50.0) -> Iterator[servers.Server]:
        """Serve the learner's app for the check's requests; always stopped afterwards."""
        try:
            server = servers.serve(
                app, name=f"check · {self.task}", threshold_ms=threshold_ms,
                startup_timeout_s=STARTUP_TIMEOUT_S,
            )
        except Exception as error:
            lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
            said = lines[0] if lines else ""
            if len(lines) > 1:  # a traceback follows: its last line names the exception
                said += f" ({lines[-1]})"
            self.fail(
                measured=f"the app did not start: {type(error).__name__}: {said}",
                expected="an app that starts and accepts requests",
                cause="an error at import or in the lifespan, or not a FastAPI app",
                fix="serve it yourself with serve(app) and read the traceback",
            )
        try:
            yield server
        finally:
            server.stop(timeout=STOP_TIMEOUT_S)

    def load(
        self, target: servers.Server | str, path: str | Sequence[str] = "/", **options: Any
    ) -> loadgen.LoadResult:
        """``helpers.load`` with a timeout on every request and no progress bar."""
        options.setdefault("timeout_s", REQUEST_TIMEOUT_S)
        options.setdefault("progress", False)
        return _untampered_load()(target, path, **options)


def _untampered_load() -> Callable[..., loadgen.LoadResult]:
    """``loadgen.load`` as its module defines it, even if a cell replaced it meanwhile (the
    module is then run again; its idle load processes end with the kernel)."""
    code = getattr(loadgen.load, "__code__", None)
    if getattr(code, "co_filename", None) != loadgen.__file__:
        importlib.reload(loadgen)
    return loadgen.load


def _interrupt(thread: threading.Thread) -> None:
    """Raise ``_Abandoned`` inside ``thread``: it stops a pure-Python loop that overran (a
    thread stuck in a blocking call ends only when the call does; it is a daemon)."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(_Abandoned)
        )
