"""`learn predict PACK`: predict-the-output drills on the cells of a lesson's solution notebooks.

A drill is a mark in a cell's metadata (data, like the rest of a pack):

    "metadata": {"learn": {"predict": {"id": "view-flat", "kind": "shape",
                                       "prompt": "...", "explanation": "..."}}}

    kind     what the learner predicts about the value of the cell's last expression
    shape    its shape: "(3, 4)" or "3, 4" (a tuple of tensors: "(3, 4), (3,)")
    dtype    its dtype: "float32", "torch.int64", "long", "bool"
    value    its value, a number or a nested list, within `tolerance` (absolute, default 1e-4)
    choice   which of `options` its repr (or str) is
    raises   the name of the exception the cell raises ("no error" if none); the cell may be
             a raw cell, so that the solution notebook still runs clean for `learn check`

Lines starting with "#|" (e.g. `#| solution-only`, which keeps a drill cell out of the
exercises) are not shown. The flow:

    load_drills(lesson) --validated--> Drill list
    DrillRunner: one kernel job per notebook (sandboxed pool): the code cells before each drill run
      as they are; each drill cell runs through a capture function that records its outcome
      (shape, dtype, value, repr, or the exception) --probe--> raw outcomes, into this process
    the learner's prediction is parsed and compared here (never sent to a kernel)
"""

from __future__ import annotations

import ast
import asyncio
import datetime as _dt
import json
import math
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DrillFormatError, LearnError, QuizAnswersError
from .yamlfile import load_yaml

__all__ = ["Drill", "DrillResult", "load_drills", "parse_prediction", "judge", "DrillRunner", "run_drills", "DRILL_SCHEMA"]

