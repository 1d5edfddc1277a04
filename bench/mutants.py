"""How long `learn mutants` takes, per pack and per mutant, against `learn check` of the same pack's
solutions measured in the same run (the machine is shared: only the ratio means something).

    python bench/mutants.py [PACK ...] [--no-cascade]

For each pack, one line of JSON: the seconds of `learn check --no-cache` of its solution notebooks
(a baseline: one notebook run each), of `learn mutants` (every mutant and named mistake, on 50 seeds
for the reference and the mistakes and 3 for the mutants, plus the cascade matrix unless
--no-cascade), their ratio, and the seconds per mutant. One kernel per notebook grades all its
mutants (they replace the definition for one call each), so the cost per mutant is the cost of
its probes, not of a notebook run; the cascade matrix and statement mutants grade whole notebooks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env_dir: Path) -> tuple[float, int]:
    import os

    env = {**os.environ, "LEARN_CACHE_DIR": str(env_dir / "cache"), "LEARN_HOME": str(env_dir / "home")}
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packs", nargs="*", default=["lesson3", "chapter4", "capstone", "whichmodel", "finetune"])
    parser.add_argument("--no-cascade", action="store_true")
    args = parser.parse_args()
    for pack in args.packs:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            notebooks = sorted(str(p) for p in (ROOT / "solutions" / pack).glob("*.ipynb"))
            check_s, _ = timed(["learn", "check", *notebooks, "--no-html", "--no-cache"], work)
            out = work / "m.json"
            cmd = ["learn", "mutants", pack, "--json", str(out)] + (["--no-cascade"] if args.no_cascade else [])
            mutants_s, rc = timed(cmd, work)
            data = json.loads(out.read_text()) if out.exists() else {}
        n = data.get("mutants") or 0
        print(json.dumps({
            "pack": pack, "check_s": round(check_s, 1), "mutants_s": round(mutants_s, 1), "ratio": round(mutants_s / check_s, 1),
            "mutants": n, "s_per_mutant": round(mutants_s / n, 2) if n else None, "cascade_pairs": data.get("cascade", {}).get("pairs"),
            "phases_s": data.get("timings"), "exit": rc,
        }))  # fmt: skip
        sys.stdout.flush()


if __name__ == "__main__":
    main()
