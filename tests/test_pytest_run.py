"""helpers.pytest_run: real pytest runs on small scratch folders, from start to summary."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from helpers.pytest_run import PytestOutcome, parse_counts, run_pytest


def write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_counts_exit_code_and_the_report_on_stdout(tmp_path, capsys):
    write(tmp_path, "shop.py", "def total(prices):\n    return sum(prices)\n")
    write(
        tmp_path,
        "tests/test_shop.py",
        "import shop\n\n"
        "def test_adds():\n    assert shop.total([1, 2]) == 3\n\n"
        "def test_wrong():\n    assert shop.total([1, 2]) == 4\n",
    )
    outcome = run_pytest(tmp_path, "tests")
    printed = capsys.readouterr()
    assert outcome.counts == {"failed": 1, "passed": 1}
    assert (outcome.passed, outcome.failed, outcome.exit_code) == (1, 1, 1)
    assert not outcome.timed_out
    # the module in the folder was importable, and the report went to stdout, not stderr
    assert "tests/test_shop.py::test_adds PASSED" in printed.out
    assert "E   assert 3 == 4" in printed.out
    assert "1 failed, 1 passed in" in printed.out
    assert printed.err == ""
    assert str(outcome) == "pytest exit code 1: 1 failed, 1 passed"
    assert not (tmp_path / ".pytest_cache").exists()


def test_the_childs_stderr_is_shown_on_stdout(tmp_path, capsys):
    # pytest reports a conftest that cannot be imported on stderr, and exits with status 4
    write(tmp_path, "tests/conftest.py", "import no_such_module_here\n")
    write(tmp_path, "tests/test_ok.py", "def test_ok():\n    pass\n")
    outcome = run_pytest(tmp_path, "tests")
    printed = capsys.readouterr()
    assert outcome.exit_code == 4 and outcome.counts == {}
    assert "ImportError while loading conftest" in printed.out
    assert "No module named 'no_such_module_here'" in printed.out
    assert printed.err == ""


def test_a_hung_run_is_stopped_at_its_timeout(tmp_path, capsys):
    # the test starts a grandchild that would outlive a plain kill of pytest
    write(
        tmp_path,
        "tests/test_hangs.py",
        "import pathlib, subprocess, sys, time\n\n"
        "def test_hangs():\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "    pathlib.Path('child.pid').write_text(str(child.pid))\n"
        "    time.sleep(60)\n",
    )
    began = time.perf_counter()
    outcome = run_pytest(tmp_path, "tests", timeout_s=3)
    took = time.perf_counter() - began
    printed = capsys.readouterr().out
    assert outcome.timed_out and outcome.exit_code is None
    assert took < 10, took
    assert "did not finish in time" in printed and "3 s limit" in printed
    grandchild = int((tmp_path / "child.pid").read_text())
    for _ in range(50):  # killed with its group; give the kernel a moment to reap it
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the grandchild {grandchild} outlived the timeout")


def test_a_process_a_passing_test_left_running_is_stopped_with_the_run(tmp_path):
    # the grandchild no longer holds the output pipe, so pytest's exit ends the run without it
    write(
        tmp_path,
        "tests/test_leaves.py",
        "import pathlib, subprocess, sys\n\n"
        "def test_leaves_a_process():\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "    pathlib.Path('child.pid').write_text(str(child.pid))\n",
    )
    outcome = run_pytest(tmp_path, "tests", echo=False, timeout_s=30)
    assert outcome.passed == 1 and not outcome.timed_out
    grandchild = int((tmp_path / "child.pid").read_text())
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(grandchild, 9)
        pytest.fail(f"the process {grandchild} outlived the run")


def test_no_escape_codes_even_when_the_kernel_forces_colour(tmp_path, capsys, monkeypatch):
    # Jupyter kernels set FORCE_COLOR=1; pytest's --tb=line lines then came out coloured
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("PY_COLORS", "1")
    write(tmp_path, "tests/test_fails.py", "def test_fails():\n    assert 1 == 2\n")
    outcome = run_pytest(tmp_path, "tests", "--tb=line")
    printed = capsys.readouterr().out
    assert outcome.failed == 1
    assert "test_fails.py:2: assert 1 == 2" in printed
    assert "\x1b" not in printed


def test_echo_off_prints_nothing(tmp_path, capsys):
    write(tmp_path, "tests/test_ok.py", "def test_ok():\n    pass\n")
    outcome = run_pytest(tmp_path, "tests", echo=False)
    assert capsys.readouterr().out == ""
    assert "1 passed" in outcome.output


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="existing folder"):
        run_pytest(tmp_path / "missing")
    with pytest.raises(ValueError, match="positive"):
        run_pytest(tmp_path, timeout_s=0)


@pytest.mark.parametrize(
    ("last_line", "counts"),
    [
        ("=== 1 failed, 3 passed in 2.31s ===", {"failed": 1, "passed": 3}),
        ("2 passed, 1 warning in 0.40s", {"passed": 2, "warnings": 1}),
        ("===== 1 passed, 2 errors in 1.02s (0:00:01) =====", {"passed": 1, "errors": 2}),
        ("1 error in 0.10s", {"errors": 1}),
        ("============ no tests ran in 0.01s ============", {}),
    ],
)
def test_parse_counts(last_line, counts):
    assert parse_counts(f"some output\n{last_line}\n") == counts


def test_parse_counts_without_a_summary():
    assert parse_counts("ImportError while loading conftest\n") == {}


def test_outcome_text():
    assert str(PytestOutcome(0, {"passed": 2})) == "pytest exit code 0: 2 passed"
    stopped = PytestOutcome(None, timed_out=True, duration_s=3.04)
    assert str(stopped) == "pytest did not finish in time and was stopped (3.0 s)"
