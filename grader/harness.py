"""Build the extra cell that measures a learner's functions inside their kernel.

The cell executes `wire.py` + `kernel_side.py` in a private namespace (never the learner's
globals, so a notebook's own `encode` or `MIME` is untouched) and runs the probes given as JSON.
"""

from __future__ import annotations

import functools
import json
import secrets
from pathlib import Path

from .kernel_side import MIME

_HERE = Path(__file__).parent

__all__ = ["MIME", "PROGRESS_FILE", "harness_cell_source", "new_nonce", "probe_in_flight"]


@functools.lru_cache(maxsize=1)
def kernel_code() -> str:
    return (_HERE / "wire.py").read_text() + "\n\n" + (_HERE / "kernel_side.py").read_text()


def new_nonce() -> str:
    return secrets.token_hex(8)


PROGRESS_FILE = ".learn-probe-progress"


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


def harness_cell_source(probes: list[dict], nonce: str, hung: list[str] = ()) -> str:
    """`hung`: graded names whose calls never returned in an earlier round (judged once)."""
    probes, blobs = _share_blobs(probes)
    job = json.dumps({"probes": probes, "blobs": blobs, "nonce": nonce, "progress": PROGRESS_FILE, "hung": list(hung)})
    program = kernel_code() + f"\n_learn_main({job!r})\n"
    return f'(lambda s: exec(compile(s, "<learn harness>", "exec"), {{"__name__": "__learn__"}}))({program!r})\n'


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
