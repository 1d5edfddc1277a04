"""Kernels for learner code: a pool of slots, each starting one fresh kernel process per job.

Two backends start those kernels (`choose_backend`; LEARN_KERNEL_BACKEND=fork|spawn|auto):

  fork   KernelPool ── ZygoteSlot ── Zygote (process, maybe inside bubblewrap) ──fork──► kernel (one per job)
  spawn  KernelPool ── SpawnSlot ──launch──► [bubblewrap ──►] python -I zygote.py --exec REQ.json ══ kernel (one per job)
                         │
                         └── each slot: its own directory, work/ (the kernel's cwd, wiped after each job) and ipc/

"fork" (the default on Linux and other POSIX systems with fork): a warm zygote that has imported
torch forks each kernel in milliseconds. "spawn" (the default on Windows and macOS, where there is
no fork or forking after torch is unsafe): every kernel is a new interpreter, started through
jupyter_client's LocalProvisioner machinery, that preloads the same profile and then becomes a
kernel exactly as a forked child does (`zygote.become_kernel`: same environment, cwd, sys.path,
uid drop and rlimits, from the one place) - seconds instead of milliseconds per kernel.

nbclient drives each kernel through the normal jupyter_client API: `ZygoteProvisioner` stands
in for the local provisioner, so starting, interrupting and killing a kernel go through the
zygote instead of Popen; `SpawnProvisioner` is the local provisioner with our own command line.
Kernels talk over ZMQ's IPC transport (Unix sockets in the slot's ipc/ directory), never TCP -
except on Windows (no Unix sockets for ZMQ), where the spawn backend uses TCP on 127.0.0.1.

A slot runs one job at a time, and after each job every process the job left behind is killed
and the work directory emptied, so nothing of one submission is visible to the next. Fork: the
zygote is a subreaper and kills all its descendants. Spawn: the kernel's process tree (the kernel
is a subreaper on Linux) - with bubblewrap the sandbox's whole PID namespace - and, when kernels
run as a slot uid of their own, every process of that uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.launcher import launch_kernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from . import sandbox as sandbox_mod
from .errors import ExecutionError
from .paths import log_tail

ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
_job_ids = itertools.count(1)
BACKENDS = ("fork", "spawn")
BACKEND_ENV = "LEARN_KERNEL_BACKEND"


def default_backend() -> str:
    """ "spawn" on Windows and macOS (no fork; forking after torch is unsafe there) or without
    os.fork, else "fork"."""
    if sys.platform in ("win32", "darwin") or not hasattr(os, "fork"):
        return "spawn"
    return "fork"


def choose_backend(preference: str | None = None) -> str:
    """The kernel backend: `preference`, else $LEARN_KERNEL_BACKEND, else "auto" (`default_backend`)."""
    wanted = (preference or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if wanted == "auto":
        return default_backend()
    if wanted not in BACKENDS:
        raise ExecutionError(f"{BACKEND_ENV} must be fork, spawn or auto, not {wanted!r}")
    if wanted == "fork" and not hasattr(os, "fork"):
        raise ExecutionError("the fork kernel backend needs os.fork, which this system does not have; use spawn")
    return wanted


@dataclass
class Limits:
    """Resource limits for one kernel. `memory_bytes` is address space on top of the zygote's."""

    memory_bytes: int | None = 4 * 2**30
    cpu_seconds: int | None = 600
    file_size_bytes: int | None = 256 * 2**20
    processes: int | None = 256
    open_files: int | None = 1024

    def as_request(self) -> dict:
        return {
            "as_bytes": self.memory_bytes,
            "cpu_s": self.cpu_seconds,
            "fsize_bytes": self.file_size_bytes,
            "nproc": self.processes,
            "nofile": self.open_files,
            "core": 0,
        }