KINDS = ("shape", "dtype", "value", "choice", "raises")
_MARK_KEYS = {"id", "kind", "prompt", "explanation", "options", "tolerance", "topic"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_DEFAULT_PROMPTS = {
    "shape": "What is the shape of the result?",
    "dtype": "What is the dtype of the result?",
    "value": "What value does the cell output?",
    "choice": "What does the cell output?",
    "raises": "Does this cell raise an error? Which one?",
}
_RAISES_OPTIONS = ("no error", "RuntimeError", "IndexError", "TypeError", "ValueError")
_DTYPE_ALIASES = {
    "float": "float32", "float32": "float32", "double": "float64", "float64": "float64", "half": "float16",
    "float16": "float16", "bfloat16": "bfloat16", "long": "int64", "int64": "int64", "int": "int32", "int32": "int32",
    "short": "int16", "int16": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool", "complex64": "complex64",
}  # fmt: skip

DRILL_SCHEMA = """
CREATE TABLE IF NOT EXISTS drill_results (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    pack TEXT NOT NULL,
    drill TEXT NOT NULL,
    prediction TEXT NOT NULL,
    actual TEXT NOT NULL,
    correct INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Drill:
    id: str
    pack: str
    notebook: str
    cell: int  # 0-based index in the solution notebook
    kind: str
    source: str  # the code as shown (without "#|" lines)
    prompt: str
    explanation: str = ""
    options: tuple[str, ...] = ()
    tolerance: float = 1e-4
    topic: str = ""

    @property
    def choices(self) -> tuple[str, ...]:
        return self.options or (_RAISES_OPTIONS if self.kind == "raises" else ())


def shown_source(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#|")).strip()


def parse_mark(mark, cell, *, pack: str, notebook: str, index: int) -> Drill:
    """One cell's `learn.predict` mark, validated. DrillFormatError names the notebook and cell."""
    where = f"{pack}/{notebook} cell {index + 1}"
    if not isinstance(mark, dict):
        raise DrillFormatError(f"{where}: learn.predict must be a mapping with id and kind")
    extra = sorted(str(k) for k in mark if k not in _MARK_KEYS)
    if extra:
        raise DrillFormatError(f"{where}: unknown key(s) {extra} in learn.predict; allowed: {sorted(_MARK_KEYS)}")
    did = mark.get("id")
    if not isinstance(did, str) or not _ID.match(did):
        raise DrillFormatError(f"{where}: drill id must be a short name, not {did!r}")
    where = f"{where} (drill '{did}')"
    kind = mark.get("kind")
    if kind not in KINDS:
        raise DrillFormatError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if cell.get("cell_type") not in ("code", "raw") or (cell.get("cell_type") == "raw" and kind != "raises"):
        raise DrillFormatError(f"{where}: a drill marks a code cell (or a raw cell, for kind raises)")
    source = shown_source(cell.get("source", ""))
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        raise DrillFormatError(f"{where}: the cell is not plain Python ({exc.__class__.__name__}: {exc})") from None
    if not tree.body:
        raise DrillFormatError(f"{where}: the cell is empty")
    if kind != "raises" and not isinstance(tree.body[-1], ast.Expr):
        raise DrillFormatError(f"{where}: the cell must end with an expression (its value is what is predicted)")
    for key in ("prompt", "explanation", "topic"):
        if key in mark and not (isinstance(mark[key], str) and mark[key].strip()):
            raise DrillFormatError(f"{where}: {key} must be non-empty text")
    options = mark.get("options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) and o.strip() for o in options):
        raise DrillFormatError(f"{where}: options must be a list of texts")
    if kind == "choice" and len(options) < 2:
        raise DrillFormatError(f"{where}: a choice drill needs at least two options")
    if options and kind not in ("choice", "raises"):
        raise DrillFormatError(f"{where}: options are for choice and raises drills")
    tolerance = mark.get("tolerance", 1e-4)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise DrillFormatError(f"{where}: tolerance must be a number >= 0")
    if "tolerance" in mark and kind != "value":
        raise DrillFormatError(f"{where}: tolerance is for value drills")
    return Drill(did, pack, notebook, index, kind, source, (mark.get("prompt") or _DEFAULT_PROMPTS[kind]).strip(),
                 (mark.get("explanation") or "").strip(), tuple(o.strip() for o in options), float(tolerance),
                 (mark.get("topic") or "").strip())  # fmt: skip


def drills_in(nb, pack: str, notebook: str) -> list[Drill]:
    out = []
    for index, cell in enumerate(nb.get("cells", [])):
        learn = (cell.get("metadata") or {}).get("learn")
        if isinstance(learn, dict) and "predict" in learn:
            out.append(parse_mark(learn["predict"], cell, pack=pack, notebook=notebook, index=index))
    return out


def load_drills(lesson) -> list[Drill]:
    """Every drill of a lesson pack, in notebook order; ids unique within the pack."""
    import nbformat

    drills: list[Drill] = []
    for spec in lesson.notebooks:
        path = lesson.solution_path(spec)
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as exc:  # unreadable notebook: a pack problem
            raise DrillFormatError(f"{lesson.id}/{spec.file}: cannot read the solution notebook: {exc}") from None
        drills.extend(drills_in(nb, lesson.id, spec.file))
    seen: set[str] = set()
    for d in drills:
        if d.id in seen:
            raise DrillFormatError(f"{lesson.id}: two drills have the id '{d.id}'")
        seen.add(d.id)
    return drills


# ---------------------------------------------------------------------------------------------
# predictions, compared in this process


class PredictionError(ValueError):
    """Typed input that is no prediction of the right form (the learner is asked again)."""


def _literal(text: str):
    text = re.sub(r"torch\.Size\(\s*\[(.*?)\]\s*\)", r"(\1)", text.strip())
    text = re.sub(r"^\s*tensor\((.*)\)\s*$", r"\1", text, flags=re.S)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise PredictionError("write it as Python would, e.g. (3, 4) or [1.0, 2.5]") from None


def _shape(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, (tuple, list, int)) and not isinstance(v, bool) for v in value):
        return tuple(_shape(v) for v in value)
    raise PredictionError("type a shape such as (3, 4), or () for a single number")


def parse_prediction(drill: Drill, raw) -> object:
    """The learner's prediction in the form `judge` takes; PredictionError if it is none."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = str(raw)
    if isinstance(raw, (list, tuple)) and drill.kind in ("shape", "value"):
        raw = repr(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise PredictionError("type your prediction")
    text = raw.strip()
    if drill.kind == "shape":
        return _shape(_literal(text.replace("x", ",") if re.fullmatch(r"[\d\sx]+", text) else text))
    if drill.kind == "dtype":
        name = text.lower().removeprefix("torch.").strip()
        if name not in _DTYPE_ALIASES:
            raise PredictionError("type a dtype such as float32, int64 or bool")
        return _DTYPE_ALIASES[name]
    if drill.kind == "value":
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        value = _literal(text)
        if not _numeric(value):
            raise PredictionError("type a number, True/False, or a (nested) list of them")
        return value
    choices = drill.choices
    if text.isdecimal() and 1 <= int(text) <= len(choices):  # isdecimal: "²" is a digit, but int() refuses it
        return choices[int(text) - 1]
    squashed = re.sub(r"\s+", "", text.casefold())
    for option in choices:
        if re.sub(r"\s+", "", option.casefold()) == squashed:
            return option
    if drill.kind == "raises" and re.fullmatch(r"[A-Za-z_][\w.]*", text):
        return text.rsplit(".", 1)[-1]
    raise PredictionError(f"type the number of an option, 1 to {len(choices)}")


def _numeric(value) -> bool:
    if isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, (list, tuple)) and all(_numeric(v) for v in value)


@dataclass
class DrillResult:
    correct: bool
    actual: str  # what the cell gave, in words
    prediction: object = None
    graded: bool = True  # False: the drill could not be run (machinery or pack problem)
    message: str = ""


def actual_text(drill: Drill, outcome: dict) -> str:
    if drill.kind == "raises":
        return outcome.get("raised") or "no error"
    if outcome.get("raised"):
        return f"it raised {outcome['raised']}: {outcome.get('message', '')}".strip()
    if drill.kind == "shape":
        return _fmt_shape(outcome.get("shape"))
    if drill.kind == "dtype":
        return str(outcome.get("dtype", "(no dtype)")).removeprefix("torch.")
    return str(outcome.get("repr", ""))


def _fmt_shape(shape) -> str:
    if shape is None:
        return "(no shape)"
    if shape and isinstance(shape[0], list):
        return ", ".join(_fmt_shape(s) for s in shape)
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _as_shape(shape):
    if shape is None:
        return None
    return tuple(_as_shape(s) if isinstance(s, list) else s for s in shape)


def _close(a, b, tol: float) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))) or len(a) != len(b):
            return False
        return all(_close(x, y, tol) for x, y in zip(a, b))
    try:
        return abs(float(a) - float(b)) <= tol + 1e-9 * max(1.0, abs(float(b)))
    except (TypeError, ValueError, OverflowError):
        return False


def judge(drill: Drill, prediction, outcome: dict) -> DrillResult:
    """Compare a parsed prediction with the cell's recorded outcome (pure)."""
    actual = actual_text(drill, outcome)
    raised = outcome.get("raised")
    if drill.kind == "raises":
        ok = (prediction.lower() == "no error" and not raised) or (bool(raised) and prediction.lower() == str(raised).lower())
    elif raised:
        ok = False
    elif drill.kind == "shape":
        ok = _as_shape(outcome.get("shape")) == prediction
    elif drill.kind == "dtype":
        ok = str(outcome.get("dtype", "")).removeprefix("torch.") == prediction
    elif drill.kind == "value":
        ok = "value" in outcome and _close(prediction, outcome["value"], drill.tolerance)
    else:
        shown = {re.sub(r"\s+", "", str(outcome.get(k, ""))) for k in ("repr", "str")}
        ok = re.sub(r"\s+", "", prediction) in shown
    return DrillResult(ok, actual, prediction, message="Right!" if ok else f"Not quite: it gives {actual}")


def choice_answer(drill: Drill, outcome: dict) -> str | None:
    """The option that matches the outcome (None when none does: a pack problem)."""
    for option in drill.choices:
        if judge(drill, option, outcome).correct:
            return option
    return None


# ---------------------------------------------------------------------------------------------
# running the cells, in kernels

_CAPTURE = """
def __learn_capture(drill_id, source, _g=globals()):
    import ast as _ast
    tree = _ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], _ast.Expr) else None
    try:
        exec(compile(tree, "<drill>", "exec"), _g)
        value = eval(compile(_ast.Expression(last.value), "<drill>", "eval"), _g) if last is not None else None
    except Exception as exc:
        out = {"raised": type(exc).__name__, "message": str(exc)[:300]}
    else:
        out = {"raised": None, "repr": repr(value)[:2000], "str": str(value)[:2000], "type": type(value).__name__}
        def dims(v):  # a torch.Size (an `x.shape` cell) is the shape itself
            if type(v).__name__ == "Size":
                return [int(s) for s in v]
            return [int(s) for s in v.shape] if hasattr(v, "shape") else None

        parts = [dims(v) for v in value] if isinstance(value, tuple) and type(value).__name__ != "Size" and value else None
        if parts and all(p is not None for p in parts):
            out["shape"] = parts
        elif dims(value) is not None:
            out["shape"] = dims(value)
        if type(value).__name__ == "dtype":
            out["dtype"] = str(value)
        elif hasattr(value, "dtype"):
            out["dtype"] = str(value.dtype)
        if isinstance(value, (bool, int, float)):
            out["value"] = value
        elif hasattr(value, "tolist") and getattr(value, "numel", lambda: 10**9)() <= 10000:
            out["value"] = value.detach().cpu().tolist() if hasattr(value, "detach") else value.tolist()
    _g.setdefault("__learn_drills", {})[drill_id] = out
"""


def drills_probe(ns):
    return ns.get("__learn_drills", {})


def _job(lesson, spec, nb, drills: list[Drill]):
    import nbformat

    from .checks import probe_source
    from .execute import KernelJob
    from .kernels import Limits

    marked = {d.cell: d for d in drills}
    last = max(marked)
    cells = [nbformat.v4.new_code_cell(_CAPTURE)]
    for index, cell in enumerate(nb.cells[: last + 1]):
        if index in marked:
            cells.append(nbformat.v4.new_code_cell(f"__learn_capture({marked[index].id!r}, {marked[index].source!r})"))
        elif cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(cell.source))
    source, entry = probe_source(drills_probe)
    probe = {"id": "drills", "source": source, "entry": entry, "args": _wire(()), "kwargs": _wire({}), "requires": [],
             "callables": [], "seed": 0, "timeout": 10}  # fmt: skip
    return KernelJob(notebook=nbformat.v4.new_notebook(cells=cells), name=f"predict_{spec.stem}.ipynb", files=lesson.data_files(spec),
                     probes=[probe], cell_timeout=spec.cell_timeout, notebook_timeout=spec.notebook_timeout, probe_budget=20,
                     limits=Limits(memory_bytes=spec.memory_mb * 2**20))  # fmt: skip


