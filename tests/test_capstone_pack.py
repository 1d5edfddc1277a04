"""The capstone pack's data and bar, without kernels: the holdout is disjoint from the
learner's digits and never shipped to learners, the bar sits below the reference's worst seed,
and the ranking sentence counts seeds correctly."""

from __future__ import annotations

import numpy as np
import pytest

from grader.lessons import get_lesson

from .conftest import EXERCISES, SOLUTIONS

PACK = SOLUTIONS / "capstone"


@pytest.fixture(scope="module")
def checks():
    code = get_lesson("capstone").check_code()
    import sys

    return sys.modules[code["softmax"].cases.__module__]


def test_holdout_is_disjoint_and_not_shipped():
    with np.load(PACK / "digits10.npz") as learner, np.load(PACK / "holdout.npz") as hold:
        mine = {img.tobytes() for key in ("train_x", "valid_x") for img in learner[key]}
        held = [img.tobytes() for img in hold["images"]]
        assert len(held) == 400 and sorted(np.bincount(hold["labels"])) == [40] * 10
        assert len(learner["train_x"]) + len(learner["valid_x"]) == 1397
    assert not any(h in mine for h in held)
    lesson = get_lesson("capstone")
    assert "holdout.npz" not in lesson.notebooks[0].data
    assert not (EXERCISES / "capstone" / "holdout.npz").exists()


def test_bar_below_the_reference_spread(checks):
    spread = checks.REFERENCE_SPREAD
    assert len(spread) == 10
    assert min(spread) - checks.ACCURACY_BAR >= 0.04


def test_rank_wording(checks):
    assert checks.rank_against_reference(0.99).startswith("above 10 of the reference solution's 10 seeds")
    assert checks.rank_against_reference(0.10).startswith("below every seed")
    assert checks.rank_against_reference(0.955).startswith("above 4 of")  # ties do not count as beaten
