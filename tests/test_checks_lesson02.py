"""Exercise 02's checks: each passes a correct submission, fails each known-wrong one with the
right cause (awaited in turn, blocking, fire and forget, a forgotten await, a dropped task, a
hang, an exception, a wrong type), writes nothing to stderr, and the solution notebook scores
every graded cell while the untouched one scores none."""

from __future__ import annotations

import asyncio
import time

import nbformat
import pytest

from helpers.checks import fresh, lesson02
from tests.exercise_runner import SOLUTIONS, assert_well_formed, run_exercise

NOTEBOOK = SOLUTIONS / "02_event_loop" / "02_event_loop.ipynb"
ONE = ["A created", "B starts", "A starts", "B ends", "B awaited", "A ends", "all done"]
TWO = ["tasks created", "A1", "A2", "B1", "B2", "A3", "B3", "B awaited", "A awaited"]


# -- submissions --------------------------------------------------------------------------
async def together(fetch):
    return list(await asyncio.gather(fetch("A", 0.6), fetch("B", 0.3)))


async def together_in_turn(fetch):  # "async everywhere", awaited one after the other
    return [await fetch("A", 0.6), await fetch("B", 0.3)]


async def together_b_then_a(fetch):
    b = await fetch("B", 0.3)
    return [await fetch("A", 0.6), b]


async def together_unawaited(fetch):
    asyncio.get_running_loop().create_task(fetch("A", 0.6))
    asyncio.get_running_loop().create_task(fetch("B", 0.3))
    return ["A", "B"]


async def together_blocking(fetch):
    time.sleep(0.6)
    return list(await asyncio.gather(fetch("A", 0.6), fetch("B", 0.3)))


async def together_shortcut(fetch):
    return list(await asyncio.gather(fetch("A", 0.01), fetch("B", 0.01)))


async def together_hangs(fetch):
    await asyncio.Event().wait()


async def together_raises(fetch):
    raise RuntimeError("kaput")


async def together_wrong_type(fetch):
    await asyncio.gather(fetch("A", 0.6), fetch("B", 0.3))
    return "A and B"


async def checkout(order_id, save_order):
    await save_order(order_id)
    return f"thanks for order {order_id}!"


async def checkout_forgotten(order_id, save_order):
    save_order(order_id)
    return f"thanks for order {order_id}!"


async def checkout_unawaited_task(order_id, save_order):
    asyncio.get_running_loop().create_task(save_order(order_id))
    return f"thanks for order {order_id}!"


async def checkout_blocking(order_id, save_order):
    time.sleep(0.3)
    await save_order(order_id)
    return f"thanks for order {order_id}!"


async def checkout_wrong_reply(order_id, save_order):
    await save_order(order_id)
    return None


kept = set()


def fire_and_forget(coro):
    task = asyncio.create_task(coro)
    kept.add(task)
    task.add_done_callback(kept.discard)
    return task


def fire_and_forget_dropped(coro):
    return asyncio.create_task(coro)


leaked = []


def fire_and_forget_leaks(coro):
    task = asyncio.create_task(coro)
    leaked.append(task)
    return task


async def fire_and_forget_async(coro):
    return asyncio.create_task(coro)


def fire_and_forget_raises(coro):
    raise ValueError("nope")


def failure(check, *args) -> str:
    with pytest.raises(AssertionError) as caught:
        check(*args)
    return str(caught.value)


# -- task 1 ----------------------------------------------------------------------------------
def test_predictions_pass_and_explain(capfd):
    checks = fresh("lesson02")
    checks.check_prediction_one(ONE)
    checks.check_prediction_two(tuple(TWO))
    out, err = capfd.readouterr()
    assert out.count("✔ Task 1") == 2 and "'B starts': `await step" in out and err == ""


@pytest.mark.parametrize("check, answer, cause", [
    ("check_prediction_one", ["A created", "A starts", "B starts", "B ends", "B awaited",
                              "A ends", "all done"], "line 2 differs"),
    ("check_prediction_two", ["tasks created", "A1", "B1", "A2", "B2", "A3", "B3",
                              "B awaited", "A awaited"], "line 3 differs"),
    ("check_prediction_one", ONE[:-1], "missing: ['all done']"),
    ("check_prediction_one", "A created, B starts", "not a list of strings"),
])
def test_predictions_fail_and_still_explain(capfd, check, answer, cause):
    message = failure(getattr(fresh("lesson02"), check), answer)
    assert cause in message, message
    if "differs" in cause:
        assert "why, line by line:" in message
    assert capfd.readouterr().err == ""


