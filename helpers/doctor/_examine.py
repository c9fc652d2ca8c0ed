"""Serve an app, exercise each route in turn while probing the loop, and judge what happened."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from helpers import loadgen
from helpers import server as servers
from helpers.checks._core import ErrorNotes, free_stuck_loop
from helpers.loopwatch import LoopBlock

from ._findings import OWN_CODE, AppParts, Finding, findings_of
from ._plan import PROBE_PATH, Function, Plan, Skipped, describe_function, plan_requests
from ._report import Report, RouteReport

PROBE_EVERY_S = 0.02
ROUTE_BUDGET_S = 0.8
"""About how long each route's burst may take; a slow or blocking route gets fewer requests."""
SETTLE_LIMIT_S = 10.0
"""How long a route's background work may go on after its burst (it counts as the route's);
the app is stopped only once it is done, so a lifespan that waits for it does not hang."""
MACHINE_STALL_LIMIT = 3.0
"""A block shorter than this many thresholds may be the machine's: the route gets a second burst."""
ECHO_SHARE = 0.5
"""In the second burst, blocks from this share of the threshold at the same line of the app's
code confirm the first when they add up to the threshold: code that builds a client per request
holds the loop 35-40 ms each time, which makes a block over the threshold only when requests
happen to run back to back."""
DEFAULT_REQUESTS = 20
DEFAULT_CONCURRENCY = 10
DEFAULT_THRESHOLD_MS = 50.0
DEFAULT_TIMEOUT_S = 5.0
STARTUP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Options:
    """What the command line's options set; the defaults examine a 20-route app in < 30 s."""

    requests: int = DEFAULT_REQUESTS
    concurrency: int = DEFAULT_CONCURRENCY
    threshold_ms: float = DEFAULT_THRESHOLD_MS
    timeout_s: float = DEFAULT_TIMEOUT_S
    routes: tuple[tuple[str, str], ...] = ()
    """``(METHOD, PATH)`` pairs to limit the run to; empty for every route."""
    params: tuple[tuple[str, str], ...] = ()
    """``(NAME, VALUE)`` pairs: the value of every parameter so named, in every route."""
    startup_timeout_s: float = STARTUP_TIMEOUT_S

    def __post_init__(self) -> None:
        for name in ("requests", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if not self.threshold_ms > 0:
            raise ValueError(f"threshold_ms must be positive, got {self.threshold_ms!r}")
        for name in ("timeout_s", "startup_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


class _WithProbe:
    """The app, plus one path the doctor answers itself without touching the app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
        send: Callable[..., Any],
    ) -> None:
        if scope["type"] == "http" and scope["path"] == PROBE_PATH:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


class _ThreadpoolGauge:
    """Samples anyio's threadpool limiter on the server's loop: the most tokens in use, and
    the most requests that waited for one."""

    def __init__(self) -> None:
        self.tokens = 0
        self.in_use = 0
        self.peak_in_use = 0
        self.peak_waiting = 0
        self._task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        self.peak_in_use = self.peak_waiting = 0

    async def _run(self) -> None:
        limiter = anyio.to_thread.current_default_thread_limiter()
        while True:
            self.tokens = int(limiter.total_tokens)
            self.in_use = int(limiter.borrowed_tokens)
            self.peak_in_use = max(self.peak_in_use, self.in_use)
            self.peak_waiting = max(self.peak_waiting, limiter.statistics().tasks_waiting)
            await asyncio.sleep(0.005)

    def start(self, server: servers.Server) -> None:
        def begin() -> list[asyncio.Task[None]]:
            # in a list: run_in_loop would await a task it got back, and this one never ends
            return [asyncio.get_running_loop().create_task(self._run())]

        self._task = server.run_in_loop(begin)[0]

    def stop(self, server: servers.Server) -> None:
        task = self._task
        if task is not None and server.running:
            try:
                server.run_in_loop(task.cancel, timeout=1.0)
            except (RuntimeError, TimeoutError):
                pass


def _middleware_functions(app: Any) -> list[Function]:
    found = []
    for middleware in getattr(app, "user_middleware", []):
        dispatch = getattr(middleware, "kwargs", {}).get("dispatch")
        candidates = [dispatch] if dispatch is not None else [
            value for value in vars(middleware.cls).values() if callable(value)
        ]
        for candidate in candidates:
            described = describe_function(candidate)
            if described is not None:
                found.append(described)
    return found


def _wanted(plan: Plan | Skipped, routes: Sequence[tuple[str, str]]) -> bool:
    return not routes or any(
        plan.method == method.upper() and plan.path == path for method, path in routes
    )


def examine_app(
    app: Any, options: Options, *, target: str = "", progress: Callable[[str], None] | None = None,
) -> Report:
    """Examine every route of ``app`` (an ASGI app object) and return the report.

    Raises :class:`helpers.server.ServerStartupError` when the app does not start."""
    plans = [p for p in plan_requests(app, dict(options.params)) if _wanted(p, options.routes)]
    if options.routes and not plans:
        known = ", ".join(f"{p.method} {p.path}" for p in plan_requests(app)) or "none"
        raise ValueError(f"no route matches {list(options.routes)}; the app has: {known}")
    endpoints = [p.endpoint for p in plans if p.endpoint is not None]
    dependencies = [d for p in plans if isinstance(p, Plan) for d in p.dependencies]
    parts = AppParts.of(endpoints, dependencies, _middleware_functions(app))
    started = time.perf_counter()
    report = Report(target or type(app).__name__, options.threshold_ms, options.requests,
                    options.concurrency)
    errors = ErrorNotes()
    log = logging.getLogger(servers.UVICORN_LOGGER)
    propagate = log.propagate
    log.addHandler(errors)
    log.propagate = False  # the app's tracebacks go into the report, not to stderr
    server = servers.serve(
        _WithProbe(app), name=f"doctor · {report.target}", threshold_ms=options.threshold_ms,
        startup_timeout_s=options.startup_timeout_s,
    )
    gauge = _ThreadpoolGauge()
    # Everything alive now (the app's data, the libraries, the doctor) goes to the collector's
    # permanent generation: a full collection then scans only what the routes create, so its
    # pause measures their garbage, not the size of the heap (60-85 ms gen-2 pauses landed on
    # whichever route ran, in a process holding the capstone's 15,000 orders).
    gc.collect()
    gc.freeze()
    try:
        gauge.start(server)
        for index, plan in enumerate(plans, 1):
            if progress is not None:
                progress(f"[{index}/{len(plans)}] {plan.method} {plan.path}")
            if isinstance(plan, Skipped):
                report.routes.append(RouteReport.skipped(plan))
                continue
            route, _ = _examine_route(server, plan, options, gauge, parts, errors)
            if _could_be_the_machine(route, options.threshold_ms):
                route = _repeated(route, server, plan, options, gauge, parts, errors)
            report.routes.append(route)
            if route.verdict == RouteReport.STUCK:
                for rest in plans[index:]:
                    report.routes.append(RouteReport.skipped(Skipped(
                        rest.method, rest.path,
                        "not examined: the event loop was still held by the route above",
                        rest.endpoint,
                    )))
                break
    finally:
        gc.unfreeze()
        gauge.stop(server)
        _stop(server)
        log.removeHandler(errors)
        log.propagate = propagate
    report.elapsed_s = time.perf_counter() - started
    return report


def _could_be_the_machine(route: RouteReport, threshold_ms: float) -> bool:
    """A route found blocking, whose longest block is short enough to be a stall of the whole
    process: those came to 50-111 ms in our runs on two busy cores, while the lessons' and the
    capstone's blocking code held the loop 163 ms and more."""
    longest_ms = max((f.longest_ms for f in route.findings), default=0.0)
    return route.verdict == RouteReport.BLOCKS and longest_ms < MACHINE_STALL_LIMIT * threshold_ms


def _repeated(
    first: RouteReport, server: servers.Server, plan: Plan, options: Options,
    gauge: _ThreadpoolGauge, parts: AppParts, errors: ErrorNotes,
) -> RouteReport:
    """Send a route a second burst: code that blocks the loop does it every time, while a busy
    machine stalls a process now and then (seen in whole-suite runs: 52-65 ms blocks on routes
    that never block, once each, beside a browser test on two cores). The route is reported
    blocking when the second burst blocks too, or holds the loop again at a line the first
    blamed, for the threshold in all, in blocks of at least :data:`ECHO_SHARE` of it."""
    echo_ms = ECHO_SHARE * options.threshold_ms
    with _watching_from(server, echo_ms):
        again, blocks = _examine_route(server, plan, options, gauge, parts, errors)
    echoes = findings_of(blocks, parts, plan.endpoint, echo_ms)
    echoed = _echoed(first.findings, echoes, options.threshold_ms)
    kept = first if again.verdict == RouteReport.BLOCKS or echoed else again
    kept.bursts = 2
    return kept


def _echoed(first: Sequence[Finding], echoes: Sequence[Finding], threshold_ms: float) -> bool:
    """Did a second burst's short blocks add up to ``threshold_ms`` at a line the first burst
    blamed? Lines of the app's own code only: a finding in FastAPI's work on the response is
    named at the endpoint's line too, where a busy machine's stalls while the loop writes
    answers would echo it (seen: lesson 04's quick GET /report-def kept blocking after two
    bursts, from a 137 ms stall at 2% loop-thread CPU in h11, beside three test processes)."""
    lines = {(f.file, f.line, f.part) for f in first if f.line and f.part in OWN_CODE}
    return any((e.file, e.line, e.part) in lines and e.duration_ms >= threshold_ms
               for e in echoes)


@contextlib.contextmanager
def _watching_from(server: servers.Server, threshold_ms: float) -> Iterator[None]:
    """Have the server's loop watch file blocks from ``threshold_ms`` for a while."""
    usual = server.watch.threshold_ms
    server.watch.threshold_ms = min(usual, threshold_ms)
    try:
        yield
    finally:
        server.watch.threshold_ms = usual


def _loop_stuck(server: servers.Server) -> bool:
    return server.watch.held_place(silent_s=1.0) is not None


def _stop(server: servers.Server) -> None:
    """Stop the server; a loop that a route holds for good is interrupted if it runs Python,
    else its daemon thread is left to end with the process (the command line exits at once)."""
    if not _loop_stuck(server):
        server.stop(timeout=2.0)
        return
    # the report already says where the loop is held: no second warning on stderr
    with contextlib.redirect_stderr(io.StringIO()):
        server.stop(timeout=0.5)
    free_stuck_loop(server, timeout_s=1.0)


def _size_burst(options: Options, latency_s: float, cpu_s: float, blocked: bool) -> int:
    """How many requests fit the route's budget: all of them for a quick route, fewer for one
    that is slow, computes (the GIL runs one thread's Python at a time) or blocks the loop."""
    n = options.requests
    waves = math.ceil(n / options.concurrency)
    estimate = max(latency_s * waves, cpu_s * n)
    if blocked:
        estimate = max(estimate, latency_s * n)  # requests wait for the loop one by one
    if estimate <= ROUTE_BUDGET_S:
        return n
    per_request = max(latency_s if blocked else latency_s / options.concurrency, cpu_s, 1e-3)
    # A route that computes in threads holds the loop only through the GIL, and only when
    # several threads compute at once: give it enough of them to show.
    computing = not blocked and cpu_s >= 0.5 * latency_s
    floor = min(n, 4 if computing else 2)
    return max(floor, min(n, int(ROUTE_BUDGET_S / per_request)))


def _busy(server: servers.Server, gauge: _ThreadpoolGauge) -> tuple[int, int]:
    """Requests in flight (background tasks included) and threadpool workers in use."""
    return server.requests_in_flight, gauge.in_use


def _settle(
    server: servers.Server, gauge: _ThreadpoolGauge, before: tuple[int, int], limit_s: float,
) -> None:
    """Wait, up to ``limit_s``, until the route's leftovers are done: its requests still
    running (their background tasks run in them) and its threadpool workers still busy, beyond
    what was busy ``before`` it (a hung route's request stays for good). Otherwise they run into
    the next route's burst, and the doctor blames that route for them (seen: a route whose
    background tasks computed in threads for 7 s, blamed on the route after it)."""
    deadline = time.monotonic() + limit_s
    time.sleep(0.01)  # the gauge reads the threadpool every 5 ms
    while time.monotonic() < deadline:
        requests, workers = _busy(server, gauge)
        if requests <= before[0] and workers <= before[1]:
            return
        time.sleep(0.01)


def _examine_route(
    server: servers.Server, plan: Plan, options: Options, gauge: _ThreadpoolGauge,
    parts: AppParts, errors: ErrorNotes,
) -> tuple[RouteReport, list[LoopBlock]]:
    """Measure one route: its report, and every block the loop watch filed during its burst."""
    request: dict[str, Any] = {
        "method": plan.method, "json": plan.json_body, "headers": dict(plan.headers),
        "timeout_s": options.timeout_s, "progress": False,
    }
    errors.errors.clear()
    # Collect the last route's garbage now, outside any measurement: otherwise the collector
    # frees it during this route's burst and charges this route for it (seen: 63 ms, 25 ms of
    # it collection, in a 1 ms summary route right after a route that built a client per call).
    gc.collect()
    # One request alone first: does the route answer at all, how long does it take, and how
    # much CPU does it use? It also pays for one-off costs (imports, caches) outside the burst.
    before = _busy(server, gauge)
    cpu_before = server.cpu_seconds()
    began = time.perf_counter()
    first = loadgen.load(server, plan.url, n=1, **request)
    record = first.records[0]
    if record.error is not None and "timed out" in record.error:
        held = server.watch.held_place(silent_s=1.0)
        if held is not None:
            return RouteReport.stuck(plan, options.timeout_s, held), []
        return RouteReport.hung(plan, options.timeout_s), []
    _settle(server, gauge, before, SETTLE_LIMIT_S)  # a background task's work is the route's
    cpu_s = max(0.0, server.cpu_seconds() - cpu_before)
    # the route's work lasts until its background tasks are done, not until its answer
    busy_s = time.perf_counter() - began
    server.watch.settle(time.perf_counter())
    blocked = any(b.duration_ms >= options.threshold_ms
                  for b in server.watch.blocks_between(began, time.perf_counter()))
    n = _size_burst(options, busy_s, cpu_s, blocked)
    concurrency = min(options.concurrency, n)
    estimate_s = max(busy_s * n if blocked else busy_s * n / concurrency, cpu_s * n, 0.1)
    probes = [PROBE_PATH] * max(5, min(int(2 * ROUTE_BUDGET_S / PROBE_EVERY_S),
                                       math.ceil(estimate_s / PROBE_EVERY_S)))
    gauge.reset()
    traffic, probe = loadgen.load_with_monitor(
        server, plan.url, n, probes, every_s=PROBE_EVERY_S, concurrency=concurrency, **request,
    )
    # Background tasks run after their response went out: they count against this route.
    _settle(server, gauge, before, SETTLE_LIMIT_S)
    server.watch.settle(time.perf_counter())
    blocks = server.watch.blocks_between(traffic.started_s, time.perf_counter())
    during = [r for r in probe.records if r.start_s <= traffic.ended_s]
    probe_latencies = sorted(r.latency_s for r in during) or [0.0]
    findings = findings_of(blocks, parts, plan.endpoint, options.threshold_ms)
    statuses = Counter(str(r.status) if r.status is not None else "no answer"
                       for r in traffic.records)
    failures = Counter(r.error or f"HTTP {r.status}" for r in traffic.records if not r.ok)
    report = RouteReport.measured(
        plan,
        sent=traffic.n, ok=traffic.ok, failed=traffic.errors,
        statuses=dict(statuses),
        failures=dict(failures),
        app_errors=list(dict.fromkeys(errors.errors)),
        response_sample=next((r.body for r in traffic.records if not r.ok and r.body), ""),
        p50_ms=traffic.p50 * 1000.0, p95_ms=traffic.p95 * 1000.0,
        probe_p50_ms=_percentile(probe_latencies, 0.5) * 1000.0,
        probe_max_ms=probe_latencies[-1] * 1000.0,
        findings=findings,
        threadpool_tokens=gauge.tokens,
        threadpool_peak=gauge.peak_in_use,
        threadpool_waiting=gauge.peak_waiting,
        threshold_ms=options.threshold_ms,
    )
    return report, blocks


def _percentile(ordered: Sequence[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]
