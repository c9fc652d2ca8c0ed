"""Lesson 04 runs headless, quietly, and its timing claims hold within what its words say."""

import re

import pytest

from tests.lesson_doctor import Blocks, assert_doctor_agrees, doctor_for
from tests.notebook_runner import Within, check_notebook

# The lesson's noise note: a probe that "stayed fast" took milliseconds usually and "at worst a
# tenth of a second or two" (on this 2-core machine under other jobs' load, single probes were
# measured at up to 0.16 s); every such claim is bounded by that, far below the 0.3-0.5 s stalls
# it is compared with. Seconds, no ideal.
STAYED_FAST = Within(0.0, 0.2)

CLAIMS = {
    # One /health probe every 25 ms next to a slow request.
    "worst /health probe while /nap awaits 0.5 s": STAYED_FAST,
    # time.sleep(0.5) in async def: the probe sent 25 ms later waits out "almost the whole" sleep;
    # it cannot wait much longer than the sleep (ideal = the sleep)
    "worst /health probe while /freeze sleeps 0.5 s": Within(0.8, 1.2),
    # the loop watch measures the block at "about the sleep"
    "loop time blocked during /freeze, by the loop watch": Within(0.9, 1.2),
    # the same with an sqlite3 query in async def; ideal = the query's own time (the endpoint's)
    # (lower bound 0.5, not 0.8: the query is short, 0.35 s, and on a loaded 2-core machine the
    # client process can be paused ~0.1 s between sending /report and its first probes, which
    # shortens every probe's wait; 0.5 still tells "waited out the query" from "a few ms")
    "worst /health probe during an sqlite3 query in async def": Within(0.5, 1.3),
    # the same query in a def endpoint: the loop keeps answering ...
    "worst /health probe during an sqlite3 query in def": STAYED_FAST,
    # ... and the watch sees "next to nothing: usually 0 ms ... one short stall of a few tens of
    # milliseconds" on a busy machine (measured 0 ms in 11 of 12 runs, 56 ms once)
    "loop time blocked during the sqlite3 query in def": Within(0.0, 0.1),
    # "15-70 ms of CPU per build on the course's 2-core test machine (the busier the machine, the
    # more)": thread CPU time, median of five builds, so other processes' load counts only through
    # shared caches (measured 29-54 ms under load; 16-37 ms quiet, COURSE.md)
    "CPU time to build one httpx.AsyncClient (median of 5)": Within(0.015, 0.07),
    # five concurrent calls through a sync httpx.Client in async def: strictly one after another,
    # so /health waits behind them (ideal = 5 x 0.3 s) and the watch counts ~all of it as blocked
    "/health p95 while /user/sync-in-async runs": Within(0.8, 1.2),
    "loop time blocked during /user/sync-in-async": Within(0.9, 1.2),
    # "the three fixes ... /health fast (a p95 of milliseconds, at worst a few tens)"
    # (measured 3-43 ms)
    "worst /health p95 of the three fixes": Within(0.0, 0.1),
    # five concurrent calls to a 0.3 s upstream: "about 5 x 0.3 s" (measured 5.1-5.5x), and the
    # fixes "about one call each (0.3 s, up to 0.45 s on a busy machine)" (measured 1.06-1.43x)
    # (ideal = one call)
    "5 calls to a 0.3 s upstream: /user/sync-in-async": Within(4.5, 5.8),
    "5 calls to a 0.3 s upstream: /user/async-client": Within(0.95, 1.5),
    "5 calls to a 0.3 s upstream: /user/plain-def": Within(0.95, 1.5),
    "5 calls to a 0.3 s upstream: /user/threadpool": Within(0.95, 1.5),
    # a client built per request holds the loop "for roughly its CPU time on a quiet machine ...
    # up to three or four times its CPU time" on a busy one (ideal = the median build's CPU time
    # in the kernel; measured 0.83-3.40x under load, 0.67x once in the full suite, where the
    # five builds that set the ideal themselves ran slow: "roughly" allows 0.6)
    "loop time blocked per request in /user/client-per-request": Within(0.6, 4.0),
    # "about one upstream call *plus* the time the builds held the loop" (ideal = exactly that;
    # measured 1.03-1.20x)
    "5 calls through a new client each (ideal: one call + the loop time blocked)": Within(0.9, 1.3),
    # BackgroundTasks: the response goes out "at once", before the task ...
    "/order answered, its async background task still to run": STAYED_FAST,
    # ... then the async task's time.sleep holds the loop "as for /freeze" (ideal = the sleep)
    "worst /health probe while an async background task sleeps 0.5 s": Within(0.8, 1.2),
    "worst /health probe while a def background task sleeps 0.5 s": STAYED_FAST,
    # wait_for around run_in_threadpool: "a 504 after 0.2 s" (ideal = the deadline) ...
    "/export-thread answered after its 0.2 s deadline": Within(0.95, 1.35),
    # ... while the export "ran on to its full 0.6 s (or later ...)": the lower bound is the claim;
    # the upper one allows its thread a late start on a busy machine (ideal = the export;
    # measured 1.00-1.28x)
    "the export it gave up on finished after": Within(0.95, 1.5),
    # time.sleep on the loop under wait_for: "three times too late: after the whole 0.6 s export"
    # (ideal = the 0.2 s deadline, so 3.0 is the export itself)
    "/export-loop answered, deadline 0.2 s": Within(2.9, 3.6),
    # 60 x def time.sleep(0.5) with 40 tokens: "two rounds of 0.5 s ... plus a little ...
    # 1.05-1.3 s in our runs" (ideal = one sleep; measured 2.10-2.51x; three rounds would be 3x)
    "60 slow def requests, 40 tokens": Within(1.95, 2.6),
    # a def /health queues behind the requests without a token: "about a whole sleep"
    "worst /health-def probe while 60 slow def requests hold the pool": Within(0.7, 1.3),
    # an async def /health needs no token: it "stayed fast"
    "worst /health-async probe while 60 slow def requests hold the pool": STAYED_FAST,
    # the loop is idle meanwhile: "next to nothing (usually no block at all; on a busy machine,
    # short stalls adding up to at most a couple of tenths of a second)" (seconds; 0.13 s seen
    # once, on Python 3.12 in the full suite)
    "loop time blocked while 60 slow def requests ran": Within(0.0, 0.2),
}


