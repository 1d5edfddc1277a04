"""Feedback that reads top-down: the learner's frames only, classic exceptions named, cell problems under
the function they broke, and the same order in the terminal and the HTML report (grader.feedback,
grader.tracebacks, grader.explain). Results are built by hand: no kernel runs here."""

from __future__ import annotations

import io
import types

import nbformat
import pytest
from rich.console import Console

from grader import explain
from grader.feedback import check_view, notebook_view, raised_case
from grader.html import render_report
from grader.report import render_run
from grader.results import CaseResult, CellProblem, CheckResult, Diff, NotebookResult, RunResult, Status
from grader.tracebacks import fold, scrub_paths

SITE = "/home/me/.venv/lib/python3.11/site-packages"
IPYTHON_TB = [
    "RuntimeError                              Traceback (most recent call last)",
    "cell 14, line 2",
    "----> 2 calc_grad(xb, yb, linear1)",
    "cell 11, line 4, in calc_grad(xb, yb, model)",
    "      3 loss.backward()",
    "----> 4 loss.backward()",
    f"File {SITE}/torch/_tensor.py:623, in Tensor.backward(self, gradient, retain_graph, create_graph, inputs)",
    "--> 623 torch.autograd.backward(",
    f"File {SITE}/torch/autograd/__init__.py:395, in backward(tensors, grad_tensors)",
    "--> 395 _engine_run_backward(",
    f"File {SITE}/torch/autograd/graph.py:1072, in _engine_run_backward(t_outputs, *args, **kwargs)",
    "-> 1072     return Variable._execution_engine.run_backward(",
    "RuntimeError: Trying to backward through the graph a second time (or directly access saved tensors after they have already been freed).",
]
PROBE_TB = [
    "cell 11, line 4, in calc_grad",
    "    loss.backward()",
    f"{SITE}/torch/_tensor.py, line 626, in backward",
    "    torch.autograd.backward(",
    f"{SITE}/torch/autograd/__init__.py, line 347, in backward",
    "    _engine_run_backward(",
    "RuntimeError: Trying to backward through the graph a second time",
]


# ---------------------------------------------------------------------------------------------
# tracebacks: the learner's frames only


@pytest.mark.parametrize("lines", [IPYTHON_TB, PROBE_TB], ids=["ipython", "probe"])
def test_library_frames_fold_to_one_line_and_no_path_is_shown(lines):
    folded = fold(lines)
    assert "… 2 frames inside torch" in folded or "… 3 frames inside torch" in folded
    assert not any("site-packages" in line or "_engine_run_backward" in line for line in folded)
    assert any("cell 11, line 4, in calc_grad" in line for line in folded)
    assert any("loss.backward()" in line for line in folded)  # the learner's own line stays
    assert folded[-1].startswith("RuntimeError: Trying to backward")
    assert fold(folded) == folded  # idempotent: stored results are folded again when shown


def test_stdlib_and_helper_files_fold_too_and_paths_are_scrubbed():
    lines = ["cell 3, line 1, in f", "    g()", "/usr/lib/python3.11/functools.py, line 9, in wrapper", "    x",
             "/work/lesson/mnist_data.py, line 2, in load", "    y", f"ValueError: bad file {SITE}/numpy/x.py"]  # fmt: skip
    assert fold(lines)[2:] == ["… 2 frames inside Python's standard library, mnist_data.py", "ValueError: bad file numpy/x.py"]
    assert scrub_paths(f"see {SITE}/torch/nn/modules/module.py") == "see torch/nn/modules/module.py"


# ---------------------------------------------------------------------------------------------
# classic exceptions, named


def _ctx(cells=(), problems=None, defs=None):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    return types.SimpleNamespace(nb=nb, problems=problems or {}, defs=defs or {}, path=types.SimpleNamespace(name="02_relu.ipynb"))


NAMED = [
    ("sigmoid", "TypeError", "must be real number, not Tensor", "    return 1 / (1 + math.exp(-x))", "python_on_tensor", "math.exp"),
    ("rectified_linear", "RuntimeError", "Boolean value of Tensor with more than one value is ambiguous", "    return max(0, m * x + b)",
     "ambiguous_bool", "max and min"),
    ("mse", "RuntimeError", "a Tensor with 3 elements cannot be converted to Scalar", "    return float(((p - a) ** 2).mean(0))",
     "python_on_tensor", "float"),
    ("fit_quad", "RuntimeError", "a leaf Variable that requires grad is being used in an in-place operation.", "    params -= lr * params.grad",
     "no_grad_update", "torch.no_grad()"),
    ("fit_quad", "TypeError", "unsupported operand type(s) for *: 'float' and 'NoneType'", "    params = params - lr * params.grad",
     "grad_none", "leaf"),
    ("fit_quad", "AttributeError", "'float' object has no attribute 'backward'", "    loss.backward()", "item_not_tensor", ".item()"),
    ("linear", "RuntimeError", "mat1 and mat2 shapes cannot be multiplied (3x2 and 5x3)", "    return w @ x + b", "matmul_order",
     "inner sizes, 2 and 5"),
    ("calc_grad", "RuntimeError", "Trying to backward through the graph a second time", "    loss.backward()", "backward_twice",
     "once per loss"),
]  # fmt: skip


