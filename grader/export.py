"""Views of a gradebook for other systems: CSV for spreadsheets and LMS uploads, Gradescope's
results.json, JUnit XML for CI dashboards, and per-student feedback pages.

All of them read what `learn grade` stored (per-check rows and the full RunResult JSON) and
decide nothing: points and statuses come from the grader.

Gradescope's format describes *one submission* (its autograder writes
/autograder/results/results.json per student), so the export writes one file per student,
`OUT/<student>/results.json`: each can be uploaded or compared as Gradescope would see it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .errors import GradebookError, LearnError
from .gradebook import Gradebook, SubmissionRecord
from .inert import csv_cell, visible, xml_text
from .results import Status

__all__ = ["FORMATS", "csv_text", "gradescope_results", "write_gradescope", "junit_xml", "write_feedback", "safe_name", "load_records"]

FORMATS = ("csv", "gradescope", "junit", "feedback", "manual")
_NUMBERISH = re.compile(r"(total|score|points|possible)", re.I)


def load_records(gradebook: Gradebook, assignment: str | None = None, students: list[str] | None = None,
                 with_json: bool = False) -> list[SubmissionRecord]:  # fmt: skip
    records = gradebook.submissions(assignment, students, with_json=with_json)
    if assignment is not None and not records and assignment not in gradebook.assignments():
        known = ", ".join(gradebook.assignments()) or "none yet"
        raise GradebookError(f"the gradebook {gradebook.path} has no assignment {assignment!r} (it has: {known})")
    if students:
        missing = sorted(set(students) - {r.student for r in records})
        if missing:
            raise GradebookError(f"no graded submission for {', '.join(missing)} in {gradebook.path}")
    return records


def safe_name(student: str) -> str:
    """A file name for a student id (ids come from folder names, which may hold anything)."""
    name = re.sub(r"[^\w.@+-]", "_", student).strip("._") or "student"
    return name if name == student else f"{name}-{hashlib.sha1(student.encode()).hexdigest()[:6]}"


# ---------------------------------------------------------------------------------------------
# CSV


def _check_column(assignment: str, name: str, multi: bool) -> str:
    column = f"{assignment}:{name}" if multi else name
    # keep the score columns unambiguous for spreadsheets and scripts that look for "total"
    return (
        f"check:{column}"
        if _NUMBERISH.search(column) or column in ("student", "status", "problems", "auto", "manual", "pending")
        else column
    )


def csv_text(records: list[SubmissionRecord], manual_rows: dict | None = None) -> str:
    """One row per student: `student`, `total` (points), `possible`, `percent`, `status`, then
    the points of every check, then problems (missing notebooks, errors). With answers graded by
    hand (`manual_rows`, grader.manual), total and possible count them too, and the columns
    `auto`, `manual` (points given so far) and `pending` (points not graded yet) follow `status`."""
    manual_rows = manual_rows or {}
    assignments = list(dict.fromkeys(r.assignment for r in records))
    multi = len(assignments) > 1
    columns: dict[tuple[str, str], str] = {}
    for r in records:
        for c in r.checks:
            columns.setdefault((r.assignment, c.name), _check_column(r.assignment, c.name, multi))
    per_assignment = [f"{a} total" for a in assignments] if multi else []
    split = ["auto", "manual", "pending"] if manual_rows else []
    header = ["student", "total", "possible", "percent", "status", *split, *per_assignment, *columns.values(), "problems"]
    rows: dict[str, dict] = {}
    for r in records:
        row = rows.setdefault(r.student, {"student": r.student, "total": 0.0, "possible": 0.0, "status": [], "problems": [],
                                          "auto": 0.0, "manual": 0.0, "pending": 0.0})  # fmt: skip
        hand = manual_rows.get((r.student, r.assignment), [])
        given = sum(m.points or 0.0 for m in hand if m.state == "graded")
        row["total"] += r.points + given
        row["possible"] += r.max_points + sum(m.max_points for m in hand)
        row["auto"] += r.points
        row["manual"] += given
        row["pending"] += sum(m.max_points for m in hand if m.state != "graded")
        row["status"].append(r.status if r.state == "graded" else "not submitted" if r.state == "not_submitted" else "not graded")
        if multi:
            row[f"{r.assignment} total"] = fmt_points(r.points + given)
        for c in r.checks:
            row[columns[(r.assignment, c.name)]] = fmt_points(c.points)
        row["problems"] += r.problems + ([r.error] if r.error else [])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([csv_cell(h) for h in header])  # text cells made inert (student ids and problems come from learners)
    for row in rows.values():
        statuses = row["status"]
        if all(s == "not submitted" for s in statuses):  # the course server lists every student, these with 0
            row["status"] = "not submitted"
        else:
            row["status"] = (
                "error" if {"error", "not graded"} & set(statuses) else "failed" if {"failed", "not submitted"} & set(statuses) else "ok"
            )
        row["percent"] = fmt_points(100.0 * row["total"] / row["possible"]) if row["possible"] else ""
        row["total"], row["possible"] = fmt_points(row["total"]), fmt_points(row["possible"])
        row["auto"], row["manual"], row["pending"] = fmt_points(row["auto"]), fmt_points(row["manual"]), fmt_points(row["pending"])
        row["problems"] = " | ".join(dict.fromkeys(p.replace("\n", " ") for p in row["problems"]))
        writer.writerow([csv_cell(row.get(h, "")) for h in header])  # numbers (ours) stay numbers, text never a formula
    return out.getvalue()


def fmt_points(value: float) -> int | float:
    value = round(float(value), 2)
    return int(value) if value.is_integer() else value


# ---------------------------------------------------------------------------------------------
# Gradescope


def _manual_test(m, number: str) -> dict:
    """A hand-graded item as a Gradescope test: its points once graded, 0 and "needs grading" before."""
    graded = m.state == "graded"
    output = (f"{m.points:g}/{m.max_points:g} points, graded by hand" + (f"\n{m.comment}" if m.comment else "")) if graded else (
        "needs grading by hand")  # fmt: skip
    return {
        "name": f"{m.notebook}: {m.title or m.item} (graded by hand)",
        "number": number,
        "score": m.points if graded else 0.0,
        "max_score": m.max_points,
        "status": "passed" if graded and m.points == m.max_points else "failed",
        "output": visible(output),  # the comment is the instructor's, but stays inert like everything else
        "output_format": "text",
        "tags": ["manual", "graded" if graded else "pending"],
        "visibility": "after_published",
    }


def gradescope_results(record: SubmissionRecord, manual: list | None = None) -> dict:
    """Gradescope's results.json for one submission (keys as in Gradescope's autograder spec:
    top-level score, execution_time, output, visibility, stdout_visibility, extra_data, tests;
    per test name, number, score, max_score, status, output, tags, visibility).

    Hidden checks are `after_published`: the student sees their name and message (the message of a
    hidden check never shows inputs or expected values) once grades are published."""
    run = record.run_result()
    tests = []
    if run is not None:
        for i, nb in enumerate(run.notebooks, 1):
            for j, check in enumerate(nb.checks, 1):
                output = check.message or ("passed" if check.passed else "")
                if check.hint and not check.passed:
                    output += f"\nHint: {check.hint}"
                tests.append({
                    "name": f"{nb.exercise or Path(nb.path).name}: {check.title or check.name}",
                    "number": f"{i}.{j}",
                    "score": check.points,
                    "max_score": check.max_points,
                    "status": "passed" if check.passed else "failed",
                    "output": visible(output),
                    "output_format": "text",
                    "tags": [t for t in (check.kind, "hidden" if check.hidden else None) if t],
                    "visibility": "after_published" if check.hidden else "visible",
                })  # fmt: skip
    manual = manual or []
    tests += [_manual_test(m, f"manual.{k}") for k, m in enumerate(manual, 1)]
    given = sum(m.points or 0.0 for m in manual if m.state == "graded")
    pending = sum(m.max_points for m in manual if m.state != "graded")
    lines = [f"{record.assignment}: {record.points + given:g}/{record.max_points + sum(m.max_points for m in manual):g} points"
             + (f" ({pending:g} still to be graded by hand)" if pending else "")]  # fmt: skip
    lines += [f"- {p}" for p in record.problems]
    if record.error:
        lines.append(f"- {record.error}")
    return {
        "score": record.points + given,
        "execution_time": round(record.duration, 2),
        "output": visible("\n".join(lines)),  # problems and errors quote learners' file names
        "output_format": "text",
        "test_output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {
            "student": record.student,
            "assignment": record.assignment,
            "status": record.status,
            "graded_at": record.graded_at,
            "grader_version": record.grader_version,
        },  # fmt: skip
        "tests": tests,
    }


def write_gradescope(records: list[SubmissionRecord], out_dir: Path, manual_rows: dict | None = None) -> list[Path]:
    """OUT/<student>/results.json for each student (one assignment per export); answers graded by
    hand are tests of their own (0 and "needs grading" until graded)."""
    _one_assignment(records, "gradescope")
    written = []
    for record in records:
        path = Path(out_dir) / safe_name(record.student) / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        manual = (manual_rows or {}).get((record.student, record.assignment), [])
        path.write_text(json.dumps(gradescope_results(record, manual), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _one_assignment(records: list[SubmissionRecord], what: str) -> None:
    assignments = sorted({r.assignment for r in records})
    if len(assignments) > 1:
        raise LearnError(f"the gradebook holds several assignments ({', '.join(assignments)}): pass --assignment for the {what} export")


# ---------------------------------------------------------------------------------------------
# JUnit XML


def junit_xml(records: list[SubmissionRecord], manual_rows: dict | None = None) -> str:
    """JUnit XML: <testsuites> with one <testsuite> per student's submission and one <testcase>
    per check (classname student.notebook); failed checks get <failure>, errors and timeouts
    <error>, skipped ones <skipped>. One document for the class, as CI systems ingest one file.
    Answers graded by hand are test cases too: <skipped> until graded, then their points."""
    root = ET.Element("testsuites", name=xml_text(f"learn grade: {', '.join(sorted({r.assignment for r in records}))}"))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for record in records:
        suite = ET.SubElement(
            root, "testsuite", name=xml_text(record.student), timestamp=record.graded_at or "", time=f"{record.duration:.3f}"
        )
        props = ET.SubElement(suite, "properties")
        for key, value in (("assignment", record.assignment), ("points", f"{record.points:g}"), ("max_points", f"{record.max_points:g}"),
                           ("status", record.status or record.state)):  # fmt: skip
            ET.SubElement(props, "property", name=key, value=xml_text(str(value)))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for check in record.checks:
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", name=xml_text(check.name), classname=xml_text(f"{record.student}.{Path(check.notebook).stem}"),
                                 time=f"{check.duration:.3f}")  # fmt: skip
            message = xml_text(check.message)
            first = message.splitlines()[0] if message else check.status
            if check.status == Status.FAILED.value:
                counts["failures"] += 1
                ET.SubElement(case, "failure", message=first, type=check.kind or "failed").text = message
            elif check.status in (Status.ERROR.value, Status.TIMEOUT.value):
                counts["errors"] += 1
                ET.SubElement(case, "error", message=first, type=check.kind or check.status).text = message
            elif check.status == Status.SKIPPED.value:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=first)
            ET.SubElement(case, "system-out").text = xml_text(f"{check.points:g}/{check.max_points:g} points")
        for m in (manual_rows or {}).get((record.student, record.assignment), []):
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", name=xml_text(f"{m.item} (graded by hand)"),
                                 classname=xml_text(f"{record.student}.{Path(m.notebook).stem}"), time="0.000")  # fmt: skip
            if m.state != "graded":
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message="needs grading by hand")
                continue
            if (m.points or 0.0) < m.max_points:
                counts["failures"] += 1
                ET.SubElement(case, "failure", message=f"{m.points:g}/{m.max_points:g} points", type="manual").text = xml_text(
                    m.comment or ""
                )
            ET.SubElement(case, "system-out").text = xml_text(f"{m.points:g}/{m.max_points:g} points, graded by hand"
                                                              + (f"\n{m.comment}" if m.comment else ""))  # fmt: skip
        notes = record.problems + ([record.error] if record.error else [])
        if notes:
            ET.SubElement(suite, "system-err").text = xml_text("\n".join(notes))
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{sum(r.duration for r in records):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------
# feedback pages


def _manual_export(gb: Gradebook, fmt: str, assignment: str | None, students: list[str] | None):
    """The manual CSV (fmt manual), or each submission's manual rows (feedback, csv)."""
    from . import manual

    if fmt == "manual":
        if not manual.rows(gb, assignment, students):
            raise GradebookError(f"the gradebook {gb.path} holds no answers graded by hand" + (f" for {assignment}" if assignment else ""))
        return manual.export_csv(gb, assignment, students)
    if fmt in ("feedback", "csv", "gradescope", "junit"):
        by: dict[tuple[str, str], list] = {}
        for row in manual.rows(gb, assignment, students):
            by.setdefault((row.student, row.assignment), []).append(row)
        return by
    return None


