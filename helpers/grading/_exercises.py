"""Regenerate the student notebooks (exercises/) from the nbgrader source (solutions/) with
``nbgrader generate_assignment``, so that the same source always gives the same bytes."""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from pathlib import Path

from ._course import assignments_in, handed_in_with
from ._nbgrader import Course

__all__ = ["generate_exercises"]


class GenerationError(RuntimeError):
    """nbgrader could not generate an assignment's release; the message holds its log."""


def _same_tree(left: Path, right: Path, ignore: tuple[str, ...] = ()) -> bool:
    compared = filecmp.dircmp(
        left, right, ignore=[*filecmp.DEFAULT_IGNORES, ".ipynb_checkpoints", *ignore]
    )
    if compared.left_only or compared.right_only or compared.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, compared.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(left / name, right / name) for name in compared.common_dirs)


def generate_exercises(
    solutions: Path, exercises: Path, config_file: Path
) -> tuple[list[str], list[str]]:
    """Make ``exercises/<a>/`` what nbgrader generates from ``solutions/<a>/``, for every
    assignment there; remove assignment folders whose source is gone. Returns the assignments
    rewritten and the folders removed (unchanged ones are left as they are)."""
    names = assignments_in(solutions)
    changed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="course-exercises-") as scratch:
        release = Path(scratch) / "release"
        course = Course(Path(scratch) / "course", config_file, solutions, release)
        for name in names:
            outcome = course.generate(name)
            if not outcome.success:
                raise GenerationError(
                    f"nbgrader could not generate {name}:\n{outcome.error or outcome.log}"
                )
            target = exercises / name
            # a learner's work handed in with the notebook (the capstone's shop) is never touched
            keep = tuple(handed_in_with(solutions / name / f"{name}.ipynb"))
            if target.is_dir() and _same_tree(release / name, target, keep):
                continue
            if target.is_dir():
                for old in target.iterdir():
                    if old.name in keep:
                        continue
                    if old.is_dir():
                        shutil.rmtree(old)
                    else:
                        old.unlink()
            shutil.copytree(release / name, target, copy_function=shutil.copyfile,
                            dirs_exist_ok=True)
            changed.append(name)
    removed = []
    if exercises.is_dir():
        for folder in sorted(exercises.iterdir()):
            generated = folder.is_dir() and (folder / f"{folder.name}.ipynb").is_file()
            if generated and folder.name not in names:
                shutil.rmtree(folder)
                removed.append(folder.name)
    return changed, removed
