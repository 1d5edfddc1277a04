"""Every command documents itself; the public API is what __all__ says; the documentation site
(docs/, mkdocs.yml) and README hold together - checked without running anything
(tests/test_docs_examples.py runs the examples)."""

import re

import click
import pytest
import yaml

import grader
from grader.cli import cli

from . import docs_blocks


def commands():
    return sorted(cli.commands)


@pytest.mark.parametrize("name", commands())
def test_every_command_has_help(runner, name):
    command = cli.commands[name]
    assert command.help and len(command.help.strip()) > 20, f"`learn {name}` needs help text"
    result = runner.invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"`learn {name} {param.opts[0]}` needs help text"


def test_public_api_matches_all():
    for name in grader.__all__:
        assert getattr(grader, name) is not None
    assert "check_notebook" in grader.__all__ and "NotebookResult" in grader.__all__


def test_library_modules_do_not_import_click():
    import pathlib

    for path in pathlib.Path(grader.__file__).parent.glob("*.py"):
        if path.name != "cli.py":
            assert "import click" not in path.read_text(), f"{path.name} imports click; keep the CLI in cli.py"


# ---------------------------------------------------------------------------------------------
# the documentation site and README


ROOT = docs_blocks.ROOT
ALL_BLOCKS = [b for page in docs_blocks.pages() for b in docs_blocks.parse(page)]
EXAMPLES = [b for b in ALL_BLOCKS if b.is_example]
INSTALL = "pip install -e '.[test]' && learn check solutions/lesson3/*.ipynb"


def _nav_pages(nav) -> list[str]:
    found = []
    for item in nav:
        for value in item.values() if isinstance(item, dict) else [item]:
            found += _nav_pages(value) if isinstance(value, list) else [value]
    return found


def test_every_page_is_in_the_navigation_and_exists():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)  # no !!python tags needed
    nav = _nav_pages(config["nav"])
    on_disk = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(nav) == on_disk
    for audience in ("get-started.md", "learners/index.md", "instructors/index.md", "server.md", "authoring/guide.md",
                     "grading.md", "reference/api.md", "reference/exit-codes.md", "changelog.md"):  # fmt: skip
        assert audience in nav


@pytest.mark.parametrize("block", EXAMPLES, ids=lambda b: b.where)
def test_every_example_is_run_or_says_why_not(block):
    run = block.run
    if "skip" in run:
        assert len(run["skip"]) > 15, f"{block.where}: a skipped example needs its reason"
    elif "covered_by" in run:
        target = run["covered_by"]
        path, _, test = target.partition("::")
        assert (ROOT / path).is_file(), f"{block.where}: covered by {path}, which does not exist"
        if test:
            assert re.search(rf"^def {re.escape(test)}\(", (ROOT / path).read_text(), re.M), f"{block.where}: no {target}"
        if path.endswith(".md"):  # README's summaries: each line must be run, as written, on the pages named
            pages = [ROOT / p for p in run["note"].split() if p.endswith(".md")]
            ran = {_norm(line) for page in pages for b in docs_blocks.parse(page) if docs_blocks.runnable(b) and b.is_example
                   for line in docs_blocks.commands(b.code)}  # fmt: skip
            for line in docs_blocks.commands(block.code):
                assert _norm(line) in ran, f"{block.where}: `{line}` is not run on {', '.join(p.name for p in pages)}"
    else:
        assert set(run) <= {"exit", "timeout", "expect", "background", "url"}, f"{block.where}: unknown options {run}"
        if block.lang == "python":
            compile("".join(block.setup_python) + block.code, block.where, "exec")


def _norm(line: str) -> str:
    """A command without its trailing comment and extra spaces."""
    return " ".join(re.sub(r"\s+#.*$", "", line).split())


def test_few_examples_are_left_unrun():
    skipped = [b.where for b in EXAMPLES if "skip" in b.run]
    run_here = [b for b in EXAMPLES if docs_blocks.runnable(b)]
    assert len(run_here) >= 25 and len(skipped) <= len(run_here), skipped


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.lang in ("bash", "sh")], ids=lambda b: b.where)
def test_every_learn_command_on_the_site_parses(block):
    for line in docs_blocks.commands(block.code):
        for args in docs_blocks.learn_invocations(line):
            problem = docs_blocks.cli_problem(args)
            assert problem is None, f"{block.where}: `learn {' '.join(args)}`: {problem}"


def test_the_command_line_parser_check_catches_drift():
    assert docs_blocks.cli_problem(["check", "lesson3", "--no-such-option"])
    assert docs_blocks.cli_problem(["no-such-command"])
    assert docs_blocks.cli_problem(["export", "--format", "pdf"])
    assert docs_blocks.cli_problem(["grade", "missing-folder/", "--assignment", "hw3"]) is None  # files are made by earlier steps
    assert docs_blocks.learn_invocations("learn fetch x && learn check x > out.txt # learn nope") == [["fetch", "x"], ["check", "x"]]
    assert docs_blocks.learn_invocations("sudo -u postgres createuser learn; A=1 learn list | head") == [["list"]]


def test_readme_is_short_and_keeps_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    first = re.search(r"```(?:bash|sh|console)?\n(.*?)```", readme, re.S)[1]  # what .ci/run extracts and runs
    assert first.strip().splitlines()[0] == INSTALL
    assert "```bash\npython -m pytest -q\n```" in readme  # CI's test command, verbatim
    assert "mkdocs serve" in readme and "![" in readme
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", readme):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_ci_runs_readmes_commands_the_docs_build_and_a_server_install():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci and "mkdocs build --strict" in ci
    assert "scripts/server-install-check" in ci
    check = (ROOT / "scripts" / "server-install-check").read_text()
    assert '".[server]"' in check and "/healthz" in check and 'learn" serve' in check


def test_pictures_exist_and_are_small():
    for page in docs_blocks.pages():
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            path = (page.parent / target).resolve()
            assert path.is_file(), f"{page.name} shows {target}, which does not exist (scripts/docs-screenshots makes it)"
            assert path.stat().st_size < 200_000, f"{target} is {path.stat().st_size} bytes; keep pictures small"


def test_no_page_is_left_with_a_todo():
    """Every section that waited for work in progress has been written."""
    todo = [p.name for p in (ROOT / "docs").rglob("*.md") if "TODO (issue" in p.read_text()]
    assert not todo, todo
    assert "TODO(issue" not in (ROOT / "README.md").read_text()


def test_checks_api_is_documented():
    import inspect

    from grader import checks

    for name in ("Case", "Mistake", "check", "explained", "vectorised", "loop_case", "line_plot", "CaseRng", "Check"):
        obj = getattr(checks, name)
        doc = inspect.getdoc(obj) or ""
        assert len(doc) > 60, f"grader.checks.{name} needs a docstring"
    page = (ROOT / "docs" / "authoring" / "checks.md").read_text()
    for name in ("check", "Case", "Mistake", "explained", "vectorised", "loop_case", "line_plot", "Tolerance", "Verdict"):
        assert name in page
    assert re.search(r"^::: grader\.grading\.check_notebook$", (ROOT / "docs" / "reference" / "api.md").read_text(), re.M)
