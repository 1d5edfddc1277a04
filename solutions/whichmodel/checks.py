"""How the which-model notebook is graded.

    count_parameters, layer_summary, accuracy, pareto_front, top_probs
        values against the reference, on models and data the probes build in the kernel
    seconds_per_sample
        the METHOD, never a wall-clock number compared with another machine's:
          * probe models that sleep a known time per sample, record the mode and the autograd
            state of every call, and (one of them) are slow on their first call only;
          * the zoo's four models timed by the learner's function, ranked like the reference's
    results
        the notebook's own measurements: every zoo model, accuracies equal to the reference's
        (the weights are shipped, so they are exact); the report draws both charts

    sleepy model (2 ms per sample, +1 s on its first call)
        learner's seconds_per_sample ──► per sample?  (~0.5e-3; a total is batch-size times that)
                                     ──► warm-up?     (the cold model must read like a warm one)
                                     ──► eval mode, autograd off? (recorded on every call)

Timings are judged with wide margins (a sleep never returns early; a busy machine only makes
it later), so these checks hold under load.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from grader.checks import Case, Mistake, Tolerance, Verdict, check, compare, line_plot

HERE = Path(__file__).resolve().parent
ZOO = ("linear", "cnn_small", "cnn_medium", "cnn_large")
SLEEP_PER_SAMPLE = 2e-3  # seconds: 16 ms for a batch of 8, long against a busy scheduler's latency
COLD_EXTRA = 1.0  # seconds, added to a cold model's first call
RANK_GAP = 3.0  # the zoo's models differ 4x or more in cost; a closer pair in the reference's timing may swap
PER_SAMPLE_SLACK = (0.8, 3.0)  # measured / true per-sample time must lie in this range

# ---------------------------------------------------------------------------------------------
# probes (run inside kernels; self-contained)


def probe_timing_method(ns, per_sample, cold_extra):
    """The learner's seconds_per_sample on sleepy models whose true cost is known."""
    import time

    import torch
    from torch import nn

    class Sleepy(nn.Module):
        def __init__(self, cold=0.0, hiccup=0.0):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))
            self.cold, self.hiccup, self.calls = cold, hiccup, []

        def forward(self, x):
            self.calls.append((self.training, torch.is_grad_enabled()))
            extra = self.cold if len(self.calls) == 1 else self.hiccup if len(self.calls) == 6 else 0.0  # call 6: a timed one
            time.sleep(per_sample * len(x) + extra)
            return x.flatten(1)[:, :10] * self.w

    fn = ns["seconds_per_sample"]
    out, calls = {}, []
    runs = (("warm8", 8, 0.0, 0.0, {}), ("warm32", 32, 0.0, 0.0, {}), ("cold8", 8, cold_extra, 0.0, {}),
            ("hiccup8", 8, 0.0, 0.5, {}), ("counted", 8, 0.0, 0.0, {"warmup": 2, "repeats": 5}))  # fmt: skip
    for key, batch, cold, hiccup, options in runs:
        model = Sleepy(cold, hiccup).train()  # as a model comes out of training
        value = fn(model, torch.rand(batch, 1, 4, 4), **options)
        out[key] = float(value) if isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1) else None
        out[key + "_type"] = type(value).__name__
        if key == "counted":
            out["counted_calls"] = len(model.calls)
        calls += model.calls
    out["calls"] = len(calls)
    out["train_mode_calls"] = sum(1 for training, _ in calls if training)
    out["grad_calls"] = sum(1 for _, grad in calls if grad)
    return out


def probe_timing_rank(ns, names):
    """The learner's seconds_per_sample on the zoo's models (fresh weights: timing only), on one
    thread and a batch of 256, so that each call takes long enough to rank under load."""
    import torch
    import zoo

    torch.manual_seed(0)
    xb = torch.rand(256, 3, 28, 28)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = {}
    try:
        for name in names:
            value = ns["seconds_per_sample"](zoo.make_model(name), xb)
            times[name] = float(value)
    finally:
        torch.set_num_threads(threads)
    return times


def probe_count(ns, frozen):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    if frozen:
        for p in model[0].parameters():
            p.requires_grad_(False)
    return ns["count_parameters"](model)


def probe_layer_summary(ns, name, path):
    import zoo

    value = ns["layer_summary"](zoo.make_model(name), path)
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[2], dict):  # shapes as plain tuples of ints
        value = (value[0], value[1], {str(k): tuple(int(d) for d in v) for k, v in value[2].items()})
    return value


