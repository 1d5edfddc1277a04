"""What `learn quiz` shows and reads in a terminal: questions, answers, feedback and scores.

    print_question ─► ask (reads the answer; a code block, a free answer) ─► print_feedback
    print_intro, print_score, print_stopped          (a session: grader.quiz.session)
    render_report                                    (an answers file: grader.quiz.report)

`learn review` asks its quiz items with the same `ask` and `print_feedback`: they live here, in a
module of their own, and not in the session that uses them.
"""

from __future__ import annotations

import codeop
from collections.abc import Callable
from typing import TYPE_CHECKING

from .answers import check_answer, parse_input
from .feedback import Feedback, QuizInputError
from .model import Question, Quiz

if TYPE_CHECKING:
    from .code import CodeRunner
    from .report import QuizReport

__all__ = [
    "ask",
    "read_code_block",
    "print_intro",
    "print_question",
    "print_feedback",
    "print_score",
    "print_stopped",
    "render_report",
    "pct",
]


def pct(score: float, total: float) -> str:
    return f"{100 * score / total:.0f}%" if total else "-"


def read_code_block(read_line: Callable[[str], str], prompt: str = ">>> ", more: str = "... ") -> str:
    """Read one block of code the way the Python REPL does: while the input is incomplete, keep
    reading; a blank line ends a compound statement. So a one-line answer is one line, and never
    swallows what follows. EOFError propagates."""
    lines: list[str] = []
    while True:
        line = read_line(more if lines else prompt)
        if not lines and not line.strip():
            continue  # the REPL ignores blank lines before a statement
        lines.append(line)
        source = "\n".join(lines)
        try:
            complete = codeop.compile_command(source, "<answer>", "single")
        except (SyntaxError, ValueError, OverflowError):
            return source  # graded as wrong, with the error; the next line belongs to the next question
        if complete is not None:
            return source


def ask(question: Question, console, read_line, runner: CodeRunner | None) -> Feedback:
    from rich.text import Text

    from ..inert import terminal

    if question.type == "code":
        code = read_code_block(read_line)
        if runner is None:
            return Feedback(False, "code answers cannot be run in this session", code, graded=False)
        if getattr(console, "is_terminal", False):
            with console.status("Running your code..."):
                return runner.grade(question, code)
        return runner.grade(question, code)
    if question.type == "free":
        from .free_flow import ask_free

        return ask_free(question, console, read_line)
    prompts = {"single": "Your answer (number): ", "multiple": "Your answers (numbers, e.g. 1,3): ",
               "numeric": "Your answer (a number): ", "text": "Your answer: "}  # fmt: skip
    while True:
        raw = read_line(prompts[question.type])
        try:
            given = parse_input(question, raw)
        except QuizInputError as exc:
            console.print(Text(f"  ({terminal(exc)})", style="dim"))
            continue
        return check_answer(question, given)


def print_intro(console, quiz: Quiz, questions: list[Question], shuffle: bool, seed, topics) -> None:
    from rich.text import Text

    console.print(Text(quiz.title, style="bold"))
    parts = [f"{len(questions)} questions"]
    if topics:
        parts.append(f"topics: {', '.join(topics)}")
    if shuffle:
        parts.append(f"shuffled with seed {seed} (--seed {seed} repeats this order)")
    console.print(Text(" · ".join(parts) + ". End of input (Ctrl-D) saves your progress; run the command again to resume."))


def print_question(console, question: Question, number: int, total: int) -> None:
    from rich.text import Text

    console.print()
    seed = f"  (variant seed {question.variant_seed})" if question.variant_seed is not None else ""
    console.print(Text(f"Question {number}/{total}  [{question.topic}]{seed}", style="bold cyan"))
    console.print(Text(question.prompt))
    if question.type in ("single", "multiple"):
        for i, option in enumerate(question.options, 1):
            console.print(Text(f"  {i}. {option}"))
        if question.type == "multiple":
            console.print(Text("  (choose every right option)", style="dim"))
    elif question.type == "code":
        if question.starter:
            console.print(Text(question.starter, style="dim"))
        console.print(Text(f"Write `{question.function}` as one block, like at the Python prompt; an empty line ends it.", style="dim"))


def print_feedback(console, question: Question, feedback: Feedback) -> None:
    from rich.text import Text

    from ..inert import terminal  # messages quote what the learner's code raised or printed

    if not feedback.graded:
        console.print(Text(f"  ! {terminal(feedback.message)} - not counted; you will get this question again.", style="yellow"))
        return
    mark, style = ("✔", "green") if feedback.correct else ("✘", "red")
    console.print(Text(f"  {mark} {terminal(feedback.message)}", style=style))
    console.print(Text(f"  {question.explanation}", style="dim"))


def print_score(console, report: QuizReport, final: bool) -> None:
    from rich.text import Text

    answered = [q for q in report.questions if q.id in report.feedback]
    label = "Final score" if final else "Score so far"
    console.print()
    console.print(Text(f"{label}: {report.score:g}/{sum(q.points for q in answered):g} ({pct(report.score, sum(q.points for q in answered))})"
                       + ("" if len(answered) == len(report.questions) else f" - {len(answered)} of {len(report.questions)} questions answered"),
                       style="bold"))  # fmt: skip
    topics: dict[str, list[float]] = {}
    for q in answered:
        pair = topics.setdefault(q.topic, [0.0, 0.0])
        pair[0] += q.points if report.feedback[q.id].correct else 0.0
        pair[1] += q.points
    weak = [t for t, (got, total) in sorted(topics.items()) if got < total]
    if final and weak:
        console.print(Text("Topics to revisit: " + ", ".join(f"{t} ({topics[t][0]:g}/{topics[t][1]:g})" for t in weak)))


def print_stopped(console, report: QuizReport) -> None:
    from rich.text import Text

    answered = len(report.feedback)
    console.print()
    console.print(Text(f"Stopped: your progress is saved ({answered} of {len(report.questions)} answered). "
                       f"Run `learn quiz {report.quiz.id}` again to resume, or add --restart to start over."))  # fmt: skip
    print_score(console, report, final=False)


def render_report(report: QuizReport, console) -> None:
    """Per-question results of a graded answers file, then the score."""
    from rich.text import Text

    from ..inert import terminal

    unanswered = [q for q in report.questions if q.id not in report.feedback]
    for q in report.questions:
        fb = report.feedback.get(q.id)
        if fb is None:
            continue  # listed once, below: a file with 3 answers is not 94 lines of "no answer"
        elif fb.correct:
            console.print(Text(f"✔ {q.id} [{q.topic}]", style="green"))
        else:
            console.print(Text(f"✘ {q.id} [{q.topic}]: {terminal(fb.message)}", style="red"))
        if q.type == "free" and fb is not None:
            from .free_flow import render_points

            render_points(q, fb, console)
    if unanswered:
        ids = ", ".join(q.id for q in unanswered[:5]) + (f" and {len(unanswered) - 5} more" if len(unanswered) > 5 else "")
        console.print(Text(f"✘ {len(unanswered)} of {len(report.questions)} questions have no answer in the file and count as "
                           f"wrong: {ids} (--topic TAG grades only some topics)", style="red"))  # fmt: skip
    console.print()
    console.print(Text(f"Score: {report.score:g}/{report.max_score:g} ({pct(report.score, report.max_score)})", style="bold"))
    weak = [f"{topic} ({got:g}/{total:g})" for topic, (got, total) in report.by_topic().items() if got < total]
    if weak:
        console.print(Text("Topics to revisit: " + ", ".join(weak)))
