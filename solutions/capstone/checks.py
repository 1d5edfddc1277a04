"""How the ten-digit capstone (chapter 4's further research) is graded.

    softmax, cross_entropy   values against the reference, extreme logits included (stability)
    BasicOptim               step / zero_grad on given parameters and gradients
    simple_net               layer types and sizes (the hidden width is the learner's choice)
    fit, validate            the learner's Learner class on tiny data the grader builds, with a
                             recording optimiser and PyTorch's own loss, against the reference
    ten_digits               the notebook's trained `learn.model` on 400 held-out digits

The held-out digits (holdout.npz) are not among the files copied next to the notebook; a probe
receives the images, as uint8, only after the notebook has run and reports predicted class
indices. The labels never leave this process: the accuracy is computed here, and the check's
`series` carries it (kind "metric") for the gradebook's leaderboard.

Figures behind the bar (`python make_data.py spread -n 10`, CPU): the reference recipe
(simple_net 784-64-10, BasicOptim at lr=0.2, 20 epochs, batches of 64) gets 94.25-96.25% of the
holdout right over seeds 0-9 (mean 95.4%, std 0.6 points). At lr=0.5 two seeds in ten diverge
(68% and 80%): the bar, 90%, is well under the reference's worst seed and well over anything a
broken loss or optimiser reaches.
"""

from __future__ import annotations

import bisect
import functools
from pathlib import Path

import numpy as np
import torch

from grader.checks import Case, Mistake, Tolerance, Verdict, check, compare, line_plot

HERE = Path(__file__).resolve().parent
ACCURACY_BAR = 0.90
# holdout accuracy of the reference solution for torch.manual_seed(0..9) (make_data.py spread)
REFERENCE_SPREAD = (0.96, 0.9425, 0.955, 0.9625, 0.955, 0.955, 0.9525, 0.955, 0.95, 0.945)
STABLE = Tolerance(rtol=1e-5, atol=1e-6, equal_nan=True)  # a mistake's nan matches a learner's nan


@functools.lru_cache(maxsize=1)
def holdout() -> tuple[torch.Tensor, torch.Tensor]:
    """(images as (400, 28, 28) uint8, labels as int64). Only the images are ever sent to a kernel."""
    with np.load(HERE / "holdout.npz") as data:
        return torch.from_numpy(data["images"].copy()), torch.from_numpy(data["labels"].astype(np.int64))


def rank_against_reference(acc: float) -> str:
    """Where an accuracy falls among the reference solution's seeds, in words."""
    spread = sorted(REFERENCE_SPREAD)
    below = bisect.bisect_left(spread, acc - 1e-9)  # seeds strictly below (a tie is not beaten)
    lo, hi, mean = spread[0], spread[-1], sum(spread) / len(spread)
    where = f"above {below} of the reference solution's {len(spread)} seeds" if below else "below every seed of the reference solution"
    return f"{where} (reference {lo:.1%} to {hi:.1%}, mean {mean:.1%})"


# ---------------------------------------------------------------------------------------------
# probes and mistakes (run inside kernels; self-contained)


def probe_simple_net(ns, xb):
    from torch import nn

    net = ns["simple_net"]
    if net is Ellipsis:
        return {"todo": "simple_net"}
    if not isinstance(net, nn.Module):
        return {"module": False, "type": type(net).__name__}
    layers = list(net.children())
    info = {"module": True, "layers": [type(m).__name__ for m in layers]}
    info["linear"] = [[int(m.in_features), int(m.out_features)] for m in layers if isinstance(m, nn.Linear)]
    try:
        import torch

        with torch.no_grad():
            info["out_shape"] = list(net(xb).shape)
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return info


def probe_basic_optim(ns, w, gw, b, gb, lr):

    p1, p2 = w.clone().requires_grad_(), b.clone().requires_grad_()
    p1.grad, p2.grad = gw.clone(), gb.clone()
    opt = ns["BasicOptim"]([p1, p2], lr)
    opt.step()
    step = [p1.detach().clone(), p2.detach().clone()]
    opt.zero_grad()
    cleared = all(p.grad is None or not bool(p.grad.any()) for p in (p1, p2))
    p1.grad, p2.grad = gw.clone() * 2, gb.clone() * 2
    opt.step()
    return {"step": step, "cleared": cleared, "second_step": [p1.detach().clone(), p2.detach().clone()]}


