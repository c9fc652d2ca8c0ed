"""environment.yml (conda/Binder) and pyproject.toml list the same packages with the same bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def normalise(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def pyproject_packages() -> set[tuple[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {normalise(r) for r in project["dependencies"]}


def environment_packages() -> set[tuple[str, str]]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = set()
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            found |= {normalise(r) for r in entry["pip"]}
        else:
            found.add(normalise(entry))
    return {p for p in found if p[0] not in {"python", "pip"}}


def test_environment_yml_lists_what_pyproject_lists():
    in_pyproject, in_environment = pyproject_packages(), environment_packages()
    assert in_pyproject == in_environment, (
        f"only in pyproject.toml: {sorted(in_pyproject - in_environment)}; "
        f"only in environment.yml: {sorted(in_environment - in_pyproject)}"
    )


def test_environment_yml_requires_a_supported_python():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python>=3.11" in environment["dependencies"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_normalise_catches_a_changed_bound():
    assert normalise("fastapi>=0.115") != normalise("fastapi>=0.116")
    assert normalise("Typing_Extensions >= 4") == ("typing-extensions", ">=4")
