"""Serve an ASGI app from a notebook: a real uvicorn server on 127.0.0.1, in a background thread.

The kernel's main thread already runs an event loop, so ``uvicorn.run()`` cannot start there,
and serving on the kernel's own loop would let a blocking endpoint freeze the kernel. Each
:class:`Server` therefore gets its own thread and its own event loop, binds an ephemeral port
on loopback only, and watches its loop for blocks (:mod:`helpers.loopwatch`).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import html
import inspect
import itertools
import linecache
import logging
import os
import re
import sys
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import anyio.to_thread
import uvicorn
from uvicorn.importer import ImportFromStringError, import_from_string
from uvicorn.lifespan.on import LifespanOn

from . import _thread_cpu
from ._instrument import Instrumented, ThreadLabels, install_thread_noting, job_of_thread
from ._proxy import behind_hub, browser_url
from .loopwatch import LoopBlock, LoopWatch, is_library_file

__all__ = ["Server", "ServerStartupError", "serve", "running_servers", "stop_all"]

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0
GRACEFUL_SHUTDOWN_S = 1  # an int: uvicorn's Config types it so
# below STOP_TIMEOUT_S minus the grace above, so stop() ends before it would give up
LIFESPAN_SHUTDOWN_TIMEOUT_S = 1.5

T = TypeVar("T")
log = logging.getLogger(__name__)


class ServerStartupError(RuntimeError):
    """The app could not start: bad app object, import error, or a failing lifespan."""


# Where uvicorn's log meets the learner. uvicorn reports through the "uvicorn.error" logger;
# with no handler configured, Python's last-resort handler writes those records to stderr,
# which in a notebook is the red text under the cell. Three kinds of record repeat or invent
# an error, and the filter below keeps them off stderr:
#   - anything logged before the server has started: a failing or hung lifespan startup is
#     raised to the learner as ServerStartupError with the app's own traceback, so uvicorn's
#     copy would print it twice (the records are kept; the error uses them if it has nothing
#     better);
#   - the CancelledError of a request or lifespan task that stop() itself cancelled: the
#     server was asked to stop, nothing went wrong.
# Everything else passes untouched. In particular an exception raised by an endpoint while
# the server runs normally is the learner's bug: the client only sees a bare 500, so uvicorn's
# "Exception in ASGI application" traceback is the one place it shows, and it stays.
_CANCELLED_LAST_LINE = re.compile(r"CancelledError\b[^\n]*\s*$")


def _is_cancellation(record: logging.LogRecord) -> bool:
    """The record reports a CancelledError (as an exception, or as a traceback in the text)."""
    if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
        return True
    return bool(_CANCELLED_LAST_LINE.search(record.getMessage()))


class _QuietServerNoise(logging.Filter):
    """A filter on uvicorn's logger: each server thread's records go past its ``_Uvicorn``."""

    def __init__(self) -> None:
        super().__init__()
        self._servers: weakref.WeakKeyDictionary[threading.Thread, _Uvicorn] = (
            weakref.WeakKeyDictionary()
        )

    def watch(self, thread: threading.Thread, server: _Uvicorn) -> None:
        self._servers[thread] = server
        # idempotent; repeated in case a cell reconfigured logging since the last serve()
        logging.getLogger(UVICORN_LOGGER).addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs from the server's own thread, so the current thread names the server
        server = self._servers.get(threading.current_thread())
        return server is None or server.keeps(record)


UVICORN_LOGGER = "uvicorn.error"
_noise_filter = _QuietServerNoise()


def _where_it_waited(error: BaseException | None) -> str:
    """`` at file.py:12 `line```: the innermost app frame a cancelled task was waiting in."""
    where = ""
    tb = error.__traceback__ if error is not None else None
    while tb is not None:
        filename, lineno = tb.tb_frame.f_code.co_filename, tb.tb_lineno
        if not is_library_file(filename):
            code = linecache.getline(filename, lineno).strip()
            where = f" at {os.path.basename(filename)}:{lineno} `{code}`"
        tb = tb.tb_next
    return where


class _Uvicorn(uvicorn.Server):
    """uvicorn's server with a prompt stop: it wakes on request instead of ticking every 100 ms."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._wake: asyncio.Event | None = None
        self.startup_log: list[logging.LogRecord] = []
        self._cancelled_by_stop: set[asyncio.Task[Any]] = set()
        self.cancelled_at = ""  # where the app's lifespan waited when it was cancelled

    async def serve(self, sockets: Any = None) -> None:
        _noise_filter.watch(threading.current_thread(), self)
        await super().serve(sockets=sockets)

    def keeps(self, record: logging.LogRecord) -> bool:
        """Should this uvicorn record reach the log's handlers (stderr)? See the note above."""
        if _is_cancellation(record):
            # Starlette logs a cancelled lifespan from inside its except block, so the
            # exception being handled is the CancelledError: it knows where the app waited.
            error = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
            self.cancelled_at = _where_it_waited(error) or self.cancelled_at
        if not self.started:
            self.startup_log.append(record)
            return False
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no loop running in this thread (logged outside the loop)
            task = None
        return not (task in self._cancelled_by_stop and _is_cancellation(record))

    def startup_log_text(self) -> str:
        formatter = logging.Formatter()
        return "\n".join(formatter.format(record) for record in self.startup_log)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        logger = logging.getLogger(UVICORN_LOGGER)
        for record in self.startup_log:  # started after all: nothing was repeated, show them
            logger.handle(record)
        self.startup_log.clear()
        self.ready.set()

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), 0.1)
            except TimeoutError:
                pass

    def request_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        self.should_exit = True
        if self._wake is not None:
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # loop already closed
                pass

    async def shutdown(self, sockets: Any = None) -> None:
        # uvicorn's own shutdown sleeps a fixed 100 ms and polls every 100 ms; a notebook
        # restarts servers often, so poll in 5 ms steps and give up after a short grace.
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = time.perf_counter() + GRACEFUL_SHUTDOWN_S
        while (self.server_state.connections or self.server_state.tasks) and (
            time.perf_counter() < deadline
        ):
            await asyncio.sleep(0.005)
        for task in list(self.server_state.tasks):
            self._cancelled_by_stop.add(task)
            task.cancel(msg="server stopped")
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self._shutdown_lifespan()

    async def _shutdown_lifespan(self) -> None:
        """Run the app's lifespan shutdown, but do not let one that never finishes hang stop()."""
        try:
            await asyncio.wait_for(self.lifespan.shutdown(), LIFESPAN_SHUTDOWN_TIMEOUT_S)
            return
        except TimeoutError:
            pass
        lifespan_tasks = [
            task for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "cr_code", None) is LifespanOn.main.__code__
        ]
        for task in lifespan_tasks:
            self._cancelled_by_stop.add(task)
            task.cancel(msg="server stopped")
        if lifespan_tasks:
            await asyncio.wait(lifespan_tasks, timeout=0.5)
        name = threading.current_thread().name.removeprefix("server:")
        # A warning, not a traceback: the learner's shutdown code hangs, and this is the only
        # place that says so; a print, like Server._abandon, for the reasons given there.
        print(
            f"warning: server {name!r}: the app's lifespan shutdown did not finish within "
            f"{LIFESPAN_SHUTDOWN_TIMEOUT_S:g} s (it was waiting{self.cancelled_at}); it was "
            "cancelled so the server could stop.",
            file=sys.stderr,
        )


