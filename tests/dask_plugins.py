"""A Dask worker plugin for tests/test_dask.py: it kills the worker process when the task of a
chosen student starts, to stand in for a submission that takes its worker down."""

from __future__ import annotations

import os
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin


class KillWorkerOn(WorkerPlugin):
    """`always`: students whose task kills every worker it runs on; `once`: only the first one
    (a marker file under `state_dir` remembers)."""

    name = "learn-test-kill-worker"

    def __init__(self, always: list[str], once: list[str], state_dir: str):
        self.always, self.once, self.state_dir = always, once, state_dir

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        text = str(key)
        if any(f"-{s}-" in text for s in self.always):
            os._exit(17)
        for student in self.once:
            marker = Path(self.state_dir) / f"killed-{student}"
            if f"-{student}-" in text and not marker.exists():
                marker.write_text("x")
                os._exit(17)
