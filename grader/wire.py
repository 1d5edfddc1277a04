"""The safe value format between the grader and a kernel: JSON with tagged values, no pickle.

This module is used on both sides of the trust boundary. The grader imports it to encode
inputs and decode what a learner's function returned; its source is also sent verbatim into
the kernel (see `harness`), so it must stay self-contained: standard library at module level,
torch and numpy imported lazily.

Only plain values cross: None, bool, int, float, str, list, tuple, dict with str keys, exactly
`torch.Tensor` / `torch.nn.Parameter`, `numpy.ndarray`, and numpy scalars. Anything else
(a tensor subclass, an object overriding `__eq__`, a lazy proxy, a function) arrives as a
`Foreign` description - a type name and a short repr - which can never compare equal to a
reference value. Decoding validates every field and bounds sizes, so a hostile payload can at
worst be rejected.
"""

import base64
import math

MAX_DEPTH = 32
MAX_ITEMS = 200_000
MAX_STR = 200_000
MAX_BYTES = 64 * 2**20

TENSOR_DTYPES = (
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
    "int8", "int16", "int32", "int64", "uint8", "bool",
)  # fmt: skip
NUMPY_DTYPES = (
    "float16", "float32", "float64", "complex64", "complex128",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
)  # fmt: skip


class WireError(ValueError):
    """A payload that does not follow the format (or exceeds its limits)."""


class Foreign:
    """A value of a type that may not cross the boundary, described but never reconstructed."""

    __slots__ = ("type_name", "repr", "note")

    def __init__(self, type_name, repr_text="", note=""):
        self.type_name, self.repr, self.note = str(type_name), str(repr_text), str(note)

    def __repr__(self):
        return f"<{self.type_name}{': ' + self.note if self.note else ''}>"

    def __eq__(self, other):
        return NotImplemented  # never equal to anything, not even another Foreign

    __hash__ = None


def _type_name(value):
    cls = type(value)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module in ("builtins", "") else f"{module}.{name}"


def _safe_repr(value, limit=200):
    try:
        text = object.__repr__(value) if type(value).__repr__ is object.__repr__ else repr(value)
    except BaseException:
        text = "<repr failed>"
    text = str(text) if isinstance(text, str) else "<repr failed>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _float_out(x):
    return x if math.isfinite(x) else repr(x)  # 'nan', 'inf', '-inf' as strings


def _float_in(v):
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise WireError("float value must be a number or 'nan'/'inf'/'-inf'")
    if isinstance(v, str):
        if v not in ("nan", "inf", "-inf"):
            raise WireError(f"bad float literal {v[:20]!r}")
    return float(v)


def encode(value, _depth=0, _budget=None):
    """Encode a value into JSON-safe tagged form. Unknown types become a "foreign" record."""
    budget = _budget if _budget is not None else [MAX_BYTES]
    if _depth > MAX_DEPTH:
        return {"t": "foreign", "type": _type_name(value), "repr": "", "note": "nested too deeply"}
    cls = type(value)
    if value is None:
        return {"t": "none"}
    if cls is bool:
        return {"t": "bool", "v": value}
    if cls is int:
        return {"t": "int", "v": str(value)} if abs(value) >= 2**53 else {"t": "int", "v": value}
    if cls is float:
        return {"t": "float", "v": _float_out(value)}
    if cls is str:
        return {"t": "str", "v": value[:MAX_STR], "truncated": len(value) > MAX_STR}
    if cls in (list, tuple) or (isinstance(value, tuple) and hasattr(cls, "_fields")):
        items = list(value)[:MAX_ITEMS]
        tag = "list" if cls is list else "tuple"
        return {"t": tag, "v": [encode(v, _depth + 1, budget) for v in items]}
    if cls is dict:
        if not all(type(k) is str for k in value):
            return {"t": "foreign", "type": "dict", "repr": _safe_repr(value), "note": "dict keys must be strings"}
        return {"t": "dict", "v": [[k, encode(v, _depth + 1, budget)] for k, v in list(value.items())[:MAX_ITEMS]]}
    module = getattr(cls, "__module__", "") or ""
    if module.startswith("torch"):
        return _encode_torch(value, budget)
    if module.startswith("numpy"):
        return _encode_numpy(value, budget)
    note = ""
    if _looks_like_tensor_subclass(value):
        note = "subclass of torch.Tensor"
    return {"t": "foreign", "type": _type_name(value), "repr": _safe_repr(value), "note": note}


