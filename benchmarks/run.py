#!/usr/bin/env python
"""Benchmarks for the course runtime (``helpers``): lifecycle, leaks, loop watch, load client.

Run from the repository root::

    .venv/bin/python benchmarks/run.py           # full run, about 1 min 50 s
    .venv/bin/python benchmarks/run.py --quick   # fewer cycles and repeats, about 45 s

Every server is started in this process with ``helpers.serve`` — the same way a lesson starts
one in the notebook kernel — because that is what the course measures. Progress goes to stderr;
the tables go to stdout; the figures are also written to ``benchmarks/results/latest.json``.
See ``benchmarks/README.md`` for what each figure means and where its target comes from.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `helpers` importable however the script is started

from fastapi import FastAPI  # noqa: E402

import helpers  # noqa: E402
from helpers import load, running_servers, serve  # noqa: E402

RESULTS_FILE = ROOT / "benchmarks" / "results" / "latest.json"

# Targets. Sections 1, 2 and 4 come from the brief for this benchmark; the loop-watch tolerance
# in section 3 is this benchmark's own choice (COURSE.md's reference figure: 477 ms reported for
# a 480 ms `time.sleep`, at the exact line).
TARGET_START_MEDIAN_MS = 100.0
TARGET_STOP_MEDIAN_MS = 150.0
TARGET_LEAK_DELTA = 0
TARGET_WATCH_ERROR_PCT = 10.0
TARGET_RATIO = {100: 1.10, 1000: 1.30}

SLEEP_BLOCK_S = 0.48
GIL_BURN_S = 0.3  # each of four concurrent def endpoints burns this much pure-Python CPU
TARGET_WATCH_OVERHEAD_PCT = 5.0  # req/s lost to the loop watch on a trivial endpoint
COST_REQUESTS = 8000  # per run: long enough (several seconds) that scheduling noise averages out
CPU_BLOCK_S = 0.30
SLOW_S = 1.0


# -- output helpers -------------------------------------------------------------------------------
_T0 = time.perf_counter()


def progress(message: str) -> None:
    """A progress line on stderr, so stdout holds only the tables."""
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(row):
            # first column left-aligned (labels), the rest right-aligned (figures)
            out.append(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]))
        return "  " + "  ".join(out).rstrip()

    rule = "  " + "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def heading(title: str) -> None:
    print(f"\n{title}\n{'=' * len(title)}", flush=True)


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("PASS" if ok else "MISS")


def secs(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the same definition as ``LoadResult.percentile``)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    if len(values) < 2:
        return ""
    return f"{fmt(min(values))}–{fmt(max(values))}"


# -- CPU accounting: who used the cores while we measured -----------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int | str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def own_cpu_s() -> float:
    """CPU seconds used by this process (all its threads: the servers, their watchdogs…)."""
    t = os.times()
    return t.user + t.system


def live_children_cpu_s() -> dict[int, float]:
    """CPU seconds of this process's running children (the load() worker process)."""
    me, out = os.getpid(), {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(entry)
            if stat is not None and stat[0] == me:
                out[int(entry)] = stat[1]
    return out


def finished_children_cpu_s() -> float:
    """CPU seconds of waited-for children (hey, wrk)."""
    t = os.times()
    return t.children_user + t.children_system


def _machine_busy_s() -> float | None:
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / _TICK


def loadavg() -> float | None:
    try:
        with open("/proc/loadavg") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError):
        return None


