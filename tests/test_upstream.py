"""Stand-in upstream services: real servers, real HTTP, honest timing tolerances."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from helpers import load, running_servers
from helpers.upstream import (
    KINDS,
    Upstream,
    Upstreams,
    UpstreamStats,
    start_upstream,
    start_upstreams,
)

# A 0.3 s wait measured from a client in the same process on a busy 2-core machine: never
# early (asyncio.sleep does not return early; 20 ms slack for clock granularity), and well
# under twice the wait.
LATENCY = 0.3
LOW, HIGH = LATENCY - 0.02, 0.6


@pytest.fixture
def start() -> Iterator[Callable[..., Upstream]]:
    """``start(kind, **defaults)`` -> a running stand-in, stopped after the test."""
    started: list[Upstream] = []

    def starter(kind: str, **defaults: object) -> Upstream:
        up = start_upstream(kind, **defaults)  # type: ignore[arg-type]
        started.append(up)
        return up

    yield starter
    for up in started:
        up.stop()


def timed_get(url: str) -> tuple[httpx.Response, float]:
    """GET ``url`` and time only the request: the client is built and connected beforehand.

    Building an httpx client costs 30–70 ms of CPU (its SSL context), more on a busy
    machine; that is the client's cost, not the upstream's latency, so it stays off the clock.
    """
    base = url.split("/", 3)
    with httpx.Client() as client:
        client.get("/".join(base[:3]) + "/stats")  # connect (not counted by the stand-in)
        began = time.perf_counter()
        response = client.get(url)
        return response, time.perf_counter() - began


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


# -- what each service answers -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "path", "keys"),
    [
        ("users", "/users/7", {"id", "name", "email", "city"}),
        ("products", "/products/3", {"id", "name", "price", "currency", "in_stock"}),
        ("weather", "/weather/Lisbon", {"city", "temperature_c", "conditions"}),
        ("delay", "/delay/0", {"args", "headers", "origin", "url", "delay"}),
        ("delay", "/get?q=1", {"args", "headers", "origin", "url"}),
    ],
)
def test_each_service_answers_small_json(start, kind, path, keys):
    up = start(kind)
    response = httpx.get(up.url + path)
    assert response.status_code == 200
    assert keys <= set(response.json())
    assert up.url.startswith("http://127.0.0.1:")


def test_answers_are_stable_and_lists_work(start):
    users, weather = start("users"), start("weather")
    assert httpx.get(users.url + "/users/2").json() == httpx.get(users.url + "/users/2").json()
    assert len(httpx.get(users.url + "/users?limit=3").json()) == 3
    lisbon = httpx.get(weather.url + "/weather/Lisbon").json()
    assert lisbon == httpx.get(weather.url + "/weather/Lisbon").json()
    assert lisbon["city"] == "Lisbon"


def test_status_endpoint_answers_that_status(start):
    delay = start("delay")
    assert httpx.get(delay.url + "/status/418").status_code == 418
    assert delay.stats.answered == 1 and delay.stats.failed == 0


# -- latency ----------------------------------------------------------------------------------
def test_default_latency_is_honoured(start):
    up = start("users", latency=LATENCY)
    response, took = timed_get(up.url + "/users/1")
    assert response.status_code == 200
    assert LOW <= took <= HIGH, f"took {took:.3f} s for a {LATENCY} s latency"


def test_latency_per_call_overrides_the_default(start):
    up = start("products", latency=2.0)
    _, took = timed_get(up.url + f"/products/1?latency={LATENCY}")
    assert LOW <= took <= HIGH
    up.latency = 0.0  # defaults change while it runs
    _, took = timed_get(up.url + "/products/1")
    assert took < 0.25


def test_delay_waits_as_long_as_its_path_says(start):
    delay = start("delay")
    response, took = timed_get(delay.url + f"/delay/{LATENCY}")
    assert response.json()["delay"] == LATENCY
    assert LOW <= took <= HIGH


def test_start_upstreams_sets_latency_on_the_apis():
    with start_upstreams(latency=LATENCY) as up:
        assert [u.latency for u in up] == [LATENCY, LATENCY, LATENCY, 0.0]
        _, took = timed_get(up.weather.url + "/weather/Oslo")
        assert LOW <= took <= HIGH


def test_gather_takes_the_longest_call_not_the_sum():
    """Lesson 05's claim: users then products ≈ 600 ms; both at once ≈ 300 ms."""

    async def fetch_both(up: Upstreams) -> tuple[float, float]:
        async with httpx.AsyncClient() as client:
            await client.get(up.users.url + "/users/1?latency=0")  # open connections first
            await client.get(up.products.url + "/products/1?latency=0")
            began = time.perf_counter()
            await client.get(up.users.url + "/users/1")
            await client.get(up.products.url + "/products/1")
            sequential = time.perf_counter() - began
            began = time.perf_counter()
            await asyncio.gather(
                client.get(up.users.url + "/users/1"), client.get(up.products.url + "/products/1")
            )
            return sequential, time.perf_counter() - began

    with start_upstreams(latency=LATENCY) as up:
        sequential, together = asyncio.run(fetch_both(up))
    assert 2 * LOW <= sequential <= 2 * LATENCY + 0.3, f"sequential {sequential:.3f} s"
    assert LOW <= together <= HIGH, f"gather {together:.3f} s"


