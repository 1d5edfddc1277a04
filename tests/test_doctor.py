"""`learn doctor`: every verdict, reached by simulating its fault, with its fix and exit status."""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

import pytest

from grader import doctor, sandbox, wire
from grader.cli import cli
from grader.errors import ExecutionError, LessonPackError
from grader.execute import CellRun, JobOutcome
from grader.results import CheckResult, NotebookResult, Status

from .conftest import SOLUTIONS

DiskUsage = collections.namedtuple("DiskUsage", "total used free")


@pytest.fixture(autouse=True)
def _fresh_sandbox_probe(monkeypatch):
    """bwrap_works is cached per process: a faked PATH must not leak into (or from) other tests."""
    monkeypatch.delenv("LEARN_SANDBOX", raising=False)
    sandbox.bwrap_works.cache_clear()
    yield
    sandbox.bwrap_works.cache_clear()


def finding(report_or_output, check: str):
    """The finding of `check` in a Report, or its line (and the fix line after it) in CLI output."""
    if isinstance(report_or_output, doctor.Report):
        return next(f for f in report_or_output.findings if f.check == check)
    lines = report_or_output.splitlines()
    for i, line in enumerate(lines):
        if line[:8].strip() in ("ok", "warn", "problem", "skip") and line[9:].split("  ")[0].strip() == check:
            fix = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].strip().startswith("fix:") else ""
            return line[:8].strip(), line, fix
    raise AssertionError(f"no line for {check!r} in:\n{report_or_output}")


def fake_bwrap(folder: Path, message: str = "bwrap: setting up uid map: Permission denied") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "bwrap"
    script.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit 1\n")
    script.chmod(0o755)
    return script


def kernel_outcome(*, cell_ok=True, value=doctor.HELPER_VALUE, cuda=None, uid=1234) -> JobOutcome:
    """What `probe_kernel` returns, without a kernel."""
    cell = (
        CellRun(0, "ok")
        if cell_ok
        else CellRun(0, "error", ename="ModuleNotFoundError", evalue=f"No module named '{doctor.HELPER_MODULE}'")
    )
    probes = {"kernel": {"status": "ok", "value": wire.encode({"uid": uid, "sandbox": "bwrap", "python": "3.11"})},
              "cuda": {"status": "ok", "value": wire.encode(cuda or {"available": False, "count": 0, "name": "", "error": ""})}}  # fmt: skip
    probes["import"] = {"status": "ok", "value": wire.encode(value)} if cell_ok else {"status": "missing", "names": ["value"]}
    return JobOutcome(cells=[cell], probes=probes, sandbox="bwrap")


# ---------------------------------------------------------------------------------------------
# versions


def test_versions_are_read_without_importing_torch(monkeypatch):
    shown = {f.check: f for f in doctor.versions()}
    assert set(shown) == {"python", "torch", "fastai", "IPython", "ipykernel", "nbclient"}
    assert all(f.verdict == doctor.OK and f.detail for f in shown.values())


def test_a_missing_library_is_a_problem_with_the_pip_command(runner, monkeypatch):
    real = doctor.installed_version
    monkeypatch.setattr(doctor, "installed_version", lambda dist: None if dist == "fastai" else real(dist))
    result = runner.invoke(cli, ["doctor", "--quick"])
    verdict, line, fix = finding(result.output, "fastai")
    assert verdict == "problem" and "not installed" in line and "finetune" in line
    assert "pip install fastai" in fix
    assert result.exit_code == 1


# ---------------------------------------------------------------------------------------------
# sandbox


