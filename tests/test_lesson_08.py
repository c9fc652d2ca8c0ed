"""The cheat sheet runs headless, its measured table holds within its words, and it links all
twelve misconceptions and every decision-table row to a lesson cell."""

import re

import nbformat
import pytest

from tests.notebook_runner import NOTEBOOKS, Within, check_notebook

# "/ping stayed fast: milliseconds, and on a busy machine at worst a tenth of a second or two"
# (seconds, no ideal; measured 3-17 ms)
STAYED_FAST = Within(0.0, 0.2)
# "about one request's time for the two, 0.3 s (up to 0.45 s on a busy machine)"
# (ideal = one request; measured 1.02-1.04x)
ABOUT_ONE = Within(0.95, 1.5)

CLAIMS = {
    "2 at once to /await": ABOUT_ONE,
    "2 at once to /def": ABOUT_ONE,
    "2 at once to /run-in-threadpool": ABOUT_ONE,
    # "about one job's time when both cores were free ... two jobs' time beside a program that
    # kept one of the course's 2 test cores busy" (ideal = one job's CPU as measured around the
    # run, so the machine's drifting speed cancels out: measured 1.00-1.01 quiet, 1.95 beside a
    # busy program; against the calibrated 0.3 s it once failed on CI at 0.86). Up to 3.3 when
    # more than one other program takes the cores
    "2 at once to /process-pool": Within(0.9, 3.3),
    "worst /ping during /await": STAYED_FAST,
    "worst /ping during /def": STAYED_FAST,
    "worst /ping during /run-in-threadpool": STAYED_FAST,
    "worst /ping during /process-pool": STAYED_FAST,
    # "the two sleeps one after the other on the loop, about 0.6 s" (ideal = one sleep)
    "2 at once to /sleep-in-async": Within(1.9, 2.5),
    # "a probe sent while they ran waited for almost both" (ideal = both sleeps; measured
    # 0.95-0.98x)
    "worst /ping during /sleep-in-async": Within(0.8, 1.2),
}


@pytest.mark.notebook
def test_cheat_sheet_runs_and_its_claims_hold():
    executed = check_notebook("08_cheat_sheet.ipynb", CLAIMS)
    text = executed.text_output()
    # the table printed one line per row, in the order of the decision table
    rows = re.findall(r"^(/\S+)\s+2 at once took [\d.]+ s, worst /ping \d+ ms$", text, re.M)
    assert rows == ["/await", "/def", "/run-in-threadpool", "/process-pool", "/sleep-in-async"]


def _markdown() -> str:
    cells = nbformat.read(NOTEBOOKS / "08_cheat_sheet.ipynb", as_version=4).cells
    return "\n".join(c.source for c in cells if c.cell_type == "markdown")


def test_every_misconception_and_row_links_to_a_lesson_cell():
    """Each of the twelve misconceptions, and each decision-table row, links to a heading in a
    lesson (tests/test_notebooks.py checks that every such link opens)."""
    markdown = _markdown()
    misconceptions = re.findall(r"^\| (\d+) \|.*$", markdown, re.M)
    assert misconceptions == [str(n) for n in range(1, 13)]
    for row in re.findall(r"^\| \d+ \|.*$", markdown, re.M):
        assert re.search(r"\]\(0[0-7]_\w+\.ipynb#[^)]+\)", row), f"no lesson cell linked: {row}"
    table = markdown.split("## The decision table", 1)[1].split("##", 1)[0]
    body_rows = [r for r in table.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(body_rows) == 5, body_rows
    for row in body_rows:
        assert re.search(r"\]\(0[0-7]_\w+\.ipynb#[^)]+\)", row), f"no lesson cell linked: {row}"
    assert "(lesson 05-07, to link)" not in markdown and "(to be measured)" not in markdown
