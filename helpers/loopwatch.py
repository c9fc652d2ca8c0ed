"""Loop watch: notice when something holds a server's event loop, and name the line that did.

A heartbeat task on the watched loop stamps the time every few milliseconds. A watchdog
thread checks the stamp; when it goes stale, the loop is blocked, so the watchdog samples
the loop thread's current stack (``sys._current_frames``) until the heartbeat returns. A
stall longer than the threshold becomes a :class:`LoopBlock` naming the source line that
was running most of the time.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import linecache
import os
import sys
import sysconfig
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType

HEARTBEAT_S = 0.005
"""How often the heartbeat task stamps the time on the watched loop."""

WATCHDOG_POLL_S = 0.005
"""How often the watchdog thread looks at the heartbeat."""

_MIN_SAMPLES = 3
"""A block of 50 ms or more with fewer stack samples than this held the GIL throughout."""


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
    """The source line that held the loop (the most often sampled one)."""
    function: str = ""
    stack: tuple[str, ...] = field(default=(), repr=False)
    """The sampled stack at that moment, outermost first, as ``file:line in function``."""

    @property
    def is_garbage_collection(self) -> bool:
        """True when Python's garbage collector, not the app's code, held the loop."""
        return self.function == GC_FUNCTION

    @property
    def duration_ms(self) -> float:
        return (self.end_s - self.start_s) * 1000.0

    @property
    def where(self) -> str:
        """``app.py:12``, or ``cell In[3], line 7`` for code typed into a notebook cell."""
        cell = notebook_cell_number(self.filename)
        if cell is not None:
            return f"cell In[{cell}], line {self.lineno}"
        return f"{os.path.basename(self.filename)}:{self.lineno}"

    def __str__(self) -> str:
        if self.function in (GC_FUNCTION, UNSAMPLED):
            return f"loop blocked {self.duration_ms:.0f} ms by {self.code}"
        return f"loop blocked {self.duration_ms:.0f} ms at {self.where} `{self.code}`"


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


IDLE = "<idle: waiting in select()>"
GC_FUNCTION = "<garbage collection>"
UNSAMPLED = "<unsampled>"

# Python's garbage collector stops whichever thread triggered it, the loop's included: a full
# collection in a kernel full of objects can take tens of milliseconds. Record the long ones so
# a block they explain is reported as what it is.
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


def _sample(frame: FrameType) -> tuple[tuple[str, int, str], tuple[str, ...]]:
    """What the loop thread is doing: the line to blame, or IDLE when it waits for I/O."""
    if frame.f_code.co_name == "select" and frame.f_code.co_filename.endswith("selectors.py"):
        return ("", 0, IDLE), ()
    blamed = _blame_frame(frame)
    # f_lineno can be None for a frame caught mid-instruction; fall back to the def line
    lineno = blamed.f_lineno or blamed.f_code.co_firstlineno
    key = (blamed.f_code.co_filename, lineno, blamed.f_code.co_name)
    return key, _describe_stack(frame)


def _describe_stack(frame: FrameType, limit: int = 12) -> tuple[str, ...]:
    lines = []
    walker: FrameType | None = frame
    while walker is not None and len(lines) < limit:
        lines.append(f"{walker.f_code.co_filename}:{walker.f_lineno} in {walker.f_code.co_name}")
        walker = walker.f_back
    return tuple(reversed(lines))


class LoopWatch:
    """Watches one event loop; records :class:`LoopBlock` entries.

    Two parts cooperate. The heartbeat task, on the watched loop, knows exactly how long the
    loop was held (the gap between two beats) and files each block. The watchdog thread
    notices a stale heartbeat while the block is still going on and samples the loop thread's
    stack, so the block can name its line. Code that never lets go of the GIL (a garbage
    collection, a long C call) cannot be sampled, but the heartbeat still files it.
    """

    def __init__(self, name: str, threshold_ms: float = 50.0) -> None:
        if threshold_ms <= 0:
            raise ValueError(f"threshold_ms must be positive, got {threshold_ms!r}")
        self.name = name
        self.threshold_ms = threshold_ms
        self.blocks: list[LoopBlock] = []
        self._last_beat = time.perf_counter()
        self._loop_thread_id: int | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # stack samples taken during the stall that began at a given beat, keyed by that beat
        self._samples: dict[float, Counter[tuple[str, int, str]]] = {}
        self._stacks: dict[float, dict[tuple[str, int, str], tuple[str, ...]]] = {}

    # -- on the watched loop ------------------------------------------------------------
    def start(self) -> None:
        """Start watching the running loop; call from a coroutine on that loop."""
        self._loop_thread_id = threading.get_ident()
        self._last_beat = time.perf_counter()
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())
        self._thread = threading.Thread(
            target=self._watchdog, name=f"loopwatch:{self.name}", daemon=True
        )
        self._thread.start()

    async def _heartbeat(self) -> None:
        previous = self._last_beat = time.perf_counter()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            now = time.perf_counter()
            # the sleep itself accounts for one interval; anything beyond it, the loop was held
            held_s = now - previous - HEARTBEAT_S
            if held_s * 1000.0 >= self.threshold_ms:
                self._file(previous, previous + held_s)
            elif previous in self._samples:
                with self._lock:
                    self._samples.pop(previous, None)
                    self._stacks.pop(previous, None)
            previous = self._last_beat = now

    def _file(self, start_s: float, end_s: float) -> None:
        with self._lock:
            samples = self._samples.pop(start_s, Counter())
            stacks = self._stacks.pop(start_s, {})
            for stale in [beat for beat in self._samples if beat < start_s]:
                del self._samples[stale], self._stacks[stale]
        duration_s = end_s - start_s
        # A block long enough for many samples that got almost none held the GIL throughout
        # (one long C call): its few samples were taken after it, wherever the loop went next.
        held_gil = sum(samples.values()) < _MIN_SAMPLES and duration_s >= 10 * WATCHDOG_POLL_S
        gc_s, generation = _gc_share(start_s, end_s)
        if gc_s >= duration_s / 2:
            filename, lineno, function = "<gc>", 0, GC_FUNCTION
            code = f"garbage collection (generation {generation}), {gc_s * 1000:.0f} ms of it"
            stack: tuple[str, ...] = ()
        elif samples and not held_gil:
            (filename, lineno, function), _ = samples.most_common(1)[0]
            if function == IDLE:
                # The loop sat in select() with nothing to do: the OS did not schedule its
                # thread (a starved machine), which is not code holding the loop.
                return
            code = linecache.getline(filename, lineno).strip()
            stack = stacks.get((filename, lineno, function), ())
        elif samples:
            (after_file, after_line, _), _ = samples.most_common(1)[0]
            after = f"{os.path.basename(after_file)}:{after_line}"
            filename, lineno, function = "<unsampled>", 0, UNSAMPLED
            code = (
                "C code that never released the GIL (no Python line could be sampled; "
                f"right after it, the loop was at {after})"
            )
            stack = stacks.get(samples.most_common(1)[0][0], ())
        else:
            filename, lineno, function = "<unsampled>", 0, UNSAMPLED
            code = "C code that never released the GIL (no Python line could be sampled)"
            stack = ()
        block = LoopBlock(start_s, end_s, filename, lineno, code, function, stack)
        with self._lock:
            self.blocks.append(block)

    async def aclose(self) -> None:
        """Stop the heartbeat (on the loop) and the watchdog thread."""
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

    # -- on the watchdog thread --------------------------------------------------------
    def _watchdog(self) -> None:
        # A stall is noticed after a few missed beats, which keeps ordinary loop jitter out.
        notice_after = max(HEARTBEAT_S * 3, min(self.threshold_ms / 1000.0 / 2, 0.02))
        while not self._stop.wait(WATCHDOG_POLL_S):
            beat = self._last_beat
            if time.perf_counter() - beat <= notice_after:
                continue
            frame = sys._current_frames().get(self._loop_thread_id or 0)
            if frame is None:
                continue
            key, stack = _sample(frame)
            del frame
            with self._lock:
                self._samples.setdefault(beat, Counter())[key] += 1
                self._stacks.setdefault(beat, {}).setdefault(key, stack)

    # -- from any thread ---------------------------------------------------------------
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
