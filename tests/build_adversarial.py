"""Build the adversarial corpus in tests/adversarial/ from the lesson-3 solutions.

    python tests/build_adversarial.py

Each case is a folder holding one student's submission (the attacked notebook, plus any other
file the attack needs) and `expected.toml`: the attack in words and the outcome the grader must
produce. Two cases are too big to commit (a 50 MB image output, 10,000 cells); their folders hold
only `expected.toml` with a `generate = "..."` key, and tests/test_adversarial.py builds the
notebook at test time with the same functions as here.

Re-run this after changing the lesson-3 solutions; the committed corpus is what the tests grade.
"""

from __future__ import annotations

import base64
import json
import shutil
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "adversarial"
QUAD = ROOT / "solutions" / "lesson3" / "01_quadratic.ipynb"
QUAD_STUB = ROOT / "exercises" / "lesson3" / "01_quadratic.ipynb"

WRONG_MSE = "def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()"


def load(path: Path = QUAD):
    return nbformat.read(str(path), as_version=4)


def append(*cells: str, base: Path = QUAD):
    nb = load(base)
    nb.cells += [nbformat.v4.new_code_cell(textwrap.dedent(c).strip()) for c in cells]
    return nb


def replace(name: str, code: str, base: Path = QUAD):
    nb = load(base)
    cell = next(c for c in nb.cells if c.cell_type == "code" and f"def {name}(" in c.source)
    cell.source = textwrap.dedent(code).strip()
    return nb


def big_image_notebook():
    """The solution with a 50 MB base64 PNG output already saved in one cell."""
    nb = load()
    payload = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * (37 * 2**20)).decode()
    cell = next(c for c in nb.cells if c.cell_type == "code" and "plt.scatter" in c.source)
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": payload, "text/plain": "<Figure>"})]
    return nb


def many_cells_notebook():
    """The solution followed by 10,000 tiny cells."""
    nb = load()
    nb.cells += [nbformat.v4.new_code_cell(f"_x = {i}") for i in range(10_000)]
    return nb


GENERATORS = {"big_image": big_image_notebook, "many_cells": many_cells_notebook}

# name -> (attack, files {name: notebook | bytes | ("symlink", target)}, expected)
CASES: dict[str, tuple[str, dict, dict]] = {}


def case(name: str, attack: str, files, **expected) -> None:
    CASES[name] = (attack, files, expected)


NB = "01_quadratic.ipynb"

# --- runaway code ----------------------------------------------------------------------------
case(
    "infinite_loop_cell",
    "A cell that never ends (`while True: pass`) after the functions are defined.",
    {NB: append("while True:\n    pass")},
    points="full",
    cell_problem="timeout",
    message="cell time limit",
)
case(
    "infinite_loop_in_function",
    "The graded function itself never returns.",
    {NB: replace("mse", "def mse(preds, acts):\n    while True:\n        pass")},
    points="less",
    check_status={"mse": "timeout", "quad": "passed"},
    message="did not return within",
)
case(
    "memory_bomb",
    "A cell allocating 100 MB blocks in a loop until memory runs out.",
    {NB: append("blocks = []\nwhile True:\n    blocks.append(bytearray(10**8))")},
    points="full",
    cell_problem=["exception", "timeout"],
)  # MemoryError at the address-space limit (or the cell limit on a loaded machine)
case(
    "fork_bomb",
    "A cell forking children in a loop (each child sleeps).",
    {
        NB: append("""
        import os, time
        for _ in range(100000):
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
            except OSError:
                break
        """)
    },
    points="full",
)
case(
    "os_exit_mid_notebook",
    "`os._exit(0)` in the middle of the notebook: the kernel dies.",
    {NB: append("import os\nos._exit(0)")},
    points="zero",
    error_kind="kernel_died",
    message="killed its Python kernel",
)
case(
    "sys_exit_mid_notebook",
    "`sys.exit()` in a cell (IPython turns it into an error; the kernel lives).",
    {NB: append("import sys\nsys.exit()")},
    points="full",
    cell_problem="exception",
    message="SystemExit",
)
case(
    "segfault_ctypes",
    "A segmentation fault through ctypes.",
    {NB: append("import ctypes\nctypes.string_at(0)")},
    points="zero",
    error_kind="kernel_died",
    message="SIGSEGV",
)
case(
    "ten_mb_of_output",
    "10 MB printed by one cell.",
    {NB: append("for i in range(100_000):\n    print('x' * 100)")},
    points="full",
    cell_problem="output_limit",
    message="truncated",
)
case(
    "kernel_never_answers",
    "A cell stops its own kernel (SIGSTOP): it never answers again.",
    {NB: append("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)")},
    points="full",
    cell_problem="timeout",
)
case(
    "ignores_interrupts",
    "A cell that ignores SIGINT and loops forever, so interrupting it fails.",
    {NB: append("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")},
    points="full",
    cell_problem="timeout",
)
case(
    "deep_recursion",
    "The graded function recurses without end.",
    {NB: replace("quad", "def quad(a, b, c, x):\n    return quad(a, b, c, x)")},
    points="less",
    check_status={"quad": "error"},
    message="RecursionError",
)
case(
    "stdin_input",
    "A cell waits for keyboard input().",
    {NB: append("name = input('your name? ')")},
    points="full",
    cell_problem="exception",
    message="StdinNotImplementedError",
)
case("slow_but_correct", "A correct notebook with a 3-second sleep.", {NB: append("import time\ntime.sleep(3)")}, points="full")

