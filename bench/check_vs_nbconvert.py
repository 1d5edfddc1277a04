"""`learn check` of the lesson-3 solution notebooks vs `jupyter nbconvert --execute` of the same.

Both run in this one process's lifetime, alternating, best of N each, so the machine's noise hits
both alike. Prints the ratio (learn check / nbconvert); the Foundation issue targets <= 1.3, the
speed issue <= 1.1 (below 1.0 means we beat a cold kernel per notebook).

    python bench/check_vs_nbconvert.py [--repeat 3] [--lesson lesson3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"command failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lesson", default="lesson3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        notebooks = sorted((ROOT / "solutions" / args.lesson).glob("*.ipynb"))
        for nb in notebooks:
            shutil.copy(nb, work / nb.name)
        names = [nb.name for nb in notebooks]
        nbconvert = [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--output-dir",
            str(work / "out"),
            *names,
        ]
        learn = [shutil.which("learn") or "learn", "check", "--no-cache", *names]
        a, b = [], []
        for _ in range(args.repeat):
            a.append(timed(nbconvert, work))
            b.append(timed(learn, work))
        best_a, best_b = min(a), min(b)
        print(f"notebooks: {len(names)} ({args.lesson})")
        print(f"jupyter nbconvert --execute: best {best_a:.2f}s of {[round(x, 2) for x in a]}")
        print(f"learn check:                 best {best_b:.2f}s of {[round(x, 2) for x in b]}")
        print(f"ratio learn check / nbconvert = {best_b / best_a:.2f}")


if __name__ == "__main__":
    main()
