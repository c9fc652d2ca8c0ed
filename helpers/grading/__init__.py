"""The instructor's side of the graded exercises: nbgrader, wrapped for this course.

``python -m helpers.grading exercises`` regenerates ``exercises/`` from ``solutions/``;
``python -m helpers.grading grade SUBMISSIONS`` grades a folder of student notebooks into one
gradebook CSV with a column per task. ``python3 course.py exercises|grade`` run exactly these.

Nothing in the learner's runtime imports this package, and only :mod:`._nbgrader` imports
nbgrader (installed with the ``grading`` extra), so a learner's install never needs it.
"""
