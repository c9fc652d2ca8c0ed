"""Find the app a command line names: ``package.module:app`` or ``path/to/file.py:app``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from typing import Any


class TargetError(Exception):
    """The app could not be found or imported; ``detail`` holds the app's own traceback."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def load_target(target: str) -> Any:
    """Import ``target`` and return the object it names, the way uvicorn does, plus file paths.

    A file inside a package (a folder with ``__init__.py``) is imported under its dotted name
    from the package's parent folder, so its relative imports work."""
    module_part, colon, attribute = target.rpartition(":")
    if not colon or not module_part or not attribute:
        raise TargetError(
            f"cannot read the target {target!r}: write it as package.module:app or "
            "path/to/file.py:app"
        )
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        module_name = _module_name_of_file(module_part)
    else:
        module_name = module_part
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` and uvicorn do
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise TargetError(
                f"no module named {error.name!r} (looked in {os.getcwd()} and on sys.path)"
            ) from None
        raise TargetError(
            f"importing {module_name!r} failed: {type(error).__name__}: {error}",
            _app_traceback(),
        ) from None
    except BaseException as error:  # SystemExit too: the app's import must not end the doctor
        raise TargetError(
            f"importing {module_name!r} failed: {type(error).__name__}: {error}",
            _app_traceback(),
        ) from None
    app: Any = module
    for part in attribute.split("."):
        if not hasattr(app, part):
            raise TargetError(f"module {module_name!r} has no attribute {attribute!r}")
        app = getattr(app, part)
    return app


def _module_name_of_file(path: str) -> str:
    """Put the right folder on ``sys.path`` for ``path`` and return its module name."""
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise TargetError(f"no such file: {path}")
    if not full.endswith(".py"):
        raise TargetError(f"not a Python file: {path}")
    folder, filename = os.path.split(full)
    parts = [filename[: -len(".py")]]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return ".".join(parts)


def _app_traceback() -> str:
    """The traceback of the exception being handled, without the doctor's own frames."""
    kind, error, tb = sys.exc_info()
    frames = traceback.extract_tb(tb)
    # drop the frames of this module and of importlib's machinery: the app's own frames stay
    kept = [
        frame for frame in frames
        if frame.filename != __file__ and "importlib" not in frame.filename
        and not frame.filename.startswith("<frozen")
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(kept)]
    lines += traceback.format_exception_only(kind, error)
    return "".join(lines)