def probe_accuracy(ns, weight, bias, batches):
    import torch
    from torch import nn

    modes = []

    class Recorded(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                self.linear.weight.copy_(weight)
                self.linear.bias.copy_(bias)

        def forward(self, x):
            modes.append((self.training, torch.is_grad_enabled()))
            return self.linear(x)

    value = ns["accuracy"](Recorded().train(), batches)
    return {"value": value, "train_mode_calls": sum(t for t, _ in modes), "grad_calls": sum(g for _, g in modes)}


def probe_top_probs(ns, image, k):
    """`image`: one of the pack's 8x8 digits, scaled up here the way zoo.py scales them."""
    import os
    import tempfile

    import torch
    import zoo
    from fastai.vision.all import PILImage
    from PIL import Image

    path = os.path.join(tempfile.mkdtemp(prefix="top-", dir=os.getcwd()), "digit.png")
    Image.fromarray(zoo._to_image_size(image[None].numpy())[0]).save(path)
    value = ns["top_probs"](ns["learn"], PILImage.create(path), k)
    if not isinstance(value, dict):
        return value
    out = {}
    for label, prob in value.items():  # the lecture's dict(zip(vocab, probs)) holds 0-d tensors: read them as floats
        out[str(label)] = float(prob) if isinstance(prob, torch.Tensor) and prob.numel() == 1 else prob
    return {"items": list(out.items()), "vocab": [str(v) for v in ns["learn"].dls.vocab]}


def probe_results(ns, names):
    results = ns["results"]
    if not isinstance(results, dict):
        return {"type": type(results).__name__}
    out = {}
    for name, value in results.items():
        try:
            secs, acc = value
            out[str(name)] = [float(secs), float(acc)]
        except (TypeError, ValueError):
            out[str(name)] = None
    return {"results": out}


def count_parameters_tensors(model):
    return len(list(model.parameters()))


def count_parameters_trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def layer_summary_direct(model, path):
    module = model.get_submodule(path)
    return path, type(module).__name__, {name: tuple(p.shape) for name, p in module.named_parameters(recurse=False)}


def layer_summary_class_repr(model, path):
    module = model.get_submodule(path)
    return path, str(type(module)), {name: tuple(p.shape) for name, p in module.named_parameters()}


def accuracy_batch_mean(model, dl):
    import torch

    model.eval()
    with torch.no_grad():
        accs = [float((model(xb).argmax(dim=1) == yb).float().mean()) for xb, yb in dl]
    return sum(accs) / len(accs)


def pareto_slower_is_better(results):
    def dominates(a, b):
        return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])

    front = [name for name, r in results.items() if not any(dominates(other, r) for other in results.values())]
    return sorted(front, key=lambda name: results[name][0])


def pareto_drops_ties(results):
    def dominates(a, b):
        return a[0] <= b[0] and a[1] >= b[1]

    front = [n for n, r in results.items() if not any(dominates(o, r) for m, o in results.items() if m != n)]
    return sorted(front, key=lambda name: results[name][0])


def pareto_unsorted(results):
    def dominates(a, b):
        return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])

    return [name for name, r in results.items() if not any(dominates(other, r) for other in results.values())]


def top_probs_unsorted(learn, img, k=3):
    _, _, probs = learn.predict(img)
    return dict(list(zip(learn.dls.vocab, probs.tolist()))[:k])


def top_probs_ignores_k(learn, img, k=3):
    _, _, probs = learn.predict(img)
    return dict(sorted(zip(learn.dls.vocab, probs.tolist()), key=lambda pair: pair[1], reverse=True))


# ---------------------------------------------------------------------------------------------
# judges (run in the grader)


