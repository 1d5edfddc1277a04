"""`learn doctor`: can this machine grade? One check after another, each with its verdict and fix.

Every check gives a `Finding`: a verdict - ok, warn (grading works, but less well than it could)
or problem (something will not be graded, or not recorded) - what was found, and for a warning or
a problem the concrete fix. A check that was not run (`--quick`, or nothing to run it on) is
`skip`. The checks, in the order they are reported:

    python, torch, ...   the versions of the libraries grading depends on (no import of torch)
    sandbox              bubblewrap working, missing, or installed but refused (and bwrap's reason)
    kernel user          whether kernels would run as root
    progress, cache      where they live, and whether a file can really be written there
    disk                 free space of those folders and of the temporary folders (warn < 1 GiB)
    cuda                 whether torch sees a GPU in this process
    kernel, local import a real kernel starts in the sandbox and imports a file next to its notebook
    cuda (kernel)        whether that sandboxed kernel sees the GPU too
    pack ID              each lesson pack's reference solutions, graded like a learner's notebook

`run()` runs them all (`quick=True` skips the kernel and pack checks) and hands each finding to a
callback as soon as it is known; nothing here prints. The doctor leaves nothing behind: a folder
that does not exist yet is tested through its nearest existing parent, and not created.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from . import sandbox as sandbox_mod
from .errors import ExecutionError
from .fingerprint import installed_version

__all__ = ["Finding", "Report", "run", "format_finding", "OK", "WARN", "PROBLEM", "SKIP"]

OK, WARN, PROBLEM, SKIP = "ok", "warn", "problem", "skip"
LOW_DISK_BYTES = 1 << 30
HELPER_MODULE = "learn_doctor_helper"
HELPER_VALUE = 42

# (shown name, distribution, needed for what, when it is missing)
LIBRARIES = (
    ("torch", "torch", "every lesson", PROBLEM),
    ("fastai", "fastai", "the finetune lesson", PROBLEM),
    ("IPython", "ipython", "every kernel", PROBLEM),
    ("ipykernel", "ipykernel", "every kernel", PROBLEM),
    ("nbclient", "nbclient", "running notebooks", PROBLEM),
)


@dataclass
class Finding:
    check: str
    verdict: str  # ok | warn | problem | skip
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Report:
    findings: list[Finding]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == WARN]

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def summary(self) -> str:
        warned = f"{len(self.warnings)} warning{'s' * (len(self.warnings) != 1)}"
        if self.problems:
            n = len(self.problems)
            return f"{n} problem{'s' * (n != 1)}, {warned}: apply the fixes above, then run `learn doctor` again"
        skipped = sum(1 for f in self.findings if f.verdict == SKIP)
        if skipped:
            return f"no problems found ({warned}; {skipped} check{'s' * (skipped != 1)} skipped)"
        return f"no problems ({warned})" if self.warnings else "no problems: this machine is ready to grade"

    def to_dict(self) -> dict:
        return {"ok": not self.problems, "problems": len(self.problems), "warnings": len(self.warnings),
                "findings": [f.to_dict() for f in self.findings]}  # fmt: skip


def format_finding(finding: Finding, style: Callable[[str, str], str] = lambda text, verdict: text) -> list[str]:
    """The finding as terminal lines: verdict, check, detail; then the fix, indented. `style`
    may colour the verdict word (the CLI passes click.style)."""
    lines = [f"{style(f'{finding.verdict:<8}', finding.verdict)} {finding.check:<15} {finding.detail}"]
    if finding.fix:
        lines.append(f"{'':8} {'':15} fix: {finding.fix}")
    return lines


# ---------------------------------------------------------------------------------------------
# versions


def versions() -> list[Finding]:
    out = [Finding("python", OK, f"{platform.python_version()} ({sys.executable})")]
    for shown, dist, needed_by, missing in LIBRARIES:
        version = installed_version(dist)
        if version:
            out.append(Finding(shown, OK, version))
        else:
            out.append(Finding(shown, missing, f"not installed in this Python ({needed_by} needs it)",
                               f"`{Path(sys.executable).name} -m pip install {dist}` (or reinstall learn-grader, which depends on it)"))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# sandbox


def _read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def _in_container() -> bool:
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


def userns_fix() -> str:
    """How to let bubblewrap create its user namespace here, as specific as this machine allows."""
    fixes = []
    if _read_sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        fixes.append("AppArmor restricts unprivileged user namespaces here (Ubuntu 23.10 and later, e.g. 24.04): either "
                     "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (to keep it, add that line without "
                     "`sudo sysctl -w` to /etc/sysctl.d/60-userns.conf), or give bwrap an AppArmor profile that allows `userns,` "
                     "(a file /etc/apparmor.d/bwrap with `profile bwrap /usr/bin/bwrap flags=(unconfined) { userns, }`, then "
                     "`sudo apparmor_parser -r /etc/apparmor.d/bwrap`)")  # fmt: skip
    if _read_sysctl("kernel.unprivileged_userns_clone") == "0":
        fixes.append("unprivileged user namespaces are switched off: `sudo sysctl -w kernel.unprivileged_userns_clone=1`")
    if _read_sysctl("user.max_user_namespaces") == "0":
        fixes.append("user namespaces are limited to 0: `sudo sysctl -w user.max_user_namespaces=15000`")
    if not fixes:  # nothing specific found in /proc/sys
        fixes.append("bubblewrap needs unprivileged user namespaces: on Ubuntu 24.04 allow them with "
                     "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for bwrap; "
                     "elsewhere check `sysctl user.max_user_namespaces` (must not be 0)")  # fmt: skip
    if _in_container():
        fixes.append("this runs in a container, whose seccomp/AppArmor profile may forbid namespaces: start it with "
                     "`--security-opt seccomp=unconfined --security-opt apparmor=unconfined` (Docker/Podman), or grade outside it")  # fmt: skip
    return "; ".join(fixes)


def _unreadable_python_paths() -> list[str]:
    return [p for p in sandbox_mod._python_paths() if not sandbox_mod._others_can_enter(Path(p), ancestors=True)]


def sandbox_findings() -> tuple[list[Finding], sandbox_mod.Sandbox]:
    """The sandbox kernels get here, why, and whether they run as root; and that sandbox itself
    (built the way `sandbox.choose` builds it, without its one-time warning)."""
    wanted = (os.environ.get("LEARN_SANDBOX") or "auto").lower()
    path, reason = sandbox_mod.bwrap_probe()
    isolation = "no network, read-only system, only its own folder writable"
    if wanted in ("auto", "bwrap") and path and reason is None:
        box: sandbox_mod.Sandbox = sandbox_mod.Bubblewrap(path)
        found = Finding("sandbox", OK, f"bubblewrap ({path}): {isolation}")
    else:
        box = sandbox_mod.RlimitOnly()
        limits = "rlimit only: learner code runs with resource limits but no filesystem or network isolation"
        if wanted not in ("auto", "bwrap"):
            works = "bubblewrap works here" if path and reason is None else f"bubblewrap would not work either ({reason})"
            found = Finding("sandbox", WARN, f"{limits}, because LEARN_SANDBOX={os.environ.get('LEARN_SANDBOX')} ({works})",
                            "unset LEARN_SANDBOX (or set it to auto) to sandbox kernels with bubblewrap")  # fmt: skip
        elif path is None:
            found = Finding("sandbox", WARN, f"{limits}: bubblewrap is not installed",
                            "install the `bubblewrap` package (`sudo apt-get install bubblewrap`, `sudo dnf install bubblewrap`, "
                            "`sudo pacman -S bubblewrap`); there is none for macOS or Windows (use Linux or WSL2 to grade others' notebooks)")  # fmt: skip
        else:
            found = Finding(
                "sandbox", WARN, f"{limits}: bubblewrap ({path}) is installed but refused to build the sandbox: {reason}", userns_fix()
            )
    out = [found]
    euid = os.geteuid() if hasattr(os, "geteuid") else None  # None: Windows, where there is no root
    if euid != 0:
        out.append(Finding("kernel user", OK, "kernels run as you, not as root" + (f" (uid {euid})" if euid is not None else "")))
    elif box.drops_privileges:
        out.append(Finding("kernel user", OK, "learn runs as root; each kernel drops to its own unprivileged uid"))
    else:
        blocked = ", ".join(_unreadable_python_paths()) or sys.prefix
        out.append(Finding("kernel user", WARN, f"kernels would run AS ROOT: learn runs as root and an unprivileged user cannot read the Python installation ({blocked})",
                           "run learn as a regular user, or install Python (or the virtualenv) where every user can read it, e.g. under /opt "
                           "(not under a 0700 /root), or open its folders with `chmod o+rx`"))  # fmt: skip
    return out, box


# ---------------------------------------------------------------------------------------------
# folders and disk


def learn_folders() -> list[tuple[str, Path, str]]:
    """(name, folder, the environment variable that moves it) for what learn writes."""
    from .cache import cache_dir
    from .progress import db_path

    return [("progress", db_path().parent, "LEARN_HOME"), ("cache", cache_dir(), "LEARN_CACHE_DIR")]


def _existing(folder: Path) -> Path:
    """The folder, or its nearest parent that exists (which may be a file)."""
    target = folder
    while not (target.exists() or target.is_symlink()) and target != target.parent:
        target = target.parent
    return target


def write_problem(folder: Path) -> str | None:
    """Why a file cannot be created in `folder` (tried for real, then removed), or None."""
    target = _existing(folder)
    if not target.is_dir():
        return f"{target} is a file, not a folder" if target.is_file() else f"{target} is not a folder"
    try:
        fd, name = tempfile.mkstemp(prefix=".learn-doctor-", dir=target)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return f"cannot create a file in {target}: {exc.strerror or exc}"
    return None


def folder_findings() -> list[Finding]:
    out = []
    for name, folder, variable in learn_folders():
        problem = write_problem(folder)
        where = f"{folder}" + (f" (from {variable})" if os.environ.get(variable) else "")
        if problem is None:
            created = "" if folder.is_dir() else f"; not created yet, {_existing(folder)} is writable"
            out.append(Finding(name, OK, f"{where}: writable{created}"))
        elif os.environ.get(variable):
            out.append(Finding(name, PROBLEM, f"{where}: {problem}", f"set {variable} to a folder you can write to, or unset it"))
        else:
            target = _existing(folder)
            out.append(Finding(name, PROBLEM, f"{where}: {problem}",
                               f"make {target} yours (`sudo chown -R $USER {target}`), or set {variable} to a folder you can write to"))  # fmt: skip
    return out


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def disk_findings() -> list[Finding]:
    """Free space where learn writes, one line per file system (warn under 1 GiB)."""
    places = [(name, folder) for name, folder, _ in learn_folders()]
    places.append(("temp", Path(tempfile.gettempdir())))
    if os.path.isdir("/tmp") and Path(tempfile.gettempdir()).resolve() != Path("/tmp"):
        places.append(("kernels", Path("/tmp")))  # kernel slots are always made under /tmp
    groups: dict[object, list[tuple[str, Path]]] = {}
    for name, folder in places:
        anchor = _existing(folder)
        try:
            device: object = anchor.stat().st_dev
        except OSError:
            device = str(anchor)
        groups.setdefault(device, []).append((name, folder))
    out = []
    for members in groups.values():
        names = ", ".join(f"{folder} ({name})" for name, folder in members)
        try:
            free = shutil.disk_usage(_existing(members[0][1])).free
        except OSError as exc:
            out.append(
                Finding(
                    "disk", WARN, f"cannot tell the free space of {names}: {exc.strerror or exc}", "check that the folder's disk is mounted"
                )
            )
            continue
        if free < LOW_DISK_BYTES:
            movable = {"progress": "LEARN_HOME", "cache": "LEARN_CACHE_DIR", "temp": "TMPDIR"}
            moves = [f"{movable[name]} ({name})" for name, _ in members if name in movable]
            move = f", or move learn's folders to a bigger disk: {', '.join(moves)}" if moves else ""
            out.append(Finding("disk", WARN, f"only {_gib(free)} free for {names} (under {_gib(LOW_DISK_BYTES)})",
                               f"free some space on that disk (a fine-tuning run and its kernels need several hundred MB){move}"))  # fmt: skip
        else:
            out.append(Finding("disk", OK, f"{_gib(free)} free for {names}"))
    return out


# ---------------------------------------------------------------------------------------------
# CUDA in this process


def _gpu_hardware() -> list[str]:
    devices = sandbox_mod._gpu_devices()
    if not devices and shutil.which("nvidia-smi"):
        devices = ["nvidia-smi"]
    return devices


def cuda_here() -> tuple[Finding, bool]:
    """(the finding, whether torch sees a GPU in this process)."""
    try:
        import torch
    except Exception as exc:  # a broken install: the versions above say which
        return Finding("cuda", PROBLEM, f"torch cannot be imported: {type(exc).__name__}: {exc}",
                       f"reinstall torch: `{Path(sys.executable).name} -m pip install --force-reinstall torch`"), False  # fmt: skip
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return Finding(
            "cuda", OK, f"{count} GPU{'s' * (count != 1)} ({torch.cuda.get_device_name(0)}; torch built for CUDA {torch.version.cuda})"
        ), True
    hardware = _gpu_hardware()
    if not hardware:
        return Finding("cuda", OK, "no GPU (CPU only)"), False
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return Finding("cuda", WARN, f"a GPU is present ({hardware[0]}) but CUDA_VISIBLE_DEVICES={visible!r} hides it",
                       "unset CUDA_VISIBLE_DEVICES (or list the GPUs to use)"), False  # fmt: skip
    if not torch.version.cuda:
        return Finding("cuda", WARN, f"a GPU is present ({hardware[0]}) but torch {torch.__version__} is a CPU-only build",
                       "install a CUDA build of torch (see https://pytorch.org/get-started/locally/)"), False  # fmt: skip
    try:
        torch.cuda.init()
        why = "torch.cuda.is_available() is False"
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return Finding("cuda", WARN, f"a GPU is present ({hardware[0]}) but torch (CUDA {torch.version.cuda}) cannot use it: {why}",
                   f"check the NVIDIA driver with `nvidia-smi`: it must support CUDA {torch.version.cuda}, else install a torch built for an older CUDA"), False  # fmt: skip


# ---------------------------------------------------------------------------------------------
# a real kernel


def _probe(pid: str, body: str, requires: tuple[str, ...] = ()) -> dict:
    from . import wire

    source = "def probe(ns):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    return {"id": pid, "source": source, "entry": "probe", "args": wire.encode(()), "kwargs": wire.encode({}),
            "timeout": 60, "requires": list(requires)}  # fmt: skip


KERNEL_PROBE = """import os, sys
return {"uid": getattr(os, "geteuid", lambda: None)(), "sandbox": os.environ.get("LEARN_SANDBOX", ""), "python": sys.version.split()[0]}"""

CUDA_PROBE = """try:
    import torch
    available = bool(torch.cuda.is_available())
    return {"available": available, "count": torch.cuda.device_count() if available else 0,
            "name": torch.cuda.get_device_name(0) if available else "", "error": ""}
