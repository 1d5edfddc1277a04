"""How each graded function of lesson 3 is exercised.

Probe and mistake functions below are sent into kernels as source: they import what they use
inside their body. Inputs (tensors, numbers) are built here in the grader from the run's seed.
"""

import torch

from grader.checks import Case, Mistake, Verdict, check, explained, line_plot, loop_case, refuses

# ---------------------------------------------------------------------------------------------
# helpers run in the grader


def noisy_quadratic(rng, n=20):
    """x in [-2, 2] and a noisy quadratic of it, like the lesson's data."""
    a, b, c = rng.uniform(1, 4), rng.uniform(-2, 3), rng.uniform(-1, 2)
    x = torch.linspace(-2, 2, n)
    clean = a * x**2 + b * x + c
    y = clean * (1 + rng.randn(n) * 0.15) + rng.randn(n) * 1.5
    return x, y


# ---------------------------------------------------------------------------------------------
# probes and mistakes (these run inside kernels)


def probe_mk_quad(ns, a, b, c, x):
    f = ns["mk_quad"](a, b, c)
    return f(x)


def probe_add_noise(ns, n):
    """Statistics of add_noise's output, computed in float64 whatever it returns: a value of
    another type or dtype is reported (the judge names it), never a crash of this probe."""
    import torch

    add_noise = ns["add_noise"]
    x = torch.linspace(1, 3, n)

    def as64(v):
        try:
            return torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else v, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return None

    torch.manual_seed(0)
    only_add = add_noise(x, 0.0, 0.5)
    kind = type(only_add).__name__ if not isinstance(only_add, torch.Tensor) else "Tensor"
    dtype = str(only_add.dtype).replace("torch.", "") if isinstance(only_add, torch.Tensor) else None
    only_mult = add_noise(x, 0.2, 0.0)
    torch.manual_seed(1)
    first = as64(add_noise(x, 0.1, 0.1))
    torch.manual_seed(1)
    again = as64(add_noise(x, 0.1, 0.1))
    other = as64(add_noise(x, 0.1, 0.1))
    unchanged = as64(add_noise(x, 0.0, 0.0))
    only_add, only_mult, xd = as64(only_add), as64(only_mult), x.double()
    usable = all(v is not None and v.shape == xd.shape for v in (only_add, only_mult, first, again, other, unchanged))
    out = {"type": kind, "dtype": dtype, "shape": list(only_add.shape) if only_add is not None else None}
    if not usable:
        return out
    return out | {
        "std_add": float((only_add - xd).std()),
        "mean_add": float((only_add - xd).mean()),
        "std_mult": float((only_mult / xd - 1).std()),
        "mean_mult": float((only_mult / xd - 1).mean()),
        "reproducible": bool(torch.equal(first, again)),
        "varies": not bool(torch.equal(again, other)),
        "no_noise_is_identity": bool(torch.allclose(unchanged, xd, atol=1e-6)),
    }


def judge_add_noise(got, expected, tol):
    if type(got) is not dict:
        return Verdict(False, "add_noise must return a tensor with the shape of x", kind="wrong_type")
    if got.get("type") != "Tensor":
        return Verdict(False, f"add_noise returned a {got.get('type')}; it must return a tensor with the shape of x", kind="wrong_type")
    if "std_add" not in got:
        return Verdict(False, f"for x of shape (100000,) add_noise returned shape {tuple(got.get('shape') or ())}", kind="shape")
    problems = []
    if got.get("dtype") != "float32":
        problems.append(f"it returned {got.get('dtype')} values where x is float32: draw the noise with torch's own functions, "
                        "which give noise of x's dtype")  # fmt: skip
    if got.get("shape") != [100_000]:
        problems.append(f"for x of shape (100000,) it returned shape {tuple(got.get('shape') or ())}")
    if not got.get("no_noise_is_identity"):
        problems.append("with mult=0 and add=0 it did not return x unchanged")
    std_add, std_mult = got.get("std_add", 0.0), got.get("std_mult", 0.0)
    if not 0.47 <= std_add <= 0.53:
        problems.append(f"with mult=0, add=0.5 the added noise had standard deviation {std_add:.3f} (expected about 0.5)")
    if abs(got.get("mean_add", 0.0)) > 0.01:
        problems.append(f"the added noise has mean {got.get('mean_add'):.3f}; it should be centred on 0")
    if not 0.188 <= std_mult <= 0.212:
        problems.append(
            f"with mult=0.2, add=0 the relative change y/x - 1 had standard deviation {std_mult:.3f} "
            "(expected about 0.2): the noise should multiply x by (1 + noise * mult)"
        )
    if not got.get("reproducible"):
        problems.append(
            "two calls after the same torch.manual_seed gave different results: your noise does not come from torch's random generator, so the seed cannot repeat it"
        )
    if not got.get("varies"):
        problems.append("two calls in a row gave identical noise")
    if problems:
        return Verdict(False, "; ".join(problems), kind="behaviour", mistake=_add_noise_mistake(got, std_add, std_mult))
    return Verdict.passed()


