"""Choosing the kernel backend (fork from a zygote, or spawn a new interpreter), and the pieces of
the spawn backend that need no kernel: killing a process tree, and import safety off Linux."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import kernels, sandbox, zygote
from grader.errors import ExecutionError
from grader.kernels import BACKEND_ENV, KernelPool, choose_backend, default_backend

GRADER = Path(kernels.__file__).parent


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_auto_picks_spawn_on_macos_and_windows(monkeypatch, platform):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr(sys, "platform", platform)
    assert default_backend() == "spawn"
    assert choose_backend() == choose_backend("auto") == "spawn"


def test_auto_picks_fork_on_linux_and_spawn_without_fork(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    if hasattr(kernels.os, "fork"):
        assert choose_backend() == "fork"
    monkeypatch.delattr(kernels.os, "fork", raising=False)
    assert choose_backend() == "spawn"
    with pytest.raises(ExecutionError, match="os.fork"):
        choose_backend("fork")


def test_the_environment_variable_forces_a_backend_and_the_argument_wins(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv(BACKEND_ENV, "spawn")
    assert choose_backend() == "spawn"
    box = sandbox.RlimitOnly()
    assert KernelPool(1, box=box).backend == "spawn"
    assert KernelPool(1, box=box, backend="fork").backend == "fork"
    monkeypatch.setenv(BACKEND_ENV, " Fork ")
    assert choose_backend() == "fork"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert choose_backend() == "fork"  # forced, even where auto would spawn
    monkeypatch.setenv(BACKEND_ENV, "vfork")
    with pytest.raises(ExecutionError, match=BACKEND_ENV):
        KernelPool(1, box=box)


def test_spawned_kernel_trees_die_whole():
    """A kernel's descendants - also one that left its session - die with it."""
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(300)\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    grandchild = int(proc.stdout.readline())
    assert grandchild in kernels._descendants(proc.pid)
    kernels._kill_tree(proc)
    assert proc.wait(5) == -9
    deadline = time.monotonic() + 5
    while grandchild in kernels._process_table() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert grandchild not in kernels._process_table()


def test_limits_degrade_where_the_system_lacks_them(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows: `import resource` fails
    zygote.apply_limits({"cpu_s": 10, "as_bytes": 2**30})
    assert "none applied" in capsys.readouterr().err
    monkeypatch.setattr(sys, "platform", "win32")
    zygote._prctl(zygote.PR_SET_NO_NEW_PRIVS, 1)  # a no-op, not an error


@pytest.mark.parametrize("module", ["zygote.py", "kernels.py", "execute.py", "sandbox.py"])
def test_kernel_modules_import_on_windows(module):
    """No POSIX-only module is imported at the top of the kernel machinery (they are imported
    where used, behind a check), so `learn` at least imports and starts kernels on Windows."""
    posix_only = {"resource", "fcntl", "pwd", "grp", "termios", "pty", "posix"}
    tree = ast.parse((GRADER / module).read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert not top & posix_only


def test_a_slot_folder_replaced_by_a_link_is_never_emptied_through_it(tmp_path):
    """Learner code that swaps its work folder for a link to the instructor's home loses only the link."""
    from grader.kernels import _empty_dir

    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("keep")
    work = tmp_path / "slot" / "work"
    work.parent.mkdir()
    work.symlink_to(home)
    _empty_dir(work)
    assert (home / "thesis.tex").read_text() == "keep"
    assert work.is_dir() and not work.is_symlink() and not any(work.iterdir())


def test_files_the_grader_writes_in_a_slot_never_follow_a_planted_link(tmp_path):
    from grader.kernels import open_new

    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    for name, append in (("j8.request.json", False), (".kernel.log", True)):
        planted = tmp_path / name
        planted.symlink_to(victim)
        with open(open_new(planted, append=append), "w") as f:
            f.write("from the grader")
        assert victim.read_text() == "root:x:0:0\n"
        assert not planted.is_symlink() and planted.read_text() == "from the grader"