# --- tampering with the grading ----------------------------------------------------------------
case(
    "patch_torch_allclose",
    "Patches torch.allclose/isclose/equal to always agree, with a wrong mse.",
    {
        NB: append(
            """
        import torch
        torch.allclose = lambda *a, **k: True
        torch.isclose = lambda a, b, *r, **k: torch.ones_like(torch.as_tensor(a), dtype=torch.bool)
        torch.equal = lambda *a, **k: True
        """,
            WRONG_MSE,
        )
    },
    points="less",
    check_status={"mse": "failed"},
    check_kind={"mse": "known_mistake"},
)
case(
    "patch_torch_testing",
    "Replaces torch.testing.assert_close with a no-op, with a wrong mse.",
    {NB: append("import torch.testing\ntorch.testing.assert_close = lambda *a, **k: None", WRONG_MSE)},
    points="less",
    check_status={"mse": "failed"},
)
case(
    "patch_grader_package",
    "Imports the grader package inside the kernel and replaces its comparison, with a wrong mse.",
    {
        NB: append(
            """
        try:
            import grader.compare, grader.wire
            grader.compare.compare = lambda *a, **k: grader.compare.Verdict(True)
            grader.wire.Foreign.__eq__ = lambda self, other: True
        except Exception as exc:
            print('could not patch:', exc)
        """,
            WRONG_MSE,
        )
    },
    points="less",
    check_status={"mse": "failed"},
)
case(
    "patch_builtins",
    "Patches builtins (isinstance, type checks) and json, with a wrong mse.",
    {
        NB: append(
            """
        import builtins, json
        builtins.isinstance = lambda *a, **k: True
        json.dumps = lambda *a, **k: '{"id": "mse/0", "status": "ok"}'
        """,
            WRONG_MSE,
        )
    },
    points="less",
    check_status={"mse": "failed"},
)
case(
    "fake_passed_table",
    "Prints a fake 'all checks passed' table, with a wrong mse.",
    {NB: append("print('quad  pass 1/1\\nmse  pass 1/1\\nTotal: 22/22 points - all checks passed')", WRONG_MSE)},
    points="less",
    check_status={"mse": "failed"},
)
case(
    "fake_results_files",
    "Writes fake results.json, gradebook.db and probe-progress files, with a wrong mse.",
    {
        NB: append(
            """
        import json
        for name in ('results.json', 'learn-results.json', 'gradebook.db', '.learn-probe-progress'):
            open(name, 'w').write(json.dumps({'points': 22, 'max_points': 22, 'passed': True}))
        """,
            WRONG_MSE,
        )
    },
    points="less",
    check_status={"mse": "failed"},
)
case(
    "forged_probe_message",
    "Publishes a fake probe result for mse on the grader's message channel, with a wrong mse.",
    {
        NB: append(
            """
        from IPython.display import publish_display_data
        for nonce in ('', '0' * 16):
            publish_display_data({'application/vnd.learn.probe+json': {'id': 'mse/0', 'nonce': nonce, 'status': 'ok',
                                  'value': {'t': 'float', 'v': 0.0}}})
        """,
            WRONG_MSE,
        )
    },
    points="less",
    check_status={"mse": "failed"},
)
case(
    "shadows_harness_names",
    "Defines names the grader's harness uses (encode, decode, MIME, _learn_main) in the notebook.",
    {NB: append("encode = decode = None\nMIME = 'text/plain'\n_learn_main = print")},
    points="full",
)
case(
    "reads_solutions",
    "The exercise stubs plus a cell that looks for the reference solutions and hidden checks on disk and execs them.",
    {
        NB: append(
            """
        import glob, os, sys
        found = []
        for pattern in ('/work/*/solutions/*/01_quadratic.ipynb', '/root/**/solutions/lesson3/*.ipynb', '/home/**/solutions/lesson3/*',
                        sys.prefix + '/lib/python3*/site-packages/grader/_content/solutions/lesson3/*', '/**/lesson3/checks.py'):
            found += glob.glob(pattern, recursive=True)
        print('found:', found)
        import json
        for path in found:
            if path.endswith('.ipynb'):
                for cell in json.load(open(path))['cells']:
                    if cell['cell_type'] == 'code':
                        try:
                            exec(''.join(cell['source']))
                        except Exception:
                            pass
        """,
            base=QUAD_STUB,
        )
    },
    points="zero",
    check_kind={"quad": "not_implemented"},
    sandbox="bwrap",
)
case(
    "writes_outside_workdir",
    "Tries to write into the project, /tmp, the home folder and /etc.",
    {
        NB: append("""
        import os
        for path in ('/work/main/PWNED_BY_STUDENT', '/tmp/PWNED_BY_STUDENT', os.path.expanduser('~/../PWNED_BY_STUDENT'),
                     '/etc/PWNED_BY_STUDENT', '/root/PWNED_BY_STUDENT'):
            try:
                open(path, 'w').write('x')
                print('wrote', path)
            except OSError as exc:
                print('refused', path, exc)
        """)
    },
    points="full",
    host_absent=["/work/main/PWNED_BY_STUDENT", "/tmp/PWNED_BY_STUDENT", "/etc/PWNED_BY_STUDENT", "/root/PWNED_BY_STUDENT"],
    sandbox="bwrap",
)
case(
    "network_access",
    "Opens network connections (the internet and the local machine).",
    {
        NB: append("""
        import socket
        for host in (('1.1.1.1', 80), ('127.0.0.1', 22), ('127.0.0.1', 8786)):
            try:
                socket.create_connection(host, timeout=2).close()
                print('connected', host)
            except OSError as exc:
                print('refused', host, exc)
        """)
    },
    points="full",
)