def _add_noise_mistake(got, std_add, std_mult):
    """The named misconceptions of add_noise, told apart by the noise statistics."""
    if std_mult < 0.02 and 0.47 <= std_add <= 0.53:
        return "additive_only"  # mult is ignored: x + noise * add
    if not got.get("reproducible"):
        return "not_torch_random"  # numpy's or Python's generator: torch.manual_seed does not repeat it
    return None


def probe_quad_mse(ns, params, x, y):
    ns["x"], ns["y"] = x, y
    return ns["quad_mse"](params)


def probe_fit_quad(ns, x, y, params, lr, steps):
    import torch

    ns["x"], ns["y"] = x, y
    start = params.clone()
    fitted, losses = ns["fit_quad"](params, lr=lr, steps=steps)
    return {
        "params": fitted.detach() if isinstance(fitted, torch.Tensor) else fitted,
        "detached": not (isinstance(fitted, torch.Tensor) and fitted.requires_grad),
        "losses": [float(v) for v in losses],
        "losses_are_floats": all(type(v) is float for v in losses),
        "input_unchanged": bool(torch.equal(params, start)),
    }


def fit_quad_without_zero_grad(params, lr=0.01, steps=10):
    params = params.detach().clone().requires_grad_()
    losses = []
    for _ in range(steps):
        loss = quad_mse(params)  # noqa: F821 - runs in the notebook's namespace
        loss.backward()
        with torch.no_grad():
            params -= params.grad * lr
        losses.append(loss.item())
    return params.detach(), losses


def fit_quad_uphill(params, lr=0.01, steps=10):
    params = params.detach().clone().requires_grad_()
    losses = []
    for _ in range(steps):
        loss = quad_mse(params)  # noqa: F821 - runs in the notebook's namespace
        loss.backward()
        with torch.no_grad():  # noqa: F821
            params += params.grad * lr
        params.grad.zero_()
        losses.append(loss.item())
    return params.detach(), losses


def fit_quad_tensor_losses(params, lr=0.01, steps=10):
    params = params.detach().clone().requires_grad_()
    losses = []
    for _ in range(steps):
        loss = quad_mse(params)  # noqa: F821
        loss.backward()
        with torch.no_grad():  # noqa: F821
            params -= params.grad * lr
        params.grad.zero_()
        losses.append(loss)
    return params.detach(), losses


def fit_quad_in_place(params, lr=0.01, steps=10):
    params.requires_grad_()
    losses = []
    for _ in range(steps):
        loss = quad_mse(params)  # noqa: F821
        loss.backward()
        with torch.no_grad():  # noqa: F821
            params -= params.grad * lr
        params.grad.zero_()
        losses.append(loss.item())
    return params.detach(), losses


def judge_fit_quad(got, expected, tol):
    """Values as the reference; a changed input explained; a loss that grows called divergence, with the losses."""
    verdict = explained(
        {
            "['input_unchanged']": "fit_quad changed the tensor it was given: the caller's start now holds the fit.",
            "['detached']": "fit_quad returned parameters that are still part of the autograd graph: return them detached from it.",
            "['losses_are_floats']": "the losses should be Python floats (one number per step), not tensors.",
        }
    )(got, expected, tol)
    if verdict.ok or type(got) is not dict or type(got.get("losses")) is not list:
        return verdict
    losses = [v for v in got["losses"] if type(v) is float]
    if len(losses) >= 3 and (losses[-1] != losses[-1] or losses[-1] > 2 * losses[0]):
        shown = ", ".join(f"{v:.4g}" for v in losses[:3]) + ", ..., " + f"{losses[-1]:.4g}"
        verdict.message = (
            f"Your loss grows instead of shrinking ({shown}): the steps overshoot and the fit diverges. "
            "A step that climbs the gradient, or one far too large, does this.\n" + verdict.message
        )
        verdict.kind = "diverged"
    return verdict