def probe_fit(ns, train, valid, epochs, lr, seed):
    """Learner.fit on fixed batches, with PyTorch's loss and a recording SGD as opt_func; `losses`
    is the loss each optimiser step followed (the last one computed before it), for the report."""
    import contextlib
    import io

    import torch
    from torch import nn

    log = []
    last_loss = []

    def loss_func(preds, targets):
        loss = torch.nn.functional.cross_entropy(preds, targets)
        last_loss[:] = [float(loss.detach())]
        return loss

    class RecordingSGD:
        def __init__(self, params, lr):
            self.params, self.lr = list(params), lr
            log.append(("init", len(self.params), float(lr)))

        def step(self, *args, **kwargs):
            log.append(("step", *last_loss))
            with torch.no_grad():
                for p in self.params:
                    p -= self.lr * p.grad

        def zero_grad(self, *args, **kwargs):
            log.append(("zero_grad",))
            for p in self.params:
                p.grad = None

    class Loaders:
        def __init__(self, train, valid):
            self.train, self.valid = train, valid

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    learn = ns["Learner"](Loaders(train, valid), model, loss_func=loss_func, opt_func=RecordingSGD)
    with contextlib.redirect_stdout(io.StringIO()):
        learn.fit(epochs, lr)
    inits = [e for e in log if e[0] == "init"]
    return {
        "optimisers": len(inits),
        "init": list(inits[0][1:]) if inits else None,
        "steps": sum(e[0] == "step" for e in log),
        "zero_grads": sum(e[0] == "zero_grad" for e in log),
        "weights": [p.detach().clone() for p in model.parameters()],
        "losses": [e[1] for e in log if e[0] == "step" and len(e) > 1],
    }


def probe_validate(ns, weight, bias, train, valid):
    import torch
    from torch import nn

    class Loaders:
        def __init__(self, train, valid):
            self.train, self.valid = train, valid

    model = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.copy_(bias)
    learn = ns["Learner"](Loaders(train, valid), model, loss_func=torch.nn.functional.cross_entropy)
    return learn.validate()


def probe_holdout(ns, images):
    import torch
    from torch import nn

    learn = ns["learn"]
    if learn is Ellipsis:
        return {"todo": "learn"}
    model = getattr(learn, "model", None)
    if model is Ellipsis:
        return {"todo": "simple_net"}
    if not isinstance(model, nn.Module):
        return {"problem": f"learn.model is a {type(model).__name__}, not a PyTorch model"}
    x = images.float().div(255).reshape(len(images), -1)
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(images):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return {"problem": f"learn.model maps a batch of {len(images)} images, shape ({len(images)}, 784), to {shape}"}
    name = ns.get("leaderboard_name")
    name = name[:200] if isinstance(name, str) and name.strip() else None  # opt-in display name (plain str only)
    return {"preds": out.argmax(dim=1), "n_out": int(out.shape[1]), "finite": bool(torch.isfinite(out).all()), "display_name": name}


def softmax_no_max(x):
    import torch

    e = torch.exp(x)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_wrong_axis(x):
    import torch

    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=0, keepdim=True)


def cross_entropy_no_max(preds, targets):
    import torch

    log_probs = preds - preds.exp().sum(dim=-1, keepdim=True).log()
    return -log_probs[torch.arange(len(targets)), targets].mean()


def cross_entropy_log_of_softmax(preds, targets):
    import torch

    e = torch.exp(preds - preds.max(dim=-1, keepdim=True).values)
    probs = e / e.sum(dim=-1, keepdim=True)
    return -probs[torch.arange(len(targets)), targets].log().mean()


def cross_entropy_wrong_axis(preds, targets):
    import torch

    shifted = preds - preds.max(dim=0, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=0, keepdim=True).log()
    return -log_probs[torch.arange(len(targets)), targets].mean()