class Zygote:
    """Client for one zygote process (see `grader/zygote.py` for the protocol)."""

    def __init__(self, slot_dir: Path, profile: str, box: sandbox_mod.Sandbox):
        self.slot_dir, self.profile, self.box = slot_dir, profile, box
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future | None = None
        self._spawned: dict[str, asyncio.Future] = {}
        self._exited: dict[str, asyncio.Future] = {}
        self._extras: dict[str, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self.import_s: float | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        argv = [sys.executable, "-I", str(ZYGOTE_SCRIPT), "--profile", self.profile]
        if self.box.mode == "bwrap":
            argv.append("--clean-shm")  # /dev/shm is private to this sandbox: empty it between jobs
        argv = self.box.command(argv, self.slot_dir, ro_files=(ZYGOTE_SCRIPT.parent,))
        log = open(open_new(self.slot_dir / "zygote.log", append=True), "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=self.box.zygote_env(),
                start_new_session=True,
                limit=2**20,
            )
        except OSError as exc:
            raise ExecutionError(f"could not start the kernel server ({argv[0]}): {exc}") from exc
        finally:
            log.close()
        self._reader = asyncio.ensure_future(self._read_events())

    async def wait_ready(self, timeout: float = 180) -> None:
        assert self.ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), timeout)
        except TimeoutError:
            raise ExecutionError(f"kernel server did not start within {timeout:.0f}s; see {self.slot_dir / 'zygote.log'}") from None

    async def _read_events(self) -> None:
        assert self.proc and self.proc.stdout
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind, job = event.get("event"), event.get("job")
            if kind == "ready" and self.ready and not self.ready.done():
                self.import_s = event.get("import_s")
                self.ready.set_result(event)
            elif kind == "spawned" and job in self._spawned:
                _resolve(self._spawned.pop(job), event["pid"])
            elif kind == "exited" and job in self._exited:
                _resolve(self._exited[job], event["status"])
            elif kind == "extras" and job in self._extras:
                _resolve(self._extras.pop(job), True)
            elif kind == "error" and job in self._spawned:
                self._spawned.pop(job).set_exception(ExecutionError(event.get("message", "spawn failed")))
        # the zygote is gone: every kernel it had is gone too
        tail = log_tail(self.slot_dir / "zygote.log")
        err = ExecutionError(f"kernel server exited unexpectedly{': ' + tail if tail else ''}")
        for fut in [self.ready, *self._spawned.values(), *self._extras.values()]:
            if fut is not None and not fut.done():
                fut.set_exception(err)
                # whoever awaits it gets the error; a pool closed before anyone asked is not news
                fut.add_done_callback(lambda f: f.exception())
        for fut in self._exited.values():
            _resolve(fut, -signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not (self._reader and self._reader.done())

    async def _send(self, request: dict) -> None:
        if not self.alive:
            raise ExecutionError("kernel server is not running")
        assert self.proc and self.proc.stdin
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        await self.proc.stdin.drain()

    async def spawn(self, job: str, request: dict) -> int:
        await self.wait_ready()
        loop = asyncio.get_running_loop()
        self._spawned[job] = loop.create_future()
        self._exited[job] = loop.create_future()
        await self._send({"op": "spawn", "job": job, **request})
        return await asyncio.wait_for(self._spawned[job], 30)

    async def import_extras(self, timeout: float = 300) -> None:
        """Have the zygote import `zygote.EXTRA_MODULES`, for the kernels it forks from now on."""
        await self.wait_ready()
        job = f"x{next(_job_ids)}"
        self._extras[job] = asyncio.get_running_loop().create_future()
        await self._send({"op": "extras", "job": job})
        await asyncio.wait_for(self._extras[job], timeout)

    def exit_status(self, job: str) -> int | None:
        fut = self._exited.get(job)
        return fut.result() if fut is not None and fut.done() else None

    async def wait_exit(self, job: str, timeout: float | None = None) -> int | None:
        fut = self._exited.get(job)
        if fut is None:
            return None
        with contextlib.suppress(asyncio.TimeoutError):
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        return None

    async def signal(self, job: str, sig: int) -> None:
        with contextlib.suppress(ExecutionError, ConnectionError):
            await self._send({"op": "signal", "job": job, "sig": int(sig)})

    async def kill_all(self) -> None:
        """SIGKILL the kernel and everything it started (the zygote is a subreaper)."""
        with contextlib.suppress(ExecutionError, ConnectionError):
            await self._send({"op": "kill"})
        for job, fut in list(self._exited.items()):
            if not fut.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), 5)
            self._exited.pop(job, None)

    async def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        if self._reader:
            await asyncio.gather(self._reader, return_exceptions=True)


