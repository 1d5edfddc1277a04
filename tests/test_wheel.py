"""An installed, non-editable wheel carries the lesson content and can fetch and check."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    wheel = next(dist.glob("*.whl"))
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    _see_this_environment(py)
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr
    return env_dir, wheel


def _see_this_environment(py) -> None:
    """Let the new venv import torch etc. from the environment running the tests - a venv or not:
    `system_site_packages` would give the base interpreter's, which inside a venv lacks them. Its
    .pth files are not run, so an editable install of the project there stays invisible."""
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own = subprocess.run([str(py), "-c", ask], capture_output=True, text=True, check=True).stdout.strip()
    paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(own) / "_tests_outer_env.pth").write_text("\n".join(paths) + "\n")


def test_wheel_ships_the_content(installed):
    import zipfile

    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("grader/_content/solutions/lesson3/lesson.toml", "grader/_content/exercises/lesson3/01_quadratic.ipynb",
                   "grader/_content/solutions/lesson3/checks.py", "grader/zygote.py",
                   "grader/server/migrations/001_initial.sql", "grader/server/templates/submission.html"):  # fmt: skip
        assert needed in names


def test_installed_wheel_fetches_and_checks_outside_the_repo(installed, tmp_path):
    env_dir, _ = installed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    learn = str(env_dir / "bin" / "learn")
    where = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import grader; print(grader.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert str(env_dir) in where.stdout, where.stdout + where.stderr
    fetched = subprocess.run([learn, "fetch", "lesson3"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert fetched.returncode == 0, fetched.stderr
    work = tmp_path / "lesson3"
    solved = (
        env_dir
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
        / "grader"
        / "_content"
        / "solutions"
        / "lesson3"
        / "02_relu.ipynb"
    )
    shutil.copyfile(solved, work / "02_relu.ipynb")
    checked = subprocess.run(
        [learn, "check", "lesson3", "--json", "r.json"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    by_file = {os.path.basename(n["path"]): n for n in data["notebooks"]}
    assert by_file["02_relu.ipynb"]["points"] == by_file["02_relu.ipynb"]["max_points"] > 0
    assert by_file["01_quadratic.ipynb"]["points"] == 0
