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


def _plain(v):
    detach = getattr(v, "detach", None)
    return detach() if callable(detach) and type(v).__module__.startswith("torch") else v


def _relay_key(name, stages, grad):
    """Key of a relayed call. `stages`: [(args, kwargs), ...] - the graded function called, then
    (for a function that returns a function, like mk_quad) what it returned called, and so on."""
    import hashlib
    import json

    blob = [
        name,
        [[encode(tuple(_plain(a) for a in args)), encode({k: _plain(v) for k, v in kwargs.items()})] for args, kwargs in stages],
        grad,
    ]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest(), blob


def _flat_inputs(stages):
    out = []
    for args, kwargs in stages:
        out += list(args) + [kwargs[k] for k in sorted(kwargs)]
    return out


def _wants_grad(stages):
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.is_grad_enabled():
        return False
    return any(isinstance(v, torch.Tensor) and v.requires_grad for v in _flat_inputs(stages))


class _RelayFailed(BaseException):
    """The reference could not answer a relayed call (or the channel broke): no verdict."""


def _write_json(folder, name, data):
    import json
    import os

    tmp = os.path.join(folder, f".{name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, os.path.join(folder, name))


def _wait_json(folder, name, stop=None, serve=None):
    """Wait for a file the grader carries here, then take it. `serve()` runs while waiting (it
    answers call-backs); `stop` names a file that ends the wait (raises _Answered)."""
    import json
    import os
    import time

    path, pause = os.path.join(folder, name), 0.0002
    while not os.path.exists(path):
        if serve is not None and serve():
            pause = 0.0002
            continue
        if stop is not None and os.path.exists(os.path.join(folder, stop)):
            raise _Answered(None)
        time.sleep(pause)
        pause = min(pause * 1.5, 0.005)
    with open(path) as f:
        data = json.load(f)
    os.unlink(path)
    return data


class _Callable:
    """Marks a function the learner's code passed to a relayed helper (a model, say): the reference
    calls it back through the relay (`_LiveChannel.ask`)."""

    def __init__(self, k):
        self.k = k


class _LiveChannel:
    """A relay in one probe: a request is a file the grader carries to the reference kernel, and
    the answer comes back the same way (`grader.cascade.relay`). While it waits, the learner's side
    answers call-backs: the reference calling a function the learner's code passed (a model), whose
    outputs keep their autograd graph here; the answer then says which gradients to send back into
    them (`backward`), so the learner's parameters get the reference's gradients. The wait is
    bounded by the probe's own time limit (SIGALRM interrupts the sleep)."""

    def __init__(self, folder):
        import os

        self.folder = folder
        self.n = 0
        os.makedirs(folder, exist_ok=True)

    def ask(self, request, functions=()):
        import os

        self.n += 1
        n, outputs = self.n, {}

        def serve():
            done = False
            for name in sorted(os.listdir(self.folder)):
                if name.startswith(f"cb-{n}-") and name.endswith(".json"):
                    call = _wait_json(self.folder, name)
                    try:
                        out = functions[call["k"]](*decode(call["args"]), **decode(call["kwargs"]))
                        outputs[call["m"]] = out
                        reply = {"value": encode(out.detach() if hasattr(out, "detach") else out, 0, [PROBE_BUDGET])}
                    except Exception as exc:  # told to the reference, which cannot answer then
                        reply = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                    _write_json(self.folder, f"cbans-{n}-{call['m']}.json", reply)
                    done = True
            return done

        _write_json(self.folder, f"req-{n}.json", request)
        answer = _wait_json(self.folder, f"ans-{n}.json", serve=serve if functions else None)
        if answer.get("error"):
            raise _RelayFailed(answer["error"])
        out = answer["answer"]
        for m, gradient in decode(answer.get("backward") or encode([])):
            if m in outputs and getattr(outputs[m], "requires_grad", False):
                outputs[m].backward(gradient)
        return out


def _serve(ns, folder):
    """Reference side of a live relay: answer each request file with the reference's value, in the
    probe's setting, until the grader says done."""
    import os
    import time

    n, pause = 0, 0.0002
    while True:
        if os.path.exists(os.path.join(folder, f"req-{n + 1}.json")):
            n += 1
            request = _wait_json(folder, f"req-{n}.json")
            try:
                answer, backward = _answer(ns[request["name"]], request, _callbacks(folder, n))
                out = {"answer": encode(answer, 0, [PROBE_BUDGET]), "backward": encode(backward, 0, [PROBE_BUDGET])}
            except _Answered:
                raise
            except Exception as exc:  # the grader reports it; nobody is blamed
                out = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            _write_json(folder, f"ans-{n}.json", out)
            pause = 0.0002
        elif os.path.exists(os.path.join(folder, "done")):
            raise _Answered(n)
        else:
            time.sleep(pause)
            pause = min(pause * 1.5, 0.005)


def _callbacks(folder, n):
    """For request n: make_proxy(k) -> a function that calls the learner's k-th function back
    through the relay; its outputs become leaves whose gradients go back in the answer."""
    leaves = []

    def make_proxy(k):
        def proxy(*args, **kwargs):
            import sys

            m = len(leaves) + 1
            _write_json(folder, f"cb-{n}-{m}.json", {"k": k, "m": m, "args": encode(args, 0, [PROBE_BUDGET]),
                                                     "kwargs": encode(kwargs, 0, [PROBE_BUDGET])})  # fmt: skip
            reply = _wait_json(folder, f"cbans-{n}-{m}.json", stop="done")
            if reply.get("error"):
                raise RuntimeError(f"the learner's function raised: {reply['error']}")
            value = decode(reply["value"])
            torch = sys.modules.get("torch")
            if torch is not None and isinstance(value, torch.Tensor) and value.is_floating_point() and torch.is_grad_enabled():
                value = value.detach().requires_grad_(True)
            leaves.append((m, value))
            return value

        return proxy

    make_proxy.leaves = leaves
    return make_proxy


def _relay_shim(name, table, own, channel=None):
    """Stands in for graded function `name`: answers with the reference's value for these inputs
    (sent by the grader in `table`), carrying the reference's gradient, or asks for it. Where the
    reference returns a function, the shim returns a stand-in function whose calls are relayed
    too. A function among the inputs (a model) is called back by the reference through the relay;
    without such inputs, a helper that returns nothing (run for its side effects) is the learner's own."""

    def call(stages):
        functions = _functions_in(stages)
        if functions:
            if channel is None:
                raise _Need({"name": name, "key": "", "stages": [], "grad": False})
            marked = _marked(stages, functions)
            _, blob = _relay_key(name, marked, False)
            request = {"name": name, "key": "", "stages": blob[1], "grad": False, "functions": len(functions)}
            answer = decode(channel.ask(request, functions))
            return answer.get("value")
        grad = _wants_grad(stages)
        key, blob = _relay_key(name, stages, grad)
        if key not in table:
            request = {"name": name, "key": key, "stages": blob[1], "grad": grad}
            if channel is None:
                raise _Need(request)
            table[key] = channel.ask(request)
        answer = decode(table[key])
        if answer.get("callable"):

            def returned(*args, **kwargs):
                return call(stages + [(args, kwargs)])

            returned.__name__ = returned.__qualname__ = f"{name}(...)"
            return returned
        if answer.get("own"):
            if own is None:
                raise NameError(f"name {name!r} is not defined")
            value = own
            for args, kwargs in stages:
                value = value(*args, **kwargs)
            return value
        value = answer["value"]
        if grad and answer.get("grads"):
            value = _with_gradient(value, _flat_inputs(stages), answer["grads"])
        return value

    def shim(*args, **kwargs):
        return call([(args, kwargs)])

    shim.__name__ = shim.__qualname__ = name
    return shim


def _is_function(value):
    import sys

    torch = sys.modules.get("torch")
    return callable(value) and not isinstance(value, type) and not (torch is not None and isinstance(value, torch.Tensor))


def _functions_in(stages):
    return [v for v in _flat_inputs(stages) if _is_function(v)]


def _marked(stages, functions):
    """The stages with each function replaced by its index (the reference calls it back by index)."""
    index = {id(f): k for k, f in enumerate(functions)}

    def mark(v):
        return {"$learn_function": index[id(v)]} if _is_function(v) else v

    return [(tuple(mark(a) for a in args), {k: mark(v) for k, v in kwargs.items()}) for args, kwargs in stages]


def _with_gradient(value, inputs, jacobians):
    """value, made differentiable: backward() through it multiplies by the reference's Jacobian
    for each input (a custom autograd function: exact, and no inf - inf when the inputs blew up)."""
    import torch

    pairs = [(inp, jac) for inp, jac in zip(inputs, jacobians) if jac is not None and isinstance(inp, torch.Tensor) and inp.requires_grad]
    if not pairs or not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return value

    class Relayed(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            return value.detach().clone()

        @staticmethod
        def backward(ctx, grad_out):
            return tuple(
                torch.tensordot(grad_out.to(jac.dtype), jac, dims=grad_out.dim()).reshape(inp.shape).to(inp.dtype) for inp, jac in pairs
            )

    return Relayed.apply(*[inp for inp, _ in pairs])


def _answer_kind(value):
    import sys

    torch = sys.modules.get("torch")
    if callable(value) and not (torch is not None and isinstance(value, torch.Tensor)):
        return {"callable": True}
    if encode(value).get("t") in ("foreign", "none"):  # a helper run for its side effects, or an odd object
        return {"own": True}
    return None


def _answer(fn, request, callbacks=None):
    """(answer, backward): the reference's value of fn for a relayed request (a chain of calls),
    with Jacobians with respect to every tensor input when gradients are wanted. A request that
    passes functions (a model) calls them back through the relay (`callbacks`); `backward` then
    holds the gradients of their outputs, [(call number, gradient)], for the learner's side."""
    import torch

    stages = [(list(decode(a)), decode(k)) for a, k in request["stages"]]
    if request.get("functions"):
        if callbacks is None:
            raise RuntimeError("a relayed call passes functions, but there is no channel to call them back")

        def unmark(v):
            return callbacks(v["$learn_function"]) if isinstance(v, dict) and set(v) == {"$learn_function"} else v

        value = fn
        for args, kwargs in stages:
            value = value(*[unmark(a) for a in args], **{k: unmark(v) for k, v in kwargs.items()})
        backward = [[m, leaf.grad] for m, leaf in callbacks.leaves if isinstance(leaf, torch.Tensor) and leaf.grad is not None]
        plain = value.detach() if isinstance(value, torch.Tensor) else value
        return {"value": plain}, backward
    return _plain_answer(fn, stages, request), []


def _plain_answer(fn, stages, request):
    import torch

    shape = [(len(args), sorted(kwargs)) for args, kwargs in stages]

    def run(flat):
        value, it = fn, iter(flat)
        for n, names in shape:
            args = [next(it) for _ in range(n)]
            kwargs = {k: next(it) for k in names}
            value = value(*args, **kwargs)
        return value

    inputs = _flat_inputs(stages)
    if not request.get("grad"):
        with torch.no_grad():
            value = run(inputs)
        return _answer_kind(value) or {"value": value, "grads": None}
    leaves = [v.detach().clone().requires_grad_(True) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for v in inputs]

    def call(*ts):
        it = iter(ts)
        return run([next(it) if isinstance(v, torch.Tensor) and v.requires_grad else v for v in leaves])

    tensors = [v for v in leaves if isinstance(v, torch.Tensor) and v.requires_grad]
    value = call(*tensors)
    kind = _answer_kind(value)
    if kind:
        return kind
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


def _origin(exc):
    """Whose code raised: "probe" when the innermost frame outside the libraries is the check's
    own probe (it choked on a value the learner's function returned), else "learner"."""
    import sys
    import traceback

    library = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix}) + ("<frozen",)
    own = [f.filename for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(library)]
    learner = [name for name in own if not name.startswith("<learn") or name == "<learn mistake>"]
    if learner:  # the learner's code was running (it may have called something the probe gave it)
        return "learner"
    if own and own[-1] == "<learn probe>":
        return "probe"
    return "harness" if own and own[-1].startswith("<learn harness") else "learner"


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


