"""Checks every notebook must pass: stored clean, links resolve, lesson structure, and a test
module that executes it (``tests/test_lesson_*.py`` call ``check_notebook`` with its claims)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest

from tests.notebook_runner import NOTEBOOKS, ROOT, Within, check_notebook


def notebook_names() -> list[str]:
    return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.notebook
def test_index_runs():
    check_notebook("index.ipynb", {})


@pytest.mark.parametrize("name", notebook_names())
def test_every_notebook_is_executed_by_a_test(name):
    tests = Path(__file__).parent
    sources = "".join(p.read_text() for p in tests.glob("test_*.py"))
    assert f'check_notebook("{name}"' in sources, f"no test executes {name}"


@pytest.mark.parametrize("name", notebook_names())
def test_notebook_is_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    dirty = [
        i for i, c in enumerate(notebook.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count)
    ]
    assert not dirty, f"{name}: cells {dirty} hold outputs; clear them before committing"


# Links in markdown: inline links and images, reference definitions, and HTML href/src.
# Code is stripped first, so a lesson that shows `[x](y)` as code is not read as a link.
FENCED_CODE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
HTML_LINK = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.I)
# not fetched (this machine has no network; a test must not depend on a third party's site)
EXTERNAL_SCHEMES = {"http", "https", "mailto"}
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def markdown_links(markdown: str) -> list[str]:
    text = CODE_SPAN.sub("", FENCED_CODE.sub("", markdown))
    found = [*INLINE_LINK.findall(text), *REFERENCE.findall(text), *HTML_LINK.findall(text)]
    return [link.strip("<>") for link in found]


def heading_anchors(markdown: str) -> set[str]:
    """The ids JupyterLab gives headings: the rendered text with spaces turned into dashes."""
    anchors = set()
    for heading in HEADING.findall(CODE_SPAN.sub(lambda m: m.group(0).strip("`"), markdown)):
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
        anchors.add(text.replace("*", "").replace(" ", "-"))
    return anchors


def markdown_of(path: Path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Every link in a notebook's markdown that would not open, each with the reason.

    Relative links resolve from the notebook's folder, like JupyterLab's; they must stay
    inside the repository (another machine has nothing outside it). A ``#anchor`` into a
    notebook must name one of its headings.
    """
    markdown = markdown_of(path)
    broken = []
    for link in markdown_links(markdown):
        scheme = SCHEME.match(link)
        if scheme and scheme.group(1).lower() in EXTERNAL_SCHEMES:
            continue
        if scheme:
            broken.append(f"{link} (a {scheme.group(1)}: link works only on one machine)")
            continue
        # a query ends the path, but a "?" after the "#" belongs to the anchor (a heading that
        # ends in a question mark)
        target, _, anchor = link.partition("#")
        target, anchor = unquote(target.split("?", 1)[0]), unquote(anchor)
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.is_relative_to(root.resolve()):
            broken.append(f"{link} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{link} (no such file or folder)")
        elif target.endswith("/") and not resolved.is_dir():
            broken.append(f"{link} (not a folder)")
        elif anchor and resolved.suffix == ".ipynb":
            if anchor not in heading_anchors(markdown_of(resolved)):
                broken.append(f"{link} (no heading with that anchor in {resolved.name})")
    return broken


@pytest.mark.parametrize("name", notebook_names())
def test_links_resolve(name):
    broken = broken_links(NOTEBOOKS / name)
    assert not broken, f"{name} has links that do not open: {broken}"


