"""Checks for exercise 05 · gather and friends: a dashboard that fans out to three stand-in
services at once, survives one failing, answers 504 at its deadline when one hangs; a team page
that keeps at most ``MAX_IN_FLIGHT`` calls in flight; and an app with one shared client.

Each check starts stand-in services of its own (:mod:`helpers.upstream`) and wires the learner's
piece into a small app of its own, with the check's URLs. The evidence is what the stand-ins
counted (how many calls were in flight at once, across them or at one of them; which
connections they were called on), the statuses, and the loop watch; a wall time decides only
where the gap is wide (a deadline of 1 s against a 3 s bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from helpers import loadgen
from helpers import server as servers
from helpers import upstream as stand_ins
from helpers.checks._core import (
    Check,
    blame,
    free_stuck_loop,
    graded,
    own_code_blocks,
    stuck_line,
)

__all__ = [
    "DEADLINE",
    "LATENCY",
    "MAX_IN_FLIGHT",
    "check_client_closed",
    "check_deadline",
    "check_fan_out",
    "check_one_client",
    "check_partial",
    "check_semaphore",
]

LATENCY = {"user": 0.3, "products": 0.5, "weather": 0.4}
"""Each stand-in's answer time in task 1: together 1.2 s, the slowest 0.5 s."""
DEADLINE = 1.0
"""The dashboard's deadline (task 1c): twice its slowest call, so a healthy dashboard never
meets it, even late on a busy machine."""
LATE_504_S = 0.5
"""A 504 may come this much after the deadline (a busy machine) and still count as on time."""
MAX_IN_FLIGHT = 5
"""Task 2: the team page's cap on calls in flight at once."""
TEAM_SIZE = 15
"""Task 2: users on the team page: three rounds of five."""
TEAM_LATENCY = 0.3
"""Task 2: the users service's answer time; one call after another would take 4.5 s."""
PROFILES = 8
"""Task 3: requests sent one after another to the learner's app."""
PROFILE_LATENCY = 0.05
"""Task 3: the users service's answer time."""
CLOSE_WAIT_S = 1.0
"""Task 3b: how long after the app stopped its connections may take to close."""
MAX_CONNECTIONS = 2
"""Task 3: connections the users service may see for those requests (one client keeps one
open and reuses it; a client per request opens one per request)."""
BLOCK_MS = 100.0
"""A loop block of the learner's code this long or longer fails (a call takes 300-500 ms)."""
REQUEST_TIMEOUT_S = 3.0
"""Bound on a dashboard request: three times the deadline."""
TEAM_TIMEOUT_S = 8.0
"""Bound on the team request: more than the 4.5 s of one call after another, so that case is
named as what it is."""
CLIENT_TIMEOUT_S = 30.0
"""The check's own client waits this long, so only the learner's deadline can end a wait."""
POLL_S = 0.002

_KEYS = ("user", "products", "weather")
_CITIES = ("Lisbon", "Nairobi", "Osaka", "Quito", "Oslo", "Pune")


# -- the stand-ins ---------------------------------------------------------------------------
@contextlib.contextmanager
def _stand_ins(*kinds: str, **defaults: Any) -> Iterator[dict[str, stand_ins.Upstream]]:
    """Fresh stand-ins for one check, under names of the check's own; always stopped (which
    releases any call still hanging, so the learner's app can stop cleanly)."""
    started: dict[str, stand_ins.Upstream] = {}
    try:
        for kind in kinds:
            started[kind] = stand_ins.start_upstream(
                kind, name=f"check 05 · {kind} stand-in", **defaults)
        yield started
    finally:
        for up in started.values():
            up.stop()


def _stop_all(ups: dict[str, stand_ins.Upstream]) -> None:
    for up in ups.values():
        up.stop()


class _Overlap:
    """Samples, in a thread, how many calls the stand-ins have in flight together."""

    def __init__(self, ups: list[stand_ins.Upstream]) -> None:
        self.ups = ups
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="check 05 · overlap", daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, sum(up.in_flight for up in self.ups))
            time.sleep(POLL_S)

    def __enter__(self) -> _Overlap:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join(1.0)


