"""Stand-in upstream services, so lessons call "remote" APIs without touching the internet.

The source material fans out to httpbin and a public weather API. Here the same calls go to
small local FastAPI apps served with :func:`helpers.serve` on 127.0.0.1: a **users** API, a
**products** API, a **weather** API and a httpbin-like **delay** service (``/delay/{seconds}``).

Every stand-in can be made slow (``latency``), flaky (``fail``) or dead (``hang``): as a
default per service (``upstream.latency = 0.5``) or per call with query parameters
(``/users/1?latency=2``, ``?fail=1``, ``?hang=true``). All waiting is ``await``-ed, so a stand-in
never blocks its own event loop. Each service counts the requests in flight now, the peak
since the last :meth:`Upstream.reset`, and the total, so a lesson can show what a
``Semaphore`` really did: "the upstream saw at most 3 in flight".

    up = start_upstreams(latency=0.3)      # users, products, weather, delay
    httpx.get(f"{up.users.url}/users/1").json()
    up.users.peak_in_flight                # also GET {up.users.url}/stats
    up.stop()
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from .server import Server, serve

__all__ = [
    "KINDS",
    "Upstream",
    "UpstreamStats",
    "Upstreams",
    "start_upstream",
    "start_upstreams",
]

KINDS: tuple[str, ...] = ("users", "products", "weather", "delay")
"""The stand-in services there are, in the order :func:`start_upstreams` starts them."""

DEFAULT_FAIL_STATUS = 503
STOP_POLL_S = 0.02
"""How often a stand-in checks whether its server is stopping, to release hung requests."""

CLIENT_CLOSED_STATUS = 499  # nginx's "client closed request": never delivered, only counted


# -- validation ------------------------------------------------------------------------------
def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        choices = ", ".join(repr(k) for k in KINDS)
        raise ValueError(f"unknown upstream kind {kind!r}; choose one of: {choices}")
    return kind


def _check_latency(latency: object) -> float:
    if isinstance(latency, bool) or not isinstance(latency, (int, float)):
        raise TypeError(f"latency is a number of seconds (0 or more), got {latency!r}")
    if not math.isfinite(latency) or latency < 0:
        raise ValueError(
            f"latency must be a finite number of seconds, 0 or more, got {latency!r} "
            "(to never answer, use hang=True)"
        )
    return float(latency)


def _check_fail(fail: object) -> float:
    if isinstance(fail, bool) or not isinstance(fail, (int, float)):
        raise TypeError(f"fail is a probability from 0 to 1, got {fail!r}")
    if not 0 <= fail <= 1:  # also rejects NaN
        raise ValueError(
            f"fail must be a probability from 0 to 1 (0: never fails, 1: always fails), "
            f"got {fail!r}"
        )
    return float(fail)


def _check_hang(hang: object) -> bool:
    if not isinstance(hang, bool):
        raise TypeError(f"hang must be True or False, got {hang!r}")
    return hang


def _check_fail_status(status: object) -> int:
    if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
        raise ValueError(
            f"fail_status must be a 5xx HTTP status such as 500 or 503, got {status!r}"
        )
    return status


def _check_seed(seed: object) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be a whole number, or None for unseeded failures, got {seed!r}")
    return seed


# -- statistics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpstreamStats:
    """What one stand-in saw since its last reset: a snapshot, safe to keep and compare."""

    service: str
    in_flight: int
    """Requests being handled right now (arrived, not yet answered or abandoned)."""
    peak_in_flight: int
    """The most requests in flight at once since the last reset."""
    total: int
    """Requests that arrived since the last reset (``/stats`` itself is not counted)."""
    answered: int
    """Requests answered normally."""
    failed: int
    """Requests answered with an injected 5xx failure (``fail``)."""
    abandoned: int
    """Requests that ended without their answer: the client gave up, or the server stopped."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.service}: {self.total} requests, at most {self.peak_in_flight} in flight "
            f"({self.in_flight} now); {self.answered} answered, {self.failed} failed, "
            f"{self.abandoned} abandoned"
        )


