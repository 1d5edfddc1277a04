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

Named misconceptions: no single reference value exists to compare a mistaken version with, so
each judge recognises the classic wrong answers itself from what its probe reports
(`Verdict(..., mistake=name)`); the `Mistake`s declared on each check (explanations only, no
implementation) give the hint the learner is shown for each name - see MISTAKES below.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch

from grader.checks import Case, Mistake, Verdict, check

HERE = Path(__file__).resolve().parent
DIGITS = [str(d) for d in range(10)]
N_IMAGES = 600  # in digits.npz
ACCURACY_BAR = 0.85
FINE_TUNE_EPOCHS = 4  # the notebook asks for learn.fine_tune(4, base_lr=1e-2)
IMAGE_SIZE = 28  # and for item_tfms=Resize(28)
REFERENCE_ACCURACY = 0.95
SIMILARITY_BAR = 0.3
SCRATCH_SIMILARITY = 0.2  # |cos| below this: random weights (from scratch: 20,000 random inits reached at most 0.19); between it and the bar: pretrained, then wrecked
# The whole body's convolutions (97,200 weights) tell a wrecked pretrained body from a random one far better than
# the first layer's 432: random inits (2,000, five init schemes) and from-scratch fits (lr 1e-2 and 100) give
# |cos| <= 0.013 (std 0.003); pretrained bodies fitted at base_lr=100 give 0.066-0.087, even when their first
# layer's cosine is down to 0.02.
BODY_KEPT = 0.03
LETTERS = 26  # outputs of glyph_cnn's own, letter-recognising head
PREDICT_SAMPLE = 25  # held-out files handed to predict_digit (one .predict call each)

# ---------------------------------------------------------------------------------------------
# data kept in the grader


@functools.lru_cache(maxsize=1)
def holdout() -> tuple[torch.Tensor, list[str]]:
    """(images as (500, 28, 28) uint8, their labels as strings). Never sent to a kernel with labels."""
    import numpy as np

    with np.load(HERE / "holdout.npz") as data:
        return torch.from_numpy(data["images"].copy()), [str(int(v)) for v in data["labels"]]


def pretrained_first_conv() -> torch.Tensor:
    """The first convolution's weights as shipped in glyph_cnn.pth (our own file: weights only)."""
    return pretrained_convs()[0]


@functools.lru_cache(maxsize=1)
def pretrained_convs() -> tuple[torch.Tensor, ...]:
    """Every convolution's weights as shipped in glyph_cnn.pth, in the network's order (the 4-d weight tensors)."""
    state = torch.load(HERE / "glyph_cnn.pth", map_location="cpu", weights_only=True)
    return tuple(v.float() for k, v in state.items() if k.endswith(".weight") and v.dim() == 4)


def accuracy(preds, labels: list[str]) -> float:
    return sum(str(p) == y for p, y in zip(preds, labels)) / len(labels)


def similarity(conv) -> float | None:
    """Cosine similarity of a first-layer weight tensor with the shipped pretrained one."""
    ref = pretrained_first_conv()
    if type(conv) is not torch.Tensor or conv.shape != ref.shape:
        return None
    return float(torch.nn.functional.cosine_similarity(conv.float().flatten(), ref.flatten(), dim=0))


def body_similarity(convs) -> float | None:
    """Cosine similarity of all the body's convolution weights, as one vector, with the shipped pretrained ones."""
    ref = pretrained_convs()
    if type(convs) is not list or len(convs) < len(ref):
        return None
    convs = convs[: len(ref)]
    if any(type(w) is not torch.Tensor or w.shape != r.shape for w, r in zip(convs, ref)):
        return None
    flat = torch.cat([w.float().flatten() for w in convs])
    return float(torch.nn.functional.cosine_similarity(flat, torch.cat([r.flatten() for r in ref]), dim=0))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


GUESS_LOSS = math.log(len(DIGITS))  # cross-entropy of guessing among ten classes
DIVERGED_LOSS = 2 * GUESS_LOSS  # a trained model's held-out loss is far below guessing; a diverged one far above