@pytest.mark.parametrize("name, ename, evalue, code, kind, words", NAMED, ids=[f"{n[4]}-{n[0]}" for n in NAMED])
def test_classic_exceptions_are_named_in_the_learners_terms(name, ename, evalue, code, kind, words):
    tb = [f"cell 7, line 2, in {name}", code, f"{ename}: {evalue}"]
    got = explain.exception(name, ename, evalue, tb, _ctx())
    assert got is not None and got[0] == kind, got
    assert words in got[1] and "cell 7, line 2" in got[1] and f"`{name}`" in got[1]
    assert f"{ename}: {evalue}" in got[1]  # Python's own line still follows


def test_an_unknown_exception_keeps_pythons_message():
    assert explain.exception("mse", "ZeroDivisionError", "division by zero", ["cell 3, line 1, in mse", "    1 / 0"], _ctx()) is None


def test_a_syntax_error_is_called_one_with_its_cell_and_line():
    problem = CellProblem(5, Status.ERROR, "exception", ename="SyntaxError", evalue="'(' was never closed (3070337577.py, line 3)",
                          traceback=["  cell 5, line 3", "    return torch.clip(y, min=0.0", "                     ^",
                                     "SyntaxError: '(' was never closed"])  # fmt: skip
    ctx = _ctx(["import torch", "x = 1", "y = 2", "z = 3",
                "def rectified_linear(m, b, x):\n    y = m * x + b\n    return torch.clip(y, min=0.0"], {5: problem})  # fmt: skip
    message = explain.missing(["rectified_linear"], ctx)
    assert message.startswith("cell 5, which defines `rectified_linear`, has a syntax error at line 3 ('(' was never closed)"), message
    assert explain.cell_problem(problem) == "syntax error at line 3: '(' was never closed"
    assert "3070337577" not in message


def test_an_unknown_name_says_which_cell_should_define_it():
    failed = CellProblem(4, Status.ERROR, "exception", ename="ValueError", evalue="bad data")
    ctx = _ctx(["import torch", "x = 1", "y = 2", "mean3 = load()"], {4: failed}, defs={"x": 1, "y": 2})
    got = explain.exception("is_3", "NameError", "name 'mean3' is not defined", ["cell 9, line 2, in is_3", "    return d(x, mean3)"], ctx)
    assert got[0] == "unknown_name" and "cell 4, which defines it, failed (ValueError: bad data)" in got[1]
    typo = explain.exception("mse", "NameError", "name 'torhc' is not defined", ["cell 9, line 2, in mse", "    torhc.ones(1)"], ctx)
    assert "no cell of the notebook defines anything called `torhc`" in typo[1] and "Did you mean `torch`?" in typo[1]
    assert "defines nothing called `mse`" in explain.missing(["mse"], _ctx(["def mse(p, a):\n    pass\ndel mse"]))
    renamed = explain.missing(["mse"], _ctx(["def mse2(p, a):\n    pass"], defs={"mse2": 0}))
    assert "Did you rename it? The notebook defines `mse2`" in renamed


@pytest.mark.parametrize("source", [
    "def mse(p, a):\n    pass", "class mse:\n    pass", "mse = lambda p, a: 0", "mse: object = None", "a, mse = 1, 2",
    "import torch as mse", "import os, mse", "from losses import mae, mse", "from losses import (\n    mse,\n)", "for i, mse in []:\n    pass",
])  # fmt: skip
def test_every_way_of_defining_a_name_is_found(source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell(source)])
    assert explain.defining_cells(nb, "mse") == [2]


