"""The learner's working folder: which notebooks a command means, and how far along they are.

    learn check [LESSON | FOLDER | NOTEBOOK]... [--only NAME]
        └─ resolve_targets ─► notebook paths (a lesson's own, only those holding the --only functions)
              └─ check_readable ─► what is not a gradable notebook is refused at once, no kernel started;
                                   the rest go to the grader (cache.cached_check)

One way to name a work folder everywhere the CLI suggests a command: `learn fetch lesson3` puts the
notebooks in ./lesson3, and `learn check lesson3` finds them there; a folder elsewhere is named by its
path (`learn check path/to/lesson3`), never by `--dir` in a suggestion.
"""

from __future__ import annotations

from pathlib import Path

from .errors import LearnError, UnknownLessonError
from .lessons import Lesson, all_lessons

__all__ = ["resolve_targets", "notebooks_in", "lesson_status", "check_readable", "check_command"]


def notebooks_in(folder: Path) -> list[Path]:
    """Notebooks a learner works on in `folder` (not backups or Jupyter checkpoints)."""
    return sorted(p for p in folder.glob("*.ipynb") if ".bak." not in p.name and not p.name.startswith("."))


def _lesson_dir(lesson: Lesson, work_dir: Path | None) -> Path:
    if work_dir is not None:
        return work_dir
    return Path(lesson.id) if Path(lesson.id).is_dir() else Path(".")


def check_command(lesson_id: str, folder: Path | str) -> str:
    """The `learn check` command for a lesson fetched into `folder`: by its id when the folder is the
    default ./LESSON (as README says), else by the folder's path."""
    folder = Path(folder)
    default = Path(lesson_id)
    try:
        same = folder.resolve() == default.resolve()
    except OSError:
        same = False
    return f"learn check {lesson_id}" if same else f"learn check {folder}"


def _holds(lessons: dict[str, Lesson], notebook: str, names: list[str]) -> bool:
    """Whether a notebook file name holds one of the graded `names` (a name no lesson knows: kept, to be reported)."""
    specs = [(lesson, spec) for lesson in lessons.values() for spec in lesson.notebooks if spec.file == notebook]
    if not specs:
        return True
    return any(lesson.checks[n].notebook == spec.file for lesson, spec in specs for n in names if n in lesson.checks)


def _known_only(names: list[str], lessons: dict[str, Lesson]) -> None:
    """`--only` names every lesson may grade; a typo is refused with the closest names."""
    from .helpers import find_check

    for name in names:
        find_check(name, lessons=lessons)  # UnknownCheckError: "no graded function named 'mse_'. Did you mean: mse, ...?"


def resolve_targets(targets: tuple[str, ...] | list[str], work_dir: Path | None, only: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Turn `learn check` arguments (lesson ids, notebooks, folders) into notebook paths.

    A path that does not exist is passed through, so it is reported as that notebook's error. With
    `only`, the names must be graded functions, and a lesson or folder gives only the notebooks that
    hold them (no empty tables for the others).
    """
    lessons = all_lessons()
    only = list(only or [])
    if only:
        _known_only(only, lessons)
    found = _resolve(targets, work_dir, lessons)
    if not only:
        return found
    kept = [p for p in found if p.suffix != ".ipynb" or _holds(lessons, p.name, only) or str(p) in targets]
    if not kept:
        raise LearnError(f"none of the notebooks holds {', '.join(only)}; name the notebook, or check the spelling")
    return kept


def _resolve(targets, work_dir: Path | None, lessons: dict[str, Lesson]) -> list[Path]:
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
        # `learn check LESSON --dir D` means the lesson's notebooks in D, whatever ./LESSON is (a pack folder of that name, say)
        by_id = target in lessons and "/" not in target and (work_dir is not None or not path.exists())
        if not by_id and path.is_dir():
            found = notebooks_in(path)
            if not found:
                raise LearnError(f"{path} holds no notebooks")
            paths += found
        elif not by_id and (path.exists() or path.suffix == ".ipynb" or "/" in target):
            paths.append(path)
        elif target in lessons:
            lesson = lessons[target]
            base = _lesson_dir(lesson, work_dir)
            found = [base / spec.file for spec in lesson.notebooks if (base / spec.file).is_file()]
            if not found:
                raise LearnError(f"no notebooks of {target} in {base.resolve()}; run `learn fetch {target}` first, "
                                 f"or name the folder: `learn check path/to/{target}`")  # fmt: skip
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


def check_readable(paths: list[Path], check, **options):
    """`check(paths, **options)` (the grader: `cache.cached_check`) for the notebooks that can be graded;
    a file that is not a notebook, or not one of the exercises, is refused at once - its result says why -
    without starting a kernel. The results keep the order of `paths`."""
    from . import __version__
    from .errors import NotebookLoadError, UnknownNotebookError
    from .lessons import identify
    from .notebook import load_notebook
    from .results import NotebookResult, RunResult, Status

    refused: dict[Path, NotebookResult] = {}
    lessons = all_lessons()
    for path in paths:
        try:
            identify(load_notebook(path), Path(path), lessons)
        except (NotebookLoadError, UnknownNotebookError) as exc:
            kind = "load" if isinstance(exc, NotebookLoadError) else "unknown_exercise"
            refused[path] = NotebookResult(path=str(path), exercise=None, lesson=None, status=Status.ERROR, error=str(exc),
                                           error_kind=kind, seed=options.get("seed"), grader_version=__version__)  # fmt: skip
    todo = [p for p in paths if p not in refused]
    graded = check(todo, **options) if todo else RunResult([], seed=options.get("seed"))
    results = iter(graded.notebooks)
    return RunResult([refused[p] if p in refused else next(results) for p in paths], seed=graded.seed, duration=graded.duration)