def test_link_check_finds_broken_links(tmp_path):
    """The checker itself: a made-up course tree with one good and one bad link of each kind."""
    for folder in ("notebooks", "exercises", "helpers"):
        (tmp_path / folder).mkdir()
    (tmp_path / "README.md").write_text("# Readme\n")
    (tmp_path / "helpers" / "timing.py").write_text("")
    links = """
# A lesson with `code` in its title

[next](01_next.ipynb), [a section](01_next.ipynb#The-def-section),
[up](#A-lesson-with-code-in-its-title), [a question](01_next.ipynb#Is-it-def?),
[exercises](../exercises/), [readme](../README.md),
[code](../helpers/timing.py "the helper"), ![picture](<../exercises/>), [a reference][ref],
[docs](https://fastapi.tiangolo.com/), <a href="../README.md">html</a>,
`[shown as code](nowhere.ipynb)`

[missing](02_missing.ipynb), [bad section](01_next.ipynb#No-such-section), [gone](../solutions/),
[file not folder](../README.md/), [escape](../../elsewhere.txt), [local](file:///etc/passwd),
<a href="../nothing.md">html</a>, [a broken reference][broken]

[ref]: ../README.md
[broken]: ../exercises/00_missing.ipynb
"""
    lesson = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(links)])
    nbformat.write(lesson, tmp_path / "notebooks" / "00_lesson.ipynb")
    target = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("## The `def` section\n\n## Is it `def`?")]
    )
    nbformat.write(target, tmp_path / "notebooks" / "01_next.ipynb")
    broken = broken_links(tmp_path / "notebooks" / "00_lesson.ipynb", root=tmp_path)
    assert [link.split(" (")[0] for link in broken] == [
        "02_missing.ipynb", "01_next.ipynb#No-such-section", "../solutions/",
        "../README.md/", "../../elsewhere.txt", "file:///etc/passwd",
        "../exercises/00_missing.ipynb", "../nothing.md",
    ]


@pytest.mark.parametrize("name", [n for n in notebook_names() if n[:2].isdigit()])
def test_lesson_structure(name):
    cells = nbformat.read(NOTEBOOKS / name, as_version=4).cells
    title = cells[0].source
    assert cells[0].cell_type == "markdown" and title.startswith("# ")
    assert "Estimated time" in title and "will be able to" in title
    assert "Index](index.ipynb)" in title and "Index](index.ipynb)" in cells[-1].source
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "Key points" in markdown and "Predict" in markdown
    for before, cell in zip(cells, cells[1:], strict=False):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown", (
                f"{name}: the code cell starting {cell.source[:40]!r} has no sentence before it"
            )
    assert any("quiz" in c.source for c in cells if c.cell_type == "code"), f"{name}: no quiz"
    # a picture: a plot, or the app doctor's report, whose display includes one
    assert any(
        "plot" in c.source or "examine(" in c.source for c in cells if c.cell_type == "code"
    ), f"{name}: no picture"


def test_within_bounds():
    assert Within(1.0, 1.2).holds(2.2, 2.0) == (True, pytest.approx(1.1))
    assert Within(1.0, 1.2).holds(3.0, 2.0)[0] is False
    assert Within(0.4, 0.6).holds(0.5, None) == (True, 0.5)


@pytest.mark.notebook
def test_check_notebook_fails_on_a_child_process_left_running(tmp_path):
    """A notebook that starts a process and never stops it fails the check."""
    path = tmp_path / "leaky.ipynb"
    # the child waits for its stdin to close, so it ends with the kernel instead of lingering
    cells = [nbformat.v4.new_code_cell(
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'],\n"
        "                         stdin=subprocess.PIPE)"
    )]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    with pytest.raises(AssertionError, match="left child processes running: .*sys.stdin.read"):
        check_notebook(path, {})


LESSONS_WITH_EXERCISES = [n for n in notebook_names() if n[:2] in {f"0{i}" for i in range(1, 8)}]


@pytest.mark.parametrize("name", LESSONS_WITH_EXERCISES)
def test_lessons_01_to_07_link_their_exercise_first_and_last(name):
    """Each of lessons 01-07 links its exercise notebook in its title cell, its last cell and the
    index, and the link leads to a notebook that exists."""
    assignment = name.removesuffix(".ipynb")
    target = f"../exercises/{assignment}/{assignment}.ipynb"
    assert (NOTEBOOKS / target).resolve().is_file(), f"{target} does not exist"
    cells = nbformat.read(NOTEBOOKS / name, as_version=4).cells
    assert f"]({target})" in cells[0].source and f"]({target})" in cells[-1].source, name
    index = (NOTEBOOKS / "index.ipynb").read_text()
    assert f"]({target})" in index, f"the index does not link {target}"


def test_nothing_is_left_in_preparation():
    texts = [*NOTEBOOKS.glob("*.ipynb"), *ROOT.glob("exercises/*/*.ipynb"), ROOT / "README.md"]
    stale = [p.name for p in texts if "in preparation" in p.read_text()]
    assert not stale, f"'in preparation' still stands in {stale}"
