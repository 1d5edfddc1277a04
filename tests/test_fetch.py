"""`learn fetch`: copies exercises, never loses learner work, installs packs from folders and URLs."""

import functools
import http.server
import json
import shutil
import threading
import zipfile

import nbformat
import pytest

from grader.cli import cli
from grader.lessons import get_lesson

from .conftest import SOLUTIONS


@pytest.fixture(autouse=True)
def private_packs(tmp_path, monkeypatch):
    """Packs installed by these tests must not leak into other tests' view of the lessons."""
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "learn-home"))


def fetch(runner, *args):
    return runner.invoke(cli, ["fetch", *args], catch_exceptions=False)


def test_fetch_copies_notebooks(runner, tmp_path):
    result = fetch(runner, "lesson3", "--dir", str(tmp_path / "w"))
    assert result.exit_code == 0, result.output
    for spec in get_lesson("lesson3").notebooks:
        assert (tmp_path / "w" / spec.file).is_file()
    nb = nbformat.read(str(tmp_path / "w" / "01_quadratic.ipynb"), as_version=4)
    assert nb.metadata["learn"]["kind"] == "exercise"


def test_fetch_never_overwrites_learner_work(runner, tmp_path):
    work = tmp_path / "w"
    fetch(runner, "lesson3", "--dir", str(work))
    target = work / "01_quadratic.ipynb"
    nb = nbformat.read(str(target), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("# my own work"))
    nbformat.write(nb, str(target))
    before = target.read_bytes()
    result = fetch(runner, "lesson3", "--dir", str(work))
    assert result.exit_code == 0
    assert target.read_bytes() == before
    assert "kept" in result.output and "--force" in result.output


def test_force_keeps_a_timestamped_backup(runner, tmp_path):
    work = tmp_path / "w"
    fetch(runner, "lesson3", "--dir", str(work))
    target = work / "02_relu.ipynb"
    target.write_text(target.read_text().replace("ReLU", "RELU"))
    mine = target.read_bytes()
    result = fetch(runner, "lesson3", "--dir", str(work), "--force")
    assert result.exit_code == 0
    backups = list(work.glob("02_relu.*.bak.ipynb"))
    assert len(backups) == 1 and backups[0].read_bytes() == mine
    assert target.read_bytes() == (get_lesson("lesson3").exercises_dir / "02_relu.ipynb").read_bytes()


def test_untouched_notebooks_are_updated(runner, tmp_path):
    work = tmp_path / "w"
    fetch(runner, "lesson3", "--dir", str(work))
    target = work / "03_matmul.ipynb"
    old = target.read_text().replace("three ways", "3 ways")
    target.write_text(old)
    record = json.loads((work / ".learn" / "fetched.json").read_text())
    import hashlib

    record["03_matmul.ipynb"] = hashlib.sha256(target.read_bytes()).hexdigest()  # as if fetched like this
    (work / ".learn" / "fetched.json").write_text(json.dumps(record))
    result = fetch(runner, "lesson3", "--dir", str(work))
    assert "updated" in result.output
    assert "three ways" in target.read_text()


def test_unknown_lesson_exits_2_listing_known(runner, tmp_path):
    result = runner.invoke(cli, ["fetch", "lesson42", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "lesson3" in result.output and "Traceback" not in result.output


def make_pack(tmp_path, lesson_id="extra1"):
    pack = tmp_path / "mypack"
    shutil.copytree(SOLUTIONS / "lesson3", pack, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = pack / "lesson.toml"
    manifest.write_text(manifest.read_text().replace('id = "lesson3"', f'id = "{lesson_id}"'))
    return pack


def zip_pack(pack, dest):
    with zipfile.ZipFile(dest, "w") as z:
        for path in pack.rglob("*"):
            z.write(path, "pack/" + str(path.relative_to(pack)))
    return dest


def test_fetch_from_folder(runner, tmp_path):
    pack = make_pack(tmp_path)
    result = fetch(runner, "extra1", "--from", str(pack), "--dir", str(tmp_path / "w"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "w" / "01_quadratic.ipynb").is_file()
    assert "extra1" in runner.invoke(cli, ["list"]).output


def test_fetch_from_zip_over_http(runner, tmp_path):
    pack = make_pack(tmp_path, "extra2")
    served = tmp_path / "served"
    served.mkdir()
    zip_pack(pack, served / "pack.zip")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/pack.zip"
        result = fetch(runner, "extra2", "--from", url, "--dir", str(tmp_path / "w"))
        assert result.exit_code == 0, result.output
        assert (tmp_path / "w" / "02_relu.ipynb").is_file()
        missing = runner.invoke(cli, ["fetch", "extra2", "--from", url.replace("pack.zip", "nope.zip"), "--dir", str(tmp_path / "x")])
        assert missing.exit_code == 2 and "could not download" in missing.output
    finally:
        server.shutdown()


def test_bad_packs_are_refused(runner, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escape.txt", "x")
    result = runner.invoke(cli, ["fetch", "x", "--from", str(evil), "--dir", str(tmp_path / "w")])
    assert result.exit_code == 2 and "unsafe path" in result.output
    notzip = tmp_path / "n.zip"
    notzip.write_text("hello")
    assert "not a zip" in runner.invoke(cli, ["fetch", "x", "--from", str(notzip)]).output
    pack = make_pack(tmp_path, "lesson3")
    clash = runner.invoke(cli, ["fetch", "lesson3", "--from", str(pack), "--dir", str(tmp_path / "w")])
    assert clash.exit_code == 2 and "already called" in clash.output
    wrong_id = runner.invoke(cli, ["fetch", "other", "--from", str(make_pack(tmp_path / "b", "extra3")), "--dir", str(tmp_path / "w")])
    assert wrong_id.exit_code == 2 and "not 'other'" in wrong_id.output
