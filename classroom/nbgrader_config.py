"""nbgrader configuration for grading this course (the instructor's course folder).

`python3 course.py grade` and `python3 course.py exercises` load this file; nbgrader's own CLI
reads it too when run from this folder (with the course's environment active):

    cd classroom && nbgrader generate_assignment 01_kitchen --force

Paths are relative to this folder: the nbgrader source is the repository's solutions/, the
student release its exercises/. Working data (gradebook.db, submitted/, autograded/, feedback/)
stays here or in the --out folder of `course.py grade`, and never goes into git.
"""

c = get_config()  # noqa: F821 (nbgrader's config loader provides get_config)

c.CourseDirectory.course_id = "fastapi-concurrency"
c.CourseDirectory.source_directory = "../solutions"
c.CourseDirectory.release_directory = "../exercises"

# Each cell gets at most this long. A check bounds its own requests and calls (about 10 s
# each), so only a student's own endless cell gets here; it is then interrupted and the rest
# of the notebook still runs.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
# A cell that swallows the interrupt (or a kernel gone quiet) scores 0 instead of failing the
# whole submission; `course.py grade` bounds a submission's total time as well.
c.Execute.raise_on_iopub_timeout = False

# Restore graded test cells a student deleted (by default they stay deleted and score nothing,
# but the notebook then lacks the cell's points and its feedback).
c.OverwriteCells.add_missing_cells = True

# nbgrader scores a graded cell with ANY stderr output 0. A server's log lines, written by a
# background thread, land in whichever cell is running: drop those. The preprocessor runs
# only when enabled AND given a pattern.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = (
    r"^(INFO|WARNING|ERROR):\s+(Started|Waiting|Application|Uvicorn|Shutting|Finished)"
    r"|Debugger warning: It seems that frozen modules are being used"
)

# A submission that prints 200,000 lines gets 1000 of them in its feedback, not 200,000.
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100
