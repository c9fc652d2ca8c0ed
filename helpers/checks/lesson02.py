"""Checks for exercise 02 · The event loop: predicted print orders checked against a real run,
two waits run together (served, and timed from ``load()``'s separate process), a forgotten
``await`` fixed, and a background task that is kept alive until it is done.

The two programs of task 1 are the strings :data:`PROGRAM_ONE` and :data:`PROGRAM_TWO`: the
exercise shows them, and the check runs them (its own ``print`` records each line).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from helpers import loadgen
from helpers.checks._core import Check, describe_blocks, free_stuck_loop, graded

__all__ = [
    "A_S",
    "B_S",
    "PROGRAM_ONE",
    "PROGRAM_TWO",
    "SAVE_S",
    "check_checkout",
    "check_fire_and_forget",
    "check_prediction_one",
    "check_prediction_two",
    "check_together",
]

PROGRAM_ONE = '''\
async def step(name, seconds):
    print(f"{name} starts")
    await asyncio.sleep(seconds)
    print(f"{name} ends")


async def main():
    task_a = asyncio.create_task(step("A", 0.2))
    print("A created")
    await step("B", 0.1)
    print("B awaited")
    await task_a
    print("all done")
'''
"""Task 1a's program: a task created first, a coroutine awaited directly."""

EXPLAIN_ONE = (
    "'A created': create_task only queues A; main keeps the thread until its first real pause.",
    "'B starts': `await step(\"B\", 0.1)` runs that coroutine at once, inside main's own turn.",
    "'A starts': B's sleep is the first real pause; the loop runs the task waiting in its queue.",
    "'B ends': B's 0.1 s wait ends before A's 0.2 s.",
    "'B awaited': main awaited B directly, so main goes on as soon as B is done.",
    "'A ends': A's wait ends at 0.2 s, while main waits on task_a.",
    "'all done': main resumes once task_a is done.",
)

PROGRAM_TWO = '''\
async def tidy():
    return None


async def worker(name):
    print(f"{name}1")
    await tidy()
    print(f"{name}2")
    await asyncio.sleep(0)
    print(f"{name}3")


async def main():
    task_a = asyncio.create_task(worker("A"))
    task_b = asyncio.create_task(worker("B"))
    print("tasks created")
    await task_b
    print("B awaited")
    await task_a
    print("A awaited")
'''
"""Task 1b's program: an await that does not switch, one that does, and awaiting B first."""

EXPLAIN_TWO = (
    "'tasks created': creating tasks runs nothing; main keeps the thread until `await task_b`.",
    "'A1', 'A2': the loop starts A first (queued first); `await tidy()` never pauses, so A "
    "goes straight on to A2.",
    "'B1', 'B2': `await asyncio.sleep(0)` is a real pause: the loop runs B, which does the same.",
    "'A3', 'B3': each resumes in the order it paused.",
    "'B awaited': main wakes when B is done; awaiting B first did not make B run first.",
    "'A awaited': A finished long ago, so `await task_a` returns at once.",
)

A_S, B_S = 0.6, 0.3
"""Task 2's two waits, as in the lesson."""
TOGETHER_BOUND_S = 0.95
"""Task 2: both done in under this. Ideal the longer wait (0.6 s); waits in turn (0.9 s) are
caught by their order, not the clock, and a blocking call by the loop watch. Seen here over
10 runs: 0.60-0.61 s; 0.60-0.71 s beside a busy process; blocking 0.6 s first, 1.20-1.22 s."""
BLOCKED_LIMIT_S = 0.25
"""Task 2: loop blocks adding up to this fail on their own (a correct run shows none)."""
SAVE_S = 0.3
"""Task 3a: how long saving an order takes."""
CHECKOUTS = 6
"""Task 3a: checkouts sent at once."""
CHECKOUT_BOUND_S = 1.0
"""Task 3a: all checkouts done in under this: ideal one save (0.3 s), blocked 1.8 s."""
REQUEST_TIMEOUT_S = 5.0
"""Several times every ideal here: a request still waiting by then never ends."""


# -- task 1: predict the order ------------------------------------------------------------


def _run_program(check: Check, source: str) -> list[str]:
    """Run ``source``'s ``main()`` on a fresh event loop, its ``print`` recording each line."""
    lines: list[str] = []

    def record(*args: Any, **_: Any) -> None:
        lines.append(" ".join(str(arg) for arg in args))

    namespace: dict[str, Any] = {"asyncio": asyncio, "print": record}
    exec(compile(source, "<exercise 02 program>", "exec"), namespace)
    check.run(namespace["main"], timeout_s=REQUEST_TIMEOUT_S)
    return lines