# -- the check's app around the learner's coroutine -------------------------------------------
def _app(endpoint: Callable[[httpx.AsyncClient, Request], Any]) -> FastAPI:
    """One shared client from the lifespan; ``GET /run`` awaits ``endpoint(client, request)``
    and answers its result in brief (``load`` keeps 300 characters of a body). A learner's
    HTTPException passes through; any other error comes back as a 500 whose body names it
    (nothing is logged)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=limits) as client:
            yield {"client": client}

    app = FastAPI(lifespan=lifespan)

    @app.get("/run")
    async def run(request: Request) -> Any:
        try:
            result = await endpoint(request.state.client, request)
            return JSONResponse({"result": _brief(result)})
        except (HTTPException, asyncio.CancelledError):
            raise
        except BaseException as error:  # noqa: BLE001 - the learner's error, sent to the check
            return JSONResponse({"error": _name(error)}, status_code=500)

    return app


def _brief(value: Any, depth: int = 0) -> Any:
    """What the learner returned, short: a user or product as its id, the weather as its city,
    lists and the dashboard's dict item by item; anything else as a short repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:40]
    if isinstance(value, dict):
        if "id" in value:
            return {"id": value["id"]}
        if "city" in value:
            return {"city": value["city"]}
        if depth == 0:
            return {str(key): _brief(item, 1) for key, item in list(value.items())[:6]}
    if isinstance(value, list) and depth <= 1:
        return [_brief(item, depth + 1) for item in value[:20]]
    return f"<{type(value).__name__}> {value!r:.40}"


def _name(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        inner = ", ".join(_name(e) for e in error.exceptions[:3])
        return f"{type(error).__name__} of [{inner}]"
    text = str(error).splitlines()[0][:160] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _require_async(check: Check, function: Any, name: str, signature: str) -> None:
    if not callable(function):
        check.fail(
            measured=f"{name} is {function!r:.60}, not a function",
            expected=f"`async def {signature}:` from your solution cell",
            cause="the solution cell has not run, or the name was reused",
            fix="run the cell with your solution, then this one",
        )
    if not inspect.iscoroutinefunction(function):
        check.fail(
            measured=f"{name} is a plain function (def): the endpoint cannot await it",
            expected=f"`async def {signature}:`",
            cause="a plain def cannot await the shared async client",
            fix=f"write `async def {signature}:` and `await` each call through `client`",
        )


class _Call:
    """One request to the check's app, and what came back."""

    def __init__(
        self, check: Check, server: servers.Server, path: str, timeout_s: float, fix: str,
    ) -> None:
        self.check = check
        self.fix = fix
        result = check.load(server, path, timeout_s=timeout_s)
        self.record = result.records[0]
        self.blocks = own_code_blocks(result.loop_blocks, BLOCK_MS)
        self.stuck = stuck_line(server) if self.record.error is not None else ""
        self.timeout_s = timeout_s

    @property
    def latency_s(self) -> float:
        return self.record.latency_s

    def no_blocks(self, what: str) -> None:
        if self.blocks:
            more = f" (and {len(self.blocks) - 1} more blocks)" if len(self.blocks) > 1 else ""
            self.check.fail(
                measured=blame(what, self.blocks[0]) + more,
                expected=f"no loop block of {BLOCK_MS:.0f} ms or more: the calls are awaited",
                cause="a blocking call (a synchronous client such as `httpx.get` or "
                "`requests.get`, or `time.sleep`) inside `async def` holds the event loop",
                fix="make every call through the shared `client` with `await client.get(...)`",
            )

    def answered(self, what: str, freed: str = "") -> None:
        """Fail when no answer came; ``freed`` is what freeing a stuck loop found."""
        if self.record.error is not None:
            held = f"; the event loop is still held at {self.stuck}" if self.stuck else (
                f"; {freed}" if freed else "")
            self.check.fail(
                measured=f"{what}: no answer within {self.timeout_s:g} s "
                f"({self.record.error}){held}",
                expected=f"an answer within {self.timeout_s:g} s",
                cause="your code never finished: an await that never ends (no deadline), or "
                "a loop that never ends",
                fix=self.fix,
            )

    def status(self, what: str, expected: int, cause: str) -> None:
        if self.record.status == expected:
            return
        error = self.body().get("error") if self.record.status == 500 else None
        measured = f"{what}: HTTP {self.record.status} after {self.latency_s:.2f} s"
        if error:
            measured += f"; your code raised {error}"
        self.check.fail(
            measured=measured, expected=f"HTTP {expected}", cause=cause, fix=self.fix,
        )

    def body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.record.body)
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}

    def result(self) -> Any:
        return self.body().get("result")


