"""The grading service: one warm grader per user and setup, so that a check answers at once.

A `learn check` in a new process pays for Python, torch and a kernel server before it grades
anything (seconds); this process keeps all of that warm between checks - a kernel server that
has imported torch (`kernels.KernelPool`), the imported grader, the lesson packs, the reference
results - and grades exactly as `learn check` does in its own process: the same `Grader`,
sandbox and results cache (`cache.check_with`). Only the process that does it differs.

    learn check / learn watch / check() in Jupyter             python -m grader.service  (detached)
    ───────────────────────────────────────────────             ─────────────────────────────────────
    connect(SOCKET) ── {"op": "check", "paths": [...]}\\n ──►   changed notebook? Grader(warm pool)
                    ◄─ {"ok": true, "check": CheckRun}\\n ──    unchanged? the results cache
                                                               records progress, writes the report
    no answer: under LOCK, start one and wait for SOCKET; cannot: grade in this process, say so once

Where: a private folder (0700, ours) - $XDG_RUNTIME_DIR/learn, else $TMPDIR/learn-service-UID -
holds SOCKET (svc-ID.sock, 0600), LOCK and LOG (svc-ID.log: the service's stderr). ID is a digest
of the setup: the Python environment, this grader package, the data and cache folders and the
environment variables that change how learner code runs (LEARN_SANDBOX, ...), so each setup has
its own service. Both ends check the other's uid (SO_PEERCRED): nobody else can ask or answer.

Protocol: one request per connection, one JSON object per line: the request, then the answer
(with "progress": true first, every quarter second, what that check is running now).

    {"op": "check", "v": 2, "paths": [absolute], "display": [as given], "seed": n | null,
     "only": [names] | null, "cell_timeout": s | null, "use_cache": bool, "record": bool | "after",
     "html": false | null (next to the notebooks) | absolute path, "progress": bool}
                       -> {"progress": live.to_wire(...)}\n ... (only with "progress": true)
                       -> {"ok": true, "check": checkrun.CheckRun.to_dict()}
    {"op": "status"}   -> {"ok": true, "pid": n, "started": t, "checks": n, "idle_s": s, ...}
    {"op": "stop"}     -> {"ok": true}; the service exits
    any failure        -> {"ok": false, "error": text, "restart": bool}

Lifetime: started by the first client that finds no service; stops after $LEARN_SERVICE_IDLE
seconds without a check (default 900), on `learn service stop` or SIGTERM. Idle for RELAY_IDLE_S
(or half the idle limit), it closes the relay's kernel server (a third of its memory); the next
check warms it again once it has answered. Before each check it
compares the files it was started from (this package, the lesson packs, the site-packages
folders) with what is on disk now; when any changed it retires (`"restart": true`) and the client
starts a fresh one. A service that dies mid-check (kill -9) is restarted once by the client; a
stale socket file is replaced under LOCK. Checks without --seed use the service's own seed (like
`learn watch`), so the reference results of a lesson are computed once and then reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .paths import log_tail

__all__ = ["ServiceUnavailable", "NotRunning", "Setup", "setup", "disabled", "call", "check", "run_check", "status", "stop",
           "start", "tell_once", "main"]  # fmt: skip

PROTOCOL = 2
PROGRESS_EVERY_S = 0.25
OFF_ENV = "LEARN_NO_SERVICE"
IDLE_ENV = "LEARN_SERVICE_IDLE"
DEFAULT_IDLE_S = 900.0
RELAY_IDLE_S = 300.0  # idle this long: let the relay's kernel server go (about a third of the memory); the next check starts it again
START_TIMEOUT_S = 60.0
MAX_MESSAGE = 64 * 2**20
AFTER = "_after"  # in an answer on its way out: what to do once it is sent
# besides the folders, what changes how learner code runs (grader.sandbox, grader.kernels)
SETUP_ENV = ("LEARN_SANDBOX", "LEARN_KERNEL_BACKEND", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "MPLCONFIGDIR")
_PACKAGE = Path(__file__).resolve().parent


class ServiceUnavailable(Exception):
    """The service cannot be used here or now; the message says why in one sentence."""


class NotRunning(ServiceUnavailable):
    """No service is running (and none was to be started)."""


def disabled() -> bool:
    """$LEARN_NO_SERVICE=1: always grade in the calling process (also `--no-service`)."""
    return os.environ.get(OFF_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------
# where: the private folder and this setup's files in it


class Setup:
    """This user's and this setup's service files: `socket`, `lock` and `log` in `folder`."""

    def __init__(self, folder: Path, ident: str):
        self.folder, self.id = folder, ident
        self.socket, self.lock, self.log = (folder / f"svc-{ident}.{ext}" for ext in ("sock", "lock", "log"))


def _identity() -> str:
    import shutil

    from .paths import cache_dir, data_dir

    parts = {"prefix": sys.prefix, "python": sys.version, "grader": str(_PACKAGE), "data": str(data_dir()), "cache": str(cache_dir()),
             "bwrap": shutil.which("bwrap") or "", **{k: os.environ.get(k, "") for k in SETUP_ENV}}  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _private_folder(folder: Path, create: bool) -> bool:
    """True when `folder` is a real folder of ours that nobody else can enter (created 0700 if
    missing and `create`); raises ServiceUnavailable when it belongs to someone else."""
    import stat

    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        if not create:
            return False
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ServiceUnavailable(f"cannot create {folder}: {exc.strerror or exc}") from None
        st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        if not create:
            return False
        raise ServiceUnavailable(f"{folder} is not a folder of yours; remove it to use the grading service")
    if st.st_mode & 0o077:
        if not create:
            return False
        os.chmod(folder, 0o700)  # ours: make it private
    return True


def setup() -> Setup:
    """The service files of this user and setup (the folder is created, private, if missing)."""
    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "fork"):
        raise ServiceUnavailable("this system has no Unix sockets or fork()")
    import tempfile

    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isabs(base) and _private_folder(Path(base), create=False):
        folder = Path(base) / "learn"
    else:
        folder = Path(tempfile.gettempdir()) / f"learn-service-{os.getuid()}"
    _private_folder(folder, create=True)
    result = Setup(folder, _identity())
    if len(str(result.socket).encode()) > 100:  # Unix socket paths are limited to about 107 bytes
        result = Setup(Path(tempfile.gettempdir()) / f"learn-service-{os.getuid()}", result.id)
        _private_folder(result.folder, create=True)
    return result


# ---------------------------------------------------------------------------------------------
# the client side


def _peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (Linux); None where the system does not say."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]


def _wait_gone(su: Setup, timeout: float = 10.0) -> None:
    """Wait until a service that dropped a connection has really gone: a killed process with much
    memory to unmap still accepts connections for a moment (and resets them). Returns when nothing
    listens any more, or something answers (another client has started a new service)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(su.socket))
            sock.settimeout(2)
            sock.sendall(json.dumps({"v": PROTOCOL, "op": "status"}).encode() + b"\n")
            if sock.recv(1):
                return
        except OSError as exc:
            if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
                return
        finally:
            sock.close()
        time.sleep(0.02)


