"""Lesson 06 runs headless, quietly, and its timing claims hold within what its words say."""

import re

import pytest

from tests.lesson_doctor import GIL, Blocks, assert_doctor_agrees, doctor_for
from tests.notebook_runner import Within, check_notebook

# Figures quoted as "measured" come from repeated runs of the lesson on the shared 2-core
# machine while other engineers ran notebooks on it (load average 0.6-2.2).
STAYED_FAST = Within(0.0, 0.2)  # lesson 04's "milliseconds, at worst a tenth of a second or two"

CLAIMS = {
    # the calibrated job, alone in the kernel: 0.4 s of CPU (measured 1.01-1.16x). The prose
    # claims no figure here ("look at how long one job takes"); the bound only catches a broken
    # calibration. Measured 1.65x once while two other engineers' checks ran beside the suite:
    # the job was calibrated in a quiet moment and ran in a busy one
    "one job, computed in this cell": Within(0.67, 2.0),
    # the idle server: "about 2 ms" (measured 1.5-1.9 ms); milliseconds
    "/ping p50, nothing else running": Within(0.0, 0.02),
    # "A probe sent just after the job started waited about all of that time (0.93 to 1.02 of
    # it in our runs)" (ideal = the loop watch's block: the job's own time on the loop, which
    # drifts from the calibrated 0.4 s, 0.29-0.66 s measured; "about": 0.8-1.25)
    "worst /ping while one job computes in async def": Within(0.8, 1.25),
    # "6 to 15 ms here ... (a few tens, at worst a couple of hundred, on a machine busy with
    # other programs)"; lesson 03 bounds the same figure at 0.25 s
    "/ping p50 while one job computes in def": Within(0.003, 0.25),
    # "tens of milliseconds to a second or more for the median probe ... (47 ms to 0.94 s in
    # ours, up to 1.4 s in lesson 03's)": 2.0 as lesson 03's bound; the worst probe likewise
    # (0.16-1.05 s)
    "/ping p50 while four jobs compute in def": Within(0.02, 2.0),
    "worst /ping while four jobs compute in def": Within(0.02, 2.5),
    # seed 003 corrected: "about one sleep in all" (measured 1.01-1.02x) ...
    "4 def requests that sleep 0.4 s": Within(0.95, 1.3),
    # ... and "about four jobs' time (3.9 to 4.1 in our runs, quiet or beside programs that kept
    # both cores busy)", "not the two rounds that two cores could give". The ideal is one job's
    # CPU measured around the run (cpu_seconds, quartered), not the calibrated 0.4 s: one job's
    # CPU came out 0.22-0.77 s in the same runs (the suite failed at 2.73 x 0.4 s on 3.12), while
    # this ratio stayed 3.91-4.06 (11 runs, rates cached 0.7-1.6x off, up to two busy programs
    # beside). The client's and the loop's CPU count in the yardstick, hence a little under 4
    "4 def requests that compute 0.4 s": Within(3.6, 4.5),
    # the pool: "about the idle server's figure" (measured 1.5-1.9 ms); the test below also
    # compares it with the idle p50
    "/ping p50 while one job computes in the process pool": Within(0.0, 0.02),
    # two jobs, faster of two runs each, in jobs: the ideal is one job's CPU as measured around
    # the run (cpu_seconds of the kernel and its processes, halved), so the machine's drifting
    # speed cancels out; the calibrated 0.4 s ran 0.41-0.63 s of CPU on a quiet machine, and a
    # bound against it failed on CI at 1.65. Threads: "two jobs' time (1.95 to 2.02 in our
    # runs, quiet or beside a busy program ...)", one core at most, so only the few hundredths
    # of server and client CPU go below 2; more when other programs take the cores
    "2 jobs in def (2 threads)": Within(1.85, 4.0),
    # ... processes "about one job's time on a quiet machine (1.02 to 1.10 ...)", "about two
    # jobs' time as well (1.78 to 2.00 ...)" beside a program that kept a core busy; the ratio to the threads
    # is checked below. Up to 3.5 when more than one other program takes the cores
    "2 jobs in the process pool (2 processes)": Within(0.9, 3.5),
    # more jobs than cores: "two rounds of two: about twice what two jobs took in the cell before
    # (0.7 to 1.4 times that ideal in our runs)" (ideal = 2 x the two-job pool run; measured
    # 0.68-1.1 on a machine shared with other jobs: the two-job run is itself noisy)
    "4 jobs in the process pool (2 processes, 2 cores)": Within(0.6, 1.6),
    # uvicorn, in jobs as above: one worker "about two jobs' time (1.90 to 2.08 in our runs)"
    # (uvicorn's main process and the client count in the yardstick, hence below 2 when quiet;
    # 2.08 beside a busy program) ...
    "2 jobs on 1 uvicorn worker": Within(1.75, 4.5),
    # ... two workers "about half of that on a quiet machine (1.04 to 1.16 jobs' time)", and
    # beside a busy program "the gain shrinks toward none" (1.76-1.92): one worker's bound above; the
    # ratio to one worker is asserted below
    "2 jobs on 2 uvicorn workers": Within(0.9, 4.5),
    # BackgroundTasks: "answers at once ... in milliseconds" (measured 4.8-6.2 ms)
    "slowest /order answer, its task still to run": STAYED_FAST,
    # "starved the loop just as four computing def requests did (a median probe of tens of
    # milliseconds to a second or more)" (measured 0.57-0.81 s)
    "/ping p50 while four def background tasks compute": Within(0.02, 2.0),
    # "left the probes at the idle server's few milliseconds" (measured 1.2-1.9 ms)
    "/ping p50 while four background tasks compute in the pool": Within(0.0, 0.02),
}


