"""Execute a notebook headless in a fresh kernel and collect what the tests need from it."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
# what tests leave for a person to look at (screenshots, timings); git ignores it
TEST_OUTPUT = Path(os.environ.get("COURSE_TEST_OUTPUT", ROOT / "test-output"))
CELL_TIMEOUT_S = 60

# Appended to a copy of the notebook: reports the timing cells' figures, any server left, and
# any child process of the kernel still running. load()'s own worker processes are kept for the
# kernel's lifetime on purpose, and multiprocessing's helper processes (its resource tracker, a
# forkserver) likewise: neither is the lesson's to stop.
PROBE = """
import json as _json
import os as _os
import helpers as _helpers
from helpers import timing as _timing

def _children():
    found = []
    for _pid in filter(str.isdigit, _os.listdir("/proc")):
        try:
            with open(f"/proc/{_pid}/stat") as _f:
                _ppid = int(_f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{_pid}/cmdline", "rb") as _f:
                _cmd = _f.read().replace(b"\\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if _ppid == _os.getpid() and not any(
            _kept in _cmd for _kept in ("_load_worker.py", "resource_tracker", "forkserver")
        ):
            found.append(_cmd or _pid)
    return found

print("COURSE-PROBE" + _json.dumps({
    "measurements": _json.loads(_timing.measurements_json()),
    "servers": [s.name for s in _helpers.running_servers()],
    "children": _children() if _os.path.isdir("/proc") else [],
}))
"""


# Inserted before a lesson's tidy-up cell (its last stop_all() or .stop()), while the lesson's
# stand-ins still run: the app doctor examines each app the lesson built, in the kernel, and
# writes its reports as JSON to a file. It prints nothing, so the lesson's output is unchanged.
# One cell per app, so each gets the cell timeout to itself (the 7 apps of lesson 04 take 25 s
# together on a quiet machine; in one cell they once passed 60 s in CI, where the VM ran its
# code up to 1.76x slower than at other times) and a timeout names the app it was at.
DOCTOR_CELL = """
import json as _json
from helpers.doctor._examine import Options as _Options, examine_app as _examine_app

_doctor_reports = globals().get("_doctor_reports", {{}})
_given = {given}
_given = dict(_given, params=tuple((_k, str(_v)) for _k, _v in _given.get("params", {{}}).items()))
_doctor_reports[{name!r}] = _examine_app({name}, _Options(**_given), target={name!r}).to_json()
with open({out!r}, "w") as _file:
    _json.dump(_doctor_reports, _file)
"""
DOCTOR_TAG = "course-test-doctor"
"""The doctor's cells carry this tag: they are the test's, and their time does not count."""


@dataclass(frozen=True)
class Doctor:
    """Which of a lesson's apps the doctor examines (the app's expression in the kernel, and
    the doctor's options as a Python expression there, e.g. ``{"params": {"n": N}}``), and
    where its reports go."""

    apps: dict[str, str]
    out: Path

    def cells(self) -> list[nbformat.NotebookNode]:
        """One code cell per app, tagged :data:`DOCTOR_TAG`."""
        return [
            nbformat.v4.new_code_cell(
                DOCTOR_CELL.format(name=name, given=given, out=str(self.out)),
                metadata={"tags": [DOCTOR_TAG]},
            )
            for name, given in self.apps.items()
        ]

    def reports(self) -> dict[str, dict]:
        return json.loads(self.out.read_text())


def _tidy_up_index(notebook: nbformat.NotebookNode) -> int:
    """The lesson's last cell that stops its servers."""
    for index in range(len(notebook.cells) - 1, -1, -1):
        cell = notebook.cells[index]
        if cell.cell_type == "code" and ("stop_all()" in cell.source or ".stop()" in cell.source):
            return index
    raise AssertionError("the notebook has no cell that stops its servers")


@dataclass
class ExecutedNotebook:
    path: Path
    notebook: nbformat.NotebookNode
    measurements: dict[str, dict]
    servers_left: list[str]
    children_left: list[str]
    cell_seconds: list[tuple[int, float]]
    wall_s: float

    def stderr_output(self) -> list[str]:
        """Everything the notebook's cells wrote to stderr, one entry per output."""
        return [
            "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
            for c in self.notebook.cells for o in c.get("outputs", [])
            if o.get("name") == "stderr"
        ]

    def text_output(self) -> str:
        chunks = []
        for cell in self.notebook.cells:
            for output in cell.get("outputs", []):
                if "text" in output:
                    chunks.append(output["text"])
                for key in ("text/plain",):
                    if key in output.get("data", {}):
                        chunks.append(output["data"][key])
        return "\n".join(chunks)


def _seconds(cell: nbformat.NotebookNode) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    began, ended = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not began or not ended:
        return 0.0
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(ended) - parse(began)).total_seconds()


