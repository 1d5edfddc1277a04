"""`learn grade`: grade a whole class into a gradebook, in parallel, and survive anything.

    SUBMISSIONS/ (or a zip of it)      discover: one folder per student, notebooks matched to the
      alice/01_quadratic.ipynb   ──►   assignment by name (or learn metadata); missing and extra
      bob/...                          ones noted; a content hash per submission
                                             │
                        gradebook: skip unchanged (no kernel is started for them), claim the rest
                                             │
    executor ── (grader.executor: a local warm KernelPool, or Dask) claims as it has room; each
                 submission's notebooks one after another (one fresh forked kernel per notebook),
                 inside a wall-clock budget
                                             │
                 RunResult per student ──► one transaction in the gradebook ──► progress

It is the same engine as `learn check` (`grading.Grader`, one shared pool, reference results
computed once per notebook and cached on disk; every student gets the same seeded inputs).
A crash, hang or garbage notebook becomes that student's error and the batch goes on.

Stricter than `learn check` in one respect: a notebook that kills its Python kernel while running
top to bottom (os._exit, a segfault, the memory limit) scores no points, because it would not
survive "Restart & Run All" - the feedback says which cell did it and what each function would
have scored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, manual
from .assignments import default_seed
from .errors import ExecutionError, LearnError, LessonPackError, SandboxRequiredError, UnknownLessonError
from .executor import (  # noqa: F401 - grade_notebooks, finish_notebook, stand_in, isolation_report: their old home
    Executor,
    GradingJob,
    LocalExecutor,
    default_budget,
    finish_notebook,
    grade_notebooks,
    isolation_report,
    stand_in,
)
from .gradebook import LEASE_S, Gradebook, submission_status
from .inert import markup, terminal
from .lessons import Lesson, all_lessons, load_lesson
from .results import RunResult

__all__ = [
    "Submission",
    "BatchSummary",
    "resolve_assignment",
    "guess_assignment",
    "open_submissions",
    "discover",
    "safe_extract",
    "assignment_fingerprint",
    "grade_class",
    "require_isolation",
    "PlainProgress",
    "RichProgress",
    "open_executor",
]

POLICY_VERSION = "1"  # bump when the scoring policy here changes: every submission is re-graded
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_FILE = 200 * 2**20
MAX_ZIP_TOTAL = 4 * 2**30
MACHINERY_RETRIES = 3  # a submission that keeps breaking the grading machinery is recorded as an error
_SKIP_DIRS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}


# ---------------------------------------------------------------------------------------------
# the assignment


def resolve_assignment(value: str) -> Lesson:
    """A lesson id, a lesson-pack folder, or a `learn assign` output folder (its source/)."""
    path = Path(value)
    if path.is_dir():
        for pack in (path, path / "source"):
            if (pack / "lesson.toml").is_file():
                return load_lesson(pack, exercises_dir=path / "release" if pack != path else None)
    lessons = all_lessons()
    if value in lessons:
        return lessons[value]
    if path.is_dir():
        from .assign import nbgrader_hint

        hint = nbgrader_hint(path)
        if hint:
            raise LearnError(hint)
        raise LearnError(f"{path} is not a lesson pack (no lesson.toml) nor a `learn assign` output folder (no source/lesson.toml)")
    raise UnknownLessonError(value, list(lessons))


def guess_assignment(names: set[str]) -> Lesson:
    """The installed lesson whose notebooks the submitted notebook names match best."""
    scores = []
    for lesson in all_lessons().values():
        stems = {spec.stem.lower() for spec in lesson.notebooks}
        hits = sum(1 for n in names if Path(n).stem.lower() in stems)
        if hits:
            scores.append((hits, lesson))
    scores.sort(key=lambda s: -s[0])
    if not scores or (len(scores) > 1 and scores[0][0] == scores[1][0]):
        raise LearnError("cannot tell which assignment these submissions are for: pass --assignment LESSON (or a pack folder)")
    return scores[0][1]


def assignment_fingerprint(lesson: Lesson, seed: int, cell_timeout: float | None, timeout: float | None) -> str:
    """What a grade depends on besides the submission: the pack, the inputs, the limits, the policy."""
    data = [lesson.fingerprint(), seed, cell_timeout, timeout, POLICY_VERSION]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# finding submissions


@dataclass
class Submission:
    """One student's notebooks, matched to the assignment's notebooks."""

    student: str
    notebooks: dict[str, Path]  # assignment notebook file -> the submitted file
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    content_hash: str = ""
    folder: Path | None = None

    def label(self, path: Path) -> str:
        """How a submitted file is named in results: student/relative path (never a temp folder)."""
        try:
            return f"{self.student}/{path.relative_to(self.folder)}" if self.folder else str(path)
        except ValueError:
            return str(path)

    @property
    def problems(self) -> list[str]:
        out = [f"missing notebook: {name}" for name in self.missing]
        out += [f"extra notebook (not part of the assignment, ignored): {name}" for name in self.extra]
        return out + self.notes


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "__")) and path.name not in _SKIP_DIRS


def _student_notebooks(folder: Path) -> tuple[list[Path], list[str]]:
    """Notebooks anywhere under a student's folder (not checkpoints, backups or hidden files)."""
    found, notes = [], []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if _visible(Path(d)) and not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = Path(root) / name
            if not name.endswith(".ipynb") or not _visible(path) or ".bak." in name:
                continue
            if path.is_symlink():
                notes.append(f"{path.relative_to(folder)} is a symbolic link (ignored)")
                continue
            found.append(path)
    return found, notes


