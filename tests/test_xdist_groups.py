"""The suite's serial "timing" group (tests/conftest.py) only works if xdist honours groups."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GROUPED = """
import os, time
import pytest

pytestmark = pytest.mark.xdist_group("together")

@pytest.mark.parametrize("i", range(6))
def test_records_its_worker(i):
    time.sleep(0.1)  # long enough that an idle second worker would take some
    with open(os.environ["WORKERS_FILE"], "a") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


def test_xdist_groups_are_honoured(tmp_path: Path) -> None:
    """Six tests in one xdist_group all run on one of two workers (with pytest 9 and
    pytest-xdist 3.8 they were spread over both: the group was silently ignored)."""
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not this repository's settings
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q",
         "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "WORKERS_FILE": str(tmp_path / "workers.txt")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workers = (tmp_path / "workers.txt").read_text().split()
    assert len(workers) == 6 and len(set(workers)) == 1, workers
