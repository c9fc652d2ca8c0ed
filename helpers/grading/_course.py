"""Where things are: the assignments in solutions/ (``<name>/<name>.ipynb``, nbgrader's layout
with the notebook named like its assignment), and what a student hands in with a notebook."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["assignments_in", "handed_in_with"]


def assignments_in(solutions: Path) -> list[str]:
    """The assignments in ``solutions``: each folder holding a notebook named like it."""
    if not solutions.is_dir():
        return []
    return sorted(
        folder.name
        for folder in solutions.iterdir()
        if folder.is_dir() and (folder / f"{folder.name}.ipynb").is_file()
    )


def handed_in_with(notebook: Path) -> list[str]:
    """The folders a student hands in beside the assignment's notebook, as its metadata lists
    them (``"course": {"hand_in_with": ["my_bookshop"]}``): the capstone is graded on the shop
    the student fixed, not on the notebook alone."""
    metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    folders = metadata.get("course", {}).get("hand_in_with", [])
    return [str(f) for f in folders if isinstance(f, str) and f and "/" not in f and f != ".."]
