"""Checks for exercise 01 · The kitchen: the asynchronous chef, served over HTTP and timed from
``load()``'s separate process, and the arithmetic of the prep-heavy menu, next to a real kitchen.

Task 1 serves the learner's ``cook(order)`` at ``/cook/{order}`` and sends six orders at once;
task 2 serves ``evening(orders, cook)`` with the check's own oven and times one request; task 3
compares the learner's numbers with :func:`helpers.kitchen.predict` and cooks the kitchen for
real, so the success line shows a measured figure too.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import numbers
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from helpers import kitchen, loadgen
from helpers.checks._core import Check, describe_blocks, free_stuck_loop, graded

__all__ = [
    "ORDERS",
    "OVEN_S",
    "MENU",
    "check_chefs_needed",
    "check_cook",
    "check_evening_in_order",
    "check_evening_time",
    "check_first_dish",
    "check_one_async_chef",
]

OVEN_S = 0.5
"""Real seconds a dish spends in the oven in tasks 1 and 2."""
ORDERS = 6
"""Orders that arrive at once in tasks 1 and 2."""
ONE_OVEN_BOUND_S = 1.2
"""All orders served in under this: ideal one oven time (0.5 s), one after another 3 s. Seen on
this 2-core machine: 0.51-0.56 s, busy or not (see tests/test_checks_lesson01.py)."""
RAW_BELOW_S = 0.8 * OVEN_S
"""A dish served sooner than this never spent its time in the oven."""
REQUEST_TIMEOUT_S = 5.0
"""Ten oven times: a request still waiting by then is waiting for something that never comes."""
BLOCKED_SHARE = 0.3
"""Loop blocks adding up to this share of the run mean the chef stood in front of the oven."""

MENU = {"orders": 5, "prep_min": 6.0, "oven_min": 3.0}
"""Task 3's menu: fresh gnocchi, prep-heavy, as in the lesson's "When the prep is the work"."""
DEADLINE_MIN = 18.0
"""Task 3c: serve all five gnocchi orders within this many simulated minutes."""
ANSWER_TOLERANCE_MIN = 0.5
"""A predicted figure may be off by this much (the arithmetic gives whole minutes here)."""


# -- task 1: one chef, six orders at once ---------------------------------------------------


def _cook_app(cook: Callable[[int], Any]) -> FastAPI:
    """``/cook/{order}`` awaits the learner's ``cook(order)``; an error comes back as the body
    (no traceback is logged anywhere), a dish of the wrong type as its repr."""
    app = FastAPI()

    @app.get("/cook/{order}")
    async def cook_endpoint(order: int) -> JSONResponse:
        try:
            dish = await cook(order)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - the learner's error, sent to the check
            return JSONResponse({"error": f"{type(error).__name__}: {error}"}, status_code=500)
        return JSONResponse({"dish": dish if isinstance(dish, str) else None, "repr": repr(dish)})

    return app


def _require_async_function(check: Check, function: Any, name: str, signature: str) -> None:
    """Fail unless ``function`` is an ``async def`` function (what the endpoint awaits)."""
    if not callable(function):
        check.fail(
            measured=f"{name} is {function!r:.60}, not a function",
            expected=f"`async def {signature}:` defined in the cell above",
            cause="the solution cell has not run, or the name was reused",
            fix="run the cell with your solution, then this one",
        )
    if not inspect.iscoroutinefunction(function):
        check.fail(
            measured=f"{name} is a plain function (def), so nothing can await it",
            expected=f"an asynchronous chef: `async def {signature}:`",
            cause="a plain def cannot pause at an await: it is the synchronous chef",
            fix=f"write `async def {signature}:` and wait with `await asyncio.sleep(...)`",
        )


def _timeouts(check: Check, result: loadgen.LoadResult, what: str, stuck: str) -> None:
    """Fail when requests got no answer in time: a hang, or a loop held for good."""
    missing = [r for r in result.records if r.status is None]
    if not missing:
        return
    seen = stuck or describe_blocks(result.loop_blocks)
    check.fail(
        measured=f"{len(missing)} of {result.n} requests got no answer within "
        f"{REQUEST_TIMEOUT_S:g} s ({seen})",
        expected=f"{what} within about {OVEN_S:g} s",
        cause="your code never finished: an await that never ends, or an endless loop or a "
        "blocking call holding the event loop",
        fix=f"wait for the oven with `await asyncio.sleep({OVEN_S:g})` and return the dish",
    )


def _errors(check: Check, result: loadgen.LoadResult, what: str) -> None:
    """Fail with the learner's own exception when the endpoint reported one."""
    for record in result.records:
        if record.status is not None and record.status >= 400:
            detail = str(_json_field(record.body, "error") or record.body[:200])
            unwritten = detail.startswith("NotImplementedError")
            check.fail(
                measured=f"{record.path} answered {record.status}: your code raised "
                f"{detail.rstrip(': ')}",
                expected=what,
                cause="the solution is not written yet" if unwritten
                else "an error in the solution cell",
                fix="replace `raise NotImplementedError()` with your code" if unwritten
                else "call your function in a cell of its own (`await ...`) and read the "
                "traceback",
            )


