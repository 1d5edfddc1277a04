"""How the fine-tuning notebook is graded.

The learner trains on the 600 digits of digits.npz. The grader keeps 500 more (holdout.npz),
which are not among the files copied next to the notebook; a probe receives them as a uint8
tensor only after the notebook has run, writes them as PNG files inside the kernel and reports
the *predicted labels*. The true labels never leave this process: accuracy is computed here.

The exported model.pkl is a pickle, so it is only ever loaded inside the sandboxed kernel (a
probe calls `load_learner` there); this process reads back plain lists and tensors.

Every case has reference=False - the judges hold fixed bars - so grading never retrains the
reference solution.

Figures behind the bars (CPU, measured with `pretrain.py compare` and the test suite):
  * the reference recipe (fine_tune(4, base_lr=1e-2), bs=32) gets 93-96% of the holdout right;
    the accuracy bar is 85%;
  * fine-tuning keeps the first convolution almost unchanged (cosine similarity with the shipped
    weights 1.00; 0.7 even when the unfrozen network is trained at a 5x larger rate), while a
    network trained from random weights lands near 0 (|cos| < 0.05): the bar is 0.3.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from grader.checks import Case, Verdict, check

HERE = Path(__file__).resolve().parent
DIGITS = [str(d) for d in range(10)]
N_IMAGES = 600  # in digits.npz
ACCURACY_BAR = 0.85
REFERENCE_ACCURACY = 0.95
SIMILARITY_BAR = 0.3
PREDICT_SAMPLE = 25  # held-out files handed to predict_digit (one .predict call each)

# ---------------------------------------------------------------------------------------------
# data kept in the grader


@functools.lru_cache(maxsize=1)
def holdout() -> tuple[torch.Tensor, list[str]]:
    """(images as (500, 28, 28) uint8, their labels as strings). Never sent to a kernel with labels."""
    import numpy as np

    with np.load(HERE / "holdout.npz") as data:
        return torch.from_numpy(data["images"].copy()), [str(int(v)) for v in data["labels"]]


@functools.lru_cache(maxsize=1)
def pretrained_first_conv() -> torch.Tensor:
    """The first convolution's weights as shipped in glyph_cnn.pth (our own file: weights only)."""
    state = torch.load(HERE / "glyph_cnn.pth", map_location="cpu", weights_only=True)
    return state["0.0.weight"].float()


def accuracy(preds, labels: list[str]) -> float:
    return sum(str(p) == y for p, y in zip(preds, labels)) / len(labels)


def similarity(conv) -> float | None:
    """Cosine similarity of a first-layer weight tensor with the shipped pretrained one."""
    ref = pretrained_first_conv()
    if type(conv) is not torch.Tensor or conv.shape != ref.shape:
        return None
    return float(torch.nn.functional.cosine_similarity(conv.float().flatten(), ref.flatten(), dim=0))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# ---------------------------------------------------------------------------------------------
# probes (run inside the learner's kernel; self-contained)


def probe_dls(ns):
    dls = ns["dls"]
    if dls is Ellipsis:
        return {"todo": "dls"}
    info = {"type": type(dls).__module__ + "." + type(dls).__qualname__}
    if not all(hasattr(dls, name) for name in ("train_ds", "valid_ds", "one_batch")):
        return info
    try:
        info["vocab"] = [str(v) for v in dls.vocab]
        info["n_train"], info["n_valid"] = len(dls.train_ds), len(dls.valid_ds)
        batch = dls.one_batch()
        info["x_shape"] = [int(d) for d in batch[0].shape]
        info["y_range"] = [int(batch[1].min()), int(batch[1].max())]
    except Exception as exc:
        info["problem"] = f"{type(exc).__name__}: {exc}"[:300]
    return info


