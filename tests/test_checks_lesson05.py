"""Exercise 05's checks: each passes on a correct submission and fails, with the right cause in
its message, on each known-wrong one (calls awaited in turn, a blocking client in async def, no
semaphore, no deadline, plain gather or a TaskGroup sinking the page, a client per request, a
client never closed, a hang, an exception); none writes to stderr; a hang fails within seconds."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request

from helpers.checks import fresh
from tests.exercise_runner import ALIVE, SOLUTIONS, assert_well_formed
from tests.exercise_runner import verdicts as run_verdicts

DEADLINE = 1.0
MAX_IN_FLIGHT = 5


# -- what the exercise gives -----------------------------------------------------------------
async def fetch_json(client, url):
    response = await client.get(url)
    response.raise_for_status()
    return response.json()


def page_of(keys, results):
    """The dashboard's answer: a failed call's part is None and its key unavailable."""
    page = {key: None if isinstance(r, Exception) else r
            for key, r in zip(keys, results, strict=True)}
    page["unavailable"] = [key for key, r in zip(keys, results, strict=True)
                           if isinstance(r, Exception)]
    return page


# -- the solutions ---------------------------------------------------------------------------
async def dashboard(client, urls):
    keys = ["user", "products", "weather"]
    try:
        async with asyncio.timeout(DEADLINE):
            results = await asyncio.gather(
                *(fetch_json(client, urls[key]) for key in keys), return_exceptions=True)
    except TimeoutError:
        raise HTTPException(504, "the dashboard's upstreams did not answer in time") from None
    return page_of(keys, results)


async def team(client, users_url, user_ids):
    limit = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(user_id):
        async with limit:
            return await fetch_json(client, f"{users_url}/users/{user_id}")

    return await asyncio.gather(*(one(user_id) for user_id in user_ids))


def build_app(users_url):
    @asynccontextmanager
    async def lifespan(app):
        async with httpx.AsyncClient() as client:
            yield {"client": client}

    app = FastAPI(lifespan=lifespan)

    @app.get("/profile/{user_id}")
    async def profile(request: Request, user_id: int):
        return await fetch_json(request.state.client, f"{users_url}/users/{user_id}")

    return app


# -- known-wrong dashboards ------------------------------------------------------------------
async def dashboard_in_turn(client, urls):
    page = {key: await fetch_json(client, urls[key]) for key in ["user", "products", "weather"]}
    return {**page, "unavailable": []}


async def dashboard_blocking(client, urls):  # async everywhere, but a synchronous client
    page = {key: httpx.get(urls[key]).json() for key in ["user", "products", "weather"]}
    return {**page, "unavailable": []}


async def dashboard_plain_gather(client, urls):
    async with asyncio.timeout(DEADLINE):
        user, products, weather = await asyncio.gather(
            *(fetch_json(client, urls[key]) for key in ["user", "products", "weather"]))
    return {"user": user, "products": products, "weather": weather, "unavailable": []}


async def dashboard_task_group(client, urls):
    async with asyncio.timeout(DEADLINE), asyncio.TaskGroup() as group:
        tasks = {key: group.create_task(fetch_json(client, urls[key]))
                 for key in ["user", "products", "weather"]}
    return {**{key: task.result() for key, task in tasks.items()}, "unavailable": []}


async def dashboard_no_deadline(client, urls):
    keys = ["user", "products", "weather"]
    results = await asyncio.gather(
        *(fetch_json(client, urls[key]) for key in keys), return_exceptions=True)
    return page_of(keys, results)


async def dashboard_hangs(client, urls):
    await asyncio.Event().wait()


async def dashboard_spins(client, urls):
    while True:  # holds the loop for good
        pass


async def dashboard_raises(client, urls):
    raise KeyError("no such key in urls")


# -- known-wrong team pages ------------------------------------------------------------------
async def team_unlimited(client, users_url, user_ids):
    return await asyncio.gather(
        *(fetch_json(client, f"{users_url}/users/{user_id}") for user_id in user_ids))


async def team_semaphore_per_call(client, users_url, user_ids):
    async def one(user_id):
        async with asyncio.Semaphore(MAX_IN_FLIGHT):  # a new one for every call: no limit
            return await fetch_json(client, f"{users_url}/users/{user_id}")

    return await asyncio.gather(*(one(user_id) for user_id in user_ids))


async def team_in_turn(client, users_url, user_ids):
    return [await fetch_json(client, f"{users_url}/users/{user_id}") for user_id in user_ids]


# -- known-wrong apps ------------------------------------------------------------------------
def build_app_client_per_request(users_url):
    app = FastAPI()

    @app.get("/profile/{user_id}")
    async def profile(user_id: int):
        async with httpx.AsyncClient() as client:
            return await fetch_json(client, f"{users_url}/users/{user_id}")

    return app


def build_app_never_closed(users_url):
    client = httpx.AsyncClient()  # one client, but nothing ever closes it
    app = FastAPI()

    @app.get("/profile/{user_id}")
    async def profile(user_id: int):
        return await fetch_json(client, f"{users_url}/users/{user_id}")

    return app


def build_app_blocking(users_url):
    @asynccontextmanager
    async def lifespan(app):
        with httpx.Client() as client:  # one client, closed at the end, but synchronous
            yield {"client": client}

    app = FastAPI(lifespan=lifespan)

    @app.get("/profile/{user_id}")
    async def profile(request: Request, user_id: int):
        time.sleep(0.2)  # the stand-in answers in 0.05 s: a slow synchronous call
        return request.state.client.get(f"{users_url}/users/{user_id}").json()

    return app


def build_app_raises(users_url):
    @asynccontextmanager
    async def lifespan(app):
        raise RuntimeError("no client today")
        yield

    return FastAPI(lifespan=lifespan)


# -- running the checks ----------------------------------------------------------------------
def run_check(name: str, *args: Any) -> tuple[bool, str]:
    check = getattr(fresh("lesson05"), name)
    try:
        check(*args)
    except AssertionError as failure:
        return False, str(failure)
    return True, ""


def assert_passes(capfd, name: str, *args: Any) -> str:
    passed, message = run_check(name, *args)
    out, err = capfd.readouterr()
    assert passed, message
    assert out.startswith("✔ Task") and out.count("\n") == 1, out
    assert err == "", err
    return out


def assert_fails(capfd, name: str, *args: Any, cause: str) -> str:
    passed, message = run_check(name, *args)
    out, err = capfd.readouterr()
    assert not passed, f"{name} passed a wrong submission: {out}"
    assert cause in message, message
    assert err == "", err
    return message


@pytest.mark.parametrize(
    ("name", "solution"),
    [("check_fan_out", dashboard), ("check_partial", dashboard), ("check_deadline", dashboard),
     ("check_semaphore", team), ("check_one_client", build_app),
     ("check_client_closed", build_app)],
)
def test_the_solution_passes(capfd, name, solution):
    assert_passes(capfd, name, solution)


def test_calls_in_turn_fail_fan_out_with_the_count_the_services_saw(capfd):
    message = assert_fails(capfd, "check_fan_out", dashboard_in_turn,
                           cause="awaited one after another")
    assert "at most 1 of the 3 calls in flight at once" in message


def test_a_blocking_client_in_async_def_fails_naming_its_line(capfd):
    message = assert_fails(capfd, "check_fan_out", dashboard_blocking,
                           cause="blocked the event loop")
    assert "test_checks_lesson05.py" in message and "httpx.get" in message


@pytest.mark.parametrize("wrong", [dashboard_plain_gather, dashboard_task_group])
def test_one_failure_sinking_the_page_fails_partial(capfd, wrong):
    message = assert_fails(capfd, "check_partial", wrong, cause="sank the whole dashboard")
    assert "HTTPStatusError" in message and "HTTP 500" in message


def test_no_deadline_fails_within_seconds(capfd):
    began = time.perf_counter()
    assert_fails(capfd, "check_deadline", dashboard_no_deadline, cause="no deadline")
    assert time.perf_counter() - began < 8


def test_a_hang_and_a_busy_loop_fail_within_seconds(capfd):
    for wrong, held in [(dashboard_hangs, False), (dashboard_spins, True)]:
        began = time.perf_counter()
        message = assert_fails(capfd, "check_fan_out", wrong, cause="never finished")
        assert time.perf_counter() - began < 10
        assert ("test_checks_lesson05.py" in message) == held, message


def test_an_exception_fails_with_what_was_raised(capfd):
    message = assert_fails(capfd, "check_fan_out", dashboard_raises, cause="HTTP 500")
    assert "KeyError: 'no such key in urls'" in message


@pytest.mark.parametrize(
    ("wrong", "cause", "peak"),
    [(team_unlimited, "no limit", "at most 15"),
     (team_semaphore_per_call, "no limit", "at most 15"),
     (team_in_turn, "awaited one after another", "1 call")],
)
def test_a_team_without_its_limit_fails_with_what_the_service_counted(capfd, wrong, cause, peak):
    message = assert_fails(capfd, "check_semaphore", wrong, cause=cause)
    assert peak in message, message


def test_a_client_per_request_fails_with_the_connections_counted(capfd):
    message = assert_fails(capfd, "check_one_client", build_app_client_per_request,
                           cause="a new client per request")
    assert "on 8 connections" in message
    # its clients are closed as they go: the shutdown check alone cannot tell
    assert_passes(capfd, "check_client_closed", build_app_client_per_request)


def test_a_client_never_closed_fails_at_shutdown(capfd):
    assert_passes(capfd, "check_one_client", build_app_never_closed)
    message = assert_fails(capfd, "check_client_closed", build_app_never_closed,
                           cause="never closed")
    assert "1 connection to the users service still open" in message


def test_a_blocking_app_and_an_app_that_does_not_start_fail(capfd):
    assert_fails(capfd, "check_one_client", build_app_blocking, cause="blocked the event loop")
    assert_fails(capfd, "check_one_client", build_app_raises, cause="did not start")


def test_not_a_function_or_not_async_fails(capfd):
    assert_fails(capfd, "check_fan_out", None, cause="not a function")
    assert_fails(capfd, "check_semaphore", lambda client, url, ids: [], cause="plain function")
    assert_fails(capfd, "check_one_client", lambda url: "app", cause="does not return the app")


# -- the solution notebook, solved and untouched --------------------------------------------
NOTEBOOK_PATH = SOLUTIONS / "05_gather" / "05_gather.ipynb"
GRADE_IDS = ["task1a_fan_out", "task1b_partial", "task1c_deadline", "task2_semaphore",
             "task3a_one_client", "task3b_closed"]


def test_the_notebook_is_well_formed():
    assert_well_formed(NOTEBOOK_PATH, 40)


def test_the_solution_notebook_passes_every_graded_cell():
    verdicts, last = run_verdicts(NOTEBOOK_PATH)
    assert last == f"{ALIVE}\n"
    assert list(verdicts) == GRADE_IDS, verdicts
    for grade_id, (out, error) in verdicts.items():
        assert error == "", f"{grade_id}: {error}"
        assert out.startswith("✔ Task") and out.count("\n") == 1, (grade_id, out)


def test_the_untouched_notebook_fails_each_task():
    verdicts, last = run_verdicts(NOTEBOOK_PATH, stubbed=True)
    assert last == f"{ALIVE}\n"
    assert list(verdicts) == GRADE_IDS, verdicts
    assert all(out == "" for out, _ in verdicts.values()), verdicts
    # the given dashboard, one call after another, fails each part of task 1 for its reason
    for grade_id, cause in [("task1a_fan_out", "awaited one after another"),
                            ("task1b_partial", "sank the whole dashboard"),
                            ("task1c_deadline", "no answer within 3 s")]:
        error = verdicts[grade_id][1]
        assert error.startswith("AssertionError: ✘ Task 1") and cause in error, error
    # the other stubbed cells raised before defining their names
    for grade_id in GRADE_IDS[3:]:
        assert verdicts[grade_id][1].startswith("NameError: name '"), verdicts[grade_id]
