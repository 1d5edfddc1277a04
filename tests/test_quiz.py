"""Quizzes: the file format is validated, every bundled question can be answered right and wrong
through the grader (code questions in real kernels, one pool), and `learn quiz` works both
interactively (scripted stdin) and from an answers file."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.cli import cli
from grader.errors import QuizFormatError
from grader.quiz import (
    QuizInputError,
    bundled_quizzes,
    check_answer,
    find_quiz,
    grade_code,
    load_quiz,
    parse_input,
    parse_quiz,
    read_code_block,
)
from grader.quiz.variants import instantiate

QUIZZES = sorted(bundled_quizzes())

GOOD = """
id: demo
title: Demo quiz
questions:
  - id: q-single
    type: single
    topic: tensors
    prompt: Pick the first.
    options: [first, second, third]
    answer: first
    explanation: Because.
  - id: q-multi
    type: multiple
    topic: tensors
    prompt: Pick two.
    options: [a, b, c]
    answers: [a, c]
    explanation: Because.
  - id: q-num
    type: numeric
    topic: sgd
    prompt: How much?
    answer: 1.5
    tolerance: 0.1
    explanation: Because.
  - id: q-text
    type: text
    topic: sgd
    prompt: Which word?
    answers: [Learning Rate]
    keywords: [[step, lr], size]
    explanation: Because.
  - id: q-code
    type: code
    topic: code
    prompt: Write double.
    function: double
    reference: |
      def double(x):
          return 2 * x
    cases: ["3", "torch.ones(2)"]
    explanation: Because.
