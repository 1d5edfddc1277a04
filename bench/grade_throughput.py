"""`learn grade -j 2` of a synthetic class vs executing each notebook serially with nbconvert.

Builds N submissions of lesson 3 (a mix: correct, wrong, crashing, slow, infinite loop), then in
one run times
  (a) `jupyter nbconvert --to notebook --execute` of every notebook, one after another (the
      baseline a hand-rolled grading script gets; same cell time limit, errors allowed), and
  (b) `learn grade -j 2` of the class into a fresh gradebook (cold reference cache),
and prints submissions/s for both, their ratio, and the peak RSS of the grader process and of its
worker processes (zygotes and kernels), sampled with psutil. Targets: >= 3x, worker RSS <= 1 GB.

    python bench/grade_throughput.py [N] [--jobs 2] [--cell-timeout 10] [--skip-nbconvert]

Timings on a shared machine are noisy; run it when the machine is otherwise idle.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import psutil

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["correct", "wrong", "crashing", "slow", "infinite loop"]


def build_class(folder: Path, n: int) -> dict[str, str]:
    """N student folders of lesson-3 notebooks; returns student -> kind."""
    solutions = sorted((ROOT / "solutions" / "lesson3").glob("*.ipynb"))
    kinds = {}
    for i in range(n):
        kind = KINDS[i % len(KINDS)] if i >= 1 else "correct"
        student = f"s{i:03d}-{kind.replace(' ', '-')}"
        kinds[student] = kind
        dest = folder / student
        dest.mkdir(parents=True)
        for src in solutions:
            nb = nbformat.read(str(src), as_version=4)
            if kind == "wrong" and src.name.startswith("01"):
                nb.cells.append(nbformat.v4.new_code_cell("def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()"))
            elif kind == "crashing" and src.name.startswith("01"):
                nb.cells.append(nbformat.v4.new_code_cell("import os\nos._exit(1)"))
            elif kind == "slow" and src.name.startswith("02"):
                nb.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(3)"))
            elif kind == "infinite loop" and src.name.startswith("03"):
                nb.cells.append(nbformat.v4.new_code_cell("while True:\n    pass"))
            nbformat.write(nb, str(dest / src.name))
    return kinds


class RssSampler:
    """Peak RSS of a process and of its descendants, sampled every 0.1 s."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.main_peak = 0
        self.worker_peak = 0  # the largest single worker process
        self.workers_total_peak = 0  # all workers together
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.main_peak = max(self.main_peak, self.proc.memory_info().rss)
                sizes = []
                for child in self.proc.children(recursive=True):
                    try:
                        sizes.append(child.memory_info().rss)
                    except psutil.Error:
                        pass
                if sizes:
                    self.worker_peak = max(self.worker_peak, max(sizes))
                    self.workers_total_peak = max(self.workers_total_peak, sum(sizes))
            except psutil.Error:
                break
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def run_nbconvert(folder: Path, out: Path, cell_timeout: float) -> float:
    started = time.perf_counter()
    for student in sorted(folder.iterdir()):
        for nb in sorted(student.glob("*.ipynb")):
            subprocess.run(
                [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--allow-errors",
                 f"--ExecutePreprocessor.timeout={int(cell_timeout)}", "--output-dir", str(out / student.name), str(nb)],  # fmt: skip
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=student,
            )
    return time.perf_counter() - started


def run_learn(folder: Path, gradebook: Path, jobs: int, cell_timeout: float, cache: Path) -> tuple[float, RssSampler, int]:
    learn = shutil.which("learn") or "learn"
    env = dict(os.environ, LEARN_CACHE_DIR=str(cache))
    started = time.perf_counter()
    proc = subprocess.Popen([learn, "grade", str(folder), "--assignment", "lesson3", "--gradebook", str(gradebook), "-j", str(jobs),
                             "--cell-timeout", str(cell_timeout)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)  # fmt: skip
    sampler = RssSampler(proc.pid)
    _, err = proc.communicate()
    elapsed = time.perf_counter() - started
    sampler.stop()
    if proc.returncode != 0:
        print(f"learn grade exited {proc.returncode}: {err.decode()[-2000:]}", file=sys.stderr)
    return elapsed, sampler, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=16, help="number of submissions")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cell-timeout", type=float, default=10.0, help="per-cell limit for both (the infinite loops hit it)")
    parser.add_argument("--skip-nbconvert", action="store_true", help="time learn grade only")
    args = parser.parse_args()
    mb = 2**20
    with tempfile.TemporaryDirectory(prefix="learn-bench-") as tmp:
        work = Path(tmp)
        kinds = build_class(work / "class", args.n)
        mix = {k: list(kinds.values()).count(k) for k in KINDS}
        print(f"class: {args.n} submissions x 3 lesson-3 notebooks; mix {mix}; cell timeout {args.cell_timeout:g}s; {os.cpu_count()} cores")
        learn_s, rss, rc = run_learn(work / "class", work / "gb.db", args.jobs, args.cell_timeout, work / "cache")
        print(f"learn grade -j {args.jobs}:        {learn_s:7.1f}s  {args.n / learn_s:6.3f} submissions/s")
        print(f"  peak RSS: grader {rss.main_peak / mb:.0f} MB; largest worker {rss.worker_peak / mb:.0f} MB; "
              f"all workers together {rss.workers_total_peak / mb:.0f} MB")  # fmt: skip
        if not args.skip_nbconvert:
            nbc_s = run_nbconvert(work / "class", work / "nbconvert", args.cell_timeout)
            print(f"serial nbconvert --execute: {nbc_s:7.1f}s  {args.n / nbc_s:6.3f} submissions/s")
            print(f"ratio learn grade / nbconvert throughput = {nbc_s / learn_s:.2f}x (target >= 3x)")
        print(f"worker RSS target <= 1024 MB per worker: {'ok' if rss.worker_peak <= 1024 * mb else 'OVER'}")
        sys.exit(1 if rc not in (0,) else 0)


if __name__ == "__main__":
    main()
