"""Train the which-model zoo on the 600 digits and save each model's weights (run by the pack's author).

    python train_zoo.py            zoo/<name>.pth for every model in zoo.NAMES (fastai Learner.save)

Nothing here runs when learners work or when notebooks are graded; the weights are committed.
Each model is trained with fastai's fit_one_cycle on the notebook's training split, then saved
without optimiser state, so `zoo.zoo_learner(name)` gets it back with `Learner.load`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import zoo  # noqa: E402  (the module shipped with the notebook)

RECIPES = {"linear": (4, 1e-2), "cnn_small": (40, 3e-2), "cnn_medium": (40, 3e-2), "cnn_large": (30, 2e-2)}


def main() -> None:
    from fastai.vision.all import Learner, accuracy, set_seed

    dls = zoo.zoo_dls(Path(tempfile.mkdtemp()) / "digits")
    for name in zoo.NAMES:
        set_seed(0, reproducible=True)
        epochs, lr = RECIPES[name]
        learn = Learner(dls, zoo.make_model(name), metrics=accuracy, path=HERE, model_dir="zoo")
        started = time.time()
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(epochs, lr)
        learn.save(name, with_opt=False)
        acc = float(learn.validate()[1])
        size = (HERE / "zoo" / f"{name}.pth").stat().st_size
        print(f"{name}: valid accuracy {acc:.3f}, {size / 1024:.0f} KiB, {time.time() - started:.0f}s training")


if __name__ == "__main__":
    main()