"""


def _edit(question_id: str, **changes) -> str:
    data = yaml.safe_load(GOOD)
    for q in data["questions"]:
        if q["id"] == question_id:
            for key, value in changes.items():
                if value is None:
                    q.pop(key, None)
                else:
                    q[key] = value
    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------------------------------------
# the file format


def test_good_quiz_parses():
    quiz = parse_quiz(GOOD, "demo.yaml")
    assert quiz.id == "demo" and [q.type for q in quiz.questions] == ["single", "multiple", "numeric", "text", "code"]
    assert quiz.topics() == ["code", "sgd", "tensors"]
    assert [q.id for q in quiz.select(["sgd"])] == ["q-num", "q-text"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("questions: [\n  - id: x", "not valid YAML"),
        ("just a string", "mapping"),
        ("questions: []", "non-empty list"),
        (GOOD.replace("id: q-multi", "id: q-single"), "question 'q-single': duplicate id"),
        (_edit("q-single", answer="fourth"), "question 'q-single': answer 'fourth' is not one of the options"),
        (_edit("q-multi", answers=["a", "z"]), "question 'q-multi': answer 'z' is not one of the options"),
        (_edit("q-num", explanation=None), "question 'q-num': missing explanation"),
        (_edit("q-num", answer="lots"), "question 'q-num': answer must be a number"),
        (_edit("q-text", answers=[], keywords=[]), "question 'q-text': a text question needs"),
        (_edit("q-text", colour="red"), "question 'q-text': unknown key(s) ['colour']"),
        (_edit("q-code", reference="def triple(x):\n    return 3 * x\n"), "question 'q-code': the reference code does not define double"),
        (_edit("q-code", reference="def double(x) return"), "question 'q-code': the reference code does not compile"),
        (_edit("q-code", cases=["1), (2"]), "question 'q-code': case '1), (2' is not a valid argument list"),
        (_edit("q-single", type="essay"), "question 'q-single': type must be one of"),
        (_edit("q-single", options=[1, 2]), "question 'q-single': options must be"),
        (GOOD.replace("id: q-num", "id: 'bad id!'"), "question #3: id must be"),
    ],
)
def test_malformed_quiz_names_file_and_question(text, words):
    with pytest.raises(QuizFormatError) as err:
        parse_quiz(text, "demo.yaml")
    assert "demo.yaml" in str(err.value)
    assert words in str(err.value)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=300), st.text(alphabet="-:[]{}!&*?|>'\"#%@` \n\tqid", max_size=200)))
def test_parser_raises_only_quiz_format_errors(text):
    try:
        parse_quiz(text, "fuzz.yaml")
    except QuizFormatError:
        pass


def test_load_quiz_reports_unreadable_files(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(QuizFormatError, match="bin.yaml"):
        load_quiz(tmp_path / "bin.yaml")
    with pytest.raises(QuizFormatError, match="cannot read"):
        load_quiz(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", QUIZZES)
def test_bundled_quiz_is_a_list_of_at_least_36_mappings(name):
    data = yaml.safe_load(bundled_quizzes()[name].read_text())
    questions = data["questions"] if isinstance(data, dict) else data
    assert isinstance(questions, list) and all(isinstance(q, dict) for q in questions)
    if name == "chapter4":
        assert len(questions) >= 36
    quiz = find_quiz(name)
    assert {q.type for q in quiz.questions} == {"single", "multiple", "numeric", "text", "code", "free"} or name != "chapter4"
    for q in quiz.questions:
        assert q.prompt and q.explanation and q.topic


def test_chapter4_covers_the_questionnaire_topics():
    topics = set(find_quiz("chapter4").topics())
    assert {"tensors", "broadcasting", "distance", "sgd", "loss-vs-metric", "gradients", "learning-rate", "view",
            "sigmoid", "mini-batches", "optimiser", "nonlinearity"} <= topics  # fmt: skip


def test_right_answers_are_not_all_in_the_same_position():
    quiz = find_quiz("chapter4")
    positions = {q.options.index(q.answers[0]) for q in quiz.questions if q.type == "single"}
    assert len(positions) >= 3, "typing the same number for every question must not pass the quiz"


# ---------------------------------------------------------------------------------------------
# answers without kernels


def right_answer(q):
    if q.type == "single":
        return q.options.index(q.answers[0]) + 1  # by number; answer_value() gives the option's text
    return q.answer_value()


def typed_answer(q) -> str:
    """The right answer as a learner would type it."""
    if q.type == "multiple":
        return ",".join(str(q.options.index(a) + 1) for a in q.answers)
    if q.type == "free":  # the answer, then Enter to keep each key point's automatic verdict
        return "\n".join([q.model_answer] + [""] * len(q.key_points))
    return str(right_answer(q))


def wrong_answer(q):
    if q.type == "single":
        return next(i for i, o in enumerate(q.options, 1) if o != q.answers[0])
    if q.type == "multiple":
        return [o for o in q.options if o not in q.answers][:1] + list(q.answers[1:])
    if q.type == "numeric" and q.params:
        right = q.answer_value()
        return {"seed": right["seed"], "answer": right["answer"] + q.tolerance + 1 + abs(right["answer"])}
    if q.type == "numeric":
        return q.answers[0] + q.tolerance + 1 + abs(q.answers[0])
    if q.type in ("text", "free"):
        return "I have no idea"
    return f"def {q.function}(*args, **kwargs):\n    return None\n"


@pytest.mark.parametrize("name", QUIZZES)
def test_every_plain_question_grades_right_and_wrong(name):
    quiz = find_quiz(name)
    for q in quiz.questions:
        if q.type == "code":
            continue
        assert check_answer(q, parse_input(q, right_answer(q))).correct, q.id
        wrong = check_answer(q, parse_input(q, wrong_answer(q)))
        assert not wrong.correct, q.id
        assert (instantiate(q, 1) if q.params else q).right_answer() in wrong.message


def test_typed_input_forms():
    quiz = parse_quiz(GOOD, "demo.yaml")
    single, multi, num, text = (quiz.question(i) for i in ("q-single", "q-multi", "q-num", "q-text"))
    assert parse_input(single, " 1 ") == parse_input(single, "a") == parse_input(single, "FIRST") == "first"
    assert parse_input(multi, "3, 1") == parse_input(multi, "a c") == ["a", "c"]
    assert parse_input(num, "3/2") == 1.5 and parse_input(num, "1.55") == 1.55
    for bad_q, bad in ((single, "7"), (single, ""), (multi, ""), (num, "lots"), (text, "  ")):
        with pytest.raises(QuizInputError):
            parse_input(bad_q, bad)


def test_text_answers_ignore_case_and_whitespace_and_accept_keywords():
    text = parse_quiz(GOOD, "demo.yaml").question("q-text")
    assert check_answer(text, "  learning   RATE ").correct
    assert check_answer(text, "learningrate.").correct
    assert check_answer(text, "the SIZE of each step").correct  # keywords: (step or lr) and size
    assert not check_answer(text, "the size").correct
    assert not check_answer(text, "stepsize").correct  # keywords match whole words


def test_numeric_tolerance():
    num = parse_quiz(GOOD, "demo.yaml").question("q-num")
    assert check_answer(num, 1.59).correct and check_answer(num, 1.41).correct
    assert not check_answer(num, 1.7).correct


def lines(*items):
    it = iter(items)

    def read(prompt):
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return read, it


def test_code_is_read_like_the_repl():
    read, rest = lines("1", "next answer")
    assert read_code_block(read) == "1"
    assert next(rest) == "next answer"  # a one-line answer never swallows the following input

    read, rest = lines("", "def f(x):", "    y = x + 1", "    return y", "", "after")
    assert read_code_block(read) == "def f(x):\n    y = x + 1\n    return y\n"
    assert next(rest) == "after"

    read, rest = lines("def f(x) return x", "after")
    assert read_code_block(read) == "def f(x) return x"  # a syntax error ends the block (graded wrong)
    assert next(rest) == "after"

    read, _ = lines("def f(x):", "    return x")
    with pytest.raises(EOFError):
        read_code_block(read)


def test_code_answers_that_cannot_work_are_judged_without_a_kernel():
    q = parse_quiz(GOOD, "demo.yaml").question("q-code")
    feedback = asyncio.run(grade_code(None, q, "1"))
    assert not feedback.correct and "does not define `double`" in feedback.message
    feedback = asyncio.run(grade_code(None, q, "def double(x) return"))
    assert not feedback.correct and "SyntaxError" in feedback.message


# ---------------------------------------------------------------------------------------------
# code questions, through real kernels


SPECIFIC_WRONG = {
    "l1_distance": "def l1_distance(a, b):\n    return (a - b).abs().sum((-1, -2))\n",
    "rmse": "def rmse(a, b):\n    return ((a - b) ** 2).mean()\n",
    "relu": "def relu(x):\n    return x.abs()\n",
    "flatten_images": "def flatten_images(x):\n    return x.view(-1)\n",
    "sgd_step": "def sgd_step(w, grad, lr):\n    return w + lr * grad\n",
    "accuracy": "def accuracy(probs, targets):\n    return ((probs > 0.5) == targets).float().sum()\n",
    "double_odds": "def double_odds(xs): return [2 * x for x in xs]",
}
# right values, but the caller's tensor changed: the prompt says "a new tensor; do not change w"
IN_PLACE = {"sgd_step": "def sgd_step(w, grad, lr):\n    w -= lr * grad\n    return w\n"}


@pytest.mark.slow
def test_every_code_question_grades_right_and_wrong_in_kernels():
    from grader.kernels import KernelPool

    items = []
    for name in QUIZZES:
        for q in find_quiz(name).questions:
            if q.type == "code":
                items.append((q, q.reference, True))
                items.append((q, wrong_answer(q), False))
                if q.function in SPECIFIC_WRONG:
                    items.append((q, SPECIFIC_WRONG[q.function], False))
                if q.function in IN_PLACE:
                    items.append((q, IN_PLACE[q.function], False))
    assert {q.function for q, _, _ in items} >= set(SPECIFIC_WRONG)

    async def run():
        async with KernelPool(size=2) as pool:
            references: dict = {}
            return await asyncio.gather(*(grade_code(pool, q, code, references) for q, code, _ in items))

    results = asyncio.run(run())
    for (q, code, expected), feedback in zip(items, results):
        assert feedback.correct is expected, (q.id, code, feedback.message)
        if not expected:
            assert f"{q.function}(" in feedback.message, feedback.message  # names the failing call
        if code == IN_PLACE.get(q.function):
            assert "in place" in feedback.message and "`w`" in feedback.message, feedback.message


# ---------------------------------------------------------------------------------------------
# learn quiz: answers file


def _answers_file(tmp_path, quiz, pick, name="answers.yaml", topics=None):
    answers = {q.id: pick(q) for q in quiz.select(topics)}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(answers, sort_keys=False))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _quiz_attempts(home):
    if not (home / "progress.db").exists():
        return [], set()
    conn = sqlite3.connect(home / "progress.db")
    try:
        attempts = conn.execute("SELECT id, lesson, points, max_points FROM attempts WHERE kind = 'quiz'").fetchall()
        topics = conn.execute("SELECT DISTINCT topic FROM results WHERE topic IS NOT NULL").fetchall()
    finally:
        conn.close()
    return attempts, {t for (t,) in topics}


def test_answers_file_without_code_questions(runner, tmp_path, home):
    quiz = find_quiz("chapter4")
    topics = ["sgd", "sigmoid"]
    path = _answers_file(tmp_path, quiz, right_answer, topics=topics)
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(path), "--topic", "sgd", "--topic", "sigmoid"])
    assert result.exit_code == 0, result.output
    n = len(quiz.select(topics))
    assert f"Score: {n}/{n}" in result.output
    attempts, recorded_topics = _quiz_attempts(home)
    assert attempts[-1][1:] == ("chapter4", n, n)
    assert recorded_topics == set(topics)

    path = _answers_file(tmp_path, quiz, wrong_answer, "wrong.yaml", topics=topics)
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(path), "--topic", "sgd", "--topic", "sigmoid"])
    assert result.exit_code == 1
    assert f"Score: 0/{n}" in result.output
    assert "✘ sgd-order [sgd]: Not quite" in result.output


def test_missing_answers_count_as_wrong(runner, tmp_path, home):
    path = tmp_path / "a.yaml"
    path.write_text("sigmoid-zero: 0.5\n")
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(path), "--topic", "sigmoid"])
    assert result.exit_code == 1
    assert "✔ sigmoid-zero" in result.output and "have no answer in the file and count as wrong" in result.output
    assert result.output.count("✘") == 1  # one line for the unanswered questions, not one per question


def test_an_answers_file_for_a_few_questions_lists_the_rest_once(runner, tmp_path, home):
    path = tmp_path / "a.yaml"
    path.write_text("sigmoid-zero: 0.5\n")
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(path)])
    total = len(find_quiz("chapter4").questions)
    assert result.exit_code == 1 and f"✘ {total - 1} of {total} questions have no answer in the file" in result.output
    assert len(result.output.splitlines()) < 10, result.output


@pytest.mark.parametrize(
    "content, words",
    [
        ("[1, 2", "not valid YAML"),
        ("- 1\n- 2\n", "mapping of question id to answer"),
        ("no-such-question: 1\n", "no question 'no-such-question'"),
        ("sigmoid-zero: lots\n", "answer to 'sigmoid-zero' (numeric question): type a number"),
        ("sgd-order: 9\n", "answer to 'sgd-order'"),
    ],
)
def test_malformed_answers_file_exits_2(runner, tmp_path, home, content, words):
    path = tmp_path / "a.yaml"
    path.write_text(content)
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(path)])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output


def test_usage_errors(runner, home, tmp_path):
    result = runner.invoke(cli, ["quiz", "chapter99"])
    assert result.exit_code == 2 and "unknown quiz 'chapter99'" in result.output and "chapter4" in result.output
    result = runner.invoke(cli, ["quiz", "chapter4", "--topic", "astrology"], input="")
    assert result.exit_code == 2 and "no topic astrology" in result.output
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text(GOOD.replace("id: q-multi", "id: q-single"))
    result = runner.invoke(cli, ["quiz", str(broken)], input="")
    assert result.exit_code == 2 and "broken.yaml: question 'q-single': duplicate id" in result.output


def test_list_quizzes(runner):
    result = runner.invoke(cli, ["quiz"])
    assert result.exit_code == 0
    assert "chapter4" in result.output and "questions" in result.output


@pytest.mark.slow
def test_answers_file_with_every_question_including_code(runner, tmp_path, home):
    quiz = find_quiz("chapter4")
    path = _answers_file(tmp_path, quiz, right_answer)
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(path)])
    assert result.exit_code == 0, result.output
    assert f"Score: {len(quiz.questions)}/{len(quiz.questions)}" in result.output
    answers = yaml.safe_load(path.read_text())
    answers["code-relu"] = "def relu(x):\n    return x.abs()\n"
    path.write_text(yaml.safe_dump(answers))
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(path)])
    assert result.exit_code == 1
    assert "✘ code-relu [nonlinearity]: relu(torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])): values differ" in result.output


# ---------------------------------------------------------------------------------------------
# learn quiz: interactive


def _typed(answers) -> str:
    return "\n".join(answers) + "\n"


def test_interactive_quiz_to_the_end(runner, home):
    quiz = find_quiz("chapter4")
    questions = quiz.select(["sigmoid"])
    answers = [typed_answer(q) for q in questions]
    result = runner.invoke(cli, ["quiz", "chapter4", "--topic", "sigmoid"], input=_typed(answers))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"Question 1/{len(questions)}  [sigmoid]" in result.output
    assert result.output.count("✔ Correct!") == len(questions)
    assert questions[0].explanation[:40] in result.output  # feedback comes with the explanation
    assert f"Final score: {len(questions)}/{len(questions)} (100%)" in result.output
    attempts, topics = _quiz_attempts(home)
    assert len(attempts) == 1 and topics == {"sigmoid"}
    assert not (home / "quizzes" / "chapter4.json").exists()  # finished: nothing to resume


def test_invalid_input_is_asked_again(runner, home):
    q = find_quiz("chapter4").select(["sigmoid"])[0]
    result = runner.invoke(cli, ["quiz", "chapter4", "--topic", "sigmoid"], input=_typed(["", "9", "banana", typed_answer(q)]))
    assert result.exit_code == 0
    assert result.output.count("(type the number of an option, 1 to 4)") == 2
    assert "✔ Correct!" in result.output


def test_end_of_input_saves_and_resume_continues(runner, home):
    quiz = find_quiz("chapter4")
    questions = quiz.select(["mini-batches"])
    assert len(questions) >= 3 and all(q.type != "code" for q in questions)
    topics = ["--topic", "mini-batches"]
    first = [typed_answer(q) for q in questions[:2]]
    result = runner.invoke(cli, ["quiz", "chapter4", *topics], input=_typed(first))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "Stopped: your progress is saved (2 of" in result.output
    assert "Score so far: 2/2" in result.output
    state = json.loads((home / "quizzes" / "chapter4.json").read_text())
    assert len(state["answered"]) == 2
    assert _quiz_attempts(home)[0] == []  # an unfinished quiz is not recorded yet

    # resume: only the questions not answered yet are asked
    answers = [typed_answer(q) for q in questions[2:]]
    result = runner.invoke(cli, ["quiz", "chapter4"], input=_typed(["y", *answers]))
    assert result.exit_code == 0, result.output
    assert "You have an unfinished chapter4 quiz (topic mini-batches): 2 of" in result.output
    assert f"Question 3/{len(questions)}" in result.output and "Question 1/" not in result.output
    assert f"Final score: {len(questions)}/{len(questions)}" in result.output
    attempts, topics = _quiz_attempts(home)
    assert attempts[-1][2:] == (len(questions), len(questions)) and topics == {"mini-batches"}


def test_restart_and_declining_to_resume(runner, home):
    args = ["quiz", "chapter4", "--topic", "sigmoid"]
    runner.invoke(cli, args, input="1\n")
    assert (home / "quizzes" / "chapter4.json").exists()
    result = runner.invoke(cli, args, input="n\n")
    assert "Resume it?" in result.output and "Question 1/" in result.output
    result = runner.invoke(cli, [*args, "--restart"], input="")
    assert "Resume it?" not in result.output and "Question 1/" in result.output
    assert "Score so far: 0/0" in result.output


def test_end_of_input_at_the_resume_prompt(runner, home):
    args = ["quiz", "chapter4", "--topic", "sigmoid"]
    runner.invoke(cli, args, input="1\n")
    result = runner.invoke(cli, args, input="")
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "Score so far" in result.output


def test_shuffle_is_reproducible_with_a_seed(runner, home):
    def order(seed):
        result = runner.invoke(cli, ["quiz", "chapter4", "--shuffle", "--seed", str(seed), "--restart"], input="")
        assert f"shuffled with seed {seed}" in result.output
        return result.output.split("Question 1/")[1].splitlines()[1]

    assert order(3) == order(3)
    assert len({order(s) for s in (1, 2, 3, 4)}) > 1


@pytest.mark.slow
def test_interactive_code_answers_run_in_kernels(runner, home):
    quiz = find_quiz("chapter4")
    questions = quiz.select(["view", "python"])
    assert [q.type for q in questions].count("code") == 2
    script = []
    for q in questions:
        if q.function == "flatten_images":
            script += ["def flatten_images(x):", "    return x.view(x.shape[0], -1)", ""]
        elif q.type == "code":
            script += ["1"]  # a one-line non-answer: wrong, and it must not swallow what follows
        else:
            script.append(typed_answer(q))
    result = runner.invoke(cli, ["quiz", "chapter4", "--topic", "view", "--topic", "python"], input=_typed(script))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "matches the reference on 3 inputs" in result.output
    assert "does not define `double_odds`" in result.output
    n = len(questions)
    assert f"Final score: {n - 1}/{n}" in result.output


def test_docs_answers_example_is_right():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "learners" / "study.md").read_text()
    example = page.split('```yaml title="answers.yaml"')[1].split("```")[0]
    quiz = find_quiz("chapter4")
    for qid, raw in yaml.safe_load(example).items():
        q = quiz.question(qid)
        if q.type == "code":
            assert "def " + q.function in raw
        else:
            assert check_answer(q, parse_input(q, raw)).correct, qid


@pytest.mark.parametrize("name", sorted(bundled_quizzes()))
def test_every_answer_value_is_accepted_as_written(name):
    """An answers file may give a choice by its option's text, even one ending in ")" or "."."""
    for q in load_quiz(bundled_quizzes()[name]).questions:
        if q.type in ("single", "multiple"):
            assert check_answer(q, parse_input(q, q.answer_value())).correct, q.id


def test_an_option_ending_in_a_parenthesis_is_matched_as_written():
    q = parse_quiz(
        "- id: q1\n  type: single\n  topic: t\n  prompt: p?\n  explanation: e\n"
        "  options: [Updates (subtracts lr), Updates]\n  answer: Updates (subtracts lr)\n",
        "paren.yaml",
    ).questions[0]
    assert parse_input(q, "Updates (subtracts lr)") == "Updates (subtracts lr)"
    assert parse_input(q, "Updates.") == "Updates" and parse_input(q, "2)") == "Updates"
