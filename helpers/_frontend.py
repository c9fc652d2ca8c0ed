"""Which front end is showing our output: a Jupyter kernel that can render widgets, or text.

The quiz and the kitchen explorer both ask "can widgets show here?"; this module holds the one
answer. It imports nothing from the rest of the package (it sits at the bottom) and never
imports IPython or ipywidgets until asked.
"""

from __future__ import annotations

import os
from typing import Any, Literal

__all__ = ["QUIZ_MODE_ENV", "DisplayMode", "display_mode", "execution_count", "ipython_shell"]

#: Set to "widgets" or "text" to force a display mode; unset (or "auto") detects the front end.
QUIZ_MODE_ENV = "COURSE_QUIZ_MODE"

DisplayMode = Literal["widgets", "text"]


def display_mode() -> DisplayMode:
    """Pick how to show widgets: as widgets inside a Jupyter kernel, as text elsewhere.

    COURSE_QUIZ_MODE ("widgets", "text" or "auto") overrides the detection, e.g. to force the text
    form in a headless run, or widgets in a front end this check does not recognise.
    """
    forced = os.environ.get(QUIZ_MODE_ENV, "").strip().lower()
    if forced == "widgets":
        return "widgets"
    if forced == "text":
        return "text"
    if forced not in ("", "auto"):
        raise ValueError(
            f"{QUIZ_MODE_ENV}={forced!r} is not understood; use 'widgets', 'text' or 'auto'"
        )
    if not _in_jupyter_kernel():
        return "text"
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return "text"
    return "widgets"


def ipython_shell() -> Any:
    """The running IPython shell, or None outside IPython (or where IPython is not installed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def execution_count() -> int | None:
    """The number of the cell being run, or None outside IPython."""
    shell = ipython_shell()
    return getattr(shell, "execution_count", None) if shell is not None else None


def _in_jupyter_kernel() -> bool:
    # A kernel's shell is ZMQInteractiveShell; terminal IPython is not, and has no front end
    # to render widgets. Compare by name so this never imports ipykernel.
    shell = ipython_shell()
    return shell is not None and any(
        cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__
    )
