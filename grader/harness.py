"""Build the extra cell that measures a learner's functions inside their kernel.

The cell executes `wire.py` + `kernel_side.py` in a private namespace (never the learner's
globals, so a notebook's own `encode` or `MIME` is untouched) and runs the probes given as JSON.
That code travels compiled (marshal; the kernel is the grader's own Python) in a kernel's first
round of probes, which keeps the namespace as a module (`HARNESS_MODULE`); later rounds in the
same kernel - a relay of a training loop sends dozens - are one short line that calls it. What
comes back is judged in the grader either way: learner code could always tamper with the
harness while a probe runs, so keeping it changes nothing that is trusted.
"""

from __future__ import annotations

import base64
import functools
import json
import marshal
import secrets
import zlib
from pathlib import Path

from .kernel_side import MIME

_HERE = Path(__file__).parent

__all__ = ["MIME", "PROGRESS_FILE", "HARNESS_MODULE", "harness_cell_source", "new_nonce", "probe_in_flight"]


@functools.lru_cache(maxsize=1)
def kernel_code() -> str:
    return (_HERE / "wire.py").read_text() + "\n\n" + (_HERE / "kernel_side.py").read_text()


def new_nonce() -> str:
    return secrets.token_hex(8)


PROGRESS_FILE = ".learn-probe-progress"


HARNESS_MODULE = "__learn_harness__"
BLOB_MIN = 2048  # encoded arguments at least this long are sent once per cell, however many probes share them


def _share_blobs(probes: list[dict]) -> tuple[list[dict], dict[str, object]]:
    """Probes whose (large) arguments repeat - one case run against several mistakes or mutants -
    refer to one copy: {"$learn_blob": digest} in place of the encoded value."""
    import hashlib

    blobs: dict[str, object] = {}
    out = []
    for probe in probes:
        probe = dict(probe)
        for key in ("args", "kwargs"):
            text = json.dumps(probe.get(key), sort_keys=True)
            if len(text) >= BLOB_MIN:
                digest = hashlib.sha256(text.encode()).hexdigest()[:24]
                blobs.setdefault(digest, probe[key])
                probe[key] = {"$learn_blob": digest}
        out.append(probe)
    return out, blobs


@functools.lru_cache(maxsize=1)
def _compiled_kernel_code() -> str:
    code = compile(kernel_code(), "<learn harness>", "exec")
    return base64.b64encode(zlib.compress(marshal.dumps(code), 1)).decode("ascii")


def harness_cell_source(probes: list[dict], nonce: str, hung: list[str] = (), define: bool = True) -> str:
    """The cell that runs `probes`. `hung`: graded names whose calls never returned in an earlier
    round (judged once). `define`: also (re)define the harness in this kernel, which a kernel's
    first round must do."""
    probes, blobs = _share_blobs(probes)
    job = json.dumps({"probes": probes, "blobs": blobs, "nonce": nonce, "progress": PROGRESS_FILE, "hung": list(hung)})
    if not define:
        return f"__import__('sys').modules[{HARNESS_MODULE!r}]._learn_main({job!r})\n"
    load = f"__import__('marshal').loads(__import__('zlib').decompress(__import__('base64').b64decode({_compiled_kernel_code()!r})))"
    keep = f"__import__('sys').modules.__setitem__({HARNESS_MODULE!r}, m)"
    return f"(lambda c, m: [exec(c, m.__dict__), {keep}, m._learn_main({job!r})] and None)({load}, __import__('types').ModuleType('__learn__'))\n"


def probe_in_flight(progress_text: str) -> str | None:
    """The probe that started last and never finished, from the harness's progress file."""
    started: list[str] = []
    finished: set[str] = set()
    for line in progress_text.splitlines():
        event, _, probe_id = line.partition(" ")
        if event == "start":
            started.append(probe_id)
        elif event == "done":
            finished.add(probe_id)
    unfinished = [p for p in started if p not in finished]
    return unfinished[-1] if unfinished else None