class _Counter:
    """Thread-safe counters: bumped on the server's loop, read and reset from a notebook cell."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.total = 0
        self.answered = 0
        self.failed = 0
        self.abandoned = 0

    def arrive(self) -> None:
        with self._lock:
            self.total += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    def leave(self, outcome: str) -> None:
        with self._lock:
            self.in_flight -= 1
            setattr(self, outcome, getattr(self, outcome) + 1)

    def reset(self) -> None:
        with self._lock:
            # Requests still in flight stay counted as in flight; the peak starts from them.
            self.peak = self.in_flight
            self.total = self.answered = self.failed = self.abandoned = 0

    def snapshot(self, service: str) -> UpstreamStats:
        with self._lock:
            return UpstreamStats(
                service, self.in_flight, self.peak, self.total,
                self.answered, self.failed, self.abandoned,
            )


# -- per-call behaviour ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Overrides:
    """Behaviour asked for by one request's query string; ``None`` means the service default."""

    latency: float | None = None
    fail: float | None = None
    hang: bool | None = None
    fail_status: int | None = None


async def _overrides(
    latency: Annotated[
        float | None,
        Query(ge=0, allow_inf_nan=False, description="Seconds to wait before answering."),
    ] = None,
    fail: Annotated[
        float | None,
        Query(ge=0, le=1, allow_inf_nan=False, description="Probability (0–1) of a 5xx answer."),
    ] = None,
    hang: Annotated[
        bool | None, Query(description="Never answer (until the client gives up).")
    ] = None,
    fail_status: Annotated[
        int | None, Query(ge=500, le=599, description="The 5xx status a failure answers with.")
    ] = None,
) -> _Overrides:
    # async def on purpose: a plain def dependency would cost a thread hop per request.
    return _Overrides(latency, fail, hang, fail_status)


Behaviour = Annotated[_Overrides, Depends(_overrides)]


async def _client_gone(request: Request) -> None:
    """Return when the client closes its connection (e.g. its timeout fired)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# -- plausible data --------------------------------------------------------------------------
_FIRST = ["Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Guido", "Barbara",
          "Dennis", "Frances", "Ken", "Radia"]
_LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "van Rossum",
         "Liskov", "Ritchie", "Allen", "Thompson", "Perlman"]
_CITIES = ["London", "Lisbon", "Nairobi", "Osaka", "Lima", "Oslo", "Pune", "Quito"]
_PRODUCTS = [("Espresso beans, 1 kg", 18.5), ("Pour-over kettle", 42.0),
             ("Burr grinder", 129.0), ("Ceramic mug", 9.5), ("Milk frother", 24.9),
             ("Paper filters, 100", 4.2), ("Digital scale", 21.0), ("Tamper", 15.75)]
_CONDITIONS = ["sunny", "cloudy", "light rain", "windy", "fog", "clear", "showers"]


def _user(user_id: int) -> dict[str, Any]:
    first = _FIRST[(user_id - 1) % len(_FIRST)]
    last = _LAST[(user_id * 7) % len(_LAST)]
    handle = f"{first}.{last}".lower().replace(" ", "")
    return {"id": user_id, "name": f"{first} {last}", "email": f"{handle}@example.com",
            "city": _CITIES[user_id % len(_CITIES)]}


def _product(product_id: int) -> dict[str, Any]:
    name, price = _PRODUCTS[(product_id - 1) % len(_PRODUCTS)]
    return {"id": product_id, "name": name, "price": price, "currency": "EUR",
            "in_stock": product_id % 5 != 0}


def _weather(city: str) -> dict[str, Any]:
    code = zlib.crc32(city.strip().lower().encode())  # stable across runs, unlike hash()
    return {"city": city, "temperature_c": round(-5 + (code % 400) / 10, 1),
            "conditions": _CONDITIONS[(code >> 9) % len(_CONDITIONS)],
            "humidity_pct": 30 + (code >> 13) % 60, "wind_kph": (code >> 19) % 40}


def _echo(request: Request) -> dict[str, Any]:
    """httpbin's echo of the request: args, headers, origin and url."""
    return {"args": dict(request.query_params), "headers": dict(request.headers),
            "origin": request.client.host if request.client else "127.0.0.1",
            "url": str(request.url)}


