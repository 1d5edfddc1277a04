"""Where learner kernels run: inside bubblewrap when it works here, else with rlimits only.

Both modes give every kernel: a scrubbed environment, a fresh working directory holding only
the notebook and the lesson data it may read, rlimits (CPU time, address space, file size,
processes, open files), an unprivileged uid when the grader runs as root, and the per-cell /
per-submission wall clock of `execute`.

`Bubblewrap` adds a filesystem and network view built from an allow-list: the system and Python
installation read-only, the slot's own directory read-write, no network, own PID namespace.
Nothing else exists inside: not the lesson solutions, not hidden checks, not the gradebook,
not other students' submissions, not the learner's home directory.

`RlimitOnly` is the fallback where bwrap is missing or refused (containers without user
namespaces, macOS); `choose()` says so once, and every result records which mode graded it.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

# When the grader runs as root, each slot's kernels run as their own unprivileged uid, taken from a
# range no real account uses. RLIMIT_NPROC counts processes per uid, so a fork bomb in one slot
# exhausts only that slot's quota, never the other kernels' of the batch.
KERNEL_UID_BASE = 1_600_000_000

__all__ = ["Sandbox", "RlimitOnly", "Bubblewrap", "choose", "hidden_paths"]


def hidden_paths() -> list[Path]:
    """Paths inside the bound Python installation that learners must not read: the reference
    solutions a wheel install ships inside site-packages, and scikit-learn's copy of the digits
    (the fine-tuning task's holdout images are drawn from it)."""
    hidden = []
    content = Path(__file__).resolve().parent / "_content"
    if content.exists():
        hidden.append(content / "solutions")
    digits = _package_file("sklearn", "datasets/data/digits.csv.gz")
    if digits is not None:
        hidden.append(digits)
    return hidden


def _package_file(package: str, relative: str) -> Path | None:
    """A data file of an installed package, found without importing the package."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def _gpu_devices() -> list[str]:
    """NVIDIA device nodes: a sandboxed kernel needs them to use CUDA (bwrap's /dev has none)."""
    import glob

    return sorted(glob.glob("/dev/nvidia*"))


class Sandbox:
    """Base: how to launch a zygote and what its kernels get. Subclasses decide the isolation."""

    mode = "none"

    def __init__(self) -> None:
        self.drops_privileges = _is_root() and self._python_reachable_by_others()
        # a random block per pool, so two graders on one machine do not share a uid either
        self._uid_block = KERNEL_UID_BASE + random.SystemRandom().randrange(0, 2**20) * 256

    def kernel_uid(self, slot: int) -> int | None:
        return self._uid_block + slot if self.drops_privileges else None

    def _python_reachable_by_others(self) -> bool:
        """Can an unprivileged uid read the Python installation (e.g. not under a 0700 /root)?"""
        return all(_others_can_enter(Path(p), ancestors=True) for p in _python_paths())

    def command(self, argv: list[str], slot_dir: Path, ro_files: tuple[Path, ...] = ()) -> list[str]:
        """The command line that starts `argv` (a zygote) for the slot at `slot_dir`."""
        return argv

    def zygote_env(self) -> dict[str, str]:
        env = {
            "PATH": _default_path(),
            "LANG": "C.UTF-8",
            "HOME": "/nonexistent",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
        for key in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "MPLCONFIGDIR", *_WINDOWS_ENV):
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    def kernel_env(self, work: Path, threads: int) -> dict[str, str]:
        env = self.zygote_env()
        env.update(
            HOME=str(work),
            TMPDIR=str(work / ".tmp"),
            MPLCONFIGDIR=str(work / ".mpl"),
            IPYTHONDIR=str(work / ".ipython"),
            USER="learner",
            LOGNAME="learner",
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
            PYTHONHASHSEED="0",
            LEARN_SANDBOX=self.mode,
        )
        return env

    def prepare_slot(self, root: Path) -> None:
        root.chmod(0o711)
        (root / "mpl").mkdir(exist_ok=True)

    def prepare_job(self, work: Path, ipc: Path, uid: int | None) -> None:
        """Give the kernel's uid the two directories it may write to."""
        (work / ".tmp").mkdir(exist_ok=True)
        if uid is not None:
            for path in (work, work / ".tmp", ipc):
                os.chown(path, uid, uid)

    def hand_over(self, path: Path, uid: int | None) -> None:
        """Let the kernel read a file the grader wrote (its connection file)."""
        if uid is not None:
            os.chown(path, uid, uid)

    def process_limit(self, uid: int | None) -> int | None:
        """RLIMIT_NPROC counts every task (thread) of the uid, so leave room for what already runs."""
        if uid is not None:
            return 256
        if not os.path.isdir("/proc") or not hasattr(os, "getuid"):
            return None  # macOS, Windows: the uid's processes cannot be counted here, so no limit
        if not _is_root():
            return _count_tasks(os.getuid()) + 512
        return None  # root without a uid to drop to: the limit would not apply anyway


class RlimitOnly(Sandbox):
    mode = "rlimit"


class Bubblewrap(Sandbox):
    mode = "bwrap"

    def __init__(self, bwrap: str) -> None:
        super().__init__()
        self.bwrap = bwrap

    def _python_reachable_by_others(self) -> bool:
        # inside the sandbox the parents of bound paths are bwrap's own 0755 directories
        return all(_others_can_enter(Path(p), ancestors=False) for p in _python_paths())

    def command(self, argv: list[str], slot_dir: Path, ro_files: tuple[Path, ...] = ()) -> list[str]:
        args = [
            self.bwrap,
            "--die-with-parent",
            "--new-session",
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname", "learn-sandbox",
            "--proc", "/proc",
            "--dev", "/dev",
            "--tmpfs", "/tmp",
            "--tmpfs", "/run",
        ]  # fmt: skip
        args += _system_binds()
        made: set[str] = {"/", "/tmp", "/run", "/proc", "/dev", "/usr", "/etc", "/sys"}
        for path in _python_paths():
            args += _parents(path, made) + ["--ro-bind", path, path]
        for extra in ro_files:  # the grader package itself when the project is an editable checkout (never the checkout's solutions/)
            path = str(Path(extra).resolve())
            if not any(path.startswith(p + os.sep) for p in _python_paths()):
                args += _parents(path, made) + ["--ro-bind", path, path]
        for hidden in hidden_paths():
            args += ["--tmpfs", str(hidden)] if hidden.is_dir() else ["--ro-bind", "/dev/null", str(hidden)]
        gpus = _gpu_devices()
        for device in gpus:
            args += ["--dev-bind", device, device]
        if gpus and os.path.isdir("/sys"):
            args += ["--ro-bind", "/sys", "/sys"]  # the CUDA driver enumerates devices there
        slot = str(slot_dir)
        args += _parents(slot, made) + ["--bind", slot, slot, "--remount-ro", "/tmp", "--chdir", slot]
        if self.drops_privileges:
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
        return args + ["--"] + argv


def _parents(path: str, made: set[str]) -> list[str]:
    """bwrap creates missing parents of a mount point 0700, which another uid cannot enter."""
    out: list[str] = []
    for parent in reversed(Path(path).parents):
        p = str(parent)
        if p not in made:
            made.add(p)
            out += ["--perms", "0755", "--dir", p]
    return out


def _system_binds() -> list[str]:
    out: list[str] = []
    for name in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc"):
        if os.path.islink(name):
            out += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            out += ["--ro-bind", name, name]
    for name in ("/sys/devices/system/cpu",):  # torch reads the CPU topology
        if os.path.isdir(name):
            out += ["--ro-bind", name, name]
    return out


@functools.lru_cache(maxsize=1)
def _python_paths() -> tuple[str, ...]:
    """The interpreter and its libraries - and no project checkout an editable install points to."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    candidates.update(sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    candidates.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    for entry in sys.path:
        if entry.endswith(("site-packages", "dist-packages")):
            candidates.add(entry)
    dirs = sorted({str(Path(c).resolve()) for c in candidates if c and os.path.isdir(c)})
    kept: list[str] = []
    for d in dirs:  # drop paths already under a kept one; never bind '/' or /usr twice
        if d in ("/", "/usr") or d.startswith("/usr/"):
            continue
        if not any(d.startswith(k + os.sep) for k in kept):
            kept.append(d)
    return tuple(kept)


def _others_can_enter(path: Path, ancestors: bool) -> bool:
    for p in [path, *path.parents] if ancestors else [path]:
        try:
            if not os.stat(p).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _default_path() -> str:
    bindir = str(Path(sys.executable).parent)
    return os.pathsep.join(dict.fromkeys([bindir, "/usr/local/bin", "/usr/bin", "/bin"]))


# Windows: a Python without these cannot even seed its random numbers or open sockets
_WINDOWS_ENV = ("SYSTEMROOT", "SystemRoot", "WINDIR", "COMSPEC", "PATHEXT") if os.name == "nt" else ()


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _count_tasks(uid: int) -> int:
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdecimal():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                total += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            continue
    return total


@functools.lru_cache(maxsize=1)
def bwrap_status() -> tuple[str | None, str | None]:
    """`bwrap_probe()`, run once per process: what `choose` and `learn grade` go by."""
    return bwrap_probe()


def bwrap_works() -> str | None:
    """Path of a bwrap that can actually build our sandbox here, or None (probed once)."""
    path, why_not = bwrap_status()
    return path if why_not is None else None


bwrap_works.cache_clear = bwrap_status.cache_clear  # tests and `learn doctor` probe afresh


def bwrap_probe() -> tuple[str | None, str | None]:
    """Can bwrap build our sandbox here? Run afresh: (bwrap's path, or None when it is not
    installed; None when it builds our sandbox here, else why not - bwrap's own last stderr line)."""
    path = shutil.which("bwrap")
    if not path:
        return None, "bwrap is not installed (not found on PATH)"
    probe = Bubblewrap(path).command([sys.executable, "-I", "-c", "pass"], Path("/tmp"))
    try:
        done = subprocess.run(probe, capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return path, f"{path} did not finish building a test sandbox within 20s"
    except OSError as exc:
        return path, f"{path} could not be run: {exc.strerror or exc}"
    if done.returncode == 0:
        return path, None
    lines = [line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
    return path, lines[-1] if lines else f"{path} exited with status {done.returncode}"


_warned = False


def choose(preference: str | None = None) -> Sandbox:
    """The strongest sandbox that works here. LEARN_SANDBOX=rlimit|bwrap forces one."""
    global _warned
    wanted = (preference or os.environ.get("LEARN_SANDBOX") or "auto").lower()
    if wanted in ("auto", "bwrap"):
        path = bwrap_works()
        if path:
            return Bubblewrap(path)
        box = RlimitOnly()
        if not _warned:
            as_root = (
                " and AS ROOT (the Python installation is not readable by an unprivileged user)"
                if _is_root() and not box.drops_privileges
                else ""
            )
            path, why_not = bwrap_status()
            reason = f"bubblewrap is installed but refused ({why_not})" if path else "bubblewrap is not installed"
            print(
                f"learn: {reason}; learner code runs with resource limits only{as_root} "
                "(no filesystem or network isolation). `learn doctor` says how to fix it.",
                file=sys.stderr,
            )
            _warned = True
        return box
    return RlimitOnly()
