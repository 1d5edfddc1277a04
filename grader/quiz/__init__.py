"""Quizzes: questionnaire files, answer checking, and the session behind `learn quiz`.

A quiz is a YAML file in `quizzes/` (a mapping with `id`, `title` and a `questions:` list, or a
bare list of questions). Every question has an `id`, a `type`, a `prompt`, an `explanation`
and a `topic` tag, plus what its type needs:

    single     options: [...]   answer: "the right option"
    multiple   options: [...]   answers: ["right option", ...]
    numeric    answer: 3.14     tolerance: 0.01           (absolute; default 0)
               or params: {n: {int: [2, 9]}}  answer: "n * 2"  (variants: grader.quiz.variants)
    text       answers: ["accepted", ...]  and/or  keywords: ["word", ["alternative", "other"]]
    code       function: name   reference: |  def name(...): ...   cases: ["torch.ones(3), 2", ...]
    free       model_answer: "..."   key_points: [{id, point, accept: [phrasings], must_not_claim}]
               wrong_answers: ["...", ...]      (see grader.quiz.free)

Text answers are compared without regard to case or whitespace; with `keywords`, an answer is
also right when it contains every keyword (one of the alternatives of each list). A code answer
is run like an exercise: in a kernel subprocess (`grader.kernels.KernelPool`), the learner's code
and the reference each called on every case (a Python argument list, evaluated inside the
kernel), the values compared in this process with `grader.compare.compare`.

`parse_quiz(text, source)` is a pure function of the text: any malformed input gives a
`QuizFormatError` naming the file and the question, never another exception.

The package, one job per module:

    model      the quiz file: Question, Quiz, parse_quiz, find_quiz
    feedback   what checking an answer gives back: Feedback, QuizInputError
    answers    typed answers: parse_input, check_answer
    code       code answers in kernels: grade_code, CodeRunner
    report     graded answers files: parse_answers, grade_answers, QuizReport, record
    terminal   what a terminal shows and reads: ask, print_feedback, render_report
    session    interactive, resumable sessions: run_interactive
    free, free_flow    free-response questions;  variants   parameterised questions;  classbatch   a class's files
"""

from __future__ import annotations

from ..errors import QuizAnswersError, UnknownQuizError
from .answers import check_answer, parse_input
from .code import CodeRunner, grade_code
from .feedback import Feedback, QuizInputError
from .model import Question, Quiz, bundled_quizzes, find_quiz, load_quiz, parse_quiz
from .report import QuizReport, grade_answers, parse_answers, record
from .session import run_interactive
from .terminal import read_code_block, render_report

__all__ = [
    "Question",
    "Quiz",
    "Feedback",
    "QuizReport",
    "UnknownQuizError",
    "QuizAnswersError",
    "QuizInputError",
    "parse_quiz",
    "load_quiz",
    "find_quiz",
    "bundled_quizzes",
    "parse_input",
    "check_answer",
    "read_code_block",
    "grade_code",
    "grade_answers",
    "parse_answers",
    "record",
    "render_report",
    "CodeRunner",
    "run_interactive",
]
