"""Checks for exercise 09 · The capstone: the learner fixes the shop's files, one problem each.

Each check runs :func:`helpers.capstone.check` on the task's route, in a fresh Python process:
the route's functional test must still pass (a "fix" that deletes the work fails) and the
doctor must find no block there. A route that another task's problem also blocks (the audit
middleware runs on every ``POST``) passes this task once only that other problem is left. The
last check runs the whole shop: every route's test, and the doctor on every route.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import capstone as _capstone
from helpers.checks._core import Check, graded

# re-run from its source, so that a notebook cell that replaced capstone.check changes nothing
capstone = importlib.reload(_capstone)

__all__ = [
    "TASKS",
    "check_background_task",
    "check_client",
    "check_dependency",
    "check_export",
    "check_middleware",
    "check_whole_shop",
]


@dataclass(frozen=True)
class Task:
    """One problem of the shop: its title, the route that shows it, and the parts of the app
    that other tasks fix (blocks there do not count against this one)."""

    title: str
    route: str
    others: tuple[str, ...] = ()


TASKS = {
    "dependency": Task("Task 1 · the API-key dependency", "GET /users/me"),
    "middleware": Task("Task 2 · the audit middleware", "POST /users"),
    "client": Task("Task 3 · the carrier's shipping quote", "GET /orders/{order_id}/shipping"),
    "export": Task("Task 4 · the order export", "GET /reports/export"),
    "background_task": Task("Task 5 · the reindex background task", "POST /admin/reindex",
                            others=("middleware",)),
}


def _shop_folder(check: Check, shop: Any) -> Path:
    try:
        root = Path(os.fspath(shop))
    except TypeError:
        root = Path("?")
    if not (root / capstone.PACKAGE / "main.py").is_file():
        check.fail(
            measured=f"no shop in {shop!r}",
            expected=f"the folder that holds {capstone.PACKAGE}/main.py",
            cause="the cell that makes your working copy has not run",
            fix="run the notebook's cells from the top, then this one",
        )
    return root


def _where(block: dict[str, Any]) -> str:
    if not block.get("file"):
        return f"no line of the shop's own ({block['part']})"
    code = f" `{block['code']}`" if block.get("code") else ""
    return f"{Path(block['file']).name}:{block['line']}{code}"


def _check_task(shop: Any, name: str) -> None:
    task = TASKS[name]
    with Check(task.title) as check:
        result = capstone.check(_shop_folder(check, shop), routes=[task.route])
        if result.error:
            check.fail(
                measured=f"the shop did not run: {result.error}",
                expected="the shop imports, starts and answers",
                cause="an edit broke the code (a typo, a missing import, an await outside "
                      "async def)",
                fix="run capstone.functional(shop) to see the error, and undo the last edit",
            )
        for outcome in result.broken:
            check.fail(
                measured=f"{outcome.route}: {outcome.problem}",
                expected=f"{outcome.route} still does its job",
                cause="the fix changed what the route does, not only how it waits",
                fix="keep the route's work; change only where it runs (await, a thread, "
                    "a client made once)",
            )
        routes = result.doctor.get("routes", [])
        if not routes:
            check.fail(measured=f"the doctor did not measure {task.route}",
                       expected="a report on the route", cause="the route is gone",
                       fix=f"keep {task.route} in the shop")
        route = routes[0]
        if route.get("reason"):  # skipped, hung, or held the loop for good
            check.fail(measured=f"{task.route}: {route['verdict']}: {route['reason']}",
                       expected="the route answers", cause="the route waits for ever",
                       fix="see the doctor's report: capstone.examine(shop)")
        # the shop's own lines first: they say where to look; then the longest
        left = sorted((b for b in route["blocks"] if b["part"] not in task.others),
                      key=lambda b: (not b.get("file"), -b["duration_ms"]))
        if left:
            block = left[0]
            check.fail(
                measured=f"{task.route} still blocks the loop: {block['duration_ms']:.0f} ms "
                         f"at {_where(block)}",
                expected=f"no block of the loop of {result.doctor.get('threshold_ms', 50):g} ms "
                         "or more",
                cause=str(block["cause"]),
                fix=block["fix"],
            )
        if route["verdict"] == "saturates the threadpool":
            check.fail(measured=f"{task.route} saturates the threadpool",
                       expected="no request waits for a worker thread",
                       cause="every request holds a thread for its whole wait",
                       fix=route["fix"])
        others = sorted({b["part"] for b in route["blocks"]} - {b["part"] for b in left})
        check.passed(
            f"{task.route} no longer blocks the loop (p95 {route['p95_ms']:.0f} ms), and still "
            "does its job" + (f"; the {' and '.join(others)} still blocks it: another task"
                              if others else "")
        )


@graded
def check_dependency(shop: Any) -> None:
    """Task 1: the API-key check no longer hashes on the loop."""
    _check_task(shop, "dependency")


@graded
def check_middleware(shop: Any) -> None:
    """Task 2: the audit middleware no longer waits for the audit service on the loop."""
    _check_task(shop, "middleware")


@graded
def check_client(shop: Any) -> None:
    """Task 3: the shipping quote no longer builds an HTTP client per request."""
    _check_task(shop, "client")


@graded
def check_export(shop: Any) -> None:
    """Task 4: the order export no longer holds the loop while it encodes."""
    _check_task(shop, "export")


@graded
def check_background_task(shop: Any) -> None:
    """Task 5: the reindex task no longer waits for the search service on the loop."""
    _check_task(shop, "background_task")


@graded
def check_whole_shop(shop: Any) -> None:
    """Task 6: every route's test passes and the doctor finds nothing, on the whole shop."""
    with Check("Task 6 · the whole shop") as check:
        result = capstone.check(_shop_folder(check, shop))
        if not result.passed:
            check.fail(
                measured=str(result).splitlines()[-1].removeprefix("✘ ")
                if not result.error else f"the shop did not run: {result.error}",
                expected="every route does its job and none blocks the loop",
                cause="; ".join(f"{o.route}: {o.problem}" for o in result.broken)
                or "blocking: " + "; ".join(_worst_finding(result, label)
                                            for label in result.blocking),
                fix="print(capstone.check(shop)) shows each finding with its fix",
            )
        check.passed("no route blocks the event loop, and every route still does its job")


def _worst_finding(result: _capstone.CheckResult, label: str) -> str:
    """``POST /orders (62 ms at security.py:22 `...`: the cause)``: a blocking route's longest
    finding, so the message says where to look."""
    route = next(r for r in result.doctor["routes"] if f"{r['method']} {r['path']}" == label)
    if not route["blocks"]:
        return f"{label} ({route['verdict']})"
    block = max(route["blocks"], key=lambda b: b["duration_ms"])
    return f"{label} ({block['duration_ms']:.0f} ms at {_where(block)}: {block['cause']})"
