"""Name the classic mistakes that surface as exceptions, and say them in the learner's terms.

    a probe raised ──► grading._probe_failure ──► explain.exception(name, ename, evalue, traceback, ctx)
                                                    └─ first recogniser that matches ─► (kind, message)
    a graded name is missing ──────────────────► explain.missing(names, ctx) ─► message
    a cell failed (report views) ──────────────► explain.cell_problem(problem) ─► one line

Lesson 3 and chapter 4 make the same few mistakes over and over, and Python's own messages point
the wrong way ("must be real number, not Tensor" says nothing about `math.exp`). Each recogniser
here is one such mistake: what the exception looks like, and a verdict that says what happened in
the learner's code - the cell, the line, the call - and why, without the reference's code (the
fix waits for `learn hint`). An exception no recogniser knows keeps Python's own message.

Recognisers see only what the learner's kernel reported (exception name and text, the learner's
frames); nothing is run.
"""

from __future__ import annotations

import builtins
import difflib
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Frame", "exception", "missing", "unknown_name", "cell_problem", "syntax_line", "EXCEPTION_KINDS", "NAMED_KINDS",
           "last_learner_frame"]  # fmt: skip

# kinds of a case whose function raised (the views show its traceback next to it)
EXCEPTION_KINDS = frozenset({
    "exception", "not_implemented", "python_on_tensor", "ambiguous_bool", "no_grad_update", "grad_none", "no_grad_fn",
    "backward_twice", "item_not_tensor", "matmul_order", "shapes", "unknown_name",
})  # fmt: skip

NAMED_KINDS = EXCEPTION_KINDS - {"exception", "not_implemented"}  # an exception recognised here: its explanation is the verdict

_FRAME = re.compile(r"^\s*(?:Cell )?cell (?P<cell>\d+)(?:, line (?P<line>\d+))?(?:, in (?P<func>[^\s(]+))?")
_ARROW = re.compile(r"^-*>\s*(?:\d+\s)?(?P<code>.*)$")


@dataclass
class Frame:
    """The learner's frame where an exception passed last: its cell, line, function and code."""

    cell: int
    line: int | None
    func: str
    code: str

    def where(self) -> str:
        line = f", line {self.line}" if self.line else ""
        return f"cell {self.cell}{line}"


def last_learner_frame(traceback: list[str] | None) -> Frame | None:
    """The last frame of the traceback that lies in one of the notebook's cells."""
    found = None
    lines = list(traceback or [])
    for i, line in enumerate(lines):
        m = _FRAME.match(line)
        if not m:
            continue
        code = ""
        for follow in lines[i + 1 : i + 12]:
            if _FRAME.match(follow) or follow.startswith("… ") or (follow and not follow[0].isspace() and not follow.startswith("-")):
                break
            arrow = _ARROW.match(follow.strip())
            if arrow:  # IPython marks the line that raised with an arrow
                code = arrow.group("code").strip()
            elif not code and follow.startswith("    "):  # the probe harness: the one line, indented
                code = re.sub(r"^\s*\d+\s", "", follow).strip()
        found = Frame(int(m.group("cell")), int(m.group("line")) if m.group("line") else None, m.group("func") or "", code)
    return found


# ---------------------------------------------------------------------------------------------
# exceptions of a graded function


def _in(frame: Frame | None) -> str:
    return f" ({frame.where()}: `{frame.code}`)" if frame and frame.code else f" ({frame.where()})" if frame else ""


def _python_on_tensor(name, ename, evalue, frame):
    if not re.search(r"must be real number, not Tensor|only (one|integer) element tensors? can be converted|"
                     r"a Tensor with \d+ elements cannot be converted to Scalar|can't convert .* to Python scalar", evalue):  # fmt: skip
        return None
    code = frame.code if frame else ""
    call = re.search(r"\bmath\.\w+|\b(?:float|int|round|abs|sum|max|min)(?=\()|\.item(?=\()", code)
    what = f"Python's `{call.group(0)}`" if call else "a Python function made for single numbers"
    return "python_on_tensor", (
        f"`{name}` hands a whole tensor to {what}{_in(frame)}. It works on one Python number at a time, and a tensor "
        "holds many. PyTorch has its own version of each such function, which works on every element of a tensor at once."
    )