def write_feedback(records: list[SubmissionRecord], out_dir: Path, manual_rows: dict | None = None) -> list[Path]:
    """One HTML page per student (the learner report of `learn check`, same templates):
    OUT/<student>.html. Hidden checks show their name and message only; answers graded by hand
    show their points and comment once graded; changed locked cells are named."""
    from .html import write_report
    from .manual import TAMPER_PREFIX

    written = []
    for record in records:
        run = record.run_result()
        if run is None:
            continue
        name = safe_name(record.student) + ("" if len({r.assignment for r in records}) == 1 else f"-{record.assignment}")
        title = f"{record.assignment}: feedback for {record.student}"
        notes = [p for p in record.problems if p.startswith(TAMPER_PREFIX)]
        manual = (manual_rows or {}).get((record.student, record.assignment), [])
        written.append(write_report(run, Path(out_dir) / f"{name}.html", title=title, manual=manual, notes=notes))
    return written


def export(gradebook_path: Path, fmt: str, out: Path | None, assignment: str | None = None,
           students: list[str] | None = None) -> tuple[str | None, list[Path]]:  # fmt: skip
    """Run one export. Returns (text for stdout or None, files written)."""
    if fmt not in FORMATS:
        raise LearnError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    with Gradebook(gradebook_path, create=False) as gb:
        records = load_records(gb, assignment, students, with_json=fmt in ("gradescope", "feedback"))
        extra = _manual_export(gb, fmt, assignment, students)
    if not records:
        raise GradebookError(f"the gradebook {gradebook_path} holds no graded submissions yet")
    if fmt == "manual":
        text = extra
    elif fmt in ("gradescope", "feedback"):
        if out is None:
            if fmt == "gradescope" and len(records) == 1:
                manual = (extra or {}).get((records[0].student, records[0].assignment), [])
                return json.dumps(gradescope_results(records[0], manual), indent=2) + "\n", []
            raise LearnError(f"--format {fmt} writes one file per student: give --out DIR" +
                             (" (or --student NAME for one results.json on stdout)" if fmt == "gradescope" else ""))  # fmt: skip
        if out.exists() and not out.is_dir():
            raise LearnError(f"--out {out} must be a folder for --format {fmt}")
        return None, (write_gradescope(records, out, extra) if fmt == "gradescope" else write_feedback(records, out, extra))
    else:
        text = csv_text(records, extra) if fmt == "csv" else junit_xml(records, extra)
    if out is None:
        return text, []
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return None, [out]
