"""`course.py grade` end to end with real nbgrader, on the two-task fixture assignment
(tests/fixtures/grading): the solution scores full marks, the untouched exercise 0 with a reason
per task, and a batch of broken and hostile submissions is graded completely, one row each.

One batch of 18 submissions is graded once for all the tests here (2 workers, cells bounded to
6 s, submissions to 30 s), the way an instructor runs it: a folder downloaded from an LMS, with
flat files, a folder per student, zip files and Canvas-style names.
"""

from __future__ import annotations

import copy
import csv
import fcntl
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "grading"
SOLUTION = FIXTURE / "solutions" / "fixture" / "fixture.ipynb"
RELEASE = FIXTURE / "exercises" / "fixture" / "fixture.ipynb"
CELL_TIMEOUT_S = 6
SUBMISSION_TIMEOUT_S = 30
# The whole module took 51-54 s here with 2 workers (6 runs, 2 of them beside a busy process;
# 30 s of it is one submission running into its bound on purpose); room for a busy machine.
BATCH_BOUND_S = 180

SOLVED_ONE = "task1_double"
SOLVED_TWO = "task2_both"
FULL = {SOLVED_ONE: 10.0, SOLVED_TWO: 10.0}


def _cells(notebook: dict[str, Any]) -> list[dict[str, Any]]:
    return notebook["cells"]


def _grade_id(cell: dict[str, Any]) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _index(notebook: dict[str, Any], grade_id: str) -> int:
    return next(i for i, c in enumerate(_cells(notebook)) if _grade_id(c) == grade_id)


def _release() -> dict[str, Any]:
    return json.loads(RELEASE.read_text())


def _solved(*grade_ids: str) -> dict[str, Any]:
    """The student notebook with the given solution cells (default: all) filled in from the
    nbgrader source, as a student who solved them would hand it in."""
    notebook = _release()
    source = {_grade_id(c): c for c in _cells(json.loads(SOLUTION.read_text()))}
    for cell in _cells(notebook):
        grade_id = _grade_id(cell)
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and (
            not grade_ids or grade_id in grade_ids
        ):
            text = "".join(source[grade_id]["source"])
            cell["source"] = re.sub(r"\n? *### (BEGIN|END) SOLUTION", "", text)
    return notebook


def _code(text: str, cell_id: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": {},
            "outputs": [], "source": text}


def _insert_before(notebook: dict[str, Any], grade_id: str, text: str) -> dict[str, Any]:
    notebook = copy.deepcopy(notebook)
    _cells(notebook).insert(_index(notebook, grade_id), _code(text, f"added-{grade_id}"))
    return notebook


def _set_source(notebook: dict[str, Any], grade_id: str, text: str) -> dict[str, Any]:
    notebook = copy.deepcopy(notebook)
    _cells(notebook)[_index(notebook, grade_id)]["source"] = text
    return notebook


def _without(notebook: dict[str, Any], grade_id: str) -> dict[str, Any]:
    notebook = copy.deepcopy(notebook)
    del _cells(notebook)[_index(notebook, grade_id)]
    return notebook


FAKE_SUCCESS = "✔ Task 1: double(0), double(2), double(-3) gave [0, 4, -6]"

