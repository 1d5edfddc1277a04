"""The class dashboard: its numbers (pass rates hardest first, errors by kind, who needs
attention), and the page itself in a real headless Chromium (self-contained, clean console)."""

from __future__ import annotations

import pytest

from grader.cli import cli
from grader.dashboard import render_dashboard, summarise
from grader.gradebook import Gradebook

from .conftest import keep_screenshot, open_page
from .test_gradebook import fake_run, fill

PWN = '<script>alert("pwn")</script>'


@pytest.fixture
def gradebook(tmp_path):
    path = tmp_path / "gb.db"
    runs = {f"ok{i}": fake_run({"quad": ("passed", 1, 1), "mse": ("passed", 1, 1), "fit_quad": ("passed", 3, 3)}) for i in range(4)}
    runs["wrong"] = fake_run({"quad": ("passed", 1, 1), "mse": ("failed", 0, 1), "fit_quad": ("failed", 0, 3)})
    runs["slowpoke"] = fake_run({"quad": ("passed", 1, 1), "mse": ("passed", 1, 1), "fit_quad": ("timeout", 0, 3)})
    runs[PWN] = fake_run({"quad": ("error", 0, 1), "mse": ("error", 0, 1), "fit_quad": ("error", 0, 3)}, error=f"not valid JSON {PWN}")
    with Gradebook(path) as gb:
        fill(gb, runs, problems={"wrong": ["missing notebook: 02_relu.ipynb"]})
    return path


def test_summary_orders_checks_hardest_first_and_finds_who_needs_help(gradebook):
    with Gradebook(gradebook) as gb:
        summary = summarise(gb.submissions())
    assert [(c.name, c.passed, c.attempts) for c in summary.checks] == [("fit_quad", 4, 7), ("mse", 5, 7), ("quad", 6, 7)]
    assert summary.checks[0].kinds == {"values": 3}  # fake results say "values" for every failure
    assert [a.student for a in summary.attention] == [PWN, "wrong", "slowpoke"]  # lowest score first
    assert any("not valid JSON" in r for r in summary.attention[0].reasons)
    assert summary.attention[1].reasons == ["scored 20% (under 50%)", "missing notebook: 02_relu.ipynb"]
    assert summary.errors[0][:4] == ("values", "wrong values", 6, 3)
    assert sorted(round(f, 2) for f in summary.fractions) == [0.0, 0.2, 0.4, 1.0, 1.0, 1.0, 1.0]


def test_learn_dashboard_writes_a_self_contained_page(gradebook, tmp_path, runner):
    out = tmp_path / "dash.html"
    result = runner.invoke(cli, ["dashboard", "--gradebook", str(gradebook), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count("<svg") >= 3 and "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "&lt;script&gt;" in html  # a student id is text
    missing = runner.invoke(cli, ["dashboard", "--gradebook", str(tmp_path / "nope.db"), "--out", str(out)])
    assert missing.exit_code == 2 and "no gradebook at" in missing.output


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_in_chromium(gradebook, tmp_path, browser):
    with Gradebook(gradebook) as gb:
        page_path = tmp_path / "dashboard.html"
        page_path.write_text(render_dashboard(summarise(gb.submissions())))
    page, events = open_page(browser, page_path)
    try:
        assert "Class dashboard: lesson3" in page.locator("h1").inner_text()
        for section in ("#scores svg", "#runtime svg", "#checks svg", "#errors table", "#attention table"):
            assert page.locator(section).first.is_visible(), section
        sizes = page.eval_on_selector_all(
            "svg", "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })"
        )
        assert len(sizes) >= 3 and all(w > 200 and h > 100 for w, h in sizes), sizes
        rows = page.locator("#checks table tr").all_inner_texts()
        assert rows[1].split()[0] == "fit_quad" and rows[-1].split()[0] == "quad"  # hardest first
        attention = page.locator("#attention tr.student").all_inner_texts()
        assert len(attention) == 3 and PWN in attention[0] and "wrong" in attention[1] and "slowpoke" in attention[2]
        assert events["dialogs"] == [] and events["console"] == [], events
        assert all(url.startswith("file://") for url in events["requests"]), events["requests"]
        keep_screenshot(page, "dashboard", docs_name="dashboard")
    finally:
        page.close()
