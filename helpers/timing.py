"""Timing cells: print what was measured next to what the lesson predicts, and remember it.

Every claim a lesson makes about time goes through :func:`report`, so the line the learner
reads and the figure the test suite checks are the same number.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

__all__ = ["Measurement", "measurements", "report", "stopwatch"]


@dataclass(frozen=True)
class Measurement:
    label: str
    measured_s: float
    ideal_s: float | None

    @property
    def ratio(self) -> float | None:
        """measured ÷ ideal: 1.00 is a perfect match, 2.00 took twice as long."""
        if self.ideal_s in (None, 0):
            return None
        return self.measured_s / self.ideal_s

    def __str__(self) -> str:
        figures = [self.measured_s] if self.ideal_s is None else [self.measured_s, self.ideal_s]
        in_ms = min(figures) < MS_BELOW_S
        text = f"{self.label}: measured {_duration(self.measured_s, in_ms)}"
        if self.ideal_s is not None:
            text += f", ideal {_duration(self.ideal_s, in_ms)}"
            if self.ratio is not None:
                text += f" ({self.ratio:.2f}×)"
        return text


# Seconds with two decimals keep two significant digits down to 0.10 s; below that they
# would print "0.04 s" or "0.00 s" for a claim made in milliseconds. So a line with a figure
# below 0.1 s is written in ms, and every other line in seconds, as the lessons' "0.5 s"
# predictions are worded. Both figures of a line share one unit, so they compare at a glance.
MS_BELOW_S = 0.1


def _duration(seconds: float, in_ms: bool) -> str:
    """``0.61 s``, or in ms with two significant digits: ``41 ms``, ``7.4 ms``, ``0.06 ms``."""
    if not in_ms:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    # decide on the rounded figure, so 9.99 ms prints "10 ms", not "10.0 ms"
    decimals = 0 if abs(round(ms, 1)) >= 10 else 1 if abs(round(ms, 2)) >= 1 else 2
    return f"{ms:.{decimals}f} ms"


_recorded: dict[str, Measurement] = {}


def report(label: str, measured_s: float, ideal_s: float | None = None) -> None:
    """Print ``label: measured 0.61 s, ideal 0.50 s (1.22×)`` and keep it under ``label``.

    A line with a figure below 0.1 s prints in milliseconds:
    ``measured 7.4 ms, ideal 5.0 ms (1.48×)``.

    Returns nothing, so a ``report(...)`` on a cell's last line prints once, not twice;
    :func:`measurements` gives the recorded figures back.
    """
    if not label:
        raise ValueError("a measurement needs a label that says what was timed")
    measurement = Measurement(label, float(measured_s), None if ideal_s is None else float(ideal_s))
    _recorded[label] = measurement
    print(measurement)


def measurements() -> dict[str, Measurement]:
    """Everything reported in this kernel, by label (the tests read this after a notebook runs)."""
    return dict(_recorded)


def measurements_json() -> str:
    return json.dumps({label: asdict(m) for label, m in _recorded.items()})


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["s"]`` holds the elapsed seconds."""
    elapsed = {"s": 0.0}
    began = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed["s"] = time.perf_counter() - began
