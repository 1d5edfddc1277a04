"""What a grade depends on besides the notebook and the pack: the grader's own code, and this
machine's side of grading (Python and library versions, sandbox mode, kernel backend).

Cache keys (`grader.cache` for results, `grader.grading` for reference results) include these,
so a changed grader or library never serves an old verdict. Nothing here imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

from . import __version__

__all__ = ["GRADE_LIBRARIES", "grader_fingerprint", "installed_version", "environment_fingerprint"]

# Libraries whose release can change a grade (numerics, how a kernel runs a notebook).
GRADE_LIBRARIES = ("torch", "numpy", "fastai", "ipython", "ipykernel", "nbclient", "jupyter_client")


@functools.lru_cache(maxsize=1)
def grader_fingerprint() -> str:
    """Changes whenever any source file of the grader package changes (not just its version)."""
    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def installed_version(distribution: str) -> str | None:
    """The installed release of a distribution (None: not installed), read without importing it."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[str, ...]:
    return (sys.version, *(f"{name}={installed_version(name) or '-'}" for name in GRADE_LIBRARIES))


def environment_fingerprint(sandbox_mode: str | None = None) -> str:
    """What besides the notebook and the pack changes a grade on this machine: the Python and
    library versions, and how learner code runs (sandbox mode, kernel backend). No import of torch."""
    if sandbox_mode is None:
        from .sandbox import choose

        sandbox_mode = choose().mode
    backend = os.environ.get("LEARN_KERNEL_BACKEND", "").strip().lower() or "auto"
    parts = [*_library_versions(), sandbox_mode, backend]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