def _wire(value):
    from . import wire

    return wire.encode(value)


async def _run_notebook(pool, lesson, spec, drills: list[Drill]) -> dict[str, dict | str]:
    """Outcome dict per drill id, or a message (str) saying why it could not be run."""
    import nbformat

    from . import wire
    from .execute import run_job

    nb = nbformat.read(str(lesson.solution_path(spec)), as_version=4)
    try:
        outcome = await run_job(pool, _job(lesson, spec, nb, drills))
    except LearnError as exc:
        return {d.id: f"the kernel could not run {spec.file}: {exc}" for d in drills}
    bad = [c for c in outcome.cells if c.status != "ok"]
    if bad:
        why = f"{spec.file} failed before the drill ({bad[0].status} {bad[0].ename} {bad[0].evalue})".strip()
        return {d.id: why for d in drills}
    raw = outcome.probes.get("drills", {})
    if raw.get("status") != "ok":
        return {d.id: f"could not read the drills' results ({raw.get('status', 'lost')})" for d in drills}
    try:
        values = wire.decode(raw["value"])
    except wire.WireError as exc:
        return {d.id: f"could not read the drills' results: {exc}" for d in drills}
    return {d.id: values.get(d.id, "the drill cell did not run") for d in drills}


async def _run_all(lesson, drills: list[Drill], pool_size: int) -> dict[str, dict | str]:
    from .kernels import KernelPool

    by_notebook: dict[str, list[Drill]] = {}
    for d in drills:
        by_notebook.setdefault(d.notebook, []).append(d)
    out: dict[str, dict | str] = {}
    try:
        async with KernelPool(size=pool_size) as pool:
            parts = await asyncio.gather(*(_run_notebook(pool, lesson, lesson.notebook(nb), ds) for nb, ds in by_notebook.items()))
    except LearnError as exc:
        return {d.id: f"no kernel could be started: {exc}" for d in drills}
    for part in parts:
        out.update(part)
    return out


