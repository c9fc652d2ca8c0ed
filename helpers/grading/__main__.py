"""``python -m helpers.grading exercises|grade …``: the commands behind ``course.py exercises``
and ``course.py grade`` (run from the course folder, in the course's environment)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._course import assignments_in


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 course.py", description=__doc__)
    parser.add_argument("--course", type=Path, default=Path(),
                        help="the course folder; the defaults below are inside it "
                             "(default: the working folder)")
    parser.add_argument("--solutions", type=Path, default=None,
                        help="the nbgrader source folder (default: COURSE/solutions)")
    parser.add_argument("--config", type=Path, default=None,
                        help="nbgrader configuration "
                             "(default: COURSE/classroom/nbgrader_config.py)")
    commands = parser.add_subparsers(dest="command", required=True)

    exercises = commands.add_parser(
        "exercises", help="regenerate exercises/ from solutions/ with nbgrader")
    exercises.add_argument("--exercises", type=Path, default=None,
                           help="where the student notebooks go (default: COURSE/exercises)")

    grade = commands.add_parser("grade", help="grade a folder of student notebooks")
    grade.add_argument("submissions", type=Path,
                       help="a folder of student notebooks and/or zip files, as downloaded")
    grade.add_argument("--out", type=Path, default=None,
                       help="where the gradebook, feedback and working data go "
                            "(default: COURSE/classroom/graded)")
    grade.add_argument("--assignment", action="append", default=[], metavar="NAME",
                       help="grade only this assignment (repeatable; default: all)")
    grade.add_argument("--workers", type=int, default=2,
                       help="submissions graded at once, each in its own process (default: 2)")
    grade.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                       help="bound on one submission's grading; beyond it the submission is "
                            "stopped and scores 0 (default: 300)")
    grade.add_argument("--cell-timeout", type=int, default=None, metavar="SECONDS",
                       help="bound on one cell (default: the config's Execute.timeout)")
    grade.add_argument("--pattern", default=None, metavar="REGEX",
                       help="how to read file names: a regular expression with (?P<student>…) "
                            "and optionally (?P<assignment>…), matched against each path "
                            "below SUBMISSIONS")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 2 when the input cannot be graded."""
    arguments = _parser().parse_args(argv)
    # absolute paths: nbgrader resolves some relative ones against its course folder
    course: Path = arguments.course.resolve()
    arguments.solutions = (arguments.solutions or course / "solutions").resolve()
    arguments.config = (arguments.config or course / "classroom" / "nbgrader_config.py").resolve()
    if arguments.command == "exercises":
        arguments.exercises = (arguments.exercises or course / "exercises").resolve()
        from ._exercises import generate_exercises

        if not assignments_in(arguments.solutions):
            print(f"no assignments in {arguments.solutions}: nothing to generate")
            return 0
        changed, removed = generate_exercises(
            arguments.solutions, arguments.exercises, arguments.config)
        for name in assignments_in(arguments.solutions):
            state = "regenerated" if name in changed else "up to date"
            print(f"{arguments.exercises / name / (name + '.ipynb')}: {state}")
        for name in removed:
            print(f"{arguments.exercises / name}: removed (no source in {arguments.solutions})")
        return 0

    from ._grade import GradeOptions, GradingError, grade

    arguments.out = (arguments.out or course / "classroom" / "graded").resolve()
    arguments.submissions = arguments.submissions.resolve()
    if arguments.workers < 1 or arguments.timeout <= 0:
        print("--workers must be 1 or more and --timeout positive", file=sys.stderr)
        return 2
    options = GradeOptions(
        submissions=arguments.submissions, out=arguments.out, solutions=arguments.solutions,
        config_file=arguments.config, assignments=tuple(arguments.assignment),
        workers=arguments.workers, timeout_s=arguments.timeout,
        cell_timeout_s=arguments.cell_timeout, pattern=arguments.pattern,
        log=lambda line: print(line, flush=True),
    )
    try:
        result = grade(options)
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    graded = sum(1 for row in result.rows if row.status != "not submitted")
    print(
        f"graded {graded} submission(s) in {result.seconds:.0f} s with "
        f"{min(arguments.workers, max(graded, 1))} worker(s)\n"
        f"gradebook: {result.csv}\nfeedback:  {result.feedback}/<student>/<assignment>/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
