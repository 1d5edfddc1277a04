"""Parameterised numeric questions: generators and answer expressions validated on load, the
same seed reproduces a variant, a new session draws a new one, and the seed is recorded."""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.cli import cli
from grader.errors import QuizFormatError
from grader.quiz import bundled_quizzes, check_answer, find_quiz, parse_input, parse_quiz
from grader.quiz.variants import ExpressionError, evaluate, instantiate

VARIANTS = [(name, q) for name in sorted(bundled_quizzes()) for q in find_quiz(name).questions if q.params]

Q = {"id": "v1", "type": "numeric", "topic": "t", "prompt": "({n}, {k}) @ ({k}, 2): how many numbers?",
     "explanation": "({n}, 2): {answer}.", "params": {"n": {"int": [2, 9]}, "k": {"choice": [3, 5]}}, "answer": "n * 2"}  # fmt: skip


def _doc(**changes):
    q = dict(Q, **changes)
    return yaml.safe_dump({"id": "demo", "questions": [{k: v for k, v in q.items() if v is not None}]})


def test_bundled_variants_exist_and_reproduce():
    assert len(VARIANTS) >= 5
    for _, q in VARIANTS:
        a, b = instantiate(q, 11), instantiate(q, 11)
        assert a == b and a.variant_seed == 11 and "{" not in a.prompt and "{" not in a.explanation
        assert len({instantiate(q, seed).prompt for seed in range(20)}) > 1, q.id  # retries differ
        right = check_answer(q, parse_input(q, {"seed": 11, "answer": a.answers[0]}))
        assert right.correct and "(variant seed 11)" in right.message
        wrong = check_answer(q, parse_input(q, {"seed": 11, "answer": a.answers[0] + 1 + 2 * q.tolerance}))
        assert not wrong.correct


def test_the_answer_is_computed_from_the_drawn_values():
    q = parse_quiz(_doc(), "demo.yaml").questions[0]
    v = instantiate(q, 3)
    n = int(v.prompt.split(",")[0].strip("("))
    assert v.answers == (n * 2,) and v.explanation == f"({n}, 2): {n * 2}."


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"params": {"n": {"int": [5, 1]}}}, "int needs [low, high]"),
        ({"params": {"n": {"float": [0, 1]}}}, "float needs [low, high, decimals]"),
        ({"params": {"n": {"choice": []}}}, "choice needs a non-empty list"),
        ({"params": {"n": {"normal": [0, 1]}}}, "unknown generator 'normal'"),
        ({"params": {"abs": {"int": [1, 2]}}}, "param name 'abs'"),
        ({"params": []}, "params must be a mapping"),
        ({"prompt": "{m} and {n}"}, "prompt uses {m}, which is not a parameter"),
        ({"answer": "n * z"}, "unknown name 'z'"),
        ({"answer": "__import__('os')"}, "not allowed"),
        ({"answer": "n / (k - k)"}, "ZeroDivisionError"),
        ({"answer": 4}, "must be an expression of its params"),
    ],
)
def test_malformed_variants_are_named(changes, message):
    with pytest.raises(QuizFormatError) as err:
        parse_quiz(_doc(**changes), "bad.yaml")
    assert str(err.value).startswith("bad.yaml: question 'v1': ") and message in str(err.value)


def test_the_expression_evaluator_allows_only_arithmetic():
    assert evaluate("max(a * 2, 3) + abs(-b) ** 2 // 1", {"a": 1, "b": 2}) == 7
    for bad in ("a.real", "open('x')", "[a]", "a if a else 1", "2 ** 1000", "lambda: 1", "a < 2"):
        with pytest.raises(ExpressionError):
            evaluate(bad, {"a": 1})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_evaluator_fuzzed_raises_only_expression_errors(expr):
    try:
        value = evaluate(expr, {"n": 3, "k": 0.5})
    except ExpressionError:
        return
    assert isinstance(value, (int, float))


def test_answers_file_needs_the_seed(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    answers = tmp_path / "a.yaml"
    answers.write_text("var-sgd-step: 0.5\n")
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(answers)])
    assert result.exit_code == 2 and "this question has variants: give {seed: N, answer: X}" in result.output


def test_interactive_variant_is_kept_on_resume_and_new_on_retry(runner, tmp_path, monkeypatch):
    import grader.quiz.variants as variants

    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    seeds = iter([101, 202])
    monkeypatch.setattr(variants, "new_seed", lambda: next(seeds))
    path = tmp_path / "demo.yaml"
    path.write_text(_doc())
    q = parse_quiz(_doc(), "demo.yaml").questions[0]
    first = runner.invoke(cli, ["quiz", str(path)], input="")  # shown, then end of input
    assert "(variant seed 101)" in first.output and instantiate(q, 101).prompt in first.output
    resumed = runner.invoke(cli, ["quiz", str(path)], input=f"y\n{instantiate(q, 101).answers[0]}\n")
    assert "(variant seed 101)" in resumed.output and "✔ Correct!" in resumed.output, resumed.output
    assert not (tmp_path / "home" / "quizzes" / "demo.json").exists()  # finished: nothing to resume
    retry = runner.invoke(cli, ["quiz", str(path)], input="0\n")
    assert "(variant seed 202)" in retry.output and instantiate(q, 202).prompt in retry.output
    conn = sqlite3.connect(tmp_path / "home" / "progress.db")
    try:
        rows = conn.execute("SELECT question, seed, correct FROM variant_answers ORDER BY id").fetchall()
    finally:
        conn.close()
    assert rows == [("v1", 101, 1), ("v1", 202, 0)]
