"""Mutants of a reference solution: small, plausible wrong versions of one graded definition.

    solution notebook ─► the cell defining NAME ─► ast of that definition ─► operators ─► Mutant
                          (def, class, a method,     only nodes on the lines the     (its source, what
                           or `NAME = ...`)          learner writes: between the      changed, a stable id)
                                                     solution markers)

A check that lets a mutant pass cannot tell that wrong version from the solution. `learn mutants`
(grader/mutants.py) grades every mutant with the pack's own checks and reports the survivors.

The operators are the mistakes people make in this kind of code:

    arith      + <-> -, * <-> /, ** -> *, @ -> *, a unary minus dropped, an augmented assignment's operator swapped
    compare    < <-> >, <= <-> >=, == <-> !=, < -> <= (the boundary), `and` <-> `or`
    constant   an int n -> n + 1, a float f -> -f (0.0 -> 1.0)
    reduction  mean <-> sum, max <-> min, argmax <-> argmin, std -> var, all <-> any, median -> mean, clip(min=) <-> clip(max=)
    dim        a reduction's dim changed (0 -> 1, -1 -> -2), dropped (reduce everything), keepdim flipped
    args       two positional arguments of a call swapped
    remove     a statement removed (`loss.backward()`, `p.grad.zero_()`, an assert), a `with` block unwrapped
               (`torch.no_grad()`), an `if` unwrapped, a `.clone()` / `.detach()` / `.requires_grad_()` dropped
    range      range(n) -> range(n - 1), range(1, n), range(n + 1)
    returns    a tensor result returned as a list, a Python float, or float64
    in_place   `x * y` on a parameter x made in place (`x.mul_(y)`): the caller's tensor changes

A mutant that only makes sense for some values (returning a tensor as a list when the result is no
tensor) raises `LookupError("learn: mutant not applicable")` when it does not apply; the runner drops
those instead of counting them as caught.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .notebook import python_only

__all__ = ["Mutant", "Target", "find_target", "mutants_of", "solution_lines", "NOT_APPLICABLE", "raising", "hanging"]

NOT_APPLICABLE = "learn: mutant not applicable"

_BEGIN = re.compile(r"^\s*(?:#\|\s*begin solution|###\s*BEGIN SOLUTION)\s*$", re.I)
_END = re.compile(r"^\s*(?:#\|\s*end solution|###\s*END SOLUTION)\s*$", re.I)


@dataclass(frozen=True)
class Mutant:
    """One wrong version of a definition: `source` defines `defines` (the graded name, or the class
    holding a graded method) when executed."""

    target: str  # the graded name
    op: str  # operator family (see the module docstring), or "named" for a pack's Mistake
    line: int  # line in the cell (1-based); 0 when not one line
    before: str
    after: str
    source: str
    defines: str

    @property
    def id(self) -> str:
        """Stable while the solution does not change: the operator and a digest of the source."""
        return f"{self.op}:{hashlib.sha256(self.source.encode()).hexdigest()[:10]}"

    @property
    def description(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}`{_short(self.before)}` -> `{_short(self.after)}`"


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Target:
    """Where a graded name is defined in a solution notebook."""

    name: str
    cell: int  # index of the cell in the notebook
    cell_source: str
    node: ast.stmt  # the top-level statement that defines it (def, class, assignment)
    defines: str  # what executing the node binds (the name, or the class of a graded method)
    scope: ast.AST  # the subtree that may change (the method of a class; else the node itself)
    lines: frozenset[int]  # cell lines the learner writes (inside solution markers)
    statement: bool = False  # a statement of the notebook (learn.fine_tune(...)), not a definition

    def replaced_in_cell(self, source: str) -> str:
        """The cell's source with this definition replaced by `source` (another version of it)."""
        lines = self.cell_source.split("\n")
        first = min([self.node.lineno] + [d.lineno for d in getattr(self.node, "decorator_list", [])])
        indent = ""
        return "\n".join(lines[: first - 1] + [indent + line for line in source.split("\n")] + lines[self.node.end_lineno :])


def solution_lines(source: str) -> frozenset[int]:
    """1-based lines between solution markers (the markers excluded); all lines if there are none."""
    inside, found, any_marker = False, set(), False
    lines = source.split("\n")
    for number, line in enumerate(lines, 1):
        if _BEGIN.match(line):
            inside, any_marker = True, True
            continue
        if _END.match(line):
            inside = False
            continue
        if inside:
            found.add(number)
    return frozenset(found if any_marker else range(1, len(lines) + 1))


