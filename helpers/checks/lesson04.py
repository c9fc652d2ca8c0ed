"""Checks for exercise 04 · Blocking the loop: three blocking calls fixed (in a dependency, a
middleware and an endpoint's body) and a deadline that answers 504 on time.

Each check wires the learner's piece into a small app of its own beside an ``async def``
``/health``, serves it, and sends four requests to the fixed endpoint while ``/health`` is
probed every 25 ms. A fix passes when the probes stay fast, the loop watch files no block of
100 ms or more, and the work still happens: each request still takes its half second (a fix
that deletes the work or returns a constant answers at once) and answers what the given body
answers.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI

from helpers import loadgen
from helpers import server as servers
from helpers.checks._core import (
    Check,
    ErrorNotes,
    blame,
    graded,
    own_code_blocks,
    stuck_line,
)

__all__ = ["check_dependency", "check_middleware", "check_report", "check_timeout"]

WORK_S = 0.5
"""What each blocking call in the exercise takes."""
FLOOR_S = 0.8 * WORK_S
"""A request faster than this did not do its work."""
BLOCK_MS = 100.0
"""A loop block this long or longer fails a fix (a thread start takes a few ms)."""
HEALTH_P95_S = 0.25
"""``/health`` p95 bound while the fixed endpoint works: milliseconds on a quiet machine, a
tenth of a second or two on a busy one; a blocked loop makes it 0.5 s or more."""
REQUEST_TIMEOUT_S = 3.0
"""Longest any one request may take: six times the work."""
DEADLINE_S = 0.3
"""Task 4's deadline around the quote service."""
PROBES = 24
PROBE_EVERY_S = 0.025


class _Run:
    """One check's requests to one app: a first request alone, then a probed burst."""

    def __init__(self, check: Check, server: servers.Server, fix: str) -> None:
        self.check = check
        self.server = server
        self.fix = fix

    def one(self, path: str, *, status: int = 200) -> loadgen.RequestRecord:
        """``path`` alone; no answer, or another status than ``status``, fails the check."""
        notes = ErrorNotes()
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addHandler(notes)
        try:
            record = self.check.load(self.server, path, timeout_s=REQUEST_TIMEOUT_S).records[0]
            if record.status is not None and record.status >= 500 and record.status != status:
                deadline = time.perf_counter() + 0.5  # uvicorn logs just after the 500
                while not notes.errors and time.perf_counter() < deadline:
                    time.sleep(0.01)
        finally:
            uvicorn_log.removeHandler(notes)
        if record.error is not None:
            self.unanswered(path, record.error)
        if record.status != status:
            logged = f"; the server logged {notes.errors[-1]}" if notes.errors else ""
            self.check.fail(
                measured=f"GET {path} answered HTTP {record.status}{logged}",
                expected=f"HTTP {status}",
                cause="the code raised an exception (or the route or its parameters changed)",
                fix=self.fix,
            )
        return record

    def unanswered(self, path: str, error: str) -> None:
        stuck = stuck_line(self.server)
        self.check.fail(
            measured=f"GET {path}: {error}"
            + (f"; the event loop is still held at {stuck}" if stuck else ""),
            expected=f"an answer within {REQUEST_TIMEOUT_S:g} s",
            cause="the code never finished: an endless loop, or a wait that never ends",
            fix=self.fix,
        )

    def body(self, path: str, record: loadgen.RequestRecord) -> Any:
        try:
            return json.loads(record.body)
        except ValueError:
            self.check.fail(
                measured=f"GET {path} answered {record.body[:80]!r}",
                expected="a JSON body",
                cause="the body of the code was changed",
                fix="keep what the code returns as given",
            )

    def did_the_work(self, path: str, record: loadgen.RequestRecord) -> None:
        if record.latency_s < FLOOR_S:
            self.check.fail(
                measured=f"GET {path} took {record.latency_s * 1000:.0f} ms",
                expected=f"about {WORK_S:g} s: the blocking call must still be made (its work is "
                "needed), only not on the event loop",
                cause="the work was taken out (or a constant is returned instead)",
                fix=self.fix,
            )

    def burst(self, path: str, n: int = 4) -> tuple[loadgen.LoadResult, loadgen.LoadResult]:
        """``n`` requests to ``path`` at once, then ``/health`` every 25 ms while they run;
        every request must answer, the loop must stay free and the probes fast."""
        paths = [path] * n + ["/health"] * PROBES
        result = self.check.load(
            self.server, paths, stagger_s=PROBE_EVERY_S, timeout_s=REQUEST_TIMEOUT_S
        )
        for record in result.records:
            if record.error is not None:
                self.unanswered(record.path, record.error)
        failed = [r for r in result.records if r.status != 200 and r.path == path]
        if failed:
            self.check.fail(
                measured=f"{len(failed)} of {n} requests to {path} at once answered "
                f"HTTP {failed[0].status}",
                expected="HTTP 200 for every one",
                cause="the code fails when several requests run at once",
                fix=self.fix,
            )
        blocks = own_code_blocks(result.loop_blocks, BLOCK_MS)
        if blocks:
            more = f" (and {len(blocks) - 1} more blocks)" if len(blocks) > 1 else ""
            self.check.fail(
                measured=blame(path.split("?")[0], blocks[0]) + more,
                expected=f"no loop block of {BLOCK_MS:.0f} ms or more",
                cause="a blocking call still runs on the event loop's thread",
                fix=self.fix,
            )
        health = result.for_path("/health")
        if health.p95 > HEALTH_P95_S:
            self.check.fail(
                measured=f"/health p95 {health.p95 * 1000:.0f} ms while {n} requests to "
                f"{path} ran",
                expected=f"/health p95 under {HEALTH_P95_S * 1000:.0f} ms",
                cause="something slows every request while this one works",
                fix=self.fix,
            )
        return result.for_path(path), health