def _looks_like_tensor_subclass(value):
    try:
        import sys

        torch = sys.modules.get("torch")
        return torch is not None and isinstance(value, torch.Tensor)
    except BaseException:
        return False


def _encode_torch(value, budget):
    import torch

    cls = type(value)
    if cls is torch.Size:
        return {"t": "tuple", "v": [{"t": "int", "v": int(d)} for d in value]}
    if cls is torch.dtype:
        return {"t": "str", "v": str(value), "truncated": False}
    if cls is torch.device:
        return {"t": "str", "v": str(value), "truncated": False}
    if cls not in (torch.Tensor, torch.nn.Parameter):
        note = "subclass of torch.Tensor" if isinstance(value, torch.Tensor) else ""
        return {"t": "foreign", "type": _type_name(value), "repr": _safe_repr(value), "note": note}
    dtype = str(value.dtype).replace("torch.", "")
    if dtype not in TENSOR_DTYPES or value.layout != torch.strided or value.is_quantized or value.is_meta:
        return {"t": "foreign", "type": "torch.Tensor", "repr": "", "note": f"unsupported tensor ({dtype}, {value.layout})"}
    device = str(value.device)
    data = value.detach().to("cpu")
    if dtype == "bfloat16":
        data = data.float()
    raw = data.contiguous().numpy().tobytes()
    if len(raw) > budget[0]:
        return {"t": "foreign", "type": "torch.Tensor", "repr": "", "note": f"too large to compare ({len(raw)} bytes)"}
    budget[0] -= len(raw)
    return {
        "t": "tensor",
        "dtype": dtype,
        "shape": list(value.shape),
        "device": device,
        "requires_grad": bool(value.requires_grad),
        "data": base64.b64encode(raw).decode("ascii"),
    }


def _encode_numpy(value, budget):
    import numpy as np

    if type(value) is np.ndarray:
        dtype = str(value.dtype)
        if dtype not in NUMPY_DTYPES:
            return {"t": "foreign", "type": "numpy.ndarray", "repr": "", "note": f"unsupported dtype {dtype}"}
        raw = np.ascontiguousarray(value).tobytes()
        if len(raw) > budget[0]:
            return {"t": "foreign", "type": "numpy.ndarray", "repr": "", "note": "too large to compare"}
        budget[0] -= len(raw)
        return {"t": "ndarray", "dtype": dtype, "shape": list(value.shape), "data": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, np.generic) and type(value).__module__ == "numpy" and str(value.dtype) in NUMPY_DTYPES:
        item = value.item()
        if isinstance(item, complex):
            item = [_float_out(item.real), _float_out(item.imag)]
        elif isinstance(item, float):
            item = _float_out(item)
        return {"t": "npscalar", "dtype": str(value.dtype), "v": item}
    return {"t": "foreign", "type": _type_name(value), "repr": _safe_repr(value), "note": ""}