except Exception as exc:
    return {"available": False, "count": 0, "name": "", "error": type(exc).__name__ + ": " + str(exc)}"""


async def probe_kernel(box: sandbox_mod.Sandbox):
    """Run a two-line notebook that imports a module staged next to it, and three probes, in a
    real kernel of a one-slot pool in `box`: the `JobOutcome` (raises ExecutionError if no kernel starts)."""
    import nbformat

    from .execute import KernelJob, run_job
    from .kernels import KernelPool

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"import {HELPER_MODULE}\nvalue = {HELPER_MODULE}.ANSWER")])
    with tempfile.TemporaryDirectory(prefix="learn-doctor-") as tmp:
        helper = Path(tmp) / f"{HELPER_MODULE}.py"
        helper.write_text(f"ANSWER = {HELPER_VALUE}\n")
        probes = [_probe("kernel", KERNEL_PROBE), _probe("import", "return ns['value']", requires=("value",)), _probe("cuda", CUDA_PROBE)]
        job = KernelJob(
            notebook, name="learn-doctor.ipynb", files={helper.name: helper}, probes=probes, cell_timeout=60, notebook_timeout=120
        )
        async with KernelPool(1, box=box) as pool:
            return await run_job(pool, job)


def _probe_value(outcome, pid: str):
    """(value, None) of a probe that answered, else (None, why not)."""
    from . import wire

    result = outcome.probes.get(pid)
    if result is None:
        return None, "no answer"
    if result.get("status") != "ok":
        what = f"{result.get('ename', '')}: {result.get('evalue', '')}".strip(": ")
        return None, f"{result.get('status')}" + (f" ({what})" if what else "")
    try:
        return wire.decode(result["value"]), None
    except Exception as exc:
        return None, f"unreadable answer: {exc}"


def kernel_findings(outcome, box: sandbox_mod.Sandbox, cuda_in_process: bool, seconds: float) -> list[Finding]:
    """What the doctor's kernel run says: that it started, imported its neighbour, saw a GPU."""
    info, why = _probe_value(outcome, "kernel")
    retry = " Try `LEARN_SANDBOX=rlimit learn doctor`: if that works, bubblewrap is at fault." if box.mode == "bwrap" else ""
    if info is None:
        started = Finding("kernel", PROBLEM, f"a kernel started ({box.mode} sandbox) but did not answer: {why}",
                          "report it with this output (LEARN_DEBUG=1 shows more)." + retry)  # fmt: skip
    else:
        user = "as root" if info.get("uid") == 0 else f"as uid {info.get('uid')}"
        started = Finding(
            "kernel", OK, f"a kernel starts and runs a notebook ({info.get('sandbox') or box.mode} sandbox, {user}, {seconds:.1f}s)"
        )
    cell = outcome.cells[0] if outcome.cells else None
    value, why = _probe_value(outcome, "import")
    if cell is not None and cell.status == "ok" and value == HELPER_VALUE:
        imported = Finding("local import", OK, "a notebook imports a module saved next to it")
    else:
        if cell is not None and cell.status != "ok":
            why = f"{cell.status}: {cell.ename}: {cell.evalue}".strip(": ")
        imported = Finding("local import", PROBLEM, f"a notebook cannot import a module saved next to it ({why})",
                           "learn puts each kernel's working folder on sys.path; update learn-grader, and report it with this output if that does not help")  # fmt: skip
    cuda, why = _probe_value(outcome, "cuda")
    if cuda is None:
        gpu = Finding("cuda (kernel)", WARN, f"the CUDA probe did not answer: {why}", "report it with this output")
    elif cuda.get("available"):
        gpu = Finding("cuda (kernel)", OK, f"kernels see {cuda.get('count')} GPU{'s' * (cuda.get('count') != 1)} ({cuda.get('name')})")
    elif not cuda_in_process:
        detail = "no GPU (CPU only)" if not _gpu_hardware() else "kernels do not see the GPU either (see cuda above)"
        gpu = Finding("cuda (kernel)", OK, detail + (f"; {cuda['error']}" if cuda.get("error") else ""))
    else:
        hints = ["the sandbox passes /dev/nvidia* and CUDA_VISIBLE_DEVICES on"]
        if not os.path.exists("/dev/nvidia-uvm"):
            hints.append("/dev/nvidia-uvm does not exist yet: run `sudo nvidia-modprobe -u -c=0` (or any CUDA program once) before grading")
        if box.mode == "bwrap":
            hints.append("compare with `LEARN_SANDBOX=rlimit learn doctor`")
        gpu = Finding("cuda (kernel)", WARN, "torch sees a GPU here but a sandboxed kernel does not"
                      + (f" ({cuda['error']})" if cuda.get("error") else "") + ": GPU-only checks are skipped", "; ".join(hints))  # fmt: skip
    return [started, imported, gpu]


