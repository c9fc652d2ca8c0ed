"""The app doctor on the lessons' own apps: it must report exactly the routes a lesson says block
the event loop, at the line the lesson points to, and no block on any other route.

Each lesson's test runs the doctor in the lesson's kernel, just before the lesson tidies up
(``notebook_runner.Doctor``), so that its stand-ins still run. The expectations are the lessons'
words: a route the prose calls blocking is listed with a piece of its line and the part of the
app the block is in; every route not listed must come out with no block at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.notebook_runner import Doctor

BLOCKING_VERDICTS = {"blocks the loop", "holds the loop for good"}


@dataclass(frozen=True)
class Blocks:
    """A route the lesson says blocks the loop: a piece of the line the doctor must name, and
    the part of the app it must name."""

    line: str
    part: str = "endpoint"


GIL = "GIL held by other threads"


def doctor_for(
    apps: dict[str, dict[str, Blocks]], folder: Path, options: dict[str, str] | None = None,
) -> Doctor:
    """The doctor cell for a lesson's apps; ``options`` per app, as Python expressions in the
    kernel (``{"app": '{"params": {"n": N}}'}``)."""
    return Doctor({name: (options or {}).get(name, "{}") for name in apps},
                  folder / "doctor.json")


def assert_doctor_agrees(doctor: Doctor, apps: dict[str, dict[str, Blocks]]) -> None:
    """Every route of every app: blocked where the lesson says so, at its line; clean elsewhere."""
    reports = doctor.reports()
    assert set(reports) == set(apps), sorted(reports)
    problems = []
    for name, report in reports.items():
        expected = apps[name]
        seen = {f"{r['method']} {r['path']}" for r in report["routes"]}
        problems += [f"{name}: no route {label}" for label in expected if label not in seen]
        for route in report["routes"]:
            label = f"{route['method']} {route['path']}"
            blocks = [(b["part"], b["code"], round(b["duration_ms"])) for b in route["blocks"]]
            want = expected.get(label)
            if want is None:
                if route["blocks"] or route["verdict"] in BLOCKING_VERDICTS:
                    problems.append(f"{name} {label}: the lesson says it does not block; the "
                                    f"doctor says {route['verdict']}: {blocks}")
                continue
            named = [b for b in route["blocks"]
                     if b["part"] == want.part and want.line in (b["code"] or "")]
            if route["verdict"] != "blocks the loop" or not named:
                problems.append(f"{name} {label}: the lesson says it blocks at `{want.line}` "
                                f"({want.part}); the doctor says {route['verdict']}: {blocks}")
    evidence = [f"  {name} {line}" for name, report in reports.items()
                for line in loop_watch_evidence(report)]
    assert not problems, "\n".join(problems + ["what the loop watch saw:", *evidence])


def loop_watch_evidence(report: dict[str, Any]) -> list[str]:
    """One line per block the doctor's JSON report holds: route, code, and what the loop watch
    saw, for a failing test's message."""
    return [f"{r['method']} {r['path']} {b['code']}: {b['evidence']}"
            for r in report.get("routes", []) for b in r["blocks"]]