# student id -> (the notebook, expected scores, expected status, a pattern its reason matches)
BATCH: dict[str, tuple[dict[str, Any], dict[str, float], str, str]] = {
    "solution": (_solved(), FULL, "graded", r"^full marks$"),
    "untouched": (
        _release(), {SOLVED_ONE: 0, SOLVED_TWO: 0}, "graded",
        r"task1_double: AssertionError: ✘ Task 1: double\(\) still raises NotImplementedError"
        r".*; task2_both: AssertionError: ✘ Task 2: both\(\) still raises NotImplementedError",
    ),
    "exception": (
        _set_source(_solved(), "double_solution", "def double(x):\n    raise ValueError('no')"),
        {SOLVED_ONE: 0, SOLVED_TWO: 10}, "graded", r"^task1_double: ValueError: no$",
    ),
    "endless_loop": (
        _insert_before(_solved(), "both_solution", "while True:\n    pass"),
        {SOLVED_ONE: 10, SOLVED_TWO: 10}, "graded", r"^full marks$",
    ),
    "blocks_forever": (
        _set_source(_solved(), "both_solution",
                    "import time\n\n\nasync def both(first, second):\n    time.sleep(10**9)"),
        {SOLVED_ONE: 10, SOLVED_TWO: 0}, "graded", r"^task2_both: AssertionError: .*did not finish",
    ),
    # asleep in C holding the GIL, with SIGINT blocked: no interrupt reaches it, and the kernel
    # cannot even notice that nbgrader is gone; only the time bound's kill ends it (and unlike
    # a busy loop it burns no CPU beside the suite's timing tests)
    "never_yields": (
        _insert_before(
            _solved(), "double_solution",
            "import ctypes\nimport signal\n\nsignal.pthread_sigmask(signal.SIG_BLOCK, "
            "{signal.SIGINT})\nctypes.PyDLL(None).sleep(10**6)",
        ),
        {SOLVED_ONE: 0, SOLVED_TWO: 0}, "timed out", rf"^timed out after {SUBMISSION_TIMEOUT_S} s",
    ),
    "sys_exit": (
        _set_source(_solved(), "double_solution",
                    "import sys\nsys.exit()\n\n\ndef double(x):\n    return 2 * x"),
        {SOLVED_ONE: 0, SOLVED_TWO: 10}, "graded", r"^task1_double: NameError",
    ),
    "os_exit": (
        _insert_before(_solved(), "both_solution", "import os\nos._exit(1)"),
        {SOLVED_ONE: 0, SOLVED_TWO: 0}, "kernel died", r"^the kernel died",
    ),
    "deleted_failing_test": (
        _without(_solved("both_solution"), SOLVED_ONE),
        {SOLVED_ONE: 0, SOLVED_TWO: 10}, "graded", r"^task1_double: AssertionError: ✘ Task 1",
    ),
    "deleted_passing_test": (_without(_solved(), SOLVED_ONE), FULL, "graded", r"^full marks$"),
    "edited_test": (
        _set_source(_solved("both_solution"), SOLVED_ONE, "assert True"),
        {SOLVED_ONE: 0, SOLVED_TWO: 10}, "graded", r"^task1_double: AssertionError: ✘ Task 1",
    ),
    "patched_check": (
        _insert_before(
            _solved("both_solution"), SOLVED_ONE,
            "import fixture_checks\n\n"
            f"fixture_checks.check_double = lambda f: print({FAKE_SUCCESS!r})",
        ),
        {SOLVED_ONE: 0, SOLVED_TWO: 10}, "graded", r"^task1_double: AssertionError: ✘ Task 1",
    ),
    "fake_success": (
        _insert_before(_solved("both_solution"), SOLVED_ONE, f"print({FAKE_SUCCESS!r})"),
        {SOLVED_ONE: 0, SOLVED_TWO: 10}, "graded", r"^task1_double: AssertionError: ✘ Task 1",
    ),
    "stderr_to_stdout": (
        _insert_before(_solved("both_solution"), SOLVED_ONE, "import sys\nsys.stderr = sys.stdout"),
        {SOLVED_ONE: 0, SOLVED_TWO: 10}, "graded", r"^task1_double: AssertionError: ✘ Task 1",
    ),
    # a server's log line on stderr during a graded cell: IgnorePattern drops it (nbgrader
    # would score any stderr 0); any other stderr still costs the task
    "server_log_line": (
        _set_source(_solved(), "double_solution",
                    "import sys\n\n\ndef double(x):\n    print('INFO:     Started server "
                    "process [42]', file=sys.stderr)\n    return 2 * x"),
        FULL, "graded", r"^full marks$",
    ),
    "writes_stderr": (
        _set_source(_solved(), "double_solution",
                    "import sys\n\n\ndef double(x):\n    print('oops', file=sys.stderr)\n"
                    "    return 2 * x"),
        {SOLVED_ONE: 0, SOLVED_TWO: 10}, "graded", r"^task1_double: wrote to stderr: oops",
    ),
    "huge_output": (
        _insert_before(_solved(), "both_solution", "for i in range(200_000):\n    print(i)"),
        FULL, "graded", r"^full marks$",
    ),
}
NOT_A_NOTEBOOK = "not_json"


