"""Comparison messages in the style of torch.testing.assert_close, plus what usually went wrong."""

import numpy as np
import pytest
import torch

from grader.compare import Tolerance, compare
from grader.wire import Foreign

E = torch.arange(20.0)


def test_equal_and_within_tolerance_pass():
    assert compare(E.clone(), E).ok
    assert compare(E + 1e-7, E).ok
    assert not compare(E + 1e-2, E, Tolerance(rtol=1e-5, atol=1e-5)).ok


def test_value_diff_reports_counts_extremes_and_first_index():
    got = E.clone()
    got[5] += 3
    got[7] += 1
    v = compare(got, E, Tolerance(rtol=1e-5, atol=1e-5))
    assert not v.ok and v.kind == "values"
    assert "2 of 20 elements (10.0%) mismatch" in v.message
    assert "greatest absolute difference: 3 at index (5,)" in v.message
    assert "first mismatch at index (5,): expected 5, got 8" in v.message
    d = v.diff
    assert (d.mismatched, d.total, d.max_abs_index, d.first_index) == (2, 20, [5], [5])
    assert d.rtol == 1e-5 and d.atol == 1e-5


def test_shape_dtype_device_type_messages():
    assert compare(E[:, None], E).kind == "shape"
    assert "same number of elements" in compare(E[:, None], E).message
    assert compare(E.double(), E).kind == "dtype"
    assert "integer versus floating point" in compare(E.long(), E).message
    assert compare(E.double(), E, Tolerance(check_dtype=False)).ok
    assert compare(E.tolist(), E).kind == "wrong_type"
    assert "numpy" in compare(E.numpy(), E).message
    assert compare(None, E).kind == "returned_none"
    assert "not a Python number" in compare(3.0, torch.tensor(3.0)).message
    assert compare(Foreign("x.Liar"), E).kind == "wrong_type"


def test_device_mismatch():
    got = E.clone()
    got._learn_device = "cuda:0"
    v = compare(got, E)
    assert v.kind == "device" and "cuda:0" in v.message


def test_nan_and_inf_are_reported_as_nonfinite():
    got = E.clone()
    got[3] = float("nan")
    v = compare(got, E)
    assert v.kind == "nonfinite" and "NaN" in v.message and "index (3,)" in v.message
    got[3] = float("inf")
    assert "inf" in compare(got, E).message


def test_nested_containers_report_the_path():
    v = compare({"a": [1.0, torch.ones(2)]}, {"a": [1.0, torch.zeros(2)]})
    assert not v.ok and "['a'][1]" in v.message
    assert compare((1, 2), [1, 2]).ok
    assert compare({"a": 1}, {"b": 1}).kind == "keys"
    assert compare([1], [1, 2]).kind == "length"


def test_numbers_accept_zero_dim_tensors_and_numpy_scalars():
    assert compare(torch.tensor(2.0), 2.0).ok
    assert compare(np.float32(2.0), 2.0).ok
    assert not compare(True, 1.0).ok
    assert compare(2.0000001, 2.0).ok


def test_integer_tensors_compare_exactly():
    assert not compare(torch.tensor([1, 2]), torch.tensor([1, 3])).ok
    assert compare(torch.tensor([True]), torch.tensor([True])).ok


@pytest.mark.parametrize("bad", [object(), {1, 2}])
def test_unsupported_reference_types_are_a_programming_error(bad):
    with pytest.raises(TypeError):
        compare(1, bad)
