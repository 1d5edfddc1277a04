"""Runs inside the learner's kernel, after their notebook: call the graded functions and publish
what they returned, in the wire format, one display message per probe.

Never imported by the grader: `harness.harness_source()` sends this file's source (after
`wire.py`'s) as one extra cell. It decides nothing - it only measures. Whatever a notebook
does to this code (patching torch, builtins, IPython) can change only the values reported,
and values are judged in the grader's process against references the kernel never sees.
"""

MIME = "application/vnd.learn.probe+json"
PROBE_BUDGET = 16 * 2**20


class ProbeTimeout(BaseException):
    """Raised by SIGALRM inside a probe; a BaseException so `except Exception` cannot swallow it."""


def _learn_seed(seed):
    import random
    import sys

    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


class _Tools:
    """Helpers a probe may use: `tools.count_lines(fn, *args)` and `tools.seed(n)`."""

    seed = staticmethod(_learn_seed)

    @staticmethod
    def count_lines(fn, *args, **kwargs):
        """Call fn and count the Python lines executed in notebook code meanwhile.

        A vectorised function runs a handful of lines whatever the batch size; a Python loop
        over the batch runs more lines for a bigger batch. Returns (value, line_count).
        """
        import sys

        count = [0]
        library = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})

        def local(frame, event, arg):
            if event == "line":
                count[0] += 1
            return local

        def tracer(frame, event, arg):
            name = frame.f_code.co_filename
            if name.startswith("<learn") or name.startswith(library) or name.startswith("<frozen"):
                return None
            return local

        old = sys.gettrace()
        sys.settrace(tracer)
        try:
            value = fn(*args, **kwargs)
        finally:
            sys.settrace(old)
        return value, count[0]


class _Need(BaseException):
    """Raised by a relay shim whose answer the grader has not sent yet (a BaseException, so a
    learner's `except Exception` cannot swallow it)."""

    def __init__(self, request):
        self.request = request


class _Answered(BaseException):
    """Raised by the reference responder once it has answered; carries the answers."""

    def __init__(self, answers):
        self.answers = answers


def _relay_key(name, args, kwargs, grad):
    import hashlib
    import json

    def plain(v):
        detach = getattr(v, "detach", None)
        return detach() if callable(detach) and type(v).__module__.startswith("torch") else v

    blob = [name, encode(tuple(plain(a) for a in args)), encode({k: plain(v) for k, v in kwargs.items()}), grad]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest(), blob


def _wants_grad(args, kwargs):
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.is_grad_enabled():
        return False
    return any(isinstance(v, torch.Tensor) and v.requires_grad for v in list(args) + list(kwargs.values()))


def _relay_shim(name, table, own):
    """Stands in for graded function `name`: answers with the reference's value for these inputs
    (sent by the grader in `table`), carrying the reference's gradient, or asks for it. Where the
    reference's answer is no plain value (a function, say), the learner's own `name` answers."""

    def shim(*args, **kwargs):
        grad = _wants_grad(args, kwargs)
        key, blob = _relay_key(name, args, kwargs, grad)
        if key not in table:
            raise _Need({"name": name, "key": key, "args": blob[1], "kwargs": blob[2], "grad": grad})
        answer = decode(table[key])
        if answer.get("own"):
            if own is None:
                raise NameError(f"name {name!r} is not defined")
            return own(*args, **kwargs)
        value = answer["value"]
        if grad and answer.get("grads"):
            value = _with_gradient(value, list(args) + [kwargs[k] for k in sorted(kwargs)], answer["grads"])
        return value

    shim.__name__ = shim.__qualname__ = name
    return shim


def _with_gradient(value, inputs, jacobians):
    """value, made differentiable: d value / d input = the reference's Jacobian for that input."""
    import torch

    out = value.detach()
    for inp, jac in zip(inputs, jacobians):
        if jac is not None and isinstance(inp, torch.Tensor) and inp.requires_grad:
            delta = inp - inp.detach()  # zero, with the gradient of the identity
            out = out + torch.tensordot(jac.to(inp.dtype), delta, dims=inp.dim()).to(out.dtype)
    return out


def _answer(fn, request):
    """The reference's value of fn for a relayed request, with Jacobians when gradients are wanted."""
    import torch

    args, kwargs = list(decode(request["args"])), decode(request["kwargs"])
    names = sorted(kwargs)
    inputs = args + [kwargs[k] for k in names]
    if not request.get("grad"):
        with torch.no_grad():
            value = fn(*args, **kwargs)
        return {"own": True} if encode(value).get("t") in ("foreign", "none") else {"value": value, "grads": None}
    leaves = [v.detach().clone().requires_grad_(True) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for v in inputs]

    def call(*ts):
        it = iter(ts)
        vals = [next(it) if isinstance(v, torch.Tensor) and v.requires_grad else v for v in leaves]
        return fn(*vals[: len(args)], **dict(zip(names, vals[len(args) :])))

    tensors = [v for v in leaves if isinstance(v, torch.Tensor) and v.requires_grad]
    value = call(*tensors)
    if encode(value).get("t") in ("foreign", "none"):  # a function, or a helper run for its side effects
        return {"own": True}
    jacs = torch.autograd.functional.jacobian(call, tuple(tensors)) if tensors else ()
    it = iter(jacs)
    grads = [next(it).detach() if isinstance(v, torch.Tensor) and v.requires_grad else None for v in leaves]
    return {"value": value.detach() if isinstance(value, torch.Tensor) else value, "grads": grads}


