"""Lesson 00 runs headless and its one timing claim holds."""

import pytest

from tests.notebook_runner import Within, check_notebook

CLAIMS = {
    # ten overlapping 0.5 s waits take about one wait, nowhere near ten
    "10 requests at once, each waiting 0.5 s": Within(1.0, 1.4),
}


@pytest.mark.notebook
def test_lesson_00_runs_and_its_claims_hold():
    check_notebook("00_start_here.ipynb", CLAIMS)