def judge_timing_method(got, expected, tol):
    if type(got) is not dict:
        return Verdict(False, "could not time the probe models", kind="wrong_type")
    values = {k: got.get(k) for k in ("warm8", "warm32", "cold8")}
    bad = next((k for k, v in values.items() if type(v) is not float or not math.isfinite(v)), None)
    if bad:
        return Verdict(False, f"seconds_per_sample returned a {got.get(bad + '_type')}; return the time as one number, in seconds",
                       kind="wrong_type")  # fmt: skip
    if got.get("train_mode_calls"):
        return Verdict(False, f"{got['train_mode_calls']} of the {got['calls']} calls ran the model in training mode: call "
                       "model.eval() before timing (dropout and batch norm work differently, and slower, while training)",
                       kind="train_mode")  # fmt: skip
    if got.get("grad_calls"):
        return Verdict(False, f"{got['grad_calls']} of the {got['calls']} calls ran with autograd on: time inside "
                       "`with torch.no_grad():` - recording the graph for backward() is not part of inference", kind="autograd")  # fmt: skip
    lo, hi = (SLEEP_PER_SAMPLE * s for s in PER_SAMPLE_SLACK)
    true = f"{SLEEP_PER_SAMPLE * 1e3:g} ms"
    warm8, warm32, cold8 = values["warm8"], values["warm32"], values["cold8"]
    if not (lo <= warm8 <= hi and lo <= warm32 <= hi):
        if 6 * lo <= warm8 and 24 * lo <= warm32:
            return Verdict(False, f"on a model that takes {true} per image you measured {warm8 * 1e3:.3g} ms for a batch of 8 and "
                           f"{warm32 * 1e3:.3g} ms for a batch of 32: that is the time per batch, not per image", kind="total")  # fmt: skip
        return Verdict(False, f"on a model that takes {true} per image you measured {warm8 * 1e3:.3g} ms (batch of 8) and "
                       f"{warm32 * 1e3:.3g} ms (batch of 32) per image: return seconds per sample", kind="values")  # fmt: skip
    if cold8 > max(hi, 2 * warm8):
        return Verdict(False, f"a model that is {COLD_EXTRA:g} s slow on its first call only read as {cold8 * 1e3:.3g} ms per image, "
                       f"where a warm one reads {warm8 * 1e3:.3g} ms: run the model a few times before timing (warm-up) and take "
                       "the median of several timed runs", kind="no_warmup")  # fmt: skip
    if got.get("counted_calls") != 7:
        return Verdict(False, f"seconds_per_sample(model, xb, warmup=2, repeats=5) ran the model {got.get('counted_calls')} times: "
                       "it should run it warmup times to warm up, then repeats times to time it (7 in all)", kind="behaviour")  # fmt: skip
    hiccup8 = got.get("hiccup8")
    if type(hiccup8) is float and hiccup8 > max(hi, 2 * warm8):
        return Verdict(False, f"one slow timed run (half a second, as when the machine is busy for a moment) moved your result from "
                       f"{warm8 * 1e3:.3g} to {hiccup8 * 1e3:.3g} ms per image: take the median of the timed runs, which one outlier "
                       "does not move", kind="mean_not_median")  # fmt: skip
    return Verdict(True, f"per sample, warm-up, eval mode and no_grad: {warm8 * 1e3:.3g} ms per image measured where {true} is true")


def judge_timing_rank(got, expected, tol):
    if type(got) is not dict or type(expected) is not dict or set(got) != set(expected):
        return compare(got, expected, tol)
    if any(type(v) is not float or not v > 0 for v in got.values()):
        return Verdict(False, f"seconds_per_sample gave {got} for the zoo: expected a positive number of seconds each", kind="values")
    mine = sorted(got, key=got.get)
    ref = sorted(expected, key=expected.get)
    # a swap is only an error between models whose reference times differ by more than RANK_GAP
    for i, a in enumerate(ref):
        for b in ref[i + 1 :]:
            if expected[b] > RANK_GAP * expected[a] and got[b] <= got[a]:
                return Verdict(False, f"your timings rank the zoo {mine} (fastest first); the reference's rank it {ref}, "
                               f"with {b} more than {RANK_GAP:g} times as slow as {a}. Time several runs after a warm-up and take the median",
                               kind="ranking")  # fmt: skip
    return Verdict(True, f"ranks the zoo {mine}, as the reference does")


def judge_accuracy(got, expected, tol):
    if type(got) is dict and type(expected) is dict:
        if got.get("train_mode_calls"):
            return Verdict(False, "accuracy ran the model in training mode: call model.eval() first", kind="train_mode")
        verdict = compare(got.get("value"), expected["value"], tol, "['value']")
        if not verdict.ok:
            return verdict
    return compare(got, expected, tol)