def execute(
    name: str | Path, env: dict[str, str] | None = None, doctor: Doctor | None = None,
) -> ExecutedNotebook:
    """Run ``notebooks/<name>`` (or the notebook at a path) top to bottom; raises
    ``CellExecutionError`` on any error. With ``doctor``, its cells run before the tidy-up."""
    path = NOTEBOOKS / name
    notebook = nbformat.read(path, as_version=4)
    if doctor is not None:
        tidy_up = _tidy_up_index(notebook)
        notebook.cells[tidy_up:tidy_up] = doctor.cells()
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    previous = dict(os.environ)
    os.environ.update(env or {})
    try:
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
            record_timing=True,
        )
        began = datetime.now()
        client.execute()
        wall_s = (datetime.now() - began).total_seconds()
    finally:
        os.environ.clear()
        os.environ.update(previous)
    probe_text = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    payload = json.loads(probe_text.split("COURSE-PROBE", 1)[1])
    # the doctor's cells are the test's, not the lesson's: their time does not count
    cells = [(i, _seconds(c)) for i, c in enumerate(notebook.cells[:-1])
             if c.cell_type == "code" and DOCTOR_TAG not in c.metadata.get("tags", [])]
    return ExecutedNotebook(
        path, notebook, payload["measurements"], payload["servers"], payload["children"],
        cells, wall_s,
    )


MAX_CELL_S = 15.0


@dataclass(frozen=True)
class Within:
    """measured ÷ ideal must lie in [low, high] (with no ideal: the measured seconds)."""

    low: float
    high: float

    def holds(self, measured_s: float, ideal_s: float | None) -> tuple[bool, float]:
        value = measured_s / ideal_s if ideal_s else measured_s
        return self.low <= value <= self.high, value


def check_notebook(
    name: str | Path, claims: dict[str, Within], *, allowed_stderr: tuple[str, ...] = (),
    env: dict[str, str] | None = None, doctor: Doctor | None = None,
) -> ExecutedNotebook:
    """Execute ``name``; fail on any error, a stray server or child process, a slow cell, a claim
    out of bounds, or anything written to stderr.

    ``claims`` states a tolerance for every label the notebook reports through
    ``helpers.timing.report``; a reported label with no stated tolerance fails too.
    ``allowed_stderr`` lists regular expressions for stderr output a lesson shows on purpose
    (and says so in its prose); every stderr output must match one of them.
    """
    executed = execute(name, env, doctor)
    unexpected = [
        text for text in executed.stderr_output()
        if not any(re.search(pattern, text) for pattern in allowed_stderr)
    ]
    assert not unexpected, f"{name} wrote to stderr: {unexpected}"
    assert executed.servers_left == [], f"{name} left servers running: {executed.servers_left}"
    assert executed.children_left == [], (
        f"{name} left child processes running: {executed.children_left}"
    )
    slow = [(i, round(s, 1)) for i, s in executed.cell_seconds if s > MAX_CELL_S]
    assert not slow, f"cells slower than {MAX_CELL_S} s (index, seconds): {slow}"
    reported = executed.measurements
    assert set(reported) == set(claims), (
        f"reported: {sorted(reported)}; tolerances stated for: {sorted(claims)}"
    )
    failures = []
    for label, tolerance in claims.items():
        measurement = reported[label]
        ok, value = tolerance.holds(measurement["measured_s"], measurement["ideal_s"])
        if not ok:
            failures.append(f"{label}: {value:.2f} not in [{tolerance.low}, {tolerance.high}]")
    assert not failures, "; ".join(failures)
    assert "Traceback" not in executed.text_output(), "a cell printed a traceback"
    return executed
