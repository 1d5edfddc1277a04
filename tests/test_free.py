"""Free-response questions: the phrase matcher, the file format, every bundled key point (the
model answer makes it; the YAML's wrong answers each miss a point or trip a wrong claim), the
two-step grading through `learn quiz` (both verdicts recorded) and answers files."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.cli import cli
from grader.errors import QuizFormatError
from grader.quiz import bundled_quizzes, check_answer, find_quiz, parse_input, parse_quiz
from grader.quiz.free import KeyPoint, grade_free, match_phrase, tokens

FREE = [(name, q) for name in sorted(bundled_quizzes()) for q in find_quiz(name).questions if q.type == "free"]
POINTS = [(name, q, kp) for name, q in FREE for kp in q.key_points]
WRONG = [(name, q, w) for name, q in FREE for w in q.wrong_answers]


def _id(value):
    if isinstance(value, tuple):
        return "/".join(v.id if hasattr(v, "id") else str(v)[:30] for v in value)
    return None


# ---------------------------------------------------------------------------------------------
# the matcher


def test_stems_let_other_word_forms_match():
    assert match_phrase("subtract the gradient", tokens("we subtracted the gradients")) == "subtracted gradients"
    assert match_phrase("learning rate", tokens("Learning rates matter.")) == "learning rates"


def test_small_gaps_are_allowed_but_not_large_ones():
    assert match_phrase("gradient zero", tokens("the gradient is almost always zero"))
    assert not match_phrase("gradient zero", tokens("the gradient, which we compute with backward and then use, is zero"))


def test_a_phrase_never_spans_two_sentences():
    assert not match_phrase("gradient zero", tokens("We need the gradient. Zero is the answer."))


def test_negation_flips_a_match():
    assert not match_phrase("accuracy is smooth", tokens("accuracy is not smooth"))
    assert not match_phrase("accuracy is smooth", tokens("accuracy isn't smooth"))
    assert match_phrase("accuracy is not smooth", tokens("accuracy isn’t smooth"))  # curly apostrophe
    assert match_phrase("not copy", tokens("it does not copy anything"))
    assert not match_phrase("not copy", tokens("it copies the data"))


def test_verdict_lists_found_missing_and_wrong_claims():
    kps = (
        KeyPoint("against", "Step against the gradient", ("against the gradient", "subtract gradient")),
        KeyPoint("lr", "Scaled by the learning rate", ("learning rate",)),
        KeyPoint("plus", "Add the gradient", ("add the gradient",), must_not_claim=True),
    )
    good = grade_free(kps, "Subtract the gradient times the learning rate.")
    assert good.correct and good.fraction == 1.0 and good.result("against").matched == "subtract gradient"
    half = grade_free(kps, "Use the learning rate.")
    assert not half.correct and [k.id for k in half.missing] == ["against"] and half.fraction == 0.5
    assert "missing: Step against the gradient" in half.summary()
    bad = grade_free(kps, "Add the gradient to the weights, subtract gradient too, learning rate.")
    assert not bad.correct and [k.id for k in bad.tripped] == ["plus"] and bad.fraction == 0.0
    assert 'wrong claim: Add the gradient ("add gradient")' in bad.summary()


# ---------------------------------------------------------------------------------------------
# every bundled key point


def test_chapter4_has_at_least_30_free_questions_covering_the_questionnaire():
    free = [q for name, q in FREE if name == "chapter4"]
    assert len(free) >= 30
    assert {"tensors", "data", "baseline", "python", "distance", "broadcasting", "loss-vs-metric", "sgd", "mini-batches",
            "loss", "learning-rate", "gradients", "sigmoid", "optimiser", "view", "model", "nonlinearity"} <= {q.topic for q in free}  # fmt: skip


@pytest.mark.parametrize(("name", "q", "kp"), POINTS, ids=_id)
def test_model_answer_makes_every_key_point(name, q, kp):
    verdict = grade_free(q.key_points, q.model_answer)
    assert verdict.result(kp.id).found is (not kp.must_not_claim), (q.id, kp.id)
    if not kp.must_not_claim:
        assert not grade_free(q.key_points, "I am not sure, sorry.").result(kp.id).found  # the point can be missed
    else:  # a wrong claim must be caught by at least one of the question's wrong answers
        assert any(grade_free(q.key_points, w).result(kp.id).found for w in q.wrong_answers), (q.id, kp.id)


@pytest.mark.parametrize(("name", "q", "wrong"), WRONG, ids=_id)
def test_wrong_answer_misses_a_point_or_trips_a_wrong_claim(name, q, wrong):
    verdict = grade_free(q.key_points, wrong)
    assert not verdict.correct and (verdict.missing or verdict.tripped), (q.id, wrong)
    assert not check_answer(q, parse_input(q, wrong)).correct


@pytest.mark.parametrize(("name", "q"), FREE, ids=_id)
def test_every_free_question_has_wrong_answers_and_its_own_words(name, q):
    assert q.wrong_answers, q.id
    assert 2 <= len(q.key_points) <= 5


# ---------------------------------------------------------------------------------------------
# the file format

FREE_Q = {
    "id": "f1",
    "type": "free",
    "topic": "sgd",
    "prompt": "How does SGD step?",
    "explanation": "Downhill.",
    "model_answer": "Subtract the gradient times the learning rate.",
    "key_points": [
        {"id": "minus", "point": "Against the gradient", "accept": ["subtract gradient"]},
        {"id": "lr", "point": "Learning rate", "accept": ["learning rate", "lr"]},
    ],
    "wrong_answers": ["Add it."],
}


def _doc(**changes):
    q = json.loads(json.dumps(FREE_Q))
    for key, value in changes.items():
        if value is None:
            q.pop(key, None)
        else:
            q[key] = value
    return yaml.safe_dump({"id": "demo", "questions": [q]})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_answer": None}, "model_answer must be non-empty text"),
        ({"key_points": [FREE_Q["key_points"][0]]}, "key_points must be a list of 2 to 5"),
        ({"key_points": "x"}, "key_points must be a list of 2 to 5"),
        ({"key_points": [FREE_Q["key_points"][0]] * 2}, "two key points have the same id"),
        (
            {
                "key_points": [
                    {"id": "a", "point": "p", "accept": ["x"], "must_not_claim": True},
                    {"id": "b", "point": "p", "accept": ["y"], "must_not_claim": True},
                ]
            },
            "at least one key point",
        ),  # fmt: skip
        ({"key_points": [{"id": "a", "point": "p", "accept": []}, FREE_Q["key_points"][1]]}, "key point 'a': accept must be"),
        ({"key_points": [{"id": "a", "point": "p", "accept": ["not"]}, FREE_Q["key_points"][1]]}, "has no word to match"),
        ({"key_points": [{"id": False, "point": "p", "accept": ["x"]}, FREE_Q["key_points"][1]]}, "id must be a short name"),
        ({"key_points": [{"id": "a", "point": "p", "accept": ["x"], "weight": 2}, FREE_Q["key_points"][1]]}, "unknown key(s) ['weight']"),
        ({"key_points": [{"id": "a", "point": "p", "accept": ["x"], "must_not_claim": "yes"}, FREE_Q["key_points"][1]]}, "true or false"),
        (
            {"model_answer": "Use a small learning rate."},
            "the model answer does not pass its own key points (missing: Against the gradient)",
        ),
        ({"wrong_answers": [3]}, "wrong_answers must be a list"),
        ({"answer": "x"}, "unknown key(s) ['answer'] for a free question"),
    ],
)
def test_malformed_free_questions_are_named(changes, message):
    with pytest.raises(QuizFormatError) as err:
        parse_quiz(_doc(**changes), "bad.yaml")
    assert str(err.value).startswith("bad.yaml: question 'f1': ")
    assert message in str(err.value)


free_fields = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.text(max_size=8), max_size=3))
key_point = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["a", "b"]), free_fields), "point": free_fields, "accept": free_fields},
    optional={"must_not_claim": st.one_of(st.booleans(), free_fields), "x": free_fields},
)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(st.lists(key_point, max_size=6), free_fields),
    st.one_of(st.sampled_from(["a b", "subtract gradient learning rate"]), free_fields),
    st.one_of(st.lists(st.text(max_size=10), max_size=2), free_fields),
)
def test_free_parser_fuzzed_gives_only_format_errors(key_points, model, wrong):
    doc = _doc(key_points=key_points if key_points is not None else "", model_answer=model if model is not None else "",
               wrong_answers=wrong if wrong is not None else "")  # fmt: skip
    try:
        quiz = parse_quiz(doc, "fuzz.yaml")
    except QuizFormatError as exc:
        assert "fuzz.yaml" in str(exc)
        return
    q = quiz.questions[0]
    assert grade_free(q.key_points, q.model_answer).correct


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=40))
def test_matcher_never_raises(answer, phrase):
    result = match_phrase(phrase, tokens(answer))
    assert isinstance(result, str)


# ---------------------------------------------------------------------------------------------
# learn quiz: interactive two-step grading, answers files


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _free_rows(home):
    conn = sqlite3.connect(home / "progress.db")
    try:
        return conn.execute("SELECT question, answer, provisional, provisional_correct, confirmed, correct FROM free_answers").fetchall()
    finally:
        conn.close()


def test_interactive_free_answer_is_checked_then_self_assessed(runner, home, tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(_doc())
    typed = "We use the learning rate.\ny\n\n"  # minus: the learner says yes (corrects), lr: Enter keeps found
    result = runner.invoke(cli, ["quiz", str(path)], input=typed)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "✘ Against the gradient  (not found)" in out
    assert '✔ Learning rate  ("learning rate")' in out
    assert "Model answer: Subtract the gradient times the learning rate." in out
    assert "Did your answer make this point: Against the gradient? [y/N]" in out
    assert "Correct! All key points made. (you corrected 1 of the automatic verdicts)" in out
    [(qid, answer, provisional, provisional_ok, confirmed, ok)] = _free_rows(home)
    assert (qid, answer, provisional_ok, ok) == ("f1", "We use the learning rate.", 0, 1)
    assert json.loads(provisional)["minus"] == {"found": False, "matched": ""}
    assert json.loads(confirmed) == {"minus": True, "lr": True}


def test_self_assessment_can_take_a_point_away_and_asks_again_on_nonsense(runner, home, tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(_doc())
    result = runner.invoke(cli, ["quiz", str(path)], input="Subtract the gradient with the learning rate.\nmaybe\nn\n\n")
    assert result.exit_code == 0, result.output
    assert "(type y or n, or press Enter to keep the automatic verdict)" in result.output
    assert "Not yet: missing: Against the gradient." in result.output
    [(_, _, _, provisional_ok, _, ok)] = _free_rows(home)
    assert (provisional_ok, ok) == (1, 0)


def test_answers_file_grades_free_answers_with_the_same_key_points(runner, home, tmp_path):
    quiz = find_quiz("chapter4")
    q = quiz.question("free-accuracy-loss")
    answers = tmp_path / "a.yaml"
    answers.write_text(yaml.safe_dump({q.id: q.model_answer, "free-update-rule": "w += lr * w.grad, adding the gradient."}))
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(answers)])
    assert result.exit_code == 1
    assert "✔ free-accuracy-loss [loss-vs-metric]" in result.output
    assert "✘ free-update-rule [optimiser]: Not yet (automatic verdict): missing: Subtract the gradient" in result.output
    assert '! wrong claim: Add the gradient to the weight ("adding gradient")' in result.output
    rows = {r[0]: r for r in _free_rows(home)}
    assert rows["free-accuracy-loss"][5] == 1 and rows["free-update-rule"][5] == 0 and rows["free-update-rule"][4] is None


def test_answers_file_may_carry_the_self_assessment(runner, home, tmp_path):
    answers = tmp_path / "a.yaml"
    answers.write_text(yaml.safe_dump({"free-view": {"answer": "It reshapes the tensor.", "key_points": {"minus-one": True}}}))
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(answers), "--topic", "view"])
    assert "✔ free-view [view]" in result.output, result.output
    [(_, _, _, provisional_ok, confirmed, ok)] = _free_rows(home)
    assert (provisional_ok, ok, json.loads(confirmed)) == (0, 1, {"minus-one": True})


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"answer": "x", "key_points": {"nope": True}}, "no key point nope"),
        ({"answer": "x", "key_points": {"reshape": "yes"}}, "key_points must map key point ids to true or false"),
        ({"text": "x"}, "unknown key(s) ['text']"),
        ("", "write your answer in a sentence or two"),
    ],
)
def test_bad_free_answers_in_a_file_exit_2(runner, home, tmp_path, answer, message):
    answers = tmp_path / "a.yaml"
    answers.write_text(yaml.safe_dump({"free-view": answer}))
    result = runner.invoke(cli, ["quiz", "chapter4", "--answers", str(answers)])
    assert result.exit_code == 2, result.output
    assert "answer to 'free-view' (free question)" in result.output and message in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------
# instructors: a class's answer files into the gradebook


def _class(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    quiz = find_quiz("chapter4")
    q = quiz.question("free-accuracy-loss")
    (folder / "alice.yaml").write_text(yaml.safe_dump({q.id: q.model_answer, "rank-definition": 1}))
    (folder / "bob.yaml").write_text(yaml.safe_dump({q.id: "Accuracy is too slow to compute.", "free-view": "It reshapes it."}))
    (folder / "carol.yaml").write_text("free-view: [unclosed\n")
    return folder


def _gradebook_rows(path):
    conn = sqlite3.connect(path)
    try:
        return {(r[0], r[1]): r[2:] for r in conn.execute("SELECT student, question, points, override, auto_correct FROM quiz_answers")}
    finally:
        conn.close()


def test_class_batch_grades_every_file_into_the_gradebook_with_overrides(runner, home, tmp_path):
    folder = _class(tmp_path)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({"bob": {"free-view": {"key_points": {"minus-one": True}, "note": "said it in class"},
                                                 "free-accuracy-loss": {"points": 0.5}}}))  # fmt: skip
    gb = tmp_path / "gb.db"
    result = runner.invoke(cli, ["quiz", "chapter4", "--class", str(folder), "--gradebook", str(gb), "--overrides", str(overrides)])
    assert result.exit_code == 1, result.output  # carol's file is broken: reported, the others graded
    assert "alice: 2/" in result.output and "bob: 1.5/" in result.output and "(2 overrides)" in result.output
    assert "✘ carol: not graded:" in result.output and "not valid YAML" in result.output
    assert "2 of 3 students graded" in result.output
    rows = _gradebook_rows(gb)
    assert rows[("alice", "free-accuracy-loss")][0] == 1.0 and rows[("alice", "rank-definition")] == (1.0, None, 1)
    assert rows[("bob", "free-accuracy-loss")][:2] == (0.5, '{"points": 0.5}')
    assert rows[("bob", "free-view")][0] == 1.0 and rows[("bob", "free-view")][2] == 0  # automatic: missed; override: made
    assert len([k for k in rows if k[0] == "alice"]) == len(find_quiz("chapter4").questions)
    again = runner.invoke(cli, ["quiz", "chapter4", "--class", str(folder), "--gradebook", str(gb)])
    assert again.exit_code == 1 and "bob: 0.5/" in again.output  # re-run without overrides replaces the rows (half of free-view)
    assert _gradebook_rows(gb)[("bob", "free-accuracy-loss")] == (0.0, None, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bob": {"nope": 1}}, "bob / nope: no question 'nope'"),
        ({"bob": {"free-view": {"points": 7}}}, "points must be a number from 0 to 1"),
        ({"bob": {"free-view": {"key_points": {"zzz": True}}}}, "key_points must map key point ids"),
        ({"bob": {"rank-definition": {"key_points": {"a": True}}}}, "for free questions only"),
        ({"bob": {"free-view": {"grade": "A"}}}, "an override is"),
        ({"dave": {"free-view": True}}, "no answers file: dave"),
        ([1, 2], "overrides are a mapping"),
    ],
)
def test_bad_override_files_stop_before_any_write(runner, home, tmp_path, overrides, message):
    folder = _class(tmp_path)
    path = tmp_path / "overrides.yaml"
    path.write_text(yaml.safe_dump(overrides))
    gb = tmp_path / "gb.db"
    result = runner.invoke(cli, ["quiz", "chapter4", "--class", str(folder), "--gradebook", str(gb), "--overrides", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not gb.exists()


def test_class_batch_refuses_an_empty_folder(runner, home, tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli, ["quiz", "chapter4", "--class", str(tmp_path / "empty"), "--gradebook", str(tmp_path / "gb.db")])
    assert result.exit_code == 2 and "no answers files" in result.output


def test_lesson3_quiz_covers_the_lesson():
    quiz = find_quiz("lesson3")
    assert len(quiz.questions) >= 30
    assert {"model", "loss", "gradients", "learning-rate", "relu", "matmul", "architecture", "export", "tabular"} <= set(quiz.topics())
    assert {q.type for q in quiz.questions} >= {"single", "multiple", "numeric", "text", "free"}
    assert {"no-grad", "timm-name", "vocab", "log-plus-one", "export-stores"} <= {q.id for q in quiz.questions}


def test_end_of_input_during_the_self_check_keeps_the_answer(runner, home, tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(_doc())
    result = runner.invoke(cli, ["quiz", str(path)], input="Subtract the gradient times the learning rate.\n")
    assert result.exit_code == 0, result.output
    assert "Correct! All key points made (automatic verdict)." in result.output
    [(_, answer, _, provisional_ok, confirmed, ok)] = _free_rows(home)
    assert (answer, provisional_ok, confirmed, ok) == ("Subtract the gradient times the learning rate.", 1, None, 1)


small = st.one_of(st.booleans(), st.integers(-1, 3), st.text(max_size=3))
override = st.one_of(small, st.dictionaries(st.sampled_from(["points", "correct", "key_points", "note", "x"]), small, max_size=3))
per_student = st.dictionaries(st.sampled_from(["free-view", "rank-definition", "nope"]), override, max_size=2)
override_docs = st.one_of(
    st.dictionaries(st.text(max_size=8), st.one_of(small, per_student), max_size=2), st.lists(st.integers(), max_size=2)
)


@settings(max_examples=150, deadline=None)
@given(override_docs)
def test_override_parser_fuzzed_gives_only_answers_errors(data):
    from grader.errors import QuizAnswersError
    from grader.quiz.classbatch import parse_overrides

    try:
        parse_overrides(yaml.safe_dump(data), "fuzz.yaml", find_quiz("chapter4"))
    except QuizAnswersError as exc:
        assert str(exc).startswith("fuzz.yaml")
