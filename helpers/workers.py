"""Worker processes for lesson 06: uvicorn ``--workers`` started safely, and child stderr caught.

A notebook that starts processes must stop them, whatever happens to the cell or the kernel:

- :func:`start_workers` runs ``uvicorn module:app --workers N`` as a child process on a
  listening socket it binds itself on 127.0.0.1 (handed over with ``--fd``, so the port is
  known before uvicorn starts and nothing else can take it). The returned
  :class:`UvicornWorkers` is a context manager; every group is also registered, so
  :func:`stop_workers` and interpreter exit stop it. On Linux the uvicorn process and each of
  its workers ask the kernel for ``SIGTERM`` when their parent dies (``PR_SET_PDEATHSIG``), so
  not even a killed notebook kernel leaves them behind.
- :func:`worker_stderr` catches what worker processes write to stderr. A child inherits the
  kernel's file descriptor 2, and ipykernel shows what arrives there under the running cell as
  red text; a pool worker that dies of an error writes its traceback there, while the cell
  itself only gets ``BrokenProcessPool``.

Run as ``python -m helpers.workers PARENT_PID UVICORN_ARGS...``, this module is that launcher.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ._thread_cpu import process_cpu_s
from .server import also_on_stop_all

__all__ = [
    "ChildStderr",
    "ProcessMemory",
    "UvicornWorkers",
    "cpu_seconds",
    "process_memory",
    "start_workers",
    "stop_workers",
    "worker_stderr",
]

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
_READY_LINE = "Application startup complete."
# The uvicorn process tells its workers its pid this way, for their own parent-death check.
_MAIN_PID_VARIABLE = "COURSE_UVICORN_MAIN_PID"
_LOG_DIR_VARIABLE = "COURSE_UVICORN_LOG_DIR"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

_groups: list[UvicornWorkers] = []
_groups_lock = threading.Lock()


# --- what a child process writes to stderr ---------------------------------------------------


class ChildStderr:
    """What processes started inside :func:`worker_stderr` wrote to their stderr."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._text: str | None = None

    def text(self) -> str:
        """Everything written so far (all of it, once the ``with`` block has ended)."""
        if self._text is not None:
            return self._text
        try:
            return self._path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def last_line(self) -> str:
        """The last non-empty line: for a traceback, the exception and its message."""
        lines = [line for line in self.text().splitlines() if line.strip()]
        return lines[-1] if lines else "(nothing)"

    def _freeze(self) -> None:
        self._text = self.text()


@contextlib.contextmanager
def worker_stderr() -> Iterator[ChildStderr]:
    """Send file descriptor 2 to a scratch file while the block runs.

    Processes started inside the block inherit it as their stderr, so a worker's traceback
    lands in the returned :class:`ChildStderr` instead of under the cell. Python-level
    ``print(..., file=sys.stderr)`` in the kernel is not affected (ipykernel replaces
    ``sys.stderr``); C-level writes from the kernel itself during the block are caught too.
    """
    handle, name = tempfile.mkstemp(prefix="course-stderr-", suffix=".txt")
    path = Path(name)
    caught = ChildStderr(path)
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(handle, 2)
    os.close(handle)
    try:
        yield caught
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        caught._freeze()
        path.unlink(missing_ok=True)


# --- memory ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory, in MiB, from ``/proc/<pid>/smaps_rollup`` (Linux).

    ``rss_mb`` counts every page the process maps, shared ones too (so summing RSS over
    processes overcounts); ``pss_mb`` splits each shared page among the processes sharing it
    (sums add up); ``uss_mb`` is the process's private memory: what stopping it would free.
    """

    pid: int
    rss_mb: float
    pss_mb: float
    uss_mb: float


def process_memory(pid: int) -> ProcessMemory:
    """Read ``pid``'s memory figures; raises ``OSError`` where ``/proc`` does not have them."""
    fields: dict[str, float] = {}
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    for name, kib in re.findall(r"^(\w+):\s+(\d+) kB$", text, re.M):
        fields[name] = int(kib) / 1024
    private = fields.get("Private_Clean", 0.0) + fields.get("Private_Dirty", 0.0)
    return ProcessMemory(pid, fields.get("Rss", 0.0), fields.get("Pss", 0.0), private)


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds spent so far by process ``pid`` (default: this one) and by its live
    descendants, read from their Linux CPU clocks (descendants found through ``/proc``).

    The difference between two calls is the CPU a piece of work cost, measured while it ran:
    on a shared machine whose speed drifts, that is a fairer yardstick for "one job" than a
    calibration taken earlier, and divided by the wall time it says how many cores were busy.
    A process that exits between the two calls drops out of the second one, so measure around
    work done by processes that outlive it (a pool's workers, uvicorn's).
    """
    total, pending, seen = 0.0, [os.getpid() if pid is None else pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        spent = process_cpu_s(current)
        if spent is None:  # it exited meanwhile: nothing left to count
            continue
        total += spent
        pending += _children(current)
    return total


def _children(pid: int) -> list[int]:
    """``pid``'s direct children (Linux: the ``children`` files of its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- uvicorn with worker processes -----------------------------------------------------------


class WorkersStartupError(RuntimeError):
    """uvicorn exited or did not get its workers ready in time; the message holds its log."""