def probe_backbone(ns):
    import torch

    learn = ns["learn"]
    if learn is Ellipsis:
        return {"todo": "learn"}
    info = {"type": type(learn).__module__ + "." + type(learn).__qualname__}
    model = getattr(learn, "model", None)
    if not isinstance(model, torch.nn.Module):
        return info
    convs = [m.weight.detach().float().cpu().clone() for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    info["first_conv"] = convs[0] if convs else None
    info["n_out"] = int(linears[-1].out_features) if linears else None
    return info


def probe_holdout(ns, images, mode, sample=()):
    """mode 'trained': the notebook's `learn` on every image; 'export': model.pkl, loaded here, on
    every image; 'predict_digit': the learner's function and model.pkl on the `sample` images."""
    import os
    import tempfile
    from pathlib import Path

    import torch
    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="holdout-", dir=os.getcwd()))
    files = []
    for i, img in enumerate(images):
        files.append(folder / f"{i:04d}.png")
        Image.fromarray(img.numpy()).save(files[-1])

    def describe(obj):
        return type(obj).__module__ + "." + type(obj).__qualname__

    def predict(learner, paths):
        dl = learner.dls.test_dl(paths, num_workers=0)
        with learner.no_bar():
            probs = learner.get_preds(dl=dl)[0]
        vocab = [str(v) for v in learner.dls.vocab]
        return [vocab[i] for i in probs.argmax(dim=1).tolist()]

    def load_exported():
        from fastai.learner import load_learner

        return load_learner("model.pkl")

    learn = ns.get("learn")
    if mode == "trained":
        if learn is Ellipsis:
            return {"todo": "learn"}
        # evidence of training that outlives later get_preds calls (which reset the recorder):
        # the optimiser's per-parameter statistics, created by the first step
        states = list(getattr(getattr(learn, "opt", None), "state", {}).values())
        stepped = any(key in state for state in states for key in ("step", "grad_avg", "sqr_avg"))
        return {"type": describe(learn), "trained": stepped, "preds": predict(learn, files)}
    if mode == "export":
        out = {"exists": os.path.isfile("model.pkl")}
        other = Path(getattr(learn, "path", ".")) / "model.pkl"
        if other.is_file() and not (out["exists"] and os.path.samefile(other, "model.pkl")):
            out["elsewhere"] = str(other)
        if not out["exists"]:
            return out
        try:
            exported = load_exported()
        except Exception as exc:
            out["load_error"] = f"{type(exc).__name__}: {exc}"[:500]
            return out
        out["type"] = describe(exported)
        if not (hasattr(exported, "dls") and isinstance(getattr(exported, "model", None), torch.nn.Module)):
            return out
        out["vocab"] = [str(v) for v in exported.dls.vocab]
        convs = [m.weight.detach().float().cpu().clone() for m in exported.model.modules() if isinstance(m, torch.nn.Conv2d)]
        out["first_conv"] = convs[0] if convs else None
        out["preds"] = predict(exported, files)
        try:
            out["learn_preds"] = predict(learn, files)
        except Exception:
            out["learn_preds"] = None
        return out
    chosen = [files[i] for i in sample]
    got = []
    for path in chosen:
        value = ns["predict_digit"](str(path))
        if isinstance(value, str):  # fastai's Category is a str subclass
            got.append(str.__str__(value))
        else:
            got.append(value if type(value) is int else {"type": describe(value), "repr": repr(value)[:120]})
    out = {"got": got}
    try:
        out["exported"] = predict(load_exported(), chosen)
    except Exception as exc:
        out["exported_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def probe_mixed_precision(ns):
    import torch

    learn = ns["learn"]
    cuda = torch.cuda.is_available()
    if learn is Ellipsis:
        return {"cuda": cuda, "todo": "learn"}
    callbacks = [type(cb).__name__ for cb in getattr(learn, "cbs", [])]
    amp = [str(getattr(cb, "amp_mode", "")) for cb in getattr(learn, "cbs", []) if type(cb).__name__ == "MixedPrecision"]
    params = list(learn.model.parameters()) if isinstance(getattr(learn, "model", None), torch.nn.Module) else []
    states = list(getattr(getattr(learn, "opt", None), "state", {}).values())
    return {
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "callbacks": callbacks,
        "amp_mode": amp[0] if amp else None,
        "model_device": params[0].device.type if params else None,
        "dls_device": str(getattr(getattr(learn, "dls", None), "device", None)),
        "trained": any(key in state for state in states for key in ("step", "grad_avg", "sqr_avg")),
    }


# ---------------------------------------------------------------------------------------------
# judges (run in the grader)


def todo(got) -> Verdict | None:
    """The stub's `name = ...` placeholder is still there."""
    if type(got) is dict and "todo" in got:
        return Verdict(False, f"`{got['todo']}` is not written yet (it is still `...`)", kind="not_implemented")
    return None


def judge_dls(got, expected, tol):
    if todo(got):
        return todo(got)
    if type(got) is not dict:
        return Verdict(False, "dls did not describe itself as DataLoaders", kind="wrong_type")
    if "vocab" not in got and "problem" not in got:
        return Verdict(
            False,
            f"dls is a {got.get('type')}, not fastai DataLoaders: build it with ImageDataLoaders.from_folder(path, ...) "
            "or DataBlock(...).dataloaders(path)",
            kind="wrong_type",
        )
    if "problem" in got:
        return Verdict(False, f"dls cannot produce a labelled batch: {got['problem']}", kind="behaviour")
    if got["vocab"] != DIGITS:
        return Verdict(
            False,
            f"dls.vocab is {got['vocab'][:12]}; the classes are the folder names '0' to '9' (label each image by its parent folder)",
            kind="values",
        )
    n_train, n_valid = got["n_train"], got["n_valid"]
    if n_train + n_valid != N_IMAGES:
        return Verdict(
            False, f"dls holds {n_train} training and {n_valid} validation images; the digit folders hold {N_IMAGES}", kind="values"
        )
    if not 0.1 <= n_valid / N_IMAGES <= 0.4:
        return Verdict(
            False, f"{n_valid} of the {N_IMAGES} images are in the validation set; hold back about a fifth (valid_pct=0.2)", kind="values"
        )
    shape = got["x_shape"]
    if len(shape) != 4 or shape[1] != 3 or min(shape[2:]) < 16:
        return Verdict(
            False,
            f"a batch of images has shape {tuple(shape)}; expected (batch, 3, height, width) with colour channels and at least 16 pixels a side",
            kind="shape",
        )
    return Verdict(True)


def judge_backbone(got, expected, tol):
    if todo(got):
        return todo(got)
    if type(got) is not dict or "first_conv" not in got:
        kind = got.get("type") if type(got) is dict else type(got).__name__
        return Verdict(
            False,
            f"learn is a {kind}, not a fastai Learner with a model: create it with vision_learner(dls, glyph_cnn, ...)",
            kind="wrong_type",
        )
    if got["first_conv"] is None:
        return Verdict(
            False, "learn.model has no convolution layers: create it with vision_learner(dls, glyph_cnn, ...)", kind="not_pretrained"
        )
    sim = similarity(got["first_conv"])
    if sim is None:
        ref = tuple(pretrained_first_conv().shape)
        return Verdict(
            False,
            f"the first layer of learn.model has weights of shape {tuple(got['first_conv'].shape)}, glyph_cnn's has {ref}: learn is not built on the glyph_cnn backbone",
            kind="not_pretrained",
        )
    if sim < SIMILARITY_BAR:
        return Verdict(
            False,
            f"the first layer of learn.model does not resemble the pretrained glyph_cnn weights (cosine similarity {sim:.2f}; "
            f"fine-tuning keeps it above {SIMILARITY_BAR}, training from random weights gives about 0): this model was trained "
            "from scratch or its weights were replaced. Create the learner with vision_learner(dls, glyph_cnn) and the default pretrained=True",
            kind="not_pretrained",
        )
    if got.get("n_out") != len(DIGITS):
        return Verdict(False, f"learn.model ends with {got.get('n_out')} outputs; it needs one per class, {len(DIGITS)}", kind="values")
    return Verdict(True, f"first layer similarity with the pretrained weights: {sim:.2f}")


def judge_trained(labels: list[str]):
    def judge(got, expected, tol):
        if todo(got):
            return todo(got)
        if type(got) is not dict or type(got.get("preds")) is not list:
            return Verdict(False, "could not get predictions from learn", kind="wrong_type")
        acc = accuracy(got["preds"], labels)
        if acc >= ACCURACY_BAR:
            return Verdict(True, f"learn gets {_pct(acc)} of the {len(labels)} held-out digits right")
        if not got.get("trained"):
            return Verdict(
                False,
                f"learn has not been trained: its optimiser has never taken a step, and it gets {_pct(acc)} of the {len(labels)} held-out "
                "digits right (guessing gets 10%). Call learn.fine_tune(...) after creating the learner",
                kind="not_trained",
            )
        return Verdict(
            False,
            f"learn gets {_pct(acc)} of the {len(labels)} held-out digits right; the bar is {_pct(ACCURACY_BAR)} "
            f"(the reference solution gets about {_pct(REFERENCE_ACCURACY)})",
            kind="accuracy",
        )

    return judge


def judge_export(labels: list[str]):
    def judge(got, expected, tol):
        if type(got) is not dict:
            return Verdict(False, "could not inspect model.pkl", kind="wrong_type")
        if not got.get("exists"):
            where = (
                f" There is one at {got['elsewhere']}: learn.export writes into learn.path - create the learner with path='.'."
                if got.get("elsewhere")
                else ""
            )
            return Verdict(
                False, f"model.pkl was not found in the notebook's folder: call learn.export('model.pkl').{where}", kind="missing_file"
            )
        if "load_error" in got:
            return Verdict(False, f"load_learner('model.pkl') failed: {got['load_error']}", kind="exception")
        if "preds" not in got:
            return Verdict(
                False,
                f"model.pkl loads as a {got.get('type')}, not an exported fastai Learner: save it with learn.export('model.pkl')",
                kind="wrong_type",
            )
        if got["vocab"] != DIGITS:
            return Verdict(False, f"the exported model's vocab is {got['vocab'][:12]}, not the digits '0' to '9'", kind="values")
        sim = similarity(got.get("first_conv"))
        if sim is None or sim < SIMILARITY_BAR:
            shown = "a different shape" if sim is None else f"cosine similarity {sim:.2f}"
            return Verdict(
                False,
                f"the exported model's first layer does not resemble the pretrained glyph_cnn weights ({shown}): export the fine-tuned learner",
                kind="not_pretrained",
            )
        acc = accuracy(got["preds"], labels)
        if acc >= ACCURACY_BAR:
            return Verdict(True, f"model.pkl gets {_pct(acc)} of the {len(labels)} held-out digits right")
        learn_preds = got.get("learn_preds")
        learn_acc = accuracy(learn_preds, labels) if type(learn_preds) is list else None
        if learn_acc is not None and learn_acc >= ACCURACY_BAR:
            return Verdict(
                False,
                f"model.pkl gets only {_pct(acc)} of the held-out digits right, while learn in your notebook gets {_pct(learn_acc)}: "
                "the file holds an older, untrained state. Call learn.export('model.pkl') after learn.fine_tune(...)",
                kind="stale_export",
            )
        return Verdict(
            False,
            f"model.pkl gets {_pct(acc)} of the {len(labels)} held-out digits right; the bar is {_pct(ACCURACY_BAR)} "
            f"(the reference solution gets about {_pct(REFERENCE_ACCURACY)}). Export the learner after fine-tuning it",
            kind="accuracy",
        )

    return judge


def judge_predict_digit(labels: list[str]):
    def judge(got, expected, tol):
        if type(got) is not dict or type(got.get("got")) is not list:
            return Verdict(False, "predict_digit could not be called on the held-out files", kind="wrong_type")
        values = got["got"]
        bad = next((v for v in values if type(v) is not str), None)
        if bad is not None:
            what = bad.get("type", "?") if type(bad) is dict else type(bad).__name__
            shown = bad.get("repr", "") if type(bad) is dict else repr(bad)
            return Verdict(
                False, f"predict_digit returned a {what} ({shown}); return the label alone, a string such as '7'", kind="wrong_type"
            )
        strange = sorted({v for v in values if v not in DIGITS})
        if strange:
            return Verdict(False, f"predict_digit returned {strange[:3]}, which are not labels of the vocab '0' to '9'", kind="values")
        if "exported" not in got:
            return Verdict(
                False,
                f"predict_digit could not be compared with model.pkl, which did not load: {got.get('exported_error', '')}",
                kind="missing_file",
            )
        agree = sum(a == b for a, b in zip(values, got["exported"]))
        if agree < len(values) - 1:  # allow one near-tie decided differently one image at a time
            return Verdict(
                False,
                f"predict_digit agrees with the exported model.pkl on only {agree} of {len(values)} held-out images: "
                "load the exported file with load_learner('model.pkl') and predict with it",
                kind="mismatch",
            )
        return Verdict(
            True, f"agrees with model.pkl on {agree} of {len(values)} held-out images; {_pct(accuracy(values, labels))} of them right"
        )

    return judge


def judge_mixed_precision(got, expected, tol):
    if type(got) is not dict:
        return Verdict(False, "could not inspect learn", kind="wrong_type")
    if not got.get("cuda"):
        return Verdict(
            True, "needs a CUDA GPU: this machine has none, so training on CUDA in mixed precision was not checked", kind="skipped"
        )
    if todo(got):
        return todo(got)
    problems = []
    if got.get("model_device") != "cuda":
        problems.append(f"learn.model is on the {got.get('model_device')}, not the GPU ({got.get('gpu')})")
    if "MixedPrecision" not in got.get("callbacks", []):
        problems.append("learn has no MixedPrecision callback: call learn = learn.to_fp16() before fine_tune")
    if not got.get("trained"):
        problems.append("learn has not been trained")
    if problems:
        return Verdict(False, "; ".join(problems), kind="behaviour")
    return Verdict(True, f"trained on {got.get('gpu')} with mixed precision ({got.get('amp_mode')})")


# ---------------------------------------------------------------------------------------------
# checks


@check("dls", callables=())
def dls_cases(rng):
    yield Case.call(probe=probe_dls, judge=judge_dls, reference=False, label="the DataLoaders", show="dls: vocab, split sizes, one batch")


@check("pretrained", requires=("learn",), callables=())
def pretrained_cases(rng):
    yield Case.call(probe=probe_backbone, judge=judge_backbone, reference=False, label="the backbone",
                    show="learn.model's first layer vs the shipped glyph_cnn weights")  # fmt: skip


@check("fine_tune", requires=("learn",), callables=())
def fine_tune_cases(rng):
    images, labels = holdout()
    yield Case.call(images, "trained", probe=probe_holdout, judge=judge_trained(labels), reference=False,
                    label="held-out digits", show=f"learn on {len(labels)} held-out digits")  # fmt: skip


@check("export", requires=(), callables=())
def export_cases(rng):
    images, labels = holdout()
    yield Case.call(images, "export", probe=probe_holdout, judge=judge_export(labels), reference=False,
                    label="held-out digits", show=f"load_learner('model.pkl') on {len(labels)} held-out digits")  # fmt: skip


@check("predict_digit")
def predict_digit_cases(rng):
    images, labels = holdout()
    sample = sorted(rng.py.sample(range(len(labels)), PREDICT_SAMPLE))
    chosen = [labels[i] for i in sample]
    yield Case.call(images[sample], "predict_digit", list(range(len(sample))), probe=probe_holdout, judge=judge_predict_digit(chosen),
                    reference=False, random=True, label="held-out files", show=f"predict_digit(path) on {len(sample)} held-out PNG files")  # fmt: skip


@check("mixed_precision", requires=("learn",), callables=())
def mixed_precision_cases(rng):
    yield Case.call(probe=probe_mixed_precision, judge=judge_mixed_precision, reference=False, label="training set-up",
                    show="learn's device and callbacks")  # fmt: skip