def quad_no_constant(a, b, c, x):
    return a * x**2 + b * x


def mk_quad_reversed(a, b, c):
    return partial(quad, c, b, a)  # noqa: F821 - runs in the notebook's namespace


def mk_quad_swapped(a, b, c):
    return partial(quad, b, a, c)  # noqa: F821


def quad_mse_against_x(params):
    f = mk_quad(*params)  # noqa: F821
    return mse(f(x), x)  # noqa: F821


def quad_mse_reversed(params):
    f = mk_quad(*params.flip(0))  # noqa: F821
    return mse(f(x), y)  # noqa: F821


def double_relu_subtracted(m1, b1, m2, b2, x):
    return rectified_linear(m1, b1, x) - rectified_linear(m2, b2, x)  # noqa: F821


def double_relu_first_only(m1, b1, m2, b2, x):
    return rectified_linear(m1, b1, x)  # noqa: F821


def relu_model_swapped(params, x):
    import torch

    ms, bs = params[1::2], params[0::2]
    return torch.clip(ms[:, None] * x[None, :] + bs[:, None], min=0.0).sum(dim=0)


def relu_model_no_clip(params, x):
    ms, bs = params[0::2], params[1::2]
    return (ms[:, None] * x[None, :] + bs[:, None]).sum(dim=0)


def fit_relus_no_zero_grad(x, y, n_relus=5, lr=0.05, steps=300, seed=0):
    import torch

    torch.manual_seed(seed)
    params = (torch.randn(2 * n_relus) * 0.5).requires_grad_()
    losses = []
    for _ in range(steps):
        loss = ((relu_model(params, x) - y) ** 2).mean()  # noqa: F821
        loss.backward()
        with torch.no_grad():
            params -= lr * params.grad
        losses.append(loss.item())
    return params.detach(), losses


def fit_relus_uphill(x, y, n_relus=5, lr=0.05, steps=300, seed=0):
    import torch

    torch.manual_seed(seed)
    params = (torch.randn(2 * n_relus) * 0.5).requires_grad_()
    losses = []
    for _ in range(steps):
        loss = ((relu_model(params, x) - y) ** 2).mean()  # noqa: F821
        loss.backward()
        with torch.no_grad():
            params += lr * params.grad
        params.grad.zero_()
        losses.append(loss.item())
    return params.detach(), losses


def matmul_overwrites(a, b):
    import torch

    c = torch.zeros(a.shape[0], b.shape[1])
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            for k in range(a.shape[1]):
                c[i, j] = a[i, k] * b[k, j]
    return c


def matmul_sum_wrong_axis(a, b):
    import torch

    c = torch.zeros(a.shape[0], b.shape[1])
    for i in range(a.shape[0]):
        c[i] = (a[i, :, None] * b).sum(dim=1)
    return c


def matmul_einsum_out_transposed(a, b):
    import torch

    return torch.einsum("ik,kj->ji", a, b)


def linear_summed_batch(x, w, b):
    return (x @ w + b).sum(0)


def quad_times_two(a, b, c, x):
    return a * x * 2 + b * x + c


def mse_sum(preds, acts):
    return ((preds - acts) ** 2).sum()


def mse_rmse(preds, acts):
    return ((preds - acts) ** 2).mean().sqrt()


def mse_unsquared(preds, acts):
    return (preds - acts).mean()


def mse_abs(preds, acts):
    return (preds - acts).abs().mean()


def relu_clipped_above(m, b, x):
    import torch

    return torch.clip(m * x + b, max=0.0)


def relu_bias_after_clip(m, b, x):
    import torch

    return torch.clip(m * x, min=0.0) + b


def probe_fit_relus(ns, x, y, n_relus, lr, steps):
    import torch

    params, losses = ns["fit_relus"](x, y, n_relus=n_relus, lr=lr, steps=steps, seed=0)
    _, again = ns["fit_relus"](x, y, n_relus=n_relus, lr=lr, steps=3, seed=0)
    _, other = ns["fit_relus"](x, y, n_relus=n_relus, lr=lr, steps=3, seed=1)
    return {
        "losses": [float(v) for v in losses],
        "losses_are_floats": all(type(v) is float for v in losses),
        "detached": not (isinstance(params, torch.Tensor) and params.requires_grad),
        "seed_repeats": [float(v) for v in again] == [float(v) for v in losses[:3]],
        "seed_matters": [float(v) for v in other] != [float(v) for v in losses[:3]],
        "preds": ns["relu_model"](params, x).detach(),
    }


