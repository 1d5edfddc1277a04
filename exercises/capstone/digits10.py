"""Load the capstone's digits: all ten classes, flattened to 784 pixels in [0, 1].

The images come from digits10.npz next to this file (made by the pack's make_data.py from the
handwritten digits bundled with scikit-learn, scaled up to MNIST's 28x28). `DataLoaders` is a
two-field stand-in for fastai's class of the same name: a training and a validation loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

DATA_FILE = Path(__file__).with_name("digits10.npz")


class Digits10(NamedTuple):
    train_x: torch.Tensor  # (n, 784) float32 in [0, 1]
    train_y: torch.Tensor  # (n,) int64 class indices 0-9
    valid_x: torch.Tensor
    valid_y: torch.Tensor


class DataLoaders(NamedTuple):
    train: Any
    valid: Any


def load_digits10(path: str | Path = DATA_FILE) -> Digits10:
    """Training and validation digits: images flattened and scaled to 0-1, labels as indices."""
    with np.load(path) as data:

        def images(key):
            x = torch.from_numpy(data[key]).float() / 255
            return x.reshape(len(x), -1)

        def labels(key):
            return torch.from_numpy(data[key].astype(np.int64))

        return Digits10(images("train_x"), labels("train_y"), images("valid_x"), labels("valid_y"))