def holdout_loss(probs, vocab, labels: list[str]) -> float | None:
    """Mean cross-entropy of a model's held-out probabilities, computed here (the labels never leave
    the grader). The recorder's training losses are gone by the time a probe runs (get_preds resets
    them), so this is how a fit that blew up shows: huge, confidently wrong scores."""
    if type(probs) is not torch.Tensor or type(vocab) is not list or probs.shape != (len(labels), len(vocab)):
        return None
    index = {str(v): i for i, v in enumerate(vocab)}
    if any(y not in index for y in labels):
        return None
    p_true = probs.double()[torch.arange(len(labels)), torch.tensor([index[y] for y in labels])]
    return float(-torch.log(p_true.nan_to_num(0.0).clamp(1e-30, 1.0)).mean())


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
    try:  # what the notebook asks for, measured here against fastai's own result for the same request
        from pathlib import Path

        from fastai.vision.all import RandomSplitter, aug_transforms, get_image_files

        def name(p):
            return f"{Path(str(p)).parent.name}/{Path(str(p)).name}"

        files = get_image_files(ns["path"])
        asked = {name(files[i]) for i in RandomSplitter(valid_pct=0.2, seed=42)(files)[1]}
        info["split_as_asked"] = {name(p) for p in dls.valid_ds.items} == asked

        def settings(tfms):
            out = []
            for tfm in tfms:
                for f in list(getattr(tfm, "aff_fs", None) or []):
                    numbers = sorted((k, round(float(v), 6)) for k, v in getattr(f, "keywords", {}).items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool))  # fmt: skip
                    out.append(f"{getattr(getattr(f, 'func', f), '__name__', type(f).__name__)}{numbers}")
                if type(tfm).__name__ == "Flip":
                    out.append("flip")
            return out

        made = settings(getattr(getattr(dls.train, "after_batch", None), "fs", []))
        info["augment_as_asked"] = made == settings(aug_transforms(do_flip=False, max_rotate=10, max_zoom=1.1))
    except Exception as exc:
        info["measure_problem"] = f"{type(exc).__name__}: {exc}"[:200]
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
    info["convs"] = convs[:8]  # the body's (glyph_cnn has 4): a random body and a wrecked pretrained one differ there
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

    def predict(learner, paths, with_probs=False):
        dl = learner.dls.test_dl(paths, num_workers=0)
        with learner.no_bar():
            probs = learner.get_preds(dl=dl)[0]
        vocab = [str(v) for v in learner.dls.vocab]
        labels = [vocab[i] for i in probs.argmax(dim=1).tolist()]
        return (labels, probs.detach().float().cpu().clone(), vocab) if with_probs else labels

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
        steps = max((int(state.get("step", 0)) for state in states if isinstance(state, dict)), default=0)
        batches = len(getattr(getattr(learn, "dls", None), "train", ()) or ()) or 1
        preds, probs, vocab = predict(learn, files, with_probs=True)
        # the optimiser's step count restarts when the body is unfrozen: it counts the epochs after that
        return {"type": describe(learn), "trained": stepped, "preds": preds, "probs": probs, "vocab": vocab, "epochs": steps / batches}
    if mode == "export":
        out = {"exists": os.path.isfile("model.pkl")}
        other = Path(getattr(learn, "path", ".")) / "model.pkl"
        if other.is_file() and not (out["exists"] and os.path.samefile(other, "model.pkl")):
            out["elsewhere"] = str(other)
        saved = sorted(str(p) for p in Path(getattr(learn, "path", ".")).glob(f"{getattr(learn, 'model_dir', 'models')}/*.pth"))
        if saved:
            out["saved_weights"] = saved[:3]  # learn.save(...) writes weights only, into learn.path/models
        if not out["exists"]:
            return out
        try:
            exported = load_exported()
        except Exception as exc:
            out["load_error"] = f"{type(exc).__name__}: {exc}"[:500]
            try:  # what was saved instead of a Learner (this kernel already unpickled it once)
                raw = torch.load("model.pkl", map_location="cpu", weights_only=False)
                out["holds"] = describe(raw)
                out["holds_tensors"] = isinstance(raw, dict) and bool(raw) and all(isinstance(v, torch.Tensor) for v in raw.values())
            except Exception:
                pass
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
            about = {"type": describe(value), "repr": repr(value)[:120]}
            if isinstance(value, torch.Tensor):
                about["numel"] = int(value.numel())
            if isinstance(value, (tuple, list, dict)):
                about["len"] = len(value)
            got.append(value if type(value) is int else about)
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
        "model_dtype": str(params[0].dtype).replace("torch.", "") if params else None,
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
            f"dls is a {got.get('type')}, not fastai DataLoaders: it cannot give the learner batches of images and labels "
            "(a DataBlock describes DataLoaders; it is not one until you ask it for them)",
            kind="wrong_type",
        )
    if "problem" in got:
        return Verdict(False, f"dls cannot produce a labelled batch: {got['problem']}", kind="behaviour")
    if got["vocab"] != DIGITS:
        return Verdict(
            False,
            f"dls.vocab is {got['vocab'][:12]}; the classes are the folder names '0' to '9' (label each image by its parent folder)",
            kind="values",
            mistake="labels_not_folders",
        )
    n_train, n_valid = got["n_train"], got["n_valid"]
    if n_train + n_valid != N_IMAGES:
        return Verdict(
            False, f"dls holds {n_train} training and {n_valid} validation images; the digit folders hold {N_IMAGES}", kind="values"
        )
    if not 0.1 <= n_valid / N_IMAGES <= 0.4:
        return Verdict(
            False,
            f"{n_valid} of the {N_IMAGES} images are in the validation set; hold back about a fifth (valid_pct=0.2)",
            kind="values",
            mistake="no_validation" if n_valid == 0 else None,
        )
    shape = got["x_shape"]
    if len(shape) == 4 and shape[1] == 1:
        return Verdict(
            False,
            f"a batch of images has shape {tuple(shape)}: one grey channel, where the pretrained network expects 3 colour channels",
            kind="shape",
            mistake="grey_images",
        )
    if len(shape) != 4 or shape[1] != 3 or min(shape[2:]) < 16:
        return Verdict(
            False,
            f"a batch of images has shape {tuple(shape)}; expected (batch, 3, height, width) with colour channels and at least 16 pixels a side",
            kind="shape",
        )
    # what the notebook's text asks for, besides what any DataLoaders must do
    if got.get("split_as_asked") is False:
        return Verdict(False, "the validation images are not the fifth that valid_pct=0.2 with seed=42 holds back: use that "
                       "seed, so that the split is the same on every run (and the same as everyone's)", kind="values")  # fmt: skip
    if shape[2:] != [IMAGE_SIZE, IMAGE_SIZE]:
        return Verdict(False, f"a batch of images is {shape[2]}x{shape[3]} pixels; the notebook resizes each image to "
                       f"{IMAGE_SIZE}x{IMAGE_SIZE} (item_tfms)", kind="shape")  # fmt: skip
    if got.get("augment_as_asked") is False:
        return Verdict(False, "the batch augmentation is not the notebook's: rotations of up to 10 degrees and zooms of up to "
                       "1.1, and no flips (a flipped digit is another digit)", kind="values")  # fmt: skip
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
            False,
            "learn.model has no convolution layers: create it with vision_learner(dls, glyph_cnn, ...)",
            kind="not_pretrained",
            mistake="own_network",
        )
    sim = similarity(got["first_conv"])
    if sim is None:
        ref = tuple(pretrained_first_conv().shape)
        return Verdict(
            False,
            f"the first layer of learn.model has weights of shape {tuple(got['first_conv'].shape)}, glyph_cnn's has {ref}: learn is not built on the glyph_cnn backbone",
            kind="not_pretrained",
            mistake="own_network",
        )
    body = body_similarity(got.get("convs"))
    if sim < SIMILARITY_BAR and (sim >= SCRATCH_SIMILARITY or (body is not None and body >= BODY_KEPT)):
        # pretrained, then wrecked: a fit that blew up drags the body along, but a trace of the pretrained weights stays
        trace = f"; the whole body still keeps a trace of them ({body:.2f}, random weights give 0.00)" if body is not None else ""
        return Verdict(
            False,
            f"the first layer of learn.model has moved far from the pretrained glyph_cnn weights (cosine similarity {sim:.2f}; "
            f"fine-tuning keeps it above {SIMILARITY_BAR}, random weights give about 0{trace}): the body was trained too hard, for "
            "example at a learning rate far too large, and lost what it had learned",
            kind="not_pretrained",
        )
    if sim < SIMILARITY_BAR:
        return Verdict(
            False,
            f"the first layer of learn.model does not resemble the pretrained glyph_cnn weights (cosine similarity {sim:.2f}; "
            f"fine-tuning keeps it above {SIMILARITY_BAR}, training from random weights gives about 0): this model was trained "
            "from scratch or its weights were replaced. Create the learner with vision_learner(dls, glyph_cnn) and the default pretrained=True",
            kind="not_pretrained",
            mistake="from_scratch",
        )
    if got.get("n_out") != len(DIGITS):
        return Verdict(
            False,
            f"learn.model ends with {got.get('n_out')} outputs; it needs one per class, {len(DIGITS)}",
            kind="values",
            mistake="old_head" if got.get("n_out") == LETTERS else None,
        )
    return Verdict(True, f"first layer similarity with the pretrained weights: {sim:.2f}")