# -- task 1: the dashboard -------------------------------------------------------------------
def _dashboard_urls(ups: dict[str, stand_ins.Upstream], **extra: str) -> tuple[
    dict[str, str], int, str
]:
    """The three URLs the dashboard fetches (a user and a city the check picked), each with the
    stand-in's answer time in its query, plus ``extra`` query text per key."""
    user_id = 100 + secrets.randbelow(900)
    city = secrets.choice(_CITIES)
    urls = {
        "user": f"{ups['users'].url}/users/{user_id}",
        "products": f"{ups['products'].url}/products?limit=3",
        "weather": f"{ups['weather'].url}/weather/{city}",
    }
    for key, url in urls.items():
        joiner = "&" if "?" in url else "?"
        urls[key] = f"{url}{joiner}latency={LATENCY[key]}" + extra.get(key, "")
    return urls, user_id, city


def _dashboard_app(dashboard: Callable[..., Any], urls: dict[str, dict[str, str]]) -> FastAPI:
    async def endpoint(client: httpx.AsyncClient, request: Request) -> Any:
        return await dashboard(client, dict(urls[request.query_params["case"]]))

    return _app(endpoint)


def _dashboard_parts(check: Check, call: _Call, what: str, fix: str) -> dict[str, Any]:
    result = call.result()
    if not isinstance(result, dict) or not all(key in result for key in _KEYS):
        check.fail(
            measured=f"{what}: dashboard returned {json.dumps(result)[:160]}",
            expected='a dict with the keys "user", "products", "weather" (and "unavailable")',
            cause="the dashboard does not return the three answers under their keys",
            fix=fix,
        )
    return result


def _right_part(key: str, value: Any, user_id: int, city: str) -> bool:
    """Whether ``value`` (in brief) is what that stand-in answers."""
    if key == "user":
        return bool(value == {"id": user_id})
    if key == "weather":
        return bool(value == {"city": city})
    return bool(value == [{"id": 1}, {"id": 2}, {"id": 3}])


_FAN_OUT_FIX = (
    "start the three calls together: `await asyncio.gather(fetch_json(client, urls['user']), "
    "...)` (or tasks in an `asyncio.TaskGroup`), never one `await` after another"
)


@graded
def check_fan_out(dashboard: Callable[..., Any]) -> None:
    """Task 1a: the dashboard makes its three calls at the same time and returns their answers."""
    with Check("Task 1a · fan out") as check:
        _require_async(check, dashboard, "dashboard", "dashboard(client, urls)")
        with _stand_ins("users", "products", "weather") as ups:
            urls, user_id, city = _dashboard_urls(ups)
            with check.serve(_dashboard_app(dashboard, {"ok": urls})) as server:
                try:
                    with _Overlap(list(ups.values())) as overlap:
                        call = _Call(check, server, "/run?case=ok", REQUEST_TIMEOUT_S,
                                     _FAN_OUT_FIX)
                finally:
                    _stop_all(ups)
            stuck = free_stuck_loop(server)
        what = "the dashboard with three healthy services"
        call.no_blocks("/dashboard")
        call.answered(what, stuck)
        call.status(what, 200, "an error in the dashboard")
        result = _dashboard_parts(check, call, what, _FAN_OUT_FIX)
        wrong = [key for key in _KEYS if not _right_part(key, result[key], user_id, city)]
        if wrong:
            check.fail(
                measured=f"{what}: {wrong[0]!r} is {json.dumps(result[wrong[0]])[:120]}",
                expected=f"what the service at urls[{wrong[0]!r}] answered (its JSON)",
                cause="a URL mixed up, or the answer not decoded with `.json()`",
                fix="return `fetch_json(client, urls[key])`'s answer under each key",
            )
        total, slowest = sum(LATENCY.values()), max(LATENCY.values())
        if overlap.peak < len(_KEYS):
            check.fail(
                measured=f"the services saw at most {overlap.peak} of the 3 calls in flight at "
                f"once; the dashboard took {call.latency_s:.2f} s",
                expected=f"all 3 in flight at once: about the slowest call ({slowest:g} s), not "
                f"the sum ({total:g} s)",
                cause="the calls are awaited one after another",
                fix=_FAN_OUT_FIX,
            )
        if call.latency_s >= total:
            check.fail(
                measured=f"the dashboard took {call.latency_s:.2f} s",
                expected=f"about the slowest call ({slowest:g} s), well under the sum "
                f"({total:g} s)",
                cause="something else waits after the calls",
                fix=_FAN_OUT_FIX,
            )
        check.passed(
            f"the 3 calls were in flight at once; the dashboard took {call.latency_s:.2f} s, "
            f"about the slowest call ({slowest:g} s), not the sum ({total:g} s)"
        )