def judge_top_probs(got, expected, tol):
    if type(got) is not dict or "items" not in got:
        return Verdict(False, f"top_probs returned {type(got).__name__}; return a dict {{label: probability}}", kind="wrong_type")
    items, want = got["items"], expected["items"]
    labels, want_labels = [k for k, _ in items], [k for k, _ in want]
    strange = [k for k in labels if k not in got["vocab"]]
    if strange:
        return Verdict(False, f"top_probs has keys {strange[:3]}, which are not labels of learn.dls.vocab", kind="values")
    if len(items) != len(want):
        return Verdict(False, f"top_probs returned {len(items)} labels; with k={len(want)} it should return {len(want)}", kind="length")
    verdict = compare([v for _, v in items], [v for _, v in want], tol)
    if labels != want_labels or not verdict.ok:
        return Verdict(False, f"top_probs returned the labels {labels} where the {len(want)} most probable, most probable "
                       f"first, are {want_labels}", kind="values")  # fmt: skip
    return Verdict.passed()


def judge_results(got, expected, tol):
    if type(got) is not dict or "results" not in got:
        return Verdict(False, f"results is a {got.get('type') if type(got) is dict else '?'}; make it a dict name -> "
                       "(seconds_per_sample, accuracy)", kind="wrong_type")  # fmt: skip
    mine, ref = got["results"], expected["results"]
    if set(mine) != set(ref):
        return Verdict(False, f"results has the models {sorted(mine)}; measure the whole zoo: {sorted(ref)}", kind="keys")
    broken = [n for n, v in mine.items() if v is None]
    if broken:
        return Verdict(False, f"results[{broken[0]!r}] is not a pair (seconds_per_sample, accuracy)", kind="wrong_type")
    for name in ref:
        secs, acc = mine[name]
        if not 0 < secs < 1:
            return Verdict(False, f"results[{name!r}] says {secs:g} seconds per image: expected seconds per sample", kind="values")
        if abs(acc - ref[name][1]) > 1e-6:
            return Verdict(False, f"results[{name!r}] gives accuracy {acc:.4f}; on dls.valid this model's accuracy is "
                           f"{ref[name][1]:.4f}", kind="values")  # fmt: skip
    return Verdict.passed()


def speed_chart(got, expected, cases):
    """The learner's accuracy-vs-speed chart next to the reference's (kind "line" plots)."""
    plots = {}
    for key, value in (("yours", got[0] if got else None), ("reference", expected[0] if expected else None)):
        if type(value) is not dict or type(value.get("results")) is not dict:
            continue
        rows = sorted((v[0] * 1e6, v[1] * 100, n) for n, v in value["results"].items() if v is not None)
        if rows:
            title = f"{key}: accuracy against speed ({', '.join(n for *_, n in rows)})"
            plots[key] = line_plot(title, [r[0] for r in rows], {key: [r[1] for r in rows]}, xlabel="µs per image",
                                   ylabel="validation accuracy (%)")  # fmt: skip
    return plots


# ---------------------------------------------------------------------------------------------
# checks


@check(
    "count_parameters",
    mistakes=[
        Mistake("tensors", "You counted parameter tensors (one per weight matrix or bias vector); the number of parameters "
                "counts their entries: a 3x3 weight matrix holds 9.",
                count_parameters_tensors),
        Mistake("trainable_only", "You counted only the trainable parameters; frozen ones are part of the model too.",
                count_parameters_trainable),
    ],
)  # fmt: skip
def count_parameters_cases(rng):
    yield Case.call(False, probe=probe_count, label="a small CNN", show="count_parameters(conv, batch norm, linear)")
    yield Case.call(True, probe=probe_count, label="with a frozen first layer", show="count_parameters(model with frozen conv)")


@check(
    "layer_summary",
    mistakes=[
        Mistake("direct_only", "You listed only the parameters held by the module itself (recurse=False); include those of "
                "its sub-modules, as named_parameters() does by default.", layer_summary_direct),
        Mistake("class_repr", "You gave the class as str(type(m)), \"<class '...'>\"; the summary wants its plain name "
                "(Conv2d, Linear), which type(m).__name__ gives.", layer_summary_class_repr),
    ],
)  # fmt: skip
def layer_summary_cases(rng):
    for name, path in (("cnn_medium", "0.0"), ("cnn_medium", "1"), ("cnn_small", "4"), ("linear", "1"), ("cnn_large", "2.1")):
        yield Case.call(name, path, probe=probe_layer_summary, label=f"{name} at '{path}'",
                        show=f"layer_summary(zoo.make_model({name!r}), {path!r})")  # fmt: skip