class CpuMeter:
    """How many cores the rest of the machine kept busy while a section ran.

    On a shared host (JupyterHub, CI, a colleague's test run) other processes steal cores
    from the server and the client; timing targets can then miss for reasons that are not the
    course's. The meter counts machine-wide busy CPU and subtracts this process tree's own.
    """

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.busy = _machine_busy_s()
        self.ours = self._ours()
        self.load_start = loadavg()

    @staticmethod
    def _ours() -> float:
        return own_cpu_s() + finished_children_cpu_s() + sum(live_children_cpu_s().values())

    def read(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall
        busy = _machine_busy_s()
        ours = self._ours() - self.ours
        if busy is None or self.busy is None or wall <= 0:
            return {"wall_s": wall, "ours_cores": ours / wall if wall > 0 else None,
                    "others_cores": None, "loadavg": loadavg()}
        machine = (busy - self.busy) / wall
        return {
            "wall_s": wall,
            "machine_busy_cores": machine,
            "ours_cores": ours / wall,
            "others_cores": max(0.0, machine - ours / wall),
            "loadavg_start": self.load_start,
            "loadavg_end": loadavg(),
        }


def busy_note(cpu: dict[str, Any] | None) -> str:
    if not cpu or cpu.get("others_cores") is None:
        return ""
    others = cpu["others_cores"]
    text = (f"  machine: other processes kept {others:.2f} of {os.cpu_count()} cores busy during "
            f"this section (this benchmark: {cpu['ours_cores']:.2f}); 1-min load average "
            f"{cpu.get('loadavg_end') or 0:.1f}")
    if others > 0.25:
        text += "\n  WARNING: the machine was shared while this ran; timings are pessimistic"
    return text


# -- apps under test ------------------------------------------------------------------------------
# Endpoints live in this file (not in helpers/), so the loop watch blames their lines.
CPU_ITERATIONS = 1_000_000  # recalibrated in main() to about CPU_BLOCK_S


async def sleep_block() -> dict[str, float]:
    began = time.perf_counter()
    time.sleep(SLEEP_BLOCK_S)  # BLOCK-SLEEP: the line the loop watch must name
    return {"held_ms": (time.perf_counter() - began) * 1000}


async def cpu_block() -> dict[str, float]:
    began = time.perf_counter()
    total = 0
    for i in range(CPU_ITERATIONS):  # BLOCK-CPU-FIRST
        total = (total + i * i) % 1_000_003  # BLOCK-CPU-LAST
    return {"held_ms": (time.perf_counter() - began) * 1000, "total": total}


def def_sleep() -> dict[str, bool]:
    time.sleep(0.5)
    return {"ok": True}


def def_cpu() -> dict[str, bool]:
    from helpers.cpu import burn_for

    burn_for(GIL_BURN_S)  # DEF-CPU: the line a GIL wait must be blamed on
    return {"ok": True}


async def async_sleep() -> dict[str, bool]:
    await asyncio.sleep(0.5)
    return {"ok": True}


async def slow() -> dict[str, bool]:
    await asyncio.sleep(SLOW_S)
    return {"ok": True}


async def ping() -> dict[str, bool]:
    return {"ok": True}


def def_ping() -> dict[str, bool]:
    return {"ok": True}


def make_app() -> FastAPI:
    app = FastAPI()
    for path, endpoint in [
        ("/sleep-block", sleep_block),
        ("/cpu-block", cpu_block),
        ("/def-sleep", def_sleep),
        ("/def-cpu", def_cpu),
        ("/async-sleep", async_sleep),
        ("/slow", slow),
        ("/ping", ping),
        ("/def-ping", def_ping),
    ]:
        app.add_api_route(path, endpoint, methods=["GET"])
    return app


def marked_lines(marker: str) -> int:
    """The line number in this file carrying ``# marker``."""
    lines, _ = inspect.findsource(sys.modules[__name__])
    for number, text in enumerate(lines, start=1):
        if f"# {marker}" in text and "marked_lines" not in text:
            return number
    raise LookupError(marker)


def _is_this_file(filename: str) -> bool:
    try:
        return os.path.samefile(filename, __file__)
    except OSError:
        return False


def calibrate_cpu(seconds: float) -> int:
    """Iterations of ``cpu_block``'s loop that take about ``seconds`` of CPU here.

    Timed in thread CPU time, so a busy machine (which deschedules us) does not skew it.
    """
    n = 200_000
    while True:
        began = time.thread_time()
        total = 0
        for i in range(n):
            total = (total + i * i) % 1_000_003
        took = time.thread_time() - began
        if took > 0.05:
            return max(1, round(n * seconds / took))
        n *= 2


# -- 1. serve()/stop() lifecycle ------------------------------------------------------------------
def bench_lifecycle(cycles: int) -> dict[str, Any]:
    app = make_app()
    progress(f"1. lifecycle: cold start, then {cycles} serve()/stop() cycles")
    began = time.perf_counter()
    server = serve(app, name="bench-lifecycle")
    cold_start = time.perf_counter() - began
    # a real request, untimed, to prove "ready" means ready
    check = load(server, "/ping", n=1, progress=False)
    if check.ok != 1:
        raise RuntimeError(f"the first server did not answer: {check.error_messages}")
    began = time.perf_counter()
    server.stop()
    cold_stop = time.perf_counter() - began

    starts, stops = [], []
    for i in range(cycles):
        began = time.perf_counter()
        server = serve(app, name="bench-lifecycle")
        ready = time.perf_counter()
        server.stop()
        starts.append(ready - began)
        stops.append(time.perf_counter() - ready)
        if (i + 1) % 10 == 0:
            progress(f"   {i + 1}/{cycles} cycles")
    result = {
        "cycles": cycles,
        "cold_start_ms": cold_start * 1000,
        "cold_stop_ms": cold_stop * 1000,
        "start_ms": [s * 1000 for s in starts],
        "stop_ms": [s * 1000 for s in stops],
        "start_median_ms": median(starts) * 1000,
        "start_p90_ms": percentile(starts, 90) * 1000,
        "start_max_ms": max(starts) * 1000,
        "stop_median_ms": median(stops) * 1000,
        "stop_p90_ms": percentile(stops, 90) * 1000,
        "stop_max_ms": max(stops) * 1000,
        "target_start_median_ms": TARGET_START_MEDIAN_MS,
        "target_stop_median_ms": TARGET_STOP_MEDIAN_MS,
    }
    result["start_pass"] = result["start_median_ms"] <= TARGET_START_MEDIAN_MS
    result["stop_pass"] = result["stop_median_ms"] <= TARGET_STOP_MEDIAN_MS
    return result


def print_lifecycle(r: dict[str, Any], leak: dict[str, Any] | None) -> None:
    heading(f"1. serve() startup-to-ready and stop() — {r['cycles']} cycles, idle server")
    rows = [
        ["serve() → ready", f"{r['start_median_ms']:.1f}", f"{r['start_p90_ms']:.1f}",
         f"{r['start_max_ms']:.1f}", f"{r['cold_start_ms']:.1f}",
         f"≤ {TARGET_START_MEDIAN_MS:.0f}", verdict(r["start_pass"])],
        ["stop()", f"{r['stop_median_ms']:.1f}", f"{r['stop_p90_ms']:.1f}",
         f"{r['stop_max_ms']:.1f}", f"{r['cold_stop_ms']:.1f}",
         f"≤ {TARGET_STOP_MEDIAN_MS:.0f}", verdict(r["stop_pass"])],
    ]
    if leak and leak.get("stop_ms"):
        s = leak["stop_ms"]
        rows.append([f"stop() after a def request ({len(s)}×, §2)", f"{median(s):.1f}",
                     f"{percentile(s, 90):.1f}", f"{max(s):.1f}", "", "(info)", ""])
    print(table(["ms", "median", "p90", "max", "first (cold)", "target (median)", ""], rows))
    print("  'first (cold)' is the process's first serve(), which also pays for imports; "
          "it is not in the median.")
    if note := busy_note(r.get("cpu")):
        print(note)


# -- 2. leaks -------------------------------------------------------------------------------------
def _listening_inodes() -> set[str]:
    inodes: set[str] = set()
    for table_file in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table_file) as fh:
                next(fh)
                for row in fh:
                    fields = row.split()
                    if len(fields) > 9 and fields[3] == "0A":  # 0A = TCP_LISTEN
                        inodes.add(fields[9])
        except OSError:
            pass
    return inodes


def snapshot() -> dict[str, int]:
    """Threads, open fds, sockets and listening sockets owned by this process."""
    fds = os.listdir("/proc/self/fd")
    socket_inodes = set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the fd of the listdir itself, already closed
            continue
        if target.startswith("socket:["):
            socket_inodes.add(target[8:-1])
    return {
        "threads_python": threading.active_count(),
        "threads_os": len(os.listdir("/proc/self/task")),
        "open_fds": len(fds),
        "sockets": len(socket_inodes),
        "listening_sockets": len(socket_inodes & _listening_inodes()),
        "registered_servers": len(running_servers()),
    }


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before}


def bench_leaks(cycles: int, reserves: int) -> dict[str, Any]:
    app = make_app()
    progress(f"2. leaks: {cycles} × (serve, one def request, stop), then {reserves} × re-serve")
    # Warm up everything that legitimately lives for the whole process (the load worker
    # process and its reader thread, imports) before taking the baseline.
    with serve(app, name="bench-leak-warmup") as warm:
        load(warm, "/def-ping", n=1, progress=False)
    time.sleep(0.2)
    before = snapshot()
    stop_ms, failures, served_by = [], 0, Counter()
    for i in range(cycles):
        server = serve(app)  # anonymous: also checks the registry forgets stopped servers
        result = load(server, "/def-ping", n=1, progress=False)
        failures += result.errors
        served_by.update(result.served_by)
        began = time.perf_counter()
        server.stop()
        stop_ms.append((time.perf_counter() - began) * 1000)
        if (i + 1) % 10 == 0:
            progress(f"   {i + 1}/{cycles} cycles")
    immediately = snapshot()
    settle_began = time.perf_counter()
    after = immediately
    while time.perf_counter() - settle_began < 3.0:
        after = snapshot()
        if all(v == 0 for v in _delta(after, before).values()):
            break
        time.sleep(0.02)
    settle_s = time.perf_counter() - settle_began

    # Re-serving under one name (what re-running a notebook cell does).
    progress(f"   re-serving under one name {reserves}×")
    servers = [serve(app, name="bench-reserve") for _ in range(reserves)]
    during = snapshot()
    named = [s for s in running_servers() if s.name == "bench-reserve"]
    old_running = sum(s.running for s in servers[:-1])
    old_threads_alive = sum(s._thread.is_alive() for s in servers[:-1])
    newest_answers = load(servers[-1], "/ping", n=1, progress=False).ok == 1
    servers[-1].stop()
    time.sleep(0.05)
    end = snapshot()
    deltas = _delta(after, before)
    checked = ("threads_python", "threads_os", "open_fds", "sockets", "listening_sockets",
               "registered_servers")
    return {
        "cycles": cycles,
        "before": before,
        "immediately_after": immediately,
        "after": after,
        "settle_s": settle_s,
        "delta_immediately": _delta(immediately, before),
        "delta": deltas,
        "leak_pass": all(deltas[k] == TARGET_LEAK_DELTA for k in checked),
        "request_failures": failures,
        "served_by": dict(served_by),
        "stop_ms": stop_ms,
        "reserve": {
            "times": reserves,
            "registered_under_name": len(named),
            "old_servers_still_running": old_running,
            "old_server_threads_alive": old_threads_alive,
            "listening_sockets_while_serving_delta": during["listening_sockets"]
            - before["listening_sockets"],
            "newest_answers": newest_answers,
            "delta_after_final_stop": _delta(end, before),
            "pass": len(named) == 1 and old_running == 0 and old_threads_alive == 0
            and newest_answers and during["listening_sockets"] - before["listening_sockets"] == 1,
        },
    }


