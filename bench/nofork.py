"""The spawn kernel backend (a new interpreter per kernel, no fork) vs the fork backend (kernels
forked from a warm zygote), grading the same notebooks.

Both run in this one process's lifetime, interleaved round by round (the order alternating), so
the machine's noise hits both alike:

  * in-process: `grader.grading.Grader` on a one-slot `KernelPool(backend=...)`, reference results
    served from a primed cache, so each notebook costs one learner kernel; after one untimed
    warm-up notebook per pool (the zygote's imports), each notebook is timed on its own;
  * end to end: `learn check --no-cache NOTEBOOKS` with LEARN_KERNEL_BACKEND set (what a learner
    waits for: interpreter, grader imports, pool, kernels).

Prints per-notebook seconds (median of the rounds) and the spawn/fork ratios.

    python bench/nofork.py [--rounds 3] [--lesson lesson3] [--no-cli]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("fork", "spawn")
SEED = 1234


async def grade_in_pool(backend: str, notebooks: list[Path]) -> tuple[float, dict[str, float], set[str]]:
    """(pool start + warm-up seconds, {notebook: seconds}, backends the results recorded)."""
    from grader.grading import Grader
    from grader.kernels import KernelPool

    started = time.perf_counter()
    async with KernelPool(1, backend=backend) as pool:
        async with Grader(pool=pool, seed=SEED) as grader:
            await grader.grade(notebooks[0])  # untimed: warms the zygote (fork) / the OS file cache (both)
            warm = time.perf_counter() - started
            seconds, recorded = {}, set()
            for nb in notebooks:
                t0 = time.perf_counter()
                result = await grader.grade(nb)
                seconds[nb.name] = time.perf_counter() - t0
                if result.error:
                    sys.exit(f"{backend}: {nb.name} could not be graded: {result.error}")
                recorded.add(result.kernel_backend)
    return warm, seconds, recorded


def learn_check(backend: str, notebooks: list[Path], cwd: Path) -> float:
    cmd = [shutil.which("learn") or "learn", "check", "--no-cache", "--seed", str(SEED), *(nb.name for nb in notebooks)]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, LEARN_KERNEL_BACKEND=backend))  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"learn check ({backend}) failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lesson", default="lesson3")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end `learn check` runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["LEARN_CACHE_DIR"] = str(work / "cache")  # primed below, then shared by every run
        notebooks = []
        for src in sorted((ROOT / "solutions" / args.lesson).glob("*.ipynb")):
            shutil.copy(src, work / src.name)
            notebooks.append(work / src.name)
        asyncio.run(grade_in_pool("fork", notebooks))  # primes the reference cache
        warm: dict[str, list[float]] = {b: [] for b in BACKENDS}
        per_nb: dict[str, dict[str, list[float]]] = {b: {nb.name: [] for nb in notebooks} for b in BACKENDS}
        cli: dict[str, list[float]] = {b: [] for b in BACKENDS}
        recorded: dict[str, set[str]] = {b: set() for b in BACKENDS}
        for r in range(args.rounds):
            for backend in BACKENDS if r % 2 == 0 else BACKENDS[::-1]:
                w, seconds, seen = asyncio.run(grade_in_pool(backend, notebooks))
                warm[backend].append(w)
                recorded[backend] |= seen
                for name, s in seconds.items():
                    per_nb[backend][name].append(s)
                if not args.no_cli:
                    cli[backend].append(learn_check(backend, notebooks, work))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    print(f"notebooks: {len(notebooks)} ({args.lesson}), rounds: {args.rounds}, median seconds; "
          f"results recorded kernel_backend: fork={sorted(recorded['fork'])}, spawn={sorted(recorded['spawn'])}")  # fmt: skip
    print(f"{'notebook':<24}{'fork':>8}{'spawn':>8}{'spawn/fork':>12}")
    for nb in notebooks:
        f, s = median(per_nb["fork"][nb.name]), median(per_nb["spawn"][nb.name])
        print(f"{nb.name:<24}{f:>8.2f}{s:>8.2f}{s / f:>12.2f}")
    f = median([sum(x) for x in zip(*per_nb["fork"].values())])
    s = median([sum(x) for x in zip(*per_nb["spawn"].values())])
    print(f"{'all (one pool, warm)':<24}{f:>8.2f}{s:>8.2f}{s / f:>12.2f}")
    wf, ws = median(warm["fork"]), median(warm["spawn"])
    print(f"{'pool start + warm-up nb':<24}{wf:>8.2f}{ws:>8.2f}{ws / wf:>12.2f}")
    if not args.no_cli:
        cf, cs = median(cli["fork"]), median(cli["spawn"])
        print(f"{'learn check --no-cache':<24}{cf:>8.2f}{cs:>8.2f}{cs / cf:>12.2f}   (end to end, all notebooks)")
        print(f"  fork runs:  {[round(x, 2) for x in cli['fork']]}")
        print(f"  spawn runs: {[round(x, 2) for x in cli['spawn']]}")


if __name__ == "__main__":
    main()
