"""Run one notebook, and then its probes, in a fresh kernel on a pool slot.

Knows nothing about grading: it takes cells and probe specs and returns what happened - for
each cell ok / error / timeout / died, and for each probe the raw (still encoded) result.

Learners' notebooks misbehave, so the run carries on wherever it can:
  * a cell that raises is recorded and the next cell runs (as in "Run all" with errors allowed);
  * a cell that exceeds its time limit is interrupted; if the kernel does not come back it is
    killed, a new kernel replays the cells that had succeeded, and the run goes on after it;
  * a kernel that dies (os._exit, segfault, out of memory) is replaced the same way;
  * a probe that kills or hangs the kernel is marked, and the remaining probes run in a new one;
  * output beyond a per-cell cap is dropped with a note, so 10 MB of prints cannot swamp us.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from . import live
from .errors import ExecutionError
from .harness import MIME, PROGRESS_FILE, harness_cell_source, new_nonce, probe_in_flight
from .kernels import KernelPool, Limits, Slot

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class KernelJob:
    """Everything a kernel run needs. `files` are copied into the kernel's working directory."""

    notebook: NotebookNode
    name: str = "notebook.ipynb"
    files: dict[str, Path] = field(default_factory=dict)
    probes: list[dict] = field(default_factory=list)
    cell_timeout: float = 60
    notebook_timeout: float = 600
    probe_budget: float = 120
    output_limit: int = 1_000_000
    profile: str = "torch"
    limits: Limits = field(default_factory=Limits)
    max_restarts: int = 3
    label: str = ""  # what live progress calls this run (default: the notebook's name)
    skip_cells: frozenset[int] = frozenset()  # cells not to run (they did not finish in an earlier run of the same notebook)


@dataclass
class CellRun:
    index: int  # 0-based position in the notebook
    status: str  # ok | error | timeout | died | skipped
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)
    duration: float = 0.0
    execution_count: int | None = None
    truncated: bool = False


@dataclass
class JobOutcome:
    cells: list[CellRun] = field(default_factory=list)
    probes: dict[str, dict] = field(default_factory=dict)
    restarts: int = 0
    duration: float = 0.0
    kernel_start_s: float = 0.0
    probe_s: float = 0.0
    sandbox: str = ""  # bwrap | rlimit
    backend: str = ""  # how the kernels were started: fork (from a warm zygote) | spawn (a new process each)
    input_maps: list[dict[int, int]] = field(default_factory=list)  # per kernel started: In[n] -> cell index


class CorruptedMessage(DeadKernelError):
    """The kernel sent a message that fails its signature or shape check: its process is broken
    (e.g. pyzmq could not start a thread and sent half a message). Handled as a kernel death."""