def _check_prediction(task: str, name: str, answer: Any, source: str,
                      explanation: tuple[str, ...]) -> None:
    with Check(task) as check:
        printed = _run_program(check, source)
        explained = "\n" + "\n".join(f"    {line}" for line in explanation)
        if not isinstance(answer, list | tuple) or not all(isinstance(a, str) for a in answer):
            check.fail(
                measured=f"{name} is {answer!r:.80}",
                expected=f"a list of the {len(printed)} printed lines as strings, such as "
                f"{printed[:1]!r}",
                cause="the answer is not a list of strings",
                fix=f"assign a list of strings to {name} in the cell above and run it",
            )
        given = [line.strip() for line in answer]
        if sorted(given) != sorted(printed):
            unknown = sorted(set(given) - set(printed))
            missing = sorted(set(printed) - set(given))
            check.fail(
                measured=f"your list has {len(given)} lines"
                + (f"; not printed by the program: {unknown}" if unknown else "")
                + (f"; missing: {missing}" if missing else ""),
                expected=f"each of these {len(printed)} lines once, in your predicted order: "
                f"{sorted(printed)}",
                cause="a line is missing, repeated or mistyped",
                fix="copy the lines from the task's list and only change their order",
            )
        if given != printed:
            first = next(i for i, (a, b) in enumerate(zip(given, printed, strict=True)) if a != b)
            check.fail(
                measured=f"you predicted {given}",
                expected=f"the program printed {printed} (line {first + 1} differs)\n"
                f"  why, line by line:{explained}",
                cause="a task runs only when the running code pauses at an await that waits",
                fix="read the explanation, then change your list",
            )
        check.passed(f"the program printed exactly {len(printed)} lines in your order. Why:")
        print(explained.lstrip("\n"))


@graded
def check_prediction_one(answer: Any) -> None:
    """Task 1a: the order in which program one prints, checked against a run of it."""
    _check_prediction("Task 1a · predict program one", "ORDER_ONE", answer, PROGRAM_ONE,
                      EXPLAIN_ONE)


@graded
def check_prediction_two(answer: Any) -> None:
    """Task 1b: the order in which program two prints, checked against a run of it."""
    _check_prediction("Task 1b · predict program two", "ORDER_TWO", answer, PROGRAM_TWO,
                      EXPLAIN_TWO)


# -- task 2: A and B together -------------------------------------------------------------


def _require_async_function(check: Check, function: Any, name: str, signature: str) -> None:
    if not callable(function):
        check.fail(
            measured=f"{name} is {function!r:.60}, not a function",
            expected=f"`async def {signature}:` defined in the cell above",
            cause="the solution cell has not run, or the name was reused",
            fix="run the cell with your solution, then this one",
        )
    if not inspect.iscoroutinefunction(function):
        check.fail(
            measured=f"{name} is a plain function (def)",
            expected=f"a coroutine function: `async def {signature}:`",
            cause="the endpoint awaits it, and a plain function cannot be awaited",
            fix=f"write `async def {signature}:`",
        )


