"""The suite's serial "timing" group (tests/conftest.py) only works if xdist honours groups."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GROUPED = """
import os, time
import pytest

@pytest.mark.parametrize("i", range(6))
def test_records_its_worker(i):
    time.sleep(0.1)  # long enough that an idle second worker would take some
    with open(os.environ["WORKERS_FILE"], "a") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


# The group is added the way tests/conftest.py adds it: by a collection hook.
CONFTEST = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.xdist_group("together"))
"""


def test_xdist_groups_are_honoured(tmp_path: Path) -> None:
    """Six tests put in one xdist_group by a conftest hook, as tests/conftest.py does, all run
    on one of two workers. They were spread over both, the group silently ignored, with pytest 9
    (pytest-xdist 3.8), and with the hook running after xdist's own (no tryfirst)."""
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "conftest.py").write_text(CONFTEST)
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
