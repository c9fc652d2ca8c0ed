"""Loop watch: notice when something holds a server's event loop, and name what did.

A heartbeat task on the watched loop stamps the time every few milliseconds. A watchdog
thread checks the stamp; when it goes stale, the loop is held, so the watchdog samples every
thread's stack (``sys._current_frames``) and, on Linux, every thread's CPU time, until the
heartbeat returns. The heartbeat then files a :class:`LoopBlock` with a verdict:

- the loop's own code held it (a ``time.sleep``, a CPU loop, a sync driver): the line, or,
  when only library code was running, the request and what FastAPI was doing for it;
- the loop's thread was *waiting for the GIL* while other threads ran Python (``def``
  endpoints crunching numbers, a heavy notebook cell): those threads and their lines;
- garbage collection, reported as a share of the block, or as the cause when nothing else ran;
- one C call that never released the GIL, which no sample can see into.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import inspect
import linecache
import os
import sys
import sysconfig
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from . import _thread_cpu
from ._frontend import ipython_shell

HEARTBEAT_S = 0.005
"""How often the heartbeat task stamps the time on the watched loop."""

WATCHDOG_POLL_S = 0.005
"""How often the watchdog thread looks at the heartbeat."""

_MIN_SAMPLES = 3
"""A block of 50 ms or more with fewer stack samples than this held the GIL throughout."""

_CPU_BASELINE_EVERY_S = 0.05
"""While the loop is healthy, refresh the per-thread CPU readings this often (a block's
readings start from the last one, in case the watchdog gets no chance to run during it)."""

_DENSE_SAMPLING_S = 0.05
_SPARSE_SAMPLE_S = 0.02
"""A block is sampled every watchdog poll for its first 50 ms, then every 20 ms."""

_GIL_WAIT_WAKEUPS_PER_S = 100.0
"""A thread waiting for the GIL wakes every switch interval (5 ms: 200 times a second) to ask
for it; a thread in ``time.sleep`` or a blocking read wakes once. Below half that rate, the
loop's thread was mostly not asking (measured: 210-410/s waiting, 5/s in a sleep)."""

_RECENT_S = 5.0
"""How long a thread's last seen position stands in for a block the watchdog could not sample."""

CAUSE_LOOP = "loop"
"""The loop's own thread ran (or blocked in) the code the block names."""
CAUSE_GIL = "gil"
"""The loop's thread waited for the GIL while :attr:`LoopBlock.threads` ran Python."""
CAUSE_GC = "gc"
"""Garbage collection, with no code to blame besides it."""
CAUSE_UNSAMPLED = "unsampled"
"""One C call that never released the GIL: no Python line could be sampled during it."""

IDLE = "<idle: waiting in select()>"
GC_FUNCTION = "<garbage collection>"
UNSAMPLED = "<unsampled>"

Key = tuple[str, int, str]
"""A sampled position: (filename, line number, function name)."""


def _where(filename: str, lineno: int) -> str:
    """``app.py:12``, or ``cell In[3], line 7`` for code typed into a notebook cell."""
    cell = notebook_cell_number(filename)
    if cell is not None:
        return f"cell In[{cell}], line {lineno}"
    return f"{os.path.basename(filename)}:{lineno}"


@dataclass(frozen=True)
class ThreadRun:
    """A thread that ran Python while the loop's thread waited for the GIL."""

    name: str
    """``worker 3``, ``the notebook``, ``server 'users' (its event loop)``…"""
    filename: str
    lineno: int
    code: str
    cpu_ms: float
    """CPU time it used during the block (0 where the OS does not say)."""
    seen_running: bool = True
    """False when no two samples caught it at work (it may have been inside one long call):
    the line is where a sample, or the end of the block, found it."""
    job_only: bool = False
    """True when nothing but the function it was given to run is known (a threadpool worker
    no sample caught): the line is that function's ``def``."""

    @property
    def where(self) -> str:
        return _where(self.filename, self.lineno) if self.lineno else "an unsampled line"


