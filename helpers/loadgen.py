"""Fire real concurrent HTTP requests at a server and keep a record of every one.

The requests leave from a separate worker process (see :mod:`helpers._load_worker`) so the
client does not share the server's GIL, and with no hidden client-side caps: no connection
limit, a fresh connection pool per run, and a generous per-request timeout that you choose.
"""

from __future__ import annotations

import atexit
import gc
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ._threads import describe_threads
from .loopwatch import LoopBlock
from .server import Server, running_servers

__all__ = ["LoadResult", "RequestRecord", "load", "load_with_monitor"]

DEFAULT_TIMEOUT_S = 30.0
WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_load_worker.py")


@dataclass(frozen=True)
class RequestRecord:
    """One request: when it started and ended (``perf_counter`` seconds), and what came back."""

    index: int
    path: str
    start_s: float
    end_s: float
    status: int | None
    served_by: str | None
    error: str | None = None
    body: str = field(default="", repr=False)

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and self.status < 400


@dataclass
class LoadResult:
    """Everything a load run measured; ``print()`` it for a summary, plot it for a picture."""

    records: list[RequestRecord]
    started_s: float
    ended_s: float
    loop_blocks: list[LoopBlock]
    label: str = ""

    # -- numbers -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def wall_s(self) -> float:
        """From the first request's start to the last response."""
        return self.ended_s - self.started_s

    @property
    def ok(self) -> int:
        return sum(r.ok for r in self.records)

    @property
    def errors(self) -> int:
        return self.n - self.ok

    @property
    def error_messages(self) -> Counter[str]:
        """What went wrong, counted: ``{"HTTP 504": 3, "timed out after 2 s": 1}``."""
        return Counter(
            r.error or f"HTTP {r.status}" for r in self.records if not r.ok
        )

    @property
    def latencies_s(self) -> list[float]:
        return [r.latency_s for r in self.records]

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0–100), nearest-rank, in seconds."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile needs 0 <= q <= 100, got {q}")
        ordered = sorted(self.latencies_s)
        if not ordered:
            return math.nan
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def max_s(self) -> float:
        return max(self.latencies_s, default=math.nan)

    @property
    def rps(self) -> float:
        """Successful responses per second of wall time."""
        return self.ok / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def served_by(self) -> Counter[str]:
        """How many requests each server thread handled: ``{"event loop": 10, "worker 1": 3}``."""
        return Counter(r.served_by or "unknown" for r in self.records if r.served_by or r.ok)

    def for_path(self, path: str) -> LoadResult:
        """The same run, narrowed to the requests sent to ``path``."""
        chosen = [r for r in self.records if r.path == path]
        if not chosen:
            raise KeyError(f"no requests went to {path!r}; paths in this run: {self.paths}")
        return self._narrowed(chosen, path)

    def during(self, other: LoadResult) -> LoadResult:
        """The same run, narrowed to the requests sent while ``other`` ran: the probes that
        overlapped a job, not the ones sent before it began or after it ended."""
        chosen = [r for r in self.records if other.started_s <= r.start_s <= other.ended_s]
        if not chosen:
            raise ValueError(
                f"none of these {self.n} requests was sent while the other run went on "
                f"({other.wall_s:.2f} s): send them over a longer time"
            )
        return self._narrowed(chosen, self.label)

    def _narrowed(self, chosen: list[RequestRecord], label: str) -> LoadResult:
        """Some of this run's records, as a run of their own (same loop blocks)."""
        return LoadResult(
            chosen,
            min(r.start_s for r in chosen),
            max(r.end_s for r in chosen),
            self.loop_blocks,
            label=label,
        )

    @property
    def paths(self) -> list[str]:
        return sorted({r.path for r in self.records})

    # -- words ---------------------------------------------------------------------------
    def versus(self, ideal_s: float) -> str:
        """One line comparing the wall time with what a lesson predicts."""
        return f"measured {self.wall_s:.2f} s, ideal {ideal_s:.2f} s ({self.wall_s / ideal_s:.2f}×)"

    def summary(self) -> str:
        head = f"{self.label}: " if self.label else ""
        lines = [
            f"{head}{self.n} requests in {self.wall_s:.2f} s — {self.ok} ok, {self.errors} failed, "
            f"{self.rps:.0f} req/s",
            f"latency p50 {self.p50 * 1000:.0f} ms, p95 {self.p95 * 1000:.0f} ms, "
            f"max {self.max_s * 1000:.0f} ms",
        ]
        if self.served_by:
            lines.append(f"served by {describe_threads(self.served_by)}")
        if self.errors:
            problems = ", ".join(f"{k} ×{v}" for k, v in self.error_messages.most_common(3))
            lines.append(f"failures: {problems}")
        for block in self.loop_blocks[:3]:
            lines.append(str(block))
        if len(self.loop_blocks) > 3:
            lines.append(f"… and {len(self.loop_blocks) - 3} more loop blocks")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary())

    # -- pictures ------------------------------------------------------------------------
    def plot_timeline(self, title: str | None = None) -> Any:
        """One bar per request from start to end, coloured by the thread that served it."""
        from .plots import timeline

        return timeline(self, title=title)

    def plot_latency(self, title: str | None = None) -> Any:
        """Each request's latency, sorted, with p50 and p95 marked."""
        from .plots import latency_chart

        return latency_chart(self, title=title)


