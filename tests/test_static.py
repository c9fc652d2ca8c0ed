"""The static gate: ruff lints the code and mypy type-checks helpers/, as part of the test run.

Both run from this interpreter's environment (the venv the tests run in), with the settings in
pyproject.toml, and a failure shows their own report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTED = ["helpers", "tests", "benchmarks", "capstone", "course.py"]
# A cold mypy run takes 15-30 s on a busy 2-core machine; a warm one under a second.
TOOL_TIMEOUT_S = 240


def passes(*command: str) -> None:
    """Run ``python -m <command>`` in the repository; fail the test with the tool's own report."""
    shown = " ".join(command)
    try:
        result = subprocess.run(
            [sys.executable, "-m", *command],
            cwd=ROOT, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{shown} did not finish in {TOOL_TIMEOUT_S} s", pytrace=False)
    if result.returncode != 0:
        # pytrace=False: the tool's report is the useful part, not this function's traceback
        pytest.fail(f"{shown} failed:\n{result.stdout}{result.stderr}", pytrace=False)


def test_ruff_finds_nothing() -> None:
    passes("ruff", "check", "--no-fix", "--output-format", "concise", *LINTED)


def test_mypy_finds_nothing() -> None:
    # no paths: pyproject.toml's [tool.mypy] files = ["helpers"] says what to check
    passes("mypy")