_PARTIAL_FIX = (
    "gather with `return_exceptions=True`; for each result that is an exception, put None "
    "under its key and the key in \"unavailable\""
)


@graded
def check_partial(dashboard: Callable[..., Any]) -> None:
    """Task 1b: one failing service leaves a 200 with that part None and named unavailable."""
    with Check("Task 1b · one service fails") as check:
        _require_async(check, dashboard, "dashboard", "dashboard(client, urls)")
        with _stand_ins("users", "products", "weather") as ups:
            cases = {key: _dashboard_urls(ups, **{key: "&fail=1"}) for key in _KEYS}
            app = _dashboard_app(dashboard, {key: urls for key, (urls, _, _) in cases.items()})
            with check.serve(app) as server:
                try:
                    calls = {
                        key: _Call(check, server, f"/run?case={key}", REQUEST_TIMEOUT_S,
                                   _PARTIAL_FIX)
                        for key in _KEYS
                    }
                finally:
                    _stop_all(ups)
            stuck = free_stuck_loop(server)
        for failed, call in calls.items():
            what = f"the dashboard with the {failed} service answering 503"
            call.answered(what, stuck)
            call.status(
                what, 200,
                "one failed call sank the whole dashboard: plain `gather` (and a `TaskGroup`) "
                "raise the first failure",
            )
            result = _dashboard_parts(check, call, what, _PARTIAL_FIX)
            _, user_id, city = cases[failed]
            expected = (
                f'{{"{failed}": null, "unavailable": ["{failed}"]}} and the other two answers'
            )
            if result[failed] is not None or result.get("unavailable") != [failed]:
                check.fail(
                    measured=f"{what}: {failed!r} is {json.dumps(result[failed])[:80]}, "
                    f"\"unavailable\" is {json.dumps(result.get('unavailable'))[:80]}",
                    expected=expected,
                    cause="the failure is not reported as the task says (a 503 answer is an "
                    "error only once `raise_for_status()` runs: `fetch_json` does it)",
                    fix=_PARTIAL_FIX,
                )
            wrong = [k for k in _KEYS if k != failed
                     and not _right_part(k, result[k], user_id, city)]
            if wrong:
                check.fail(
                    measured=f"{what}: {wrong[0]!r} is {json.dumps(result[wrong[0]])[:80]}",
                    expected=expected,
                    cause="the healthy services' answers are missing",
                    fix=_PARTIAL_FIX,
                )
        check.passed(
            "with any one service failing, the dashboard answered 200 with the other two and "
            "named the missing one"
        )


_DEADLINE_FIX = (
    "wrap the gather in `async with asyncio.timeout(DEADLINE):` and turn TimeoutError into "
    "`raise HTTPException(504, ...)`"
)


