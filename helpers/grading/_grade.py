"""Grade a folder of student notebooks: generate the release, collect, autograde each
submission in parallel worker slots under a time bound, write feedback and the gradebook.

Every submission gets a row: one whose kernel died (``os._exit`` in a cell: nbgrader then drops
the whole notebook) scores 0 with the reason "the kernel died"; one that overran the bound is
killed and scores 0 with "timed out after N s"; both get a feedback page saying so.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path

from ._collect import Collected, Submission, collect
from ._course import assignments_in, handed_in_with
from ._nbgrader import Course
from ._report import GradeCell, Row, grade_cells, task_reasons, write_csv, write_notice
from ._runner import Finished, run_in_child, run_jobs

__all__ = ["GradeOptions", "GradeResult", "grade"]

# Working data this command owns inside --out (removed and rebuilt on every run).
_OWNED = ("course", "workers", "collected", "autograded", "feedback", "logs", "gradebook.csv")


class GradingError(RuntimeError):
    """The batch cannot start (nothing to grade, files that cannot be placed, a bad source)."""


@dataclass(frozen=True)
class GradeOptions:
    """What to grade, where from and to, and the bounds to grade it under."""

    submissions: Path
    out: Path
    solutions: Path
    config_file: Path
    assignments: tuple[str, ...] = ()
    workers: int = 2
    timeout_s: float = 300.0
    cell_timeout_s: int | None = None
    pattern: str | None = None
    log: Callable[[str], None] = print


@dataclass
class GradeResult:
    """The gradebook's rows, where the CSV and feedback went, and how long it all took."""

    rows: list[Row]
    csv: Path
    feedback: Path
    collected: Collected
    seconds: float
    columns: dict[str, list[GradeCell]] = field(default_factory=dict)


def _generate_child(course: Course, assignments: list[str], result: Path) -> None:
    errors = {}
    for name in assignments:
        outcome = course.generate(name)
        if not outcome.success:
            errors[name] = outcome.error or outcome.log
    result.write_text(json.dumps(errors))


def _autograde_child(course: Course, assignment: str, student: str, result: Path) -> None:
    outcome = course.autograde(assignment, student)
    record: dict[str, object] = {"success": outcome.success, "log": outcome.log[-4000:],
                                 "error": outcome.error[-4000:]}
    if outcome.success:
        record["scores"] = course.scores(assignment, student)
        feedback = course.feedback(assignment, student)
        record["feedback"] = feedback.success
        if not feedback.success:
            record["feedback_error"] = (feedback.error or feedback.log)[-2000:]
    result.write_text(json.dumps(record))


def _failure_reason(record: dict[str, object]) -> tuple[str, str]:
    """(status, reason) for a submission nbgrader did not grade, from what it logged."""
    said = f"{record.get('log', '')}\n{record.get('error', '')}"
    if "DeadKernelError" in said or "Kernel died" in said:
        return "kernel died", (
            "the kernel died (a cell ended the Python process, e.g. os._exit() or a crash); "
            "nbgrader drops such a notebook, so no task scored"
        )
    if "NotJSONError" in said or "does not appear to be JSON" in said:
        return "failed", "the file is not a readable notebook (.ipynb JSON)"
    errors = [line for line in said.splitlines() if "ERROR" in line or "Error" in line]
    return "failed", "nbgrader could not grade it: " + (errors[-1].strip() if errors else "?")


def _prepare(options: GradeOptions) -> tuple[list[str], Collected]:
    available = assignments_in(options.solutions)
    if not available:
        raise GradingError(f"no assignments in {options.solutions} (expected <name>/<name>.ipynb)")
    unknown = [a for a in options.assignments if a not in available]
    if unknown:
        raise GradingError(
            f"no such assignment in {options.solutions}: {', '.join(unknown)} "
            f"(there: {', '.join(available)})"
        )
    names = list(options.assignments) or available
    if not options.submissions.is_dir():
        raise GradingError(f"{options.submissions} is not a folder")
    if options.submissions.resolve().is_relative_to(options.out.resolve()):
        # grading rebuilds its own folders in --out: it must never touch what it grades
        raise GradingError(f"--out {options.out} holds the submissions: choose another folder")
    shutil.rmtree(options.out / "collected", ignore_errors=True)
    hand_in_with = {
        name: handed_in_with(options.solutions / name / f"{name}.ipynb") for name in names
    }
    collected = collect(
        options.submissions, names, options.out / "collected", options.pattern, available,
        hand_in_with,
    )
    if collected.unplaced:
        listing = "\n".join(f"  {name}: {why}" for name, why in collected.unplaced)
        raise GradingError(
            f"{len(collected.unplaced)} notebook(s) in {options.submissions} could not be "
            f"placed:\n{listing}\nRename them (see the accepted names in README.md, 'For "
            "instructors') or pass --pattern with (?P<student>...) and (?P<assignment>...)."
        )
    if not collected.submissions:
        raise GradingError(
            f"no notebooks for {', '.join(names)} in {options.submissions}"
            + (f" (skipped: {', '.join(collected.skipped)})" if collected.skipped else "")
        )
    # only now that the batch can start: the last run's results go
    for owned in _OWNED:
        target = options.out / owned
        if owned == "collected":
            continue
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    graded = sorted({s.assignment for s in collected.submissions})
    return graded, collected


def _move(source: Path, target: Path) -> None:
    if source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))


