"""The HTML report: every status renders, learner text is escaped, hidden checks stay hidden,
plots are inline, and the file loads nothing from anywhere. Fast tests build results by hand;
the slow ones go through `learn check` on real kernels."""

from __future__ import annotations

import re

import pytest

from grader.checks import line_plot
from grader.cli import cli
from grader.html import (
    REPORT_NAME,
    default_report_path,
    render_check_fragment,
    render_report,
    render_template,
    series_plots,
    svg_bars,
    svg_histogram,
    svg_lines,
    svg_plot,
    write_report,
)
from grader.results import CaseResult, CellProblem, CheckResult, Diff, NotebookResult, RunResult, Status

from .conftest import SOLUTIONS, copy_to, solution, variant

EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.I)
PWN = '<script>alert("pwn")</script>'


def fit_series() -> dict:
    x = [i / 10 for i in range(-20, 21)]
    return {
        "fit": line_plot(
            "Fitted quadratic over the data",
            x,
            {"reference": [3 * v * v for v in x], "yours": [2 * v * v for v in x]},
            points=(x, [3 * v * v + 0.1 for v in x]),
            xlabel="x",
            ylabel="y",
        ),  # fmt: skip
        "loss": line_plot("Loss per step", list(range(10)), {"reference": [10 / (i + 1) for i in range(10)], "yours": [9.0] * 12}),
    }


def values_diff() -> Diff:
    return Diff(kind="values", path="['params']", expected="tensor(3,)", got="tensor(3,)", rtol=1e-4, atol=1e-4, mismatched=3,
                total=3, max_abs=2.4334, max_abs_index=[0], max_rel=1.134, max_rel_index=[2], first_index=[0], first_expected=2.1459,
                first_got=4.5793)  # fmt: skip


def sample_run() -> RunResult:
    """One notebook with a check in every state, one notebook that cannot be graded."""
    checks = [
        CheckResult(
            "quad",
            Status.PASSED,
            1,
            1,
            title="quad: evaluate a quadratic",
            duration=0.01,
            cases=[CaseResult("numbers", Status.PASSED, call="quad(3, 2, 1, 1.5)")],
        ),  # fmt: skip
        CheckResult(
            "fit_quad",
            Status.FAILED,
            0,
            3,
            title="fit_quad: gradient descent",
            kind="known_mistake",
            message="Your loss history matches a loop that never resets the gradients.",
            hint="Call params.grad.zero_() after each update.",
            cases=[
                CaseResult(
                    "the lesson's data",
                    Status.FAILED,
                    message="values differ",
                    diff=values_diff(),
                    call="fit_quad(tensor([1.1, 1.1, 1.1]), lr=0.01, steps=10)",
                    mistake="no_zero_grad",
                    kind="known_mistake",
                )
            ],
            series=fit_series(),
        ),  # fmt: skip
        CheckResult(
            "mse",
            Status.ERROR,
            0,
            1,
            kind="exception",
            message=f"`mse` raised RuntimeError: {PWN}",
            traceback=["cell 12, line 2, in mse", "    raise RuntimeError('<img src=x onerror=alert(1)>')", f"RuntimeError: {PWN}"],
            cases=[CaseResult("small example", Status.ERROR, message=f"raised {PWN}", call="mse(tensor([1.0]), tensor([2.0]))")],
        ),  # fmt: skip
        CheckResult(
            "add_noise",
            Status.TIMEOUT,
            0,
            2,
            kind="timeout",
            message="`add_noise` did not return within 10s",
            cases=[CaseResult("big", Status.TIMEOUT, message="did not return within 10s", call="add_noise(x, 0.1, 0.1)")],
        ),  # fmt: skip
        CheckResult("mk_quad", Status.FAILED, 0, 1, kind="not_implemented", message="`mk_quad` is not written yet"),
        CheckResult("relu_model", Status.SKIPPED, 0, 0, message="skipped: needs a GPU"),
        CheckResult(
            "secret_check",
            Status.FAILED,
            0,
            2,
            hidden=True,
            kind="values",
            message="returned values that differ from the reference on hidden inputs",
            cases=[
                CaseResult(
                    "hidden input 1",
                    Status.FAILED,
                    message="returned values that differ",
                    call="secret_call(SECRET_INPUT)",
                    diff=Diff(kind="values", expected="SECRET_EXPECTED", got="1.0"),
                )
            ],
            traceback=["SECRET_TRACEBACK_LINE"],
            series=fit_series(),
        ),  # fmt: skip
    ]
    nb = NotebookResult(
        path="/work/lesson3/01_quadratic.ipynb", exercise="01_quadratic.ipynb", lesson="lesson3", status=Status.FAILED,
        title="Fitting a quadratic", points=1, max_points=10, checks=checks, seed=42, duration=3.2, sandbox="bwrap",
        cell_problems=[CellProblem(21, Status.ERROR, "exception", ename="ValueError", evalue=f"bad {PWN}",
                                   traceback=["\x1b[31mValueError\x1b[0m: bad", f"{PWN}"], source=f"print('{PWN}')")],
    )  # fmt: skip
    broken = NotebookResult(path="/work/lesson3/02_relu.ipynb", exercise=None, lesson=None, status=Status.ERROR,
                            error=f"02_relu.ipynb: is not valid JSON {PWN}", error_kind="load")  # fmt: skip
    return RunResult([nb, broken], seed=42, duration=4.0)


