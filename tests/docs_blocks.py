"""The code blocks of the documentation (docs/**/*.md and README.md), and how each is run.

    page.md ──parse──► Block(lang, code, title, run options, hidden setup)
                          │
      tests/test_docs.py ─┤ no kernels: every block is run or says why not; every `learn` command parses
      tests/test_docs_examples.py ── runs them, page by page, in a fresh folder (see run_page)

An HTML comment just before a fenced block says how it is run (docs/reference/developing.md):

    <!-- run: exit=0,1 timeout=240 expect="text" -->    allowed exit codes, seconds per command, output
    <!-- run: background=20 url=http://... -->           a server or watcher: start, wait, stop
    <!-- run: covered-by tests/test_x.py::test_y -->      run by another test (which must exist)
    <!-- run: skip REASON -->                            not run here, and why
    <!-- setup: shell lines -->  <!-- setup-python: code -->   hidden lines run before the block

A block with `title="path"` is a file: the runner writes it there when it reaches it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE_LANGS = {"bash", "sh", "python"}
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)(?P<info>.*)$")
_TITLE = re.compile(r'title="([^"]+)"')


@dataclass
class Block:
    page: str  # relative to the repository
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    title: str | None = None
    run: dict = field(default_factory=dict)  # parsed <!-- run: ... -->
    setup: list[str] = field(default_factory=list)  # <!-- setup: ... --> (shell)
    setup_python: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_example(self) -> bool:
        return self.lang in EXAMPLE_LANGS and self.title is None

    @property
    def is_file(self) -> bool:
        return self.title is not None


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]


def parse_run(text: str) -> dict:
    """`skip REASON`, `covered-by TARGET ...`, or key=value options."""
    text = text.strip()
    if text.startswith("skip"):
        return {"skip": text[4:].strip()}
    if text.startswith("covered-by"):
        rest = text[len("covered-by") :].strip()
        return {"covered_by": rest.split()[0] if rest else "", "note": rest}
    options = {}
    for token in shlex.split(text):
        key, _, value = token.partition("=")
        options[key] = value
    return options


def parse(path: Path) -> list[Block]:
    """The fenced blocks of one page, each with the comments just before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = str(path.relative_to(ROOT))
    blocks: list[Block] = []
    pending: list[tuple[str, str]] = []  # (kind, text) of comments since the last content
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("<!--"):
            body = [stripped[4:]]
            while "-->" not in body[-1] and i + 1 < len(lines):
                i += 1
                body.append(lines[i])
            text = "\n".join(body).rsplit("-->", 1)[0]
            head, _, rest = text.strip().partition(":")
            if head in ("run", "setup", "setup-python"):
                pending.append((head, rest if head != "run" else rest.strip()))
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            indent = fence["indent"]
            start = i + 1
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            title = _TITLE.search(fence["info"])
            block = Block(rel, start, fence["lang"], "\n".join(body) + "\n", title[1] if title else None)
            for kind, text in pending:
                if kind == "run":
                    block.run = parse_run(text)
                elif kind == "setup":
                    block.setup.append(text.strip("\n"))
                else:
                    block.setup_python.append(_dedent_comment(text))
            pending = []
            blocks.append(block)
            i += 1
            continue
        if stripped:
            pending = []
        i += 1
    return blocks


def _dedent_comment(text: str) -> str:
    import textwrap

    return textwrap.dedent(text.strip("\n")) + "\n"


def commands(code: str) -> list[str]:
    """The logical lines of a shell block: continuations joined, blank and comment-only lines dropped."""
    out, current = [], ""
    for raw in code.splitlines():
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip() and not current.strip().startswith("#"):
            out.append(current.strip())
        current = ""
    return out