@dataclass(frozen=True)
class LoopBlock:
    """One stretch of time in which the event loop could not run anything else."""

    start_s: float
    """``time.perf_counter()`` when the loop last ran the heartbeat before the block."""
    end_s: float
    """``time.perf_counter()`` when the loop was free again."""
    filename: str
    lineno: int
    code: str
    """The source line to blame: the loop's own, or (waiting for the GIL) the busiest thread's."""
    function: str = ""
    stack: tuple[str, ...] = field(default=(), repr=False)
    """The loop thread's sampled stack there, outermost first, as ``file:line in function``."""
    cause: str = CAUSE_LOOP
    """One of ``loop``, ``gil``, ``gc``, ``unsampled`` (see the ``CAUSE_*`` constants)."""
    gc_ms: float = 0.0
    """How much of the block was garbage collection, in any thread."""
    request: str = ""
    """The request the loop was working on, when known: ``GET /items → items() at app.py:40``."""
    phase: str = ""
    """What FastAPI was doing for it when only library code ran: ``encoding the response``…"""
    threads: tuple[ThreadRun, ...] = ()
    """For a GIL wait: the threads that ran meanwhile, busiest first."""
    evidence: str = field(default="", repr=False, compare=False)
    """The figures the verdict rests on (samples, CPU shares, wake-ups), for the curious."""
    ended_with_response: bool = False
    """True when no line could be sampled and ``request`` is the one whose response went out as
    the block ended: the loop was most likely producing that response."""

    @property
    def is_garbage_collection(self) -> bool:
        """True when garbage collection, and nothing else, held the loop."""
        return self.cause == CAUSE_GC

    @property
    def waited_for_gil(self) -> bool:
        """True when the loop's thread was ready to run but other threads held the GIL."""
        return self.cause == CAUSE_GIL

    @property
    def in_library_code(self) -> bool:
        """True when the blamed line is in the standard library or an installed package."""
        return self.cause == CAUSE_LOOP and is_library_file(self.filename)

    @property
    def starting_a_thread(self) -> bool:
        """True when the loop sat in ``Thread.start()``: a threadpool growing a new worker
        waits, on the loop, until the OS runs that thread. Under a millisecond on a free
        machine; on a busy one it can take a tenth of a second or more, which is not the
        caller's doing (offloading to a thread is the cure, not the cause)."""
        return self.cause == CAUSE_LOOP and any(
            _THREADING_FILE in frame and frame.endswith(" in start") for frame in self.stack[-4:]
        )

    @property
    def starting_a_process(self) -> bool:
        """True when the loop sat in a ``ProcessPoolExecutor`` starting a worker process: a
        pool started on demand does it at submit, on the caller's thread, and a new Python
        takes a moment to launch (105-875 ms seen on a busy machine). The pool's cost, not
        the caller's code: start the pool's processes early, in the lifespan, to avoid it."""
        return self.cause == CAUSE_LOOP and any(
            _PROCESS_POOL_FILE in frame and frame.endswith(_POOL_STARTS) for frame in self.stack
        )

    @property
    def duration_ms(self) -> float:
        return (self.end_s - self.start_s) * 1000.0

    @property
    def where(self) -> str:
        """``app.py:12``, or ``cell In[3], line 7`` for code typed into a notebook cell;
        empty when no line can be named (garbage collection, an unsampled C call)."""
        if self.cause in (CAUSE_GC, CAUSE_UNSAMPLED) or not self.lineno:
            return ""
        return _where(self.filename, self.lineno)

    def __str__(self) -> str:
        text = f"loop blocked {self.duration_ms:.0f} ms"
        if self.cause in (CAUSE_GC, CAUSE_UNSAMPLED):
            return f"{text} by {self.code}"
        if self.cause == CAUSE_GIL:
            text += f" waiting for the GIL while {_describe_runs(self.threads)}"
        elif self.starting_a_process:
            text += (
                f" starting a process pool's worker process, called from "
                f"{self.where} `{self.code}`"
            )
        elif self.starting_a_thread:
            text += (
                f" starting a new worker thread (the OS was slow to run it), called from "
                f"{self.where} `{self.code}`"
            )
        elif self.in_library_code and self.request:
            doing = f"{self.phase} for" if self.phase else "serving"
            text += (
                f" in library code {doing} {self.request} "
                f"(innermost line: {self.where} `{self.code}`)"
            )
        else:
            text += f" at {self.where} `{self.code}`"
        if self.gc_ms >= max(5.0, 0.1 * self.duration_ms):
            text += f" ({self.gc_ms:.0f} ms of it garbage collection)"
        return text


def _describe_runs(runs: tuple[ThreadRun, ...]) -> str:
    """``worker 1 and worker 3 ran app.py:9 `burn()`; the notebook ran cell In[4], line 2 `…```."""
    by_line: dict[tuple[str, str, bool, bool], list[str]] = {}
    for run in runs:
        key = (run.where, run.code, run.seen_running, run.job_only)
        by_line.setdefault(key, []).append(run.name)
    for names in by_line.values():
        names.sort(key=_natural_order)
    parts = []
    for (where, code, seen_running, job_only), names in by_line.items():
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
        at = f"{where} `{code}`" if code else where
        if job_only:
            parts.append(f"{who} ran {code} ({where}; no sample caught the line)")
        elif seen_running:
            parts.append(f"{who} ran {at}")
        else:
            # sampled without being caught between two samples: where it was, not proof
            parts.append(f"{who} ran Python (seen at {at})")
    return "; ".join(parts) or "other threads ran"


def _natural_order(name: str) -> tuple[str, int]:
    """``worker 2`` before ``worker 10``."""
    stem, _, number = name.rpartition(" ")
    return (stem, int(number)) if number.isdigit() else (name, 0)


