"""Exercise 04's checks: each passes on a correct fix and fails, with the right cause in its
message, on each known-wrong one (the blocking original, async or def everywhere, a fix that
deletes the work, an exception, a hang); none writes to stderr; a hang fails within seconds."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from helpers.checks import fresh
from tests.exercise_runner import ALIVE, SOLUTIONS
from tests.exercise_runner import verdicts as run_verdicts

WORK_S = 0.5
DEADLINE = 0.3


# -- what the exercise gives -----------------------------------------------------------------
def ship_audit_line(line: str) -> None:
    time.sleep(WORK_S)  # a synchronous log shipper


def run_sales_query(year: int) -> int:
    time.sleep(WORK_S)  # a synchronous database driver
    return year * 37 % 1000


async def fetch_quote(delay: float) -> dict[str, float]:
    await asyncio.sleep(delay)
    return {"price": 42.0}


# -- the blocking originals ----------------------------------------------------------------
async def current_user_blocking(user_id: int = 1):
    time.sleep(WORK_S)  # the user service's synchronous SDK
    return {"id": user_id, "name": f"user {user_id}"}


async def audit_blocking(request: Request, call_next):
    response = await call_next(request)
    if request.url.path.startswith("/orders"):
        ship_audit_line(f"{request.method} {request.url.path} {response.status_code}")
    return response


async def report_blocking(year: int = 2024):
    total = run_sales_query(year)
    return {"year": year, "total": total}


# -- the fixes ------------------------------------------------------------------------------
def current_user(user_id: int = 1):
    time.sleep(WORK_S)
    return {"id": user_id, "name": f"user {user_id}"}


async def audit(request: Request, call_next):
    response = await call_next(request)
    if request.url.path.startswith("/orders"):
        line = f"{request.method} {request.url.path} {response.status_code}"
        await run_in_threadpool(ship_audit_line, line)
    return response


def report(year: int = 2024):
    total = run_sales_query(year)
    return {"year": year, "total": total}


async def quote(delay: float = 0.05):
    try:
        async with asyncio.timeout(DEADLINE):
            return await fetch_quote(delay)
    except TimeoutError:
        raise HTTPException(504, "the quote service timed out") from None


# -- known-wrong fixes ----------------------------------------------------------------------
async def current_user_constant(user_id: int = 1):
    return {"id": user_id, "name": f"user {user_id}"}  # the lookup deleted


def current_user_raises(user_id: int = 1):
    raise LookupError("no user service")


async def current_user_hangs(user_id: int = 1):
    time.sleep(20)  # holds the loop: the server never answers again


def audit_def(request: Request, call_next):  # "def everywhere": a middleware cannot be def
    response = call_next(request)  # a coroutine: a def cannot await it
    if request.url.path.startswith("/orders"):
        ship_audit_line(f"{request.method} {request.url.path} {response.status_code}")
    return response


async def audit_everything(request: Request, call_next):
    response = await call_next(request)
    await run_in_threadpool(ship_audit_line, "every request")
    return response


async def report_constant(year: int = 2024):
    return {"year": year, "total": year * 37 % 1000}


async def quote_no_deadline(delay: float = 0.05):
    return await fetch_quote(delay)


async def quote_always_504(delay: float = 0.05):
    raise HTTPException(504, "timed out")


def run_check(name: str, *args: Any) -> tuple[bool, str]:
    check = getattr(fresh("lesson04"), name)
    try:
        check(*args)
    except AssertionError as failure:
        return False, str(failure)
    return True, ""


def assert_fails(capfd, name: str, *args: Any, cause: str) -> str:
    passed, message = run_check(name, *args)
    out, err = capfd.readouterr()
    assert not passed, f"{name} passed a wrong submission: {out}"
    assert cause in message, message
    assert err == "", err
    return message


def test_the_blocking_original_fails_naming_the_line_and_the_fix(capfd):
    # the notebook's untouched run below fails the dependency's and the middleware's originals
    message = assert_fails(capfd, "check_report", report_blocking, cause="blocked the event loop")
    assert re.search(r"`/report` blocked the event loop for \d+ ms at test_checks_lesson04.py:\d+ "
                     r"`time.sleep\(WORK_S\)`", message), message
    assert "plain `def`" in message and "run_in_threadpool" in message


@pytest.mark.parametrize(
    ("name", "fake"),
    [("check_dependency", current_user_constant), ("check_report", report_constant)],
)
def test_a_fix_that_deletes_the_work_fails(capfd, name, fake):
    assert_fails(capfd, name, fake, cause="the work was taken out")


def test_a_def_middleware_and_one_that_audits_everything_fail(capfd):
    message = assert_fails(capfd, "check_middleware", audit_def, cause="HTTP 500")
    assert "the server logged" in message
    assert_fails(capfd, "check_middleware", audit_everything, cause="audits every request")


def test_an_exception_fails_with_what_the_server_logged(capfd):
    message = assert_fails(capfd, "check_dependency", current_user_raises, cause="HTTP 500")
    assert "LookupError: no user service" in message


def test_a_dependency_that_never_answers_fails_within_seconds(capfd):
    began = time.perf_counter()
    message = assert_fails(capfd, "check_dependency", current_user_hangs, cause="never finished")
    assert time.perf_counter() - began < 10
    assert "the event loop is still held at test_checks_lesson04.py" in message


def test_timeouts_that_are_missing_or_always_fire_fail(capfd):
    assert_fails(capfd, "check_timeout", quote_no_deadline, cause="no deadline")
    assert_fails(capfd, "check_timeout", quote_always_504, cause="HTTP 504")


def test_not_a_function_fails(capfd):
    assert_fails(capfd, "check_report", None, cause="not a function")


# -- the solution notebook, solved and untouched --------------------------------------------
NOTEBOOK_PATH = SOLUTIONS / "04_blocking_the_loop" / "04_blocking_the_loop.ipynb"


def test_the_solution_notebook_passes_every_graded_cell():
    verdicts, last = run_verdicts(NOTEBOOK_PATH)
    assert last == f"{ALIVE}\n"
    assert len(verdicts) == 4, verdicts
    for grade_id, (out, error) in verdicts.items():
        assert error == "", f"{grade_id}: {error}"
        assert out.startswith("✔ Task"), (grade_id, out)


def test_the_untouched_notebook_fails_each_task_with_the_line_the_watch_blamed():
    verdicts, last = run_verdicts(NOTEBOOK_PATH, stubbed=True)
    assert last == f"{ALIVE}\n"
    for grade_id, path in [("task1_dependency", "/profile"), ("task2_middleware", "/orders"),
                           ("task3_body", "/report")]:
        out, error = verdicts.pop(grade_id)
        assert out == "", out
        assert re.search(
            rf"`{path}` blocked the event loop for \d+ ms at cell In\[\d+\], line \d+ "
            r"`time.sleep\(WORK_S\)`", error
        ), error
    out, error = verdicts.pop("task4_deadline")
    assert out == "" and "'quote' is not defined" in error, error
    assert verdicts == {}