def _normal(name: str) -> str:
    """A file stem without the copy markers that downloads and Jupyter add ('-Copy1', ' (2)')."""
    stem = Path(name).stem.lower()
    stem = re.sub(r"(\s*\(\d+\)|[-_ ]copy\d*)+$", "", stem)
    return re.sub(r"[^a-z0-9]", "", stem)


def _metadata_notebook(path: Path) -> str | None:
    """The exercise a notebook says it is (learn metadata written by `learn fetch`/`assign`)."""
    try:
        if path.stat().st_size > 50 * 2**20:
            return None
        meta = json.loads(path.read_bytes()).get("metadata", {}).get("learn", {})
        value = meta.get("notebook") if isinstance(meta, dict) else None
        return value if isinstance(value, str) else None
    except (OSError, ValueError, AttributeError, RecursionError):
        return None


def match_notebooks(files: list[Path], lesson: Lesson) -> tuple[dict[str, Path], list[str], list[str], list[str]]:
    """(assignment file -> submitted file, missing, extra, notes): by exact name, then by the
    notebook's learn metadata, then by name without copy markers."""
    wanted = {spec.file: spec for spec in lesson.notebooks}
    matched: dict[str, Path] = {}
    rest = []
    for path in files:
        if path.name in wanted and path.name not in matched:
            matched[path.name] = path
        else:
            rest.append(path)
    for rule in (lambda p: _metadata_notebook(p), lambda p: next((f for f in wanted if _normal(f) == _normal(p.name)), None)):
        left = []
        for path in rest:
            target = rule(path)
            if target in wanted and target not in matched:
                matched[target] = path
            else:
                left.append(path)
        rest = left
    notes = [f"{p.name} matched {target}" for target, p in matched.items() if p.name != target]
    missing = [f for f in wanted if f not in matched]
    extra = [p.name for p in rest]
    return matched, missing, extra, notes


def _hash_submission(matched: dict[str, Path], lesson: Lesson) -> str:
    h = hashlib.sha256()
    for spec in lesson.notebooks:
        h.update(spec.file.encode() + b"\0")
        path = matched.get(spec.file)
        if path is None:
            h.update(b"<missing>")
            continue
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(2**20), b""):
                    h.update(chunk)
        except OSError as exc:
            h.update(f"<unreadable {exc}>".encode())
        h.update(b"\0")
    return h.hexdigest()