def learn_invocations(line: str) -> list[list[str]]:
    """The argument lists of every `learn ...` in a shell line (`a && learn x -y > f` -> [['x', '-y']])."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    found, current, at_start = [], None, True
    for token in tokens + [";"]:
        if token and set(token) <= set("&|;<>()"):
            if isinstance(current, list):
                found.append(current)
            current = "redirect-target" if token in (">", ">>", "<") else None
            at_start = current is None
            continue
        if current == "redirect-target":
            current = None
            continue
        if isinstance(current, list):
            current.append(token)
        elif at_start and re.fullmatch(r"\w+=.*", token):
            continue  # VAR=value before a command
        elif at_start and token == "learn":
            current = []
        else:
            at_start = False
    return [c for c in found if isinstance(c, list)]


def cli_problem(args: list[str]) -> str | None:
    """Why `learn ARGS` would be refused by the command line parser (None: it parses)."""
    import click

    from grader.cli import cli

    if not args or args[0] in ("--help", "-h", "--version"):
        return None
    command = cli.commands.get(args[0])
    if command is None:
        return f"no command `learn {args[0]}`"
    root = click.Context(cli, info_name="learn")
    try:
        command.make_context(args[0], list(args[1:]), parent=root)
    except click.BadParameter as exc:
        if exc.param is not None and isinstance(exc.param.type, click.Path):
            return None  # a file named by example, or made by an earlier command
        return exc.format_message()
    except click.UsageError as exc:
        return exc.format_message()
    except click.exceptions.Exit:
        return None
    return None


# ---------------------------------------------------------------------------------------------
# running a page


class PageRun:
    """One page's examples, run in order in a fresh folder (`work`) with its own HOME and LEARN_HOME."""

    def __init__(self, page: str, tmp: Path):
        self.page = page
        self.work = tmp / "work"
        self.work.mkdir(parents=True)
        self.log: list[str] = []
        self.env = dict(os.environ)
        bindir = str(Path(sys.executable).parent)
        self.env.update(
            HOME=str(tmp / "home"),
            LEARN_HOME=str(tmp / "learn-home"),
            LEARN_CACHE_DIR=str(tmp / "cache"),
            XDG_CACHE_HOME=str(tmp / "xdg-cache"),
            PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
            REPO=str(ROOT),
            MPLBACKEND="Agg",
            PYTHONDONTWRITEBYTECODE="1",
        )
        self.env.pop("VIRTUAL_ENV", None)
        (tmp / "home").mkdir()
        from grader import sandbox

        if sandbox.choose().mode != "bwrap":  # as the test suite does: our own example notebooks
            self.env["LEARN_ALLOW_UNSANDBOXED"] = "1"

    def shell(self, line: str, timeout: float) -> tuple[int, str]:
        started = time.monotonic()
        proc = subprocess.run(["bash", "-c", line], cwd=self.work, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        output = proc.stdout + proc.stderr
        self.log.append(f"$ {line}\n[exit {proc.returncode}, {time.monotonic() - started:.1f}s]\n{output[-3000:]}")
        return proc.returncode, output

    def background(self, line: str, seconds: float, url: str | None) -> str | None:
        """Start a long-running command, wait for `url` to answer (or `seconds`), then stop it."""
        proc = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=self.work, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        deadline, problem = time.monotonic() + seconds, None
        answered = False
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if url:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        answered = response.status == 200
                except OSError:
                    pass
                if answered:
                    break
            time.sleep(0.5)
        if proc.poll() is not None and proc.returncode != 0:
            problem = f"`{line}` exited {proc.returncode} while it should keep running"
        elif url and not answered:
            problem = f"`{line}`: {url} did not answer within {seconds:g}s"
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        output = proc.stdout.read() if proc.stdout else ""
        self.log.append(f"$ {line} &  (background {seconds:g}s, url {url})\n{output[-3000:]}")
        return problem

    def run_block(self, block: Block) -> str | None:
        """Run one block; the problem found, or None."""
        for setup in block.setup:
            code, out = self.shell(setup, 120)
            if code != 0:
                return f"{block.where}: the hidden setup failed (exit {code}): {out[-500:]}"
        if block.is_file:
            target = self.work / block.title
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
            return None
        timeout = float(block.run.get("timeout", 120))
        if block.lang == "python":
            script = self.work / f"_docs_block_{block.line}.py"
            script.write_text("".join(block.setup_python) + block.code, encoding="utf-8")
            allowed = _codes(block.run.get("exit", "0"))
            code, out = self.shell(f"python {script.name}", timeout)
            if code not in allowed:
                return f"{block.where}: the Python example exited {code} (allowed: {sorted(allowed)}):\n{out[-2000:]}"
            return self._expected(block, out)
        allowed = _codes(block.run.get("exit", "0,1"))
        outputs = []
        for line in commands(block.code):
            if "background" in block.run:
                problem = self.background(line, float(block.run["background"]), block.run.get("url"))
                if problem:
                    return f"{block.where}: {problem}"
                continue
            code, out = self.shell(line, timeout)
            outputs.append(out)
            if code not in allowed:
                return f"{block.where}: `{line}` exited {code} (allowed: {sorted(allowed)}):\n{out[-2000:]}"
        return self._expected(block, "".join(outputs))

    @staticmethod
    def _expected(block: Block, output: str) -> str | None:
        want = block.run.get("expect")
        if want and want not in output:
            return f"{block.where}: the output does not contain {want!r}:\n{output[-2000:]}"
        return None


def _codes(text: str) -> set[int]:
    return {int(c) for c in str(text).split(",") if c.strip()}


def runnable(block: Block) -> bool:
    return (block.is_example or block.is_file) and "skip" not in block.run and "covered_by" not in block.run


def run_page(page: Path, tmp: Path) -> tuple[list[str], PageRun]:
    """Run every runnable block of a page in order; the problems found (stops at the first)."""
    run = PageRun(str(page.relative_to(ROOT)), tmp)
    for block in parse(page):
        if not runnable(block):
            continue
        problem = run.run_block(block)
        if problem:
            return [problem], run
    return [], run