def _json_field(body: str, key: str) -> Any:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value.get(key) if isinstance(value, dict) else None


def _blocked_cause(result: loadgen.LoadResult) -> str | None:
    """The loop watch's account of the run, when blocks filled a good share of it."""
    blocked_s = sum(block.duration_ms for block in result.loop_blocks) / 1000.0
    if blocked_s >= BLOCKED_SHARE * result.wall_s:
        return f"your code held the event loop: {describe_blocks(result.loop_blocks)}"
    return None


@graded
def check_cook(cook: Callable[[int], Any]) -> None:
    """Task 1: six orders sent at once to ``/cook/{order}`` are all served in about one oven
    time (the asynchronous chef), each with its own dish."""
    with Check("Task 1 · one chef, six orders") as check:
        _require_async_function(check, cook, "cook", "cook(order)")
        paths = [f"/cook/{order}" for order in range(1, ORDERS + 1)]
        with check.serve(_cook_app(cook)) as server:
            result = check.load(server, paths, timeout_s=REQUEST_TIMEOUT_S)
        stuck = free_stuck_loop(server)
        _timeouts(check, result, f"{ORDERS} dishes", stuck)
        _errors(check, result, f"{ORDERS} dishes")
        for record in result.records:
            order = record.path.rsplit("/", 1)[1]
            dish = _json_field(record.body, "dish")
            if dish != f"dish {order}":
                check.fail(
                    measured=f"cook({order}) returned {_json_field(record.body, 'repr')}",
                    expected=f"the string 'dish {order}'",
                    cause="the return value is not the dish for that order",
                    fix="end cook with `return f\"dish {order}\"`",
                )
        fastest = min(record.latency_s for record in result.records)
        if fastest < RAW_BELOW_S:
            check.fail(
                measured=f"a dish was served after {fastest:.2f} s",
                expected=f"every dish spends {OVEN_S:g} s in the oven first",
                cause="cook returns before the oven time is over: the dish is served raw",
                fix=f"wait in cook with `await asyncio.sleep({OVEN_S:g})`",
            )
        if result.wall_s > ONE_OVEN_BOUND_S:
            sequential_s = ORDERS * OVEN_S
            check.fail(
                measured=f"{ORDERS} orders sent at once were all served after "
                f"{result.wall_s:.2f} s",
                expected=f"about one oven time ({OVEN_S:g} s; under {ONE_OVEN_BOUND_S:g} s), "
                f"not one oven after another ({sequential_s:g} s)",
                cause=_blocked_cause(result)
                or "the orders waited for one another (something in cook lets only one "
                "order cook at a time)",
                fix=f"`await asyncio.sleep({OVEN_S:g})`, never `time.sleep`: a blocking wait "
                "is the chef standing in front of the oven, and every other order waits",
            )
        check.passed(
            f"{ORDERS} orders in {result.wall_s:.2f} s, about one oven time ({OVEN_S:g} s); "
            f"one after another would take {ORDERS * OVEN_S:g} s"
        )


# -- task 2: a whole evening in one coroutine -----------------------------------------------


class _Oven:
    """The check's own ``cook``: records each dish going into and out of the oven, in the
    order it happened (no clock), on the server's loop."""

    def __init__(self, oven_s: Callable[[int], float]) -> None:
        self.oven_s = oven_s
        self.events: list[tuple[str, int]] = []

    async def cook(self, order: int) -> str:
        self.events.append(("in", order))
        await asyncio.sleep(self.oven_s(order))
        self.events.append(("out", order))
        return f"dish {order}"

    def overlapped(self) -> bool:
        """True when every dish was in the oven before the first one came out."""
        first_out = next((i for i, (kind, _) in enumerate(self.events) if kind == "out"), None)
        ins = sum(1 for kind, _ in self.events if kind == "in")
        before = sum(1 for kind, _ in self.events[:first_out] if kind == "in")
        return first_out is not None and before == ins


def _evening_app(evening: Callable[..., Any], oven: _Oven, orders: list[int]) -> FastAPI:
    """``/evening`` awaits the learner's ``evening(orders, cook)`` with the check's oven."""
    app = FastAPI()

    @app.get("/evening")
    async def evening_endpoint() -> JSONResponse:
        try:
            dishes = await evening(list(orders), oven.cook)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - the learner's error, sent to the check
            return JSONResponse({"error": f"{type(error).__name__}: {error}"}, status_code=500)
        listed = list(dishes) if isinstance(dishes, list | tuple) else None
        return JSONResponse({
            "dishes": listed if listed and all(isinstance(d, str) for d in listed) else None,
            "repr": repr(dishes)[:120],
            "out_at_reply": sum(1 for kind, _ in oven.events if kind == "out"),
        })

    return app