def cross_entropy_one_hot(preds, targets):

    shifted = preds - preds.max(dim=-1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()
    return -(log_probs * targets).sum(dim=-1).mean()


class BasicOptimNoZeroGrad:
    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def step(self, *args, **kwargs):
        for p in self.params:
            p.data -= p.grad.data * self.lr

    def zero_grad(self, *args, **kwargs):
        pass


class BasicOptimUphill:
    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def step(self, *args, **kwargs):
        for p in self.params:
            p.data += p.grad.data * self.lr

    def zero_grad(self, *args, **kwargs):
        for p in self.params:
            p.grad = None


class LearnerOneEpoch:
    def __init__(self, dls, model, loss_func=None, opt_func=None):
        self.dls, self.model, self.loss_func, self.opt_func = dls, model, loss_func, opt_func

    def fit(self, epochs, lr):
        self.opt = self.opt_func(self.model.parameters(), lr)
        for xb, yb in self.dls.train:
            self.loss_func(self.model(xb), yb).backward()
            self.opt.step()
            self.opt.zero_grad()


class LearnerValidatesLastBatch:
    def __init__(self, dls, model, loss_func=None, opt_func=None):
        self.dls, self.model, self.loss_func, self.opt_func = dls, model, loss_func, opt_func

    def validate(self):
        import torch

        with torch.no_grad():
            xb, yb = list(self.dls.valid)[-1]
            return round((self.model(xb).argmax(dim=-1) == yb).float().mean().item(), 4)


class LearnerNoZeroGrad:
    def __init__(self, dls, model, loss_func=None, opt_func=None):
        self.dls, self.model, self.loss_func, self.opt_func = dls, model, loss_func, opt_func

    def fit(self, epochs, lr):
        self.opt = self.opt_func(self.model.parameters(), lr)
        for _ in range(epochs):
            for xb, yb in self.dls.train:
                self.loss_func(self.model(xb), yb).backward()
                self.opt.step()

    def validate(self):
        import torch

        with torch.no_grad():
            accs = [(self.model(xb).argmax(dim=-1) == yb).float().mean() for xb, yb in self.dls.valid]
        return round(torch.stack(accs).mean().item(), 4)


class LearnerValidatesOnTrain:
    def __init__(self, dls, model, loss_func=None, opt_func=None):
        self.dls, self.model, self.loss_func, self.opt_func = dls, model, loss_func, opt_func

    def validate(self):
        import torch

        with torch.no_grad():
            accs = [(self.model(xb).argmax(dim=-1) == yb).float().mean() for xb, yb in self.dls.train]
        return round(torch.stack(accs).mean().item(), 4)


# ---------------------------------------------------------------------------------------------
# judges (run in the grader)


def todo(got) -> Verdict | None:
    if type(got) is dict and "todo" in got:
        return Verdict(False, f"`{got['todo']}` is not written yet (it is still `...`)", kind="not_implemented")
    return None


def stable(what: str):
    """compare(), with a plain-words explanation when extreme scores give nan or inf."""

    def judge(got, expected, tol):
        verdict = compare(got, expected, tol)
        if not verdict.ok and verdict.kind == "nonfinite":
            verdict.message = (
                f"{what} overflows on large scores: exp(1000.) is inf in floating point. Subtract each row's maximum "
                "from the scores before exponentiating - the result is the same, and nothing overflows.\n" + verdict.message
            )
        return verdict

    return judge


def judge_simple_net(got, expected, tol):
    if todo(got):
        return todo(got)
    if type(got) is not dict or not got.get("module"):
        kind = got.get("type") if type(got) is dict else type(got).__name__
        return Verdict(False, f"simple_net is a {kind}, not a model: it should be a PyTorch module made of layers, which can be called on a batch",
                       kind="wrong_type")  # fmt: skip
    layers, linear = got.get("layers"), got.get("linear") or []
    if layers != ["Linear", "ReLU", "Linear"]:
        return Verdict(False, f"simple_net's layers are {layers}; a two-layer network is Linear, ReLU, Linear "
                       "(without the ReLU, two linear layers are just one linear layer)", kind="layers")  # fmt: skip
    (n_in, hidden), (hidden2, n_out) = linear
    if n_in != 28 * 28:
        return Verdict(False, f"simple_net's first layer takes {n_in} inputs; an image has 28*28 = 784 pixels", kind="shape")
    if hidden2 != hidden:
        return Verdict(False, f"the first layer gives {hidden} values but the second expects {hidden2}", kind="shape")
    if n_out != 10:
        return Verdict(False, f"simple_net ends in {n_out} output(s); ten classes need ten scores, one per digit", kind="shape")
    if "error" in got:
        return Verdict(False, f"simple_net failed on a batch of shape (5, 784): {got['error']}", kind="exception")
    return Verdict(True, f"784 -> {hidden} -> 10")


def judge_basic_optim(got, expected, tol):
    if type(got) is not dict or type(expected) is not dict:
        return compare(got, expected, tol)
    verdict = compare(got.get("step"), expected["step"], tol, "['step']")
    if not verdict.ok:
        verdict.message = "after step() the parameters are not p - lr * grad.\n" + verdict.message
        return verdict
    if got.get("cleared") is not True:
        return Verdict(False, "after zero_grad() the gradients are still there, so the next backward() would add to them",
                       kind="behaviour")  # fmt: skip
    return compare(got, expected, tol)


def judge_validate(got, expected, tol):
    """Values as the reference's, and rounded to 4 digits as the docstring says."""
    if type(got) is float and got == got and got != round(got, 4):
        return Verdict(False, f"validate() returned {got!r}: the accuracy should be rounded to 4 digits", kind="values")
    return compare(got, expected, tol)


def judge_fit(got, expected, tol):
    if type(got) is not dict or type(expected) is not dict:
        return compare(got, expected, tol)
    if got.get("optimisers") != 1:
        n = got.get("optimisers")
        return Verdict(False, f"fit() created the optimiser {n} times; it should be created once, at the start of fit, "
                       "from the model's parameters and the learning rate", kind="behaviour")  # fmt: skip
    if got.get("init") != expected.get("init"):
        n_params, lr = expected["init"]
        return Verdict(False, f"the optimiser was given {got.get('init')} (parameters, learning rate); expected the model's "
                       f"{n_params} parameter tensors and lr={lr}", kind="behaviour")  # fmt: skip
    if got.get("steps") != expected["steps"]:
        return Verdict(False, f"fit took {got.get('steps')} optimiser steps; one per batch per epoch makes {expected['steps']}",
                       kind="behaviour")  # fmt: skip
    plot_only = ("losses",)  # recorded for the report's plot; the weights already tell a wrong step
    verdict = compare({k: v for k, v in got.items() if k not in plot_only}, {k: v for k, v in expected.items() if k not in plot_only}, tol)
    if not verdict.ok and got.get("zero_grads") == 0:
        verdict.message = "fit never calls zero_grad(): gradients pile up from batch to batch.\n" + verdict.message
    return verdict


def judge_ten_digits(labels: torch.Tensor):
    def judge(got, expected, tol):
        if todo(got):
            return todo(got)
        if type(got) is not dict:
            return Verdict(False, "learn could not be asked for predictions", kind="wrong_type")
        if "problem" in got:
            return Verdict(False, got["problem"], kind="wrong_type")
        preds = got.get("preds")
        if type(preds) is not torch.Tensor or preds.shape != labels.shape:
            return Verdict(False, "learn.model did not give one prediction per held-out image", kind="wrong_type")
        if got.get("n_out") != 10:
            return Verdict(False, f"learn.model gives {got.get('n_out')} scores per image; it needs ten", kind="shape")
        acc = float((preds.long() == labels).double().mean())
        shown = f"learn.model gets {acc:.1%} of the {len(labels)} held-out digits right"
        if not got.get("finite"):
            return Verdict(False, f"{shown}, and some of its scores are nan or inf: training blew up (a learning rate too "
                           "high, or gradients never cleared)", kind="nonfinite")  # fmt: skip
        if acc < ACCURACY_BAR:
            return Verdict(False, f"{shown}; the bar is {ACCURACY_BAR:.0%} - {rank_against_reference(acc)}. Check the loss, "
                           "that fit clears the gradients, and the learning rate", kind="accuracy")  # fmt: skip
        return Verdict(True, f"{shown}: {rank_against_reference(acc)}")

    return judge


def fit_losses(got, expected, cases):
    """Plot data: the loss of each optimiser step of fit, yours next to the reference's."""
    g, e = got[0], expected[0]
    if type(e) is not dict or type(e.get("losses")) is not list:
        return {}
    yours = g.get("losses") if type(g) is dict and type(g.get("losses")) is list else None
    steps = list(range(1, max(len(e["losses"]), len(yours or [])) + 1))
    return {"loss": line_plot("Loss per step", steps, {"reference": e["losses"], "yours": yours}, xlabel="step", ylabel="cross-entropy")}


def holdout_metric(got, expected, cases):
    """The holdout accuracy as data (kind "metric"): the gradebook's leaderboard reads it."""
    _, labels = holdout()
    run = next((g for g in got if type(g) is dict and type(g.get("preds")) is torch.Tensor), None)
    if run is None or run["preds"].shape != labels.shape:
        return {}
    acc = float((run["preds"].long() == labels).double().mean())
    metric = {"kind": "metric", "name": "holdout accuracy", "value": acc, "n": len(labels), "bar": ACCURACY_BAR,
              "reference": sum(REFERENCE_SPREAD) / len(REFERENCE_SPREAD), "display_name": display_name(run.get("display_name"))}  # fmt: skip
    return {"holdout_accuracy": metric}


def display_name(name) -> str | None:
    """A learner's opt-in leaderboard name as inert, single-line text of at most 40 characters."""
    from grader.inert import visible

    if type(name) is not str:
        return None
    shown = " ".join(visible(name, single_line=True).split())[:40]
    return shown or None


# ---------------------------------------------------------------------------------------------
# checks

EXTREME = torch.tensor([[1000.0, 999.0, 0.0], [-1000.0, -1001.0, -999.0], [88.0, 90.0, 89.0]])


@check(
    "softmax",
    mistakes=[
        Mistake("no_max", "Your softmax gives nan for large scores: exp(1000.) overflows to inf, and inf / inf is nan. "
                "Subtracting the same number from every score of a row does not change softmax.", softmax_no_max),
        Mistake("wrong_axis", "You normalised down the columns, mixing different images: your columns sum to one, where "
                "each row - one image's scores - should.", softmax_wrong_axis),
    ],
)  # fmt: skip
def softmax_cases(rng):
    judge = stable("softmax")
    yield Case.call(torch.tensor([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]]), judge=judge, label="two rows of scores")
    yield Case.call(rng.randn(4, 10, scale=3), judge=judge, random=True, label="a batch of 4 images, 10 classes")
    yield Case.call(EXTREME, judge=judge, tol=STABLE, label="extreme scores", show="softmax(tensor([[1000., 999., 0.], ...]))")
    yield Case.call(rng.randn(2, 3, 5), judge=judge, random=True, label="a 3-d batch: classes on the last axis")