def _resolve(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


@functools.cache
def _context_for_loop(loop_id: int) -> zmq.asyncio.Context:
    ctx = zmq.asyncio.Context()
    ctx.setsockopt(zmq.RECONNECT_IVL, 10)  # default 100 ms: a lost first connect would cost that much
    ctx.setsockopt(zmq.LINGER, 0)
    return ctx


def zmq_context() -> zmq.asyncio.Context:
    """One ZMQ context (one I/O thread) for all kernel connections of this event loop."""
    return _context_for_loop(id(asyncio.get_running_loop()))


class ZygoteProvisioner(LocalProvisioner):
    """jupyter_client provisioner that asks a zygote for a forked kernel instead of using Popen."""

    zygote: Zygote
    job: str
    spawn_request: dict

    @property
    def has_process(self) -> bool:
        return getattr(self, "pid", None) is not None

    async def launch_kernel(self, cmd: list[str], **kwargs):
        self.zygote.box.hand_over(Path(self.parent.connection_file), self.spawn_request.get("uid"))
        request = dict(self.spawn_request, connection_file=self.parent.connection_file)
        self.pid = await self.zygote.spawn(self.job, request)
        self.pgid = self.pid
        await _until_bound(self.connection_info, lambda: self.zygote.exit_status(self.job) is not None)
        return self.connection_info

    async def poll(self) -> int | None:
        if not self.has_process:
            return 0
        return self.zygote.exit_status(self.job)

    async def wait(self) -> int | None:
        if not self.has_process:
            return 0
        status = await self.zygote.wait_exit(self.job)
        self.pid = None
        return status

    async def wait_exit(self, timeout: float | None = None) -> int | None:
        """The kernel's exit status once it has ended (negative: killed by that signal); None if
        it is still running after `timeout` seconds."""
        return await self.zygote.wait_exit(self.job, timeout)

    def forget(self) -> None:
        """The slot killed the kernel: nothing is left to signal or wait for."""
        self.pid = None

    async def send_signal(self, signum: int) -> None:
        if self.has_process:
            await self.zygote.signal(self.job, signum)

    async def kill(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        pass


class SpawnProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, starting ``python -I zygote.py --exec REQUEST.json``
    (inside the slot's bubblewrap sandbox where there is one) instead of the kernel spec's argv.

    Interrupts go to the kernel's process group; with bubblewrap that is the kernel process inside
    the sandbox (found through /proc: bwrap itself would die of SIGINT and forwards no signals).
    Kill takes the whole process tree: with bubblewrap the sandbox's PID namespace, which ends
    with its init."""

    slot: SpawnSlot
    job: str
    spawn_request: dict
    _status: int | None = None
    _kernel_pid: int | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs):
        slot, box = self.slot, self.slot.box
        uid = self.spawn_request.get("uid")
        box.hand_over(Path(self.parent.connection_file), uid)
        request = dict(self.spawn_request, connection_file=self.parent.connection_file, profile=slot.profile)
        path = slot.ipc / f"{self.job}.request.json"
        fd = open_new(path)  # read before the uid drop
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(request, f)
        argv = [sys.executable, "-I", str(ZYGOTE_SCRIPT), "--exec", str(path)]
        argv = box.command(argv, slot.root, ro_files=(ZYGOTE_SCRIPT.parent,))
        # stderr until the kernel redirects its own there: preload warnings, bwrap's complaints
        log_fd = open_new(slot.work / ".kernel.log", append=True)
        with open(log_fd, "ab") as log:
            try:
                self.process = launch_kernel(argv, stdout=subprocess.DEVNULL, stderr=log, env=box.zygote_env(), cwd=str(slot.root))
            except OSError as exc:
                raise ExecutionError(f"could not start a kernel ({argv[0]}): {exc}") from exc
        self.pid = self.process.pid
        self.pgid = self.pid if hasattr(os, "killpg") else None  # launch_kernel starts a new session
        self.cwd = str(slot.work)
        await _until_bound(self.connection_info, lambda: self.exit_status() is not None, timeout=120)
        return self.connection_info

    def exit_status(self) -> int | None:
        if self.process is None:
            return self._status
        code = self.process.poll()
        if code is not None and self.slot.box.mode == "bwrap" and 128 < code <= 128 + 64:
            code = 128 - code  # bwrap reports a command killed by signal N as 128 + N
        return code

    async def poll(self) -> int | None:
        return self.exit_status() if self.process is not None else 0

    async def wait_exit(self, timeout: float | None = None) -> int | None:
        """The kernel's exit status once it has ended (negative: killed by that signal); None if
        it is still running after `timeout` seconds."""
        if self.process is None:
            return self._status  # never started, or already collected
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            if deadline is not None and time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.005)
        return status

    async def wait(self) -> int | None:
        status = await self.wait_exit()
        self.forget()
        return status

    def forget(self) -> None:
        """The kernel has ended (or was killed): keep its status, drop the process."""
        if self.process is not None:
            self._status = self.exit_status()  # None if it somehow still runs: Popen reaps it later
            self.process = None
        self.pid = None

    def _kernel_process(self) -> int | None:
        """The kernel's pid as this process sees it (inside bubblewrap it is bwrap's grandchild)."""
        if self.slot.box.mode != "bwrap":
            return self.pid
        if self._kernel_pid is None and self.pid is not None:
            wanted = [b"-I", str(ZYGOTE_SCRIPT).encode(), b"--exec"]  # bwrap's own argv ends with these too
            for pid in _descendants(self.pid):
                with contextlib.suppress(OSError):
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if f.read().split(b"\0")[1:4] == wanted:
                            self._kernel_pid = pid
                            break
        return self._kernel_pid

    async def send_signal(self, signum: int) -> None:
        if self.process is None:
            return
        if hasattr(signal, "SIGKILL") and signum == signal.SIGKILL:
            return await self.kill()
        if self.slot.box.mode == "bwrap":
            pid = self._kernel_process()
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signum)  # the kernel leads its own session and group
                    return
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)
            return
        await super().send_signal(signum)

    async def kill(self, restart: bool = False) -> None:
        if self.process is not None:
            _kill_tree(self.process)

    async def terminate(self, restart: bool = False) -> None:
        await self.kill(restart)


_PYTHON_KERNEL_SPEC = KernelSpec(
    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    display_name="Python 3 (learn)",
    language="python",
    interrupt_mode="signal",
)


async def _until_bound(info: dict, ended, timeout: float = 30) -> None:
    """Wait until the kernel has bound its IPC sockets, so our connects succeed at once
    (a connect to a missing socket file is retried by ZMQ only after its reconnect interval,
    and iopub messages published before the subscription lands are lost). Returns early if
    `ended()` says the kernel is gone; TCP (nothing to watch) returns at once."""
    if info.get("transport") != "ipc":
        return
    files = [f"{info['ip']}-{info[k]}" for k in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
    deadline = time.monotonic() + timeout
    pause = 0.003
    while not all(os.path.exists(f) for f in files):
        if ended() or time.monotonic() > deadline:
            return  # the caller's readiness check reports what went wrong
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.02)


def _process_table() -> dict[int, int]:
    """pid -> parent pid of every process we can see that has not ended (zombies left out):
    /proc on Linux, `ps` on other POSIX systems, nothing on Windows."""
    table: dict[int, int] = {}
    if os.path.isdir("/proc"):
        for entry in os.listdir("/proc"):
            if not entry.isdecimal():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] not in ("Z", "X"):
                    table[int(entry)] = int(fields[1])
            except (OSError, ValueError, IndexError):
                continue
        return table
    if os.name == "posix":
        try:
            out = subprocess.run(
                ["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "stat="], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return table
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdecimal() and parts[1].isdecimal() and not parts[2].startswith("Z"):
                table[int(parts[0])] = int(parts[1])
    return table


def _descendants(root: int) -> list[int]:
    """Every live descendant of `root`, parents before their children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _process_table().items():
        children.setdefault(ppid, []).append(pid)
    found, queue = [], list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a kernel process and everything below it. Descendants go first, while the kernel
    (a subreaper on Linux) still collects whatever they orphan; with bubblewrap killing the
    sandbox's init ends its whole PID namespace."""
    if sys.platform == "win32":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, timeout=30)
        with contextlib.suppress(OSError):
            process.kill()
        return
    if process.poll() is None:
        for _ in range(50):
            below = _descendants(process.pid)
            if not below:
                break
            for pid in below:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        process.kill()


async def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` (a slot's own uid): kill(-1) sent by that uid reaches all of
    them, wherever they have re-parented, and nothing else."""
    with contextlib.suppress(OSError):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", "-c", "import os, signal; os.kill(-1, signal.SIGKILL)",
            user=uid, group=uid, extra_groups=[], cwd="/",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()


@dataclass
class Slot:
    """One worker place: a directory and whatever starts its kernels. Runs one job at a time."""

    index: int
    root: Path
    box: sandbox_mod.Sandbox
    profile: str = "torch"
    jobs_run: int = 0
    env: dict = field(default_factory=dict)
    kernels: list = field(default_factory=list)  # this job's provisioners
    spare: asyncio.Task | None = None  # a kernel started ahead for the next job (KernelPool(keep_warm=True))
    make_spare: Callable[[], Awaitable] | None = None  # starts one like the last job's (set by grader.execute)
    backend = ""

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def ipc(self) -> Path:
        return self.root / "ipc"

    def _make_dirs(self) -> None:
        for d in (self.work, self.ipc):
            d.mkdir(parents=True, exist_ok=True)
        self.box.prepare_slot(self.root)

    async def start(self, profile: str) -> None:
        self.profile = profile
        self._make_dirs()

    async def ensure(self, profile: str) -> None:
        self.profile = profile

    def _kernel_manager(self, provisioner_class, transport: str = "ipc") -> tuple[AsyncKernelManager, str]:
        job = f"j{next(_job_ids)}"
        ip = str(self.ipc / job) if transport == "ipc" else "127.0.0.1"
        km = AsyncKernelManager(transport=transport, ip=ip, context=zmq_context())
        km._kernel_spec = _PYTHON_KERNEL_SPEC
        km.connection_file = str(self.ipc / f"{job}.json")
        provisioner = provisioner_class(kernel_id=job, kernel_spec=_PYTHON_KERNEL_SPEC, parent=km)
        provisioner.job = job
        km.provisioner = provisioner
        self.kernels.append(provisioner)
        return km, job

    def kernel_manager(self, spawn_request: dict) -> AsyncKernelManager:
        raise NotImplementedError

    @property
    def uid(self) -> int | None:
        """The unprivileged uid this slot's kernels run as (None: no privilege drop possible)."""
        return self.box.kernel_uid(self.index)

    def prepare_job(self) -> None:
        self.box.prepare_job(self.work, self.ipc, self.uid)

    async def kill_all(self) -> None:
        """SIGKILL this job's kernels and everything they started."""
        raise NotImplementedError

    async def drop_spare(self) -> None:
        """Forget the kernel started ahead (the next `kill_all` ends its process)."""
        task, self.spare = self.spare, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(BaseException):
            client = await task
            client.discard()

    async def reset(self) -> None:
        """Kill whatever the last job left running and empty the work and ipc directories."""
        await self.drop_spare()
        await self.kill_all()
        self.kernels = []
        for d in (self.work, self.ipc):
            _empty_dir(d)
        self.jobs_run += 1

    async def close(self) -> None:
        await self.drop_spare()
        await self.kill_all()


@dataclass
class ZygoteSlot(Slot):
    """A slot whose kernels are forked by its warm zygote (the fork backend)."""

    zygote: Zygote | None = None
    backend = "fork"

    async def start(self, profile: str) -> None:
        self.profile = profile
        self._make_dirs()
        self.zygote = Zygote(self.root, profile, self.box)
        await self.zygote.start()

    async def ensure(self, profile: str) -> Zygote:
        """The slot's zygote, (re)started if it died or was warmed for another profile."""
        if self.zygote is None or not self.zygote.alive or self.profile != profile:
            await self.drop_spare()
            if self.zygote is not None:
                await self.zygote.close()
            await self.start(profile)
        assert self.zygote is not None
        await self.zygote.wait_ready()
        return self.zygote

    def kernel_manager(self, spawn_request: dict) -> AsyncKernelManager:
        """A kernel manager whose kernels come from this slot's zygote over IPC sockets."""
        assert self.zygote is not None
        km, _ = self._kernel_manager(ZygoteProvisioner)
        km.provisioner.zygote, km.provisioner.spawn_request = self.zygote, spawn_request
        return km

    async def kill_all(self) -> None:
        """SIGKILL the kernel and everything it started (the zygote is a subreaper)."""
        if self.zygote is not None and self.zygote.alive:
            await self.zygote.kill_all()
        for provisioner in self.kernels:
            provisioner.forget()

    async def close(self) -> None:
        await self.drop_spare()
        if self.zygote is not None:
            await self.zygote.close()
            self.zygote = None


@dataclass
class SpawnSlot(Slot):
    """A slot that starts a new interpreter for each kernel (the spawn backend): nothing to warm."""

    backend = "spawn"
    _uid_used: bool = False

    def kernel_manager(self, spawn_request: dict) -> AsyncKernelManager:
        """A kernel manager that launches `zygote.py --exec` (in the slot's sandbox) per kernel."""
        km, _ = self._kernel_manager(SpawnProvisioner, "ipc" if os.name == "posix" else "tcp")
        km.provisioner.slot, km.provisioner.spawn_request = self, spawn_request
        self._uid_used = self._uid_used or spawn_request.get("uid") is not None
        return km

    async def kill_all(self) -> None:
        for provisioner in self.kernels:
            await provisioner.kill()
        for provisioner in self.kernels:
            if provisioner.process is not None and await provisioner.wait_exit(timeout=5) is None:
                print(f"learn: kernel {provisioner.pid} of slot {self.index} did not die", file=sys.stderr)
            provisioner.forget()
        if self._uid_used and self.uid is not None and self.box.mode != "bwrap":
            await _kill_uid(self.uid)  # also what re-parented away from the kernel's tree
        self._uid_used = False


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_new(path: Path, append: bool = False) -> int:
    """Open a file the grader writes in a slot, where learner code may have planted a symlink (to
    /etc/passwd, an instructor's ~/.bashrc): a link or other non-file is removed first, and the
    open never follows one (O_NOFOLLOW; O_EXCL when creating), so the write lands in the slot."""
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | (os.O_APPEND if append else os.O_EXCL)
    if os.path.lexists(path) and (not append or not os.path.isfile(path) or os.path.islink(path)):
        os.unlink(path)
    try:
        return os.open(path, flags, 0o600)
    except OSError as exc:
        raise ExecutionError(f"could not write {path.name} in the kernel's slot: {exc.strerror or exc}") from None


def _empty_dir(path: Path) -> None:
    """Empty a slot folder. Learner code may have replaced the folder itself by a symlink (to the
    instructor's home): the link is removed, never followed."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    if not path.exists():
        path.mkdir(parents=True)
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


class KernelPool:
    """N slots; `async with pool.slot(profile) as slot:` lends one for a job.

    `keep_warm` (the grading service's long-lived pools): when a job ends, its slot starts the
    next job's kernel at once - the same request, a fresh process that has run nothing - so the
    next job finds it ready instead of waiting for a fork and IPython's start-up (a job whose
    request differs, e.g. other limits, discards it and starts its own); `import_extras()` then
    has its zygotes import what notebooks commonly import beyond the profile.

    `backend` is "fork" or "spawn" (None: $LEARN_KERNEL_BACKEND, else the platform's default; see
    `choose_backend`). Fork: zygotes start warming when the pool opens, so their imports overlap
    whatever the grader does meanwhile (reading notebooks, importing torch itself). Spawn: there
    is nothing to warm; each kernel pays its own interpreter start and imports.
    """

    def __init__(self, size: int | None = None, profile: str = "torch", box: sandbox_mod.Sandbox | None = None,
                 backend: str | None = None, keep_warm: bool = False):  # fmt: skip
        self.size = max(1, size or os.cpu_count() or 1)
        self.profile = profile
        self.keep_warm = keep_warm
        self.prerun = False  # only trusted, repeated sessions run here (the service's relay pool): see execute.open_session
        self.backend = choose_backend(backend)  # "fork" | "spawn"; None: $LEARN_KERNEL_BACKEND or auto
        self.box = box or sandbox_mod.choose()
        self.root: Path | None = None
        self.slots: list[Slot] = []
        self._free: asyncio.Queue[Slot] | None = None
        self._recycling: set[asyncio.Task] = set()  # keep_warm: slots being reset after their jobs
        self.relay: KernelPool | None = None  # grading's pool for the reference side of relays (grader.cascade)
        self.relay_started: asyncio.Future | None = None

    @property
    def threads_per_kernel(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.size)

    async def __aenter__(self) -> KernelPool:
        # short base path: Unix socket paths are limited to ~107 bytes
        self.root = Path(tempfile.mkdtemp(prefix="learn-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.root.chmod(0o711)  # kernels run as another uid and must reach their slot
        self._free = asyncio.Queue()
        for i in range(self.size):
            slot = (ZygoteSlot if self.backend == "fork" else SpawnSlot)(i, self.root / f"s{i}", self.box)
            self.slots.append(slot)
            self._free.put_nowait(slot)
        await asyncio.gather(*(s.start(self.profile) for s in self.slots))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def start_relay(self) -> None:
        """Start warming `relay`, the one-slot pool grading uses for the reference side of relays
        (grader.cascade), unless it is started already: the grading service keeps it warm, so the
        first wrong answer after a start does not wait for another kernel server."""
        if self.relay is None:
            relay = KernelPool(size=1, box=self.box, backend=self.backend, keep_warm=self.keep_warm)
            relay.prerun = self.keep_warm  # it runs the reference solution only: its next session can run ahead
            self.relay, self.relay_started = relay, asyncio.ensure_future(relay.__aenter__())

    async def import_extras(self) -> None:
        """Have every zygote import what notebooks commonly import beyond the profile
        (`zygote.EXTRA_MODULES`), then replace the kernels started ahead, forked without them.
        The grading service does this once its first check is done, not while it is under way."""
        for slot in list(self.slots):
            if isinstance(slot, ZygoteSlot) and slot.zygote is not None and slot.zygote.alive:
                with contextlib.suppress(ExecutionError, TimeoutError):
                    await slot.zygote.import_extras()
        for _ in self.slots:
            async with self.slot():  # a job that runs nothing: the slot's reset starts a new kernel ahead
                pass

    async def stop_relay(self) -> None:
        """Close the relay pool (its kernel server holds its own torch): the grading service does this
        when idle; the next relay, or `start_relay`, starts a new one."""
        if self.relay is not None:
            relay, self.relay = self.relay, None
            with contextlib.suppress(Exception):
                await asyncio.shield(self.relay_started)
            await relay.close()

    async def close(self) -> None:
        await asyncio.gather(*self._recycling, return_exceptions=True)
        await self.stop_relay()
        await asyncio.gather(*(s.close() for s in self.slots), return_exceptions=True)
        self.slots = []
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    @contextlib.asynccontextmanager
    async def slot(self, profile: str | None = None):
        """Lend a free slot for one job. It is reset (every process of the job killed, its folders
        emptied) before anyone else gets it: on the way out, or - `keep_warm` - right after, while
        the job's results are judged, and then it starts the next job's kernel."""
        assert self._free is not None, "use `async with KernelPool(...)`"
        slot = await self._free.get()
        try:
            await slot.ensure(profile or self.profile)
            yield slot
        finally:
            if self.keep_warm:
                task = asyncio.ensure_future(self._recycle(slot))
                self._recycling.add(task)
                task.add_done_callback(self._recycling.discard)
            else:
                try:
                    await slot.reset()
                finally:
                    self._free.put_nowait(slot)

    async def _recycle(self, slot: Slot) -> None:
        try:
            await slot.reset()
            if slot.make_spare is not None:
                slot.spare = asyncio.ensure_future(slot.make_spare())
        except Exception as exc:  # noqa: BLE001 - reported; the slot's next job starts its own kernel
            print(f"learn: could not reset kernel slot {slot.index}: {exc}", file=sys.stderr)
        finally:
            self._free.put_nowait(slot)
