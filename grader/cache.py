"""Results of `learn check` for notebooks that have not changed since they were last graded.

A learner re-runs `learn check` dozens of times; an unchanged notebook gets its previous result
back at once (marked `cached`), without starting a kernel or importing torch. The key covers
everything the grade depends on: the notebook's bytes, the lesson pack (manifest, checks, solution
notebooks, data), the grader's own code, the machine's side of grading (Python, torch, numpy,
fastai, IPython, ipykernel, nbclient and jupyter_client versions, the sandbox mode and kernel
backend), and the options that change grading (--only, an explicit --seed, --cell-timeout).
`--no-cache` bypasses it. A result whose failure came from the machinery (a kernel that did not
start, a reference solution that failed) is never stored: fixing the machine is enough.

Entries live in the user cache directory (`$LEARN_CACHE_DIR` overrides), one JSON file each,
written atomically; an unreadable entry is simply a miss. A result is stored only if its notebook
still holds the bytes its key was computed from when the grade is done (a save during a check).

    cached_check(paths)          the library call: misses graded on a fresh kernel pool
    check_with(grade, paths)     the same around any grader (the grading service's warm one)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .errors import LearnError
from .fingerprint import environment_fingerprint, grader_fingerprint
from .paths import cache_dir
from .results import NotebookResult, RunResult, Status

__all__ = ["cache_dir", "grader_fingerprint", "environment_fingerprint", "result_key", "load_result", "store_result",
           "cached_check", "check_with"]  # fmt: skip

# Failures of the machinery rather than of the notebook: never remembered, always retried.
MACHINERY_ERROR_KINDS = ("execution", "lesson")


def result_key(notebook_bytes: bytes, lesson_fingerprint: str, options: dict) -> str:
    h = hashlib.sha256()
    h.update(notebook_bytes)
    h.update(lesson_fingerprint.encode())
    h.update(grader_fingerprint().encode())
    h.update(environment_fingerprint().encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()[:40]


def _entry(key: str) -> Path:
    return cache_dir() / "results" / key[:2] / f"{key}.json"


def load_result(key: str, path: str | Path) -> NotebookResult | None:
    """The cached result for this key, re-pointed at `path`, or None."""
    try:
        data = json.loads(_entry(key).read_text())
        result = NotebookResult.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    result.path = str(path)
    result.cached = True
    return result


def store_result(key: str, result: NotebookResult) -> None:
    """Remember a result - only real grades, never failures of the machinery itself (a kernel that
    did not start, a reference solution that failed: the learner's next try must run again)."""
    if result.status is Status.ERROR and result.error_kind in MACHINERY_ERROR_KINDS:
        return
    if any(c.relay.startswith("machinery") for c in result.checks):  # the re-check with correct helpers failed to run
        return
    entry = _entry(key)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result.to_dict()))
        os.replace(tmp, entry)
    except OSError:
        pass  # a cache is an optimisation: never fail a check because it cannot be written


async def _grade_fresh(paths: list[Path], *, seed, only, jobs, cell_timeout) -> RunResult:
    """Start the kernel servers first, then import the grading machinery (torch) while they warm up:
    both take a couple of seconds, and they need not take them one after the other."""
    from .kernels import KernelPool

    size = jobs or max(1, min(2, len(paths), os.cpu_count() or 1))
    async with KernelPool(size) as pool:
        from .grading import Grader

        async with Grader(pool=pool, seed=seed, only=only, cell_timeout=cell_timeout) as grader:
            return await grader.grade_many(paths)


def _key_for(path: Path, options: dict, lessons: dict) -> str | None:
    """The cache key of a notebook, or None when it cannot be read or identified (never cached)."""
    read = _read_key(path, options, lessons)
    return read[0] if read else None


def _read_key(path: Path, options: dict, lessons: dict) -> tuple[str, str] | None:
    """(cache key, digest of the bytes it was computed from), or None (never cached)."""
    from .lessons import identify
    from .notebook import MAX_NOTEBOOK_BYTES, parse_notebook

    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return None
        raw = path.read_bytes()
        lesson, spec = identify(parse_notebook(raw, path), path, lessons)
    except (OSError, LearnError):
        return None
    return result_key(raw, f"{lesson.fingerprint()}:{spec.file}", options), _digest(path, raw)


def _digest(path: Path, raw: bytes | None = None) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes() if raw is None else raw).hexdigest()
    except OSError:
        return None


async def check_with(grade: Callable[[list[Path]], Awaitable[RunResult]], paths: list[Path], *, seed: int | None = None,
                     only: list[str] | None = None, cell_timeout: float | None = None, use_cache: bool = True,
                     lessons: dict | None = None) -> RunResult:  # fmt: skip
    """The results cache around any grader: cached results for unchanged notebooks, `grade(misses)`
    for the others (a fresh kernel pool in `cached_check`, the warm one in `grader.service`).

    A fresh result is stored only if its notebook still holds the bytes its key was computed from:
    a save during the check must not file the old notebook's verdict under the new one's bytes.
    """
    from .lessons import all_lessons

    started = time.monotonic()
    options = {"only": sorted(only or []), "seed": seed, "cell_timeout": cell_timeout}
    lessons = lessons if lessons is not None else all_lessons()
    keys = {p: _read_key(p, options, lessons) for p in paths} if use_cache else {}
    hits = {p: r for p, k in keys.items() if k and (r := load_result(k[0], p)) is not None}
    misses = [p for p in paths if p not in hits]
    graded: dict[Path, NotebookResult] = {}
    run_seed = seed
    if misses:
        fresh = await grade(misses)
        run_seed = fresh.seed
        for path, result in zip(misses, fresh.notebooks):
            graded[path] = result
            read = keys.get(path)
            if read and _digest(path) == read[1]:
                store_result(read[0], result)
    if run_seed is None and hits:
        run_seed = next(iter(hits.values())).seed
    results = [hits.get(p) or graded[p] for p in paths]
    return RunResult(results, seed=run_seed, duration=time.monotonic() - started)


def cached_check(paths: list[Path], *, seed: int | None = None, only: list[str] | None = None, jobs: int | None = None,
                 cell_timeout: float | None = None, use_cache: bool = True) -> RunResult:  # fmt: skip
    """`learn check` as one library call: cached results for unchanged notebooks, a fresh grade
    (kernels, torch) only for the others."""

    async def grade(misses: list[Path]) -> RunResult:
        return await _grade_fresh(misses, seed=seed, only=only, jobs=jobs, cell_timeout=cell_timeout)

    return asyncio.run(check_with(grade, paths, seed=seed, only=only, cell_timeout=cell_timeout, use_cache=use_cache))
