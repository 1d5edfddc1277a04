"""Kernels for learner code: a pool of slots, each a warm zygote that forks one kernel per job.

    KernelPool ── Slot ── Zygote (process, maybe inside bubblewrap) ──fork──► kernel (one per job)
                   │
                   └── its own directory: work/ (the kernel's cwd, wiped after each job) and ipc/

nbclient drives each kernel through the normal jupyter_client API: `ZygoteProvisioner` stands
in for the local provisioner, so starting, interrupting and killing a kernel go through the
zygote instead of Popen. Kernels talk over ZMQ's IPC transport (Unix sockets in the slot's ipc/
directory), never TCP.

A slot runs one job at a time, and after each job every process the job left behind is killed
and the work directory emptied, so nothing of one submission is visible to the next.
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
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from . import sandbox as sandbox_mod
from .errors import ExecutionError

ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
_job_ids = itertools.count(1)


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
        self._reader: asyncio.Task | None = None
        self.import_s: float | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        argv = [sys.executable, "-I", str(ZYGOTE_SCRIPT), "--profile", self.profile]
        if self.box.mode == "bwrap":
            argv.append("--clean-shm")  # /dev/shm is private to this sandbox: empty it between jobs
        argv = self.box.command(argv, self.slot_dir, ro_files=(ZYGOTE_SCRIPT.parent,))
        log = open(self.slot_dir / "zygote.log", "ab")
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
        except asyncio.TimeoutError:
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
            elif kind == "error" and job in self._spawned:
                self._spawned.pop(job).set_exception(ExecutionError(event.get("message", "spawn failed")))
        # the zygote is gone: every kernel it had is gone too
        tail = _tail(self.slot_dir / "zygote.log")
        err = ExecutionError(f"kernel server exited unexpectedly{': ' + tail if tail else ''}")
        for fut in [self.ready, *self._spawned.values()]:
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
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        if self._reader:
            await asyncio.gather(self._reader, return_exceptions=True)


def _resolve(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


@functools.lru_cache(maxsize=None)
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
        await self._until_bound()
        return self.connection_info

    async def _until_bound(self, timeout: float = 30) -> None:
        """Wait until the kernel has bound its IPC sockets, so our connects succeed at once
        (a connect to a missing socket file is retried by ZMQ only after its reconnect interval,
        and iopub messages published before the subscription lands are lost)."""
        info = self.connection_info
        files = [f"{info['ip']}-{info[k]}" for k in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
        deadline = time.monotonic() + timeout
        while not all(os.path.exists(f) for f in files):
            if self.zygote.exit_status(self.job) is not None or time.monotonic() > deadline:
                return  # the caller's readiness check reports what went wrong
            await asyncio.sleep(0.003)

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

    async def send_signal(self, signum: int) -> None:
        if self.has_process:
            await self.zygote.signal(self.job, signum)

    async def kill(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        pass


_PYTHON_KERNEL_SPEC = KernelSpec(
    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    display_name="Python 3 (learn)",
    language="python",
    interrupt_mode="signal",
)


@dataclass
class Slot:
    """One worker place: a directory and a zygote. Runs one job at a time."""

    index: int
    root: Path
    box: sandbox_mod.Sandbox
    profile: str = "torch"
    zygote: Zygote | None = None
    jobs_run: int = 0
    env: dict = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def ipc(self) -> Path:
        return self.root / "ipc"

    async def start(self, profile: str) -> None:
        self.profile = profile
        for d in (self.work, self.ipc):
            d.mkdir(parents=True, exist_ok=True)
        self.box.prepare_slot(self.root)
        self.zygote = Zygote(self.root, profile, self.box)
        await self.zygote.start()

    async def ensure(self, profile: str) -> Zygote:
        """The slot's zygote, (re)started if it died or was warmed for another profile."""
        if self.zygote is None or not self.zygote.alive or self.profile != profile:
            if self.zygote is not None:
                await self.zygote.close()
            await self.start(profile)
        assert self.zygote is not None
        await self.zygote.wait_ready()
        return self.zygote

    def kernel_manager(self, spawn_request: dict) -> AsyncKernelManager:
        """A kernel manager whose kernels come from this slot's zygote over IPC sockets."""
        assert self.zygote is not None
        job = f"j{next(_job_ids)}"
        km = AsyncKernelManager(transport="ipc", ip=str(self.ipc / job), context=zmq_context())
        km._kernel_spec = _PYTHON_KERNEL_SPEC
        km.connection_file = str(self.ipc / f"{job}.json")
        provisioner = ZygoteProvisioner(kernel_id=job, kernel_spec=_PYTHON_KERNEL_SPEC, parent=km)
        provisioner.zygote, provisioner.job, provisioner.spawn_request = self.zygote, job, spawn_request
        km.provisioner = provisioner
        return km

    @property
    def uid(self) -> int | None:
        """The unprivileged uid this slot's kernels run as (None: no privilege drop possible)."""
        return self.box.kernel_uid(self.index)

    def prepare_job(self) -> None:
        self.box.prepare_job(self.work, self.ipc, self.uid)

    async def reset(self) -> None:
        """Kill whatever the last job left running and empty the work and ipc directories."""
        if self.zygote is not None and self.zygote.alive:
            await self.zygote.kill_all()
        for d in (self.work, self.ipc):
            _empty_dir(d)
        self.jobs_run += 1

    async def close(self) -> None:
        if self.zygote is not None:
            await self.zygote.close()
            self.zygote = None


def _empty_dir(path: Path) -> None:
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

    Zygotes start warming when the pool opens, so their imports overlap whatever the grader
    does meanwhile (reading notebooks, importing torch itself).
    """

    def __init__(self, size: int | None = None, profile: str = "torch", box: sandbox_mod.Sandbox | None = None):
        self.size = max(1, size or os.cpu_count() or 1)
        self.profile = profile
        self.box = box or sandbox_mod.choose()
        self.root: Path | None = None
        self.slots: list[Slot] = []
        self._free: asyncio.Queue[Slot] | None = None

    @property
    def threads_per_kernel(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.size)

    async def __aenter__(self) -> KernelPool:
        # short base path: Unix socket paths are limited to ~107 bytes
        self.root = Path(tempfile.mkdtemp(prefix="learn-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.root.chmod(0o711)  # kernels run as another uid and must reach their slot
        self._free = asyncio.Queue()
        for i in range(self.size):
            slot = Slot(i, self.root / f"s{i}", self.box)
            self.slots.append(slot)
            self._free.put_nowait(slot)
        await asyncio.gather(*(s.start(self.profile) for s in self.slots))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.slots), return_exceptions=True)
        self.slots = []
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    @contextlib.asynccontextmanager
    async def slot(self, profile: str | None = None):
        assert self._free is not None, "use `async with KernelPool(...)`"
        slot = await self._free.get()
        try:
            await slot.ensure(profile or self.profile)
            yield slot
        finally:
            try:
                await slot.reset()
            finally:
                self._free.put_nowait(slot)
