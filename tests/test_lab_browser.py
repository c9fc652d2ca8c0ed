"""The README's lab command brings JupyterLab up with the course visible, in a real Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.jupyterlab import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    ROOT,
    living_members,
    open_notebook,
    require_chromium,
    run_all,
    running_lab,
    stop_process_group,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def lab(tmp_path):
    require_chromium()
    with running_lab(tmp_path) as url:
        yield url


def test_a_lab_that_ignores_sigterm_is_killed_with_its_group():
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    leader = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys, time; subprocess.Popen([sys.executable, "
         f"'-c', {stubborn!r}]); time.sleep(60)"],
        start_new_session=True,
    )
    time.sleep(1.0)  # the stubborn child is up
    assert len(living_members(leader.pid)) == 2
    stop_process_group(leader, grace_s=1.0)
    time.sleep(0.2)
    assert living_members(leader.pid) == []


def test_lab_command_opens_the_course_index(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    target = Path(lab.removeprefix("file://")).read_text() if lab.startswith("file://") else lab
    assert "/lab/tree/notebooks/index.ipynb" in target, f"lab does not open at the index: {target[:500]}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(lab, timeout=60_000)
            heading = page.locator(".jp-RenderedMarkdown h1", has_text="Concurrency in FastAPI")
            heading.first.wait_for(timeout=60_000)
            # the lesson table renders with a link to lesson 00
            page.locator(".jp-RenderedMarkdown a", has_text="Start here").first.wait_for(timeout=10_000)
            page.screenshot(path=str(tmp_path / "lab.png"))
            # the file browser lists the lessons next to the index
            listing = page.locator(".jp-DirListing-item", has_text="00_start_here.ipynb")
            listing.first.wait_for(timeout=10_000)
        finally:
            browser.close()


BLOCKING_COOK = """async def cook(order):
    time.sleep(OVEN_S)  # the chef stands in front of the oven
    return f"dish {order}"
"""
ASYNC_COOK = """async def cook(order):
    await asyncio.sleep(OVEN_S)  # the dish bakes while the chef takes other orders
    return f"dish {order}"
"""


def test_exercise_01_gives_instant_feedback_in_jupyterlab(lab, tmp_path):
    """A self-study learner in JupyterLab, no nbgrader: Run All stops at the first check, which
    says the task is not written yet; a blocking chef fails with the line that held the loop;
    the asynchronous chef passes with one ✔ line. The exercise file itself stays untouched."""
    from playwright.sync_api import sync_playwright

    exercise = ROOT / "exercises" / "01_kitchen" / "01_kitchen.ipynb"
    before = exercise.read_bytes()
    checkpoints = exercise.parent / ".ipynb_checkpoints"  # JupyterLab makes one on opening
    had_checkpoints = checkpoints.exists()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_notebook(
                page, lab, "exercises/01_kitchen/01_kitchen.ipynb", "The kitchen — exercise"
            )
            cells = page.locator(".jp-Notebook .jp-Cell")
            solution, check = cells.nth(4), cells.nth(6)
            assert "async def cook(order)" in solution.inner_text()
            assert "check_cook(cook)" in check.inner_text()
            run_all(page)

            # 1. untouched: the check fails and says why; Run All stops there
            unwritten = check.locator(".jp-OutputArea-output", has_text="not written yet")
            unwritten.wait_for(timeout=60_000)
            assert "replace `raise NotImplementedError()` with your code" in check.inner_text()
            later_prompt = cells.nth(10).locator(".jp-InputPrompt").inner_text()
            assert not any(c.isdigit() for c in later_prompt), f"Run All went on: {later_prompt}"

            # 2. a blocking chef: the check names the line of the learner's cell that held the loop
            def submit(code: str) -> None:
                solution.locator(".cm-content").click()
                page.keyboard.press("Control+A")
                page.keyboard.insert_text(code)
                page.keyboard.press("Shift+Enter")
                check.locator(".jp-InputPrompt").click()
                page.keyboard.press("Shift+Enter")

            submit(BLOCKING_COOK)
            blocked = check.locator(".jp-OutputArea-output", has_text="held the event loop")
            blocked.wait_for(timeout=60_000)
            feedback = check.inner_text()
            assert "time.sleep(OVEN_S)" in feedback, feedback
            assert "line 2" in feedback, feedback
            page.screenshot(path=str(tmp_path / "exercise01_failing.png"))

            # 3. the asynchronous chef: one ✔ line, and nothing else, in the check's output
            submit(ASYNC_COOK)
            passed = check.locator(".jp-OutputArea-output", has_text="✔")
            passed.wait_for(timeout=60_000)
            outputs = check.locator(".jp-OutputArea-output")
            assert outputs.count() == 1, check.inner_text()
            success = outputs.first.inner_text().strip()
            assert success.startswith("✔ Task 1") and "\n" not in success, success
            page.screenshot(path=str(tmp_path / "exercise01_passing.png"))
        finally:
            browser.close()
            if not had_checkpoints:
                shutil.rmtree(checkpoints, ignore_errors=True)
    assert exercise.read_bytes() == before, "the browser session changed the exercise file"
