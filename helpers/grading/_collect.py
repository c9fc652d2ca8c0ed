"""Find each student's notebook in a folder downloaded from an LMS: who handed it in, and for
which assignment, read from file and folder names (zip files are opened as folders).

Accepted names, for an assignment ``01_kitchen`` (``.ipynb`` files; anything else is skipped):

- ``alice/01_kitchen.ipynb``: a folder per student (also inside a zip: ``alice.zip`` holding
  ``01_kitchen.ipynb``), as nbgrader's own ``submitted/`` folder and Moodle's download do
  (Moodle's ``Alice Doe_123_assignsubmission_file_`` folders become ``Alice_Doe_123``);
- ``alice_01_kitchen.ipynb``, ``01_kitchen_alice.ipynb``, ``alice-01_kitchen.ipynb``: the
  student id and the assignment name in one file name, in either order (the separators are
  ``_``, ``-``, ``.`` and spaces);
- Canvas's ``doejohn_12345_67890_01_kitchen.ipynb`` and ``doejohn_LATE_12345_67890_…``:
  the student id is ``doejohn_12345`` (name and user id; the submission id is dropped).

An assignment that is graded on files as well (the capstone's ``my_bookshop/``, named in its
notebook's metadata) takes them from beside the notebook: hand in a folder or a zip per student.

A resubmission's ``-1`` (Canvas) or a browser's `` (1)`` before ``.ipynb`` is ignored. Any other
scheme: a regular expression with named groups ``student`` (and optionally ``assignment``),
matched against the path below the submissions folder.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["Collected", "Submission", "collect"]

_COPY_SUFFIX = re.compile(r"(-\d+| \(\d+\))$")
_CANVAS = re.compile(r"^(?P<name>[^_]+)_(?:LATE_)?(?P<user>\d+)_\d+$")
_MOODLE = re.compile(r"^(?P<who>.+)_assignsubmission_\w+?_?$")
_SEPARATORS = "_-. "
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]+")
_JUNK = {"__MACOSX", ".ipynb_checkpoints", ".DS_Store"}


@dataclass(frozen=True)
class Submission:
    """One student's notebook for one assignment, where it was found, and the files handed in
    with it (path inside the assignment's folder, file on disk)."""

    student: str
    assignment: str
    notebook: Path
    found_as: str
    files: tuple[tuple[str, Path], ...] = ()


@dataclass
class Collected:
    """What :func:`collect` placed, what it could not place (and why), what it skipped."""

    submissions: list[Submission] = field(default_factory=list)
    unplaced: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _safe_id(text: str) -> str:
    """A student id nbgrader can use as a folder name and a database key."""
    return _UNSAFE.sub("_", text.strip()).strip("_.-")


def _student_from_rest(rest: str) -> str:
    canvas = _CANVAS.match(rest)
    if canvas:
        return f"{canvas['name']}_{canvas['user']}"
    return rest


def _student_from_folder(folder: str) -> str:
    moodle = _MOODLE.match(folder)
    return moodle["who"] if moodle else folder


def _place(
    relative: PurePosixPath, assignments: list[str], pattern: re.Pattern[str] | None
) -> tuple[str, str] | str:
    """(student, assignment) for a notebook at ``relative``, or why it cannot be placed."""
    if pattern is not None:
        match = pattern.fullmatch(str(relative))
        if not match:
            return f"does not match the pattern {pattern.pattern!r}"
        groups = match.groupdict()
        student = _safe_id(groups.get("student") or "")
        assignment = groups.get("assignment") or ""
        if not assignment:
            named = [a for a in assignments if a in relative.name]
            assignment = max(named, key=len) if named else ""
        if assignment not in assignments:
            return f"names no assignment being graded ({', '.join(assignments)})"
        if not student:
            return "the pattern matched no student id"
        return student, assignment
    stem = _COPY_SUFFIX.sub("", relative.stem)
    best: tuple[int, str, str] | None = None
    for assignment in assignments:
        for match in re.finditer(
            rf"(?:^|(?<=[{re.escape(_SEPARATORS)}])){re.escape(assignment)}"
            rf"(?=$|[{re.escape(_SEPARATORS)}])",
            stem,
        ):
            rest = (stem[: match.start()] + " " + stem[match.end() :]).strip(_SEPARATORS)
            # the rightmost, then the longest assignment name wins ("01_kitchen" at the end)
            if best is None or (match.start(), len(assignment)) > (best[0], len(best[1])):
                best = (match.start(), assignment, rest)
    if best is None:
        return f"names no assignment being graded ({', '.join(assignments)})"
    _, assignment, rest = best
    student = _safe_id(_student_from_rest(rest.replace(" ", "_")))
    if not student and len(relative.parts) > 1:
        student = _safe_id(_student_from_folder(relative.parts[-2]))
    if not student:
        return "no student id in its name or its folder's name"
    return student, assignment


def _walk(folder: Path, prefix: PurePosixPath, staging: Path) -> list[tuple[PurePosixPath, Path]]:
    """Every file below ``folder`` as (path shown to the instructor, path on disk); zip files
    are extracted into ``staging`` and walked as folders named after them."""
    found: list[tuple[PurePosixPath, Path]] = []
    for path in sorted(folder.rglob("*")):
        relative = PurePosixPath(*path.relative_to(folder).parts)
        if any(part in _JUNK or part.startswith("._") for part in relative.parts):
            continue
        if path.is_dir():
            continue
        shown = prefix / relative
        if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
            target = staging / str(shown)
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    # names like ../x or /x would escape the staging folder: never written
                    inside = PurePosixPath(member.filename)
                    if member.is_dir() or inside.is_absolute() or ".." in inside.parts:
                        continue
                    destination = target.joinpath(*inside.parts)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as source, destination.open("wb") as sink:
                        shutil.copyfileobj(source, sink)
            found += _walk(target, shown.with_suffix(""), staging)
        else:
            found.append((shown, path))
    return found


def _handed_in(notebook: Path, folders: list[str]) -> tuple[tuple[str, Path], ...]:
    """The files of ``folders`` found beside ``notebook`` (compiled Python left out)."""
    files = []
    for name in folders:
        for path in sorted((notebook.parent / name).rglob("*")):
            parts = path.relative_to(notebook.parent).parts
            if path.is_dir() or path.suffix == ".pyc" or any(
                part in _JUNK or part == "__pycache__" or part.startswith("._") for part in parts
            ):
                continue
            files.append(("/".join(parts), path))
    return tuple(files)


def collect(
    folder: Path, assignments: list[str], staging: Path, pattern: str | None = None,
    also_known: list[str] | None = None, hand_in_with: dict[str, list[str]] | None = None,
) -> Collected:
    """Place every notebook in ``folder`` (and in the zip files there) as one student's
    submission of one of ``assignments``; zip files are extracted into ``staging``. Notebooks
    of the ``also_known`` assignments (not graded this time) are skipped, not refused. An
    assignment in ``hand_in_with`` takes those folders from beside its notebook as well."""
    compiled = re.compile(pattern) if pattern else None
    known = sorted({*assignments, *(also_known or [])})
    result = Collected()
    seen: dict[tuple[str, str], Submission] = {}
    beside: dict[tuple[Path, str], Submission] = {}
    others: list[tuple[str, Path]] = []
    for shown, path in _walk(folder, PurePosixPath(), staging):
        if path.suffix.lower() != ".ipynb":
            others.append((str(shown), path))
            continue
        placed = _place(shown, known, compiled)
        if isinstance(placed, str):
            result.unplaced.append((str(shown), placed.replace(", ".join(known),
                                                               ", ".join(assignments))))
            continue
        student, assignment = placed
        if assignment not in assignments:
            others.append((str(shown), path))
            continue
        wanted = (hand_in_with or {}).get(assignment, [])
        files = _handed_in(path, wanted)
        submission = Submission(student, assignment, path, str(shown), files)
        earlier = seen.get(placed)
        if earlier is not None:
            result.unplaced.append(
                (str(shown), f"a second notebook for {student} / {assignment} "
                             f"(the first: {earlier.found_as})")
            )
            continue
        sharing = beside.get((path.parent, assignment))
        if files and sharing is not None:
            result.unplaced.append(
                (str(shown), f"its folder's {', '.join(wanted)} would count for "
                             f"{sharing.student} too ({sharing.found_as}): put each student's "
                             "notebook and folders in a folder or zip of their own")
            )
            continue
        beside[path.parent, assignment] = submission
        seen[placed] = submission
        result.submissions.append(submission)
    # what the hand-in folders hold is part of a submission, not a stray file (compiled too)
    folders = [
        submission.notebook.parent / name for submission in result.submissions
        for name in (hand_in_with or {}).get(submission.assignment, [])
    ]
    result.skipped = [shown for shown, path in others
                      if not any(path.is_relative_to(folder) for folder in folders)]
    return result
