"""Exercise 03's checks: each passes on a correct submission and fails, with the right cause in
its message, on each known-wrong one; none writes to stderr; a hang fails within seconds."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import pytest
from fastapi import FastAPI

from helpers.checks import fresh
from tests.exercise_runner import ALIVE, SOLUTIONS
from tests.exercise_runner import verdicts as run_verdicts

LATENCY = 0.3
SALT = b"exercise 03"


def _rounds() -> int:
    began = time.thread_time()
    hashlib.pbkdf2_hmac("sha256", b"calibrate", SALT, 50_000)
    return max(10_000, round(50_000 * 0.3 / max(time.thread_time() - began, 1e-4)))


ROUNDS = _rounds()


# -- what the exercise gives: the four bodies' calls ---------------------------------------
async def fetch_forecast(city: str) -> dict[str, str]:
    await asyncio.sleep(LATENCY)
    return {"city": city, "sky": "sunny"}


def lookup_order(order_id: int) -> dict[str, Any]:
    time.sleep(LATENCY)
    return {"order": order_id, "status": "shipped"}


def hash_password(password: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, ROUNDS).hex()


def shop(keywords: str, *, order: Callable[[int], Any] = lookup_order) -> FastAPI:
    """The four handlers, each ``async`` (a) or ``def`` (d) as ``keywords`` says, in the order
    forecast, order, version, hash; a ``def`` forecast runs the coroutine with asyncio.run."""
    app = FastAPI()
    forecast_kw, order_kw, version_kw, hash_kw = keywords
    if forecast_kw == "a":
        @app.get("/forecast/{city}")
        async def forecast(city: str):
            return await fetch_forecast(city)
    else:
        @app.get("/forecast/{city}")
        def forecast_def(city: str):
            return asyncio.run(fetch_forecast(city))
    if order_kw == "a":
        @app.get("/orders/{order_id}")
        async def order_async(order_id: int):
            return order(order_id)
    else:
        @app.get("/orders/{order_id}")
        def order_def(order_id: int):
            return order(order_id)
    if version_kw == "a":
        @app.get("/version")
        async def version():
            return {"version": "1.4.2"}
    else:
        @app.get("/version")
        def version_def():
            return {"version": "1.4.2"}
    if hash_kw == "a":
        @app.get("/hash/{password}")
        async def hash_async(password: str):
            return {"digest": hash_password(password)}
    else:
        @app.get("/hash/{password}")
        def hash_def(password: str):
            return {"digest": hash_password(password)}
    return app


SOLUTION = shop("adad")
ASYNC_EVERYWHERE = shop("aaaa")
DEF_EVERYWHERE = shop("dddd")


def run_check(name: str, *args: Any) -> tuple[bool, str]:
    """Run one check as a test cell would; return (passed, its output or failure message)."""
    check = getattr(fresh("lesson03"), name)
    try:
        check(*args)
    except AssertionError as failure:
        return False, str(failure)
    return True, ""


def assert_fails(capfd: pytest.CaptureFixture[str], name: str, *args: Any, cause: str) -> str:
    passed, message = run_check(name, *args)
    out, err = capfd.readouterr()
    assert not passed, f"{name} passed a wrong submission: {out}"
    assert cause in message, message
    assert err == "", err
    return message


def assert_passes(capfd: pytest.CaptureFixture[str], name: str, *args: Any) -> str:
    passed, message = run_check(name, *args)
    out, err = capfd.readouterr()
    assert passed, message
    assert out.startswith("✔ Task") and out.count("\n") == 1, out
    assert err == "", err
    return out


# -- Task 1 --------------------------------------------------------------------------------
def test_async_everywhere_fails_the_blocking_handlers_at_their_line(capfd):
    message = assert_fails(capfd, "check_order", ASYNC_EVERYWHERE, cause="blocked the event loop")
    assert "`time.sleep(LATENCY)`" in message and "plain `def order(...)`" in message
    message = assert_fails(capfd, "check_hash", ASYNC_EVERYWHERE, cause="blocked the event loop")
    assert "pbkdf2_hmac" in message


def test_def_everywhere_fails_the_awaiting_and_the_trivial_handler(capfd):
    assert_fails(capfd, "check_forecast", DEF_EVERYWHERE, cause="worker thread")
    assert_fails(capfd, "check_version", DEF_EVERYWHERE, cause="worker thread")


def test_a_body_without_its_work_fails(capfd):
    constant = shop("adad", order=lambda order_id: {"order": order_id, "status": "shipped"})
    assert_fails(capfd, "check_order", constant, cause="work was taken out")


def test_an_exception_fails_with_what_the_server_logged(capfd):
    def broken(order_id: int) -> Any:
        raise ValueError("no such order")

    message = assert_fails(capfd, "check_order", shop("adad", order=broken), cause="HTTP 500")
    assert "ValueError: no such order" in message


def test_a_handler_that_never_answers_fails_within_seconds(capfd):
    def hang(order_id: int) -> Any:
        time.sleep(20)  # on the loop (async def): the server never answers again

    began = time.perf_counter()
    message = assert_fails(capfd, "check_order", shop("aaaa", order=hang), cause="never finished")
    assert time.perf_counter() - began < 12
    assert "the event loop is still held at test_checks_lesson03.py" in message


def test_not_an_app_and_no_routes_fail(capfd):
    assert_fails(capfd, "check_version", 42, cause="not a FastAPI app")
    assert_fails(capfd, "check_forecast", FastAPI(), cause="no such route")


# -- Task 2 --------------------------------------------------------------------------------
@asynccontextmanager
async def more_threads(app: FastAPI):
    anyio.to_thread.current_default_thread_limiter().total_tokens = 100
    yield


@asynccontextmanager
async def bigger_executor(app: FastAPI):
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=100))
    yield


@asynccontextmanager
async def too_late(app: FastAPI):
    yield
    anyio.to_thread.current_default_thread_limiter().total_tokens = 100


def test_the_lifespan_that_raises_the_limiter_passes_both_parts(capfd):
    assert "100 tokens" in assert_passes(capfd, "check_tokens", more_threads)
    assert "slept at once" in assert_passes(capfd, "check_one_round", more_threads)


def test_set_default_executor_is_named_the_knob_that_does_nothing(capfd):
    assert_fails(capfd, "check_tokens", bigger_executor, cause="knob that does nothing")
    message = assert_fails(
        capfd, "check_one_round", bigger_executor, cause="knob that does nothing"
    )
    assert "at most 40 slept at once" in message


def test_a_limiter_changed_after_yield_or_not_at_all_fails(capfd):
    assert_fails(capfd, "check_tokens", too_late, cause="not changed on the server's loop")
    assert_fails(capfd, "check_tokens", None, cause="not a function")


# -- the solution notebook, solved and untouched --------------------------------------------
NOTEBOOK_PATH = SOLUTIONS / "03_def_vs_async_def" / "03_def_vs_async_def.ipynb"


def test_the_solution_notebook_passes_every_graded_cell():
    verdicts, last = run_verdicts(NOTEBOOK_PATH)
    assert last == f"{ALIVE}\n"
    assert len(verdicts) == 6, verdicts
    for grade_id, (out, error) in verdicts.items():
        assert error == "", f"{grade_id}: {error}"
        assert out.startswith("✔ Task"), (grade_id, out)


def test_the_untouched_notebook_fails_every_graded_cell_and_the_kernel_survives():
    verdicts, last = run_verdicts(NOTEBOOK_PATH, stubbed=True)
    assert last == f"{ALIVE}\n"
    assert len(verdicts) == 6, verdicts
    for grade_id, (out, error) in verdicts.items():
        assert out == "" and error, (grade_id, out, error)