def judge_trained(labels: list[str]):
    def judge(got, expected, tol):
        if todo(got):
            return todo(got)
        if type(got) is not dict or type(got.get("preds")) is not list:
            return Verdict(False, "could not get predictions from learn", kind="wrong_type")
        acc = accuracy(got["preds"], labels)
        epochs = got.get("epochs")
        if got.get("trained") and type(epochs) is float and round(epochs) != FINE_TUNE_EPOCHS:
            return Verdict(False, f"after its frozen first epoch, learn was trained for {epochs:.3g} epochs with the body unfrozen; "
                           f"the notebook asks to fine-tune for {FINE_TUNE_EPOCHS}", kind="behaviour")  # fmt: skip
        if acc >= ACCURACY_BAR:
            return Verdict(True, f"learn gets {_pct(acc)} of the {len(labels)} held-out digits right")
        if not got.get("trained"):
            return Verdict(
                False,
                f"learn has not been trained: its optimiser has never taken a step, and it gets {_pct(acc)} of the {len(labels)} held-out "
                "digits right (guessing gets 10%). Call learn.fine_tune(...) after creating the learner",
                kind="not_trained",
                mistake="not_trained",
            )
        loss = holdout_loss(got.get("probs"), got.get("vocab"), labels)
        if loss is not None and loss > DIVERGED_LOSS:
            return Verdict(
                False,
                f"training diverged: learn's loss on the {len(labels)} held-out digits is {loss:.3g} (guessing gives {GUESS_LOSS:.2f}, "
                f"a fine-tuned model about 0.2): its outputs blew up to huge, confidently wrong scores, and it gets {_pct(acc)} "
                "right. The learning rate is far too large",
                kind="diverged",
                mistake="diverged",
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
            if got.get("saved_weights") and not got.get("elsewhere"):
                return Verdict(
                    False,
                    f"model.pkl was not found in the notebook's folder, but {got['saved_weights'][0]} was: learn.save writes only the "
                    "weights; call learn.export('model.pkl')",
                    kind="missing_file",
                    mistake="learn_save",
                )
            return Verdict(
                False, f"model.pkl was not found in the notebook's folder: call learn.export('model.pkl').{where}", kind="missing_file"
            )
        if "load_error" in got:
            holds = got.get("holds")
            if got.get("holds_tensors") or (type(holds) is str and holds.startswith("torch.nn.")):
                what = "a dict of weight tensors (a state_dict)" if got.get("holds_tensors") else f"a bare {holds}"
                return Verdict(
                    False,
                    f"load_learner('model.pkl') failed: the file holds {what}, not a Learner. Save it with learn.export('model.pkl')",
                    kind="exception",
                    mistake="state_dict",
                )
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
                mistake="export_before_training",
            )
        return Verdict(
            False,
            f"model.pkl gets {_pct(acc)} of the {len(labels)} held-out digits right; the bar is {_pct(ACCURACY_BAR)} "
            f"(the reference solution gets about {_pct(REFERENCE_ACCURACY)}). Export the learner after fine-tuning it",
            kind="accuracy",
        )

    return judge


