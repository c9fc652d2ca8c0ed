from __future__ import annotations

import os

import pytest

from helpers import environment


def test_report_lists_versions_and_cores(capsys):
    facts = environment.check_environment()
    printed = capsys.readouterr().out
    assert facts["cores"] == len(os.sched_getaffinity(0)) >= 1
    for name in ("python", "fastapi", "uvicorn", "anyio", "cores", "gil"):
        assert name in printed
    assert facts["fastapi"] != "missing"


def test_missing_package_is_named(monkeypatch, capsys):
    monkeypatch.setattr(environment, "PACKAGES", ("fastapi", "surely-not-installed-pkg"))
    with pytest.raises(RuntimeError, match="missing packages: surely-not-installed-pkg"):
        environment.check_environment()