def run_drills(lesson, drills: list[Drill], pool_size: int | None = None) -> dict[str, dict | str]:
    """Run every drill's notebook; outcome per drill id (a str: why it could not be run)."""
    if not drills:
        return {}
    return asyncio.run(_run_all(lesson, drills, pool_size or min(2, os.cpu_count() or 1)))


class DrillRunner:
    """Runs the notebooks in a background thread while the learner reads the first drill."""

    def __init__(self, lesson, drills: list[Drill], pool_size: int | None = None):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learn-predict")
        self._future: Future = self._executor.submit(run_drills, lesson, drills, pool_size)

    def outcome(self, drill: Drill) -> dict | str:
        try:
            return self._future.result().get(drill.id, "not run")
        except Exception as exc:  # the machinery failed: never the learner's fault
            return f"the drills could not be run: {type(exc).__name__}: {exc}"

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def grade(drill: Drill, prediction, outcome: dict | str) -> DrillResult:
    if isinstance(outcome, str):
        return DrillResult(False, "", prediction, graded=False, message=outcome)
    if drill.kind == "choice" and choice_answer(drill, outcome) is None:
        return DrillResult(False, "", prediction, graded=False,
                           message=f"pack problem: no option of drill {drill.id} matches what the cell gives ({actual_text(drill, outcome)})")  # fmt: skip
    return judge(drill, prediction, outcome)


