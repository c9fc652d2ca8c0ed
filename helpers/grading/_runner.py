"""Run jobs in child processes, a few at a time, each under a wall-clock bound: a job that
overruns is killed with everything it started (its notebook's kernel included).

nbgrader has no parallel autograde, and its gradebook (sqlite) dislikes concurrent writers: each
of the ``workers`` slots has its own course folder, and a slot runs one job at a time. Children
are forked where the platform allows it, so each one starts with nbgrader already imported
(importing it costs 3-5 s here); elsewhere they are spawned.

The runner itself starts no threads (forking a process with threads is unsafe): it waits on
the children's sentinels.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["Finished", "run_in_child", "run_jobs"]

T = TypeVar("T")
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Finished(Generic[T]):
    """A job's end: its slot, its exit code (None when killed), whether it overran, its time."""

    job: T
    slot: int
    exitcode: int | None
    timed_out: bool
    seconds: float


def _context() -> multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext:
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (children first found, then theirs)."""
    parents: dict[int, list[int]] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # the command name (2nd field) may hold spaces and parentheses: split after it
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    else:  # macOS and other Unixes
        import subprocess

        listing = subprocess.run(
            ["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False
        ).stdout
        for line in listing.splitlines():
            child, parent = (int(field) for field in line.split())
            parents.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything below it (kernels start in their own session, so a
    process-group kill would miss them)."""
    for victim in [pid, *_descendants(pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)


def _child(log: Path, target: Callable[..., None], args: tuple[object, ...]) -> None:
    """The child's body: output to ``log``, orphans adopted and ended before it exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent ends everything
    if sys.platform == "linux":
        # processes the notebook leaves behind become this process's children, not init's
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
    try:
        target(*args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for leftover in _descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(leftover, signal.SIGKILL)


def run_in_child(
    target: Callable[..., None], args: tuple[object, ...], log: Path
) -> BaseProcess:
    """Start ``target(*args)`` in a child process whose stdout and stderr go to ``log``."""
    process = _context().Process(target=_child, args=(log, target, args), daemon=False)
    process.start()
    return process


def run_jobs(
    jobs: Sequence[T],
    workers: int,
    timeout_s: float,
    launch: Callable[[T, int], BaseProcess],
) -> Iterator[Finished[T]]:
    """Run each job (``launch(job, slot)`` starts its process) on one of ``workers`` slots,
    yielding each one as it ends; a job still running after ``timeout_s`` is killed. The slot
    is reused only once the caller has handled the job it yielded."""
    waiting = deque(jobs)
    free = deque(range(workers))
    running: dict[int, tuple[T, int, BaseProcess, float]] = {}
    try:
        while waiting or running:
            while waiting and free:
                job, slot = waiting.popleft(), free.popleft()
                process = launch(job, slot)
                running[process.sentinel] = (job, slot, process, time.monotonic())
            now = time.monotonic()
            next_deadline = min(start + timeout_s for _, _, _, start in running.values())
            ready = wait(list(running), timeout=max(0.0, next_deadline - now))
            now = time.monotonic()
            for sentinel, (job, slot, process, start) in list(running.items()):
                overran = now - start >= timeout_s
                if sentinel not in ready and not overran:
                    continue
                timed_out = sentinel not in ready
                if timed_out and process.pid is not None:
                    kill_tree(process.pid)
                process.join()
                del running[sentinel]
                yield Finished(
                    job, slot, None if timed_out else process.exitcode, timed_out, now - start
                )
                free.append(slot)
    finally:  # an interrupted batch leaves nothing running
        for _, _, process, _ in running.values():
            if process.pid is not None:
                kill_tree(process.pid)
            process.join()
