"""The safe value format: round trips, and hostile values never come back as themselves."""

import json

import numpy as np
import pytest
import torch

from grader import wire
from grader.wire import Foreign, WireError, decode, encode


def roundtrip(value):
    return decode(json.loads(json.dumps(encode(value))))


@pytest.mark.parametrize(
    "value",
    [None, True, 3, -(2**70), 2.5, "text", [1, "a"], (1, 2.0), {"k": [None]}, float("inf")],
)
def test_plain_values_round_trip(value):
    assert roundtrip(value) == value
    assert type(roundtrip(value)) is type(value)


def test_nan_round_trips_as_nan():
    assert np.isnan(roundtrip(float("nan")))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bool, torch.uint8, torch.bfloat16, torch.float16])
def test_tensors_round_trip_exactly(dtype):
    t = (torch.randn(3, 4) * 10).to(dtype)
    back = roundtrip(t)
    assert type(back) is torch.Tensor and back.dtype == dtype and back.shape == t.shape
    assert torch.equal(back, t)


def test_numpy_arrays_and_scalars_keep_their_kind():
    arr = np.arange(6, dtype=np.int32).reshape(2, 3)
    back = roundtrip(arr)
    assert type(back) is np.ndarray and back.dtype == np.int32 and (back == arr).all()
    assert type(roundtrip(np.float32(1.5))) is np.float32


def test_tensor_subclass_and_eq_overriders_become_foreign():
    class Sneaky(torch.Tensor):
        pass

    class Liar:
        def __eq__(self, other):
            return True

        def __getattr__(self, name):
            return lambda *a, **k: self

    sub = roundtrip(torch.zeros(3).as_subclass(Sneaky))
    assert isinstance(sub, Foreign) and "subclass" in sub.note
    liar = roundtrip(Liar())
    assert isinstance(liar, Foreign)
    assert (liar == roundtrip(Liar())) is False and (liar == 1) is False


def test_functions_and_generators_become_foreign():
    assert isinstance(roundtrip(lambda x: x), Foreign)
    assert isinstance(roundtrip(x for x in range(3)), Foreign)


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"t": "nope"},
        {"t": "int", "v": "12a"},
        {"t": "float", "v": "NaNx"},
        {"t": "tensor", "dtype": "float32", "shape": [2], "data": "AAAA"},  # 3 bytes for 8 needed
        {"t": "tensor", "dtype": "object", "shape": [1], "data": ""},
        {"t": "tensor", "dtype": "float32", "shape": [-1], "data": ""},
        {"t": "dict", "v": [[1, {"t": "none"}]]},
        {"t": "list", "v": {"t": "none"}},
        {"t": "tensor", "dtype": "float32", "shape": [1], "data": "!!!!"},
    ],
)
def test_malformed_payloads_are_rejected(payload):
    with pytest.raises(WireError):
        decode(payload)


def test_sizes_are_bounded():
    big = {"t": "tensor", "dtype": "uint8", "shape": [wire.MAX_BYTES + 8], "data": "A" * (wire.MAX_BYTES // 2)}
    with pytest.raises(WireError):
        decode(big)


def test_device_is_remembered():
    payload = encode(torch.ones(2))
    payload["device"] = "cuda:0"
    back = decode(payload)
    assert wire.received_device(back) == "cuda:0"
    assert wire.received_device(decode(encode(torch.ones(2)))) == "cpu"
