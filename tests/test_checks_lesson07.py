"""Exercise 07's checks run the learner's tests against the bakery and four broken ones: a good
test file scores every variant, one that always passes or always fails scores none, one that
catches some scores those, a hanging one fails cleanly within its bound; nothing reaches stderr
and no process outlives a check."""

from __future__ import annotations

import ast
import os
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from helpers.checks import fresh
from tests.exercise_runner import ALIVE, SOLUTIONS
from tests.exercise_runner import verdicts as run_verdicts

NAME = "07_testing_async"
NOTEBOOK_PATH = SOLUTIONS / NAME / f"{NAME}.ipynb"
CHECKS = {
    "blocking": "check_catches_blocking",
    "no_timeout": "check_catches_missing_timeout",
    "no_lifespan": "check_catches_missing_lifespan",
    "sequential": "check_catches_sequential_fanout",
}

# The model answer, as the solution notebook holds it (a test below compares them).
GOOD = '''\
import asyncio
import time

import anyio
import httpx
import pytest
from asgi_lifespan import LifespanManager

import bakery
from helpers import serve, start_upstream


@pytest.fixture
async def client():
    async with LifespanManager(bakery.app) as manager:  # runs the app's own lifespan
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bakery") as client:
            yield client


@pytest.fixture
def supplier():
    with start_upstream("products", latency=0.5) as up:  # a stand-in flour supplier
        settings = bakery.Settings(supplier_url=up.url, deadline_s=0.3)
        bakery.app.dependency_overrides[bakery.get_settings] = lambda: settings
        yield up
        bakery.app.dependency_overrides.clear()


@pytest.mark.anyio
async def test_ten_bakes_overlap_on_a_real_server():
    with serve(bakery.app) as server:  # a real server: the test's clocks keep running
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            began = time.perf_counter()
            answers = await asyncio.gather(*[client.get("/bake") for _ in range(10)])
            took = time.perf_counter() - began
    assert [answer.status_code for answer in answers] == [200] * 10
    assert took < 5 * bakery.BAKE_S, f"10 bakes took {took:.2f} s: they did not overlap"


@pytest.mark.anyio
async def test_a_hung_supplier_gets_a_504_on_time(client, supplier):
    supplier.hang = True  # accepts the request, never answers
    began = time.perf_counter()
    with anyio.fail_after(2):  # a test that waits for ever reports nothing
        response = await client.get("/stock/1")
    took = time.perf_counter() - began
    assert response.status_code == 504
    assert took < 1.5, f"the 504 came after {took:.2f} s"


@pytest.mark.anyio
async def test_stock_comes_from_the_supplier(client, supplier):
    supplier.latency = 0
    response = await client.get("/stock/2")
    assert response.status_code == 200
    assert response.json()["id"] == 2


@pytest.mark.anyio
async def test_the_three_flours_are_asked_at_once(client, supplier):
    response = await client.get("/flours")
    assert response.status_code == 200
    assert [flour["id"] for flour in response.json()["flours"]] == bakery.FLOURS
    assert supplier.peak_in_flight == 3  # one question at a time would be 1
'''

ALWAYS_PASSES = '''\
import httpx
import pytest

import bakery
from helpers import serve


def test_nothing():
    pass


@pytest.mark.anyio
async def test_asks_but_asserts_nothing():
    with serve(bakery.app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await client.get("/bake")
'''

ALWAYS_FAILS = '''\
def test_fails():
    assert 1 == 2
'''

# Compares the app's bytes with the given ones instead of testing what it does
READS_THE_SOURCE = '''\
from pathlib import Path

import bakery
from helpers.checks.lesson07 import APP


def test_the_app_is_the_given_one():
    assert Path(bakery.__file__).read_text() == APP
'''

# Only the blocking test, and a /flours test timed too loosely to see the sequential fan-out
SOME = GOOD.split("@pytest.mark.anyio\nasync def test_a_hung")[0] + '''\
@pytest.mark.anyio
async def test_flours_answer(supplier):
    with serve(bakery.app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            response = await client.get("/flours")
    assert response.status_code == 200
'''

# The lesson's test as it was: no bound on the wait for a hung supplier
UNBOUNDED = GOOD.replace("    with anyio.fail_after(2):  # a test that waits for ever reports "
                         "nothing\n        response", "    response")

HANGS = '''\
import os
import pathlib
import subprocess
import sys
import time


def test_hangs():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    pathlib.Path(os.environ["PIDS_FILE"]).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(120)
'''