def test_bwrap_missing_is_a_warning_with_the_package_to_install(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no bwrap, no nvidia-smi
    result = runner.invoke(cli, ["doctor", "--quick"])
    verdict, line, fix = finding(result.output, "sandbox")
    assert verdict == "warn" and "rlimit only" in line and "bubblewrap is not installed" in line
    assert "install the `bubblewrap` package" in fix and "apt-get install bubblewrap" in fix
    assert result.exit_code == 0, result.output  # a warning is not a problem
    assert "learn doctor: no problems found" in result.output


def test_bwrap_refused_shows_its_own_error_and_the_userns_fix(runner, monkeypatch, tmp_path):
    bwrap = fake_bwrap(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bwrap.parent}{os.pathsep}{os.environ['PATH']}")
    assert sandbox.bwrap_probe() == (str(bwrap), "bwrap: setting up uid map: Permission denied")
    assert sandbox.bwrap_works() is None  # the same verdict as the cached probe `choose` uses
    result = runner.invoke(cli, ["doctor", "--quick"])
    verdict, line, fix = finding(result.output, "sandbox")
    assert verdict == "warn"
    assert f"bubblewrap ({bwrap}) is installed but refused" in line
    assert line.endswith("bwrap: setting up uid map: Permission denied")
    assert "kernel.apparmor_restrict_unprivileged_userns=0" in fix and "AppArmor profile" in fix
    assert result.exit_code == 0


def test_bwrap_refused_by_ubuntu_apparmor_gets_the_specific_fix(monkeypatch, tmp_path):
    bwrap = fake_bwrap(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bwrap.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(doctor, "_read_sysctl", lambda name: "1" if name == "kernel.apparmor_restrict_unprivileged_userns" else None)
    monkeypatch.setattr(doctor, "_in_container", lambda: False)
    found, box = doctor.sandbox_findings()
    assert box.mode == "rlimit"
    assert found[0].verdict == doctor.WARN
    assert "Ubuntu 23.10 and later" in found[0].fix and "/etc/apparmor.d/bwrap" in found[0].fix and "userns," in found[0].fix
    assert "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in found[0].fix


def test_working_bwrap_is_ok(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_probe", lambda: ("/usr/bin/bwrap", None))
    found, box = doctor.sandbox_findings()
    assert box.mode == "bwrap" and found[0].verdict == doctor.OK and "/usr/bin/bwrap" in found[0].detail and not found[0].fix


def test_learn_sandbox_forcing_rlimit_is_a_warning(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_probe", lambda: ("/usr/bin/bwrap", None))
    monkeypatch.setenv("LEARN_SANDBOX", "rlimit")
    found, box = doctor.sandbox_findings()
    assert box.mode == "rlimit" and found[0].verdict == doctor.WARN
    assert "LEARN_SANDBOX=rlimit" in found[0].detail and "bubblewrap works here" in found[0].detail
    assert "unset LEARN_SANDBOX" in found[0].fix


def test_kernels_running_as_root_is_a_warning(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_probe", lambda: (None, "bwrap is not installed (not found on PATH)"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox.RlimitOnly, "_python_reachable_by_others", lambda self: False)
    user = doctor.sandbox_findings()[0][1]
    assert user.check == "kernel user" and user.verdict == doctor.WARN and "AS ROOT" in user.detail
    assert "run learn as a regular user" in user.fix


def test_kernels_dropping_root_or_not_root_is_ok(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_probe", lambda: (None, "bwrap is not installed (not found on PATH)"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox.RlimitOnly, "_python_reachable_by_others", lambda self: True)
    user = doctor.sandbox_findings()[0][1]
    assert user.verdict == doctor.OK and "drops to its own unprivileged uid" in user.detail
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    user = doctor.sandbox_findings()[0][1]
    assert user.verdict == doctor.OK and "uid 1000" in user.detail


# ---------------------------------------------------------------------------------------------
# folders and disk


def test_writable_folders_are_ok_and_nothing_is_left_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("LEARN_CACHE_DIR", str(tmp_path / "not" / "yet"))
    found = {f.check: f for f in doctor.folder_findings()}
    assert found["progress"].verdict == doctor.OK and "writable" in found["progress"].detail
    assert found["cache"].verdict == doctor.OK and "not created yet" in found["cache"].detail
    assert list((tmp_path / "home").iterdir()) == [] and not (tmp_path / "not").exists()


def test_cache_dir_under_a_file_is_a_problem(runner, monkeypatch, tmp_path):
    (tmp_path / "file").write_text("not a folder")  # chmod cannot stop root; a regular file can
    monkeypatch.setenv("LEARN_CACHE_DIR", str(tmp_path / "file" / "cache"))
    result = runner.invoke(cli, ["doctor", "--quick"])
    verdict, line, fix = finding(result.output, "cache")
    assert verdict == "problem" and f"{tmp_path / 'file'} is a file, not a folder" in line
    assert fix == "fix: set LEARN_CACHE_DIR to a folder you can write to, or unset it"
    assert result.exit_code == 1
    assert "1 problem" in result.output.splitlines()[-1]


def test_a_folder_refusing_files_is_a_problem_with_the_chown_fix(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(doctor.tempfile, "mkstemp", refuse)
    assert doctor.write_problem(tmp_path) == f"cannot create a file in {tmp_path}: Permission denied"
    monkeypatch.delenv("LEARN_HOME")
    monkeypatch.setattr(doctor, "learn_folders", lambda: [("progress", tmp_path, "LEARN_HOME")])
    progress = doctor.folder_findings()[0]
    assert progress.verdict == doctor.PROBLEM and f"sudo chown -R $USER {tmp_path}" in progress.fix


def test_low_disk_is_a_warning(runner, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10 << 30, (10 << 30) - (100 << 20), 100 << 20))
    result = runner.invoke(cli, ["doctor", "--quick"])
    verdict, line, fix = finding(result.output, "disk")
    assert verdict == "warn" and "only 0.1 GiB free" in line and "(cache)" in line and "(temp)" in line
    assert "free some space" in fix and "LEARN_CACHE_DIR (cache)" in fix
    assert result.exit_code == 0


def test_enough_disk_is_ok(monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(100 << 30, 50 << 30, 50 << 30))
    disk = doctor.disk_findings()
    assert disk and all(f.verdict == doctor.OK and "50.0 GiB free" in f.detail for f in disk)


# ---------------------------------------------------------------------------------------------
# CUDA in this process


def test_no_gpu_is_simply_cpu_only(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(doctor, "_gpu_hardware", lambda: [])
    found, available = doctor.cuda_here()
    assert (found.verdict, found.detail, available) == (doctor.OK, "no GPU (CPU only)", False)


def test_a_gpu_torch_cannot_use_is_a_warning(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(doctor, "_gpu_hardware", lambda: ["/dev/nvidia0"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.version, "cuda", None)
    found, available = doctor.cuda_here()
    assert found.verdict == doctor.WARN and "CPU-only build" in found.detail and "pytorch.org" in found.fix and not available
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    found, _ = doctor.cuda_here()
    assert found.verdict == doctor.WARN and "hides it" in found.detail and "unset CUDA_VISIBLE_DEVICES" in found.fix


def test_a_visible_gpu_is_ok(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    found, available = doctor.cuda_here()
    assert found.verdict == doctor.OK and "1 GPU (NVIDIA H200" in found.detail and available


# ---------------------------------------------------------------------------------------------
# kernels (simulated) and lesson packs


def test_a_kernel_that_cannot_start_is_a_problem(runner, monkeypatch):
    async def no_kernel(box):
        raise ExecutionError("kernel server did not start within 180s; see /tmp/learn-x/s0/zygote.log")

    monkeypatch.setattr(doctor, "probe_kernel", no_kernel)
    result = runner.invoke(cli, ["doctor"])
    verdict, line, fix = finding(result.output, "kernel")
    assert verdict == "problem" and "no kernel could start" in line and "did not start within 180s" in line
    assert "ipykernel" in fix and "LEARN_DEBUG=1 learn doctor" in fix
    assert finding(result.output, "local import")[0] == "skip"
    verdict, line, _ = finding(result.output, "pack lesson3")
    assert verdict == "skip" and "not graded: no kernel starts" in line
    assert result.exit_code == 1


def test_kernel_findings_from_a_good_run():
    box = sandbox.RlimitOnly()
    started, imported, gpu = doctor.kernel_findings(kernel_outcome(), box, cuda_in_process=False, seconds=1.5)
    assert started.verdict == doctor.OK and "uid 1234" in started.detail and "1.5s" in started.detail
    assert imported.verdict == doctor.OK
    assert gpu.verdict == doctor.OK and gpu.check == "cuda (kernel)"


def test_a_notebook_that_cannot_import_its_neighbour_is_a_problem():
    _, imported, _ = doctor.kernel_findings(kernel_outcome(cell_ok=False), sandbox.RlimitOnly(), False, 1.0)
    assert imported.verdict == doctor.PROBLEM and f"No module named '{doctor.HELPER_MODULE}'" in imported.detail
    assert "sys.path" in imported.fix


def test_a_gpu_the_sandboxed_kernel_does_not_see_is_a_warning():
    *_, gpu = doctor.kernel_findings(kernel_outcome(), sandbox.RlimitOnly(), cuda_in_process=True, seconds=1.0)
    assert gpu.verdict == doctor.WARN and "sandboxed kernel does not" in gpu.detail and "/dev/nvidia" in gpu.fix
    seen = {"available": True, "count": 2, "name": "NVIDIA H200", "error": ""}
    *_, gpu = doctor.kernel_findings(kernel_outcome(cuda=seen), sandbox.RlimitOnly(), cuda_in_process=True, seconds=1.0)
    assert gpu.verdict == doctor.OK and "2 GPUs (NVIDIA H200)" in gpu.detail


def _results(lesson, failing: str | None = None, seed: int = 7) -> list[NotebookResult]:
    """One result per solution notebook of `lesson`, every check passing except `failing`."""
    out = []
    for nb in lesson.notebooks:
        checks = [CheckResult(c.name, Status.FAILED if c.name == failing else Status.PASSED, 0.0 if c.name == failing else c.points, c.points)
                  for c in lesson.checks_for(nb)]  # fmt: skip
        status = Status.FAILED if any(c.status is Status.FAILED for c in checks) else Status.PASSED
        out.append(NotebookResult(path=str(lesson.solution_path(nb)), exercise=nb.file, lesson=lesson.id, status=status, seed=seed,
                                  checks=checks, points=sum(c.points for c in checks), max_points=sum(c.max_points for c in checks)))  # fmt: skip
    return out


def test_a_pack_whose_reference_fails_is_a_problem(runner, monkeypatch):
    async def good_kernel(box):
        return kernel_outcome()

    async def references(box, lessons):
        for lesson in lessons.values():
            yield lesson, _results(lesson, failing="fit_quad" if lesson.id == "lesson3" else None)

    monkeypatch.setattr(doctor, "probe_kernel", good_kernel)
    monkeypatch.setattr(doctor, "grade_references", references)
    result = runner.invoke(cli, ["doctor"])
    verdict, line, fix = finding(result.output, "pack lesson3")
    assert verdict == "problem" and "reference solutions get 19/22 points" in line and "01_quadratic.ipynb: fit_quad (failed)" in line
    assert "learn check" in fix and "--seed 7" in fix and "git checkout solutions/" in fix
    assert finding(result.output, "pack chapter4")[0] == "ok"
    assert finding(result.output, "kernel")[0] == "ok" and finding(result.output, "local import")[0] == "ok"
    assert result.exit_code == 1


def test_a_pack_that_does_not_load_is_a_problem(runner, monkeypatch):
    def broken():
        raise LessonPackError("/packs/x/pack/lesson.toml: [[checks]] 3: unknown key 'pionts'")

    monkeypatch.setattr(doctor, "_lessons", broken)
    result = runner.invoke(cli, ["doctor", "--quick"])
    verdict, line, fix = finding(result.output, "packs")
    assert verdict == "problem" and "unknown key 'pionts'" in line and "repair or remove that pack" in fix
    assert result.exit_code == 1


def test_json_output(runner):
    result = runner.invoke(cli, ["doctor", "--quick", "--json"])
    data = json.loads(result.output)
    verdicts = {f["check"]: f["verdict"] for f in data["findings"]}
    assert verdicts["kernel"] == "skip" and verdicts["python"] == "ok"
    assert set(verdicts.values()) <= {"ok", "warn", "problem", "skip"}
    assert data["ok"] is (data["problems"] == 0) and result.exit_code == (0 if data["ok"] else 1)


# ---------------------------------------------------------------------------------------------
# "cannot be graded" points to the doctor - only when the machinery failed


@pytest.mark.parametrize("kind, points_to_doctor", [("execution", True), ("lesson", True), ("load", False), ("unknown_exercise", False)])
def test_cannot_be_graded_points_to_learn_doctor_for_machinery_failures(kind, points_to_doctor):
    from rich.console import Console

    from grader.report import render_run
    from grader.results import RunResult

    nb = NotebookResult(path="01_quadratic.ipynb", exercise=None, lesson=None, status=Status.ERROR, error="it broke", error_kind=kind)
    console = Console(record=True, width=200)
    render_run(RunResult([nb]), console)
    text = console.export_text()
    assert "cannot be graded" in text and "it broke" in text
    assert ("run `learn doctor` to check this machine" in text) is points_to_doctor


# ---------------------------------------------------------------------------------------------
# real kernels


@pytest.mark.slow
def test_a_real_kernel_starts_imports_its_neighbour_and_reports_cuda():
    import asyncio

    _, box = doctor.sandbox_findings()
    outcome = asyncio.run(doctor.probe_kernel(box))
    started, imported, gpu = doctor.kernel_findings(outcome, box, doctor.cuda_here()[1], 1.0)
    assert started.verdict == doctor.OK and box.mode in started.detail, started
    assert imported.verdict == doctor.OK, imported
    assert gpu.verdict == doctor.OK, gpu


@pytest.mark.slow
def test_a_real_pack_whose_reference_fails_in_a_cell(runner, monkeypatch, tmp_path):
    from grader.lessons import load_lesson

    from .conftest import variant

    pack = tmp_path / "broken3"
    shutil.copytree(SOLUTIONS / "lesson3", pack)
    (pack / "lesson.toml").write_text((pack / "lesson.toml").read_text().replace('id = "lesson3"', 'id = "broken3"', 1))
    variant(SOLUTIONS / "lesson3" / "01_quadratic.ipynb", pack / "01_quadratic.ipynb", "raise RuntimeError('a broken reference')")
    lesson = load_lesson(pack, tmp_path / "exercises")
    lesson.notebooks = lesson.notebooks[:1]  # only the broken notebook: quicker
    possible = sum(c.points for c in lesson.checks_for(lesson.notebooks[0]))
    monkeypatch.setattr(doctor, "_lessons", lambda: {lesson.id: lesson})
    result = runner.invoke(cli, ["doctor"])
    verdict, line, fix = finding(result.output, "pack broken3")
    assert verdict == "problem", result.output
    assert f"reference solutions get 0/{possible:g} points" in line and "a broken reference" in line
    assert "learn check" in fix and str(pack) in fix
    assert finding(result.output, "kernel")[0] == "ok"
    assert result.exit_code == 1
