"""The fine-tuning lesson: the reference passes on CPU (GPU-only check skipped with its reason),
the stub fails, and each classic mistake fails the check it concerns with a specific message.
A malicious model.pkl is only ever unpickled inside the sandboxed kernel.

Fine-tuning runs are slow, so every variant is graded in one batch (one kernel pool) in a module
fixture, and variants that need no training of their own share notebooks where they can.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from grader.lessons import get_lesson
from grader.plan import plan
from grader.results import Status

from .conftest import exercise, find_check, grade_all, solution, variant

NB = "05_fine_tune.ipynb"
LESSON = "finetune"
HOLDOUT = Path(__file__).resolve().parent.parent / "solutions" / LESSON / "holdout.npz"


def _pack():
    lesson = get_lesson(LESSON)
    return lesson, lesson.check_code()


def _module_of(code):
    import sys

    return sys.modules[next(iter(code.values())).cases.__module__]


def malicious_cell(grader_marker: Path, host_marker: Path) -> str:
    """A cell that replaces model.pkl by a pickle running code when loaded.

    The payload creates `grader_marker` only if it runs in the grader's own process (this pytest
    process: the Grader runs in it), and tries to create `host_marker` - a path of the host
    filesystem, outside the kernel's sandbox - from wherever it runs.
    """
    payload = (
        "import os\n"
        f"if os.getpid() == {os.getpid()}:\n"
        f"    open({str(grader_marker)!r}, 'w').close()\n"
        "try:\n"
        f"    open({str(host_marker)!r}, 'w').close()\n"
        "except OSError:\n"
        "    pass\n"
    )
    return (
        "import builtins, torch\n"
        "class Payload:\n"
        "    def __reduce__(self):\n"
        f"        return (builtins.exec, ({payload!r},))\n"
        "torch.save(Payload(), 'model.pkl')\n"
    )


# ---------------------------------------------------------------------------------------------
# graded variants (slow: kernels, training)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """name -> NotebookResult, all graded together; plus the marker paths of the malicious pickle."""
    tmp = tmp_path_factory.mktemp("finetune")
    markers = {"grader": tmp / "unpickled-in-grader", "host": tmp / "escaped-sandbox"}
    src = solution(LESSON, NB)
    jobs = {
        "solution": src,
        "stub": exercise(LESSON, NB),
        # no training at all; and model.pkl replaced by a code-running pickle at the end
        "skip_fine_tune": variant(
            src, tmp / "skip" / NB, malicious_cell(markers["grader"], markers["host"]), replace_containing={"learn.fine_tune(": "pass"}
        ),  # fmt: skip
        # export before training (the file holds the untrained model); predict_digit returns the whole tuple
        "stale_export": variant(
            src,
            tmp / "stale" / NB,
            replace_containing={
                'learn.export("model.pkl")': "pass",
                "learn.fine_tune(": 'learn.export("model.pkl")\nlearn.fine_tune(4, base_lr=1e-2)',
                "def predict_digit(": "def predict_digit(path):\n    return learn_inf.predict(PILImage.create(path))",
            },
        ),  # fmt: skip
        # the same recipe from random weights; predict_digit returns the ten probabilities
        "scratch": variant(
            src,
            tmp / "scratch" / NB,
            replace_containing={
                "learn = vision_learner(": 'set_seed(42)\nlearn = vision_learner(dls, glyph_cnn, pretrained=False, metrics=error_rate, path=".")',
                "def predict_digit(": "def predict_digit(path):\n    return learn_inf.predict(PILImage.create(path))[2]",
            },
        ),  # fmt: skip
        # a learning rate a thousand times too large; predict_digit returns the label's index
        "diverged": variant(
            src,
            tmp / "diverged" / NB,
            replace_containing={
                "learn.fine_tune(": "learn.fine_tune(4, base_lr=100)",
                "def predict_digit(": "def predict_digit(path):\n    return learn_inf.predict(PILImage.create(path))[1]",
            },
        ),  # fmt: skip
        # no training (cheap): nothing held back for validation; glyph_cnn used whole, 26-letter head and all;
        # the weights saved with torch.save instead of learn.export
        "kept_head": variant(
            src,
            tmp / "kept_head" / NB,
            replace_containing={
                "dls = ImageDataLoaders.from_folder(": "dls = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,\n"
                "                splitter=RandomSplitter(0, seed=42), item_tfms=Resize(28)).dataloaders(path, bs=32, num_workers=0)",
                "learn = vision_learner(": 'learn = Learner(dls, glyph_cnn(pretrained=True), metrics=error_rate, path=".")',
                "learn.fine_tune(": "pass",
                'learn.export("model.pkl")': 'torch.save(learn.model.state_dict(), "model.pkl")',
            },
        ),  # fmt: skip
        # no training (cheap): grey images; a network of the learner's own; learn.save instead of learn.export
        "own_net": variant(
            src,
            tmp / "own_net" / NB,
            replace_containing={
                "dls = ImageDataLoaders.from_folder(": "dls = ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=42, item_tfms=Resize(28), img_cls=PILImageBW, bs=32, num_workers=0)",
                "learn = vision_learner(": 'learn = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)), metrics=error_rate, path=".")',
                "learn.fine_tune(": "pass",
                'learn.export("model.pkl")': 'learn.save("model")',
            },
        ),  # fmt: skip
        # a DataBlock that was never turned into DataLoaders (everything after it fails; only dls is asserted)
        "datablock": variant(
            src,
            tmp / "datablock" / NB,
            f"import os\nassert not os.path.exists({str(HOLDOUT)!r}), 'the holdout is readable from the notebook'",
            replace_containing={
                "dls = ImageDataLoaders.from_folder(": "dls = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,\n"
                "                splitter=RandomSplitter(0.2, seed=42), item_tfms=Resize(28))",
            },
        ),  # fmt: skip
    }

    return grade_all(jobs, seed=2024), markers


GRADED_ON_CPU = ["dls", "pretrained", "fine_tune", "export", "predict_digit"]


@pytest.mark.slow
@pytest.mark.parametrize("name", GRADED_ON_CPU)
def test_reference_passes(graded, name):
    result = graded[0]["solution"]
    check = find_check(result, name)
    assert check.status is Status.PASSED, check.message
    assert check.points == check.max_points == get_lesson(LESSON).checks[name].points
    assert result.cell_problems == []


@pytest.mark.slow
def test_gpu_check_is_skipped_with_its_reason_on_cpu(graded):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the check runs for real")
    result = graded[0]["solution"]
    check = find_check(result, "mixed_precision")
    assert check.status is Status.SKIPPED
    assert check.message.startswith("needs a CUDA GPU")
    assert check.max_points == 0  # a skipped check neither gives nor costs points
    assert result.status is Status.PASSED
    assert result.points == result.max_points == sum(get_lesson(LESSON).checks[n].points for n in GRADED_ON_CPU)


@pytest.mark.slow
def test_reference_accuracy_is_well_above_the_bar(graded):
    checks = _module_of(_pack()[1])
    fine_tune = find_check(graded[0]["solution"], "fine_tune")
    percent = float(fine_tune.cases[0].message.split("gets ")[1].split("%")[0]) / 100
    assert percent >= checks.ACCURACY_BAR + 0.05, fine_tune.cases[0].message


@pytest.mark.slow
@pytest.mark.parametrize("name", GRADED_ON_CPU)
def test_stub_fails(graded, name):
    check = find_check(graded[0]["stub"], name)
    assert check.status in (Status.FAILED, Status.ERROR)
    assert check.points == 0
    if name == "export":
        assert check.kind == "missing_file" and "learn.export('model.pkl')" in check.message
    else:
        assert check.kind == "not_implemented" and "not written yet" in check.message
    assert not any(c.mistake for c in check.cases)  # an unwritten stub is not a misconception


@pytest.mark.slow
def test_skipping_fine_tune_is_named(graded):
    check = find_check(graded[0]["skip_fine_tune"], "fine_tune")
    assert check.status is Status.FAILED
    assert check.cases[0].kind == "known_mistake" and check.cases[0].mistake == "not_trained"
    assert "has not been trained" in check.message and "learn.fine_tune" in check.message
    assert check.hint
    assert find_check(graded[0]["skip_fine_tune"], "pretrained").status is Status.PASSED  # the backbone itself is right


@pytest.mark.slow
def test_exporting_before_training_is_named(graded):
    result = graded[0]["stale_export"]
    check = find_check(result, "export")
    assert check.status is Status.FAILED
    assert check.cases[0].mistake == "export_before_training"
    assert "after learn.fine_tune" in check.message
    assert find_check(result, "fine_tune").status is Status.PASSED  # the notebook's learn is fine


@pytest.mark.slow
def test_predict_digit_must_return_the_label(graded):
    check = find_check(graded[0]["stale_export"], "predict_digit")
    assert check.status is Status.FAILED
    assert check.cases[0].mistake == "returns_tuple"
    assert "tuple" in check.message and "return the label alone" in check.message


@pytest.mark.slow
def test_training_from_scratch_is_detected(graded):
    result = graded[0]["scratch"]
    check = find_check(result, "pretrained")
    assert check.status is Status.FAILED
    assert check.cases[0].mistake == "from_scratch"
    assert "trained from scratch" in check.message and "cosine similarity" in check.message
    assert find_check(result, "export").cases[0].kind == "not_pretrained"


# (variant, graded name, misconception its judge must name)
NAMED = [
    ("skip_fine_tune", "fine_tune", "not_trained"),
    ("diverged", "fine_tune", "diverged"),
    ("stale_export", "export", "export_before_training"),
    ("kept_head", "export", "state_dict"),
    ("own_net", "export", "learn_save"),
    ("stale_export", "predict_digit", "returns_tuple"),
    ("diverged", "predict_digit", "returns_index"),
    ("scratch", "predict_digit", "returns_probs"),
    ("scratch", "pretrained", "from_scratch"),
    ("kept_head", "pretrained", "old_head"),
    ("own_net", "pretrained", "own_network"),
    ("kept_head", "dls", "no_validation"),
    ("own_net", "dls", "grey_images"),
]


@pytest.mark.slow
@pytest.mark.parametrize("variant_name, name, mistake", NAMED)
def test_misconception_is_named(graded, variant_name, name, mistake):
    check = find_check(graded[0][variant_name], name)
    assert check.status is Status.FAILED and check.points == 0, check.message
    assert check.kind == "known_mistake", (check.kind, check.message)
    assert mistake in {c.mistake for c in check.cases}, check.message
    explanation = next(m.message for m in _pack()[1][name].mistakes if m.name == mistake)
    assert check.hint == explanation  # the misconception's explanation is the hint shown


@pytest.mark.slow
def test_a_diverging_fine_tune_says_so_with_the_losses(graded):
    check = find_check(graded[0]["diverged"], "fine_tune")
    assert "training diverged" in check.message and "loss on the 500 held-out digits is" in check.message, check.message
    backbone = find_check(graded[0]["diverged"], "pretrained")  # the blown-up fit wrecks the body too: not "from scratch"
    assert backbone.status is Status.PASSED or backbone.cases[0].mistake != "from_scratch", backbone.message


@pytest.mark.slow
def test_a_datablock_is_not_dataloaders(graded):
    check = find_check(graded[0]["datablock"], "dls")
    assert check.status is Status.FAILED
    assert check.kind == "wrong_type" and "DataBlock" in check.message and "not one until you ask it for them" in check.message


@pytest.mark.slow
def test_the_holdout_file_is_invisible_to_the_notebook(graded):
    result = graded[0]["datablock"]
    assert HOLDOUT.is_file()
    if result.sandbox != "bwrap":
        pytest.skip("without bubblewrap the kernel sees the whole filesystem")
    assert not [p for p in result.cell_problems if "holdout is readable" in p.evalue]
    assert result.cell_problems  # the cells did run (the DataBlock mistake breaks later ones)


@pytest.mark.slow
def test_malicious_model_pickle_stays_in_the_sandbox(graded):
    results, markers = graded
    result = results["skip_fine_tune"]
    export = find_check(result, "export")
    assert export.status is Status.FAILED
    assert "load_learner('model.pkl') failed" in export.message  # loaded in the kernel: the payload ran there
    assert not markers["grader"].exists(), "the grader's own process unpickled model.pkl"
    if result.sandbox != "bwrap":
        pytest.skip("without bubblewrap the kernel can write to the host filesystem")
    assert not markers["host"].exists(), "code in model.pkl wrote outside the sandbox"


def test_the_malicious_payload_is_live(tmp_path, monkeypatch):
    """Positive control for the test above: unpickled in this process, the payload leaves both marks."""
    grader_marker, host_marker = tmp_path / "in-grader", tmp_path / "on-host"
    monkeypatch.chdir(tmp_path)
    exec(malicious_cell(grader_marker, host_marker), {})
    torch.load(tmp_path / "model.pkl", weights_only=False)
    assert grader_marker.exists() and host_marker.exists()


# ---------------------------------------------------------------------------------------------
# the pack's data and the grading plan (fast: no kernels)


def test_holdout_is_not_given_to_the_notebook():
    lesson, _ = _pack()
    spec = lesson.notebook(NB)
    assert "holdout.npz" not in spec.data
    assert not (lesson.exercises_dir / "holdout.npz").exists()
    assert (lesson.root / "holdout.npz").is_file()  # the grader's copy, in the pack the sandbox hides


def test_holdout_images_are_not_among_the_training_digits():
    lesson, code = _pack()
    checks = _module_of(code)
    kit = _load_digit_kit(lesson.root)
    with np.load(lesson.root / "digits.npz") as data:
        train = kit.to_image_size(data["images"])
    images, labels = checks.holdout()
    train_set = {img.tobytes() for img in train}
    assert len(labels) == 500 and sorted(set(labels)) == checks.DIGITS
    assert not any(img.numpy().tobytes() in train_set for img in images)


def test_probes_carry_images_but_never_labels():
    lesson, code = _pack()
    spec = lesson.notebook(NB)
    p = plan(lesson, spec, seed=7)
    probes = p.probes(reference=False)
    assert p.probes(reference=True) == []  # threshold judges: no reference kernel retrains the model
    text = repr(probes)
    _, labels = _module_of(code).holdout()
    assert "".join(labels) not in text
    for probe in probes:
        assert "labels" not in probe["kwargs"] and "model.pkl" not in repr(probe["args"])


def test_pretrained_weights_are_small_and_recognised():
    lesson, code = _pack()
    checks = _module_of(code)
    assert (lesson.root / "glyph_cnn.pth").stat().st_size < 1_000_000
    shipped = checks.pretrained_first_conv()
    assert checks.similarity(shipped.clone()) == pytest.approx(1.0)
    assert checks.similarity(shipped + 0.1 * shipped.std() * torch.randn_like(shipped)) > 0.9  # gently fine-tuned
    torch.manual_seed(0)  # seeded, so the test is the same every run (random inits reach about 0.19 at most)
    sims = [abs(checks.similarity(torch.nn.init.kaiming_normal_(torch.empty_like(shipped)))) for _ in range(200)]
    assert max(sims) < checks.SCRATCH_SIMILARITY < checks.SIMILARITY_BAR  # random weights do not look pretrained
    fresh = torch.nn.init.kaiming_normal_(torch.empty_like(shipped))
    scratch = checks.judge_backbone({"type": "fastai.learner.Learner", "first_conv": fresh, "n_out": 10}, None, None)
    assert scratch.mistake == "from_scratch" and "trained from scratch" in scratch.message
    unit = (shipped / shipped.norm()).flatten()
    other = fresh.flatten() - (fresh.flatten() @ unit) * unit  # orthogonal to the shipped weights
    mixed = (0.25 * unit + (1 - 0.25**2) ** 0.5 * other / other.norm()).reshape(shipped.shape)  # cosine similarity 0.25
    wrecked = checks.judge_backbone({"type": "fastai.learner.Learner", "first_conv": mixed, "n_out": 10}, None, None)
    assert not wrecked.ok and wrecked.mistake is None and "moved far" in wrecked.message
    assert [tuple(w.shape) for w in checks.pretrained_convs()][0] == tuple(shipped.shape)


def test_a_wrecked_pretrained_body_is_not_called_from_scratch():
    """A fit at base_lr=100 can take the first layer's cosine down to 0.02 - as low as random weights - but the
    whole body keeps a trace of the pretrained weights (measured 0.066-0.087) that no random body has."""
    checks = _module_of(_pack()[1])
    ref = checks.pretrained_convs()
    torch.manual_seed(0)
    randoms = [[torch.nn.init.kaiming_normal_(torch.empty_like(r)) for r in ref] for _ in range(100)]
    assert max(abs(checks.body_similarity(ws)) for ws in randoms) < checks.BODY_KEPT / 2

    def blend(share, r, noise):  # cosine similarity `share` with the shipped layer
        unit, other = r.flatten() / r.norm(), noise.flatten() - (noise.flatten() @ r.flatten()) / r.norm() ** 2 * r.flatten()
        return (5 * r.norm() * (share * unit + (1 - share**2) ** 0.5 * other / other.norm())).reshape(r.shape)

    wrecked = [blend(0.02 if i == 0 else 0.08, r, n) for i, (r, n) in enumerate(zip(ref, randoms[0]))]
    assert checks.similarity(wrecked[0]) < checks.SCRATCH_SIMILARITY and checks.body_similarity(wrecked) > checks.BODY_KEPT
    got = {"type": "fastai.learner.Learner", "first_conv": wrecked[0], "convs": wrecked, "n_out": 10}
    verdict = checks.judge_backbone(got, None, None)
    assert not verdict.ok and verdict.mistake is None and "moved far" in verdict.message and "trace" in verdict.message
    scratch = checks.judge_backbone({**got, "first_conv": randoms[1][0], "convs": randoms[1]}, None, None)
    assert scratch.mistake == "from_scratch"
    assert checks.body_similarity(randoms[0][:2]) is None and checks.body_similarity("nope") is None  # another architecture
    assert checks.similarity(torch.zeros(8, 3, 3, 3)) is None  # another architecture


def test_gpu_judge_checks_cuda_and_mixed_precision():
    """The GPU branch of the judge, with what the probe reports on a GPU machine."""
    judge = _module_of(_pack()[1]).judge_mixed_precision
    on_gpu = {"cuda": True, "gpu": "H100", "callbacks": ["TrainEvalCallback", "Recorder", "MixedPrecision"],
              "amp_mode": "fp16", "model_device": "cuda", "dls_device": "cuda", "trained": True}  # fmt: skip
    assert judge(on_gpu, None, None).ok and judge(on_gpu, None, None).kind != "skipped"
    no_fp16 = judge({**on_gpu, "callbacks": ["TrainEvalCallback", "Recorder"]}, None, None)
    assert not no_fp16.ok and "to_fp16()" in no_fp16.message
    on_cpu_model = judge({**on_gpu, "model_device": "cpu"}, None, None)
    assert not on_cpu_model.ok and "not the GPU" in on_cpu_model.message
    skipped = judge({**on_gpu, "cuda": False}, None, None)
    assert skipped.ok and skipped.kind == "skipped" and skipped.message.startswith("needs a CUDA GPU")


def test_export_judge_messages():
    checks = _module_of(_pack()[1])
    labels = ["1", "2", "3", "4"]
    judge = checks.judge_export(labels)
    conv = checks.pretrained_first_conv().clone()
    good = {
        "exists": True,
        "type": "fastai.learner.Learner",
        "vocab": checks.DIGITS,
        "first_conv": conv,
        "preds": labels,
        "learn_preds": labels,
    }
    assert judge(good, None, None).ok
    missing = judge({"exists": False, "elsewhere": "digits/model.pkl"}, None, None)
    assert not missing.ok and "digits/model.pkl" in missing.message and "path='.'" in missing.message
    stale = judge({**good, "preds": ["0"] * 4}, None, None)
    assert stale.kind == "stale_export"
    both_bad = judge({**good, "preds": ["0"] * 4, "learn_preds": ["0"] * 4}, None, None)
    assert both_bad.kind == "accuracy" and "85.0%" in both_bad.message
    not_learner = judge({"exists": True, "type": "builtins.int"}, None, None)
    assert not not_learner.ok and "builtins.int" in not_learner.message


def _load_digit_kit(root: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_finetune_digit_kit", root / "digit_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# named misconceptions, judged from what the probes report (fast: no kernels)


def test_every_graded_function_knows_two_misconceptions():
    lesson, code = _pack()
    few = {name: [m.name for m in code[name].mistakes] for name in lesson.checks if len(code[name].mistakes) < 2}
    assert not few, f"fewer than two named misconceptions: {few}"


def test_judges_name_the_misconceptions_no_variant_above_shows():
    checks = _module_of(_pack()[1])
    dls = {"type": "fastai.data.core.DataLoaders", "vocab": checks.DIGITS, "n_train": 480, "n_valid": 120, "x_shape": [32, 3, 28, 28]}
    assert checks.judge_dls(dls, None, None).ok
    assert checks.judge_dls({**dls, "vocab": ["0000", "0001"]}, None, None).mistake == "labels_not_folders"
    assert checks.judge_dls({**dls, "n_train": 600, "n_valid": 0}, None, None).mistake == "no_validation"
    assert checks.judge_dls({**dls, "n_train": 300, "n_valid": 300}, None, None).mistake is None  # too many held back: not that one
    predict = checks.judge_predict_digit(["3"])
    as_dict = predict({"got": [{"type": "builtins.dict", "repr": "{'0': tensor(0.01), ...}", "len": 10}], "exported": ["3"]}, None, None)
    assert not as_dict.ok and as_dict.mistake == "returns_probs"
    assert predict({"got": [3], "exported": ["3"]}, None, None).mistake == "returns_index"
    assert predict({"got": ["3"], "exported": ["3"]}, None, None).ok


def test_holdout_loss_tells_a_diverged_model():
    checks = _module_of(_pack()[1])
    labels = ["3", "7", "1", "1"]
    truth = torch.tensor([3, 7, 1, 1])
    good = torch.nn.functional.one_hot(truth, 10).float() * 0.9 + 0.01
    assert checks.holdout_loss(good, checks.DIGITS, labels) < 0.2
    assert checks.holdout_loss(torch.full((4, 10), 0.1), checks.DIGITS, labels) == pytest.approx(checks.GUESS_LOSS)
    blown_up = torch.nn.functional.one_hot(torch.tensor([3, 2, 0, 1]), 10).float()  # certain, and wrong on half
    assert checks.holdout_loss(blown_up, checks.DIGITS, labels) > checks.DIVERGED_LOSS
    assert checks.holdout_loss(torch.full((4, 10), float("nan")), checks.DIGITS, labels) > checks.DIVERGED_LOSS
    assert checks.holdout_loss(good[:3], checks.DIGITS, labels) is None  # not one row per held-out image
    judge = checks.judge_trained(labels)
    verdict = judge({"trained": True, "preds": ["3", "2", "0", "1"], "probs": blown_up, "vocab": checks.DIGITS}, None, None)
    assert verdict.mistake == "diverged" and "training diverged" in verdict.message


def test_gpu_judge_names_mixed_precision_mistakes():
    judge = _module_of(_pack()[1]).judge_mixed_precision
    on_gpu = {"cuda": True, "gpu": "H100", "callbacks": ["TrainEvalCallback", "Recorder", "MixedPrecision"], "amp_mode": "fp16",
              "model_device": "cuda", "model_dtype": "float32", "dls_device": "cuda", "trained": True}  # fmt: skip
    assert judge(on_gpu, None, None).ok and judge(on_gpu, None, None).mistake is None
    plain = {**on_gpu, "callbacks": ["TrainEvalCallback", "Recorder"]}
    assert judge(plain, None, None).mistake == "no_fp16"
    by_hand = judge({**plain, "model_dtype": "float16"}, None, None)
    assert not by_hand.ok and by_hand.mistake == "half_by_hand" and ".half()" in by_hand.message
    assert judge({**on_gpu, "model_device": "cpu"}, None, None).mistake == "model_on_cpu"
    assert judge({**on_gpu, "cuda": False, "callbacks": []}, None, None).mistake is None  # skipped on a CPU, not blamed
