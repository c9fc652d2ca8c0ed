"""Quick-check quizzes: ungraded questions with instant feedback and an explanation.

A lesson writes its quiz as a JSON-like list of dicts (or `Question` objects) and calls `quiz()`.
In JupyterLab each question becomes a radio-button block with a "Check" button; with no widget
front end (a terminal, `python script.py`, a static export) the same quiz is printed as text with
its answers underneath, so a self-study reader can still check themselves.
"""

from __future__ import annotations

import html
import json
import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# display_mode and QUIZ_MODE_ENV stay importable from here: they are part of the quiz's API.
from ._frontend import QUIZ_MODE_ENV, DisplayMode, display_mode, execution_count, ipython_shell

__all__ = [
    "QUIZ_MODE_ENV",
    "Feedback",
    "Question",
    "Quiz",
    "check_answer",
    "display_mode",
    "load_questions",
    "parse_questions",
    "quiz",
    "quiz_file",
]

_LETTERS = string.ascii_uppercase
_REQUIRED_KEYS = ("question", "choices", "answer", "explanation")


@dataclass
class Question:
    """One multiple-choice question; `answer` is the index of the correct entry in `choices`."""

    question: str
    choices: list[str]
    answer: int
    explanation: str

    def __post_init__(self) -> None:
        # Authoring mistakes should fail when the lesson is written, not when a learner clicks.
        _require_text(self.question, "question")
        _require_text(self.explanation, "explanation")
        if isinstance(self.choices, (str, bytes)) or not isinstance(self.choices, Sequence):
            raise ValueError(
                f"'choices' must be a list of strings, got {type(self.choices).__name__}"
            )
        self.choices = list(self.choices)
        if len(self.choices) < 2:
            raise ValueError(
                f"'choices' needs at least 2 entries, got {len(self.choices)}"
            )
        if len(self.choices) > len(_LETTERS):
            raise ValueError(
                f"'choices' can have at most {len(_LETTERS)} entries (one per letter), "
                f"got {len(self.choices)}"
            )
        for position, choice in enumerate(self.choices):
            _require_text(choice, f"choices[{position}]")
        duplicates = sorted({c for c in self.choices if self.choices.count(c) > 1})
        if duplicates:
            # Two identical options cannot be told apart by the learner (or by RadioButtons).
            raise ValueError(f"'choices' has duplicate entries: {duplicates}")
        # bool is an int subclass; `answer=True` is almost certainly a mistake.
        if isinstance(self.answer, bool) or not isinstance(self.answer, int):
            raise ValueError(
                f"'answer' must be the index (int) of the correct choice, "
                f"got {self.answer!r}"
            )
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(
                f"'answer' is {self.answer} but must be between 0 and "
                f"{len(self.choices) - 1} (an index into 'choices', counting from 0)"
            )


@dataclass(frozen=True)
class Feedback:
    """The verdict on one attempt: whether it was right, and a message to show the learner."""

    correct: bool
    message: str


def check_answer(question: Question, choice_index: int | None) -> Feedback:
    """Grade one attempt; pure so it can be tested without any front end.

    `choice_index` is None when nothing is selected yet. An index outside the choices is a
    programming error and raises ValueError.
    """
    if choice_index is None:
        return Feedback(False, "Choose an answer first, then press Check.")
    if isinstance(choice_index, bool) or not isinstance(choice_index, int):
        raise ValueError(f"choice_index must be an int or None, got {choice_index!r}")
    if not 0 <= choice_index < len(question.choices):
        raise ValueError(
            f"choice_index {choice_index} is out of range for "
            f"{len(question.choices)} choices"
        )
    if choice_index == question.answer:
        return Feedback(True, f"✔ Correct. {question.explanation}")
    # Name only the letter: the learner sees the lettered choices right above the feedback.
    return Feedback(
        False, f"✘ Not quite: the answer is {_LETTERS[question.answer]}. {question.explanation}"
    )