def _connect(su: Setup) -> socket.socket | None:
    """A connection to the running service, or None when none is listening."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(su.socket))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError as exc:
        sock.close()
        raise ServiceUnavailable(f"cannot connect to {su.socket}: {exc.strerror or exc}") from None
    if _peer_uid(sock) not in (None, os.getuid()):
        sock.close()
        raise ServiceUnavailable(f"{su.socket} is answered by another user's process; remove it")
    return sock


def _exchange(sock: socket.socket, request: dict, timeout: float | None, on_progress: Callable[[list], None] | None = None) -> dict:
    """Send one request and read its answer (progress lines before it go to `on_progress`).
    ConnectionError if the service went away, ValueError if what came is no answer."""
    with sock, sock.makefile("rb") as lines:
        sock.settimeout(timeout)
        sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            line = lines.readline(MAX_MESSAGE + 1)
            if not line.endswith(b"\n"):
                raise ConnectionError("the grading service closed the connection without answering") if len(line) <= MAX_MESSAGE \
                    else ValueError("the grading service's answer is too long")  # fmt: skip
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("the grading service's answer is not a JSON object")
            if "progress" not in message or "ok" in message:
                return message
            if on_progress is not None:
                on_progress(message["progress"])


@contextlib.contextmanager
def _locked(path: Path, timeout: float = START_TIMEOUT_S):
    """An exclusive lock on `path` (flock): one client starts the service, the others wait for it."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise ServiceUnavailable(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(f"another learn has been starting the service for {timeout:.0f}s") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def start(su: Setup | None = None) -> Setup:
    """Start this user's service unless one answers (another client may be starting it: then wait
    for that one). Returns once it listens; ServiceUnavailable if it cannot start."""
    su = su or setup()
    with _locked(su.lock):
        sock = _connect(su)
        if sock is not None:
            sock.close()
            return su
        with contextlib.suppress(FileNotFoundError):
            os.unlink(su.socket)  # stale: left by a service that was killed (connect was refused)
        try:
            log = os.open(su.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise ServiceUnavailable(f"cannot create {su.log}: {exc.strerror or exc}") from None
        try:
            done = subprocess.run([sys.executable, "-m", "grader.service", str(su.socket)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=log, cwd=su.folder, timeout=START_TIMEOUT_S)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceUnavailable(f"could not start the grading service: {exc}") from None
        finally:
            os.close(log)
    if done.returncode != 0:
        why = done.stdout.decode(errors="replace").strip() or log_tail(su.log) or f"exit status {done.returncode}"
        raise ServiceUnavailable(f"the grading service did not start: {why}")
    return su


def call(
    request: dict, *, start_if_needed: bool = True, timeout: float | None = None, on_progress: Callable[[list], None] | None = None
) -> dict:
    """Send `request` to this user's service - started first if none runs - and return its answer.

    A service that dies while answering, or has retired because learn, a lesson pack or the
    Python environment changed, is replaced once. Raises NotRunning (none runs, and
    `start_if_needed` is False) or ServiceUnavailable (none can be had).
    """
    su = setup()
    lost = []
    for attempt in (1, 2):
        sock = _connect(su)
        if sock is None:
            if not start_if_needed:
                raise NotRunning(f"no grading service is running ({su.socket})")
            start(su)
            sock = _connect(su)
            if sock is None:
                raise ServiceUnavailable(f"the grading service started but does not answer on {su.socket}")
        try:
            reply = _exchange(sock, {"v": PROTOCOL, **request}, timeout, on_progress)
        except (OSError, ValueError) as exc:  # killed while checking, or garbled: once more with a new one
            _wait_gone(su)
            lost.append(str(exc))
            if attempt == 2 or not start_if_needed:
                tail = log_tail(su.log)
                raise ServiceUnavailable(
                    f"the grading service stopped while answering ({'; '.join(lost)}){': ' + tail if tail else ''}"
                ) from None
            continue
        if reply.get("restart") and attempt == 1 and start_if_needed:
            continue
        return reply
    raise ServiceUnavailable("the grading service keeps restarting; see " + str(su.log))


def check(paths: list[Path], *, seed: int | None = None, only: list[str] | None = None, cell_timeout: float | None = None,
          use_cache: bool = True, record: bool | str = True, html: Path | None | bool = False, progress: bool = False):  # fmt: skip
    """`run_check` done by the service: the CheckRun of `paths`, as `learn check` would
    make it in this process. `record`: add the fresh results to the progress history (its
    warning in the CheckRun), or "after" the answer is sent (a warning goes to the service's log).
    `progress`: what the service runs meanwhile is shown here (`live.remote`), as if it ran here.
    Raises ServiceUnavailable when there is no service to be had."""
    from . import live
    from .checkrun import CheckRun

    here = os.getcwd()
    request = {"op": "check", "paths": [os.path.join(here, p) for p in paths], "display": [str(p) for p in paths], "seed": seed,
               "only": only, "cell_timeout": cell_timeout, "use_cache": use_cache, "record": record,
               "html": html if html is False or html is None else os.path.join(here, html), "progress": progress}  # fmt: skip
    reply = call(request, on_progress=live.remote if progress else None)
    if not reply.get("ok"):
        raise ServiceUnavailable(f"the grading service failed: {reply.get('error') or 'no reason given'}")
    outcome = CheckRun.from_dict(reply["check"])
    if outcome.report and html not in (None, False) and outcome.report == os.path.join(here, html):
        outcome.report = str(html)  # as the learner wrote it, as `learn check` prints it
    return outcome


def run_check(paths: list[Path], *, seed: int | None = None, only: list[str] | None = None, jobs: int | None = None,
              cell_timeout: float | None = None, use_cache: bool = True, html: Path | None | bool = None, service: bool = True,
              warn: Callable[[str], None] | None = None, progress: bool = False):  # fmt: skip
    """`learn check` of `paths`: the CheckRun from this user's grading service (started if needed),
    or - with `service=False`, $LEARN_NO_SERVICE=1, or where none can be had (`warn` hears why,
    once) - from this process (`checkrun.check_here`), exactly as before the service existed.
    `html`: False writes no report, None writes it next to the notebooks, a path writes it there.
    `jobs` only sizes the kernel pool of this process; the service keeps its own warm.
    `progress`: relay the service's live progress into this process's `live` table."""
    from .checkrun import check_here

    options = dict(seed=seed, only=only, cell_timeout=cell_timeout, use_cache=use_cache, html=html)
    if service and not disabled():
        try:
            return check(paths, **options, progress=progress)
        except ServiceUnavailable as exc:
            tell_once(warn, exc)
    return check_here(paths, jobs=jobs, **options)


def status() -> dict | None:
    """The running service's status, or None when none runs."""
    try:
        return call({"op": "status"}, start_if_needed=False, timeout=30)
    except NotRunning:
        return None


def stop() -> bool:
    """Stop the running service; False when none was running."""
    try:
        call({"op": "stop"}, start_if_needed=False, timeout=60)
    except NotRunning:
        return False
    return True


_told: set[str] = set()


def tell_once(warn, exc: Exception) -> None:
    """Say once per process that checks run here, not in the service, and why."""
    if warn is not None and "told" not in _told:
        _told.add("told")
        warn(f"{exc}; checking in this process instead (slower; `learn service status` says more)")


# ---------------------------------------------------------------------------------------------
# the service side


def _stamp() -> str:
    """A digest of what the service was started from: every file of this package and of the
    lesson packs (name, size, time), and the site-packages folders (a pip install changes them)."""
    import sysconfig

    from .lessons import content_root, installed_packs_dir

    h = hashlib.sha256()
    roots = [_PACKAGE, *(content_root() / name for name in ("solutions", "exercises", "templates")), installed_packs_dir()]
    for root in dict.fromkeys(roots):
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if "__pycache__" in path.parts or ".ipynb_checkpoints" in path.parts:
                continue
            with contextlib.suppress(OSError):
                st = path.stat()
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for name in ("purelib", "platlib"):
        with contextlib.suppress(OSError, KeyError):
            folder = sysconfig.get_paths()[name]
            h.update(f"{folder}\0{os.stat(folder).st_mtime_ns}\n".encode())
    return h.hexdigest()


def _memory_mb(pid: int) -> float | None:
    """Proportional set size (shared pages split fairly) of a process and its descendants, in MB (Linux)."""
    try:
        pids, children = [pid], {}
        for entry in os.listdir("/proc"):
            if entry.isdecimal():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    with open(f"/proc/{entry}/stat") as f:
                        children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        total = 0
        for p in pids:
            pids.extend(children.get(p, []))
            with contextlib.suppress(OSError):
                with open(f"/proc/{p}/smaps_rollup") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        return round(total / 1024, 1)
    except (OSError, StopIteration):
        return None


class Service:
    """The running service: a warm kernel pool, and the requests it answers (see the module doc)."""

    def __init__(self, su: Setup, sock: socket.socket, idle_s: float):
        self.su, self.sock, self.idle_s = su, sock, idle_s
        self.inode = os.stat(su.socket).st_ino
        self.stamp = _stamp()  # first: a change made while we start up still retires us
        self.started, self.last = time.time(), time.monotonic()
        self.active = self.checks = 0
        self.pool = self.lessons = self.seed = self.extras = None
        self.notes: list[str] = []
        self.retired = False

    async def run(self) -> None:
        import asyncio
        import signal

        self.stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.stopping.set)
        self.warm = asyncio.ensure_future(self._warm_up())
        server = await asyncio.start_unix_server(self._serve, sock=self.sock, limit=MAX_MESSAGE)
        try:
            while not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), min(5.0, self.idle_s))
                if self.active == 0 and time.monotonic() - self.last > self.idle_s:
                    print(f"learn service: idle for {self.idle_s:g}s, stopping", file=sys.stderr)
                    break
                if self.active == 0 and time.monotonic() - self.last > min(RELAY_IDLE_S, self.idle_s / 2):
                    await self._release_relay()
        finally:
            self._unlink()
            server.close()
            for _ in range(600):  # let the checks under way finish (a stop or a retirement)
                if self.active == 0:
                    break
                await asyncio.sleep(0.1)
            with contextlib.suppress(BaseException):
                await self.warm
            if self.extras is not None:
                self.extras.cancel()
                with contextlib.suppress(BaseException):
                    await self.extras
            if self.pool is not None:
                await self.pool.close()

    async def _warm_up(self) -> None:
        """Start the kernel server, import the grader (torch) while it warms, load the packs."""
        import io

        from . import sandbox
        from .kernels import KernelPool

        said = io.StringIO()
        with contextlib.redirect_stderr(said):  # "no bubblewrap here": told to every client, as `learn check` does
            box = sandbox.choose()
        self.notes = [line.removeprefix("learn: ") for line in said.getvalue().splitlines() if line.strip()]
        self.pool = KernelPool(size=1, box=box, keep_warm=True)
        await self.pool.__aenter__()
        from .grading import new_seed
        from .lessons import all_lessons

        self.lessons, self.seed = all_lessons(), new_seed()

    async def _release_relay(self) -> None:
        if self.pool is None or self.pool.relay is None or (self.extras is not None and not self.extras.done()):
            return
        await self.pool.stop_relay()
        print("learn service: idle, the relay's kernels stopped (the next check starts them again)", file=sys.stderr)

    def _unlink(self) -> None:
        """Remove our socket file - not one a successor has bound since."""
        with contextlib.suppress(OSError):
            if os.stat(self.su.socket).st_ino == self.inode:
                os.unlink(self.su.socket)

    def _retire(self) -> None:
        self.retired = True
        self._unlink()  # a new service can start at once
        self.stopping.set()

    async def _serve(self, reader, writer) -> None:
        if _peer_uid(writer.get_extra_info("socket")) not in (None, os.getuid()):
            writer.close()
            return
        import asyncio

        from . import live

        self.active += 1
        ticker = None
        live.OWNER.set(object())  # this connection's task (and what it starts) is one request: see live
        try:
            try:
                request = json.loads(await reader.readline())
                if isinstance(request, dict) and request.get("progress"):
                    ticker = asyncio.ensure_future(self._tell_progress(writer))
                reply = await self._answer(request)
            except Exception as exc:  # noqa: BLE001 - a bug here must reach the client, which then grades itself
                import traceback

                traceback.print_exc()
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(BaseException):
                    await ticker
            after = reply.pop(AFTER, None)
            writer.write(json.dumps(reply).encode() + b"\n")
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()
            if after is not None:
                after()
        finally:
            self.active -= 1

    async def _tell_progress(self, writer) -> None:
        """Every PROGRESS_EVERY_S, what this request's check runs now (its task set live.OWNER)."""
        import asyncio

        from . import live

        owner = live.OWNER.get()
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            writer.write(json.dumps({"progress": live.to_wire(live.snapshot(owner))}).encode() + b"\n")
            await writer.drain()  # a client gone: OSError ends the ticker, the check goes on

    async def _answer(self, request: dict) -> dict:
        op = request.get("op")
        if op == "status":
            return {"ok": True, "pid": os.getpid(), "started": self.started, "checks": self.checks, "active": self.active - 1,
                    "idle_s": round(time.monotonic() - self.last, 1), "idle_timeout_s": self.idle_s, "seed": self.seed,
                    "warm": self.warm.done() and not self.warm.exception(), "relay": self.pool is not None and self.pool.relay is not None,
                    "socket": str(self.su.socket), "log": str(self.su.log),
                    "memory_mb": _memory_mb(os.getpid()), "python": sys.executable, "grader": str(_PACKAGE)}  # fmt: skip
        if op == "stop":
            self._retire()
            return {"ok": True}
        if op != "check":
            return {"ok": False, "error": f"unknown request {op!r}"}
        if self.retired or request.get("v") != PROTOCOL or _stamp() != self.stamp:
            self._retire()
            return {"ok": False, "restart": True, "error": "learn, a lesson pack or the Python environment changed"}
        try:
            await self.warm
        except Exception as exc:
            self._retire()
            raise ServiceUnavailable(f"the service could not start its kernels: {exc}") from exc
        started = self.last = time.monotonic()  # idle means: no check (a status or stop is not work)
        try:
            outcome, after = await self._check(request)
        finally:
            self.last = time.monotonic()
        self.checks += 1
        print(f"check {self.checks}: {len(outcome.run.notebooks)} notebook(s) in {time.monotonic() - started:.2f}s", file=sys.stderr)
        if self.pool.relay is None:  # after a check, not during it (2 cores): the relay for wrong answers (again, after idling)
            self.pool.start_relay()
        if self.checks == 1:  # then, once, the extras
            import asyncio

            self.extras = asyncio.ensure_future(self.pool.import_extras())
        return {"ok": True, "check": outcome.to_dict(), AFTER: after}

    async def _check(self, request: dict):
        import asyncio
        import dataclasses

        from . import cache
        from .checkrun import CheckRun, record, write_check_report
        from .grading import Grader
        from .results import RunResult
        from .workspace import check_readable

        paths, shown = [Path(p) for p in request["paths"]], [str(p) for p in request["display"]]
        seed, only, cell_timeout = request.get("seed"), request.get("only") or None, request.get("cell_timeout")
        use_cache = bool(request.get("use_cache", True))

        async def grade(misses: list[Path]):
            async with Grader(pool=self.pool, seed=self.seed if seed is None else seed, only=only, cell_timeout=cell_timeout,
                              lessons=self.lessons) as grader:  # fmt: skip
                return await grader.grade_many(misses)

        loop = asyncio.get_running_loop()

        def graded(todo: list[Path], **options):  # check_readable's grader, run from its thread on this loop
            work = cache.check_with(grade, todo, use_cache=use_cache, lessons=self.lessons, **options)
            return asyncio.run_coroutine_threadsafe(work, loop).result()

        # as `learn check` does it: a file that is no exercise notebook is refused at once
        run = await asyncio.to_thread(check_readable, paths, graded, seed=seed, only=only, cell_timeout=cell_timeout)
        outcome = CheckRun(run, notes=list(self.notes))
        after = None
        if request.get("record") == "after":  # check() in Jupyter: its answer first, the history right after it
            snapshot = RunResult([dataclasses.replace(nb) for nb in run.notebooks], seed=run.seed)

            def after():
                problem = record(snapshot)
                if problem:
                    print(f"learn service: {problem}", file=sys.stderr)

        warning = record(run) if request.get("record") is True else None  # before the paths are shown as given: they resolve here
        for nb, path, given in zip(run.notebooks, paths, shown):
            nb.path = given
            nb.error = nb.error.replace(str(path), given) if nb.error else nb.error
        html = request.get("html", False)
        if html is not False:
            outcome.report, problem, outcome.report_failed = write_check_report(run, paths, None if html is None else Path(html))
            outcome.warnings += [problem] if problem else []
        outcome.warnings += [warning] if warning else []
        return outcome, after


