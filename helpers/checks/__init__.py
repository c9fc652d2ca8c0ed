"""The checks behind the graded exercises: one module per lesson, each check a function.

A check runs or serves what the learner wrote, measures it (requests come from ``load()``'s
separate process, each under a timeout), and either prints one line starting with "✔" or
raises ``AssertionError`` saying what it measured, what it expected, the likely cause and the
fix. It writes nothing to stderr: nbgrader scores a graded cell with any stderr output as 0.

Test cells reach their checks through :func:`fresh`, which runs the check modules again first,
so that a cell which replaced a check (or ``helpers.load``) earlier in the notebook fools
nobody.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType

__all__ = ["fresh"]

_LESSON = re.compile(r"lesson\d\d")


def fresh(lesson: str) -> ModuleType:
    """The check module for ``lesson`` (``"lesson01"`` …), just re-run from its source file.

    Re-running undoes whatever a notebook cell assigned to the module's names before.
    """
    if not isinstance(lesson, str) or not _LESSON.fullmatch(lesson):
        raise ValueError(f"fresh() takes a lesson module name such as 'lesson01', got {lesson!r}")
    from . import _core

    importlib.reload(_core)
    module = importlib.import_module(f"{__name__}.{lesson}")
    return importlib.reload(module)