# What the lesson says blocks the loop, for the app doctor to agree with (tests/lesson_doctor.py):
# computing on the loop, and computing in several threads at once (requests or background
# tasks), which starves the loop of the GIL. The doctor sends n = N, the lesson's 0.4 s job.
DOCTOR = {
    "app": {
        "GET /cpu-async": Blocks("burn(n)"),
        "GET /cpu-def": Blocks("burn(n)", GIL),
        "GET /order": Blocks("burn(n)", GIL),
    },
}
DOCTOR_OPTIONS = {"app": '{"params": {"n": N}}'}


@pytest.mark.notebook
def test_lesson_06_runs_and_its_claims_hold(tmp_path):
    doctor = doctor_for(DOCTOR, tmp_path, DOCTOR_OPTIONS)
    executed = check_notebook("06_cpu_work.ipynb", CLAIMS, doctor=doctor)
    assert_doctor_agrees(doctor, DOCTOR)
    text = executed.text_output()
    measured = {label: m["measured_s"] for label, m in executed.measurements.items()}

    # the machine's cores and the switch interval are stated
    assert re.search(r"^CPU cores: \d+ in the machine, \d+ usable by this kernel$", text, re.M)
    assert re.search(r"^GIL switch interval: 5 ms$", text, re.M)
    # async def: the loop watch blames the burn line
    assert re.search(r"^loop blocked \d+ ms at cell In\[\d+\], line \d+ `burn\(n\)  # BAD EXAMPLE: computes on the event loop", text, re.M)
    # one job in def costs the probes something, the pool nothing measurable
    idle = measured["/ping p50, nothing else running"]
    assert measured["/ping p50 while one job computes in def"] > idle
    assert measured["/ping p50 while one job computes in the process pool"] < idle + 0.01
    assert measured["/ping p50 while four jobs compute in def"] > measured["/ping p50 while one job computes in def"]
    # four jobs in def: the watch's verdict is a GIL wait, blamed on the worker threads' burn line
    verdicts = re.findall(r"^cause='(\w+)' waited_for_gil=(\w+) threads: (.+)$", text, re.M)
    assert verdicts, "no loop-watch verdict printed for the four def jobs"
    assert all(cause == "gil" and waited == "True" and "worker" in threads for cause, waited, threads in verdicts), verdicts
    said = re.findall(r"^  (loop blocked .*)$", text, re.M)
    assert said and all("waiting for the GIL while worker" in line and "burn(n)  # computes in a worker thread" in line for line in said), said
    # threads vs processes, counted in jobs: "the pool about halved the time (0.50 to 0.56 of the
    # threads')" on a quiet machine, "0.89 to 1.00 of the threads'" beside a program that kept a
    # core busy: never slower, give or take the noise of one run. In wall time alone the same
    # runs beside a busy program gave 0.68-1.12 (the machine's speed drifted between them)
    ratio = float(re.search(r"^counted in jobs, the pool took ([\d.]+) of the threads' time$", text, re.M).group(1))
    assert 0.4 <= ratio <= 1.05, ratio
    # "kept one core busy, never more": the GIL, read from the CPU the run cost; the processes
    # "two cores busy" on a quiet machine, one beside a busy program (at least one, always)
    cores = re.search(r"^cores kept busy: threads ([\d.]+), processes ([\d.]+)$", text, re.M)
    assert cores, "no 'cores kept busy' line"
    assert float(cores.group(1)) <= 1.1 and 0.9 <= float(cores.group(2)) <= 2.1, cores.group(0)
    # a notebook function in a spawn pool: the cell sees BrokenProcessPool, the worker's cause is shown
    assert re.search(r"^the cell got: +BrokenProcessPool: A process in the process pool was terminated abruptly", text, re.M)
    assert re.search(r"^the worker died of: +AttributeError: Can't get attribute 'cube' on <module '__main__'", text, re.M)
    assert re.search(r"^burn\(1000\) in a worker process: 832504$", text, re.M)
    assert re.search(r"^default start method here: (fork|spawn|forkserver)$", text, re.M)
    # uvicorn workers: two processes served the two jobs, in "about half" one worker's time on a
    # quiet machine (measured 0.53-0.58), and "the gain shrinks toward none" when another
    # program keeps a core busy (0.96 measured beside a `while True` process): never slower,
    # give or take the noise of one run. Counted in jobs, as the lesson reports them, so the
    # machine's drift between the two runs cancels out
    assert "with 2 workers, the 2 jobs were served by 2 different processes" in text
    one = executed.measurements["2 jobs on 1 uvicorn worker"]
    two = executed.measurements["2 jobs on 2 uvicorn workers"]
    one_jobs, two_jobs = one["measured_s"] / one["ideal_s"], two["measured_s"] / two["ideal_s"]
    assert two_jobs / one_jobs <= 1.1, f"2 workers {two_jobs:.2f} jobs' time, 1 worker {one_jobs:.2f}"
    # each worker's memory: "a few tens of MiB" private (measured 33 MiB), RSS >= PSS >= USS
    memory = re.findall(r"^worker \d+: RSS (\d+) MiB, PSS (\d+) MiB, private \(USS\) (\d+) MiB$", text, re.M)
    assert len(memory) == 2, memory
    for rss, pss, uss in memory:
        assert int(rss) >= int(pss) >= int(uss) and 10 <= int(uss) <= 100, memory
    # the GIL status line
    assert re.search(r"^Python 3\.\d+\.\d+\S*: (GIL enabled = (True|False)|no free-threaded build before 3\.13; the GIL is on)$", text, re.M)