def grade(options: GradeOptions) -> GradeResult:
    """Grade every notebook in ``options.submissions``; write feedback pages and the CSV."""
    started = time.monotonic()
    out = options.out
    names, collected = _prepare(options)
    if collected.skipped:
        shown = ", ".join(collected.skipped[:5]) + (", …" if len(collected.skipped) > 5 else "")
        options.log(f"skipped {len(collected.skipped)} file(s), not notebooks of "
                    f"{', '.join(names)}: {shown}")
    options.log(
        f"collected {len(collected.submissions)} notebook(s) of "
        f"{len({s.student for s in collected.submissions})} student(s) for {', '.join(names)}"
    )

    release = out / "course" / "release"
    base = Course(out / "course", options.config_file, options.solutions, release,
                  options.cell_timeout_s)
    generated = out / "course" / "generated.json"
    process = run_in_child(_generate_child, (base, names, generated), out / "logs" / "generate.log")
    process.join()
    errors = json.loads(generated.read_text()) if generated.exists() else {"?": "no result"}
    if errors:
        raise GradingError(f"nbgrader generate_assignment failed (log: {out / 'logs'}):\n"
                           + "\n".join(f"{name}: {error}" for name, error in errors.items()))
    columns = {
        name: grade_cells(options.solutions / name / f"{name}.ipynb") for name in names
    }

    workers = max(1, min(options.workers, len(collected.submissions)))
    slots = []
    for slot in range(workers):
        root = out / "workers" / f"w{slot}"
        root.mkdir(parents=True)
        shutil.copyfile(base.database, root / "gradebook.db")
        slots.append(Course(root, options.config_file, options.solutions, release,
                            options.cell_timeout_s))

    def launch(submission: Submission, slot: int) -> BaseProcess:
        course = slots[slot]
        name = submission.assignment
        target = course.root / "submitted" / submission.student / name / f"{name}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(submission.notebook, target)
        for relative, file in submission.files:  # the folders handed in with the notebook
            (target.parent / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target.parent / relative)
        result = course.root / "results" / f"{submission.student}__{name}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        log = out / "logs" / f"{submission.student}__{name}.log"
        return run_in_child(_autograde_child, (course, name, submission.student, result), log)

    rows: list[Row] = []
    jobs = collected.submissions
    for number, finished in enumerate(
        run_jobs(jobs, workers, options.timeout_s, launch), start=1
    ):
        row = _row(finished, slots[finished.slot], columns, options)
        rows.append(row)
        options.log(
            f"[{number}/{len(jobs)}] {row.student} · {row.assignment}: "
            f"{row.total:g}/{row.max_score:g} {row.status} ({finished.seconds:.1f} s)"
        )

    students = sorted({row.student for row in rows})
    handed_in = {(row.student, row.assignment) for row in rows}
    for student in students:
        for name in names:
            if (student, name) not in handed_in:
                rows.append(Row(student, name, {c.grade_id: 0.0 for c in columns[name]},
                                sum(c.points for c in columns[name]), "not submitted",
                                "no notebook for this assignment"))
    rows.sort(key=lambda row: (row.student, row.assignment))
    csv_path = out / "gradebook.csv"
    write_csv(csv_path, rows, columns)
    return GradeResult(rows, csv_path, out / "feedback", collected,
                       time.monotonic() - started, columns)


def _row(
    finished: Finished[Submission], course: Course, columns: dict[str, list[GradeCell]],
    options: GradeOptions,
) -> Row:
    """The gradebook row of a finished job; its outputs moved from the slot to ``out``."""
    submission = finished.job
    student, name = submission.student, submission.assignment
    cells = columns[name]
    row = Row(student, name, {c.grade_id: 0.0 for c in cells}, sum(c.points for c in cells),
              seconds=finished.seconds)
    result = course.root / "results" / f"{student}__{name}.json"
    autograded = options.out / "autograded" / student / name
    feedback = options.out / "feedback" / student / name / f"{name}.html"
    _move(course.root / "autograded" / student / name, autograded)
    _move(course.root / "feedback" / student / name, feedback.parent)
    shutil.rmtree(course.root / "submitted" / student, ignore_errors=True)
    shutil.rmtree(course.root / "autograded" / student, ignore_errors=True)
    shutil.rmtree(course.root / "feedback" / student, ignore_errors=True)

    record: dict[str, object] = {}
    if result.exists():
        record = json.loads(result.read_text())
        result.unlink()
    if finished.timed_out:
        row.status = "timed out"
        row.reason = (f"timed out after {options.timeout_s:g} s: grading was stopped and no "
                      "task scored (a cell that never ends, or one that ignores interrupts)")
    elif not record:
        row.status = "failed"
        row.reason = f"the grading process ended with exit code {finished.exitcode}"
    elif not record.get("success"):
        row.status, row.reason = _failure_reason(record)
    else:
        scores = record.get("scores", {})
        assert isinstance(scores, dict)
        for cell in cells:
            value = scores.get(cell.grade_id)
            row.scores[cell.grade_id] = float(value) if value is not None else 0.0
        notebook = autograded / f"{name}.ipynb"
        reasons = (
            task_reasons(notebook, row.scores, cells, options.cell_timeout_s)
            if notebook.exists() else {}
        )
        row.reason = "; ".join(f"{g}: {why}" for g, why in reasons.items()) or "full marks"
        if not record.get("feedback"):
            row.reason += "; (no feedback page: nbgrader generate_feedback failed)"
    if row.status != "graded":
        write_notice(feedback, row)
    return row