def _ambiguous_bool(name, ename, evalue, frame):
    if "Boolean value of Tensor with more than one" not in evalue:
        return None
    code = frame.code if frame else ""
    if re.search(r"\b(?:max|min)\(", code):
        why = ("Python's max and min compare two things and need one True or False from each comparison; comparing a "
               "tensor gives one per element. A maximum taken element by element is a tensor operation")  # fmt: skip
    elif re.search(r"^\s*(?:if|elif|while)\b|\b(?:and|or|not)\b", code):
        why = ("`if`, `and`, `or` and `not` need one True or False, but a comparison of tensors gives one per element. "
               "Choose element by element with a tensor operation instead of branching in Python")  # fmt: skip
    else:
        why = "Python asked a tensor of many values for one True or False; a tensor comparison gives one per element"
    return "ambiguous_bool", f"`{name}` treats a whole tensor as one True or False{_in(frame)}. {why}."


def _no_grad_update(name, ename, evalue, frame):
    if "leaf Variable that requires grad is being used in an in-place operation" not in evalue:
        return None
    return "no_grad_update", (
        f"`{name}` changes a parameter in place while PyTorch records every operation for the gradients{_in(frame)}, "
        "and PyTorch refuses to change a tensor it is tracking. The update step itself must not be recorded: it belongs "
        "inside a block where PyTorch stops recording (see the notebook's instructions, `torch.no_grad()`)."
    )


def _grad_none(name, ename, evalue, frame):
    code = frame.code if frame else ""
    if not ("NoneType" in evalue and ".grad" in code):
        return None
    return "grad_none", (
        f"A `.grad` is None where `{name}` uses it{_in(frame)}. PyTorch fills `.grad` only for tensors created to track "
        "gradients (leaf tensors) after backward(); a parameter replaced by a new tensor computed from the old one - an "
        "update outside `torch.no_grad()`, or `p = p - ...` - has none. Change the parameters in place, in a step PyTorch "
        "does not record, and call backward() before reading the gradient."
    )


def _no_grad_fn(name, ename, evalue, frame):
    if "does not require grad and does not have a grad_fn" not in evalue:
        return None
    return "no_grad_fn", (
        f"backward() found nothing to differentiate in `{name}`{_in(frame)}: the loss was not computed from any tensor "
        "that tracks gradients. Were the parameters created to require gradients, and is the loss still a tensor built "
        "from them (not a plain number, not detached)?"
    )


def _backward_twice(name, ename, evalue, frame):
    if "backward through the graph a second time" not in evalue:
        return None
    return "backward_twice", (
        f"`{name}` runs backward() a second time through the same computation{_in(frame)}. The first backward() frees "
        "what a second one would need: compute the loss afresh for every backward(), and call it once per loss."
    )


def _item_not_tensor(name, ename, evalue, frame):
    m = re.match(r"'(float|int)' object has no attribute '(\w+)'", evalue)
    if ename != "AttributeError" or not m:
        return None
    return "item_not_tensor", (
        f"`{name}` calls `.{m.group(2)}()` on a plain Python {m.group(1)}{_in(frame)}, where a tensor was wanted. A "
        "function it relies on returns a number instead of a tensor - `.item()` turns a tensor into a number, and a "
        "number has no gradient, shape or tensor methods. Keep the values tensors until you need a number to print."
    )


def _matmul_order(name, ename, evalue, frame):
    m = re.search(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)", evalue)
    if not m:
        if not re.search(r"size mismatch.*matmul|shapes .* cannot be multiplied|inconsistent tensor size", evalue):
            return None
        dims = ""
    else:
        a, b, c, d = m.groups()
        dims = f" a ({a}, {b}) matrix by a ({c}, {d}) one: the inner sizes, {b} and {c}, must be equal."
    return "matmul_order", (
        f"`{name}` multiplies matrices whose sizes do not fit{_in(frame)}:{dims or ' the inner sizes must be equal.'} "
        "Is the product the wrong way round? In a linear layer the batch, one row per example, comes first and the "
        "weights, one row per input feature, second: (examples, features) times (features, outputs)."
    )


def _shapes(name, ename, evalue, frame):
    m = re.search(r"The size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton dimension (\d+)", evalue)
    if not m:
        return None
    a, b, dim = m.groups()
    return "shapes", (
        f"`{name}` combines two tensors element by element whose sizes do not pair up{_in(frame)}: along axis {dim} one "
        f"has {a} entries and the other {b}. Broadcasting pairs axes from the right and stretches only axes of size 1: "
        "print the shapes of both sides and check which axis each one means."
    )


RECOGNISERS = [_python_on_tensor, _ambiguous_bool, _no_grad_update, _grad_none, _no_grad_fn, _backward_twice, _item_not_tensor,
               _matmul_order, _shapes]  # fmt: skip


def exception(name: str, ename: str, evalue: str, traceback: list[str] | None, ctx: Any) -> tuple[str, str] | None:
    """(kind, message) for an exception of graded function `name` that is a classic mistake; None if none matches.

    NameError is explained by `unknown_name` (it needs the notebook's cells); the others by the recognisers,
    in order: the first that matches names the mistake. Python's own line follows the explanation."""
    frame = last_learner_frame(traceback)
    # the function the error is in: the graded one, or one it calls (then say whose call it was)
    inner = frame.func if frame and frame.func and frame.func != name and frame.func.isidentifier() else None
    subject, via = (inner, f" (`{name}` calls it)") if inner else (name, "")
    m = re.match(r"name '(\w+)' is not defined", evalue or "")
    if ename == "NameError" and m:
        return "unknown_name", unknown_name(subject, m.group(1), frame, ctx) + via + f"\n({ename}: {evalue})"
    for recognise in RECOGNISERS:
        found = recognise(subject, ename, evalue or "", frame)
        if found:
            kind, message = found
            if via:
                message = message.replace(f"`{subject}`", f"`{subject}`{via}", 1)
            return kind, f"{message}\n(Python said: {ename}: {evalue})"
    return None


# ---------------------------------------------------------------------------------------------
# names that are not there


def defining_cells(nb, name: str) -> list[int]:
    """1-based cells whose text defines `name`: def, class, an assignment, an import or a for loop
    at the top of the cell (found by reading, so a cell that does not even parse counts)."""
    if nb is None:
        return []
    n = re.escape(name)
    pattern = re.compile(
        rf"^\s*(?:async\s+)?(?:def|class)\s+{n}\b|^{n}\s*(?::[^=]*)?=(?!=)|^(?:\w+\s*,\s*)*{n}\s*(?:,\s*\w+\s*)*=(?!=)"
        rf"|^\s*import\s+(?:[\w.]+\s+as\s+{n}\b|(?:[\w.]+\s*,\s*)*{n}\b(?!\.))|^\s*from\s+[\w.]+\s+import\s+(?:\([^)]*|[^#\n]*)\b{n}\b"
        rf"|^for\s+(?:\w+\s*,\s*)*{n}\b[^\n]*\bin\b",
        re.M,
    )
    return [i + 1 for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and pattern.search(cell.source)]


def _textual_cells(ctx: Any, name: str) -> list[int]:
    return defining_cells(getattr(ctx, "nb", None), name)


def unknown_name_note(nb, cell: int, name: str, problems: dict[int, Any], defined) -> str:
    """Why `name` does not exist when `cell` runs (1-based; `problems`: the notebook's cell
    problems by cell; `defined`: the names it defines): the cell that defines it failed or comes
    later, or none defines it."""
    cells = defining_cells(nb, name)
    earlier = [c for c in cells if c < cell]
    failed = [c for c in earlier if c in problems and problems[c].kind != "output_limit"]
    if failed:
        return f"cell {failed[-1]}, which defines it, {_why_cell_failed(problems[failed[-1]])}"
    if earlier:
        return f"cell {earlier[-1]} defines it, yet it was gone here - is the definition inside another block, or deleted in between?"
    if cells:
        return f"only cell {cells[0]}, further down, defines it - move that cell above this one (a notebook is graded top to bottom)"
    close = _close(name, defined)
    return f"no cell defines it{f' - did you mean `{close[0]}`?' if close else ''}"


def syntax_line(problem) -> int | None:
    """The line of a cell's syntax error, from Python's message or the traceback."""
    m = re.search(r"line (\d+)\)?\s*$", problem.evalue or "")
    if m:
        return int(m.group(1))
    for line in problem.traceback or []:
        m = re.search(r"cell \d+, line (\d+)", line)
        if m:
            return int(m.group(1))
    return None


def _syntax_message(problem) -> str:
    """Python's description of a syntax error without its temporary file name: "'(' was never closed"."""
    return re.sub(r"\s*\([^()]*, line \d+\)\s*$", "", problem.evalue or "").strip() or "invalid syntax"


