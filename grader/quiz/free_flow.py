"""Free-response answers in a quiz session: asking, self-assessment, reports and history.

    learner types an answer
        -> provisional verdict (grader.quiz.free.grade_free): each key point found / missing
        -> the model answer is shown
        -> for each key point the learner confirms or corrects (Enter keeps the verdict)
        -> final verdict; both verdicts go to progress.db (table free_answers)

An answers file gives a free answer as text, or as `{answer: "...", key_points: {id: true}}`
when the self-assessment is part of the file (CI, or an instructor's override).
"""

from __future__ import annotations

import datetime as _dt
import json

from .free import FreeVerdict, final_verdict, grade_free

__all__ = ["parse_free_input", "check_free", "ask_free", "render_points", "record_free", "FREE_SCHEMA"]

FREE_SCHEMA = """
CREATE TABLE IF NOT EXISTS free_answers (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    quiz TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    provisional TEXT NOT NULL,       -- JSON {key point: {found, matched}}
    provisional_correct INTEGER NOT NULL,
    confirmed TEXT,                  -- JSON {key point: bool} from the self-assessment, NULL if none
    correct INTEGER NOT NULL         -- the final verdict
);
"""


def _input_error(message: str):
    from .feedback import QuizInputError

    return QuizInputError(message)


def parse_free_input(question, raw):
    """Text, or a mapping with `answer` and an optional `key_points` self-assessment."""
    if isinstance(raw, dict):
        extra = sorted(str(k) for k in raw if k not in ("answer", "key_points"))
        if extra:
            raise _input_error(f"unknown key(s) {extra}; give `answer:` and optionally `key_points: {{id: true/false}}`")
        text, confirmed = raw.get("answer"), raw.get("key_points") or {}
        if not isinstance(confirmed, dict) or not all(isinstance(v, bool) for v in confirmed.values()):
            raise _input_error("key_points must map key point ids to true or false")
        ids = [k.id for k in question.key_points]
        unknown = sorted(str(k) for k in confirmed if k not in ids)
        if unknown:
            raise _input_error(f"no key point {', '.join(unknown)} (key points: {', '.join(ids)})")
    else:
        text, confirmed = raw, None
    if not isinstance(text, str) or not text.strip():
        raise _input_error("write your answer in a sentence or two")
    return {"answer": text.strip(), "key_points": confirmed} if confirmed else text.strip()


def _detail(provisional: FreeVerdict, confirmed: dict | None) -> dict:
    return {"provisional": provisional.as_dict(), "provisional_correct": provisional.correct, "confirmed": confirmed}


def check_free(question, given):
    """Grade a parsed free answer: provisional, then corrected by a given self-assessment."""
    from .feedback import Feedback

    text = given["answer"] if isinstance(given, dict) else given
    confirmed = given.get("key_points") if isinstance(given, dict) else None
    provisional = grade_free(question.key_points, text)
    final = final_verdict(provisional, confirmed) if confirmed else provisional
    how = "" if confirmed else " (automatic verdict)"
    message = (
        f"Correct! All key points made{how}."
        if final.correct
        else f"Not yet{how}: {final.summary()}. Model answer: {question.model_answer}"
    )
    return Feedback(final.correct, message, text, detail=_detail(provisional, confirmed))


def _print_provisional(console, verdict: FreeVerdict) -> None:
    from rich.text import Text

    from ..inert import terminal

    console.print(Text("  Automatic check of your answer:", style="bold"))
    for kp in verdict.key_points:
        r = verdict.result(kp.id)
        if kp.must_not_claim:
            if r.found:
                console.print(Text(f'    ! wrong claim: {kp.point}  (you wrote "{terminal(r.matched)}")', style="red"))
        elif r.found:
            console.print(Text(f'    ✔ {kp.point}  ("{terminal(r.matched)}")', style="green"))
        else:
            console.print(Text(f"    ✘ {kp.point}  (not found)", style="yellow"))


