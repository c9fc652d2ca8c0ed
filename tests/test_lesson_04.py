"""Lesson 04 runs headless and its timing claims hold."""

import re

import pytest

from tests.notebook_runner import Within, check_notebook

CLAIMS = {
    # One /health probe every 25 ms next to a slow request (no ideal: bounds in seconds).
    # Awaited sleep: the probes never notice ("only milliseconds").
    "worst /health probe while /nap awaits 0.5 s": Within(0.0, 0.1),
    # time.sleep(0.5) in async def: the probe sent 25 ms later waits out almost the whole sleep;
    # the tolerance: at least 80 % of the sleep (ideal = the sleep).
    "worst /health probe while /freeze sleeps 0.5 s": Within(0.8, 1.5),
    # the loop watch measures the block at about the sleep
    "loop time blocked during /freeze, by the loop watch": Within(0.85, 1.4),
    # the same with an sqlite3 query in async def; ideal = the query's own time (the endpoint's)
    # (lower bound 0.5, not 0.8: the query is short, 0.35 s, and on a loaded 2-core machine the
    # client process can be paused ~0.1 s between sending /report and its first probes, which
    # shortens every probe's wait; 0.5 still tells "waited out the query" from "a few ms")
    "worst /health probe during an sqlite3 query in async def": Within(0.5, 1.5),
    # the same query in a def endpoint: the loop keeps answering (seconds)
    "worst /health probe during an sqlite3 query in def": Within(0.0, 0.15),
    # five concurrent calls through a sync httpx.Client in async def: strictly one after another,
    # so /health waits behind them (ideal = 5 × 0.3 s) and the watch counts ~all of it as blocked
    "/health p95 while /user/sync-in-async runs": Within(0.6, 1.3),
    "loop time blocked during /user/sync-in-async": Within(0.85, 1.4),
    # the three fixes keep /health in the milliseconds (seconds)
    "worst /health p95 of the three fixes": Within(0.0, 0.15),
    # building an httpx.AsyncClient per request blocks the loop on every request ("roughly 20–40 ms
    # per request on the course's 2-core test machine", measured 18–37 ms; bounds 5–150 ms)
    "loop time blocked per request in /user/client-per-request": Within(0.005, 0.15),
    # five concurrent calls to a 0.3 s upstream (ideal = one call)
    "5 calls to a 0.3 s upstream: /user/sync-in-async": Within(4.5, 6.5),
    "5 calls to a 0.3 s upstream: /user/async-client": Within(0.95, 1.6),
    "5 calls to a 0.3 s upstream: /user/plain-def": Within(0.95, 1.6),
    "5 calls to a 0.3 s upstream: /user/threadpool": Within(0.95, 1.6),
    # "nearly as fast": one new client (SSL context, new connection) per request on top
    "5 calls to a 0.3 s upstream: /user/client-per-request": Within(0.95, 2.2),
    # 60 × def time.sleep(0.5) with 40 tokens: two rounds (ideal = one sleep)
    "60 slow def requests, 40 tokens": Within(1.8, 3.0),
    # a def /health queues behind the requests without a token: about one sleep (ideal = sleep)
    "worst /health-def probe while 60 slow def requests hold the pool": Within(0.6, 1.5),
    # an async def /health needs no token (seconds)
    "worst /health-async probe while 60 slow def requests hold the pool": Within(0.0, 0.15),
    # the loop is idle meanwhile: the watch sees "next to nothing" (seconds)
    "loop time blocked while 60 slow def requests ran": Within(0.0, 0.15),
}


@pytest.mark.notebook
def test_lesson_04_runs_and_its_claims_hold():
    executed = check_notebook("04_blocking_the_loop.ipynb", CLAIMS)
    text = executed.text_output()

    # the loop watch names the culprit lines: the time.sleep, then the sqlite3 execute
    assert re.search(r"^loop blocked \d+ ms at cell In\[\d+\], line \d+ `time\.sleep\(SLEEP\)", text, re.M)
    assert re.search(r"^loop blocked \d+ ms at cell In\[\d+\], line \d+ `\(rows,\) = conn\.execute", text, re.M)
    # ... and server.loop_blocks lists it too
    assert re.search(r"^\d+ block\(s\) so far:$", text, re.M)
    assert re.search(r"^  \d+ ms at cell In\[\d+\], line \d+, in freeze\(\): time\.sleep\(SLEEP\)", text, re.M)
    # no probe was late during /nap; during /freeze, most of those sent during the sleep were
    assert "during /nap: 0 of 24 probes took longer than 100 ms" in text
    late = int(re.search(r"during /freeze: (\d+) of 24 probes", text).group(1))
    assert late >= 10, late

    # the table: the three fixes leave the loop (next to) unblocked (a loose bound: on a busy
    # machine the watch, at a 10 ms threshold, can catch the loop thread waiting for the GIL)
    rows = dict(re.findall(r"^/user/(\S+) +[\d.]+ s +\d+ ms +(\d+) ms$", text, re.M))
    assert set(rows) == {"sync-in-async", "async-client", "plain-def", "threadpool", "client-per-request"}
    for fix in ["async-client", "plain-def", "threadpool"]:
        assert int(rows[fix]) < 80, rows

    # blockbuster fails the blocking endpoint, and only that one
    assert re.search(r"^/receipt +FAILED  BlockingError: Blocking call to time\.sleep$", text, re.M)
    assert re.search(r"^/receipt-awaited +passed$", text, re.M)
    assert re.search(r"^/receipt-def +passed$", text, re.M)

    # the threadpool really was 40 threads
    assert "the 60 /work requests ran on 40 worker threads" in text
