"""The adversarial corpus graded as one `learn grade` batch: every attack is contained.

For each case in tests/adversarial/ (see its README and each expected.toml) the student gets the
expected, specific outcome; a control student graded in the same batch gets exactly the grade it
gets when graded alone; the learners' files are unchanged; nothing is written outside the
sandbox; and the grader process itself finishes cleanly within a bounded time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import nbformat
import pytest

from grader import sandbox
from grader.gradebook import Gradebook

from .build_adversarial import GENERATORS
from .conftest import SOLUTIONS, allow_unsandboxed

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parent / "adversarial"
CONTROL = "aaa_control"
BATCH_WALL_LIMIT_S = 420  # measured: 129 s for the whole corpus on this shared 2-core machine; 3x headroom for slower CI
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def expectations() -> dict[str, dict]:
    return {name: tomllib.loads((CORPUS / name / "expected.toml").read_text()) for name in CASES}


def build_class(root: Path) -> Path:
    """One folder per student: the control student, then every corpus case."""
    control = root / CONTROL
    control.mkdir(parents=True)
    for nb in sorted((SOLUTIONS / "lesson3").glob("*.ipynb")):
        shutil.copy(nb, control / nb.name)
    bwrap = sandbox.choose().mode == "bwrap"
    for name, exp in expectations().items():
        if exp.get("sandbox") == "bwrap" and not bwrap:
            continue  # only bubblewrap contains it: without it the attack would really write to this machine
        folder = root / name
        shutil.copytree(CORPUS / name, folder, symlinks=True, ignore=shutil.ignore_patterns("expected.toml"))
        if "generate" in exp:
            nbformat.write(GENERATORS[exp["generate"]](), str(folder / exp["notebook"]))
    return root


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def learn(*args, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "grader.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adversarial")
    classroom = build_class(tmp / "class")
    before = tree_digest(classroom)
    options = ["--assignment", "lesson3", "-j", "2", "--cell-timeout", "5", "--seed", "4242", *allow_unsandboxed()]
    started = time.monotonic()
    done = learn("grade", classroom, "--gradebook", tmp / "gb.db", *options, cwd=tmp)
    wall = time.monotonic() - started
    solo_dir = tmp / "solo"
    shutil.copytree(classroom / CONTROL, solo_dir / CONTROL)
    solo = learn("grade", solo_dir, "--gradebook", tmp / "solo.db", *options, cwd=tmp)
    return {
        "done": done,
        "wall": wall,
        "before": before,
        "after": tree_digest(classroom),
        "gb": tmp / "gb.db",
        "solo": solo,
        "solo_gb": tmp / "solo.db",
    }


def results(path: Path) -> dict:
    with Gradebook(path, create=False) as gb:
        return {rec.student: rec.run_result() for rec in gb.submissions(with_json=True)}


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    readme = (CORPUS / "README.md").read_text()
    for name in CASES:
        assert f"`{name}`" in readme, f"{name} is not described in tests/adversarial/README.md"


def test_batch_finishes_cleanly_and_in_bounded_time(batch):
    done = batch["done"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert batch["wall"] < BATCH_WALL_LIMIT_S, f"the corpus took {batch['wall']:.0f}s"
    print(f"\nadversarial corpus: {len(CASES)} cases + control graded in {batch['wall']:.1f}s")


def test_learners_files_are_unchanged(batch):
    assert batch["after"] == batch["before"]


def test_control_student_is_graded_exactly_as_alone(batch):
    assert batch["solo"].returncode == 0, batch["solo"].stderr[-2000:]
    together = results(batch["gb"])[CONTROL]
    alone = results(batch["solo_gb"])[CONTROL]
    assert together.points == alone.points == together.max_points > 0
    summary = lambda run: [(nb.exercise, c.name, c.status, c.points) for nb in run.notebooks for c in nb.checks]  # noqa: E731
    assert summary(together) == summary(alone)


@pytest.mark.parametrize("name", CASES)
def test_case_outcome(batch, name):
    exp = expectations()[name]
    graded = results(batch["gb"])
    if name not in graded and exp.get("sandbox") == "bwrap":
        pytest.skip(f"{name} is contained only by bubblewrap, which is not available here (see README: rlimit-only mode)")
    run = graded[name]
    nb = next(n for n in run.notebooks if n.exercise == exp["notebook"])
    full = nb.max_points
    assert full > 0
    words = " ".join([nb.error or ""] + [c.message for c in nb.checks] + [f"{p.ename} {p.evalue}" for p in nb.cell_problems])
    if exp["points"] == "full":
        assert nb.points == full, words
    elif exp["points"] == "zero":
        assert nb.points == 0, words
    else:
        assert nb.points < full, words
    if "error_kind" in exp:
        assert nb.error_kind == exp["error_kind"], (nb.error_kind, nb.error)
    if "cell_problem" in exp:
        wanted = exp["cell_problem"] if isinstance(exp["cell_problem"], list) else [exp["cell_problem"]]
        assert set(wanted) & {p.kind for p in nb.cell_problems}, nb.cell_problems
    checks = {c.name: c for c in nb.checks}
    for check, status in exp.get("check_status", {}).items():
        assert checks[check].status.value == status, checks[check].message
    for check, kind in exp.get("check_kind", {}).items():
        assert checks[check].kind == kind, checks[check].message
    if "message" in exp:
        assert exp["message"] in words, words[:2000]
    for path in exp.get("host_absent", []):
        assert not os.path.exists(path), f"{name} wrote {path} outside the sandbox"