def _body(record: loadgen.RequestRecord) -> dict[str, Any]:
    try:
        value = json.loads(record.body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _answered(check: Check, result: loadgen.LoadResult, stuck: str, expected: str) -> None:
    """Fail on a request with no answer (a hang) or an error (the learner's exception)."""
    for record in result.records:
        if record.status is None:
            check.fail(
                measured=f"no answer within {REQUEST_TIMEOUT_S:g} s "
                f"({stuck or describe_blocks(result.loop_blocks)})",
                expected=expected,
                cause="your coroutine never finished: an await that never ends, or a blocking "
                "call or an endless loop holding the event loop",
                fix="check what each await waits for, and that nothing blocks",
            )
        if record.status >= 400:
            detail = str(_body(record).get("error") or record.body[:200])
            unwritten = detail.startswith("NotImplementedError")
            check.fail(
                measured=f"your code raised {detail.rstrip(': ')}",
                expected=expected,
                cause="the solution is not written yet" if unwritten
                else "an error in the solution cell",
                fix="replace `raise NotImplementedError()` with your code" if unwritten
                else "await your function in a cell of its own and read the traceback",
            )


def _learner_error(error: BaseException) -> JSONResponse:
    return JSONResponse({"error": f"{type(error).__name__}: {error}"}, status_code=500)


@graded
def check_together(together: Callable[..., Any]) -> None:
    """Task 2: ``together(fetch)`` runs ``fetch("A", 0.6)`` and ``fetch("B", 0.3)`` at the same
    time: one request takes about the longer wait, B finishing first."""
    with Check("Task 2 · A and B together") as check:
        _require_async_function(check, together, "together", "together(fetch)")
        events: list[tuple[str, str]] = []
        calls: list[tuple[Any, Any]] = []

        async def fetch(name: str, seconds: float) -> str:
            calls.append((name, seconds))
            events.append((str(name), "starts"))
            await asyncio.sleep(seconds if isinstance(seconds, int | float) else 0)
            events.append((str(name), "finishes"))
            return str(name)

        app = FastAPI()

        @app.get("/together")
        async def endpoint() -> JSONResponse:
            try:
                result = await together(fetch)
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # noqa: BLE001 - reported to the check
                return _learner_error(error)
            return JSONResponse({"result": repr(result), "finished": len(events) - len(calls)})

        with check.serve(app) as server:
            result = check.load(server, "/together", timeout_s=REQUEST_TIMEOUT_S)
        stuck = free_stuck_loop(server)
        expected = f"both done in about {A_S:g} s, B first"
        _answered(check, result, stuck, expected)
        body = _body(result.records[0])
        if sorted(calls) != [("A", A_S), ("B", B_S)]:
            check.fail(
                measured=f"fetch was called as {calls}",
                expected=f"fetch('A', {A_S:g}) and fetch('B', {B_S:g}), once each",
                cause="fetch was not called with the lesson's two waits",
                fix="call `fetch(\"A\", A_S)` and `fetch(\"B\", B_S)`, each once",
            )
        if body.get("finished") != 2:
            check.fail(
                measured=f"together returned with {body.get('finished')} of 2 waits finished",
                expected="both waits finished before together returns",
                cause="a task was started but never awaited",
                fix="await both tasks before returning",
            )
        starts = [name for name, kind in events[:2] if kind == "starts"]
        if len(starts) < 2:
            first = events[0][0]
            check.fail(
                measured=f"{first} started, and only after it finished did the other start "
                f"(events: {', '.join(f'{n} {k}' for n, k in events)})",
                expected=f"A and B both started before either finished ({expected})",
                cause="the two were awaited one after the other: `await fetch(...)` runs a "
                "coroutine to its end before the next line",
                fix="wrap each in `asyncio.create_task(...)` first, then await the tasks (or "
                "`await asyncio.gather(...)`)",
            )
        if body.get("result") != repr(["A", "B"]):
            check.fail(
                measured=f"together returned {body.get('result')}",
                expected="['A', 'B']: what fetch returned for A, then for B",
                cause="the results were not returned, or not in the order A, B",
                fix="return `[result_a, result_b]`",
            )
        took_s = result.records[0].latency_s
        blocked_s = sum(block.duration_ms for block in result.loop_blocks) / 1000.0
        if took_s > TOGETHER_BOUND_S or blocked_s >= BLOCKED_LIMIT_S:
            check.fail(
                measured=f"the request took {took_s:.2f} s",
                expected=f"about the longer wait ({A_S:g} s; under {TOGETHER_BOUND_S:g} s)",
                cause=(f"your code held the event loop: {describe_blocks(result.loop_blocks)}"
                       if result.loop_blocks else "your code waits for something else as well"),
                fix="only the two fetches should wait; nothing should block",
            )
        check.passed(f"both done in {took_s:.2f} s (the longer wait: {A_S:g} s), B first")


# -- task 3: two bugs ---------------------------------------------------------------------


@graded
def check_checkout(checkout: Callable[..., Any]) -> None:
    """Task 3a: ``checkout(order_id, save_order)`` saves the order before it thanks the
    customer: six checkouts at once, each saved, in about one save's time."""
    with Check("Task 3a · the forgotten await") as check:
        _require_async_function(check, checkout, "checkout", "checkout(order_id, save_order)")
        saved: list[int] = []

        async def save_order(order_id: int) -> None:
            await asyncio.sleep(SAVE_S)  # the database write
            saved.append(order_id)

        app = FastAPI()

        @app.get("/checkout/{order_id}")
        async def endpoint(order_id: int) -> JSONResponse:
            try:
                reply = await checkout(order_id, save_order)
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # noqa: BLE001 - reported to the check
                return _learner_error(error)
            return JSONResponse({"reply": repr(reply), "saved": order_id in saved})

        paths = [f"/checkout/{order}" for order in range(1, CHECKOUTS + 1)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with check.serve(app) as server:
                result = check.load(server, paths, timeout_s=REQUEST_TIMEOUT_S)
            stuck = free_stuck_loop(server)
            gc.collect()  # a dropped coroutine warns now, here, not in some later cell
        never_awaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
        expected = f"{CHECKOUTS} orders saved, each before its thank-you"
        _answered(check, result, stuck, expected)
        for record in result.records:
            body = _body(record)
            order = record.path.rsplit("/", 1)[1]
            if body.get("reply") != repr(f"thanks for order {order}!"):
                check.fail(
                    measured=f"checkout({order}, save_order) returned {body.get('reply')}",
                    expected=repr(f"thanks for order {order}!"),
                    cause="the reply changed",
                    fix="keep the line `return f\"thanks for order {order_id}!\"`",
                )
            if not body.get("saved"):
                if never_awaited:
                    cause = (f"a forgotten await: save_order(...) only made a coroutine object, "
                             f"which never ran (Python warned: {never_awaited[0]})")
                else:
                    cause = ("the save was started but not awaited: the reply went out before "
                             "the order was saved")
                check.fail(
                    measured=f"order {order} was not saved when checkout replied "
                    f"(after {record.latency_s:.2f} s)",
                    expected=expected,
                    cause=cause,
                    fix="`await save_order(order_id)` before the return",
                )
        if result.wall_s > CHECKOUT_BOUND_S:
            check.fail(
                measured=f"{CHECKOUTS} checkouts at once took {result.wall_s:.2f} s",
                expected=f"about one save ({SAVE_S:g} s; under {CHECKOUT_BOUND_S:g} s)",
                cause=(f"your code held the event loop: {describe_blocks(result.loop_blocks)}"
                       if result.loop_blocks else "the checkouts waited for something else"),
                fix="await the save; do not block or wait for anything else",
            )
        check.passed(f"{CHECKOUTS} orders saved, each before its thank-you; "
                     f"all done in {result.wall_s:.2f} s")


async def _keep_scenario(fire_and_forget: Callable[[Any], Any]) -> dict[str, Any]:
    """Start a task that waits on a future only it knows, through the learner's function, and
    see whether it survives a garbage collection, and whether it is let go once done."""
    loop = asyncio.get_running_loop()
    complaints: list[str] = []
    loop.set_exception_handler(lambda _, context: complaints.append(str(context["message"])))
    seen: dict[str, Any] = {}

    async def wait_for_nothing() -> None:
        seen["task"] = weakref.ref(asyncio.current_task())
        await loop.create_future()  # a future nobody else knows about

    coroutine = wait_for_nothing()
    started = weakref.ref(coroutine)
    try:
        returned = fire_and_forget(coroutine)
    except BaseException:
        coroutine.close()  # unstarted: closed, it never warns from some later cell
        raise
    del coroutine
    is_coroutine = inspect.iscoroutine(returned)
    if is_coroutine:
        # an async def: calling it ran nothing. Close both coroutines now, quietly: dropped,
        # they would warn on stderr at some later garbage collection, in some later cell.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            returned.close()
            del returned
            gc.collect()
        return {"started": "task" in seen, "async_def": True}
    del returned
    for _ in range(3):
        await asyncio.sleep(0)
    leftover = started()
    if leftover is not None and inspect.getcoroutinestate(leftover) == inspect.CORO_CREATED:
        leftover.close()  # never started: close it rather than have it warn later
        return {"started": False, "async_def": False}
    del leftover
    gc.collect()
    task = seen["task"]() if "task" in seen else None
    outcome: dict[str, Any] = {"started": "task" in seen, "async_def": is_coroutine,
                               "survived": task is not None, "complaints": complaints}
    if task is not None:
        task.cancel()  # done now: a helper that keeps tasks should let this one go
        del task
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        outcome["released"] = seen["task"]() is None
    return outcome


@graded
def check_fire_and_forget(fire_and_forget: Callable[[Any], Any]) -> None:
    """Task 3b: ``fire_and_forget(coro)`` starts a task that survives a garbage collection
    while it waits, and lets it go once it is done."""
    with Check("Task 3b · a task nobody holds on to") as check:
        if not callable(fire_and_forget):
            check.fail(
                measured=f"fire_and_forget is {fire_and_forget!r:.60}, not a function",
                expected="`def fire_and_forget(coro):` defined in the cell above",
                cause="the solution cell has not run, or the name was reused",
                fix="run the cell with your solution, then this one",
            )
        outcome = check.run(lambda: _keep_scenario(fire_and_forget), timeout_s=REQUEST_TIMEOUT_S)
        if outcome["async_def"] or not outcome["started"]:
            check.fail(
                measured="the coroutine passed to fire_and_forget never started"
                + (" (fire_and_forget is an async def: calling it ran nothing)"
                   if outcome["async_def"] else ""),
                expected="a task running on the loop as soon as fire_and_forget returns",
                cause="no task was created for it",
                fix="a plain `def` that calls `asyncio.create_task(coro)` and returns the task",
            )
        if not outcome["survived"]:
            said = f" (asyncio said: {outcome['complaints'][0]!r})" if outcome["complaints"] else ""
            check.fail(
                measured=f"the waiting task was gone after a garbage collection{said}",
                expected="the task alive until it is done",
                cause="the event loop holds tasks only weakly, and nothing else held this one",
                fix="add each task to a set (`background_tasks.add(task)`)",
            )
        if not outcome["released"]:
            check.fail(
                measured="the task was still held after it was done",
                expected="each task let go once done, so the set does not grow forever",
                cause="finished tasks are never removed",
                fix="`task.add_done_callback(background_tasks.discard)`",
            )
        check.passed("the waiting task survived a garbage collection and was let go once done")
