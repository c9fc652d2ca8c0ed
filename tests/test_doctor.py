"""The app doctor end to end, as a user runs it: the command in a subprocess, its exit status,
its table and its JSON; and ``examine()`` in-process, as a notebook calls it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers.doctor import RouteReport, examine
from tests.test_workers import marked_processes

APPS = Path(__file__).parent / "fixtures" / "doctor"
WARD = APPS / "ward.py"
ROOT = Path(__file__).parent.parent
RUN_LIMIT_S = 90.0
"""No run of the doctor may take longer: a hang fails the test instead of stalling the suite."""


def doctor(*args: str, case: str = "", marker: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DOCTOR_CASE=case,
               DOCTOR_TEST_MARKER=marker or "none")
    return subprocess.run(
        [sys.executable, "-m", "helpers.doctor", *args], cwd=APPS, env=env,
        capture_output=True, text=True, timeout=RUN_LIMIT_S,
    )


def marked_lines(path: Path) -> dict[str, list[int]]:
    """``{part: [line, ...]}`` for each ``# DOCTOR: part`` marker in the file."""
    found: dict[str, list[int]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.search(r"# DOCTOR: (.+)$", line)
        if match:
            found.setdefault(match.group(1).strip(), []).append(number)
    return found


@pytest.fixture(scope="module")
def ward_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str],
                                                               dict[str, Any], float]:
    out = tmp_path_factory.mktemp("doctor") / "ward.json"
    started = time.monotonic()
    run = doctor("ward.py:app", "--json", str(out))
    return run, json.loads(out.read_text()), time.monotonic() - started


BLOCKING = {
    # route: the part of the app the doctor must blame
    "GET /sleepy": "endpoint",
    "GET /looked-up": "dependency",
    "GET /audited": "middleware",
    "GET /crunch": "GIL held by other threads",
    "GET /fetch": "endpoint",
    "POST /orders": "background task",
    "GET /export": "encoding the response",
}
FINE = ["GET /fine", "GET /threaded", "GET /items/{item_id}", "GET /ticker"]


def routes_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['method']} {r['path']}": r for r in report["routes"]}


def test_the_doctor_names_each_blocking_route_at_its_line(ward_run: Any) -> None:
    run, report, _ = ward_run
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr == ""
    routes = routes_of(report)
    lines = marked_lines(WARD)
    for label, part in BLOCKING.items():
        route = routes[label]
        assert route["verdict"] == RouteReport.BLOCKS, f"{label}: {route}"
        worst = route["blocks"][0]
        # as text: pytest would cut a dict's repr short, the watch's evidence with it
        assert worst["part"] == part, f"{label}: {worst}"
        assert worst["file"] == str(WARD), f"{label}: {worst}"
        assert worst["line"] in lines[part], f"{label}: {worst}, expected one of {lines[part]}"
        assert worst["duration_ms"] >= report["threshold_ms"]
        assert route["fix"], label
    # the fix fits the finding
    assert "asyncio.sleep" in routes["GET /sleepy"]["fix"]
    assert "lifespan" in routes["GET /fetch"]["fix"]
    assert "process pool" in routes["GET /crunch"]["fix"]
    assert "plain `def`" in routes["GET /looked-up"]["fix"]
    assert "paginate" in routes["GET /export"]["fix"]


def test_the_doctor_finds_nothing_on_routes_that_do_not_block(ward_run: Any) -> None:
    _, report, _ = ward_run
    routes = routes_of(report)
    for label in FINE:
        route = routes[label]
        assert route["verdict"] == RouteReport.OK, (label, route)
        assert route["blocks"] == [], (label, route["blocks"])
        assert route["counts"]["failed"] == 0
    assert routes["GET /items/{item_id}"]["url"] == "/items/1?limit=1"
    assert routes["GET /threaded"]["runs_on"] == "threadpool"
    assert routes["GET /fine"]["runs_on"] == "event loop + threadpool"
    assert routes["GET /sleepy"]["runs_on"] == "event loop"