def _install(ns, replacements):
    """Put replacements into the notebook namespace; returns how to undo it."""
    missing = object()
    saved = {name: ns.get(name, missing) for name in replacements}
    ns.update(replacements)

    def undo():
        for name, old in saved.items():
            if old is missing:
                ns.pop(name, None)
            else:
                ns[name] = old

    return undo


def _cell_names():
    """Map IPython's per-cell file names to 'In[n]' so tracebacks point at notebook cells."""
    try:
        from IPython import get_ipython

        mapping = getattr(get_ipython().compile, "_filename_map", {}) or {}
        return {name: f"In[{n}]" for name, n in mapping.items()}
    except Exception:
        return {}


def _learner_traceback(exc):
    import traceback

    names = _cell_names()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<learn")]
    lines = []
    for frame in frames[-12:]:
        where = names.get(frame.filename, frame.filename)
        lines.append(f"{where}, line {frame.lineno}, in {frame.name}")
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    lines.append(f"{type(exc).__name__}: {str(exc)[:2000]}")
    return lines


class _alarm:
    """Per-probe wall-clock limit with SIGALRM (main thread only; otherwise the grader's cell
    timeout and interrupt are the backstop)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.armed = False

    def __enter__(self):
        import signal

        def fire(signum, frame):
            raise ProbeTimeout()

        try:
            self.previous = signal.signal(signal.SIGALRM, fire)
            signal.setitimer(signal.ITIMER_REAL, float(self.seconds))
            self.armed = True
        except (ValueError, OSError):
            pass
        return self

    def __exit__(self, *exc):
        import signal

        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
        return False


def _run_probe(probe, ns):
    import time

    result = {"id": probe["id"]}
    started = time.perf_counter()
    undos = []
    try:
        if probe.get("isolate") is not None:  # graded helpers answer with the reference's values
            iso = probe["isolate"]
            undos.append(_install(ns, {name: _relay_shim(name, iso["table"], ns.get(name)) for name in iso["deps"]}))
        if probe.get("respond") is not None:  # reference side: answer relayed requests, in the probe's setting
            respond = probe["respond"]

            def responder(*args, **kwargs):
                raise _Answered([_answer(ns[r["name"]], r) for r in respond["requests"]])

            undos.append(_install(ns, {respond["target"]: responder}))
        missing = [name for name in probe.get("requires", []) if name not in ns]
        if missing:
            result.update(status="missing", names=missing)
            return result
        not_callable = [name for name in probe.get("callables", []) if not callable(ns[name])]
        if not_callable:
            result.update(status="not_callable", names=not_callable, types=[type(ns[n]).__name__ for n in not_callable])
            return result
        env = ns
        if probe.get("replace"):  # the reference with a known mistake, in the notebook's own namespace,
            scratch = {}  # so that the mistaken code sees the globals the probe sets (x, y)
            for repl in probe["replace"]:
                code = {}
                exec(compile(repl["source"], "<learn mistake>", "exec"), ns, code)
                scratch[repl["target"]] = code[repl["name"]]
            undos.append(_install(ns, scratch))
        scope = {"__name__": "__learn_probe__", "tools": _Tools}
        exec(compile(probe["source"], "<learn probe>", "exec"), scope)
        fn = scope[probe["entry"]]
        args = decode(probe["args"])
        kwargs = decode(probe["kwargs"])
        if probe.get("seed") is not None:
            _learn_seed(probe["seed"])
        with _alarm(probe.get("timeout", 10)):
            value = fn(env, *args, **kwargs)
        result.update(status="ok", value=encode(value, 0, [PROBE_BUDGET]))
    except _Need as need:
        result.update(status="need", request=need.request)
    except _Answered as answered:
        result.update(status="answers", value=encode(answered.answers, 0, [PROBE_BUDGET]))
    except ProbeTimeout:
        result.update(status="timeout", seconds=probe.get("timeout", 10))
    except KeyboardInterrupt:
        result.update(status="interrupted")
    except BaseException as exc:  # SystemExit from learner code included
        result.update(status="exception", ename=type(exc).__name__, evalue=str(exc)[:2000], traceback=_learner_traceback(exc))
    finally:
        for undo in reversed(undos):
            undo()
        result["duration"] = round(time.perf_counter() - started, 6)
    return result


def _learn_main(job_json):
    import json

    from IPython import get_ipython
    from IPython.display import publish_display_data

    job = json.loads(job_json)
    ns = get_ipython().user_ns
    for probe in job["probes"]:
        _progress(job, "start", probe["id"])
        result = _run_probe(probe, ns)
        result["nonce"] = job["nonce"]
        try:
            publish_display_data({MIME: result})
        except Exception as exc:  # an unencodable result must not stop the others
            publish_display_data(
                {
                    MIME: {
                        "id": probe["id"],
                        "nonce": job["nonce"],
                        "status": "exception",
                        "ename": "HarnessError",
                        "evalue": repr(exc)[:500],
                        "traceback": [],
                    }
                }
            )
        _progress(job, "done", probe["id"])


def _progress(job, event, probe_id):
    """Note progress in a file: if a probe kills the kernel, iopub messages still queued are lost,
    but this line is not, so the grader blames the right probe and re-runs the others."""
    import os

    try:
        fd = os.open(job["progress"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{event} {probe_id}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass
