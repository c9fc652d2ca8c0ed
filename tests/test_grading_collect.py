"""Collecting an LMS download (helpers.grading._collect), the CLI's refusals, the gradebook's
reasons, and the rule that the learner's runtime never imports the grading machinery. Fast:
no notebook runs here (tests/test_grading.py grades end to end)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers.grading._collect import collect
from helpers.grading._report import GradeCell, task_reasons

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_SOLUTIONS = ROOT / "tests" / "fixtures" / "grading" / "solutions"
ASSIGNMENTS = ["01_kitchen", "02_event_loop"]


def _placed(folder: Path, tmp_path: Path, pattern: str | None = None) -> dict[str, str]:
    result = collect(folder, ASSIGNMENTS, tmp_path / "staging", pattern)
    assert not result.unplaced, result.unplaced
    return {s.found_as: f"{s.student}/{s.assignment}" for s in result.submissions}


def _touch(path: Path, text: str = "{}") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_accepted_names_place_each_notebook(tmp_path: Path) -> None:
    download = tmp_path / "download"
    names = {
        "alice_01_kitchen.ipynb": "alice/01_kitchen",
        "01_kitchen_bob.ipynb": "bob/01_kitchen",
        "carol-02_event_loop.ipynb": "carol/02_event_loop",
        "dave/01_kitchen.ipynb": "dave/01_kitchen",
        "Erin Example_4242_assignsubmission_file_/02_event_loop.ipynb":
            "Erin_Example_4242/02_event_loop",
        "doejohn_12345_67890_01_kitchen.ipynb": "doejohn_12345/01_kitchen",
        "roefrank_LATE_23456_78901_01_kitchen-1.ipynb": "roefrank_23456/01_kitchen",
        "grace_02_event_loop (1).ipynb": "grace/02_event_loop",
    }
    for name in names:
        _touch(download / name)
    assert _placed(download, tmp_path) == names


def test_zip_files_are_read_as_folders_named_after_them(tmp_path: Path) -> None:
    download = tmp_path / "download"
    download.mkdir()
    with zipfile.ZipFile(download / "heidi.zip", "w") as archive:
        archive.writestr("01_kitchen.ipynb", "{}")
        archive.writestr("__MACOSX/._01_kitchen.ipynb", "junk")
    with zipfile.ZipFile(download / "submissions.zip", "w") as archive:
        archive.writestr("ivan_02_event_loop.ipynb", "{}")
        archive.writestr("judy/01_kitchen.ipynb", "{}")
        archive.writestr("../escape_01_kitchen.ipynb", "{}")  # never written outside
    assert _placed(download, tmp_path) == {
        "heidi/01_kitchen.ipynb": "heidi/01_kitchen",
        "submissions/ivan_02_event_loop.ipynb": "ivan/02_event_loop",
        "submissions/judy/01_kitchen.ipynb": "judy/01_kitchen",
    }
    assert not list(tmp_path.rglob("escape_*")), "a zip member named ../x was written"


def test_what_cannot_be_placed_is_listed_with_the_reason(tmp_path: Path) -> None:
    download = tmp_path / "download"
    _touch(download / "01_kitchen.ipynb")
    _touch(download / "alice_homework.ipynb")
    _touch(download / "bob_01_kitchen.ipynb")
    _touch(download / "bob" / "01_kitchen.ipynb")
    _touch(download / "notes.txt")
    result = collect(download, ASSIGNMENTS, tmp_path / "staging")
    assert dict(result.unplaced) == {
        "01_kitchen.ipynb": "no student id in its name or its folder's name",
        "alice_homework.ipynb": "names no assignment being graded (01_kitchen, 02_event_loop)",
        "bob_01_kitchen.ipynb":
            "a second notebook for bob / 01_kitchen (the first: bob/01_kitchen.ipynb)",
    }
    assert result.skipped == ["notes.txt"]


def test_notebooks_of_assignments_not_graded_this_time_are_skipped(tmp_path: Path) -> None:
    download = tmp_path / "download"
    _touch(download / "alice_01_kitchen.ipynb")
    _touch(download / "alice_02_event_loop.ipynb")
    _touch(download / "alice_homework.ipynb")
    result = collect(download, ["01_kitchen"], tmp_path / "staging", None, ASSIGNMENTS)
    assert [s.found_as for s in result.submissions] == ["alice_01_kitchen.ipynb"]
    assert result.skipped == ["alice_02_event_loop.ipynb"]
    assert result.unplaced == [
        ("alice_homework.ipynb", "names no assignment being graded (01_kitchen)")]


def test_an_assignment_graded_on_files_takes_its_folder_from_beside_the_notebook(
    tmp_path: Path,
) -> None:
    download = tmp_path / "download"
    _touch(download / "alice" / "01_kitchen.ipynb")
    _touch(download / "alice" / "shop" / "app.py", "fixed")
    _touch(download / "alice" / "shop" / "__pycache__" / "app.cpython-311.pyc", "compiled")
    _touch(download / "alice" / "notes.txt")
    with zipfile.ZipFile(download / "bob.zip", "w") as archive:
        archive.writestr("01_kitchen.ipynb", "{}")
        archive.writestr("shop/app.py", "bob's")
        archive.writestr("shop/data/books.json", "[]")
    _touch(download / "carol_02_event_loop.ipynb")  # another assignment: nothing to carry
    result = collect(download, ASSIGNMENTS, tmp_path / "staging", None, None,
                     {"01_kitchen": ["shop"]})
    assert not result.unplaced, result.unplaced
    files = {s.student: {name: path.read_text() for name, path in s.files}
             for s in result.submissions}
    assert files == {
        "alice": {"shop/app.py": "fixed"},
        "bob": {"shop/app.py": "bob's", "shop/data/books.json": "[]"},
        "carol": {},
    }
    # what a submission carries is not reported as skipped; the rest still is
    assert result.skipped == ["alice/notes.txt"]


def test_one_folder_beside_two_students_notebooks_is_refused(tmp_path: Path) -> None:
    download = tmp_path / "download"
    _touch(download / "alice_01_kitchen.ipynb")
    _touch(download / "bob_01_kitchen.ipynb")
    _touch(download / "shop" / "app.py")
    result = collect(download, ASSIGNMENTS, tmp_path / "staging", None, None,
                     {"01_kitchen": ["shop"]})
    assert [name for name, _ in result.unplaced] == ["bob_01_kitchen.ipynb"]
    assert "would count for alice too" in result.unplaced[0][1]


def test_a_pattern_reads_any_other_scheme(tmp_path: Path) -> None:
    download = tmp_path / "download"
    _touch(download / "week3" / "ex-01_kitchen--s1234.ipynb")
    assert _placed(
        download, tmp_path, r"week\d+/ex-(?P<assignment>.+)--(?P<student>s\d+)\.ipynb"
    ) == {"week3/ex-01_kitchen--s1234.ipynb": "s1234/01_kitchen"}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helpers.grading", "--course", str(ROOT), *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


def test_grade_refuses_a_download_it_cannot_place_and_lists_every_file(tmp_path: Path) -> None:
    _touch(tmp_path / "download" / "fixture.ipynb")
    _touch(tmp_path / "download" / "alice_fixture.ipynb")
    _touch(tmp_path / "download" / "essay.ipynb")
    _touch(tmp_path / "out" / "gradebook.csv", "last week's grades")
    run = _cli("--solutions", str(FIXTURE_SOLUTIONS), "grade", "download", "--out", "out",
               cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "2 notebook(s)" in run.stderr and "could not be placed" in run.stderr
    assert "fixture.ipynb: no student id in its name or its folder's name" in run.stderr
    assert "essay.ipynb: names no assignment being graded (fixture)" in run.stderr
    # a refused batch leaves the last run's results alone
    assert (tmp_path / "out" / "gradebook.csv").read_text() == "last week's grades"


def test_grade_refuses_an_out_folder_that_holds_the_submissions(tmp_path: Path) -> None:
    _touch(tmp_path / "download" / "alice_fixture.ipynb")
    run = _cli("--solutions", str(FIXTURE_SOLUTIONS), "grade", "download", "--out", ".",
               cwd=tmp_path)
    assert run.returncode == 2
    assert "holds the submissions" in run.stderr
    assert (tmp_path / "download" / "alice_fixture.ipynb").exists()


def test_grade_names_an_unknown_assignment(tmp_path: Path) -> None:
    (tmp_path / "download").mkdir()
    run = _cli("--solutions", str(FIXTURE_SOLUTIONS), "grade", "download",
               "--assignment", "99_nothing", cwd=tmp_path)
    assert run.returncode == 2
    assert "no such assignment" in run.stderr and "(there: fixture)" in run.stderr


def test_reasons_quote_the_first_line_and_the_likely_cause(tmp_path: Path) -> None:
    def graded(grade_id: str, outputs: list[dict[str, object]], count: int | None = 1) -> dict:
        return {"cell_type": "code", "execution_count": count, "outputs": outputs,
                "metadata": {"nbgrader": {"grade": True, "grade_id": grade_id}}, "source": ""}

    failure = ("✘ Task 1 · six orders\n  measured:     3.1 s\n  expected:     about 0.5 s\n"
               "  likely cause: time.sleep blocks the loop\n  fix:          await asyncio.sleep")
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(json.dumps({"cells": [
        graded("a", [{"output_type": "error", "ename": "AssertionError", "evalue": failure}]),
        graded("b", [{"output_type": "stream", "name": "stderr", "text": ["oops\n", "more"]}]),
        graded("c", [{"output_type": "error", "ename": "CellTimeoutError", "evalue": ""}], None),
        graded("d", []),
    ]}))
    cells = [GradeCell(g, 10) for g in "abcde"]
    assert task_reasons(notebook, {"d": 10.0}, cells) == {
        "a": "AssertionError: ✘ Task 1 · six orders (likely cause: time.sleep blocks the loop)",
        "b": "wrote to stderr: oops more",
        "c": "did not run: an earlier cell held the kernel past the cell timeout",
        "e": "the cell is missing",
    }


@pytest.mark.parametrize("module", ["helpers", "helpers.checks"])
def test_the_learners_runtime_never_imports_grading_or_nbgrader(module: str) -> None:
    code = (
        f"import {module}, helpers.server, helpers.loadgen, sys\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'nbgrader' "
        "or m.startswith('helpers.grading'))\n"
        "print(bad)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert run.stdout.strip() == "[]"
