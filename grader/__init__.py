"""learn: auto-graded exercises and quizzes for fast.ai lesson 3 and fastbook chapter 4.

Public API (the CLI is a thin layer over it):

    from grader import check_notebook
    result = check_notebook("01_quadratic.ipynb")      # -> NotebookResult
    result.points, result.max_points, result.checks     # per-function results
    result.to_dict()                                    # JSON-safe, versioned

    from grader import check, hint, solution, check_all  # inside your own notebook:
    check("quad"); hint("quad"); solution("quad", confirm=True); check_all()

Names are imported lazily so `import grader` stays cheap (no torch) for commands that do not
grade anything.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "check_notebook",
    "check_notebooks",
    "Grader",
    "NotebookResult",
    "CheckResult",
    "CaseResult",
    "CellProblem",
    "RunResult",
    "Status",
    "Diff",
    "LearnError",
    "check",
    "check_all",
    "hint",
    "solution",
]

_LAZY = {
    "check_notebook": "grading",
    "check_notebooks": "grading",
    "Grader": "grading",
    "NotebookResult": "results",
    "CheckResult": "results",
    "CaseResult": "results",
    "CellProblem": "results",
    "RunResult": "results",
    "Status": "results",
    "Diff": "results",
    "LearnError": "errors",
    "check": "inline",  # in-notebook: check("quad") against the reference (learn check is the grade)
    "check_all": "inline",
    "hint": "inline",
    "solution": "inline",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'grader' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"grader.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