def _serve_evening(
    check: Check, evening: Callable[..., Any], oven: _Oven
) -> tuple[loadgen.LoadResult, dict[str, Any]]:
    """Serve the learner's evening, send one request, and return it with its decoded body."""
    _require_async_function(check, evening, "evening", "evening(orders, cook)")
    orders = list(range(1, ORDERS + 1))
    with check.serve(_evening_app(evening, oven, orders)) as server:
        result = check.load(server, "/evening", timeout_s=REQUEST_TIMEOUT_S)
    stuck = free_stuck_loop(server)
    _timeouts(check, result, f"the evening's {ORDERS} dishes", stuck)
    _errors(check, result, f"the evening's {ORDERS} dishes")
    body: dict[str, Any] = json.loads(result.records[0].body)
    expected = [f"dish {order}" for order in orders]
    dishes = body["dishes"]
    if dishes is None or sorted(dishes) != sorted(expected):
        check.fail(
            measured=f"evening({orders}, cook) returned {body['repr']}",
            expected=f"a list of the {ORDERS} dishes cook returned: {expected}",
            cause="not every order was cooked, or the dishes were not collected and returned",
            fix="return the list of what `cook(order)` gave back for each order",
        )
    if body["out_at_reply"] < ORDERS:
        check.fail(
            measured=f"evening returned when {body['out_at_reply']} of {ORDERS} dishes were out "
            "of the oven",
            expected="every dish served before evening returns",
            cause="tasks started but not awaited: the evening ended with dishes still cooking",
            fix="await every task (or `await asyncio.gather(...)`) before returning",
        )
    return result, body


@graded
def check_evening_time(evening: Callable[..., Any]) -> None:
    """Task 2a: ``evening(orders, cook)`` puts all six dishes in the oven at once, so one
    request is served in about one oven time."""
    with Check("Task 2a · the whole evening in one oven time") as check:
        oven = _Oven(lambda order: OVEN_S)
        result, _ = _serve_evening(check, evening, oven)
        took_s = result.records[0].latency_s
        if not oven.overlapped() or took_s > ONE_OVEN_BOUND_S:
            cause = _blocked_cause(result)
            if cause is None and not oven.overlapped():
                cause = (
                    "the dishes went into the oven one after another: each cook(order) was "
                    "awaited before the next one started"
                )
            check.fail(
                measured=f"the evening of {ORDERS} orders took {took_s:.2f} s",
                expected=f"about one oven time ({OVEN_S:g} s; under {ONE_OVEN_BOUND_S:g} s), "
                f"not {ORDERS} ovens in a row ({ORDERS * OVEN_S:g} s)",
                cause=cause or "something kept the dishes from cooking side by side",
                fix="start every order as a task first (`asyncio.create_task(cook(order))`, or "
                "`asyncio.gather(*(cook(order) for order in orders))`), then await them all",
            )
        check.passed(
            f"{ORDERS} orders in one evening took {took_s:.2f} s, about one oven time "
            f"({OVEN_S:g} s), all {ORDERS} dishes in the oven together"
        )


@graded
def check_evening_in_order(evening: Callable[..., Any]) -> None:
    """Task 2b: ``evening`` returns the dishes in the order of the orders, even when the oven
    lets them out in another order."""
    with Check("Task 2b · dishes in the order of the orders") as check:
        # order 1 bakes longest: the dishes come out of the oven in reverse order
        oven = _Oven(lambda order: 0.2 + 0.05 * (ORDERS - order))
        _, body = _serve_evening(check, evening, oven)
        expected = [f"dish {order}" for order in range(1, ORDERS + 1)]
        came_out = [f"dish {order}" for kind, order in oven.events if kind == "out"]
        if body["dishes"] != expected:
            reason = (
                "the dishes are listed in the order they came out of the oven"
                if body["dishes"] == came_out
                else "the dishes are listed in some other order"
            )
            check.fail(
                measured=f"evening returned {body['dishes']}",
                expected=f"{expected} (the oven let them out as {came_out})",
                cause=reason,
                fix="keep one task per order in a list and await them in that order, or use "
                "`asyncio.gather`, which returns results in the order of its arguments",
            )
        check.passed(f"dishes returned as {expected[0]} … {expected[-1]}, "
                     "though the oven let them out in reverse")


# -- task 3: when the prep is the work ------------------------------------------------------


def _number(check: Check, answer: Any, name: str, unit: str) -> float:
    """The learner's answer as a number, or a failure that says what to write."""
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real) or not math.isfinite(
        float(answer)
    ):
        check.fail(
            measured=f"{name} is {answer!r:.60}",
            expected=f"a number of {unit}, such as `{name} = 12`",
            cause="the answer is not a number",
            fix=f"assign a number to {name} in the cell above and run it",
        )
    return float(answer)


