"""How each graded name of chapter 4 (MNIST basics) is exercised.

Probe, mistake and judge helpers follow grader.checks: probes and mistakes run inside kernels
(self-contained, importing what they use), inputs are built here from the run's seed, and
judges decide in the grader's process. Functions that read notebook globals (mean3, weights,
dl, valid_dl ...) are probed by setting those globals in `ns` first, so a learner's own values
never decide a result.

The digits come from digits37.npz next to this file (see make_data.py). Accuracy checks send the
training and validation images into the kernel and get raw predictions back; the accuracy is
computed here, against labels the kernel never reports.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from grader.checks import Case, Mistake, Verdict, check, compare, explained, line_plot, loop_case, vectorised

DATA_FILE = Path(__file__).with_name("digits37.npz")
ACCURACY_BAR = 0.95  # the reference reaches 98.9% with TRAIN_SEED (linear model and simple_net; 96.7-100% over 30 seeds)
TRAIN_SEED = 0


@functools.lru_cache(maxsize=1)
def digits() -> dict[str, torch.Tensor]:
    """The chapter's data as uint8 tensors: flattened images and labels (1 for a 3, 0 for a 7)."""
    with np.load(DATA_FILE) as data:
        arrays = {k: torch.from_numpy(data[k].copy()) for k in data.files}
    out = {}
    for split in ("train", "valid"):
        threes, sevens = arrays[f"{split}3"], arrays[f"{split}7"]
        out[f"{split}3"], out[f"{split}7"] = threes, sevens
        out[f"{split}_x"] = torch.cat([threes, sevens]).reshape(-1, 28 * 28)
        out[f"{split}_y"] = torch.tensor([1] * len(threes) + [0] * len(sevens)).unsqueeze(1)
    return out


def images(stack: torch.Tensor) -> torch.Tensor:
    return stack.float() / 255


# ---------------------------------------------------------------------------------------------
# judges (run in the grader)


def accuracy_at_least(bar: float, what: str):
    """Judge for a training probe returning {"preds": raw outputs on the validation images}."""

    def judge(got, expected, tol):
        labels = digits()["valid_y"].flatten().bool()
        if type(got) is dict and type(got.get("error")) is str:
            return Verdict(False, got["error"], kind="wrong_type")
        preds = got.get("preds") if type(got) is dict else None
        if type(preds) is not torch.Tensor or preds.numel() != labels.numel():
            return Verdict(False, f"after training, {what} did not give one prediction per validation image", kind="wrong_type")
        preds = preds.detach().flatten().double()
        if not bool(torch.isfinite(preds).all()):
            return Verdict(False, f"after training, {what} predicts nan or inf: the weights blew up. "
                           "Check that the step subtracts lr * grad and that gradients are reset after each step.", kind="nonfinite")  # fmt: skip
        accuracy = float(((preds > 0) == labels).double().mean())
        if accuracy < bar:
            return Verdict(
                False,
                f"after training, {what} classifies {accuracy:.1%} of the {labels.numel()} validation images correctly; "
                f"at least {bar:.0%} is needed (the reference solution reaches about 99%). Look for a step that goes "
                "uphill (+ instead of -), gradients that are never reset, or a loss without the sigmoid.",
                kind="accuracy",
            )
        return Verdict(True, f"validation accuracy {accuracy:.1%} (needed: {bar:.0%})")

    return judge


def without_losses(judge):
    """A judge that ignores the probe's per-step `losses` (recorded for the report's plot only)."""

    def strip(value):
        return {k: v for k, v in value.items() if k != "losses"} if type(value) is dict else value

    def judged(got, expected, tol):
        return judge(strip(got), strip(expected), tol)

    return judged


def loss_series(got, expected, cases):
    """Plot data: the loss of each step of the first training run that reports `losses`, yours
    next to the reference's."""
    pairs = [(g, e) for g, e in zip(got, expected) if type(e) is dict and type(e.get("losses")) is list]
    if not pairs:
        return {}
    g, e = pairs[0]
    yours = g.get("losses") if type(g) is dict and type(g.get("losses")) is list else None
    steps = list(range(1, max(len(e["losses"]), len(yours or [])) + 1))
    lines = {"reference": e["losses"], "yours": yours}
    return {"loss": line_plot("Loss per step", steps, lines, xlabel="step", ylabel="mnist_loss")}


def accuracy_series(title: str, losses: bool = False):
    """Plot data for the report: validation accuracy after each epoch (from the training probe's
    `history` of raw outputs; the labels stay in the grader), against the bar to reach; with
    `losses`, also the loss of each step (`loss_series`)."""

    def series(got, expected, cases):
        per_step = loss_series(got, expected, cases) if losses else {}
        return {**per_step, **accuracy(got)}

    def accuracy(got):
        run = next((g for g in got if type(g) is dict and type(g.get("history")) is torch.Tensor), None)
        if run is None:
            return {}
        labels = digits()["valid_y"].flatten().bool()
        history = run["history"].detach().double()
        if history.ndim != 2 or history.shape[1] != labels.numel():
            return {}
        accuracy = ((history > 0) == labels).double().mean(dim=1) * 100
        epochs = list(range(1, len(accuracy) + 1))
        lines = {"yours": accuracy, f"needed ({ACCURACY_BAR:.0%})": [ACCURACY_BAR * 100] * len(epochs)}
        return {"accuracy": line_plot(title, epochs, lines, xlabel="epoch", ylabel="validation accuracy (%)")}

    return series