# ---------------------------------------------------------------------------------------------
# sessions: resumable, or an answers file


def state_path(pack: str) -> Path:
    from .paths import data_dir

    return data_dir() / "predict" / f"{pack}.json"


def _load_state(pack: str, ids: list[str]) -> dict:
    try:
        state = json.loads(state_path(pack).read_text())
    except (OSError, ValueError):
        return {"answered": {}}
    if not isinstance(state, dict) or not isinstance(state.get("answered"), dict):
        return {"answered": {}}
    state["answered"] = {k: v for k, v in state["answered"].items() if k in ids and isinstance(v, dict)}
    return state


def _save_state(pack: str, state: dict) -> str | None:
    path = state_path(pack)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)
        return None
    except OSError as exc:
        return f"could not save predict progress to {path}: {exc}"


def _clear_state(pack: str) -> None:
    try:
        state_path(pack).unlink()
    except OSError:
        pass


def record(pack: str, rows: list[tuple[Drill, DrillResult]], path=None) -> str | None:
    """Store graded drills in progress.db (table drill_results) and the review queue."""
    from .progress import append_rows

    at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    data = [(at, pack, d.id, json.dumps(_plain(r.prediction)), r.actual, int(r.correct)) for d, r in rows if r.graded]
    return append_rows(DRILL_SCHEMA, "INSERT INTO drill_results (at, pack, drill, prediction, actual, correct) VALUES (?, ?, ?, ?, ?, ?)",
                       data, path)  # fmt: skip


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def parse_answers(text: str, source: str, drills: list[Drill]) -> dict[str, object]:

    data = load_yaml(text, source, QuizAnswersError)
    if not isinstance(data, dict):
        raise QuizAnswersError(f"{source}: an answers file is a mapping of drill id to prediction, e.g. `view-flat: (12, 784)`")
    by_id = {d.id: d for d in drills}
    unknown = sorted(str(k) for k in data if k not in by_id)
    if unknown:
        raise QuizAnswersError(f"{source}: no drill {', '.join(repr(u) for u in unknown[:5])} in this pack")
    out = {}
    for did, raw in data.items():
        try:
            out[did] = parse_prediction(by_id[did], raw)
        except PredictionError as exc:
            raise QuizAnswersError(f"{source}: prediction for '{did}' ({by_id[did].kind} drill): {exc}") from None
    return out


@dataclass
class PredictSession:
    results: dict[str, DrillResult] = field(default_factory=dict)
    finished: bool = False
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: `learn predict` exits 130, like every command


def print_drill(console, drill: Drill, number: int, total: int) -> None:
    from rich.syntax import Syntax
    from rich.text import Text

    console.print()
    console.print(Text(f"Drill {number}/{total}  [{drill.notebook}]  {drill.id}", style="bold cyan"))
    console.print(Text("(the cells before this one have run)", style="dim"))
    console.print(Syntax(drill.source, "python", theme="ansi_dark", background_color="default"))
    console.print(Text(drill.prompt))
    for i, option in enumerate(drill.choices, 1):
        console.print(Text(f"  {i}. {option}"))


def print_result(console, drill: Drill, result: DrillResult) -> None:
    from rich.text import Text

    from .inert import terminal

    if not result.graded:
        console.print(Text(f"  ! {terminal(result.message)} - not counted; this is not your mistake.", style="yellow"))
        return
    mark, style = ("✔", "green") if result.correct else ("✘", "red")
    console.print(Text(f"  {mark} {terminal(result.message)}", style=style))
    if drill.explanation:
        console.print(Text(f"  {drill.explanation}", style="dim"))


