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
"""

from __future__ import annotations

import ast
import asyncio
import codeop
import datetime as _dt
import hashlib
import json
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LearnError, QuizAnswersError, QuizFormatError, UnknownQuizError
from ..yamlfile import load_yaml

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
    "CodeRunner",
    "run_interactive",
]

TYPES = ("single", "multiple", "numeric", "text", "code", "free")
_COMMON_KEYS = {"id", "type", "prompt", "explanation", "topic", "points"}
_TYPE_KEYS = {
    "single": {"options", "answer"},
    "multiple": {"options", "answers"},
    "numeric": {"answer", "tolerance", "unit", "params"},
    "text": {"answers", "keywords"},
    "code": {"function", "reference", "cases", "starter", "rtol", "atol"},
    "free": {"model_answer", "key_points", "wrong_answers"},
}
_TOP_KEYS = {"id", "title", "description", "questions"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
MAX_QUIZ_CHARS = 2_000_000


class QuizInputError(ValueError):
    """Typed input that is not an answer of the right form (the learner is asked again)."""


# ---------------------------------------------------------------------------------------------
# the quiz file


@dataclass(frozen=True)
class Question:
    id: str
    type: str
    prompt: str
    explanation: str
    topic: str
    points: float = 1.0
    options: tuple[str, ...] = ()
    answers: tuple = ()  # single: (option,); multiple: options; numeric: (value,); text: accepted answers
    keywords: tuple[tuple[str, ...], ...] = ()
    tolerance: float = 0.0
    unit: str = ""
    function: str = ""
    reference: str = ""
    cases: tuple[str, ...] = ()
    starter: str = ""
    rtol: float = 1e-5
    atol: float = 1e-6
    model_answer: str = ""
    key_points: tuple = ()  # free: grader.quiz.free.KeyPoint
    wrong_answers: tuple[str, ...] = ()
    params: tuple = ()  # numeric variants: ((name, generator, args), ...); answer_expr computes the answer
    answer_expr: str = ""
    variant_seed: int | None = None  # set on an instantiated variant

    def answer_value(self):
        """The right answer as an answers file (`learn quiz --answers`) gives it."""
        if self.type == "single":
            return self.answers[0]
        if self.type == "multiple":
            return list(self.answers)
        if self.type == "numeric" and self.params:
            from .variants import instantiate

            return {"seed": 1, "answer": instantiate(self, 1).answers[0]}
        if self.type == "numeric":
            return self.answers[0]
        if self.type == "text":
            return self.answers[0] if self.answers else " ".join(group[0] for group in self.keywords)
        if self.type == "free":
            return self.model_answer
        return self.reference

    def right_answer(self) -> str:
        """The expected answer, in words, for feedback."""
        if self.type == "single":
            return self.answers[0]
        if self.type == "multiple":
            return "; ".join(self.answers)
        if self.type == "numeric" and self.params:
            return f"{self.answer_expr}, computed from the variant's values"
        if self.type == "numeric":
            value = _fmt_number(self.answers[0])
            tol = f" (give or take {_fmt_number(self.tolerance)})" if self.tolerance else ""
            return f"{value}{' ' + self.unit if self.unit else ''}{tol}"
        if self.type == "text":
            return self.answers[0] if self.answers else ", ".join(k[0] for k in self.keywords)
        if self.type == "free":
            return self.model_answer
        return self.reference.strip()


@dataclass(frozen=True)
class Quiz:
    id: str
    title: str
    description: str
    source: str
    questions: tuple[Question, ...]

    def topics(self) -> list[str]:
        return sorted({q.topic for q in self.questions})

    def question(self, qid: str) -> Question:
        for q in self.questions:
            if q.id == qid:
                return q
        raise KeyError(qid)

    def select(self, topics: list[str] | tuple[str, ...] | None = None) -> list[Question]:
        """The questions of the given topics (all when none); an unknown topic is an error."""
        if not topics:
            return list(self.questions)
        unknown = sorted(set(topics) - set(self.topics()))
        if unknown:
            raise UnknownQuizError(f"quiz {self.id} has no topic {', '.join(unknown)}. Topics: {', '.join(self.topics())}")
        return [q for q in self.questions if q.topic in topics]


def _fmt_number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _is_number(value) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def parse_quiz(text: str, source: str = "<quiz>") -> Quiz:
    """Parse and validate a quiz file's text. Raises QuizFormatError (naming `source`) and nothing else."""
    if not isinstance(text, str):
        raise QuizFormatError(f"{source}: a quiz must be text")
    if len(text) > MAX_QUIZ_CHARS:
        raise QuizFormatError(f"{source}: too large for a quiz ({len(text):,} characters)")
    data = load_yaml(text, source, QuizFormatError)
    default_id = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).stem) or "quiz"
    if isinstance(data, list):
        data = {"questions": data}
    if not isinstance(data, dict):
        raise QuizFormatError(f"{source}: a quiz is a mapping with a `questions:` list (or a list of questions)")
    extra = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if extra:
        raise QuizFormatError(f"{source}: unknown top-level key(s) {extra}; allowed: {sorted(_TOP_KEYS)}")
    quiz_id = data.get("id", default_id)
    if not isinstance(quiz_id, str) or not _ID.match(quiz_id):
        raise QuizFormatError(f"{source}: id must be a simple name like 'chapter4', not {quiz_id!r}")
    for key in ("title", "description"):
        if key in data and not isinstance(data[key], str):
            raise QuizFormatError(f"{source}: {key} must be text")
    raw = data.get("questions")
    if not isinstance(raw, list) or not raw:
        raise QuizFormatError(f"{source}: `questions` must be a non-empty list")
    questions: list[Question] = []
    seen: set[str] = set()
    for number, item in enumerate(raw, 1):
        question = _parse_question(item, number, source)
        if question.id in seen:
            raise QuizFormatError(f"{source}: question '{question.id}': duplicate id (ids must be unique)")
        seen.add(question.id)
        questions.append(question)
    return Quiz(quiz_id, str(data.get("title") or quiz_id), str(data.get("description") or ""), source, tuple(questions))