def judge_init_params(got, expected, tol):
    if type(got) is not dict:
        return Verdict(False, "init_params must return a tensor", kind="wrong_type")
    if not got.get("is_tensor"):
        return Verdict(False, f"init_params returned a {got.get('type')}, not a tensor", kind="wrong_type")
    problems = []
    if got.get("shapes") != [[784, 1], [1], [3, 2]]:
        problems.append(f"init_params((784, 1)), init_params(1) and init_params((3, 2)) gave shapes {got.get('shapes')} "
                        "(expected [784, 1], [1] and [3, 2]): the result should have exactly the size asked for")  # fmt: skip
    if not got.get("requires_grad"):
        problems.append("the result does not require gradients, so backward() never gives it a gradient and training could not change it")
    elif not got.get("is_leaf"):
        problems.append("the result is not a leaf tensor: it was computed from another tensor that requires gradients "
                        "(multiplying by std makes a new one), so backward() fills the gradient of that other tensor, not of this one")  # fmt: skip
    elif not got.get("grad_filled"):
        problems.append("after backward() the result's .grad is still None")
    std, std_default, mean = got.get("std", 0.0), got.get("std_default", 0.0), got.get("mean", 0.0)
    if not 0.48 <= std <= 0.52:
        problems.append(
            f"init_params(size, std=0.5) has standard deviation {std:.3f} (expected about 0.5): the spread of the numbers should be std"
        )
    if not 0.96 <= std_default <= 1.04:
        problems.append(f"with the default std the values have standard deviation {std_default:.3f}; the default std is 1.0")
    if abs(mean) > 0.02:
        problems.append(
            f"the values have mean {mean:.3f}; they should be centred on 0, like normal noise (uniform numbers between 0 and 1 are not)"
        )
    if not got.get("repeatable"):
        problems.append(
            "two calls after the same torch.manual_seed differ: the numbers do not come from torch's random generator, so the seed cannot repeat them"
        )
    if problems:
        mistake = "no_requires_grad" if not got.get("requires_grad") else "not_leaf" if not got.get("is_leaf") else None
        return Verdict(False, "; ".join(problems), kind="behaviour", mistake=mistake)
    return Verdict.passed()


def judge_basic_optim(got, expected, tol):
    if type(got) is not dict or type(expected) is not dict:
        return compare(got, expected, tol)
    verdict = compare(got.get("step"), expected["step"], tol, "['step']")
    if not verdict.ok:
        verdict.message = (
            "after step() the parameters are not where one step of gradient descent takes them (each one minus lr times its gradient).\n"
            + verdict.message
        )
        return verdict
    if got.get("grad_untouched") is not True:
        return Verdict(
            False, "step() changed the gradients; it should only move the parameters (zero_grad clears the gradients)", kind="behaviour"
        )
    if got.get("cleared") is not True:
        return Verdict(False, "after zero_grad() the gradients are still there, so the next backward() would add to them", kind="behaviour")
    verdict = compare(got.get("second_step"), expected["second_step"], tol, "['second_step']")
    if not verdict.ok:
        verdict.message = "a second step(), after zero_grad() and new gradients, went wrong.\n" + verdict.message
        return verdict
    return compare(got, expected, tol)


def judge_validate_epoch(got, expected, tol):
    """Values as the reference's, and rounded to 4 decimals as the docstring says."""
    if type(got) is float and got == got and got != round(got, 4):
        return Verdict(False, f"validate_epoch returned {got!r}: the accuracy should be rounded to 4 decimals", kind="values")
    return compare(got, expected, tol)


def judge_simple_net(got, expected, tol):
    if type(got) is dict and got.get("module") is False:
        return Verdict(False, f"simple_net is a {got.get('type')}, not a model: it should be a PyTorch module made of layers, which can be called on a batch and trained", kind="wrong_type")  # fmt: skip
    if type(got) is dict and got.get("forward_error"):
        return Verdict(False, f"simple_net cannot process a batch of shape (5, 784) ({got['forward_error']}): each layer must take "
                       "as many inputs as the layer before it gives out, from 784 pixels down to 1 output", kind="shape")  # fmt: skip
    verdict = compare(got, expected, tol)
    if verdict.ok or verdict.diff is None:
        return verdict
    advice = {
        "['layers']": "simple_net should have exactly three layers: Linear, ReLU, Linear.",
        "['n_params']": "simple_net has the wrong number of parameters: 784 inputs to 30 hidden units, then 30 to 1 output (with biases: 23,581).",
        "['out_shape']": "simple_net should map a batch of shape (n, 784) to outputs of shape (n, 1).",
    }
    path = verdict.diff.path
    key = next((k for k in advice if path.startswith(k)), None)
    if key:
        verdict.message = advice[key] + "\n" + verdict.message
    layers = got.get("layers") if type(got) is dict else None
    if layers == ["Linear", "Linear"]:
        verdict.mistake = "no_relu"
        verdict.message = "Two linear layers in a row are just one linear layer: put the ReLU between them.\n" + verdict.message
    elif layers == ["Linear", "ReLU", "Linear"] and got.get("n_params") != expected.get("n_params"):
        verdict.mistake = "wrong_size"
    return verdict


