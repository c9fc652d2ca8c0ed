"""Lesson 05 runs headless, quietly, and its timing claims hold within what its words say."""

import re

import pytest

from tests.lesson_doctor import Blocks, assert_doctor_agrees, doctor_for
from tests.notebook_runner import Within, check_notebook


def about(ideal_s: float) -> Within:
    """The lesson's noise note: a single request "can come out up to about a tenth of a second
    late" on a busy machine (and a hair early: timers and clocks differ by a millisecond or so).
    As a ratio to the ideal: 0.13 s late at most."""
    return Within(0.97, 1 + 0.13 / ideal_s)


# "answered at once, in milliseconds usually, at worst a tenth of a second or two" (lesson 04's
# bound for a probe that stayed fast on this shared 2-core machine). Seconds, no ideal.
STAYED_FAST = Within(0.0, 0.2)

CLAIMS = {
    # seed 000's claim: 600 ms in turn, 300 ms gathered (measured 1.03-1.04x each)
    "dashboard, calls awaited in turn": about(0.6),
    "dashboard, calls gathered": about(0.3),
    # "About 0.3 s, like gather" (1.03-1.06x usually; 1.41x once, 0.42 s: a tenth late)
    "dashboard, calls in a TaskGroup": about(0.3),
    # products fails after 0.3 s: both endpoints answer 502 "after about 0.3 s"
    "gather, one call fails: 502 after": about(0.3),
    "TaskGroup, one call fails: 502 after": about(0.3),
    # gather leaves the 1 s users call running: it "ended about a second after the request"
    "gather, one call fails: the users call ended after": about(1.0),
    # the TaskGroup cancels it "at the same moment" as the failure, about 0.3 s
    "TaskGroup, one call fails: the users call was cancelled after": about(0.3),
    # return_exceptions=True waits for the slowest call: "after about a second"
    "return_exceptions=True, one call fails: 200 after": about(1.0),
    # "about ten rounds of 0.1 s: 1 s, and a little more" (ideal = 10 rounds; measured
    # 1.07-1.09x; "a little more" allows a quarter)
    "50 calls of 0.1 s, Semaphore(5)": Within(0.97, 1.25),
    # "two or three tenths of a second, not in one call's 0.1 s (0.17-0.30 s in our runs, ...
    # and up to about twice that with a second learner running this lesson on the same two
    # cores)" (ideal = one call; measured 1.7-1.8x on a fast day, 2.4-3.0x on a slower one, 6.4x
    # once with two kernels at once): 0.15-0.75 s
    "50 calls of 0.1 s, Semaphore(50)": Within(1.5, 7.5),
    # 504 "at the deadline, a few milliseconds after it" (measured 1.01-1.02x of 0.5 s)
    "hung upstream, 0.5 s deadline: 504 after": about(0.5),
    # "Five times one call, a little more" (ideal = one call; measured 5.2-5.6x)
    "50 gathered calls of 0.2 s, max_connections=10": Within(4.9, 6.5),
    # "one to four milliseconds of CPU per call in our runs" (thread CPU; measured 1.2-2.2 ms on
    # a fast day, 3.6 ms on a slower one)
    "client CPU per call, 50 calls over 10 connections": Within(0.0008, 0.005),
    # 200 calls through 100 connections: "twice one call, 0.6 s, is the floor ... several times
    # one call (3.4 to 8 times in our runs ...)" (ideal = one call; measured 3.4-4.2x on a fast
    # day, 5.5-8.1x on a slower one)
    "200 gathered calls of 0.3 s, default client (max_connections=100)": Within(2.0, 10.0),
    # "The time over the floor is this thread's CPU and some more: 1.1 to 1.3 times it in our runs
    # on a quiet or lightly loaded machine, and up to 1.7 times with a second learner on the same
    # two cores beside a busy program" (1.11-1.27x in 13 runs quiet, beside a busy program or as
    # two kernels at once; 1.67x as two kernels beside a busy program). Thread CPU does not count
    # the process's waits for a core, so load stretches this ratio, not the figure below.
    "200 gathered calls: the time over two rounds, against this thread's CPU": Within(0.95, 2.0),
    # "between about a third of a second and 1.6 s in our runs (0.36 to 0.58 s on a day this
    # shared machine ran Python fast, over a second on slower ones)": it follows the VM's speed,
    # not the load (0.36 s beside a busy program today; 1.16-1.23 s quiet and 1.63 s with two
    # kernels at once on slower days; a whole run here failed at 0.45 against the old 0.45 floor)
    "client CPU for the 200 calls (this thread only)": Within(0.3, 2.0),
    # four rounds of 0.2 s, "about 0.8 s" (measured 1.03-1.04x)
    "20 concurrent def requests, a pool of 5 connections": about(0.8),
    # the 503s after the 0.3 s pool wait: the slowest of ten (measured 1.07-1.11x alone, 1.15-1.27x
    # with two kernels running the lesson at once; 1.77-2.0x there before serve() froze the heap,
    # when a 0.2 s full garbage collection fell in this run)
    "20 requests, pool wait limited to 0.3 s: the 503s came after": about(0.3),
    # "the same ten rounds either way, about 2 s, a little more" (ideal = 10 rounds; measured
    # 1.03-1.06x; "a little more" over ten rounds allows a fifth)
    "50 orders through /order (pool of 5)": Within(0.97, 1.2),
    "50 orders through /order-capped (pool of 5)": Within(0.97, 1.2),
    # a def health check behind 40 tokens held by pool waiters: "half a second or more"
    # (measured 0.59-0.87 s); seconds, no ideal
    "worst def health check while 50 /order requests wait for the pool": Within(0.4, 1.2),
    "worst def health check while 50 /order-capped requests wait for the pool": STAYED_FAST,
}


