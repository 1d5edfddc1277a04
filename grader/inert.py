"""Learner text made inert: shown in every view, never acted on.

Exception messages, printed output, tracebacks, the names of student folders and files - anything
that comes from a submission - reach the terminal, CSV files, HTML pages and JUnit XML. Each view
passes such text through one function here, so a notebook cannot clear an instructor's screen,
retitle their terminal, hide text behind a bidi override, plant a spreadsheet formula or break the
XML file a CI server reads:

    visible(text)       colour codes (ANSI SGR, as in IPython tracebacks) removed; every other
                        control character - ESC and the sequences it starts, CR, backspace, C1
                        controls, bidi overrides and isolates, line/paragraph separators, lone
                        surrogates, U+FFFE/U+FFFF - written as a visible escape (\\x1b, \\u202e).
                        Newline and tab are kept (multi-line tracebacks) unless single_line.
    terminal(text)      visible(): for rich Text and plain echo
    markup(text)        visible() and rich markup escaped: for strings rich parses ("[bold]x[/]"
                        and "[link=...]" print literally)
    csv_cell(value)     visible(), and a cell a spreadsheet would evaluate (starting with = + - @,
                        tab or CR) gets a leading ' (OWASP CSV injection); numbers stay numbers
    xml_text(text)      visible(): ElementTree escapes <>&" and no character XML 1.0 forbids is left
    scrub(obj, fn)      a copy of a result object (dataclasses, lists, dicts) with fn applied to
                        every string in it, enums excepted

HTML pages are escaped by jinja2's autoescape (grader.html); their templates apply `visible` to
tracebacks as the `inert` filter. JSON (`learn check --json`, Gradescope) needs nothing: json.dumps
writes every control and non-ASCII character as a \\u escape.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from enum import Enum
from typing import Any

__all__ = ["visible", "terminal", "markup", "csv_cell", "xml_text", "scrub", "FORMULA_START"]

_SGR = re.compile(r"\x1b\[[0-9;:]*m")  # colours and bold: formatting only, dropped
_UNSAFE = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 controls but tab and newline, DEL, C1 controls (CSI is \x9b)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff"  # lone surrogates (JSON can carry them; they cannot be encoded to UTF-8)
    "\ufffe\uffff"  # noncharacters XML 1.0 forbids
)
_UNSAFE_MULTI = re.compile(f"[{_UNSAFE}]")
_UNSAFE_SINGLE = re.compile(f"[{_UNSAFE}\t\n]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: Any, single_line: bool = False) -> str:
    """`text` (any object: str() of it) with colour codes removed and every other control
    character written as a visible escape; tab and newline kept unless `single_line`."""
    text = _SGR.sub("", text if isinstance(text, str) else str(text))
    return (_UNSAFE_SINGLE if single_line else _UNSAFE_MULTI).sub(_escape, text)


def terminal(text: Any, single_line: bool = False) -> str:
    """Learner text for the terminal: see `visible`."""
    return visible(text, single_line)


def markup(text: Any, single_line: bool = True) -> str:
    """Learner text to put inside a string rich parses for markup (console.print(f"[red]{...}"))."""
    from rich.markup import escape

    return escape(visible(text, single_line))


def csv_cell(value: Any) -> Any:
    """A CSV cell: numbers unchanged; text made visible, with a leading ' where a spreadsheet
    would read a formula (=, +, -, @, tab, CR first)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = visible(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def xml_text(text: Any) -> str:
    """Text for an XML element or attribute (ElementTree does the <>&" escaping): no character
    XML 1.0 forbids remains (they are written as visible escapes)."""
    return visible("" if text is None else text)


def scrub(obj: Any, fn: Callable[[str], str] = terminal) -> Any:
    """A copy of `obj` with `fn` applied to every string in it (through dataclasses, lists,
    tuples and dict values); enums (Status) and other objects are kept as they are."""
    if isinstance(obj, Enum):
        return obj
    if isinstance(obj, str):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: scrub(getattr(obj, f.name), fn) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, list):
        return [scrub(v, fn) for v in obj]
    if isinstance(obj, tuple):
        return tuple(scrub(v, fn) for v in obj)
    if isinstance(obj, dict):
        return {k: scrub(v, fn) for k, v in obj.items()}
    return obj
