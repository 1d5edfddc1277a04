"""How long a learner waits for `learn check`, with and without the grading service, in one run.

Every figure is printed in seconds and as a ratio to `python -c "import torch"` timed between the
checks of the same section (medians of ROUNDS), so a loaded machine shifts both alike:

    today   learn check --no-service of a changed lesson-3 notebook, right / wrong (summing mse)
    cold    learn check of a changed notebook when no service runs (it starts one)
    warm    learn check of a changed notebook on a warm service, right / wrong    (goal <= 0.5x)
            learn check lesson3 (three notebooks, one changed, HTML report)       (goal <= 0.7x)
            check("quad") in a warm Python after quad was edited and saved        (goal <= 0.15x)
    memory  the idle service and its kernel servers: PSS (shared pages split) and RSS summed (goal <= 600 MB)

    python bench/check_latency.py [--rounds 3] [--skip-today]

Runs in a temporary LEARN_HOME, cache and XDG_RUNTIME_DIR; stops its service at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import psutil

ROOT = Path(__file__).resolve().parent.parent
LEARN = shutil.which("learn") or str(Path(sys.executable).parent / "learn")
SOLUTIONS = ROOT / "solutions" / "lesson3"
WRONG_MSE = "def mse(preds, acts):\n    return ((preds - acts)**2).sum()"
INLINE = """
import contextlib, io, sys, time
from grader import check
path = sys.argv[1]
with contextlib.redirect_stdout(io.StringIO()):  # a script prints what check() returns
    check("quad", notebook=path)  # imports and the first answer: not timed
print("ready", flush=True)
for line in sys.stdin:  # the bench edits and saves the notebook, then says "go"
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = check("quad", notebook=path)
    print(f"{time.perf_counter() - started:.4f} {result.passed}", flush=True)
"""


def fill(notebook: Path, variant: int, wrong: bool = False) -> None:
    """Every stub of the lesson-3 exercise filled from the solution; `variant` changes quad's text
    (so the notebook is new to the cache), `wrong` makes mse sum instead of average."""
    solution = nbformat.read(str(SOLUTIONS / notebook.name), as_version=4)
    defs = [c.source for c in solution.cells if c.cell_type == "code" and c.source.lstrip().startswith("def ")]
    sources = {source.lstrip().split("(")[0]: source for source in defs}
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        head = cell.source.lstrip().split("(")[0] if cell.cell_type == "code" else ""
        if head == "def quad":
            cell.source = "def quad(a, b, c, x):\n    return a*x*x + b*x + c" + "  " * variant
        elif head == "def mse" and wrong:
            cell.source = WRONG_MSE
        elif head in sources:
            cell.source = sources[head]
    nbformat.write(nb, str(notebook))


def timed(cmd: list[str], env: dict, expect: int | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if expect is not None and done.returncode != expect:
        sys.exit(f"{' '.join(cmd)} exited {done.returncode}, not {expect}: {done.stderr.decode()[-1500:]}")
    return elapsed


def service_memory(env: dict) -> tuple[float, float, int]:
    """(PSS MB, RSS MB, processes) of the running service and everything under it."""
    out = subprocess.run([LEARN, "service", "status"], env=env, capture_output=True, text=True).stdout
    pid = int(out.split("pid ", 1)[1].split(",", 1)[0])
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    pss = rss = 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        pss, rss = pss + info.pss, rss + info.rss
    return pss / 2**20, rss / 2**20, len(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-today", action="store_true", help="do not time learn check --no-service (slow)")
    args = parser.parse_args()
    rounds = range(args.rounds)
    with tempfile.TemporaryDirectory(prefix="learn-latency-") as tmp:
        work = Path(tmp)
        (work / "run").mkdir(mode=0o700)
        env = dict(os.environ, LEARN_HOME=str(work / "home"), LEARN_CACHE_DIR=str(work / "cache"), XDG_RUNTIME_DIR=str(work / "run"))
        env.pop("LEARN_NO_SERVICE", None)
        subprocess.run([LEARN, "fetch", "lesson3", "--dir", str(work / "lesson3")], env=env, check=True, stdout=subprocess.DEVNULL)
        nb = work / "lesson3" / "01_quadratic.ipynb"
        for other in ("02_relu.ipynb", "03_matmul.ipynb"):
            shutil.copyfile(SOLUTIONS / other, work / "lesson3" / other)
        check = [LEARN, "check", str(nb), "--no-html"]
        variant = iter(range(1, 10_000))
        torch: dict[str, list[float]] = {"cold": [], "warm": []}
        figures: dict[str, tuple[str, list[float]]] = {}

        def add(name: str, seconds: float, section: str = "warm") -> None:
            figures.setdefault(name, (section, []))[1].append(seconds)

        try:
            for _ in rounds:
                torch["cold"].append(timed([sys.executable, "-c", "import torch"], env, 0))
                if not args.skip_today:
                    fill(nb, next(variant))
                    add("today: changed notebook, right (--no-service)", timed([*check, "--no-service"], env, 0), "cold")
                    fill(nb, next(variant), wrong=True)
                    add("today: changed notebook, wrong (--no-service)", timed([*check, "--no-service"], env, 1), "cold")
                subprocess.run([LEARN, "service", "stop"], env=env, stdout=subprocess.DEVNULL)
                fill(nb, next(variant))
                add("cold: first check, service not running", timed(check, env, 0), "cold")
            time.sleep(8)  # the relay kernel server warms after the first check
            for _ in rounds:
                torch["warm"].append(timed([sys.executable, "-c", "import torch"], env, 0))
                fill(nb, next(variant))
                add("warm: changed notebook, right", timed(check, env, 0))
                fill(nb, next(variant), wrong=True)
                add("warm: changed notebook, wrong", timed(check, env, 1))
                fill(nb, next(variant))
                whole = [LEARN, "check", "lesson3", "--dir", str(work / "lesson3")]
                add("warm: learn check lesson3, one notebook changed", timed(whole, env, 0))
            inline = subprocess.Popen([sys.executable, "-c", INLINE, str(nb)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
            if inline.stdout.readline().strip() != "ready":
                sys.exit("the in-notebook check did not start")
            for _ in rounds:
                fill(nb, next(variant))
                inline.stdin.write("go\n")
                inline.stdin.flush()
                seconds, passed = inline.stdout.readline().split()
                if passed != "True":
                    sys.exit("check('quad') did not pass a correct quad")
                add('warm: check("quad") in a running Python after an edit', float(seconds))
            inline.stdin.close()
            inline.wait()
            time.sleep(5)
            pss, rss, count = service_memory(env)
        finally:
            subprocess.run([LEARN, "service", "stop"], env=env, stdout=subprocess.DEVNULL)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores; each figure is a median of {args.rounds}, "
          "as a ratio to python -c 'import torch' timed between the checks of its own section")  # fmt: skip
    for section in ("cold", "warm"):
        base = statistics.median(torch[section])
        print(f"{section}: import torch {base:.2f}s ({' '.join(f'{v:.2f}' for v in torch[section])})")
        for name, (where, values) in figures.items():
            if where == section:
                median = statistics.median(values)
                print(f"  {name:58} {median:6.2f}s  {median / base:5.2f}x   ({' '.join(f'{v:.2f}' for v in values)})")
    print(f"  idle service: {pss:.0f} MB PSS, {rss:.0f} MB RSS summed over {count} processes")


if __name__ == "__main__":
    main()