# ---------------------------------------------------------------------------------------------
# probes and mistakes (these run inside kernels)


def probe_is_3(ns, mean3, mean7, x):
    ns["mean3"], ns["mean7"] = mean3, mean7
    return ns["is_3"](x)


def probe_init_params(ns):
    import torch

    init = ns["init_params"]
    torch.manual_seed(0)
    big = init((1000, 50), 0.5)
    if not isinstance(big, torch.Tensor):
        return {"is_tensor": False, "type": type(big).__name__}
    default = init((50_000,))
    shapes = [list(init((784, 1)).shape), list(init(1).shape), list(init((3, 2)).shape)]
    torch.manual_seed(1)
    first = init((5,), 1.0).detach().clone()
    torch.manual_seed(1)
    again = init((5,), 1.0).detach().clone()
    grad_filled = False
    if big.requires_grad and big.is_leaf:
        big.sum().backward()
        grad_filled = big.grad is not None
    return {
        "is_tensor": True,
        "shapes": shapes,
        "requires_grad": bool(big.requires_grad),
        "is_leaf": bool(big.is_leaf),
        "grad_filled": grad_filled,
        "std": float(big.detach().std()),
        "mean": float(big.detach().mean()),
        "std_default": float(default.detach().std()),
        "repeatable": bool(torch.equal(first, again)),
    }


def probe_linear1(ns, xb, weights, bias):
    ns["weights"], ns["bias"] = weights, bias
    return ns["linear1"](xb)


def probe_calc_grad(ns, xb, yb, w, b):
    w = w.clone().requires_grad_()
    b = b.clone().requires_grad_()
    ns["weights"], ns["bias"] = w, b
    ns["calc_grad"](xb, yb, lambda x: x @ w + b)
    return {"has_grad": w.grad is not None and b.grad is not None, "weights_grad": w.grad, "bias_grad": b.grad}


def probe_train_epoch(ns, xs, ys, w, b, lr):
    """train_epoch over fixed batches; also the loss of each step, for the report's plot: the
    chapter's mnist_loss of the model's outputs on each batch, the first time it sees that batch."""
    import torch

    w = w.clone().requires_grad_()
    b = b.clone().requires_grad_()
    start = w.detach().clone()
    ns["weights"], ns["bias"] = w, b
    ns["dl"] = list(zip(xs, ys))  # fixed batches, in a fixed order
    seen = {}

    def model(x):
        out = x @ w + b
        for i, xb in enumerate(xs):
            if i not in seen and (x is xb or (x.shape == xb.shape and bool(torch.equal(x, xb)))):
                seen[i] = out.detach().sigmoid()
                break
        return out

    ns["train_epoch"](model, lr, (w, b))
    losses = [float(torch.where(ys[i] == 1, 1 - p, p).mean()) for i, p in sorted(seen.items())]
    out = {"changed": not bool(torch.equal(w.detach(), start)), "weights": w.detach().clone(), "bias": b.detach().clone()}
    return {**out, "losses": losses}


def probe_train_linear(ns, train_x, train_y, valid_x, epochs, lr, batch_size, seed):
    import torch
    from torch.utils.data import DataLoader

    train_x, valid_x = train_x.float() / 255, valid_x.float() / 255
    torch.manual_seed(seed)
    w = (torch.randn(28 * 28, 1) * 0.1).requires_grad_()
    b = (torch.randn(1) * 0.1).requires_grad_()
    ns["weights"], ns["bias"] = w, b
    ns["dl"] = DataLoader(list(zip(train_x, train_y)), batch_size=batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(seed))  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and immune to busy neighbours
    history = []  # validation outputs after every epoch: the report plots accuracy per epoch
    try:
        for _ in range(epochs):
            ns["train_epoch"](lambda x: x @ w + b, lr, (w, b))
            with torch.no_grad():
                history.append((valid_x @ w + b).flatten())
    finally:
        torch.set_num_threads(threads)
    return {"preds": history[-1], "history": torch.stack(history)}


def probe_validate_epoch(ns, valid_xs, valid_ys, train_xs, train_ys, w, b):
    ns["valid_dl"] = list(zip(valid_xs, valid_ys))
    ns["dl"] = list(zip(train_xs, train_ys))  # a decoy: validating on dl gives another number
    return ns["validate_epoch"](lambda x: x @ w + b)


