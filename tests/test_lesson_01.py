"""Lesson 01 runs headless and its timing claims hold."""

import pytest

from tests.lesson_doctor import Blocks, assert_doctor_agrees, doctor_for
from tests.notebook_runner import Within, check_notebook

# Each kitchen report is the real wall time of one kitchen (thread start to the last dish served)
# against its ideal minutes × 20 ms. Every wait is a sleep that never ends early, so a kitchen is
# never faster than its ideal (0.98 allows for timer rounding). The prose says the measured
# kitchens "land close to" the arithmetic and quotes "about" the ideal minutes: within a quarter.
# Measured in 4 runs on the shared 2-core machine (load average 3–6): 1.002–1.071×; with three
# CPU hogs running, a kitchen once came in at 1.23×.
CLOSE = Within(0.98, 1.25)

CLAIMS = {
    # the predict-then-measure kitchen: 72 min (1.44 s) vs 22 min (0.44 s)
    "6 orders, 2 min prep, 10 min oven: sync chef": CLOSE,
    "6 orders, 2 min prep, 10 min oven: async chef": CLOSE,
    # one order: a tie at 12 min (0.24 s)
    "1 order: sync chef": CLOSE,
    "1 order: async chef": CLOSE,
    # prep dominates: 60 min vs 50 min
    "6 orders, 8 min prep, 2 min oven: sync chef": CLOSE,
    "6 orders, 8 min prep, 2 min oven: async chef": CLOSE,
    # three chefs each: 24 vs 14 min, and 20 vs 18 min on the prep-heavy menu
    "3 chefs, 2 min prep, 10 min oven: 3 sync chefs": CLOSE,
    "3 chefs, 2 min prep, 10 min oven: 3 async chefs": CLOSE,
    "3 chefs, 8 min prep, 2 min oven: 3 sync chefs": CLOSE,
    "3 chefs, 8 min prep, 2 min oven: 3 async chefs": CLOSE,
    # five requests over real HTTP. "About one oven time (a little more ..., and on a busy machine
    # up to about one and a half)": awaited, all five overlap in one 0.3 s wait plus loopback
    # overhead (measured 1.03–1.04× alone, 1.45× once with the rest of the suite beside it)
    "5 orders at once: /walk-away": Within(0.98, 1.55),
    # "about five": time.sleep in async def, five ovens back to back (measured 1.006–1.013×)
    "5 orders at once: /stand-and-watch": Within(0.98, 1.2),
}


# What the lesson says blocks the loop, for the app doctor to agree with (tests/lesson_doctor.py)
DOCTOR = {"app": {"GET /stand-and-watch": Blocks("time.sleep(OVEN_S)")}}


@pytest.mark.notebook
def test_lesson_01_runs_and_its_claims_hold(tmp_path):
    doctor = doctor_for(DOCTOR, tmp_path)
    executed = check_notebook("01_kitchen.ipynb", CLAIMS, doctor=doctor)
    assert_doctor_agrees(doctor, DOCTOR)
    m = {label: value["measured_s"] for label, value in executed.measurements.items()}
    six = "6 orders, 2 min prep, 10 min oven"
    pasta = "6 orders, 8 min prep, 2 min oven"
    # "72 minutes against 22 ... over three times as many" (ideal 3.27; measured 3.23–3.25)
    assert 2.9 <= m[f"{six}: sync chef"] / m[f"{six}: async chef"] <= 3.4
    # "a lead of about a fifth" on the pasta menu (ideal 1.20; measured 1.16–1.20)
    assert 1.1 <= m[f"{pasta}: sync chef"] / m[f"{pasta}: async chef"] <= 1.3
    # "a tie: about 12 minutes each" (measured 0.995–1.021)
    assert 0.9 <= m["1 order: sync chef"] / m["1 order: async chef"] <= 1.1
    # three sync chefs need "about 24 minutes ... roughly what one asynchronous chef managed"
    # at 22 (ideal 1.09; measured 1.08–1.10) ...
    ratio = m["3 chefs, 2 min prep, 10 min oven: 3 sync chefs"] / m[f"{six}: async chef"]
    assert 0.95 <= ratio <= 1.25
    # ... and a third of one sync chef's 72 (ideal 0.33; measured 0.335–0.339)
    ratio = m["3 chefs, 2 min prep, 10 min oven: 3 sync chefs"] / m[f"{six}: sync chef"]
    assert 0.3 <= ratio <= 0.4
    # pasta with three chefs: 60 → 20 and 50 → 18 min, "nearly three times faster" for both
    # (ideal 0.33 and 0.36; measured 0.33–0.34 and 0.34–0.36); 0.4 is 2.5 times faster
    for habit, one_chef in [("3 sync chefs", "sync chef"), ("3 async chefs", "async chef")]:
        ratio = m[f"3 chefs, 8 min prep, 2 min oven: {habit}"] / m[f"{pasta}: {one_chef}"]
        assert 0.3 <= ratio <= 0.4, (habit, ratio)
    # the server version: "about one oven time against about five" (ideal 5; measured 4.83–4.91
    # alone, 5.61 once with the suite beside it). The bounds follow from the two claims above:
    # at least 0.98 × 5 over 1.55 ovens, at most 1.2 × 5 over 0.98 of one
    ratio = m["5 orders at once: /stand-and-watch"] / m["5 orders at once: /walk-away"]
    assert 3.1 <= ratio <= 6.2, ratio
    text = executed.text_output()
    # the arithmetic table the prose reads from: 5/h flat for the sync chef, 30/h ceiling async
    assert "            60         5.0         27.7" in text
