#!/usr/bin/env python3
"""Set up the course's environment when needed, then open it in JupyterLab or test it.

    python3 course.py lab    # opens JupyterLab at notebooks/index.ipynb
    python3 course.py test   # runs the whole test suite (the command CI runs)
    python3 course.py html   # executes the lessons into a static HTML site in html/ (--out DIR)
    python3 course.py doctor TARGET   # the app doctor on your own app (docs/doctor.md)

For instructors (README.md, "For instructors"; these install nbgrader, the `grading` extra):

    python3 course.py exercises                  # regenerate exercises/ from solutions/
    python3 course.py grade SUBMISSIONS [--out DIR] [--workers N] [--timeout S] ...

Only the standard library is used here, so it runs on a fresh machine with Python 3.11+.
The environment lives in .venv next to this file and is rebuilt when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".course-installed"


def _wanted_stamp(extras: str) -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return f"{digest} {extras}"


def ensure_environment(extras: str) -> None:
    """Create .venv and install the course (with ``extras``) unless it is already up to date."""
    # Outdated for the package (UP036), not here: this check must run on an older Python to
    # tell its user what to install.
    if sys.version_info < (3, 11):  # noqa: UP036
        sys.exit(f"The course needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not (BIN / "python").exists():
        print(f"Creating the course environment in {VENV} …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    installed = STAMP.read_text().strip() if STAMP.exists() else ""
    wanted = _wanted_stamp(extras)
    if installed == wanted or (extras == "" and installed.startswith(wanted.split()[0])):
        return
    print("Installing the course and its packages (first run only) …", flush=True)
    target = f".[{extras}]" if extras else "."
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", "-e", target],
        cwd=ROOT,
        check=True,
    )
    STAMP.write_text(wanted + "\n")


def environment_variables() -> dict[str, str]:
    """Act as if the environment were activated: its bin/ first on PATH (nbgrader needs it)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    return env


LAB_OVERRIDES = VENV / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def quiet_jupyterlab() -> None:
    """Course defaults for JupyterLab in this environment: never ask to fetch news from the web
    (the course runs offline), unless someone already wrote their own overrides."""
    if not LAB_OVERRIDES.exists():
        LAB_OVERRIDES.parent.mkdir(parents=True, exist_ok=True)
        LAB_OVERRIDES.write_text(
            '{"@jupyterlab/apputils-extension:notification": '
            '{"fetchNews": "false", "checkForUpdates": false}}\n'
        )


def lab(args: list[str]) -> int:
    ensure_environment("")
    quiet_jupyterlab()
    command = [
        str(BIN / "jupyter"), "lab",
        # root_dir stays the course folder, so the file browser reaches exercises/ too
        f"--ServerApp.root_dir={ROOT}",
        # the course runs offline on 127.0.0.1: no news feed, no update checks against the web
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "notebooks/index.ipynb",
        *args,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args:
        command.append("--allow-root")  # containers and Binder-like images often run as root
    return subprocess.call(command, cwd=ROOT, env=environment_variables())


def test(args: list[str]) -> int:
    ensure_environment("test")
    command = [str(BIN / "python"), "-m", "pytest", *args]
    return subprocess.call(command, cwd=ROOT, env=environment_variables())


def _grading(command: str, args: list[str]) -> int:
    """Run ``python -m helpers.grading COMMAND`` in the environment with nbgrader installed."""
    ensure_environment("grading")
    # the caller's working folder stays, so that relative paths they give mean what they mean
    return subprocess.call(
        [str(BIN / "python"), "-m", "helpers.grading", "--course", str(ROOT), command, *args],
        env=environment_variables(),
    )


def exercises(args: list[str]) -> int:
    return _grading("exercises", args)


def grade(args: list[str]) -> int:
    return _grading("grade", args)


def html(args: list[str]) -> int:
    """Execute the lessons and write the static HTML edition (helpers.html_edition)."""
    ensure_environment("")
    return subprocess.call(
        [str(BIN / "python"), "-m", "helpers.html_edition", "--course", str(ROOT), *args],
        env=environment_variables(),
    )


def doctor(args: list[str]) -> int:
    """The app doctor (helpers.doctor) on ``package.module:app`` or ``file.py:app``, run from
    the caller's folder so that the target means what it says there."""
    ensure_environment("")
    env = environment_variables()
    # the caller's folder first, as `python -m` would have it; the course's helpers after it
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.getcwd(), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.call([str(BIN / "python"), "-m", "helpers.doctor", *args], env=env)


def main() -> int:
    commands = {
        "lab": lab, "test": test, "exercises": exercises, "grade": grade, "html": html,
        "doctor": doctor,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__.strip())
        return 2
    try:
        return commands[sys.argv[1]](sys.argv[2:])
    except subprocess.CalledProcessError as error:
        print(f"Setting up the environment failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