def probe_basic_optim(ns, w, gw, b, gb, lr):
    import torch

    p1, p2 = w.clone().requires_grad_(), b.clone().requires_grad_()
    p1.grad, p2.grad = gw.clone(), gb.clone()
    opt = ns["BasicOptim"]([p1, p2], lr)
    opt.step()
    step = [p1.detach().clone(), p2.detach().clone()]
    untouched = p1.grad is not None and p2.grad is not None and bool(torch.equal(p1.grad, gw)) and bool(torch.equal(p2.grad, gb))
    opt.zero_grad()
    cleared = all(p.grad is None or not bool(p.grad.any()) for p in (p1, p2))
    p1.grad, p2.grad = gw.clone() * 2, gb.clone() * 2
    opt.step()
    return {"step": step, "grad_untouched": untouched, "cleared": cleared, "second_step": [p1.detach().clone(), p2.detach().clone()]}


def probe_simple_net(ns, xb):
    from torch import nn

    net = ns["simple_net"]
    if isinstance(net, nn.Sequential) and len(net) == 0:
        raise NotImplementedError("simple_net is still an empty nn.Sequential")
    if not isinstance(net, nn.Module):
        return {"module": False, "type": type(net).__name__}
    out = {"module": True, "layers": [type(m).__name__ for m in net.children()], "n_params": sum(p.numel() for p in net.parameters())}
    try:
        out["out_shape"] = list(net(xb).shape)
    except Exception as exc:  # the layers do not fit together: reported, judged in the grader
        out["forward_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return out


def probe_simple_net_trains(ns, train_x, train_y, valid_x, epochs, lr, batch_size, seed):
    import copy

    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    net = ns["simple_net"]
    if isinstance(net, nn.Sequential) and len(net) == 0:
        raise NotImplementedError("simple_net is still an empty nn.Sequential")
    if not isinstance(net, nn.Module):
        return {"error": f"simple_net is a {type(net).__name__}, not a model that can be trained"}
    net = copy.deepcopy(net)
    torch.manual_seed(seed)
    for module in net.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    params = list(net.parameters())
    train_x, valid_x = train_x.float() / 255, valid_x.float() / 255
    dl = DataLoader(list(zip(train_x, train_y)), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    history = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            for xb, yb in dl:
                preds = net(xb).sigmoid()
                torch.where(yb == 1, 1 - preds, preds).mean().backward()
                with torch.no_grad():
                    for p in params:
                        p -= lr * p.grad
                        p.grad = None
            with torch.no_grad():
                history.append(net(valid_x).flatten())
    except (RuntimeError, ValueError, TypeError) as exc:  # layers that do not fit together: the model is what is wrong
        return {"error": f"simple_net could not be trained on batches of shape (n, 784): {type(exc).__name__}: {str(exc)[:200]}"}
    finally:
        torch.set_num_threads(threads)
    return {"preds": history[-1], "history": torch.stack(history)}


def mean_image_sum(stack):
    return stack.sum(0)


def mean_image_all(stack):
    return stack.mean()


def mean_image_last_axis(stack):
    return stack.mean(-1)


def mnist_distance_sum(a, b):
    return (a - b).abs().sum((-1, -2))


def mnist_distance_rmse(a, b):
    return ((a - b) ** 2).mean((-1, -2)).sqrt()


def mnist_distance_all(a, b):
    return (a - b).abs().mean()


def mnist_distance_no_abs(a, b):
    return (a - b).mean((-1, -2))


def is_3_reversed(x):
    return mnist_distance(x, mean3) > mnist_distance(x, mean7)  # noqa: F821 - runs in the notebook's namespace


def is_3_distance(x):
    return mnist_distance(x, mean3)  # noqa: F821 - runs in the notebook's namespace


def linear1_elementwise(xb):
    return (xb * weights.T).sum(dim=1) + bias  # noqa: F821


def sigmoid_missing_one(x):
    import torch

    return 1 / torch.exp(-x)


def calc_grad_no_backward(xb, yb, model):
    mnist_loss(model(xb), yb)  # noqa: F821


def validate_epoch_last_batch(model):
    for xb, yb in valid_dl:  # noqa: F821
        acc = batch_accuracy(model(xb), yb)  # noqa: F821
    return round(acc.item(), 4)


def linear1_relu(xb):
    import torch

    return torch.relu(xb @ weights + bias)  # noqa: F821


def linear1_no_bias(xb):
    return xb @ weights  # noqa: F821


def linear1_weights_first(xb):
    return weights @ xb + bias  # noqa: F821


def batch_accuracy_item(xb, yb):
    return ((xb.sigmoid() > 0.5) == yb).float().mean().item()


def sigmoid_sign(x):
    import torch

    return 1 / (1 + torch.exp(x))


def mnist_loss_no_sigmoid(preds, targets):
    import torch

    return torch.where(targets == 1, 1 - preds, preds).mean()


def mnist_loss_swapped(preds, targets):
    import torch

    preds = preds.sigmoid()
    return torch.where(targets == 1, preds, 1 - preds).mean()


def mnist_loss_sum(preds, targets):
    import torch

    preds = preds.sigmoid()
    return torch.where(targets == 1, 1 - preds, preds).sum()


def calc_grad_mse(xb, yb, model):
    loss = ((model(xb) - yb) ** 2).mean()
    loss.backward()


def train_epoch_no_zero_grad(model, lr, params):
    for xb, yb in dl:  # noqa: F821
        calc_grad(xb, yb, model)  # noqa: F821
        for p in params:
            p.data -= p.grad * lr


def train_epoch_uphill(model, lr, params):
    for xb, yb in dl:  # noqa: F821
        calc_grad(xb, yb, model)  # noqa: F821
        for p in params:
            p.data += p.grad * lr
            p.grad.zero_()


def batch_accuracy_no_sigmoid(xb, yb):
    return ((xb > 0.5) == yb).float().mean()


def batch_accuracy_count(xb, yb):
    return ((xb.sigmoid() > 0.5) == yb).float().sum()


def validate_epoch_on_dl(model):
    import torch

    accs = [batch_accuracy(model(xb), yb) for xb, yb in dl]  # noqa: F821
    return round(torch.stack(accs).mean().item(), 4)


class BasicOptimUphill:
    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def step(self, *args, **kwargs):
        for p in self.params:
            p.data += p.grad.data * self.lr

    def zero_grad(self, *args, **kwargs):
        for p in self.params:
            p.grad = None


class BasicOptimNoZeroGrad:
    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def step(self, *args, **kwargs):
        for p in self.params:
            p.data -= p.grad.data * self.lr

    def zero_grad(self, *args, **kwargs):
        pass


class BasicOptimNoLr:
    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def step(self, *args, **kwargs):
        for p in self.params:
            p.data -= p.grad.data

    def zero_grad(self, *args, **kwargs):
        for p in self.params:
            p.grad = None


# ---------------------------------------------------------------------------------------------
# the ideal digits and pixel similarity

MEAN_FIX = "the ideal digit is one image, (28, 28): average over the images only, keeping the pixel grid"
DISTANCE_FIX = "average over the pixel grid (the last two axes) only, and let broadcasting pair a batch (n, h, w) with one image (h, w)"
IS_3_FIX = "compare two distances computed by mnist_distance on the whole batch at once; the result has one True/False per image"


@check(
    "mean_image",
    mistakes=[
        Mistake(
            "sum",
            "Your ideal digit adds the images up: its pixels go far above 1 and grow with the number of images. "
            "The ideal digit is the average image, with pixels between 0 and 1.",
            mean_image_sum,
        ),
        Mistake(
            "all_axes",
            "You averaged every pixel of every image into one number; the ideal digit is an image, one average per pixel.",
            mean_image_all,
        ),
        Mistake(
            "last_axis",
            "You averaged along each row of pixels (the last axis), giving one number per row of each image; "
            "the images are counted by the first axis.",
            mean_image_last_axis,
        ),
    ],
)
def mean_image_cases(rng):
    judge = vectorised(MEAN_FIX)
    yield Case.call(torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]]), judge=judge, label="two 2x2 images")
    yield Case.call(images(digits()["train3"][:20]), judge=judge, label="twenty 3s", show="mean_image(stacked_threes[:20])")
    yield Case.call(rng.rand(7, 28, 28), judge=judge, random=True, label="random images")


