"""A learner's whole loop on every bundled pack, through the `learn` command, as one configuration.

    for each pack in solutions/*/lesson.toml:
        learn fetch PACK                      the exercises land in a fresh folder
        learn check <reference notebooks>     full marks, exit 0
        learn check PACK (fresh exercises)    graded: "not written yet", exit 1 (never 2, "cannot be graded")
        check("NAME") inside a notebook       the in-notebook verdict passes on the reference
    for each quiz in quizzes/:
        learn quiz QUIZ --answers right.yaml  every answer right, exit 0

`.ci/run` runs it once per platform row (root or an ordinary user, with bubblewrap, without it,
bubblewrap refused, no fork), with the environment set for that row; `--expect-sandbox` checks the
sandbox mode the results say graded them, and `--expect-warning` that the fallback was named once.

    python scripts/learner_loop.py --name "user, bwrap refused" --expect-sandbox rlimit --expect-warning \
        --expect-grade-refused
Exit 0 when every step did what it should; 1 otherwise (each failure printed with its output).
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
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FALLBACK_WARNING = "learner code runs with resource limits only"


def learn(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    exe = shutil.which("learn") or sys.exit("learner_loop: `learn` is not on PATH (install the project first)")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


class Loop:
    def __init__(self, name: str, work: Path, args: argparse.Namespace):
        self.name, self.work = name, work
        self.expect_sandbox, self.expect_warning, self.expect_backend = args.expect_sandbox, args.expect_warning, args.expect_backend
        self.failures: list[str] = []
        self.steps = 0

    def step(self, label: str, ok: bool, detail: str = "", started: float | None = None) -> bool:
        self.steps += 1
        took = f" ({time.monotonic() - started:.0f}s)" if started is not None else ""
        print(f"  {'ok  ' if ok else 'FAIL'} {label}{took}", flush=True)
        if not ok:
            self.failures.append(label)
            print("\n".join("       | " + line for line in detail.strip().splitlines()[-25:]), flush=True)
        return ok

    def recorded(self, json_path: Path, field: str) -> set[str]:
        """What every result of a --json file says about how it was graded (its sandbox, backend)."""
        try:
            return {str(nb.get(field) or "?") for nb in json.loads(json_path.read_text())["notebooks"]}
        except (OSError, ValueError, KeyError):
            return set()

    def graded_check(self, label: str, args: list[str], want_exit: int, json_path: Path, cwd: Path) -> None:
        started = time.monotonic()
        done = learn("check", *args, "--no-cache", "--no-html", "--json", str(json_path), cwd=cwd)
        output = done.stdout + done.stderr
        ok = done.returncode == want_exit and "cannot be graded" not in output
        detail = f"exit {done.returncode}, want {want_exit}\n{output}"
        for field, want in (("sandbox", self.expect_sandbox), ("kernel_backend", self.expect_backend)):
            if ok and want:
                got = self.recorded(json_path, field)
                ok, detail = got == {want}, f"graded with {field} {sorted(got)}, want {want}"
        if ok and self.expect_warning:
            count = output.count(FALLBACK_WARNING)
            ok, detail = count == 1, f"the fallback was named {count} times, want once:\n{output}"
        self.step(label, ok, detail, started)

    def pack(self, pack: str) -> None:
        print(f"[{self.name}] {pack}", flush=True)
        folder = self.work / f"work-{pack}"
        started = time.monotonic()
        fetched = learn("fetch", pack, "--dir", str(folder), cwd=self.work)
        if not self.step(f"learn fetch {pack}", fetched.returncode == 0 and folder.is_dir(), fetched.stdout + fetched.stderr, started):
            return
        references = sorted(str(p) for p in (ROOT / "solutions" / pack).glob("*.ipynb"))
        self.graded_check(f"learn check {pack} reference: full marks", references, 0, self.work / f"{pack}-ref.json", self.work)
        self.graded_check(f"learn check {pack} fresh exercises: graded, exit 1", [pack, "--dir", str(folder)], 1,
                          self.work / f"{pack}-stub.json", self.work)  # fmt: skip
        self.inline_check(pack, folder)

    def inline_check(self, pack: str, folder: Path) -> None:
        """`check()` in the learner's kernel: run the reference notebook with a check cell at the end."""
        import nbformat
        from nbclient import NotebookClient

        manifest = tomllib.loads((ROOT / "solutions" / pack / "lesson.toml").read_text())
        name, spec = next(iter(manifest["checks"].items()))
        nb = nbformat.read(str(ROOT / "solutions" / pack / spec["notebook"]), as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(f"from grader import check\nr = check({name!r})\nprint(r)\nassert r.passed, r"))
        started = time.monotonic()
        try:
            NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
            ok, detail = True, ""
        except Exception as exc:  # the notebook's own error, with its traceback
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.step(f"check({name!r}) inside a {pack} notebook", ok, detail, started)

    def grade_refused(self) -> None:
        """Other people's code is not run without filesystem isolation unless the instructor says so."""
        subs = self.work / "submissions" / "student-1"
        subs.mkdir(parents=True)
        shutil.copyfile(ROOT / "exercises" / "lesson3" / "02_relu.ipynb", subs / "02_relu.ipynb")
        gradebook = self.work / "refused.db"
        env = {k: v for k, v in os.environ.items() if k != "LEARN_ALLOW_UNSANDBOXED"}
        exe = shutil.which("learn") or "learn"
        started = time.monotonic()
        done = subprocess.run([exe, "grade", str(subs.parent), "--assignment", "lesson3", "--gradebook", str(gradebook)],
                              cwd=self.work, capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
        output = done.stdout + done.stderr
        refused = "refusing to grade other people's notebooks" in output and "--allow-unsandboxed" in output
        ok = done.returncode == 2 and refused and "Traceback" not in output and not gradebook.exists()
        self.step("learn grade refuses without isolation (no gradebook written)", ok, f"exit {done.returncode}\n{output}", started)

    def quiz(self, path: Path) -> None:
        from grader.quiz import load_quiz

        quiz = load_quiz(path)
        answers = {q.id: q.answer_value() for q in quiz.questions}
        answers_file = self.work / f"{path.stem}-answers.json"  # JSON is YAML
        answers_file.write_text(json.dumps(answers))
        started = time.monotonic()
        done = learn("quiz", path.stem, "--answers", str(answers_file), cwd=self.work)
        self.step(f"learn quiz {path.stem} --answers (all right): exit 0", done.returncode == 0,
                  f"exit {done.returncode}\n{done.stdout}{done.stderr}", started)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="this machine", help="the configuration's name, for the output")
    ap.add_argument("--pack", action="append", help="only this pack (repeatable; default: every bundled pack)")
    ap.add_argument("--expect-sandbox", choices=["bwrap", "rlimit"], help="the sandbox mode every result must name")
    ap.add_argument("--expect-warning", action="store_true", help="the rlimit fallback must be named exactly once per check")
    ap.add_argument("--expect-backend", choices=["fork", "spawn"], help="the kernel backend every result must name")
    ap.add_argument("--expect-grade-refused", action="store_true", help="`learn grade` must refuse to run without isolation")
    args = ap.parse_args(argv)
    packs = args.pack or sorted(p.parent.name for p in (ROOT / "solutions").glob("*/lesson.toml"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="learner-loop-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("LEARN_HOME", str(work / "home"))
        os.environ.setdefault("LEARN_CACHE_DIR", str(work / "cache"))
        loop = Loop(args.name, work, args)
        for pack in packs:
            loop.pack(pack)
        if args.expect_grade_refused:
            loop.grade_refused()
        if not args.pack:
            for quiz in sorted((ROOT / "quizzes").glob("*.yaml")):
                loop.quiz(quiz)
    verdict = "ok" if not loop.failures else f"FAILED ({', '.join(loop.failures)})"
    print(f"[{args.name}] learner loop {verdict}: {loop.steps - len(loop.failures)}/{loop.steps} steps, {time.monotonic() - started:.0f}s")
    return 1 if loop.failures else 0


if __name__ == "__main__":
    sys.exit(main())