@pytest.mark.parametrize("source", ["mse(1, 2)", "y = mse", "mse == 3", "msex = 1", "import mse.sub", "print('mse = 1')"])
def test_using_a_name_is_not_defining_it(source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    assert explain.defining_cells(nb, "mse") == []


def test_a_cells_unknown_name_names_the_cell_that_should_define_it():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [
        "import torch", "def mse(p, a):\n    return ((p - a) ** 2).mean(", "mse(torch.ones(2), torch.zeros(2))", "loss = quad_mse(1)",
        "def quad_mse(p):\n    return 0", "torhc.ones(3)", "del mse", "mse(1, 2)"]])  # fmt: skip
    syntax = CellProblem(2, Status.ERROR, "exception", ename="SyntaxError", evalue="'(' was never closed (123.py, line 2)")
    unknown = {c: CellProblem(c, Status.ERROR, "exception", ename="NameError", evalue=f"name '{n}' is not defined")
               for c, n in ((3, "mse"), (4, "quad_mse"), (6, "torhc"), (8, "mse"))}  # fmt: skip
    problems = {2: syntax, **unknown}
    for cell, problem in unknown.items():
        problem.note = explain.unknown_name_note(nb, cell, problem.evalue.split("'")[1], problems, {"mse", "quad_mse"})
    lines = {cell: explain.cell_problem(p) for cell, p in unknown.items()}
    assert lines[3] == ("NameError: nothing called `mse` exists when this cell runs: cell 2, which defines it, has a syntax error "
                        "at line 2 ('(' was never closed), so none of it ran.")  # fmt: skip
    assert "only cell 5, further down, defines it - move that cell above this one" in lines[4]
    assert lines[6] == "NameError: nothing called `torhc` exists when this cell runs: no cell defines it - did you mean `torch`?"
    assert "cell 2, which defines it, has a syntax error" in lines[8]  # the nearest earlier definition that failed


# ---------------------------------------------------------------------------------------------
# the views: top-down, the same case's diff and traceback, problems under their function


def _chapter4() -> NotebookResult:
    calc = CheckResult("calc_grad", Status.ERROR, 0, 1, kind="backward_twice", traceback=PROBE_TB, hint="Three steps: ...",
                       message="`calc_grad` runs backward() a second time through the same computation (cell 11, line 4).",
                       cases=[CaseResult("a batch of 4", Status.ERROR, kind="backward_twice", call="calc_grad(xb, yb, model)",
                                         message="`calc_grad` runs backward() a second time through the same computation (cell 11, line 4)."),
                              CaseResult("a batch of 10", Status.ERROR, kind="backward_twice", call="calc_grad(xb, yb, model)",
                                         message="`calc_grad` runs backward() a second time through the same computation (cell 11, line 4).")])  # fmt: skip
    dist = CheckResult("mnist_distance", Status.PASSED, 1, 1, cases=[CaseResult("one image", Status.PASSED)])
    matmul = CheckResult("matmul_loops", Status.FAILED, 0, 1, kind="values", hint="Loop over the rows i of a ...", cases=[
        CaseResult("2x2 example", Status.FAILED, call="matmul_loops(...)", diff=Diff("values", expected="[[19, 22], [43, 50]]",
                   got="[[5, 6], [7, 8]]", mismatched=4, total=4), message="values differ: 4 of 4 elements (100.0%) mismatch"),
        CaseResult("square matrices", Status.ERROR, kind="exception", message="`matmul_loops` raised IndexError: index 3 is out of bounds"),
    ], traceback=["cell 20, line 5, in matmul_loops", "    c[i, j] += a[i, k] * b[k, j]", "IndexError: index 3 is out of bounds"])  # fmt: skip
    uses = CellProblem(14, Status.ERROR, "exception", ename="RuntimeError", evalue="Trying to backward through the graph a second time",
                       traceback=IPYTHON_TB, source="calc_grad(xb, yb, linear1)")  # fmt: skip
    other = CellProblem(
        30, Status.ERROR, "exception", ename="ValueError", evalue="unrelated", traceback=["cell 30, line 1", "ValueError: unrelated"]
    )
    return NotebookResult(path="/w/chapter4/04_mnist_basics.ipynb", exercise="04_mnist_basics.ipynb", lesson="chapter4",
                          status=Status.FAILED, checks=[dist, calc, matmul], cell_problems=[uses, other], points=1, max_points=3)  # fmt: skip


def test_cell_problems_sit_under_the_function_they_broke():
    view = notebook_view(_chapter4())
    by_name = {v.check.name: v for v in view.checks}
    assert [p.cell for p in by_name["calc_grad"].problems] == [14]  # its traceback passes through calc_grad
    assert [p.cell for p in view.other_problems] == [30]


def test_the_diff_and_the_traceback_shown_together_come_from_one_case():
    view = check_view(_chapter4().checks[2])
    assert view.focus.label == "2x2 example" and view.focus.diff is not None
    assert view.raised.label == "square matrices" and view.raised is raised_case(view.check)
    html = render_report(RunResult([_chapter4()], seed=1))
    section = html.split('id="check-matmul_loops"')[1].split("</details>")[0]
    assert "square matrices" in section.split("Where it happened")[1][:200]  # the traceback names its own case
    assert "[[19, 22], [43, 50]]" in section  # small tensors by value