@check(
    "mnist_distance",
    mistakes=[
        Mistake(
            "sum",
            "You added up the absolute differences, so your distance grows with the number of pixels (784 times the mean for a 28x28 image).",
            mnist_distance_sum,
        ),
        Mistake(
            "rmse",
            "Your distance squares the differences and takes a square root (the L2 distance); mnist_distance is the mean absolute difference (L1).",
            mnist_distance_rmse,
        ),
        Mistake(
            "all_axes",
            "You averaged over every axis, batch included: a batch of images gets one number, where it should get one distance per image.",
            mnist_distance_all,
        ),
        Mistake(
            "no_abs",
            "Your distance can be negative, or near 0 for very different images: positive and negative pixel "
            "differences cancel out. A distance counts the size of each difference, whatever its sign.",
            mnist_distance_no_abs,
        ),
    ],
)
def mnist_distance_cases(rng):
    judge = vectorised(DISTANCE_FIX)
    d = digits()
    three, mean3 = images(d["train3"][0]), images(d["train3"]).mean(0)
    yield Case.call(three, mean3, judge=judge, label="one image and the ideal 3", show="mnist_distance(a_three, mean3)")
    yield Case.call(
        images(d["valid3"][:6]), mean3, judge=judge, label="a batch against one image", show="mnist_distance(valid_threes[:6], mean3)"
    )
    yield Case.call(rng.rand(5, 28, 28), rng.rand(28, 28), judge=judge, random=True, label="random batch of 5")
    yield Case.call(rng.rand(4, 8, 8), rng.rand(4, 8, 8), judge=judge, random=True, label="pairs of 8x8 images")
    target = rng.rand(8, 8)
    yield loop_case("mnist_distance", (rng.rand(2, 8, 8), target), (rng.rand(200, 8, 8), target), advice=DISTANCE_FIX, what="batches",
                    label="no loop over the batch", show="mnist_distance on batches of 2 and of 200 images")  # fmt: skip


