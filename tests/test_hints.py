"""Hints that teach: hint 1 is a nudge (the concept, where to look), never the answer.

For every pack and every graded name, the first hint must not contain a key call of the
reference solution: any function or method the solution's definition calls (`zero_(`,
`.mean(`, `torch.where(`, `sigmoid(`...), nor `@` where the solution multiplies matrices.
"""

from __future__ import annotations

import ast

import pytest

from grader.lessons import all_lessons
from grader.notebook import code_cells, load_notebook, python_only

ALWAYS = ("zero_(", "zero_grad(", ".zero_grad", ".mean(", "clamp", "torch.where", "sigmoid(")  # the brief's examples


def _definition_nodes(lesson, spec) -> list[ast.AST]:
    nb = load_notebook(lesson.solution_path(lesson.notebook(spec.notebook)))
    found = []
    for _, source in code_cells(nb):
        try:
            tree = ast.parse(python_only(source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == spec.name:
                found.append(node)
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == spec.name for t in node.targets):
                found.append(node)
    return found


def key_calls(lesson, spec) -> set[str]:
    """What the solution's definition of this name calls, as it would be written in a hint."""
    keys = set()
    for node in _definition_nodes(lesson, spec):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                func = sub.func
                if isinstance(func, ast.Attribute):
                    keys.add(f".{func.attr}(")
                elif isinstance(func, ast.Name):
                    keys.add(f"{func.id}(")
            elif isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.MatMult):
                keys.add(" @ ")
    return keys - {"range(", "len(", "float(", "int(", "list(", "super(", ".__init__("}


CASES = [(lesson.id, spec.name) for lesson in all_lessons().values() for spec in lesson.checks.values()]


@pytest.mark.parametrize("lesson_id, name", CASES)
def test_hint_one_is_a_nudge_not_the_answer(lesson_id, name):
    lesson = all_lessons()[lesson_id]
    spec = lesson.checks[name]
    assert spec.hints, f"{lesson_id}.{name} has no hints"
    first = spec.hints[0]
    given_away = sorted(k for k in key_calls(lesson, spec) | set(ALWAYS) if k in first)
    assert not given_away, f"hint 1 of {lesson_id}.{name} gives away {given_away}: {first!r}"
    assert len(spec.hints) >= 2 or not key_calls(lesson, spec), f"{lesson_id}.{name}: one hint cannot go from a nudge to the fix"


def test_key_calls_are_found_in_the_solution():
    lessons = all_lessons()
    fit = lessons["lesson3"].checks["fit_quad"]
    assert ".zero_(" in key_calls(lessons["lesson3"], fit)
    assert ".mean(" in key_calls(lessons["lesson3"], lessons["lesson3"].checks["mse"])
    assert "torch.where" not in key_calls(lessons["chapter4"], lessons["chapter4"].checks["mnist_loss"])  # written .where(
    assert ".where(" in key_calls(lessons["chapter4"], lessons["chapter4"].checks["mnist_loss"])
