"""The executor carries on through misbehaving notebooks and probes, and loses nothing -
on both kernel backends (fork: from a warm zygote; spawn: a new interpreter per kernel)."""

import asyncio

import nbformat
import pytest

from grader import wire
from grader.execute import KernelJob, run_job
from grader.kernels import KernelPool

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def backend(kernel_backend):
    """Every test here runs on both kernel backends (tests/conftest.py: kernel_backend)."""
    return kernel_backend


def nb(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def probe(pid, body, timeout=5, requires=()):
    src = "def probe(ns):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    return {"id": pid, "source": src, "entry": "probe", "args": wire.encode(()), "kwargs": wire.encode({}),
            "timeout": timeout, "requires": list(requires)}  # fmt: skip


def run(job: KernelJob):
    async def main():
        async with KernelPool(1) as pool:
            return await run_job(pool, job)

    return asyncio.run(main())


def test_every_probe_result_arrives_after_a_timed_out_cell():
    probes = [probe(f"p{i}", f"return {i}") for i in range(25)]
    out = run(KernelJob(nb("x = 1", "while True:\n    pass", "y = 2"), probes=probes, cell_timeout=1))
    assert [c.status for c in out.cells] == ["ok", "timeout", "ok"]
    assert out.restarts == 0  # the interrupt reached the kernel (inside bubblewrap too): no replacement needed
    assert {k: v["status"] for k, v in out.probes.items()} == {f"p{i}": "ok" for i in range(25)}
    assert [wire.decode(out.probes[f"p{i}"]["value"]) for i in range(25)] == list(range(25))


def test_dead_kernel_is_replaced_and_earlier_cells_replayed():
    out = run(KernelJob(nb("a = 41", "import os\nos._exit(3)", "b = a + 1"), probes=[probe("b", "return ns['b']")]))
    assert [c.status for c in out.cells] == ["ok", "died", "ok"]
    assert "exited with status 3" in out.cells[1].evalue
    assert out.restarts == 1
    assert wire.decode(out.probes["b"]["value"]) == 42


def test_a_corrupted_message_from_the_kernel_is_a_kernel_death_not_a_grader_crash():
    forge = ("k = get_ipython().kernel\n"
             "k.iopub_socket.send_multipart([b'stream', b'<IDS|MSG>', b'0' * 64, b'{}', b'{}', b'{}', b'{}'])\n"
             "import time; time.sleep(1)")  # fmt: skip
    out = run(KernelJob(nb("a = 41", forge, "b = a + 1"), probes=[probe("b", "return ns['b']")]))
    assert [c.status for c in out.cells] == ["ok", "died", "ok"]
    assert "corrupted message" in out.cells[1].evalue and "Invalid Signature" in out.cells[1].evalue
    assert out.restarts == 1
    assert wire.decode(out.probes["b"]["value"]) == 42


def test_a_kernel_ignoring_interrupts_is_killed_and_replaced():
    out = run(KernelJob(nb("a = 1", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)", "b = a"),
                        probes=[probe("b", "return ns['b']")], cell_timeout=1))  # fmt: skip
    assert [c.status for c in out.cells] == ["ok", "timeout", "ok"]
    assert out.restarts == 1 and wire.decode(out.probes["b"]["value"]) == 1


def test_output_is_capped_per_cell():
    out = run(KernelJob(nb("for i in range(200000):\n    print('x' * 100)", "z = 1"), output_limit=100_000))
    assert out.cells[0].truncated and out.cells[0].status == "ok"


def test_probe_that_kills_the_kernel_is_blamed_and_the_rest_still_run():
    probes = [probe("before", "return 1"), probe("crash", "import os\nos._exit(9)"), probe("hang", "while True:\n    pass", timeout=1),
              probe("after", "return 2"), probe("missing", "return 0", requires=["nope"])]  # fmt: skip
    out = run(KernelJob(nb("x = 1"), probes=probes))
    status = {k: v["status"] for k, v in out.probes.items()}
    assert status == {"before": "ok", "crash": "died", "hang": "timeout", "after": "ok", "missing": "missing"}
    assert wire.decode(out.probes["after"]["value"]) == 2


def test_probe_exceptions_carry_the_learner_traceback():
    out = run(KernelJob(nb("def f():\n    return 1 / 0"), probes=[probe("p", "return ns['f']()")]))
    result = out.probes["p"]
    assert result["status"] == "exception" and result["ename"] == "ZeroDivisionError"
    assert any("In[1]" in line for line in result["traceback"])
    assert not any("<learn" in line for line in result["traceback"])


def test_notebook_time_limit_skips_the_rest():
    out = run(
        KernelJob(nb("import time\ntime.sleep(0.6)", "time.sleep(0.6)", "time.sleep(0.6)", "x = 1"), notebook_timeout=1.0, cell_timeout=5)
    )
    assert [c.status for c in out.cells][-1] == "skipped"
    assert "time limit" in out.cells[-1].evalue


@pytest.mark.parametrize("mode", ["bwrap", "rlimit"])
def test_files_next_to_the_notebook_import_and_open(tmp_path, mode, backend):
    """Regression: under `python -I` IPython >= 9.7 leaves the working directory off sys.path."""
    from grader import sandbox

    if mode == "bwrap" and not sandbox.bwrap_works():
        pytest.skip("bubblewrap cannot build a sandbox here")
    (tmp_path / "helper_mod.py").write_text("ANSWER = 42\n")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    job = KernelJob(nb("import helper_mod\nvalue = helper_mod.ANSWER", "text = open('table.csv').read()"),
                    files={"helper_mod.py": tmp_path / "helper_mod.py", "table.csv": tmp_path / "table.csv"},
                    probes=[probe("v", "return [ns['value'], ns['text']]")])  # fmt: skip

    async def main():
        async with KernelPool(1, box=sandbox.choose(mode)) as pool:
            return await run_job(pool, job)

    out = asyncio.run(main())
    assert [c.status for c in out.cells] == ["ok", "ok"], out.cells
    assert wire.decode(out.probes["v"]["value"]) == [42, "a,b\n1,2\n"]
    assert out.sandbox == mode and out.backend == backend