@check(
    "is_3",
    requires=("is_3", "mnist_distance"),
    mistakes=[
        Mistake(
            "reversed",
            "The comparison is the wrong way round: your is_3 says True for the 7s. An image is a 3 when its distance to mean3 is the smaller one.",
            is_3_reversed,
        ),
        Mistake(
            "distance",
            "is_3 returned a distance (a number per image); it should answer yes or no: is x closer to mean3 than to mean7?",
            is_3_distance,
        ),
    ],
)
def is_3_cases(rng):
    judge = vectorised(IS_3_FIX)
    d = digits()
    mean3, mean7 = images(d["train3"]).mean(0), images(d["train7"]).mean(0)
    batch = images(torch.cat([d["valid3"][:5], d["valid7"][:5]]))
    yield Case.call(
        mean3, mean7, batch, probe=probe_is_3, judge=judge, label="five 3s and five 7s", show="is_3(valid images: five 3s, five 7s)"
    )
    yield Case.call(mean3, mean7, images(d["valid7"][0]), probe=probe_is_3, judge=judge, label="a single 7", show="is_3(valid_sevens[0])")
    yield Case.call(rng.rand(28, 28), rng.rand(28, 28), rng.rand(6, 28, 28), probe=probe_is_3, judge=judge, random=True,
                    label="other ideals", show="is_3(x) with new values of mean3 and mean7")  # fmt: skip
    same = rng.rand(28, 28)
    yield Case.call(same, same.clone(), rng.rand(4, 28, 28), probe=probe_is_3, judge=judge, random=True, label="a tie",
                    show="is_3(x) when mean3 and mean7 are the same image: no image is closer to the ideal 3")  # fmt: skip
    ideals = {"mean3": rng.rand(8, 8), "mean7": rng.rand(8, 8)}
    yield loop_case("is_3", (rng.rand(2, 8, 8),), (rng.rand(200, 8, 8),), setup=ideals, advice=IS_3_FIX, what="batches",
                    label="no loop over the batch", show="is_3 on batches of 2 and of 200 images")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the model, the loss, the gradients


@check("init_params")
def init_params_cases(rng):
    yield Case.call(probe=probe_init_params, judge=judge_init_params, reference=False, label="shape, spread and gradients",
                    show="init_params((1000, 50), 0.5), init_params((784, 1)), init_params(1) ...")  # fmt: skip


@check(
    "linear1",
    mistakes=[
        Mistake("no_bias", "The bias is missing: each of your outputs is off by exactly the bias.", linear1_no_bias),
        Mistake(
            "weights_first",
            "Your matrix product is the wrong way round, weights first: a batch of one image of three pixels gives a 3x3 table "
            "instead of one output. The batch, one row per image, comes first.",
            linear1_weights_first,
        ),
        Mistake(
            "elementwise",
            "You multiplied element by element and summed into a flat vector of shape (n,); a matrix product keeps one column, (n, 1).",
            linear1_elementwise,
        ),
        Mistake(
            "relu_output",
            "Your linear1 cuts negative outputs to 0 (a ReLU): a linear model's output can be any number; "
            "negative means 'a 7' to the loss.",
            linear1_relu,
        ),  # fmt: skip
    ],
)
def linear1_cases(rng):
    yield Case.call(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.5], [-1.0], [2.0]]), torch.tensor([0.25]),
                    probe=probe_linear1, label="one input, three pixels", show="linear1(tensor([[1., 2., 3.]])) with weights [[0.5], [-1.], [2.]] and bias [0.25]")  # fmt: skip
    xb, w = rng.rand(6, 784), rng.randn(784, 1, scale=0.1)
    raw = xb @ w
    bias = -(raw.min() + raw.max()).reshape(1) / 2  # outputs on both sides of 0, by half their range, for every seed
    yield Case.call(xb, w, bias, probe=probe_linear1, random=True,
                    label="a batch of 6 images", show="linear1(xb) for a batch of 6, with new weights and bias")  # fmt: skip


@check(
    "sigmoid",
    mistakes=[
        Mistake(
            "sign",
            "Your sigmoid is flipped: it gives values near 0 for large inputs and near 1 for very negative ones; "
            "sigmoid(30) should be about 1.",
            sigmoid_sign,
        ),
        Mistake(
            "missing_one",
            "Your values are not squashed into (0, 1): for large inputs they grow without bound. The denominator is missing a 1 +.",
            sigmoid_missing_one,
        ),  # fmt: skip
    ],
)
def sigmoid_cases(rng):
    yield Case.call(torch.tensor([-30.0, -2.0, 0.0, 0.5, 2.0, 30.0]), label="from -30 to 30")
    yield Case.call(rng.randn(4, 3, scale=3), random=True)