def _app_with_health() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:  # nothing to do: its latency is the loop's
        return {"status": "ok"}

    return app


def _require_function(check: Check, value: Any, name: str) -> None:
    if not callable(value):
        check.fail(
            measured=f"{name} is {type(value).__name__}, not a function",
            expected=f"the function `{name}` from your solution cell",
            cause="the solution cell has not run, or the name was reassigned",
            fix="run the solution cell, then this one",
        )


def _passed_line(check: Check, calls: loadgen.LoadResult, health: loadgen.LoadResult) -> None:
    check.passed(
        f"4 requests at once in {calls.wall_s:.2f} s (the work: {WORK_S:g} s each), "
        f"/health p95 {health.p95 * 1000:.0f} ms, no loop block"
    )


@graded
def check_dependency(current_user: Callable[..., Any]) -> None:
    """Task 1: `/profile`'s dependency no longer blocks the loop, and still looks the user up."""
    fix = (
        "use `await asyncio.sleep` or a plain `def` (FastAPI runs a `def` dependency in a "
        "worker thread)"
    )
    with Check("Task 1 · the dependency") as check:
        _require_function(check, current_user, "current_user")
        app = _app_with_health()

        @app.get("/profile")
        async def profile(user: Any = Depends(current_user)) -> Any:  # noqa: B008
            return user

        with check.serve(app) as server:
            run = _Run(check, server, fix)
            user_id = secrets.randbelow(9000) + 1000
            path = f"/profile?user_id={user_id}"
            record = run.one(path)
            body = run.body(path, record)
            if not isinstance(body, dict) or body.get("id") != user_id:
                check.fail(
                    measured=f"GET {path} answered {record.body[:80]}",
                    expected=f'the user: {{"id": {user_id}, "name": "user {user_id}"}}',
                    cause="the dependency no longer returns what it looked up",
                    fix="keep its return line as given",
                )
            run.did_the_work(path, record)
            calls, health = run.burst(path)
        _passed_line(check, calls, health)


@graded
def check_middleware(audit: Callable[..., Any]) -> None:
    """Task 2: the audit middleware no longer blocks the loop, and still audits each order."""
    fix = (
        "a middleware must stay `async def`: send the blocking call to a worker thread with "
        "`await run_in_threadpool(ship_audit_line, ...)`"
    )
    with Check("Task 2 · the middleware") as check:
        _require_function(check, audit, "audit")
        app = _app_with_health()

        @app.get("/orders")
        async def orders() -> dict[str, list[int]]:
            return {"orders": []}

        try:
            app.middleware("http")(audit)
        except Exception as error:  # FastAPI refuses a middleware only once the app starts
            check.fail(
                measured=f"app.middleware('http')(audit) raised {type(error).__name__}: {error}",
                expected="a function FastAPI accepts as an HTTP middleware",
                cause="audit's signature changed",
                fix="keep `async def audit(request, call_next)`",
            )
        with check.serve(app) as server:
            run = _Run(check, server, fix)
            record = run.one("/orders")
            notes = run.one("/health")
            if notes.latency_s >= FLOOR_S:
                check.fail(
                    measured=f"GET /health took {notes.latency_s * 1000:.0f} ms",
                    expected="milliseconds: only requests to /orders are audited",
                    cause="the middleware audits every request, not only /orders",
                    fix="keep the `if request.url.path.startswith(\"/orders\")` test as given",
                )
            run.did_the_work("/orders", record)
            body = run.body("/orders", record)
            if body != {"orders": []}:
                check.fail(
                    measured=f"GET /orders answered {record.body[:80]}",
                    expected='{"orders": []}, what the endpoint returned',
                    cause="the middleware changed the response",
                    fix="return the response `call_next` gave you",
                )
            calls, health = run.burst("/orders")
        _passed_line(check, calls, health)