# Every route of the lesson's two apps awaits, or waits in a worker thread: the app doctor must
# find no loop block (tests/lesson_doctor.py)
DOCTOR: dict[str, dict[str, Blocks]] = {"app": {}, "shop": {}}


@pytest.mark.notebook
def test_lesson_05_runs_and_its_claims_hold(tmp_path):
    doctor = doctor_for(DOCTOR, tmp_path)
    executed = check_notebook("05_gather.ipynb", CLAIMS, doctor=doctor)
    assert_doctor_agrees(doctor, DOCTOR)
    text = executed.text_output()
    measured = {label: m["measured_s"] for label, m in executed.measurements.items()}

    assert re.search(r"^both answered HTTP 200 and 200$", text, re.M)

    # plain gather: the dashboard answered 502, the users call ran on and was answered
    # (the users line comes after the dashboard's in time order)
    assert re.search(
        r"^ *0\.\d\d s  products   HTTP 503\n *0\.\d\d s  dashboard  answered HTTP 502\n"
        r" *1\.\d\d s  users      HTTP 200$", text, re.M)
    assert re.search(r"^users: 1 requests, .*; 1 answered, 0 failed, 0 abandoned$", text, re.M)
    # TaskGroup: the users call was cancelled and the users service counted it abandoned
    assert re.search(r"^ *0\.\d\d s  users      cancelled$", text, re.M)
    assert re.search(r"^users: 1 requests, .*; 0 answered, 0 failed, 1 abandoned$", text, re.M)
    # the ExceptionGroup, caught with except*
    assert re.search(r"^caught ExceptionGroup with 1 exception\(s\):$", text, re.M)
    assert re.search(r"^  HTTPStatusError: 503 from http://127\.0\.0\.1:\d+/products$", text, re.M)
    # return_exceptions=True: a 200 with the user and products marked unavailable
    assert re.search(r'^HTTP 200: \{"user":\{"id":1,.*"products":null,"unavailable":\["products"\]\}$',
                     text, re.M)

    # the semaphore: the upstream's own counter saw 5; without it, "dozens ... up to all fifty"
    # (35-50 seen)
    assert re.search(r"^Semaphore\(5\):  HTTP 200, the users service saw at most 5 in flight$", text, re.M)
    peak = int(re.search(r"^Semaphore\(50\): HTTP 200, the users service saw at most (\d+) in flight$",
                         text, re.M).group(1))
    assert 20 <= peak <= 50, peak

    # the deadline: a 504 once the hung products call was cancelled, counted abandoned
    assert re.search(r"^ *0\.\d\d s  products   cancelled\n *0\.\d\d s  dashboard  answered HTTP 504$",
                     text, re.M)
    assert re.search(r"^products: 1 requests, .*; 0 answered, 0 failed, 1 abandoned$", text, re.M)

    # the client's pool caps what the upstream sees
    assert re.search(r"^50 of 50 answered; the users service saw at most 10 in flight$", text, re.M)
    assert re.search(r"^200 of 200 answered; the users service saw at most 100 in flight$", text, re.M)
    # PoolTimeout: ten answered, forty failed in the pool, never reaching the upstream
    assert re.search(r"^Counter\(\{'PoolTimeout': 40, 'Response': 10\}\)$", text, re.M)
    assert re.search(r"^the users service received 10 requests$", text, re.M)
    assert re.search(r"^httpx\.PoolTimeout: PoolTimeout\(", text, re.M)

    # the database pool: a staircase on twenty threads, then 503s with a pool wait
    fastest, slowest = map(float, re.search(
        r"^fastest ([\d.]+) s, slowest ([\d.]+) s; 20 of 20 answered, on 20 worker threads$",
        text, re.M).groups())
    assert fastest < 0.35 and slowest > 0.7, (fastest, slowest)  # first and fourth step
    statuses = re.search(r"^\{(?:200|503): 10, (?:200|503): 10\}$", text, re.M)
    assert statuses and "200" in statuses.group(0) and "503" in statuses.group(0)
    # the semaphore in front of the pool freed the tokens: the def health check got faster
    assert (measured["worst def health check while 50 /order-capped requests wait for the pool"]
            < measured["worst def health check while 50 /order requests wait for the pool"] / 3)
