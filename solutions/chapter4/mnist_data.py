"""Load the chapter-4 digits: 3s and 7s as float tensors in [0, 1], shape (n, 28, 28).

The images come from digits37.npz next to this file (built by make_data.py from the small
handwritten-digits set bundled with scikit-learn, scaled up to MNIST's 28x28). Loading takes a
few milliseconds and needs only numpy and torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

DATA_FILE = Path(__file__).with_name("digits37.npz")


class Digits(NamedTuple):
    train3: torch.Tensor
    train7: torch.Tensor
    valid3: torch.Tensor
    valid7: torch.Tensor


def load_threes_and_sevens(path: str | Path = DATA_FILE) -> Digits:
    """Training and validation images of 3s and 7s, pixels scaled from 0-255 to 0-1."""
    with np.load(path) as data:
        return Digits(*(torch.from_numpy(data[key]).float() / 255 for key in Digits._fields))


def show_image(image: torch.Tensor, ax=None, title: str | None = None):
    """Draw one (28, 28) image in grey levels, without axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    ax.imshow(image.detach(), cmap="Greys")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
