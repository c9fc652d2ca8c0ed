"""Checks for exercise 07 · Testing async code: the learner's tests must catch four bugs.

The exercise gives a small bakery API, ``bakery.py``. The learner writes ``test_bakery.py``;
each check runs it with pytest in a separate process (bounded in time, killed with every
process it started if it overruns) twice: against the correct ``bakery.py``, where every test
must pass, and against a broken one that this module supplies, where at least one must fail.
One check per broken variant, so each bug caught is worth its points:

- ``blocking``: ``/bake`` holds the event loop with ``time.sleep``;
- ``no_timeout``: ``/stock/{id}`` waits for the supplier without a deadline (hangs on a hung one);
- ``no_lifespan``: the app no longer runs its lifespan, so the shared client is never made;
- ``sequential``: ``/flours`` asks the supplier for its three flours one after another.

The run against the correct app is shared: each check reuses the last one for the same test
source unless it has used it already (so the four checks cost five runs, and a check run again
runs pytest again). Every module written for a run ends with a random comment, so a test that
compares the file's bytes with the given ones fails on the correct app as well.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import pytest_run
from helpers.checks._core import Check, graded

__all__ = [
    "APP",
    "CONFTEST",
    "VARIANTS",
    "check_catches_blocking",
    "check_catches_missing_lifespan",
    "check_catches_missing_timeout",
    "check_catches_sequential_fanout",
    "show_results",
    "variant_source",
]

RUN_TIMEOUT_S = 20.0
"""Longest one pytest run may take before it is stopped (a hung test never reports the bug);
two runs in one check stay under the classroom's 60 s per cell."""
TEST_FILE = "test_bakery.py"
"""The name the learner's tests are run under, beside ``bakery.py`` and ``conftest.py``."""
MAX_FAILURE_LINES = 4
"""How many of pytest's FAILED/ERROR lines a message quotes."""

APP = '''\
"""A small bakery API: an oven, and a flour supplier reached over HTTP."""
import asyncio
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request

BAKE_S = 0.3  # seconds one loaf takes in the oven
FLOURS = [1, 2, 3]  # the supplier's product ids of the bakery's three flours


@dataclass
class Settings:
    supplier_url: str  # where the flour supplier's API lives
    deadline_s: float = 0.3  # how long /stock waits for the supplier


async def get_settings() -> Settings:
    return Settings(supplier_url=os.environ.get("SUPPLIER_URL", "http://127.0.0.1:9000"))


@asynccontextmanager
async def lifespan(app: FastAPI):
    # one client for the app's whole life; no timeout of its own: each endpoint sets its own
    async with httpx.AsyncClient(timeout=None) as client:
        yield {"client": client}


async def get_client(request: Request) -> httpx.AsyncClient:
    return request.state.client  # made by the lifespan


app = FastAPI(lifespan=lifespan)

Client = Annotated[httpx.AsyncClient, Depends(get_client)]
Config = Annotated[Settings, Depends(get_settings)]


@app.get("/bake")
async def bake():
    await asyncio.sleep(BAKE_S)  # the oven works; the loop serves others meanwhile
    return {"loaf": "sourdough"}


@app.get("/stock/{product_id}")
async def stock(product_id: int, client: Client, settings: Config):
    try:
        async with asyncio.timeout(settings.deadline_s):
            answer = await client.get(f"{settings.supplier_url}/products/{product_id}")
    except TimeoutError:
        raise HTTPException(504, "the supplier did not answer in time") from None
    return answer.json()


@app.get("/flours")
async def flours(client: Client, settings: Config):
    answers = await asyncio.gather(  # the three questions go out at once
        *[client.get(f"{settings.supplier_url}/products/{i}") for i in FLOURS]
    )
    return {"flours": [answer.json() for answer in answers]}
'''
"""The correct app, as the exercise notebook writes it to ``bakery.py``."""

CONFTEST = '''\
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"  # @pytest.mark.anyio tests run on asyncio, the loop uvicorn uses
'''
"""The ``conftest.py`` beside the learner's tests, as the exercise notebook writes it."""


