"""Build the fine-tuning pack's data and its pretrained backbone (run by the pack's author).

    python pretrain.py data       digits.npz (learner's digits) and holdout.npz (grader only)
    python pretrain.py weights    glyph_cnn.pth: glyph_cnn trained to recognise printed letters
    python pretrain.py compare    fine-tuning the backbone vs the same budget from random weights

Nothing here runs when learners work or when notebooks are graded; the files it writes are
committed. The lesson fine-tunes an ImageNet model on a new task; here the "ImageNet" is a
letter-recognition task and the new task is handwritten digits - different classes, different
writing (printed fonts vs handwriting), but the same kind of strokes, which is what makes the
pretrained features worth reusing.

Letters are made the way the digits were (UCI optdigits, which scikit-learn ships): a glyph is
drawn to fill a 32x32 box, and the ink in each 4x4 block is counted, giving 8x8
values 0-16. Fonts are the TrueType files bundled with matplotlib, so this is reproducible
wherever matplotlib is installed.
"""

from __future__ import annotations

import argparse
import string
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import digit_kit  # noqa: E402  (the module shipped with the notebook)

DIGITS_FILE = HERE / "digits.npz"
HOLDOUT_FILE = HERE / "holdout.npz"
HOLDOUT_PER_CLASS = 50
LEARNER_PER_CLASS = 60  # what the notebook trains and validates on, per digit
SEED = 20240603
FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "STIXGeneral.ttf",
    "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the digits: learner's share and the grader's holdout