# -- failures ---------------------------------------------------------------------------------
def test_fail_one_always_fails(start):
    up = start("users", fail=1)
    statuses = [httpx.get(up.url + "/users/1").status_code for _ in range(5)]
    assert statuses == [503] * 5
    assert httpx.get(up.url + "/users/1?fail_status=500").status_code == 500
    assert httpx.get(up.url + "/users/1?fail=0").status_code == 200
    assert up.stats.failed == 6 and up.stats.answered == 1


def test_fail_per_call_on_a_healthy_service(start):
    up = start("weather")
    assert httpx.get(up.url + "/weather/Lima?fail=1").status_code == 503
    assert httpx.get(up.url + "/weather/Lima").status_code == 200


def test_failures_are_seeded_so_reruns_match(start):
    up = start("products", fail=0.5, seed=42)
    twin = start("products", fail=0.5, seed=42, name="upstream-products-twin")

    def statuses(target: Upstream) -> list[int]:
        with httpx.Client() as client:
            return [client.get(target.url + "/products/1").status_code for _ in range(20)]

    first = statuses(up)
    assert set(first) == {200, 503}  # some of each
    up.reset()
    assert statuses(up) == first  # reset re-seeds: the same requests fail again
    assert statuses(twin) == first  # same seed, same dice


# -- hangs ------------------------------------------------------------------------------------
def test_hang_is_ended_by_the_client_timeout_and_blocks_nothing(start):
    up = start("users")

    async def scenario() -> tuple[float, float, str]:
        async with httpx.AsyncClient() as client:
            began = time.perf_counter()
            hung = asyncio.create_task(client.get(up.url + "/users/1?hang=true", timeout=0.5))
            await asyncio.sleep(0.1)
            quick = await client.get(up.url + "/users/2", timeout=2)  # the loop still serves
            quick_s = time.perf_counter() - began - 0.1
            assert quick.status_code == 200
            try:
                await hung
                outcome = "answered"
            except httpx.TimeoutException:
                outcome = "timed out"
            return quick_s, time.perf_counter() - began, outcome

    quick_s, hung_s, outcome = asyncio.run(scenario())
    assert outcome == "timed out"
    assert 0.48 <= hung_s <= 1.0, f"the client's 0.5 s timeout ended it after {hung_s:.3f} s"
    assert quick_s < 0.25, f"a normal request took {quick_s:.3f} s beside a hung one"
    wait_until(lambda: up.in_flight == 0)  # the stand-in notices the client left
    assert up.stats.abandoned == 1 and up.stats.answered == 1


def test_a_client_that_gives_up_on_a_slow_answer_counts_as_abandoned(start):
    up = start("weather", latency=2.0)
    with pytest.raises(httpx.TimeoutException):
        httpx.get(up.url + "/weather/Quito", timeout=0.3)
    wait_until(lambda: up.in_flight == 0, timeout=1.0)  # long before the 2 s latency is up
    assert up.stats.abandoned == 1 and up.stats.answered == 0


@pytest.mark.parametrize("how", ["Server.stop", "Upstream.stop", "serve again by name"])
def test_stop_is_quick_with_a_hung_request_in_flight(start, how):
    up = start("products", hang=True)
    outcome: list[object] = []

    def client() -> None:
        try:
            outcome.append(httpx.get(up.url + "/products/1", timeout=10).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=client)
    caller.start()
    wait_until(lambda: up.in_flight == 1)
    began = time.perf_counter()
    if how == "Server.stop":
        up.server.stop()
    elif how == "Upstream.stop":
        up.stop()
    else:
        start("products")  # same name, upstream-products: replaces the old server
    took = time.perf_counter() - began
    caller.join(timeout=2)
    assert not caller.is_alive(), "the hung client was not released"
    assert took < 1.5, f"stop took {took:.3f} s with a hung request"
    assert not up.running
    # released at once: a 503 "stopping" answer (or, at worst, a closed connection)
    assert outcome == [503] or isinstance(outcome[0], httpx.HTTPError), outcome
    assert up.stats.in_flight == 0 and up.stats.abandoned == 1


# -- counting ---------------------------------------------------------------------------------
def test_peak_in_flight_equals_the_concurrency(start):
    up = start("users", latency=LATENCY)
    result = load(up.server, "/users/1", n=10, concurrency=10, progress=False)
    assert result.ok == 10
    assert up.peak_in_flight == 10 and up.total == 10 and up.in_flight == 0
    assert LOW <= result.wall_s <= HIGH