def print_leaks(r: dict[str, Any]) -> None:
    heading(f"2. Leak check — {r['cycles']} × (serve, one def request, stop) in one process")
    labels = {
        "threads_python": "threads (threading)",
        "threads_os": "threads (OS, /proc/self/task)",
        "open_fds": "open fds",
        "sockets": "sockets",
        "listening_sockets": "listening TCP sockets",
        "registered_servers": "running_servers()",
    }
    rows = []
    for key, label in labels.items():
        d = r["delta"][key]
        rows.append([label, r["before"][key], r["immediately_after"][key], r["after"][key],
                     f"{d:+d}", "0", verdict(d == 0)])
    print(table(["", "before", "right after", f"after {r['settle_s']:.2f} s",
                 "delta", "target", ""], rows))
    served = ", ".join(f"{k}: {v}" for k, v in sorted(r["served_by"].items()))
    print(f"  def requests: {r['cycles'] - r['request_failures']}/{r['cycles']} ok, "
          f"served by {served or '?'}")
    rs = r["reserve"]
    print(f"  re-serve under one name {rs['times']}×: {rs['registered_under_name']} registered "
          f"under that name (target 1), old servers still running: "
          f"{rs['old_servers_still_running']}, old server threads alive: "
          f"{rs['old_server_threads_alive']}, listening sockets +"
          f"{rs['listening_sockets_while_serving_delta']} while serving (target +1), newest "
          f"answers: {'yes' if rs['newest_answers'] else 'NO'} — {verdict(rs['pass'])}")
    nonzero = {k: v for k, v in rs["delta_after_final_stop"].items() if v}
    print(f"  after stopping it: deltas {nonzero or 'all 0'}")
    if note := busy_note(r.get("cpu")):
        print(note)


# -- 3. loop watch accuracy -----------------------------------------------------------------------
def bench_loopwatch(repeats: int) -> dict[str, Any]:
    progress(f"3. loop watch: blocking endpoints × {repeats}, non-blocking ones × {repeats}")
    app = make_app()
    expected = {
        "/sleep-block": (marked_lines("BLOCK-SLEEP"), marked_lines("BLOCK-SLEEP")),
        "/cpu-block": (marked_lines("BLOCK-CPU-FIRST"), marked_lines("BLOCK-CPU-LAST")),
    }
    nominal = {"/sleep-block": SLEEP_BLOCK_S * 1000, "/cpu-block": CPU_BLOCK_S * 1000}
    blocking: dict[str, list[dict[str, Any]]] = {}
    quiet: dict[str, dict[str, Any]] = {}
    with serve(app, name="bench-loopwatch") as server:
        load(server, "/ping", n=1, progress=False)
        for path in ("/sleep-block", "/cpu-block"):
            runs = []
            for _ in range(repeats):
                result = load(server, path, n=1, progress=False)
                record = result.records[0]
                held_ms = json.loads(record.body)["held_ms"] if record.ok else math.nan
                blocks = result.loop_blocks
                top = max(blocks, key=lambda b: b.duration_ms) if blocks else None
                lo, hi = expected[path]
                runs.append({
                    "held_ms": held_ms,
                    "blocks": len(blocks),
                    "reported_ms": top.duration_ms if top else math.nan,
                    "where": top.where if top else "",
                    "lineno": top.lineno if top else None,
                    "code": top.code if top else "",
                    "in_this_file": bool(top) and _is_this_file(top.filename),
                    "line_ok": bool(top) and _is_this_file(top.filename)
                    and lo <= top.lineno <= hi,
                    "error_pct": (top.duration_ms - held_ms) / held_ms * 100 if top else math.nan,
                })
            blocking[path] = runs
        for path, label in (("/def-sleep", "def + time.sleep(0.5)"),
                            ("/async-sleep", "async def + await asyncio.sleep(0.5)")):
            counts, walls = [], []
            for _ in range(repeats):
                result = load(server, path, n=10, concurrency=10, progress=False)
                counts.append(len(result.loop_blocks))
                walls.append(result.wall_s)
            quiet[path] = {"label": label, "requests_per_run": 10, "blocks": counts,
                           "walls_s": walls, "pass": sum(counts) == 0}
    out: dict[str, Any] = {"repeats": repeats, "threshold_ms": 50.0, "blocking": {},
                           "quiet": quiet, "cpu_iterations": CPU_ITERATIONS}
    for path, runs in blocking.items():
        lo, hi = expected[path]
        errors = [r["error_pct"] for r in runs]
        out["blocking"][path] = {
            "runs": runs,
            "nominal_ms": nominal[path],
            "expected_lines": [lo, hi],
            "held_median_ms": median([r["held_ms"] for r in runs]),
            "reported_median_ms": median([r["reported_ms"] for r in runs]),
            "error_median_pct": median(errors),
            "error_max_abs_pct": max(abs(e) for e in errors),
            "pass": all(r["blocks"] == 1 and r["line_ok"] for r in runs)
            and max(abs(e) for e in errors) <= TARGET_WATCH_ERROR_PCT,
        }
    return out


