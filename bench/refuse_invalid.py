"""How long `learn check` takes to refuse a file that is not a notebook, against `learn --version`
(the cost of starting the command at all), alternating, best of N each in one run.

Issue 23: an invalid-JSON notebook took 7 s to be refused (a kernel pool started for nothing); the goal
is under 0.5 s. The ratio says how much more than starting `learn` the refusal costs.

    python bench/refuse_invalid.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    learn = [sys.executable, "-c", "from grader.cli import main; main()"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "01_quadratic.ipynb").write_text("{not json")
        env = {**os.environ, "LEARN_HOME": str(work / "home"), "LEARN_CACHE_DIR": str(work / "cache")}
        start, refuse = [], []
        for _ in range(args.repeat):
            start.append(timed([*learn, "--version"], work, env))
            refuse.append(timed([*learn, "check", "01_quadratic.ipynb", "--no-html"], work, env))
    print(f"learn --version          best {min(start):.3f}s")
    print(f"learn check (not JSON)   best {min(refuse):.3f}s  (goal < 0.5 s)")
    print(f"ratio refusal / start    {min(refuse) / min(start):.2f}")


if __name__ == "__main__":
    main()