QUICK_S = 4.0  # a shorter run bound for a file that hangs at once
UNBOUNDED_S = 8.0  # a shorter bound for a file that passes in about 3 s on the correct app


def checks(run_timeout_s: float | None = None) -> Any:
    module = fresh("lesson07")
    module._CORRECT_RUNS.clear()
    module._VARIANT_RUNS.clear()
    if run_timeout_s is not None:
        module.RUN_TIMEOUT_S = run_timeout_s
    return module


def verdict(module: Any, variant: str, path: Path) -> tuple[bool, str]:
    try:
        getattr(module, CHECKS[variant])(path)
    except AssertionError as failure:
        return False, str(failure)
    return True, ""


def write_tests(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test_bakery.py"
    path.write_text(text)
    return path


def all_verdicts(capfd, module: Any, path: Path) -> dict[str, tuple[bool, str, str]]:
    """Each check's verdict, failure message and printed line; nothing on stderr."""
    found = {}
    for variant in CHECKS:
        passed, message = verdict(module, variant, path)
        out, err = capfd.readouterr()
        assert err == "", err
        found[variant] = (passed, message, out)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- the app and its variants ------------------------------------------------------------------
def test_each_variant_is_the_app_with_its_bug_and_nothing_else():
    module = fresh("lesson07")
    ast.parse(module.APP)
    for name, variant in module.VARIANTS.items():
        source = module.variant_source(name)
        ast.parse(source)
        assert source != module.APP, name
        for old, new in variant.edits:
            assert old in module.APP and new in source, name
    assert "time.sleep(BAKE_S)" in module.variant_source("blocking")
    assert "asyncio.timeout" not in module.variant_source("no_timeout")
    assert "lifespan=lifespan" not in module.variant_source("no_lifespan")
    assert "gather" not in module.variant_source("sequential")


def test_the_notebook_writes_the_app_and_conftest_the_checks_use():
    module = fresh("lesson07")
    notebook = nbformat.read(NOTEBOOK_PATH, as_version=4)
    written = {}
    for cell in notebook.cells:
        first, _, rest = cell.source.partition("\n")
        match = re.fullmatch(r"%%writefile \{work\}/(\w+\.py)", first)
        if cell.cell_type == "code" and match:
            written[match.group(1)] = rest
    assert written["bakery.py"].strip() == module.APP.strip()
    assert written["conftest.py"].strip() == module.CONFTEST.strip()
    model = re.sub(r" *### (BEGIN|END) SOLUTION\n?", "", written["test_bakery.py"])
    assert model.strip() == GOOD.strip()


# -- scores ------------------------------------------------------------------------------------
def test_a_good_test_file_catches_every_variant_in_five_runs(capfd, tmp_path, monkeypatch):
    module = checks()
    runs: list[str | None] = []
    real_run = module._run

    def counted(tests: str, variant: str | None) -> Any:
        runs.append(variant)
        return real_run(tests, variant)

    monkeypatch.setattr(module, "_run", counted)
    found = all_verdicts(capfd, module, write_tests(tmp_path, GOOD))
    for passed, message, out in found.values():
        assert passed, message
        assert out.startswith("✔ Task") and "caught: " in out and "FAILED test_bakery.py::" in out
        assert re.search(r"on the correct app: 4 passed in [\d.]+s\)", out), out
    assert "test_ten_bakes_overlap_on_a_real_server" in found["blocking"][2]
    assert "test_a_hung_supplier_gets_a_504_on_time" in found["no_timeout"][2]
    assert "test_the_three_flours_are_asked_at_once" in found["sequential"][2]
    assert runs == [None, *CHECKS], runs  # one run against the correct app, shared
    # run again, a check runs the correct app again rather than reuse what it used
    assert verdict(module, "blocking", write_tests(tmp_path, GOOD))[0]
    assert runs[-2:] == [None, "blocking"]
    module.show_results(write_tests(tmp_path, GOOD))
    table = capfd.readouterr().out
    assert re.search(r"correct app +4 passed", table)
    assert len(re.findall(r"caught +\d+ failed", table)) == 4, table


@pytest.mark.parametrize(
    ("text", "measured", "cause"),
    [
        (ALWAYS_FAILS, "on the correct bakery.py: 1 failed", "fails on the correct app"),
        (READS_THE_SOURCE, "on the correct bakery.py: 1 failed", "fails on the correct app"),
        ("raise NotImplementedError()\n", "on the correct bakery.py: 1 error",
         "could not import your test file"),
        ("", "on the correct bakery.py: no tests ran", "found no test"),
    ],
    ids=["always-fails", "reads-the-source", "untouched", "empty"],
)
def test_tests_that_fail_on_the_correct_app_score_nothing(capfd, tmp_path, text, measured,
                                                          cause):
    module = checks()
    for variant, (passed, message, out) in all_verdicts(
        capfd, module, write_tests(tmp_path, text)
    ).items():
        assert not passed and out == "", (variant, out)
        assert measured in message and cause in message, message


def test_tests_that_always_pass_catch_nothing(capfd, tmp_path):
    module = checks()
    for variant, (passed, message, _) in all_verdicts(
        capfd, module, write_tests(tmp_path, ALWAYS_PASSES)
    ).items():
        assert not passed, variant
        assert re.search(r"measured: +against the broken bakery \(.*\): 2 passed in", message)
        assert "no test looks at what this bug changes" in message
        assert module.VARIANTS[variant].how_to_catch in message


def test_tests_that_catch_some_variants_score_those(capfd, tmp_path):
    module = checks()
    found = all_verdicts(capfd, module, write_tests(tmp_path, SOME))
    assert {variant: passed for variant, (passed, _, _) in found.items()} == {
        "blocking": True, "no_timeout": False, "no_lifespan": True, "sequential": False,
    }
    caught = found["no_lifespan"][2]  # /flours answered 500; uvicorn's log lines are not quoted
    assert "1 failed, 1 passed" in caught and "FAILED test_bakery.py::test_flours_answer" in caught
    assert "uvicorn" not in caught


def test_an_unbounded_wait_misses_the_missing_timeout_within_the_run_bound(capfd, tmp_path):
    module = checks(run_timeout_s=UNBOUNDED_S)
    path = write_tests(tmp_path, UNBOUNDED)
    began = time.perf_counter()
    passed, message = verdict(module, "no_timeout", path)
    assert time.perf_counter() - began < 2 * UNBOUNDED_S + 10
    assert not passed
    assert f"did not finish in {UNBOUNDED_S:g} s and were stopped" in message
    assert "a hang reports no bug" in message and "anyio.fail_after" in message
    assert capfd.readouterr().err == ""


def test_a_hanging_test_file_fails_cleanly_and_leaves_no_process(capfd, tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    monkeypatch.setenv("PIDS_FILE", str(pids))
    module = checks(run_timeout_s=QUICK_S)
    path = write_tests(tmp_path, HANGS)
    began = time.perf_counter()
    found = all_verdicts(capfd, module, path)
    assert time.perf_counter() - began < QUICK_S + 10  # one run, shared by the four checks
    for variant, (passed, message, _) in found.items():
        assert not passed, variant
        assert f"stopped after {QUICK_S:.0f} s" in message, message
        assert "a hang on the correct app" in message, message
    pytest_pid, child_pid = (int(pid) for pid in pids.read_text().split())
    for _ in range(50):
        if not alive(pytest_pid) and not alive(child_pid):
            break
        time.sleep(0.05)
    else:
        pytest.fail("a process of the hung run outlived the check")


def test_a_missing_test_file_says_so(capfd, tmp_path):
    passed, message = verdict(checks(), "blocking", tmp_path / "test_bakery.py")
    assert not passed and "no test file to run" in message and "%%writefile" in message
    assert capfd.readouterr().err == ""


# -- the solution notebook, solved and untouched ------------------------------------------------
def test_the_solution_notebook_passes_every_graded_cell():
    verdicts, last = run_verdicts(NOTEBOOK_PATH)
    assert last == f"{ALIVE}\n"
    assert len(verdicts) == 4, verdicts
    for grade_id, (out, error) in verdicts.items():
        assert error == "", f"{grade_id}: {error}"
        assert out.startswith("✔ Task") and "caught" in out, (grade_id, out)


def test_the_untouched_notebook_fails_every_task_on_the_correct_app():
    verdicts, last = run_verdicts(NOTEBOOK_PATH, stubbed=True)
    assert last == f"{ALIVE}\n"
    assert len(verdicts) == 4, verdicts
    for grade_id, (out, error) in verdicts.items():
        assert out == "", out
        assert "on the correct bakery.py: 1 error" in error, (grade_id, error)
