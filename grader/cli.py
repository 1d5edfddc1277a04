"""The `learn` command: a thin click layer. Each command parses, calls the library, renders.

Library errors (`LearnError`) become a one-line message and the error's exit code; anything
else is a bug and is reported as one (LEARN_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from .errors import LearnError, UnknownLessonError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def make_console(stderr: bool = False):
    """A rich console that wraps for terminals but never breaks lines in logs and pipes."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


def _err(message: str) -> None:
    click.echo(f"learn: {message}", err=True)


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
@click.option("--from", "source", metavar="PATH_OR_URL", default=None, help="Install the lesson pack from a folder, a zip file or a zip URL first.")
@handle_errors
def fetch(lesson_id: str, dest: Path | None, force: bool, source: str | None):
    """Copy a lesson's exercise notebooks into your working folder.

    Never overwrites a notebook you have changed.
    """
    from .fetch import fetch_lesson, install_pack
    from .lessons import get_lesson

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
    click.echo(f"Next: open the notebooks in {dest}/, fill in the functions, then run `learn check {lesson.id} --dir {dest}`.")


@cli.command()
@click.argument("lessons", nargs=-1, metavar="[LESSON]...")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Write here instead of exercises/LESSON.")
@click.option("--check", "check_only", is_flag=True, help="Do not write; exit 1 if the committed exercises differ from what generation gives.")
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
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None, help="Kernels to run at once (default: 2 or your core count).")
@click.option("--cell-timeout", type=click.FloatRange(min=0.5), default=None, metavar="SECONDS",
              help="Stop any cell running longer than this (the lesson's own limit applies if lower).")  # fmt: skip
@click.option("--no-cache", is_flag=True, help="Re-run notebooks even if they have not changed since the last check.")
@click.option("-v", "--verbose", is_flag=True, help="Show details for passing functions too.")
@handle_errors
def check(targets, work_dir, only, json_path, seed, jobs, cell_timeout, no_cache, verbose):
    """Run your notebooks and grade every function against the reference solution.

    An unchanged notebook gets its previous result back at once (--no-cache re-runs it).
    Exit status: 0 all pass, 1 something fails, 2 a notebook cannot be graded (or bad usage).
    """
    from .cache import cached_check
    from .report import render_run, write_json
    from .results import RunResult
    from .workspace import resolve_targets

    paths = resolve_targets(targets, work_dir)
    console = make_console(stderr=json_path is not None and str(json_path) == "-")
    options = dict(seed=seed, only=list(only) or None, jobs=jobs, cell_timeout=cell_timeout, use_cache=not no_cache)
    if console.is_terminal:
        with console.status(f"Checking {len(paths)} notebook{'s' * (len(paths) != 1)}..."):
            run_result = cached_check(paths, **options)
    else:
        run_result = cached_check(paths, **options)
    render_run(run_result, console, verbose=verbose)
    if json_path is not None:
        write_json(run_result, json_path)
    from .progress import record_check

    fresh = [n for n in run_result.notebooks if not n.cached]
    warning = record_check(RunResult(fresh, seed=run_result.seed)) if fresh else None
    if warning:
        _err(warning)
    if run_result.has_input_errors:
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK if run_result.passed else EXIT_FAILED)


def main():
    cli(prog_name="learn")


if __name__ == "__main__":
    main()