@dataclass(frozen=True)
class Variant:
    """One broken bakery: how it differs from :data:`APP`, and how a learner's test sees it."""

    name: str
    title: str
    bug: str
    """What is wrong with it, in a sentence."""
    edits: tuple[tuple[str, str], ...]
    """(text in APP, its replacement); each text occurs exactly once."""
    how_to_catch: str


VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in [
        Variant(
            "blocking",
            "Task 1 · the oven that blocks",
            "`/bake` waits with `time.sleep(BAKE_S)`, holding the event loop",
            (
                ("import asyncio\n", "import asyncio\nimport time\n"),
                ("await asyncio.sleep(BAKE_S)  # the oven works; the loop serves others meanwhile",
                 "time.sleep(BAKE_S)  # the oven works"),
            ),
            "serve the app for real (`serve(bakery.app)`), send ten `/bake` at once with an "
            "`httpx.AsyncClient` and assert they take well under ten bakes (through "
            "`ASGITransport` the test's own clocks stop while the loop is blocked)",
        ),
        Variant(
            "no_timeout",
            "Task 2 · the stock check without a deadline",
            "`/stock/{product_id}` awaits the supplier with no deadline, so a hung supplier "
            "hangs it for ever",
            (
                ("    try:\n"
                 "        async with asyncio.timeout(settings.deadline_s):\n"
                 "            answer = await client.get("
                 "f\"{settings.supplier_url}/products/{product_id}\")\n"
                 "    except TimeoutError:\n"
                 "        raise HTTPException(504, \"the supplier did not answer in time\") "
                 "from None\n",
                 "    answer = await client.get("
                 "f\"{settings.supplier_url}/products/{product_id}\")\n"),
            ),
            "point `get_settings` at `start_upstream(\"products\", hang=True)` with a dependency "
            "override, and assert a 504 within a second or two, with the wait itself bounded "
            "(`with anyio.fail_after(2):` around the request, or a real server and "
            "`httpx.AsyncClient(timeout=2)`)",
        ),
        Variant(
            "no_lifespan",
            "Task 3 · the app that forgot its lifespan",
            "`app = FastAPI()` without `lifespan=lifespan`, so the shared client is never "
            "made and `/stock` and `/flours` fail",
            (("app = FastAPI(lifespan=lifespan)", "app = FastAPI()"),),
            "test `/stock` or `/flours` with the app's own lifespan running (`LifespanManager` "
            "around `ASGITransport`, or a real server), not with a client your test supplies "
            "through a dependency override",
        ),
        Variant(
            "sequential",
            "Task 4 · the fan-out that waits in line",
            "`/flours` awaits its three supplier calls one after another instead of with "
            "`asyncio.gather`",
            (
                ("    answers = await asyncio.gather(  # the three questions go out at once\n"
                 "        *[client.get(f\"{settings.supplier_url}/products/{i}\") "
                 "for i in FLOURS]\n"
                 "    )\n",
                 "    answers = []\n"
                 "    for i in FLOURS:  # one question at a time\n"
                 "        answers.append(await client.get("
                 "f\"{settings.supplier_url}/products/{i}\"))\n"),
            ),
            "give the supplier a latency (`start_upstream(\"products\", latency=0.5)`), then "
            "assert that `/flours` took well under three latencies, or that the supplier saw "
            "three requests in flight at once (`supplier.peak_in_flight == 3`)",
        ),
    ]
}
"""The broken bakeries, one graded check each."""


def variant_source(name: str | None) -> str:
    """The source of ``bakery.py`` for a variant (``None``: the correct app)."""
    source = APP
    if name is not None:
        for old, new in VARIANTS[name].edits:
            if source.count(old) != 1:  # a guard for whoever edits APP
                raise ValueError(f"variant {name}: {old[:40]!r} is not in the app exactly once")
            source = source.replace(old, new)
    return source