def judge_fit_relus(y):
    """Judge: the prescribed start (its first loss is the reference's), a loss that is the mean
    squared error and goes down to near the reference's, floats per step, a detached result."""

    def judge(got, expected, tol):
        if type(got) is not dict or type(got.get("losses")) is not list:
            return Verdict(False, "fit_relus must return (params, losses) with one loss per step", kind="wrong_type")
        losses, ref = got["losses"], expected["losses"]
        if len(losses) != len(ref):
            return Verdict(False, f"expected one loss per step ({len(ref)}), got {len(losses)}", kind="length")
        if not all(v == v for v in losses):
            return Verdict(False, "the loss became nan during training - is the learning rate too large, or is a gradient never reset?",
                           kind="nonfinite")  # fmt: skip
        if not got.get("losses_are_floats"):
            return Verdict(False, "the losses should be Python floats, one number per step (not tensors)", kind="wrong_type")
        if not got.get("detached"):
            return Verdict(False, "fit_relus returned parameters that are still part of the autograd graph: return them detached",
                           kind="behaviour")  # fmt: skip
        if abs(losses[0] - ref[0]) > 1e-4 * (1 + abs(ref[0])):
            return Verdict(False, f"the first loss is {losses[0]:.5g} where the reference's is {ref[0]:.5g}: start exactly as described "
                           "(seed with torch.manual_seed(seed), then 2 * n_relus normal numbers times 0.5) and measure the mean squared error",
                           kind="values")  # fmt: skip
        if not got.get("seed_repeats") or not got.get("seed_matters"):
            return Verdict(False, "the same seed should give the same training, and another seed another one: seed torch inside "
                           "fit_relus with its seed argument", kind="behaviour")  # fmt: skip
        final, ref_final = losses[-1], ref[-1]
        if not final < losses[0]:
            return Verdict(False, f"the loss did not go down ({losses[0]:.4g} -> {final:.4g})", kind="behaviour")
        preds = got.get("preds")
        if type(preds) is torch.Tensor and preds.shape == y.shape:
            actual = float(((preds.double() - y.double()) ** 2).mean())
            if actual > 1.5 * final + 0.02:
                return Verdict(False, f"the reported losses go down to {final:.4g}, but the returned parameters have a mean squared "
                               f"error of {actual:.4g}: the loss you minimise is not the mean squared error", kind="values")  # fmt: skip
        bar = 1.5 * ref_final + 0.02
        if final > bar:
            return Verdict(
                False,
                f"final loss {final:.4g} is well above what the reference reaches on the same data ({ref_final:.4g}; the bar is {bar:.4g}). "
                "Check that the gradient is reset every step and that the update goes against the gradient.",
                kind="values",
            )
        return Verdict.passed()

    return judge


def matmul_transposed(a, b):
    import torch

    return torch.einsum("ik,jk->ij", a, b)


def linear_no_bias(x, w, b):
    return x @ w


def linear_weights_first(x, w, b):
    return w @ x + b


def mse_item(preds, acts):
    return ((preds - acts) ** 2).mean().item()


def relu_in_place(m, b, x):
    import torch

    return torch.clip(x.mul_(m).add_(b), min=0.0)


def prep_money_in_place(amounts):
    import torch

    amounts[torch.isnan(amounts)] = torch.nanmedian(amounts)
    return torch.log1p(amounts)


def prep_money_log(amounts):
    import torch

    filled = torch.where(torch.isnan(amounts), torch.nanmedian(amounts), amounts)
    return torch.log(filled)


def prep_money_no_fill(amounts):
    import torch

    return torch.log1p(amounts)


def prep_money_fill_zero(amounts):
    import torch

    return torch.log1p(torch.nan_to_num(amounts, nan=0.0))


def prep_money_fill_mean(amounts):
    import torch

    filled = torch.where(torch.isnan(amounts), amounts.nanmean(), amounts)
    return torch.log1p(filled)


