"""Run pytest on a folder from a notebook cell, and show its report as a terminal would.

Lesson 07 writes an app and its tests into a scratch folder and runs pytest on them. Running
pytest inside the kernel would share the kernel's event loop, its imported modules and its
servers; a fresh ``python -m pytest`` process is what a project's CI does, so that is what runs
here. Its whole report (stdout and stderr together, in order) is printed to the cell's stdout,
because red stderr text in a notebook reads as "the course is broken", not as "a test failed".

    outcome = run_pytest(folder, "tests/test_unit.py")
    outcome.counts            # {"passed": 3, "failed": 1}
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_OPTIONS", "PytestOutcome", "parse_counts", "run_pytest"]

DEFAULT_OPTIONS: tuple[str, ...] = (
    "-v",  # one line per test, with its verdict
    "--no-header",  # no platform and plugin lines: they say nothing about the tests
    "--tb=short",  # a failure shows the lines that led to it, not whole functions
    "--color=no",  # a cell's output shows escape codes as text
    "-p",
    "no:cacheprovider",  # leave no .pytest_cache folder behind
)
"""Options passed before the caller's own; a later option of the caller's wins."""

DEFAULT_TIMEOUT_S = 60.0
_TERMINAL_COLUMNS = "100"  # the width pytest wraps and truncates its lines to
_FORCING_COLOUR = frozenset({"FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE"})

# The last line of pytest's report: "=== 1 failed, 3 passed, 2 warnings in 2.31s ===", or
# "no tests ran in 0.01s". Each count is "<number> <noun>".
_SUMMARY = re.compile(r"^=*\s*(?P<body>.*?)\s+in\s+[\d.]+s(?:\s+\([^)]*\))?\s*=*\s*$")
_COUNT = re.compile(r"(\d+) ([a-z]+)")
# pytest writes "1 error" but "2 errors", "1 warning" but "2 warnings": one key for each.
_PLURAL = {"error": "errors", "warning": "warnings"}


@dataclass(frozen=True)
class PytestOutcome:
    """What one pytest run reported: its counts, exit code and full text."""

    exit_code: int | None
    """pytest's exit status (0: all passed, 1: some failed, 5: no tests); None if killed."""
    counts: dict[str, int] = field(default_factory=dict)
    """The summary line's counts by pytest's own nouns: passed, failed, errors, skipped..."""
    output: str = ""
    timed_out: bool = False
    duration_s: float = 0.0

    @property
    def passed(self) -> int:
        return self.counts.get("passed", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    def __str__(self) -> str:
        if self.timed_out:
            return f"pytest did not finish in time and was stopped ({self.duration_s:.1f} s)"
        counts = ", ".join(f"{n} {noun}" for noun, n in self.counts.items()) or "no counts"
        return f"pytest exit code {self.exit_code}: {counts}"


def parse_counts(output: str) -> dict[str, int]:
    """The counts on the last summary line of a pytest report ({} if there is none)."""
    for line in reversed(output.splitlines()):
        match = _SUMMARY.match(line.strip())
        if match:
            return {
                _PLURAL.get(noun, noun): int(number)
                for number, noun in _COUNT.findall(match.group("body"))
            }
    return {}


def run_pytest(
    folder: str | os.PathLike[str],
    *args: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    options: Sequence[str] = DEFAULT_OPTIONS,
    echo: bool = True,
) -> PytestOutcome:
    """Run ``python -m pytest <options> <args>`` in ``folder``; print its report; return counts.

    ``folder`` is the working directory, so ``import app`` finds a module saved there and
    pytest finds the ``tests/conftest.py`` under it. The run uses this interpreter, so it sees
    the same installed packages as the notebook. A run that takes longer than ``timeout_s`` is
    stopped (with every process it started) and reported as timed out instead of hanging the
    cell. A process a test started and left running is stopped when the run ends. With
    ``echo=False`` nothing is printed; the text is in ``PytestOutcome.output``.
    """
    where = Path(folder)
    if not where.is_dir():
        raise FileNotFoundError(f"run_pytest needs an existing folder, got {str(where)!r}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    command = [sys.executable, "-m", "pytest", *options, *args]
    # A Jupyter kernel sets FORCE_COLOR=1, and pytest then colours some lines (those of
    # --tb=line) even with --color=no: the cell would show the escape codes as text.
    env = {k: v for k, v in os.environ.items() if k not in _FORCING_COLOUR}
    env.update(COLUMNS=_TERMINAL_COLUMNS, NO_COLOR="1", PYTHONUNBUFFERED="1")
    began = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=where,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, in the order pytest wrote it
        text=True,
        start_new_session=True,  # its own process group, so a timeout stops all of it
    )
    timed_out = False
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop_group(process)
        output, _ = process.communicate()
    finally:
        if process.poll() is None:  # interrupted (a KeyboardInterrupt in the cell, say)
            _stop_group(process)
            process.wait()
        # A test may start a process and leave it running (one that no longer writes to the
        # pipe, so the run ended without it): it is in pytest's group, and goes with it.
        _stop_group(process)
    duration_s = time.perf_counter() - began
    outcome = PytestOutcome(
        exit_code=None if timed_out else process.returncode,
        counts=parse_counts(output),
        output=output,
        timed_out=timed_out,
        duration_s=duration_s,
    )
    if echo:
        print(output, end="" if output.endswith("\n") or not output else "\n")
        if timed_out:
            print(f"{outcome}: it ran longer than its {timeout_s:g} s limit.")
    return outcome


def _stop_group(process: subprocess.Popen[str]) -> None:
    """Kill the process and everything it started (its session's process group)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows has no process groups of this kind
            process.kill()
    except (ProcessLookupError, PermissionError):  # the group has ended already
        pass