@check(
    "cross_entropy",
    mistakes=[
        Mistake("no_max", "Your loss is inf or nan for large scores: exp of a large score overflows. Shifting a row's "
                "scores by the same number does not change its log-softmax, and a well-chosen shift keeps exp finite.",
                cross_entropy_no_max),
        Mistake("log_of_softmax", "Your loss is inf for a hopeless prediction: you took the log of softmax probabilities, "
                "a tiny probability rounds to 0, and the log of 0 is -inf. Log-softmax can be computed in log space, without "
                "ever forming the probabilities.", cross_entropy_log_of_softmax),
        Mistake("wrong_axis", "You normalised over the batch axis, mixing different images; log-softmax works along each "
                "row, over the classes, and only the final mean runs over the batch.", cross_entropy_wrong_axis),
        Mistake("one_hot", "Your loss treats targets as one-hot rows, but they are class indices, like train_y: target 2 "
                "means the score in column 2 of its row.", cross_entropy_one_hot),
    ],
)  # fmt: skip
def cross_entropy_cases(rng):
    judge = stable("cross_entropy")
    yield Case.call(rng.randn(10, 10, scale=2), torch.tensor([rng.randint(0, 9) for _ in range(10)]), judge=judge, random=True,
                    label="10 images, 10 classes")  # fmt: skip
    yield Case.call(torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]]), torch.tensor([0, 2]), judge=judge, label="two rows")
    yield Case.call(rng.randn(7, 10, scale=2), torch.tensor([rng.randint(0, 9) for _ in range(7)]), judge=judge, random=True,
                    label="7 images, 10 classes")  # fmt: skip
    yield Case.call(EXTREME, torch.tensor([0, 1, 2]), judge=judge, tol=STABLE, label="extreme scores",
                    show="cross_entropy(tensor([[1000., 999., 0.], ...]), tensor([0, 1, 2]))")  # fmt: skip
    yield Case.call(torch.tensor([[0.0, -200.0, 5.0]]), torch.tensor([1]), judge=judge, tol=STABLE, label="a hopeless prediction",
                    show="cross_entropy(tensor([[0., -200., 5.]]), tensor([1]))")  # fmt: skip