def _write(folder: Path, student: str, notebook: dict[str, Any]) -> None:
    """Hand the notebook in under one of the LMS naming schemes grading accepts."""
    text = json.dumps(notebook)
    scheme = sorted(BATCH).index(student) % 4
    if scheme == 0:  # flat: <student>_<assignment>.ipynb
        (folder / f"{student}_fixture.ipynb").write_text(text)
    elif scheme == 1:  # a folder per student
        (folder / student).mkdir()
        (folder / student / "fixture.ipynb").write_text(text)
    elif scheme == 2:  # a zip per student, named after the student
        with zipfile.ZipFile(folder / f"{student}.zip", "w") as archive:
            archive.writestr("fixture.ipynb", text)
    else:  # Canvas: <name>_<user id>_<submission id>_<file name>-<resubmission>
        (folder / f"{_student(student)}_900_fixture-1.ipynb").write_text(text)


def _student(row_id: str) -> str:
    """The student id a row of BATCH ends up under (Canvas: name and user id)."""
    scheme = sorted(BATCH).index(row_id) % 4
    return f"{row_id.replace('_', '')}_{len(row_id)}" if scheme == 3 else row_id


@pytest.fixture(scope="session")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The batch's rows, the grading output and its wall time: graded once per test run.

    pytest-xdist may run this file's tests on both workers (seen here despite conftest.py's
    per-file xdist_group): the first to need it grades the batch under a lock, the other
    reads the result it saved.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _grade_batch(tmp_path_factory.mktemp("grading"))
    shared = tmp_path_factory.getbasetemp().parent  # one folder per run, shared by workers
    with (shared / "grading-batch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = shared / "grading-batch.json"
        if not saved.exists():
            result = _grade_batch(shared / "grading-batch")
            saved.write_text(json.dumps({**result, "out": str(result["out"])}))
        result = json.loads(saved.read_text())
    return {**result, "out": Path(result["out"])}


def _grade_batch(base: Path) -> dict[str, Any]:
    """Grade the whole batch with the real CLI; its rows, output and wall time."""
    base.mkdir(parents=True, exist_ok=True)
    submissions, out = base / "downloaded", base / "out"
    submissions.mkdir()
    for student, (notebook, *_) in BATCH.items():
        _write(submissions, student, notebook)
    (submissions / f"{NOT_A_NOTEBOOK}_fixture.ipynb").write_text("this is not JSON")
    (submissions / "readme.txt").write_text("the LMS put this here")
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "helpers.grading", "--course", str(ROOT),
         "--solutions", str(FIXTURE / "solutions"),
         "grade", str(submissions), "--out", str(out), "--workers", "2",
         "--timeout", str(SUBMISSION_TIMEOUT_S), "--cell-timeout", str(CELL_TIMEOUT_S)],
        capture_output=True, text=True, timeout=BATCH_BOUND_S + 60, cwd=base,
    )
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stdout + run.stderr
    with (out / "gradebook.csv").open(encoding="utf-8") as source:
        rows = {row["student"]: row for row in csv.DictReader(source)}
    return {"rows": rows, "out": out, "stdout": run.stdout, "seconds": seconds}


