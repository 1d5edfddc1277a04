"""`learn grade` vs `nbgrader autograde` on the same nbgrader-format class, in one run.

    build  course/source/ps3/ (lesson-3 style: mse, a quadratic, gradient steps; visible and
           hidden tests, a written answer) ─► nbgrader generate_assignment ─► release/ps3
           N students from the release: correct, one wrong function, one left as the stub,
           raising, slow (time.sleep) ─► submitted/<student>/ps3/
    time   (a) nbgrader autograde ps3          (nbgrader in its own venv in the temp dir:
                                                `uv venv` + `uv pip install nbgrader`)
           (b) learn assign course/source/ps3, then learn grade -j JOBS of the same notebooks
    print  both times, the ratio (goal >= 12x), and the agreement: per test cell and per student

    python bench/vs_nbgrader.py [N] [--jobs 2] [--keep DIR]

Needs `uv` on PATH and PyPI (the nbgrader install). CPU heavy: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

KINDS = ["correct", "wrong", "stub", "raises", "slow"]


def meta(grade_id: str, **flags) -> dict:
    base = {"grade_id": grade_id, "schema_version": 3, "locked": False, "solution": False, "grade": False}
    return {"nbgrader": {**base, **flags}}


SOLUTIONS = {
    "mse": "def mse(preds, targets):\n    ### BEGIN SOLUTION\n    return float(((preds - targets) ** 2).mean())\n    ### END SOLUTION",
    "quad": "def quad(a, b, c, x):\n    ### BEGIN SOLUTION\n    return a * x**2 + b * x + c\n    ### END SOLUTION",
    "step": "def step(params, grads, lr):\n    ### BEGIN SOLUTION\n    return params - lr * grads\n    ### END SOLUTION",
}
TESTS = {
    "mse": "assert mse(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0\nassert abs(mse(np.zeros(2), np.array([3.0, 4.0])) - 12.5) < 1e-9\n"
    "### BEGIN HIDDEN TESTS\nassert abs(mse(np.ones(8) * 0.5, np.ones(8) * 1.5) - 1.0) < 1e-9\n### END HIDDEN TESTS",
    "quad": "assert quad(1, 0, 0, 3) == 9\nassert quad(2, -1, 4, 0) == 4\n### BEGIN HIDDEN TESTS\nassert quad(3, 2, 1, -2) == 9\n### END HIDDEN TESTS",
    "step": "assert np.allclose(step(np.array([1.0, 2.0]), np.array([0.5, -0.5]), 0.1), [0.95, 2.05])",
    "fit": "params = np.array([0.0, 0.0, 0.0])\nxs = np.linspace(-2, 2, 20)\nys = quad(1.0, 0.5, -1.0, xs)\n"
    "for _ in range(300):\n    preds = quad(*params, xs)\n    g = np.array([((preds - ys) * 2 * xs**2).mean(), ((preds - ys) * 2 * xs).mean(), ((preds - ys) * 2).mean()])\n"
    "    params = step(params, g, 0.05)\nassert mse(quad(*params, xs), ys) < 0.05",
    "shapes": "assert mse(np.ones((3, 4)), np.zeros((3, 4))) == 1.0\nassert quad(0, 0, 5, np.zeros(3)).shape == (3,)",
}
WRONG = {"mse": "def mse(preds, targets):\n    return float(((preds - targets) ** 2).sum())"}
POINTS = {"mse": 2, "quad": 1, "step": 1, "fit": 2, "shapes": 1}


def source_notebook():
    c = nbformat.v4
    cells = [c.new_markdown_cell("# Lesson 3: fitting a quadratic\n\nLosses, a model, and a gradient step."),
             c.new_code_cell("import numpy as np", metadata=meta("imports", locked=True))]  # fmt: skip
    for name in ("mse", "quad", "step"):
        cells += [c.new_markdown_cell(f"## `{name}`"), c.new_code_cell(SOLUTIONS[name], metadata=meta(name, solution=True)),
                  c.new_code_cell(TESTS[name], metadata=meta(f"test_{name}", grade=True, locked=True, points=POINTS[name]))]  # fmt: skip
    for name in ("fit", "shapes"):
        cells.append(c.new_code_cell(TESTS[name], metadata=meta(f"test_{name}", grade=True, locked=True, points=POINTS[name])))
    cells += [c.new_markdown_cell("## Why square the errors? (1 point)"),
              c.new_markdown_cell("Big misses then cost much more than small ones.", metadata=meta("why", solution=True, grade=True, points=1))]  # fmt: skip
    nb = c.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    return nb


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if "nbgrader-venv" in cmd[0]:  # nbgrader runs `alembic` and its kernel from its own venv
        kw.setdefault("env", dict(os.environ, PATH=f"{Path(cmd[0]).parent}{os.pathsep}{os.environ['PATH']}"))
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def install_nbgrader(venv: Path) -> Path:
    if (venv / "bin" / "nbgrader").exists():  # --keep: installed by an earlier run
        return venv / "bin"
    run(["uv", "venv", "-q", "--python", sys.executable, str(venv)])
    run(["uv", "pip", "install", "-q", "nbgrader", "numpy"], env=dict(os.environ, VIRTUAL_ENV=str(venv)))
    return venv / "bin"


def student_notebook(released: Path, kind: str, i: int):
    nb = nbformat.read(str(released), as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in SOLUTIONS:
            body = [line for line in SOLUTIONS[gid].splitlines() if "###" not in line]
            if kind == "wrong" and gid in WRONG:
                body = WRONG[gid].splitlines()
            if kind == "stub" and gid == ("quad", "step")[i % 2]:
                continue  # left as released: raise NotImplementedError()
            if kind == "raises" and gid == "step":
                body = ["def step(params, grads, lr):", "    raise ValueError('not today')"]
            cell.source = "\n".join(body)
        if gid == "why":
            cell.source = f"Student {i}: squaring punishes the big misses."
    if kind == "slow":
        nb.cells.insert(2, nbformat.v4.new_code_cell("import time\ntime.sleep(1)"))
    return nb


def build(work: Path, n: int, nbg: Path) -> dict[str, str]:
    course = work / "course"
    (course / "source" / "ps3").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "bench"\n')
    nbformat.write(source_notebook(), str(course / "source" / "ps3" / "fit.ipynb"))
    run([str(nbg / "nbgrader"), "generate_assignment", "ps3", "--force"], cwd=course)
    kinds = {}
    for i in range(n):
        kind = KINDS[i % len(KINDS)] if i else "correct"
        student = f"s{i:02d}_{kind}"
        kinds[student] = kind
        nb = student_notebook(course / "release" / "ps3" / "fit.ipynb", kind, i)
        for folder in (course / "submitted" / student / "ps3", work / "learn-subs" / student):
            folder.mkdir(parents=True)
            nbformat.write(nb, str(folder / "fit.ipynb"))
        (course / "submitted" / student / "ps3" / "timestamp.txt").write_text("2026-01-01 00:00:00.000000 UTC")
    return kinds


NBGRADER_SCORES = """
import json, sys
from nbgrader.api import Gradebook
out = {}
with Gradebook("sqlite:///gradebook.db") as gb:
    for student in gb.students:
        sub = gb.find_submission("ps3", student.id)
        out[student.id] = {g.name: g.score for nb in sub.notebooks for g in nb.grades if g.auto_score is not None}
