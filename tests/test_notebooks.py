"""Every lesson notebook runs headless from a clean kernel, and every timing claim holds.

Each notebook reports its timing cells through ``helpers.timing.report``; CLAIMS below states,
for every label a notebook reports, the tolerance the test holds it to. A label without a
tolerance fails the test: no claim goes unchecked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import nbformat
import pytest

from tests.notebook_runner import NOTEBOOKS, execute

MAX_CELL_S = 15.0


@dataclass(frozen=True)
class Within:
    """measured ÷ ideal must lie in [low, high] (or, with no ideal, measured seconds)."""

    low: float
    high: float

    def holds(self, measured_s: float, ideal_s: float | None) -> tuple[bool, float]:
        value = measured_s / ideal_s if ideal_s else measured_s
        return self.low <= value <= self.high, value


CLAIMS: dict[str, dict[str, Within]] = {
    "index.ipynb": {},
    "00_start_here.ipynb": {
        # ten overlapping 0.5 s waits: close to one wait, nowhere near ten
        "10 requests at once, each waiting 0.5 s": Within(1.0, 1.4),
    },
}


def lesson_notebooks() -> list[str]:
    return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_has_stated_claims():
    assert set(lesson_notebooks()) == set(CLAIMS), "add the new notebook to CLAIMS"


@pytest.mark.notebook
@pytest.mark.parametrize("name", lesson_notebooks())
def test_notebook_runs_and_its_claims_hold(name):
    executed = execute(name)
    assert executed.servers_left == [], f"{name} left servers running: {executed.servers_left}"
    slow = [(i, round(s, 1)) for i, s in executed.cell_seconds if s > MAX_CELL_S]
    assert not slow, f"cells slower than {MAX_CELL_S} s (index, seconds): {slow}"

    expected = CLAIMS[name]
    reported = executed.measurements
    assert set(reported) == set(expected), (
        f"reported: {sorted(reported)}; tolerances stated for: {sorted(expected)}"
    )
    failures = []
    for label, tolerance in expected.items():
        m = reported[label]
        ok, value = tolerance.holds(m["measured_s"], m["ideal_s"])
        if not ok:
            failures.append(f"{label}: {value:.2f} not in [{tolerance.low}, {tolerance.high}]")
    assert not failures, "; ".join(failures)
    assert "Traceback" not in executed.text_output()


@pytest.mark.parametrize("name", lesson_notebooks())
def test_notebook_is_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    dirty = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: cells {dirty} hold outputs; clear them before committing"


LINK = re.compile(r"\]\(([^)\s]+\.ipynb)\)")


@pytest.mark.parametrize("name", lesson_notebooks())
def test_links_between_notebooks_resolve(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    text = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    missing = [link for link in LINK.findall(text) if not (NOTEBOOKS / link).exists()]
    assert not missing, f"{name} links to notebooks that do not exist: {missing}"


@pytest.mark.parametrize("name", [n for n in lesson_notebooks() if n[:2].isdigit()])
def test_lesson_structure(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    cells = notebook.cells
    title = cells[0].source
    assert cells[0].cell_type == "markdown" and title.startswith("# ")
    assert "Estimated time" in title and ("will be able to" in title or "Objectives" in title)
    assert "Index](index.ipynb)" in title and "Index](index.ipynb)" in cells[-1].source
    assert "Key points" in "\n".join(c.source for c in cells if c.cell_type == "markdown")
    for before, cell in zip(cells, cells[1:]):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown", (
                f"{name}: code cell starting {cell.source[:40]!r} has no sentence before it"
            )
    assert any("quiz" in c.source for c in cells if c.cell_type == "code"), f"{name} has no quiz"