# What the lesson says blocks the loop, app by app, for the app doctor to agree with
# (tests/lesson_doctor.py). pool_app's outage is in the threadpool, not on the loop.
DOCTOR = {
    "app": {"GET /freeze": Blocks("time.sleep(SLEEP)")},
    "db_app": {"GET /report": Blocks("conn.execute(SLOW_QUERY, (ROWS,))")},
    "api": {
        "GET /user/sync-in-async": Blocks("request.state.sync_client.get(USER_URL)"),
        "GET /user/client-per-request": Blocks("httpx.AsyncClient()"),
    },
    "orders": {"GET /order": Blocks("time.sleep(SLEEP)", "background task")},
    "exports": {"GET /export-loop": Blocks("time.sleep(EXPORT)")},
    "shop.app": {"GET /receipt": Blocks("time.sleep(0.2)")},
    "pool_app": {},
}


@pytest.mark.notebook
def test_lesson_04_runs_and_its_claims_hold(tmp_path):
    doctor = doctor_for(DOCTOR, tmp_path)
    executed = check_notebook("04_blocking_the_loop.ipynb", CLAIMS, doctor=doctor)
    assert_doctor_agrees(doctor, DOCTOR)
    text = executed.text_output()
    measured = {label: m["measured_s"] for label, m in executed.measurements.items()}

    # the loop watch names the culprit lines: the time.sleep, then the sqlite3 execute
    # (no $: the watch may append more, such as a garbage-collection share)
    assert re.search(r"^loop blocked \d+ ms at cell In\[\d+\], line \d+ `time\.sleep\(SLEEP\)  # BAD EXAMPLE: holds the event loop", text, re.M)
    assert re.search(r"^loop blocked \d+ ms at cell In\[\d+\], line \d+ `\(rows,\) = conn\.execute", text, re.M)
    # ... and server.loop_blocks lists it too
    assert re.search(r"^\d+ block\(s\) so far:$", text, re.M)
    assert re.search(r"^  \d+ ms at cell In\[\d+\], line \d+, in freeze\(\): time\.sleep\(SLEEP\)", text, re.M)
    # no probe was late during /nap; during /freeze, those sent in its first 0.3 s were
    assert "during /nap: 0 of 24 probes took longer than 200 ms" in text
    late = int(re.search(r"during /freeze: (\d+) of 24 probes", text).group(1))
    assert late >= 8, late

    # the table: the three fixes leave the loop (next to) unblocked (a loose bound: on a busy
    # machine the watch, at a 10 ms threshold, can catch the loop thread waiting for the GIL)
    rows = dict(re.findall(r"^/user/(\S+) +[\d.]+ s +\d+ ms +(\d+) ms$", text, re.M))
    assert set(rows) == {"sync-in-async", "async-client", "plain-def", "threadpool", "client-per-request"}
    for fix in ["async-client", "plain-def", "threadpool"]:
        assert int(rows[fix]) < 80, rows
    # "client-per-request: concurrent, yet slower" than every fix
    fixes_s = [measured[f"5 calls to a 0.3 s upstream: /user/{fix}"] for fix in ["async-client", "plain-def", "threadpool"]]
    assert measured["5 calls through a new client each (ideal: one call + the loop time blocked)"] > max(fixes_s)

    # the async background task's time.sleep is named by the loop watch
    assert re.search(r"^loop blocked \d+ ms at cell In\[\d+\], line \d+ `time\.sleep\(SLEEP\)  # BAD EXAMPLE: an async task", text, re.M)
    # both deadlines answer 504: one on time, one late (the timing lines above)
    assert re.search(r"^/export-thread answered HTTP 504$", text, re.M)
    assert re.search(r"^/export-loop answered HTTP 504$", text, re.M)

    # blockbuster fails the blocking endpoint, and only that one
    assert re.search(r"^/receipt +FAILED  BlockingError: Blocking call to time\.sleep$", text, re.M)
    assert re.search(r"^/receipt-awaited +passed$", text, re.M)
    assert re.search(r"^/receipt-def +passed$", text, re.M)
    # ASGITransport skips the lifespan: a one-line error, then the user once LifespanManager runs it
    assert re.search(r"^AttributeError: 'State' object has no attribute 'client'$", text, re.M)
    assert re.search(r"^\{'id': 1, 'name': '[^']+'", text, re.M)

    # the threadpool really was 40 threads
    assert "the 60 /work requests ran on 40 worker threads" in text