@graded
def check_deadline(dashboard: Callable[..., Any]) -> None:
    """Task 1c: with one service hanging, the dashboard answers 504 at its 1 s deadline."""
    with Check("Task 1c · a deadline") as check:
        _require_async(check, dashboard, "dashboard", "dashboard(client, urls)")
        with _stand_ins("users", "products", "weather") as ups:
            urls, _, _ = _dashboard_urls(ups, weather="&hang=true")
            with check.serve(_dashboard_app(dashboard, {"hung": urls})) as server:
                try:
                    call = _Call(check, server, "/run?case=hung", REQUEST_TIMEOUT_S,
                                 _DEADLINE_FIX)
                finally:
                    _stop_all(ups)  # releases the hung call
            stuck = free_stuck_loop(server)
        what = "with the weather service hanging"
        call.answered(what, stuck)
        answered = f"{what}: HTTP {call.record.status} after {call.latency_s:.2f} s"
        if call.record.status == 200:
            check.fail(
                measured=answered + f", {json.dumps(call.result())[:100]}",
                expected=f"HTTP 504 after about {DEADLINE:g} s: the whole page fails at its "
                "deadline",
                cause="the timeout is caught and the page answered without the hung part",
                fix=_DEADLINE_FIX,
            )
        call.status(what, 504, "the timeout is not turned into a 504")
        if not DEADLINE - 0.1 <= call.latency_s <= DEADLINE + LATE_504_S:
            check.fail(
                measured=answered,
                expected=f"HTTP 504 after about {DEADLINE:g} s (from {DEADLINE - 0.1:g} to "
                f"{DEADLINE + LATE_504_S:g} s)",
                cause="the deadline is not DEADLINE",
                fix=_DEADLINE_FIX,
            )
        check.passed(
            f"with one service hanging, HTTP 504 after {call.latency_s:.2f} s "
            f"(deadline {DEADLINE:g} s)"
        )


# -- task 2: the team page -------------------------------------------------------------------
_TEAM_FIX = (
    "one `asyncio.Semaphore(MAX_IN_FLIGHT)` shared by the calls of this team: gather them all, "
    "and make each call inside `async with limit:`"
)


@graded
def check_semaphore(team: Callable[..., Any]) -> None:
    """Task 2: the team page gathers its calls with at most MAX_IN_FLIGHT in flight."""
    with Check("Task 2 · at most five in flight") as check:
        _require_async(check, team, "team", "team(client, users_url, user_ids)")
        first = 100 + secrets.randbelow(900)
        ids = list(range(first, first + TEAM_SIZE))
        with _stand_ins("users", latency=TEAM_LATENCY) as ups:
            users_url = ups["users"].url

            async def endpoint(client: httpx.AsyncClient, request: Request) -> Any:
                return await team(client, users_url, list(ids))

            with check.serve(_app(endpoint)) as server:
                try:
                    call = _Call(check, server, "/run", TEAM_TIMEOUT_S, _TEAM_FIX)
                finally:
                    peak = ups["users"].peak_in_flight
                    _stop_all(ups)
            stuck = free_stuck_loop(server)
        what = f"the team page ({TEAM_SIZE} users, {TEAM_LATENCY:g} s each)"
        call.no_blocks("/team")
        if call.record.error is not None and peak <= 1:
            check.fail(
                measured=f"{what}: no answer within {TEAM_TIMEOUT_S:g} s; the users service saw "
                "1 call in flight at a time",
                expected=f"{MAX_IN_FLIGHT} at a time: about {TEAM_SIZE // MAX_IN_FLIGHT} rounds "
                f"of {TEAM_LATENCY:g} s",
                cause="the calls are awaited one after another",
                fix=_TEAM_FIX,
            )
        call.answered(what, stuck)
        call.status(what, 200, "an error in team")
        result = call.result()
        got = [u.get("id") if isinstance(u, dict) else u for u in result] if isinstance(
            result, list) else result
        if got != ids:  # in brief: each user as its id
            check.fail(
                measured=f"{what}: team returned {json.dumps(got)[:120]}",
                expected=f"the {TEAM_SIZE} users' JSON, in the order of user_ids",
                cause="not every user fetched, or not in order",
                fix="return the list `asyncio.gather` gives (it keeps the order)",
            )
        if peak != MAX_IN_FLIGHT:
            check.fail(
                measured=f"the users service saw at most {peak} call{'s' if peak != 1 else ''} "
                "in flight at once "
                f"(the team took {call.latency_s:.2f} s)",
                expected=f"exactly {MAX_IN_FLIGHT}: never more, and the five permits in use",
                cause="no limit: every call starts at once (a semaphore made per call limits "
                "nothing)" if peak > MAX_IN_FLIGHT
                else "the calls are awaited one after another" if peak == 1
                else "fewer calls at once than allowed: a smaller semaphore, or calls awaited "
                "in small batches",
                fix=_TEAM_FIX,
            )
        check.passed(
            f"{TEAM_SIZE} users in {call.latency_s:.2f} s; the users service saw at most "
            f"{peak} in flight at once"
        )