def _strict_session(session) -> None:
    """Make `session` raise CorruptedMessage for a message it cannot trust, instead of the
    ValueError/TypeError jupyter_client raises (which would end the whole grading run)."""
    deserialize = session.deserialize

    def checked(*args, **kwargs):
        try:
            return deserialize(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise CorruptedMessage(str(exc)[:120]) from None

    session.deserialize = checked


class _Client(NotebookClient):
    """nbclient with a cap on each cell's output and a quicker readiness handshake."""

    def __init__(self, nb, km, output_limit: int, **kw):
        super().__init__(nb, km=km, **kw)
        self.output_limit = output_limit
        self._sizes: dict[int, int] = {}
        self.truncated: set[int] = set()
        self.probe_messages: list[dict] = []
        self._pollers: set[asyncio.Task] = set()

    # nbclient leaves a cell's iopub poller running after a CellTimeoutError (it is a
    # CellControlSignal, which nbclient does not cancel for). A leftover poller competes for
    # iopub messages and silently swallows half of the next cells' outputs, so we track the
    # pollers and cancel whatever outlives its cell (`cancel_pollers`).
    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        return await self._tracked(super()._async_poll_output_msg(parent_msg_id, cell, cell_index))

    async def _async_poll_kernel_alive(self):
        return await self._tracked(super()._async_poll_kernel_alive())

    async def _tracked(self, coro):
        task = asyncio.current_task()
        self._pollers.add(task)
        try:
            return await coro
        finally:
            self._pollers.discard(task)

    async def cancel_pollers(self) -> None:
        pending = [t for t in self._pollers if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        data = content.get("data") or {}
        if msg.get("msg_type") == "display_data" and MIME in data:
            self.probe_messages.append(data[MIME])  # harness results: counted separately
            return None
        size = len(content.get("text", "")) + sum(len(str(v)) for v in data.values())
        used = self._sizes.get(cell_index, 0) + size
        self._sizes[cell_index] = used
        if used > self.output_limit:
            if cell_index not in self.truncated:
                self.truncated.add(cell_index)
                note = f"\n[learn: output beyond {self.output_limit // 1000} kB dropped]\n"
                outs.append(nbformat.v4.new_output("stream", name="stderr", text=note))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def discard(self) -> None:
        """Let go of a kernel no run will use (its slot's `kill_all` ends the process)."""
        with contextlib.suppress(Exception):
            if self.kc is not None:
                self.kc.stop_channels()
        self.kc = None

    async def async_start_new_kernel_client(self):
        assert self.km is not None
        self.kc = self.km.client(context=self.km.context)
        _strict_session(self.kc.session)
        await _maybe_await(self.kc.start_channels())
        try:
            await _wait_ready(self.kc, self.km, self.startup_timeout)
        except Exception:
            await self._async_cleanup_kernel()
            raise
        self.kc.allow_stdin = False
        return self.kc


async def _maybe_await(value):
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


async def _wait_ready(kc, km, timeout: float) -> None:
    """Ready = a kernel_info reply on shell AND a message for it on iopub (so iopub is subscribed).

    jupyter_client's own wait_for_ready also sleeps 0.2-0.4 s flushing iopub; with one forked
    kernel per notebook that fixed wait would dominate, and outputs are filtered by parent
    message id anyway.
    """
    from queue import Empty

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg_id = kc.kernel_info()
        replied = False
        until = time.monotonic() + 2
        while not replied and time.monotonic() < until:
            try:
                msg = await kc.shell_channel.get_msg(timeout=0.1)
            except Empty:
                if not await km.is_alive():
                    raise DeadKernelError("Kernel died before replying to kernel_info") from None
                continue
            replied = msg["parent_header"].get("msg_id") == msg_id
        if not replied:
            continue
        until = time.monotonic() + 0.2
        while time.monotonic() < until:
            try:
                msg = await kc.iopub_channel.get_msg(timeout=0.02)
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return
    raise ExecutionError(f"kernel did not become ready within {timeout:.0f}s")


def describe_exit(status: int | None) -> str:
    """Words for how a kernel process ended, e.g. 'killed by SIGSEGV (segmentation fault)'."""
    import signal as _signal

    if status is None:
        return "the kernel stopped answering"
    if status < 0:
        try:
            sig = _signal.Signals(-status)
            return f"the kernel was killed by {sig.name} ({_signal.strsignal(sig) or ''})".replace(" ()", "")
        except ValueError:
            return f"the kernel was killed by signal {-status}"
    return f"the kernel exited with status {status}"


def _read_text(path: Path, limit: int = 1_000_000) -> str:
    """A file of the kernel's slot, read by the grader: never through a symlink learner code planted."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _tail_text(path: Path, lines: int = 8) -> str:
    return " | ".join(_read_text(path).strip().splitlines()[-lines:])


def _error_of(cell: NotebookNode) -> dict | None:
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def clean_traceback(lines: list[str], keep: int = 40) -> list[str]:
    text = "\n".join(ANSI.sub("", line) for line in lines)
    out = [ln for ln in text.splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
    return out[-keep:]


async def _new_client(slot: Slot, request: dict) -> _Client:
    """Start a kernel on `slot` for `request` (a spawn request) and connect an nbclient to it."""
    km = slot.kernel_manager(request)
    client = _Client(
        nbformat.v4.new_notebook(),
        km,
        KernelJob.output_limit,
        timeout=None,
        startup_timeout=60,
        allow_errors=True,
        interrupt_on_timeout=False,
        shutdown_kernel="immediate",
        iopub_timeout=2,
        record_timing=False,
    )
    try:
        await client.async_start_new_kernel(cwd=str(slot.work))
        await client.async_start_new_kernel_client()
    except (DeadKernelError, RuntimeError) as exc:
        log = _tail_text(slot.work / ".kernel.log")
        raise ExecutionError(f"the kernel failed to start ({exc}){': ' + log if log else ''}") from None
    client.spawn_request = request
    return client


async def _spare(slot: Slot, request: dict) -> _Client:
    """A kernel started ahead for the slot's next job (it runs nothing until a job adopts it)."""
    slot.prepare_job()
    return await _new_client(slot, request)


def _same_request(a: dict, b: dict) -> bool:
    """Would a kernel started for `a` be started the same for `b`? The process limit is "tasks
    running now + room" (`Sandbox.process_limit`), measured when the kernel starts: not compared."""

    def key(r: dict) -> dict:
        return {**r, "limits": {k: v for k, v in (r.get("limits") or {}).items() if k != "nproc"}}

    return key(a) == key(b)


async def _adopt_spare(slot: Slot, request: dict) -> _Client | None:
    """The slot's kernel started ahead, if it was started for this request and lives; else None
    (and it is ended: the job starts its own)."""
    if slot.spare is None or slot.spare is asyncio.current_task():  # none, or this is the spare starting
        return None
    task, slot.spare = slot.spare, None
    try:
        client = await task
    except Exception:  # noqa: BLE001 - it did not start: the job starts its own, and says why if that fails too
        await slot.kill_all()
        return None
    if (
        isinstance(client, _Client)
        and _same_request(client.spawn_request, request)
        and client.km is not None
        and await client.km.is_alive()
    ):
        return client
    (client.client if isinstance(client, _Run) else client).discard()
    await slot.kill_all()
    return None


class _Run:
    def __init__(self, slot: Slot, job: KernelJob, sandbox: str):
        self.slot, self.job = slot, job
        self.out = JobOutcome(sandbox=sandbox, backend=slot.backend)
        self.client: _Client | None = None
        self.ok_cells: list[int] = []
        self.timeout = job.cell_timeout
        self.harness_defined = False

    def _spawn_request(self, threads: int) -> dict:
        box = self.slot.box
        limits = self.job.limits.as_request()
        uid = self.slot.uid
        limits["nproc"] = box.process_limit(uid) if self.job.limits.processes else None
        req = {
            "cwd": str(self.slot.work),
            "env": box.kernel_env(self.slot.work, threads),
            "limits": limits,
            "threads": threads,
        }
        if uid is not None:
            req["uid"] = uid
        return req

    async def start_kernel(self, threads: int) -> None:
        started = time.monotonic()
        request = self._spawn_request(threads)
        client = await _adopt_spare(self.slot, request) or await _new_client(self.slot, request)
        client.output_limit = self.job.output_limit
        client.timeout_func = lambda cell: self.timeout
        self.client = client
        self.harness_defined = False  # a new kernel: its first round of probes defines the harness
        if getattr(self.slot.make_spare, "func", None) is not _prerun:  # a pre-run pool keeps its own
            self.slot.make_spare = functools.partial(_spare, self.slot, request)  # for KernelPool(keep_warm=True)
        self.out.kernel_start_s += time.monotonic() - started
        self.out.input_maps.append({})

    async def stop_kernel(self, kill: bool = True) -> None:
        """SIGKILL the kernel and everything it started; nothing of a learner's run is worth a
        graceful shutdown, and jupyter_client's polite path polls for exit every 100 ms.
        `kill=False` at the end of a job in a `keep_warm` pool: the slot's reset, which follows
        before the slot is lent again, kills it (and empties the folders) off the critical path."""
        if self.client is None:
            return
        kc, km = self.client.kc, self.client.km
        with contextlib.suppress(Exception):
            if kc is not None:
                kc.stop_channels()
        if kill:
            await self.slot.kill_all()
            with contextlib.suppress(Exception):
                if km is not None:
                    await km.cleanup_resources()
        self.client.kc = self.client.km = None
        self.client = None

    async def exec_source(self, index: int, source: str, timeout: float) -> CellRun:
        """Execute one cell's source; classify the outcome."""
        assert self.client is not None
        cell = nbformat.v4.new_code_cell(source)
        self.client.nb.cells = [cell]  # nbclient writes the executed cell back at its index
        self.client._sizes, self.client.truncated = {}, set()
        self.timeout = max(0.5, timeout)
        started = time.monotonic()
        run = CellRun(index=index, status="ok")
        try:
            await self.client.async_execute_cell(cell, 0, store_history=index >= 0)
        except CellTimeoutError:
            run.status = "timeout"
        except CorruptedMessage as exc:
            run.status = "died"
            run.evalue = f"the kernel sent a corrupted message ({exc}); it was stopped"
            await self.slot.kill_all()
        except DeadKernelError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # nbclient reports a cancelled wait as a dead kernel: it is a cancel
                raise asyncio.CancelledError() from None
            run.status = "died"
            run.evalue = await self._death_reason()
        finally:
            await self.client.cancel_pollers()
        run.duration = time.monotonic() - started
        run.execution_count = cell.get("execution_count")
        run.truncated = bool(self.client.truncated)
        if run.execution_count and index >= 0:
            self.out.input_maps[-1][run.execution_count] = index
        err = _error_of(cell)
        if run.status == "ok" and err is not None:
            run.status = "error"
        if err is not None:
            run.ename, run.evalue = err.get("ename", ""), err.get("evalue", "")
            run.traceback = clean_traceback(err.get("traceback", []))
        return run

    async def _death_reason(self) -> str:
        assert self.client is not None and self.client.km is not None
        status = await self.client.km.provisioner.wait_exit(timeout=2)
        return describe_exit(status)

    async def responsive(self) -> bool:
        """After a timeout: interrupt, then see whether the kernel answers a trivial cell."""
        assert self.client is not None and self.client.km is not None
        with contextlib.suppress(Exception):
            await self.client.km.interrupt_kernel()
        probe = await self.exec_source(-1, "pass", 5)
        return probe.status == "ok"

    async def replace_kernel(self, threads: int, deadline: float) -> bool:
        """Kill the kernel, start another and replay the cells that had succeeded."""
        if self.out.restarts >= self.job.max_restarts:
            return False
        self.out.restarts += 1
        await self.stop_kernel()
        await self.slot.kill_all()
        await self.start_kernel(threads)
        cells = self.job.notebook.cells
        for index in self.ok_cells:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            replay = await self.exec_source(index, cells[index].source, min(self.job.cell_timeout, remaining))
            if replay.status in ("timeout", "died"):
                return False
        return True

    async def run_cells(self, threads: int) -> float:
        deadline = time.monotonic() + self.job.notebook_timeout
        alive = True
        for index, cell in enumerate(self.job.notebook.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            remaining = deadline - time.monotonic()
            if index in self.job.skip_cells:
                self.out.cells.append(CellRun(index=index, status="skipped", evalue="not run again: it did not finish the first time"))
                continue
            # numbered as the report numbers cells: 1-based over all the notebook's cells
            live.cell(self.job, index + 1, len(self.job.notebook.cells), min(self.job.cell_timeout, max(0.0, remaining)))
            if not alive or remaining <= 0:
                reason = "notebook time limit reached" if remaining <= 0 else "the kernel could not be restarted"
                self.out.cells.append(CellRun(index=index, status="skipped", evalue=reason))
                continue
            run = await self.exec_source(index, cell.source, min(self.job.cell_timeout, remaining))
            if run.status == "timeout" and remaining < self.job.cell_timeout:
                run.evalue = f"stopped: the notebook's total time limit of {self.job.notebook_timeout:.0f}s was reached"
            self.out.cells.append(run)
            if run.status in ("ok", "error"):
                self.ok_cells.append(index) if run.status == "ok" else None
            elif run.status == "timeout" and await self.responsive():
                pass
            else:
                alive = await self.replace_kernel(threads, deadline)
        return deadline

    async def run_probes(self, threads: int) -> None:
        pending = list(self.job.probes)
        deadline = time.monotonic() + self.job.probe_budget
        started = time.monotonic()
        nonce = new_nonce()
        live.checking(self.job, len(pending))
        hung: list[str] = []
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for p in pending:
                    self.out.probes[p["id"]] = {"id": p["id"], "status": "timeout", "seconds": self.job.probe_budget}
                break
            assert self.client is not None
            self.client.probe_messages = []
            with contextlib.suppress(OSError):
                (self.slot.work / PROGRESS_FILE).unlink()
            source = harness_cell_source(pending, nonce, hung, define=not self.harness_defined)
            run = await self.exec_source(-2, source, remaining)
            self.harness_defined = self.harness_defined or run.status == "ok"
            for msg in self.client.probe_messages:
                if isinstance(msg, dict) and msg.get("nonce") == nonce and msg.get("id") in {p["id"] for p in pending}:
                    msg["kernel"] = len(self.out.input_maps) - 1
                    self.out.probes.setdefault(msg["id"], msg)
            pending = [p for p in pending if p["id"] not in self.out.probes]
            if run.status in ("ok", "error") or not pending:
                for p in pending:  # the harness finished without reporting these
                    self.out.probes[p["id"]] = {"id": p["id"], "status": "lost", "evalue": run.evalue}
                break
            # a probe hung or killed the kernel: blame it, re-run the rest in a new kernel
            culprit_id = probe_in_flight(_read_text(self.slot.work / PROGRESS_FILE))
            culprit = next((p for p in pending if p["id"] == culprit_id), pending[0])
            pending.remove(culprit)
            if run.status == "timeout" and not culprit.get("replace") and culprit.get("check"):
                hung.append(culprit["check"])  # judged once (kernel_side._judged_once)
            self.out.probes[culprit["id"]] = {
                "id": culprit["id"],
                "status": "timeout" if run.status == "timeout" else "died",
                "seconds": round(run.duration, 1),
                "reason": run.evalue,
            }
            if pending and not await self.replace_kernel(threads, time.monotonic() + self.job.notebook_timeout):
                for p in pending:
                    self.out.probes[p["id"]] = {"id": p["id"], "status": "died"}
                break
        self.out.probe_s = time.monotonic() - started


async def run_job(pool: KernelPool, job: KernelJob) -> JobOutcome:
    """Execute `job` on a free slot of `pool` and return what happened."""
    async with pool.slot(job.profile) as slot:
        started = time.monotonic()
        _stage_files(slot, job)
        slot.prepare_job()
        run = _Run(slot, job, pool.box.mode)
        threads = pool.threads_per_kernel
        live.started(job)
        try:
            await run.start_kernel(threads)
            await run.run_cells(threads)
            if job.probes:
                if run.client is None or not await run.client.km.is_alive():
                    await run.replace_kernel(threads, time.monotonic() + job.notebook_timeout)
                await run.run_probes(threads)
        finally:
            live.finished(job)
            await run.stop_kernel(kill=not pool.keep_warm)
        run.out.duration = time.monotonic() - started
        return run.out


class KernelSession:
    """A kernel that has run a notebook and stays up for further rounds of probes (`open_session`)."""

    def __init__(self, run: _Run, threads: int):
        self._run, self._threads = run, threads

    @property
    def outcome(self) -> JobOutcome:
        return self._run.out

    @property
    def workdir(self) -> Path:
        """The kernel's working directory (a relay passes files through it)."""
        return self._run.slot.work

    @property
    def uid(self) -> int | None:
        """The uid the kernel runs as, when it is not ours."""
        return self._run.slot.uid

    async def probe(self, probes: list[dict], budget: float | None = None) -> dict[str, dict]:
        """Run one round of probes in the same kernel; the raw result of each, by id. `budget`:
        seconds for the whole round (default: the job's probe budget)."""
        self._run.job.probes = probes
        if budget is not None:
            self._run.job.probe_budget = budget
        self._run.out.probes = {}
        if self._run.client is None or not await self._run.client.km.is_alive():
            await self._run.replace_kernel(self._threads, time.monotonic() + self._run.job.notebook_timeout)
        await self._run.run_probes(self._threads)
        return dict(self._run.out.probes)


@contextlib.asynccontextmanager
async def open_session(pool: KernelPool, job: KernelJob):
    """Like `run_job`, but the kernel stays up after the notebook for rounds of `session.probe()`
    (grading relays values between a learner's kernel and the reference's this way).

    A pool with `prerun` (the grading service's relay pool, which only ever runs the reference
    solution) keeps the next session ready: a fresh kernel that has run the same notebook and
    nothing else, staged and started as this one was, taken here when the job is the same."""
    async with pool.slot(job.profile) as slot:
        threads = pool.threads_per_kernel
        live.started(job)
        run = None
        try:
            run = await _adopt_prerun(slot, job) if pool.prerun else None
            if run is None:
                run = await _prerun(slot, job, pool.box.mode, threads)
            if pool.prerun:
                slot.make_spare = functools.partial(_prerun, slot, dataclasses.replace(job, probes=[]), pool.box.mode, threads)
            yield KernelSession(run, threads)
        finally:
            live.finished(job)
            if run is not None:
                await run.stop_kernel(kill=not pool.keep_warm)


async def _prerun(slot: Slot, job: KernelJob, sandbox: str, threads: int) -> _Run:
    """Stage `job`, start its kernel and run its notebook: a session ready for probes."""
    _stage_files(slot, job)
    slot.prepare_job()
    run = _Run(slot, job, sandbox)
    try:
        await run.start_kernel(threads)
        await run.run_cells(threads)
    except BaseException:
        await run.stop_kernel()
        raise
    return run


async def _adopt_prerun(slot: Slot, job: KernelJob) -> _Run | None:
    """The slot's session run ahead, if it ran this very job and its kernel lives; else None
    (it is ended: the job runs its own)."""
    task, slot.spare = slot.spare, None
    if task is None:
        return None
    try:
        run = await task
    except Exception:  # noqa: BLE001 - it did not start: the job runs its own
        await slot.kill_all()
        return None
    same = isinstance(run, _Run) and run.job == dataclasses.replace(job, probes=[])
    if same and run.client is not None and run.client.km is not None and await run.client.km.is_alive():
        return run
    if isinstance(run, _Run) and run.client is not None:
        run.client.discard()
    elif isinstance(run, _Client):
        run.discard()
    await slot.kill_all()
    return None


def _stage_files(slot: Slot, job: KernelJob) -> None:
    nb = copy.deepcopy(job.notebook)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, str(slot.work / Path(job.name).name))
    for name, source in job.files.items():
        target = slot.work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)