@check(
    "accuracy",
    mistakes=[
        Mistake("batch_mean", "You averaged the per-batch accuracies; with a smaller last batch that is not the share of all "
                "images. Count the correct answers and divide by the number of images.", accuracy_batch_mean),
    ],
)  # fmt: skip
def accuracy_cases(rng):
    weight, bias = rng.randn(3, 5), rng.randn(3)

    def batch(n, wrong=False):
        """Labels: the model's prediction for two images in three (the rest at random), or all wrong."""
        x = rng.randn(n, 5)
        predicted = (x @ weight.T + bias).argmax(dim=-1)
        if wrong:
            return x, (predicted + 1) % 3
        return x, torch.tensor([int(p) if rng.uniform(0, 1) < 0.67 else rng.randint(0, 2) for p in predicted])

    # a well-predicted set (no other rule scores the same), and a last, short batch all wrong: the mean
    # of the batches' accuracies is not the share of all the images
    batches = [batch(16), batch(16), batch(3, wrong=True)]
    yield Case.call(weight, bias, batches, probe=probe_accuracy, judge=judge_accuracy, random=True,
                    label="batches of 16, 16 and 3", show="accuracy(model, dl) with batches of 16, 16 and 3 images")  # fmt: skip


@check("seconds_per_sample")
def seconds_per_sample_cases(rng):
    yield Case.call(SLEEP_PER_SAMPLE, COLD_EXTRA, probe=probe_timing_method, judge=judge_timing_method, reference=False,
                    label="the method", timeout=120,
                    show=f"seconds_per_sample on models taking {SLEEP_PER_SAMPLE * 1e3:g} ms per image (one slow on its first call)")  # fmt: skip
    yield Case.call(list(ZOO), probe=probe_timing_rank, judge=judge_timing_rank, label="ranking the zoo", timeout=120,
                    show="seconds_per_sample(model, xb) for the four zoo models, xb of 256 images, one thread")  # fmt: skip


def _random_results(rng, n):
    return {f"m{i}": (rng.uniform(1e-5, 1e-3, 7), rng.uniform(0.5, 1.0, 3)) for i in range(n)}


@check(
    "pareto_front",
    mistakes=[
        Mistake("slower_is_better", "Fewer seconds per sample is better: a model dominates another when it is at least as fast "
                "(seconds <=) and at least as accurate.", pareto_slower_is_better),
        Mistake("drops_ties", "Two models with the same numbers do not dominate each other; your function drops both. Require "
                "strictly better on at least one count.", pareto_drops_ties),
        Mistake("unsorted", "The front is right, but return it fastest first (sorted by seconds per sample).", pareto_unsorted),
    ],
)  # fmt: skip
def pareto_front_cases(rng):
    yield Case.call({"big": (3e-4, 0.99), "small": (2e-5, 0.95), "mid": (1e-4, 0.94), "linear": (5e-6, 0.90)}, label="four models")
    yield Case.call({"b": (2e-4, 0.97), "a": (1e-4, 0.97), "c": (1e-4, 0.97), "d": (5e-5, 0.80)}, label="ties")
    yield Case.call({"x": (1e-4, 0.95), "y": (1e-4, 0.90), "z": (5e-5, 0.85)}, label="as fast, more accurate",
                    show="pareto_front with x and y equally fast and x more accurate: x dominates y")  # fmt: skip
    yield Case.call(_random_results(rng, 8), random=True, label="eight random models")
    yield Case.call(_random_results(rng, 3), random=True, label="three random models")


@check(
    "top_probs",
    requires=("top_probs", "learn"),
    callables=("top_probs",),
    mistakes=[
        Mistake("unsorted", "You kept the first k labels of the vocab; sort by probability, most probable first, then keep k.",
                top_probs_unsorted),
        Mistake("ignores_k", "You returned every label; keep only the k most probable.", top_probs_ignores_k),
    ],
)  # fmt: skip
def top_probs_cases(rng):
    import numpy as np

    with np.load(HERE / "digits.npz") as data:
        images = data["images"]
    for k in (3, 1):
        image = torch.from_numpy(images[rng.randint(0, len(images) - 1)].copy())
        yield Case.call(image, k, probe=probe_top_probs, judge=judge_top_probs, random=True, label=f"k={k}",
                        tol=Tolerance(rtol=1e-4, atol=1e-5), show=f"top_probs(learn, a digit image, {k})")  # fmt: skip


@check("results", callables=(), series=speed_chart)
def results_cases(rng):
    yield Case.call(list(ZOO), probe=probe_results, judge=judge_results, label="your measurements",
                    show="results: name -> (seconds_per_sample, accuracy) for the zoo")  # fmt: skip