def _cooked(check: Check, chefs: int) -> kitchen.KitchenResult:
    """The gnocchi kitchen cooked for real by ``chefs`` asynchronous chefs."""
    return check.call(kitchen.run_kitchen, "async", MENU["orders"], MENU["prep_min"],
                      MENU["oven_min"], chefs, timeout_s=20.0)


def _menu() -> str:
    return (f"{MENU['orders']:g} orders, {MENU['prep_min']:g} min prep, "
            f"{MENU['oven_min']:g} min in the oven")


def _predicted(chefs: int = 1) -> kitchen.KitchenResult:
    return kitchen.predict("async", int(MENU["orders"]), MENU["prep_min"], MENU["oven_min"],
                           chefs)


def _check_minutes(check: Check, answer: Any, name: str, ideal: float, measured: float,
                   what: str, cause: str, fix: str) -> None:
    minutes = _number(check, answer, name, "simulated minutes")
    if abs(minutes - ideal) > ANSWER_TOLERANCE_MIN:
        check.fail(
            measured=f"your answer: {minutes:g} min",
            expected=f"{ideal:g} min ({what}; the kitchen cooked just now took {measured:.1f})",
            cause=cause,
            fix=fix,
        )
    check.passed(f"{ideal:g} min ({what}); the kitchen cooked just now: {measured:.1f} min")


@graded
def check_one_async_chef(answer: Any) -> None:
    """Task 3a: the minute one asynchronous chef serves the last of the gnocchi orders."""
    with Check("Task 3a · one asynchronous chef, gnocchi menu") as check:
        ideal = _predicted().total_minutes
        measured = _cooked(check, 1).total_minutes
        _check_minutes(
            check, answer, "ONE_ASYNC_CHEF_MIN", ideal, measured, "the last dish served",
            cause="the chef's hands do every prep one after another; only oven time overlaps",
            fix=f"add up the preps ({MENU['orders']:g} × {MENU['prep_min']:g} min), then the "
            "last dish's oven",
        )


@graded
def check_first_dish(answer: Any) -> None:
    """Task 3b: the minute the asynchronous chef serves order 1 (it waits for the chef's
    hands: a grey bar)."""
    with Check("Task 3b · when order 1 reaches its table") as check:
        ideal = _predicted().records[0].served
        measured = _cooked(check, 1).records[0].served
        out_of_oven = MENU["prep_min"] + MENU["oven_min"]
        _check_minutes(
            check, answer, "FIRST_DISH_MIN", ideal, measured, "order 1 served",
            cause=f"order 1 leaves the oven at minute {out_of_oven:g}, but the chef is mid-prep "
            "then and serves it only between two preps",
            fix="look at what the chef is doing when order 1 comes out of the oven",
        )


@graded
def check_chefs_needed(answer: Any) -> None:
    """Task 3c: the fewest asynchronous chefs who serve the gnocchi menu within the deadline."""
    with Check("Task 3c · how many chefs") as check:
        chefs = _number(check, answer, "CHEFS_NEEDED", "chefs")
        if chefs != int(chefs) or not 1 <= chefs <= 10:
            check.fail(
                measured=f"CHEFS_NEEDED is {answer!r}",
                expected="a whole number of chefs from 1 to 10",
                cause="a kitchen hires whole chefs",
                fix="assign a whole number, such as `CHEFS_NEEDED = 2`",
            )
        hired = int(chefs)
        ideal = _predicted(hired).total_minutes
        fewer = _predicted(hired - 1).total_minutes if hired > 1 else math.inf
        measured = _cooked(check, hired).total_minutes
        deadline = DEADLINE_MIN
        if ideal > deadline:
            check.fail(
                measured=f"{hired} asynchronous chef{'s' if hired > 1 else ''}: the last dish "
                f"at minute {ideal:g} (cooked just now: {measured:.1f})",
                expected=f"all {MENU['orders']:g} orders served within {deadline:g} minutes",
                cause="too few hands: prep needs a chef's hands, and await does not add any",
                fix="hire more: count the preps each chef must do one after another",
            )
        if fewer <= deadline:
            check.fail(
                measured=f"{hired} chefs serve by minute {ideal:g}, and {hired - 1} would "
                f"serve by minute {fewer:g}",
                expected=f"the fewest chefs who serve within {deadline:g} minutes",
                cause="more chefs than needed",
                fix="try one chef fewer with `helpers.kitchen.predict`",
            )
        check.passed(
            f"{hired} asynchronous chefs serve the gnocchi menu ({_menu()}) by minute "
            f"{ideal:g} (cooked just now: {measured:.1f}); {hired - 1} would need {fewer:g}"
        )
