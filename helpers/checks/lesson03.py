"""Checks for exercise 03 · def vs async def: four handlers with the keyword their bodies need,
and a threadpool raised the way that works.

Task 1 serves the learner's ``app`` and measures each handler under load: which thread served
it (``x-served-by``), whether its requests overlapped, and what the loop watch filed. Task 2
builds an app around the learner's lifespan and reads the limiter on the server's own loop,
then sends 100 blocking ``def`` requests at once and counts how many slept together.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI

from helpers import loadgen
from helpers import server as servers
from helpers.checks._core import (
    Check,
    ErrorNotes,
    blame,
    graded,
    own_code_blocks,
    stuck_line,
)

__all__ = [
    "check_forecast",
    "check_hash",
    "check_one_round",
    "check_order",
    "check_tokens",
    "check_version",
]

LATENCY_S = 0.3
"""What ``fetch_forecast`` and ``lookup_order`` take, as the exercise gives them."""
HASH_FLOOR_S = 0.1
"""A ``/hash`` request faster than this did not hash (the exercise sizes it to about 0.3 s)."""
HASH_BURST_TIMEOUT_S = 6.0
"""Longest any of four ``/hash`` requests sent at once may take."""
BLOCK_MS = 100.0
"""A loop block this long or longer counts against a handler (a thread start is a few ms)."""
REQUEST_TIMEOUT_S = 3.0
"""Longest any one request of Task 1 may take: ten times a handler's work."""
BURST = 6
"""Concurrent requests per handler: one after another they take 6 × 0.3 s = 1.8 s."""
TOKENS = 100
"""The threadpool size Task 2 asks for."""
SLOW_S = 0.5
"""How long each of Task 2's blocking ``def`` requests sleeps."""
DEFAULT_TOKENS = 40


# -- Task 1 · four handlers ---------------------------------------------------------------
def _errors_after(notes: ErrorNotes) -> str:
    """The last exception an endpoint raised, as uvicorn logged it (it logs just after the 500
    goes out, so wait a moment for it)."""
    deadline = time.perf_counter() + 0.5
    while not notes.errors and time.perf_counter() < deadline:
        time.sleep(0.01)
    return notes.errors[-1] if notes.errors else ""


def _request(check: Check, server: servers.Server, path: str) -> loadgen.RequestRecord:
    """One request alone; any failure (no route, an error, no answer) fails the check."""
    notes = ErrorNotes()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(notes)
    try:
        record = check.load(server, path, timeout_s=REQUEST_TIMEOUT_S).records[0]
        error = _errors_after(notes) if record.status not in (None, 200, 404) else ""
    finally:
        uvicorn_log.removeHandler(notes)
    if record.error is not None:
        _fail_unanswered(check, server, path, record.error)
    if record.status == 404:
        check.fail(
            measured=f"GET {path} answered 404 Not Found",
            expected="the route to answer with 200",
            cause="your app has no such route: the solution cell has not run, or the path "
            "differs",
            fix="keep the decorators as given, run the solution cell, then this one",
        )
    if record.status != 200:
        check.fail(
            measured=f"GET {path} answered HTTP {record.status}"
            + (f"; the server logged {error}" if error else ""),
            expected="HTTP 200 with the body the given code returns",
            cause="the handler raised an exception (or returned something FastAPI cannot send)",
            fix="keep each body as given and change only the keyword in front of `def`",
        )
    return record


