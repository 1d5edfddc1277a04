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
import tempfile
from pathlib import Path

from common import MB, build_class, learn_grade, nbconvert_serial


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
        classroom = work / f"class{args.n}"
        build_class(classroom, args.n)
        print(f"{os.cpu_count()} cores; lesson 3 (3 notebooks per submission); correct submissions")

        cold, memory = learn_grade(classroom, work / "gb-main.db", cache, memory=True)
        sample = args.nbconvert_sample or args.n
        nbc = nbconvert_serial(classroom, work / "nbc", students=sample) * args.n / sample
        print(f"\n1. {args.n} submissions: learn grade -j 2 {cold:.1f}s (cold reference cache) vs serial nbconvert "
              f"{nbc:.1f}s{f' (scaled from {sample})' if sample != args.n else ''}")  # fmt: skip
        print(f"   ratio = {nbc / cold:.1f}x faster (target >= 6x)")

        times = []
        for n in sizes:
            build_class(work / f"scale{n}", n)
            elapsed, _ = learn_grade(work / f"scale{n}", work / f"gb-{n}.db", cache)
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