# -- one stand-in service --------------------------------------------------------------------
class Upstream:
    """One stand-in service: its app, its :class:`Server`, its behaviour defaults and its counts.

    Defaults (``latency``, ``fail``, ``hang``, ``fail_status``) are plain attributes you can
    change while it runs; a request's query parameters override them for that request.
    Serve it with :meth:`start` (not ``serve(up.app)``): then stopping its server releases
    hung requests at once instead of after uvicorn's one-second grace.
    """

    def __init__(
        self,
        kind: str,
        *,
        latency: float = 0.0,
        fail: float = 0.0,
        hang: bool = False,
        fail_status: int = DEFAULT_FAIL_STATUS,
        seed: int | None = 0,
    ) -> None:
        self.kind = _check_kind(kind)
        self.latency = latency
        self.fail = fail
        self.hang = hang
        self.fail_status = fail_status
        self._seed = _check_seed(seed)
        self._random = random.Random(self._seed)
        self._counter = _Counter()
        self._server: Server | None = None
        # Done once the server starts stopping; lives on the server's loop (set in lifespan).
        self._released: asyncio.Future[None] | None = None
        self.app: FastAPI = _build_app(self)

    # -- defaults, validated on every change ----------------------------------------------
    @property
    def latency(self) -> float:
        """Seconds each answer waits (awaited, never blocking); ``/delay`` uses its path instead."""
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency = _check_latency(value)

    @property
    def fail(self) -> float:
        """Probability (0–1) that an answer is an HTTP ``fail_status`` error instead."""
        return self._fail

    @fail.setter
    def fail(self, value: float) -> None:
        self._fail = _check_fail(value)

    @property
    def hang(self) -> bool:
        """Never answer: the request waits until the client gives up or the server stops."""
        return self._hang

    @hang.setter
    def hang(self, value: bool) -> None:
        self._hang = _check_hang(value)

    @property
    def fail_status(self) -> int:
        """The 5xx status an injected failure answers with (503 unless you say otherwise)."""
        return self._fail_status

    @fail_status.setter
    def fail_status(self, value: int) -> None:
        self._fail_status = _check_fail_status(value)

    @property
    def seed(self) -> int | None:
        """Seed of the failure dice: the same requests fail on every run after :meth:`reset`."""
        return self._seed

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, *, name: str | None = None) -> Upstream:
        """Serve this stand-in on 127.0.0.1 (``name`` defaults to ``upstream-<kind>``)."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running; stop() it first")
        self._server = serve(self.app, name=name or f"upstream-{self.kind}")
        return self

    def stop(self) -> None:
        """Stop serving; requests still waiting get a 503 at once, so this is quick."""
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def server(self) -> Server:
        if self._server is None:
            raise RuntimeError(f"the {self.kind} stand-in has not been started; call start()")
        return self._server

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def _stopping(self) -> bool:
        server = self._server
        return server is not None and server.stopped

    # -- counts ---------------------------------------------------------------------------
    @property
    def stats(self) -> UpstreamStats:
        """A snapshot of the counts (also served as JSON at ``GET /stats``)."""
        return self._counter.snapshot(self.kind)

    @property
    def in_flight(self) -> int:
        return self._counter.in_flight

    @property
    def peak_in_flight(self) -> int:
        return self._counter.peak

    @property
    def total(self) -> int:
        return self._counter.total

    def reset(self) -> None:
        """Zero the counts (the peak restarts from what is in flight now) and re-seed failures."""
        self._counter.reset()
        with self._counter._lock:
            self._random.seed(self._seed)

    def _settings(self) -> dict[str, Any]:
        return {"latency": self.latency, "fail": self.fail, "hang": self.hang,
                "fail_status": self.fail_status, "seed": self.seed}

    # -- answering, shared by every endpoint ----------------------------------------------
    async def _answer(
        self,
        request: Request,
        ask: _Overrides,
        body: Callable[[], Any],
        *,
        wait_s: float | None = None,
    ) -> Response:
        """Count the request, wait as told, then answer with ``body()`` or an injected failure."""
        hang = self.hang if ask.hang is None else ask.hang
        if wait_s is None:
            wait_s = self.latency if ask.latency is None else ask.latency
        fail = self.fail if ask.fail is None else ask.fail
        fail_status = self.fail_status if ask.fail_status is None else ask.fail_status

        self._counter.arrive()
        outcome = "abandoned"  # also what a cancelled handler counts as
        try:
            ended = await self._pause(None if hang else wait_s, request)
            if ended == "client gone":
                return Response(status_code=CLIENT_CLOSED_STATUS)
            if ended == "stopping":
                return JSONResponse(
                    {"error": f"the stand-in {self.kind} service is stopping"},
                    status_code=503, headers={"connection": "close"},
                )
            if fail > 0 and self._roll() < fail:
                outcome = "failed"
                return JSONResponse(
                    {"error": "injected failure", "service": self.kind, "status": fail_status},
                    status_code=fail_status,
                )
            outcome = "answered"
            result = body()
            return result if isinstance(result, Response) else JSONResponse(result)
        finally:
            self._counter.leave(outcome)

    def _roll(self) -> float:
        with self._counter._lock:
            return self._random.random()

    async def _pause(self, seconds: float | None, request: Request) -> str:
        """Wait ``seconds`` (``None``: forever) unless the client leaves or the server stops.

        Returns ``"done"``, ``"client gone"`` or ``"stopping"``. All of it is awaited (one
        small task per request watches for the client leaving), so thousands of waiting
        requests cost the loop next to nothing.
        """
        if seconds == 0:
            return "done"
        released = self._released
        gone = asyncio.ensure_future(_client_gone(request))
        waits: list[asyncio.Future[Any]] = [gone] if released is None else [gone, released]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()  # never the shared `released` future: other requests wait on it
        if released is not None and released.done():
            return "stopping"
        if gone.done() and not gone.cancelled():
            return "client gone"
        return "done"

    async def _watch_for_stop(self, released: asyncio.Future[None]) -> None:
        """Release every waiting request once the server starts stopping, so stop() is quick."""
        while not self._stopping():
            await asyncio.sleep(STOP_POLL_S)
        if not released.done():
            released.set_result(None)

    def __repr__(self) -> str:
        where = self._server.url if self._server is not None else "not started"
        state = "running" if self.running else "stopped"
        return (
            f"<Upstream {self.kind!r} {state} at {where}: latency {self.latency:g} s, "
            f"fail {self.fail:g}, hang {self.hang}>"
        )


def _build_app(up: Upstream) -> FastAPI:
    """The FastAPI app of one stand-in: its own endpoints plus ``/stats``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        up._released = released = asyncio.get_running_loop().create_future()
        watcher = asyncio.create_task(up._watch_for_stop(released))
        try:
            yield
        finally:
            watcher.cancel()

    app = FastAPI(
        title=f"Stand-in {up.kind} service",
        description="A local stand-in for a remote API. Query parameters on every endpoint: "
        "latency (s), fail (0–1), hang (bool), fail_status (5xx).",
        lifespan=lifespan,
    )

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {**up.stats.as_dict(), "defaults": up._settings()}

    @app.post("/stats/reset")
    async def reset() -> dict[str, Any]:
        up.reset()
        return up.stats.as_dict()

    if up.kind == "users":

        @app.get("/users")
        async def list_users(
            request: Request, ask: Behaviour, limit: Annotated[int, Query(ge=1, le=100)] = 5
        ) -> Response:
            return await up._answer(request, ask, lambda: [_user(i) for i in range(1, limit + 1)])

        @app.get("/users/{user_id}")
        async def get_user(
            request: Request, ask: Behaviour, user_id: Annotated[int, Path(ge=1)]
        ) -> Response:
            return await up._answer(request, ask, lambda: _user(user_id))

    elif up.kind == "products":

        @app.get("/products")
        async def list_products(
            request: Request, ask: Behaviour, limit: Annotated[int, Query(ge=1, le=100)] = 5
        ) -> Response:
            return await up._answer(
                request, ask, lambda: [_product(i) for i in range(1, limit + 1)]
            )

        @app.get("/products/{product_id}")
        async def get_product(
            request: Request, ask: Behaviour, product_id: Annotated[int, Path(ge=1)]
        ) -> Response:
            return await up._answer(request, ask, lambda: _product(product_id))

    elif up.kind == "weather":

        @app.get("/weather/{city}")
        async def get_weather(
            request: Request, ask: Behaviour,
            city: Annotated[str, Path(min_length=1, max_length=80)],
        ) -> Response:
            return await up._answer(request, ask, lambda: _weather(city))

    else:  # delay: a httpbin look-alike

        @app.get("/delay/{seconds}")
        async def delay(
            request: Request, ask: Behaviour,
            seconds: Annotated[float, Path(ge=0, le=3600, allow_inf_nan=False)],
        ) -> Response:
            """Answer after ``seconds`` (httpbin's /delay); the path replaces ``latency``."""
            return await up._answer(
                request, ask, lambda: {**_echo(request), "delay": seconds}, wait_s=seconds
            )

        @app.get("/get")
        async def get(request: Request, ask: Behaviour) -> Response:
            return await up._answer(request, ask, lambda: _echo(request))

        @app.get("/status/{code}")
        async def status(
            request: Request, ask: Behaviour, code: Annotated[int, Path(ge=200, le=599)]
        ) -> Response:
            """Answer with exactly this status and an empty body, like httpbin."""
            return await up._answer(request, ask, lambda: Response(status_code=code))

    return app


