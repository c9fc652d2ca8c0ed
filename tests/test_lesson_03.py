"""Lesson 03 runs headless and its timing claims hold."""

import ast
import re

import pytest

from tests.lesson_doctor import GIL, Blocks, assert_doctor_agrees, doctor_for
from tests.notebook_runner import Within, check_notebook

# Figures quoted as "measured" below come from 36 runs of the lesson on the shared 2-core machine,
# some with other test suites running (load average 3–6), some on a quiet machine (below 1).
CLAIMS = {
    # four concurrent requests, ideal = one handler's time (0.3 s)
    # "about 1×": awaiting on the loop, all four overlap (measured 1.01–1.04)
    "4 at once to /async-await": Within(0.98, 1.3),
    # "about 1×": time.sleep in worker threads, all four overlap (measured 1.01–1.08)
    "4 at once to /def-blocking": Within(0.98, 1.3),
    # "about 4×": time.sleep on the loop, strictly one after another, so never under 4 × 0.3 s
    # (measured 4.02–4.37)
    "4 at once to /async-blocking": Within(3.95, 4.6),
    # "about 4× (4.2× to 4.5× ... when it was quiet, up to 4.8× beside busy programs)": the GIL
    # makes the threads take turns. burn_for stops by its thread's CPU clock, so four burns
    # cannot end before 4 x 0.3 s of CPU, one thread at a time: measured 4.19-4.39 over 7 runs,
    # up to two busy programs beside; on a day the machine ran Python about twice as fast,
    # 4.16-4.49 in 6 quiet runs and 4.35-4.77 in 2 beside `while True: pass` (when it sized
    # burns by a rate cached earlier: 3.16-9x)
    "4 at once to /def-cpu": Within(3.95, 5.0),
    # /health probes (seconds, no ideal), p50 over 24 probes sent while the traffic ran.
    # "a few milliseconds, as on a quiet server" while four workers sleep (measured 1.3–3.7 ms)
    "/health p50 while four def requests sleep": Within(0.0, 0.008),
    # "from several milliseconds to a few tens on a quiet machine (up to a couple of hundred when
    # other programs keep the cores busy too)" while one worker computes: measured 6.3–31 ms
    # alone, 120 ms once with the rest of the test suite computing on the other core
    "/health p50 while one def request computes": Within(0.003, 0.25),
    # "tens of milliseconds to more than a second" (measured 34–1366 ms; no probe can wait much
    # longer than the four computations, 1.2–2.7 s of wall time here)
    "/health p50 while four def requests compute": Within(0.02, 2.0),
    # "the worst probe waited longer still, up to a second or two": at least the median's
    # "tens of milliseconds", at most 2.5 s (measured 90–1661 ms)
    "worst /health probe while four def requests compute": Within(0.02, 2.5),
    # "from several milliseconds to, on some runs, a few hundred" (measured 6–318 ms: with the
    # loop watch on, a computing main thread sometimes starves the loop far longer than a
    # computing worker does; a plain uvicorn server measured 7–17 ms)
    "/health p50 while this cell computes": Within(0.003, 0.6),
    # "more than one sleep, up to about two": one round of 40, plus starting 40 new threads from
    # the loop (measured 1.19–1.93)
    "40 blocking def requests, 40 tokens": Within(1.0, 2.2),
    # "about three sleeps": 100 × time.sleep(0.5) in def with 40 tokens runs in three batches
    # (40, 40, 20), so never under 3 × 0.5 s (measured 3.12–3.43)
    "100 blocking def requests, 40 tokens": Within(2.95, 3.9),
    # set_default_executor does not touch anyio's limiter: still three batches (measured 3.11–3.51)
    "100 blocking def requests, set_default_executor(100)": Within(2.95, 3.9),
    # 100 tokens from the lifespan: "one batch: again more than one sleep, up to about two"
    # (measured 1.15–1.87)
    "100 blocking def requests, 100 tokens": Within(1.0, 2.2),
    # The server's CPU for 2000 trivial requests (seconds, no ideal). The lesson claims nothing
    # about the absolute figure (machines differ several-fold), only the ratio, asserted below;
    # these bounds only catch a broken measurement (measured 0.7–1.3 s and 1.0–1.9 s).
    "2000 × /async-hello: server CPU": Within(0.1, 5.0),
    "2000 × /def-hello: server CPU": Within(0.1, 5.0),
}

# "roughly 1.3 to 1.9 times as much CPU over repeated runs (the higher figures when the machine
# was quiet)". Twenty interleaved rounds of 100 measured 1.30–1.65 in 14 runs of the lesson
# (1.30–1.41 on a busy machine, 1.37–1.65 on a quiet one); on a day the machine ran Python about
# twice as fast (async CPU 0.5-0.8 s, was 0.7-1.3 s) 1.67–1.88 in 6 quiet runs and 1.43–1.51 in
# 2 beside `while True: pass`: the thread trip's cost did not shrink with the Python. The same
# measurement with both endpoints async (an A/A check) gave 0.90–1.05, so 1.2 fails when def
# costs nothing extra. (Five rounds of 400, 50 at a time: 1.08–2.08, too noisy.)
DEF_CPU_RATIO = (1.2, 2.1)


