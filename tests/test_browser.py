"""The report and the progress page in a real headless Chromium: they render, their plots show,
learner HTML stays text (no alert fires), nothing is fetched, and the console stays clean.
Screenshots are kept in test-artifacts/ for people to look at."""

from __future__ import annotations

import pytest

from grader.cli import cli

from .conftest import keep_screenshot, open_page, solution, variant

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PWN = '<script>alert("pwn")</script>'
FIT_QUAD_NO_ZERO_GRAD = """def fit_quad(params, lr=0.01, steps=10):
    params = params.detach().clone().requires_grad_()
    losses = []
    for _ in range(steps):
        loss = quad_mse(params)
        loss.backward()
        with torch.no_grad():
            params -= params.grad * lr
        losses.append(loss.item())
    return params.detach(), losses
"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A real report of a failing notebook, and the progress page after it."""
    from click.testing import CliRunner

    work = tmp_path_factory.mktemp("browser")
    nb = variant(solution("lesson3", "01_quadratic.ipynb"), work / "w" / "01_quadratic.ipynb", f"raise ValueError('{PWN}')",
                 replace={"fit_quad": FIT_QUAD_NO_ZERO_GRAD})  # fmt: skip
    runner = CliRunner()
    checked = runner.invoke(cli, ["check", str(nb), "--only", "quad", "--only", "fit_quad", "--html", str(work / "report.html")])
    assert checked.exit_code == 1, checked.output
    progress = runner.invoke(cli, ["progress", "--html", str(work / "progress.html")])
    assert progress.exit_code == 0, progress.output
    return work / "report.html", work / "progress.html"


def svg_sizes(page) -> list[tuple[float, float]]:
    return page.eval_on_selector_all("svg", "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })")


def images_loaded(page) -> bool:
    return page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")


def test_report_in_chromium(pages, browser):  # pages first: playwright runs an event loop
    report, _ = pages
    page, events = open_page(browser, report)
    try:
        assert page.locator("h1").first.is_visible() and "learn check" in page.locator("h1").first.inner_text()
        fit = page.locator("details#check-fit_quad")
        assert fit.get_attribute("open") is not None and fit.locator("summary .badge.failed").is_visible()
        assert "never resets the gradients" in fit.locator(".verdict").inner_text()  # the named mistake is the verdict
        assert "learn hint fit_quad" in fit.locator(".next").inner_text()  # the ladder goes on with `learn hint`
        sizes = svg_sizes(page)
        assert len(sizes) >= 2 and all(w > 200 and h > 100 for w, h in sizes), sizes
        assert fit.locator("svg").first.is_visible()
        assert images_loaded(page)
        page.locator("details.other-problems > summary").click()  # a cell problem no function explains: folded below them
        assert PWN in page.locator(".problem").first.inner_text()  # shown as text, not run
        assert events["dialogs"] == [] and events["console"] == [], events
        assert all(url.startswith("file://") for url in events["requests"]), events["requests"]
        keep_screenshot(page, "report")
    finally:
        page.close()


def test_progress_page_in_chromium(pages, browser):
    _, progress = pages
    page, events = open_page(browser, progress)
    try:
        row = page.locator("tr.lesson#lesson-lesson3")
        assert row.is_visible() and row.locator('[role="progressbar"]').is_visible()
        width = row.locator('[role="progressbar"] > span').evaluate("e => e.getBoundingClientRect().width")
        assert width > 0
        assert page.locator('svg[aria-label="Score over time"]').is_visible()
        assert page.locator('svg[aria-label="Checks per function"]').is_visible()
        assert all(w > 200 and h > 100 for w, h in svg_sizes(page))
        assert images_loaded(page)
        assert events["dialogs"] == [] and events["console"] == [], events
        assert all(url.startswith("file://") for url in events["requests"]), events["requests"]
        keep_screenshot(page, "progress", docs_name="progress")
    finally:
        page.close()


MSE_SUM = "def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()"


@pytest.fixture(scope="module")
def issue_report(tmp_path_factory):
    """The report of issue 12's example: mse sums, fit_quad never resets the gradients."""
    from click.testing import CliRunner

    work = tmp_path_factory.mktemp("compact")
    nb = variant(solution("lesson3", "01_quadratic.ipynb"), work / "w" / "01_quadratic.ipynb",
                 replace={"mse": MSE_SUM, "fit_quad": FIT_QUAD_NO_ZERO_GRAD})  # fmt: skip
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # the browser fixture may already run playwright's event loop here
        checked = pool.submit(CliRunner().invoke, cli, ["check", str(nb), "--html", str(work / "report.html")]).result()
    assert checked.exit_code == 1, checked.output
    return work / "report.html"


