"""Lesson 07 runs headless, quietly, and its timing claims and pytest outcomes hold."""

import re

import pytest

from tests.lesson_doctor import Blocks, assert_doctor_agrees, doctor_for
from tests.notebook_runner import Within, check_notebook

CLAIMS = {
    # ten concurrent /brew-blocking (time.sleep(0.2) in async def) on a real server "ran one after
    # another: the last customer waited about ten brews, two seconds" (ideal = 10 x 0.2 s;
    # measured 1.008-1.018x in 9 runs); nine brews would be 0.9x, a busy machine adds a little
    "10 concurrent /brew-blocking on a real server, all answered": Within(0.95, 1.3),
    "the slowest of those 10 customers waited": Within(0.95, 1.3),
    # five /brew (awaited 0.2 s) from a sync client in a for loop: "five times one brew"
    # (ideal = 5 x 0.2 s; measured 1.015-1.031x in 9 runs)
    "5 /brew requests from a sync client in a for loop": Within(0.95, 1.3),
    # the same five at once with gather: "about one brew (a little more ...)" (ideal = one brew;
    # measured 1.068-1.096x in 9 runs); two brews would be 2.0x
    "the same 5 sent at once with gather": Within(0.95, 1.5),
}

# The pytest runs, in order, and the counts the prose states for each.
RUNS = [
    "2 failed",  # the old tutorial's test and the transport without the lifespan
    "2 passed",  # the unit tests with the lifespan fixture, the hung supplier's 504 included
    "1 passed",  # the green test that proves nothing
    "2 failed, 2 passed",  # the live-server tests: /brew passes both, /brew-blocking fails both
    "1 failed, 2 passed",  # blockbuster on: the green claim fails, the unit tests pass
]


def verdict(text: str, test: str) -> str:
    """PASSED or FAILED for one test id, from every line pytest -v printed for it."""
    found = set(re.findall(rf"^tests/{re.escape(test)} (PASSED|FAILED)", text, re.M))
    assert len(found) == 1, f"{test}: {found or 'not run'}"
    return found.pop()


# What the lesson says blocks the loop, for the app doctor to agree with (tests/lesson_doctor.py)
DOCTOR = {"cafe.app": {"GET /brew-blocking": Blocks("time.sleep(BREW_S)")}}


@pytest.mark.notebook
def test_lesson_07_runs_and_its_claims_hold(tmp_path):
    doctor = doctor_for(DOCTOR, tmp_path)
    executed = check_notebook("07_testing_async.ipynb", CLAIMS, doctor=doctor)
    assert_doctor_agrees(doctor, DOCTOR)
    text = executed.text_output()

    # every pytest run's counts, in order, as pytest's own summary lines state them
    summaries = re.findall(r"^=+ (.+?) in [\d.]+s(?: \([\d:]+\))? =+$", text, re.M)
    assert summaries == RUNS, summaries
    assert "\x1b" not in text, "escape codes in the output"

    # run 1: the seed's AsyncClient(app=...) is gone; the transport alone skips the lifespan
    assert verdict(text, "test_old_tutorial.py::test_menu_the_old_way") == "FAILED"
    assert re.search(r"^\S*tests/test_old_tutorial\.py:\d+: TypeError: AsyncClient\.__init__\(\) got an unexpected keyword argument 'app'$", text, re.M)
    assert verdict(text, "test_old_tutorial.py::test_beans_through_the_transport") == "FAILED"
    assert re.search(r"^\S*starlette/datastructures\.py:\d+: AttributeError: 'State' object has no attribute 'client'$", text, re.M)

    # runs 2 and 5: the unit tests, the hung supplier's timely 504 among them, pass both times
    for test in ["test_menu_lists_espresso", "test_hung_supplier_gives_504_on_time"]:
        assert text.count(f"tests/test_unit.py::{test} PASSED") == 2, test

    # run 3 then run 5: the ASGITransport "proof" passes, then fails under blockbuster, which
    # names time.sleep and whose traceback passes through cafe.py's brew_blocking
    claim = "tests/test_claims.py::test_ten_customers_each_wait_one_brew"
    assert re.findall(rf"^{claim} (PASSED|FAILED)", text, re.M) == ["PASSED", "FAILED"]
    assert re.search(r"^E   blockbuster\.blockbuster\.BlockingError: Blocking call to time\.sleep$", text, re.M)
    assert re.search(r"^cafe\.py:\d+: in brew_blocking\n    time\.sleep\(BREW_S\)", text, re.M)

    # run 4: against a real server, /brew passes both tests and /brew-blocking fails both
    for test in ["test_ten_orders_overlap", "test_loop_never_blocked"]:
        assert verdict(text, f"test_live.py::{test}[/brew]") == "PASSED", test
        assert verdict(text, f"test_live.py::{test}[/brew-blocking]") == "FAILED", test
    # the timing test's message: "about ten brews' worth (2 s ...)" (measured 2.03-2.04 s)
    took = float(re.search(r"^E   AssertionError: 10 orders took ([\d.]+) s; one by one: 2\.0 s$", text, re.M).group(1))
    assert 1.9 <= took <= 2.6, took
    # the loop watch names cafe.py's time.sleep line, "for about a brew" (0.2 s; measured
    # 197-205 ms)
    blocked = re.search(r"^E   AssertionError: loop blocked (\d+) ms at cafe\.py:\d+ `time\.sleep\(BREW_S\)  # BAD EXAMPLE", text, re.M)
    assert blocked, "the loop watch did not name the time.sleep line"
    assert 180 <= int(blocked.group(1)) <= 300, blocked.group(0)

    # the real server's timeline is drawn
    assert re.search(r"\[picture: timeline of 10 requests", text)