def test_a_semaphore_caps_what_the_upstream_sees(start):
    up = start("weather", latency=LATENCY)

    async def throttled() -> float:
        gate = asyncio.Semaphore(3)
        async with httpx.AsyncClient() as client:

            async def one(i: int) -> int:
                async with gate:
                    return (await client.get(f"{up.url}/weather/city{i}")).status_code

            began = time.perf_counter()
            statuses = await asyncio.gather(*(one(i) for i in range(10)))
            assert statuses == [200] * 10
            return time.perf_counter() - began

    wall = asyncio.run(throttled())
    assert up.stats.peak_in_flight == 3 and up.stats.total == 10
    waves = 4  # ceil(10 / 3)
    assert waves * LOW <= wall <= waves * LATENCY + 0.5, f"{wall:.3f} s for 4 waves"


def test_stats_endpoint_matches_the_attributes_and_resets(start):
    up = start("delay")
    for _ in range(3):
        httpx.get(up.url + "/get")
    httpx.get(up.url + "/get?fail=1")
    served = httpx.get(up.url + "/stats").json()
    assert served["total"] == up.total == 4  # /stats itself is not counted
    assert isinstance(up.stats, UpstreamStats)
    assert {k: served[k] for k in up.stats.as_dict()} == up.stats.as_dict()
    assert served["defaults"] == {"latency": 0.0, "fail": 0.0, "hang": False,
                                  "fail_status": 503, "seed": 0}
    assert (up.stats.answered, up.stats.failed) == (3, 1)

    up.reset()
    assert up.stats == UpstreamStats("delay", 0, 0, 0, 0, 0, 0)
    httpx.get(up.url + "/get")
    assert httpx.post(up.url + "/stats/reset").json()["total"] == 0
    assert up.total == 0


def test_reset_keeps_requests_still_in_flight(start):
    up = start("users", hang=True)

    def client() -> None:
        try:
            httpx.get(up.url + "/users/1", timeout=0.6)
        except httpx.TimeoutException:
            pass

    caller = threading.Thread(target=client)
    caller.start()
    wait_until(lambda: up.in_flight == 1)
    up.reset()
    assert (up.in_flight, up.peak_in_flight, up.total) == (1, 1, 0)
    caller.join(timeout=3)
    wait_until(lambda: up.in_flight == 0)


# -- starting and stopping --------------------------------------------------------------------
def test_start_upstreams_uses_stable_names_and_rerun_replaces():
    first = start_upstreams(latency=0.0)
    try:
        assert [up.kind for up in first] == list(KINDS)
        assert [up.name for up in first] == [f"upstream-{k}" for k in KINDS]
        assert first["weather"] is first.weather
        second = start_upstreams(latency=0.0)
    except BaseException:
        first.stop()
        raise
    with second:
        assert not any(up.running for up in first)
        assert all(up.running for up in second)
        assert httpx.get(second.delay.url + "/get").status_code == 200
        assert set(second.stats) == set(KINDS)
    assert not any(up.running for up in second)
    assert not [s for s in running_servers() if s.name.startswith("upstream-")]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (
            lambda: start_upstream("user"),
            ValueError,
            ["'users'", "'products'", "'weather'", "'delay'"],
        ),
        (lambda: start_upstream("users", latency=-0.1), ValueError, ["latency", "0 or more"]),
        (lambda: start_upstream("users", latency=float("inf")), ValueError, ["hang=True"]),
        (lambda: start_upstream("users", fail=1.5), ValueError, ["fail", "0 to 1"]),
        (lambda: start_upstream("users", fail=-0.1), ValueError, ["0 to 1"]),
        (lambda: start_upstream("users", fail_status=404), ValueError, ["5xx"]),
        (lambda: start_upstream("users", hang="yes"), TypeError, ["True or False"]),
        (lambda: start_upstreams(latency=-1), ValueError, ["latency"]),
        (lambda: start_upstreams(fail=2), ValueError, ["0 to 1"]),
        (lambda: Upstreams({})["nope"], ValueError, ["'users'"]),
    ],
)
def test_bad_input_raises_naming_the_valid_values(call, error, words):
    with pytest.raises(error) as caught:
        call()
    for word in words:
        assert word in str(caught.value)
    assert not [s for s in running_servers() if s.name.startswith("upstream-")]


def test_bad_settings_on_a_running_service_are_refused(start):
    up = start("users", latency=0.1)
    with pytest.raises(ValueError, match="latency"):
        up.latency = -1
    with pytest.raises(ValueError, match="0 to 1"):
        up.fail = 3
    assert (up.latency, up.fail) == (0.1, 0.0)


@pytest.mark.parametrize("query", ["latency=-1", "fail=2", "hang=maybe", "fail_status=404",
                                   "latency=inf"])
def test_bad_query_parameters_answer_422(start, query):
    up = start("users")
    response = httpx.get(f"{up.url}/users/1?{query}")
    assert response.status_code == 422
    assert up.total == 0


def test_not_started_upstream_explains_itself():
    up = Upstream("users")
    with pytest.raises(RuntimeError, match="not been started"):
        _ = up.url
    assert "not started" in repr(up)