LOSS_FIX = "pick each item's error on the whole tensor at once (one condition, two choices), then average, with no Python loop"


def _targets(rng, *shape):
    return (rng.rand(*shape) > 0.5).long()


@check(
    "mnist_loss",
    mistakes=[
        Mistake(
            "no_sigmoid",
            "You forgot the sigmoid: raw predictions are not between 0 and 1, so 1 - preds can be negative and your loss can fall below zero.",
            mnist_loss_no_sigmoid,
        ),
        Mistake(
            "swapped",
            "The two choices are swapped: your loss is small when the prediction is wrong. For a target of 1 the error is 1 - preds, for 0 it is preds.",
            mnist_loss_swapped,
        ),
        Mistake(
            "sum",
            "You added the errors up, so your loss grows with the batch size (a batch of 8 gives 8 times the mean error).",
            mnist_loss_sum,
        ),
    ],
)
def mnist_loss_cases(rng):
    judge = vectorised(LOSS_FIX)
    yield Case.call(torch.tensor([0.9, 0.4, -2.0]), torch.tensor([1, 0, 1]), judge=judge, label="the chapter's example")
    yield Case.call(rng.randn(8, 1, scale=2), _targets(rng, 8, 1), judge=judge, random=True, label="a batch of 8, targets as a column")
    yield Case.call(rng.randn(6, scale=3), _targets(rng, 6).float(), judge=judge, random=True, label="float targets")
    yield loop_case("mnist_loss", (rng.randn(4, 1), _targets(rng, 4, 1)), (rng.randn(300, 1), _targets(rng, 300, 1)),
                    advice=LOSS_FIX, what="batches", label="no loop over the items", show="mnist_loss on batches of 4 and of 300")  # fmt: skip


def _batch(rng, n, features=784):
    return rng.rand(n, features), _targets(rng, n, 1)


@check(
    "calc_grad",
    requires=("calc_grad", "mnist_loss"),
    mistakes=[
        Mistake(
            "mse",
            "Your gradients are those of the mean squared error; calc_grad should differentiate the chapter's mnist_loss.",
            calc_grad_mse,
        ),
        Mistake(
            "no_backward",
            "No gradients were computed: after calc_grad the weights and the bias still have no gradient.",
            calc_grad_no_backward,
        ),  # fmt: skip
    ],
)
def calc_grad_cases(rng):
    judge = explained({"['has_grad']": "After calc_grad the parameters still have no gradient: the loss was not differentiated."})
    for n in (4, 10):
        xb, yb = _batch(rng, n)
        yield Case.call(xb, yb, rng.randn(784, 1, scale=0.1), rng.randn(1, scale=0.1), probe=probe_calc_grad, judge=judge, random=True,
                        label=f"a batch of {n}", show=f"calc_grad(xb, yb, model) on a batch of {n}, then the gradients of weights and bias")  # fmt: skip


@check(
    "train_epoch",
    requires=("train_epoch", "calc_grad", "mnist_loss"),
    callables=("train_epoch",),
    series=accuracy_series("Linear model: validation accuracy per epoch", losses=True),
    mistakes=[
        Mistake(
            "no_zero_grad",
            "The gradients are never reset: the backward pass adds each batch's gradient to the one already stored, so every step uses the sum of all gradients so far.",
            train_epoch_no_zero_grad,
        ),
        Mistake(
            "uphill",
            "Your parameters move along the gradient, which points uphill: the loss grows after each step instead of shrinking.",
            train_epoch_uphill,
        ),
    ],
)
def train_epoch_cases(rng):
    judge = explained(
        {
            "['changed']": "train_epoch did not change the parameters: assigning a new tensor to the loop variable leaves the parameters as they were; they must be updated in place."
        }
    )
    judge = without_losses(judge)
    rule = rng.randn(12, 1)  # targets follow a linear rule, so steps downhill lower the loss (the report plots it)
    xs = [rng.rand(10, 12) - 0.5 for _ in range(10)]
    ys = [(x @ rule > 0).long() for x in xs]
    yield Case.call(xs, ys, rng.randn(12, 1, scale=0.5), rng.randn(1, scale=0.5), 5.0, probe=probe_train_epoch, judge=judge, random=True,
                    label="ten batches", show="train_epoch(model, lr=5.0, params) over a dl of ten batches; the parameters afterwards")  # fmt: skip
    d = digits()
    yield Case.call(
        d["train_x"], d["train_y"], d["valid_x"], 20, 1.0, 32, TRAIN_SEED,
        probe=probe_train_linear, judge=accuracy_at_least(ACCURACY_BAR, "the linear model"), reference=False, timeout=30,
        label="trains a linear model", show="20 epochs of train_epoch(linear model, lr=1.0) on the 3s and 7s; accuracy on the validation set",
    )  # fmt: skip


