"""The quiz file: questions, their validation, and where quizzes are found.

    quizzes/*.yaml ──load_yaml──► parse_quiz ──► Quiz (Question, ...) ── find_quiz(name) by name or path

A quiz is a YAML file in `quizzes/` (see grader.quiz for the format). `parse_quiz(text, source)` is
a pure function of the text: any malformed input gives a `QuizFormatError` naming the file and
the question, never another exception.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import QuizFormatError, UnknownQuizError, did_you_mean
from ..yamlfile import load_yaml

__all__ = ["Question", "Quiz", "parse_quiz", "load_quiz", "find_quiz", "bundled_quizzes", "quizzes_dir", "compiles", "TYPES"]


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
            value = fmt_number(self.answers[0])
            tol = f" (give or take {fmt_number(self.tolerance)})" if self.tolerance else ""
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
            guess = did_you_mean(unknown[0], self.topics())
            raise UnknownQuizError(f"quiz {self.id} has no topic {', '.join(unknown)}.{guess} Topics: {', '.join(self.topics())}")
        return [q for q in self.questions if q.topic in topics]


def fmt_number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def is_number(value) -> bool:
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
    if not is_number(points) or points <= 0:
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
        if not is_number(answer):
            raise fail(f"answer must be a number, not {answer!r}")
        if not is_number(tolerance) or tolerance < 0:
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


def compiles(source: str, mode: str = "exec"):
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
    tree = compiles(reference)
    if tree is None:
        raise fail("the reference code does not compile")
    if not _defines(tree, function):
        raise fail(f"the reference code does not define {function}")
    if not isinstance(cases, list) or not cases or not all(_text(c) for c in cases):
        raise fail("cases must be a non-empty list of argument lists, e.g. 'torch.ones(3), 2'")
    for case in cases:
        tree = compiles(f"_(\n{case}\n)", "eval")
        call = getattr(tree, "body", None)
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"):
            raise fail(f"case {case!r} is not a valid argument list")
    starter = item.get("starter", "")
    if not isinstance(starter, str):
        raise fail("starter must be text")
    out = dict(function=function, reference=reference.strip() + "\n", cases=tuple(c.strip() for c in cases), starter=starter.rstrip())
    for key in ("rtol", "atol"):
        if key in item:
            if not is_number(item[key]) or item[key] < 0:
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
    raise UnknownQuizError(f"unknown quiz '{name}'.{did_you_mean(name, known)} Quizzes: {', '.join(known) or '(none installed)'}")