# -- running the learner's tests ----------------------------------------------------------------
# The last run against the correct app per test source, with the checks that used it. It lives in
# the module's namespace, which fresh()'s reload keeps, so the next check can reuse it.
_CORRECT_RUNS: dict[str, tuple[pytest_run.PytestOutcome, set[str]]] = globals().get(
    "_CORRECT_RUNS", {}
)
# The last run against each variant, per test source: only show_results() reads these.
_VARIANT_RUNS: dict[tuple[str, str], pytest_run.PytestOutcome] = globals().get(
    "_VARIANT_RUNS", {}
)
_SUMMARY_LINE = re.compile(r"^=+ .* in [\d.]+s.* =+$")
# pytest's short summary ("FAILED test_bakery.py::test_x - ..."), not captured log lines
_FAILURE_LINE = re.compile(rf"^(FAILED|ERROR) {re.escape(TEST_FILE)}")


def _key(tests: str) -> str:
    return hashlib.sha256(tests.encode()).hexdigest()


def _run(tests: str, variant: str | None) -> pytest_run.PytestOutcome:
    """Run ``tests`` as ``test_bakery.py`` beside ``bakery.py`` (correct or broken) in a fresh
    folder, under :data:`RUN_TIMEOUT_S`; the folder is removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=f"check07-{variant or 'correct'}-"))
    try:
        app = variant_source(variant) + f"# {secrets.token_hex(8)}\n"
        (folder / "bakery.py").write_text(app)
        (folder / "conftest.py").write_text(CONFTEST)
        (folder / TEST_FILE).write_text(tests)
        # -vv: pytest's FAILED lines are not cut to the terminal's width
        return pytest_run.run_pytest(
            folder, TEST_FILE, "-vv", timeout_s=RUN_TIMEOUT_S, echo=False
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _correct_run(tests: str, user: str) -> pytest_run.PytestOutcome:
    """The run against the correct app: the cached one if ``user`` has not used it yet."""
    key = _key(tests)
    cached = _CORRECT_RUNS.get(key)
    if cached is not None and user not in cached[1]:
        cached[1].add(user)
        return cached[0]
    outcome = _run(tests, None)
    _CORRECT_RUNS.clear()  # one test source at a time: the learner's latest
    _CORRECT_RUNS[key] = (outcome, {user})
    return outcome


def summary(outcome: pytest_run.PytestOutcome) -> str:
    """pytest's own last line ("1 failed, 3 passed in 2.31s"), or what happened instead."""
    if outcome.timed_out:
        return f"stopped after {outcome.duration_s:.0f} s: the tests had not finished"
    for line in reversed(outcome.output.splitlines()):
        if _SUMMARY_LINE.match(line.strip()):
            return line.strip().strip("=").strip()
    last = [line for line in outcome.output.splitlines() if line.strip()]
    return f"exit code {outcome.exit_code}" + (f": {last[-1].strip()[:160]}" if last else "")


def failures(outcome: pytest_run.PytestOutcome) -> list[str]:
    """pytest's FAILED and ERROR lines, each cut to a readable length."""
    lines = [
        line.strip() for line in outcome.output.splitlines() if _FAILURE_LINE.match(line.strip())
    ]
    return [line if len(line) <= 160 else line[:157] + "..." for line in lines]


def _quoted(outcome: pytest_run.PytestOutcome, indent: str = " " * 18) -> str:
    """pytest's FAILED/ERROR lines, one per line under the message's own (18: under
    "measured:")."""
    lines = failures(outcome)
    shown = "".join(f"\n{indent}{line}" for line in lines[:MAX_FAILURE_LINES])
    more = len(lines) - MAX_FAILURE_LINES
    return shown + (f"\n{indent}... and {more} more" if more > 0 else "")


def _passes(outcome: pytest_run.PytestOutcome) -> bool:
    return not outcome.timed_out and outcome.exit_code == 0 and outcome.passed > 0


def _caught(outcome: pytest_run.PytestOutcome) -> bool:
    return not outcome.timed_out and outcome.exit_code not in (0, 5, None)