_registry: dict[str, Server] = {}
_registry_lock = threading.Lock()
_anonymous = itertools.count(1)


class Server:
    """A running app: ``url``, ``port``, ``loop_blocks``, ``stop()``; also a context manager."""

    def __init__(self, app: Any, *, name: str, threshold_ms: float = 50.0) -> None:
        self.name = name
        self.app = app
        self.labels = ThreadLabels()
        self._instrumented = Instrumented(app, self.labels)
        self.watch = LoopWatch(
            name,
            threshold_ms=threshold_ms,
            name_thread=self._name_thread,
            request_for_task=self._instrumented.scope_of,
            response_sent_between=self._instrumented.response_sent_between,
            job_of_thread=job_of_thread,
        )
        config = uvicorn.Config(
            self._instrumented,
            host=HOST,
            port=0,
            loop="asyncio",
            lifespan="auto",
            log_config=None,  # leave the kernel's logging configuration alone
            log_level="warning",
            access_log=False,
            backlog=4096,  # a burst of 1,000 connections must not overflow the accept queue
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self._uvicorn = _Uvicorn(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._thread_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"server:{name}", daemon=True)
        self.port: int = 0
        self.stopped = False

    # -- lifecycle -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except SystemExit:
            pass  # uvicorn exits this way when lifespan startup fails; the error is kept
        except asyncio.CancelledError:
            pass  # serve() gave up waiting for a slow startup and cancelled it
        except BaseException as exc:  # noqa: BLE001 - reported to the thread that called serve()
            self._thread_error = exc
        finally:
            self._uvicorn.ready.set()  # never leave serve() waiting for a dead thread

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        self.labels.loop_thread = threading.current_thread()
        # Import anyio's asyncio backend now, not inside the first `def` request, where the
        # import (about 65 ms) would be reported as a loop block.
        anyio.to_thread.current_default_thread_limiter()
        self.watch.start()
        try:
            await self._uvicorn.serve()
        finally:
            await self.watch.aclose()

    def _start(self, timeout_s: float) -> None:
        self._thread.start()
        if not self._uvicorn.ready.wait(timeout_s):
            self._cancel_main_task()
            self._thread.join(1.0)
            if self._thread.is_alive():
                self._abandon(timeout_s + 1.0)
            self.stopped = True
            raise ServerStartupError(
                f"server {self.name!r} did not finish starting within {timeout_s:g} s: its "
                f"lifespan startup was still waiting{self._uvicorn.cancelled_at}, and was "
                "cancelled. Is it waiting on something that never comes?"
            )
        if not self._uvicorn.started:
            self._thread.join(STOP_TIMEOUT_S)
            self.stopped = True
            raise ServerStartupError(self._startup_failure_message())
        sockets = self._uvicorn.servers[0].sockets
        self.port = sockets[0].getsockname()[1]

    def _cancel_main_task(self) -> None:
        if self._loop is not None and self._main_task is not None:
            try:
                self._loop.call_soon_threadsafe(self._main_task.cancel)
            except RuntimeError:  # the loop has already closed
                pass

    def _startup_failure_message(self) -> str:
        detail = self._instrumented.lifespan_error
        if detail is None and self._thread_error is not None:
            detail = "".join(traceback.format_exception(self._thread_error))
        if detail is None and self._uvicorn.startup_log:
            detail = self._uvicorn.startup_log_text()  # e.g. a bind error uvicorn only logged
        headline = f"server {self.name!r} failed to start"
        if self._instrumented.lifespan_error is not None:
            headline += ": the app's lifespan startup raised an exception"
        return f"{headline}.\n{detail or 'no traceback was captured'}"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop serving and wait up to ``timeout`` s for the thread to end (idempotent)."""
        with _registry_lock:
            if _registry.get(self.name) is self:
                del _registry[self.name]
        if self.stopped:
            return
        self.stopped = True
        if self._loop is not None:
            self._uvicorn.request_exit(self._loop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon(timeout)

    def _abandon(self, waited_s: float) -> None:
        """The loop is stuck (a blocking call that never returns): say where, and move on."""
        self.stopped = True
        self._uvicorn.force_exit = True
        self.watch.stop_watchdog()
        where = ""
        frame = sys._current_frames().get(self._thread.ident or 0)
        if frame is not None:
            where = f" (it is stuck at {frame.f_code.co_filename}:{frame.f_lineno})"
        # A print, not warnings.warn: the default warning filter shows a message once per
        # code location, so a second stuck server would go unmentioned, and the warning's
        # "server.py:NN: UserWarning" prefix would point at helpers, not at the learner's code.
        print(
            f"warning: server {self.name!r} did not stop within {waited_s:g} s because "
            f"its event loop is blocked{where}; its daemon thread is left behind and ends "
            "with the kernel. Restart the kernel to free it.",
            file=sys.stderr,
        )

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _is_own_worker(self, thread: threading.Thread) -> bool:
        """True for a threadpool worker of this server (anyio's workers remember their loop)."""
        return self._loop is not None and getattr(thread, "loop", None) is self._loop

    def _name_thread(self, thread: threading.Thread) -> str | None:
        """``worker 3`` for this server's own threadpool workers (as ``x-served-by`` says)."""
        return self.labels.label(thread) if self._is_own_worker(thread) else None

    # -- facts ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def docs_url(self) -> str | None:
        """A link to the app's Swagger UI that the learner's browser can open: the plain URL
        locally, through jupyter-server-proxy on JupyterHub and Binder; None without docs."""
        docs = getattr(self.app, "docs_url", None)  # FastAPI's; None when the app turned it off
        return browser_url(HOST, self.port, docs) if isinstance(docs, str) and docs else None

    @property
    def running(self) -> bool:
        return not self.stopped and self._thread.is_alive()

    @property
    def loop_thread(self) -> threading.Thread:
        """The thread that runs this server's event loop (alive after ``stop()`` only when the
        loop is stuck in a call that never returns)."""
        return self._thread

    @property
    def loop_blocks(self) -> list[LoopBlock]:
        """Every block of this server's event loop seen so far, oldest first.

        Waits (up to a second) for the loop's next heartbeat, which files a block that has just
        ended: an answer can reach a client before the heartbeat runs."""
        if self.running and threading.get_ident() != self._thread.ident:
            self.watch.settle(time.perf_counter())
        return list(self.watch.blocks)

    def clear_loop_blocks(self) -> None:
        self.watch.blocks.clear()

    def run_in_loop(
        self, work: Callable[[], T] | Coroutine[Any, Any, T], timeout: float = 5.0
    ) -> T:
        """Run a function or coroutine on this server's event loop and return its result.

        Some state lives per event loop (anyio's threadpool limiter is one): read or change it
        here, not from a cell, which runs on the kernel's loop.
        """
        if not self.running or self._loop is None:
            raise RuntimeError(f"server {self.name!r} is not running")

        async def call() -> T:
            result: Any
            if inspect.iscoroutine(work):
                result = await work
            else:
                result = work()  # type: ignore[operator]
                if inspect.isawaitable(result):
                    result = await result
            return cast(T, result)

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(
                f"server {self.name!r} did not run the call within {timeout} s "
                "(is its event loop blocked?)"
            ) from None

    def cpu_seconds(self) -> float:
        """CPU seconds this server's own threads have used so far: its event loop's thread and
        its threadpool workers' (a worker that has ended takes its share with it).

        Read from Linux's per-thread CPU clocks; elsewhere this falls back to the whole
        process's CPU time (``time.process_time()``), which also counts the notebook's threads.
        """
        if not _thread_cpu.supported():
            return time.process_time()
        loop_thread = self.labels.loop_thread
        threads = [loop_thread] if loop_thread is not None else []
        threads += [t for t in threading.enumerate() if self._is_own_worker(t)]
        total_ns = 0
        for thread in threads:
            if thread.native_id is not None:
                total_ns += _thread_cpu.cpu_ns(thread.native_id) or 0
        return total_ns / 1e9

    @property
    def requests_in_flight(self) -> int:
        """Requests this server is still working on, background tasks included: Starlette runs
        those in the request's own task, after the response went out."""
        return len(self._uvicorn.server_state.tasks)

    @property
    def threadpool_tokens(self) -> int:
        """Size of the threadpool that runs this server's ``def`` endpoints (anyio's, per loop)."""
        return int(
            self.run_in_loop(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
        )

    @threadpool_tokens.setter
    def threadpool_tokens(self, tokens: int) -> None:
        def set_tokens() -> None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = tokens

        self.run_in_loop(set_tokens)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Server {self.name!r} {state} at {self.url}>"

    def _repr_html_(self) -> str:
        # What a notebook shows for a bare `server`: the same line, plus a link the learner
        # can click to try the endpoints in Swagger UI while the server runs.
        line = html.escape(repr(self))
        docs = self.docs_url if self.running else None
        if docs is None:
            return f"<code>{line}</code>"
        shown = html.escape(docs)
        link = f'<a href="{shown}" target="_blank" rel="noopener">{shown}</a>'
        if behind_hub() and not docs.startswith("/"):
            hint = (
                " (on JupyterHub or Binder your browser cannot reach 127.0.0.1 here: install "
                "<code>jupyter-server-proxy</code> and restart the server to get a link that works)"
            )
        else:
            hint = ""
        return f"<code>{line}</code><br>Try its endpoints in your browser: {link}{hint}"


def _resolve_app(app: Any) -> Any:
    """Turn what the learner passed into an ASGI app, or explain what is wrong with it."""
    if isinstance(app, str):
        try:
            return import_from_string(app)
        except ImportFromStringError as exc:
            raise ServerStartupError(f"could not import the app {app!r}: {exc}") from exc
        except Exception as exc:
            raise ServerStartupError(
                f"importing {app!r} raised an exception:\n{traceback.format_exc()}"
            ) from exc
    if isinstance(app, types.ModuleType):
        raise TypeError(
            f"serve() got the module {app.__name__!r}, not an app: pass the app object inside "
            f"it, for example serve({app.__name__}.app)"
        )
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if not callable(app) or not inspect.iscoroutinefunction(call):
        raise TypeError(
            f"serve() needs an ASGI app such as FastAPI(); got {type(app).__name__} {app!r:.60}"
        )
    return app


def serve(
    app: Any,
    *,
    name: str | None = None,
    threshold_ms: float = 50.0,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
) -> Server:
    """Start ``app`` on 127.0.0.1 at a free port in a background thread; return once it accepts.

    ``app`` is an ASGI app (a ``FastAPI()``) or an import string like ``"module:app"``.
    Serving again under the same ``name`` stops the old server first, so re-running a cell is
    safe. Loop blocks longer than ``threshold_ms`` are recorded on ``Server.loop_blocks``.
    A startup that fails or takes longer than ``startup_timeout_s`` raises
    :class:`ServerStartupError` with the app's own traceback.
    """
    install_thread_noting()
    resolved = _resolve_app(app)
    _freeze_the_heap()
    if name is not None:
        with _registry_lock:
            previous = _registry.get(name)
        if previous is not None:
            previous.stop()
    else:
        name = f"server-{next(_anonymous)}"
    server = Server(resolved, name=name, threshold_ms=threshold_ms)
    server._start(startup_timeout_s)
    with _registry_lock:
        _registry[name] = server
    return server


def _freeze_the_heap() -> None:
    """Collect garbage, then move every object alive now to the collector's permanent generation.

    A kernel's heap (IPython, the libraries, the cells so far) is large: a full collection scans
    it for 0.1 s, 0.2 s on a busy machine, and lands in whichever request is in flight (lesson
    05's twenty requests came out 0.26-0.31 s late with two kernels running it at once). Frozen,
    it is left out: later collections scan only what was made since, as the server runs.
    """
    gc.collect()
    gc.freeze()


def running_servers() -> list[Server]:
    """Every server started by :func:`serve` in this process that is still registered."""
    with _registry_lock:
        return list(_registry.values())


_stop_all_hooks: list[Callable[[], None]] = []


def also_on_stop_all(hook: Callable[[], None]) -> None:
    """Have :func:`stop_all` call ``hook`` too: a module that starts other things a lesson must
    tidy up (uvicorn worker processes) registers its own stopper here, so one call stops all."""
    if hook not in _stop_all_hooks:
        _stop_all_hooks.append(hook)


def stop_all() -> None:
    """Stop every server this process started, and whatever registered with
    :func:`also_on_stop_all` (also runs at interpreter exit)."""
    for server in running_servers():
        server.stop()
    for hook in list(_stop_all_hooks):
        hook()


atexit.register(stop_all)