@check(
    "BasicOptim",
    mistakes=[
        Mistake("no_zero_grad", "Your zero_grad() does nothing: PyTorch adds new gradients to old ones, so each step would "
                "follow the sum of every gradient so far.", BasicOptimNoZeroGrad),
        Mistake("uphill", "Your step() moves the parameters along the gradient, which points uphill: the loss grows "
                "after each step.", BasicOptimUphill),
    ],
)  # fmt: skip
def basic_optim_cases(rng):
    yield Case.call(rng.randn(4, 3), rng.randn(4, 3), rng.randn(3), rng.randn(3), 0.1, probe=probe_basic_optim,
                    judge=judge_basic_optim, random=True, label="two parameters", show="BasicOptim([w, b], lr=0.1): step, zero_grad, step")  # fmt: skip


@check("simple_net", callables=())
def simple_net_cases(rng):
    yield Case.call(rng.rand(5, 784), probe=probe_simple_net, judge=judge_simple_net, reference=False, random=True,
                    label="layers and sizes", show="simple_net: its layers, and simple_net(xb) for xb of shape (5, 784)")  # fmt: skip


def _batches(rng, n_batches, size):
    return [(rng.randn(size, 6), torch.tensor([rng.randint(0, 2) for _ in range(size)])) for _ in range(n_batches)]


