"""The teaching ladder: verdict -> hint 1 (nudge) -> hint 2 (concept) -> last hint / solution (code).

What a learner reads before asking for a hint - the verdict of a named mistake, and the judge's
message for a misconception it recognises - says what is wrong in the learner's terms and holds no
code of the reference solution that the learner did not write or was not shown (`tests.leaks`).
Every named mistake of every pack is walked: `Mistake` objects with their own implementation (the
learner's code is that implementation), and misconceptions that judges name from what a probe
reports (the learner's code and the probe's report are given below).
"""

from __future__ import annotations

import pytest
import torch

from grader.checks import Tolerance, probe_source
from grader.lessons import all_lessons, get_lesson

from .leaks import leaks, leaks_in_pack, messages, sequences, tokens


def _mistakes():
    for lesson in all_lessons().values():
        code = lesson.check_code()
        for name, spec in lesson.checks.items():
            for mistake in code[name].mistakes:
                yield lesson.id, name, spec.notebook, mistake


MISTAKES = [pytest.param(lid, name, nb, m, id=f"{lid}.{name}.{m.name}") for lid, name, nb, m in _mistakes() if m.replace]


def test_the_leak_finder_finds_reference_code_and_spares_prose():
    assert tokens("use .mean(), not .sum()")[:4] == ["use", ".", "mean", "("]
    assert ("zero_", "(", ")") in sequences("params.grad.zero_()")
    assert not sequences("the loss, the gradient, and the step")  # words and commas are prose
    lesson = get_lesson("lesson3")
    assert ". mean (" in leaks("take their mean (.mean(), not .sum())", lesson, "01_quadratic.ipynb")
    assert leaks("take their mean (.mean(), not .sum())", lesson, "01_quadratic.ipynb", "x.mean() + x.sum()") == []
    assert "zero_ ( )" in leaks("reset with params.grad.zero_()", lesson, "01_quadratic.ipynb")
    assert leaks("your loss grows when the parameters step", lesson, "01_quadratic.ipynb") == []


@pytest.mark.parametrize("lesson_id, name, notebook, mistake", MISTAKES)
def test_a_named_mistake_is_explained_without_the_reference_code(lesson_id, name, notebook, mistake):
    learner = "\n".join(probe_source(impl)[0] for impl in mistake.replace.values())
    found = leaks(mistake.message, get_lesson(lesson_id), notebook, learner)
    assert not found, f"{lesson_id}.{name} mistake {mistake.name!r} gives away {found}: {mistake.message!r}"


def _ref_conv():
    return _module("finetune").pretrained_first_conv()


def _module(lesson_id):
    code = get_lesson(lesson_id).check_code()
    return __import__(next(iter(code.values())).cases.__module__)


def _judge(lesson_id, name):
    cases = get_lesson(lesson_id).check_code()[name].build_cases(1)
    return next(c.judge for c in cases if c.judge is not None)


NOISE = {"type": "Tensor", "dtype": "float32", "shape": [100_000], "std_add": 0.5, "mean_add": 0.0, "std_mult": 0.2, "mean_mult": 0.0, "reproducible": True,
         "varies": True, "no_noise_is_identity": True}  # fmt: skip
INIT = {"is_tensor": True, "shapes": [[784, 1], [1], [3, 2]], "requires_grad": True, "is_leaf": True, "grad_filled": True,
        "std": 0.5, "mean": 0.0, "std_default": 1.0, "repeatable": True}  # fmt: skip
NET = {"module": True, "layers": ["Linear", "ReLU", "Linear"], "n_params": 23581, "out_shape": [5, 1]}
DLS = {"type": "fastai.data.core.DataLoaders", "vocab": [str(d) for d in range(10)], "n_train": 480, "n_valid": 120,
       "x_shape": [64, 3, 28, 28], "y_range": [0, 9]}  # fmt: skip
GPU = {"cuda": True, "gpu": "NVIDIA H100", "callbacks": ["TrainEvalCallback", "Recorder", "MixedPrecision"], "amp_mode": "fp16",
       "model_device": "cuda", "model_dtype": "float32", "dls_device": "cuda:0", "trained": True}  # fmt: skip


def _labels():
    return _module("finetune").holdout()[1]


