"""The learner's own frames of a traceback: their cells in full, library internals folded to one line.

    IPython's traceback of a cell ─┐                    ┌─ cell 7, line 4, in calc_grad     (kept, with its code)
    the probe harness's traceback ─┼─► frames ─► fold ─┤  … 3 frames inside torch          (one line per run)
                                   ┘                    └─ RuntimeError: Trying to backward…  (kept)

A learner reads a traceback from the top; screens of `torch/autograd/graph.py` teach nothing and
push their own line out of sight. Frames in a notebook cell (`cell N`, `In[N]`, `Cell In[N]`)
are the learner's and are kept with their code lines; every other frame (a library, Python's
standard library, a helper file) is folded, and a run of them becomes one line naming where it
went. No path is ever shown: `…/site-packages/torch/_tensor.py` reads `torch/_tensor.py`.

`fold` is idempotent, so results stored before it existed are folded again when shown.
"""

from __future__ import annotations

import re

__all__ = ["fold", "scrub_paths", "library_of", "is_learner_frame", "FOLDED"]

_CELL = r"(?:Cell )?(?:cell \d+|In\s*\[\d+\])"
_LEARNER_HEADER = re.compile(rf"^\s*{_CELL}(?:, line \d+)?(?:, in .+)?\s*$")
_FILE_IPYTHON = re.compile(r"^\s*File (?P<path>.+?):(?P<line>\d+)(?:, in (?P<func>.+))?\s*$")
_FILE_PYTHON = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?\s*$')
_FILE_PROBE = re.compile(r"^(?P<path>/[^,]*|[A-Za-z]:\\[^,]*|<[^>]*>), line (?P<line>\d+), in (?P<func>.+)$")
_BANNER = re.compile(r"^\s*(?:[\w.]+\s{2,})?Traceback \(most recent call last\):?\s*$")
_PACKAGES = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][^\s/\\:\"',()]+)*[/\\](?:site|dist)-packages[/\\]")
_STDLIB = re.compile(r"[/\\]lib[/\\]python\d+(?:\.\d+)?[/\\](?!(?:site|dist)-packages)")
FOLDED = re.compile(r"^… \d+ frames? inside ")
_MARKED = re.compile(r"^\s*-+>\s+")  # IPython's arrow at the line that raised: "----> 5     loss = ..."


def scrub_paths(text: str) -> str:
    """`/usr/lib/python3/site-packages/torch/_tensor.py` -> `torch/_tensor.py` (no installation paths)."""
    return _PACKAGES.sub("", text)


def library_of(path: str) -> str:
    """Where a frame that is not the learner's runs, in a word: a package, Python itself, a file."""
    path = path.strip()
    found = re.search(r"[/\\](?:site|dist)-packages[/\\]([^/\\]+)", path)
    if found:
        name = found.group(1)
        return name[:-3] if name.endswith(".py") else name
    if _STDLIB.search(path):
        return "Python's standard library"
    if path.startswith("<"):
        return path.strip("<>").split()[0] or "learn"
    return re.split(r"[/\\]", path)[-1]


def is_learner_frame(line: str) -> bool:
    return bool(_LEARNER_HEADER.match(line))


def _header(line: str) -> tuple[str, str] | None:
    """("learner", "") or ("library", name) for a line that starts a frame; None for any other line."""
    if _LEARNER_HEADER.match(line):
        return "learner", ""
    for pattern in (_FILE_IPYTHON, _FILE_PYTHON, _FILE_PROBE):
        m = pattern.match(line)
        if m:
            return "library", library_of(m.group("path"))
    if FOLDED.match(line.strip()):  # folded before: keep as it is
        return "folded", line.strip()
    return None


def _is_exception_line(line: str) -> bool:
    """A line at column 0 that is not a code-context line of IPython's (`----> 4 ...`)."""
    return bool(line) and not line[0].isspace() and not re.match(r"^-*>", line)


def fold(lines: list[str] | None) -> list[str]:
    """The traceback as a learner should read it: their frames, one line per run of other frames, the error."""
    if not lines:
        return list(lines or [])
    blocks: list[list] = []  # [kind, library name, lines]
    for raw in lines:
        line = raw.rstrip()
        if _BANNER.match(line):
            continue
        head = _header(line)
        if head is not None:
            blocks.append([head[0], head[1], [line]])
        elif blocks and blocks[-1][0] == "text":
            blocks[-1][2].append(line)
        elif blocks and _is_exception_line(line):
            blocks.append(["text", "", [line]])
        elif blocks:
            blocks[-1][2].append(line)
        else:
            blocks.append(["text", "", [line]])
    out: list[str] = []
    run: list[str] = []  # libraries of consecutive folded frames, in order

    def flush():
        if run:
            names = list(dict.fromkeys(run))
            out.append(f"… {len(run)} frame{'s' * (len(run) != 1)} inside {', '.join(names)}")
            run.clear()

    for kind, name, body in blocks:
        if kind == "learner":  # IPython shows lines around the one that raised: keep that one (marked ---->)
            marked = ["    " + _MARKED.sub("", ln).split(maxsplit=1)[-1].strip() for ln in body[1:] if _MARKED.match(ln)]
            body = [body[0], *marked] if marked else body
        if kind == "library":
            run.append(name)
        elif kind == "folded":
            m = re.match(r"^… (\d+) frames? inside (.+)$", name)
            run.extend([m.group(2)] * int(m.group(1)) if m else [name])
        else:
            flush()
            out.extend(scrub_paths(line) for line in body)
    flush()
    return out