def _parse_question(item, number: int, source: str) -> Question:
    where = f"{source}: question #{number}"
    if not isinstance(item, dict):
        raise QuizFormatError(f"{where}: must be a mapping with id, type, prompt, explanation and topic")
    qid = item.get("id")
    if not isinstance(qid, str) or not _ID.match(qid):
        raise QuizFormatError(f"{where}: id must be a short name of letters, digits, '-', '_' or '.', not {qid!r}")
    where = f"{source}: question '{qid}'"

    def fail(problem: str) -> QuizFormatError:
        return QuizFormatError(f"{where}: {problem}")

    qtype = item.get("type")
    if qtype not in TYPES:
        raise fail(f"type must be one of {', '.join(TYPES)}, not {qtype!r}")
    allowed = _COMMON_KEYS | _TYPE_KEYS[qtype]
    extra = sorted(str(k) for k in item if k not in allowed)
    if extra:
        raise fail(f"unknown key(s) {extra} for a {qtype} question; allowed: {sorted(allowed)}")
    for key in ("prompt", "explanation", "topic"):
        if key not in item:
            raise fail(f"missing {key}")
        if not _text(item[key]):
            raise fail(f"{key} must be non-empty text")
    points = item.get("points", 1)
    if not _is_number(points) or points <= 0:
        raise fail(f"points must be a positive number, not {points!r}")
    fields: dict = dict(id=qid, type=qtype, prompt=item["prompt"].strip(), explanation=item["explanation"].strip(),
                        topic=item["topic"].strip(), points=float(points))  # fmt: skip
    if qtype in ("single", "multiple"):
        options = item.get("options")
        if not isinstance(options, list) or len(options) < 2 or not all(_text(o) for o in options):
            raise fail("options must be a list of at least two non-empty texts (quote numbers: '784')")
        options = [o.strip() for o in options]
        if len(set(options)) != len(options):
            raise fail("two options are the same")
        fields["options"] = tuple(options)
        if qtype == "single":
            answer = item.get("answer")
            if not isinstance(answer, str) or answer.strip() not in options:
                raise fail(f"answer {answer!r} is not one of the options")
            fields["answers"] = (answer.strip(),)
        else:
            answers = item.get("answers")
            if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
                raise fail("answers must be a non-empty list of the right options")
            missing = [a for a in answers if a.strip() not in options]
            if missing:
                raise fail(f"answer {missing[0]!r} is not one of the options")
            fields["answers"] = tuple(o for o in options if o in {a.strip() for a in answers})
    elif qtype == "numeric":
        answer, tolerance = item.get("answer"), item.get("tolerance", 0)
        if "params" in item:
            from .variants import check_template, parse_params

            params = parse_params(item["params"], fail)
            check_template(fields, params, answer, fail)
            fields.update(params=params, answer_expr=answer.strip())
            answer = 0  # computed per variant
        if not _is_number(answer):
            raise fail(f"answer must be a number, not {answer!r}")
        if not _is_number(tolerance) or tolerance < 0:
            raise fail(f"tolerance must be a number >= 0, not {tolerance!r}")
        unit = item.get("unit", "")
        if not isinstance(unit, str):
            raise fail("unit must be text")
        fields.update(answers=() if fields.get("params") else (answer,), tolerance=float(tolerance), unit=unit)
    elif qtype == "text":
        answers, keywords = item.get("answers", []), item.get("keywords", [])
        if not isinstance(answers, list) or not all(_text(a) for a in answers):
            raise fail("answers must be a list of accepted answers (non-empty texts)")
        if not isinstance(keywords, list):
            raise fail("keywords must be a list (of words, or of lists of alternative words)")
        groups = []
        for group in keywords:
            alternatives = group if isinstance(group, list) else [group]
            if not alternatives or not all(_text(a) for a in alternatives):
                raise fail(f"keyword {group!r} must be a non-empty text or a list of them")
            groups.append(tuple(a.strip() for a in alternatives))
        if not answers and not groups:
            raise fail("a text question needs accepted answers or keywords")
        fields.update(answers=tuple(a.strip() for a in answers), keywords=tuple(groups))
    elif qtype == "free":
        from .free import parse_free_fields

        fields.update(parse_free_fields(item, fail))
    else:
        fields.update(_parse_code_fields(item, fail))
    return Question(**fields)


def _compiles(source: str, mode: str = "exec"):
    try:
        return compile(source, "<quiz>", mode, flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def _defines(tree, name: str) -> bool:
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def _parse_code_fields(item: dict, fail) -> dict:
    function, reference, cases = item.get("function"), item.get("reference"), item.get("cases")
    if not isinstance(function, str) or not function.isidentifier():
        raise fail(f"function must be the name of the function to write, not {function!r}")
    if not _text(reference):
        raise fail("reference must be the code of a correct answer")
    tree = _compiles(reference)
    if tree is None:
        raise fail("the reference code does not compile")
    if not _defines(tree, function):
        raise fail(f"the reference code does not define {function}")
    if not isinstance(cases, list) or not cases or not all(_text(c) for c in cases):
        raise fail("cases must be a non-empty list of argument lists, e.g. 'torch.ones(3), 2'")
    for case in cases:
        tree = _compiles(f"_(\n{case}\n)", "eval")
        call = getattr(tree, "body", None)
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"):
            raise fail(f"case {case!r} is not a valid argument list")
    starter = item.get("starter", "")
    if not isinstance(starter, str):
        raise fail("starter must be text")
    out = dict(function=function, reference=reference.strip() + "\n", cases=tuple(c.strip() for c in cases), starter=starter.rstrip())
    for key in ("rtol", "atol"):
        if key in item:
            if not _is_number(item[key]) or item[key] < 0:
                raise fail(f"{key} must be a number >= 0")
            out[key] = float(item[key])
    return out


def quizzes_dir() -> Path:
    from ..lessons import content_root

    return content_root() / "quizzes"


def load_quiz(path: str | Path) -> Quiz:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise QuizFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise QuizFormatError(f"{path}: not a text file (not UTF-8)") from None
    return parse_quiz(text, str(path))


def bundled_quizzes() -> dict[str, Path]:
    """Quiz name (file stem) -> path, for every quiz shipped with learn."""
    folder = quizzes_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in (".yaml", ".yml") and p.is_file()}


def find_quiz(name: str) -> Quiz:
    """A bundled quiz by name, or a quiz file by path."""
    known = bundled_quizzes()
    if name in known:
        return load_quiz(known[name])
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_quiz(path)
    raise UnknownQuizError(f"unknown quiz '{name}'. Quizzes: {', '.join(known) or '(none installed)'}")


# ---------------------------------------------------------------------------------------------
# answers that need no kernel


@dataclass
class Feedback:
    correct: bool
    message: str
    given: object = None
    duration: float = 0.0
    graded: bool = True  # False: the answer could not be graded (e.g. kernels unavailable)
    detail: dict | None = None  # free: {"provisional": {kp: {found, matched}}, "confirmed": {kp: bool} | None}


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
        if _is_number(raw):
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
        if _is_number(raw):
            raw = _fmt_number(raw)
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


# ---------------------------------------------------------------------------------------------
# code answers, in kernels


