"""Does a message give the answer away? Reference code found in text a learner reads before any hint.

    solution notebook code ─┐
    exercise notebook text ─┼─► code sequences only the solution has ─┐
    the learner's own code ─┘                                        ├─► leaks(message): sequences in both
    the message ───────────────────────────────────────────────────────┘

Text and code are cut into the same tokens (names, numbers, operators, brackets); a "code
sequence" is three tokens in a row with at least one name (or string) and at least one piece of
code punctuation (`.mean(`, `zero_ ( )`, `x @ w`, `** 2 )`; a dot only before a name, as in an
attribute, not at the end of a sentence) - a run of words and commas is prose.
A sequence is allowed when the learner could already see it: in the exercise notebook (prose,
stubs, given code) or in the code they wrote.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from grader.lessons import Lesson, get_lesson
from grader.notebook import load_notebook

TOKEN = re.compile(r"'[^'\n]{2,40}'|\"[^\"\n]{2,40}\"|[A-Za-z_]\w*|\d+(?:\.\d+)?|\*\*|->|//|[-+*/@<>=!]=|[^\s\w]")
PUNCT = {".", "(", "[", "@", "**", "=", "+=", "-=", "*=", "/=", "->", "//", "==", "<=", ">=", "!="}
N = 3


def tokens(text: str) -> list[str]:
    """Code-ish tokens of code or prose; a short quoted string is one token (`'ik,kj->ij'`), quotes normalised."""
    out = []
    text = re.sub(r"\.(?=\s|$)", " \u00b6 ", text)  # a full stop ends a sentence (an attribute's dot has no space after it)
    for tok in TOKEN.findall(text):
        if len(tok) > 2 and tok[0] == tok[-1] and tok[0] in "'\"":
            tok = "'" + tok[1:-1] + "'"
        out.append(tok)
    return out


def sequences(text: str) -> set[tuple[str, ...]]:
    toks = tokens(text)
    found = set()
    for i in range(len(toks) - N + 1):
        gram = tuple(toks[i : i + N])
        wordy = any(t[0].isalpha() or t[0] in "_'" for t in gram)  # a name or a string: numbers alone are data
        coded = any(t in PUNCT and (t != "." or (j + 1 < N and gram[j + 1][0].isalpha())) for j, t in enumerate(gram))
        if wordy and coded:
            found.add(gram)
    return found


def _notebook_text(path, code_only: bool) -> str:
    nb = load_notebook(path)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code" or not code_only)


@functools.cache
def solution_only(lesson_id: str, notebook: str) -> frozenset:
    """Code sequences of the solution notebook that its exercise notebook does not show."""
    lesson = get_lesson(lesson_id)
    spec = lesson.notebook(notebook)
    solution = sequences(_notebook_text(lesson.solution_path(spec), code_only=True))
    return frozenset(solution - sequences(_notebook_text(lesson.exercise_path(spec), code_only=False)))


def leaks_in_pack(message: str, lesson: Lesson) -> list[str]:
    """`leaks` for a message of a pack whose notebook is not known: code of any solution notebook of the
    pack that no exercise notebook of it shows."""
    notebooks = [spec.file for spec in lesson.notebooks]
    hidden = frozenset().union(*(solution_only(lesson.id, nb) for nb in notebooks))
    for nb in notebooks:
        hidden -= sequences(_notebook_text(lesson.exercise_path(lesson.notebook(nb)), code_only=False))
    return sorted(" ".join(g) for g in sequences(message) & hidden)


def leaks(message: str, lesson: Lesson, notebook: str, learner_code: str = "") -> list[str]:
    """The reference code sequences in `message` that the learner neither wrote nor was shown."""
    hidden = solution_only(lesson.id, notebook) - sequences(learner_code)
    return sorted(" ".join(g) for g in sequences(message) & hidden)


SHOWN_ONLY_AS_DATA = {"show", "label", "title", "xlabel", "ylabel", "kind", "mistake", "name", "display_name"}


def _kernel_side(tree: ast.Module) -> set[str]:
    """Names of the functions and classes of a checks.py that run inside kernels (probes and mistaken versions)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            args = list(node.args[2:]) if func == "Mistake" else []
            args += [kw.value for kw in node.keywords if kw.arg in ("probe", "replace")]
            for arg in args:
                values = arg.values if isinstance(arg, ast.Dict) else [arg]
                names.update(v.id for v in values if isinstance(v, ast.Name))
    names.update(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("probe"))
    return names


def messages(path) -> list[tuple[int, str]]:
    """(line, text) of every string a checks.py may show a learner whatever the learner wrote: judge messages,
    advice, explanations of misconceptions a judge names - not the message of a Mistake with an implementation
    (whose learner code is known), docstrings, dictionary keys, labels or the code that runs inside kernels."""
    tree = ast.parse(Path(path).read_text())
    skip: set[int] = set()
    kernel = _kernel_side(tree)
    for node in ast.walk(tree):
        is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if is_call and node.func.id == "Mistake" and (len(node.args) > 2 or any(k.arg == "replace" for k in node.keywords)):
            skip.update(id(n) for arg in node.args[1:2] for n in ast.walk(arg))  # judged with the learner's code: test_teaching
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in kernel:
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg in SHOWN_ONLY_AS_DATA:
            skip.update(id(n) for n in ast.walk(node.value))
        if isinstance(node, ast.Subscript):
            skip.update(id(n) for n in ast.walk(node.slice))
        if isinstance(node, ast.Dict):
            skip.update(id(n) for k in node.keys if k is not None for n in ast.walk(k))
        if isinstance(node, ast.Compare):
            skip.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
            text = "".join(v.value if isinstance(v, ast.Constant) else " {} " for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if len(text.split()) >= 2:
            found.append((node.lineno, text))
    return found