def run_interactive(
    lesson, drills: list[Drill], console, read_line, *, restart: bool = False, runner_factory=DrillRunner
) -> PredictSession:
    """Ask each drill not yet answered; EOF saves and stops; `learn predict` again resumes."""
    from rich.text import Text

    from .inert import terminal

    session = PredictSession()
    if restart:
        _clear_state(lesson.id)
    state = _load_state(lesson.id, [d.id for d in drills])
    pending = [d for d in drills if d.id not in state["answered"]]
    console.print(Text(f"Predict the output: {len(drills)} drills from {lesson.id}"
                       + (f", {len(drills) - len(pending)} already done (resuming; --restart starts over)" if len(pending) < len(drills) else "")
                       + ". For each cell, say what it will output, then see what it does. End of input (Ctrl-D) saves.", style="bold"))  # fmt: skip
    runner = runner_factory(lesson, pending) if pending else None
    try:
        for drill in pending:
            print_drill(console, drill, drills.index(drill) + 1, len(drills))
            while True:
                raw = read_line("Your prediction: ")
                try:
                    prediction = parse_prediction(drill, raw)
                    break
                except PredictionError as exc:
                    console.print(Text(f"  ({terminal(exc)})", style="dim"))
            result = grade(drill, prediction, runner.outcome(drill))
            print_result(console, drill, result)
            if not result.graded:
                continue
            session.results[drill.id] = result
            _record(lesson.id, [(drill, result)], session, console)  # at once: a killed session loses nothing
            state["answered"][drill.id] = {"correct": result.correct, "actual": result.actual}
            warning = _save_state(lesson.id, state)
            if warning and warning not in session.warnings:
                session.warnings.append(warning)
    except (EOFError, KeyboardInterrupt) as exc:
        session.interrupted = isinstance(exc, KeyboardInterrupt)
        console.print()
        console.print(
            Text(f"Stopped: {len(state['answered'])} of {len(drills)} drills done, saved. Run `learn predict {lesson.id}` to go on.")
        )
        return session
    finally:
        if runner is not None:
            runner.close()
    right = sum(1 for v in state["answered"].values() if v.get("correct"))
    answered = len(state["answered"])
    console.print()
    console.print(
        Text(
            f"Drills right: {right}/{answered}" + ("" if answered == len(drills) else f" ({len(drills) - answered} not counted)"),
            style="bold",
        )
    )
    if answered == len(drills):
        _clear_state(lesson.id)
        session.finished = True
    return session


def _record(pack: str, done, session: PredictSession, console) -> None:
    from rich.text import Text

    warning = record(pack, done)
    if warning:
        session.warnings.append(warning)
        console.print(Text(f"warning: {warning}", style="yellow"))
    from .cards import record_items

    warning = record_items([("drill", f"{pack}:{d.id}", r.correct) for d, r in done])
    if warning:
        session.warnings.append(warning)
        console.print(Text(f"warning: {warning}", style="yellow"))


def grade_answers(
    lesson, drills: list[Drill], predictions: dict[str, object], pool_size: int | None = None
) -> list[tuple[Drill, DrillResult | None]]:
    chosen = [d for d in drills if d.id in predictions]
    outcomes = run_drills(lesson, chosen, pool_size)
    return [(d, grade(d, predictions[d.id], outcomes.get(d.id, "not run")) if d.id in predictions else None) for d in drills]


def render_answers(rows, console) -> int:
    """Print each drill's verdict; the exit code (0 all right, 1 some wrong or missing, 3 machinery)."""
    from rich.text import Text

    from .inert import terminal

    right = broken = 0
    missing = [d.id for d, r in rows if r is None]
    for d, r in rows:
        if r is None:
            continue  # listed once, below
        elif not r.graded:
            broken += 1
            console.print(Text(f"! {d.id}: {terminal(r.message)} (not counted)", style="yellow"))
        elif r.correct:
            right += 1
            console.print(Text(f"✔ {d.id}", style="green"))
        else:
            console.print(Text(f"✘ {d.id}: {terminal(r.message)}", style="red"))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        console.print(
            Text(f"✘ {len(missing)} of {len(rows)} drills have no prediction in the file and count as wrong: {shown}", style="red")
        )
    console.print()
    console.print(Text(f"Drills right: {right}/{len(rows)}", style="bold"))
    if broken:
        return 3
    return 0 if right == len(rows) else 1