def print_loopwatch(r: dict[str, Any]) -> None:
    heading(f"3. Loop-watch accuracy — threshold {r['threshold_ms']:.0f} ms, "
            f"{r['repeats']} run(s) each")
    rows = []
    names = {"/sleep-block": "async def + time.sleep(0.48)",
             "/cpu-block": f"async def + Python loop, ~{CPU_BLOCK_S * 1000:.0f} ms CPU"}
    for path, b in r["blocking"].items():
        lo, hi = b["expected_lines"]
        want = f"run.py:{lo}" if lo == hi else f"run.py:{lo}-{hi}"
        wheres = sorted({x["where"] or "none" for x in b["runs"]})
        rows.append([
            names[path],
            f"{b['held_median_ms']:.0f}",
            f"{b['reported_median_ms']:.0f}",
            f"{b['error_median_pct']:+.1f}% (max |{b['error_max_abs_pct']:.1f}|%)",
            "/".join(str(x["blocks"]) for x in b["runs"]),
            ", ".join(wheres),
            want,
            verdict(b["pass"]),
        ])
    print(table(["endpoint", "held ms", "reported ms", "error", "blocks/run", "reported line",
                 "expected", ""], rows))
    for path, b in r["blocking"].items():
        codes = sorted({x["code"] for x in b["runs"] if x["code"]})
        print(f"  {path}: reported code {' | '.join(repr(c) for c in codes) or '–'}")
    print(f"  'held ms' is what the endpoint timed itself; the error is reported vs held; "
          f"target ±{TARGET_WATCH_ERROR_PCT:.0f}%, the exact line, one block per request.")
    rows = []
    for q in r["quiet"].values():
        rows.append([q["label"], f"{q['requests_per_run']} concurrent",
                     "/".join(str(c) for c in q["blocks"]),
                     "/".join(f"{w:.2f}" for w in q["walls_s"]), "0", verdict(q["pass"])])
    print()
    print(table(["non-blocking endpoint", "per run", "blocks reported", "wall s", "target", ""],
                rows))
    if note := busy_note(r.get("cpu")):
        print(note)


def bench_watch_gil(repeats: int) -> dict[str, Any]:
    """Four CPU-bound def requests with a /ping probe: every block must blame the workers."""
    from helpers import load_with_monitor

    progress(f"3b. loop watch, GIL case: 4 × def burning {GIL_BURN_S} s with a probe, × {repeats}")
    line = marked_lines("DEF-CPU")
    runs = []
    with serve(make_app(), name="bench-watch-gil") as server:
        load(server, "/def-cpu", n=4, progress=False)  # start four workers
        for _ in range(repeats):
            traffic, probes = load_with_monitor(
                server, "/def-cpu", 4, ["/ping"] * 20, every_s=0.025, progress=False
            )
            blocks = traffic.loop_blocks
            # the workers' line, or their endpoint when no sample caught them at the line
            named = [b for b in blocks if b.waited_for_gil and _is_this_file(b.filename)
                     and (b.lineno == line or b.code == "def_cpu()")]
            runs.append({
                "blocks": len(blocks), "named": len(named),
                "blocked_ms": sum(b.duration_ms for b in blocks),
                "probe_p50_ms": probes.p50 * 1000, "probe_max_ms": probes.max_s * 1000,
                "others": [str(b) for b in blocks if b not in named][:3],
                "example": str(named[0]) if named else "",
            })
    return {"runs": runs, "line": line,
            "pass": all(r["blocks"] > 0 and r["named"] == r["blocks"] for r in runs)}


def print_watch_gil(r: dict[str, Any]) -> None:
    heading("3b. Loop watch, GIL case — 4 concurrent def endpoints burning pure-Python CPU")
    rows = [[i + 1, f"{x['probe_p50_ms']:.0f}", f"{x['probe_max_ms']:.0f}", x["blocks"],
             f"{x['named']}/{x['blocks']}", f"{x['blocked_ms']:.0f}"]
            for i, x in enumerate(r["runs"])]
    blamed = f"blamed on run.py:{r['line']} or def_cpu()"
    print(table(["run", "/ping p50 ms", "/ping max ms", "blocks", blamed, "ms blocked"], rows))
    for x in r["runs"]:
        for other in x["others"]:
            print(f"  not blamed on the workers: {other}")
    example = next((x["example"] for x in r["runs"] if x["example"]), "")
    print(f"  e.g. {example}")
    print(f"  target: every block names the workers' line (waiting for the GIL) "
          f"{verdict(r['pass'])}")


def bench_watch_cost(repeats: int) -> dict[str, Any]:
    """req/s of a trivial endpoint with the loop watch on and off, alternating in one run."""
    progress(f"3c. loop watch cost: {COST_REQUESTS} × /ping, 50 at a time, on/off × {repeats}")
    on_rps: list[float] = []
    off_rps: list[float] = []
    with serve(make_app(), name="bench-watch-on") as watched, \
            serve(make_app(), name="bench-watch-off") as unwatched:
        unwatched.run_in_loop(unwatched.watch.aclose())  # the same server, minus the watch
        for server in (watched, unwatched):
            load(server, "/ping", n=500, concurrency=50, progress=False)
        cpu_us: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(repeats):
            order = (watched, unwatched) if i % 2 == 0 else (unwatched, watched)
            for server in order:
                before = _server_and_watch_cpu_s(server)
                result = load(server, "/ping", n=COST_REQUESTS, concurrency=50, progress=False)
                spent = _server_and_watch_cpu_s(server) - before
                (on_rps if server is watched else off_rps).append(result.rps)
                cpu_us["on" if server is watched else "off"].append(spent / result.n * 1e6)
    cost_pct = (1 - median(on_rps) / median(off_rps)) * 100
    cpu_cost_pct = (median(cpu_us["on"]) / median(cpu_us["off"]) - 1) * 100
    return {"on_rps": on_rps, "off_rps": off_rps, "cost_pct": cost_pct, "cpu_us": cpu_us,
            "cpu_cost_pct": cpu_cost_pct, "pass": cost_pct <= TARGET_WATCH_OVERHEAD_PCT}


def _server_and_watch_cpu_s(server: Any) -> float:
    """CPU seconds of the server's threads plus its loop watch's watchdog thread."""
    from helpers import _thread_cpu

    watchdog = server.watch._thread
    extra = 0
    if watchdog is not None and watchdog.is_alive() and watchdog.native_id is not None:
        extra = _thread_cpu.cpu_ns(watchdog.native_id) or 0
    return float(server.cpu_seconds()) + extra / 1e9


def print_watch_cost(r: dict[str, Any]) -> None:
    heading(f"3c. Loop watch cost — a trivial async endpoint, {COST_REQUESTS} requests, "
            "50 at a time, the two servers taking turns")
    print(table(["watch", "req/s (median)", "runs"], [
        ["on", f"{median(r['on_rps']):.0f}", " ".join(f"{x:.0f}" for x in r["on_rps"])],
        ["off", f"{median(r['off_rps']):.0f}", " ".join(f"{x:.0f}" for x in r["off_rps"])],
    ]))
    print(f"  cost {r['cost_pct']:+.1f}% of req/s; target ≤ {TARGET_WATCH_OVERHEAD_PCT:.0f}% "
          f"{verdict(r['pass'])}")
    on_us, off_us = median(r["cpu_us"]["on"]), median(r["cpu_us"]["off"])
    print(f"  server CPU per request (its threads and the watchdog): {on_us:.0f} µs with the "
          f"watch, {off_us:.0f} µs without ({r['cpu_cost_pct']:+.1f}%); steadier than req/s on a "
          "shared machine, where the load generator competes for the same cores")


# -- 4 and 5. load() vs hey vs wrk vs httpx -------------------------------------------------------
def find_tool(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK)
                                  else None)