# -- the worker process ---------------------------------------------------------------------
class _Worker:
    """One load-generator process, kept for the kernel's lifetime and reused run after run."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, WORKER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, name="load-worker-reader", daemon=True)
        self.reader.start()
        first = self.next_message(timeout=30)
        if first.get("ready") is not True:
            raise RuntimeError(f"the load worker did not start: {first}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_message(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("the load worker stopped answering") from None
        if line is None:
            assert self.process.stderr is not None
            detail = self.process.stderr.read()[-2000:]
            raise RuntimeError(f"the load worker process ended unexpectedly:\n{detail}")
        return json.loads(line)  # type: ignore[no-any-return]

    def send(self, job: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


_idle_workers: list[_Worker] = []
_workers_lock = threading.Lock()


def _take_worker() -> _Worker:
    with _workers_lock:
        while _idle_workers:
            worker = _idle_workers.pop()
            if worker.alive:
                return worker
            worker.close()
    return _Worker()


def _return_worker(worker: _Worker) -> None:
    with _workers_lock:
        _idle_workers.append(worker)


@atexit.register
def _close_workers() -> None:
    with _workers_lock:
        while _idle_workers:
            _idle_workers.pop().close()


# -- the public function ---------------------------------------------------------------------
def _base_url(target: Server | str) -> str:
    if isinstance(target, Server):
        if not target.running:
            raise RuntimeError(f"server {target.name!r} is stopped; serve() it again first")
        return target.url
    if not isinstance(target, str):
        raise TypeError(f"load() needs a Server or a URL string, got {type(target).__name__}")
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"load() needs a URL like 'http://127.0.0.1:8000', got {target!r}"
        )
    try:
        _ = parts.port  # urlsplit checks the port only when asked for it
    except ValueError:
        raise ValueError(f"the port in {target!r} is not a number between 0 and 65535") from None
    return target.rstrip("/")


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return value


def _server_for(target: Server | str) -> Server | None:
    if isinstance(target, Server):
        return target
    for server in running_servers():
        if target.rstrip("/") == server.url:
            return server
    return None


def load(
    target: Server | str,
    path: str | Sequence[str] = "/",
    *,
    n: int = 1,
    concurrency: int | None = None,
    method: str = "GET",
    json: Any = None,
    headers: dict[str, str] | None = None,
    stagger_s: float = 0.0,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    connection_limit: int | None = None,
    keep_alive: bool = True,
    progress: bool = True,
    label: str = "",
    on_start: Callable[[], None] | None = None,
    collect_garbage: bool = False,
) -> LoadResult:
    """Send ``n`` requests to ``path`` on ``target``, at most ``concurrency`` at a time.

    ``path`` may be a list: each entry is one request (``n`` is then ignored), so one run can
    mix slow requests and probes. ``stagger_s`` starts request *i* at ``i × stagger_s``.
    Failures (timeouts, refused connections, HTTP errors) are counted in the result, not
    raised. ``timeout_s`` bounds each request; ``connection_limit`` caps client connections
    the way a default HTTP client would (``None``: no cap). ``on_start`` is called once, as the
    first request goes out.

    ``collect_garbage=True`` first runs a full garbage collection in this process, outside the
    run. A notebook kernel holds a large heap (matplotlib, the lesson's data), and a full
    collection of it, about 0.1 s on a 2-core machine, can land in a one-request timing (seen:
    a 0.3 s call measured at 0.45 s in the same spot in every run of lesson 05). It is off by
    default: the collection costs CPU in this process and holds its GIL, which a run that
    measures either (or a server busy in this process meanwhile) would count.
    """
    base = _base_url(target)
    if isinstance(path, str):
        paths = [path] * _positive_int("n", n)
    else:
        paths = list(path)
        if not paths:
            raise ValueError("load() got an empty list of paths")
    for p in paths:
        if not isinstance(p, str) or not p.startswith("/"):
            raise ValueError(f"each path must be a string starting with '/', got {p!r}")
    concurrency = _positive_int("concurrency", len(paths) if concurrency is None else concurrency)
    if connection_limit is not None:
        _positive_int("connection_limit", connection_limit)
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive or None, got {timeout_s!r}")
    if stagger_s < 0:
        raise ValueError(f"stagger_s cannot be negative, got {stagger_s!r}")

    job = {
        "base_url": base,
        "paths": paths,
        "concurrency": concurrency,
        "method": method.upper(),
        "json": json,
        "headers": headers or {},
        "stagger_s": stagger_s,
        "timeout_s": timeout_s,
        "connection_limit": connection_limit,
        "keep_alive": keep_alive,
    }
    if collect_garbage:
        gc.collect()
    raw = _run_job(
        job, len(paths), progress=progress, label=label or f"{method.upper()} {base}",
        on_start=on_start,
    )
    records = [
        RequestRecord(
            index=r["index"],
            path=r["path"],
            start_s=r["start"],
            end_s=r["end"],
            status=r.get("status"),
            served_by=r.get("served_by"),
            error=r.get("error"),
            body=r.get("body", ""),
        )
        for r in raw
    ]
    started = min(r.start_s for r in records)
    ended = max(r.end_s for r in records)
    server = _server_for(target)
    blocks: list[LoopBlock] = []
    if server is not None:
        server.watch.settle(ended)
        blocks = server.watch.blocks_between(started, ended)
    return LoadResult(records, started, ended, blocks, label=label)


def load_with_monitor(
    target: Server | str,
    path: str,
    n: int,
    probe_paths: Sequence[str],
    every_s: float = 0.03,
    **options: Any,
) -> tuple[LoadResult, LoadResult]:
    """Send ``n`` requests to ``path`` at once while a monitor sends ``probe_paths``, one every
    ``every_s`` seconds; return ``(traffic, monitor)``. Both runs use their own worker process;
    the traffic starts once the first probe is out, so the probes cover all of it."""
    from concurrent.futures import ThreadPoolExecutor

    # Both runs need a load process of their own. Start them before the first probe: starting
    # one takes up to a second on a busy machine, and the probes would be over by then.
    ready = [_take_worker(), _take_worker()]
    for worker in ready:
        _return_worker(worker)
    probing_started = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor") as monitor:
        probing = monitor.submit(
            load, target, list(probe_paths), stagger_s=every_s, progress=False, label="monitor",
            on_start=probing_started.set,
        )
        # Wait for it: handing the probes to their process takes this process's GIL, which a
        # server computing on its loop here holds, and the probes could start after the job
        # (seen: the worst probe of a 0.4 s job at 0.27 s).
        while not probing_started.wait(0.05) and not probing.done():
            pass
        traffic = load(target, path, n=n, **options)
        return traffic, probing.result()


def _run_job(
    job: dict[str, Any], total: int, *, progress: bool, label: str,
    on_start: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Hand the job to a worker process and wait for its records, showing progress."""
    per_request = job["timeout_s"] if job["timeout_s"] is not None else 3600.0
    waves = math.ceil(total / job["concurrency"])
    # The worker enforces each request's timeout; this outer deadline only catches a stuck worker.
    deadline = time.monotonic() + per_request * waves + total * job["stagger_s"] + 30.0
    worker = _take_worker()
    bar = None
    try:
        worker.send(job)
        while True:
            message = worker.next_message(timeout=max(0.1, deadline - time.monotonic()))
            if on_start is not None:
                on_start()
                on_start = None
            if "progress" in message:
                if progress and bar is None:
                    bar = _progress_bar(total, label)
                if bar is not None:
                    bar.update(message["progress"] - bar.n)
                continue
            if "failure" in message:
                raise RuntimeError(f"the load worker failed: {message['failure']}")
            if bar is not None:
                bar.update(total - bar.n)
            _return_worker(worker)
            return message["result"]  # type: ignore[no-any-return]
    except BaseException:
        worker.close()  # interrupted or broken: never reuse a worker in an unknown state
        raise
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int, label: str) -> Any:
    from tqdm.auto import tqdm

    # delay: the bar only appears for runs that last longer than ~2 s
    return tqdm(total=total, desc=label, unit="req", delay=2.0, leave=False)