def quiz_probe(ns, function, case):
    """Runs in the kernel: build the case's arguments, call the answer, and say which tensor
    arguments it changed in place (a step that must return a new tensor, say)."""
    import inspect

    import torch

    def arguments(*args, **kwargs):
        return args, kwargs

    args, kwargs = eval(f"arguments(\n{case}\n)", {"torch": torch, "arguments": arguments})
    fn = ns[function]
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    inputs = [(names[i] if i < len(names) else f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())
    copies = [(name, a, a.detach().clone()) for name, a in inputs if isinstance(a, torch.Tensor)]
    value = fn(*args, **kwargs)
    changed = [name for name, a, c in copies if a.shape != c.shape or not bool(((a == c) | ((a != a) & (c != c))).all())]
    return {"value": value, "changed": changed}


def _code_job(question: Question, code: str):
    import nbformat

    from .. import wire
    from ..checks import probe_source
    from ..execute import KernelJob
    from ..kernels import Limits

    source, entry = probe_source(quiz_probe)
    probes = [
        {
            "id": f"case{i}",
            "source": source,
            "entry": entry,
            "args": wire.encode((question.function, case)),
            "kwargs": wire.encode({}),
            "requires": [question.function],
            "callables": [question.function],
            "seed": 1234 + i,
            "timeout": 10,
        }
        for i, case in enumerate(question.cases)
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch"), nbformat.v4.new_code_cell(code)])
    return KernelJob(notebook=nb, name=f"quiz_{question.id}.ipynb", probes=probes, cell_timeout=10, notebook_timeout=30,
                     probe_budget=10.0 * len(probes) + 10, limits=Limits(memory_bytes=2 * 2**30))  # fmt: skip


async def _reference_values(pool, question: Question) -> list:
    from .. import wire
    from ..execute import run_job

    outcome = await run_job(pool, _code_job(question, question.reference))
    values = []
    for i in range(len(question.cases)):
        raw = outcome.probes.get(f"case{i}", {})
        if raw.get("status") != "ok":
            why = raw.get("evalue") or raw.get("status", "no result")
            raise QuizFormatError(f"{question.id}: the reference answer fails on case {question.cases[i]!r}: {why}")
        value = wire.decode(raw["value"])
        values.append(value.get("value") if type(value) is dict and set(value) == {"value", "changed"} else value)
    return values


def _mentions(code: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", code) is not None


async def grade_code(pool, question: Question, code: str, references: dict | None = None) -> Feedback:
    """Run a code answer and the reference in kernels; compare every case here."""
    from .. import wire
    from ..compare import Tolerance, compare
    from ..execute import run_job

    started = time.monotonic()
    name = question.function
    if _compiles(code) is None:
        try:
            compile(code, "<answer>", "exec", dont_inherit=True)
            problem = "it does not compile"
        except SyntaxError as exc:
            problem = f"SyntaxError: {exc.msg} (line {exc.lineno})"
        except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        return Feedback(False, f"Your code does not run: {problem}", code)
    if not _mentions(code, name):
        return Feedback(False, f"Your answer does not define `{name}`: write a function with that name.", code)
    references = references if references is not None else {}
    if question.id not in references:
        references[question.id] = asyncio.ensure_future(_reference_values(pool, question))
    learner = asyncio.ensure_future(run_job(pool, _code_job(question, code)))
    expected_values = await asyncio.shield(references[question.id])
    outcome = await learner
    problems = [c for c in outcome.cells if c.status != "ok"]
    if problems:
        c = problems[0]
        what = f"{c.ename}: {c.evalue}".strip(": ") if c.ename else (c.evalue or c.status)
        return Feedback(False, f"Your code failed when it ran: {what}", code, time.monotonic() - started)
    tol = Tolerance(rtol=question.rtol, atol=question.atol)
    for i, (case, expected) in enumerate(zip(question.cases, expected_values)):
        raw = outcome.probes.get(f"case{i}", {"status": "lost"})
        call = f"{name}({case})"
        status = raw.get("status")
        if status == "missing":
            return Feedback(False, f"Your code does not define `{name}`.", code, time.monotonic() - started)
        if status == "not_callable":
            return Feedback(False, f"`{name}` is not a function.", code, time.monotonic() - started)
        if status == "exception":
            evalue = f": {raw.get('evalue')}" if raw.get("evalue") else ""
            return Feedback(False, f"{call} raised {raw.get('ename', 'an error')}{evalue}", code, time.monotonic() - started)
        if status != "ok":
            return Feedback(False, f"{call} did not return ({status}): an endless loop?", code, time.monotonic() - started)
        try:
            got = wire.decode(raw["value"])
        except wire.WireError as exc:
            return Feedback(False, f"{call} returned a value the grader cannot read: {exc}", code, time.monotonic() - started)
        changed = got.get("changed") if type(got) is dict else None
        if changed:
            names = " and ".join(f"`{n}`" for n in changed)
            return Feedback(False, f"{call} changed its input {names} in place; return a new tensor and leave the inputs as they were.",
                            code, time.monotonic() - started)  # fmt: skip
        got = got.get("value") if type(got) is dict else got
        verdict = compare(got, expected, tol)
        if not verdict.ok:
            return Feedback(False, f"{call}: {verdict.message}", code, time.monotonic() - started)
    n = len(question.cases)
    return Feedback(True, f"Correct! Your {name} matches the reference on {n} input{'s' * (n != 1)}.", code, time.monotonic() - started)


class CodeRunner:
    """Kernels for one interactive quiz session: a pool started at once, in a background thread,
    so it warms up while the learner answers the first questions; code answers then wait only
    for their own kernels."""

    def __init__(self, pool_size: int = 1):
        from ..kernels import KernelPool

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="learn-quiz-kernels", daemon=True)
        self.thread.start()
        self.pool = KernelPool(size=pool_size)
        self.references: dict = {}
        self._started = asyncio.run_coroutine_threadsafe(self.pool.__aenter__(), self.loop)

    def grade(self, question: Question, code: str) -> Feedback:
        async def run() -> Feedback:
            await asyncio.wrap_future(self._started)
            return await grade_code(self.pool, question, code, self.references)

        try:
            return asyncio.run_coroutine_threadsafe(run(), self.loop).result()
        except QuizFormatError:
            raise
        except LearnError as exc:
            return Feedback(False, f"your code could not be run: {exc}", code, graded=False)

    def close(self) -> None:
        async def shutdown() -> None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self._started), 60)
            except BaseException:
                pass
            for fut in self.references.values():
                fut.cancel()
            await self.pool.close()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=90)
        except BaseException:
            pass
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            if not self.thread.is_alive():
                self.loop.close()


