"""Binder readiness: an environment built from environment.yml alone runs the course.

repo2docker creates a conda environment from environment.yml (its pip section included), copies
the repository in, and runs postBuild. Conda is not available here, so this test does what
conda would install with pip, into a fresh virtual environment, from a copy of the repository;
then it runs postBuild as repo2docker does and executes lesson 00 in that environment's own
kernel. What it cannot test: conda's solver, repo2docker's image build, Binder's launch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv

import nbformat
import pytest

from tests.notebook_runner import ROOT
from tests.test_environment import environment_packages

# conda-forge names that differ from PyPI's (none today: the test says so if one appears)
CONDA_TO_PIP: dict[str, str] = {}


def environment_requirements() -> list[str]:
    """What environment.yml asks for, as pip requirements (conda's and the pip section)."""
    return [
        f"{CONDA_TO_PIP.get(name, name)}{spec}" for name, spec in sorted(environment_packages())
    ]


def test_environment_yml_becomes_pip_requirements():
    wanted = environment_requirements()
    assert "fastapi>=0.115" in wanted and "blockbuster>=1.5" in wanted
    assert "jupyter-server-proxy>=4.1" in wanted  # Binder's browser reaches servers through it
    assert not any(w.startswith(("python", "pip")) for w in wanted)


@pytest.mark.notebook
def test_a_fresh_environment_from_environment_yml_runs_lesson_00(tmp_path):
    environment = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        "PATH": f"{environment / 'bin'}{os.pathsep}/usr/bin:/bin",
        "VIRTUAL_ENV": str(environment),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
    }
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *environment_requirements()],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    # repo2docker copies the repository (what git tracks) and runs postBuild in it
    repository = tmp_path / "repo"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (repository / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repository / name)
    post_build = subprocess.run(
        ["bash", "postBuild"], cwd=repository, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert post_build.returncode == 0, post_build.stdout[-2000:] + post_build.stderr[-2000:]

    imported = subprocess.run(
        [str(python), "-c", "import helpers, sys; print(helpers.__file__, sys.prefix)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == [
        str(repository / "helpers" / "__init__.py"), str(environment)
    ]

    # lesson 00, top to bottom, in the kernel this environment installed
    lesson = nbformat.read(repository / "notebooks" / "00_start_here.ipynb", as_version=4)
    lesson.cells.append(nbformat.v4.new_code_cell('import sys; print("KERNEL", sys.prefix)'))
    to_run = repository / "notebooks" / "00_probed.ipynb"
    nbformat.write(lesson, to_run)
    executed = tmp_path / "00_executed.ipynb"
    ran = subprocess.run(
        [str(environment / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=120", "--output", str(executed), str(to_run)],
        cwd=repository / "notebooks", env=env, capture_output=True, text=True, timeout=600,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    notebook = nbformat.read(executed, as_version=4)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
    text = json.dumps([o.get("text", "") for o in outputs])
    assert "10 requests at once, each waiting 0.5 s: measured" in text
    assert f"KERNEL {environment}" in text  # the kernel was this environment's Python
