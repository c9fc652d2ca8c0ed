"""The README's lab command brings JupyterLab up with the course visible, in a real Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required here (COURSE_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    port, token = free_port(), "course-test-token"
    log = (tmp_path / "lab.log").open("w+")
    # JupyterLab "opens a browser" by running this script: it records what it was asked to open
    opened = tmp_path / "opened.txt"
    recorder = tmp_path / "record-browser.sh"
    recorder.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    recorder.chmod(0o755)
    # autosave off: a test that runs a course notebook must not write its outputs back into it
    docmanager = tmp_path / "settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    process = subprocess.Popen(
        [
            "python3", "course.py", "lab",
            f"--ServerApp.browser={recorder} %s", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0",
        ],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        },
    )
    try:
        deadline = time.monotonic() + 90
        url = None
        while time.monotonic() < deadline and process.poll() is None:
            if opened.exists() and opened.read_text().strip():
                url = opened.read_text().strip()
                break
            time.sleep(0.5)
        log.seek(0)
        assert url, f"JupyterLab did not come up:\n{log.read()[-3000:]}"
        yield url
    finally:
        stop_process_group(process)
        log.close()


def stop_process_group(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the lab's whole process group, then SIGKILL whatever is left after ``grace_s``.

    Waiting for ``course.py`` alone is not enough: it exits at once, and a jupyter-lab that
    hangs in its shutdown was seen left running, orphaned, 43 minutes later."""
    group = process.pid  # start_new_session: the group's id is the leader's pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()
        if not living_members(group):
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    process.wait(15)


def living_members(group: int) -> list[int]:
    """Pids of the processes in ``group`` that still run (a zombie waiting for its parent to
    reap it does not: here an orphan's parent is the machine's init, which reaps slowly)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # after the command's closing parenthesis: state, ppid, pgrp
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == group and state != "Z":
                members.append(int(stat.parent.name))
    return members


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


def lab_address(lab: str) -> tuple[str, str]:
    """The server's base URL and token, from what JupyterLab asked the browser to open."""
    target = Path(lab.removeprefix("file://")).read_text() if lab.startswith("file://") else lab
    base = target.split("/lab/")[0].split("url=")[-1]
    token = target.split("token=")[1].split('"')[0]
    return base, token


def open_notebook(page, lab: str, path: str, heading: str) -> None:
    """Open a notebook of the course and wait until its kernel is connected and idle."""
    base, token = lab_address(lab)
    page.goto(f"{base}/lab/tree/{path}?token={token}", timeout=60_000)
    page.locator(".jp-RenderedMarkdown h1", has_text=heading).first.wait_for(timeout=60_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").first.wait_for(timeout=90_000)


def run_all(page) -> None:
    """Run ▸ Run All Cells, the way a learner does; the first prompt turning into [1] proves
    the run started (just after the kernel turns idle the menu item can still be inert)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    first_prompt = page.locator(".jp-InputPrompt", has_text="[1]:").first
    for _attempt in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            first_prompt.wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    first_prompt.wait_for(timeout=1_000)


def test_lesson_00_runs_in_jupyterlab_with_its_picture_and_quiz(lab, tmp_path):
    """The learner's view: Run All on lesson 00, then answer a quiz question by clicking."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_notebook(page, lab, "notebooks/00_start_here.ipynb", "Start here")
            run_all(page)

            # the timing cell's line and the timeline picture appear
            page.locator(".jp-OutputArea-output", has_text="10 requests at once").first.wait_for(
                timeout=90_000
            )
            page.locator(".jp-OutputArea-output img").first.wait_for(timeout=30_000)

            # the quiz renders as widgets; answer question 1 correctly and check it
            quiz = page.locator(".course-quiz").first
            quiz.wait_for(timeout=30_000)
            quiz.scroll_into_view_if_needed()
            quiz.locator("label", has_text="About 0.5 s").first.click()
            quiz.get_by_role("button", name="Check").first.click()
            quiz.locator(".widget-html", has_text="Correct.").first.wait_for(timeout=10_000)
            page.screenshot(path=str(tmp_path / "lesson00.png"), full_page=False)
            # the course runs offline: JupyterLab must not ask to fetch news from the web
            assert page.get_by_text("get notified about official Jupyter news").count() == 0
            # no cell failed (the expected RuntimeWarnings of the uvicorn.run() cell are fine)
            tracebacks = page.locator(".jp-OutputArea-output", has_text="most recent call last")
            assert tracebacks.count() == 0
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
