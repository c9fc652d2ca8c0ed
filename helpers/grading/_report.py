"""What the gradebook says about each submission: a score per graded cell, the total, a status
and a reason a person can act on, read from the autograded notebook; and the CSV itself.

nbgrader's own CSV export has totals only. This one has a column per task (graded cell), named
``<assignment>:<grade_id>``, and a row for every submission, graded or not.
"""

from __future__ import annotations

import csv
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GradeCell", "Row", "grade_cells", "task_reasons", "write_csv", "write_notice"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_REASON_CHARS = 200


@dataclass(frozen=True)
class GradeCell:
    """A graded test cell of an assignment: its grade_id and its points."""

    grade_id: str
    points: float


@dataclass
class Row:
    """One line of the gradebook: a student's submission of one assignment."""

    student: str
    assignment: str
    scores: dict[str, float] = field(default_factory=dict)
    max_score: float = 0.0
    status: str = "graded"
    reason: str = ""
    seconds: float | None = None

    @property
    def total(self) -> float:
        return sum(self.scores.values())


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _cells(notebook: Path) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return cells


def grade_cells(source_notebook: Path) -> list[GradeCell]:
    """The graded cells of an nbgrader source notebook, in notebook order."""
    found = []
    for cell in _cells(source_notebook):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            found.append(GradeCell(str(meta["grade_id"]), float(meta.get("points", 0))))
    return found


def _short(text: str) -> str:
    line = " ".join(_ANSI.sub("", text).split())
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 1] + "…"


def _why(cell: dict[str, Any], cell_timeout_s: float | None) -> str:
    """Why a graded cell scored less than full marks, from its outputs."""
    outputs = cell.get("outputs", [])
    for output in outputs:
        if output.get("output_type") != "error":
            continue
        name, value = str(output.get("ename", "")), str(output.get("evalue", ""))
        if name == "CellTimeoutError":
            if cell.get("execution_count") is None:
                return "did not run: an earlier cell held the kernel past the cell timeout"
            limit = f" ({cell_timeout_s:g} s)" if cell_timeout_s else ""
            return f"ran past the cell timeout{limit} and was interrupted"
        if name == "KeyboardInterrupt":
            return "ran past the cell timeout and was interrupted"
        lines = [line.strip() for line in value.strip().splitlines()]
        text = f"{name}: {lines[0]}" if lines else name
        # a check's failure names its likely cause on a line of its own: the part to act on
        cause = next((line for line in lines[1:] if line.startswith("likely cause:")), None)
        return _short(f"{text} ({cause})" if cause else text)
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            return _short(f"wrote to stderr: {_text(output.get('text', '')).strip()}")
    if cell.get("execution_count") is None:
        return "did not run"
    return "scored 0 by nbgrader"


def task_reasons(
    autograded_notebook: Path, scores: dict[str, float], cells: list[GradeCell],
    cell_timeout_s: float | None = None,
) -> dict[str, str]:
    """For each graded cell short of full marks: why, in one line."""
    by_id: dict[str, dict[str, Any]] = {}
    for cell in _cells(autograded_notebook):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id is not None:
            by_id[str(grade_id)] = cell
    reasons: dict[str, str] = {}
    for graded in cells:
        if scores.get(graded.grade_id, 0.0) >= graded.points:
            continue
        found = by_id.get(graded.grade_id)
        reasons[graded.grade_id] = (
            "the cell is missing" if found is None else _why(found, cell_timeout_s)
        )
    return reasons


def write_csv(path: Path, rows: list[Row], columns: dict[str, list[GradeCell]]) -> None:
    """The gradebook: one row per submission, one column per graded cell of each assignment,
    then total, max, status, reason and seconds."""
    task_columns = [(a, cell.grade_id) for a, cells in columns.items() for cell in cells]
    with path.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(
            ["student", "assignment", *(f"{a}:{g}" for a, g in task_columns),
             "total", "max", "status", "reason", "seconds"]
        )
        for row in rows:
            writer.writerow([
                row.student, row.assignment,
                *(
                    _number(row.scores.get(g, 0.0)) if a == row.assignment else ""
                    for a, g in task_columns
                ),
                _number(row.total), _number(row.max_score), row.status, row.reason,
                "" if row.seconds is None else f"{row.seconds:.1f}",
            ])


def _number(value: float) -> str:
    return f"{value:g}"


def write_notice(path: Path, row: Row) -> None:
    """A feedback page for a submission nbgrader could not grade: its score and the reason."""
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"{row.assignment}: feedback for {row.student}"
    path.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f"<p><strong>Score: {_number(row.total)} / {_number(row.max_score)}</strong></p>\n"
        f"<p>Your notebook could not be graded: {html.escape(row.reason)}.</p>\n"
        "<p>Run it from top to bottom yourself (Kernel → Restart Kernel and Run All Cells): "
        "every check should print a line starting with ✔, and the notebook should finish.</p>\n"
        "</body></html>\n",
        encoding="utf-8",
    )