# ---------------------------------------------------------------------------------------------
# 01_quadratic


@check(
    "quad",
    mistakes=[
        Mistake(
            "times_two", "Your x-term doubles x where it should square it: for x = 3 your quadratic uses 6 instead of 9.", quad_times_two
        ),
        Mistake("no_constant", "The constant term is missing: at x = 0 your quadratic gives 0, where it should give c.", quad_no_constant),
    ],
)
def quad_cases(rng):
    yield Case.call(3.0, 2.0, 1.0, 1.5, label="numbers")
    yield Case.call(3.0, 2.0, 1.0, torch.tensor([-2.0, 0.0, 1.5, 2.0]), label="a tensor x")
    for _ in range(3):
        yield Case.call(rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-3, 3), rng.randn(8, scale=2), random=True)


@check(
    "mk_quad",
    mistakes=[
        Mistake(
            "reversed",
            "The parameters reach quad in reverse order: the first one you pass ends up as the constant term, the last one multiplies x squared.",
            mk_quad_reversed,
        ),
        Mistake(
            "swapped",
            "The first two parameters are swapped: the one meant for x squared multiplies x, and the other way round.",
            mk_quad_swapped,
        ),
    ],
)
def mk_quad_cases(rng):
    yield Case.call(
        3.0, 2.0, 1.0, torch.tensor([-1.0, 0.0, 2.0]), probe=probe_mk_quad, show="mk_quad(3.0, 2.0, 1.0)(tensor([-1., 0., 2.]))"
    )
    for _ in range(2):
        a, b, c = rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-3, 3)
        yield Case.call(a, b, c, rng.randn(6), probe=probe_mk_quad, random=True, show=f"mk_quad({a}, {b}, {c})(x)")


@check("add_noise")
def add_noise_cases(rng):
    yield Case.call(
        100_000,
        probe=probe_add_noise,
        judge=judge_add_noise,
        reference=False,
        label="noise statistics",
        show="add_noise(x, mult, add) on 100,000 points: spread, centring, repeatability",
    )


@check(
    "mse",
    mistakes=[
        Mistake(
            "sum",
            "Your mse adds the squared errors up instead of averaging them, so it grows with the number of points: on 3 points it is 3 times the mean squared error.",
            mse_sum,
        ),
        Mistake(
            "rmse",
            "Your value is the square root of the expected one: that is the root mean squared error, not the mean squared error.",
            mse_rmse,
        ),
        Mistake(
            "unsquared",
            "The differences are averaged without squaring them, so positive and negative errors cancel out: your loss can be 0, or even negative, for a bad fit.",
            mse_unsquared,
        ),
        Mistake(
            "item",
            "Your mse returns a plain Python number (.item()) where a tensor is wanted: backward() needs the loss as a tensor to differentiate it.",
            mse_item,
        ),
        Mistake(
            "abs",
            "You averaged the sizes of the differences (the L1 loss); mse squares each difference, so large errors count far more.",
            mse_abs,
        ),
    ],
)
def mse_cases(rng):
    yield Case.call(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 4.0, 0.0]), label="small example")
    for n in (5, 20):
        yield Case.call(rng.randn(n, scale=3), rng.randn(n, scale=3), random=True)


@check(
    "quad_mse",
    mistakes=[
        Mistake(
            "against_x",
            "Your loss compares the predictions with the inputs x; the targets are the noisy measurements y.",
            quad_mse_against_x,
        ),
        Mistake(
            "reversed_params",
            "The parameters are used in reverse order: the first entry of params should multiply x squared, the last one is the constant.",
            quad_mse_reversed,
        ),
    ],
)
def quad_mse_cases(rng):
    x, y = noisy_quadratic(rng)
    yield Case.call(torch.tensor([1.5, 1.5, 1.5]), x, y, probe=probe_quad_mse, show="quad_mse(tensor([1.5, 1.5, 1.5])) on new data x, y")
    for _ in range(2):
        params = torch.tensor([rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-3, 3)])
        yield Case.call(params, x, y, probe=probe_quad_mse, random=True, show=f"quad_mse(tensor({[round(v, 3) for v in params.tolist()]}))")


def loss_plot(got: dict, expected: dict) -> dict:
    """The loss of each step, the learner's next to the reference's (for the report)."""
    return line_plot("Loss per step", list(range(len(expected["losses"]))), {"reference": expected["losses"], "yours": got.get("losses")},
                     xlabel="step", ylabel="mse")  # fmt: skip


