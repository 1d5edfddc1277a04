"""Read notebooks defensively, and find where names are defined in them.

Whatever is on disk - invalid JSON, binary garbage, a non-UTF-8 file, nbformat 3, duplicate cell
ids, 50 MB of image outputs - either becomes a valid nbformat-4 notebook or a NotebookLoadError
that says what is wrong, in words a learner can act on. The learner's file is never modified.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .errors import NotebookLoadError

__all__ = ["load_notebook", "parse_notebook", "definitions", "code_cells", "python_only", "MAX_NOTEBOOK_BYTES", "MAX_CELLS"]

MAX_NOTEBOOK_BYTES = 200 * 2**20
MAX_CELLS = 20_000
_MAGIC = re.compile(r"^\s*[%!?]|^\s*\w+\s*=\s*!")


def load_notebook(path: str | Path) -> NotebookNode:
    path = Path(path)
    if path.is_symlink():
        raise NotebookLoadError(path, "is a symbolic link; submit the notebook file itself")
    if not path.exists():
        raise NotebookLoadError(path, "no such file")
    if not path.is_file():
        raise NotebookLoadError(path, "is not a regular file")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookLoadError(path, f"is {size / 2**20:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NotebookLoadError(path, f"cannot be read: {exc.strerror or exc}") from None
    return parse_notebook(raw, path)


def parse_notebook(raw: bytes, path: str | Path = "<notebook>") -> NotebookNode:
    """Bytes -> validated nbformat-4 notebook with outputs stripped, or NotebookLoadError."""
    if not raw.strip():
        raise NotebookLoadError(path, "is empty (0 bytes of JSON)")
    if b"\x00" in raw[:4096]:
        raise NotebookLoadError(path, "is a binary file, not a Jupyter notebook (.ipynb is JSON text)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotebookLoadError(path, f"is not UTF-8 text (bad byte at offset {exc.start}); re-save it from Jupyter") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookLoadError(
            path, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); was it saved completely?"
        ) from None
    except RecursionError:
        raise NotebookLoadError(path, "is not a notebook: its JSON is nested too deeply") from None
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise NotebookLoadError(path, "is JSON but not a Jupyter notebook (no 'cells')")
    major = data.get("nbformat")
    if not isinstance(major, int) or major < 3 or major > 4:
        raise NotebookLoadError(path, f"has unsupported nbformat version {major!r} (3 or 4 expected)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate ids etc. are repaired below
            nb = nbformat.reads(text, as_version=4, capture_validation_error={})
    except Exception as exc:  # nbformat raises assorted types on malformed structure
        raise NotebookLoadError(path, f"is not a valid notebook: {_short(exc)}") from None
    if not isinstance(nb.get("cells"), list):
        raise NotebookLoadError(path, "is not a valid notebook: 'cells' is not a list")
    if len(nb.cells) > MAX_CELLS:
        raise NotebookLoadError(path, f"has {len(nb.cells)} cells, over the {MAX_CELLS} limit")
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotebookLoadError(path, f"cell {i + 1} is not a valid cell")
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(s) for s in source)
        if not isinstance(source, str):
            raise NotebookLoadError(path, f"cell {i + 1} has a source that is not text")
        cell["source"] = source
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None  # never carry outputs into grading
        cid = cell.get("id")
        if not isinstance(cid, str) or not cid or cid in seen:  # duplicate or missing ids: renumber
            cell["id"] = f"cell-{i + 1}"
        seen.add(cell["id"])
    return nb


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def code_cells(nb: NotebookNode) -> list[tuple[int, str]]:
    return [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def python_only(source: str) -> str:
    """Blank out IPython magics and shell escapes so `ast` can parse the rest."""
    return "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())


def definitions(nb: NotebookNode) -> dict[str, int]:
    """Top-level names (functions, classes, assignments) -> index of the last cell defining them."""
    found: dict[str, int] = {}
    for index, source in code_cells(nb):
        try:
            tree = ast.parse(python_only(source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    names += [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"]
            for name in names:
                found[name] = index
    return found


def calls(nb: NotebookNode, names: set[str]) -> dict[str, set[str]]:
    """For each function in `names` defined at the top level of `nb`: the other `names` its body
    refers to (a call, or a reference such as `partial(quad, ...)`)."""
    found: dict[str, set[str]] = {}
    for _, source in code_cells(nb):
        try:
            tree = ast.parse(python_only(source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names:
                used = {n.id for part in node.body for n in ast.walk(part) if isinstance(n, ast.Name)}
                found[node.name] = (used & names) - {node.name}
    return found