json.dump(out, sys.stdout)
"""


def learn_scores(gradebook: Path) -> dict[str, dict[str, float]]:
    from grader.gradebook import Gradebook

    with Gradebook(gradebook, create=False) as gb:
        return {r.student: {c.name: c.points for c in r.checks} for r in gb.submissions()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=20, help="number of students")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    learn = shutil.which("learn") or str(Path(sys.executable).parent / "learn")
    with tempfile.TemporaryDirectory(prefix="learn-vs-nbgrader-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for old in ("course", "learn-subs", "assignment", "gb.db"):  # --keep: start the class afresh
            shutil.rmtree(work / old, ignore_errors=True) if (work / old).is_dir() else (work / old).unlink(missing_ok=True)
        started = time.perf_counter()
        nbg = install_nbgrader(work / "nbgrader-venv")
        version = run([str(nbg / "python"), "-c", "import nbgrader; print(nbgrader.__version__)"]).stdout.strip()
        print(f"nbgrader {version} installed in {time.perf_counter() - started:.0f}s")
        kinds = build(work, args.n, nbg)
        mix = {k: list(kinds.values()).count(k) for k in KINDS}
        print(
            f"class: {args.n} students x 1 notebook, {len(POINTS)} test cells ({sum(POINTS.values())} points) + 1 written answer; mix {mix}"
        )

        started = time.perf_counter()
        run([str(nbg / "nbgrader"), "autograde", "ps3", "--force"], cwd=work / "course")
        nbgrader_s = time.perf_counter() - started
        print(f"nbgrader autograde (serial): {nbgrader_s:7.1f}s")

        run([learn, "assign", str(work / "course" / "source" / "ps3"), "--out", str(work / "assignment")])
        env = dict(os.environ, LEARN_CACHE_DIR=str(work / "learn-cache"))
        started = time.perf_counter()
        run([learn, "grade", str(work / "learn-subs"), "--assignment", str(work / "assignment"), "--gradebook", str(work / "gb.db"),
             "-j", str(args.jobs)], env=env)  # fmt: skip
        learn_s = time.perf_counter() - started
        print(f"learn grade -j {args.jobs}:           {learn_s:7.1f}s")
        print(f"ratio: learn grade is {nbgrader_s / learn_s:.1f}x nbgrader autograde (goal >= 12x)")

        theirs = json.loads(run([str(nbg / "python"), "-c", NBGRADER_SCORES], cwd=work / "course").stdout)
        ours = learn_scores(work / "gb.db")
        pairs = [(s, t) for s in kinds for t in theirs.get(s, {})]
        same = [(s, t) for s, t in pairs if abs(theirs[s][t] - ours.get(s, {}).get(t, -1)) < 1e-9]
        totals = sum(abs(sum(theirs.get(s, {}).values()) - sum(ours.get(s, {}).values())) < 1e-9 for s in kinds)
        print(f"agreement: {len(same)}/{len(pairs)} test results, {totals}/{len(kinds)} student totals")
        for s, t in sorted(set(pairs) - set(same)):
            print(f"  differs: {s} {t}: nbgrader {theirs[s][t]:g}, learn {ours.get(s, {}).get(t)}")


if __name__ == "__main__":
    main()