class Quiz:
    """A displayed quiz that tests (and text-mode readers) can drive with `answer()`."""

    def __init__(
        self,
        questions: Sequence[Question],
        *,
        title: str | None = None,
        mode: DisplayMode = "text",
    ) -> None:
        self.questions: list[Question] = list(questions)
        self.title = title or "Quick check"
        self.mode: DisplayMode = mode
        #: The latest feedback per question (None until that question is checked).
        self.feedback: list[Feedback | None] = [None] * len(self.questions)
        self.widget: Any = None  # the ipywidgets container, built only in widget mode
        self._radios: list[Any] = []
        self._feedback_areas: list[Any] = []
        self._shown_in_execution: int | None = None
        if mode == "widgets":
            self._build_widgets()

    def __repr__(self) -> str:
        count = len(self.questions)
        noun = "question" if count == 1 else "questions"
        return f"<Quiz {self.title!r}: {count} {noun}, mode={self.mode}>"

    # -- driving it -----------------------------------------------------------------------

    def answer(self, number: int, choice: int | str | None) -> Feedback:
        """Answer question `number` (0-based) with a choice index or letter, as a click would.

        Selects that choice in the widget (if any), grades it, shows the feedback, returns it.
        """
        question = self.questions[number]
        choice_index = _choice_to_index(choice, question)
        if self._radios and choice_index is not None:
            self._radios[number].index = choice_index
        return self._grade(number, choice_index)

    def _grade(self, number: int, choice_index: int | None) -> Feedback:
        verdict = check_answer(self.questions[number], choice_index)
        self.feedback[number] = verdict
        if self._feedback_areas:
            self._feedback_areas[number].value = _feedback_html(verdict)
        return verdict

    # -- rendering ------------------------------------------------------------------------

    def as_text(self) -> str:
        """The whole quiz as plain text, each answer and explanation under its question."""
        lines = [self.title, "=" * len(self.title), ""]
        for number, question in enumerate(self.questions, start=1):
            lines.append(f"{number}. {question.question}")
            lines.extend(
                f"   {_LETTERS[i]}) {choice}" for i, choice in enumerate(question.choices)
            )
            right = question.answer
            lines.append(f"   Answer: {_LETTERS[right]}) {question.choices[right]}")
            lines.append(f"   Why: {question.explanation}")
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def as_html(self) -> str:
        """Static HTML with each answer folded away in a <details>, for exports without widgets."""
        parts = [f"<h4>{_inline_html(self.title)}</h4>"]
        for number, question in enumerate(self.questions, start=1):
            items = "".join(
                f"<li>{_inline_html(choice)}</li>" for choice in question.choices
            )
            right = question.answer
            parts.append(
                f"<p><b>{number}.</b> {_inline_html(question.question)}</p>"
                f'<ol type="A">{items}</ol>'
                f"<details><summary>Answer</summary>"
                f"<p><b>{_LETTERS[right]})</b> {_inline_html(question.choices[right])}</p>"
                f"<p>{_inline_html(question.explanation)}</p></details>"
            )
        return "\n".join(parts)

    def show(self) -> None:
        """Display the quiz: widgets in a notebook front end, printed text otherwise."""
        self._shown_in_execution = execution_count()
        if self.mode == "text" or ipython_shell() is None:
            # Without IPython there is nothing to render a widget; text is the useful form.
            print(self.as_text(), end="")
            return
        from IPython.display import display

        display(self._mimebundle(), raw=True)

    def _ipython_display_(self) -> None:
        # quiz() already displayed this object; when it is also the cell's last expression,
        # skip the second copy. Shown again from a later cell, it renders normally.
        if self._shown_in_execution is not None and self._shown_in_execution == execution_count():
            return
        self.show()

    def _mimebundle(self) -> dict[str, Any]:
        # The widget view for live front ends, plus HTML and plain text so static exports and
        # headless runs (where the widget view cannot render) still carry a readable quiz.
        bundle = dict(self.widget._repr_mimebundle_())
        bundle["text/html"] = self.as_html()
        bundle["text/plain"] = self.as_text()
        return bundle

    def _build_widgets(self) -> None:
        import ipywidgets as widgets

        blocks = [widgets.HTML(_WRAP_LONG_CHOICES_CSS + f"<h4>{_inline_html(self.title)}</h4>")]
        for number, question in enumerate(self.questions):
            radio = widgets.RadioButtons(
                # radio labels are plain text: show `code` without its backticks
                options=[
                    f"{_LETTERS[i]}) {c.replace('`', '')}" for i, c in enumerate(question.choices)
                ],
                index=None,  # no preselected answer: a default pick would bias the learner
                layout=widgets.Layout(width="auto"),
            )
            check = widgets.Button(description="Check", button_style="primary")
            feedback_area = widgets.HTML("")
            check.on_click(lambda _button, n=number, r=radio: self._grade(n, r.index))
            # A new pick makes the old verdict stale; clear it until the next Check.
            radio.observe(
                lambda _change, n=number: self._clear_feedback(n), names="index"
            )
            self._radios.append(radio)
            self._feedback_areas.append(feedback_area)
            blocks.append(
                widgets.VBox(
                    [
                        widgets.HTML(
                            f"<b>{number + 1}.</b> {_inline_html(question.question)}"
                        ),
                        radio,
                        check,
                        feedback_area,
                    ],
                    layout=widgets.Layout(margin="0 0 12px 0"),
                )
            )
        self.widget = widgets.VBox(blocks)
        self.widget.add_class(_QUIZ_CSS_CLASS)

    def _clear_feedback(self, number: int) -> None:
        self.feedback[number] = None
        self._feedback_areas[number].value = ""


def quiz(
    questions: Sequence[Question | Mapping[str, Any]], *, title: str | None = None
) -> Quiz:
    """Validate `questions`, display them as a quiz, and return the `Quiz` for further driving.

    Each item is a `Question` or a dict with the keys question, choices, answer (0-based index
    of the right choice) and explanation. Errors name the item and the key at fault.
    """
    parsed = parse_questions(questions)
    shown = Quiz(parsed, title=title, mode=display_mode())
    shown.show()
    return shown