def printed_block_lines(text: str, heading: str) -> tuple[int, list[str]]:
    """The count in ``<heading> N`` and the indented block lines printed under it."""
    match = re.search(rf"^{re.escape(heading)} (\d+)\n((?:  .*\n?)*)", text, re.M)
    assert match, f"no line '{heading}' in the output"
    return int(match.group(1)), [line.strip() for line in match.group(2).splitlines()]


# What the lesson says blocks the loop, for the app doctor to agree with (tests/lesson_doctor.py):
# time.sleep in async def holds it; computing def workers "slow it down" through the GIL, which
# the doctor shows as the loop waiting for the GIL at the workers' line. tiny's two routes are
# about CPU cost, not blocking. (wrong_knob and roomy serve the same routes as app.)
DOCTOR = {
    "app": {
        "GET /async-blocking": Blocks("time.sleep(seconds)"),
        "GET /def-cpu": Blocks("burn_for(seconds)", GIL),
    },
    "tiny": {},
}


@pytest.mark.notebook
def test_lesson_03_runs_and_its_claims_hold(tmp_path):
    doctor = doctor_for(DOCTOR, tmp_path)
    executed = check_notebook("03_def_vs_async_def.ipynb", CLAIMS, doctor=doctor)
    assert_doctor_agrees(doctor, DOCTOR)
    measured = {label: m["measured_s"] for label, m in executed.measurements.items()}
    text = executed.text_output()

    # "the keyword decided the thread": async endpoints on the loop, def endpoints on workers
    for path, thread in [
        ("/async-await", "event loop"),
        ("/async-blocking", "event loop"),
        ("/def-blocking", "worker"),
        ("/def-cpu", "worker"),
    ]:
        line = re.search(rf"^{re.escape(path)} +served by (\{{.*\}})$", text, re.M)
        assert line, f"no served-by line for {path}"
        threads = ast.literal_eval(line.group(1))  # the printed {thread label: count}
        assert sum(threads.values()) == 3, (path, threads)
        assert all(name.startswith(thread) for name in threads), (path, threads)

    # the loop watch blames the bad example's line, for about three of its 0.3 s sleeps
    bad_line = r"^loop blocked (\d+) ms at cell .*`time\.sleep\(seconds\)  # BAD EXAMPLE"
    blamed_ms = [float(ms) for ms in re.findall(bad_line, text, re.M)]
    assert 0.75 <= sum(blamed_ms) / 1000 <= 1.3, f"blocks blamed on the bad example: {blamed_ms}"

    # computing in def slows the loop: sleeping workers < one computing worker < four.
    # "at least twice as slow" with one computing worker (measured 2.2–16×) ...
    sleeping = measured["/health p50 while four def requests sleep"]
    one = measured["/health p50 while one def request computes"]
    four = measured["/health p50 while four def requests compute"]
    assert one >= 2 * sleeping, f"one computing worker: p50 {one * 1000:.1f} ms, sleeping {sleeping * 1000:.1f} ms"
    # ... and "far worse again" with four (measured 5–160× the one-worker median)
    assert four >= 3 * one, f"four computing workers: p50 {four * 1000:.0f} ms, one {one * 1000:.1f} ms"
    # a computing cell: "at least twice as slow as beside the sleeping ones" (measured 3–150×)
    cell = measured["/health p50 while this cell computes"]
    assert cell >= 2 * sleeping, f"computing cell: p50 {cell * 1000:.1f} ms, sleeping {sleeping * 1000:.1f} ms"

    # the threadpool reads 40 tokens by default, 40 after set_default_executor, 100 after the
    # limiter is set in the lifespan
    assert re.findall(r"^(\d+)$", text, re.M) == ["40", "40", "100"]
    # ... and the threads that served the 100 requests: 40, still 40, then one per request
    served = re.findall(r"^(\d+) worker threads served the (\d+) requests$", text, re.M)
    assert served == [("40", "40"), ("40", "100"), ("40", "100"), ("100", "100")], served
    # "the threads stay around afterwards": all 40 still alive right after the run
    assert re.search(r"^40 worker threads are still alive after the run$", text, re.M)

    # "def is not free": the trivial def endpoint costs the server's threads more CPU
    cpu_ratio = measured["2000 × /def-hello: server CPU"] / measured["2000 × /async-hello: server CPU"]
    low, high = DEF_CPU_RATIO
    assert low <= cpu_ratio <= high, f"def cost {cpu_ratio:.2f}× the CPU of async def"
    assert f"the def version cost {cpu_ratio:.2f}× the server CPU" in text

    # Last, so that every claim above is checked even when this fails: every block the loop
    # watch filed during the four /def-cpu requests says the loop waited for the GIL and names
    # the workers' line, not an innocent line of the loop's own
    count, blocks = printed_block_lines(text, "loop blocks filed during the four /def-cpu requests:")
    assert count == len(blocks) and count >= 1, f"{count} blocks announced, printed: {blocks}"
    wrong = [b for b in blocks if "GIL" not in b or "burn_for(seconds)" not in b]
    assert not wrong, f"blocks that do not blame the workers' burn_for line: {wrong}"
