"""Lesson packs: data, not code in `grader/`.

A pack is one folder (under `solutions/` in this repo, or installed by `learn fetch --from`):

    lesson.toml          notebooks, graded names, points, tolerances, timeouts, hints;
                         [manual.NAME] items an instructor grades by hand (see grader.manual)
    checks.py            how each graded name is exercised (see grader.checks)
    01_quadratic.ipynb   solution notebooks, with solution markers (see grader.generate)
    data files           anything the notebooks read, listed per notebook in lesson.toml

The learner-facing copies (`exercises/<lesson>/`) are generated from it. Adding a lesson means
adding a pack; nothing in `grader/` changes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LessonPackError, UnknownLessonError, UnknownNotebookError

__all__ = [
    "NotebookSpec",
    "CheckSpec",
    "ManualSpec",
    "Lesson",
    "content_root",
    "installed_packs_dir",
    "all_lessons",
    "get_lesson",
    "load_lesson",
    "identify",
]

MANIFEST = "lesson.toml"
_TOP_KEYS = {"id", "title", "description", "order", "defaults", "notebooks", "checks", "version", "manual", "scoring"}
SCORING_POLICIES = ("isolated", "as_written")
_DEFAULT_KEYS = {
    "rtol",
    "atol",
    "check_dtype",
    "cell_timeout",
    "notebook_timeout",
    "probe_timeout",
    "points",
    "partial_credit",
    "memory_mb",
}
_NOTEBOOK_KEYS = {"file", "title", "cell_timeout", "notebook_timeout", "probe_timeout", "data", "profile", "memory_mb"}
_MANUAL_KEYS = {"notebook", "points", "title", "kind", "cell"}
_CHECK_KEYS = {"notebook", "points", "hints", "rtol", "atol", "check_dtype", "hidden", "title", "partial_credit", "probe_timeout"}
_CHECK_KEYS |= {"depends"}


@dataclass(frozen=True)
class NotebookSpec:
    file: str
    title: str
    cell_timeout: float
    notebook_timeout: float
    probe_timeout: float
    data: tuple[str, ...] = ()
    profile: str | None = None
    memory_mb: int = 4096

    @property
    def stem(self) -> str:
        return Path(self.file).stem


@dataclass(frozen=True)
class CheckSpec:
    name: str
    notebook: str
    points: float
    hints: tuple[str, ...]
    rtol: float
    atol: float
    check_dtype: bool
    hidden: bool
    title: str
    partial_credit: bool
    probe_timeout: float
    depends: tuple[str, ...] | None = None  # graded names it calls; None: found in the solution code


@dataclass(frozen=True)
class ManualSpec:
    """An item graded by hand: a written answer, a code answer without tests, a task. `cell` is
    the cell's id (metadata `learn.manual`, or nbgrader's grade_id) in the student's notebook."""

    name: str
    notebook: str
    points: float
    title: str
    kind: str  # markdown | code | task
    cell: str


