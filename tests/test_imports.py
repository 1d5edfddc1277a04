"""The public surface and the import footprint are pinned (as httpx's and click's test suites do)."""

import subprocess
import sys

import grader

EXPORTED = {
    "__version__", "check_notebook", "check_notebooks", "Grader", "NotebookResult", "CheckResult", "CaseResult",
    "CellProblem", "RunResult", "Status", "Diff", "LearnError", "check", "check_all", "hint", "solution",
}  # fmt: skip


def test_exported_members_are_exactly_the_public_api():
    assert set(grader.__all__) == EXPORTED
    for name in grader.__all__:
        assert getattr(grader, name) is not None, name


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    return set(out.stdout.split())


def test_import_grader_is_cheap():
    """`import grader` and the CLI module (for `learn --help`, `learn list`) never import torch."""
    for code in ("import grader", "import grader.cli", "import grader.cache, grader.paths, grader.errors"):
        heavy = {"torch", "numpy", "fastai", "matplotlib", "zmq", "jupyter_client"} & _modules_after(code)
        assert not heavy, f"{code!r} imported {sorted(heavy)}"
