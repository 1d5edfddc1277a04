"""The `learn` command: a thin click layer. Each command parses, calls the library, renders.

Library errors (`LearnError`) become a one-line message and the error's exit code; anything
else is a bug and is reported as one (LEARN_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

import click

from .errors import LearnError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def make_console(stderr: bool = False):
    """A rich console that wraps for terminals but never breaks lines in logs and pipes."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


def _err(message: str) -> None:
    from .inert import terminal

    click.echo(f"learn: {terminal(message)}", err=True)  # messages quote file and folder names from learners


def handle_errors(fn):
    """Turn library errors into clean messages and exit codes - never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LearnError as exc:
            _err(str(exc))
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            _err("interrupted")
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug in learn itself
            if os.environ.get("LEARN_DEBUG"):
                raise
            _err(f"internal error: {type(exc).__name__}: {exc} (set LEARN_DEBUG=1 for details, and please report it)")
            sys.exit(3)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="learn-grader", prog_name="learn")
def cli():
    """Auto-graded exercises and quizzes for fast.ai lesson 3 and fastbook chapter 4.

    \b
    Learners:     learn fetch lesson3  ->  edit the notebooks  ->  learn check lesson3
    Instructors:  learn assign, learn grade, learn export, learn dashboard
    """


# ---------------------------------------------------------------------------------------------
# lessons


@cli.command("list")
@click.option("--dir", "work_dir", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="Folder where lessons are fetched (to show your status).")  # fmt: skip
@handle_errors
def list_cmd(work_dir: Path):
    """List the lessons you can fetch, and your status in each."""
    from rich.table import Table

    from .lessons import all_lessons
    from .workspace import lesson_status

    table = Table(box=None, padding=(0, 2))
    for col in ("lesson", "title", "notebooks", "points", "your status"):
        table.add_column(col)
    for lesson in all_lessons().values():
        table.add_row(lesson.id, lesson.title, str(len(lesson.notebooks)), f"{lesson.max_points:g}", lesson_status(lesson, work_dir))
    make_console().print(table)


@cli.command()
@click.argument("lesson_id", metavar="LESSON")
@click.option("--dir", "dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put the notebooks (default: ./LESSON).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace notebooks you changed (each is saved first as NAME.<time>.bak.ipynb).")
@click.option(
    "--from", "source", metavar="PATH_OR_URL", default=None, help="Install the lesson pack from a folder, a zip file or a zip URL first."
)
@handle_errors
def fetch(lesson_id: str, dest: Path | None, force: bool, source: str | None):
    """Copy a lesson's exercise notebooks into your working folder.

    Never overwrites a notebook you have changed.
    """
    from .fetch import fetch_lesson, install_pack
    from .lessons import get_lesson
    from .workspace import check_command

    if source:
        lesson = install_pack(source, expected_id=lesson_id)
        click.echo(f"installed lesson pack {lesson.id}: {lesson.title}")
    else:
        lesson = get_lesson(lesson_id)
    dest = dest if dest is not None else Path(lesson.id)
    report = fetch_lesson(lesson, dest, force=force)
    for label, names in (("new", report.copied), ("updated", report.updated), ("up to date", report.unchanged)):
        for name in names:
            click.echo(f"  {label:10} {dest / name}")
    for name in report.kept:
        click.echo(f"  {'kept':10} {dest / name}  (you changed it; --force replaces it after a backup)")
    for name in report.backups:
        click.echo(f"  {'backup':10} {dest / name}")
    click.echo(f"Next: open the notebooks in {dest}/, fill in the functions, then run `{check_command(lesson.id, dest)}`.")


@cli.command()
@click.argument("lessons", nargs=-1, metavar="[LESSON]...")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Write here instead of exercises/LESSON.")
@click.option(
    "--check", "check_only", is_flag=True, help="Do not write; exit 1 if the committed exercises differ from what generation gives."
)
@handle_errors
def generate(lessons: tuple[str, ...], out: Path | None, check_only: bool):
    """Generate exercise notebooks from the solution notebooks (solution markers -> stubs)."""
    import filecmp
    import tempfile

    from .generate import generate_lesson
    from .lessons import all_lessons, get_lesson

    chosen = [get_lesson(x) for x in lessons] if lessons else list(all_lessons().values())
    drift = []
    for lesson in chosen:
        if check_only:
            with tempfile.TemporaryDirectory() as tmp:
                for path in generate_lesson(lesson, Path(tmp)):
                    committed = lesson.exercises_dir / path.relative_to(tmp)
                    if not committed.is_file() or not filecmp.cmp(path, committed, shallow=False):
                        drift.append(str(committed))
        else:
            target = out / lesson.id if out is not None and len(chosen) > 1 else out
            for path in generate_lesson(lesson, target):
                click.echo(f"  wrote {path}")
    if check_only:
        if drift:
            for path in drift:
                _err(f"out of date: {path}")
            _err("run `learn generate` and commit the result")
            sys.exit(EXIT_FAILED)
        click.echo("exercises are up to date")


@cli.command("new")
@click.argument("pack", metavar="PACK")
@click.option("--dir", "dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the pack (default: ./PACK); it must not exist or be empty.")  # fmt: skip
@click.option("--title", default=None, help="The lesson's title (default: 'PACK: an affine map').")
@handle_errors
def new(pack: str, dest: Path | None, title: str | None):
    """Start a lesson pack that passes its own self-test: lesson.toml, checks.py, a solution notebook.

    The example (an affine map, graded with fixed and random cases, a probe and a named mistake)
    is there to be replaced by your lesson; `learn assign DIR` proves the checks at every step.
    """
    from .scaffold import new_pack

    made = new_pack(pack, dest, title=title)
    click.echo(f"created lesson pack {made.lesson.id} in {made.root}/")
    for path in made.files:
        click.echo(f"  {path}")
    click.echo(f"Next: `learn assign {made.root}` proves its checks (they pass on the solution and fail on the student version);")
    click.echo("then replace the example with your lesson: see the authoring guide of the documentation.")


# ---------------------------------------------------------------------------------------------
# checking


@cli.command()
@click.argument("targets", nargs=-1, metavar="[LESSON | NOTEBOOK]...")
@click.option("--dir", "work_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding the notebooks (default: ./LESSON, or the current folder).")  # fmt: skip
@click.option("--only", multiple=True, metavar="NAME", help="Grade only this function (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True), default=None,
              help="Also write the results as JSON here ('-' for stdout).")  # fmt: skip
@click.option("--seed", type=int, default=None, help="Seed for the randomized inputs (printed with every result).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Kernels to run at once when grading in this process (--no-service; default: 2 or your core count).")  # fmt: skip
@click.option("--cell-timeout", type=click.FloatRange(min=0.5), default=None, metavar="SECONDS",
              help="Stop any cell running longer than this (the lesson's own limit applies if lower).")  # fmt: skip
@click.option("--no-cache", is_flag=True, help="Re-run notebooks even if they have not changed since the last check.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the HTML report here (default: learn-report.html next to the notebooks).")  # fmt: skip
@click.option("--no-html", is_flag=True, help="Do not write the HTML report.")
@click.option("-v", "--verbose", is_flag=True, help="Show details for passing functions too.")
@click.option("--no-service", is_flag=True, help="Grade in this process, not in your warm grading service (`learn service`).")
@handle_errors
def check(targets, work_dir, only, json_path, seed, jobs, cell_timeout, no_cache, html_path, no_html, verbose, no_service):
    """Run your notebooks and grade every function against the reference solution.

    An unchanged notebook gets its previous result back at once (--no-cache re-runs it). The
    grading runs in your grading service, started on first use and kept warm (`learn service`),
    or in this process with --no-service or where the service cannot start.
    Exit status: 0 all pass, 1 something fails, 2 a notebook cannot be graded (or bad usage).
    """
    from .report import render_run, write_json
    from .service import run_check
    from .workspace import resolve_targets

    paths = resolve_targets(targets, work_dir, only)
    console = make_console(stderr=json_path is not None and str(json_path) == "-")
    options = dict(seed=seed, only=list(only) or None, jobs=jobs, cell_timeout=cell_timeout, use_cache=not no_cache,
                   html=False if no_html else html_path, service=not no_service, warn=_err,
                   progress=bool(getattr(console, "is_terminal", False)))  # fmt: skip
    from .live import shown

    with shown(console, f"Checking {len(paths)} notebook{'s' * (len(paths) != 1)}"):  # notebook, cell k of n, time vs limit
        outcome = run_check(paths, **options)
    for note in outcome.notes:
        _err(note)
    render_run(outcome.run, console, verbose=verbose)
    if json_path is not None:
        write_json(outcome.run, json_path)
    if outcome.report:
        console.print(f"HTML report: {outcome.report}", markup=False, highlight=False)
    for warning in outcome.warnings:
        _err(warning)
    if outcome.run.has_input_errors or outcome.report_failed:
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK if outcome.run.passed else EXIT_FAILED)


@cli.group("service")
def service_group():
    """Your grading service: warm kernels that make `learn check` answer at once.

    \b
    The first `learn check` (or `learn watch`, or check() in Jupyter) starts it; it stops by
    itself after 15 minutes without a check ($LEARN_SERVICE_IDLE seconds), and starts afresh
    when learn, a lesson pack or your Python environment changes. Only you can reach it (a
    private Unix socket). --no-service, or LEARN_NO_SERVICE=1, grades without it.
    """


@contextlib.contextmanager
def _service_errors():
    """A service that cannot be had is a LearnError (one line, exit 2), like every bad input."""
    from . import service

    try:
        yield
    except service.ServiceUnavailable as exc:
        raise LearnError(str(exc)) from None


@service_group.command("status")
@handle_errors
def service_status():
    """Say whether your grading service runs, since when, and what it holds.

    Exit status: 0 running, 1 not running.
    """
    import time as _time

    from . import service

    with _service_errors():
        info = service.status()
    if info is None:
        click.echo(f"not running (the next `learn check` starts it; socket {service.setup().socket})")
        sys.exit(EXIT_FAILED)
    up = _time.time() - info["started"]
    memory = f", {info['memory_mb']:.0f} MB" if info.get("memory_mb") is not None else ""
    click.echo(f"running: pid {info['pid']}, up {up / 60:.0f} min, {info['checks']} check(s), idle {info['idle_s']:.0f}s "
               f"(stops after {info['idle_timeout_s']:g}s idle){memory}")  # fmt: skip
    click.echo(f"  kernels: {'warm' if info.get('warm') else 'warming up'}; seed {info.get('seed')} (checks without --seed)")
    click.echo(f"  socket:  {info['socket']} (yours only)")
    click.echo(f"  log:     {info['log']}")
    click.echo(f"  python:  {info['python']}  grader: {info['grader']}")


@service_group.command("start")
@handle_errors
def service_start():
    """Start your grading service now (the first check does it anyway)."""
    from . import service

    with _service_errors():
        su = service.start()
    click.echo(f"running ({su.socket})")


@service_group.command("stop")
@handle_errors
def service_stop():
    """Stop your grading service (the next check starts a new one)."""
    from . import service

    with _service_errors():
        stopped = service.stop()
    click.echo("stopped" if stopped else "was not running")


# ---------------------------------------------------------------------------------------------
# instructors: learn assign / grade / export / dashboard (grader.assign, batch, export, dashboard)


@cli.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: ./assignment-ID): release/ for students, source/ to grade with.")  # fmt: skip
@click.option(
    "--id", "lesson_id", default=None, help="Assignment id for nbgrader or plain solution notebooks (default: from the folder name)."
)
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Kernels to run at once for the self-test.")
@click.option("--no-mutants", is_flag=True, help="Skip grading wrong versions of the solutions (what the checks cannot tell apart).")
@handle_errors
def assign(sources: tuple[str, ...], out: Path | None, lesson_id: str | None, jobs: int | None, no_mutants: bool):
    """Make student notebooks from solution notebooks, after proving every check works.

    SOURCE is a lesson id, a lesson-pack folder, or solution notebooks (a folder or files) with
    our markers or nbgrader's; an nbgrader assignment's test cells become its checks. Writes
    OUT/release/ (hand this out) and OUT/source/ (keep it: hidden checks stay there). Refuses
    (exit 1) if a check does not pass on the solution or does not fail on the student version.
    """
    from .assign import assign as run_assign

    report = run_assign(list(sources), out, lesson_id=lesson_id, jobs=jobs, echo=click.echo, mutants=not no_mutants)
    if not report.ok:
        for problem in report.problems:
            _err(problem)
        _err(f"refusing to write the assignment: {len(report.problems)} check(s) cannot tell a solution from a stub")
        sys.exit(EXIT_FAILED)
    click.echo(f"{report.lesson.id}: {len(report.checks)} checks pass on the solution and fail on the student version")
    if report.mutants is not None:
        from .mutants import survivors_text

        click.echo(survivors_text(report.mutants))
    if report.lesson.manual:
        manual = report.lesson.manual.values()
        click.echo(f"  {len(manual)} item(s) graded by hand ({sum(m.points for m in manual):g} points): "
                   "`learn export --format manual` after grading, then `learn import-grades FILE`")  # fmt: skip
    click.echo(f"  release (for students): {report.release}")
    click.echo(f"  source (keep private):  {report.source}")
    click.echo(f"Next: hand out {report.release}, then `learn grade SUBMISSIONS --assignment {report.out}`.")


@cli.command()
@click.argument("pack", metavar="PACK_OR_FOLDER")
@click.option("--only", multiple=True, metavar="NAME", help="Only these graded functions (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the full report as JSON.")
@click.option("--seeds", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Seeds on which the reference must pass and every named mistake be caught.")  # fmt: skip
@click.option("--mutant-seeds", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Seeds on which each mutant must be caught to count as killed.")  # fmt: skip
@click.option("--no-cascade", is_flag=True, help="Skip the cascade matrix (real notebooks with a wrong, raising or hanging helper).")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.95, show_default=True, help="Exit 1 below this mutation score.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Kernels to run at once.")
@handle_errors
def mutants(pack, only, json_path, seeds, mutant_seeds, no_cascade, min_score, jobs):
    """Measure how good a pack's checks are: grade wrong versions of its solution.

    PACK_OR_FOLDER is a lesson id, a lesson-pack folder, or solution notebooks with markers (ours or
    nbgrader's). Prints, per graded function, how many mutants (small changes of the solution: an
    operator swapped, a statement left out, a reduction over the wrong axis ...) and named mistakes
    its check catches, and lists the ones it cannot tell from the solution; the cascade matrix
    (does every caller keep its points when a helper is wrong?); and whether the reference passes
    and every named mistake is caught on each of --seeds seeds. Exit 0 when the score reaches
    --min-score, every cascade pair holds and nothing slips on any seed; 1 otherwise; 2 bad input.
    """
    import tempfile

    from .assign import load_pack
    from .mutants import Options, format_table, gate, run_mutants, write_json

    with tempfile.TemporaryDirectory(prefix="learn-mutants-") as staging:
        lesson = load_pack(pack, Path(staging))
        if not lesson.checks:
            raise LearnError(f"{lesson.id} has no checks: nothing to measure")
        opts = Options(only=list(only) or None, seeds=seeds, mutant_seeds=mutant_seeds, cascade=not no_cascade, jobs=jobs)
        click.echo(f"{lesson.id}: grading mutants of {len(opts.only or lesson.checks)} graded function(s) ...", err=True)
        report = run_mutants(lesson, opts, echo=lambda line: click.echo(line, err=True))
    click.echo(format_table(report))
    if json_path is not None:
        write_json(report, json_path)
        click.echo(f"wrote {json_path}")
    problems = gate(report, min_score)
    for problem in problems:
        _err(problem)
    sys.exit(EXIT_FAILED if problems else EXIT_OK)


@cli.command()
@click.argument("submissions", type=click.Path(exists=True, path_type=Path), metavar="SUBMISSIONS")
@click.option("--assignment", default=None, metavar="A",
              help="Lesson id, lesson-pack folder or `learn assign` folder (default: guessed from the notebook names).")  # fmt: skip
@click.option("--gradebook", "gradebook_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("gradebook.db"),
              show_default=True, help="SQLite gradebook to write (created if missing).")  # fmt: skip
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Submissions graded at once (default: your core count).")
@click.option("--regrade", is_flag=True, help="Grade every submission again, even unchanged ones.")
@click.option("--seed", type=int, default=None, help="Seed for the randomized inputs (default: chosen once per gradebook and kept).")
@click.option("--cell-timeout", type=click.FloatRange(min=0.5), default=None, metavar="SECONDS",
              help="Stop any cell running longer than this (the lesson's own limit applies if lower).")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="Wall-clock budget of one whole submission (default: the notebooks' own limits added up).")  # fmt: skip
@click.option("--feedback", "feedback_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write one feedback page per student into this folder.")  # fmt: skip
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Grade on the workers of this Dask scheduler instead of here (the gradebook stays here).")  # fmt: skip
@click.option("--allow-unsandboxed", is_flag=True,
              help="Grade even without bubblewrap (no filesystem or network isolation; also LEARN_ALLOW_UNSANDBOXED=1). "
                   "Only for notebooks you trust.")  # fmt: skip
@handle_errors
def grade(submissions, assignment, gradebook_path, jobs, regrade, seed, cell_timeout, timeout, feedback_dir, scheduler, allow_unsandboxed):
    """Grade a class's submissions in parallel into a gradebook.

    SUBMISSIONS is a folder with one folder per student (SUBMISSIONS/<student>/*.ipynb) or a zip
    of such folders. Unchanged submissions are skipped; a notebook that crashes, hangs or is not
    a notebook becomes that student's error and the batch goes on. Safe to interrupt and re-run.
    Exit status: 0 every submission graded, 1 some could not be graded (retried next run), 2 bad
    input - or no bubblewrap here: other people's code is not run without filesystem isolation
    unless --allow-unsandboxed (or LEARN_ALLOW_UNSANDBOXED=1) says so.
    """
    from .batch import PlainProgress, RichProgress, grade_folder

    console = make_console()
    progress = RichProgress(console) if console.is_terminal else PlainProgress(click.echo)
    summary = grade_folder(submissions, gradebook_path, assignment, warn=lambda line: _err(line), jobs=jobs, regrade=regrade,
                           seed=seed, cell_timeout=cell_timeout, timeout=timeout, progress=progress, scheduler=scheduler,
                           allow_unsandboxed=allow_unsandboxed)  # fmt: skip
    click.echo(
        f"{summary.assignment}: {summary.graded} graded ({summary.ok} ok, {summary.not_ok} failed, {summary.errors} error), "
        f"{summary.unchanged} unchanged"
        + (f", {summary.busy} busy elsewhere" if summary.busy else "")
        + (f", {summary.failed} NOT graded" if summary.failed else "")
        + f" in {summary.duration:.1f}s -> {gradebook_path}"
    )
    _manual_totals(gradebook_path, assignment, summary.assignment)
    if feedback_dir is not None:
        from .export import export

        _, written = export(gradebook_path, "feedback", feedback_dir, assignment=summary.assignment)
        click.echo(f"feedback: {len(written)} pages in {feedback_dir}")
    sys.exit(EXIT_FAILED if summary.failed else EXIT_OK)


def _manual_totals(gradebook_path: Path, assignment: str | None, lesson_id: str) -> None:
    from .batch import resolve_assignment
    from .gradebook import Gradebook
    from .manual import totals_line

    lesson = resolve_assignment(assignment or lesson_id)
    if lesson.manual:
        with Gradebook(gradebook_path, create=False) as gb:
            click.echo(totals_line(gb, lesson))


@cli.command("import-grades")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gradebook", "gradebook_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("gradebook.db"),
              show_default=True, help="The gradebook `learn grade` wrote.")  # fmt: skip
@click.option("--by", "who", default=None, metavar="NAME", help="Who graded, for the audit (default: your user name).")
@handle_errors
def import_grades_cmd(file, gradebook_path, who):
    """Record hand-given points and comments from FILE (`learn export --format manual`, filled in).

    Every row is checked first (known student and item, points a number from 0 to the item's
    maximum); one bad row and nothing is recorded. Each change is audited: who, when, the previous value.
    """
    from .gradebook import Gradebook
    from .manual import import_grades

    with Gradebook(gradebook_path, create=False) as gb:
        done = import_grades(gb, file, who=who)
    click.echo(f"recorded {done['recorded']} grade(s) from {file} in {gradebook_path}")


@cli.command("export")
@click.option("--gradebook", "gradebook_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("gradebook.db"),
              show_default=True, help="The gradebook `learn grade` wrote.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["csv", "gradescope", "junit", "feedback", "manual"]), default="csv", show_default=True,
              help="csv: a row per student; gradescope: OUT/<student>/results.json; junit: XML; feedback: OUT/<student>.html; "
                   "manual: a row per (student, item graded by hand), to fill in and `learn import-grades`.")  # fmt: skip
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="File (csv, junit) or folder (gradescope, feedback); default: stdout."
)
@click.option("--assignment", default=None, metavar="A", help="Only this assignment (needed if the gradebook holds several).")
@click.option("--student", "students", multiple=True, metavar="ID", help="Only this student (repeatable).")
@handle_errors
def export_cmd(gradebook_path, fmt, out, assignment, students):
    """Export the gradebook: CSV, Gradescope results.json, JUnit XML, or feedback pages."""
    from .export import export

    text, written = export(gradebook_path, fmt, out, assignment=assignment, students=list(students) or None)
    if text is not None:
        click.echo(text, nl=False)
    elif len(written) == 1:
        click.echo(f"wrote {written[0]}", err=True)
    else:
        click.echo(f"wrote {len(written)} files to {out}", err=True)


@cli.command()
@click.option("--gradebook", "gradebook_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("gradebook.db"),
              show_default=True, help="The gradebook `learn grade` wrote.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("dashboard.html"), show_default=True,
              help="Where to write the page.")  # fmt: skip
@click.option("--assignment", default=None, metavar="A", help="Only this assignment (default: the only one, or all).")
@handle_errors
def dashboard(gradebook_path, out, assignment):
    """Write the class dashboard: score histogram, pass rate per check, runtimes, errors, students to help."""
    from .dashboard import write_dashboard

    path = write_dashboard(gradebook_path, out, assignment=assignment)
    click.echo(f"wrote {path}")


# ---------------------------------------------------------------------------------------------
# learners: HTML report of a check, learn progress / hint / solution / watch
# (grader.html, grader.progress, grader.helpers, grader.watch)


@cli.command()
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an HTML page with progress bars, score over time and checks per function.")  # fmt: skip
@handle_errors
def progress(html_path: Path | None):
    """Show your progress: per lesson, functions solved, points, checks run and your streak.

    Every `learn check` and quiz is recorded in $LEARN_HOME/progress.db (by default in your
    user data folder); this reads it back.
    """
    from .progress import render_progress, summarize

    summary = summarize()
    console = make_console()
    render_progress(summary, console)
    from .cards import summary_line
    from .quiz.session import unfinished_line

    for line in (summary_line(), unfinished_line()):  # due reviews; quiz answers in sessions not finished yet
        if line:
            console.print(line, markup=False, highlight=False)
    if html_path is not None:
        from .html import render_progress_page, write_html

        try:
            written = write_html(render_progress_page(summary), html_path)
        except OSError as exc:
            raise LearnError(f"could not write {html_path}: {exc.strerror or exc}") from None
        console.print(f"HTML progress page: {written}", markup=False, highlight=False)


@cli.command()
@click.argument("name")
@click.option("--lesson", "lesson_id", default=None, metavar="LESSON", help="The lesson, if several grade a function of that name.")
@click.option("--all", "show_all", is_flag=True, help="Show every hint of the function at once.")
@click.option("--reset", is_flag=True, help="Start this function's hints again from the first.")
@handle_errors
def hint(name: str, lesson_id: str | None, show_all: bool, reset: bool):
    """Show the next hint for a graded function (one more each time you ask)."""
    from .helpers import all_hints, next_hint, reset_hints

    if reset:
        warning = reset_hints(name, lesson_id)
        if warning:
            _err(warning)
        click.echo(f"Hints for {name} start again from the first.")
    hints = all_hints(name, lesson_id) if show_all else [h for h in [next_hint(name, lesson_id)] if h]
    if not hints:
        click.echo(f"There are no hints for {name}; re-read the notebook's instructions, or run `learn check` for details.")
        return
    for h in hints:
        click.echo(f"Hint {h.number} of {h.total} for {h.name} ({h.lesson}):")
        click.echo(f"  {h.text}")
    last = hints[-1]
    if last.warning:
        _err(last.warning)
    if not show_all and not last.last:
        click.echo(f"(`learn hint {last.name}` again for the next one)")
    elif not show_all:
        click.echo(f"(that was the last hint; `learn solution {last.name}` shows the reference)")


@cli.command()
@click.argument("name")
@click.option("--lesson", "lesson_id", default=None, metavar="LESSON", help="The lesson, if several grade a function of that name.")
@click.option("-y", "--yes", is_flag=True, help="Show it without asking first.")
@handle_errors
def solution(name: str, lesson_id: str | None, yes: bool):
    """Show the reference solution of one graded function (only that function).

    Asks first, and records in your progress history that you looked.
    """
    from .helpers import record_solution_viewed, solution_source

    lesson, spec, source = solution_source(name, lesson_id)
    if not yes:
        question = f"Show the reference solution of {spec.name}? (`learn hint {spec.name}` gives a smaller nudge)"
        try:
            if not click.confirm(question, default=False):
                click.echo("Not shown.")
                return
        except click.Abort:
            _err("not shown: answer the question, or pass --yes")
            sys.exit(EXIT_FAILED)
    warning = record_solution_viewed(lesson, spec)
    if warning:
        _err(warning)
    console = make_console()
    console.print(f"Reference solution of {spec.name} ({lesson.id}, {spec.notebook}):", markup=False, highlight=False)
    if console.is_terminal:
        from rich.syntax import Syntax

        console.print(Syntax(source, "python", background_color="default"))
    else:
        click.echo(source, nl=False)


@cli.command()
@click.argument("lesson_id", required=False, metavar="[LESSON]")
@click.option("--dir", "work_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding the notebooks (default: ./LESSON, or the current folder).")  # fmt: skip
@click.option("--only", multiple=True, metavar="NAME", help="Grade only this function (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed for the randomized inputs (kept for the whole session).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Kernels to keep warm with --no-service (default: 2 or fewer).")  # fmt: skip
@click.option("--no-html", is_flag=True, help="Do not keep the HTML report next to the notebooks up to date.")
@click.option("--max-runs", type=click.IntRange(1), default=None, hidden=True)
@click.option("--no-service", is_flag=True, help="Grade in this process, not in your warm grading service (`learn service`).")
@handle_errors
def watch(lesson_id, work_dir, only, seed, jobs, no_html, max_runs, no_service):
    """Check your notebooks, then re-check each one every time you save it (Ctrl-C stops).

    Each save is graded by your warm grading service (`learn service`; --no-service: a pool of kernels
    of this command), so a re-check takes well under a second.
    """
    import asyncio
    import time as _time

    from . import inert
    from .report import render_run
    from .service import disabled as service_disabled
    from .watch import watch as watch_loop
    from .workspace import resolve_targets

    paths = resolve_targets((lesson_id,) if lesson_id else (), work_dir)
    console = make_console()
    folders = sorted({str(p.resolve().parent) for p in paths})

    def show(round_):
        if console.is_terminal:
            console.clear()
        stamp = _time.strftime("%H:%M:%S", _time.localtime(round_.at))
        names = inert.markup(", ".join(p.name for p in round_.changed))
        console.print(f"[bold]learn watch[/bold] · round {round_.number} at {stamp} · checked {names}", highlight=False)
        render_run(round_.latest if console.is_terminal else round_.run, console)
        for warning in round_.warnings:
            _err(warning)
        if round_.report:
            console.print(f"HTML report: {round_.report}", markup=False, highlight=False)
        console.print(
            f"[dim]Watching {len(paths)} notebook{'s' * (len(paths) != 1)} in {inert.markup(', '.join(folders))}: save one to re-check it. Ctrl-C stops.[/dim]"
        )

    console.print(f"Checking {len(paths)} notebook{'s' * (len(paths) != 1)}, then watching for saves...", highlight=False)
    use_service = not no_service and not service_disabled()
    loop = watch_loop(paths, on_round=show, max_rounds=max_runs, seed=seed, only=list(only) or None, jobs=jobs,
                      report=not no_html, service=use_service, warn=_err)  # fmt: skip
    try:
        asyncio.run(loop)
    except KeyboardInterrupt:  # the usual way to stop watching - and 130, as for every command Ctrl-C stops
        console.print("Stopped watching.")
        sys.exit(130)


# ---------------------------------------------------------------------------------------------
# this machine: learn doctor (grader.doctor)

_VERDICT_COLOURS = {"ok": "green", "warn": "yellow", "problem": "red", "skip": "bright_black"}


@cli.command()
@click.option("--quick", is_flag=True, help="Skip the checks that start kernels and grade the packs' references (about a minute).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON instead of lines.")
@handle_errors
def doctor(quick: bool, as_json: bool):
    """Check that this machine can grade: libraries, sandbox, kernels, lesson packs, GPU, folders, disk.

    One line per check - ok, warn or problem - and the fix for every warning and problem.
    Exit status: 0 no problem (warnings allowed), 1 a problem.
    """
    import json

    from .doctor import format_finding, run

    def style(text: str, verdict: str) -> str:
        return click.style(text, fg=_VERDICT_COLOURS.get(verdict), bold=verdict == "problem")

    def show(finding) -> None:
        for line in format_finding(finding, style):
            click.echo(line)

    if not as_json:
        click.echo("Checking this machine" + ("" if quick else " (kernels and lesson packs take a minute; --quick skips them)") + "...")
    report = run(quick=quick, on_finding=None if as_json else show)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(f"learn doctor: {report.summary()}")
    sys.exit(report.exit_code)


# ---------------------------------------------------------------------------------------------
# quizzes: learn quiz (grader.quiz)


def _read_line(prompt: str) -> str:
    """One line of the learner's input (EOFError at the end of input). Piped answers are echoed,
    so that a transcript shows each answer after its prompt."""
    line = input(prompt)
    if not sys.stdin.isatty():
        click.echo(line)
    return line


@cli.command()
@click.argument("quiz_name", metavar="[QUIZ]", required=False)
@click.option("--topic", "topics", multiple=True, metavar="TAG", help="Only questions with this topic tag (repeatable).")
@click.option("--shuffle", is_flag=True, help="Ask the questions in a random order (printed seed; --seed repeats it).")
@click.option("--seed", type=int, default=None, help="Seed for --shuffle.")
@click.option("--restart", is_flag=True, help="Start afresh instead of offering to resume a saved session.")
@click.option("--answers", "answers_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Grade a YAML file of answers (question id: answer) without asking; exit 0 when all are right.")  # fmt: skip
@click.option("--class", "class_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Instructors: grade a folder of answers files (STUDENT.yaml) into --gradebook.")  # fmt: skip
@click.option("--gradebook", "gradebook_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("gradebook.db"),
              show_default=True, help="Gradebook for --class.")  # fmt: skip
@click.option("--overrides", "overrides_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --class: YAML of student -> question -> override (points, correct, key_points, note).")  # fmt: skip
@handle_errors
def quiz(quiz_name, topics, shuffle, seed, restart, answers_path, class_dir, gradebook_path, overrides_path):
    """Answer a lesson's questionnaire, with feedback after each question.

    \b
    learn quiz                           list the quizzes
    learn quiz chapter4                  question by question; resumes where you stopped
    learn quiz chapter4 --topic sgd      only one topic
    learn quiz chapter4 --answers a.yaml grade a file of answers (exit 0 all right, 1 not, 2 bad file)
    learn quiz chapter4 --class DIR --gradebook gb.db [--overrides o.yaml]   grade a class's files
    """
    from rich.text import Text

    from .quiz import CodeRunner, bundled_quizzes, find_quiz, grade_answers, parse_answers, record, render_report, run_interactive

    console = make_console()
    if not quiz_name:
        for name in bundled_quizzes():
            q = find_quiz(name)
            console.print(Text(f"{name:12} {len(q.questions):3} questions  {q.title}  (topics: {', '.join(q.topics())})"))
        return
    chosen = find_quiz(quiz_name)
    if class_dir is not None:
        from .quiz.classbatch import run_class

        sys.exit(run_class(chosen, class_dir, gradebook_path, overrides_path, console))
    if answers_path is not None:
        from .quiz import QuizAnswersError

        try:
            text = answers_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise QuizAnswersError(f"{answers_path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        answers = parse_answers(text, str(answers_path), chosen)
        report = grade_answers(chosen, answers, topics=list(topics) or None)
        render_report(report, console)
        warning = record(report)
        if warning:
            _err(warning)
        sys.exit(EXIT_OK if report.all_correct else EXIT_FAILED)
    chosen.select(list(topics) or None)  # an unknown topic is reported before anything is asked
    result = run_interactive(chosen, console, _read_line, topics=list(topics) or None, shuffle=shuffle, seed=seed,
                             restart=restart, runner_factory=CodeRunner)  # fmt: skip
    if result.interrupted:
        sys.exit(130)


# ---------------------------------------------------------------------------------------------
# the study loop: learn predict (grader.predict), learn review (grader.review)


@cli.command()
@click.argument("pack", metavar="PACK")
@click.option("--answers", "answers_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Grade a YAML file of predictions (drill id: prediction) without asking; exit 0 when all are right.")  # fmt: skip
@click.option("--restart", is_flag=True, help="Start the drills afresh instead of resuming.")
@click.option("--list", "list_only", is_flag=True, help="List the pack's drills and exit.")
@handle_errors
def predict(pack, answers_path, restart, list_only):
    """Predict-the-output drills: see a cell of the lesson's notebook, say what it outputs, then run it.

    \b
    learn predict lesson3                 drill by drill; resumes where you stopped
    learn predict chapter4 --answers a.yaml   grade a file of predictions (exit 0 all right, 1 not, 2 bad file)
    """
    from rich.text import Text

    from .lessons import get_lesson
    from .predict import load_drills, parse_answers, record, render_answers, run_interactive

    lesson = get_lesson(pack)
    drills = load_drills(lesson)
    console = make_console()
    if not drills:
        raise LearnError(f"lesson {pack} has no predict-the-output drills")
    if list_only:
        for d in drills:
            console.print(Text(f"{d.id:28} {d.kind:7} {d.notebook} cell {d.cell + 1}"))
        return
    if answers_path is not None:
        from .cards import record_items
        from .errors import QuizAnswersError
        from .predict import grade_answers

        try:
            text = answers_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise QuizAnswersError(f"{answers_path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        rows = grade_answers(lesson, drills, parse_answers(text, str(answers_path), drills))
        code = render_answers(rows, console)
        graded = [(d, r) for d, r in rows if r is not None and r.graded]
        for warning in (record(pack, graded), record_items([("drill", f"{pack}:{d.id}", r.correct) for d, r in graded])):
            if warning:
                _err(warning)
        sys.exit(code)
    from .predict import DrillRunner

    if run_interactive(lesson, drills, console, _read_line, restart=restart, runner_factory=DrillRunner).interrupted:
        sys.exit(130)  # Ctrl-C: interrupted, as everywhere (what was answered is saved)


@cli.command()
@click.option("--answers", "answers_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Review from a YAML file (KIND:PACK:ID: answer, or {answer, rating}) without asking.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1), default=None, help="Review at most this many items today.")
@handle_errors
def review(answers_path, limit):
    """Spaced review: today's quiz questions, drills and functions to re-do, scheduled with FSRS.

    Questions you answered wrong in `learn quiz`, drills from `learn predict` and functions whose
    latest `learn check` failed come back when they are due. Rate each one (1 again .. 4 easy):
    the rating decides when you see it next. `learn progress` shows what is due.
    """
    from .predict import DrillRunner
    from .quiz import CodeRunner
    from .review import run_review

    text = None
    if answers_path is not None:
        from .errors import QuizAnswersError

        try:
            text = answers_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise QuizAnswersError(f"{answers_path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    session = run_review(make_console(), _read_line, answers_text=text, answers_source=str(answers_path), limit=limit,
                         drill_runner_factory=DrillRunner, code_runner_factory=CodeRunner)  # fmt: skip
    if session.interrupted:
        sys.exit(130)  # Ctrl-C: interrupted, as everywhere (the items rated so far are kept)


# ---------------------------------------------------------------------------------------------
# the course server


@cli.command()
@click.argument("course_dir", type=click.Path(file_okay=False, path_type=Path), metavar="COURSE_DIR")
@click.option("--db", "db_url", default=None, metavar="URL",
              help="postgresql://... for PostgreSQL (default: SQLite in COURSE_DIR/course.db).")  # fmt: skip
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="Grade on this Dask cluster instead of a local pool.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (put TLS in front: see the course server docs).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Submissions graded at once (local pool; default 2).")
@click.option("--https-only", is_flag=True, help="Send the session cookie over HTTPS only (behind a TLS proxy).")
@click.option("--forwarded-allow-ips", default=None, metavar="ADDRESSES",
              help="The proxy in front (comma-separated addresses, or '*'): its X-Forwarded-For is the client address that sign-in "
                   "limits count. Default: 127.0.0.1 (or $FORWARDED_ALLOW_IPS).")  # fmt: skip
@click.option("--student-quota", type=click.FloatRange(1), default=None, metavar="MB",
              help="What one student's submissions may keep on disk (default 200 MB).")  # fmt: skip
@click.option("--signin-link", "signin_for", default=None, metavar="NAME",
              help="Print a fresh sign-in link for the account NAME (the instructor's too: a lost password) and exit.")  # fmt: skip
@click.option("--allow-unsandboxed", is_flag=True,
              help="Serve even without bubblewrap (no filesystem or network isolation; also LEARN_ALLOW_UNSANDBOXED=1).")  # fmt: skip
@handle_errors
def serve(course_dir, db_url, scheduler, host, port, jobs, https_only, forwarded_allow_ips, student_quota, signin_for, allow_unsandboxed):
    """Run the course server: students upload notebooks and get feedback in seconds.

    COURSE_DIR holds the uploads, the session key and (by default) the SQLite database; it is
    created if missing, readable by its owner only. At first start a one-time link to create the
    instructor account is printed; --signin-link NAME prints a new one for any account later.
    Refuses to start without bubblewrap unless --allow-unsandboxed (exit 2).
    """
    from .server import serve as run_server
    from .server import signin_link

    if signin_for:
        path = signin_link(course_dir, signin_for, db_url)
        click.echo(f"A sign-in link for {signin_for} (valid two weeks; the earlier one no longer works):\n  http://{host}:{port}{path}")
        click.echo("(behind a proxy, put your server's address in front of the path instead)")
        return
    run_server(course_dir, db=db_url, scheduler=scheduler, host=host, port=port, jobs=jobs, allow_unsandboxed=allow_unsandboxed,
               https_only=https_only, forwarded_allow_ips=forwarded_allow_ips, student_quota_mb=student_quota, echo=click.echo,
               warn=lambda line: _err(line))  # fmt: skip


@cli.command()
@click.option("--server", "server_url", required=True, metavar="URL", help="The course server, e.g. https://learn.example.edu.")
@click.option("--token", default=None, envvar="LEARN_TOKEN", help="Your personal token (or set LEARN_TOKEN).")
@click.option("--no-wait", is_flag=True, help="Do not wait for the grade.")
@click.option("--partial", is_flag=True, help="Submit even if some of the assignment's notebooks are not among NOTEBOOKS: "
              "each missing one is graded from your latest copy on the server.")  # fmt: skip
@click.argument("assignment")
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@handle_errors
def submit(server_url, token, no_wait, partial, assignment, notebooks):
    """Submit NOTEBOOKS (or a zip) for ASSIGNMENT to a course server and wait for the grade.

    The server's limits are checked before uploading, and a refusal says the server's reason.
    Exit status: 0 graded with full marks (of what is graded so far), 1 graded with points
    missing (or grading failed), 2 refused (bad token, limits, notebooks missing without
    --partial, no such assignment).
    """
    from .server.client import submit as send

    status = send(server_url, assignment, list(notebooks), token or "", wait=not no_wait, partial=partial, echo=click.echo)
    if no_wait:
        sys.exit(EXIT_OK)
    final, possible = status.get("final"), (status.get("possible") or status.get("max_points") or 0) - (status.get("manual_pending") or 0)
    sys.exit(EXIT_OK if status.get("state") == "graded" and final is not None and final >= possible else EXIT_FAILED)


def _skip_slow_imports() -> None:
    """nbformat imports jsonschema, which imports rfc3987_syntax if installed: it builds a Lark grammar
    for IRIs at import time (about 1 s here, on every `learn` command). nbformat's schemas use no
    "format" keyword, so validation is unchanged without it. Only in this process, which is ours
    alone (learner code runs in kernels, never here); a library user's process is left as it is."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # `import rfc3987_syntax` raises ImportError: jsonschema skips "iri"


def main():
    _skip_slow_imports()
    cli(prog_name="learn")


if __name__ == "__main__":
    main()
