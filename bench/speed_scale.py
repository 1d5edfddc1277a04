"""Speed and scale of `learn grade` on one machine, measured side by side in one run.

  1. `learn grade -j 2` of N correct lesson-3 submissions (default 40) vs `jupyter nbconvert
     --execute` of the same notebooks one after another: the ratio of wall times (target >= 6x).
  2. Cost growth: `learn grade -j 2` of 10, 20, 40 and 80 submissions (fresh gradebooks, warm
     reference cache): seconds per submission from a least-squares line, its intercept, and how
     far each point is from the line (the growth must be linear).
  3. Memory: peak RSS of the grader process and of each worker process (zygotes and kernels),
     and their peak USS (memory unique to the process: forked kernels share the zygote's pages,
     so RSS counts torch once per process although it is in memory once). Target <= 1 GB per worker.

    python bench/speed_scale.py [--n 40] [--sizes 10,20,40,80] [--nbconvert-sample K]

`--nbconvert-sample K` times nbconvert on K of the N submissions and scales linearly (each
notebook is an independent cold start, so its cost is linear by construction); the default runs
all N. Timings on a shared machine are noisy: run it when the machine is otherwise idle.
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

import psutil

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


def build_class(folder: Path, n: int) -> Path:
    solutions = sorted((ROOT / "solutions" / "lesson3").glob("*.ipynb"))
    for i in range(n):
        dest = folder / f"s{i:03d}"
        dest.mkdir(parents=True)
        for src in solutions:
            shutil.copy(src, dest / src.name)
    return folder


class MemorySampler:
    """Peak RSS and USS of a process and of each of its descendants, sampled every 0.2 s."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.grader_rss = self.grader_uss = self.worker_rss = self.worker_uss = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _sizes(p: psutil.Process) -> tuple[int, int]:
        try:
            info = p.memory_full_info()
            return info.rss, info.uss
        except psutil.Error:
            return 0, 0

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, uss = self._sizes(self.proc)
            self.grader_rss, self.grader_uss = max(self.grader_rss, rss), max(self.grader_uss, uss)
            try:
                children = self.proc.children(recursive=True)
            except psutil.Error:
                break
            for child in children:
                rss, uss = self._sizes(child)
                self.worker_rss, self.worker_uss = max(self.worker_rss, rss), max(self.worker_uss, uss)
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def learn_grade(classroom: Path, gradebook: Path, cache: Path, memory: bool = False) -> tuple[float, MemorySampler | None]:
    env = dict(os.environ, LEARN_CACHE_DIR=str(cache))
    cmd = [shutil.which("learn") or "learn", "grade", str(classroom), "--assignment", "lesson3", "--gradebook", str(gradebook), "-j", "2"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    sampler = MemorySampler(proc.pid) if memory else None
    _, err = proc.communicate()
    elapsed = time.perf_counter() - started
    if sampler:
        sampler.stop()
    if proc.returncode != 0:
        sys.exit(f"learn grade failed ({proc.returncode}): {err.decode()[-2000:]}")
    return elapsed, sampler


def nbconvert(classroom: Path, out: Path, students: int) -> float:
    started = time.perf_counter()
    for student in sorted(classroom.iterdir())[:students]:
        for nb in sorted(student.glob("*.ipynb")):
            subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--output-dir",
                            str(out / student.name), str(nb)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=student, check=True)  # fmt: skip
    return time.perf_counter() - started


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares slope, intercept and R^2."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return slope, intercept, 1 - ss_res / ss_tot if ss_tot else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--sizes", default="10,20,40,80")
    parser.add_argument("--nbconvert-sample", type=int, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="learn-speed-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        classroom = build_class(work / f"class{args.n}", args.n)
        print(f"{os.cpu_count()} cores; lesson 3 (3 notebooks per submission); correct submissions")

        cold, memory = learn_grade(classroom, work / "gb-main.db", cache, memory=True)
        sample = args.nbconvert_sample or args.n
        nbc = nbconvert(classroom, work / "nbc", sample) * args.n / sample
        print(f"\n1. {args.n} submissions: learn grade -j 2 {cold:.1f}s (cold reference cache) vs serial nbconvert "
              f"{nbc:.1f}s{' (scaled from %d)' % sample if sample != args.n else ''}")  # fmt: skip
        print(f"   ratio = {nbc / cold:.1f}x faster (target >= 6x)")

        times = []
        for n in sizes:
            c = build_class(work / f"scale{n}", n)
            elapsed, _ = learn_grade(c, work / f"gb-{n}.db", cache)
            times.append(elapsed)
        slope, intercept, r2 = fit_line([float(n) for n in sizes], times)
        print("\n2. cost growth (warm reference cache):")
        for n, t in zip(sizes, times):
            predicted = slope * n + intercept
            print(f"   {n:3d} submissions: {t:6.1f}s  (line: {predicted:6.1f}s, {100 * (t - predicted) / predicted:+.0f}%)")
        print(f"   slope {slope:.3f} s per submission (~{slope / 3:.3f} s per notebook), intercept {intercept:.1f}s, R^2 = {r2:.4f}")
        print(f"   linear: {'yes' if r2 > 0.98 else 'NO'} (R^2 > 0.98)")

        print("\n3. memory (peak during the first run):")
        print(f"   grader:         RSS {memory.grader_rss / MB:5.0f} MB, USS {memory.grader_uss / MB:5.0f} MB")
        print(f"   largest worker: RSS {memory.worker_rss / MB:5.0f} MB, USS {memory.worker_uss / MB:5.0f} MB "
              f"({'ok' if memory.worker_rss <= 1024 * MB else 'OVER'}: target <= 1024 MB)")  # fmt: skip


if __name__ == "__main__":
    main()