def test_every_verdict_says_something_specific():
    single = CheckResult(
        "fit_relus",
        Status.FAILED,
        0,
        2,
        kind="values",
        cases=[
            CaseResult(
                "a V-shaped target",
                Status.FAILED,
                message="final loss 0.31 is well above what the reference reaches on the same data (0.01)",
            )
        ],
    )
    assert check_view(single).verdict == "final loss 0.31 is well above what the reference reaches on the same data (0.01)."
    bare = CheckResult("linear", Status.FAILED, 0, 1, kind="values", cases=[CaseResult("one", Status.FAILED, message="values differ: 1 of 1",
                       diff=Diff("values", expected="[0.25]", got="[2.25]"))])  # fmt: skip
    assert check_view(bare).verdict == "It returns [2.25] where [0.25] was expected."


def test_the_html_report_reads_top_down():
    html = render_report(RunResult([_chapter4()], seed=1))
    functions, problems = html.index("Graded functions"), html.index("Other problems while running the notebook")
    assert functions < problems and html.index("Where it happened") > functions
    assert html.index("cell 30") > problems  # the unrelated problem comes after the functions, folded
    assert "site-packages" not in html and "_engine_run_backward" not in html
    assert "… 3 frames inside torch" in html or "… 2 frames inside torch" in html
    calc = html.split('id="check-calc_grad"')[1].split('id="check-matmul_loops"')[0]
    assert "Cell 14" in calc  # the cell it broke, under it
    assert calc.index("runs backward() a second time") < calc.index("Where it happened") < calc.index("Cell 14")


def test_the_terminal_reads_top_down_with_the_learners_frames_only():
    out = io.StringIO()
    render_run(RunResult([_chapter4()], seed=1), Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "site-packages" not in text and "_engine_run_backward" not in text
    assert text.index("✘ calc_grad") < text.index("cell 14: RuntimeError") < text.index("other problems") < text.index("cell 30")
    assert "frames inside torch" in text and "loss.backward()" in text
    assert "expected [[19, 22], [43, 50]], got [[5, 6], [7, 8]]" in text


def test_an_error_inside_a_helper_names_the_helper_and_sends_the_learner_there():
    tb = ["cell 60, line 5, in train_epoch", "    calc_grad(xb, yb, model)", "cell 42, line 4, in sigmoid",
          "    return 1 / (1 + math.exp(-x))", "ValueError: only one element tensors can be converted to Python scalars"]  # fmt: skip
    kind, message = explain.exception("train_epoch", "ValueError", tb[-1].split(": ", 1)[1], tb, _ctx())
    assert kind == "python_on_tensor" and message.startswith("`sigmoid` (`train_epoch` calls it) hands a whole tensor")
    check = CheckResult("train_epoch", Status.ERROR, 0, 3, kind=kind, traceback=tb, hint="One epoch is one pass ...",
                        cases=[CaseResult("ten batches", Status.ERROR, kind=kind, message=message)])  # fmt: skip
    view = check_view(check)
    assert view.hint is None and view.next_step.startswith("Fix `sigmoid` first")  # not a hint about train_epoch


def test_cells_failing_the_same_way_are_shown_once():
    same = [CellProblem(n, Status.ERROR, "exception", ename="ValueError", evalue="only one element tensors",
                        traceback=[f"cell {n}, line 1", "    sigmoid(x)", "cell 42, line 4, in sigmoid", "    math.exp(-x)",
                                   "ValueError: only one element tensors"]) for n in (43, 54, 64)]  # fmt: skip
    nb = _chapter4()
    nb.checks.append(CheckResult("sigmoid", Status.ERROR, 0, 1, kind="python_on_tensor", message="`sigmoid` hands ... (cell 42, line 4)",
                                 cases=[CaseResult("a", Status.ERROR, kind="python_on_tensor", message="m")]))  # fmt: skip
    nb.cell_problems += same
    view = {v.check.name: v for v in notebook_view(nb).checks}["sigmoid"]
    assert [p.cell for p in view.problems] == [43] and view.same_as == {43: [54, 64]}
    assert "Cells 54, 64 fail the same way." in render_report(RunResult([nb], seed=1))


def test_ipython_context_lines_are_cut_to_the_line_that_raised():
    folded = fold(IPYTHON_TB)
    assert folded[:4] == ["cell 14, line 2", "    calc_grad(xb, yb, linear1)", "cell 11, line 4, in calc_grad(xb, yb, model)",
                          "    loss.backward()"]  # fmt: skip