# -- task 3: one client for the app ----------------------------------------------------------
_CLIENT_FIX = (
    "build one `httpx.AsyncClient` in the lifespan (`async with httpx.AsyncClient() as "
    "client: yield {\"client\": client}`) and use `request.state.client` in the endpoint"
)


def _learner_app(check: Check, build_app: Callable[..., Any], users_url: str) -> Any:
    if not callable(build_app):
        check.fail(
            measured=f"build_app is {build_app!r:.60}, not a function",
            expected="`def build_app(users_url):` from your solution cell",
            cause="the solution cell has not run, or the name was reused",
            fix="run the cell with your solution, then this one",
        )
    app = check.call(build_app, users_url, timeout_s=5.0, expected="a FastAPI app")
    if not isinstance(app, FastAPI):
        check.fail(
            measured=f"build_app(users_url) returned {app!r:.80}",
            expected="a FastAPI app",
            cause="the function does not return the app it builds",
            fix="end build_app with `return app`",
        )
    return app


def _profiles(
    check: Check, server: servers.Server, user_ids: list[int], fix: str,
) -> loadgen.LoadResult:
    """``GET /profile/{id}`` for each id, one after another; each must answer that user."""
    paths = [f"/profile/{user_id}" for user_id in user_ids]
    result = check.load(server, paths, concurrency=1, timeout_s=REQUEST_TIMEOUT_S)
    for record in result.records:
        if record.error is not None:
            stuck = stuck_line(server)
            check.fail(
                measured=f"GET {record.path}: no answer within {REQUEST_TIMEOUT_S:g} s"
                + (f"; the event loop is held at {stuck}" if stuck else ""),
                expected="the user's JSON from the users service",
                cause="your endpoint never finished",
                fix=fix,
            )
        user_id = int(record.path.rsplit("/", 1)[1])
        try:
            body = json.loads(record.body)
        except ValueError:
            body = None
        if record.status != 200 or not isinstance(body, dict) or body.get("id") != user_id:
            check.fail(
                measured=f"GET {record.path} answered HTTP {record.status}: {record.body[:100]}",
                expected=f"HTTP 200 with the JSON of user {user_id} from the users service",
                cause="an error in the endpoint, or it does not return the users service's "
                "answer (read the server's traceback above this cell's output, if any)",
                fix=fix,
            )
    return result


def _no_blocks(check: Check, result: loadgen.LoadResult, fix: str) -> None:
    blocks = own_code_blocks(result.loop_blocks, BLOCK_MS)
    if blocks:
        check.fail(
            measured=blame("/profile", blocks[0]),
            expected=f"no loop block of {BLOCK_MS:.0f} ms or more",
            cause="a blocking call (a synchronous client, `time.sleep`) inside `async def`",
            fix=fix,
        )