def fit_series(got, expected, cases):
    pairs = [(g, e, c) for g, e, c in zip(got, expected, cases) if type(g) is dict and type(e) is dict]
    if not pairs:
        return {}
    g, e, c = pairs[0]
    x, y = c.args[0], c.args[1]
    grid = torch.linspace(float(x.min()), float(x.max()), 60)

    def curve(params):
        try:
            a, b, cc = (float(v) for v in params)
            return a * grid**2 + b * grid + cc
        except (TypeError, ValueError):
            return None

    return {
        "fit": line_plot(
            "Fitted quadratic over the data",
            grid,
            {"reference": curve(e["params"]), "yours": curve(g["params"])},
            points=(x, y),
            xlabel="x",
            ylabel="y",
        ),
        "loss": loss_plot(g, e),
    }


@check(
    "fit_quad",
    mistakes=[
        Mistake(
            "no_zero_grad",
            "Your loss history matches a loop that never resets the gradients: the backward pass adds each new gradient "
            "to the one already stored, so every step moves by the sum of all gradients so far and the steps keep growing.",
            fit_quad_without_zero_grad,
        ),
        Mistake(
            "uphill",
            "Your loss grows from step to step: the parameters move along the gradient, which points uphill. Gradient descent moves against it.",
            fit_quad_uphill,
        ),
        Mistake(
            "tensor_losses",
            "Your losses are tensors, not numbers: each one keeps its whole computation graph alive. Record each loss as a plain Python float.",
            fit_quad_tensor_losses,
        ),
        Mistake(
            "changes_input",
            "fit_quad trained the very tensor it was given, so the caller's starting point changed: after the call it holds the fitted values. Work on a copy.",
            fit_quad_in_place,
        ),
    ],
    series=fit_series,
)
def fit_quad_cases(rng):
    torch.manual_seed(42)
    x = torch.linspace(-2, 2, 20)
    y = (3 * x**2 + 2 * x + 1) * (1 + torch.randn(20) * 0.15) + torch.randn(20) * 1.5
    judge = judge_fit_quad
    yield Case.call(x, y, torch.tensor([1.1, 1.1, 1.1]), 0.01, 10, probe=probe_fit_quad, judge=judge,
                    label="the lesson's data", show="fit_quad(tensor([1.1, 1.1, 1.1]), lr=0.01, steps=10)")  # fmt: skip
    x2, y2 = noisy_quadratic(rng)
    start = torch.tensor([rng.uniform(0, 2), rng.uniform(0, 2), rng.uniform(0, 2)])
    yield Case.call(x2, y2, start, 0.005, 15, probe=probe_fit_quad, judge=judge, random=True,
                    show=f"fit_quad(tensor({[round(v, 3) for v in start.tolist()]}), lr=0.005, steps=15) on new data")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 02_relu


@check(
    "rectified_linear",
    mistakes=[
        Mistake(
            "clipped_above",
            "Your ReLU keeps the negative part of the line and cuts off the positive one; a ReLU does the opposite: where the line is below zero it gives 0.",
            relu_clipped_above,
        ),
        Mistake(
            "bias_after_clip",
            "You added b after cutting off the negative part, so your curve never reaches 0 (it stays at b); the bias belongs to the line, before the cut.",
            relu_bias_after_clip,
        ),
        Mistake(
            "changes_input",
            "Your rectified_linear computes the line inside x itself, so the caller's x is gone afterwards - and a second "
            "call (double_relu makes two) starts from the wrong values.",
            relu_in_place,
        ),
    ],
)
def rectified_linear_cases(rng):
    yield Case.call(1.5, 0.5, torch.tensor([-2.0, -1.0, -0.25, 0.0, 1.0, 2.0]), label="slope 1.5, intercept 0.5")
    for _ in range(3):
        yield Case.call(rng.uniform(-2, 2), rng.uniform(-1, 1), rng.randn(10, scale=2), random=True)


@check(
    "double_relu",
    mistakes=[
        Mistake(
            "subtracted",
            "You subtracted the second ReLU; the curve is the sum of the two, so where both are active their slopes add up.",
            double_relu_subtracted,
        ),
        Mistake("first_only", "Only the first ReLU is there: your curve has one bend, and m2, b2 change nothing.", double_relu_first_only),
    ],
)
def double_relu_cases(rng):
    yield Case.call(1.5, 0.5, -1.0, -0.2, torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0]), label="two bends")
    for _ in range(2):
        yield Case.call(*(rng.uniform(-2, 2) for _ in range(4)), rng.randn(10, scale=2), random=True)


