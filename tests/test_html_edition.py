"""The static HTML edition: the real build as a user runs it; its link checker on small sites."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import nbformat
import pytest

from helpers.html_edition import _render, _without_widgets, check_site
from tests.notebook_runner import ROOT

PICTURE = "data:image/png;base64," + "iVBORw0KGgo" * 20


def page(body: str) -> str:
    return f"<!DOCTYPE html><html><head></head><body>{body}</body></html>"


def test_a_sound_site_has_no_problems(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "a.html").write_text(page(
        '<h2 id="Why">Why</h2><a href="b.html#How">b</a><a href="#Why">up</a>'
        f'<img src="{PICTURE}"><a href="https://fastapi.tiangolo.com/">FastAPI</a>'
    ))
    (tmp_path / "notebooks" / "b.html").write_text(page('<h2 id="How">How</h2>'))
    assert check_site(tmp_path) == []


def test_each_kind_of_broken_site_is_reported(tmp_path):
    (tmp_path / "a.html").write_text(page(
        '<a href="gone.html">1</a><a href="b.html#Nowhere">2</a><img src="missing.png">'
        '<img src="data:image/png;base64,">'
        '<script src="https://cdn.example.org/require.js"></script>'
    ))
    (tmp_path / "b.html").write_text(page('<h2 id="How">How</h2>'))
    problems = check_site(tmp_path)
    assert problems == [
        "a.html: loads https://cdn.example.org/require.js from the network",
        "a.html: a missing picture: missing.png",
        "a.html: an empty picture (data:image/png;base64,)",
        "a.html: a broken link: gone.html",
        "a.html: a link to a missing anchor: b.html#Nowhere",
    ]


def test_a_quiz_keeps_its_static_form_and_a_bare_widget_is_named():
    quiz = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "1", "version_major": 2},
        "text/html": "<h4>Quick check</h4><details><summary>Answer</summary>B</details>",
        "text/plain": "Quick check",
    })
    slider = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "2", "version_major": 2},
        "text/plain": "IntSlider(value=3)",
    })
    progress = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "3", "version_major": 2},
        "text/plain": "load: 100%|██████████| 10/10 [00:00<00:00, 19.1 request/s]",
    })
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("quiz()")])
    notebook.cells[0].outputs = [quiz, slider, progress]
    notebook.metadata["widgets"] = {"state": {}}
    _without_widgets(notebook)
    kept, named, bar = notebook.cells[0].outputs
    assert set(kept.data) == {"text/html", "text/plain"} and "<details>" in kept.data["text/html"]
    assert set(named.data) == {"text/html"} and "interactive widget" in named.data["text/html"]
    assert dict(bar.data) == {"text/plain": progress.data["text/plain"]}  # the bar's own text
    assert "widgets" not in notebook.metadata


def test_links_between_notebooks_become_links_between_pages():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# Title\n\n[next](01_kitchen.ipynb) · [a part](03_def.ipynb#What-it-costs) · "
        "[exercise](../exercises/01_kitchen/01_kitchen.ipynb) · "
        "[web](https://example.org/a.ipynb)"
    )])
    rendered = _render(notebook, "Title")
    assert 'href="01_kitchen.html"' in rendered
    assert 'href="03_def.html#What-it-costs"' in rendered
    assert 'href="../exercises/01_kitchen/01_kitchen.html"' in rendered
    assert 'href="https://example.org/a.ipynb"' in rendered  # not the edition's to rewrite
    assert not re.search(r'<script[^>]+src="https?:', rendered), "a script from the web"


@pytest.mark.notebook
def test_the_html_command_builds_the_whole_course_with_sound_links(tmp_path):
    out = tmp_path / "site"
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "helpers.html_edition", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    took_s = time.monotonic() - began
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-2000:]
    print(result.stdout, f"(built in {took_s:.0f} s)")
    lessons = sorted((ROOT / "notebooks").glob("*.ipynb"))
    exercises = sorted((ROOT / "exercises").glob("*/*.ipynb"))
    for notebook in lessons:
        assert (out / "notebooks" / f"{notebook.stem}.html").is_file(), notebook.name
    for notebook in exercises:
        assert (out / "exercises" / notebook.parent.name / f"{notebook.stem}.html").is_file()
    assert f"wrote {len(lessons) + len(exercises) + 1} pages" in result.stdout
    assert check_site(out) == []
    # a lesson page: its pictures, its quiz readable without a kernel, no error, no widget stub
    lesson = (out / "notebooks" / "00_start_here.html").read_text()
    assert lesson.count("<img") >= 1 and "data:image/png;base64," in lesson
    assert "<summary>Answer</summary>" in lesson
    assert "Traceback (most recent call last)" not in lesson
    assert "Static edition: this page was executed on" in lesson
    assert re.search(r"10 requests at once, each waiting 0\.5 s: measured \d\.\d\d s", lesson)
    assert 'href="01_kitchen.html"' in lesson and 'href="index.html"' in lesson
    # every lesson links its exercise page
    index = (out / "notebooks" / "index.html").read_text()
    for notebook in exercises:
        assert f'href="../exercises/{notebook.parent.name}/{notebook.stem}.html"' in index