class UvicornWorkers:
    """A running ``uvicorn module:app --workers N`` child process; stop it with :meth:`stop`."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, workers: int, log_dir: Path
    ) -> None:
        self.process = process
        self.port = port
        self.workers = workers
        self.url = f"http://{HOST}:{port}"
        self._log_dir = log_dir
        self._log = log_dir / "uvicorn.log"

    @property
    def pid(self) -> int:
        """The uvicorn process: the supervisor with ``--workers`` above 1, else the server."""
        return self.process.pid

    def log(self) -> str:
        """uvicorn's own output (it goes to a file, not under the cell)."""
        try:
            return self._log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (the uvicorn process itself when ``workers`` is 1)."""
        if self.workers == 1:
            return [self.pid]
        return sorted(
            child for child in _children(self.pid) if "resource_tracker" not in _cmdline(child)
        )

    def memory(self) -> list[ProcessMemory]:
        """Memory of each worker process, as :func:`process_memory` reads it."""
        return [process_memory(pid) for pid in self.worker_pids()]

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.log().count(_READY_LINE) < self.workers:
            if self.process.poll() is not None:
                raise WorkersStartupError(f"uvicorn exited with {self.process.returncode}:\n"
                                          f"{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise WorkersStartupError(
                    f"uvicorn's {self.workers} workers were not ready after {timeout_s:g} s:\n"
                    f"{self.log()[-3000:]}"
                )
            time.sleep(0.05)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Ask uvicorn to shut down (SIGTERM); kill the whole process group if it dawdles."""
        with _groups_lock:
            if self in _groups:
                _groups.remove(self)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        # the uvicorn process leads a process group of its own: anything left in it goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def __enter__(self) -> UvicornWorkers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<uvicorn at {self.url}, {self.workers} worker(s), {state}>"


def start_workers(
    app: str,
    *,
    workers: int,
    app_dir: str | os.PathLike[str] = ".",
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
) -> UvicornWorkers:
    """Start ``uvicorn app --workers N`` on 127.0.0.1; return once every worker has started.

    ``app`` is an import string such as ``"cpu_app:app"``, found in ``app_dir``. The port is
    chosen by binding the socket here first. Use the result in a ``with`` block, or stop it
    with ``.stop()`` or :func:`stop_workers`.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((HOST, 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        log_dir = Path(tempfile.mkdtemp(prefix="course-uvicorn-"))
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env[_LOG_DIR_VARIABLE] = str(log_dir)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [package_root, str(app_dir), env.get("PYTHONPATH", "")])
        )
        command = [
            sys.executable, "-m", "helpers.workers", str(os.getpid()),
            app, "--fd", str(listener.fileno()), "--workers", str(workers),
            "--app-dir", str(app_dir), "--no-access-log",
        ]
        with open(log_dir / "uvicorn.log", "wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=[listener.fileno()], env=env, start_new_session=True,
            )
    finally:
        listener.close()  # uvicorn has its own copy now
    group = UvicornWorkers(process, port, workers, log_dir)
    with _groups_lock:
        _groups.append(group)
    try:
        group._wait_ready(startup_timeout_s)
    except BaseException:
        group.stop()
        raise
    return group


def running_workers() -> list[UvicornWorkers]:
    """Every group started by :func:`start_workers` that is not stopped yet."""
    with _groups_lock:
        return list(_groups)


def stop_workers() -> None:
    """Stop every uvicorn group this process started (runs at interpreter exit too)."""
    for group in running_workers():
        group.stop()


atexit.register(stop_workers)
also_on_stop_all(stop_workers)  # a lesson's stop_all() stops worker groups too


# --- the launcher: this module run as a program ----------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGTERM when the parent process dies; exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_started(*args: Any, **kwargs: Any) -> None:
    """uvicorn's worker entry point, with the parent-death signal set first."""
    from uvicorn import _subprocess

    _die_with_parent(int(os.environ.get(_MAIN_PID_VARIABLE, os.getppid())))
    # in a worker (a fresh interpreter) uvicorn is not patched; in the launcher it is
    original = getattr(_subprocess, "_course_original_started", _subprocess.subprocess_started)
    original(*args, **kwargs)


def _launch(argv: list[str]) -> None:
    """``PARENT_PID UVICORN_ARGS...``: die with the parent, then run uvicorn's command line."""
    parent_pid = int(argv[0])
    _die_with_parent(parent_pid)
    try:
        _run_uvicorn(argv)
    finally:
        if os.getppid() != parent_pid and _LOG_DIR_VARIABLE in os.environ:
            # the parent died (a killed kernel): nobody is left to read the log or remove it
            shutil.rmtree(os.environ[_LOG_DIR_VARIABLE], ignore_errors=True)


def _run_uvicorn(argv: list[str]) -> None:
    import uvicorn
    from uvicorn import _subprocess

    os.environ[_MAIN_PID_VARIABLE] = str(os.getpid())
    # uvicorn spawns each worker with _subprocess.subprocess_started as its target; the worker
    # unpickles the target by name, so pointing the name here makes each worker call
    # _die_with_parent first (spawned children do not inherit the parent-death signal).
    _subprocess._course_original_started = _subprocess.subprocess_started  # type: ignore[attr-defined]
    _subprocess.subprocess_started = _worker_started
    sys.argv = ["uvicorn", *argv[1:]]
    uvicorn.main()


if __name__ == "__main__":
    _launch(sys.argv[1:])