def run_hey(hey: str, url: str, n: int, c: int, keepalive: bool = True) -> dict[str, Any]:
    args = [hey, "-n", str(n), "-c", str(c), "-t", "30"]
    if not keepalive:
        args.append("-disable-keepalive")
    server_cpu, client_cpu = own_cpu_s(), finished_children_cpu_s()
    proc = subprocess.run(args + [url], capture_output=True, text=True, timeout=180)
    server_cpu, client_cpu = own_cpu_s() - server_cpu, finished_children_cpu_s() - client_cpu
    text = proc.stdout
    total = re.search(r"Total:\s+([\d.]+)\s+secs", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    ok = sum(int(count) for code, count in re.findall(r"\[(\d{3})\]\s+(\d+)\s+responses", text)
             if code.startswith("2"))
    if proc.returncode != 0 or total is None:
        raise RuntimeError(f"hey failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return {"wall_s": float(total.group(1)), "rps": float(rps.group(1)) if rps else math.nan,
            "ok": ok, "errors": n - ok, "client_cpu_s": client_cpu, "server_cpu_s": server_cpu}


def run_wrk(wrk: str, url: str, threads: int, conns: int, duration_s: int) -> dict[str, Any]:
    proc = subprocess.run(
        [wrk, f"-t{threads}", f"-c{conns}", f"-d{duration_s}s", url],
        capture_output=True, text=True, timeout=duration_s + 60,
    )
    text = proc.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    count = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if proc.returncode != 0 or rps is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return {
        "rps": float(rps.group(1)),
        "requests": int(count.group(1)) if count else None,
        "errors": (int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(x) for x in sock.groups()) if sock else 0),
    }


def run_load(server: Any, path: str, n: int, c: int) -> dict[str, Any]:
    server_cpu, client_cpu = own_cpu_s(), live_children_cpu_s()
    began = time.perf_counter()
    result = load(server, path, n=n, concurrency=c, progress=False, timeout_s=60)
    call_s = time.perf_counter() - began
    server_cpu = own_cpu_s() - server_cpu
    # the worker process is this process's only long-lived child
    client_cpu = sum(v - client_cpu.get(pid, 0.0) for pid, v in live_children_cpu_s().items())
    starts = [r.start_s for r in result.records]
    return {"wall_s": result.wall_s, "call_s": call_s, "rps": result.rps, "ok": result.ok,
            "client_cpu_s": client_cpu, "server_cpu_s": server_cpu,
            "start_spread_s": max(starts) - min(starts), "p50_s": result.p50,
            "errors": result.errors, "loop_blocks": len(result.loop_blocks),
            "loop_block_details": [f"{b.duration_ms:.0f} ms at {b.where} `{b.code[:50]}`"
                                   for b in result.loop_blocks],
            "error_kinds": dict(result.error_messages)}


def run_httpx_in_thread(url: str, n: int, *, unlimited: bool) -> dict[str, Any]:
    """A stock httpx.AsyncClient in a thread of this process (so it shares the server's GIL)."""
    import httpx

    out: dict[str, Any] = {}

    def runner() -> None:
        async def main() -> None:
            kwargs: dict[str, Any] = {}
            if unlimited:
                kwargs = {"limits": httpx.Limits(max_connections=None,
                                                 max_keepalive_connections=None),
                          "timeout": None}
            async with httpx.AsyncClient(**kwargs) as client:
                async def one() -> str:
                    try:
                        response = await client.get(url)
                        return str(response.status_code)
                    except Exception as exc:  # counted, like load() does
                        return type(exc).__name__

                began = time.perf_counter()
                outcomes = await asyncio.gather(*(one() for _ in range(n)))
                out["wall_s"] = time.perf_counter() - began
            counts = Counter(outcomes)
            out["ok"] = counts.pop("200", 0)
            out["errors"] = n - out["ok"]
            out["error_kinds"] = dict(counts)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["failure"] = f"{type(exc).__name__}: {exc}"

    return _run_client_thread(runner, out, "httpx")


_HTTPX_PROCESS_SCRIPT = r"""
import asyncio, json, sys, time
from collections import Counter
import httpx

url, n = sys.argv[1], int(sys.argv[2])

async def main():
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=None) as client:
        async def one():
            try:
                return str((await client.get(url)).status_code)
            except Exception as exc:
                return type(exc).__name__
        began = time.perf_counter()
        outcomes = await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - began
    counts = Counter(outcomes)
    ok = counts.pop("200", 0)
    print(json.dumps({"wall_s": wall, "ok": ok, "errors": n - ok, "error_kinds": counts}))

asyncio.run(main())
"""


def _run_client_thread(
    runner: Callable[[], None], out: dict[str, Any], client: str
) -> dict[str, Any]:
    """Run a client benchmark in a thread of this (the server's) process, at most 120 s."""
    thread = threading.Thread(target=runner, name=f"bench-{client}", daemon=True)
    thread.start()
    thread.join(120)
    if "failure" in out or "wall_s" not in out:
        raise RuntimeError(out.get("failure", f"the {client} run did not finish in 120 s"))
    return out


