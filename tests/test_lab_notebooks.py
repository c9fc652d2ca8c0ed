"""Every lesson and every exercise, Run All in JupyterLab in Chromium, as a learner on JupyterHub
sees them: all cells run, nothing red, every widget and picture rendered, a quiz that answers a
click, and a server's /docs link that works through jupyter-server-proxy.

One lab serves the whole module under a hub-like ``/user/learner/`` with
``JUPYTERHUB_SERVICE_PREFIX`` set, as JupyterHub and Binder do. Exercises run in their solved
form (``solutions/``): the notebook a learner has when every task is done. Full-page
screenshots, light and dark, go to ``test-output/screenshots/`` (or ``$COURSE_TEST_OUTPUT``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from helpers import capstone
from helpers.grading._course import handed_in_with
from tests.jupyterlab import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    DARK,
    LIGHT,
    ROOT,
    answer_first_quiz,
    full_page_screenshot,
    lab_address,
    notebook_facts,
    open_notebook,
    rendering_problems,
    require_chromium,
    run_all,
    running_lab,
    set_theme,
    shut_down_kernel,
    wait_until_finished,
)
from tests.notebook_runner import TEST_OUTPUT

pytestmark = pytest.mark.browser

HUB_PREFIX = "/user/learner/"
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLVED_EXERCISES = sorted((ROOT / "solutions").glob("*/*.ipynb"))
SCREENSHOTS = TEST_OUTPUT / "screenshots"


@pytest.fixture(scope="module")
def hub_lab(tmp_path_factory):
    require_chromium()
    folder = tmp_path_factory.mktemp("hub-lab")
    with running_lab(
        folder, base_url=HUB_PREFIX, env={"JUPYTERHUB_SERVICE_PREFIX": HUB_PREFIX}
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()


def code_cells(path: Path) -> list[str]:
    """The sources of the notebook's code cells, as stored."""
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def shows_a_quiz(sources: list[str]) -> bool:
    return any(re.search(r"\bquiz(_file)?\(", source) for source in sources)


@contextlib.contextmanager
def handed_in_files(path: Path):
    """The capstone exercise, solved, is its notebook beside the fixed shop: put the course's
    fix where the notebook looks for the learner's copy, for the run only."""
    if path.parent.parent.name != "solutions" or not handed_in_with(path):
        yield
        return
    copy = path.parent / "my_bookshop"
    assert not copy.exists(), f"{copy} is in the way: move it before the test"
    try:
        capstone.apply_solution(capstone.working_copy(copy))
        yield
    finally:
        shutil.rmtree(copy, ignore_errors=True)


@pytest.mark.parametrize(
    "path", LESSONS + SOLVED_EXERCISES, ids=lambda p: f"{p.parent.parent.name}/{p.stem}"
    if p.parent.parent.name == "solutions" else p.stem,
)
def test_run_all_in_jupyterlab_shows_every_output(path, hub_lab, browser):
    with handed_in_files(path):
        _run_all_and_look(path, hub_lab, browser)


def _run_all_and_look(path, hub_lab, browser):
    relative = path.relative_to(ROOT).as_posix()
    sources = code_cells(path)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    stem = relative.replace("/", "_").removesuffix(".ipynb")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    began = time.monotonic()
    try:
        open_notebook(page, hub_lab, relative)
        set_theme(page, LIGHT)
        if sources:
            run_all(page)
            wait_until_finished(page)
        facts = notebook_facts(page)
        run_s = time.monotonic() - began
        # the course runs offline: JupyterLab must not ask to fetch news from the web
        asks_for_news = page.get_by_text("get notified about official Jupyter news").count()
        problems = rendering_problems(facts)
        # a quiz that did not render cannot be clicked: report why, not a locator timeout
        quiz = shows_a_quiz(sources) and not problems
        explanation = answer_first_quiz(page, facts) if quiz else None
        shots = full_page_screenshot(page, SCREENSHOTS / f"{stem}-light.png")
        set_theme(page, DARK)
        shots += full_page_screenshot(page, SCREENSHOTS / f"{stem}-dark.png")
        set_theme(page, LIGHT)
    finally:
        shut_down_kernel(page)
        page.close()
    with (TEST_OUTPUT / "browser-runs.jsonl").open("a") as log:
        log.write(json.dumps({"notebook": relative, "seconds": round(run_s, 1),
                              "screenshots": [s.name for s in shots]}) + "\n")
    assert asks_for_news == 0, "JupyterLab asks to fetch news from the web"
    assert not problems, f"{relative}:\n" + "\n".join(problems)
    assert len(facts) == len(sources), "the page holds a different number of code cells"
    if shows_a_quiz(sources):
        assert explanation, "the quiz did not answer a click with its explanation"


def swagger_ui_from_disk(context) -> None:
    """FastAPI's /docs page loads Swagger UI from cdn.jsdelivr.net, which a learner's browser
    reaches; this machine is offline, so the test answers those requests with the same release
    from fastapi-offline's copy (a test dependency)."""
    static = Path(importlib.util.find_spec("fastapi_offline").origin).parent / "static"

    def from_disk(route) -> None:
        file = static / route.request.url.rsplit("/", 1)[-1]
        if file.is_file():
            route.fulfill(path=str(file))
        else:
            route.abort()

    context.route("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/*", from_disk)
    context.route("https://fastapi.tiangolo.com/img/favicon.png", from_disk)


def test_a_servers_docs_link_opens_swagger_ui_through_jupyter_server_proxy(hub_lab, browser):
    """On JupyterHub the browser cannot reach 127.0.0.1 in the container: the link a server
    shows goes through the Jupyter server's proxy, and Swagger UI there lists the app's route."""
    path = ROOT / "notebooks" / "00_start_here.ipynb"
    cells = nbformat.read(path, as_version=4).cells
    serving = next(i for i, c in enumerate(cells) if 'serve(app, name="start-here")' in c.source)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    swagger_ui_from_disk(page.context)
    try:
        open_notebook(page, hub_lab, path.relative_to(ROOT).as_posix())
        # run the lesson up to and including the cell that starts the server, and stop there
        page.evaluate(
            "index => { const panel = window.jupyterapp.shell.currentWidget;"
            " panel.content.activeCellIndex = index;"
            " return window.jupyterapp.commands.execute('notebook:run-all-above'); }",
            serving + 1,
        )
        link = page.locator(f".jp-Notebook .jp-Cell >> nth={serving}").locator(
            f'a[href^="{HUB_PREFIX}proxy/"]'
        )
        link.wait_for(timeout=60_000)
        href = link.get_attribute("href")
        assert re.fullmatch(rf"{HUB_PREFIX}proxy/\d+/docs", href), href
        with page.expect_popup() as opening:
            link.click()  # the learner's click: target=_blank opens a new tab
        docs = opening.value
        docs.locator(".opblock-summary-path", has_text="/hello").first.wait_for(timeout=30_000)
        base, _token = lab_address(hub_lab)
        assert docs.url == base.split(HUB_PREFIX.rstrip("/"))[0] + href
        docs.screenshot(path=str(SCREENSHOTS / "swagger-ui-through-the-proxy.png"))
        docs.close()
    finally:
        shut_down_kernel(page)
        page.close()