def _judged():
    """(pack, check, mistake) -> (the probe's report, builder of the judge's extra argument or None, the learner's code)."""
    digits = [str(d) for d in range(10)]
    wrong = [digits[(int(y) + 1) % 10] for y in _labels()]
    right = list(_labels())
    diverged_probs = torch.full((len(right), 10), 0.0)
    for i, y in enumerate(right):
        diverged_probs[i, (int(y) + 3) % 10] = 1.0
    return {
        ("lesson3", "add_noise", "additive_only"): (
            {**NOISE, "std_mult": 0.0}, "def add_noise(x, mult, add):\n    return x + torch.randn_like(x) * add"),
        ("lesson3", "add_noise", "not_torch_random"): (
            {**NOISE, "reproducible": False},
            "import numpy as np\ndef add_noise(x, mult, add):\n    noise = lambda: torch.from_numpy(np.random.randn(*x.shape)).float()\n"
            "    return x * (1 + noise() * mult) + noise() * add"),
        ("chapter4", "init_params", "no_requires_grad"): (
            {**INIT, "requires_grad": False, "grad_filled": False}, "def init_params(size, std=1.0):\n    return torch.randn(size) * std"),
        ("chapter4", "init_params", "not_leaf"): (
            {**INIT, "is_leaf": False, "grad_filled": False},
            "def init_params(size, std=1.0):\n    return torch.randn(size, requires_grad=True) * std"),
        ("chapter4", "simple_net", "no_relu"): (
            {**NET, "layers": ["Linear", "Linear"], "n_params": 23581},
            "simple_net = nn.Sequential(nn.Linear(28 * 28, 30), nn.Linear(30, 1))"),
        ("chapter4", "simple_net", "wrong_size"): (
            {**NET, "n_params": 7861}, "simple_net = nn.Sequential(nn.Linear(28 * 28, 10), nn.ReLU(), nn.Linear(10, 1))"),
        ("finetune", "dls", "no_validation"): (
            {**DLS, "n_train": 600, "n_valid": 0}, "dls = ImageDataLoaders.from_folder(path, valid_pct=0, item_tfms=Resize(32))"),
        ("finetune", "dls", "grey_images"): (
            {**DLS, "x_shape": [64, 1, 28, 28]},
            "dls = DataBlock(blocks=(ImageBlock(cls=PILImageBW), CategoryBlock), get_items=get_image_files,\n"
            "    splitter=RandomSplitter(0.2), get_y=parent_label).dataloaders(path)"),
        ("finetune", "dls", "labels_not_folders"): (
            {**DLS, "vocab": ["0000", "0001", "0002"]},
            "dls = ImageDataLoaders.from_name_func(path, get_image_files(path), label_func=lambda p: p.stem)"),
        ("finetune", "pretrained", "from_scratch"): (
            {"type": "fastai.learner.Learner", "first_conv": torch.randn_like(_ref_conv()), "n_out": 10},
            "learn = vision_learner(dls, glyph_cnn, pretrained=False, metrics=error_rate)"),
        ("finetune", "pretrained", "old_head"): (
            {"type": "fastai.learner.Learner", "first_conv": _ref_conv().clone(), "n_out": 26},
            "learn = Learner(dls, glyph_cnn(pretrained=True), metrics=error_rate)"),
        ("finetune", "pretrained", "own_network"): (
            {"type": "fastai.learner.Learner", "first_conv": None, "n_out": 10},
            "learn = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 10)), metrics=error_rate)"),
        ("finetune", "fine_tune", "not_trained"): (
            {"type": "fastai.learner.Learner", "trained": False, "preds": wrong, "probs": None, "vocab": digits},
            "learn = vision_learner(dls, glyph_cnn, metrics=error_rate)"),
        ("finetune", "fine_tune", "diverged"): (
            {"type": "fastai.learner.Learner", "trained": True, "preds": wrong, "probs": diverged_probs, "vocab": digits},
            "learn.fine_tune(4, base_lr=100)"),
        ("finetune", "export", "export_before_training"): (
            {"exists": True, "type": "fastai.learner.Learner", "vocab": digits, "first_conv": _ref_conv().clone(), "preds": wrong,
             "learn_preds": right}, "learn.export('model.pkl')\nlearn.fine_tune(4, base_lr=1e-2)"),
        ("finetune", "export", "state_dict"): (
            {"exists": True, "load_error": "UnpicklingError: ...", "holds": "collections.OrderedDict", "holds_tensors": True},
            "torch.save(learn.model.state_dict(), 'model.pkl')"),
        ("finetune", "export", "learn_save"): (
            {"exists": False, "saved_weights": ["models/model.pth"]}, "learn.save('model')"),
        ("finetune", "predict_digit", "returns_tuple"): (
            {"got": [{"type": "builtins.tuple", "repr": "('3', tensor(3), tensor([0.01, ...]))", "len": 3}], "exported": ["3"]},
            "def predict_digit(path):\n    return load_learner('model.pkl').predict(path)"),
        ("finetune", "predict_digit", "returns_index"): (
            {"got": [3], "exported": ["3"]}, "def predict_digit(path):\n    return load_learner('model.pkl').predict(path)[1].item()"),
        ("finetune", "predict_digit", "returns_probs"): (
            {"got": [{"type": "torch.Tensor", "repr": "tensor([0.01, ...])", "numel": 10}], "exported": ["3"]},
            "def predict_digit(path):\n    return load_learner('model.pkl').predict(path)[2]"),
        ("finetune", "mixed_precision", "no_fp16"): (
            {**GPU, "callbacks": ["TrainEvalCallback", "Recorder"], "amp_mode": None}, "learn = vision_learner(dls, glyph_cnn)"),
        ("finetune", "mixed_precision", "half_by_hand"): (
            {**GPU, "callbacks": ["TrainEvalCallback", "Recorder"], "amp_mode": None, "model_dtype": "float16"},
            "learn.model = learn.model.half()"),
        ("finetune", "mixed_precision", "model_on_cpu"): (
            {**GPU, "model_device": "cpu"}, "learn = vision_learner(dls, glyph_cnn).to_fp16()\nlearn.model.cpu()"),
    }  # fmt: skip


