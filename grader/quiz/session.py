"""Interactive sessions of `learn quiz`: one question at a time, saved after every answer, resumable.

    run_interactive ─► (resume a saved session? it is named, with its topics) ─► for each question:
        terminal.print_question ─► terminal.ask ─► terminal.print_feedback ─► save_state
    ─► the score; a finished session is recorded (report.record) and its state removed

The state of an unfinished session is a JSON file per quiz in the user data folder (`state_dir`);
`unfinished()` lists them for `learn progress`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .answers import jsonable
from .code import CodeRunner
from .feedback import Feedback
from .model import Question, Quiz
from .report import QuizReport, record
from .terminal import ask, print_feedback, print_intro, print_question, print_score, print_stopped

__all__ = ["run_interactive", "SessionResult", "state_dir", "load_state", "save_state", "clear_state", "unfinished", "unfinished_line"]


def state_dir() -> Path:
    from ..paths import data_dir

    return data_dir() / "quizzes"


def _state_path(quiz: Quiz, folder: Path | None) -> Path:
    return (folder or state_dir()) / f"{quiz.id}.json"


def _fingerprint(quiz: Quiz) -> str:
    h = hashlib.sha256()
    for q in quiz.questions:
        h.update(
            repr(
                (q.id, q.type, q.options, q.answers, q.keywords, q.tolerance, q.function, q.cases, q.key_points, q.params, q.answer_expr)
            ).encode()
        )
    return h.hexdigest()[:16]


def load_state(quiz: Quiz, folder: Path | None = None) -> dict | None:
    """The saved unfinished session, if it is still valid for this version of the quiz."""
    path = _state_path(quiz, folder)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ids = {q.id for q in quiz.questions}
    if (not isinstance(state, dict) or state.get("fingerprint") != _fingerprint(quiz) or not isinstance(state.get("order"), list)
            or not isinstance(state.get("answered"), dict) or not set(state["order"]) <= ids):  # fmt: skip
        return None
    return state


def save_state(quiz: Quiz, state: dict, folder: Path | None = None) -> str | None:
    """Write the session atomically; returns a warning instead of raising."""
    path = _state_path(quiz, folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)
        return None
    except OSError as exc:
        return f"could not save quiz progress to {path}: {exc}"


def clear_state(quiz: Quiz, folder: Path | None = None) -> None:
    try:
        _state_path(quiz, folder).unlink()
    except OSError:
        pass


def _report_from_state(quiz: Quiz, state: dict) -> QuizReport:
    questions = [quiz.question(qid) for qid in state["order"]]
    report = QuizReport(quiz, questions, duration=float(state.get("duration", 0.0)))
    for qid, saved in state["answered"].items():
        if isinstance(saved, dict):
            report.feedback[qid] = Feedback(bool(saved.get("correct")), "", saved.get("given"), float(saved.get("duration", 0.0)),
                                            detail=saved.get("detail") if isinstance(saved.get("detail"), dict) else None)  # fmt: skip
    return report


@dataclass
class SessionResult:
    report: QuizReport
    finished: bool
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)


def run_interactive(quiz: Quiz, console, read_line: Callable[[str], str], *, topics=None, shuffle: bool = False,
                    seed: int | None = None, restart: bool = False, folder: Path | None = None,
                    runner_factory: Callable[[], CodeRunner] | None = None) -> SessionResult:  # fmt: skip
    """Ask the questions one by one with immediate feedback; resumable; EOF saves and stops.

    `read_line(prompt)` returns one line of input and raises EOFError at the end of input.
    """
    from rich.text import Text

    warnings: list[str] = []
    state = None if restart else load_state(quiz, folder)
    if restart:
        clear_state(quiz, folder)
    if state is not None:
        report = _report_from_state(quiz, state)
        answered = len(report.feedback)
        saved = sorted(t for t in state.get("topics") or [] if isinstance(t, str))
        console.print(Text(f"You have an unfinished {quiz.id} quiz ({describe_topics(saved)}): {answered} of "
                           f"{len(report.questions)} answered, {report.score:g} right."))  # fmt: skip
        asked = sorted(topics or [])
        if asked != saved:  # the learner asked for another part of the quiz: say so before they choose
            console.print(Text(f"You asked for {describe_topics(asked)}; resuming keeps {describe_topics(saved)}. "
                               "Answer n to start afresh with what you asked for (the unfinished session is then dropped)."))  # fmt: skip
        try:
            reply = read_line("Resume it? [Y/n] ")
        except EOFError:
            print_stopped(console, report)
            return SessionResult(report, finished=False)
        if reply.strip().lower().startswith("n"):
            state = None
        else:
            console.print(Text(f"Resuming ({describe_topics(saved)}, in the order you started with)."))
    if state is None:
        questions = quiz.select(topics)
        order = [q.id for q in questions]
        if shuffle:
            seed = seed if seed is not None else random.SystemRandom().randrange(1, 10**6)
            random.Random(seed).shuffle(order)
        state = {"quiz": quiz.id, "fingerprint": _fingerprint(quiz), "order": order, "answered": {}, "topics": list(topics or []),
                 "seed": seed if shuffle else None, "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "duration": 0.0}  # fmt: skip
        print_intro(console, quiz, questions, shuffle, seed, topics)
    report = _report_from_state(quiz, state)
    pending = [quiz.question(qid) for qid in state["order"] if qid not in state["answered"]]
    runner = runner_factory() if runner_factory and any(q.type == "code" for q in pending) else None
    total = len(report.questions)
    try:
        for question in pending:
            number = state["order"].index(question.id) + 1
            question = _variant(question, state, quiz, folder)
            print_question(console, question, number, total)
            asked = time.monotonic()
            feedback = ask(question, console, read_line, runner)
            feedback.duration = time.monotonic() - asked
            if question.variant_seed is not None:
                feedback.detail = {"seed": question.variant_seed}
            print_feedback(console, question, feedback)
            if not feedback.graded:
                continue
            report.feedback[question.id] = feedback
            state["answered"][question.id] = {
                "correct": feedback.correct,
                "given": jsonable(feedback.given),
                "duration": round(feedback.duration, 3),
                **({"detail": feedback.detail} if feedback.detail else {}),
                **({"seed": question.variant_seed} if question.variant_seed is not None else {}),
            }
            state["duration"] = float(state.get("duration", 0.0)) + feedback.duration
            warning = save_state(quiz, state, folder)
            if warning and warning not in warnings:
                warnings.append(warning)
                console.print(Text(f"warning: {warning}", style="yellow"))
    except EOFError:
        save_state(quiz, state, folder)
        print_stopped(console, report)
        return SessionResult(report, finished=False, warnings=warnings)
    except KeyboardInterrupt:
        save_state(quiz, state, folder)
        print_stopped(console, report)
        return SessionResult(report, finished=False, interrupted=True, warnings=warnings)
    finally:
        if runner is not None:
            runner.close()
    report.duration = float(state.get("duration", 0.0))
    ungraded = [q for q in report.questions if q.id not in report.feedback]
    print_score(console, report, final=not ungraded)
    if ungraded:  # some code answers could not be run: keep the session so they can be retried
        save_state(quiz, state, folder)
        return SessionResult(report, finished=False, warnings=warnings)
    warning = record(report)
    if warning:
        warnings.append(warning)
        console.print(Text(f"warning: {warning}", style="yellow"))
    clear_state(quiz, folder)
    return SessionResult(report, finished=True, warnings=warnings)


def _variant(question: Question, state: dict, quiz: Quiz, folder: Path | None) -> Question:
    """A parameterised question's variant for this session: drawn once, saved, so a resumed
    session shows the same one; a new session draws a new one."""
    if not question.params:
        return question
    from .variants import instantiate, new_seed

    variants = state.setdefault("variants", {})
    if not isinstance(variants.get(question.id), int):
        variants[question.id] = new_seed()
        save_state(quiz, state, folder)
    return instantiate(question, variants[question.id])


def describe_topics(topics: list[str]) -> str:
    """ "topics sgd, view" or "all topics"."""
    return f"topic{'s' * (len(topics) != 1)} {', '.join(topics)}" if topics else "all topics"


def unfinished(folder: Path | None = None) -> list[tuple[str, int, int, list[str]]]:
    """(quiz id, questions answered, questions in the session, its topics) of every saved, unfinished
    session - for `learn progress`, which otherwise counts only finished quizzes."""
    out = []
    base = folder or state_dir()
    for path in sorted(base.glob("*.json")) if base.is_dir() else []:
        try:
            state = json.loads(path.read_text())
            order, answered = state["order"], state["answered"]
            topics = [t for t in state.get("topics") or [] if isinstance(t, str)]
            if isinstance(order, list) and isinstance(answered, dict):
                out.append((str(state.get("quiz") or path.stem), len(answered), len(order), topics))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


def unfinished_line(folder: Path | None = None) -> str:
    """One line for `learn progress` about quiz answers not counted yet ('' when there are none)."""
    sessions = [u for u in unfinished(folder) if u[1]]
    if not sessions:
        return ""
    parts = [f"{qid} ({done} of {total} answered, {describe_topics(topics)})" for qid, done, total, topics in sessions]
    first = sessions[0][0]
    return (f"Unfinished quiz sessions, not counted as quizzes until finished: {'; '.join(parts)}. "
            f"`learn quiz {first}` resumes{' one' if len(sessions) > 1 else ''}.")  # fmt: skip