def notebook_cell_number(filename: str) -> int | None:
    """The execution count of the notebook cell IPython compiled into ``filename``, if any."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    filename_map = getattr(getattr(shell, "compile", None), "_filename_map", None)
    if not isinstance(filename_map, dict):
        return None
    number = filename_map.get(filename)
    return number if isinstance(number, int) else None


def _library_dirs() -> tuple[str, ...]:
    """Folders whose code is 'not the learner's': the standard library and installed packages."""
    paths = sysconfig.get_paths()
    dirs = {paths.get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.add(os.path.dirname(os.path.abspath(__file__)))  # this helpers package
    return tuple(sorted(d for d in dirs if d))


_LIBRARY_DIRS = _library_dirs()


def _others_could_hold_it(loop_share: float, busy: dict[int, tuple[float, float]]) -> bool:
    """Did the other threads run long enough to have kept the GIL from the loop's thread?

    A thread holds the GIL only while it runs. When the others ran for less of the block than
    the time nobody in this process ran at all, the machine kept the process off its cores (a
    GIL holder waiting for a core, say), not the app's threads (seen on a busy 2-core machine:
    a 54 ms "GIL wait" beside ten threads that waited on HTTP answers and used 21% of it)."""
    others = sum(share for share, _ in busy.values())
    nobody_ran = max(0.0, 1.0 - loop_share - others)
    return others > 0 and others >= nobody_ran


def _runs_for_the_collector(key: Key) -> bool:
    """Is this a finalizer or a weak reference's callback, code a collection runs?"""
    filename, _, function = key
    return function == "__del__" or os.path.basename(filename) in ("weakref.py", "_weakrefset.py")


def is_library_file(filename: str) -> bool:
    """True for stdlib, site-packages, frozen modules and helpers' own code."""
    if filename.startswith("<"):
        return True
    path = os.path.abspath(filename)
    return any(path.startswith(d + os.sep) for d in _LIBRARY_DIRS)


_ASYNCIO_DIR = os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep


def _blame_frame(frame: FrameType) -> FrameType:
    """The innermost frame of the learner's own code, else the innermost frame.

    When ``time.sleep`` or ``sqlite3`` holds the loop the innermost Python frame is the
    caller's line; when a library blocks (an HTTP client building an SSL context) the
    interesting line is still where the learner's code called into it. When the innermost
    frame is asyncio's own (a burst of a thousand tasks waking up), the loop was busy with
    its bookkeeping, and blaming the ``await`` line that happens to be below would mislead.
    """
    if os.path.abspath(frame.f_code.co_filename).startswith(_ASYNCIO_DIR):
        return frame
    walker: FrameType | None = frame
    while walker is not None:
        if not is_library_file(walker.f_code.co_filename):
            return walker
        walker = walker.f_back
    return frame


def _key(frame: FrameType) -> Key:
    if frame.f_code is _note_gc.__code__ and frame.f_back is not None:
        frame = frame.f_back  # sampled inside the watch's own garbage-collection callback
    blamed = _blame_frame(frame)
    # f_lineno can be None for a frame caught mid-instruction; fall back to the def line
    lineno = blamed.f_lineno or blamed.f_code.co_firstlineno
    return blamed.f_code.co_filename, lineno, blamed.f_code.co_name


def _is_idle(frame: FrameType) -> bool:
    return frame.f_code.co_name == "select" and frame.f_code.co_filename.endswith("selectors.py")


_THREADING_FILE = os.sep + "threading.py:"
_PROCESS_POOL_FILE = os.sep + os.path.join("concurrent", "futures", "process.py") + ":"
_POOL_STARTS = (" in _spawn_process", " in _adjust_process_count", " in _launch_processes")
_WAITING_FILES = tuple(
    os.sep + name for name in ("threading.py", "queue.py", "selectors.py", "thread.py")
)


def _is_waiting(frame: FrameType) -> bool:
    """A thread parked in a lock, a queue or select(): idle, whatever CPU it used before."""
    return frame.f_code.co_filename.endswith(_WAITING_FILES)


def _describe_stack(frame: FrameType, limit: int = 12) -> tuple[str, ...]:
    lines: list[str] = []
    walker: FrameType | None = frame
    while walker is not None and len(lines) < limit:
        lines.append(f"{walker.f_code.co_filename}:{walker.f_lineno} in {walker.f_code.co_name}")
        walker = walker.f_back
    return tuple(reversed(lines))


# What FastAPI, Starlette or uvicorn was doing, read off the innermost matching frame:
# (a piece of the file's path, the function or "" for any, the phase in words).
_PHASES: tuple[tuple[str, str, str], ...] = (
    ("starlette/background.py", "", "running a background task"),
    ("fastapi/encoders.py", "jsonable_encoder", "encoding the response"),
    ("fastapi/routing.py", "serialize_response", "validating and encoding the response"),
    ("fastapi/dependencies/utils.py", "", "validating the request"),
    ("starlette/middleware/", "", "running a middleware"),
    ("starlette/responses.py", "", "building the response"),
    ("uvicorn/protocols/", "", "reading or writing the connection"),
    ("fastapi/routing.py", "", "handling the request"),
)


def _phase(frame: FrameType) -> str:
    walker: FrameType | None = frame
    while walker is not None:
        path = walker.f_code.co_filename.replace(os.sep, "/")
        for piece, function, phase in _PHASES:
            if piece in path and (not function or walker.f_code.co_name == function):
                return phase
        walker = walker.f_back
    return ""


def describe_request(scope: Mapping[str, Any]) -> str:
    """``GET /items → items() at app.py:40`` for an HTTP scope, ``the app's lifespan`` for one."""
    if scope.get("type") == "lifespan":
        return "the app's lifespan"
    text = f"{scope.get('method', '')} {scope.get('path', '')}".strip()
    endpoint = scope.get("endpoint")
    code = getattr(inspect.unwrap(endpoint), "__code__", None) if callable(endpoint) else None
    if code is not None:
        text += f" → {code.co_name}() at {_where(code.co_filename, code.co_firstlineno)}"
    return text


# Python's garbage collector stops whichever thread triggered it, and, holding the GIL, every
# other thread too: a full collection in a kernel full of objects can take tens of ms. Record
# the long ones so a block can say how much of it they were.
_GC_PAUSE_FLOOR_S = 0.005
_gc_pauses: collections.deque[tuple[float, float, int]] = collections.deque(maxlen=256)
_gc_started = 0.0


def _note_gc(phase: str, info: dict[str, int]) -> None:
    global _gc_started
    now = time.perf_counter()
    if phase == "start":
        _gc_started = now
    elif now - _gc_started >= _GC_PAUSE_FLOOR_S:
        _gc_pauses.append((_gc_started, now, info.get("generation", -1)))


if _note_gc not in gc.callbacks:
    gc.callbacks.append(_note_gc)


def _gc_share(start_s: float, end_s: float) -> tuple[float, int]:
    """Seconds of ``[start_s, end_s]`` spent in garbage collection, and the oldest generation."""
    total, generation = 0.0, -1
    for began, ended, gen in list(_gc_pauses):
        overlap = min(end_s, ended) - max(start_s, began)
        if overlap > 0:
            total += overlap
            generation = max(generation, gen)
    return total, generation


_watchdog_idents: set[int] = set()
"""Every loop watch's own thread: they sample, they never hold a loop up."""


def default_thread_name(thread: threading.Thread | None) -> str:
    """How a block names a thread that no server claims."""
    if thread is None:
        return "a thread Python does not know"
    if thread is threading.main_thread():
        # in a notebook's kernel the main thread is the one running the cells
        in_kernel = getattr(ipython_shell(), "kernel", None) is not None
        return "the notebook" if in_kernel else "the main thread"
    if thread.name.startswith("server:"):
        return f"server {thread.name.removeprefix('server:')!r} (its event loop)"
    if thread.name.startswith("AnyIO worker thread"):
        return "a worker thread of another event loop"
    return f"thread {thread.name!r}"


@dataclass
class _Stall:
    """What the watchdog saw while the heartbeat was stale."""

    loop_keys: Counter[Key] = field(default_factory=Counter)
    stacks: dict[Key, tuple[str, ...]] = field(default_factory=dict)
    phases: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    # per other thread: where it was at each sample, and how often its frame had moved on
    others: dict[int, Counter[Key]] = field(default_factory=dict)
    moved: Counter[int] = field(default_factory=Counter)
    running_at: dict[int, Counter[Key]] = field(default_factory=dict)
    loop_moved: int = 0
    last_phase: str = ""
    last_request: str = ""
    intervals: int = 0
    cpu_first: tuple[float, dict[int, int]] | None = None


class LoopWatch:
    """Watches one event loop; records :class:`LoopBlock` entries.

    Two parts cooperate. The heartbeat task, on the watched loop, knows exactly how long the
    loop was held (the gap between two beats) and files each block. The watchdog thread
    notices a stale heartbeat while the block is still going on and samples the threads, so
    the block can name its cause. Code that never lets go of the GIL (a garbage collection, a
    long C call) cannot be sampled, but the heartbeat still files it.

    ``name_thread`` names the threads a server knows (``worker 3``), returning None for the
    others; ``request_for_task`` gives the ASGI scope an asyncio task is serving, if any, and
    ``response_sent_between`` the request whose response went out in a time window, and
    ``job_of_thread`` the function a threadpool worker was last given to run.
    """

    def __init__(
        self,
        name: str,
        threshold_ms: float = 50.0,
        *,
        name_thread: Callable[[threading.Thread], str | None] | None = None,
        request_for_task: Callable[[asyncio.Task[Any]], Mapping[str, Any] | None] | None = None,
        response_sent_between: Callable[[float, float], Mapping[str, Any] | None] | None = None,
        job_of_thread: Callable[[int], Callable[..., Any] | None] | None = None,
    ) -> None:
        if threshold_ms <= 0:
            raise ValueError(f"threshold_ms must be positive, got {threshold_ms!r}")
        self.name = name
        self.threshold_ms = threshold_ms
        self.blocks: list[LoopBlock] = []
        self._name_thread = name_thread
        self._request_for_task = request_for_task
        self._response_sent_between = response_sent_between
        self._job_of_thread = job_of_thread
        self._beat_cpu_s = 0.0
        self._beat_wakeups: int | None = None
        self._last_beat = time.perf_counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._loop_native_id: int | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stalls: dict[float, _Stall] = {}  # keyed by the beat the stall began after
        self._cpu_baseline: tuple[float, dict[int, int]] | None = None
        self._cpu_supported = _thread_cpu.supported()
        # the loop thread's wait for a CPU, read with the CPU baseline: (when, ns) or None
        self._runqueue: _thread_cpu.RunqueueClock | None = None
        self._runqueue_baseline: tuple[float, int] | None = None
        # a stall is noticed after a few missed beats, which keeps ordinary loop jitter out
        self._notice_after_s = max(HEARTBEAT_S * 3, min(threshold_ms / 1000.0 / 2, 0.02))
        # where each thread was last seen running Python (kept across blocks: a block the
        # watchdog could not sample at all is usually more of the same work)
        self._last_running: dict[int, tuple[float, Key]] = {}
        # ... and where threads running each threadpool job were last caught: a worker no
        # sample catches is most likely where the others running the same endpoint were
        self._job_lines: dict[Callable[..., Any], Key] = {}

    # -- on the watched loop ------------------------------------------------------------
    def start(self) -> None:
        """Start watching the running loop; call from a coroutine on that loop."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        self._loop_native_id = threading.get_native_id()
        self._runqueue = _thread_cpu.RunqueueClock(self._loop_native_id)
        self._last_beat = time.perf_counter()
        self._heartbeat_task = self._loop.create_task(self._heartbeat())
        self._thread = threading.Thread(
            target=self._watchdog, name=f"loopwatch:{self.name}", daemon=True
        )
        self._thread.start()

    async def _heartbeat(self) -> None:
        previous = self._last_beat = time.perf_counter()
        self._note_beat()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            now = time.perf_counter()
            self._beat(previous, now)
            previous = self._last_beat = now
            self._note_beat()

    def _note_beat(self) -> None:
        # the loop thread's own CPU clock and wake-up count (a microsecond each, and neither
        # lets go of the GIL): exact figures for the next block, whatever else happens
        self._beat_cpu_s = time.thread_time()
        self._beat_wakeups = _thread_cpu.own_wakeups()

    def _beat(self, previous: float, now: float) -> None:
        # the sleep itself accounts for one interval; anything beyond it, the loop was held
        held_s = now - previous - HEARTBEAT_S
        if held_s * 1000.0 >= self.threshold_ms:
            loop_cpu_s = time.thread_time() - self._beat_cpu_s
            wakeups = _thread_cpu.own_wakeups()
            woke = None
            if wakeups is not None and self._beat_wakeups is not None:
                woke = wakeups - self._beat_wakeups
            self._file(previous, previous + held_s, loop_cpu_s, woke)
        elif previous in self._stalls:
            with self._lock:
                self._stalls.pop(previous, None)

    async def aclose(self) -> None:
        """File a block still open (a lifespan shutdown that blocked), then stop watching."""
        if self._heartbeat_task is not None and not self._heartbeat_task.done():
            # the heartbeat is cancelled in this same loop pass and would never see the gap
            self._beat(self._last_beat, time.perf_counter())
        self._stop.set()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            try:
                await self._heartbeat_task
            except asyncio.CancelledError:
                pass
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)

    def stop_watchdog(self, timeout: float = 1.0) -> None:
        """Stop the watchdog thread from any thread (used when the loop is stuck)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- filing a block (on the loop, right after it) -------------------------------------
    def _file(
        self,
        start_s: float,
        end_s: float,
        loop_cpu_s: float | None = None,
        loop_wakeups: int | None = None,
    ) -> None:
        """File the block ``[start_s, end_s]``; ``loop_cpu_s`` and ``loop_wakeups`` are the CPU
        time the loop's thread used and how often it woke meanwhile (None when unknown)."""
        with self._lock:
            stall = self._stalls.pop(start_s, None) or _Stall()
            for stale in [beat for beat in self._stalls if beat < start_s]:
                del self._stalls[stale]
            baseline = self._cpu_baseline
        try:
            block = self._judge(stall, baseline, start_s, end_s, loop_cpu_s, loop_wakeups)
        except Exception as error:  # noqa: BLE001 - a verdict must never stop the heartbeat
            block = LoopBlock(
                start_s, end_s, "<unsampled>", 0,
                f"something the loop watch could not judge ({error!r})", UNSAMPLED, (),
                CAUSE_UNSAMPLED,
            )
        if block is not None:
            with self._lock:
                self.blocks.append(block)

    def _judge(
        self,
        stall: _Stall,
        baseline: tuple[float, dict[int, int]] | None,
        start_s: float,
        end_s: float,
        loop_cpu_s: float | None = None,
        loop_wakeups: int | None = None,
    ) -> LoopBlock | None:
        duration_s = end_s - start_s
        samples = sum(stall.loop_keys.values())
        gc_s, generation = _gc_share(start_s, end_s)
        request = stall.requests.most_common(1)[0][0] if stall.requests else ""
        phase = stall.phases.most_common(1)[0][0] if stall.phases else ""
        ended_with_response = False

        def block(
            filename: str, lineno: int, code: str, function: str, stack: tuple[str, ...],
            cause: str, threads: tuple[ThreadRun, ...] = (),
        ) -> LoopBlock:
            return LoopBlock(
                start_s, end_s, filename, lineno, code, function, stack, cause,
                gc_ms=gc_s * 1000.0, request=request, phase=phase, threads=threads,
                evidence=evidence, ended_with_response=ended_with_response,
            )

        cpu = self._cpu_during(stall, baseline, start_s)
        busy = self._busy_threads(cpu, stall)
        if loop_cpu_s is not None:  # exact, from the loop thread's own clock
            loop_share = min(1.0, loop_cpu_s / max(duration_s, 1e-9))
        else:
            loop_share = stall.loop_moved / max(stall.intervals, 1)
        wakeups_per_s = None if loop_wakeups is None else loop_wakeups / max(duration_s, 1e-9)
        names = {t.ident: t.name for t in threading.enumerate()}
        evidence = (
            f"{samples} samples; loop thread CPU {loop_share:.0%}"
            + ("" if wakeups_per_s is None else f", woke {wakeups_per_s:.0f}/s")
            + "".join(f"; {names.get(i, i)} CPU {share:.0%}" for i, (share, _) in busy.items())
            + ("" if cpu else " (no per-thread CPU figures)")
        )
        if self._waited_for_gil(stall, samples, loop_share, wakeups_per_s, busy):
            runs = self._thread_runs(stall, busy)
            if runs:
                # the line most of them ran; a thread caught running it counts double
                lines: Counter[tuple[str, int, str]] = Counter()
                for run in runs:
                    if run.lineno:
                        caught = run.seen_running and not run.job_only
                        lines[(run.filename, run.lineno, run.code)] += 2 if caught else 1
                filename, lineno, code = (
                    lines.most_common(1)[0][0] if lines else (runs[0].filename, 0, "")
                )
                return block(filename, lineno, code, "", (), CAUSE_GIL, runs)

        # Few samples can still be trusted when the loop's frame moved between them (Python
        # code was running, not one C call).
        trusted = (
            samples >= _MIN_SAMPLES
            or duration_s < 10 * WATCHDOG_POLL_S
            or (samples >= 2 and stall.loop_moved > 0 and loop_share >= 0.5)
        )
        if not trusted and not request and self._response_sent_between is not None:
            # Nothing could be sampled, but the block ended as a response went out: the loop
            # was producing that response (validating and encoding a big body, say). That
            # response goes out in the very step that held the loop, the first one after it;
            # the window starts halfway through the block because one answered in the
            # heartbeat's last few ms before the block began is no part of it (seen: the app
            # doctor's probe, named for a 678 ms export).
            scope = self._response_sent_between(start_s + duration_s / 2,
                                                end_s + 2 * HEARTBEAT_S)
            if scope is not None:
                request = describe_request(scope)
                ended_with_response = True
        ending = f"; it ended as the loop sent the response of {request}" if request else ""
        sampled = stall.loop_keys.most_common(1)[0][0] if samples else ("", 0, "")
        # A collection runs finalizers and weak-reference callbacks, and the samples can catch
        # them: they are the collection's doing, not a culprit (seen: 400 ms of a 408 ms
        # collection sampled in _weakrefset.py). Any other line keeps the blame, with the
        # collection as its share: it made the garbage.
        if gc_s >= duration_s / 2 and (not trusted or _runs_for_the_collector(sampled)):
            code = f"garbage collection (generation {generation}), {gc_s * 1000:.0f} ms of it"
            return block("<gc>", 0, code + ending, GC_FUNCTION, (), CAUSE_GC)

        def at_sampled_line() -> LoopBlock:
            filename, lineno, function = sampled
            code = linecache.getline(filename, lineno).strip()
            return block(filename, lineno, code, function, stall.stacks.get(sampled, ()),
                         CAUSE_LOOP)

        if samples and trusted:
            if sampled[2] == IDLE:
                # The loop sat in select() with nothing to do: the OS did not schedule its
                # thread (a starved machine), which is not code holding the loop.
                return None
            return at_sampled_line()
        if loop_share < 0.2 and (loop_cpu_s is not None or cpu is not None):
            if cpu is not None and not _others_could_hold_it(loop_share, busy):
                if not self._waited_in_a_call():
                    # Hardly anybody in this process ran, the loop's thread waiting for a core:
                    # the machine was busy elsewhere, not the app.
                    return None
                # The loop's thread slept in a call (time.sleep, a blocking read), not waiting
                # for a core: the app's doing, however few samples a starved watchdog took
                # (seen beside four CPU-bound processes: one sample, or none, in a 218 ms sleep).
                if samples and sampled[2] != IDLE:
                    return at_sampled_line()
                code = ("a call that kept the loop's thread waiting (no Python line could be "
                        f"sampled: the machine left the watchdog no time){ending}")
                return block("<unsampled>", 0, code, UNSAMPLED, (), CAUSE_UNSAMPLED)
            # The loop's thread hardly ran, yet the watchdog could not get in either: some
            # other thread held the GIL, which this platform cannot name.
            return block("", 0, "", "", (), CAUSE_GIL)
        if self._cpu_supported:
            code = "C code that never released the GIL (no Python line could be sampled"
        else:
            # without per-thread CPU figures a long C call on the loop and other threads
            # holding the GIL look the same from here: say only what is known
            code = (
                "something that kept the GIL (no Python line could be sampled, and without "
                "per-thread CPU figures this platform cannot tell whose it was"
            )
        after = [key for key, _ in stall.loop_keys.most_common() if key[2] != IDLE]
        if after:
            next_at = _where(after[0][0], after[0][1])
            code += f"; right after it, the loop was at {next_at}"
        code += ending + ")"
        stack = stall.stacks.get(after[0], ()) if after else ()
        return block("<unsampled>", 0, code, UNSAMPLED, stack, CAUSE_UNSAMPLED)

    def _runqueue_reading(self) -> tuple[float, int] | None:
        clock = self._runqueue
        waited = clock.read_ns() if clock is not None else None
        return None if waited is None else (time.perf_counter(), waited)

    def _waited_in_a_call(self) -> bool:
        """Was the loop's thread, during the block, mostly asleep in a call of its own rather
        than ready to run and waiting for a CPU? Linux counts the second; a thread in
        ``time.sleep`` or a blocking read is not ready. Read from the watchdog's last reading
        while the loop was healthy (at most a few ms into the block) to now, on the loop's
        thread."""
        first = self._runqueue_baseline
        now = self._runqueue_reading()
        if first is None or now is None or now[0] <= first[0]:
            return False
        return (now[1] - first[1]) / 1e9 < 0.5 * (now[0] - first[0])

    def _cpu_during(
        self,
        stall: _Stall,
        baseline: tuple[float, dict[int, int]] | None,
        start_s: float,
    ) -> tuple[float, dict[int, int]] | None:
        """(window seconds, CPU ns per native thread id), from the reading taken nearest the
        block's start (before it, or a few ms into it) to now."""
        first = stall.cpu_first
        if first is None or first[0] - start_s > self._notice_after_s + 3 * WATCHDOG_POLL_S:
            # a watchdog starved during the block reads only when it is nearly over: too late
            first = baseline or first
        if not self._cpu_supported or first is None:
            return None
        began, before = first
        now, after = time.perf_counter(), _thread_cpu.read_all()
        # the next block starts from here if the watchdog gets no chance to read before it
        self._cpu_baseline = (now, after)
        window_s = now - began
        if window_s <= 0 or not after:
            return None
        return window_s, {tid: ns - before.get(tid, 0) for tid, ns in after.items()}

    def _busy_threads(
        self, cpu: tuple[float, dict[int, int]] | None, stall: _Stall
    ) -> dict[int, tuple[float, float]]:
        """The other Python threads that ran during the block: ``threading`` ident → (share of
        the window, CPU ms; 0 if unknown)."""
        if cpu is None:
            # No CPU figures (not Linux): a thread whose frame kept moving between samples ran.
            intervals = max(stall.intervals, 1)
            return {
                ident: (moves / intervals, 0.0)
                for ident, moves in stall.moved.items()
                if moves / intervals >= 0.5
            }
        window_s, cpu_ns = cpu
        busy = {}
        for thread in threading.enumerate():
            if thread.ident is None or thread.native_id is None:
                continue
            if thread.native_id == self._loop_native_id or thread.ident in _watchdog_idents:
                continue
            spent = cpu_ns.get(thread.native_id, 0)
            if spent / 1e9 / window_s >= 0.05:
                busy[thread.ident] = (spent / 1e9 / window_s, spent / 1e6)
        return busy

    def _waited_for_gil(
        self,
        stall: _Stall,
        samples: int,
        loop_share: float,
        wakeups_per_s: float | None,
        busy: dict[int, tuple[float, float]],
    ) -> bool:
        """Was the loop's thread ready to run, but kept from it by others holding the GIL?"""
        if not busy or loop_share >= 0.5 or not _others_could_hold_it(loop_share, busy):
            return False
        if wakeups_per_s is not None and wakeups_per_s >= _GIL_WAIT_WAKEUPS_PER_S:
            return True  # it kept asking for the GIL
        if loop_share < 0.2 and samples < _MIN_SAMPLES:
            # The loop's thread hardly ran, and the watchdog could barely get in either: the
            # GIL was held elsewhere (a quiet time.sleep on the loop leaves it free to sample).
            return True
        if wakeups_per_s is None and stall.loop_keys:
            # no wake-up count: the loop stood still in library code while others moved on
            keys = [key for key in stall.loop_keys if key[2] != IDLE]
            return bool(keys) and all(is_library_file(key[0]) for key in keys)
        return False

    def _thread_runs(
        self, stall: _Stall, busy: dict[int, tuple[float, float]]
    ) -> tuple[ThreadRun, ...]:
        threads = {t.ident: t for t in threading.enumerate()}
        frames = sys._current_frames()
        # Threads seen running during the block; a thread that only used CPU before it (the
        # readings can start a little earlier) and then sat idle is not a culprit.
        caught = {ident: busy[ident] for ident in busy if stall.running_at.get(ident)}
        runs = []
        for ident, (_, cpu_ms) in sorted((caught or busy).items(), key=lambda i: -i[1][0]):
            thread = threads.get(ident)
            place = self._place_of(ident, stall, frames.get(ident))
            if place is None:
                if len(busy) > 1:
                    continue  # parked again by now, and others are there to blame
                place = ("", 0, "", False, False)
            filename, lineno, code, seen_running, job_only = place
            name = self._name_thread(thread) if thread and self._name_thread else None
            runs.append(
                ThreadRun(
                    name or default_thread_name(thread), filename, lineno, code, cpu_ms,
                    seen_running, job_only,
                )
            )
        del frames
        return tuple(runs)

    def _place_of(
        self, ident: int, stall: _Stall, frame: FrameType | None
    ) -> tuple[str, int, str, bool, bool] | None:
        """Where a busy thread ran: (file, line, source, caught at it, only its job known),
        best evidence first."""
        def line(key: Key, seen_running: bool) -> tuple[str, int, str, bool, bool]:
            source = linecache.getline(key[0], key[1]).strip()
            return key[0], key[1], source, seen_running, False

        def useful(key: Key) -> bool:
            # a worker caught handing its result to the loop (asyncio's self-pipe) spent
            # microseconds there: not the line to name
            return key[2] != IDLE and not os.path.abspath(key[0]).startswith(_ASYNCIO_DIR)

        caught = stall.running_at.get(ident, Counter())
        running_at = [key for key, _ in caught.most_common() if useful(key)]
        if running_at:
            return line(running_at[0], True)
        last_seen = self._last_running.get(ident)
        if last_seen and time.perf_counter() - last_seen[0] < _RECENT_S and useful(last_seen[1]):
            return line(last_seen[1], True)  # nothing caught in this block: just before it
        job = self._job_of_thread(ident) if self._job_of_thread else None
        sampled = [k for k, _ in stall.others.get(ident, Counter()).most_common() if useful(k)]
        if frame is not None and not _is_waiting(frame) and useful(_key(frame)):
            # where it is now, the block just over (the watchdog rarely gets the GIL while
            # several threads compute; the loop thread filing this block has it)
            sampled.append(_key(frame))
        if sampled:
            if job is not None and not is_library_file(sampled[0][0]):
                self._job_lines[job] = sampled[0]
            return line(sampled[0], False)  # seen there, but never between two samples
        if job is not None and job in self._job_lines:
            return line(self._job_lines[job], False)  # others running this job were there
        code = getattr(inspect.unwrap(job), "__code__", None) if job is not None else None
        if code is not None:
            # a threadpool worker: the function it was given to run
            return code.co_filename, code.co_firstlineno, f"{code.co_name}()", False, True
        return None

    # -- on the watchdog thread --------------------------------------------------------
    def _watchdog(self) -> None:
        _watchdog_idents.add(threading.get_ident())
        try:
            self._watch()
        finally:
            _watchdog_idents.discard(threading.get_ident())
            clock, self._runqueue = self._runqueue, None
            if clock is not None:
                clock.close()

    def _watch(self) -> None:
        # A stall is noticed after a few missed beats, which keeps ordinary loop jitter out.
        notice_after = self._notice_after_s
        previous_positions: dict[int, tuple[int, int, Key]] = {}
        previous_beat = -1.0
        last_sample_s = 0.0
        # time.sleep, not Event.wait: under GIL contention every step back into Python code
        # waits its turn for the GIL, and Event.wait takes several such steps per poll
        while not self._stop.is_set():
            time.sleep(WATCHDOG_POLL_S)
            beat = self._last_beat
            now = time.perf_counter()
            if now - beat <= notice_after:
                if self._cpu_supported and (
                    self._cpu_baseline is None
                    or now - self._cpu_baseline[0] >= _CPU_BASELINE_EVERY_S
                ):
                    self._cpu_baseline = (time.perf_counter(), _thread_cpu.read_all())
                    self._runqueue_baseline = self._runqueue_reading()
                continue
            if beat != previous_beat:
                previous_positions = {}
                previous_beat = beat
                last_sample_s = 0.0
            # Each sample needs the GIL, which a starved loop is waiting for too: after the
            # first 50 ms of a block, sample less often so the watch adds little to the wait.
            every_s = WATCHDOG_POLL_S if now - beat < _DENSE_SAMPLING_S else _SPARSE_SAMPLE_S
            if now - last_sample_s < every_s:
                continue
            last_sample_s = now
            self._sample(beat, previous_positions)

    def _sample(self, beat: float, previous_positions: dict[int, tuple[int, int, Key]]) -> None:
        frames = sys._current_frames()
        loop_frame = frames.get(self._loop_thread_id or 0)
        if loop_frame is None:
            return
        now = time.perf_counter()
        with self._lock:
            stall = self._stalls.setdefault(beat, _Stall())
        if self._cpu_supported and stall.cpu_first is None:
            stall.cpu_first = (now, _thread_cpu.read_all())
        loop_before = previous_positions.get(self._loop_thread_id or 0)
        if loop_before is not None and loop_before[:2] == (id(loop_frame), loop_frame.f_lasti):
            key = loop_before[2]  # still at the same instruction: nothing new to read
            if stall.last_phase:
                stall.phases[stall.last_phase] += 1
            if stall.last_request:
                stall.requests[stall.last_request] += 1
        elif _is_idle(loop_frame):
            key = ("", 0, IDLE)
        else:
            key = _key(loop_frame)
            if key not in stall.stacks:
                stall.stacks[key] = _describe_stack(loop_frame)
            stall.last_phase = _phase(loop_frame)
            if stall.last_phase:
                stall.phases[stall.last_phase] += 1
            stall.last_request = self._current_request()
            if stall.last_request:
                stall.requests[stall.last_request] += 1
        stall.loop_keys[key] += 1
        # Who else ran: a frame that moved on between two samples is running Python.
        had_previous = bool(previous_positions)
        if had_previous:
            stall.intervals += 1
        for ident, frame in frames.items():
            if ident in _watchdog_idents:
                continue
            if ident == self._loop_thread_id:
                before = previous_positions.get(ident)
                position = (id(frame), frame.f_lasti)
                stall.loop_moved += had_previous and before is not None and before[:2] != position
                previous_positions[ident] = (*position, key)
                continue
            before = previous_positions.get(ident)
            if before is not None and before[:2] == (id(frame), frame.f_lasti):
                where = before[2]  # not moved: the cheap path for dozens of idle workers
            else:
                where = ("", 0, IDLE) if _is_waiting(frame) else _key(frame)
            previous_positions[ident] = (id(frame), frame.f_lasti, where)
            if where[2] != IDLE:
                stall.others.setdefault(ident, Counter())[where] += 1
            if before is None or before[:2] == (id(frame), frame.f_lasti) or before[2][2] == IDLE:
                continue
            if where[2] == IDLE:
                continue  # it finished and parked: it ran only the last few lines of its job
            # It moved on since the last sample, so it ran Python in between, starting from
            # where it was then (a worker that just finished a long loop is charged for the
            # loop, not for the return statement it was caught at).
            stall.moved[ident] += 1
            stall.running_at.setdefault(ident, Counter())[before[2]] += 1
            self._last_running[ident] = (now, before[2])
            job = self._job_of_thread(ident) if self._job_of_thread else None
            if job is not None:
                self._job_lines[job] = before[2]
        del frames, loop_frame

    def _current_request(self) -> str:
        if self._request_for_task is None or self._loop is None:
            return ""
        try:
            task = asyncio.current_task(self._loop)
        except RuntimeError:
            return ""
        if task is None:
            return ""
        scope = self._request_for_task(task)
        return describe_request(scope) if scope is not None else ""

    # -- from any thread ---------------------------------------------------------------
    def held_at(self, silent_s: float = 1.0) -> str:
        """Where the loop is held right now (``cell In[4], line 2 `time.sleep(5)```), if its
        heartbeat has been silent for ``silent_s``; empty when the loop is running freely.
        Callable from any thread: a check uses it to say where a hung server is stuck."""
        place = self.held_place(silent_s)
        if place is None:
            return ""
        filename, lineno, code = place
        return f"{_where(filename, lineno)} `{code}`"

    def held_place(self, silent_s: float = 1.0) -> tuple[str, int, str] | None:
        """``(filename, line, source)`` of what holds the loop right now, as :meth:`held_at`
        finds it; ``None`` when the loop is running freely."""
        thread_id = self._loop_thread_id
        if thread_id is None or time.perf_counter() - self._last_beat < silent_s:
            return None
        frame = sys._current_frames().get(thread_id)
        if frame is None:
            return None
        filename, lineno, _ = _key(frame)
        return filename, lineno, linecache.getline(filename, lineno).strip()

    def settle(self, until_s: float, timeout_s: float = 1.0) -> None:
        """Wait until the loop has beaten after ``until_s``: by then the heartbeat has filed
        every block that began before it."""
        deadline = time.perf_counter() + timeout_s
        while self._last_beat <= until_s and time.perf_counter() < deadline:
            if self._stop.is_set():
                return
            time.sleep(HEARTBEAT_S)

    def blocks_between(self, start_s: float, end_s: float) -> list[LoopBlock]:
        """Blocks that overlap the ``perf_counter`` window ``[start_s, end_s]``."""
        with self._lock:
            return [b for b in self.blocks if b.end_s >= start_s and b.start_s <= end_s]
