"""The committed student notebooks are what `course.py exercises` makes from solutions/, and the
real exercises grade as promised with real nbgrader: every solution notebook scores full marks,
every untouched exercise 0, with a reason for each task and the notebook run to its end.

After editing a notebook in solutions/, run `python3 course.py exercises` and commit exercises/.
"""

from __future__ import annotations

import csv
import filecmp
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import capstone
from helpers.grading._course import assignments_in, handed_in_with
from helpers.grading._report import grade_cells

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "grading"
SOURCES = [
    pytest.param(ROOT / "solutions", ROOT / "exercises", id="course"),
    pytest.param(FIXTURE / "solutions", FIXTURE / "exercises", id="fixture"),
]
# The default 2 workers: a class of 30 (exercise 04 solved) scored 30/30 full marks with 2 and
# with 4 workers on a quiet machine, and 29/30 with 1 and with 2 beside other sessions' busy
# loops (the same check, task 2's loop watch, both times): the worker count did not change the
# verdicts. One notebook took 6-23 s here; the 11 of exercises 01-04 took 78 s with 2 workers
# (148 s with 1 on a busy machine), and the 20 of exercises 01-07 (7 solved, 7 untouched, 6
# hostile) 170 s with 2 workers on a quiet machine.
REAL_BATCH_BOUND_S = 400