# --- values that try to pass without being right -------------------------------------------------
case(
    "returns_list",
    "quad returns a Python list instead of a tensor.",
    {NB: replace("quad", "def quad(a, b, c, x):\n    r = a * x**2 + b * x + c\n    return r.tolist() if hasattr(r, 'tolist') else r")},
    points="less",
    check_kind={"quad": "wrong_type"},
    message="list",
)
case(
    "returns_numpy",
    "mse returns a numpy array.",
    {NB: replace("mse", "def mse(preds, acts):\n    return ((preds - acts) ** 2).mean().numpy()")},
    points="less",
    check_kind={"mse": "wrong_type"},
    message="numpy",
)
case(
    "returns_python_scalar",
    "mse returns a Python float (.item()).",
    {NB: replace("mse", "def mse(preds, acts):\n    return ((preds - acts) ** 2).mean().item()")},
    points="less",
    check_kind={"mse": "known_mistake"},  # the named mistake `item`
    message="Python number",
)
case(
    "returns_tensor_subclass",
    "mse returns a tensor subclass that claims equality with anything.",
    {
        NB: replace(
            "mse",
            """
        import torch
        class Agreeable(torch.Tensor):
            def __eq__(self, other):
                return True
        def mse(preds, acts):
            return torch.zeros(()).as_subclass(Agreeable)
        """,
        )
    },
    points="less",
    check_kind={"mse": "wrong_type"},
    message="subclass",
)
case(
    "returns_eq_override",
    "mse returns an object whose __eq__ always says True (and whose attributes are all itself).",
    {
        NB: replace(
            "mse",
            """
        class Liar:
            def __eq__(self, other):
                return True
            def __getattr__(self, name):
                return lambda *a, **k: self
        def mse(preds, acts):
            return Liar()
        """,
        )
    },
    points="less",
    check_kind={"mse": "wrong_type"},
    message="Liar",
)
case(
    "returns_nan",
    "mse returns NaN.",
    {NB: replace("mse", "def mse(preds, acts):\n    return ((preds - acts) ** 2).mean() * float('nan')")},
    points="less",
    check_kind={"mse": "nonfinite"},
    message="NaN",
)
case(
    "returns_inf",
    "quad returns infinity for every element.",
    {NB: replace("quad", "def quad(a, b, c, x):\n    return (a * x**2 + b * x + c) * float('inf')")},
    points="less",
    check_kind={"quad": "nonfinite"},
    message="inf",
)
case(
    "wrong_shape",
    "mse returns shape (1,) instead of a 0-d tensor.",
    {NB: replace("mse", "def mse(preds, acts):\n    return ((preds - acts) ** 2).mean().reshape(1)")},
    points="less",
    check_kind={"mse": "shape"},
    message="shape mismatch",
)
case(
    "wrong_dtype",
    "mse returns float64 instead of float32.",
    {NB: replace("mse", "def mse(preds, acts):\n    return ((preds - acts) ** 2).mean().double()")},
    points="less",
    check_kind={"mse": "dtype"},
    message="float64",
)
case(
    "wrong_device",
    "mse returns a tensor on the 'meta' device (no data at all).",
    {NB: replace("mse", "def mse(preds, acts):\n    import torch\n    return torch.empty((), device='meta')")},
    points="less",
    check_kind={"mse": "wrong_type"},
)
case(
    "huge_return_value",
    "quad returns a 200 MB tensor.",
    {NB: replace("quad", "def quad(a, b, c, x):\n    import torch\n    return torch.zeros(50_000_000)")},
    points="less",
    check_status={"quad": "failed"},
    message="too large",
)

