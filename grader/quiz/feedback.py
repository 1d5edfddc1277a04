"""What checking one answer gives back, and the error of an answer that cannot be read: the two pieces
every way of answering shares (typed answers, code, free answers), in a home of their own.

    answers.check_answer ─┐
    code.grade_code ──────┼─► Feedback(correct, message, given, duration, graded, detail)
    free_flow.check_free ─┘
    answers.parse_input, free_flow.parse_free_input ─► QuizInputError (the learner is asked again)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Feedback", "QuizInputError"]


class QuizInputError(ValueError):
    """Typed input that is not an answer of the right form (the learner is asked again)."""


@dataclass
class Feedback:
    correct: bool
    message: str
    given: object = None
    duration: float = 0.0
    graded: bool = True  # False: the answer could not be graded (e.g. kernels unavailable)
    detail: dict | None = None  # free: {"provisional": {kp: {found, matched}}, "confirmed": {kp: bool} | None}
