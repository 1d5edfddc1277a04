"""Whatever is on disk either loads as a notebook or gets a clear reason."""

import json

import nbformat
import pytest

from grader.errors import NotebookLoadError
from grader.notebook import definitions, load_notebook, parse_notebook


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON (line 1"),
        (b"\x00\x01\x02garbage", "binary"),
        ("caf\xe9".encode("latin-1") + b' {"cells": []}', "not UTF-8"),
        (b'{"hello": 1}', "not a Jupyter notebook"),
        (b'{"cells": [], "nbformat": 9}', "unsupported nbformat version 9"),
        (b"[1, 2, 3]", "not a Jupyter notebook"),
    ],
)
def test_bad_files_get_a_specific_reason(tmp_path, raw, words):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(raw)
    with pytest.raises(NotebookLoadError) as err:
        load_notebook(path)
    assert words in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_and_symlink(tmp_path):
    with pytest.raises(NotebookLoadError, match="no such file"):
        load_notebook(tmp_path / "nope.ipynb")
    target = tmp_path / "real.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), str(target))
    (tmp_path / "link.ipynb").symlink_to(target)
    with pytest.raises(NotebookLoadError, match="symbolic link"):
        load_notebook(tmp_path / "link.ipynb")


def test_nbformat3_is_upgraded():
    v3 = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {},
        "worksheets": [{"cells": [{"cell_type": "code", "input": "def f(x):\n    return x", "outputs": [], "language": "python"}]}],
    }
    nb = parse_notebook(json.dumps(v3).encode())
    assert nb.nbformat == 4
    assert nb.cells[0].source.startswith("def f")


def test_duplicate_ids_are_renumbered_and_outputs_dropped():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a = 1"), nbformat.v4.new_code_cell("b = 2")])
    nb.cells[1]["id"] = nb.cells[0]["id"]
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "A" * 1000})]
    loaded = parse_notebook(nbformat.writes(nb).encode())
    assert loaded.cells[0]["id"] != loaded.cells[1]["id"]
    assert loaded.cells[0].outputs == []


def test_definitions_ignore_magics_and_syntax_errors():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%timeit x\nimport torch\ndef quad(a):\n    return a"),
            nbformat.v4.new_code_cell("def broken(:"),
            nbformat.v4.new_code_cell("x, y = 1, 2\nclass Opt: pass"),
        ]
    )
    defs = definitions(nb)
    assert defs["quad"] == 0 and defs["torch"] == 0 and defs["x"] == 2 and defs["Opt"] == 2
    assert "broken" not in defs