@dataclass
class Lesson:
    id: str
    title: str
    description: str
    order: int
    root: Path  # the pack folder: manifest, checks.py, solution notebooks, data
    exercises_dir: Path
    notebooks: list[NotebookSpec]
    checks: dict[str, CheckSpec]
    version: str = "1"
    manual: dict[str, ManualSpec] = field(default_factory=dict)
    scoring: str = "isolated"  # isolated: each function scored on its own | as_written
    _code: dict | None = field(default=None, repr=False)
    _deps: dict = field(default_factory=dict, repr=False)

    def notebook(self, file: str) -> NotebookSpec:
        for nb in self.notebooks:
            if nb.file == file or nb.stem == Path(file).stem:
                return nb
        raise UnknownNotebookError(f"lesson {self.id} has no notebook {file!r}")

    def kernel_profile(self) -> str:
        """What the kernel pool should preload: the notebooks' own profile when they all name the
        same one, else torch (what a notebook without a profile gets)."""
        profiles = {nb.profile for nb in self.notebooks}
        return profiles.pop() if len(profiles) == 1 and None not in profiles else "torch"

    def checks_for(self, notebook: NotebookSpec) -> list[CheckSpec]:
        return [c for c in self.checks.values() if c.notebook == notebook.file]

    def dependencies(self, notebook: NotebookSpec) -> dict[str, list[str]]:
        """Graded name -> the other graded names of this notebook it calls, transitively.

        Declared in the manifest (`depends = [...]`) or found in the solution notebook's code
        (`grader.notebook.calls`); used to re-check a failing function with correct helpers."""
        if notebook.file not in self._deps:
            from .notebook import calls, load_notebook

            specs = self.checks_for(notebook)
            names = {c.name for c in specs}
            found = calls(load_notebook(self.solution_path(notebook)), names)
            direct = {c.name: set(c.depends) if c.depends is not None else found.get(c.name, set()) for c in specs}
            self._deps[notebook.file] = {name: sorted(_closure(name, direct)) for name in direct}
        return self._deps[notebook.file]

    def solution_path(self, notebook: NotebookSpec) -> Path:
        return self.root / notebook.file

    def exercise_path(self, notebook: NotebookSpec) -> Path:
        return self.exercises_dir / notebook.file

    def data_files(self, notebook: NotebookSpec) -> dict[str, Path]:
        return {name: self.root / name for name in notebook.data}

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.checks.values())

    def check_code(self) -> dict:
        """The pack's checks.py, imported (trusted code: it ships with the pack)."""
        if self._code is None:
            self._code = _load_checks(self)
        return self._code

    @functools.cached_property
    def _fingerprint(self) -> str:
        return self._compute_fingerprint()

    def fingerprint(self) -> str:
        """Changes whenever any file of the pack changes (cache keys); computed once per process."""
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha256()
        for item in sorted(self.root.rglob("*")):  # every file: manifest, checks, notebooks, data, grader-only files
            if item.is_file() and "__pycache__" not in item.parts:
                h.update(str(item.relative_to(self.root)).encode())
                h.update(item.read_bytes())
        return h.hexdigest()[:16]


