"""Checks for exercise 06 · CPU work: a computing endpoint offloaded to a process pool that the
app's lifespan creates and shuts down.

Each check serves the learner's ``app`` and sends ``GET /work?n=...`` (``burn(n)`` from
``helpers.cpu``, about 0.3 s of CPU; each request's ``n`` differs, and its checksum is checked).
The verdicts rest on evidence that does not depend on how many cores are free at the moment:
where the jobs' CPU time went (this process, or the pool's worker processes: read from Linux's
per-process CPU clocks), what the loop watch filed, which processes existed when, and whether
two worker processes computed in the same moments. Wall times are reported, never graded: beside
another busy program a pool's speed-up shrinks to nothing on a 2-core machine (lesson 06).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from helpers import cpu, loadgen, workers
from helpers import server as servers
from helpers._thread_cpu import process_cpu_s
from helpers.checks._core import (
    Check,
    ErrorNotes,
    blame,
    describe_blocks,
    free_stuck_loop,
    graded,
    own_code_blocks,
    stuck_line,
)

__all__ = [
    "JOB_S",
    "checksum",
    "check_lifespan",
    "check_offload",
    "check_two_at_once",
    "usable_cores",
]

JOB_S = 0.3
"""CPU seconds of one job, as the exercise sizes it."""
BURST = 4
"""Task 1's jobs at once."""
PROBES = 32
PROBE_EVERY_S = 0.025
PING_P95_S = 0.5
"""``/ping`` p95 bound while four jobs compute in the pool, a backstop (the loop watch and the
CPU clocks decide first): a few milliseconds on a quiet machine, but 157 ms was seen with the
check's process at low priority on a busy one; four jobs on the loop hold it about 1.2 s."""
BLOCK_MS = 100.0
"""A loop block this long or longer at the learner's line fails Task 1."""
FLOOR_SHARE = 0.3
"""Of the jobs' calibrated CPU time, this much in the server's own process means they were not
offloaded, and at least this much must show up in the pool's processes (a job's CPU time
varies up to 1.5x with the calibration; measured: under 0.1 s of 1.2 s in the server's process
with a pool, all of it with threads)."""
FIRST_TIMEOUT_S = 10.0
"""The first request may start the pool's first process (a Python start-up) beside its job."""
REQUEST_TIMEOUT_S = 10.0
"""Longest any later request may take: a round of four that starts the pool's other processes
took over 6 s once at load average 10 (the check's process at the lowest priority)."""
GONE_WITHIN_S = 3.0
"""How long after the server stopped its worker processes may take to end."""
STOPPED_WITHIN_S = 2.0
"""How long a worker process the check stopped may take to leave ``active_children()``."""
SAMPLE_EVERY_S = 0.02
"""Task 2's sampler: how often it reads each worker process's CPU clock."""
TOGETHER_SHARE = 0.3
"""Task 2: in at least this share of the moments when a job computed, both did (measured: most
moments for a pool of two, only the hand-over moment for jobs that wait for each other)."""
_MODULUS = 1_000_003  # helpers.cpu's


