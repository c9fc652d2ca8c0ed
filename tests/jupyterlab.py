"""Drive the course's JupyterLab in Debian's Chromium the way a learner does (browser tests).

``running_lab`` starts ``python3 course.py lab`` (the README's command) with its own settings;
the page functions open a notebook, Run All from the menu, read what JupyterLab's own notebook
model holds after the run, and check that the page shows all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LIGHT, DARK = "JupyterLab Light", "JupyterLab Dark"


def require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required here (COURSE_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_setting(settings: Path, plugin: str, values: dict[str, Any]) -> None:
    package, name = plugin.split(":")
    path = settings / package / f"{name}.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


@contextlib.contextmanager
def running_lab(
    folder: Path, *, base_url: str = "/", env: dict[str, str] | None = None
) -> Iterator[str]:
    """``python3 course.py lab`` on a free port; yields the URL it asked the browser to open.

    ``base_url`` and ``env`` let a test stand in for JupyterHub, which serves each learner's
    lab under ``/user/<name>/`` and tells the kernels so in ``JUPYTERHUB_SERVICE_PREFIX``."""
    port, token = free_port(), "course-test-token"
    log = (folder / "lab.log").open("w+")
    # JupyterLab "opens a browser" by running this script: it records what it was asked to open
    opened = folder / "opened.txt"
    recorder = folder / "record-browser.sh"
    recorder.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    recorder.chmod(0o755)
    settings = folder / "settings"
    # autosave off: a test that runs a course notebook must not write its outputs back into it
    _write_setting(settings, "@jupyterlab/docmanager-extension:plugin", {"autosave": False})
    # every cell in the page, not only those scrolled into view: the checks look at all of them
    _write_setting(settings, "@jupyterlab/notebook-extension:tracker", {"windowingMode": "none"})
    process = subprocess.Popen(
        [
            "python3", "course.py", "lab",
            f"--ServerApp.browser={recorder} %s", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0",
            f"--ServerApp.base_url={base_url}",
            # the test reads JupyterLab's notebook model (window.jupyterapp) after a run
            "--LabApp.expose_app_in_browser=True",
        ],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(folder / "config"),
            "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            **(env or {}),
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


def lab_address(lab: str) -> tuple[str, str]:
    """The server's base URL (with its base_url) and token, from what JupyterLab asked the
    browser to open."""
    target = Path(lab.removeprefix("file://")).read_text() if lab.startswith("file://") else lab
    base = target.split("/lab/")[0].split("url=")[-1]
    token = target.split("token=")[1].split('"')[0]
    return base, token


def open_notebook(page: Any, lab: str, path: str, heading: str | None = None) -> None:
    """Open a notebook of the course and wait until its kernel is connected and idle.

    Each notebook opens in a workspace of its own: JupyterLab would otherwise reopen, hidden
    behind it, every notebook an earlier test opened in the same lab."""
    base, token = lab_address(lab)
    workspace = re.sub(r"[^A-Za-z0-9_-]", "-", path)
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{path}?token={token}", timeout=60_000)
    title = page.locator(".jp-Notebook .jp-RenderedMarkdown h1 >> visible=true")
    if heading:
        title = title.filter(has_text=heading)
    title.first.wait_for(timeout=60_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").first.wait_for(timeout=90_000)


def run_all(page: Any) -> None:
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


_RUN_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const prompts = [...panel.content.node.querySelectorAll('.jp-InputPrompt')];
  return {status: kernel ? kernel.status : 'none',
          running: prompts.some(p => p.textContent.includes('[*]'))};
}"""


def wait_until_finished(page: Any, timeout_s: float = 240.0) -> float:
    """Wait until no cell is queued or running and the kernel is idle (three looks in a row,
    half a second apart); return the seconds waited."""
    began = time.monotonic()
    calm = 0
    while calm < 3:
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"the notebook was still running after {timeout_s:g} s")
        state = page.evaluate(_RUN_STATE_JS)
        calm = calm + 1 if state["status"] == "idle" and not state["running"] else 0
        time.sleep(0.5)
    return time.monotonic() - began


# What JupyterLab's notebook model holds for each code cell after the run, and what the page
# shows for each of its outputs (one output area child per output).
_FACTS_JS = """async () => {
  // a picture counts as rendered when the browser can decode all of it (a truncated PNG still
  // has a size, and would draw a grey part)
  const decodes = async im => {
    try { await im.decode(); return im.naturalWidth > 0; } catch (e) { return false; }
  };
  const panel = window.jupyterapp.shell.currentWidget;
  const notebook = panel.content;
  const cells = [];
  for (let i = 0; i < notebook.model.cells.length; i++) {
    const cell = notebook.model.cells.get(i);
    if (cell.type !== 'code') continue;
    // the cell's own output area (an Output widget nests areas of its own inside it)
    const children = notebook.widgets[i].outputArea.widgets;
    const outputs = [];
    for (let j = 0; j < cell.outputs.length; j++) {
      const o = cell.outputs.get(j).toJSON();
      const data = o.data || {};
      const plain = data['text/plain'];
      const node = children[j] ? children[j].node.querySelector('.jp-OutputArea-output') : null;
      const images = node ? [...node.querySelectorAll('img')] : [];
      outputs.push({
        type: o.output_type, stream: o.name || null, mimes: Object.keys(data),
        plain: Array.isArray(plain) ? plain.join('') : (plain || null),
        shown: node ? node.innerText : null,
        images: images.length,
        images_loaded: (await Promise.all(images.map(decodes))).filter(Boolean).length,
        widget_views: node ? node.querySelectorAll('.jupyter-widgets').length : 0,
      });
    }
    cells.push({index: i, count: cell.executionCount, outputs});
  }
  return cells;
}"""