def test_the_notebook_shows_the_programs_the_checks_run():
    text = "".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells)
    assert lesson02.PROGRAM_ONE.rstrip() in text and lesson02.PROGRAM_TWO.rstrip() in text


# -- task 2 ----------------------------------------------------------------------------------
def test_together_passes(capfd):
    fresh("lesson02").check_together(together)
    out, err = capfd.readouterr()
    assert out.startswith("✔ Task 2") and err == ""


@pytest.mark.parametrize("wrong, cause", [
    (together_in_turn, "awaited one after the other"),
    (together_b_then_a, "awaited one after the other"),
    (together_unawaited, "never awaited"),
    (together_blocking, "held the event loop"),
    (together_shortcut, "not called with the lesson's two waits"),
    (together_raises, "RuntimeError: kaput"),
    (together_wrong_type, "returned 'A and B'"),
    (len, "a plain function (def)"),
])
def test_together_fails_with_its_cause(capfd, wrong, cause):
    message = failure(fresh("lesson02").check_together, wrong)
    assert cause in message, message
    assert capfd.readouterr().err == ""


def test_a_hung_together_fails_within_its_timeout(capfd):
    checks = fresh("lesson02")
    checks.REQUEST_TIMEOUT_S = 1.5  # the module's 5 s, shortened to keep the suite quick
    began = time.monotonic()
    message = failure(checks.check_together, together_hangs)
    assert time.monotonic() - began < 6
    assert "no answer within 1.5 s" in message
    assert capfd.readouterr().err == ""


# -- task 3 ----------------------------------------------------------------------------------
def test_checkout_and_fire_and_forget_pass(capfd):
    checks = fresh("lesson02")
    checks.check_checkout(checkout)
    checks.check_fire_and_forget(fire_and_forget)
    out, err = capfd.readouterr()
    assert out.count("✔ Task 3") == 2 and err == ""


@pytest.mark.parametrize("wrong, cause", [
    (checkout_forgotten, "a forgotten await"),
    (checkout_unawaited_task, "the reply went out before the order was saved"),
    (checkout_blocking, "held the event loop"),
    (checkout_wrong_reply, "the reply changed"),
])
def test_checkout_fails_with_its_cause(capfd, wrong, cause):
    message = failure(fresh("lesson02").check_checkout, wrong)
    assert cause in message, message
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("wrong, cause", [
    (fire_and_forget_dropped, "Task was destroyed but it is pending!"),
    (fire_and_forget_leaks, "still held after it was done"),
    (fire_and_forget_async, "is an async def"),
    (fire_and_forget_raises, "ValueError: nope"),
    (None, "not a function"),
])
def test_fire_and_forget_fails_with_its_cause(capfd, wrong, cause):
    message = failure(fresh("lesson02").check_fire_and_forget, wrong)
    assert cause in message, message
    assert capfd.readouterr().err == ""


def test_fresh_undoes_a_patched_check():
    lesson02.check_together = lambda together: print("✔ Task 2 · A and B together")
    assert "a plain function (def)" in failure(fresh("lesson02").check_together, len)


# -- the notebook ----------------------------------------------------------------------------
def test_notebook_is_well_formed():
    assert_well_formed(NOTEBOOK, total_points=40)


def test_solution_scores_every_graded_cell():
    graded, stderr, alive = run_exercise(NOTEBOOK)
    assert len(graded) == 5
    for cell in graded:
        assert cell.error is None, (cell.grade_id, cell.error)
        assert cell.stdout.startswith("✔"), (cell.grade_id, cell.stdout)
    assert stderr == [] and "alive" in alive


def test_untouched_exercise_fails_every_graded_cell_and_the_kernel_survives():
    graded, stderr, alive = run_exercise(NOTEBOOK, stubbed=True)
    assert len(graded) == 5
    for cell in graded:
        assert cell.error is not None and "✔" not in cell.stdout, cell
    assert stderr == [] and "alive" in alive