def _predict_mistake(bad) -> str | None:
    """Which classic wrong return value of predict_digit this is: the whole tuple, the index, the scores."""
    if type(bad) is int:
        return "returns_index"
    if type(bad) is not dict:
        return None
    kind, numel, length = bad.get("type", ""), bad.get("numel"), bad.get("len")
    if kind == "builtins.tuple" and length == 3:
        return "returns_tuple"
    if kind == "torch.Tensor" and numel == 1:
        return "returns_index"
    if (kind == "torch.Tensor" and numel == len(DIGITS)) or (kind in ("builtins.dict", "builtins.list") and length == len(DIGITS)):
        return "returns_probs"
    return None


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
                False,
                f"predict_digit returned a {what} ({shown}); return the label alone, a string such as '7'",
                kind="wrong_type",
                mistake=_predict_mistake(bad),
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
    problems, mistake = [], None
    amp = "MixedPrecision" in got.get("callbacks", [])
    if got.get("model_device") != "cuda":
        problems.append(f"learn.model is on the {got.get('model_device')}, not the GPU ({got.get('gpu')})")
        mistake = "model_on_cpu"
    if not amp and got.get("model_dtype") == "float16":
        problems.append(
            "learn.model's weights are float16 but learn has no MixedPrecision callback: the model was cast by hand (.half()), "
            "which keeps no float32 master copy and no loss scaling; call learn = learn.to_fp16() instead"
        )
        mistake = mistake or "half_by_hand"
    elif not amp:
        problems.append("learn has no MixedPrecision callback: call learn = learn.to_fp16() before fine_tune")
        mistake = mistake or "no_fp16"
    if not got.get("trained"):
        problems.append("learn has not been trained")
    if problems:
        return Verdict(False, "; ".join(problems), kind="behaviour", mistake=mistake)
    return Verdict(True, f"trained on {got.get('gpu')} with mixed precision ({got.get('amp_mode')})")