# ---------------------------------------------------------------------------------------------
# the lesson packs' reference solutions


def _lessons() -> dict:
    from .lessons import all_lessons

    return all_lessons()


async def grade_references(box: sandbox_mod.Sandbox, lessons: dict):
    """Yield (lesson, results of its solution notebooks) pack by pack, in order; all are graded
    concurrently on one pool, without the reference cache, as `learn check` would grade them."""
    from .grading import Grader
    from .kernels import KernelPool

    async with KernelPool(max(1, min(2, os.cpu_count() or 1)), box=box) as pool:
        async with Grader(pool=pool, use_reference_cache=False, lessons=lessons) as grader:
            tasks = [(lesson, [asyncio.ensure_future(grader.grade(lesson.solution_path(nb), lesson_id=lesson.id, notebook=nb.file))
                               for nb in lesson.notebooks]) for lesson in lessons.values()]  # fmt: skip
            for lesson, futures in tasks:
                yield lesson, list(await asyncio.gather(*futures))


def pack_finding(lesson, results: list) -> Finding:
    """Every reference solution of a pack must pass: points/max, and what failed."""
    from .results import Status

    points = round(sum(r.points for r in results), 2)
    # what was at stake: a skipped check (GPU only) counts for nothing, a notebook not graded for all of its checks
    possible = round(sum(r.max_points if r.status is not Status.ERROR else sum(c.points for c in lesson.checks_for(nb))
                         for r, nb in zip(results, lesson.notebooks)), 2)  # fmt: skip
    name = f"pack {lesson.id}"
    bad = [r for r in results if r.status is not Status.PASSED]
    if not bad:
        skipped = [c.name for r in results for c in r.checks if c.status is Status.SKIPPED]
        note = f"; skipped: {', '.join(skipped)}" if skipped else ""
        return Finding(
            name, OK, f"reference solutions pass: {points:g}/{possible:g} points ({len(results)} notebook{'s' * (len(results) != 1)}{note})"
        )
    what = []
    for r in bad:
        if r.status is Status.ERROR:
            what.append(f"{Path(r.path).name}: {r.error or r.error_kind or 'error'}")
        else:
            failing = [f"{c.name} ({c.status})" for c in r.checks if c.status not in (Status.PASSED, Status.SKIPPED)]
            what.append(f"{Path(r.path).name}: {', '.join(failing)}")
    paths = " ".join(str(lesson.solution_path(nb)) for nb in lesson.notebooks)
    seed = next((r.seed for r in results if r.seed is not None), None)
    again = f"`learn check {paths} --no-cache -v" + (f" --seed {seed}" if seed is not None else "") + "` shows the details"
    if any(r.error_kind == "execution" for r in bad):
        fix = f"the kernels failed (see the kernel line above); {again}"
    else:
        fix = (f"{again}; if the pack ({lesson.root}) was changed, restore it (a bundled pack: reinstall learn-grader or "
               f"`git checkout solutions/`; an installed one: `learn fetch {lesson.id} --from SOURCE`), else the library versions above may be the cause")  # fmt: skip
    return Finding(name, PROBLEM, f"reference solutions get {points:g}/{possible:g} points; " + "; ".join(what), fix)


