"""Where learn keeps things on this machine: one place for every folder, so none is spelled twice.

    data_dir()  $LEARN_HOME, else platformdirs' user data folder (~/.local/share/learn on Linux)
     ├── progress.db       learner history (grader.progress)
     ├── packs/            lesson packs installed with `learn fetch --from` (grader.lessons)
     └── quizzes/          saved quiz sessions (grader.quiz)
    cache_dir() $LEARN_CACHE_DIR, else platformdirs' user cache folder (~/.cache/learn on Linux)
     ├── results/          `learn check` results of unchanged notebooks (grader.cache)
     ├── reference/        probe results of the reference solutions (grader.grading)
     └── reports/          HTML reports about the bundled packs themselves (grader.html)

Nothing here creates a folder: callers create what they write, so a read-only look (`learn doctor`,
`learn progress`) never leaves anything behind. `log_tail` reads the end of a log learn wrote itself
(a zygote's, the grading service's) for an error message.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "cache_dir", "log_tail"]


def data_dir() -> Path:
    """The learner's own data (progress, installed packs, quiz sessions)."""
    if os.environ.get("LEARN_HOME"):
        return Path(os.environ["LEARN_HOME"])
    import platformdirs

    return Path(platformdirs.user_data_dir("learn", appauthor=False))


def cache_dir() -> Path:
    """What can be thrown away and rebuilt (cached results)."""
    if os.environ.get("LEARN_CACHE_DIR"):
        return Path(os.environ["LEARN_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("learn", appauthor=False))


def log_tail(path: Path, lines: int = 3) -> str:
    """The last `lines` lines of the log at `path`, joined with " | " ("" if it cannot be read)."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
