"""Each job runs in a fresh process on a wiped slot: nothing of one submission reaches the next
(on both kernel backends: forked from a zygote, or spawned as a new interpreter)."""

import asyncio

import nbformat
import pytest

from grader import sandbox, wire
from grader.execute import KernelJob, run_job
from grader.kernels import KernelPool

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def backend(kernel_backend):
    """Every test here runs on both kernel backends (tests/conftest.py: kernel_backend)."""
    return kernel_backend


def notebook(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


PROBE = (
    "def probe(ns):\n    import os, builtins, torch\n    return {"
    + ", ".join(
        [
            "'global': 'SECRET' in ns",
            "'builtin': hasattr(builtins, 'leaked_secret')",
            "'cwd_files': sorted(f for f in os.listdir('.') if not f.startswith('.') and f != 'nb.ipynb')",
            "'tmp_files': sorted(os.listdir(os.environ.get('TMPDIR', '/tmp')))",
            "'shm': sorted(os.listdir('/dev/shm')) if os.path.isdir('/dev/shm') else []",
            "'module_attr': getattr(torch, 'leaked', None)",
            "'threads': torch.get_num_threads()",
            "'stray': any(open('/proc/%s/cmdline' % p, 'rb').read().startswith(b'sleep\\x00313') for p in os.listdir('/proc') if p.isdigit() and os.access('/proc/%s/cmdline' % p, os.R_OK))",
        ]
    )
    + "}\n"
)

POLLUTE = [
    "SECRET = 'answer key'\nimport builtins, torch, os, subprocess\nbuiltins.leaked_secret = 1\ntorch.leaked = 'yes'",
    "open('notes.txt', 'w').write('student A')\nopen(os.path.join(os.environ['TMPDIR'], 'a.tmp'), 'w').write('x')",
    "try:\n    open('/dev/shm/leak', 'w').write('x')\nexcept OSError:\n    pass",
    "p = subprocess.Popen(['sleep', '313'], start_new_session=True)",
]


def test_nothing_survives_from_one_job_to_the_next():
    probe = [{"id": "p", "source": PROBE, "entry": "probe", "args": wire.encode(()), "kwargs": wire.encode({}), "timeout": 10}]

    async def run():
        async with KernelPool(1) as pool:
            first = await run_job(pool, KernelJob(notebook(*POLLUTE), name="nb.ipynb", probes=probe))
            second = await run_job(pool, KernelJob(notebook("x = 1"), name="nb.ipynb", probes=probe))
        return first, second

    first, second = asyncio.run(run())
    seen_by_a = wire.decode(first.probes["p"]["value"])
    seen_by_b = wire.decode(second.probes["p"]["value"])
    assert seen_by_a["global"] and seen_by_a["builtin"] and seen_by_a["module_attr"] == "yes"
    assert seen_by_a["stray"] is True  # job A's background process was running during job A
    assert "notes.txt" in seen_by_a["cwd_files"]
    assert seen_by_b["global"] is False
    assert seen_by_b["builtin"] is False
    assert seen_by_b["module_attr"] is None
    assert seen_by_b["cwd_files"] == []
    assert seen_by_b["tmp_files"] == []
    if sandbox.choose().mode == "bwrap":  # without bubblewrap /dev/shm is the host's (documented)
        assert "leak" not in seen_by_b["shm"]
    assert seen_by_b["stray"] is False  # ... and was killed before job B


def test_kernels_get_a_scrubbed_environment_and_fresh_randomness(monkeypatch):
    monkeypatch.setenv("LEARN_TEST_SECRET_TOKEN", "do-not-leak")
    src = "def probe(ns):\n    import os, torch\n    return {'env': sorted(os.environ), 'rand': torch.rand(3), 'cwd': os.getcwd(), 'uid': os.getuid()}\n"
    probe = [{"id": "p", "source": src, "entry": "probe", "args": wire.encode(()), "kwargs": wire.encode({}), "timeout": 10}]

    async def run():
        async with KernelPool(1) as pool:
            return [await run_job(pool, KernelJob(notebook("pass"), probes=probe)) for _ in range(2)]

    a, b = (wire.decode(o.probes["p"]["value"]) for o in asyncio.run(run()))
    assert "LEARN_TEST_SECRET_TOKEN" not in a["env"]
    assert not (a["rand"] == b["rand"]).all(), "a forked kernel must not inherit the zygote's random state"
    assert a["cwd"].endswith("/work")
    if sandbox.choose().drops_privileges:
        assert a["uid"] != 0


def test_links_planted_for_the_next_kernel_are_not_followed(tmp_path):
    """A notebook plants symlinks where the grader (or the next kernel, before its uid drop) writes -
    its own log and the next request files - then kills its kernel: nothing outside is touched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    victim.chmod(0o666)
    plant = (
        "import os\n"
        "ipc = os.path.join(os.path.dirname(os.getcwd()), 'ipc')\n"
        "for i in range(1, 3000):\n"
        "    p = os.path.join(ipc, f'j{i}.request.json')\n"
        "    if not os.path.lexists(p):\n"
        f"        os.symlink({str(victim)!r}, p)\n"
        "if os.path.lexists('.kernel.log'):\n"
        "    os.unlink('.kernel.log')\n"
        f"os.symlink({str(victim)!r}, '.kernel.log')\n"
        "os._exit(0)"
    )
    probe = {"id": "b", "source": "def probe(ns):\n    return ns['b']\n", "entry": "probe", "args": wire.encode(()),
             "kwargs": wire.encode({}), "timeout": 10}  # fmt: skip

    async def run():
        async with KernelPool(1) as pool:
            return await run_job(pool, KernelJob(notebook("a = 1", plant, "b = a + 1"), probes=[probe]))

    out = asyncio.run(run())
    assert victim.read_text() == "keep"
    assert out.cells[1].status == "died" and out.cells[2].status == "ok", out.cells
    assert wire.decode(out.probes["b"]["value"]) == 2