@pytest.fixture(scope="module")
def report() -> str:
    return render_report(sample_run())


def test_report_is_one_complete_document(report):
    assert report.startswith("<!DOCTYPE html>") and report.rstrip().endswith("</html>")
    assert "Content-Security-Policy" in report and "default-src 'none'" in report
    assert "<style>" in report and ".badge" in report  # the CSS is inline


def test_report_loads_nothing_and_runs_no_script(report):
    assert not EXTERNAL.search(report)
    assert "<script" not in report.lower()
    assert "<link" not in report.lower() and "@import" not in report


def test_learner_text_is_escaped_everywhere(report):
    assert PWN not in report
    assert "<img src=x" not in report
    assert "&lt;script&gt;alert(&#34;pwn&#34;)&lt;/script&gt;" in report
    assert "&lt;img src=x onerror=alert(1)&gt;" in report
    assert "\x1b[" not in report  # ANSI colours of tracebacks are stripped


def test_every_status_renders(report):
    for label in ("✔ pass", "✘ fail", "✘ error", "◔ timeout", "– skipped", "to do", "cannot be graded"):
        assert label in report, label
    assert "1/6 functions pass" in report  # skipped checks do not count
    assert "is not valid JSON" in report


def test_failure_details_show_the_diff_and_hint(report):
    for text in ("max abs error", "2.433", "at index [0]", "max rel error", "1.134", "at index [2]", "3 of 3 elements",
                 "rtol=0.0001, atol=0.0001", "index [0]: expected 2.146, got 4.579", "known mistake: no_zero_grad",
                 "Call params.grad.zero_() after each update.", "fit_quad(tensor([1.1, 1.1, 1.1]), lr=0.01, steps=10)"):  # fmt: skip
        assert text in report, text
    assert "Where it happened in your code" in report and "cell 12, line 2, in mse" in report
    assert "Cell 21" in report and "ValueError" in report


def test_plots_are_inline_svg_for_line_series(report):
    section = report.split('id="check-fit_quad"')[1].split("</details>")[0]
    assert section.count("<svg") == 2
    assert 'aria-label="Fitted quadratic over the data"' in section and 'aria-label="Loss per step"' in section


def test_hidden_checks_show_name_and_message_only(report):
    section = report.split('id="check-secret_check"')[1].split("</details>")[0]
    assert "secret_check" in report and "hidden inputs" in section and "hidden" in section
    for secret in ("SECRET_INPUT", "secret_call", "SECRET_EXPECTED", "SECRET_TRACEBACK_LINE", "<svg"):
        assert secret not in section, secret
    assert "SECRET" not in report