class _ConnectionCountingUsers:
    """A users service that counts TCP connections, which an HTTP app cannot see: how many were
    opened, and how many are open now. A plain asyncio server speaking just enough HTTP/1.1
    (GET, keep-alive), on its own loop in a daemon thread."""

    def __init__(self) -> None:
        self.opened = 0
        self.open_now = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(
            target=self._run, name="check 05 · users service", daemon=True)
        self._thread.start()
        if not self._ready.wait(5.0) or self._server is None:
            raise RuntimeError("the check's users service did not start")
        self.url: str = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0))
        self._ready.set()
        self._loop.run_forever()
        # end what is left (a connection mid-request) here, so that no pending task is
        # collected later and logged to stderr in some other cell
        left = asyncio.all_tasks(self._loop)
        for task in left:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        self._loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self.open_now += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode("latin-1").split("?")[0]
                await asyncio.sleep(PROFILE_LATENCY)
                user_id = path.rsplit("/", 1)[-1]
                if path.startswith("/users/") and user_id.isdigit():
                    status, body = "200 OK", json.dumps({"id": int(user_id)}).encode()
                else:
                    status, body = "404 Not Found", b'{"detail": "Not Found"}'
                writer.write(
                    f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, IndexError):
            pass  # the client closed the connection (or sent something that is not HTTP)
        finally:
            self.open_now -= 1
            self._writers.discard(writer)
            writer.close()

    def stop(self) -> None:
        """Close every connection and the server; end the thread."""

        def close() -> None:
            for writer in list(self._writers):
                writer.close()
            if self._server is not None:
                self._server.close()
            self._loop.call_later(0.05, self._loop.stop)

        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(close)
            self._thread.join(2.0)


@contextlib.contextmanager
def _counting_users() -> Iterator[_ConnectionCountingUsers]:
    users = _ConnectionCountingUsers()
    try:
        yield users
    finally:
        users.stop()


@graded
def check_one_client(build_app: Callable[..., Any]) -> None:
    """Task 3a: the app's requests share one client: the users service sees one connection."""
    with Check("Task 3a · one client") as check:
        first = 100 + secrets.randbelow(900)
        with _counting_users() as users:
            app = _learner_app(check, build_app, users.url)
            with check.serve(app) as server:
                result = _profiles(
                    check, server, list(range(first, first + PROFILES)), _CLIENT_FIX)
            free_stuck_loop(server)
            seen = users.opened
        if seen > MAX_CONNECTIONS:
            check.fail(
                measured=f"{PROFILES} requests, one after another, reached the users service on "
                f"{seen} connections",
                expected=f"one connection, reused (at most {MAX_CONNECTIONS})",
                cause="a new client per request: each one opens a new connection (and builds "
                "an SSL context on the loop) and throws it away",
                fix=_CLIENT_FIX,
            )
        _no_blocks(check, result, _CLIENT_FIX)
        check.passed(
            f"{PROFILES} requests reached the users service on {seen} connection"
            f"{'s' if seen != 1 else ''}: one client, reused"
        )


@graded
def check_client_closed(build_app: Callable[..., Any]) -> None:
    """Task 3b: the client is closed when the app stops: no connection is left open."""
    with Check("Task 3b · closed at shutdown") as check:
        first = 100 + secrets.randbelow(900)
        with _counting_users() as users:
            app = _learner_app(check, build_app, users.url)
            with check.serve(app) as server:
                result = _profiles(check, server, [first, first + 1, first + 2], _CLIENT_FIX)
            stuck = free_stuck_loop(server)
            # the client closes its sockets as the lifespan ends; the service sees it at once,
            # but give its loop a moment on a busy machine
            deadline = time.monotonic() + CLOSE_WAIT_S
            while users.open_now and time.monotonic() < deadline:
                time.sleep(0.01)
            left_open = users.open_now
        del app
        gc.collect()  # a leaked client's sockets go now, while stderr is still caught
        if stuck:
            check.fail(
                measured=f"the app did not stop: {stuck}",
                expected="the app stops, and its lifespan closes the client",
                cause="code after `yield` in the lifespan never finishes",
                fix=_CLIENT_FIX,
            )
        if left_open:
            check.fail(
                measured=f"{CLOSE_WAIT_S:g} s after the app stopped, {left_open} connection"
                f"{'s' if left_open != 1 else ''} to the users service still open",
                expected="none: the lifespan closes the client when the app stops",
                cause="the client is never closed (built outside the lifespan, or built in it "
                "without `async with` / `await client.aclose()`)",
                fix=_CLIENT_FIX,
            )
        _no_blocks(check, result, _CLIENT_FIX)
        check.passed("when the app stopped, its connection to the users service was closed")
