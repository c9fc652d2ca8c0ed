"""Run an exercise's nbgrader source notebook headless, as written or with every solution region
replaced by ``raise NotImplementedError()`` (what a learner's untouched release notebook does)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.notebook_runner import ROOT

SOLUTIONS = ROOT / "solutions"
CELL_TIMEOUT_S = 60
_REGION = re.compile(r"^( *)### BEGIN SOLUTION\n.*?^ *### END SOLUTION *$", re.S | re.M)
ALIVE = "the kernel is still alive"


@dataclass
class GradedCell:
    grade_id: str
    points: float
    stdout: str
    stderr: str
    error: str | None


def nbgrader(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def stub_solutions(notebook: nbformat.NotebookNode) -> int:
    """Replace every solution region as nbgrader's release does; return how many there were."""
    count = 0
    for cell in notebook.cells:
        if cell.cell_type == "code" and nbgrader(cell).get("solution"):
            cell.source, replaced = _REGION.subn(r"\1raise NotImplementedError()", cell.source)
            assert replaced, f"solution cell {nbgrader(cell)['grade_id']} has no solution region"
            count += replaced
    return count


def run_exercise(
    path: Path, *, stubbed: bool = False, env: dict[str, str] | None = None,
) -> tuple[list[GradedCell], list[str], str]:
    """Execute the notebook (errors allowed, as nbgrader does) with a last cell that proves the
    kernel survived; return its graded cells, every stderr text, and the last cell's output.
    ``env`` is added to the kernel's environment."""
    notebook = nbformat.read(path, as_version=4)
    if stubbed:
        assert stub_solutions(notebook) > 0
    notebook.cells.append(nbformat.v4.new_code_cell(f"print({ALIVE!r})"))
    saved = dict(os.environ)
    os.environ.update(env or {})  # the kernel starts with this process's environment
    try:
        NotebookClient(
            notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=True,
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    graded, stderr = [], []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        texts = {"stdout": "", "stderr": ""}
        error = None
        for output in cell.outputs:
            if output.output_type == "stream":
                texts[output.name] += output.text
            elif output.output_type == "error":
                error = f"{output.ename}: {output.evalue}"
        if texts["stderr"]:
            stderr.append(texts["stderr"])
        meta = nbgrader(cell)
        if meta.get("grade"):
            graded.append(GradedCell(meta["grade_id"], meta["points"], texts["stdout"],
                                     texts["stderr"], error))
    last = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    return graded, stderr, last


def verdicts(path: Path, *, stubbed: bool = False) -> tuple[dict[str, tuple[str, str]], str]:
    """``run_exercise`` as a mapping grade_id -> (stdout, error or ""), and the last cell's
    output; fails on any stderr output."""
    graded, stderr, last = run_exercise(path, stubbed=stubbed)
    assert stderr == [], stderr
    return {cell.grade_id: (cell.stdout, cell.error or "") for cell in graded}, last


def assert_well_formed(path: Path, total_points: float) -> None:
    """Stored without outputs, a markdown cell before every code cell, nbgrader metadata that
    nbgrader accepts (schema 3, unique ids, points on graded cells), and the stated total."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    ids = [nbgrader(c)["grade_id"] for c in notebook.cells if nbgrader(c)]
    assert len(ids) == len(set(ids)) == len(notebook.cells), "every cell has a unique grade_id"
    points = 0.0
    for index, cell in enumerate(notebook.cells):
        meta = nbgrader(cell)
        assert meta["schema_version"] == 3
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"cell {index} has outputs"
            assert notebook.cells[index - 1].cell_type == "markdown", f"cell {index}"
        if meta["grade"]:
            assert meta["locked"] and not meta["solution"] and meta["points"] > 0
            assert 'fresh("lesson' in cell.source
            points += meta["points"]
        if meta["solution"]:
            assert not meta["locked"] and "### BEGIN SOLUTION" in cell.source
    assert points == total_points
