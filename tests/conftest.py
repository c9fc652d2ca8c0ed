"""Shared fixtures: no test leaves a server behind that it started itself."""

from __future__ import annotations

import pytest

import helpers


@pytest.fixture(autouse=True)
def no_servers_left_behind():
    before = set(map(id, helpers.running_servers()))
    yield
    leftover = [s for s in helpers.running_servers() if id(s) not in before]
    for server in leftover:
        server.stop()
    assert not leftover, f"the test left servers running: {leftover}"


# Test files that time real sleeps and real CPU work, burn CPU on purpose, or run whole notebooks:
# they run one after another on one xdist worker, so that no two of them share the 2 cores at
# once.
TIMING_FILES = {
    "test_kitchen.py",
    "test_cpu.py",
    "test_load.py",
    "test_loopwatch.py",
    "test_server.py",
    "test_lab_browser.py",
    "test_lab_notebooks.py",
    "test_html_edition.py",
    "test_two_learners.py",
    "test_binder.py",
    "test_workers.py",
    "test_doctor.py",
    "test_capstone.py",
    # the exercise checks serve and time learners' code (sleeps of hundreds of ms, hangs), and
    # the grading tests run whole exercise notebooks, checks included, under real nbgrader
    # (and every tests/test_checks_lessonNN.py: see below)
    "test_checks_core.py",
    "test_grading.py",
    "test_grading_exercises.py",
}


# tryfirst: xdist's worker reads each item's xdist_group marks in its own collection hook, to
# add the group to the item's id; a mark added after that hook has run is silently ignored.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the lesson notebooks and the timing tests one after another on one xdist worker;
    spread the rest by file.

    Lessons time real sleeps and real CPU work against the prose's words. Beside other timing
    tests on a 2-core machine (lesson 03 and the loop-watch tests burn CPU on purpose) a
    20 ms-per-minute kitchen in lesson 01 stretched to 1.32-1.41 times its ideal; one at a
    time, they stay within their words. Every other test keeps its file's group, as
    ``--dist loadfile`` did.
    """
    for item in items:
        lesson = item.get_closest_marker("notebook") is not None and item.path.name.startswith(
            "test_lesson_"
        )
        checks = item.path.name.startswith("test_checks_lesson")
        timing = lesson or checks or item.path.name in TIMING_FILES
        group = "timing" if timing else item.path.name
        item.add_marker(pytest.mark.xdist_group(group))