def _fail_unanswered(
    check: Check, server: servers.Server, path: str, error: str,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> None:
    stuck = stuck_line(server)
    check.fail(
        measured=f"GET {path}: {error}"
        + (f"; the event loop is still held at {stuck}" if stuck else ""),
        expected=f"an answer within {timeout_s:g} s",
        cause="the handler never finished: an endless loop or a wait that never ends",
        fix="keep each body as given and change only the keyword in front of `def`",
    )


def _json(check: Check, path: str, record: loadgen.RequestRecord) -> Any:
    try:
        return json.loads(record.body)
    except ValueError:
        check.fail(
            measured=f"GET {path} answered {record.body[:80]!r}",
            expected="a JSON body",
            cause="the handler's body was changed",
            fix="keep each body as given",
        )


def _floor(check: Check, path: str, record: loadgen.RequestRecord, floor_s: float) -> None:
    if record.latency_s < floor_s:
        check.fail(
            measured=f"GET {path} took {record.latency_s * 1000:.0f} ms",
            expected=f"at least {floor_s * 1000:.0f} ms: the given body does that much work",
            cause="the work was taken out of the body (or a constant is returned instead)",
            fix="keep each body as given and change only the keyword in front of `def`",
        )


def _burst(
    check: Check, server: servers.Server, paths: Sequence[str],
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> loadgen.LoadResult:
    """All ``paths`` at once; every one must answer 200."""
    result = check.load(server, list(paths), timeout_s=timeout_s)
    for record in result.records:
        if record.error is not None:
            _fail_unanswered(check, server, record.path, record.error, timeout_s)
        if record.status != 200:
            check.fail(
                measured=f"GET {record.path} answered HTTP {record.status} under load",
                expected="HTTP 200 for every request",
                cause="the handler fails when several requests run at once",
                fix="keep each body as given and change only the keyword in front of `def`",
            )
    return result


def _served_by(result: loadgen.LoadResult) -> str:
    return ", ".join(f"{who} ×{count}" for who, count in result.served_by.most_common(4))


@graded
def check_forecast(app: Any) -> None:
    """Task 1a: the handler that awaits an async call runs on the loop, and six overlap."""
    with Check("Task 1a · /forecast awaits") as check, check.serve(app) as server:
        city = f"city-{secrets.token_hex(3)}"
        record = _request(check, server, f"/forecast/{city}")
        body = _json(check, "/forecast", record)
        if not isinstance(body, dict) or body.get("city") != city:
            check.fail(
                measured=f"GET /forecast/{city} answered {record.body[:80]}",
                expected=f'the forecast fetch_forecast("{city}") returns',
                cause="the handler's body was changed",
                fix="keep the body as given: `return await fetch_forecast(city)`",
            )
        _floor(check, "/forecast", record, 0.7 * LATENCY_S)
        result = _burst(check, server, [f"/forecast/{city}-{i}" for i in range(BURST)])
        workers = [who for who in result.served_by if who != "event loop"]
        if workers:
            check.fail(
                measured=f"{BURST} requests to /forecast served by {_served_by(result)}",
                expected="every one served by the event loop",
                cause="a plain `def` handler runs in a worker thread: a thread trip and a "
                "token for a body that only awaits",
                fix="make it `async def forecast(...)` and `await fetch_forecast(city)` directly",
            )
        blocks = own_code_blocks(result.loop_blocks, BLOCK_MS)
        if blocks:
            check.fail(
                measured=blame("/forecast", blocks[0]),
                expected=f"no loop block of {BLOCK_MS:.0f} ms or more",
                cause="something in the handler holds the loop instead of awaiting",
                fix="`await fetch_forecast(city)`, as given",
            )
        if result.wall_s > 2.5 * LATENCY_S:
            check.fail(
                measured=f"{BURST} requests at once took {result.wall_s:.2f} s",
                expected=f"about one call ({LATENCY_S:g} s): they wait together",
                cause="the requests did not overlap",
                fix="`async def`, and `await` the call",
            )
        check.passed(
            f"{BURST} requests at once in {result.wall_s:.2f} s (one call: {LATENCY_S:g} s), "
            "all on the event loop, no loop block"
        )


@graded
def check_order(app: Any) -> None:
    """Task 1b: the handler that makes a blocking call keeps it off the loop; six overlap."""
    with Check("Task 1b · /orders blocks") as check, check.serve(app) as server:
        order = secrets.randbelow(9000) + 1000
        record = _request(check, server, f"/orders/{order}")
        body = _json(check, "/orders", record)
        if not isinstance(body, dict) or body.get("order") != order:
            check.fail(
                measured=f"GET /orders/{order} answered {record.body[:80]}",
                expected=f"the order lookup_order({order}) returns",
                cause="the handler's body was changed",
                fix="keep the body as given: `return lookup_order(order_id)`",
            )
        _floor(check, "/orders", record, 0.7 * LATENCY_S)
        result = _burst(check, server, [f"/orders/{order + i}" for i in range(BURST)])
        blocks = own_code_blocks(result.loop_blocks, BLOCK_MS)
        if blocks:
            check.fail(
                measured=blame("/orders", blocks[0])
                + (f" (and {len(blocks) - 1} more blocks)" if len(blocks) > 1 else ""),
                expected=f"no loop block of {BLOCK_MS:.0f} ms or more",
                cause="`lookup_order` blocks its thread, and in `async def` that thread is the "
                "event loop's: every request waits in line",
                fix="make it a plain `def order(...)`: FastAPI runs it in a worker thread",
            )
        if result.wall_s > 3 * LATENCY_S:
            check.fail(
                measured=f"{BURST} requests at once took {result.wall_s:.2f} s",
                expected=f"about one call ({LATENCY_S:g} s), well under {3 * LATENCY_S:.1f} s",
                cause="the requests ran one after another",
                fix="make it a plain `def order(...)`",
            )
        check.passed(
            f"{BURST} requests at once in {result.wall_s:.2f} s (one call: {LATENCY_S:g} s), "
            f"served by {len(result.served_by)} worker threads, no loop block"
        )


@graded
def check_version(app: Any) -> None:
    """Task 1c: the trivial handler stays on the loop: no thread trip for a constant."""
    with Check("Task 1c · /version is trivial") as check, check.serve(app) as server:
        record = _request(check, server, "/version")
        body = _json(check, "/version", record)
        if not isinstance(body, dict) or "version" not in body:
            check.fail(
                measured=f"GET /version answered {record.body[:80]}",
                expected='{"version": VERSION}',
                cause="the handler's body was changed",
                fix='keep the body as given: `return {"version": VERSION}`',
            )
        result = _burst(check, server, ["/version"] * 20)
        workers = [who for who in result.served_by if who != "event loop"]
        if workers:
            check.fail(
                measured=f"20 requests to /version served by {_served_by(result)}",
                expected="every one served by the event loop",
                cause="a plain `def` sends even a constant to a worker thread: a token and a "
                "thread trip per request (lesson 03 measured 1.3-1.9× the server's CPU)",
                fix="make it `async def version()`: it never blocks, so it belongs on the loop",
            )
        check.passed("20 requests, all answered on the event loop: no thread trip")


@graded
def check_hash(app: Any) -> None:
    """Task 1d: the handler that hashes (C code, a busy core) keeps the hashing off the loop."""
    with Check("Task 1d · /hash computes") as check, check.serve(app) as server:
        digests = set()
        for _ in range(2):
            password = secrets.token_hex(4)
            record = _request(check, server, f"/hash/{password}")
            body = _json(check, "/hash", record)
            digest = body.get("digest") if isinstance(body, dict) else None
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                check.fail(
                    measured=f"GET /hash/{password} answered {record.body[:80]}",
                    expected='{"digest": <64 hex digits>}',
                    cause="the handler's body was changed",
                    fix="keep the body as given: `return {\"digest\": hash_password(password)}`",
                )
            _floor(check, "/hash", record, HASH_FLOOR_S)
            digests.add(digest)
        if len(digests) < 2:
            check.fail(
                measured="two different passwords got the same digest",
                expected="a different digest for each password",
                cause="a constant is returned instead of a hash",
                fix="keep the body as given",
            )
        # four hashes share two cores with whatever else runs: 1.2 s of CPU, which took
        # 3 s and more at load average 4.7, so they get twice the usual bound
        result = _burst(
            check, server, [f"/hash/pw{i}" for i in range(4)], timeout_s=HASH_BURST_TIMEOUT_S
        )
        blocks = own_code_blocks(result.loop_blocks, BLOCK_MS)
        if blocks:
            check.fail(
                measured=blame("/hash", blocks[0])
                + (f" (and {len(blocks) - 1} more blocks)" if len(blocks) > 1 else ""),
                expected=f"no loop block of {BLOCK_MS:.0f} ms or more",
                cause="hashing keeps its thread busy until it is done; in `async def` that "
                "thread is the event loop's, so nothing else runs meanwhile",
                fix="make it a plain `def digest(...)`: a worker thread computes, and hashlib "
                "lets go of the GIL, so the loop runs on",
            )
        check.passed(
            f"4 hashes at once in {result.wall_s:.2f} s on {len(result.served_by)} worker "
            "threads; the loop was never held"
        )


# -- Task 2 · the threadpool's size ----------------------------------------------------------
class _Gauge:
    """Counts the ``def`` requests sleeping right now, and the most that ever did at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.now -= 1


def _roomy_app(check: Check, lifespan: Any) -> tuple[FastAPI, _Gauge]:
    """The learner's lifespan on an app of the check's own, with one blocking ``def`` route."""
    if not callable(lifespan):
        check.fail(
            measured=f"more_threads is {type(lifespan).__name__}, not a function",
            expected="a lifespan: an `@asynccontextmanager` function taking the app",
            cause="the solution cell has not run, or `more_threads` was reassigned",
            fix="run the solution cell that defines `more_threads`, then this one",
        )
    gauge = _Gauge()
    app = FastAPI(lifespan=lifespan)

    @app.get("/slow")
    def slow() -> dict[str, float]:  # plain def: one worker thread and one token per request
        with gauge:
            time.sleep(SLOW_S)
        return {"slept": SLOW_S}

    return app, gauge


def _on_loop(check: Check, server: servers.Server, work: Callable[[], Any]) -> Any:
    try:
        return server.run_in_loop(work, timeout=3.0)
    except TimeoutError:
        check.fail(
            measured="the server's event loop did not answer within 3 s",
            expected="a server whose loop is free once it has started",
            cause="the lifespan started something that holds the loop",
            fix="in the lifespan, only set the limiter's total_tokens, then `yield`",
        )


def _default_executor_workers(check: Check, server: servers.Server) -> int | None:
    """``max_workers`` of the executor ``set_default_executor`` gave the server's loop, if any."""
    executor = _on_loop(check, server, lambda: asyncio.get_running_loop()._default_executor)  # type: ignore[attr-defined]
    workers = getattr(executor, "_max_workers", None)
    asyncio_default = min(32, (os.cpu_count() or 1) + 4)
    return workers if isinstance(workers, int) and workers != asyncio_default else None


def _fail_tokens(check: Check, server: servers.Server, tokens: int, measured: str) -> None:
    executor_workers = _default_executor_workers(check, server)
    if executor_workers is not None:
        check.fail(
            measured=f"{measured}; asyncio's default executor has {executor_workers} workers",
            expected=f"anyio's limiter at {TOKENS} tokens",
            cause="`loop.set_default_executor` is the knob that does nothing: it sizes asyncio's "
            "default executor, which FastAPI never uses for `def` endpoints",
            fix=f"in the lifespan: `anyio.to_thread.current_default_thread_limiter()"
            f".total_tokens = {TOKENS}`",
        )
    check.fail(
        measured=measured,
        expected=f"{TOKENS} tokens, set by the lifespan on the server's own loop",
        cause="the limiter was not changed on the server's loop (each event loop has its own "
        "limiter: one changed from a cell, or after `yield`, is not the server's)"
        if tokens == DEFAULT_TOKENS
        else f"the limiter has {tokens} tokens, not {TOKENS}",
        fix=f"in the lifespan, before `yield`: `anyio.to_thread.current_default_thread_limiter()"
        f".total_tokens = {TOKENS}`",
    )


@graded
def check_tokens(more_threads: Any) -> None:
    """Task 2a: the lifespan gives the server's threadpool 100 tokens."""
    with Check("Task 2a · the knob that works") as check:
        app, _ = _roomy_app(check, more_threads)
        with check.serve(app) as server:
            tokens = int(_on_loop(check, server, _limiter_tokens))
            if tokens != TOKENS:
                _fail_tokens(check, server, tokens, f"the server's limiter has {tokens} tokens")
        check.passed(f"the server's threadpool has {tokens} tokens (the default is 40)")


def _limiter_tokens() -> float:
    import anyio.to_thread

    return anyio.to_thread.current_default_thread_limiter().total_tokens


@graded
def check_one_round(more_threads: Any) -> None:
    """Task 2b: 100 blocking `def` requests sleep all at once, in about one round of 0.5 s."""
    with Check("Task 2b · 100 requests in one round") as check:
        app, gauge = _roomy_app(check, more_threads)
        with check.serve(app) as server:
            tokens = int(_on_loop(check, server, _limiter_tokens))
            result = check.load(server, "/slow", n=TOKENS, timeout_s=10.0)
            if result.errors:
                check.fail(
                    measured=f"{result.errors} of {TOKENS} requests failed: "
                    + ", ".join(f"{k} ×{v}" for k, v in result.error_messages.most_common(2)),
                    expected="all 100 answered",
                    cause="the server could not serve them (see the failures)",
                    fix="in the lifespan, only set the limiter's total_tokens, then `yield`",
                )
            rounds = result.wall_s / SLOW_S
            measured = (
                f"100 requests took {result.wall_s:.2f} s ({rounds:.1f} rounds of {SLOW_S:g} s); "
                f"at most {gauge.peak} slept at once; the server's limiter has {tokens} tokens"
            )
            if gauge.peak <= DEFAULT_TOKENS or tokens < TOKENS:
                _fail_tokens(check, server, tokens, measured)
        check.passed(
            f"100 blocking def requests in {result.wall_s:.2f} s, about one round of {SLOW_S:g} s: "
            f"{gauge.peak} slept at once, {tokens} tokens"
        )

