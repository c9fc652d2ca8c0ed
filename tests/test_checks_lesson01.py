"""Exercise 01's checks: each passes a correct submission, fails each known-wrong one with the
right cause (blocking, one-by-one, raw, a hang, an exception, a wrong type), writes nothing to
stderr, and the solution notebook scores every graded cell while the untouched one scores none."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from helpers.checks import fresh
from tests.exercise_runner import SOLUTIONS, assert_well_formed, run_exercise

NOTEBOOK = SOLUTIONS / "01_kitchen" / "01_kitchen.ipynb"


# -- submissions --------------------------------------------------------------------------
async def cook(order):
    await asyncio.sleep(0.5)
    return f"dish {order}"


async def cook_blocking(order):  # "async everywhere": async def, but a blocking wait
    time.sleep(0.5)
    return f"dish {order}"


def cook_plain(order):
    time.sleep(0.5)
    return f"dish {order}"


async def cook_raw(order):
    return f"dish {order}"


async def cook_hangs(order):
    await asyncio.Event().wait()


async def cook_busy(order):
    while True:
        pass


async def cook_raises(order):
    raise KeyError("no such dish")


async def cook_wrong_type(order):
    await asyncio.sleep(0.5)
    return order


async def evening(orders, cook):
    return await asyncio.gather(*(cook(order) for order in orders))


async def evening_one_by_one(orders, cook):
    return [await cook(order) for order in orders]


async def evening_as_they_come(orders, cook):
    dishes = []

    async def one(order):
        dishes.append(await cook(order))

    await asyncio.gather(*(one(order) for order in orders))
    return dishes


async def evening_unawaited(orders, cook):
    for order in orders:
        asyncio.get_running_loop().create_task(cook(order))
    return [f"dish {order}" for order in orders]


async def evening_blocking(orders, cook):
    time.sleep(len(orders) * 0.5)
    return await asyncio.gather(*(cook(order) for order in orders))


async def evening_raises(orders, cook):
    return orders[99]


async def evening_wrong_type(orders, cook):
    await asyncio.gather(*(cook(order) for order in orders))
    return None


def failure(check, *args) -> str:
    with pytest.raises(AssertionError) as caught:
        check(*args)
    return str(caught.value)


# -- task 1 ----------------------------------------------------------------------------------
def test_cook_passes_and_writes_only_one_line(capfd):
    fresh("lesson01").check_cook(cook)
    out, err = capfd.readouterr()
    assert out.startswith("✔ Task 1") and out.count("\n") == 1 and err == ""


@pytest.mark.parametrize("wrong, cause", [
    (cook_plain, "a plain function (def)"),
    (cook_raw, "served raw"),
    (cook_raises, "your code raised KeyError: 'no such dish'"),
    (cook_wrong_type, "returned 1"),
    ("cook", "not a function"),
])
def test_cook_fails_with_its_cause(capfd, wrong, cause):
    message = failure(fresh("lesson01").check_cook, wrong)
    assert cause in message, message
    assert "likely cause:" in message and "fix:" in message
    assert capfd.readouterr().err == ""


def test_blocking_cook_fails_and_the_loop_watch_names_the_line(capfd):
    # "async everywhere": async def with time.sleep
    message = failure(fresh("lesson01").check_cook, cook_blocking)
    assert "held the event loop: loop blocked" in message
    assert "test_checks_lesson01.py" in message and "`time.sleep(0.5)`" in message
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("wrong", [cook_hangs, cook_busy])
def test_a_hang_fails_within_its_timeout_and_a_busy_loop_is_freed(capfd, wrong):
    checks = fresh("lesson01")
    checks.REQUEST_TIMEOUT_S = 1.5  # the module's 5 s, shortened to keep the suite quick
    began = time.monotonic()
    message = failure(checks.check_cook, wrong)
    took = time.monotonic() - began
    # 1.5 s of request timeout, up to 2 s to give up stopping the server, 2 s to free it
    assert took < 7, took
    assert "got no answer within 1.5 s" in message, message
    if wrong is cook_busy:
        assert "the event loop was still held at" in message and "`while True:`" in message
    stuck = [t for t in threading.enumerate() if "Task 1" in t.name and t.is_alive()]
    assert stuck == []
    assert capfd.readouterr().err == ""


# -- task 2 ----------------------------------------------------------------------------------
def test_evening_passes_both_parts(capfd):
    checks = fresh("lesson01")
    checks.check_evening_time(evening)
    checks.check_evening_in_order(evening)
    out, err = capfd.readouterr()
    assert out.count("✔ Task 2") == 2 and err == ""


@pytest.mark.parametrize("wrong, cause", [
    (evening_one_by_one, "went into the oven one after another"),
    (evening_blocking, "held the event loop"),
    (evening_unawaited, "tasks started but not awaited"),
    (evening_raises, "IndexError"),
    (evening_wrong_type, "returned None"),
])
def test_evening_time_fails_with_its_cause(capfd, wrong, cause):
    message = failure(fresh("lesson01").check_evening_time, wrong)
    assert cause in message, message
    assert capfd.readouterr().err == ""


def test_evening_in_order_fails_on_dishes_as_they_come(capfd):
    checks = fresh("lesson01")
    checks.check_evening_time(evening_as_they_come)  # concurrent: part a is earned
    message = failure(checks.check_evening_in_order, evening_as_they_come)
    assert "in the order they came out of the oven" in message
    assert capfd.readouterr().err.strip() == ""


# -- task 3 ----------------------------------------------------------------------------------
def test_predictions_pass(capfd):
    checks = fresh("lesson01")
    checks.check_one_async_chef(33)
    checks.check_first_dish(12.0)
    checks.check_chefs_needed(3)
    out, err = capfd.readouterr()
    assert out.count("✔ Task 3") == 3 and err == ""


@pytest.mark.parametrize("check, answer, cause", [
    ("check_one_async_chef", 45, "only oven time overlaps"),  # the synchronous chef's time
    ("check_one_async_chef", "33", "not a number"),
    ("check_first_dish", 9, "mid-prep"),  # out of the oven, not served
    ("check_chefs_needed", 2, "too few hands"),
    ("check_chefs_needed", 4, "more chefs than needed"),
    ("check_chefs_needed", 2.5, "whole number"),
    ("check_chefs_needed", True, "not a number"),
])
def test_predictions_fail_with_their_cause(capfd, check, answer, cause):
    message = failure(getattr(fresh("lesson01"), check), answer)
    assert cause in message, message
    assert capfd.readouterr().err == ""


# -- cheats ----------------------------------------------------------------------------------
def test_fresh_undoes_a_patched_check(capfd):
    from helpers.checks import lesson01

    lesson01.check_cook = lambda cook: print("✔ Task 1 · one chef, six orders: passed")
    message = failure(fresh("lesson01").check_cook, cook_plain)
    assert "a plain function (def)" in message


# -- the notebook ----------------------------------------------------------------------------
def test_notebook_is_well_formed():
    assert_well_formed(NOTEBOOK, total_points=40)


def test_solution_scores_every_graded_cell():
    graded, stderr, alive = run_exercise(NOTEBOOK)
    assert len(graded) == 6
    for cell in graded:
        assert cell.error is None, (cell.grade_id, cell.error)
        assert cell.stdout.startswith("✔"), (cell.grade_id, cell.stdout)
    assert stderr == [] and "alive" in alive


def test_untouched_exercise_fails_every_graded_cell_and_the_kernel_survives():
    graded, stderr, alive = run_exercise(NOTEBOOK, stubbed=True)
    assert len(graded) == 6
    for cell in graded:
        assert cell.error is not None and "✔" not in cell.stdout, cell
    assert stderr == [] and "alive" in alive