@check(
    "relu_model",
    mistakes=[
        Mistake(
            "swapped",
            "Slopes and intercepts are swapped: the entries at even positions of params are the slopes, those at odd positions the intercepts.",
            relu_model_swapped,
        ),
        Mistake(
            "no_clip",
            "Nothing cuts the lines at zero: your model is a sum of straight lines, which is just one straight line.",
            relu_model_no_clip,
        ),
    ],
)
def relu_model_cases(rng):
    yield Case.call(torch.tensor([1.0, 0.5, -1.0, 0.2]), torch.tensor([-1.0, 0.0, 1.0]), label="two units")
    for units in (3, 8):
        yield Case.call(rng.randn(2 * units), rng.randn(12, scale=2), random=True)
    x = rng.randn(12)
    yield loop_case("relu_model", (rng.randn(4), x), (rng.randn(100), x), what="numbers of units",
                    advice="compute all units at once, as a table with one row per unit and one column per x",
                    label="no loop over units", show="relu_model with 2 units and with 50 units")  # fmt: skip


def relu_fit_series(got, expected, cases):
    g, e, c = got[0], expected[0], cases[0]
    if type(g) is not dict or type(e) is not dict:
        return {}
    x, y = c.args[0], c.args[1]
    return {
        "fit": line_plot(
            "Sum of ReLUs fitted to the data", x, {"reference": e["preds"], "yours": g.get("preds")}, points=(x, y), xlabel="x", ylabel="y"
        ),
        "loss": loss_plot(g, e),
    }


@check(
    "fit_relus",
    requires=("fit_relus", "relu_model"),
    series=relu_fit_series,
    mistakes=[
        Mistake(
            "no_zero_grad",
            "Your losses match a loop that never resets the gradient: each step adds all the old gradients again, so the steps keep growing.",
            fit_relus_no_zero_grad,
        ),  # fmt: skip
        Mistake(
            "uphill", "Your loss grows from step to step: the parameters move along the gradient, which points uphill.", fit_relus_uphill
        ),
    ],
)
def fit_relus_cases(rng):
    x = torch.linspace(-2, 2, 50)
    y = x.abs() - 0.5 * x + rng.randn(50, scale=0.1)
    yield Case.call(x, y, 6, 0.05, 300, probe=probe_fit_relus, judge=judge_fit_relus(y), random=True,
                    label="a V-shaped target", show="fit_relus(x, y, n_relus=6, lr=0.05, steps=300)")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 03_matmul


REFUSE = "a (2, 3) matrix cannot be multiplied by a (4, 2) one (the inner sizes 3 and 4 differ): the function must refuse them."


def _matrices(rng, n, k, m):
    return rng.randn(n, k), rng.randn(k, m)


@check(
    "matmul_loops",
    mistakes=[
        Mistake(
            "transposed",
            "Your result is a times the transpose of b: the shared index runs along the rows of b where it should run down its columns.",
            matmul_transposed,
        ),
        Mistake(
            "overwrites",
            "Each entry of your result is only the last product of its row and column: the products over the shared index are overwritten, not added up.",
            matmul_overwrites,
        ),
    ],
)
def matmul_loops_cases(rng):
    yield Case.call(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[5.0, 6.0], [7.0, 8.0]]), label="2x2 example")
    yield Case.call(*_matrices(rng, 3, 3, 3), random=True, label="square matrices")
    yield Case.call(*_matrices(rng, 4, 5, 2), random=True, label="rectangular matrices")
    yield refuses("matmul_loops", rng.randn(2, 3), rng.randn(4, 2), why=REFUSE, label="shapes that cannot be multiplied",
                  show="matmul_loops(a, b) with a of shape (2, 3) and b of shape (4, 2)")  # fmt: skip