def discover(root: Path, lesson: Lesson | None = None) -> tuple[list[Submission], list[str], Lesson]:
    """Submissions under `root` (a folder per student). Returns (submissions, warnings, lesson);
    with no lesson given, it is guessed from the notebooks' names."""
    root = Path(root)
    warnings: list[str] = []
    folders = []
    for child in sorted(root.iterdir(), key=lambda p: p.name):
        if not _visible(child):
            continue
        if child.is_symlink():
            warnings.append(f"{child.name}: a symbolic link, not a student folder (ignored)")
        elif child.is_dir():
            folders.append(child)
        elif child.suffix == ".ipynb":
            warnings.append(f"{child.name}: a notebook outside any student folder (ignored; expected SUBMISSIONS/<student>/*.ipynb)")
    if not folders:
        raise LearnError(f"no student folders in {root}: expected SUBMISSIONS/<student>/*.ipynb (or a zip of such folders)")
    found = {folder.name: _student_notebooks(folder) for folder in folders}
    if lesson is None:
        lesson = guess_assignment({p.name for files, _ in found.values() for p in files})
    subs = []
    for student, (files, notes) in found.items():
        matched, missing, extra, match_notes = match_notebooks(files, lesson)
        subs.append(Submission(student, matched, missing, extra, notes + match_notes, _hash_submission(matched, lesson), root / student))
    return subs, warnings, lesson


# ---------------------------------------------------------------------------------------------
# zip files, as learning management systems export them


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "path leaves the folder ('..')"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # devices, fifos, sockets (no type bits: a plain file)
        return "not a regular file"
    if info.flag_bits & 0x1:
        return "encrypted"
    return None


