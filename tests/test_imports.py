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


def test_the_learn_command_reads_notebooks_without_building_the_iri_grammar():
    """jsonschema imports rfc3987_syntax, which builds a Lark grammar at import (about 1 s); `learn` skips it,
    and nbformat still validates (its schemas use no "format" keyword); a library user's process keeps it."""
    code = (
        "import sys; from grader import cli; cli._skip_slow_imports(); import nbformat; "
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1')]); nbformat.validate(nb); "
        "bad = nbformat.v4.new_notebook(); bad.cells.append({'cell_type': 'nonsense'}); "
        "print(nbformat.validator.isvalid(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code + "\nprint(' '.join(k for k, v in sys.modules.items() if v))"],
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    valid, loaded = out.stdout.splitlines()
    assert valid == "False" and "jsonschema" in loaded.split() and "lark" not in loaded.split()
    assert "lark" in _modules_after("import nbformat") or "rfc3987_syntax" not in _modules_after("import jsonschema")
