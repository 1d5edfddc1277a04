"""The result model: the one thing every output (terminal, JSON, HTML, gradebook, exports) is a view of.

    RunResult            one `learn check` / one student's submission
     └── NotebookResult  one notebook: points, problems in its cells, its checks
          ├── CellProblem   a cell that raised, timed out or killed the kernel
          └── CheckResult   one graded function: status, points, message, hint, timings
               └── CaseResult  one call of it (fixed or randomized input) with its Diff

Nothing downstream re-derives a grade: points and statuses are decided once, by `grading`,
and serialised with `to_dict()` (JSON-safe, versioned by SCHEMA_VERSION).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

SCHEMA_VERSION = 1
INPUT_ERROR_KINDS = frozenset({"load", "unknown_exercise", "lesson", "execution"})

__all__ = [
    "SCHEMA_VERSION",
    "Status",
    "Diff",
    "CaseResult",
    "CheckResult",
    "CellProblem",
    "NotebookResult",
    "RunResult",
]


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"

    def __str__(self) -> str:  # so f-strings print "passed", not "Status.PASSED"
        return self.value


@dataclass
class Diff:
    """How a returned value differs from the reference (the first difference found).

    `kind` says what differs: type, shape, dtype, device, length, keys, nonfinite, values.
    The numeric fields are filled for `values` / `nonfinite` differences of tensors and numbers.
    """

    kind: str
    path: str = ""
    expected: str = ""
    got: str = ""
    rtol: float | None = None
    atol: float | None = None
    mismatched: int | None = None
    total: int | None = None
    max_abs: float | None = None
    max_abs_index: list[int] | None = None
    max_rel: float | None = None
    max_rel_index: list[int] | None = None
    first_index: list[int] | None = None
    first_expected: float | None = None
    first_got: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diff:
        return cls(**{f.name: d.get(f.name) for f in dataclasses.fields(cls) if f.name in d})


@dataclass
class CaseResult:
    """One call of a graded function: the inputs (as shown to the learner) and the verdict."""

    label: str
    status: Status
    message: str = ""
    diff: Diff | None = None
    call: str | None = None
    mistake: str | None = None
    duration: float = 0.0
    weight: float = 1.0
    kind: str | None = None  # why it did not pass: values, shape, wrong_type, missing, timeout, known_mistake, ...

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseResult:
        return cls(
            label=d["label"],
            status=Status(d["status"]),
            message=d.get("message", ""),
            diff=Diff.from_dict(d["diff"]) if d.get("diff") else None,
            call=d.get("call"),
            mistake=d.get("mistake"),
            duration=d.get("duration", 0.0),
            weight=d.get("weight", 1.0),
            kind=d.get("kind"),
        )


@dataclass
class CheckResult:
    """The verdict on one graded function (or behaviour) of a notebook."""

    name: str
    status: Status
    points: float
    max_points: float
    message: str = ""
    hint: str | None = None
    cases: list[CaseResult] = field(default_factory=list)
    duration: float = 0.0
    hidden: bool = False
    kind: str | None = None  # sub-kind of a failure: missing, exception, wrong_type, nonfinite, timeout, ...
    traceback: list[str] | None = None
    series: dict[str, Any] = field(default_factory=dict)  # data for plots: {name: {"expected": [...], "got": [...]}}
    title: str | None = None
    # When a function that calls other graded functions fails, it is re-checked with correct
    # (reference-valued) helpers: both verdicts are kept, `scored` says which one `points` is.
    # Each verdict: {"status", "points", "message", "kind", "mistake"}.
    isolated: dict[str, Any] | None = None
    as_written: dict[str, Any] | None = None
    blamed_on: list[str] = field(default_factory=list)  # graded helpers whose mistakes made it fail
    scored: str = "as_written"  # as_written | isolated
    blame: str = ""  # the sentence saying which function is really wrong (also at the start of `message`)
    relay: str = ""  # why no isolated verdict could be had, if one was tried; "machinery: ..." is never cached

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    @property
    def diff(self) -> Diff | None:
        """The diff of the first failing case, the one a learner should look at first."""
        return next((c.diff for c in self.cases if not c.passed and c.diff), None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        return cls(
            name=d["name"],
            status=Status(d["status"]),
            points=d["points"],
            max_points=d["max_points"],
            message=d.get("message", ""),
            hint=d.get("hint"),
            cases=[CaseResult.from_dict(c) for c in d.get("cases", [])],
            duration=d.get("duration", 0.0),
            hidden=d.get("hidden", False),
            kind=d.get("kind"),
            traceback=d.get("traceback"),
            series=d.get("series", {}),
            title=d.get("title"),
            isolated=d.get("isolated"),
            as_written=d.get("as_written"),
            blamed_on=list(d.get("blamed_on") or []),
            scored=d.get("scored", "as_written"),
            blame=d.get("blame", ""),
            relay=d.get("relay", ""),
        )


@dataclass
class CellProblem:
    """A notebook cell that did not run cleanly. `cell` is 1-based over all cells of the notebook."""

    cell: int
    status: Status  # ERROR (raised), TIMEOUT, or ERROR with kind "kernel_died"
    kind: str  # exception | timeout | kernel_died | output_limit
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)
    source: str = ""  # first lines of the cell, to find it
    duration: float = 0.0
    note: str = ""  # what the grader found out about it, e.g. for a NameError: which cell defines the name

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellProblem:
        return cls(**{**d, "status": Status(d["status"])})


@dataclass
class NotebookResult:
    """Everything known about one graded notebook. `status` is FAILED if any check did not pass,
    ERROR if the notebook could not be graded at all (unreadable, unknown exercise)."""

    path: str
    exercise: str | None
    lesson: str | None
    status: Status
    title: str | None = None
    points: float = 0.0
    max_points: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    cell_problems: list[CellProblem] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    seed: int | None = None
    duration: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    sandbox: str | None = None
    kernel_backend: str | None = None  # fork | spawn: how its kernels were started (grader.kernels)
    grader_version: str = ""
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    cached: bool = False
    schema_version: int = SCHEMA_VERSION

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NotebookResult:
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported result schema version {d.get('schema_version')!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in d.items() if k in fields}
        data["status"] = Status(d["status"])
        data["checks"] = [CheckResult.from_dict(c) for c in d.get("checks", [])]
        data["cell_problems"] = [CellProblem.from_dict(c) for c in d.get("cell_problems", [])]
        return cls(**data)


@dataclass
class RunResult:
    """The notebooks graded together by one `learn check` (or one student's submission)."""

    notebooks: list[NotebookResult]
    seed: int | None = None
    duration: float = 0.0

    @property
    def points(self) -> float:
        return round(sum(n.points for n in self.notebooks), 4)

    @property
    def max_points(self) -> float:
        return round(sum(n.max_points for n in self.notebooks), 4)

    @property
    def passed(self) -> bool:
        return bool(self.notebooks) and all(n.passed for n in self.notebooks)

    @property
    def has_input_errors(self) -> bool:
        """A notebook could not be graded at all (unreadable, not an exercise, machinery failure) -
        unlike one that ran and failed, or killed its own kernel."""
        return any(n.status is Status.ERROR and n.error_kind in INPUT_ERROR_KINDS for n in self.notebooks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "points": self.points,
            "max_points": self.max_points,
            "passed": self.passed,
            "seed": self.seed,
            "duration": round(self.duration, 3),
            "notebooks": [n.to_dict() for n in self.notebooks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported result schema version {d.get('schema_version')!r}")
        return cls(
            notebooks=[NotebookResult.from_dict(n) for n in d["notebooks"]],
            seed=d.get("seed"),
            duration=d.get("duration", 0.0),
        )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj
