from __future__ import annotations

import json
import time

import pytest

from helpers import timing


def test_report_prints_and_remembers(capsys):
    assert timing.report("two tasks together", 2.06, 2.0) is None
    printed = capsys.readouterr().out.strip()
    assert printed == "two tasks together: measured 2.06 s, ideal 2.00 s (1.03×)"
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


@pytest.mark.parametrize(
    ("measured_s", "ideal_s", "line"),
    [
        # a figure below 0.1 s: milliseconds, two significant digits or more
        (0.007, 0.005, "measured 7.0 ms, ideal 5.0 ms (1.40×)"),
        (0.0412, None, "measured 41 ms"),
        (0.0003, None, "measured 0.30 ms"),
        (0.00006, None, "measured 0.06 ms"),
        (0.000999, None, "measured 1.0 ms"),
        (0.0999, 0.05, "measured 100 ms, ideal 50 ms (2.00×)"),
        (0.00999, None, "measured 10 ms"),  # rounds to 10: no false decimal
        # one unit per line, chosen so that neither figure loses its digits
        (0.25, 0.005, "measured 250 ms, ideal 5.0 ms (50.00×)"),
        (0.004, 0.1, "measured 4.0 ms, ideal 100 ms (0.04×)"),
        (1.73, 0.02, "measured 1730 ms, ideal 20 ms (86.50×)"),
        # every figure from 0.1 s on: seconds, two decimals (as the course's "0.5 s" claims)
        (0.1, None, "measured 0.10 s"),
        (0.612, 0.5, "measured 0.61 s, ideal 0.50 s (1.22×)"),
        (1.73, 1.5, "measured 1.73 s, ideal 1.50 s (1.15×)"),
    ],
)
def test_report_line_units(capsys, measured_s, ideal_s, line):
    timing.report("probe", measured_s, ideal_s)
    assert capsys.readouterr().out.strip() == f"probe: {line}"
    assert timing.measurements()["probe"].measured_s == measured_s  # the figure is not rounded