def build_digit_files(learner_per_class: int = LEARNER_PER_CLASS, holdout_per_class: int = HOLDOUT_PER_CLASS) -> None:
    """Split scikit-learn's digits per class: a holdout only the grader has, and the learner's share."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)
    rng = np.random.default_rng(SEED)
    learner, holdout = [], []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == label))
        holdout.extend(idx[:holdout_per_class])
        learner.extend(idx[holdout_per_class : holdout_per_class + learner_per_class])
    learner, holdout = rng.permutation(learner), rng.permutation(holdout)
    np.savez_compressed(DIGITS_FILE, images=images[learner], labels=digits.target[learner].astype(np.uint8))
    np.savez_compressed(HOLDOUT_FILE, images=digit_kit.to_image_size(images[holdout]), labels=digits.target[holdout].astype(np.uint8))
    print(f"{DIGITS_FILE.name}: {len(learner)} digits; {HOLDOUT_FILE.name}: {len(holdout)} digits")


# ---------------------------------------------------------------------------------------------
# the pretraining task: printed letters


def _font_paths() -> list[Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / name for name in FONTS if (folder / name).is_file()]


def render_letters(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 8, 8) ink counts 0-16 and labels 0-25 for upper- and lower-case letters in many fonts."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    fonts = _font_paths()
    images, labels = [], []
    for label, (upper, lower) in enumerate(zip(string.ascii_uppercase, string.ascii_lowercase)):
        for _ in range(per_class):
            char = upper if rng.random() < 0.6 else lower
            font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), 48)
            canvas = Image.new("L", (96, 96), 0)
            ImageDraw.Draw(canvas).text((24, 12), char, fill=255, font=font)
            if rng.random() < 0.4:
                canvas = canvas.filter(ImageFilter.MaxFilter(3 + 2 * int(rng.integers(2))))  # thicker pen
            canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
            shear = rng.uniform(-0.25, 0.25)
            canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, -shear * 48, 0, 1, 0), resample=Image.BILINEAR)
            box = canvas.getbbox()
            if box is None:
                continue
            glyph = canvas.crop(box)
            w, h = glyph.size
            scale = 32 / max(w, h) * rng.uniform(0.8, 1.0)
            glyph = glyph.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
            frame = Image.new("L", (32, 32), 0)
            frame.paste(glyph, ((32 - glyph.size[0]) // 2, (32 - glyph.size[1]) // 2))
            ink = (np.asarray(frame) > 96).astype(np.uint8)
            images.append(ink.reshape(8, 4, 8, 4).sum(axis=(1, 3)))
            labels.append(label)
    return np.stack(images).astype(np.uint8), np.array(labels, dtype=np.int64)


def _batches(pixels: np.ndarray, labels: np.ndarray, bs: int, shuffle: bool, rng: np.random.Generator):
    order = rng.permutation(len(labels)) if shuffle else np.arange(len(labels))
    mean, std = (torch.tensor(s)[None, :, None, None] for s in digit_kit.GLYPH_STATS)
    for i in range(0, len(order), bs):
        idx = order[i : i + bs]
        x = torch.from_numpy(pixels[idx]).float().div(255)[:, None].expand(-1, 3, -1, -1)
        yield (x - mean) / std, torch.from_numpy(labels[idx])


def pretrain(per_class: int = 500, epochs: int = 12, out: Path = digit_kit.WEIGHTS_FILE) -> None:
    """Train glyph_cnn on the letters (plain PyTorch, one-cycle schedule) and save it in half precision."""
    torch.manual_seed(SEED)
    started = time.time()
    images, labels = render_letters(per_class, SEED)
    pixels = digit_kit.to_image_size(images)
    print(f"rendered {len(labels)} letters in {time.time() - started:.0f}s; "
          f"pixel mean {pixels.mean() / 255:.4f} std {pixels.std() / 255:.4f} (GLYPH_STATS should match)")  # fmt: skip
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(labels))
    n_valid = len(labels) // 10
    valid, train = order[:n_valid], order[n_valid:]
    model = digit_kit.glyph_cnn(pretrained=False)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    steps = epochs * -(-len(train) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        for x, y in _batches(pixels[train], labels[train], 128, True, rng):
            loss = loss_fn(model(_jitter(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}: letter accuracy {_accuracy(model, pixels[valid], labels[valid]):.3f}")
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(state, out)
    print(f"saved {out.name} ({out.stat().st_size / 1024:.0f} KiB) in {time.time() - started:.0f}s")


def _jitter(x: torch.Tensor) -> torch.Tensor:
    """Shift each batch by up to two pixels: cheap augmentation."""
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,)))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def _accuracy(model: nn.Module, pixels: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    right = 0
    for x, y in _batches(pixels, labels, 512, False, np.random.default_rng(0)):
        right += int((model(x).argmax(1) == y).sum())
    return right / len(labels)


# ---------------------------------------------------------------------------------------------
# does the pretraining help?


def compare(epochs: int = 4, repeats: int = 5) -> None:
    """Holdout accuracy of the notebook's recipe (fine_tune(epochs, base_lr=1e-2), 1 frozen + `epochs`
    unfrozen epochs) against the same budget from random weights: the same fine_tune call on a
    randomly initialised glyph_cnn, and fit_one_cycle(epochs + 1, 1e-2), the usual way to train
    from scratch."""
    import tempfile

    from fastai.vision.all import ImageDataLoaders, Resize, aug_transforms, error_rate, set_seed, vision_learner
    from PIL import Image

    with np.load(HOLDOUT_FILE) as data:
        hold_x, hold_y = data["images"], data["labels"]
    tmp = Path(tempfile.mkdtemp())
    path = digit_kit.make_digit_folders(tmp / "digits")
    files = []
    for i, img in enumerate(hold_x):
        files.append(tmp / f"holdout{i:03d}.png")
        Image.fromarray(img).save(files[-1])

    def holdout_accuracy(learn) -> float:
        dl = learn.dls.test_dl(files, num_workers=0)
        with learn.no_bar():
            preds, _ = learn.get_preds(dl=dl)
        vocab = torch.tensor([int(v) for v in learn.dls.vocab])
        return float((vocab[preds.argmax(1)] == torch.from_numpy(hold_y.astype(np.int64))).float().mean())

    recipes = {
        "pretrained, fine_tune": (True, lambda learn: learn.fine_tune(epochs, base_lr=1e-2)),
        "random weights, same fine_tune": (False, lambda learn: learn.fine_tune(epochs, base_lr=1e-2)),
        "random weights, fit_one_cycle": (False, lambda learn: learn.fit_one_cycle(epochs + 1, 1e-2)),
    }
    results: dict[str, list[float]] = {name: [] for name in recipes}
    for r in range(repeats):
        for name, (pretrained, train) in recipes.items():
            set_seed(r, reproducible=True)
            dls = ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=42, item_tfms=Resize(28),
                                               batch_tfms=aug_transforms(do_flip=False, max_rotate=10, max_zoom=1.1),
                                               bs=32, num_workers=0)  # fmt: skip
            learn = vision_learner(dls, digit_kit.glyph_cnn, pretrained=pretrained, metrics=error_rate)
            started = time.time()
            with learn.no_bar(), learn.no_logging():
                train(learn)
            results[name].append(holdout_accuracy(learn))
            print(f"seed {r}: {name}: holdout accuracy {results[name][-1]:.3f} ({time.time() - started:.1f}s training)", flush=True)
    for name, accs in results.items():
        print(f"{name}: mean {np.mean(accs):.3f}, min {min(accs):.3f}, max {max(accs):.3f} over {repeats} seeds")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["data", "weights", "compare"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.what == "data":
        build_digit_files()
    elif args.what == "weights":
        pretrain()
    else:
        compare(args.epochs, args.repeats)
