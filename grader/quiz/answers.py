"""Answers that need no kernel: read what the learner typed as an answer, and check it.

    typed text ──parse_input(question, raw)──► an answer (or QuizInputError: asked again)
               ──check_answer(question, given)──► Feedback (right or not, and why)

Single and multiple choice by option number or text, numbers within a tolerance, text ignoring
case and spacing (or by keywords), free answers by key points (grader.quiz.free_flow), numeric
variants (grader.quiz.variants). Code answers run in kernels: grader.quiz.code.
"""

from __future__ import annotations

import math
import re

from .feedback import Feedback, QuizInputError
from .model import Question, fmt_number, is_number

__all__ = ["Feedback", "QuizInputError", "parse_input", "check_answer", "jsonable"]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text.casefold()).rstrip(".")


def _words(text: str) -> str:
    return " " + re.sub(r"\s+", " ", text.casefold()).strip() + " "


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _option_index(question: Question, token: str) -> int:
    """An option given by its number ("2", "2."), letter ("b)") or text (exactly, or without a
    final "." or ")" - but an option that itself ends in ")" is matched as written first)."""
    written = token.strip()
    trimmed = written.rstrip(".)").strip()
    if trimmed.isdecimal() and 1 <= int(trimmed) <= len(question.options):
        return int(trimmed) - 1
    if len(trimmed) == 1 and trimmed.lower() in _LETTERS[: len(question.options)]:
        return _LETTERS.index(trimmed.lower())
    for candidate in (written, trimmed):
        for i, option in enumerate(question.options):
            if _squash(option) == _squash(candidate):
                return i
    raise QuizInputError(f"type the number of an option, 1 to {len(question.options)}")


def parse_input(question: Question, raw) -> object:
    """What the learner gave, in the form `check_answer` takes; QuizInputError if it is no answer."""
    if question.type == "single":
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str) or not raw.strip():
            raise QuizInputError("type the number of one option")
        return question.options[_option_index(question, raw)]
    if question.type == "multiple":
        if isinstance(raw, str):
            tokens = [t for t in re.split(r"[,;\s]+", raw.strip()) if t]
        elif isinstance(raw, list) and all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in raw):
            tokens = [str(t) for t in raw]
        else:
            raise QuizInputError("give the numbers of all the right options, e.g. 1,3")
        if not tokens:
            raise QuizInputError("give the numbers of all the right options, e.g. 1,3")
        chosen = {_option_index(question, t) for t in tokens}
        return [question.options[i] for i in sorted(chosen)]
    if question.type == "numeric" and question.params:
        from .variants import Variant, instantiate

        if not (
            isinstance(raw, dict) and set(raw) == {"seed", "answer"} and isinstance(raw["seed"], int) and not isinstance(raw["seed"], bool)
        ):
            raise QuizInputError("this question has variants: give {seed: N, answer: X} (the seed is printed with the question)")
        return Variant(raw["seed"], parse_input(instantiate(question, raw["seed"]), raw["answer"]))
    if question.type == "numeric":
        if is_number(raw):
            return float(raw)
        if isinstance(raw, str):
            text = raw.strip().replace("_", "")
            if question.unit and text.endswith(question.unit):
                text = text[: -len(question.unit)].strip()
            try:
                if "/" in text:
                    top, bottom = text.split("/", 1)
                    value = float(top) / float(bottom)
                else:
                    value = float(text)
            except (ValueError, ZeroDivisionError):
                raise QuizInputError("type a number, e.g. 0.5 or 1e-3") from None
            if math.isfinite(value):
                return value
        raise QuizInputError("type a number, e.g. 0.5 or 1e-3")
    if question.type == "free":
        from .free_flow import parse_free_input

        return parse_free_input(question, raw)
    if question.type == "text":
        if is_number(raw):
            raw = fmt_number(raw)
        if not isinstance(raw, str) or not raw.strip():
            raise QuizInputError("type your answer in a few words")
        return raw.strip()
    if not isinstance(raw, str) or not raw.strip():
        raise QuizInputError("type your code")
    return raw


def check_answer(question: Question, given) -> Feedback:
    """Grade a parsed answer to a non-code question (pure: no kernel, no I/O)."""
    if question.type == "free":
        from .free_flow import check_free

        return check_free(question, given)
    if question.params:
        from .variants import instantiate

        fb = check_answer(instantiate(question, given.seed), given.value)
        fb.message += f" (variant seed {given.seed})"
        fb.given, fb.detail = given.value, {"seed": given.seed}
        return fb
    if question.type == "single":
        ok = given == question.answers[0]
    elif question.type == "multiple":
        ok = set(given) == set(question.answers)
    elif question.type == "numeric":
        expected = float(question.answers[0])
        ok = abs(float(given) - expected) <= question.tolerance + 1e-9 * max(1.0, abs(expected))
    elif question.type == "text":
        ok = _squash(given) in {_squash(a) for a in question.answers}
        if not ok and question.keywords:
            words = _words(given)
            ok = all(
                any(re.search(rf"(?<!\w){re.escape(_words(alt).strip())}(?!\w)", words) for alt in group) for group in question.keywords
            )
    else:
        raise ValueError("code answers are graded with grade_code")
    if ok:
        return Feedback(True, "Correct!", given)
    return Feedback(False, f"Not quite. The answer: {question.right_answer()}", given)


def jsonable(value):
    """An answer as JSON can hold it (what a session or a class batch stores)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)
