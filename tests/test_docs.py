"""Every command documents itself; the public API is what __all__ says."""

import click
import pytest

import grader
from grader.cli import cli


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