# --- notebooks that are not what they seem ------------------------------------------------------
_renamed = load()
for _c in _renamed.cells:
    _c.source = _c.source.replace("def mse(", "def mean_squared(").replace("mse(f(x), y)", "mean_squared(f(x), y)")
case(
    "function_renamed",
    "mse is renamed mean_squared.",
    {NB: _renamed},
    points="less",
    check_kind={"mse": "missing"},
    message="defines `mse`",
)
_missing = load()
_missing.cells = [c for c in _missing.cells if "def mse(" not in c.source]
case(
    "function_missing",
    "The cell defining mse is deleted.",
    {NB: _missing},
    points="less",
    check_kind={"mse": "missing"},
    message="defines `mse`",
)
_markdown = load()
_markdown.cells = [c for c in _markdown.cells if c.cell_type == "markdown"]
case("no_code_cells", "Only the markdown cells are left.", {NB: _markdown}, points="zero", check_kind={"quad": "missing"})
case(
    "invalid_json",
    "The notebook file is cut off half way (invalid JSON).",
    {NB: nbformat.writes(load())[:3000].encode()},
    points="zero",
    error_kind="load",
    message="not valid JSON",
)
case("nbformat_v3", "A correct notebook saved in the old nbformat 3.", {NB: ("v3", load())}, points="full")
case(
    "binary_garbage",
    "Random binary data named 01_quadratic.ipynb.",
    {NB: bytes(range(256)) * 64},
    points="zero",
    error_kind="load",
    message="binary",
)
case(
    "non_utf8",
    "A notebook encoded in Latin-1 (not UTF-8).",
    {NB: nbformat.writes(append("# caf\u00e9 na\u00efve")).encode("latin-1")},
    points="zero",
    error_kind="load",
    message="not UTF-8",
)
_dups = json.loads(nbformat.writes(load()))
for _c in _dups["cells"]:
    _c["id"] = "same-id"  # written as raw JSON: nbformat itself would repair the ids
