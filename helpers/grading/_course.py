"""Where things are: the assignments in solutions/ (``<name>/<name>.ipynb``, nbgrader's layout
with the notebook named like its assignment), and classroom/'s nbgrader configuration."""

from __future__ import annotations

from pathlib import Path

__all__ = ["assignments_in"]


def assignments_in(solutions: Path) -> list[str]:
    """The assignments in ``solutions``: each folder holding a notebook named like it."""
    if not solutions.is_dir():
        return []
    return sorted(
        folder.name
        for folder in solutions.iterdir()
        if folder.is_dir() and (folder / f"{folder.name}.ipynb").is_file()
    )