def _binds(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


def find_target(cells: list[tuple[int, str]], name: str, classes: tuple[str, ...] = ()) -> Target | None:
    """The last top-level definition of `name` in the code cells [(index, source)], or a method
    `name` of one of `classes` (a graded method such as Learner.fit)."""
    found = None
    for index, source in cells:
        try:
            tree = ast.parse(python_only(source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            if name in _binds(node):
                found = Target(name, index, source, node, name, node, solution_lines(source))
            elif isinstance(node, ast.ClassDef) and node.name in classes:
                method = next((m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == name), None)
                if method is not None:
                    found = Target(name, index, source, node, node.name, method, solution_lines(source))
    return found


# ---------------------------------------------------------------------------------------------
# operators: each yields (node index in ast.walk order of the scope, a function that edits the
# copy of that node in place or returns its replacement, before text, after text)

_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult, ast.MatMult: ast.Mult,
          ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv}  # fmt: skip
_COMPARE = {ast.Lt: [ast.Gt, ast.LtE], ast.Gt: [ast.Lt, ast.GtE], ast.LtE: [ast.GtE, ast.Lt], ast.GtE: [ast.LtE, ast.Gt],
            ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.Is: [ast.IsNot], ast.IsNot: [ast.Is]}  # fmt: skip
_REDUCTIONS = {"mean": "sum", "sum": "mean", "max": "min", "min": "max", "argmax": "argmin", "argmin": "argmax", "std": "var",
               "all": "any", "any": "all", "median": "mean", "nanmedian": "nanmean", "nanmean": "nanmedian", "amax": "amin",
               "amin": "amax", "prod": "sum", "logsumexp": "sum"}  # fmt: skip
_DIM_CALLS = {"mean", "sum", "max", "min", "argmax", "argmin", "std", "var", "prod", "softmax", "log_softmax", "cumsum", "cat",
              "stack", "median", "nanmedian", "nanmean", "amax", "amin", "logsumexp", "all", "any", "norm", "squeeze", "unsqueeze",
              "flatten", "topk", "sort", "argsort"}  # fmt: skip
_DROPPED_METHODS = {"clone", "detach", "requires_grad_", "float", "contiguous", "copy", "item", "eval", "train", "cpu"}
_IN_PLACE = {ast.Add: "add_", ast.Sub: "sub_", ast.Mult: "mul_", ast.Div: "div_", ast.Pow: "pow_"}
_RETURNS = {
    "list": "v.tolist() if t.is_tensor(v) and v.dim() > 0",
    "float": "v.item() if t.is_tensor(v) and v.numel() == 1 and v.is_floating_point()",
    "float64": "v.double() if t.is_tensor(v) and v.dtype == t.float32",
}


def _throw() -> str:
    return f"(_ for _ in ()).throw(LookupError({NOT_APPLICABLE!r}))"


def _unparse(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # an odd node: described by its type
        return type(node).__name__


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _int_const(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        if type(node.operand.value) is int:
            return -node.operand.value
    return None


def _const(value: int) -> ast.expr:
    return ast.UnaryOp(ast.USub(), ast.Constant(-value)) if value < 0 else ast.Constant(value)


def _other_dim(node: ast.AST) -> ast.expr | None:
    """dim 0 -> 1, 1 -> 0, -1 -> -2, -2 -> -1; a tuple of dims loses its last one."""
    value = _int_const(node)
    if value is not None:
        return _const({0: 1, 1: 0, -1: -2, -2: -1}.get(value, value + 1 if value >= 0 else value - 1))
    if isinstance(node, ast.Tuple) and len(node.elts) > 1:
        return ast.Tuple(elts=node.elts[:-1], ctx=ast.Load())
    return None


class _Edits:
    """Collects candidate edits as (index, edit, before, after, op)."""

    def __init__(self, scope: ast.AST, lines: frozenset[int], params: set[str], docstrings: set[int]):
        self.scope, self.lines, self.params, self.docstrings = scope, lines, params, docstrings
        self.found: list[tuple[int, object, str, str, str, int]] = []

    def add(self, index: int, node: ast.AST, edit, after: str, op: str, before: str | None = None) -> None:
        self.found.append((index, edit, before if before is not None else _unparse(node), after, op, getattr(node, "lineno", 0)))

    def on_lines(self, node: ast.AST) -> bool:
        line = getattr(node, "lineno", None)
        return line is not None and line in self.lines and id(node) not in self.docstrings


def _docstrings(scope: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(scope):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            if isinstance(body[0].value.value, str):
                out |= {id(body[0]), id(body[0].value)}
    return out


def _params(scope: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(scope):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            names |= {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs} - {"self"}
    return names


def _collect(scope: ast.AST, lines: frozenset[int]) -> _Edits:
    edits = _Edits(scope, lines, _params(scope), _docstrings(scope))
    for index, node in enumerate(ast.walk(scope)):
        if not edits.on_lines(node):
            continue
        _arith(edits, index, node)
        _compare(edits, index, node)
        _constant(edits, index, node)
        if isinstance(node, ast.Call):
            _reduction(edits, index, node)
            _dim(edits, index, node)
            _args(edits, index, node)
            _dropped_call(edits, index, node)
            _range(edits, index, node)
        _remove(edits, index, node)
        _returns(edits, index, node)
        _in_place(edits, index, node)
    return edits


def _arith(edits: _Edits, index: int, node: ast.AST) -> None:
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _ARITH:
        new = _ARITH[type(node.op)]

        def edit(n, new=new):
            n.op = new()

        probe = copy.deepcopy(node)
        probe.op = new()
        edits.add(index, node, edit, _unparse(probe), "arith")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
        edits.add(index, node, lambda n: n.operand, _unparse(node.operand), "arith")


def _compare(edits: _Edits, index: int, node: ast.AST) -> None:
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        for new in _COMPARE[type(node.ops[0])]:

            def edit(n, new=new):
                n.ops = [new()]

            probe = copy.deepcopy(node)
            probe.ops = [new()]
            edits.add(index, node, edit, _unparse(probe), "compare")
    elif isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And

        def edit(n, new=new):
            n.op = new()

        probe = copy.deepcopy(node)
        probe.op = new()
        edits.add(index, node, edit, _unparse(probe), "compare")


def _constant(edits: _Edits, index: int, node: ast.AST) -> None:
    if not isinstance(node, ast.Constant) or type(node.value) not in (int, float):
        return
    value = node.value
    new = value + 1 if type(value) is int else (-value if value != 0 else 1.0)

    def edit(n, new=new):
        n.value = new

    edits.add(index, node, edit, repr(new), "constant")


def _reduction(edits: _Edits, index: int, node: ast.Call) -> None:
    f = node.func
    name = _call_name(node)
    if name in _REDUCTIONS and isinstance(f, (ast.Attribute, ast.Name)):
        new = _REDUCTIONS[name]

        def edit(n, new=new):
            if isinstance(n.func, ast.Attribute):
                n.func.attr = new
            else:
                n.func.id = new

        probe = copy.deepcopy(node)
        edit(probe)
        edits.add(index, node, edit, _unparse(probe), "reduction")
    for k, kw in enumerate(node.keywords):  # clip(x, min=0) <-> clip(x, max=0)
        if kw.arg in ("min", "max") and name in ("clip", "clamp", "clip_", "clamp_"):

            def edit(n, k=k):
                n.keywords[k].arg = "max" if n.keywords[k].arg == "min" else "min"

            probe = copy.deepcopy(node)
            edit(probe)
            edits.add(index, node, edit, _unparse(probe), "reduction")


def _dim(edits: _Edits, index: int, node: ast.Call) -> None:
    name = _call_name(node)
    if name not in _DIM_CALLS:
        return
    for k, kw in enumerate(node.keywords):
        if kw.arg == "dim":
            other = _other_dim(kw.value)
            if other is not None:

                def edit(n, k=k, other=other):
                    n.keywords[k].value = copy.deepcopy(other)

                edits.add(index, node, edit, f"dim={_unparse(other)}", "dim", before=f"dim={_unparse(kw.value)}")
            if name not in ("cat", "stack", "squeeze", "unsqueeze", "softmax", "log_softmax", "cumsum"):

                def drop(n, k=k):
                    del n.keywords[k]

                probe = copy.deepcopy(node)
                drop(probe)
                edits.add(index, node, drop, _unparse(probe), "dim")
        if kw.arg == "keepdim" and isinstance(kw.value, ast.Constant) and type(kw.value.value) is bool:

            def flip(n, k=k):
                n.keywords[k].value = ast.Constant(not n.keywords[k].value.value)

            probe = copy.deepcopy(node)
            flip(probe)
            edits.add(index, node, flip, _unparse(probe), "dim")
    method = isinstance(node.func, ast.Attribute) and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "torch")
    position = 0 if method else 1  # x.mean(0) / torch.mean(x, 0)
    if len(node.args) > position:
        other = _other_dim(node.args[position])
        if other is not None and not node.keywords:

            def edit(n, other=other, position=position):
                n.args[position] = copy.deepcopy(other)

            edits.add(index, node, edit, _unparse(other), "dim", before=_unparse(node.args[position]))
            if name not in ("cat", "stack", "squeeze", "unsqueeze", "softmax", "log_softmax", "cumsum", "topk"):

                def drop(n, position=position):
                    del n.args[position]

                probe = copy.deepcopy(node)
                drop(probe)
                edits.add(index, node, drop, _unparse(probe), "dim")


def _args(edits: _Edits, index: int, node: ast.Call) -> None:
    args = node.args
    for i in range(len(args) - 1):
        if isinstance(args[i], ast.Starred) or isinstance(args[i + 1], ast.Starred) or _unparse(args[i]) == _unparse(args[i + 1]):
            continue

        def edit(n, i=i):
            n.args[i], n.args[i + 1] = n.args[i + 1], n.args[i]

        probe = copy.deepcopy(node)
        edit(probe)
        edits.add(index, node, edit, _unparse(probe), "args")


def _dropped_call(edits: _Edits, index: int, node: ast.Call) -> None:
    """x.clone() -> x (also detach, requires_grad_ ...): a copy, a detach or a flag forgotten."""
    f = node.func
    if isinstance(f, ast.Attribute) and f.attr in _DROPPED_METHODS and not node.args:
        edits.add(index, node, lambda n: n.func.value, _unparse(f.value), "remove")


def _range(edits: _Edits, index: int, node: ast.Call) -> None:
    if not (isinstance(node.func, ast.Name) and node.func.id == "range") or not 1 <= len(node.args) <= 2:
        return
    stop = node.args[-1]
    variants = [
        ("stop-1", lambda n: n.args.__setitem__(-1, ast.BinOp(n.args[-1], ast.Sub(), ast.Constant(1)))),
        ("stop+1", lambda n: n.args.__setitem__(-1, ast.BinOp(n.args[-1], ast.Add(), ast.Constant(1)))),
    ]
    if len(node.args) == 1:
        variants.append(("start 1", lambda n: n.args.insert(0, ast.Constant(1))))
    else:
        variants.append(("start+1", lambda n: n.args.__setitem__(0, ast.BinOp(n.args[0], ast.Add(), ast.Constant(1)))))
    del stop
    for _, edit in variants:
        probe = copy.deepcopy(node)
        edit(probe)
        edits.add(index, node, edit, _unparse(probe), "range")


def _remove(edits: _Edits, index: int, node: ast.AST) -> None:
    """A statement left out: a call made for its effect, an assert; a `with` or `if` unwrapped."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        edits.add(index, node, lambda n: ast.Pass(), "(removed)", "remove")
    elif isinstance(node, ast.Assert):
        edits.add(index, node, lambda n: ast.Pass(), "(removed)", "remove")
    elif isinstance(node, ast.With):
        head = "with " + ", ".join(_unparse(i) for i in node.items) + ":"
        edits.add(index, node, lambda n: list(n.body), "(only its body)", "remove", before=head)
    elif isinstance(node, ast.If):
        edits.add(index, node, lambda n: list(n.body), "(its body, always)", "remove", before=f"if {_unparse(node.test)}:")
    elif isinstance(node, (ast.AugAssign,)) and isinstance(node.target, (ast.Name, ast.Attribute, ast.Subscript)):
        edits.add(index, node, lambda n: ast.Pass(), "(removed)", "remove")


def _returns(edits: _Edits, index: int, node: ast.AST) -> None:
    if not isinstance(node, ast.Return) or node.value is None:
        return
    for kind, convert in _RETURNS.items():
        wrapper = ast.parse(f"(lambda v, t=__import__('torch'): {convert} else {_throw()})(0)", mode="eval").body

        def edit(n, wrapper=wrapper):
            call = copy.deepcopy(wrapper)
            call.args = [n.value]
            n.value = call

        edits.add(index, node, edit, f"return ... as {kind}", "returns", before=f"return {_unparse(node.value)}")


def _in_place(edits: _Edits, index: int, node: ast.AST) -> None:
    """`x * y` where x is a parameter -> x.mul_(y): the same value, and the caller's x changed."""
    if isinstance(node, ast.BinOp) and type(node.op) in _IN_PLACE and isinstance(node.left, ast.Name) and node.left.id in edits.params:
        method = _IN_PLACE[type(node.op)]
        name = node.left.id
        text = f"(lambda v, w, t=__import__('torch'): v.{method}(w) if t.is_tensor(v) and v.is_floating_point() and not v.requires_grad else {_throw()})({name}, 0)"
        call = ast.parse(text, mode="eval").body

        def edit(n, call=call):
            new = copy.deepcopy(call)
            new.args = [n.left, n.right]
            return new

        edits.add(index, node, edit, f"{name}.{method}({_unparse(node.right)})", "in_place")


# ---------------------------------------------------------------------------------------------


def _apply(target: Target, index: int, edit) -> str | None:
    """The definition's source with one edit applied at node `index` of the scope (None: no change)."""
    node = copy.deepcopy(target.node)
    scope = node
    if target.scope is not target.node:  # a method: find it again in the copy
        scope = next(m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == target.scope.name)
    nodes = list(ast.walk(scope))
    victim = nodes[index]
    parents = {id(child): (parent, field) for parent in ast.walk(scope) for field, child in _children(parent)}
    result = edit(victim)
    if result is not None:  # a replacement
        parent, field = parents.get(id(victim), (None, None))
        if parent is None:
            return None
        _replace(parent, field, victim, result)
    ast.fix_missing_locations(node)
    try:
        source = ast.unparse(node)
        compile(source, "<mutant>", "exec")
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return None
    return source


def _children(parent: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    for field, value in ast.iter_fields(parent):
        if isinstance(value, ast.AST):
            yield field, value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, ast.AST):
                    yield field, item


def _replace(parent: ast.AST, field: str, old: ast.AST, new) -> None:
    value = getattr(parent, field)
    if isinstance(value, list):
        at = next(i for i, item in enumerate(value) if item is old)
        replacement = new if isinstance(new, list) else [new]
        if not replacement or (isinstance(old, ast.stmt) and all(isinstance(s, ast.Pass) for s in replacement) and len(value) > 1):
            value[at : at + 1] = [] if len(value) > 1 else [ast.Pass()]
        else:
            value[at : at + 1] = replacement
    else:
        setattr(parent, field, new)


def mutants_of(target: Target) -> list[Mutant]:
    """Every mutant of the target's definition, without duplicates or no-op edits, in source order."""
    original = ast.unparse(target.node)
    edits = _collect(target.scope, target.lines)
    seen, out = {original}, []
    if target.statement:  # the whole statement left out; an `if` or `with` at the top level unwrapped
        node = target.node
        line = node.lineno
        out.append(Mutant(target.name, "remove", line, _short(original), "(removed)", "pass", target.defines))
        if isinstance(node, (ast.If, ast.With)):
            body = "\n".join(ast.unparse(s) for s in node.body)
            out.append(Mutant(target.name, "remove", line, _short(original.split(chr(10))[0]), "(its body, always)", body, target.defines))
        seen |= {m.source for m in out}
    for index, edit, before, after, op, line in edits.found:
        source = _apply(target, index, edit)
        if source is None or source in seen:
            continue
        seen.add(source)
        out.append(Mutant(target.name, op, line, before, after, source, target.defines))
    return out


def raising(target: Target) -> Mutant:
    """A version of the target that raises as soon as it is called (for the cascade matrix)."""
    return _body_swap(target, f"raise RuntimeError('{target.name} is broken on purpose (learn mutants)')", "raises")


# Never returns when a check calls it, directly or through another function (a probe is on the
# stack); the notebook's own cells run it as the solution does. A function that loops forever on the
# checker's inputs only: the grading's own handling of it is what is measured, not how long each of
# the notebook's cells waits for its time limit (grading.py's tests cover a helper that hangs everywhere).
_HANG_WHEN_CHECKED = """import sys as _sys
_frame = _sys._getframe()
while _frame is not None:
    if _frame.f_code.co_filename == '<learn probe>':
        while True:
            pass
    _frame = _frame.f_back"""


def hanging(target: Target) -> Mutant:
    """A version of the target that never returns when the checks call it (for the cascade matrix)."""
    return _body_swap(target, _HANG_WHEN_CHECKED, "hangs", keep=True)


def _body_swap(target: Target, body: str, op: str, keep: bool = False) -> Mutant:
    """The target with its body replaced by `body` (`keep`: put in front of the body, after the docstring)."""
    node = copy.deepcopy(target.node)
    scope = node
    if target.scope is not target.node:
        scope = next(m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == target.scope.name)
    if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise ValueError(f"{target.name} is not a function")
    scope.body = ast.parse(body).body + (scope.body if keep else [])
    source = ast.unparse(node)
    return Mutant(target.name, op, 0, "(the body)", op, source, target.defines)