def test_the_doctor_reports_errors_and_skips_websockets(ward_run: Any) -> None:
    run, report, elapsed_s = ward_run
    routes = routes_of(report)
    broken = routes["GET /broken"]
    assert broken["verdict"] == RouteReport.FAILS
    assert "ZeroDivisionError" in broken["failures"]
    live = routes["WS /live"]
    assert live["verdict"] == RouteReport.SKIPPED and "WebSocket" in live["reason"]
    # the table, with one line per route and the summary
    for label in [*BLOCKING, *FINE, "GET /broken", "WS /live"]:
        assert re.search(rf"^{re.escape(label)}\s", run.stdout, re.MULTILINE), label
    assert "7 need fixing" in run.stdout
    assert elapsed_s < 30.0, f"13 routes took {elapsed_s:.1f} s"


def test_json_follows_the_documented_schema(ward_run: Any) -> None:
    _, report, _ = ward_run
    documented = (ROOT / "docs" / "doctor.md").read_text()
    route_keys = set(report["routes"][0])
    block_keys = set(routes_of(report)["GET /sleepy"]["blocks"][0])
    for key in {*report, *route_keys, *block_keys}:
        assert f"`{key}`" in documented, f"docs/doctor.md does not document {key!r}"
    assert report["schema_version"] == 1 and report["exit_status"] == 1


@pytest.mark.parametrize(
    ("case", "target", "says"),
    [
        ("import", "troubled.py:app", "RuntimeError: DATABASE_URL is not set"),
        ("lifespan", "troubled.py:app", "ConnectionError: the cache refused the connection"),
        ("lifespan-hang", "troubled.py:app", "await asyncio.Event().wait()"),
        ("", "troubled.py:not_an_app", "not an ASGI app"),
        ("", "troubled.py:missing", "has no attribute 'missing'"),
        ("", "no_such_module:app", "no module named 'no_such_module'"),
        ("", "troubled.py", "package.module:app"),
    ],
)
def test_an_app_that_cannot_start_exits_2_with_one_line(case: str, target: str, says: str) -> None:
    started = time.monotonic()
    run = doctor(target, "--startup-timeout", "1", case=case)
    assert run.returncode == 2, run.stdout + run.stderr
    first, *rest = run.stderr.splitlines()
    assert first.startswith("doctor: "), run.stderr
    assert says in run.stderr, run.stderr
    if case in ("import", "lifespan"):
        # the app's own traceback, down to the line that failed
        assert "troubled.py" in "\n".join(rest) and "the " in first
    assert time.monotonic() - started < 20.0


def test_usage_errors_exit_2() -> None:
    for args in (["ward.py:app", "--requests", "0"], ["ward.py:app", "--concurrency", "x"], [],
                 ["ward.py:app", "--param", "n"]):
        run = doctor(*args)
        assert run.returncode == 2, (args, run.stderr)
        assert "usage:" in run.stderr
    assert "--param takes NAME=VALUE, not 'n'" in run.stderr
    run = doctor("ward.py:app", "--route", "GET", "/nowhere")
    assert run.returncode == 2 and "no route matches" in run.stderr


def test_a_hanging_route_and_an_empty_app_are_lines_not_hangs() -> None:
    run = doctor("troubled.py:app", "--timeout", "1", "--json", "-")
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    routes = routes_of(report)
    assert routes["GET /hang"]["verdict"] == RouteReport.HANGS
    assert "no answer within 1 s" in routes["GET /hang"]["reason"]
    assert routes["GET /ok"]["verdict"] == RouteReport.OK
    assert "GET /hang: no answer within 1 s" in run.stderr  # the table went to stderr
    empty = doctor("troubled.py:empty")
    assert empty.returncode == 0 and "the app has no routes to examine" in empty.stdout


def test_a_loop_held_for_good_exits_1_and_leaves_no_process() -> None:
    marker = uuid.uuid4().hex
    started = time.monotonic()
    run = doctor("troubled.py:stuck", "--timeout", "1", "--json", "-", marker=marker)
    elapsed_s = time.monotonic() - started
    assert run.returncode == 1, run.stdout + run.stderr
    routes = routes_of(json.loads(run.stdout))
    spin = routes["GET /spin"]
    assert spin["verdict"] == RouteReport.STUCK
    assert spin["blocks"][0]["code"] == "while True:"
    assert routes["GET /last"]["verdict"] == RouteReport.SKIPPED
    assert routes["GET /first"]["verdict"] == RouteReport.OK
    assert elapsed_s < 30.0
    assert marked_processes(marker) == []


def test_examine_in_process_returns_the_report_with_a_picture() -> None:
    from tests.fixtures.doctor.ward import app

    threads_before = {t.ident for t in threading.enumerate()}
    report = examine(app, routes=[("GET", "/sleepy"), ("GET", "/fine")], requests=6)
    # the doctor's server, its loop and its threadpool are gone when it returns (load()'s worker
    # processes, and their reader threads, stay for the next load on purpose)
    left = [t.name for t in threading.enumerate()
            if t.ident not in threads_before and not t.name.startswith("load-worker")]
    assert left == [], left
    by_label = {r.label: r for r in report.routes}
    assert by_label["GET /sleepy"].verdict == RouteReport.BLOCKS
    assert by_label["GET /fine"].verdict == RouteReport.OK
    assert report.exit_status == 1
    page = report._repr_html_()
    assert "<table>" in page and "data:image/png;base64," in page
    assert "GET /sleepy: loop blocked" in str(report)
    assert "loop blocked by route: GET /sleepy" in report.picture().description


def test_a_block_that_does_not_repeat_in_a_second_burst_is_not_the_routes() -> None:
    from fastapi import FastAPI

    app = FastAPI()
    calls = {"once": 0, "often": 0}

    @app.get("/once")
    async def once() -> dict[str, bool]:
        calls["once"] += 1
        if calls["once"] == 4:  # one request of the first burst: a stall that does not come back
            time.sleep(0.12)
        return {"ok": True}

    @app.get("/often")
    async def often() -> dict[str, bool]:
        calls["often"] += 1
        if calls["often"] % 4 == 0:  # one request in every burst: short, but it comes back
            time.sleep(0.12)
        return {"ok": True}

    @app.get("/long")
    async def long() -> dict[str, bool]:
        time.sleep(0.2)  # four thresholds: no stall of the machine lasts this long
        return {"ok": True}

    report = examine(app, requests=6)
    by_label = {r.label: r for r in report.routes}
    assert calls["once"] > 7, calls  # the single request, a burst of 6, and a second burst
    assert by_label["GET /once"].verdict == RouteReport.OK, by_label["GET /once"].findings
    assert by_label["GET /once"].bursts == 2
    assert by_label["GET /often"].verdict == RouteReport.BLOCKS
    assert by_label["GET /often"].bursts == 2
    assert by_label["GET /often"].findings[0].line > 0
    assert by_label["GET /long"].verdict == RouteReport.BLOCKS
    assert by_label["GET /long"].bursts == 1


def test_short_blocks_at_the_line_a_first_burst_blamed_confirm_it() -> None:
    from fastapi import FastAPI

    app = FastAPI()
    calls = 0

    @app.get("/client-per-request")
    async def client_per_request() -> dict[str, bool]:
        nonlocal calls
        calls += 1
        # every request holds the loop for less than the threshold, as building an HTTP client
        # does (35-40 ms); one of the first burst's holds it longer, so the route gets a second
        # burst. One request at a time (concurrency 1), each after a wait that lets the watch's
        # heartbeat run: no two holds run back to back to make one of 50 ms
        await asyncio.sleep(0.02)
        time.sleep(0.12 if calls == 2 else 0.035)
        return {"ok": True}

    report = examine(app, requests=6, concurrency=1)
    (route,) = report.routes
    assert route.bursts == 2
    assert route.verdict == RouteReport.BLOCKS, route.findings
    assert route.findings[0].code == "time.sleep(0.12 if calls == 2 else 0.035)"