def quiz_file(path: str | os.PathLike[str], *, title: str | None = None) -> Quiz:
    """Show the quiz stored as a JSON list in `path` (relative to the notebook's folder).

    Keeping a lesson's questions in a JSON file lets tests check them without running the lesson.
    """
    return quiz(load_questions(path), title=title)


def load_questions(path: str | os.PathLike[str]) -> list[Question]:
    """Read and validate a JSON quiz file; errors name the file as well as the item and key."""
    try:
        with open(path, encoding="utf-8") as file:
            items = json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{os.fspath(path)}: not valid JSON: {error}") from None
    try:
        return parse_questions(items)
    except ValueError as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None


def parse_questions(
    questions: Sequence[Question | Mapping[str, Any]],
) -> list[Question]:
    """Turn a JSON-like list into validated `Question`s; ValueError names the bad item and key."""
    if isinstance(questions, Mapping):
        raise ValueError(
            "quiz() takes a list of questions, got a single dict: wrap it in [ ... ]"
        )
    if isinstance(questions, (str, bytes)) or not isinstance(questions, Sequence):
        raise ValueError(
            f"quiz() takes a list of questions, got {type(questions).__name__}"
        )
    if not questions:
        raise ValueError("quiz() needs at least one question, got an empty list")
    return [_parse_one(item, number) for number, item in enumerate(questions, start=1)]


# -- internals ----------------------------------------------------------------------------


def _parse_one(item: Question | Mapping[str, Any], number: int) -> Question:
    where = f"question {number}"
    if isinstance(item, Question):
        return item
    if not isinstance(item, Mapping):
        raise ValueError(
            f"{where}: expected a dict with keys {list(_REQUIRED_KEYS)}, "
            f"got {type(item).__name__}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in item]
    unknown = [key for key in item if key not in _REQUIRED_KEYS]
    if missing:
        hint = f" (found unknown key {_quoted(unknown)}: a typo?)" if unknown else ""
        noun = "key" if len(missing) == 1 else "keys"
        raise ValueError(f"{where}: missing {noun} {_quoted(missing)}{hint}")
    if unknown:
        # Usually a typo ("anwser"); silently ignoring it would hide the real key's absence.
        raise ValueError(
            f"{where}: unknown key {_quoted(unknown)} "
            f"(expected only {list(_REQUIRED_KEYS)})"
        )
    try:
        return Question(**{key: item[key] for key in _REQUIRED_KEYS})
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _require_text(value: object, key: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"'{key}' is empty")


def _quoted(keys: list[str]) -> str:
    return ", ".join(repr(str(key)) for key in keys)


def _choice_to_index(choice: int | str | None, question: Question) -> int | None:
    """Accept an index or a letter ("b", "B"), so text-mode readers can answer by letter."""
    if isinstance(choice, str):
        letter = choice.strip().upper()
        if len(letter) != 1 or letter not in _LETTERS[: len(question.choices)]:
            raise ValueError(
                f"choice {choice!r} is not one of the letters "
                f"A-{_LETTERS[len(question.choices) - 1]}"
            )
        return _LETTERS.index(letter)
    return choice


def _feedback_html(verdict: Feedback) -> str:
    colour = "#1a7f37" if verdict.correct else "#cf222e"
    return f'<div style="color:{colour}">{_inline_html(verdict.message)}</div>'


_QUIZ_CSS_CLASS = "course-quiz"
# ipywidgets gives each radio label one fixed-height line, so a choice longer than the output
# width overflows sideways; quiz choices are sentences, so let them wrap beside their button
# (scoped to quizzes; checked in JupyterLab 4 with ipywidgets 8).
_WRAP_LONG_CHOICES_CSS = (
    "<style>"
    f".{_QUIZ_CSS_CLASS} .jupyter-widget-radio-box label,"
    f".{_QUIZ_CSS_CLASS} .widget-radio-box label"
    "{display:flex;align-items:flex-start;height:auto;line-height:1.4;white-space:normal;"
    "margin:2px 0}"
    f".{_QUIZ_CSS_CLASS} .jupyter-widget-radio-box input,"
    f".{_QUIZ_CSS_CLASS} .widget-radio-box input"
    "{order:-1;flex:none;float:none;height:auto;margin-top:0.25em}"
    # Question and feedback text: paragraph spacing, not the one-line-widget row height.
    f".{_QUIZ_CSS_CLASS} .jupyter-widget-html-content,"
    f".{_QUIZ_CSS_CLASS} .widget-html-content"
    "{line-height:1.45}"
    "</style>"
)

_INLINE_CODE = re.compile(r"`([^`]+)`")


def _inline_html(text: str) -> str:
    """Escape text for HTML, rendering `backticked` spans as <code> (questions quote code)."""
    return _INLINE_CODE.sub(r"<code>\1</code>", html.escape(text))