class _Log:
    """The service's stderr (its log): a full disk loses lines, never the service."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _bind(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # 0600 from the start: nobody else may connect, even for a moment
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    return sock


def main(argv: list[str]) -> int:
    """``python -m grader.service SOCKET``: detach, listen on SOCKET, say "ok" once listening, serve.

    The parent returns 0 once the service listens (the client then connects), or prints why
    not and returns 1. SOCKET must be this setup's own: a client of another setup is refused."""
    import asyncio

    # As the `learn` command does (cli.main): nbformat's jsonschema would build rfc3987_syntax's IRI
    # grammar at import, about a second, for a "format" keyword nbformat's schemas never use. Only
    # in this process, which runs no one else's code.
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)

    try:
        su = setup()
    except ServiceUnavailable as exc:
        print(exc)
        return 1
    if argv != [str(su.socket)]:
        print(f"this Python or setup would serve {su.socket}, not {' '.join(argv)}")
        return 2
    try:
        idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S)
    except ValueError:
        print(f"{IDLE_ENV} must be a number of seconds, not {os.environ[IDLE_ENV]!r}")
        return 2
    rfd, wfd = os.pipe()
    if os.fork():  # the parent waits for the word from the service, then lets the client go on
        os.close(wfd)
        with os.fdopen(rfd, "rb") as r:
            word = r.read().decode(errors="replace")
        if word == "ok":
            return 0
        print(word or "the service exited while starting (see its log)")
        return 1
    os.close(rfd)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # stderr stays: the log the client opened
    sys.stderr = _Log(sys.stderr)
    try:
        sock = _bind(su.socket)
    except OSError as exc:
        os.write(wfd, f"cannot listen on {su.socket}: {exc.strerror or exc}".encode())
        os._exit(1)
    print(f"learn service {os.getpid()}: listening on {su.socket}, stops after {idle:g}s idle", file=sys.stderr)
    os.write(wfd, b"ok")
    os.close(wfd)
    asyncio.run(Service(su, sock, idle).run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