def _why_cell_failed(problem) -> str:
    if problem.ename in ("SyntaxError", "IndentationError", "TabError"):
        line = syntax_line(problem)
        return f"has a syntax error{f' at line {line}' if line else ''} ({_syntax_message(problem)}), so none of it ran"
    if problem.kind == "timeout":
        return "did not finish in time"
    if problem.kind == "skipped":
        return "did not run (an earlier cell stopped the notebook)"
    if problem.kind == "kernel_died":
        return "killed the Python kernel"
    what = f"{problem.ename}: {problem.evalue}".strip(": ") if problem.ename else problem.evalue or problem.kind
    return f"failed ({what[:200]})"


def _close(name: str, defined) -> list[str]:
    """Names like `name` (a typo's fix): among `defined` (the notebook's), builtins and common imports."""
    known = set(defined or ()) | set(dir(builtins)) | {"torch", "np", "nn", "F", "plt", "math"}
    return difflib.get_close_matches(name, sorted(known - {name}), n=2, cutoff=0.75)


def unknown_name(function: str, name: str, frame: Frame | None, ctx: Any) -> str:
    """Why `name` is unknown where `function` uses it: the cell that should define it failed, did not run, or is missing."""
    where = f" in {frame.where()}" if frame else ""
    problems = getattr(ctx, "problems", {}) or {}
    cells = sorted(set(_textual_cells(ctx, name)) | ({ctx.defs[name] + 1} if name in (getattr(ctx, "defs", {}) or {}) else set()))
    failed = [c for c in cells if c in problems and problems[c].kind != "output_limit"]
    if failed:
        return f"`{function}` uses `{name}`{where}, but cell {failed[0]}, which defines it, {_why_cell_failed(problems[failed[0]])}."
    if cells:
        return (f"`{function}` uses `{name}`{where}. Cell {cells[0]} defines `{name}`, yet it did not exist when `{function}` "
                "ran - is the definition inside another block, or is the name deleted later?")  # fmt: skip
    close = _close(name, getattr(ctx, "defs", None))
    guess = f" Did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""
    return f"`{function}` uses `{name}`{where}, but no cell of the notebook defines anything called `{name}`.{guess}"


def missing(names: list[str], ctx: Any) -> str:
    """Why graded names are not in the notebook after it ran - in the cell that should hold them."""
    name = names[0] if names else "?"
    listed = ", ".join(f"`{n}`" for n in names)
    problems = getattr(ctx, "problems", {}) or {}
    cells = sorted(set(_textual_cells(ctx, name)) | ({ctx.defs[name] + 1} if name in (getattr(ctx, "defs", {}) or {}) else set()))
    failed = [c for c in cells if c in problems and problems[c].kind != "output_limit"]
    if failed:
        cell = failed[0]
        return f"cell {cell}, which defines {listed}, {_why_cell_failed(problems[cell])}: {listed} was never defined."
    if cells:
        return f"cell {cells[0]} defines nothing called {listed} when it runs - did it run? (is the definition inside another block?)"
    close = _close(name, getattr(ctx, "defs", None))
    renamed = f" Did you rename it? The notebook defines {' and '.join(f'`{c}`' for c in close)}." if close else ""
    return f"no cell of {getattr(getattr(ctx, 'path', None), 'name', 'the notebook')} defines {listed}.{renamed} The grader calls it by this exact name."


# ---------------------------------------------------------------------------------------------
# cell problems, as the report shows them


def cell_problem(problem) -> str:
    """One line for a cell that did not run cleanly: a syntax error is called one, with its line."""
    if problem.ename in ("SyntaxError", "IndentationError", "TabError"):
        line = syntax_line(problem)
        kind = "indentation error" if problem.ename != "SyntaxError" else "syntax error"
        return f"{kind}{f' at line {line}' if line else ''}: {_syntax_message(problem)}"
    if problem.ename == "NameError":
        m = re.match(r"name '(\w+)' is not defined", problem.evalue or "")
        if m and getattr(problem, "note", ""):
            return f"NameError: nothing called `{m.group(1)}` exists when this cell runs: {problem.note.rstrip('.')}{'' if problem.note.endswith('?') else '.'}"
        if m:
            return f"NameError: nothing called `{m.group(1)}` exists when this cell runs - is it defined in a cell that failed, or further down?"
    if problem.ename:
        return f"{problem.ename}: {problem.evalue}".strip(": ")
    return problem.evalue or problem.kind