def run_httpx_in_process(url: str, n: int) -> dict[str, Any]:
    """The unlimited httpx client in its own process: no GIL shared with the server."""
    proc = subprocess.run([sys.executable, "-c", _HTTPX_PROCESS_SCRIPT, url, str(n)],
                          capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"httpx subprocess failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_aiohttp_in_thread(base_url: str, path: str, n: int) -> dict[str, Any]:
    """The exact client code load() runs in its worker process, run in a thread here instead."""
    from helpers._load_worker import run_job

    job = {"base_url": base_url, "paths": [path] * n, "concurrency": n, "method": "GET",
           "json": None, "headers": {}, "stagger_s": 0.0, "timeout_s": 60.0,
           "connection_limit": None, "keep_alive": True}
    out: dict[str, Any] = {}

    def runner() -> None:
        try:
            records = asyncio.run(run_job(job, lambda message: None))
            ok = sum(1 for r in records if not r.get("error") and (r.get("status") or 999) < 400)
            out.update(wall_s=max(r["end"] for r in records) - min(r["start"] for r in records),
                       ok=ok, errors=n - ok,
                       error_kinds=dict(Counter(r["error"] for r in records if r.get("error"))))
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["failure"] = f"{type(exc).__name__}: {exc}"

    return _run_client_thread(runner, out, "aiohttp")


def _describe_blocks(blocks: Sequence[Any]) -> dict[str, Any]:
    """Count, total and the most frequent blamed lines of some loop blocks."""
    return {
        "count": len(blocks),
        "total_ms": sum(b.duration_ms for b in blocks),
        "max_ms": max((b.duration_ms for b in blocks), default=0.0),
        "where": dict(Counter(f"{b.where} `{b.code[:50]}`" for b in blocks).most_common(5)),
    }


def _summary(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [r[key] for r in runs]
    return {"runs": runs, "values": values, "median": median(values),
            "ok": sum(r.get("ok", 0) for r in runs),
            "errors": sum(r.get("errors", 0) for r in runs)}


def bench_clients(repeats: int, wrk_seconds: int, httpx_repeats: int,
                  skip_tools: bool) -> dict[str, Any]:
    hey = None if skip_tools else find_tool("hey")
    wrk = None if skip_tools else find_tool("wrk")
    missing = [name for name, path in (("hey", hey), ("wrk", wrk)) if path is None]
    if skip_tools:
        progress("4. --no-tools: hey and wrk are skipped")
    elif missing:
        progress(f"4. {' and '.join(missing)} not found on PATH — those columns are skipped "
                 f"(Debian/Ubuntu: apt-get install {' '.join(missing)})")
    out: dict[str, Any] = {"repeats": repeats, "hey": hey, "wrk": wrk, "missing_tools": missing,
                           "tools_skipped": skip_tools,
                           "bursts": {}, "throughput": {}, "httpx": {}}
    tool_errors: dict[str, str] = {}
    out["tool_errors"] = tool_errors

    def tool(name: str, fn: Callable[..., dict[str, Any]], *args: Any,
             **kwargs: Any) -> dict[str, Any] | None:
        """Run one external-tool measurement; after a failure, skip that tool from then on."""
        if name in tool_errors:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # a broken tool costs its columns, not the section
            tool_errors[name] = f"{type(exc).__name__}: {exc}"
            progress(f"   {name} failed, its remaining runs are skipped: {tool_errors[name]}")
            return None

    app = make_app()
    with serve(app, name="bench-load") as server:
        slow_url, ping_url = server.url + "/slow", server.url + "/ping"
        progress("4. warming up the load worker, hey and the server")
        load(server, "/ping", n=200, concurrency=50, progress=False)
        if hey:
            tool("hey", run_hey, hey, ping_url, 200, 50)

        meter = CpuMeter()
        for n in (100, 1000):
            progress(f"4. {n} concurrent requests to an endpoint awaiting asyncio.sleep(1): "
                     f"load() and hey, {repeats}× each, interleaved")
            load_runs, hey_runs = [], []
            for _ in range(repeats):
                load_runs.append(run_load(server, "/slow", n, n))
                if hey:
                    before = len(server.loop_blocks)
                    run = tool("hey", run_hey, hey, slow_url, n, n)
                    if run is not None:
                        time.sleep(0.03)
                        run["loop_block_details"] = [
                            f"{b.duration_ms:.0f} ms at {b.where} `{b.code[:50]}`"
                            for b in server.loop_blocks[before:]]
                        hey_runs.append(run)
            entry: dict[str, Any] = {"n": n, "concurrency": n, "ideal_s": SLOW_S,
                                     "load": _summary(load_runs, "wall_s"),
                                     "target_ratio": TARGET_RATIO[n]}
            entry["load"]["call_median_s"] = median([r["call_s"] for r in load_runs])
            entry["load"]["loop_blocks"] = sum(r["loop_blocks"] for r in load_runs)
            if hey_runs:
                entry["hey"] = _summary(hey_runs, "wall_s")
                entry["ratio"] = entry["load"]["median"] / entry["hey"]["median"]
                entry["pass"] = entry["ratio"] <= TARGET_RATIO[n]
            else:
                entry["hey"], entry["ratio"], entry["pass"] = None, None, None
            out["bursts"][str(n)] = entry

        progress(f"4. throughput on a trivial endpoint: load(n=5000, c=50), hey -n 5000 -c 50 "
                 f"(keep-alive and -disable-keepalive), wrk -t2 -c50 -d{wrk_seconds}s; "
                 f"{repeats}× each")
        runs: dict[str, list[dict[str, Any]]] = {"load": [], "hey": [], "hey_no_keepalive": [],
                                                 "wrk": []}
        for _ in range(repeats):
            runs["load"].append(run_load(server, "/ping", 5000, 50))
            measured = [
                ("hey", hey and (lambda: tool("hey", run_hey, hey, ping_url, 5000, 50))),
                ("hey_no_keepalive", hey and (lambda: tool(
                    "hey -disable-keepalive", run_hey, hey, ping_url, 5000, 50, keepalive=False))),
                ("wrk", wrk and (lambda: tool("wrk", run_wrk, wrk, ping_url, 2, 50, wrk_seconds))),
            ]
            for key, measure in measured:
                if measure:
                    run = measure()
                    if run is not None:
                        runs[key].append(run)
        tp = {name: _summary(r, "rps") if r else None for name, r in runs.items()}
        if tp["load"]:
            tp["load"]["loop_blocks"] = sum(r["loop_blocks"] for r in runs["load"])
        tp["wrk_seconds"] = wrk_seconds
        if tp["hey"]:
            tp["load_vs_hey"] = tp["load"]["median"] / tp["hey"]["median"]
        out["throughput"] = tp

        out["cpu"] = meter.read()
        meter = CpuMeter()
        progress("5. in-process clients: stock httpx.AsyncClient (defaults; no limits) and "
                 "load()'s own aiohttp client, each in a thread of this process; httpx with no "
                 "limits in its own process")
        variants = [
            # (key, label, runner, repeats at 100, repeats at 1,000)
            ("httpx_default", "httpx.AsyncClient(), defaults (100 conns, 5 s timeout)",
             lambda n: run_httpx_in_thread(slow_url, n, unlimited=False), repeats,
             httpx_repeats),
            ("httpx_unlimited", "httpx.AsyncClient(limits: None, timeout=None)",
             lambda n: run_httpx_in_thread(slow_url, n, unlimited=True), repeats, httpx_repeats),
            ("httpx_unlimited_process",
             "httpx.AsyncClient(limits: None, timeout=None), own process",
             lambda n: run_httpx_in_process(slow_url, n), 0, httpx_repeats),
            ("aiohttp_thread", "load()'s aiohttp client, in a thread (not a process)",
             lambda n: run_aiohttp_in_thread(server.url, "/slow", n), repeats, repeats),
        ]
        for key, label, runner, reps_100, reps_1000 in variants:
            for n in (100, 1000):
                reps = reps_100 if n == 100 else reps_1000
                if not reps:
                    continue
                before = len(server.loop_blocks)
                try:
                    rs = [runner(n) for _ in range(reps)]
                except Exception as exc:  # one broken client costs its row, not the section
                    progress(f"   {label} at {n} failed: {type(exc).__name__}: {exc}")
                    out["httpx"][f"{key}_{n}"] = {"client": key, "label": label, "n": n,
                                                  "failure": f"{type(exc).__name__}: {exc}"}
                    continue
                time.sleep(0.03)
                blocks = server.loop_blocks[before:]
                out["httpx"][f"{key}_{n}"] = {
                    "client": key, "label": label, "n": n, **_summary(rs, "wall_s"),
                    "server_loop_blocks": _describe_blocks(blocks),
                }
        out["cpu_section5"] = meter.read()
    return out


def print_clients(r: dict[str, Any]) -> None:
    heading(f"4. load() vs hey vs wrk — same in-process server, median of {r['repeats']} run(s)")
    absent = "skipped (--no-tools)" if r.get("tools_skipped") else "not installed"
    if r["missing_tools"]:
        print(f"  {absent}: {', '.join(r['missing_tools'])}")
    for name, error in r.get("tool_errors", {}).items():
        print(f"  {name} FAILED (its later runs were skipped): {error}")
    rows = []
    for n, e in r["bursts"].items():
        hey = e["hey"]
        rows.append([
            f"{int(n):,} × await asyncio.sleep(1), c={int(n):,}",
            secs(e["load"]["median"]),
            spread(e["load"]["values"], lambda v: f"{v:.3f}"),
            secs(hey["median"]) if hey else "–",
            spread(hey["values"], lambda v: f"{v:.3f}") if hey else "",
            f"{e['ratio']:.3f}×" if e["ratio"] else "–",
            f"≤ {e['target_ratio']:.2f}×",
            verdict(e["pass"]),
            f"{e['load']['errors']}/{hey['errors'] if hey else '–'}",
        ])
    print(table(["wall time (s), ideal 1.000", "load()", "range", "hey (ref.)", "range",
                 "load/hey", "target", "", "errors load/hey"], rows))
    print("  load(): LoadResult.wall_s (first request start → last response); hey: its 'Total:' "
          "line. hey is the reference.")
    calls = ", ".join(f"{int(n):,}: {e['load']['call_median_s']:.3f} s"
                      for n, e in r["bursts"].items())
    print(f"  whole load() call incl. handing the job to its worker process and reading back "
          f"the records: {calls}")
    spreads = ", ".join(
        f"{int(n):,}: {median([x['start_spread_s'] for x in e['load']['runs']]):.3f} s"
        for n, e in r["bursts"].items())
    print(f"  load()'s first-to-last request start (one Python thread opens every connection): "
          f"{spreads}")

    tp = r["throughput"]
    print()
    rows = []

    def tp_row(label: str, s: dict[str, Any] | None, note: str = "") -> None:
        if s is None:
            rows.append([label, "–", "", "", "no result (failed)" if r.get("tool_errors")
                         and not r["missing_tools"] else absent])
            return
        rows.append([label, f"{s['median']:.0f}", spread(s["values"], lambda v: f"{v:.0f}"),
                     str(s["errors"]), note])

    tp_row("load(n=5000, concurrency=50)", tp["load"], "keep-alive, 50 connections")
    tp_row("hey -n 5000 -c 50  (reference)", tp["hey"], "keep-alive, 50 connections")
    tp_row("hey -n 5000 -c 50 -disable-keepalive", tp["hey_no_keepalive"],
           "new connection per request (context)")
    tp_row(f"wrk -t2 -c50 -d{tp['wrk_seconds']}s", tp["wrk"],
           f"fixed {tp['wrk_seconds']} s, not a fixed count")
    print(table(["trivial async endpoint, req/s", "median", "range", "errors", "note"], rows))
    if tp.get("load_vs_hey"):
        print(f"  load()/hey throughput: {tp['load_vs_hey']:.2f}× (no target: the server, not "
              "the client, is expected to be the limit here)")
    details = [d for e in r["bursts"].values() for run in e["load"]["runs"]
               for d in run["loop_block_details"]]
    if tp["load"]:
        details += [d for run in tp["load"]["runs"] for d in run["loop_block_details"]]
    print(f"  loop blocks (≥ 50 ms) the watch reported during these load() runs: {len(details)}"
          + (": " + "; ".join(details[:3]) + (" …" if len(details) > 3 else "")
             if details else ""))
    hey_details = [d for e in r["bursts"].values() if e["hey"] for run in e["hey"]["runs"]
                   for d in run.get("loop_block_details", [])]
    if r["hey"]:
        print(f"  … and during the hey bursts: {len(hey_details)}"
              + (": " + "; ".join(hey_details[:3]) + (" …" if len(hey_details) > 3 else "")
                 if hey_details else ""))
    cpu_rows = []
    for n, e in r["bursts"].items():
        for name, s in (("load()", e["load"]), ("hey", e["hey"])):
            if s:
                cpu_rows.append([f"{int(n):,} × sleep(1) via {name}",
                                 f"{median([x['client_cpu_s'] for x in s['runs']]):.2f}",
                                 f"{median([x['server_cpu_s'] for x in s['runs']]):.2f}"])
    for name, key in (("load()", "load"), ("hey", "hey"), ("hey -disable-keepalive",
                                                             "hey_no_keepalive")):
        if tp.get(key):
            cpu_rows.append([f"5,000 × /ping via {name}",
                             f"{median([x['client_cpu_s'] for x in tp[key]['runs']]):.2f}",
                             f"{median([x['server_cpu_s'] for x in tp[key]['runs']]):.2f}"])
    print()
    print(table(["CPU seconds per run (median)", "client", "server process"], cpu_rows))
    if note := busy_note(r.get("cpu")):
        print(note)

    heading("5. Context: in-process clients (a thread of the server's own process), "
            "endpoint awaiting asyncio.sleep(1)")
    rows = []
    for e in r["httpx"].values():
        if "failure" in e:
            rows.append([e["label"], f"{e['n']:,}", "–", "", "", "", e["failure"][:60], ""])
            continue
        kinds: Counter[str] = Counter()
        for run in e["runs"]:
            kinds.update(run["error_kinds"])
        burst = r["bursts"].get(str(e["n"]), {})
        ref = burst.get("hey") or burst.get("load")
        blocks = e["server_loop_blocks"]
        rows.append([
            e["label"],
            f"{e['n']:,}",
            secs(e["median"]),
            spread(e["values"], lambda v: f"{v:.3f}"),
            f"{e['median'] / ref['median']:.2f}×" if ref else "–",
            f"{e['ok']}/{e['n'] * len(e['runs'])}",
            ", ".join(f"{k} ×{v}" for k, v in kinds.most_common(2)) or "none",
            f"{blocks['count']} ({blocks['max_ms']:.0f})",
        ])
    print(table(["client", "n = c", "wall s", "range", "vs hey", "ok", "errors",
                 "server blocks (max ms)"], rows))
    print("  'vs hey' divides by the median hey wall for the same burst in section 4 (load()'s "
          "if hey is missing).\n"
          "  'server blocks': loop-watch reports on the server meanwhile: the server's own work "
          "on a burst, and waits for the GIL\n  (a client in the same process) or for a core "
          "(a busy machine), filed at asyncio/library lines.\n"
          "  Defaults: max_connections=100 queues everything past 100 in flight, and the 5 s "
          "pool timeout fails what is still queued.\n"
          "  No limits: httpx's connection-pool bookkeeping (httpcore) grows with the number of "
          "connections; its own-process row\n  is as slow, so that is not the GIL. The GIL's "
          "own cost: the aiohttp-in-a-thread rows vs load() in section 4.\n"
          "  Hence load(): aiohttp, in its own process, with no connection cap.")
    worst: Counter[str] = Counter()
    for e in r["httpx"].values():
        worst.update(e.get("server_loop_blocks", {}).get("where", {}))
    if worst:
        print("  most-blamed lines: " + "; ".join(f"{w} ×{c}" for w, c in worst.most_common(3)))
    if note := busy_note(r.get("cpu_section5")):
        print(note)


# -- main -----------------------------------------------------------------------------------------
def git_state() -> dict[str, Any]:
    """The commit measured, and whether helpers/ had uncommitted changes at the time."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "helpers_dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--",
                                      "helpers"))}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("fastapi", "starlette", "uvicorn", "anyio", "httpx", "aiohttp", "h11",
                 "httptools", "uvloop"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    lc = results.get("lifecycle")
    if lc:
        rows.append(["serve() startup, median", f"{lc['start_median_ms']:.1f} ms",
                     f"≤ {TARGET_START_MEDIAN_MS:.0f} ms", verdict(lc["start_pass"])])
        rows.append(["stop(), median", f"{lc['stop_median_ms']:.1f} ms",
                     f"≤ {TARGET_STOP_MEDIAN_MS:.0f} ms", verdict(lc["stop_pass"])])
    lk = results.get("leaks")
    if lk:
        d = lk["delta"]
        rows.append(["leaks after 50 cycles (threads/fds/sockets/listening)",
                     f"{d['threads_os']:+d}/{d['open_fds']:+d}/{d['sockets']:+d}/"
                     f"{d['listening_sockets']:+d}", "0/0/0/0", verdict(lk["leak_pass"])])
        rows.append(["re-serve same name: servers under that name",
                     str(lk["reserve"]["registered_under_name"]), "1",
                     verdict(lk["reserve"]["pass"])])
    lw = results.get("loopwatch")
    if lw:
        for path, b in lw["blocking"].items():
            rows.append([f"loop watch {path}: error, line",
                         f"{b['error_median_pct']:+.1f}%, "
                         f"{'ok' if all(x['line_ok'] for x in b['runs']) else 'WRONG'}",
                         f"±{TARGET_WATCH_ERROR_PCT:.0f}%, exact", verdict(b["pass"])])
        for path, q in lw["quiet"].items():
            rows.append([f"loop watch {path}: blocks", str(sum(q["blocks"])), "0",
                         verdict(q["pass"])])
    gil = results.get("watch_gil")
    if gil:
        named = sum(x["named"] for x in gil["runs"])
        total = sum(x["blocks"] for x in gil["runs"])
        rows.append(["loop watch, 4 × def CPU: blocks blamed on the workers", f"{named}/{total}",
                     "all", verdict(gil["pass"])])
    cost = results.get("watch_cost")
    if cost:
        rows.append(["loop watch cost, trivial endpoint req/s", f"{cost['cost_pct']:+.1f}%",
                     f"≤ {TARGET_WATCH_OVERHEAD_PCT:.0f}%", verdict(cost["pass"])])
    cl = results.get("clients")
    if cl:
        for n, e in cl["bursts"].items():
            rows.append([f"load()/hey wall, {int(n):,} concurrent",
                         f"{e['ratio']:.3f}×" if e["ratio"] else "hey missing",
                         f"≤ {e['target_ratio']:.2f}×", verdict(e["pass"])])
    return rows


def main() -> int:
    global CPU_ITERATIONS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer cycles and repeats (about 45 s)")
    parser.add_argument("--only", default="1,2,3,4",
                        help="comma-separated sections to run (4 includes 5); default all")
    parser.add_argument("--no-tools", action="store_true", help="skip hey and wrk")
    parser.add_argument("--json", type=Path, default=RESULTS_FILE, help="where to write figures")
    args = parser.parse_args()
    sections = {s.strip() for s in args.only.split(",")}

    q = args.quick
    cfg = {
        "lifecycle_cycles": 10 if q else 30,
        "leak_cycles": 50,  # the brief's figure; cheap enough for --quick too
        "reserves": 20,
        "watch_repeats": 1 if q else 3,
        "client_repeats": 1 if q else 3,
        "httpx_1000_default_repeats": 1,
        "wrk_seconds": 2 if q else 5,
    }
    progress(f"benchmarks/run.py {'--quick ' if q else ''}on {os.cpu_count()} CPU(s), "
             f"Python {platform.python_version()}")
    CPU_ITERATIONS = calibrate_cpu(CPU_BLOCK_S)
    progress(f"calibrated the CPU block: {CPU_ITERATIONS:,} iterations ≈ {CPU_BLOCK_S:.2f} s")

    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": q,
        "config": cfg,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "fd_limit": _fd_limit(), "loadavg_start": loadavg()},
        "versions": versions(),
        "git": git_state(),
        "failures": {},
    }

    whole = CpuMeter()

    def attempt(key: str, fn: Callable[[], dict[str, Any]]) -> None:
        meter = CpuMeter()
        try:
            results[key] = fn()
            results[key].setdefault("cpu", meter.read())
        except Exception as exc:  # one broken section must not hide the others
            results["failures"][key] = "".join(traceback.format_exception(exc))
            progress(f"section {key!r} FAILED: {type(exc).__name__}: {exc}")

    if "1" in sections:
        attempt("lifecycle", lambda: bench_lifecycle(cfg["lifecycle_cycles"]))
    if "2" in sections:
        attempt("leaks", lambda: bench_leaks(cfg["leak_cycles"], cfg["reserves"]))
    if "3" in sections:
        attempt("loopwatch", lambda: bench_loopwatch(cfg["watch_repeats"]))
        attempt("watch_gil", lambda: bench_watch_gil(cfg["watch_repeats"]))
        attempt("watch_cost", lambda: bench_watch_cost(cfg["watch_repeats"] * 2 + 1))
    if "4" in sections or "5" in sections:
        attempt("clients", lambda: bench_clients(cfg["client_repeats"], cfg["wrk_seconds"],
                                                 cfg["httpx_1000_default_repeats"],
                                                 args.no_tools))
    helpers.stop_all()
    results["machine"]["cpu_whole_run"] = whole.read()
    results["runtime_s"] = time.perf_counter() - _T0
    progress(f"done in {results['runtime_s']:.0f} s")

    v = results["versions"]
    print(f"helpers benchmarks — {results['when']} — {os.cpu_count()} CPU(s), Python "
          f"{v['python']}, fastapi {v.get('fastapi', '?')}, uvicorn {v.get('uvicorn', '?')} "
          f"(http: {'httptools' if 'httptools' in v else 'h11'}), anyio {v.get('anyio', '?')}"
          f"{' — QUICK run' if q else ''}")
    g = results["git"]
    print(f"commit {g['commit'] or '?'}"
          f"{' (tracked helpers/ files have uncommitted changes)' if g['helpers_dirty'] else ''}; "
          f"load average at start {results['machine'].get('loadavg_start') or 0:.1f}")
    if "lifecycle" in results:
        print_lifecycle(results["lifecycle"], results.get("leaks"))
    if "leaks" in results:
        print_leaks(results["leaks"])
    if "loopwatch" in results:
        print_loopwatch(results["loopwatch"])
    if "watch_gil" in results:
        print_watch_gil(results["watch_gil"])
    if "watch_cost" in results:
        print_watch_cost(results["watch_cost"])
    if "clients" in results:
        print_clients(results["clients"])
    heading("Targets")
    if note := busy_note(results["machine"].get("cpu_whole_run")):
        print(note.replace("this section", "the whole run"))
    print(table(["figure", "measured", "target", ""], summary_rows(results)))
    for key, error in results["failures"].items():
        print(f"\n  section {key!r} failed:\n{error}")
    print(f"\n  total runtime {results['runtime_s']:.0f} s; figures written to "
          f"{_display_path(args.json)}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_finite(results), indent=2, default=str))
    return 1 if results["failures"] else 0


def _fd_limit() -> int | None:
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except Exception:  # noqa: BLE001 - informational only
        return None


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _finite(value: Any) -> Any:
    """NaN/inf become null, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
