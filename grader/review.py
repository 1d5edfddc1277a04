"""`learn review`: one daily queue of spaced-repetition items, asked one at a time and rated.

    grader.cards (review_cards in progress.db) ──due today──► learn review ──asks the item──►
        quiz questions: grader.quiz.ask      drills: grader.predict      functions: "re-do it"
    ──learner's rating (1-4)──► cards.rate (fsrs.Scheduler) ──► next due

Items are named KIND:PACK:ID:
    quiz:chapter4:free-view      a quiz question (asked again; wrong answers are due at once)
    drill:lesson3:view-flat      a predict-the-output drill
    check:lesson3:quad           a graded function whose latest check failed: "re-do it in your
                                 notebook, then `learn check lesson3 --only quad`"

The cards themselves (recording, scheduling, what is due) live in grader.cards.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from .cards import KINDS, RATINGS, ReviewItem, due_forecast, due_items, now, rate
from .errors import LearnError, QuizAnswersError
from .yamlfile import load_yaml

__all__ = ["run_review", "ReviewSession"]

# ---------------------------------------------------------------------------------------------
# the session


@dataclass
class ReviewSession:
    reviewed: list[tuple[str, int, bool | None]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: `learn review` exits 130, like every command


class _Asker:
    """Asks one item of each kind; quizzes and drill packs are loaded once per session."""

    def __init__(self, items: list[ReviewItem], console, read_line, drill_runner_factory=None, code_runner_factory=None):
        self.console, self.read_line = console, read_line
        self._quizzes: dict = {}
        self._drills: dict = {}
        self._runners: dict = {}
        self._code = None
        self._drill_runner_factory = drill_runner_factory
        self._code_runner_factory = code_runner_factory
        by_pack: dict[str, list] = {}
        for it in items:
            if it.kind == "drill":
                drill = self.drill(it)
                if drill is not None:
                    by_pack.setdefault(it.pack, []).append(drill)
        if drill_runner_factory is not None:
            from .lessons import get_lesson

            for pack, drills in by_pack.items():
                self._runners[pack] = drill_runner_factory(get_lesson(pack), drills)

    def quiz_question(self, it: ReviewItem):
        from .quiz import find_quiz

        if it.pack not in self._quizzes:
            try:
                self._quizzes[it.pack] = find_quiz(it.pack)
            except LearnError:
                self._quizzes[it.pack] = None
        quiz = self._quizzes[it.pack]
        try:
            return quiz.question(it.key) if quiz is not None else None
        except KeyError:
            return None

    def drill(self, it: ReviewItem):
        from .lessons import get_lesson
        from .predict import load_drills

        if it.pack not in self._drills:
            try:
                self._drills[it.pack] = {d.id: d for d in load_drills(get_lesson(it.pack))}
            except LearnError:
                self._drills[it.pack] = {}
        return self._drills[it.pack].get(it.key)

    def ask_quiz(self, it: ReviewItem, given=None):
        """Feedback for a quiz item: asked, or graded from `given` (answers file)."""
        from .quiz.answers import check_answer, parse_input
        from .quiz.terminal import ask, print_feedback, print_question

        q = self.quiz_question(it)
        if q is None:
            return None
        if given is not None:
            fb = self._code_grade(q, given) if q.type == "code" else check_answer(q, parse_input(q, given))
        else:
            if q.params:  # a retry shows a new variant
                from .quiz.variants import instantiate, new_seed

                q = instantiate(q, new_seed())
            print_question(self.console, q, 1, 1)
            if q.type == "code" and self._code is None and self._code_runner_factory is not None:
                self._code = self._code_runner_factory()
            fb = ask(q, self.console, self.read_line, self._code)
        print_feedback(self.console, q, fb)
        return fb

    def _code_grade(self, q, code):
        from .quiz import Feedback

        if self._code is None and self._code_runner_factory is not None:
            self._code = self._code_runner_factory()
        if self._code is None:
            return Feedback(False, "code answers cannot be run in this session", code, graded=False)
        return self._code.grade(q, code)

    def ask_drill(self, it: ReviewItem, given=None):
        from .predict import PredictionError, grade, parse_prediction, print_drill, print_result

        drill = self.drill(it)
        if drill is None:
            return None
        if given is not None:
            prediction = parse_prediction(drill, given)
        else:
            print_drill(self.console, drill, 1, 1)
            while True:
                try:
                    prediction = parse_prediction(drill, self.read_line("Your prediction: "))
                    break
                except PredictionError as exc:
                    self.console.print(f"  ({exc})", markup=False, highlight=False)
        runner = self._runners.get(it.pack)
        outcome = runner.outcome(drill) if runner is not None else "drills cannot be run in this session"
        result = grade(drill, prediction, outcome)
        print_result(self.console, drill, result)
        return result

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        if self._code is not None:
            self._code.close()


def _ask_rating(read_line, console, default: int) -> int:
    from rich.text import Text

    while True:
        reply = read_line(f"How well did you know it? 1 again, 2 hard, 3 good, 4 easy [{default}]: ").strip().lower()
        if not reply:
            return default
        for number, name in RATINGS.items():
            if reply in (str(number), name):
                return number
        console.print(Text("  (type 1, 2, 3 or 4, or press Enter)", style="dim"))


def _parse_review_answers(text: str, source: str) -> dict[str, dict]:

    data = load_yaml(text, source, QuizAnswersError)
    if not isinstance(data, dict):
        raise QuizAnswersError(f"{source}: a review answers file maps KIND:PACK:ID to an answer (or {{answer: ..., rating: 1-4}})")
    out = {}
    for item, value in data.items():
        if not isinstance(item, str) or item.split(":", 1)[0] not in KINDS or item.count(":") < 2:
            raise QuizAnswersError(
                f"{source}: {item!r} is not an item name like quiz:chapter4:free-view, drill:lesson3:ID or check:lesson3:NAME"
            )
        entry = value if isinstance(value, dict) else {"answer": value}
        extra = sorted(str(k) for k in entry if k not in ("answer", "rating"))
        if extra:
            raise QuizAnswersError(f"{source}: {item}: unknown key(s) {extra}; give answer and/or rating")
        rating = entry.get("rating")
        if rating is not None and (isinstance(rating, bool) or rating not in RATINGS):
            raise QuizAnswersError(f"{source}: {item}: rating must be 1 (again), 2 (hard), 3 (good) or 4 (easy)")
        if item.startswith("check:") and rating is None:
            raise QuizAnswersError(f"{source}: {item}: a check item needs a rating (you re-did it in your notebook)")
        if not item.startswith("check:") and entry.get("answer") is None:
            raise QuizAnswersError(f"{source}: {item}: give the answer (or prediction)")
        out[item] = entry
    return out


def run_review(console, read_line, *, answers_text: str | None = None, answers_source: str = "<answers>", limit: int | None = None,
               drill_runner_factory=None, code_runner_factory=None, path: Path | None = None) -> ReviewSession:  # fmt: skip
    """Today's queue, one item at a time, each rated; or graded from an answers file."""
    from rich.text import Text

    from .inert import terminal
    from .predict import PredictionError
    from .quiz import QuizInputError

    answers = _parse_review_answers(answers_text, answers_source) if answers_text is not None else None
    at = now()
    queue = due_items(path, at)
    if limit:
        queue = queue[:limit]
    session = ReviewSession()
    if answers is not None:
        due = {it.item for it in queue}
        for item in sorted(set(answers) - due):
            console.print(Text(f"- {terminal(item)}: not due today, left as it is", style="dim"))
        queue = [it for it in queue if it.item in answers]
    counts = {k: sum(1 for it in queue if it.kind == k) for k in KINDS}
    if not queue:
        console.print(Text("Nothing to review today." + _next_due_text(path, at)))
        return session
    console.print(Text(f"Review for {at.date().isoformat()}: {len(queue)} item{'s' * (len(queue) != 1)} "
                       f"({counts['quiz']} questions, {counts['drill']} drills, {counts['check']} functions to re-do). "
                       "Rate each: 1 again, 2 hard, 3 good, 4 easy. End of input (Ctrl-D) stops; the rest stay due.", style="bold"))  # fmt: skip
    shown = ", ".join(it.item for it in queue[:10]) + (f" and {len(queue) - 10} more" if len(queue) > 10 else "")
    console.print(Text(f"Today: {terminal(shown)}", style="dim"))
    asker = _Asker(queue, console, read_line, drill_runner_factory, code_runner_factory)
    try:
        for number, it in enumerate(queue, 1):
            entry = answers.get(it.item, {}) if answers is not None else {}
            console.print()
            console.print(Text(f"Review {number}/{len(queue)}  {it.item}", style="bold magenta"))
            correct: bool | None = None
            if it.kind == "check":
                name = it.key
                console.print(Text(f"Your latest check of {name} ({it.pack}{', ' + it.notebook if it.notebook else ''}) failed. "
                                   f"Re-do it in your notebook, then run `learn check {it.pack} --only {name}` "
                                   f"(it checks only the notebook that holds {name})."))  # fmt: skip
                default = 1
            else:
                try:
                    result = asker.ask_quiz(it, entry.get("answer")) if it.kind == "quiz" else asker.ask_drill(it, entry.get("answer"))
                except (QuizInputError, PredictionError) as exc:
                    raise QuizAnswersError(f"{answers_source}: {it.item}: {exc}") from None
                if result is None:
                    console.print(Text("  (this item no longer exists in its quiz or pack; dropped from today's queue)", style="dim"))
                    session.skipped.append(it.item)
                    continue
                if not result.graded:
                    console.print(Text("  (not rated: it could not be graded; it stays due)", style="yellow"))
                    session.skipped.append(it.item)
                    continue
                correct = bool(result.correct)
                default = 3 if correct else 1
            rating = entry.get("rating") or (default if answers is not None else _ask_rating(read_line, console, default))
            try:
                due = rate(it, rating, correct, path, at)
            except (sqlite3.Error, OSError) as exc:
                session.warnings.append(f"could not save the review of {it.item}: {exc}")
                console.print(Text(f"warning: {session.warnings[-1]}", style="yellow"))
                continue
            session.reviewed.append((it.item, rating, correct))
            days = (due.date() - at.date()).days
            console.print(
                Text(f"  rated {RATINGS[rating]}: next review in {days} day{'s' * (days != 1)} ({due.date().isoformat()})", style="dim")
            )
    except (EOFError, KeyboardInterrupt) as exc:
        session.interrupted = isinstance(exc, KeyboardInterrupt)
        console.print()
        console.print(Text(f"Stopped: {len(session.reviewed)} reviewed; the rest stay due."))
        return session
    finally:
        asker.close()
    console.print()
    console.print(
        Text(f"Reviewed {len(session.reviewed)} item{'s' * (len(session.reviewed) != 1)}." + _next_due_text(path, at), style="bold")
    )
    return session


def _next_due_text(path, at) -> str:
    forecast = due_forecast(14, path, at)
    upcoming = [(d, n) for d, n in forecast[1:] if n]
    if not upcoming:
        return ""
    day, n = upcoming[0]
    return f" Next: {n} due on {day.isoformat()}."
