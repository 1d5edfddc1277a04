"""Offline stand-ins for what the fine-tuning notebook would otherwise download.

* `make_digit_folders()` turns `digits.npz` (handwritten digits from scikit-learn, 8x8 pixels)
  into an image folder - one sub-folder of PNG files per digit - so the notebook reads it with
  fastai's own `ImageDataLoaders.from_folder` / `DataBlock`, as it would a downloaded dataset.
* `glyph_cnn` is a small convolutional network pretrained on a *different* task: telling apart
  printed letters A-Z (rendered from fonts, see `pretrain.py`). Its weights are in
  `glyph_cnn.pth`. `vision_learner(dls, glyph_cnn)` loads them, cuts off the letter classifier
  and adds a new head for the digits - the same path fastai takes for a torchvision ResNet.

This file sits next to the notebook. The notebook's exported model refers to `glyph_cnn` by
name, so `load_learner` needs this module importable too (it is, from the notebook's folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
DATA_FILE = HERE / "digits.npz"
WEIGHTS_FILE = HERE / "glyph_cnn.pth"
IMAGE_SIZE = 28
# Mean and standard deviation of the pretraining images (per channel, pixels scaled to 0-1).
# fastai normalises every batch with these when the learner is built with pretrained=True.
GLYPH_STATS = ([0.1417, 0.1417, 0.1417], [0.2574, 0.2574, 0.2574])
N_LETTERS = 26

__all__ = ["make_digit_folders", "glyph_cnn", "to_image_size", "GLYPH_STATS", "IMAGE_SIZE"]


def to_image_size(images: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """(n, 8, 8) ink values 0-16 -> (n, size, size) uint8 pixels 0-255, MNIST-style.

    The glyph is scaled up smoothly to 5/7 of the frame and centred on a black border, the
    way MNIST frames its 20x20 digits in 28x28 images.
    """
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)[:, None] / 16.0
    inner = round(size * 5 / 7)
    x = torch.nn.functional.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False)
    pad = (size - inner) // 2
    x = torch.nn.functional.pad(x, (pad, size - inner - pad, pad, size - inner - pad))
    return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def make_digit_folders(dest: str | Path = "digits", data_file: str | Path = DATA_FILE) -> Path:
    """Write the digits as PNG files, `dest/<digit>/<n>.png`, and return `dest` as a Path.

    Quick when the folder is already complete (nothing is rewritten), so calling it at the top
    of the notebook every time is fine.
    """
    from PIL import Image

    dest = Path(dest)
    with np.load(data_file) as data:
        images, labels = data["images"], data["labels"]
    marker = dest / ".complete"
    if marker.is_file() and marker.read_text() == str(len(labels)):
        return dest
    pixels = to_image_size(images)
    for i, (img, label) in enumerate(zip(pixels, labels)):
        folder = dest / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    marker.write_text(str(len(labels)))
    return dest


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def glyph_cnn(pretrained: bool = False) -> nn.Sequential:
    """Four convolution blocks, then pooling and a 26-way letter classifier.

    Laid out like torchvision's models (features, pooling, flatten, linear), so fastai's
    `create_body` keeps everything before the pooling layer as the body.
    With pretrained=True the weights learnt on the letters are loaded from `glyph_cnn.pth`.
    """
    model = nn.Sequential(
        _block(3, 16, 1),
        _block(16, 32, 2),
        _block(32, 64, 2),
        _block(64, 128, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, N_LETTERS),
    )
    if pretrained:
        state = torch.load(WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model


def _register_with_fastai() -> None:
    """Tell fastai where to cut the body off and which statistics normalise its input."""
    try:
        from fastai.vision.learner import default_split, model_meta
    except ImportError:  # pretrain.py and the grader use the network without fastai
        return
    model_meta[glyph_cnn] = {"cut": -3, "split": default_split, "stats": GLYPH_STATS}


_register_with_fastai()
