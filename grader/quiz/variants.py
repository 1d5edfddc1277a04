"""Parameterised numeric questions: generators in the quiz file, the answer computed per variant.

    - id: var-matmul-count
      type: numeric
      params:
        n: {int: [2, 64]}            # inclusive range
        k: {choice: [10, 20, 784]}
        lr: {float: [0.01, 1.0, 2]}  # low, high, decimals
      prompt: "({n}, {k}) @ ({k}, 3): how many numbers does the result hold?"
      answer: "n * 3"                # an arithmetic expression of the parameters
      explanation: "The result is ({n}, 3), so {answer} numbers."

    question + seed --random.Random(seed)--> values --format prompt/explanation, evaluate answer--> a plain question

A retry (a new session, `--restart`, a review) draws a new seed; the seed is saved with the
session and recorded with the answer, so `instantiate(question, seed)` reproduces the variant.
The answer expression is evaluated here with a whitelist of arithmetic (numbers, the parameter
names, + - * / // % **, and abs/min/max/round/sqrt/log/exp), never with eval.
"""

from __future__ import annotations

import ast
import math
import operator
import random
import string
from dataclasses import dataclass, replace

__all__ = ["Variant", "parse_params", "instantiate", "new_seed", "evaluate", "record_variants", "VARIANT_SCHEMA"]

VARIANT_SCHEMA = """
CREATE TABLE IF NOT EXISTS variant_answers (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    quiz TEXT NOT NULL,
    question TEXT NOT NULL,
    seed INTEGER NOT NULL,           -- instantiate(question, seed) reproduces the variant
    answer TEXT,
    correct INTEGER NOT NULL
);
"""

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}  # fmt: skip
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCS = {"abs": abs, "min": min, "max": max, "round": round, "sqrt": math.sqrt, "log": math.log, "exp": math.exp}
MAX_POWER = 64


@dataclass(frozen=True)
class Variant:
    """An answer to one variant: the seed that drew it and the parsed answer."""

    seed: int
    value: object


class ExpressionError(ValueError):
    pass


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def evaluate(expr: str, names: dict[str, float]) -> float:
    """The value of an arithmetic expression of `names`; ExpressionError for anything else."""
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ExpressionError("not an arithmetic expression") from None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and _number(node.value):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ExpressionError(f"unknown name {node.id!r}")
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > MAX_POWER:
                raise ExpressionError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))
        raise ExpressionError(f"{type(node).__name__} is not allowed (numbers, parameters, + - * / // % ** and {', '.join(_FUNCS)})")

    try:
        value = ev(tree)
    except ExpressionError:
        raise
    except (ArithmeticError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise ExpressionError(f"{type(exc).__name__}: {exc}") from None
    if not _number(value):
        raise ExpressionError("the result is not a finite number")
    return value


def parse_params(raw, fail) -> tuple:
    """`params:` of a question as ((name, kind, args), ...); `fail(msg)` makes the error."""
    if not isinstance(raw, dict) or not raw:
        raise fail("params must be a mapping of name -> {int: [lo, hi]} | {float: [lo, hi, decimals]} | {choice: [...]}")
    out = []
    for name, gen in raw.items():
        if not isinstance(name, str) or not name.isidentifier() or name in _FUNCS or name == "answer":
            raise fail(f"param name {name!r} must be a Python name (not {', '.join(_FUNCS)} or answer)")
        if not isinstance(gen, dict) or len(gen) != 1:
            raise fail(f"param {name}: give one generator, e.g. {{int: [1, 10]}}")
        ((kind, args),) = gen.items()
        if kind == "int":
            if not (
                isinstance(args, list)
                and len(args) == 2
                and all(isinstance(a, int) and not isinstance(a, bool) for a in args)
                and args[0] <= args[1]
            ):
                raise fail(f"param {name}: int needs [low, high] integers with low <= high")
        elif kind == "float":
            ok = isinstance(args, list) and len(args) == 3 and all(_number(a) for a in args[:2]) and args[0] <= args[1]
            if not ok or not (isinstance(args[2], int) and not isinstance(args[2], bool) and 0 <= args[2] <= 6):
                raise fail(f"param {name}: float needs [low, high, decimals] with low <= high and 0-6 decimals")
        elif kind == "choice":
            if not (isinstance(args, list) and args and all(_number(a) for a in args)):
                raise fail(f"param {name}: choice needs a non-empty list of numbers")
        else:
            raise fail(f"param {name}: unknown generator {kind!r} (int, float or choice)")
        out.append((name, kind, tuple(args)))
    return tuple(out)


def draw(params: tuple, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    values: dict[str, float] = {}
    for name, kind, args in params:
        if kind == "int":
            values[name] = rng.randint(args[0], args[1])
        elif kind == "float":
            values[name] = round(rng.uniform(args[0], args[1]), args[2])
        else:
            values[name] = rng.choice(args)
    return values


def _fields(text: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError:
        return {"{"}


def check_template(fields: dict, params: tuple, answer_expr, fail) -> None:
    """Load-time checks: every {name} is a parameter (or answer) and the answer evaluates."""
    names = {p[0] for p in params}
    for key in ("prompt", "explanation"):
        unknown = sorted(_fields(fields[key]) - names - {"answer"})
        if unknown:
            raise fail(f"{key} uses {{{unknown[0]}}}, which is not a parameter (write {{{{ and }}}} for braces)")
    if not isinstance(answer_expr, str) or not answer_expr.strip():
        raise fail("a parameterised question's answer must be an expression of its params, e.g. 'n * m'")
    for seed in range(5):  # the expression must work on real draws
        try:
            evaluate(answer_expr, draw(params, seed))
        except ExpressionError as exc:
            raise fail(f"answer {answer_expr!r}: {exc}") from None


def instantiate(question, seed: int):
    """The plain question of one variant (prompt and explanation filled in, answer computed)."""
    values = draw(question.params, seed)
    answer = evaluate(question.answer_expr, values)
    shown = {k: _fmt(v) for k, v in values.items()} | {"answer": _fmt(answer)}
    return replace(question, prompt=question.prompt.format(**shown), explanation=question.explanation.format(**shown),
                   answers=(answer,), params=(), variant_seed=seed)  # fmt: skip


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def new_seed() -> int:
    return random.SystemRandom().randrange(1, 10**6)


def record_variants(report, path=None) -> str | None:
    """Store the seed of every answered variant (progress.db variant_answers); a warning or None."""
    import datetime as _dt
    import json

    from ..progress import append_rows

    at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    rows = []
    for q in report.questions:
        fb = report.feedback.get(q.id)
        seed = (fb.detail or {}).get("seed") if fb is not None else None
        if q.params and isinstance(seed, int):
            rows.append((at, report.quiz.id, q.id, seed, json.dumps(fb.given), int(fb.correct)))
    return append_rows(VARIANT_SCHEMA, "INSERT INTO variant_answers (at, quiz, question, seed, answer, correct) VALUES (?, ?, ?, ?, ?, ?)",
                       rows, path)  # fmt: skip