def checksum(n: int) -> int:
    """What ``burn(n)`` returns, in closed form: the sum of i*i for i < n, modulo 1,000,003."""
    return ((n - 1) * n * (2 * n - 1) // 6) % _MODULUS if n > 0 else 0


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _clocks_readable() -> bool:
    return process_cpu_s(os.getpid()) is not None


def _children() -> dict[int, BaseProcess]:
    """This process's live ``multiprocessing`` children by pid: a process pool's workers (not
    multiprocessing's own resource tracker or forkserver, which live as long as the kernel)."""
    return {p.pid: p for p in multiprocessing.active_children() if p.pid is not None}


@dataclass
class _Usage:
    """CPU seconds at one moment: this process's, and each live worker process's."""

    own_s: float
    children_s: dict[int, float]
    ended_s: float
    """CPU seconds of this process's children that have ended and been waited for."""

    @classmethod
    def now(cls) -> _Usage:
        readings = {pid: process_cpu_s(pid) for pid in _children()}
        times = os.times()
        return cls(
            process_cpu_s(os.getpid()) or 0.0,
            {pid: s for pid, s in readings.items() if s is not None},
            times.children_user + times.children_system,
        )

    def since(self, before: _Usage) -> tuple[float, dict[int, float]]:
        """CPU seconds used since ``before``: in this process, and per worker process alive at
        both moments."""
        return self.own_s - before.own_s, {
            pid: s - before.children_s[pid]
            for pid, s in self.children_s.items() if pid in before.children_s
        }


@dataclass
class _Sampler:
    """Reads the CPU clocks of some worker processes every 20 ms, in a thread of its own."""

    pids: list[int]
    samples: list[dict[int, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[_Sampler]:
        thread = threading.Thread(target=self._run, name="check: CPU sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(1.0)

    def _run(self) -> None:
        while True:
            readings = {pid: process_cpu_s(pid) for pid in self.pids}
            self.samples.append({p: s for p, s in readings.items() if s is not None})
            if self._stop.wait(SAMPLE_EVERY_S):
                return

    def moments(self) -> tuple[int, int]:
        """(moments in which some worker computed, moments in which two or more did)."""
        active = together = 0
        for before, after in zip(self.samples, self.samples[1:], strict=False):
            grew = [p for p in after if p in before and after[p] - before[p] >= 0.001]
            active += bool(grew)
            together += len(grew) >= 2
        return active, together


class _Run:
    """One check's requests to the learner's app."""

    def __init__(
        self, check: Check, server: servers.Server, said: workers.ChildStderr
    ) -> None:
        self.check = check
        self.server = server
        self.said = said  # what the worker processes wrote to their stderr
        self.fix = (
            "compute in the lifespan's pool: `await loop.run_in_executor(request.state.pool, "
            "burn, n)` in an `async def` endpoint"
        )

    def paths(self, count: int) -> list[str]:
        base = cpu.calibrate(JOB_S)
        return [f"/work?n={base + secrets.randbelow(1000)}" for _ in range(count)]

    def send(
        self, paths: list[str], *, timeout_s: float = REQUEST_TIMEOUT_S, **options: Any
    ) -> loadgen.LoadResult:
        """``paths`` at once (with any probes in ``options``); every job must come back right."""
        notes = ErrorNotes()
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addHandler(notes)
        try:
            result = self.check.load(self.server, paths, timeout_s=timeout_s, **options)
            if any(r.status is not None and r.status >= 500 for r in result.records):
                deadline = time.perf_counter() + 0.5  # uvicorn logs just after the 500
                while not notes.errors and time.perf_counter() < deadline:
                    time.sleep(0.01)
        finally:
            uvicorn_log.removeHandler(notes)
        if any(record.error is not None for record in result.records):
            self.not_blocked(result)  # a job on the loop can outlast the timeout: say so first
        for record in result.records:
            if record.error is not None:
                self.unanswered(record.path, record.error, timeout_s)
        for record in result.records:
            if record.status != 200:
                self.wrong_status(record, notes)
            if record.path.startswith("/work"):
                self.right_checksum(record)
        return result

    def not_blocked(self, result: loadgen.LoadResult) -> None:
        """Fail if the learner's code held the event loop for ``BLOCK_MS`` or more (not while
        the pool started a worker process: that is the machine's speed, not the learner's)."""
        blocks = own_code_blocks(result.loop_blocks, BLOCK_MS)
        if blocks:
            self.check.fail(
                measured=blame("/work", blocks[0])
                + (f" (and {len(blocks) - 1} more blocks)" if len(blocks) > 1 else ""),
                expected=f"no loop block of {BLOCK_MS:.0f} ms or more",
                cause="the job computes on the event loop's thread (an `async def` endpoint "
                "that calls `burn(n)` itself)",
                fix=self.fix,
            )

    def unanswered(self, path: str, error: str, timeout_s: float) -> None:
        stuck = stuck_line(self.server)
        self.check.fail(
            measured=f"GET {path.split('?')[0]}: {error}"
            + (f"; the event loop is still held at {stuck}" if stuck else ""),
            expected=f"an answer within {timeout_s:g} s",
            cause="the code never finished: an endless loop, or a wait that never ends",
            fix=self.fix,
        )

    def wrong_status(self, record: loadgen.RequestRecord, notes: ErrorNotes) -> None:
        logged = notes.errors[-1] if notes.errors else ""
        cause = "the endpoint raised an exception (or the route or its parameter changed)"
        if "BrokenProcessPool" in logged:
            died = self.said.last_line()
            cause = (
                f"a worker process died of {died}: a job sent to a spawn or forkserver pool "
                "must live in a module (use `burn` from helpers.cpu, not a function defined "
                "in the notebook)" if "Error" in died else
                "the pool's worker processes are gone: stopped with an earlier server (a pool "
                "made outside the lifespan outlives it), or one died"
            )
        elif "pool" in logged and ("AttributeError" in logged or "KeyError" in logged):
            cause = "the lifespan does not hand the pool to the endpoint (`yield {\"pool\": pool}`)"
        self.check.fail(
            measured=f"GET {record.path.split('?')[0]} answered HTTP {record.status}"
            + (f"; the server logged {logged}" if logged else ""),
            expected="HTTP 200",
            cause=cause,
            fix=self.fix,
        )

    def right_checksum(self, record: loadgen.RequestRecord) -> None:
        n = int(record.path.split("n=")[1])
        try:
            body = json.loads(record.body)
        except ValueError:
            body = None
        got = body.get("checksum") if isinstance(body, dict) else None
        if got != checksum(n):
            self.check.fail(
                measured=f"GET /work?n={n} answered {record.body[:80]}",
                expected=f'{{"n": {n}, "checksum": {checksum(n)}}}: what burn({n}) returns',
                cause="the endpoint does not return what the job computed",
                fix="return `{\"n\": n, \"checksum\": <what burn(n) returned>}`",
            )


@contextmanager
def _serving(check: Check, app: Any) -> Iterator[_Run]:
    """Serve the learner's app; a loop the learner's code still holds afterwards is freed."""
    _require_app(check, app)
    # the pool's processes, started in here, write their stderr (a traceback) to `said`
    with workers.worker_stderr() as said:
        with check.serve(app, threshold_ms=BLOCK_MS / 2) as server:
            yield _Run(check, server, said)
        free_stuck_loop(server)


def _require_app(check: Check, app: Any) -> None:
    if not callable(app):
        check.fail(
            measured=f"app is {type(app).__name__}, not an app",
            expected="the FastAPI app from your solution cell",
            cause="the solution cell has not run, or the name was reassigned",
            fix="run the solution cell, then this one",
        )


def _stop_runaways(pids: set[int]) -> None:
    """Stop worker processes of this check that still compute after their server stopped (a
    job that never ends): they would burn a core for the kernel's life."""
    before = {pid: process_cpu_s(pid) for pid in pids}
    time.sleep(0.2)
    computing = set()
    for pid, spent in before.items():
        now = process_cpu_s(pid)
        if spent is not None and now is not None and now - spent > 0.05:
            computing.add(pid)
    _stop(computing)


def _in_process_cause(blocks: list[Any]) -> str:
    gil = [b for b in blocks if b.waited_for_gil]
    watch = (
        f"; the loop watch filed {len(gil)} waits for the GIL "
        f"(longest {max(b.duration_ms for b in gil):.0f} ms)" if gil else ""
    )
    return (
        "the jobs ran in a worker thread of the server's own process (a `def` endpoint, or "
        "`run_in_executor(None, ...)`), and every thread of a process shares one GIL with the "
        f"event loop{watch}"
    )


@graded
def check_offload(app: Any) -> None:
    """Task 1: four jobs compute in the pool's processes; `/ping` stays fast, the loop free."""
    with Check("Task 1 · offload the job") as check:
        with _serving(check, app) as run:
            run.send(run.paths(1), timeout_s=FIRST_TIMEOUT_S)
            run.send(run.paths(BURST))  # the pool starts the rest of its processes
            idle = run.send(["/ping"] * 8, stagger_s=PROBE_EVERY_S)
            before = _Usage.now()
            result = _burst_with_probes(run)
            after = _Usage.now()
            new = sorted(set(after.children_s) - set(before.children_s))
        _stop_runaways(set(after.children_s))
        run.not_blocked(result)
        jobs = sum(1 for record in result.records if record.path.startswith("/work"))
        own_s, per_child = after.since(before)
        pool_s = sum(per_child.values())
        floor_s = FLOOR_SHARE * jobs * JOB_S
        if _clocks_readable():
            if own_s >= floor_s and own_s > pool_s:
                check.fail(
                    measured=f"the {jobs} jobs used {own_s:.2f} s of CPU in the server's process "
                    f"and {pool_s:.2f} s in worker processes",
                    expected="their CPU time in the pool's worker processes, hardly any in the "
                    "server's",
                    cause=_in_process_cause(result.loop_blocks),
                    fix=run.fix,
                )
            if pool_s < floor_s:
                ended_s = after.ended_s - before.ended_s
                elsewhere = (
                    f"; {len(new)} new processes started meanwhile" if new else
                    f"; processes that started and ended meanwhile used {ended_s:.2f} s"
                    if ended_s >= floor_s else ""
                )
                check.fail(
                    measured=f"the {jobs} jobs used {pool_s:.2f} s of CPU in worker processes "
                    f"alive before and after them{elsewhere}",
                    expected=f"about {jobs * JOB_S:.1f} s there: the jobs computed by the pool "
                    "that the lifespan made",
                    # not in this process either, yet the checksums were right: in processes
                    # that came and went
                    cause="a new pool (and new processes) for each request",
                    fix="create one pool in the lifespan and use it from every request",
                )
        ping = result.for_path("/ping")
        if ping.p95 > PING_P95_S:
            check.fail(
                measured=f"/ping p95 {ping.p95 * 1000:.0f} ms while {jobs} jobs computed "
                f"(idle: p50 {idle.p50 * 1000:.0f} ms); {describe_blocks(result.loop_blocks)}",
                expected=f"/ping p95 under {PING_P95_S * 1000:.0f} ms",
                cause="something holds the loop or the GIL while the jobs run",
                fix=run.fix,
            )
        workers = sum(1 for s in per_child.values() if s >= 0.05)
        check.passed(
            f"{jobs} jobs computed in {workers} worker processes ({pool_s:.2f} s of CPU there, "
            f"{own_s:.2f} s in the server's); /ping p95 {ping.p95 * 1000:.0f} ms "
            f"(idle p50 {idle.p50 * 1000:.0f} ms), no loop block"
        )


def _burst_with_probes(run: _Run) -> loadgen.LoadResult:
    """``BURST`` jobs at once, then ``/ping`` every 25 ms while they compute."""
    return run.send(run.paths(BURST) + ["/ping"] * PROBES, stagger_s=PROBE_EVERY_S)


@graded
def check_two_at_once(app: Any) -> None:
    """Task 2: two jobs sent at once compute at the same time, in two worker processes."""
    cores = usable_cores()
    with Check("Task 2 · two jobs at once") as check:
        with _serving(check, app) as run:
            run.send(run.paths(1), timeout_s=FIRST_TIMEOUT_S)
            run.send(run.paths(2))  # the pool starts its second process
            pids = sorted(_children())
            load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            before = _Usage.now()
            with _Sampler(pids).running() as sampler:
                result = run.send(run.paths(2))
            after = _Usage.now()
        _stop_runaways(set(after.children_s))
        own_s, per_child = after.since(before)
        pool_s = sum(per_child.values())
        floor_s = FLOOR_SHARE * JOB_S
        active, together = sampler.moments()
        if _clocks_readable():
            if own_s >= 2 * floor_s and own_s > pool_s:
                check.fail(
                    measured=f"the 2 jobs used {own_s:.2f} s of CPU in the server's process and "
                    f"{pool_s:.2f} s in worker processes",
                    expected="their CPU time in two worker processes",
                    cause=_in_process_cause(result.loop_blocks),
                    fix=run.fix,
                )
            computing = sorted((s, pid) for pid, s in per_child.items() if s >= floor_s)
            if len(computing) < 2:
                where = (
                    f"all {pool_s:.2f} s of CPU in one worker process" if computing
                    else f"{pool_s:.2f} s of CPU in worker processes that outlived them"
                )
                check.fail(
                    measured=f"the 2 jobs used {where} ({len(pids)} worker processes alive)",
                    expected="one job in each of two worker processes",
                    cause="the jobs ran one after the other: the pool has one worker process "
                    "(`max_workers=1`), or each job waits for the other before it reaches the "
                    "pool (a lock)" if computing
                    else "the jobs did not run in the app's pool (a new pool per request?)",
                    fix="give the pool a worker per core: `max_workers=2` (or leave it out: "
                    "it defaults to the machine's cores)",
                )
            if together < max(2, TOGETHER_SHARE * active):
                check.fail(
                    measured=f"two worker processes computed at once in {together} of the "
                    f"{active} moments (every {SAMPLE_EVERY_S * 1000:.0f} ms) in which a job "
                    "computed",
                    expected="both computing at once for most of the run",
                    cause="each job waits for the other before it reaches the pool (a lock, "
                    "or awaiting one job before sending the next)",
                    fix="send each request's job straight to the pool, and await only its own",
                )
        ideal_jobs = math.ceil(2 / min(2, cores))
        job_s = pool_s / 2 if pool_s > 0 else JOB_S
        wall_s = result.wall_s
        load_text = f", load average {load_before:.1f}" if load_before is not None else ""
        share = f"both computing in {together} of {active} moments; " if active else ""
        check.passed(
            f"2 jobs at once in 2 worker processes, {share}{wall_s:.2f} s in all = "
            f"{wall_s / job_s:.1f}× one job's {job_s:.2f} s of CPU ({cores} usable cores"
            f"{load_text}: about {ideal_jobs} job's time when {min(2, cores)} cores are free; "
            "more when other programs hold them)"
        )


@graded
def check_lifespan(app: Any) -> None:
    """Task 3: one pool for the app's life: the same worker processes serve every request, and
    none is left once the server has stopped."""
    with Check("Task 3 · the pool lives with the app") as check:
        existing = set(_children())
        with _serving(check, app) as run:
            before = _Usage.now()
            run.send(run.paths(1), timeout_s=FIRST_TIMEOUT_S)
            after_first = _Usage.now()
            alive_after_first = set(after_first.children_s)
            run.send(run.paths(2))
            middle = _Usage.now()
            run.send(run.paths(2))
            late = _Usage.now()
        stopped_at = time.perf_counter()
        _, first_per_child = after_first.since(before)
        _, late_per_child = late.since(middle)
        worked = {pid for pid, s in {**first_per_child, **late_per_child}.items() if s >= 0.05}
        pool = (set(late.children_s) - existing) | worked | (alive_after_first - existing)
        left = _wait_gone(pool, GONE_WITHIN_S)
        gone_after_s = time.perf_counter() - stopped_at
        _stop(left)
        if not alive_after_first - existing and not alive_after_first & worked:
            check.fail(
                measured="no worker process was alive after the first request had been answered",
                expected="the pool's worker processes alive between requests, for the app's "
                "whole life",
                cause="a pool made (and shut down) for each request, or no process pool",
                fix="create one pool in the lifespan: `with ProcessPoolExecutor(...) as pool: "
                "yield {\"pool\": pool}`, and use `request.state.pool` in the endpoint",
            )
        late_new = sorted(set(late.children_s) - set(middle.children_s))
        if late_new:
            check.fail(
                measured=f"{len(late_new)} new worker processes started for 2 later requests "
                f"({len(set(late.children_s) - existing)} alive in all)",
                expected="the same worker processes serving every request",
                cause="a new pool for each request",
                fix="create one pool in the lifespan and use it from every request",
            )
        if _clocks_readable() and not any(s >= 0.05 for s in late_per_child.values()):
            # a pool left to the garbage collector shuts down soon after its request; processes
            # that ended are counted by the OS only for spawn and fork pools (not forkserver)
            ended_s = late.ended_s - middle.ended_s
            in_server = late.own_s - middle.own_s >= FLOOR_SHARE * 2 * JOB_S
            check.fail(
                measured="the worker processes alive before and after 2 later requests did not "
                "compute their jobs"
                + (f"; processes that started and ended meanwhile used {ended_s:.2f} s of CPU"
                   if ended_s >= FLOOR_SHARE * 2 * JOB_S else ""),
                expected="the pool's processes computing every job",
                cause="the jobs ran in the server's own process" if in_server
                else "a new pool for each request, whose processes came and went",
                fix="create one pool in the lifespan and use it from every request",
            )
        if left:
            check.fail(
                measured=f"{len(left)} of the app's {len(pool)} worker processes still running "
                f"{GONE_WITHIN_S:g} s after the server stopped (the check stopped them)",
                expected="none: the pool shut down with the app",
                cause="the pool is not shut down when the app stops (made outside the lifespan, "
                "or the lifespan never calls `pool.shutdown()`)",
                fix="create the pool in the lifespan with `with ProcessPoolExecutor(...) as "
                "pool:` around the `yield`: the with block shuts it down at exit",
            )
        ended = (
            "all ended as the server stopped" if gone_after_s < 0.05
            else f"all ended {gone_after_s:.2f} s after the server stopped"
        )
        check.passed(f"{len(pool)} worker processes served every request; {ended}")


def _wait_gone(pids: set[int], within_s: float) -> set[int]:
    """The processes among ``pids`` still alive after waiting up to ``within_s``."""
    deadline = time.perf_counter() + within_s
    while True:
        left = pids & set(_children())
        if not left or time.perf_counter() >= deadline:
            return left
        time.sleep(0.02)


def _stop(pids: set[int]) -> None:
    """Stop worker processes the learner's app left running, and wait until they are gone.

    A pool that was never shut down still has its own thread watching its workers, and it may
    reap a worker we stopped before our ``join`` does; ``active_children()`` then lists the dead
    worker until that thread is done (7 of 30 stops here), so we wait for the list itself."""
    children = _children()
    stopping = [children[pid] for pid in pids if pid in children]
    for process in stopping:
        process.terminate()
    for process in stopping:
        process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join(1.0)
    _wait_gone(pids, STOPPED_WITHIN_S)