@check(
    "fit",
    requires=("Learner",),
    series=fit_losses,
    mistakes=[
        Mistake("no_zero_grad", "fit never clears the gradients: from the second step on, every step follows the sum of "
                "all gradients so far, and your losses part from the reference's.", replace={"Learner": LearnerNoZeroGrad}),
        Mistake("one_epoch", "fit went through the training batches once, whatever `epochs` said: with epochs=3 it took "
                "a third of the steps.", replace={"Learner": LearnerOneEpoch}),
    ],
)  # fmt: skip
def fit_cases(rng):
    yield Case.call(_batches(rng, 4, 8), _batches(rng, 1, 8), 3, 0.1, rng.randint(0, 10**6), probe=probe_fit, judge=judge_fit,
                    random=True, label="3 epochs of 4 batches",
                    show="Learner(dls, model, loss_func=F.cross_entropy, opt_func=...).fit(3, 0.1) on 4 batches of 8")  # fmt: skip


@check(
    "validate",
    requires=("Learner",),
    mistakes=[
        Mistake("on_train", "validate() measured the training batches; the accuracy that matters is on dls.valid.",
                replace={"Learner": LearnerValidatesOnTrain}),
        Mistake("last_batch", "validate() returned the accuracy of the last validation batch only; average over "
                "every batch of dls.valid.", replace={"Learner": LearnerValidatesLastBatch}),
    ],
)  # fmt: skip
def validate_cases(rng):
    weight, bias = rng.randn(3, 6), rng.randn(3)

    def batch(n, right=None):
        """n inputs; labels at random, or all right / all wrong for the fixed linear model."""
        x = rng.randn(n, 6)
        predicted = (x @ weight.T + bias).argmax(dim=-1)
        if right is None:
            return x, torch.tensor([rng.randint(0, 2) for _ in range(n)])
        return x, predicted if right else (predicted + 1) % 3

    # batches of 7 (accuracies with more than 4 decimals); the first all wrong and the last all right,
    # so the mean over the batches is never the last batch's accuracy; the training batches all wrong
    valid = [batch(7, right=False), batch(7), batch(7, right=True)]
    train = [batch(7, right=False) for _ in range(2)]
    yield Case.call(weight, bias, train, valid, probe=probe_validate, judge=judge_validate, random=True, label="3 validation batches",
                    show="Learner(dls, model).validate() with a fixed linear model")  # fmt: skip


@check("ten_digits", requires=("learn",), callables=(), series=holdout_metric)
def ten_digits_cases(rng):
    images, labels = holdout()
    yield Case.call(images, probe=probe_holdout, judge=judge_ten_digits(labels), reference=False, label="held-out digits",
                    show=f"learn.model on {len(labels)} held-out digits")  # fmt: skip