def test_report_is_compact_in_chromium(issue_report, browser):
    page, events = open_page(browser, issue_report)
    try:
        for name in ("mse", "quad_mse", "fit_quad", "quad"):
            check = page.locator(f"details#check-{name}")
            texts = check.locator(".verdict, .hint, .message").all_inner_texts()
            lines = [ln.strip() for t in texts for ln in t.splitlines() if len(ln.strip()) > 25]
            repeated = {ln for ln in lines if lines.count(ln) > 1}
            assert not repeated, f"{name} prints a message twice: {repeated}"
        quad_mse = page.locator("details#check-quad_mse")
        assert "fix `mse` first" in quad_mse.locator(".verdict").inner_text()
        fit = page.locator("details#check-fit_quad")
        assert "wrong on its own too" in fit.locator(".verdict").inner_text()
        assert fit.locator("svg").count() == 2  # the fitted curve and the per-step loss
        mse = page.locator("details#check-mse")
        first_diff = mse.locator("table.diff").first.inner_text()
        assert "4.333" in first_diff and "13" in first_diff and "tensor()" not in first_diff  # a scalar shows its values
        passing = page.locator("details#check-quad details.all-cases")
        assert passing.count() == 1 and "pass" in passing.locator("summary").text_content()
        folded = page.locator("details#check-fit_quad details.all-cases")
        assert folded.count() == 1 and folded.get_attribute("open") is None  # every case, folded under the teaching
        assert events["console"] == [] and events["dialogs"] == [], events
        keep_screenshot(page, "report-compact", docs_name="report")
    finally:
        page.close()


# ---------------------------------------------------------------------------------------------
# issue 23: three typical mistakes per pack, read top-down the way a tutor would explain them

TYPICAL = {
    "lesson3": ("01_quadratic.ipynb", {
        "mse": MSE_SUM,
        "add_noise": "def add_noise(x, mult, add):\n    noise = torch.randn_like(x\n    return x * (1 + noise * mult) + torch.randn_like(x) * add",
        "fit_quad": FIT_QUAD_NO_ZERO_GRAD.replace("        with torch.no_grad():\n            params -= params.grad * lr\n",
                                                  "        params -= params.grad * lr\n        params.grad.zero_()\n"),
    }),
    "chapter4": ("04_mnist_basics.ipynb", {
        "mean_image": "def mean_image(stack):\n    return stack.sum(0)",
        "sigmoid": "import math\n\ndef sigmoid(x):\n    return 1 / (1 + math.exp(-x))",
        "calc_grad": "def calc_grad(xb, yb, model):\n    loss = mnist_loss(model(xb), yb)\n    loss.backward()\n    loss.backward()",
    }),
}  # fmt: skip


@pytest.fixture(scope="module")
def typical_reports(tmp_path_factory):
    """pack -> the HTML report of its notebook with three typical mistakes (both graded in one kernel pool)."""
    from concurrent.futures import ThreadPoolExecutor

    from grader.html import write_report
    from grader.results import RunResult

    from .conftest import grade_all

    work = tmp_path_factory.mktemp("typical")
    jobs = {pack: variant(solution(pack, nb), work / pack / nb, replace=code) for pack, (nb, code) in TYPICAL.items()}
    with ThreadPoolExecutor(1) as pool:  # the browser fixture may already run playwright's event loop here
        results = pool.submit(grade_all, jobs, 2323).result()
    return {pack: write_report(RunResult([result], seed=2323), work / f"{pack}.html") for pack, result in results.items()}


def _top(locator) -> float:
    return locator.evaluate("e => e.getBoundingClientRect().top + window.scrollY")


@pytest.mark.parametrize("pack", sorted(TYPICAL))
def test_a_report_of_typical_mistakes_reads_top_down(typical_reports, browser, pack):
    page, events = open_page(browser, typical_reports[pack])
    try:
        text = page.locator("main").inner_text()
        assert "site-packages" not in text and "_engine_run_backward" not in text  # the learner's frames only
        checks = page.locator("details.check")
        first_check = _top(checks.first)
        for traceback in page.locator("pre.traceback").all():
            assert not traceback.is_visible() or _top(traceback) > first_check  # no traceback above the graded functions
        others = page.locator("details.other-problems")
        if others.count():
            assert _top(others) > _top(checks.last) and others.get_attribute("open") is None  # after them, folded
        for name in TYPICAL[pack][1]:
            check = page.locator(f"details#check-{name}")
            assert check.get_attribute("open") is not None, name
            verdict = check.locator(".verdict").inner_text()
            assert len(verdict.split()) >= 8 and not any(code in verdict for code in (".mean(", "zero_()", "torch.exp", "no_grad():")), (
                verdict
            )
            order = [_top(check.locator(sel).first) for sel in (".verdict", ".next") if check.locator(sel).count()]
            assert order == sorted(order), name  # the verdict first, where to go next last
        if pack == "lesson3":
            assert "syntax error at line 2" in page.locator("details#check-add_noise").inner_text()
            assert "torch.no_grad()" in page.locator("details#check-fit_quad .verdict").inner_text()
        else:
            calc = page.locator("details#check-calc_grad")
            assert "a second time" in calc.locator(".verdict").inner_text()
            assert "frames inside torch" in calc.locator("pre.traceback").first.inner_text()
            assert "math.exp" in page.locator("details#check-sigmoid .verdict").inner_text()
        assert events["dialogs"] == [] and events["console"] == [], events
        keep_screenshot(page, f"report-typical-{pack}")
    finally:
        page.close()