@check(
    "matmul_broadcast",
    mistakes=[
        Mistake(
            "transposed",
            "Your result is a times the transpose of b: each entry of a row of a should scale a row of b, not a column.",
            matmul_transposed,
        ),
        Mistake(
            "sum_wrong_axis",
            "You summed along the wrong axis: the products should be added up over the shared index, which runs down the rows of b.",
            matmul_sum_wrong_axis,
        ),
    ],
)
def matmul_broadcast_cases(rng):
    yield Case.call(*_matrices(rng, 3, 3, 3), random=True, label="square matrices")
    yield Case.call(*_matrices(rng, 4, 5, 2), random=True, label="rectangular matrices")
    yield refuses("matmul_broadcast", rng.randn(2, 3), rng.randn(1, 2), why=REFUSE.replace("(4, 2)", "(1, 2)").replace("3 and 4", "3 and 1"),
                  label="shapes that cannot be multiplied", show="matmul_broadcast(a, b) with a of shape (2, 3) and b of shape (1, 2)")  # fmt: skip
    yield loop_case("matmul_broadcast", _matrices(rng, 4, 3, 2), _matrices(rng, 4, 40, 30), what="matrices",
                    advice="keep only the loop over the rows of a",
                    label="one loop only", show="matmul_broadcast on (4x3)@(3x2) and on (4x40)@(40x30)")  # fmt: skip


@check(
    "matmul_einsum",
    mistakes=[
        Mistake("transposed", "Your subscripts read b transposed: the letter summed over must index the rows of b.", matmul_transposed),
        Mistake(
            "out_transposed",
            "The output subscripts are swapped: the result is indexed by (row of a, column of b).",
            matmul_einsum_out_transposed,
        ),  # fmt: skip
    ],
)
def matmul_einsum_cases(rng):
    yield Case.call(*_matrices(rng, 3, 3, 3), random=True, label="square matrices")
    yield Case.call(*_matrices(rng, 5, 4, 6), random=True, label="rectangular matrices")
    yield loop_case("matmul_einsum", _matrices(rng, 2, 2, 2), _matrices(rng, 30, 30, 30), what="matrices", slack=1.5,
                    advice="one call to einsum does the whole product, with no Python loop",
                    label="no Python loop", show="matmul_einsum on 2x2 and on 30x30 matrices")  # fmt: skip


@check(
    "linear",
    mistakes=[
        Mistake("no_bias", "The bias is missing: each of your outputs is off by exactly its bias.", linear_no_bias),
        Mistake(
            "weights_first",
            "Your matrix product is the wrong way round, weights first: one example with two features gives a 2x2 table instead "
            "of one output. The batch, one row per example, comes first.",
            linear_weights_first,
        ),
        Mistake(
            "summed_batch",
            "You added up the rows: your result is one row for the whole batch, where a linear layer keeps one row of outputs per example.",
            linear_summed_batch,
        ),
    ],
)
def linear_cases(rng):
    yield Case.call(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0], [0.5]]), torch.tensor([0.25]), label="one example, one output")
    yield Case.call(rng.randn(5, 3), rng.randn(3, 2), rng.randn(2), random=True, label="a batch of 5")


@check(
    "prep_money",
    mistakes=[
        Mistake(
            "log",
            "An amount of 0 became -inf: the plain logarithm of 0 is minus infinity. The log the lesson uses adds 1 first, so 0 stays 0.",
            prep_money_log,
        ),
        Mistake(
            "no_fill",
            "Your result still has nan where an amount was missing: fill each gap with a typical amount before taking the log.",
            prep_money_no_fill,
        ),
        Mistake(
            "fill_zero",
            "You filled missing amounts with 0, which is far below a typical amount: fill them with the middle value of the known amounts.",
            prep_money_fill_zero,
        ),
        Mistake(
            "fill_mean",
            "You filled missing amounts with the average, which the few very large amounts pull up; the middle value of the known amounts is not pulled up.",
            prep_money_fill_mean,
        ),
        Mistake(
            "changes_input",
            "Your prep_money fills the gaps in the caller's own tensor: after the call, the original amounts have lost their nan.",
            prep_money_in_place,
        ),
    ],
)
def prep_money_cases(rng):
    nan = float("nan")
    yield Case.call(torch.tensor([7.25, 71.28, 0.0, 8.05, nan, 512.33, 13.0]), label="fares with a gap and a zero")
    amounts = rng.rand(15, low=0.0, high=3.0).exp() * 10
    amounts[rng.randint(0, 14)] = nan
    amounts[rng.randint(0, 14)] = 0.0
    yield Case.call(amounts, random=True, label="random amounts")