def test_the_batch_is_graded_completely_within_its_bound(graded: dict[str, Any]) -> None:
    expected = {_student(s) for s in BATCH} | {NOT_A_NOTEBOOK}
    assert set(graded["rows"]) == expected
    assert graded["seconds"] < BATCH_BOUND_S, graded["stdout"]
    assert "skipped 1 file(s), not notebooks of fixture: readme.txt" in graded["stdout"]


def test_the_gradebook_has_a_column_per_task_then_total_max_status_reason(
    graded: dict[str, Any],
) -> None:
    header = list(next(iter(graded["rows"].values())))
    assert header == ["student", "assignment", "fixture:task1_double", "fixture:task2_both",
                      "total", "max", "status", "reason", "seconds"]


@pytest.mark.parametrize("student", sorted(BATCH))
def test_each_submission_gets_its_score_status_and_reason(
    graded: dict[str, Any], student: str,
) -> None:
    _, scores, status, reason = BATCH[student]
    row = graded["rows"][_student(student)]
    got = {grade_id: float(row[f"fixture:{grade_id}"]) for grade_id in scores}
    assert (got, row["status"]) == (scores, status), row
    assert float(row["total"]) == sum(scores.values()) and float(row["max"]) == 20, row
    assert re.search(reason, row["reason"]), row["reason"]


def test_a_file_that_is_not_a_notebook_still_gets_a_row(graded: dict[str, Any]) -> None:
    row = graded["rows"][NOT_A_NOTEBOOK]
    assert (row["total"], row["status"]) == ("0", "failed")
    assert "not a readable notebook" in row["reason"]


def test_every_submission_gets_a_feedback_page(graded: dict[str, Any]) -> None:
    for student in graded["rows"]:
        page = graded["out"] / "feedback" / student / "fixture" / "fixture.html"
        assert page.is_file(), student


def test_the_untouched_exercise_feedback_says_per_task_why(graded: dict[str, Any]) -> None:
    student = _student("untouched")
    page = (graded["out"] / "feedback" / student / "fixture" / "fixture.html").read_text()
    assert "Task 1: double() still raises NotImplementedError" in page
    assert "Task 2: both() still raises NotImplementedError" in page
    assert "Score: 0.0 / 20.0" in page or re.search(r"0(\.0)? / 20", page)


def test_a_dead_kernel_and_a_timeout_are_told_in_the_feedback(graded: dict[str, Any]) -> None:
    for student, words in [("os_exit", "the kernel died"), ("never_yields", "timed out")]:
        page = graded["out"] / "feedback" / _student(student) / "fixture" / "fixture.html"
        assert words in page.read_text(), student


def test_a_200000_line_output_is_cut_in_the_autograded_notebook_and_feedback(
    graded: dict[str, Any],
) -> None:
    student = _student("huge_output")
    notebook = graded["out"] / "autograded" / student / "fixture" / "fixture.ipynb"
    page = graded["out"] / "feedback" / student / "fixture" / "fixture.html"
    assert "Output truncated" in notebook.read_text()
    # 200,000 lines are 1.3 MB of text; cut to 1000 lines, the notebook stayed near 20 kB
    assert notebook.stat().st_size < 200_000 and page.stat().st_size < 1_000_000


def test_the_time_bound_stops_a_submission_that_never_ends(graded: dict[str, Any]) -> None:
    row = graded["rows"][_student("never_yields")]
    assert SUBMISSION_TIMEOUT_S <= float(row["seconds"]) < SUBMISSION_TIMEOUT_S + 5, row


def test_no_kernel_or_other_process_outlives_the_batch(graded: dict[str, Any]) -> None:
    # every notebook's kernel ran in a folder below --out; none may still run there
    out = str(graded["out"])
    left = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str((proc / "cwd").resolve()).startswith(out):
                left.append((proc.name, (proc / "cmdline").read_bytes().replace(b"\0", b" ")))
        except OSError:
            continue
    assert not left, left