WIDGET = "application/vnd.jupyter.widget-view+json"


def notebook_facts(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(_FACTS_JS)


def rendering_problems(
    facts: list[dict[str, Any]], allowed_stderr: tuple[str, ...] = ()
) -> list[str]:
    """Everything a learner would see go wrong: a cell not run, an error, stderr, a widget or a
    picture that did not render."""
    problems = []
    for cell in facts:
        where = f"cell {cell['index']}"
        if cell["count"] is None:
            problems.append(f"{where} was not executed")
        for number, output in enumerate(cell["outputs"]):
            at = f"{where}, output {number}"
            shown = output["shown"] or ""
            if output["type"] == "error" or "most recent call last" in shown:
                problems.append(f"{at}: an error is shown: {shown[-300:]}")
            if output["stream"] == "stderr" and not any(
                re.search(pattern, shown) for pattern in allowed_stderr
            ):
                problems.append(f"{at}: stderr is shown: {shown[:300]}")
            if output["shown"] is None:
                problems.append(f"{at}: the page shows nothing for it")
            if WIDGET in output["mimes"]:
                if "Error displaying widget" in shown or "Loading widget" in shown:
                    problems.append(f"{at}: the widget did not render: {shown[:200]}")
                elif output["widget_views"] == 0 and shown.strip():
                    # JupyterLab showed the widget's text instead: no widget manager rendered it.
                    # (An empty output is a widget its code closed, like load()'s progress bar.)
                    problems.append(f"{at}: no widget view on the page, only {shown[:100]!r}")
            elif "image/png" in output["mimes"] and output["images"] != 1:
                problems.append(f"{at}: a picture, but {output['images']} images on the page")
            if output["images_loaded"] != output["images"]:
                problems.append(
                    f"{at}: a picture did not render ({output['images_loaded']} of "
                    f"{output['images']} images loaded)"
                )
    return problems


def answer_first_quiz(page: Any, facts: list[dict[str, Any]]) -> str | None:
    """Click the right answer to the first quiz's first question, press Check, and wait for
    "Correct." with the question's explanation; return the explanation (None: no quiz)."""
    for cell in facts:
        for output in cell["outputs"]:
            plain = output["plain"] or ""
            if WIDGET in output["mimes"] and "   Answer: " in plain:
                first = plain.split("\n2. ", 1)[0]
                letter = re.search(r"^   Answer: ([A-Z])\)", first, re.M).group(1)
                why = re.search(r"^   Why: (.+)$", first, re.M).group(1)
                quiz = page.locator(".course-quiz").first
                quiz.scroll_into_view_if_needed()
                quiz.locator("label", has_text=re.compile(rf"^\s*{letter}\)")).first.click()
                quiz.get_by_role("button", name="Check").first.click()
                verdict = quiz.locator(".widget-html", has_text="Correct.").first
                verdict.wait_for(timeout=10_000)
                # the explanation follows (its `code` spans lose their backticks when rendered)
                words = " ".join(why.replace("`", "").split()[:4])
                shown = " ".join(verdict.inner_text().split())
                assert words in shown, f"the explanation {words!r} is not in {shown!r}"
                return why
    return None


def set_theme(page: Any, theme: str) -> None:
    page.evaluate(
        "theme => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", theme
    )
    light = "true" if theme == LIGHT else "false"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'")
    time.sleep(0.5)  # let the new colours paint before a screenshot


_SCROLLER_JS = """() => {
  const node = window.jupyterapp.shell.currentWidget.content.node;
  return node.querySelector('.jp-WindowedPanel-outer') || node;
}"""

#: Chromium draws no taller picture than this in one screenshot; a longer notebook is taken in
#: parts, each scrolled down by this much.
MAX_SCREENSHOT_PX = 12_000


def full_page_screenshot(page: Any, path: Path, width: int = 1400) -> list[Path]:
    """Grow the window until the whole notebook fits (or a part of at most MAX_SCREENSHOT_PX),
    screenshot it, restore the window; return the files written (``name-2.png``… for parts)."""
    viewport = page.viewport_size
    chrome_px = 160  # the menu bar, the tabs and the notebook's toolbar above the cells
    scroller = page.evaluate_handle(_SCROLLER_JS)
    total = scroller.evaluate("node => node.scrollHeight")
    height = min(total, MAX_SCREENSHOT_PX)
    written = []
    page.set_viewport_size({"width": width, "height": height + chrome_px})
    try:
        for part, top in enumerate(range(0, max(total, 1), height), start=1):
            scroller.evaluate("(node, top) => { node.scrollTop = top; }", top)
            time.sleep(0.5)  # let the scrolled cells paint
            target = path if part == 1 else path.with_name(f"{path.stem}-{part}{path.suffix}")
            page.screenshot(path=str(target))
            written.append(target)
    finally:
        scroller.evaluate("node => { node.scrollTop = 0; }")
        page.set_viewport_size(viewport)
    return written


def shut_down_kernel(page: Any) -> None:
    """Stop the open notebook's kernel (its servers stop with it) before the next notebook."""
    with contextlib.suppress(Exception):
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
