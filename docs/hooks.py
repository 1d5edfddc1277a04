"""MkDocs hooks: pages generated from the code at build time, so they cannot drift.

    <!-- generated: cli -->          every `learn` command's --help, as `learn CMD --help` prints it
    <!-- generated: errors -->       grader.errors' exceptions with their exit codes

A marker is replaced in the page's markdown before it is rendered; the page keeps its own prose.
"""

from __future__ import annotations

import inspect

CLI_MARKER = "<!-- generated: cli -->"
ERRORS_MARKER = "<!-- generated: errors -->"


def cli_reference() -> str:
    """Each command's help text, made by click itself (as `learn CMD --help` prints it)."""
    import click

    from grader.cli import cli

    root = click.Context(cli, info_name="learn", terminal_width=100, max_content_width=100)
    parts = ["## learn", "", "```text", cli.get_help(root), "```", ""]
    for name in sorted(cli.commands):
        command = cli.commands[name]
        if command.hidden:
            continue
        ctx = click.Context(command, info_name=name, parent=root, terminal_width=100, max_content_width=100)
        summary = command.get_short_help_str(limit=200)
        parts += [f"## learn {name}", "", summary, "", "```text", command.get_help(ctx), "```", ""]
    return "\n".join(parts)


def errors_table() -> str:
    """Every LearnError subclass, its exit code and the first line of its docstring."""
    from grader import errors

    rows = ["| exception | exit code | raised when |", "|---|---|---|"]
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.LearnError)]
    for cls in sorted(classes, key=lambda c: (c.exit_code, c.__name__)):
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        rows.append(f"| `{cls.__name__}` | {cls.exit_code} | {doc} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook signature
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if ERRORS_MARKER in markdown:
        markdown = markdown.replace(ERRORS_MARKER, errors_table())
    return markdown
