"""Every shell and Python example of the documentation runs as written: page by page, in order, in
a fresh folder with its own HOME and LEARN_HOME (tests/docs_blocks.py). The authoring guide is
followed literally: its files are written from the page, its commands run, and the pack it builds
passes its self-test, names its mistakes and installs from the published zip."""

from __future__ import annotations

import json

import pytest

from . import docs_blocks

pytestmark = pytest.mark.slow

GUIDE = docs_blocks.DOCS / "authoring" / "guide.md"
PAGES = [p for p in docs_blocks.pages() if p != GUIDE and any(docs_blocks.runnable(b) for b in docs_blocks.parse(p))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(docs_blocks.ROOT)))
def test_examples_of_the_page_run(page, tmp_path):
    problems, run = docs_blocks.run_page(page, tmp_path)
    assert not problems, problems[0] + "\n\n--- what ran ---\n" + "\n".join(run.log)[-6000:]


def test_the_authoring_guide_works_as_written(tmp_path):
    problems, run = docs_blocks.run_page(GUIDE, tmp_path)
    assert not problems, problems[0] + "\n\n--- what ran ---\n" + "\n".join(run.log)[-6000:]
    work = run.work
    # the pack of the guide, with the guide's own files, proved by learn assign
    marker = json.loads((work / "lesson5-assignment" / ".learn-assign.json").read_text())
    assert marker["lesson"] == "lesson5"
    assert (work / "lesson5" / "checks.py").read_text() == _file_block("lesson5/checks.py")
    release = (work / "lesson5-assignment" / "release" / "lesson5.ipynb").read_text()
    assert "coeffs.grad.zero_()" not in release and "NotImplementedError" in release
    # the learner's copy from the published zip
    assert (work / "lesson5-learner" / "lesson5.ipynb").is_file()
    assert any("The gradient is not cleared" in entry for entry in run.log)  # the named mistake, in the learner's check


def _file_block(title: str) -> str:
    return next(b.code for b in docs_blocks.parse(GUIDE) if b.title == title)