# -- starting them ---------------------------------------------------------------------------
def start_upstream(
    kind: str,
    *,
    latency: float = 0.0,
    fail: float = 0.0,
    hang: bool = False,
    fail_status: int = DEFAULT_FAIL_STATUS,
    seed: int | None = 0,
    name: str | None = None,
) -> Upstream:
    """Start one stand-in (``"users"``, ``"products"``, ``"weather"`` or ``"delay"``) on 127.0.0.1.

    It is served under ``name`` (default ``upstream-<kind>``), so re-running the cell replaces
    the previous one instead of piling up servers.
    """
    upstream = Upstream(kind, latency=latency, fail=fail, hang=hang,
                        fail_status=fail_status, seed=seed)
    return upstream.start(name=name)


class Upstreams:
    """All stand-ins at once: ``.users``, ``.products``, ``.weather``, ``.delay``; ``stop()``."""

    def __init__(self, upstreams: dict[str, Upstream]) -> None:
        self._by_kind = dict(upstreams)

    @property
    def users(self) -> Upstream:
        return self._by_kind["users"]

    @property
    def products(self) -> Upstream:
        return self._by_kind["products"]

    @property
    def weather(self) -> Upstream:
        return self._by_kind["weather"]

    @property
    def delay(self) -> Upstream:
        return self._by_kind["delay"]

    def __getitem__(self, kind: str) -> Upstream:
        return self._by_kind[_check_kind(kind)]

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self._by_kind.values())

    def __len__(self) -> int:
        return len(self._by_kind)

    @property
    def stats(self) -> dict[str, UpstreamStats]:
        """Each service's counts, by kind."""
        return {kind: up.stats for kind, up in self._by_kind.items()}

    def reset(self) -> None:
        """Reset every service's counts."""
        for up in self:
            up.reset()

    def stop(self) -> None:
        """Stop every service (quick even with requests hanging)."""
        for up in self:
            up.stop()

    def __enter__(self) -> Upstreams:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        lines = [f"  {up.kind:<8} {up.url if up._server else '-'}  "
                 f"({'running' if up.running else 'stopped'})" for up in self]
        return "<Upstreams\n" + "\n".join(lines) + "\n>"


def start_upstreams(
    latency: float = 0.3,
    *,
    fail: float = 0.0,
    hang: bool = False,
    fail_status: int = DEFAULT_FAIL_STATUS,
    seed: int | None = 0,
) -> Upstreams:
    """Start every stand-in, served as ``upstream-users``, ``upstream-products``, and so on.

    ``latency``, ``fail`` and ``hang`` become each service's defaults, except that the delay
    service keeps ``latency=0``: like httpbin, it waits as long as its path says
    (``/delay/0.3``). Re-running replaces the previous set.
    """
    # Check everything before starting anything, so bad input leaves nothing half-started.
    _check_latency(latency)
    _check_fail(fail)
    _check_hang(hang)
    _check_fail_status(fail_status)
    _check_seed(seed)
    started: dict[str, Upstream] = {}
    try:
        for kind in KINDS:
            started[kind] = start_upstream(
                kind, latency=0.0 if kind == "delay" else latency, fail=fail, hang=hang,
                fail_status=fail_status, seed=seed,
            )
    except BaseException:
        for up in started.values():
            up.stop()
        raise
    return Upstreams(started)
