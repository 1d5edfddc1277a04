"""Build digits37.npz: the 3s and 7s of scikit-learn's bundled handwritten digits, MNIST-shaped.

Run once by the pack's author (`python make_data.py`); the notebooks never import scikit-learn.
Chapter 4 downloads a sample of MNIST; here nothing can be downloaded, so we use the 8x8 digits
that ship inside scikit-learn instead and make them look like MNIST: each image is scaled up to
20x20 and padded with a 4-pixel black border to 28x28 (MNIST centres its digits the same way),
with pixel values 0-255 as uint8. A fixed seed splits each digit into training and validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

OUT = Path(__file__).with_name("digits37.npz")
SEED = 42
VALID_FRACTION = 0.25


def mnist_like(images: np.ndarray) -> np.ndarray:
    """(n, 8, 8) values 0-16 -> (n, 28, 28) uint8 values 0-255."""
    x = torch.tensor(images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4))
    return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def split(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(len(images))
    n_valid = round(len(images) * VALID_FRACTION)
    return images[order[n_valid:]], images[order[:n_valid]]


def main() -> None:
    digits = load_digits()
    rng = np.random.default_rng(SEED)
    arrays = {}
    for digit in (3, 7):
        train, valid = split(mnist_like(digits.images[digits.target == digit]), rng)
        arrays[f"train{digit}"], arrays[f"valid{digit}"] = train, valid
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT.name}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()) + f"; {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
