"""helpers.quiz: validation, grading, the text fallback, and a widget quiz driven like a learner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import helpers.quiz
from helpers._frontend import QUIZ_MODE_ENV, display_mode
from helpers.quiz import (
    Feedback,
    Question,
    Quiz,
    check_answer,
    load_questions,
    parse_questions,
    quiz,
    quiz_file,
)


def await_question(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "question": "What does `await` do inside an `async def` endpoint?",
        "choices": [
            "Starts a new thread",
            "Hands control back to the event loop until the result is ready",
            "Blocks the whole server",
        ],
        "answer": 1,
        "explanation": "An await is a switch point: the loop runs other tasks meanwhile.",
    }
    item.update(overrides)
    return item


def gil_question() -> dict[str, Any]:
    return {
        "question": "Which one runs pure-Python CPU work on two cores at once?",
        "choices": ["Two threads", "Two processes"],
        "answer": 1,
        "explanation": "Threads share one GIL; each process has its own.",
    }


@pytest.fixture
def text_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(QUIZ_MODE_ENV, "text")


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"choices": []}, r"'choices' needs at least 2 entries, got 0"),
        ({"choices": ["only one"]}, r"'choices' needs at least 2 entries, got 1"),
        ({"choices": "a, b"}, r"'choices' must be a list of strings, got str"),
        ({"choices": ["same", "same"]}, r"'choices' has duplicate entries: \['same'\]"),
        ({"choices": ["fine", ""]}, r"'choices\[1\]' is empty"),
        ({"choices": ["fine", 3]}, r"'choices\[1\]' must be a string, got int"),
        ({"answer": 3}, r"'answer' is 3 but must be between 0 and 2"),
        ({"answer": -1}, r"'answer' is -1 but must be between 0 and 2"),
        ({"answer": "1"}, r"'answer' must be the index \(int\)"),
        ({"answer": True}, r"'answer' must be the index \(int\)"),
        ({"question": "   "}, r"'question' is empty"),
        ({"explanation": None}, r"'explanation' must be a string, got NoneType"),
    ],
)
def test_bad_values_name_item_and_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^question 2: " + message):
        parse_questions([gil_question(), await_question(**overrides)])


def test_missing_key_is_named() -> None:
    item = await_question()
    del item["explanation"]
    with pytest.raises(ValueError, match=r"^question 1: missing key 'explanation'$"):
        parse_questions([item])


def test_typo_key_is_pointed_out() -> None:
    item = await_question()
    item["anwser"] = item.pop("answer")
    with pytest.raises(ValueError, match=r"missing key 'answer' \(found unknown key 'anwser'"):
        parse_questions([item])


def test_unknown_extra_key_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^question 1: unknown key 'hint'"):
        parse_questions([await_question(hint="think about the loop")])


@pytest.mark.parametrize(
    ("questions", "message"),
    [
        ([], "at least one question"),
        (await_question(), "got a single dict: wrap it in"),
        ("What is a coroutine?", "takes a list of questions, got str"),
        ([gil_question(), ("not", "a", "dict")], r"^question 2: expected a dict"),
    ],
)
def test_bad_question_lists(questions: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_questions(questions)


def test_question_validates_on_construction() -> None:
    with pytest.raises(ValueError, match="'answer' is 5"):
        Question("Q?", ["a", "b"], 5, "because")


def test_dicts_and_question_objects_mix() -> None:
    ready = Question(**gil_question())
    parsed = parse_questions([await_question(), ready])
    assert parsed[1] is ready
    assert parsed[0] == Question(**await_question())


def test_choices_tuple_is_accepted_as_list() -> None:
    assert Question("Q?", ("a", "b"), 0, "why").choices == ["a", "b"]  # type: ignore[arg-type]


def test_quiz_file_loads_and_shows_json(
    tmp_path: Path, text_mode: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lesson.json"
    path.write_text(json.dumps([await_question(), gil_question()]), encoding="utf-8")
    shown = quiz_file(path, title="Lesson check")
    assert [q.question for q in shown.questions] == [
        await_question()["question"],
        gil_question()["question"],
    ]
    assert capsys.readouterr().out.startswith("Lesson check\n")


def test_quiz_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[{"question": "Q?",}]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        load_questions(broken)
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps([{"question": "Q?"}]), encoding="utf-8")
    missing = r"incomplete\.json: question 1: missing keys 'choices', 'answer'"
    with pytest.raises(ValueError, match=missing):
        load_questions(incomplete)


def test_course_quiz_files_are_valid() -> None:
    # Every lesson's quiz must load; a broken one would otherwise surface only in the lesson.
    quiz_dir = Path(__file__).resolve().parent.parent / "notebooks" / "quizzes"
    for path in sorted(quiz_dir.glob("*.json")):
        assert load_questions(path), path


# -- grading ----------------------------------------------------------------------------


def test_check_answer_right() -> None:
    verdict = check_answer(Question(**await_question()), 1)
    assert verdict == Feedback(True, verdict.message)
    assert verdict.message.startswith("✔")
    assert "switch point" in verdict.message


def test_check_answer_wrong_names_the_answer_and_explains() -> None:
    verdict = check_answer(Question(**await_question()), 2)
    assert not verdict.correct
    assert verdict.message.startswith("✘")
    assert "the answer is B" in verdict.message
    assert "switch point" in verdict.message


def test_check_answer_without_a_choice_asks_for_one() -> None:
    verdict = check_answer(Question(**await_question()), None)
    assert not verdict.correct
    assert "Choose an answer" in verdict.message


def test_check_answer_out_of_range_is_a_bug() -> None:
    with pytest.raises(ValueError, match="out of range"):
        check_answer(Question(**await_question()), 7)


# -- display mode -----------------------------------------------------------------------


def test_display_mode_outside_a_kernel_is_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(QUIZ_MODE_ENV, raising=False)
    assert display_mode() == "text"


@pytest.mark.parametrize("value", ["widgets", "text", " Widgets "])
def test_env_var_forces_the_mode(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(QUIZ_MODE_ENV, value)
    assert display_mode() == value.strip().lower()


def test_env_var_typo_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(QUIZ_MODE_ENV, "widget")
    with pytest.raises(ValueError, match=QUIZ_MODE_ENV):
        display_mode()


def test_quiz_still_exports_the_front_end_detection() -> None:
    # The detection lives in helpers._frontend (the kitchen shares it); the quiz's public
    # names for it keep working and are the very same objects.
    assert helpers.quiz.display_mode is display_mode
    assert helpers.quiz.QUIZ_MODE_ENV == QUIZ_MODE_ENV == "COURSE_QUIZ_MODE"


# -- text fallback ----------------------------------------------------------------------


def test_text_fallback_prints_question_choices_answer_and_why(
    text_mode: None, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = quiz([await_question(), gil_question()], title="The event loop")
    out = capsys.readouterr().out
    assert shown.mode == "text"
    assert out.startswith("The event loop\n")
    assert "1. What does `await` do inside an `async def` endpoint?" in out
    assert "   A) Starts a new thread" in out
    assert "   B) Hands control back to the event loop until the result is ready" in out
    assert "   C) Blocks the whole server" in out
    assert "   Answer: B) Hands control back" in out
    assert "   Why: An await is a switch point" in out
    assert "2. Which one runs pure-Python CPU work" in out
    assert "   Answer: B) Two processes" in out
    # Each answer comes after its own choices, not bunched at the end.
    assert out.index("C) Blocks the whole server") < out.index("Answer: B) Hands") < out.index("2.")


def test_text_mode_can_be_answered_by_letter(text_mode: None) -> None:
    shown = quiz([await_question()])
    assert shown.answer(0, "b").correct
    assert not shown.answer(0, "A").correct
    assert shown.feedback[0] == check_answer(shown.questions[0], 0)
    with pytest.raises(ValueError, match="not one of the letters A-C"):
        shown.answer(0, "D")


# -- widgets, driven without a front end --------------------------------------------------


@pytest.fixture
def widget_quiz() -> Quiz:
    return Quiz(parse_questions([await_question(), gil_question()]), mode="widgets")


def test_widget_quiz_has_one_block_per_question(widget_quiz: Quiz) -> None:
    import ipywidgets as widgets

    assert isinstance(widget_quiz.widget, widgets.VBox)
    radios = [w for w in _walk(widget_quiz.widget) if isinstance(w, widgets.RadioButtons)]
    buttons = [w for w in _walk(widget_quiz.widget) if isinstance(w, widgets.Button)]
    assert len(radios) == len(buttons) == 2
    assert all(radio.index is None for radio in radios)  # nothing preselected
    assert radios[0].options[1].startswith("B) Hands control back")


def test_answer_updates_selection_and_feedback(widget_quiz: Quiz) -> None:
    wrong = widget_quiz.answer(0, 0)
    assert not wrong.correct
    assert widget_quiz._radios[0].index == 0
    assert "✘" in widget_quiz._feedback_areas[0].value
    right = widget_quiz.answer(0, 1)
    assert right.correct
    assert "✔" in widget_quiz._feedback_areas[0].value
    assert "switch point" in widget_quiz._feedback_areas[0].value
    assert widget_quiz._feedback_areas[1].value == ""  # the other question is untouched


def test_clicking_check_grades_the_selected_choice(widget_quiz: Quiz) -> None:
    import ipywidgets as widgets

    check_buttons = [w for w in _walk(widget_quiz.widget) if isinstance(w, widgets.Button)]
    check_buttons[1].click()  # nothing chosen yet
    assert "Choose an answer" in widget_quiz._feedback_areas[1].value
    widget_quiz._radios[1].index = 1
    check_buttons[1].click()
    assert widget_quiz.feedback[1] is not None and widget_quiz.feedback[1].correct


def test_changing_the_choice_clears_stale_feedback(widget_quiz: Quiz) -> None:
    widget_quiz.answer(0, 1)
    widget_quiz._radios[0].index = 2
    assert widget_quiz._feedback_areas[0].value == ""
    assert widget_quiz.feedback[0] is None


def test_widget_bundle_carries_text_and_html_fallbacks(widget_quiz: Quiz) -> None:
    bundle = widget_quiz._mimebundle()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == widget_quiz.as_text()
    assert "Answer: B) Hands control back" in bundle["text/plain"]
    html = bundle["text/html"]
    assert "<details><summary>Answer</summary>" in html  # folded away in static exports
    assert "<code>await</code>" in html


def test_html_is_escaped() -> None:
    shown = Quiz(
        parse_questions([await_question(question="Is <script> safe & sound?")]), mode="text"
    )
    assert "Is &lt;script&gt; safe &amp; sound?" in shown.as_html()


def _walk(widget: Any) -> list[Any]:
    found = [widget]
    for child in getattr(widget, "children", ()):
        found.extend(_walk(child))
    return found


# -- headless kernel ----------------------------------------------------------------------


@pytest.mark.notebook
def test_headless_kernel_shows_widget_with_text_fallback_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(QUIZ_MODE_ENV, raising=False)  # the kernel inherits our environment
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "from helpers.quiz import quiz\n"
            f"shown = quiz([{gil_question()!r}], title='GIL check')\n"
            "shown  # the cell's value must not display the quiz a second time"
        ),
        nbformat.v4.new_code_cell("shown.answer(0, 0).correct"),
    ]
    repo_root = Path(__file__).resolve().parent.parent
    nbclient.NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(repo_root)}},
    ).execute()
    first, second = notebook.cells
    assert len(first.outputs) == 1, first.outputs
    data = first.outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "Answer: B) Two processes" in data["text/plain"]
    assert not any(o.get("name") == "stderr" for o in first.outputs)
    assert second.outputs[0]["data"]["text/plain"] == "False"


def test_radio_labels_show_code_without_backticks() -> None:
    shown = Quiz(
        parse_questions([{
            "question": "Which call fails in a notebook?",
            "choices": ["`asyncio.run(main())`", "`await main()`"],
            "answer": 0,
            "explanation": "The kernel's loop is already running.",
        }]),
        mode="widgets",
    )
    assert shown._radios[0].options == ("A) asyncio.run(main())", "B) await main()")
