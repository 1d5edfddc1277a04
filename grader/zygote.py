"""A warm parent for Jupyter kernels: import the heavy libraries once, fork a fresh kernel per job.

Started by `grader.kernels.Zygote` as ``python -I zygote.py --profile torch`` (possibly inside
bubblewrap); never imported by the grader itself. A fresh kernel costs ~3 s here (interpreter,
`import torch`, IPython); a fork of this process costs a few milliseconds and shares the
imported pages copy-on-write, while each job still gets its own process with nothing left over
from the previous one.

One-shot mode (the "spawn" kernel backend, for Windows, macOS and wherever fork is unsafe):
``python -I zygote.py --exec REQUEST.json`` preloads the same profile and then does in this
very process what a forked child does (`become_kernel`): the same session, environment, working
directory, sys.path, uid drop, rlimits and IPython kernel, so both backends get their limits and
behaviour from this one place. REQUEST.json holds one spawn request (below) plus "profile".
What an operating system lacks is skipped, not faked: on Windows there are no rlimits, no uid
drop, no sessions or process groups; on macOS the address-space and process-count limits are not
applied (without /proc neither the mapped size the first is measured from nor the uid's processes
the second must leave room for can be known).

Fork safety: nothing here starts a thread, creates a ZMQ context, initialises CUDA or runs a
torch op before forking; each child does that for itself.

Protocol: one JSON object per line. Requests on stdin:
    {"op": "spawn", "job": id, "cwd": dir, "connection_file": path, "env": {...},
     "limits": {...}, "threads": n, "uid": optional int}
    {"op": "signal", "job": id, "sig": n}     signal the kernel's process group
    {"op": "kill", "job": id}                 SIGKILL the kernel and every other descendant
    {"op": "extras", "job": id}               import EXTRA_MODULES (for the kernels still to come)
Events on stdout:
    {"event": "ready", "pid": n, "import_s": t, "profile": name}
    {"event": "spawned", "job": id, "pid": n}
    {"event": "exited", "job": id, "status": returncode (negative: killed by signal)}
    {"event": "error", "job": id, "message": text}
    {"event": "extras", "job": id}            the extras are imported
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time

PROFILES = {
    # what each kind of job needs imported before the fork
    "torch": ["numpy", "torch", "matplotlib", "matplotlib.pyplot"],
    "python": ["numpy", "matplotlib", "matplotlib.pyplot"],  # notebooks that never use torch (learn assign picks it)
    "fastai": ["numpy", "torch", "matplotlib", "matplotlib.pyplot", "fastai.vision.all"],
}
KERNEL_MODULES = [
    "IPython",
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "matplotlib_inline.backend_inline",
    "IPython.core.completer",
    # what IPython imports to format a kernel's first traceback (a failing test cell, a stub's
    # NotImplementedError): preloaded once here instead of in every forked kernel (~0.1 s each)
    "IPython.core.ultratb",
    "stack_data",
    "executing",
    "asttokens",
    "pure_eval",
    "pygments.lexers.python",
    "pygments.formatters.terminal256",
    "pygments.styles",
    # what IPKernelApp.initialize and the first cell import (about 10 ms of every kernel's start)
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.core.logger",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
    "pdb",
    "faulthandler",
    "tornado.platform.asyncio",
]

# Imported on request ({"op": "extras"}: the grading service asks once its first check is done):
# what notebooks of this course import beyond their profile - the in-notebook checks, and the
# Jupyter stack's own nbformat (with jsonschema; about a second, far more than a check takes).
EXTRA_MODULES = ["grader.inline", "grader.helpers", "nbformat"]

NO_COLOR = "nocolor"  # IPython's colour theme for kernels' tracebacks (case-insensitive before IPython 9)

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1

_jobs: dict[int, str] = {}  # pid -> job id
_state = {"clean_shm": False, "uid": None}


def send(event: dict) -> None:
    os.write(1, (json.dumps(event) + "\n").encode())


def preload(profile: str) -> float:
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    started = time.monotonic()
    for name in PROFILES[profile] + KERNEL_MODULES:
        preload_module(name)
    warm_tracebacks()
    return time.monotonic() - started


def warm_nbformat() -> None:
    """Read and write one notebook: nbformat builds its schema validator on first use (~50 ms)."""
    try:
        import nbformat

        nbformat.reads(nbformat.writes(nbformat.v4.new_notebook()), as_version=4)
    except Exception as exc:  # only slower without it
        print(f"zygote: could not warm up nbformat: {exc}", file=sys.stderr)


def warm_tracebacks() -> None:
    """Format one traceback the way a kernel formats a failing cell's: the first costs tens of
    ms (stack_data and executing set up), later ones well under one. Done once here, a kernel's
    first error (a stub's NotImplementedError) is cheap too."""
    try:
        from IPython.core import ultratb

        try:
            formatter = ultratb.AutoFormattedTB(mode="Context", theme_name=NO_COLOR)
        except TypeError:  # IPython < 9
            formatter = ultratb.AutoFormattedTB(mode="Context", color_scheme="NoColor")
        try:
            raise ValueError("warming up")
        except ValueError:
            formatter.structured_traceback(*sys.exc_info())
    except Exception as exc:  # only slower without it
        print(f"zygote: could not warm up tracebacks: {exc}", file=sys.stderr)


def preload_module(name: str) -> None:
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional library only slows its kernels down
            print(f"zygote: could not preload {name}: {exc}", file=sys.stderr)


def _prctl(option: int, arg: int) -> None:
    """Linux's prctl(2); a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)
    except Exception:
        pass


def apply_limits(limits: dict) -> None:
    """Set each rlimit of `limits` that this system has (POSIX). Where the `resource` module does
    not exist (Windows) none is applied; a limit the system refuses (macOS refuses some) is skipped
    and named on stderr (the kernel's .kernel.log); `as_bytes` needs /proc to know the mapped size."""
    try:
        import resource
    except ImportError:
        print("learn: resource limits are not available on this system; none applied", file=sys.stderr)
        return
    names = {"cpu_s": "RLIMIT_CPU", "as_bytes": "RLIMIT_AS", "fsize_bytes": "RLIMIT_FSIZE",
             "nproc": "RLIMIT_NPROC", "nofile": "RLIMIT_NOFILE", "core": "RLIMIT_CORE"}  # fmt: skip
    for key, value in limits.items():
        which = getattr(resource, names.get(key, ""), None)
        if value is None or which is None:
            continue
        if key == "as_bytes":
            mapped = _vm_size()
            if mapped is None:
                print("learn: address-space limit not applied (mapped size unknown here)", file=sys.stderr)
                continue
            value = mapped + int(value)  # the limit is headroom above what is already mapped
        value = int(value)
        try:
            soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            if sys.platform.startswith("linux"):
                raise  # never silently weaker where the limits are known to work
            print(f"learn: {names[key]} not applied: {exc}", file=sys.stderr)


def _vm_size() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def start_lazy_threads(threads) -> None:
    """Start now the threads the kernel would otherwise start on first use: pyzmq's zero-copy
    garbage collector (first message over 64 kB) and torch's OpenMP pool (first large op).
    RLIMIT_NPROC counts threads, so a cell that forks until the limit would otherwise leave the
    kernel unable to start them: pyzmq then sends half a message (the grader sees a bad
    signature) and libgomp exits the process. Best effort: a failure here changes nothing."""
    with contextlib.suppress(Exception):
        from zmq.utils.garbage import gc

        if not gc.is_alive():
            gc.start()
    torch = sys.modules.get("torch")
    if torch is not None and threads and int(threads) > 1:
        with contextlib.suppress(Exception):
            torch.ones(1 << 17).sum()  # above the parallel grain size: every pool thread starts


def become_kernel(req: dict, forked: bool = True) -> None:
    """Isolate, limit, then turn this process into an IPython kernel. Never returns.

    Runs in a child forked by the zygote (`forked`), or in a process started for this one kernel
    (``--exec``, the spawn backend; then it is not a fork and keeps nothing to undo, but becomes a
    subreaper on Linux, so whatever the learner starts stays in its tree to be killed). Every
    POSIX-only step is skipped where the system does not have it."""
    try:
        launch_env = dict(os.environ)
        parent = os.getppid() if hasattr(os, "getppid") else 0
        if hasattr(os, "setsid"):
            try:
                os.setsid()
            except OSError:  # already a session leader (started with start_new_session or by bwrap)
                pass
        if forked:
            signal.set_wakeup_fd(-1)
        for name in ("SIGCHLD", "SIGINT", "SIGTERM", "SIGPIPE"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        if hasattr(signal, "SIGXFSZ"):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the file-size limit: write() fails, the kernel lives
        cwd = req["cwd"]
        null = os.open(os.devnull, os.O_RDWR)
        # opened before the uid drop: never through a symlink an earlier kernel of this job planted
        log_path = os.path.join(cwd, ".kernel.log")
        if os.path.islink(log_path):
            os.unlink(log_path)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        if os.name == "posix":
            os.closerange(3, 65536)
        else:
            os.close(null), os.close(log)
        os.chdir(cwd)
        put_cwd_on_path(cwd)
        os.environ.clear()
        os.environ.update(req.get("env") or {})
        import tempfile

        tempfile.tempdir = None  # the zygote cached its own temp dir; the kernel's is $TMPDIR
        os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        _reseed()
        threads = req.get("threads")
        if threads and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(threads))
        uid = req.get("uid")
        if uid is not None and hasattr(os, "setuid") and os.getuid() == 0:
            os.setgroups([])
            os.setgid(int(req.get("gid", uid)))
            os.setuid(int(uid))
        if hasattr(signal, "SIGKILL"):
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        if not forked:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        start_lazy_threads(threads)
        apply_limits(req.get("limits") or {})
        # no colours: the grader strips them from every traceback anyway, and colouring one costs ~10 ms
        # a traceback (pygments), ~100 ms the first time a file is highlighted
        argv = ["-f", req["connection_file"], "--HistoryManager.enabled=False", f"--InteractiveShell.colors={NO_COLOR}"]
        if forked or sys.platform.startswith("linux"):
            argv.append("--IPKernelApp.parent_handle=0")  # PR_SET_PDEATHSIG (or the zygote) ends us with the grader
        elif sys.platform == "win32":  # the launcher's handles: interrupt event and parent process
            argv += [f"--IPKernelApp.interrupt={launch_env.get('JPY_INTERRUPT_EVENT') or 0}",
                     f"--IPKernelApp.parent_handle={launch_env.get('JPY_PARENT_PID') or 0}"]  # fmt: skip
        else:  # macOS and other POSIX: no PR_SET_PDEATHSIG; ipykernel exits when its parent changes
            argv.append(f"--IPKernelApp.parent_handle={parent if parent > 1 else 0}")
        sys.argv = ["ipykernel_launcher", "-f", req["connection_file"]]  # what learner code sees, as in Jupyter
        from ipykernel.kernelapp import IPKernelApp

        IPKernelApp.launch_instance(argv=argv)
        os._exit(0)
    except BaseException:
        import traceback

        try:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(70)


def exec_kernel(request_path: str) -> None:
    """``--exec REQUEST.json``: preload the request's profile, then become its kernel. Never returns."""
    try:
        with open(request_path, encoding="utf-8") as f:
            req = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"zygote: cannot read the kernel request {request_path}: {exc}", file=sys.stderr)
        os._exit(70)
    preload(req.get("profile") or "torch")
    become_kernel(req, forked=False)


def put_cwd_on_path(cwd: str) -> None:
    """Files next to the notebook (lesson data, helper modules) must import, as in Jupyter.

    The zygote runs under ``python -I`` (so nothing of the grader's checkout, e.g. ``grader/html.py``,
    shadows the standard library); since Python 3.11 that sets ``sys.flags.safe_path``, and
    IPython >= 9.7 respects it and no longer puts the working directory on ``sys.path``. Older
    IPython adds ``''`` itself; either way the kernel's own folder comes first, once."""
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _reseed() -> None:
    """A fork inherits the parent's random state; a fresh kernel would not."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


def descendants() -> list[int]:
    """Direct children of this process (orphans re-parent here: we are a subreaper)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdecimal():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            found.append(int(entry))
    return found


def kill_everything() -> None:
    """Kill every descendant, including processes that left the kernel's group or session."""
    for pid in list(_jobs):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    for _ in range(50):
        children = descendants()
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        reap()
        time.sleep(0.01)


def clean_shm() -> None:
    """Empty /dev/shm (private to this sandbox) as the kernels' uid, so no job leaves data there."""
    try:
        if not os.listdir("/dev/shm"):
            return  # nothing left there: no need to fork (a fork of this process takes ~10 ms)
    except OSError:
        pass
    pid = os.fork()
    if pid == 0:
        try:
            if _state["uid"] is not None and os.getuid() == 0:
                os.setgroups([])
                os.setgid(_state["uid"])
                os.setuid(_state["uid"])
            import shutil

            for name in os.listdir("/dev/shm"):
                path = os.path.join("/dev/shm", name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        job = _jobs.pop(pid, None)
        if job is not None:
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            send({"event": "exited", "job": job, "status": code})


def handle(req: dict) -> None:
    op = req.get("op")
    job = req.get("job")
    if op == "spawn":
        _state["uid"] = req.get("uid")
        pid = os.fork()
        if pid == 0:
            become_kernel(req)
        _jobs[pid] = job
        send({"event": "spawned", "job": job, "pid": pid})
    elif op == "signal":
        for pid, j in list(_jobs.items()):
            if j == job:
                try:
                    os.killpg(pid, int(req["sig"]))
                except OSError:
                    pass
    elif op == "extras":  # kernels forked from now on have these too
        for name in EXTRA_MODULES:
            preload_module(name)
        warm_nbformat()
        import gc

        gc.collect()
        gc.freeze()
        send({"event": "extras", "job": job})
    elif op == "kill":
        kill_everything()
        if _state["clean_shm"] and os.path.isdir("/dev/shm"):
            clean_shm()
    else:
        send({"event": "error", "job": job, "message": f"unknown op {op!r}"})


def main(argv: list[str]) -> int:
    if "--exec" in argv:
        exec_kernel(argv[argv.index("--exec") + 1])
    profile = "torch"
    if "--profile" in argv:
        profile = argv[argv.index("--profile") + 1]
    _state["clean_shm"] = "--clean-shm" in argv
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the grader
    import_s = preload(profile)
    import gc

    gc.collect()
    gc.freeze()  # children's collections then skip everything imported here: fewer copy-on-write page faults
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    send({"event": "ready", "pid": os.getpid(), "import_s": round(import_s, 3), "profile": profile})
    buf = b""
    while True:
        try:
            readable, _, _ = select.select([0, rfd], [], [])
        except InterruptedError:
            continue
        if rfd in readable:
            os.read(rfd, 4096)
            reap()
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:  # the grader went away: take every kernel with us
                kill_everything()
                return 0
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    try:
                        handle(json.loads(line))
                    except Exception as exc:  # keep serving: one bad request is not fatal
                        send({"event": "error", "job": None, "message": repr(exc)})
        reap()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