# ---------------------------------------------------------------------------------------------
# all together


async def _machinery(box: sandbox_mod.Sandbox, cuda_in_process: bool, lessons: dict | None, add: Callable[[Finding], None]) -> None:
    started = time.monotonic()
    try:
        outcome = await probe_kernel(box)
    except Exception as exc:  # ExecutionError above all; anything else is reported the same way
        what = str(exc) if isinstance(exc, ExecutionError) else f"{type(exc).__name__}: {exc}"
        retry = "; `LEARN_SANDBOX=rlimit learn doctor` tells whether bubblewrap is at fault" if box.mode == "bwrap" else ""
        add(Finding("kernel", PROBLEM, f"no kernel could start ({box.mode} sandbox): {what}",
                    f"check that ipykernel, IPython and pyzmq import in {sys.executable}{retry}; LEARN_DEBUG=1 learn doctor shows more"))  # fmt: skip
        for check in ("local import", "cuda (kernel)"):
            add(Finding(check, SKIP, "not checked: no kernel starts"))
        for lesson_id in lessons or {}:
            add(Finding(f"pack {lesson_id}", SKIP, "not graded: no kernel starts"))
        return
    for finding in kernel_findings(outcome, box, cuda_in_process, time.monotonic() - started):
        add(finding)
    if not lessons:
        return
    pending = list(lessons)
    try:
        async for lesson, results in grade_references(box, lessons):
            pending.remove(lesson.id)
            add(pack_finding(lesson, results))
    except Exception as exc:
        for lesson_id in pending:
            add(
                Finding(
                    f"pack {lesson_id}",
                    PROBLEM,
                    f"could not be graded: {type(exc).__name__}: {exc}",
                    "see the kernel line above; LEARN_DEBUG=1 learn doctor shows more",
                )
            )


