"""Shared fixtures: paths to the bundled lessons, notebook variants, the CLI runner."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
ARTIFACTS = ROOT / "test-artifacts"
DOCS_SHOTS = ARTIFACTS / "docs"  # scripts/docs-screenshots copies these into docs/img/


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Keep tests away from the user's real cache, progress and installed packs - and grade in the
    test's own process (monkeypatches apply there), not in a grading service that outlives the
    session: tests/test_service.py starts services of its own, in folders of its own."""
    home = tmp_path_factory.mktemp("learn-home")
    old = {k: os.environ.get(k) for k in ("LEARN_HOME", "LEARN_CACHE_DIR", "LEARN_NO_SERVICE")}
    os.environ["LEARN_HOME"] = str(home / "data")
    os.environ["LEARN_CACHE_DIR"] = str(home / "cache")
    os.environ["LEARN_NO_SERVICE"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(params=["fork", "spawn"])
def kernel_backend(request, monkeypatch) -> str:
    """Parametrizes a test over both kernel backends (KernelPool reads LEARN_KERNEL_BACKEND)."""
    from grader.kernels import BACKEND_ENV

    if request.param == "fork" and not hasattr(os, "fork"):
        pytest.skip("no fork() here")
    monkeypatch.setenv(BACKEND_ENV, request.param)
    return request.param


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def allow_unsandboxed() -> list[str]:
    """Options for a test's `learn grade`: where bubblewrap does not work (CI runs some rows
    without it) `learn grade` refuses other people's notebooks unless told, and these classes
    are our own test notebooks, so the tests say so explicitly."""
    from grader import sandbox

    return [] if sandbox.choose().mode == "bwrap" else ["--allow-unsandboxed"]


def solution(lesson: str, name: str) -> Path:
    return SOLUTIONS / lesson / name


def exercise(lesson: str, name: str) -> Path:
    return EXERCISES / lesson / name


def variant(source: Path, dest: Path, *cells: str, replace: dict[str, str] | None = None,
            replace_containing: dict[str, str] | None = None) -> Path:  # fmt: skip
    """Copy a notebook, replace the cell defining each name in `replace` (or the one cell containing
    each text in `replace_containing`) by the given code, and append code cells."""
    nb = nbformat.read(str(source), as_version=4)
    for name, code in (replace or {}).items():
        hits = [c for c in nb.cells if c.cell_type == "code" and f"def {name}(" in c.source]
        assert hits, f"{source.name} defines no {name}"
        hits[0].source = code
    for needle, code in (replace_containing or {}).items():
        hits = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
        assert len(hits) == 1, f"{len(hits)} cells of {source.name} contain {needle!r}"
        hits[0].source = code
    for code in cells:
        nb.cells.append(nbformat.v4.new_code_cell(code))
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest))
    return dest


def copy_to(source: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or source.name)
    shutil.copyfile(source, target)
    return target


def grade_all(jobs: dict[str, Path], seed: int, pool_size: int = 2) -> dict:
    """Grade many notebooks in one kernel pool (far faster than one `learn check` each): name -> NotebookResult."""
    from grader.grading import Grader

    async def run():
        async with Grader(pool_size=pool_size, seed=seed) as grader:
            results = await asyncio.gather(*(grader.grade(p) for p in jobs.values()))
        return dict(zip(jobs, results))

    return asyncio.run(run())


def find_check(result, name: str):
    return next(c for c in result.checks if c.name == name)


CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, driven by playwright); skipped, saying why, if it cannot start."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        except Exception as exc:  # noqa: BLE001 - no browser here: say so and skip
            pytest.skip(f"headless Chromium cannot be launched here: {str(exc).splitlines()[0][:200]}")
        yield chromium
        chromium.close()


def open_page(browser, path: Path):
    """Open a local page in the browser, collecting console errors, dialogs and every request made."""
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    events = {"console": [], "dialogs": [], "requests": []}
    page.on("console", lambda m: events["console"].append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: events["console"].append(f"pageerror: {e}"))
    page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
    page.on("request", lambda r: events["requests"].append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, events


def keep_screenshot(page, name: str, docs_name: str | None = None) -> None:
    """Keep a full-page screenshot in test-artifacts/NAME.png for people to look at; with
    `docs_name`, also the first screen as a small JPEG, test-artifacts/docs/DOCS_NAME.jpg, which
    scripts/docs-screenshots copies into docs/img/ (the pictures of the documentation)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if docs_name:
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SHOTS / f"{docs_name}.jpg"), type="jpeg", quality=70)