JUDGED = sorted(_judged())


def test_every_judge_named_misconception_is_walked():
    """The table above covers every name a judge can give that no Mistake implementation shows."""
    judged = {(p, n, m) for p, n, m in JUDGED}
    for lesson in all_lessons().values():
        code = lesson.check_code()
        for name in lesson.checks:
            for mistake in code[name].mistakes:
                if not mistake.replace:  # explained only: a judge names it
                    assert (lesson.id, name, mistake.name) in judged, (lesson.id, name, mistake.name)


@pytest.mark.parametrize("lesson_id, name, mistake", JUDGED, ids=[".".join(k) for k in JUDGED])
def test_a_judged_misconception_is_named_and_explained_without_the_reference_code(lesson_id, name, mistake):
    got, learner = _judged()[(lesson_id, name, mistake)]
    expected = NET if (lesson_id, name) == ("chapter4", "simple_net") else None
    verdict = _judge(lesson_id, name)(got, expected, Tolerance())
    assert not verdict.ok and verdict.mistake == mistake, (verdict.mistake, verdict.message)
    lesson = get_lesson(lesson_id)
    notebook = lesson.checks[name].notebook
    found = leaks(verdict.message, lesson, notebook, learner)
    assert not found, f"{lesson_id}.{name} ({mistake}): the judge's verdict gives away {found}: {verdict.message!r}"
    hint = next((m.message for m in lesson.check_code()[name].mistakes if m.name == mistake), "")
    found = leaks(hint, lesson, notebook, learner)
    assert not found, f"{lesson_id}.{name} ({mistake}): the explanation gives away {found}: {hint!r}"
    assert len(verdict.message.split()) >= 6  # says something specific


def _checks_file(lesson):
    return __import__(next(iter(lesson.check_code().values())).cases.__module__).__file__


@pytest.mark.parametrize("lesson_id", sorted(all_lessons()))
def test_no_message_a_checks_file_can_show_holds_reference_code(lesson_id):
    """Every judge message, advice and explanation of a pack, whatever the learner wrote."""
    lesson = get_lesson(lesson_id)
    found = []
    for line, text in messages(_checks_file(lesson)):
        given = leaks_in_pack(text, lesson)
        if given:
            found.append(f"line {line}: {given} in {text!r}")
    assert not found, "\n".join(found)


LADDER = [(lesson.id, name) for lesson in all_lessons().values() for name in lesson.checks]


@pytest.mark.parametrize("lesson_id, name", LADDER, ids=[".".join(k) for k in LADDER])
def test_every_graded_function_has_a_ladder_from_nudge_to_code(lesson_id, name):
    """Hint 1 nudges and hint 2 names the concept, neither with reference code; the last rungs (hint 3 and
    `learn solution`) may show it."""
    lesson = get_lesson(lesson_id)
    spec = lesson.checks[name]
    assert len(spec.hints) >= 3, f"{lesson_id}.{name}: {len(spec.hints)} hints; a ladder needs a nudge, the concept and the code"
    for rung, text in enumerate(spec.hints[:2], start=1):
        found = leaks(text, lesson, spec.notebook)
        assert not found, f"{lesson_id}.{name}: hint {rung} gives away {found}: {text!r}"