def _yes_no(read_line, prompt: str, default: bool, console) -> bool:
    from rich.text import Text

    while True:
        reply = read_line(prompt).strip().lower()
        if not reply:
            return default
        if reply in ("y", "yes"):
            return True
        if reply in ("n", "no"):
            return False
        console.print(Text("  (type y or n, or press Enter to keep the automatic verdict)", style="dim"))


def self_assess(question, provisional: FreeVerdict, console, read_line) -> dict[str, bool]:
    """Ask about each key point; returns the learner's verdict for every point."""
    from rich.text import Text

    console.print(Text(f"  Model answer: {question.model_answer}", style="cyan"))
    console.print(Text("  Compare it with yours. For each point, Enter keeps the automatic verdict.", style="dim"))
    confirmed = {}
    for kp in question.key_points:
        found = provisional.result(kp.id).found
        hint = "Y/n" if found else "y/N"
        if kp.must_not_claim:
            prompt = f"  Did your answer claim (wrongly) that {kp.point[0].lower()}{kp.point[1:]}? [{hint}] "
        else:
            prompt = f"  Did your answer make this point: {kp.point}? [{hint}] "
        confirmed[kp.id] = _yes_no(read_line, prompt, found, console)
    return confirmed


def ask_free(question, console, read_line):
    """One free question in an interactive session: answer, automatic check, self-assessment."""
    from rich.text import Text

    from .feedback import Feedback

    while True:
        text = read_line("Your answer (a sentence or two): ").strip()
        if text:
            break
        console.print(Text("  (write your answer in a sentence or two)", style="dim"))
    provisional = grade_free(question.key_points, text)
    _print_provisional(console, provisional)
    try:
        confirmed = self_assess(question, provisional, console, read_line)
    except EOFError:  # input ended mid-check: keep the answer with its automatic verdict
        message = ("Correct! All key points made" if provisional.correct else f"Not yet: {provisional.summary()}") + " (automatic verdict)."
        return Feedback(provisional.correct, message, text, detail=_detail(provisional, None))
    final = final_verdict(provisional, confirmed)
    changed = [k for k, v in confirmed.items() if v != provisional.result(k).found]
    note = f" (you corrected {len(changed)} of the automatic verdicts)" if changed else ""
    message = ("Correct! All key points made." if final.correct else f"Not yet: {final.summary()}.") + note
    return Feedback(final.correct, message, text, detail=_detail(provisional, confirmed))


def render_points(question, feedback, console) -> None:
    """Key points found and missing, under a free answer's line in a report."""
    from rich.text import Text

    from ..inert import terminal

    detail = feedback.detail or {}
    provisional = detail.get("provisional") or {}
    confirmed = detail.get("confirmed") or {}
    for kp in question.key_points:
        got = provisional.get(kp.id, {})
        found = confirmed.get(kp.id, got.get("found", False))
        matched = f' ("{terminal(got.get("matched", ""))}")' if got.get("found") else ""
        if kp.must_not_claim:
            if found:
                console.print(Text(f"    ! wrong claim: {kp.point}{matched}", style="red"))
        else:
            console.print(Text(f"    {'✔' if found else '✘'} {kp.point}{matched}", style="green" if found else "yellow"))


def record_free(report, path=None) -> str | None:
    """Store both verdicts of every free answer of a report; returns a warning or None."""
    from ..progress import append_rows

    rows = []
    at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    for q in report.questions:
        fb = report.feedback.get(q.id)
        if q.type != "free" or fb is None or not fb.detail:
            continue
        d = fb.detail
        rows.append((at, report.quiz.id, q.id, str(fb.given or ""), json.dumps(d.get("provisional") or {}),
                     int(bool(d.get("provisional_correct"))), json.dumps(d["confirmed"]) if d.get("confirmed") else None,
                     int(fb.correct)))  # fmt: skip
    return append_rows(FREE_SCHEMA, "INSERT INTO free_answers (at, quiz, question, answer, provisional, provisional_correct, confirmed,"
                       " correct) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows, path)  # fmt: skip