# ---------------------------------------------------------------------------------------------
# non-interactive: an answers file


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
        report.feedback.update(asyncio.run(_grade_code_batch(code, pool_size)))
    report.duration = time.monotonic() - started
    return report


async def _grade_code_batch(items: list[tuple[Question, str]], pool_size: int | None) -> dict[str, Feedback]:
    from ..kernels import KernelPool

    async with KernelPool(size=pool_size or min(2, os.cpu_count() or 1)) as pool:
        references: dict = {}
        results = await asyncio.gather(*(grade_code(pool, q, code, references) for q, code in items))
    return {q.id: fb for (q, _), fb in zip(items, results)}


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
    from ..review import record_items
    from .free_flow import record_free

    answered = [("quiz", f"{report.quiz.id}:{q.id}", report.feedback[q.id].correct) for q in report.questions if q.id in report.feedback]
    from .variants import record_variants

    warnings = [warning, record_free(report), record_variants(report), record_items(answered)]  # each runs, whatever the others did
    return next((w for w in warnings if w), None)


# ---------------------------------------------------------------------------------------------
# interactive sessions, resumable


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


def _pct(score: float, total: float) -> str:
    return f"{100 * score / total:.0f}%" if total else "-"


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
        console.print(Text(f"You have an unfinished {quiz.id} quiz: {answered} of {len(report.questions)} answered, "
                           f"{report.score:g} right."))  # fmt: skip
        try:
            reply = read_line("Resume it? [Y/n] ")
        except EOFError:
            _print_stopped(console, report)
            return SessionResult(report, finished=False)
        if reply.strip().lower().startswith("n"):
            state = None
        else:
            console.print(Text("Resuming (with the topics and order you started with)."))
    if state is None:
        questions = quiz.select(topics)
        order = [q.id for q in questions]
        if shuffle:
            seed = seed if seed is not None else random.SystemRandom().randrange(1, 10**6)
            random.Random(seed).shuffle(order)
        state = {"quiz": quiz.id, "fingerprint": _fingerprint(quiz), "order": order, "answered": {}, "topics": list(topics or []),
                 "seed": seed if shuffle else None, "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "duration": 0.0}  # fmt: skip
        _print_intro(console, quiz, questions, shuffle, seed, topics)
    report = _report_from_state(quiz, state)
    pending = [quiz.question(qid) for qid in state["order"] if qid not in state["answered"]]
    runner = runner_factory() if runner_factory and any(q.type == "code" for q in pending) else None
    total = len(report.questions)
    try:
        for question in pending:
            number = state["order"].index(question.id) + 1
            question = _variant(question, state, quiz, folder)
            _print_question(console, question, number, total)
            asked = time.monotonic()
            feedback = _ask(question, console, read_line, runner)
            feedback.duration = time.monotonic() - asked
            if question.variant_seed is not None:
                feedback.detail = {"seed": question.variant_seed}
            _print_feedback(console, question, feedback)
            if not feedback.graded:
                continue
            report.feedback[question.id] = feedback
            state["answered"][question.id] = {
                "correct": feedback.correct,
                "given": _jsonable(feedback.given),
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
        _print_stopped(console, report)
        return SessionResult(report, finished=False, warnings=warnings)
    except KeyboardInterrupt:
        save_state(quiz, state, folder)
        _print_stopped(console, report)
        return SessionResult(report, finished=False, interrupted=True, warnings=warnings)
    finally:
        if runner is not None:
            runner.close()
    report.duration = float(state.get("duration", 0.0))
    ungraded = [q for q in report.questions if q.id not in report.feedback]
    _print_score(console, report, final=not ungraded)
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


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _ask(question: Question, console, read_line, runner: CodeRunner | None) -> Feedback:
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


def _print_intro(console, quiz: Quiz, questions: list[Question], shuffle: bool, seed, topics) -> None:
    from rich.text import Text

    console.print(Text(quiz.title, style="bold"))
    parts = [f"{len(questions)} questions"]
    if topics:
        parts.append(f"topics: {', '.join(topics)}")
    if shuffle:
        parts.append(f"shuffled with seed {seed} (--seed {seed} repeats this order)")
    console.print(Text(" · ".join(parts) + ". End of input (Ctrl-D) saves your progress; run the command again to resume."))


def _print_question(console, question: Question, number: int, total: int) -> None:
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


def _print_feedback(console, question: Question, feedback: Feedback) -> None:
    from rich.text import Text

    from ..inert import terminal  # messages quote what the learner's code raised or printed

    if not feedback.graded:
        console.print(Text(f"  ! {terminal(feedback.message)} - not counted; you will get this question again.", style="yellow"))
        return
    mark, style = ("✔", "green") if feedback.correct else ("✘", "red")
    console.print(Text(f"  {mark} {terminal(feedback.message)}", style=style))
    console.print(Text(f"  {question.explanation}", style="dim"))


def _print_score(console, report: QuizReport, final: bool) -> None:
    from rich.text import Text

    answered = [q for q in report.questions if q.id in report.feedback]
    label = "Final score" if final else "Score so far"
    console.print()
    console.print(Text(f"{label}: {report.score:g}/{sum(q.points for q in answered):g} ({_pct(report.score, sum(q.points for q in answered))})"
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


def _print_stopped(console, report: QuizReport) -> None:
    from rich.text import Text

    answered = len(report.feedback)
    console.print()
    console.print(Text(f"Stopped: your progress is saved ({answered} of {len(report.questions)} answered). "
                       f"Run `learn quiz {report.quiz.id}` again to resume, or add --restart to start over."))  # fmt: skip
    _print_score(console, report, final=False)


def render_report(report: QuizReport, console) -> None:
    """Per-question results of a graded answers file, then the score."""
    from rich.text import Text

    from ..inert import terminal

    for q in report.questions:
        fb = report.feedback.get(q.id)
        if fb is None:
            console.print(Text(f"✘ {q.id} [{q.topic}]: no answer given", style="red"))
        elif fb.correct:
            console.print(Text(f"✔ {q.id} [{q.topic}]", style="green"))
        else:
            console.print(Text(f"✘ {q.id} [{q.topic}]: {terminal(fb.message)}", style="red"))
        if q.type == "free" and fb is not None:
            from .free_flow import render_points

            render_points(q, fb, console)
    console.print()
    console.print(Text(f"Score: {report.score:g}/{report.max_score:g} ({_pct(report.score, report.max_score)})", style="bold"))
    weak = [f"{topic} ({got:g}/{total:g})" for topic, (got, total) in report.by_topic().items() if got < total]
    if weak:
        console.print(Text("Topics to revisit: " + ", ".join(weak)))
