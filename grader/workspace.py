"""The learner's working folder: which notebooks a command means, and how far along they are."""

from __future__ import annotations

from pathlib import Path

from .errors import LearnError, UnknownLessonError
from .lessons import Lesson, all_lessons

__all__ = ["resolve_targets", "notebooks_in", "lesson_status"]


def notebooks_in(folder: Path) -> list[Path]:
    """Notebooks a learner works on in `folder` (not backups or Jupyter checkpoints)."""
    return sorted(p for p in folder.glob("*.ipynb") if ".bak." not in p.name and not p.name.startswith("."))


def _lesson_dir(lesson: Lesson, work_dir: Path | None) -> Path:
    if work_dir is not None:
        return work_dir
    return Path(lesson.id) if Path(lesson.id).is_dir() else Path(".")


def resolve_targets(targets: tuple[str, ...] | list[str], work_dir: Path | None) -> list[Path]:
    """Turn `learn check` arguments (lesson ids, notebooks, folders) into notebook paths.

    A path that does not exist is passed through, so it is reported as that notebook's error.
    """
    lessons = all_lessons()
    if not targets:
        base = work_dir or Path(".")
        found = notebooks_in(base)
        if not found:
            found = [p for lid in lessons if (base / lid).is_dir() for p in notebooks_in(base / lid)]
        if not found:
            raise LearnError(f"no notebooks found in {base.resolve()}; run `learn fetch LESSON` first, or name the notebooks to check")
        return found
    paths: list[Path] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            found = notebooks_in(path)
            if not found:
                raise LearnError(f"{path} holds no notebooks")
            paths += found
        elif path.exists() or path.suffix == ".ipynb" or "/" in target:
            paths.append(path)
        elif target in lessons:
            lesson = lessons[target]
            base = _lesson_dir(lesson, work_dir)
            found = [base / spec.file for spec in lesson.notebooks if (base / spec.file).is_file()]
            if not found:
                raise LearnError(f"no notebooks of {target} in {base.resolve()}; run `learn fetch {target}` first (or pass --dir)")
            paths += found
        else:
            raise UnknownLessonError(target, list(lessons))
    return list(dict.fromkeys(paths))


def lesson_status(lesson: Lesson, work_dir: Path) -> str:
    """A short status for `learn list`: fetched or not, and the latest score when known."""
    folder = work_dir / lesson.id
    if not folder.is_dir() or not any((folder / spec.file).is_file() for spec in lesson.notebooks):
        return "not fetched"
    try:
        from .progress import latest_score
    except ImportError:
        return f"fetched to {folder}"
    score = latest_score(lesson.id, folder)
    if score is None:
        return f"fetched to {folder}, not checked yet"
    earned, possible = score
    return f"{earned:g}/{possible:g} points"