def _cli(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helpers.grading", "--course", str(ROOT), *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )


def _differences(left: Path, right: Path, below: str = "") -> list[str]:
    compared = filecmp.dircmp(
        left, right, ignore=[*filecmp.DEFAULT_IGNORES, ".ipynb_checkpoints"])
    found = [f"only generated: {below}{n}" for n in compared.left_only]
    found += [f"only committed: {below}{n}" for n in compared.right_only]
    _, mismatch, errors = filecmp.cmpfiles(left, right, compared.common_files, shallow=False)
    found += [f"differs: {below}{n}" for n in mismatch + errors]
    for name in compared.common_dirs:
        found += _differences(left / name, right / name, f"{below}{name}/")
    return found


# The fixture's release was generated once and committed: comparing it with a fresh run is the
# check that generation gives the same bytes every time (nothing run-dependent in it).
@pytest.mark.parametrize(("solutions", "exercises"), SOURCES)
def test_committed_exercises_are_what_the_command_generates(
    solutions: Path, exercises: Path, tmp_path: Path,
) -> None:
    if not assignments_in(solutions):
        pytest.skip(f"{solutions.relative_to(ROOT)} holds no assignment yet: nothing to compare")
    generated = tmp_path / "exercises"
    run = _cli("--solutions", str(solutions), "exercises", "--exercises", str(generated),
               cwd=tmp_path, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    drift = []
    for name in assignments_in(solutions):
        if not (exercises / name).is_dir():
            drift.append(f"missing: {name}/")
        else:
            drift += _differences(generated / name, exercises / name, f"{name}/")
    # a generated folder whose source is gone (files beside the folders, like .gitkeep, stay)
    drift += [f"no source: {name}/" for name in assignments_in(exercises)
              if name not in assignments_in(solutions)]
    assert not drift, (
        f"{exercises.relative_to(ROOT)} is not what {solutions.relative_to(ROOT)} generates "
        f"({', '.join(drift)}): run `python3 course.py exercises` and commit the result"
    )


def _solved_except(
    assignment: str, solution_cell: str, source: str, before: str = "", added: str = ""
) -> str:
    """``assignment`` solved, but with ``source`` in the solution cell ``solution_cell`` and,
    optionally, a cell of ``added`` code just before the graded cell ``before``."""
    path = ROOT / "solutions" / assignment / f"{assignment}.ipynb"
    notebook = json.loads(path.read_text())
    cells = notebook["cells"]
    ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in cells]
    cells[ids.index(solution_cell)]["source"] = source
    if added:
        cells.insert(ids.index(before), {
            "cell_type": "code", "execution_count": None, "id": "added", "metadata": {},
            "outputs": [], "source": added})
    return json.dumps(notebook)


def _kitchen_with(cook: str, before_check: str = "") -> str:
    """Exercise 01 solved, but with ``cook`` as the task 1 solution cell and, optionally, a cell
    of ``before_check`` just before task 1's graded cell."""
    return _solved_except("01_kitchen", "task1_cook", cook, "task1_async_chef", before_check)


# Exercise 01 handed in with task 1 (10 of 40 points) broken on purpose: each scores 30.
HOSTILE_KITCHENS = {
    "blocks_the_loop": _kitchen_with(
        "async def cook(order):\n    time.sleep(10**9)\n    return f'dish {order}'"),
    "never_answers": _kitchen_with(
        "async def cook(order):\n    await asyncio.Event().wait()\n    return f'dish {order}'"),
    "patched_checks": _kitchen_with(
        "async def cook(order):\n    raise NotImplementedError()",
        "import helpers\nimport helpers.checks.lesson01\n\n"
        "helpers.checks.lesson01.check_cook = lambda cook: print('✔ Task 1 · passed')\n"
        "helpers.load = lambda *args, **kwargs: None"),
}


# Exercises 05-07 handed in with the failure each one's checks must survive: (assignment,
# solution cell, its source, the graded cells that must score 0, the total that remains).
HOSTILE_LATER = {
    # a dashboard that waits forever: task 1's three parts each fail at their timeout
    "hangs_05": ("05_gather", "task1-solution",
                 "async def dashboard(client, urls):\n    await asyncio.Event().wait()",
                 ("task1a_fan_out", "task1b_partial", "task1c_deadline"), 20),
    # a pool never shut down: its processes outlive the app (task 3), and grading goes on
    "leaks_pool_06": ("06_cpu_work", "task1-solution", (
        "@asynccontextmanager\n"
        "async def lifespan(app: FastAPI):\n"
        "    pool = ProcessPoolExecutor(max_workers=CORES, mp_context=SPAWN)\n"
        "    yield {'pool': pool}  # never shut down\n\n\n"
        "app = FastAPI(lifespan=lifespan)\n\n\n"
        "@app.get('/ping')\n"
        "async def ping():\n"
        "    return {'pong': True}\n\n\n"
        "@app.get('/work')\n"
        "async def work(request: Request, n: int):\n"
        "    loop = asyncio.get_running_loop()\n"
        "    checksum = await loop.run_in_executor(request.state.pool, burn, n)\n"
        "    return {'n': n, 'checksum': checksum}\n"),
        ("task3_lifespan",), 25),
    # tests that never end: every task fails within the run's bound, nothing stalls
    "hangs_07": ("07_testing_async", "tests", (
        "%%writefile {work}/test_bakery.py\n"
        "import time\n\n\n"
        "def test_waits_forever():\n"
        "    time.sleep(10**6)\n"),
        ("task1_blocking", "task2_timeout", "task3_lifespan", "task4_fanout"), 0),
}


@pytest.mark.timeout(REAL_BATCH_BOUND_S + 120)
def test_solutions_score_full_marks_and_untouched_exercises_zero(tmp_path: Path) -> None:
    names = assignments_in(ROOT / "solutions")
    if not names:
        pytest.skip("solutions/ holds no assignment yet")
    download = tmp_path / "download"
    download.mkdir()
    for name in names:
        solution = ROOT / "solutions" / name / f"{name}.ipynb"
        if handed_in_with(solution):
            # the capstone is graded on the shop handed in beside the notebook: a folder
            assert handed_in_with(solution) == ["my_bookshop"]
            (download / "solution").mkdir()
            (download / "solution" / f"{name}.ipynb").write_bytes(solution.read_bytes())
            capstone.apply_solution(capstone.working_copy(download / "solution" / "my_bookshop"))
        else:
            (download / f"solution_{name}.ipynb").write_bytes(solution.read_bytes())
        (download / f"untouched_{name}.ipynb").write_bytes(
            (ROOT / "exercises" / name / f"{name}.ipynb").read_bytes())
    if "01_kitchen" in names:
        for student, text in HOSTILE_KITCHENS.items():
            (download / f"{student}_01_kitchen.ipynb").write_text(text)
    for student, (assignment, cell, source, _, _) in HOSTILE_LATER.items():
        if assignment in names:
            (download / f"{student}_{assignment}.ipynb").write_text(
                _solved_except(assignment, cell, source))
    started = time.monotonic()
    run = _cli("grade", str(download), "--out", str(tmp_path / "out"), "--workers", "2",
               cwd=tmp_path, timeout=REAL_BATCH_BOUND_S + 60)
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stdout + run.stderr
    assert seconds < REAL_BATCH_BOUND_S, run.stdout
    with (tmp_path / "out" / "gradebook.csv").open(encoding="utf-8") as source:
        rows = {(r["student"], r["assignment"]): r for r in csv.DictReader(source)}
    for name in names:
        cells = grade_cells(ROOT / "solutions" / name / f"{name}.ipynb")
        solved, untouched = rows["solution", name], rows["untouched", name]
        assert (solved["status"], solved["reason"]) == ("graded", "full marks"), solved
        assert float(solved["total"]) == float(solved["max"]) == sum(c.points for c in cells)
        assert untouched["status"] == "graded" and float(untouched["total"]) == 0, untouched
        for cell in cells:
            # the reason names every task, and the feedback page shows the failure itself
            assert f"{cell.grade_id}: " in untouched["reason"], (cell, untouched["reason"])
        page = tmp_path / "out" / "feedback" / "untouched" / name / f"{name}.html"
        assert page.read_text().count("✘") >= 1
    if "01_kitchen" in names:
        for student in HOSTILE_KITCHENS:
            row = rows[student, "01_kitchen"]
            assert (row["status"], row["01_kitchen:task1_async_chef"], row["total"]) == (
                "graded", "0", "30"), row
            assert row["reason"].startswith("task1_async_chef: AssertionError: ✘ Task 1"), row
    for student, (assignment, _, _, failing, total) in HOSTILE_LATER.items():
        if assignment not in names:
            continue
        row = rows[student, assignment]
        assert row["status"] == "graded" and float(row["total"]) == total, row
        for grade_id in failing:
            assert float(row[f"{assignment}:{grade_id}"]) == 0, (grade_id, row)
            assert f"{grade_id}: AssertionError: ✘" in row["reason"], (grade_id, row["reason"])