def safe_extract(archive: Path, dest: Path, *, max_total: int | None = None, max_file: int | None = None,
                 max_members: int | None = None) -> list[str]:  # fmt: skip
    """Extract a zip without trusting it: unsafe entries (absolute paths, '..', links, devices)
    are skipped with a warning; sizes are limited per file, in total and in number of entries,
    counting the bytes actually inflated (a zip bomb's declared sizes lie). The limits default to
    learn grade's (MAX_ZIP_*); the course server passes smaller ones."""
    max_total = MAX_ZIP_TOTAL if max_total is None else max_total
    max_file = MAX_ZIP_FILE if max_file is None else max_file
    max_members = MAX_ZIP_MEMBERS if max_members is None else max_members
    warnings: list[str] = []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise LearnError(f"{archive}: not a readable zip file ({exc})") from None
    with zf:
        members = zf.infolist()
        if len(members) > max_members:
            raise LearnError(f"{archive}: {len(members)} entries, over the limit of {max_members}")
        total = 0
        for info in members:
            name = info.filename.replace("\\", "/")
            problem = _member_problem(info)
            if problem:
                warnings.append(f"{archive.name}: skipped {name!r} ({problem})")
                continue
            parts = [p for p in name.split("/") if p not in ("", ".")]
            if not parts or any(p in _SKIP_DIRS for p in parts):
                continue
            target = dest.joinpath(*parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if info.file_size > max_file:
                warnings.append(f"{archive.name}: skipped {name!r} ({info.file_size / 2**20:.0f} MB, over {max_file / 2**20:g} MB)")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(2**20):
                        written += len(chunk)
                        total += len(chunk)
                        if written > max_file or total > max_total:
                            raise LearnError(f"{archive}: inflates to more than the limit ({max_total / 2**30:g} GB in total, "
                                             f"{max_file / 2**20:g} MB per file) - refusing it")  # fmt: skip
                        out.write(chunk)
            except FileExistsError:
                warnings.append(f"{archive.name}: skipped {name!r} (appears twice)")
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
                warnings.append(f"{archive.name}: skipped {name!r} (damaged: {exc})")
                with contextlib.suppress(OSError):
                    target.unlink()
    return warnings


def _class_root(folder: Path) -> Path:
    """Descend through a single wrapping folder ('export/alice/...' -> 'export')."""
    while True:
        children = [c for c in folder.iterdir() if _visible(c)]
        dirs = [c for c in children if c.is_dir()]
        if len(children) == 1 and dirs and any(g.is_dir() or g.suffix == ".zip" for g in dirs[0].iterdir() if _visible(g)):
            folder = dirs[0]
        else:
            return folder


@contextlib.contextmanager
def open_submissions(path: Path) -> Iterator[tuple[Path, list[str]]]:
    """The class folder to grade, and warnings. A zip is extracted (safely) into a temporary
    folder that is removed afterwards; students' own zips inside it become their folders."""
    path = Path(path)
    if path.is_dir():
        yield path, []
        return
    if not path.exists():
        raise LearnError(f"{path}: no such folder or zip file")
    if not zipfile.is_zipfile(path):
        raise LearnError(f"{path}: expected a folder of student folders or a zip of them")
    tmp = Path(tempfile.mkdtemp(prefix="learn-subs-"))
    try:
        warnings = safe_extract(path, tmp)
        root = _class_root(tmp)
        for inner in sorted(root.glob("*.zip")):
            student_dir = root / inner.stem
            if not student_dir.exists():
                student_dir.mkdir()
                warnings += safe_extract(inner, student_dir)
            inner.unlink()
        yield root, warnings
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# results for what could not run


# ---------------------------------------------------------------------------------------------
# fail closed: other people's code runs only inside filesystem isolation, unless allowed


ALLOW_UNSANDBOXED_ENV = "LEARN_ALLOW_UNSANDBOXED"
_worker_reports: dict[str, dict] = {}  # scheduler address -> its workers' isolation reports (asked once per process)
_isolation_warned: set[str] = set()  # a waived refusal is warned about once (grade_folder, then grade_class)


def unsandboxed_allowed(flag: bool = False) -> bool:
    """--allow-unsandboxed, or LEARN_ALLOW_UNSANDBOXED=1 (for scripted CI rows without bubblewrap)."""
    return flag or os.environ.get(ALLOW_UNSANDBOXED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def require_isolation(allow: bool = False, scheduler: str | None = None, warn: Callable[[str], None] | None = None) -> None:
    """Refuse (SandboxRequiredError) to run other people's notebooks where kernels would not be
    inside bubblewrap - here, or on the Dask workers of `scheduler` - unless `allow` (or
    LEARN_ALLOW_UNSANDBOXED=1); allowed, it warns once. Called before the gradebook is touched."""
    if scheduler:
        from .cluster import worker_isolation

        if scheduler not in _worker_reports:
            _worker_reports[scheduler] = worker_isolation(scheduler)
        reports = _worker_reports[scheduler]
    else:
        reports = {"": isolation_report()}
    exposed = {where: r for where, r in reports.items() if r.get("mode") != "bwrap"}
    if exposed:
        where = "" if not scheduler else f" on Dask worker{'s' * (len(exposed) != 1)} {', '.join(sorted(exposed))}"
        first = next(iter(exposed.values()))
        if not unsandboxed_allowed(allow):
            raise SandboxRequiredError(
                f"refusing to grade other people's notebooks without filesystem isolation{where}: {first['why']}, "
                f"so their code would run with resource limits only (sandbox: {first['mode']}).\n"
                f"  {first['exposure']}\n"
                f"  Fix: {first['fix']}.\n"
                "  Override, only for notebooks you trust or on a machine you can throw away: pass --allow-unsandboxed "
                f"(or set {ALLOW_UNSANDBOXED_ENV}=1)."
            )  # fmt: skip
        message = (f"WARNING: grading without filesystem isolation{where} (--allow-unsandboxed or {ALLOW_UNSANDBOXED_ENV}=1): "
                   f"{first['why']}. {first['exposure']}")  # fmt: skip
        if message in _isolation_warned:
            return
        _isolation_warned.add(message)
        if warn is not None:
            warn(message)
        else:
            import sys

            print(f"learn: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# grading


@dataclass
class Outcome:
    student: str
    state: str  # graded | unchanged | busy | failed
    status: str | None = None  # ok | failed | error
    points: float = 0.0
    max_points: float = 0.0
    duration: float = 0.0
    message: str = ""


@dataclass
class BatchSummary:
    assignment: str
    total: int = 0
    graded: int = 0
    unchanged: int = 0
    busy: int = 0
    failed: int = 0  # the grading machinery failed: graded again next run
    ok: int = 0
    not_ok: int = 0
    errors: int = 0
    duration: float = 0.0
    warnings: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if outcome.state == "graded":
            self.graded += 1
            self.ok += outcome.status == "ok"
            self.not_ok += outcome.status == "failed"
            self.errors += outcome.status == "error"
        elif outcome.state == "unchanged":
            self.unchanged += 1
        elif outcome.state == "busy":
            self.busy += 1
        else:
            self.failed += 1


class PlainProgress:
    """One line per submission (for logs and pipes)."""

    def __init__(self, echo: Callable[[str], None] = print):
        self.echo = echo

    def start(self, total: int, skipped: int) -> None:
        self.echo(f"grading {total} submission{'s' * (total != 1)}" + (f" ({skipped} unchanged, skipped)" if skipped else ""))

    def update(self, outcome: Outcome, summary: BatchSummary) -> None:
        student, message = terminal(outcome.student, single_line=True), terminal(outcome.message, single_line=True)
        if outcome.state == "graded":
            self.echo(f"  {outcome.status:6} {student}: {outcome.points:g}/{outcome.max_points:g} points ({outcome.duration:.1f}s)"
                      + (f" - {message}" if message else ""))  # fmt: skip
        elif outcome.state == "busy":
            self.echo(f"  busy   {student}: being graded by another `learn grade`")
        elif outcome.state == "failed":
            self.echo(f"  FAILED {student}: {message} (will be retried)")

    def stop(self) -> None:
        pass


class RichProgress:
    """A live progress bar with ok / failed / error counts and an ETA (for terminals), and the students
    being graded right now, each with how long it has taken so far."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.in_flight: dict[str, float] = {}  # student -> when their grading started
        self.progress = Progress(
            TextColumn("[bold]grading"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} ok[/] [yellow]{task.fields[failed]} failed[/] [red]{task.fields[error]} error[/]"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            _in_flight_column(self.in_flight),
            console=console,
            transient=False,
        )
        self.task = None

    def started(self, student: str) -> None:
        self.in_flight[student] = time.monotonic()

    def start(self, total: int, skipped: int) -> None:
        if skipped:
            self.progress.console.print(f"{skipped} unchanged submission{'s' * (skipped != 1)} skipped")
        if total:
            self.progress.start()
            self.task = self.progress.add_task("grading", total=total, ok=0, failed=0, error=0)

    def update(self, outcome: Outcome, summary: BatchSummary) -> None:
        self.in_flight.pop(outcome.student, None)
        if outcome.state == "failed":
            self.progress.console.print(f"[red]grading {markup(outcome.student)} failed:[/] {markup(outcome.message)} (will be retried)")
        elif outcome.message:  # missing or extra notebooks, a notebook that could not be graded
            self.progress.console.print(f"[yellow]{markup(outcome.student)}:[/] {markup(outcome.message)}")
        if self.task is not None:
            self.progress.update(self.task, advance=1, ok=summary.ok, failed=summary.not_ok, error=summary.errors + summary.failed)

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()


def _in_flight_column(in_flight: dict[str, float]):
    from rich.progress import ProgressColumn
    from rich.text import Text

    class InFlight(ProgressColumn):
        """`now: alice 12s, bob 3s` - the students being graded, longest first (at most four)."""

        def render(self, task) -> Text:
            now = time.monotonic()
            running = sorted(in_flight.items(), key=lambda kv: kv[1])[:4]
            shown = ", ".join(f"{terminal(s, single_line=True)[:24]} {now - t:.0f}s" for s, t in running)
            more = f" +{len(in_flight) - 4}" if len(in_flight) > 4 else ""
            return Text(f"now: {shown}{more}" if shown else "", style="dim")

    return InFlight()


def open_executor(jobs: int, scheduler: str | None = None, profile: str = "torch") -> Executor:
    """The executor of a run: a local warm pool of `jobs` kernels (preloading `profile`), or the
    Dask cluster at `scheduler`."""
    if scheduler:
        from .cluster import DaskExecutor

        return DaskExecutor(scheduler)
    return LocalExecutor(jobs, profile=profile)


class _Batch:
    """One run of `learn grade` over the submissions to grade (see module docstring): claim in the
    gradebook as the executor has room, grade through it, record."""

    def __init__(self, gradebook: Gradebook, lesson: Lesson, seed: int, fingerprint: str, *, jobs: int, regrade: bool,
                 cell_timeout: float | None, timeout: float | None, progress, summary: BatchSummary,
                 scheduler: str | None = None, allow_unsandboxed: bool = False):  # fmt: skip
        self.gb, self.lesson, self.seed, self.fingerprint = gradebook, lesson, seed, fingerprint
        self.scheduler, self.allow_unsandboxed = scheduler, allow_unsandboxed
        self.jobs, self.regrade, self.cell_timeout, self.progress, self.summary = jobs, regrade, cell_timeout, progress, summary
        self.budget = timeout or default_budget(lesson)
        self.in_flight: set[str] = set()
        self.abort: LearnError | None = None

    def key(self, sub: Submission) -> tuple[str, str, str]:
        return (sub.content_hash, __version__, self.fingerprint)

    def job(self, sub: Submission) -> GradingJob:
        return GradingJob(self.lesson, sub.student, sub.notebooks, self.seed, self.budget, self.cell_timeout, sub.notes,
                          sub.folder, self.allow_unsandboxed)  # fmt: skip

    async def run(self, todo: list[Submission]) -> None:
        async with open_executor(self.jobs, self.scheduler, profile=self.lesson.kernel_profile()) as executor:
            # references first (one kernel per notebook, shared by every student, cached on disk):
            # a reference that fails stops the batch before any student is claimed
            await executor.prepare(self.lesson, self.seed, self.cell_timeout)
            heartbeat = asyncio.ensure_future(self._heartbeat())
            try:
                await self._dispatch(todo, executor)
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
        if self.abort is not None:
            raise self.abort

    async def _dispatch(self, todo: list[Submission], executor: Executor) -> None:
        tasks: set[asyncio.Task] = set()
        try:
            for sub in todo:
                if self.abort is not None:
                    break
                await executor.acquire()  # backpressure: wait until the executor has room, then claim
                state = self.gb.claim(sub.student, self.lesson.id, self.key(sub), regrade=self.regrade)
                if state != "claimed":
                    await executor.release()
                    self._report(Outcome(sub.student, state))
                    continue
                self.in_flight.add(sub.student)
                if hasattr(self.progress, "started"):
                    self.progress.started(sub.student)
                tasks.add(asyncio.ensure_future(self._grade(sub, executor)))
                for task in [t for t in tasks if t.done()]:
                    tasks.discard(task)
                    task.result()  # a bug in our own code stops the batch, as before
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _grade(self, sub: Submission, executor: Executor) -> None:
        started = time.monotonic()
        try:
            run = await executor.run(self.job(sub))
        except SandboxRequiredError as exc:  # a worker without bubblewrap: claim nothing more, say why
            self.gb.release(self.lesson.id, sub.student)
            self.abort = self.abort or exc
            return
        except ExecutionError as exc:  # the machinery failed (not the student): graded again next run
            self.gb.release(self.lesson.id, sub.student)
            self._report(Outcome(sub.student, "failed", message=str(exc)))
            return
        except BaseException:
            self.gb.release(self.lesson.id, sub.student)
            raise
        finally:
            self.in_flight.discard(sub.student)
            await executor.release()
        run.duration = time.monotonic() - started
        self._report(self.store(sub, run))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 4)
            with contextlib.suppress(LearnError):
                self.gb.renew(self.lesson.id, sorted(self.in_flight))

    def _report(self, outcome: Outcome) -> None:
        self.summary.add(outcome)
        if self.progress is not None:
            self.progress.update(outcome, self.summary)

    def store(self, sub: Submission, run: RunResult) -> Outcome:
        """Record a graded submission (from here or from a cluster worker) in the gradebook."""
        machinery = [nb for nb in run.notebooks if nb.error_kind in ("execution", "lesson")]
        status = submission_status(run)
        first_error = next((nb for nb in run.notebooks if nb.error), None)
        error = f"{Path(first_error.path).name}: {first_error.error}" if first_error else None
        failed = bool(machinery) and (
            machinery[0].error_kind == "lesson" or self.gb.attempts(sub.student, self.lesson.id) + 1 < MACHINERY_RETRIES
        )
        problems = sub.problems + manual.tamper_warnings(self.lesson, sub.notebooks)
        stored = self.gb.record(sub.student, self.lesson.id, self.key(sub), run, status=status, problems=problems,
                                error=error, error_kind=first_error.error_kind if first_error else None, failed=failed)  # fmt: skip
        if failed:
            if machinery[0].error_kind == "lesson":
                self.abort = LessonPackError(f"the assignment itself is broken: {machinery[0].error}")
            return Outcome(sub.student, "failed", status, run.points, run.max_points, run.duration, machinery[0].error or "")
        if not stored:
            return Outcome(sub.student, "busy", message="another process took this submission over")
        manual.record_answers(self.gb, self.lesson, sub.student, sub.notebooks)
        message = "; ".join(problems[:3] + ([error] if error and status == "error" else []))
        return Outcome(sub.student, "graded", status, run.points, run.max_points, run.duration, message)


def grade_class(submissions: list[Submission], lesson: Lesson, gradebook: Gradebook, *, jobs: int | None = None,
                regrade: bool = False, seed: int | None = None, cell_timeout: float | None = None,
                timeout: float | None = None, progress=None, scheduler: str | None = None,
                allow_unsandboxed: bool = False, warn: Callable[[str], None] | None = None) -> BatchSummary:  # fmt: skip
    """Grade every submission that is new or changed into `gradebook`; the library form of
    `learn grade`. Unchanged submissions are skipped without starting a kernel. With `scheduler`
    (a Dask scheduler address) the grading runs on that cluster's workers (see grader.cluster).
    Refuses without bubblewrap unless `allow_unsandboxed` (see `require_isolation`)."""
    started = time.monotonic()
    allow_unsandboxed = unsandboxed_allowed(allow_unsandboxed)
    require_isolation(allow_unsandboxed, scheduler, warn=warn)
    seed = gradebook.seed(lesson.id, seed if seed is not None else default_seed(lesson), force=seed is not None)
    fingerprint = assignment_fingerprint(lesson, seed, cell_timeout, timeout)
    summary = BatchSummary(lesson.id, total=len(submissions))
    keys = {s.student: (s.content_hash, __version__, fingerprint) for s in submissions}
    unchanged = set() if regrade else gradebook.unchanged(lesson.id, keys)
    for student in sorted(unchanged):
        summary.add(Outcome(student, "unchanged"))
    todo = [s for s in submissions if s.student not in unchanged]
    jobs = max(1, jobs or os.cpu_count() or 1)
    if progress is not None:
        progress.start(len(todo), len(unchanged))
    try:
        if todo:
            batch = _Batch(gradebook, lesson, seed, fingerprint, jobs=min(jobs, len(todo)), regrade=regrade,
                           cell_timeout=cell_timeout, timeout=timeout, progress=progress, summary=summary, scheduler=scheduler,
                           allow_unsandboxed=allow_unsandboxed)  # fmt: skip
            asyncio.run(batch.run(todo))
    finally:
        if progress is not None:
            progress.stop()
    summary.duration = time.monotonic() - started
    return summary


def grade_folder(submissions: Path, gradebook_path: Path, assignment: str | None = None, *,
                 warn: Callable[[str], None] | None = None, allow_unsandboxed: bool = False, **options) -> BatchSummary:  # fmt: skip
    """Discover and grade in one call (a class folder or a zip of it): what `learn grade` runs.
    Discovery warnings (unsafe zip entries, stray files) go to `warn` before grading starts.
    Without bubblewrap it refuses (SandboxRequiredError) once the input is known to be good and
    before the gradebook is touched, unless `allow_unsandboxed` or LEARN_ALLOW_UNSANDBOXED=1."""
    lesson = resolve_assignment(assignment) if assignment else None
    with open_submissions(submissions) as (root, warnings):
        subs, more, lesson = discover(root, lesson)
        for line in warnings + more:
            if warn is not None:
                warn(line)
        require_isolation(allow_unsandboxed, options.get("scheduler"), warn=warn)
        with Gradebook(gradebook_path) as gb:
            summary = grade_class(subs, lesson, gb, allow_unsandboxed=allow_unsandboxed, warn=warn, **options)
    summary.warnings = warnings + more
    return summary
