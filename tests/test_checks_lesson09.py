"""Exercise 09's checks, on real copies of the shop: the untouched shop fails each task at its
own line, the course's fix passes every task, a "fix" that stops a route's work fails, and a task
passes while only another task's problem is left on its route. The notebook itself is executed
solved and untouched, as a learner and nbgrader run it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import capstone
from helpers.checks import fresh
from tests.exercise_runner import ALIVE, SOLUTIONS, assert_well_formed, run_exercise

NOTEBOOK_PATH = SOLUTIONS / "09_capstone" / "09_capstone.ipynb"
# grade id -> the file and a piece of the line the untouched shop's failure names
TASKS = {
    "task1_dependency": ("security.py", "hashlib.pbkdf2_hmac("),
    "task2_middleware": ("main.py", "audit_client.post("),
    "task3_client": ("orders.py", "httpx.AsyncClient("),
    "task4_export": ("reports.py", "async def export("),
    "task5_background_task": ("admin.py", "urllib.request.urlopen("),
    "task6_whole_shop": ("", "routes still block the loop"),
}


def _line_of(file: str, piece: str) -> int:
    lines = (capstone.ORIGINAL / file).read_text().splitlines()
    matches = [number for number, line in enumerate(lines, 1) if piece in line]
    assert len(matches) == 1, (file, piece, matches)
    return matches[0]


def test_the_notebook_is_well_formed() -> None:
    assert_well_formed(NOTEBOOK_PATH, 60)


def test_the_untouched_shop_fails_each_task_at_its_line(tmp_path: Path) -> None:
    graded, stderr, last = run_exercise(
        NOTEBOOK_PATH, env={capstone.COPY_VARIABLE: str(tmp_path / "untouched")})
    assert stderr == [] and last == f"{ALIVE}\n", (stderr, last)
    assert [cell.grade_id for cell in graded] == list(TASKS)
    for number, cell in enumerate(graded, start=1):
        file, piece = TASKS[cell.grade_id]
        assert cell.stdout == "" and cell.error is not None, cell
        assert cell.error.startswith(f"AssertionError: ✘ Task {number} · "), cell.error
        place = f"{file}:{_line_of(file, piece)}" if file else piece
        assert place in cell.error, (place, cell.error)
    # the whole shop's message names each blocking route's worst place: GET /users/me's is its
    # key check
    key_check = f"security.py:{_line_of('security.py', 'hashlib.pbkdf2_hmac(')}"
    assert "GET /users/me (" in graded[-1].error and key_check in graded[-1].error, graded[-1]


def test_the_fixed_shop_passes_each_task(tmp_path: Path) -> None:
    shop = capstone.apply_solution(capstone.working_copy(tmp_path / "fixed"))
    graded, stderr, last = run_exercise(NOTEBOOK_PATH, env={capstone.COPY_VARIABLE: str(shop)})
    assert stderr == [] and last == f"{ALIVE}\n", (stderr, last)
    assert [cell.grade_id for cell in graded] == list(TASKS)
    for number, cell in enumerate(graded, start=1):
        assert cell.error is None, cell
        assert cell.stdout.startswith(f"✔ Task {number} · ") and cell.stdout.count("\n") == 1, cell


@pytest.fixture
def fixed_shop(tmp_path: Path) -> Path:
    return capstone.apply_solution(capstone.working_copy(tmp_path / "fixed"))


def test_a_fix_that_drops_the_reindex_fails_task_5(
    fixed_shop: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    admin = fixed_shop / "bookshop" / "admin.py"
    text = admin.read_text()
    assert "    tasks.add_task(" in text
    admin.write_text(text.replace("    tasks.add_task(", "    # tasks.add_task(", 1))
    with pytest.raises(AssertionError) as failure:
        fresh("lesson09").check_background_task(fixed_shop)
    message = str(failure.value)
    assert message.startswith("✘ Task 5 · ") and "the search engine never received" in message
    assert "still does its job" in message, message
    assert capfd.readouterr().err == ""


def test_task_5_passes_while_only_the_middleware_is_left(
    fixed_shop: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    # the course's fix, but the untouched main.py: the audit middleware blocks every POST
    shutil.copyfile(capstone.ORIGINAL / "main.py", fixed_shop / "bookshop" / "main.py")
    checks = fresh("lesson09")
    checks.check_background_task(fixed_shop)
    with pytest.raises(AssertionError) as failure:
        checks.check_middleware(fixed_shop)
    assert f"main.py:{_line_of('main.py', 'audit_client.post(')}" in str(failure.value)
    out, err = capfd.readouterr()
    assert out.startswith("✔ Task 5 · the reindex background task: POST /admin/reindex no "
                          "longer blocks the loop") and err == "", out
    assert out.endswith("; the middleware still blocks it: another task\n"), out


def test_no_shop_fails_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as failure:
        fresh("lesson09").check_dependency(tmp_path / "nothing here")
    assert "the cell that makes your working copy has not run" in str(failure.value)