def _closure(name: str, direct: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(direct.get(name, ()))
    while todo:
        n = todo.pop()
        if n != name and n not in seen:
            seen.add(n)
            todo.extend(direct.get(n, ()))
    return seen


def content_root() -> Path:
    """Where the bundled content lives: inside the installed wheel, or the repo checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_content"
    return packaged if (packaged / "solutions").is_dir() else here.parent


def installed_packs_dir() -> Path:
    """Lesson packs installed with `learn fetch --from` (LEARN_HOME overrides the location)."""
    from .paths import data_dir

    return data_dir() / "packs"


def _pack_dirs() -> list[tuple[Path, Path]]:
    """(pack folder, exercises folder) for every lesson: bundled first, then installed."""
    root = content_root()
    found = []
    solutions = root / "solutions"
    if solutions.is_dir():
        for d in sorted(solutions.iterdir()):
            if (d / MANIFEST).is_file():
                found.append((d, root / "exercises" / d.name))
    packs = installed_packs_dir()
    if packs.is_dir():
        for d in sorted(packs.iterdir()):
            if (d / "pack" / MANIFEST).is_file():
                found.append((d / "pack", d / "exercises"))
    return found


def all_lessons() -> dict[str, Lesson]:
    lessons: dict[str, Lesson] = {}
    for pack, exercises in _pack_dirs():
        lesson = load_lesson(pack, exercises)
        lessons.setdefault(lesson.id, lesson)  # a bundled lesson wins over an installed namesake
    return dict(sorted(lessons.items(), key=lambda kv: (kv[1].order, kv[0])))


def get_lesson(lesson_id: str) -> Lesson:
    lessons = all_lessons()
    if lesson_id not in lessons:
        raise UnknownLessonError(lesson_id, list(lessons))
    return lessons[lesson_id]


def _fail(path: Path, where: str, problem: str) -> LessonPackError:
    return LessonPackError(f"{path}: {where}: {problem}")


def _number(path, where, value, *, positive=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, where, f"must be a number, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise _fail(path, where, f"must be {'positive' if positive else 'zero or more'}, not {value!r}")
    return float(value)


def _unknown(path, where, given: dict, allowed: set) -> None:
    extra = sorted(set(given) - allowed)
    if extra:
        raise _fail(path, where, f"unknown key(s) {extra}; allowed: {sorted(allowed)}")


def load_lesson(pack: Path, exercises_dir: Path | None = None) -> Lesson:
    """Read and validate a pack's manifest. Errors name the file and the offending key."""
    path = pack / MANIFEST
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LessonPackError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LessonPackError(f"{path}: not valid TOML: {exc}") from None
    _unknown(path, "top level", data, _TOP_KEYS)
    lesson_id = data.get("id")
    if not isinstance(lesson_id, str) or not lesson_id.isidentifier():
        raise _fail(path, "id", f"must be a simple name like 'lesson3', not {lesson_id!r}")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _fail(path, "defaults", "must be a table")
    _unknown(path, "[defaults]", defaults, _DEFAULT_KEYS)

    def setting(table: dict, key: str, where: str, fallback, positive=False):
        value = table.get(key, defaults.get(key, fallback))
        if isinstance(fallback, bool):
            if not isinstance(value, bool):
                raise _fail(path, f"{where}.{key}", f"must be true or false, not {value!r}")
            return value
        return _number(path, f"{where}.{key}", value, positive=positive)

    notebooks: list[NotebookSpec] = []
    raw_notebooks = data.get("notebooks")
    if not isinstance(raw_notebooks, list) or not raw_notebooks:
        raise _fail(path, "notebooks", "must be a non-empty array of [[notebooks]] tables")
    for i, nb in enumerate(raw_notebooks):
        where = f"notebooks[{i}]"
        if not isinstance(nb, dict):
            raise _fail(path, where, "must be a table")
        _unknown(path, where, nb, _NOTEBOOK_KEYS)
        file = nb.get("file")
        if not isinstance(file, str) or not file.endswith(".ipynb") or "/" in file or file.startswith("."):
            raise _fail(path, f"{where}.file", f"must be a notebook file name, not {file!r}")
        if not (pack / file).is_file():
            raise _fail(path, f"{where}.file", f"{file} does not exist in the pack")
        data_files = nb.get("data", [])
        if not isinstance(data_files, list) or not all(isinstance(d, str) and ".." not in d and not d.startswith("/") for d in data_files):
            raise _fail(path, f"{where}.data", "must be a list of relative file names")
        for d in data_files:
            if not (pack / d).exists():
                raise _fail(path, f"{where}.data", f"{d} does not exist in the pack")
        profile = nb.get("profile")
        if profile not in (None, "torch", "fastai", "python"):
            raise _fail(path, f"{where}.profile", "must be 'torch', 'fastai' or 'python' (no torch preloaded)")
        notebooks.append(
            NotebookSpec(
                file=file,
                title=str(nb.get("title", Path(file).stem)),
                cell_timeout=setting(nb, "cell_timeout", where, 60.0, positive=True),
                notebook_timeout=setting(nb, "notebook_timeout", where, 600.0, positive=True),
                probe_timeout=setting(nb, "probe_timeout", where, 10.0, positive=True),
                data=tuple(data_files),
                profile=profile,
                memory_mb=int(setting(nb, "memory_mb", where, 4096.0, positive=True)),
            )
        )
    files = {nb.file for nb in notebooks}
    if len(files) != len(notebooks):
        raise _fail(path, "notebooks", "a notebook is listed twice")

    checks: dict[str, CheckSpec] = {}
    raw_checks = data.get("checks", {})
    if not isinstance(raw_checks, dict):
        raise _fail(path, "checks", "must be a table of [checks.NAME] tables")
    for name, c in raw_checks.items():
        where = f"checks.{name}"
        if not isinstance(c, dict):
            raise _fail(path, where, "must be a table")
        _unknown(path, where, c, _CHECK_KEYS)
        if c.get("notebook") not in files:
            raise _fail(path, f"{where}.notebook", f"must be one of {sorted(files)}, not {c.get('notebook')!r}")
        hints = c.get("hints", [])
        if isinstance(hints, str):
            hints = [hints]
        if not isinstance(hints, list) or not all(isinstance(h, str) and h.strip() for h in hints):
            raise _fail(path, f"{where}.hints", "must be a list of non-empty strings")
        depends = c.get("depends")
        if depends is not None and (not isinstance(depends, list) or not all(isinstance(d, str) for d in depends)):
            raise _fail(path, f"{where}.depends", "must be a list of graded names")
        checks[name] = CheckSpec(
            name=name,
            notebook=c["notebook"],
            points=setting(c, "points", where, 1.0),
            hints=tuple(hints),
            rtol=setting(c, "rtol", where, 1.3e-6),
            atol=setting(c, "atol", where, 1e-5),
            check_dtype=setting(c, "check_dtype", where, True),
            hidden=bool(c.get("hidden", False)),
            title=str(c.get("title", name)),
            partial_credit=setting(c, "partial_credit", where, True),
            probe_timeout=setting(
                c, "probe_timeout", where, next(n.probe_timeout for n in notebooks if n.file == c["notebook"]), positive=True
            ),
            depends=tuple(depends) if depends is not None else None,
        )
    manual = _manual_items(path, data.get("manual", {}), files, set(checks))
    if not checks and not manual:
        raise _fail(path, "checks", "the pack grades nothing: add [checks.NAME] tables")
    for name, spec in checks.items():
        bad = [d for d in spec.depends or () if d not in checks or checks[d].notebook != spec.notebook]
        if bad:
            raise _fail(path, f"checks.{name}.depends", f"{bad} are not graded names of {spec.notebook}")
    scoring = data.get("scoring", "isolated")
    if scoring not in SCORING_POLICIES:
        raise _fail(path, "scoring", f"must be one of {list(SCORING_POLICIES)}, not {scoring!r}")
    order = data.get("order", 100)
    if isinstance(order, bool) or not isinstance(order, int):
        raise _fail(path, "order", "must be an integer")
    return Lesson(
        id=lesson_id,
        title=str(data.get("title", lesson_id)),
        description=str(data.get("description", "")),
        order=order,
        root=pack,
        exercises_dir=exercises_dir if exercises_dir is not None else pack.parent.parent / "exercises" / pack.name,
        notebooks=notebooks,
        checks=checks,
        version=str(data.get("version", "1")),
        manual=manual,
        scoring=scoring,
    )


def _manual_items(path: Path, raw, files: set[str], check_names: set[str]) -> dict[str, ManualSpec]:
    if not isinstance(raw, dict):
        raise _fail(path, "manual", "must be a table of [manual.NAME] tables")
    items: dict[str, ManualSpec] = {}
    for name, m in raw.items():
        where = f"manual.{name}"
        if not isinstance(m, dict):
            raise _fail(path, where, "must be a table")
        _unknown(path, where, m, _MANUAL_KEYS)
        if name in check_names:
            raise _fail(path, where, "has the name of a check")
        if m.get("notebook") not in files:
            raise _fail(path, f"{where}.notebook", f"must be one of {sorted(files)}, not {m.get('notebook')!r}")
        kind = m.get("kind", "markdown")
        if kind not in ("markdown", "code", "task"):
            raise _fail(path, f"{where}.kind", f"must be 'markdown', 'code' or 'task', not {kind!r}")
        items[name] = ManualSpec(name=name, notebook=m["notebook"], points=_number(path, f"{where}.points", m.get("points", 1)),
                                 title=str(m.get("title", name)), kind=kind, cell=str(m.get("cell", name)))  # fmt: skip
    return items


def _load_checks(lesson: Lesson) -> dict:
    from .checks import Check

    path = lesson.root / "checks.py"
    if not path.is_file():
        raise LessonPackError(f"{lesson.root}: checks.py is missing")
    module_name = f"_learn_checks_{lesson.id}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # inspect.getsource needs the module registered
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise LessonPackError(f"{path}: failed to import: {type(exc).__name__}: {exc}") from None
    found = {v.name: v for v in vars(module).values() if isinstance(v, Check)}
    missing = sorted(set(lesson.checks) - set(found))
    extra = sorted(set(found) - set(lesson.checks))
    if missing:
        raise LessonPackError(f"{path}: no @check for manifest entries {missing}")
    if extra:
        raise LessonPackError(f"{path}: @check for names not in lesson.toml: {extra}")
    return found


def identify(nb, path: Path, lessons: dict[str, Lesson] | None = None) -> tuple[Lesson, NotebookSpec]:
    """Which exercise a notebook is: its `learn` metadata first, then its file name."""
    lessons = lessons if lessons is not None else all_lessons()
    meta = nb.get("metadata", {}).get("learn", {}) if isinstance(nb.get("metadata"), dict) else {}
    if isinstance(meta, dict) and meta.get("lesson") in lessons:
        lesson = lessons[meta["lesson"]]
        try:
            return lesson, lesson.notebook(str(meta.get("notebook", path.name)))
        except UnknownNotebookError:
            pass
    matches = [(lesson, nb_spec) for lesson in lessons.values() for nb_spec in lesson.notebooks if nb_spec.stem == path.stem]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{lid}/{n.file}" for lid, lesson in lessons.items() for n in lesson.notebooks)
    raise UnknownNotebookError(
        f"{path}: cannot tell which exercise this notebook is (no learn metadata, and its name matches "
        f"{'several' if matches else 'no'} exercise). Known exercises: {known}"
    )
