from __future__ import annotations

import json
import time

import pytest

from helpers import timing


def test_report_prints_and_remembers(capsys):
    assert timing.report("two tasks together", 2.06, 2.0) is None
    assert capsys.readouterr().out.strip() == "two tasks together: measured 2.06 s, ideal 2.00 s (1.03×)"
    assert timing.measurements()["two tasks together"].ratio == pytest.approx(1.03)
    assert json.loads(timing.measurements_json())["two tasks together"]["measured_s"] == 2.06


def test_report_without_ideal(capsys):
    timing.report("just a number", 0.5)
    assert capsys.readouterr().out.strip() == "just a number: measured 0.50 s"
    assert timing.measurements()["just a number"].ratio is None


def test_report_needs_a_label():
    with pytest.raises(ValueError, match="needs a label"):
        timing.report("", 1.0)


def test_stopwatch_measures_elapsed_time():
    with timing.stopwatch() as elapsed:
        time.sleep(0.05)
    assert 0.045 <= elapsed["s"] < 0.5