def run(quick: bool = False, on_finding: Callable[[Finding], None] | None = None) -> Report:
    """Run every check (`quick`: not the kernel and pack ones); `on_finding` gets each result as soon as it is known."""
    findings: list[Finding] = []

    def add(finding: Finding) -> None:
        findings.append(finding)
        if on_finding is not None:
            on_finding(finding)

    for finding in versions():
        add(finding)
    found, box = sandbox_findings()
    for finding in found:
        add(finding)
    for finding in folder_findings() + disk_findings():
        add(finding)
    cuda, cuda_in_process = cuda_here()
    add(cuda)
    try:
        lessons = _lessons()
    except Exception as exc:  # LessonPackError: a malformed pack stops every lesson from loading
        from .lessons import installed_packs_dir

        add(Finding("packs", PROBLEM, f"the lesson packs do not load: {exc}",
                    f"repair or remove that pack (packs installed with `learn fetch --from` are in {installed_packs_dir()})"))  # fmt: skip
        lessons = {}
    if quick:
        for check in ("kernel", "local import", "cuda (kernel)"):
            add(Finding(check, SKIP, "not checked (--quick)"))
        if lessons:
            add(Finding("packs", SKIP, f"reference solutions of {', '.join(lessons)} not graded (--quick)"))
    else:
        asyncio.run(_machinery(box, cuda_in_process, lessons, add))
    return Report(findings)
