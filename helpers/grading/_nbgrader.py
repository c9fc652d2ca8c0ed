"""The one module that imports nbgrader: build its configuration from classroom/'s file, and run
generate / autograde / feedback in this process (the batch runs each in a child process).

nbgrader ships no type information: what it returns is read into plain Python values here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps.api import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

__all__ = ["Course", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    """What one nbgrader step said: whether it worked, its log, its error."""

    success: bool
    log: str
    error: str


@dataclass(frozen=True)
class Course:
    """An nbgrader course folder at ``root``, configured by ``config_file`` (classroom/'s),
    with its source in ``solutions`` and its release in ``release``."""

    root: Path
    config_file: Path
    solutions: Path
    release: Path
    cell_timeout_s: int | None = None

    @property
    def database(self) -> Path:
        return self.root / "gradebook.db"

    def config(self) -> Config:
        """classroom/nbgrader_config.py, with this folder's paths and the cell timeout."""
        loader = PyFileConfigLoader(self.config_file.name, path=str(self.config_file.parent))
        config: Config = loader.load_config()
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.source_directory = str(self.solutions.resolve())
        config.CourseDirectory.release_directory = str(self.release.resolve())
        config.CourseDirectory.db_url = f"sqlite:///{self.database}"
        if self.cell_timeout_s is not None:
            config.Execute.timeout = self.cell_timeout_s
        return config

    def _api(self) -> Any:
        _environment_bin_on_path()
        config = self.config()
        return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)

    def generate(self, assignment: str) -> Outcome:
        """``nbgrader generate_assignment``: the release notebook, and the gradebook's cells."""
        self.root.mkdir(parents=True, exist_ok=True)
        return _outcome(self._api().generate_assignment(assignment, force=True, create=True))

    def autograde(self, assignment: str, student: str) -> Outcome:
        """``nbgrader autograde`` for one student's submitted notebook."""
        return _outcome(self._api().autograde(assignment, student, force=True, create=True))

    def feedback(self, assignment: str, student: str) -> Outcome:
        """``nbgrader generate_feedback``: the student's feedback HTML."""
        return _outcome(self._api().generate_feedback(assignment, student, force=True))

    def scores(self, assignment: str, student: str) -> dict[str, float | None]:
        """Each graded cell's score (by grade_id) in the student's autograded notebook."""
        with Gradebook(f"sqlite:///{self.database}") as gradebook:
            try:
                notebook = gradebook.find_submission_notebook(assignment, assignment, student)
            except MissingEntry:
                return {}
            return {
                str(grade.name): None if grade.score is None else float(grade.score)
                for grade in notebook.grades
            }


def _outcome(result: dict[str, Any]) -> Outcome:
    return Outcome(
        success=bool(result.get("success")),
        log=str(result.get("log", "")),
        error=str(result.get("error", "")),
    )


def _environment_bin_on_path() -> None:
    """nbgrader runs the ``alembic`` executable found on PATH: this environment's own."""
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if here not in path.split(os.pathsep):
        os.environ["PATH"] = f"{here}{os.pathsep}{path}"