case("duplicate_cell_ids", "Every cell has the same id.", {NB: json.dumps(_dups, indent=1).encode()}, points="full")
case(
    "symlink_outside",
    "01_quadratic.ipynb is a symbolic link to /etc/passwd.",
    {NB: ("symlink", "/etc/passwd")},
    points="zero",
    error_kind="not_submitted",
    message="symbolic link",
)
case(
    "malicious_pickle",
    "A model.pkl whose unpickling runs a shell command, next to a correct notebook.",
    {NB: load(), "model.pkl": ("pickle", "/tmp/PWNED_BY_PICKLE")},
    points="full",
    host_absent=["/tmp/PWNED_BY_PICKLE"],
)
case("big_image_output", "A correct notebook carrying a 50 MB base64 image output.", {}, generate="big_image", points="full")
case("ten_thousand_cells", "A correct notebook followed by 10,000 tiny cells.", {}, generate="many_cells", points="full")


def _pickle_bomb(marker: str) -> bytes:
    import os
    import pickle

    class Bomb:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Bomb())


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def write_case(name: str, attack: str, files: dict, expected: dict) -> None:
    folder = CORPUS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for filename, content in files.items():
        path = folder / filename
        if isinstance(content, tuple) and content[0] == "symlink":
            path.symlink_to(content[1])
        elif isinstance(content, tuple) and content[0] == "v3":
            path.write_text(nbformat.writes(nbformat.convert(content[1], 3), version=3))
        elif isinstance(content, tuple) and content[0] == "pickle":
            path.write_bytes(_pickle_bomb(content[1]))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            text = nbformat.writes(content)
            path.write_text(text if text.endswith("\n") else text + "\n")
    lines = [f"attack = {_toml(attack)}", f"notebook = {_toml(NB)}"]
    lines += [f"{k} = {_toml(v)}" for k, v in expected.items()]
    (folder / "expected.toml").write_text("\n".join(lines) + "\n")


def describe(expected: dict) -> str:
    """The expected outcome in words, for the README."""
    points = {"full": "full marks for the notebook", "zero": "0 points", "less": "fewer points"}[expected["points"]]
    parts = [points]
    if "error_kind" in expected:
        parts.append(f"notebook error `{expected['error_kind']}`")
    if "cell_problem" in expected:
        kinds = expected["cell_problem"] if isinstance(expected["cell_problem"], list) else [expected["cell_problem"]]
        parts.append("cell problem " + " or ".join(f"`{k}`" for k in kinds))
    for check, status in expected.get("check_status", {}).items():
        parts.append(f"`{check}` {status}")
    for check, kind in expected.get("check_kind", {}).items():
        parts.append(f"`{check}` fails as `{kind}`")
    if "message" in expected:
        parts.append(f'message mentions "{expected["message"]}"')
    if "host_absent" in expected:
        parts.append("nothing written on the host")
    if "sandbox" in expected:
        parts.append("(needs bubblewrap: the rlimit-only fallback does not isolate files)")
    return "; ".join(parts)


README_HEAD = """# The adversarial corpus

Each folder is one student's submission for lesson 3 (the attacked notebook and any file the
attack needs) and `expected.toml`, the outcome the grader must produce. `tests/test_adversarial.py`
grades the whole corpus, plus a control student with the correct notebooks, as **one**
`learn grade` batch, and asserts every outcome below; that the control student gets exactly the
grade it gets when graded alone; that the submissions are byte-for-byte unchanged afterwards; that
nothing was written outside the sandbox; and that the batch finishes cleanly in bounded time.

Regenerate with `python tests/build_adversarial.py` (from the lesson-3 solutions). Two cases are
built at test time because they are too big to commit: `big_image_output` (a 50 MB base64 image
output) and `ten_thousand_cells`.

Students submit only the attacked notebook, so "full marks" refers to that notebook.

| case | attack | expected result |
|---|---|---|
"""


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for old in CORPUS.iterdir():
        if old.is_dir():
            shutil.rmtree(old)
    rows = []
    for name, (attack, files, expected) in CASES.items():
        write_case(name, attack, files, expected)
        rows.append(f"| `{name}` | {attack.replace('|', '/')} | {describe(expected)} |")
    (CORPUS / "README.md").write_text(README_HEAD + "\n".join(rows) + "\n")
    print(f"wrote {len(CASES)} cases to {CORPUS}")


if __name__ == "__main__":
    main()
