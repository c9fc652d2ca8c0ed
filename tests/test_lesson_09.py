"""The capstone runs headless and shows what it says it shows: all 13 functional tests green,
the doctor's six blocking routes with the part of the app and the line, and a check that says
'not yet' until the shop is fixed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import capstone
from tests.notebook_runner import check_notebook
from tests.test_capstone import ALSO, PROBLEMS, line_of


@pytest.mark.notebook
def test_capstone_runs_and_shows_the_doctors_findings(tmp_path: Path) -> None:
    copy = tmp_path / "my_bookshop"
    env = {capstone.COPY_VARIABLE: str(copy)}
    executed = check_notebook("09_capstone.ipynb", {}, env=env)
    text = executed.text_output()
    # the working copy went where it was told, and all 13 functional tests passed on it
    assert (copy / "bookshop" / "main.py").is_file()
    assert len(re.findall(r"^✔ (GET|POST) /", text, re.M)) == 13, text
    assert "✘" not in text.split("route ", 1)[0]
    # the doctor's findings in short: every blocking route, with the part and line expected
    listed: dict[str, set[tuple[str, str]]] = {}
    for match in re.finditer(r"^((?:GET|POST) /\S+) +(\S.*?) +(bookshop/\w+\.py:\d+)$",
                             text, re.M):
        listed.setdefault(match.group(1), set()).add((match.group(2), match.group(3)))
    assert sorted(listed) == sorted(PROBLEMS), listed
    for label, found in listed.items():
        expected = {PROBLEMS[label]} | ({ALSO[label]} if label in ALSO else set())
        wanted = {
            (part, f"bookshop/{file}:{line_of(capstone.ORIGINAL / file, piece)}")
            for file, piece, part in expected
        }
        assert wanted <= found, (label, found, wanted)
    # the check on the untouched copy, and the command line on two routes that do not block
    verdict = re.search(r"^✘ not yet: (\d+) routes? still blocks? the loop, (\d+) functional "
                        r"tests? fails?$", text, re.M)
    assert verdict is not None and int(verdict.group(1)) >= 1, text[-3000:]
    assert verdict.group(2) == "0", verdict.group(0)
    assert "exit status: 0" in text
    assert "2 routes examined" in text