def test_tracebacks_can_be_left_out_and_title_set():
    html = render_report(sample_run(), title="Feedback for <student>", show_tracebacks=False)
    assert "Where it happened in your code" not in html and "cell 12, line 2" not in html
    assert "<title>Feedback for &lt;student&gt;</title>" in html


def test_write_report_writes_atomically(tmp_path):
    path = write_report(sample_run(), tmp_path / "sub" / "r.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["r.html"]


def test_bad_plot_data_is_left_out_not_fatal():
    check = CheckResult("f", Status.FAILED, 0, 1, series={
        "odd": {"kind": "line", "x": [1, 2], "lines": {"yours": ["a", None, float("inf")]}},
        "broken": {"kind": "line", "x": None, "lines": None, "points": [None, None]},
        "other": {"kind": "heatmap", "data": [[1]]},
        "junk": "not a dict",
    })  # fmt: skip
    plots = series_plots(check)
    assert 1 <= len(plots) <= 2 and all(p.startswith("<svg") for p in plots)
    huge = svg_plot(line_plot("many", list(range(100_000)), {"yours": [float(i) for i in range(100_000)]}))
    assert len(huge) < 400_000  # thinned, not 100k points


def test_any_line_series_is_drawn(report):
    """Series a lesson adds later (e.g. chapter 4's accuracy per epoch) need no change here."""
    accuracy = line_plot("Accuracy per epoch", [1, 2, 3, 4], {"train": [0.6, 0.8, 0.9, 0.95], "valid": [0.55, 0.75, 0.85, 0.9]},
                         xlabel="epoch", ylabel="accuracy")  # fmt: skip
    check = CheckResult("train_model", Status.PASSED, 2, 2, series={"accuracy": accuracy})
    [svg] = series_plots(check)
    assert 'aria-label="Accuracy per epoch"' in svg and ">train<" in svg and ">valid<" in svg


def test_svg_helpers_make_clean_inline_svg():
    from datetime import datetime, timedelta

    t0 = datetime(2024, 1, 1, 12)
    for svg in (
        svg_plot(fit_series()["fit"]),
        svg_lines("Score", {"lesson3": ([t0, t0 + timedelta(hours=3)], [10, 80])}, dates=True, ylim=(0, 105)),
        svg_bars(["quad", "<b>mse</b>"], [3, 1], title="Checks"),
        svg_histogram([1, 2, 2, 3, 9], bins=5, title="Scores", marker=3.4, marker_label="mean"),
    ):
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        assert "<?xml" not in svg and "DOCTYPE" not in svg and "<metadata" not in svg
        assert not EXTERNAL.search(svg)
        assert "<b>mse</b>" not in svg


def test_check_fragment_for_notebooks_is_escaped_and_scoped():
    run = sample_run()
    html = render_check_fragment(run.notebooks[0].checks[2], lesson="lesson3", note="quick check")
    assert html.lstrip().startswith('<div class="learn-check">')
    assert PWN not in html and "&lt;script&gt;" in html and "quick check" in html
    assert "<html" not in html and ".learn-check" in html


def test_base_template_can_be_extended(tmp_path, monkeypatch):
    """A class dashboard extends base.html.j2 and imports the shared macros."""
    from grader.html import environment

    page = environment().from_string(
        '{% extends "base.html.j2" %}{% import "macros.html.j2" as m %}'
        "{% block content %}{{ m.progress_bar(0.5) }}{{ m.status_badge(status) }}{{ name }}{% endblock %}"
    )
    html = page.render(status=Status.PASSED, name="<i>x</i>", version="0", generated_at="now")
    assert "width: 50.0%" in html and "✔ pass" in html and "&lt;i&gt;x&lt;/i&gt;" in html
    assert "Content-Security-Policy" in html
    assert render_template("base.html.j2").startswith("<!DOCTYPE html>")


def test_default_report_path(tmp_path):
    a = tmp_path / "work" / "lesson3"
    b = tmp_path / "work" / "chapter4"
    assert default_report_path([a / "01.ipynb", a / "02.ipynb"]) == (a / REPORT_NAME).resolve()
    assert default_report_path([a / "01.ipynb", b / "01.ipynb"]) == (tmp_path / "work" / REPORT_NAME).resolve()
    in_pack = default_report_path([SOLUTIONS / "lesson3" / "01_quadratic.ipynb"])
    assert SOLUTIONS not in in_pack.parents and in_pack.name == REPORT_NAME


# ---------------------------------------------------------------------------------------------
# through `learn check`


@pytest.mark.slow
def test_check_writes_the_report_next_to_the_notebook_and_escapes_learner_output(runner, tmp_path):
    nb = variant(solution("lesson3", "01_quadratic.ipynb"), tmp_path / "w" / "01_quadratic.ipynb", f"print('{PWN}')",
                 f"raise ValueError('{PWN}')")  # fmt: skip
    result = runner.invoke(cli, ["check", str(nb), "--only", "quad", "--only", "fit_quad"])
    assert result.exit_code == 0, result.output
    report = tmp_path / "w" / REPORT_NAME
    assert f"HTML report: {report.resolve()}" in result.output
    html = report.read_text()
    assert PWN not in html and "&lt;script&gt;" in html  # the cell's error shows, escaped
    assert html.count("<svg") >= 2 and not EXTERNAL.search(html)


@pytest.mark.slow
def test_check_html_options(runner, tmp_path):
    nb = copy_to(solution("lesson3", "01_quadratic.ipynb"), tmp_path / "w")
    result = runner.invoke(cli, ["check", str(nb), "--only", "quad", "--no-html"])
    assert result.exit_code == 0 and "HTML report" not in result.output
    assert not (tmp_path / "w" / REPORT_NAME).exists()
    out = tmp_path / "reports" / "mine.html"
    result = runner.invoke(cli, ["check", str(nb), "--only", "quad", "--html", str(out)])
    assert result.exit_code == 0 and out.is_file() and not (tmp_path / "w" / REPORT_NAME).exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(cli, ["check", str(nb), "--only", "quad", "--html", str(blocker / "r.html")])
    assert result.exit_code == 2 and "could not write the HTML report" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind, pointed", [("execution", True), ("lesson", True), ("load", False), ("unknown_exercise", False)])
def test_machinery_failures_point_to_learn_doctor(kind, pointed):
    nb = NotebookResult(path="x/01_quadratic.ipynb", exercise="01_quadratic.ipynb", lesson="lesson3", status=Status.ERROR,
                        error="it broke", error_kind=kind)  # fmt: skip
    html = render_report(RunResult([nb], seed=1))
    assert ("learn doctor" in html) is pointed


def test_compact_views_collapse_repeats_and_drop_what_the_table_shows():
    from grader.html import case_messages, verdict_paragraph

    diff = Diff(kind="values", expected="4.333", got="13", mismatched=1, total=1)
    mistake = "You added up the squared errors; take their mean."
    check = CheckResult("mse", Status.FAILED, 0, 1, hint=mistake, cases=[
        CaseResult("a", Status.FAILED, message=f"{mistake}\nvalues differ: 1 of 1 elements (100.0%) mismatch", diff=diff, mistake="sum"),
        CaseResult("b", Status.FAILED, message="`mse` raised TypeError: boom"),
        CaseResult("c", Status.FAILED, message="`mse` raised TypeError: boom"),
        CaseResult("d", Status.PASSED),
    ])  # fmt: skip
    assert case_messages(check) == ["", "`mse` raised TypeError: boom", "same as above", ""]
    assert verdict_paragraph(check) == "You added up the squared errors; take their mean. (3 of 4 cases fail.)"  # the mistake, in words
    blamed = CheckResult(
        "quad_mse", Status.PASSED, 1, 1, blame="`quad_mse` is right: fix `mse` first.", cases=[CaseResult("a", Status.PASSED)]
    )
    assert verdict_paragraph(blamed) == "`quad_mse` is right: fix `mse` first."
