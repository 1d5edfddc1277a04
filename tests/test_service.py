"""The grading service: the same verdicts as grading in the command's own process, from warm
kernels; private to its user; and every way it can go missing - killed, stale, racing, out of
disk - ends in the right verdict or one clear line, never a stale one.

The slow tests share one service (module fixture) and kill or replace it only where that is the
point. Every `learn` runs as a subprocess, as a learner's would, with its own XDG_RUNTIME_DIR.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from grader import service

from .conftest import copy_to, exercise, solution, variant

LEARN = [sys.executable, "-c", "from grader.cli import main; main()"]
WRONG_MSE = "def mse(preds, acts):\n    return ((preds - acts) ** 2).sum()"
FALLBACK = "checking in this process instead"


def environment(root: Path) -> dict:
    """A learner's environment of their own under `root`, the service allowed."""
    (root / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ, LEARN_HOME=str(root / "home"), LEARN_CACHE_DIR=str(root / "cache"), XDG_RUNTIME_DIR=str(root / "run"))
    env.pop("LEARN_NO_SERVICE", None)
    return env


def learn(env: dict, *args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LEARN, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def service_pid(env: dict) -> int | None:
    done = learn(env, "service", "status")
    return int(done.stdout.split("pid ", 1)[1].split(",", 1)[0]) if done.returncode == 0 else None


def stop_everything(env: dict) -> None:
    """Stop the learner's service, and kill it if it does not go: never leak one past a test."""
    pid = service_pid(env)
    learn(env, "service", "stop")
    if pid is None:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def services_listening_on(folder: Path) -> list[int]:
    """Live service processes serving a socket in `folder`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"grader.service" in cmdline and any(arg.startswith(str(folder).encode()) for arg in cmdline):
            found.append(int(entry))
    return found


@contextlib.contextmanager
def own_service(root: Path, **env_extra: str):
    """A learner of their own under `root` (environment(), plus `env_extra`), whose service is
    stopped when the block ends, however it ends."""
    env = dict(environment(root), **env_extra)
    try:
        yield env
    finally:
        stop_everything(env)


def in_env(env: dict, monkeypatch) -> None:
    for key in ("LEARN_HOME", "LEARN_CACHE_DIR", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("LEARN_NO_SERVICE", raising=False)


def comparable(data):
    """A result's JSON without what differs between any two runs (times, when)."""
    if isinstance(data, dict):
        return {k: comparable(v) for k, v in data.items() if k not in ("duration", "timings", "created_at")}
    if isinstance(data, list):
        return [comparable(v) for v in data]
    return data


# ---------------------------------------------------------------------------------------------
# where the service lives (no process started)


def test_the_socket_lives_in_a_private_folder_of_this_setup(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    su = service.setup()
    assert su.folder == run / "learn" and su.socket.parent == su.folder
    assert (su.folder.stat().st_mode & 0o777) == 0o700
    monkeypatch.setenv("LEARN_SANDBOX", "rlimit")  # another setup: another service
    assert service.setup().socket != su.socket
    monkeypatch.delenv("LEARN_SANDBOX")
    monkeypatch.setenv("LEARN_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert service.setup().socket != su.socket


def test_an_open_runtime_dir_is_not_used_and_a_foreign_folder_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    su = service.setup()
    assert su.folder == tmp_path / "tmp" / f"learn-service-{os.getuid()}"
    if os.getuid() != 0:
        pytest.skip("making a folder someone else's needs root")
    shutil.rmtree(su.folder)
    su.folder.mkdir()
    os.chown(su.folder, 4321, 4321)  # planted by another user
    with pytest.raises(service.ServiceUnavailable, match="not a folder of yours"):
        service.setup()


def test_a_folder_of_ours_that_others_could_enter_is_made_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    tmp_path.chmod(0o700)
    (tmp_path / "learn").mkdir(mode=0o755)
    (tmp_path / "learn").chmod(0o755)
    assert (service.setup().folder.stat().st_mode & 0o777) == 0o700


def test_the_stamp_changes_when_a_lesson_pack_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN_HOME", str(tmp_path / "home"))
    before = service._stamp()
    assert service._stamp() == before
    (tmp_path / "home" / "packs" / "extra").mkdir(parents=True)
    (tmp_path / "home" / "packs" / "extra" / "lesson.toml").write_text("id = 'extra'\n")
    assert service._stamp() != before


def test_learn_service_status_and_stop_without_a_service(tmp_path, runner, monkeypatch):
    from grader.cli import cli

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    tmp_path.chmod(0o700)
    assert runner.invoke(cli, ["service", "--help"]).exit_code == 0
    status = runner.invoke(cli, ["service", "status"])
    assert status.exit_code == 1 and "not running" in status.output
    stopped = runner.invoke(cli, ["service", "stop"])
    assert stopped.exit_code == 0 and "was not running" in stopped.output


def test_the_fallback_is_said_once(monkeypatch):
    said = []
    monkeypatch.setattr(service, "_told", set())
    for _ in range(3):
        service.tell_once(said.append, service.ServiceUnavailable("no sockets here"))
    assert said == ["no sockets here; checking in this process instead (slower; `learn service status` says more)"]


def test_no_service_means_no_service(tmp_path, monkeypatch):
    """LEARN_NO_SERVICE=1 (and --no-service) never touches a socket: checks run in this process."""
    from grader.results import RunResult

    monkeypatch.setenv("LEARN_NO_SERVICE", "1")
    monkeypatch.setattr(service, "check", lambda *a, **k: pytest.fail("the service was asked"))
    monkeypatch.setattr("grader.checkrun.check_here", lambda paths, **k: RunResult([], seed=3))
    assert service.run_check([tmp_path / "x.ipynb"], html=False).seed == 3


# ---------------------------------------------------------------------------------------------
# a running service


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One learner's setup with a grading service, stopped at the end."""
    root = tmp_path_factory.mktemp("served")
    with own_service(root) as env:
        yield env, root


@pytest.mark.slow
def test_the_service_gives_the_same_json_as_this_process_on_every_pack(served):
    """Same notebooks, same seed: the service's results are those of the command's own process,
    on every bundled pack (a wrong mse and its cascade, passing solutions, stubs)."""
    from grader.lessons import all_lessons

    env, root = served
    work = root / "every-pack"
    notebooks = [
        variant(solution("lesson3", "01_quadratic.ipynb"), work / "01_quadratic.ipynb", replace={"mse": WRONG_MSE}),
        copy_to(solution("chapter4", "04_mnist_basics.ipynb"), work),
        copy_to(exercise("finetune", "05_fine_tune.ipynb"), work),
        copy_to(exercise("whichmodel", "06_which_model.ipynb"), work),
        copy_to(exercise("capstone", "07_ten_digits.ipynb"), work),
    ]
    args = ["check", *map(str, notebooks), "--seed", "4242", "--no-html", "--no-cache"]
    # -j 1: one kernel at a time, as in the service, so each kernel gets the same torch threads
    here = learn(env, *args, "--json", str(root / "here.json"), "--no-service", "-j", "1")
    there = learn(env, *args, "--json", str(root / "there.json"))
    assert here.returncode == there.returncode == 1, here.stderr + there.stderr
    assert FALLBACK not in there.stderr and service_pid(env) is not None
    mine, theirs = (json.loads((root / name).read_text()) for name in ("here.json", "there.json"))
    assert {n["lesson"] for n in theirs["notebooks"]} == set(all_lessons())  # every bundled pack
    assert comparable(theirs) == comparable(mine)


@pytest.mark.slow
def test_only_what_changed_is_graded_again(served):
    env, root = served
    nb = copy_to(solution("lesson3", "03_matmul.ipynb"), root / "changes")
    first = learn(env, "check", str(nb), "--json", str(root / "a.json"), "--no-html")
    assert first.returncode == 0, first.stderr
    references = sorted((root / "cache" / "reference").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in references]
    again = learn(env, "check", str(nb), "--json", str(root / "b.json"), "--no-html")
    assert again.returncode == 0 and json.loads((root / "b.json").read_text())["notebooks"][0]["cached"]
    variant(nb, nb, replace={"linear": "def linear(x, w, b):\n    return x @ w\n"})
    changed = learn(env, "check", str(nb), "--json", str(root / "c.json"), "--no-html")
    result = json.loads((root / "c.json").read_text())
    assert changed.returncode == 1 and not result["notebooks"][0]["cached"] and "bias" in changed.stdout
    assert result["seed"] == json.loads((root / "a.json").read_text())["seed"]  # the service's seed: its reference is reused
    assert sorted((root / "cache" / "reference").glob("*.json")) == references  # no reference was run again
    assert [p.stat().st_mtime_ns for p in references] == stamps


@pytest.mark.slow
def test_in_notebook_check_asks_the_service_with_the_same_verdict(served, monkeypatch):
    from grader import check, inline
    from grader.progress import connect
    from grader.results import NotebookResult, Status

    env, root = served
    in_env(env, monkeypatch)
    nb = variant(solution("lesson3", "01_quadratic.ipynb"), root / "inline" / "01_quadratic.ipynb", replace={"mse": WRONG_MSE})
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))  # as Jupyter sets it for the notebook's kernel
    monkeypatch.setattr(inline, "_learn", lambda *a, **k: pytest.fail("check() started a learn subprocess"))
    before = set(sys.modules)
    with connect() as conn:
        earlier = conn.execute("SELECT status FROM results WHERE item = 'mse'").fetchall()
    result = check("mse", namespace=None)
    assert result.status is Status.FAILED and result.result.kind == "known_mistake", str(result)
    assert not any(
        m.startswith(("_learn_checks_", "grader.grading", "grader.kernels")) for m in set(sys.modules) - before
    )  # nothing of grading here
    cli = learn(env, "check", str(nb), "--only", "mse", "--json", str(root / "mse.json"), "--no-html", "--no-cache")
    assert cli.returncode == 1
    [theirs] = json.loads((root / "mse.json").read_text())["notebooks"][0]["checks"]
    mine = NotebookResult(path="", exercise=None, lesson=None, status=Status.FAILED, checks=[result.result]).to_dict()["checks"][0]
    assert comparable(mine) == comparable(theirs)
    with connect(create=False) as conn:  # both are in the progress history, as `learn check` records them
        assert conn.execute("SELECT status FROM results WHERE item = 'mse'").fetchall() == [*earlier, ("failed",), ("failed",)]


@pytest.mark.slow
def test_watch_uses_the_service(served):
    env, root = served
    copy_to(solution("lesson3", "01_quadratic.ipynb"), root / "watched")
    done = learn(env, "watch", "--dir", str(root / "watched"), "--only", "quad", "--max-runs", "1")
    assert done.returncode == 0 and "round 1" in done.stdout and "1/1 points" in done.stdout, done.stdout + done.stderr
    assert FALLBACK not in done.stderr


@pytest.mark.slow
def test_a_long_check_in_the_service_reports_which_cell_runs_now(served, monkeypatch):
    """The service sends its check's live progress (notebook, cell k of n, elapsed, limit) while it
    runs, then the answer; the client shows it in its own live table (`live.remote`)."""
    from grader import live

    env, root = served
    in_env(env, monkeypatch)
    slow = variant(solution("lesson3", "01_quadratic.ipynb"), root / "slow" / "01_quadratic.ipynb", "import time\ntime.sleep(2)")
    heard: list[list] = []
    request = {"op": "check", "paths": [str(slow)], "display": [str(slow)], "seed": 4242, "only": None, "cell_timeout": None,
               "use_cache": False, "record": False, "html": False, "progress": True}  # fmt: skip
    reply = service.call(request, on_progress=heard.append)
    assert reply["ok"] and reply["check"]["run"]["notebooks"][0]["path"] == str(slow)
    named = [e for entries in heard for e in entries if e["name"].endswith("01_quadratic.ipynb")]
    assert any(e["stage"] == "cell" and e["total"] > 0 and e["limit"] for e in named), heard[-3:]
    assert max(e["elapsed"] for e in named) >= 1.0  # seen while the slow cell ran, not only after it
    live.remote(heard[len(heard) // 2])
    try:
        shown = [live.describe(e) for e in live.snapshot()]
        assert any("01_quadratic.ipynb" in line for line in shown), shown
    finally:
        live.remote([])
    quiet: list[list] = []
    assert service.call({**request, "progress": False}, on_progress=quiet.append)["ok"] and quiet == []


# ---------------------------------------------------------------------------------------------
# robustness: each case its own learner, so that killing one service spoils no other test


@pytest.mark.slow
def test_kill_9_a_stale_socket_and_a_kill_mid_check(tmp_path):
    with own_service(tmp_path) as env:
        nb = copy_to(solution("lesson3", "02_relu.ipynb"), tmp_path / "w")
        assert learn(env, "check", str(nb), "--no-html").returncode == 0
        first = service_pid(env)
        os.kill(first, signal.SIGKILL)
        time.sleep(0.5)
        socket_file = next((tmp_path / "run" / "learn").glob("*.sock"))
        assert socket_file.exists()  # left behind: stale
        again = learn(env, "check", str(nb), "--no-html", "--no-cache")
        assert again.returncode == 0 and FALLBACK not in again.stderr, again.stderr  # a silent restart
        second = service_pid(env)
        assert second not in (None, first)

        slow = variant(nb, tmp_path / "w" / "02_relu.ipynb", "import time\ntime.sleep(4)")
        killer = threading.Timer(2.0, os.kill, (second, signal.SIGKILL))
        killer.start()
        mid = learn(env, "check", str(slow), "--no-html", "--no-cache")
        killer.join()
        assert mid.returncode == 0 and FALLBACK not in mid.stderr, mid.stdout + mid.stderr  # graded again, by a new service
        assert service_pid(env) not in (None, second)


@pytest.mark.slow
def test_two_terminals_at_once_start_one_service_and_get_their_own_verdicts(tmp_path):
    with own_service(tmp_path) as env:
        right = copy_to(solution("lesson3", "03_matmul.ipynb"), tmp_path / "a")
        wrong = variant(solution("lesson3", "03_matmul.ipynb"), tmp_path / "b" / "03_matmul.ipynb",
                        replace={"linear": "def linear(x, w, b):\n    return x @ w\n"})  # fmt: skip
        procs = [subprocess.Popen([*LEARN, "check", str(p), "--no-html"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for p in (right, wrong)]  # fmt: skip
        outs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0, 1], outs
        assert all(FALLBACK not in err for _, err in outs)
        assert "bias" in outs[1][0] and "bias" not in outs[0][0]
        assert len(services_listening_on(tmp_path / "run")) == 1  # one service: the other terminal waited for it


@pytest.mark.slow
def test_a_changed_pack_restarts_the_service_without_a_word(tmp_path):
    with own_service(tmp_path) as env:
        nb = copy_to(solution("lesson3", "03_matmul.ipynb"), tmp_path / "w")
        assert learn(env, "check", str(nb), "--no-html").returncode == 0
        first = service_pid(env)
        extra = tmp_path / "home" / "packs" / "newpack"
        extra.mkdir(parents=True)
        (extra / "notes.txt").write_text("a pack being installed")
        again = learn(env, "check", str(nb), "--no-html", "--no-cache")
        assert again.returncode == 0 and again.stderr == "", again.stderr
        assert service_pid(env) not in (None, first)


@pytest.mark.slow
def test_an_idle_service_lets_its_relay_go_and_the_next_wrong_answer_still_gets_its_cascade(tmp_path, monkeypatch):
    with own_service(tmp_path, LEARN_SERVICE_IDLE="16") as env:  # the relay goes after 8 s idle, the service after 16
        in_env(env, monkeypatch)
        wrong = variant(solution("lesson3", "01_quadratic.ipynb"), tmp_path / "w" / "01_quadratic.ipynb", replace={"mse": WRONG_MSE})
        args = ["check", str(wrong), "--no-html", "--no-cache", "--seed", "4242", "--json"]
        first = learn(env, *args, str(tmp_path / "first.json"))
        assert first.returncode == 1 and FALLBACK not in first.stderr, first.stderr
        assert service.status()["relay"]  # warmed after the check, for the next wrong answer
        deadline = time.monotonic() + 30
        while service.status()["relay"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not service.status()["relay"], "the relay was not let go while idle"
        again = learn(env, *args, str(tmp_path / "again.json"))
        assert again.returncode == 1 and FALLBACK not in again.stderr, again.stderr
        verdicts = [{c["name"]: (c["status"], c.get("scored"), c.get("blamed_on"), c.get("relay"))
                     for c in json.loads((tmp_path / name).read_text())["notebooks"][0]["checks"]} for name in ("first.json", "again.json")]  # fmt: skip
        assert verdicts[0] == verdicts[1] and verdicts[0]["quad_mse"] == ("passed", "isolated", ["mse"], ""), verdicts[0]
        assert "the relay's kernels stopped" in next((tmp_path / "run" / "learn").glob("*.log")).read_text()


@pytest.mark.slow
def test_an_idle_service_stops_by_itself_and_leaves_no_socket(tmp_path):
    with own_service(tmp_path, LEARN_SERVICE_IDLE="2") as env:
        assert learn(env, "service", "start").returncode == 0
        pid = service_pid(env)
        assert pid is not None
        deadline = time.monotonic() + 60
        while service_pid(env) is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert service_pid(env) is None and not list((tmp_path / "run" / "learn").glob("*.sock"))
        assert "idle for 2s, stopping" in next((tmp_path / "run" / "learn").glob("*.log")).read_text()


@pytest.mark.slow
def test_a_full_disk_gives_the_right_verdicts_and_says_what_was_not_saved(tmp_path):
    """History, caches and the service's own folder all on a full disk: right verdicts, a clear
    line about what could not be saved, no traceback, and no stale result later."""
    if os.getuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small file system needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    env = environment(disk)
    nb = copy_to(solution("lesson3", "03_matmul.ipynb"), tmp_path / "w")
    try:
        with open(disk / "filler", "wb") as f, pytest.raises(OSError):  # the disk is full
            f.write(b"x" * (2 * 2**20))
            f.flush()
        first = learn(env, "check", str(nb), "--no-html")
        assert first.returncode == 0 and "Traceback" not in first.stderr, first.stdout + first.stderr
        assert "progress history not updated" in first.stderr, first.stderr
        variant(nb, nb, replace={"linear": "def linear(x, w, b):\n    return x @ w\n"})
        second = learn(env, "check", str(nb), "--no-html")
        assert second.returncode == 1 and "bias" in second.stdout, second.stdout + second.stderr  # not the stale pass
    finally:
        stop_everything(env)
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ---------------------------------------------------------------------------------------------
# another user on the same machine


@pytest.fixture
def other_user():
    if os.getuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd to make a second user")
    name = f"lrn{os.getpid() % 100000}"
    if subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], capture_output=True).returncode != 0:
        pytest.skip("useradd failed")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def as_user(name: str, code: str, *args: str) -> subprocess.CompletedProcess:
    """Debian's own python3 as `name` (the test's Python may sit in a folder others cannot read)."""
    return subprocess.run(["setpriv", f"--reuid={name}", f"--regid={name}", "--init-groups", "/usr/bin/python3", "-c", code, *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


CONNECT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("refused", exc.errno); sys.exit(0)
try:
    s.sendall(json.dumps({"op": "status"}).encode() + b"\\n")
    print("answer", s.recv(1000) or "none")
except ConnectionError:
    print("answer none")
"""


@pytest.mark.slow
def test_another_user_cannot_reach_the_service(other_user):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="learn-two-users-"))
    base.chmod(0o755)  # the other user may walk up to the service's own folder
    env = environment(base)
    try:
        started = learn(env, "service", "start")
        assert started.returncode == 0, started.stderr
        sock, pid = next((base / "run" / "learn").glob("*.sock")), service_pid(env)
        assert (sock.stat().st_mode & 0o777) == 0o600 and (sock.parent.stat().st_mode & 0o777) == 0o700
        assert as_user(other_user, CONNECT, str(sock)).stdout.startswith("refused 13")  # EACCES: the private folders
        (base / "run").chmod(0o755)  # from here on, opened up by mistake
        sock.parent.chmod(0o755)
        assert as_user(other_user, CONNECT, str(sock)).stdout.startswith("refused 13")  # EACCES: the socket itself
        sock.chmod(0o666)  # the service still answers only its own user
        probe = as_user(other_user, CONNECT, str(sock))
        assert probe.stdout.strip() == "answer none", probe.stdout + probe.stderr
        os.kill(pid, 0)  # and it still runs for its own user
        where = "from grader.service import setup; print(setup().socket)"  # their own learn, if they can run ours
        theirs = subprocess.run(["setpriv", f"--reuid={other_user}", f"--regid={other_user}", "--init-groups", sys.executable, "-c", where],
                                capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})  # fmt: skip
        if theirs.returncode == 0:
            folder = Path(theirs.stdout.strip()).parent
            assert folder != sock.parent and folder.stat().st_uid != os.getuid()
            shutil.rmtree(folder)
    finally:
        (base / "run").chmod(0o700)  # private again: our own `learn service stop` uses it only then
        stop_everything(env)
        shutil.rmtree(base, ignore_errors=True)
