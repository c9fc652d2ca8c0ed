"""The environment check at the start of the course: versions, cores, and what they mean here."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = (
    "fastapi", "starlette", "uvicorn", "anyio", "httpx", "aiohttp", "ipykernel", "matplotlib",
)
MINIMUM_PYTHON = (3, 11)


def usable_cores() -> int:
    """Cores this process may run on (a container or JupyterHub limit can be below cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gil_enabled() -> bool:
    """False only on a free-threaded build (3.13t+) running with the GIL switched off."""
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def check_environment() -> dict[str, object]:
    """Print a short report and return it; raise if something the course needs is missing."""
    facts: dict[str, object] = {
        "python": platform.python_version(),
        "cores": usable_cores(),
        "gil": "on" if gil_enabled() else "off (free-threaded)",
        **package_versions(),
    }
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    missing = [name for name, v in facts.items() if v == "missing"]
    if sys.version_info < MINIMUM_PYTHON:
        raise RuntimeError(
            f"the course needs Python 3.11 or newer; this kernel runs {facts['python']}"
        )
    if missing:
        raise RuntimeError(
            f"missing packages: {', '.join(missing)} — run `python3 course.py lab` from the "
            "course folder, which installs them"
        )
    return facts
