"""Tag every response with the thread that ran the handler, so a load test can colour by it.

FastAPI runs ``async def`` handlers on the event loop thread and ``def`` handlers (and
``def`` dependencies) through ``anyio.to_thread.run_sync`` in anyio's worker threads. The
ASGI wrapper below opens a per-request record in a context variable; a thin wrapper around
``anyio.to_thread.run_sync`` notes the worker thread in that record (context variables are
copied into worker threads, so the record is the request's own). The response carries the
result in the ``x-served-by`` header: ``event loop`` or ``worker N``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread

from ._proxy import proxied_root_path

SERVED_BY_HEADER = "x-served-by"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _RequestRecord:
    """Which worker thread did the most work for one request.

    FastAPI may hop to the threadpool several times per request (a ``def`` dependency, the
    endpoint, validating its response); the longest hop is the one that served it.
    """

    __slots__ = ("thread", "busy_s", "scope")

    def __init__(self, scope: Scope) -> None:
        self.thread: threading.Thread | None = None
        self.busy_s = -1.0
        self.scope = scope

    def note(self, thread: threading.Thread, busy_s: float) -> None:
        if busy_s > self.busy_s:
            self.thread, self.busy_s = thread, busy_s


_current_request: contextvars.ContextVar[_RequestRecord | None] = contextvars.ContextVar(
    "helpers_current_request", default=None
)

_original_run_sync = anyio.to_thread.run_sync

_jobs: dict[int, Callable[..., Any]] = {}
"""The function each worker thread was last given to run for a served request, by thread ident."""


def job_of_thread(ident: int) -> Callable[..., Any] | None:
    """The endpoint (or dependency) a threadpool worker last ran, unwrapped from its partial."""
    job = _jobs.get(ident)
    while isinstance(job, functools.partial):
        job = job.func
    return job


@functools.wraps(_original_run_sync)
async def _run_sync_noting_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    record = _current_request.get()
    if record is None:  # not inside a served request: behave exactly like anyio
        return await _original_run_sync(func, *args, **kwargs)

    def note_thread_then_call(*inner_args: Any) -> Any:
        # the endpoint the router picked (FastAPI hands workers a wrapper around it)
        _jobs[threading.get_ident()] = record.scope.get("endpoint") or func
        began = time.perf_counter()
        try:
            return func(*inner_args)
        finally:
            record.note(threading.current_thread(), time.perf_counter() - began)

    return await _original_run_sync(note_thread_then_call, *args, **kwargs)


def install_thread_noting() -> None:
    """Wrap ``anyio.to_thread.run_sync`` once per process (idempotent)."""
    if anyio.to_thread.run_sync is not _run_sync_noting_thread:
        anyio.to_thread.run_sync = _run_sync_noting_thread  # type: ignore[assignment]


class ThreadLabels:
    """Short, stable names for a server's threads: ``event loop``, ``worker 1``, ``worker 2``…"""

    def __init__(self) -> None:
        self.loop_thread: threading.Thread | None = None
        # weak keys: a finished thread's id() can be reused, its Thread object cannot
        self._workers: weakref.WeakKeyDictionary[threading.Thread, int] = (
            weakref.WeakKeyDictionary()
        )
        self._count = 0
        self._lock = threading.Lock()

    def label(self, thread: threading.Thread | None) -> str:
        if thread is None or thread is self.loop_thread:
            return "event loop"
        with self._lock:
            if thread not in self._workers:
                self._count += 1
                self._workers[thread] = self._count
            return f"worker {self._workers[thread]}"


class Instrumented:
    """ASGI middleware: adds ``x-served-by`` to HTTP responses, remembers lifespan errors, and
    keeps the scope each task is serving (the loop watch names the request that held the loop)."""

    def __init__(self, app: ASGIApp, labels: ThreadLabels) -> None:
        self.app = app
        self.labels = labels
        self.lifespan_error: str | None = None
        self.scopes: dict[asyncio.Task[Any], Scope] = {}
        # when each recent response started to go out: a loop block that the watch could not
        # sample at all often ends exactly there (FastAPI encodes the body, then sends it)
        self.responses: collections.deque[tuple[float, Scope]] = collections.deque(maxlen=64)

    def response_sent_between(self, start_s: float, end_s: float) -> Scope | None:
        """The request whose response started going out in ``[start_s, end_s]`` (the first)."""
        for sent_s, scope in list(self.responses):
            if start_s <= sent_s <= end_s:
                return scope
        return None

    def scope_of(self, task: asyncio.Task[Any]) -> Scope | None:
        """The ASGI scope ``task`` is serving right now, if it is serving one."""
        return self.scopes.get(task)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        if task is None:
            await self._dispatch(scope, receive, send)
            return
        # uvicorn runs each request (and the lifespan) in a task of its own
        self.scopes[task] = scope
        try:
            await self._dispatch(scope, receive, send)
        finally:
            self.scopes.pop(task, None)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        root_path = proxied_root_path(scope.get("headers", ()))
        if root_path and not scope.get("root_path"):
            # Through jupyter-server-proxy: the app's links (Swagger UI's openapi.json) must
            # carry the proxy's prefix. Only root_path changes; routing ignores a root_path that
            # the path does not start with, and the course's reports keep showing "/docs".
            scope["root_path"] = root_path
        record = _RequestRecord(scope)
        token = _current_request.set(record)

        async def send_with_thread(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.responses.append((time.perf_counter(), scope))
                headers = list(message.get("headers", []))
                label = self.labels.label(record.thread)
                headers.append((SERVED_BY_HEADER.encode(), label.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_thread)
        finally:
            _current_request.reset(token)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_noting_failure(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                self.lifespan_error = message.get("message") or "lifespan startup failed"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_failure)
        except BaseException:
            import traceback

            self.lifespan_error = traceback.format_exc()
            raise
