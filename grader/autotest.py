"""nbgrader 0.9's `### AUTOTEST expr; expr` and `### HASHED AUTOTEST expr` directives, made into
plain asserts when `learn assign` converts an assignment (as nbgrader's generate_assignment does).

    autotests.yml (the assignment folder, else the course folder two levels up)
      python3: dispatch "type({{snippet}})"  ─► which templates apply (int, float, list, default ...)
               templates: test / fail          ─► one assert per template, expected value computed
               normalize, check, hash, setup,      by running the *instructor's* solution
               success

    solution notebook ──► one instructor kernel (trusted: the instructor's own code, as in
    nbgrader), every code cell run in order; at each directive line, each snippet's tests are
    evaluated and written as `check` lines (with `hash` for HASHED: the student sees a salted
    digest, not the value). The directive line itself is replaced.

The values are what IPython displays (text/plain), stripped of outer quotes, exactly as nbgrader
computes them, so the generated asserts are the ones nbgrader would write.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .errors import LessonPackError

__all__ = ["has_autotests", "instantiate", "AUTOTEST_LINE"]

AUTOTEST_LINE = re.compile(r"^\s*#+\s*(HASHED\s+)?AUTOTEST\b(.*)$")
KERNEL_TIMEOUT = 60


def has_autotests(nb) -> bool:
    return any(cell.cell_type == "code" and any(AUTOTEST_LINE.match(line) for line in cell.source.split("\n")) for cell in nb.cells)


def _templates(folder: Path) -> tuple[dict, Path]:
    import yaml

    for candidate in (folder / "autotests.yml", folder.parent.parent / "autotests.yml", folder.parent / "autotests.yml"):
        if candidate.is_file():
            try:
                data = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise LessonPackError(f"{candidate}: not readable YAML: {exc}") from None
            tests = data.get("python3") or data.get("python") if isinstance(data, dict) else None
            if not isinstance(tests, dict) or not {"templates", "dispatch", "check", "normalize"} <= set(tests):
                raise LessonPackError(
                    f"{candidate}: needs a python3 section with templates, dispatch, check and normalize (nbgrader's format)"
                )
            return tests, candidate
    raise LessonPackError(
        f"the notebooks in {folder} use nbgrader's ### AUTOTEST directive but there is no autotests.yml next to them "
        "(nor in the course folder): copy nbgrader's autotests.yml there"
    )


def _render(template: str, **values) -> str:
    import jinja2

    return jinja2.Environment(loader=jinja2.BaseLoader()).from_string(str(template)).render(**values)


class _Kernel:
    """One IPython kernel for the instructor's solution: run code, return what it displays."""

    def __init__(self, cwd: Path):
        import subprocess

        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), stderr=subprocess.DEVNULL)

    def run(self, code: str, where: str) -> str | None:
        result: list[str] = []
        failure: list[str] = []

        def hook(msg):
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind in ("display_data", "update_display_data", "execute_result"):
                result[:] = [content["data"].get("text/plain", "")]
            elif kind == "error":
                failure[:] = [f"{content.get('ename')}: {content.get('evalue')}"]

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=KERNEL_TIMEOUT)
        if failure or reply["content"].get("status") != "ok":
            raise LessonPackError(f"{where}: the solution raised {failure[0] if failure else 'an error'} while running {code!r}")
        return result[0].strip('"').strip("'") if result else None

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def _tests_for(kernel: _Kernel, tests: dict, snippet: str, salt: str | None, where: str) -> list[str]:
    kind = kernel.run(_render(tests["dispatch"], snippet=snippet), where)
    templates = tests["templates"].get(kind) or tests["templates"].get("default")
    if not templates:
        raise LessonPackError(f"{where}: autotests.yml has no templates for {kind} and no default")
    lines = []
    for item in templates:
        if not isinstance(item, dict) or "test" not in item or "fail" not in item:
            raise LessonPackError(f"{where}: each autotests.yml template needs a test and a fail entry")
        code = _render(tests["normalize"], snippet=item["test"])
        if salt is not None:
            if "hash" not in tests:
                raise LessonPackError(f"{where}: ### HASHED AUTOTEST needs a hash entry in autotests.yml")
            code = _render(tests["hash"], snippet=code, salt=salt)
        code = _render(code, snippet=snippet)
        value = kernel.run(code, where)
        message = _render(item["fail"], snippet=snippet).replace('"', '\\"')
        lines.append(_render(tests["check"], snippet=code, value=value, message=message))
    return lines


def instantiate(nb, folder: Path, cwd: Path, name: str) -> None:
    """Replace every directive line of `nb` (a solution notebook, changed in place) by the asserts
    nbgrader would generate. Raises LessonPackError with the notebook and cell on any problem."""
    tests, _ = _templates(folder)
    kernel = _Kernel(cwd)
    try:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            where = f"{name} cell {index + 1}"
            lines, out, pending, setup_done = cell.source.split("\n"), [], [], False
            salt_int = int(hashlib.sha256((cell.source + str(index)).encode()).hexdigest(), 16) % 10**6
            for line in lines:
                m = AUTOTEST_LINE.match(line)
                if not m:
                    out.append(line)
                    pending.append(line)
                    continue
                meta = cell.metadata.get("nbgrader") or {}
                if not meta.get("grade") or meta.get("solution"):
                    raise LessonPackError(f"{where}: ### AUTOTEST belongs in an autograder test cell (nbgrader grade: true)")
                kernel.run("\n".join(pending), where)
                pending = []
                if tests.get("setup") and not setup_done:
                    out.append(tests["setup"])
                    kernel.run(tests["setup"], where)
                    setup_done = True
                for snippet in (s.strip() for s in m.group(2).strip().strip(";").split(";")):
                    if not snippet:
                        continue
                    salt = None
                    if m.group(1):
                        salt_int += 1
                        salt = hex(salt_int)[2:]
                    out += [*_tests_for(kernel, tests, snippet, salt, where), ""]  # a blank line after each, as nbgrader
            if setup_done and tests.get("success"):
                out.append(tests["success"])
                pending.append(tests["success"])
            if any(line.strip() for line in pending):
                kernel.run("\n".join(pending), where)
            cell.source = "\n".join(out)
    finally:
        kernel.close()