def decode(obj, _depth=0, _budget=None):
    """Rebuild a value from its tagged form, validating everything; raises WireError."""
    budget = _budget if _budget is not None else [MAX_BYTES]
    if _depth > MAX_DEPTH + 1:
        raise WireError("value nested too deeply")
    if type(obj) is not dict or type(obj.get("t")) is not str:
        raise WireError("every value must be an object with a string tag 't'")
    tag = obj["t"]
    if tag == "none":
        return None
    if tag == "bool":
        if type(obj.get("v")) is not bool:
            raise WireError("bool value must be true/false")
        return obj["v"]
    if tag == "int":
        v = obj.get("v")
        if type(v) is str and len(v) < 400 and v.lstrip("-").isdecimal():
            return int(v)
        if type(v) is not int:
            raise WireError("int value must be an integer")
        return v
    if tag == "float":
        return _float_in(obj.get("v"))
    if tag == "str":
        v = obj.get("v")
        if type(v) is not str or len(v) > MAX_STR:
            raise WireError("str value must be a string within the size limit")
        return v
    if tag in ("list", "tuple"):
        v = obj.get("v")
        if type(v) is not list or len(v) > MAX_ITEMS:
            raise WireError(f"{tag} value must be a list within the size limit")
        items = [decode(x, _depth + 1, budget) for x in v]
        return items if tag == "list" else tuple(items)
    if tag == "dict":
        v = obj.get("v")
        if type(v) is not list or len(v) > MAX_ITEMS:
            raise WireError("dict value must be a list of pairs")
        out = {}
        for pair in v:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                raise WireError("dict entries must be [string key, value] pairs")
            out[pair[0]] = decode(pair[1], _depth + 1, budget)
        return out
    if tag == "tensor":
        return _decode_array(obj, TENSOR_DTYPES, budget, as_tensor=True)
    if tag == "ndarray":
        return _decode_array(obj, NUMPY_DTYPES, budget, as_tensor=False)
    if tag == "npscalar":
        import numpy as np

        dtype = obj.get("dtype")
        if dtype not in NUMPY_DTYPES:
            raise WireError("unsupported numpy scalar dtype")
        v = obj.get("v")
        if dtype.startswith("complex"):
            if type(v) is not list or len(v) != 2:
                raise WireError("complex scalar must be [re, im]")
            return np.dtype(dtype).type(complex(_float_in(v[0]), _float_in(v[1])))
        if dtype.startswith("float"):
            return np.dtype(dtype).type(_float_in(v))
        if type(v) not in (int, bool):
            raise WireError("numpy integer scalar must be an integer")
        return np.dtype(dtype).type(v)
    if tag == "foreign":
        return Foreign(str(obj.get("type", "?"))[:200], str(obj.get("repr", ""))[:400], str(obj.get("note", ""))[:200])
    raise WireError(f"unknown value tag {tag[:40]!r}")


def _decode_array(obj, allowed, budget, as_tensor):
    import numpy as np

    dtype, shape, data = obj.get("dtype"), obj.get("shape"), obj.get("data")
    if dtype not in allowed:
        raise WireError(f"unsupported dtype {str(dtype)[:20]!r}")
    if type(shape) is not list or len(shape) > 32 or not all(type(d) is int and d >= 0 for d in shape):
        raise WireError("shape must be a list of non-negative integers")
    if type(data) is not str or len(data) > (budget[0] * 4) // 3 + 8:
        raise WireError("array data missing or over the size limit")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except Exception:
        raise WireError("array data is not valid base64") from None
    np_dtype = np.dtype("float32" if dtype == "bfloat16" else dtype)
    count = math.prod(shape)
    if count * np_dtype.itemsize != len(raw):
        raise WireError(f"array data has {len(raw)} bytes, expected {count * np_dtype.itemsize} for {dtype}{shape}")
    budget[0] -= len(raw)
    if budget[0] < 0:
        raise WireError("values exceed the size limit")
    array = np.frombuffer(raw, dtype=np_dtype).reshape(shape).copy()
    if not as_tensor:
        return array
    import torch

    tensor = torch.from_numpy(array)
    if dtype == "bfloat16":
        tensor = tensor.to(torch.bfloat16)
    device = obj.get("device", "cpu")
    if type(device) is not str or len(device) > 40:
        raise WireError("bad device")
    if device != "cpu":
        tensor._learn_device = device  # tensors arrive on the CPU; remember where it lived
    if obj.get("requires_grad") is True:
        tensor.requires_grad_(tensor.is_floating_point() or tensor.is_complex())
    return tensor


def received_device(tensor):
    """The device a decoded tensor lived on in the kernel."""
    return getattr(tensor, "_learn_device", "cpu")
