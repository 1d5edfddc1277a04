"""In-notebook check/hint in a real JupyterLab, driven through headless Chromium: a fetched
exercise notebook, one function filled in, `check("quad")` and `hint("quad")` run in the
learner's own kernel, their rendered results visible. A screenshot is kept in test-artifacts/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import ARTIFACTS, CHROMIUM_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.browser]

QUAD = "def quad(a, b, c, x):\n    return a * x**2 + b * x + c"
TOKEN = "learn-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """JupyterLab serving a folder where `learn fetch lesson3` ran; yields (url, notebook path).
    The progress history is this test's own (the session's is shared with every other test)."""
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "learn-home"))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "jcfg"), "JUPYTER_DATA_DIR": str(tmp_path / "jdata")}
    learn = [os.path.join(os.path.dirname(sys.executable), "learn")]
    subprocess.run([*learn, "fetch", "lesson3"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
    nb = tmp_path / "lesson3" / "01_quadratic.ipynb"
    assert nb.is_file()
    port = _free_port()
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1", f"--ServerApp.token={TOKEN}",
         f"--ServerApp.root_dir={tmp_path}", "--allow-root", "--LabApp.news_url=", "--ServerApp.disable_check_xsrf=True"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"{base}/lab/tree/lesson3/01_quadratic.ipynb?token={TOKEN}", nb
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _run_new_cell_below(page, cell, code: str):
    cell.locator(".jp-InputArea-prompt").first.click()  # select the cell (command mode)
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below, selected
    page.keyboard.press("Enter")  # edit it
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")


def test_check_and_hint_in_jupyterlab(lab, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    url, nb = lab
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        except Exception as exc:  # noqa: BLE001 - no browser here: say so and skip
            pytest.skip(f"headless Chromium cannot be launched here: {str(exc).splitlines()[0][:200]}")
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        try:
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            # fill in quad, in the browser, and save
            cell = page.locator(".jp-CodeCell", has_text="def quad(").first
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(QUAD)
            page.keyboard.press("Control+s")
            deadline = time.monotonic() + 30
            while "a * x**2 + b * x + c" not in nb.read_text() and time.monotonic() < deadline:
                time.sleep(0.3)
            assert "a * x**2 + b * x + c" in nb.read_text(), "the notebook was not saved"
            # check("quad") in the learner's own kernel: graded by `learn check --only quad`
            _run_new_cell_below(page, cell, 'from grader import check, hint\ncheck("quad")')
            result = page.locator(".jp-OutputArea-output .learn-check")
            result.first.wait_for(state="visible", timeout=300_000)
            text = result.first.inner_text()
            assert "quad" in text and "pass" in text and "learn check" in text, text
            from grader.progress import connect

            with connect(create=False) as conn:  # graded by a `learn check` subprocess: it is in the history
                assert conn.execute("SELECT status FROM results WHERE item = 'quad'").fetchall() == [("passed",)]
            checked = page.locator(".jp-CodeCell", has=page.locator(".learn-check")).first
            _run_new_cell_below(page, checked, 'hint("quad")')
            shown = page.locator(".jp-OutputArea-output .learn-inline", has_text="Hint 1 of")
            shown.first.wait_for(state="visible", timeout=60_000)
            assert "for quad" in shown.first.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            for target in (ARTIFACTS / "jupyterlab-check.png", tmp_path / "jupyterlab-check.png"):
                page.screenshot(path=str(target), full_page=True)
        finally:
            page.close()
            browser.close()