@check(
    "batch_accuracy",
    mistakes=[
        Mistake(
            "no_sigmoid",
            "Your threshold does not match the raw outputs: they were compared with 0.5 as if they were probabilities, but no sigmoid was applied.",
            batch_accuracy_no_sigmoid,
        ),
        Mistake(
            "item",
            "Your batch_accuracy returns a plain Python number (.item()) where a tensor is wanted: validate_epoch stacks the "
            "batch accuracies into one tensor, which needs tensors.",
            batch_accuracy_item,
        ),
        Mistake(
            "count",
            "You counted the correct predictions (your value can be above 1); batch_accuracy is the fraction that is correct.",
            batch_accuracy_count,
        ),
    ],
)
def batch_accuracy_cases(rng):
    yield Case.call(torch.tensor([[0.9], [0.4], [-2.0], [0.2]]), torch.tensor([[1], [0], [1], [0]]), label="four predictions")
    yield Case.call(torch.tensor([[0.0], [0.0], [-3.0]]), torch.tensor([[1], [1], [0]]), label="outputs on the threshold",
                    show="batch_accuracy(tensor([[0.], [0.], [-3.]]), tensor([[1], [1], [0]])): sigmoid(0) is exactly 0.5, not above it")  # fmt: skip
    for n in (16, 40):
        yield Case.call(rng.randn(n, 1), _targets(rng, n, 1), random=True, label=f"a batch of {n}")


@check(
    "validate_epoch",
    requires=("validate_epoch", "batch_accuracy"),
    callables=("validate_epoch",),
    mistakes=[
        Mistake(
            "on_dl", "You measured accuracy on the training batches; validate_epoch measures the validation batches.", validate_epoch_on_dl
        ),
        Mistake(
            "last_batch",
            "Only the last batch counts in your accuracy: the other batches are computed and then forgotten.",
            validate_epoch_last_batch,
        ),
    ],
)
def validate_epoch_cases(rng):
    for n_batches in (3, 5):
        w, b = rng.randn(10, 1), rng.randn(1)
        xs = [rng.rand(7, 10) for _ in range(n_batches)]  # batches of 7: accuracies with more than 4 decimals
        right = [((x @ w + b) > 0).long() for x in xs]
        # labels at random, but the last batch all right and the first all wrong, so that the mean over
        # the batches is never the last batch's accuracy; the training batches (a decoy) all wrong
        ys = [1 - right[0]] + [_targets(rng, 7, 1) for _ in xs[1:-1]] + [right[-1]]
        train_xs = [rng.rand(7, 10) for _ in range(2)]
        train_ys = [1 - ((x @ w + b) > 0).long() for x in train_xs]
        yield Case.call(xs, ys, train_xs, train_ys, w, b,
            probe=probe_validate_epoch, judge=judge_validate_epoch, random=True, label=f"{n_batches} validation batches",
            show=f"validate_epoch(model) with a valid_dl of {n_batches} batches of 7",
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the optimiser and the neural net


@check(
    "BasicOptim",
    mistakes=[
        Mistake(
            "uphill",
            "step() moves each parameter along its gradient, which climbs the loss: after your step the parameters are further uphill.",
            BasicOptimUphill,
        ),
        Mistake(
            "no_zero_grad",
            "zero_grad() does nothing, so gradients pile up from one batch to the next.",
            BasicOptimNoZeroGrad,
        ),
        Mistake(
            "no_lr", "step() ignores the learning rate: your parameters move by the whole gradient, whatever lr was given.", BasicOptimNoLr
        ),
    ],
)
def basic_optim_cases(rng):
    for lr in (0.1, 1.5):
        yield Case.call(rng.randn(3, 2), rng.randn(3, 2), rng.randn(2), rng.randn(2), lr, probe=probe_basic_optim, judge=judge_basic_optim, random=True,
                        label=f"lr={lr}", show=f"BasicOptim([w, b], lr={lr}): step(), zero_grad(), then step() again with new gradients")  # fmt: skip


@check("simple_net", series=accuracy_series("simple_net: validation accuracy per epoch"))
def simple_net_cases(rng):
    yield Case.call(rng.rand(5, 784), probe=probe_simple_net, judge=judge_simple_net, label="layers and shapes",
                    show="the layers of simple_net, its number of parameters, and simple_net(xb).shape for 5 images")  # fmt: skip
    d = digits()
    yield Case.call(
        d["train_x"], d["train_y"], d["valid_x"], 10, 0.5, 32, TRAIN_SEED,
        probe=probe_simple_net_trains, judge=accuracy_at_least(ACCURACY_BAR, "simple_net"), reference=False, timeout=30,
        label="learns 3 versus 7", show="simple_net, freshly initialised and trained for 10 epochs (lr=0.5); accuracy on the validation set",
    )  # fmt: skip
