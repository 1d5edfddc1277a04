"""The model zoo of the which-model notebook: a linear baseline and three CNNs of growing size,
trained on the same 600 digits, with their weights in zoo.pth (made by train_zoo.py).

    linear      flatten -> one linear layer            (the chapter-4 baseline)
    cnn_small   2 conv blocks, stride 2 each           8 -> 16 channels
    cnn_medium  3 conv blocks                          8 -> 16 -> 32
    cnn_large   4 conv blocks, two at full resolution  16 -> 32 -> 64 -> 64

`zoo_learner(name)` builds a fastai `Learner` on the digit folders (the same split as the
fine-tuning notebook: valid_pct=0.2, seed=42) and loads the shipped weights with fastai's own
`Learner.load`. This file sits next to the notebook.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
DATA_FILE = HERE / "digits.npz"
WEIGHTS_DIR = HERE / "zoo"  # fastai's Learner.load reads <path>/<model_dir>/<name>.pth
IMAGE_SIZE = 28
NAMES = ("linear", "cnn_small", "cnn_medium", "cnn_large")

__all__ = ["NAMES", "make_digit_folders", "make_model", "zoo_dls", "zoo_learner"]


def _to_image_size(images: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """(n, 8, 8) ink values 0-16 -> (n, size, size) uint8, scaled smoothly and centred (as digit_kit)."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)[:, None] / 16.0
    inner = round(size * 5 / 7)
    x = torch.nn.functional.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False)
    pad = (size - inner) // 2
    x = torch.nn.functional.pad(x, (pad, size - inner - pad, pad, size - inner - pad))
    return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def make_digit_folders(dest: str | Path = "digits", data_file: str | Path = DATA_FILE) -> Path:
    """Write the digits as PNG files, `dest/<digit>/<n>.png` (quick when already complete)."""
    from PIL import Image

    dest = Path(dest)
    with np.load(data_file) as data:
        images, labels = data["images"], data["labels"]
    marker = dest / ".complete"
    if marker.is_file() and marker.read_text() == str(len(labels)):
        return dest
    for i, (img, label) in enumerate(zip(_to_image_size(images), labels)):
        folder = dest / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    marker.write_text(str(len(labels)))
    return dest


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


def _cnn(*layers: tuple[int, int]) -> nn.Sequential:
    blocks, c_in = [], 3
    for c_out, stride in layers:
        blocks.append(_block(c_in, c_out, stride))
        c_in = c_out
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10))


def make_model(name: str) -> nn.Module:
    """A freshly initialised network of the zoo (3-channel 28x28 images in, 10 scores out)."""
    if name == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * IMAGE_SIZE * IMAGE_SIZE, 10))
    layouts = {
        "cnn_small": [(8, 2), (16, 2)],
        "cnn_medium": [(8, 1), (16, 2), (32, 2)],
        "cnn_large": [(16, 1), (32, 1), (64, 2), (64, 2)],
    }
    if name not in layouts:
        raise KeyError(f"no model {name!r} in the zoo; it has {', '.join(NAMES)}")
    return _cnn(*layouts[name])


def zoo_dls(path: str | Path = "digits"):
    """fastai DataLoaders on the digit folders: the same split as the fine-tuning notebook.

    On the CPU even where there is a GPU: the notebook compares models timed on the same device,
    and the shipped weights are loaded there."""
    from fastai.vision.all import ImageDataLoaders, Resize

    folder = make_digit_folders(path)
    return ImageDataLoaders.from_folder(folder, valid_pct=0.2, seed=42, item_tfms=Resize(IMAGE_SIZE), bs=64, num_workers=0,
                                        device=torch.device("cpu"))  # fmt: skip


def zoo_learner(name: str, dls=None):
    """A fastai Learner for a zoo model with its trained weights loaded by `Learner.load`."""
    from fastai.vision.all import Learner, accuracy

    learn = Learner(dls if dls is not None else zoo_dls(), make_model(name), metrics=accuracy, path=HERE, model_dir="zoo")
    return learn.load(name, with_opt=False, device="cpu")
