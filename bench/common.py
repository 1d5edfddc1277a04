"""Shared pieces of the benchmarks: synthetic classes, timed `learn grade` / nbconvert runs, memory sampling.

Imported by the scripts next to it (`python bench/<script>.py` puts this folder on sys.path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20
KINDS = ["correct", "wrong", "crashing", "slow", "infinite loop"]
_EDITS = {  # kind -> (notebook prefix, cell appended to it)
    "wrong": ("01", "def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()"),
    "crashing": ("01", "import os\nos._exit(1)"),
    "slow": ("02", "import time\ntime.sleep(3)"),
    "infinite loop": ("03", "while True:\n    pass"),
}


def build_class(folder: Path, n: int, mixed: bool = False) -> dict[str, str]:
    """N student folders of lesson-3 notebooks: all correct, or a rotating mix of KINDS
    (the first student always correct). Returns student -> kind."""
    solutions = sorted((ROOT / "solutions" / "lesson3").glob("*.ipynb"))
    kinds = {}
    for i in range(n):
        kind = KINDS[i % len(KINDS)] if mixed and i else "correct"
        student = f"s{i:03d}-{kind.replace(' ', '-')}"
        kinds[student] = kind
        dest = folder / student
        dest.mkdir(parents=True)
        for src in solutions:
            prefix, cell = _EDITS.get(kind, ("", ""))
            if prefix and src.name.startswith(prefix):
                nb = nbformat.read(str(src), as_version=4)
                nb.cells.append(nbformat.v4.new_code_cell(cell))
                nbformat.write(nb, str(dest / src.name))
            else:
                shutil.copy(src, dest / src.name)
    return kinds


class MemorySampler:
    """Peak RSS and USS of a process and of each of its descendants, sampled every 0.2 s.
    (Forked kernels share the zygote's pages: RSS counts torch once per process, USS does not.)"""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.grader_rss = self.grader_uss = self.worker_rss = self.worker_uss = self.workers_total_rss = 0
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
            sizes = [self._sizes(child) for child in children]
            for rss, uss in sizes:
                self.worker_rss, self.worker_uss = max(self.worker_rss, rss), max(self.worker_uss, uss)
            self.workers_total_rss = max(self.workers_total_rss, sum(r for r, _ in sizes))
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()

    def summary(self) -> str:
        return (f"grader RSS {self.grader_rss / MB:.0f} MB (USS {self.grader_uss / MB:.0f}); largest worker RSS "
                f"{self.worker_rss / MB:.0f} MB (USS {self.worker_uss / MB:.0f}); all workers RSS {self.workers_total_rss / MB:.0f} MB")  # fmt: skip


def learn_grade(classroom: Path, gradebook: Path, cache: Path, jobs: int = 2, cell_timeout: float | None = None,
                memory: bool = False) -> tuple[float, MemorySampler | None]:  # fmt: skip
    """Wall time of `learn grade` (and its memory, if asked); exits the benchmark if it fails."""
    cmd = [
        shutil.which("learn") or "learn",
        "grade",
        str(classroom),
        "--assignment",
        "lesson3",
        "--gradebook",
        str(gradebook),
        "-j",
        str(jobs),
    ]
    if cell_timeout:
        cmd += ["--cell-timeout", str(cell_timeout)]
    cmd += ["--allow-unsandboxed"]  # our own synthetic class: without bubblewrap, time the rlimit mode (learn grade warns)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, LEARN_CACHE_DIR=str(cache)))
    sampler = MemorySampler(proc.pid) if memory else None
    _, err = proc.communicate()
    elapsed = time.perf_counter() - started
    if sampler:
        sampler.stop()
    if proc.returncode != 0:
        sys.exit(f"learn grade failed ({proc.returncode}): {err.decode()[-2000:]}")
    return elapsed, sampler


def nbconvert_serial(classroom: Path, out: Path, cell_timeout: float | None = None, students: int | None = None) -> float:
    """Wall time of `jupyter nbconvert --execute` of every notebook, one after another."""
    extra = ["--allow-errors", f"--ExecutePreprocessor.timeout={int(cell_timeout)}"] if cell_timeout else []
    started = time.perf_counter()
    for student in sorted(classroom.iterdir())[:students]:
        for nb in sorted(student.glob("*.ipynb")):
            subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", *extra, "--output-dir",
                            str(out / student.name), str(nb)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=student)  # fmt: skip
    return time.perf_counter() - started
