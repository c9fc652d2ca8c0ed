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
        text = f"{self.label}: measured {self.measured_s:.2f} s"
        if self.ideal_s is not None:
            text += f", ideal {self.ideal_s:.2f} s"
            if self.ratio is not None:
                text += f" ({self.ratio:.2f}×)"
        return text


_recorded: dict[str, Measurement] = {}


def report(label: str, measured_s: float, ideal_s: float | None = None) -> None:
    """Print ``label: measured 0.61 s, ideal 0.50 s (1.22×)`` and keep it under ``label``.

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