def _read_tests(check: Check, path: Any) -> str:
    """The learner's test file, or a failure saying what is missing."""
    try:
        tests = Path(os.fspath(path)).read_text(encoding="utf-8")
    except (OSError, TypeError, ValueError) as error:
        check.fail(
            measured=f"no test file to run: {type(error).__name__}: {error}",
            expected=f"your tests in {TEST_FILE}, written by the cell above",
            cause="the cell with your tests has not run (or writes to another path)",
            fix="run the cell that starts with `%%writefile {work}/test_bakery.py`, then this one",
        )
    return tests


def _check_variant(path: Any, name: str) -> None:
    variant = VARIANTS[name]
    with Check(variant.title) as check:
        tests = _read_tests(check, path)
        correct = _correct_run(tests, name)
        if not _passes(correct):
            if correct.timed_out:
                cause = "a test waits for something that never comes (a hang on the correct app)"
            elif correct.exit_code == 5 or not correct.counts:
                cause = "pytest found no test it could run: a syntax error, or no `test_` " \
                    "function"
            elif not correct.passed and not correct.failed:
                cause = "pytest could not import your test file (an error at its top level, " \
                    "such as the `raise NotImplementedError()` the cell starts with)"
            else:
                cause = "a test that fails on the correct app cannot tell a broken one from it"
            check.fail(
                measured=f"on the correct bakery.py: {summary(correct)}{_quoted(correct)}",
                expected="every test passes on the correct app (only then does a failure on a "
                "broken one mean something)",
                cause=cause,
                fix="run your tests in the cell above (run_pytest) and fix what fails",
            )
        broken = _run(tests, name)
        _VARIANT_RUNS[(_key(tests), name)] = broken
        if not _caught(broken):
            if broken.timed_out:
                measured = (
                    f"against the broken bakery ({variant.bug}): your tests did not finish in "
                    f"{RUN_TIMEOUT_S:g} s and were stopped"
                )
                cause = "a test waited for ever: a hang reports no bug, it only stalls the suite"
            else:
                measured = f"against the broken bakery ({variant.bug}): {summary(broken)}"
                cause = "no test looks at what this bug changes"
            check.fail(
                measured=measured,
                expected="at least one test fails on this broken app",
                cause=cause,
                fix=variant.how_to_catch,
            )
        check.passed(
            f"caught: {summary(broken)}{_quoted(broken, '    ')}\n"
            f"  (on the correct app: {summary(correct)})"
        )


@graded
def check_catches_blocking(path: Any) -> None:
    """Task 1: the tests pass on the bakery and fail when `/bake` blocks the event loop."""
    _check_variant(path, "blocking")


@graded
def check_catches_missing_timeout(path: Any) -> None:
    """Task 2: the tests fail when `/stock` has no deadline (and do not hang)."""
    _check_variant(path, "no_timeout")


@graded
def check_catches_missing_lifespan(path: Any) -> None:
    """Task 3: the tests fail when the app does not run its lifespan."""
    _check_variant(path, "no_lifespan")


@graded
def check_catches_sequential_fanout(path: Any) -> None:
    """Task 4: the tests fail when `/flours` asks the supplier one flour at a time."""
    _check_variant(path, "sequential")


def show_results(path: Any) -> None:
    """Print, per broken bakery, whether the last runs of these tests caught it, and pytest's
    summary line of each run (the graded cells above run them; nothing is run here)."""
    try:
        tests = Path(os.fspath(path)).read_text(encoding="utf-8")
    except (OSError, TypeError, ValueError):
        print(f"No test file at {path!r}: run the cell with your tests first.")
        return
    key = _key(tests)
    cached = _CORRECT_RUNS.get(key)
    print(f"correct app     {summary(cached[0]) if cached else 'not run yet'}")
    for name in VARIANTS:
        outcome = _VARIANT_RUNS.get((key, name))
        if outcome is None:
            verdict = "not run yet (run its graded cell)"
        else:
            verdict = ("caught   " if _caught(outcome) else "missed   ") + summary(outcome)
        print(f"{name:<15} {verdict}")
