"""`learn grade -j 2` of a synthetic class vs executing each notebook serially with nbconvert.

Builds N submissions of lesson 3 (a mix: correct, wrong, crashing, slow, infinite loop), then in
one run times
  (a) `jupyter nbconvert --to notebook --execute` of every notebook, one after another (the
      baseline a hand-rolled grading script gets; same cell time limit, errors allowed), and
  (b) `learn grade -j 2` of the class into a fresh gradebook (cold reference cache),
and prints submissions/s for both, their ratio, and the peak memory of the grader process and of
its worker processes (zygotes and kernels). Targets: >= 3x, worker RSS <= 1 GB.

    python bench/grade_throughput.py [N] [--jobs 2] [--cell-timeout 10] [--skip-nbconvert]

Timings on a shared machine are noisy; run it when the machine is otherwise idle.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import KINDS, MB, build_class, learn_grade, nbconvert_serial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=16, help="number of submissions")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cell-timeout", type=float, default=10.0, help="per-cell limit for both (the infinite loops hit it)")
    parser.add_argument("--skip-nbconvert", action="store_true", help="time learn grade only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="learn-bench-") as tmp:
        work = Path(tmp)
        kinds = build_class(work / "class", args.n, mixed=True)
        mix = {k: list(kinds.values()).count(k) for k in KINDS}
        print(f"class: {args.n} submissions x 3 lesson-3 notebooks; mix {mix}; cell timeout {args.cell_timeout:g}s; {os.cpu_count()} cores")
        learn_s, memory = learn_grade(work / "class", work / "gb.db", work / "cache", args.jobs, args.cell_timeout, memory=True)
        print(f"learn grade -j {args.jobs}:        {learn_s:7.1f}s  {args.n / learn_s:6.3f} submissions/s")
        print(f"  peak memory: {memory.summary()}")
        if not args.skip_nbconvert:
            nbc_s = nbconvert_serial(work / "class", work / "nbconvert", args.cell_timeout)
            print(f"serial nbconvert --execute: {nbc_s:7.1f}s  {args.n / nbc_s:6.3f} submissions/s")
            print(f"ratio learn grade / nbconvert throughput = {nbc_s / learn_s:.2f}x (target >= 3x)")
        print(f"worker RSS target <= 1024 MB per worker: {'ok' if memory.worker_rss <= 1024 * MB else 'OVER'}")


if __name__ == "__main__":
    main()