def _parameter_names(probe, ns):
    """Names of the graded function's parameters, for a plain call of it (else none)."""
    import inspect

    if probe.get("entry") != "call_graded":
        return []
    try:
        return list(inspect.signature(ns[probe["check"]]).parameters)
    except Exception:
        return []


def _snapshot(args, kwargs, names):
    """Copies of the tensors among a call's inputs, to see afterwards whether the call changed them."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return []
    found = []

    def walk(value, path, depth):
        if isinstance(value, torch.Tensor):
            found.append((path, value, value.detach().clone()))
        elif depth < 3 and isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]", depth + 1)
        elif depth < 3 and isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}[{key!r}]", depth + 1)

    for i, arg in enumerate(args):
        walk(arg, names[i] if i < len(names) else f"argument {i + 1}", 0)
    for key, arg in kwargs.items():
        walk(arg, key, 0)
    return found


def _changed(snapshot):
    """The inputs whose values (or shape, or dtype) differ from their copies: changed in place."""
    out = []
    for path, tensor, copy in snapshot:
        try:
            same = tensor.shape == copy.shape and tensor.dtype == copy.dtype
            same = same and bool(((tensor == copy) | ((tensor != tensor) & (copy != copy))).all())
        except Exception:
            same = False
        if not same:
            out.append(path)
    return out


def _blob(value, blobs):
    """An encoded argument, or the shared copy it refers to (harness._share_blobs)."""
    if isinstance(value, dict) and len(value) == 1 and "$learn_blob" in value:
        return blobs[value["$learn_blob"]]
    return value


def _run_probe(probe, ns, blobs=None):
    import time

    result = {"id": probe["id"]}
    started = time.perf_counter()
    undos = []
    try:
        if probe.get("isolate") is not None:  # graded helpers answer with the reference's values
            iso = probe["isolate"]
            channel = _LiveChannel(iso["live"]) if iso.get("live") else None
            table = dict(iso.get("table") or {})
            undos.append(_install(ns, {name: _relay_shim(name, table, ns.get(name), channel) for name in iso["deps"]}))
        if probe.get("respond") is not None:  # reference side: answer relayed requests, in the probe's setting
            respond = probe["respond"]

            def responder(*args, **kwargs):
                if respond.get("live"):
                    _serve(ns, respond["live"])
                raise _Answered([_answer(ns[r["name"]], r)[0] for r in respond["requests"]])

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
        args = decode(_blob(probe["args"], blobs))
        kwargs = decode(_blob(probe["kwargs"], blobs))
        if probe.get("seed") is not None:
            _learn_seed(probe["seed"])
        before = _snapshot(args, kwargs, _parameter_names(probe, ns))
        with _alarm(probe.get("timeout", 10)):
            value = fn(env, *args, **kwargs)
        result.update(status="ok", value=encode(value, 0, [PROBE_BUDGET]))
        changed = _changed(before)
        if changed:
            result["changed"] = changed
    except _Need as need:
        result.update(status="need", request=need.request)
    except _RelayFailed as exc:
        result.update(status="relay_failed", reason=f"the reference could not answer: {exc}")
    except _Answered as answered:
        result.update(status="answers", value=encode(answered.answers, 0, [PROBE_BUDGET]))
    except ProbeTimeout:
        result.update(status="timeout", seconds=probe.get("timeout", 10))
    except KeyboardInterrupt:
        result.update(status="interrupted")
    except BaseException as exc:  # SystemExit from learner code included
        result.update(status="exception", ename=type(exc).__name__, evalue=str(exc)[:2000], traceback=_learner_traceback(exc))
        result["origin"] = _origin(exc)
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
    hung = set(job.get("hung") or [])  # graded names whose calls never returned (this round or an earlier one)
    for probe in job["probes"]:
        _progress(job, "start", probe["id"])
        result = _judged_once(probe, hung) or _run_probe(probe, ns, job.get("blobs") or {})
        if result.get("status") == "timeout" and _plain_call(probe) and probe.get("check"):
            hung.add(probe["check"])
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


def _plain_call(probe):
    """A call of the notebook's own code (not a mistake, a mutant or a relay round)."""
    return not probe.get("replace") and probe.get("respond") is None


def _judged_once(probe, hung):
    """A function that never returned is judged once: its other calls, and calls of the graded
    functions that use it, are not made again (each would wait for its whole time limit)."""
    if not _plain_call(probe):
        return None
    if probe.get("check") and probe["check"] in hung:
        return {"id": probe["id"], "status": "timeout", "seconds": 0, "judged_once": True}
    blocked = [] if probe.get("isolate") is not None else [d for d in probe.get("deps") or [] if d in hung]
    if blocked:
        return {"id": probe["id"], "status": "helper_hung", "names": blocked}
    return None


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