@graded
def check_report(report: Callable[..., Any]) -> None:
    """Task 3: `/report`'s body no longer blocks the loop, and still builds the report."""
    fix = (
        "make `report` a plain `def`, or keep `async def` and "
        "`await run_in_threadpool(run_sales_query, year)`"
    )
    with Check("Task 3 · the body") as check:
        _require_function(check, report, "report")
        app = _app_with_health()
        try:
            app.get("/report")(report)
        except Exception as error:
            check.fail(
                measured=f"app.get('/report')(report) raised {type(error).__name__}: {error}",
                expected="a function FastAPI accepts as an endpoint",
                cause="report's signature changed",
                fix="keep `report(year: int = 2024)`",
            )
        with check.serve(app) as server:
            run = _Run(check, server, fix)
            year = 1900 + secrets.randbelow(200)
            path = f"/report?year={year}"
            record = run.one(path)
            body = run.body(path, record)
            if not isinstance(body, dict) or body.get("year") != year or body.get(
                "total"
            ) != _total(year):
                check.fail(
                    measured=f"GET {path} answered {record.body[:80]}",
                    expected=f'{{"year": {year}, "total": {_total(year)}}}',
                    cause="the report no longer returns what the query gave",
                    fix="keep the return line as given",
                )
            run.did_the_work(path, record)
            calls, health = run.burst(path)
        _passed_line(check, calls, health)


def _total(year: int) -> int:
    """What the exercise's sales query returns for ``year``."""
    return year * 37 % 1000


@graded
def check_timeout(quote: Callable[..., Any]) -> None:
    """Task 4: `/quote` answers 504 at its 0.3 s deadline when the quote service is slow."""
    fix = (
        "wrap the await in `async with asyncio.timeout(DEADLINE):` (or `asyncio.wait_for`) and "
        "turn TimeoutError into `HTTPException(504)`"
    )
    with Check("Task 4 · a deadline") as check:
        _require_function(check, quote, "quote")
        app = _app_with_health()
        try:
            app.get("/quote")(quote)
        except Exception as error:
            check.fail(
                measured=f"app.get('/quote')(quote) raised {type(error).__name__}: {error}",
                expected="a function FastAPI accepts as an endpoint",
                cause="quote's signature changed",
                fix="keep `async def quote(delay: float = 0.05)`",
            )
        with check.serve(app) as server:
            run = _Run(check, server, fix)
            fast = run.one("/quote?delay=0.05")
            body = run.body("/quote", fast)
            if not isinstance(body, dict) or "price" not in body:
                check.fail(
                    measured=f"GET /quote?delay=0.05 answered {fast.body[:80]}",
                    expected="the quote fetch_quote returned, when it came in time",
                    cause="the endpoint no longer returns the quote",
                    fix="return what `await fetch_quote(delay)` gives",
                )
            result = check.load(server, "/quote?delay=2", timeout_s=REQUEST_TIMEOUT_S)
            slow = result.records[0]
            if slow.error is not None:
                run.unanswered("/quote?delay=2", slow.error)
            answered = f"HTTP {slow.status} after {slow.latency_s:.2f} s"
            if slow.status != 504:
                check.fail(
                    measured=f"with a 2 s quote service: {answered}",
                    expected=f"HTTP 504 after about {DEADLINE_S:g} s",
                    cause="no deadline around the call"
                    if slow.status == 200
                    else "the timeout is not turned into a 504",
                    fix=fix,
                )
            if not 0.7 * DEADLINE_S <= slow.latency_s <= DEADLINE_S + 0.3:
                check.fail(
                    measured=f"with a 2 s quote service: {answered}",
                    expected=f"HTTP 504 after about {DEADLINE_S:g} s",
                    cause="the deadline is not DEADLINE, or something holds the loop so its "
                    "timer cannot fire",
                    fix=fix,
                )
        check.passed(
            f"a slow quote service got HTTP 504 after {slow.latency_s:.2f} s "
            f"(deadline {DEADLINE_S:g} s); a fast one got its quote"
        )
