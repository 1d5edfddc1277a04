"""Graded answers: the report of an answers file (or of a finished session), and its record.

    answers.yaml ──parse_answers──► {question id: answer} ──grade_answers──► QuizReport ──record──►
        progress.db (attempts), review cards (grader.cards), free answers, variants

A question left unanswered counts as wrong, in the score and in the record.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..errors import QuizAnswersError
from ..yamlfile import load_yaml
from .answers import check_answer, parse_input
from .code import grade_code_batch
from .feedback import Feedback, QuizInputError
from .model import Question, Quiz

__all__ = ["QuizReport", "parse_answers", "grade_answers", "record"]


@dataclass
class QuizReport:
    quiz: Quiz
    questions: list[Question]
    feedback: dict[str, Feedback] = field(default_factory=dict)  # answered questions only
    duration: float = 0.0

    @property
    def score(self) -> float:
        return sum(q.points for q in self.questions if q.id in self.feedback and self.feedback[q.id].correct)

    @property
    def max_score(self) -> float:
        return sum(q.points for q in self.questions)

    @property
    def all_correct(self) -> bool:
        return all(q.id in self.feedback and self.feedback[q.id].correct for q in self.questions)

    def by_topic(self) -> dict[str, tuple[float, float]]:
        out: dict[str, list[float]] = {}
        for q in self.questions:
            got = q.points if q.id in self.feedback and self.feedback[q.id].correct else 0.0
            pair = out.setdefault(q.topic, [0.0, 0.0])
            pair[0] += got
            pair[1] += q.points
        return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def parse_answers(text: str, source: str, quiz: Quiz) -> dict[str, object]:
    """An answers file: a YAML mapping of question id -> answer (or such a mapping under `answers:`)."""
    data = load_yaml(text, source, QuizAnswersError)
    if isinstance(data, dict) and set(data) == {"answers"} and isinstance(data["answers"], dict):
        data = data["answers"]
    if not isinstance(data, dict):
        raise QuizAnswersError(f"{source}: an answers file is a mapping of question id to answer, e.g. `tensor-rank: 2`")
    ids = {q.id for q in quiz.questions}
    unknown = sorted(str(k) for k in data if k not in ids)
    if unknown:
        raise QuizAnswersError(f"{source}: no question {', '.join(repr(u) for u in unknown[:5])} in quiz {quiz.id}")
    answers = {}
    for qid, raw in data.items():
        question = quiz.question(qid)
        try:
            answers[qid] = parse_input(question, raw)
        except QuizInputError as exc:
            raise QuizAnswersError(f"{source}: answer to '{qid}' ({question.type} question): {exc}") from None
    return answers


def grade_answers(quiz: Quiz, answers: dict[str, object], topics=None, pool_size: int | None = None) -> QuizReport:
    """Grade parsed answers; every code answer runs in one kernel pool, all at once."""
    started = time.monotonic()
    questions = quiz.select(topics)
    report = QuizReport(quiz, questions)
    code = [(q, answers[q.id]) for q in questions if q.type == "code" and q.id in answers]
    for q in questions:
        if q.id in answers and q.type != "code":
            report.feedback[q.id] = check_answer(q, answers[q.id])
    if code:
        report.feedback.update(asyncio.run(grade_code_batch(code, pool_size)))
    report.duration = time.monotonic() - started
    return report


def record(report: QuizReport) -> str | None:
    """Store an attempt in the progress history, one result per question with its topic
    (a question left unanswered counts as wrong, as in the score)."""
    from ..progress import QuizAnswer, record_quiz

    answers = []
    for q in report.questions:
        fb = report.feedback.get(q.id)
        correct = bool(fb and fb.correct)
        answers.append(QuizAnswer(q.id, q.topic, correct, q.points if correct else 0.0, q.points, fb.duration if fb else 0.0))
    warning = record_quiz(report.quiz.id, answers, duration=report.duration)
    from ..cards import record_items
    from .free_flow import record_free

    answered = [("quiz", f"{report.quiz.id}:{q.id}", report.feedback[q.id].correct) for q in report.questions if q.id in report.feedback]
    from .variants import record_variants

    warnings = [warning, record_free(report), record_variants(report), record_items(answered)]  # each runs, whatever the others did
    return next((w for w in warnings if w), None)
