"""Lesson 00 runs headless, quietly, and its timing claims hold."""

import re

import pytest

from tests.notebook_runner import Within, check_notebook

CLAIMS = {
    # "it should take about half a second": one 0.5 s await plus a loopback round trip; it cannot
    # beat the sleep, and "about half a second" stops being true well before 0.65 s (1.3×)
    "one request to /hello, which waits 0.5 s": Within(1.0, 1.3),
    # "about half a second" for ten overlapping 0.5 s waits, nowhere near ten waits (5 s); the
    # same words as above, so the same upper bound
    "10 requests at once, each waiting 0.5 s": Within(1.0, 1.3),
}

# What Python itself says when uvicorn.run() meets the kernel's running loop: 3.11 through
# asyncio.Runner, 3.12+ through asyncio.run. The cell must print this, not 3.11's clean-up error.
REAL_CAUSE = r"^uvicorn\.run\(\) failed: (Runner|asyncio)\.run\(\) cannot be called from a running event loop$"


@pytest.mark.notebook
def test_lesson_00_runs_and_its_claims_hold():
    # no allowed_stderr: the uvicorn.run() cell must not leak its "never awaited" warnings
    executed = check_notebook("00_start_here.ipynb", CLAIMS)
    text = executed.text_output()
    assert re.search(REAL_CAUSE, text, re.M), "the uvicorn.run() cell does not print the real cause"
    assert "Cannot run the event loop while another loop is running" not in text
