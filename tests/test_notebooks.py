"""Checks every notebook must pass: stored clean, links resolve, lesson structure, and a test
module that executes it (``tests/test_lesson_*.py`` call ``check_notebook`` with its claims)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.notebook_runner import NOTEBOOKS, Within, check_notebook


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


LINK = re.compile(r"\]\(([^)\s]+\.ipynb)\)")


@pytest.mark.parametrize("name", notebook_names())
def test_links_between_notebooks_resolve(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    text = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    missing = [link for link in LINK.findall(text) if not (NOTEBOOKS / link).resolve().exists()]
    assert not missing, f"{name} links to notebooks that do not exist: {missing}"


@pytest.mark.parametrize("name", [n for n in notebook_names() if n[:2].isdigit()])
def test_lesson_structure(name):
    cells = nbformat.read(NOTEBOOKS / name, as_version=4).cells
    title = cells[0].source
    assert cells[0].cell_type == "markdown" and title.startswith("# ")
    assert "Estimated time" in title and "will be able to" in title
    assert "Index](index.ipynb)" in title and "Index](index.ipynb)" in cells[-1].source
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "Key points" in markdown and "Predict" in markdown
    for before, cell in zip(cells, cells[1:]):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown", (
                f"{name}: the code cell starting {cell.source[:40]!r} has no sentence before it"
            )
    assert any("quiz" in c.source for c in cells if c.cell_type == "code"), f"{name}: no quiz"
    assert any("plot" in c.source for c in cells if c.cell_type == "code"), f"{name}: no picture"


def test_within_bounds():
    assert Within(1.0, 1.2).holds(2.2, 2.0) == (True, pytest.approx(1.1))
    assert Within(1.0, 1.2).holds(3.0, 2.0)[0] is False
    assert Within(0.4, 0.6).holds(0.5, None) == (True, 0.5)