# ---------------------------------------------------------------------------------------------
# named misconceptions: recognised by the judges above, explained here (the hint shown for each)

MISTAKES = {
    "dls": [
        Mistake("no_validation", "Nothing was held back for validation (a validation share of 0, or a splitter that puts every "
                "image in the training set): the error_rate you watch while training then measures nothing. Hold back a fifth."),
        Mistake("grey_images", "The images were read as one grey channel (PILImageBW), but the pretrained network was trained "
                "on 3-channel images: keep the default PILImage, which gives 3 channels."),
        Mistake("labels_not_folders", "The labels do not come from the folder names: each image's label is the name of the "
                "folder it is in (parent_label), which is what from_folder uses."),
    ],
    "pretrained": [
        Mistake("from_scratch", "The network starts from random weights (pretrained=False, or weights re-initialised): that "
                "is training from scratch. Fine-tuning starts from the weights glyph_cnn learned on letters."),
        Mistake("old_head", "The model still ends in glyph_cnn's own 26-letter classifier. vision_learner cuts that head off "
                "and adds a new one with one output per digit."),
        Mistake("own_network", "learn is not built on the glyph_cnn backbone: a network of your own learns from nothing. "
                "Pass glyph_cnn to vision_learner."),
    ],
    "fine_tune": [
        Mistake("not_trained", "The learner was created but never trained: nothing called fine_tune (or fit) on it."),
        Mistake("diverged", "The loss blew up during training: the learning rate is so large that each step overshoots. "
                "Use a rate like the lesson's (learn.lr_find() suggests one)."),
    ],
    "export": [
        Mistake("export_before_training", "model.pkl was written before fine-tuning, so it holds the untrained model: "
                "export after training."),
        Mistake("state_dict", "model.pkl holds only the network's weights (torch.save of the model or its state_dict). "
                "An application also needs the data pipeline and vocab: learn.export saves the whole Learner."),
        Mistake("learn_save", "learn.save writes the weights (and optimiser state) to models/*.pth, for resuming training; "
                "an application needs the file learn.export writes."),
    ],
    "predict_digit": [
        Mistake("returns_tuple", "predict gives back three things - the label, its index and the probabilities: "
                "return only the first, the label."),
        Mistake("returns_index", "That is the position of the label in the vocab, not the label: return the first "
                "of the three things predict gives back."),
        Mistake("returns_probs", "Those are the scores of all ten classes: return the label of the most likely one, "
                "the first of the three things predict gives back."),
    ],
    "mixed_precision": [
        Mistake("no_fp16", "On a GPU the learner should train in mixed precision, and nothing switched it on: "
                "call learn.to_fp16() before training."),
        Mistake("half_by_hand", "Casting the model to float16 by hand (.half()) keeps no float32 master copy of the "
                "weights and no loss scaling, so small updates vanish: let learn.to_fp16() do it."),
        Mistake("model_on_cpu", "The model was left on (or moved back to) the CPU although a GPU is there: fastai moves "
                "the model and the batches to the GPU by itself."),
    ],
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# checks


@check("dls", callables=(), mistakes=MISTAKES["dls"])
def dls_cases(rng):
    yield Case.call(probe=probe_dls, judge=judge_dls, reference=False, label="the DataLoaders",
                    show="dls: vocab, the split, one batch, its augmentation")  # fmt: skip


@check("pretrained", requires=("learn",), callables=(), mistakes=MISTAKES["pretrained"])
def pretrained_cases(rng):
    yield Case.call(probe=probe_backbone, judge=judge_backbone, reference=False, label="the backbone",
                    show="learn.model's first layer vs the shipped glyph_cnn weights")  # fmt: skip


@check("fine_tune", requires=("learn",), callables=(), mistakes=MISTAKES["fine_tune"])
def fine_tune_cases(rng):
    images, labels = holdout()
    yield Case.call(images, "trained", probe=probe_holdout, judge=judge_trained(labels), reference=False,
                    label="held-out digits", show=f"learn on {len(labels)} held-out digits")  # fmt: skip


@check("export", requires=(), callables=(), mistakes=MISTAKES["export"])
def export_cases(rng):
    images, labels = holdout()
    yield Case.call(images, "export", probe=probe_holdout, judge=judge_export(labels), reference=False,
                    label="held-out digits", show=f"load_learner('model.pkl') on {len(labels)} held-out digits")  # fmt: skip


@check("predict_digit", mistakes=MISTAKES["predict_digit"])
def predict_digit_cases(rng):
    images, labels = holdout()
    sample = sorted(rng.py.sample(range(len(labels)), PREDICT_SAMPLE))
    chosen = [labels[i] for i in sample]
    yield Case.call(images[sample], "predict_digit", list(range(len(sample))), probe=probe_holdout, judge=judge_predict_digit(chosen),
                    reference=False, random=True, label="held-out files", show=f"predict_digit(path) on {len(sample)} held-out PNG files")  # fmt: skip


@check("mixed_precision", requires=("learn",), callables=(), mistakes=MISTAKES["mixed_precision"])
def mixed_precision_cases(rng):
    yield Case.call(probe=probe_mixed_precision, judge=judge_mixed_precision, reference=False, label="training set-up",
                    show="learn's device and callbacks")  # fmt: skip
