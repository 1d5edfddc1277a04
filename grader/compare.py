"""Compare what a learner's function returned with the reference, in the grader's process.

Values arrive decoded by `wire` (plain tensors, numbers, containers, or `Foreign` descriptions),
so nothing here can be fooled by an object that overrides `__eq__`: types are checked with
`type(...) is`, and tensors are compared with torch's own `isclose` (the criterion behind
`torch.testing.assert_close`: |got - expected| <= atol + rtol * |expected|).

The messages follow `assert_close`: how many elements mismatch, the greatest absolute and
relative differences and where, the tolerances used - plus the first mismatching position,
and a word on what usually causes a wrong shape, dtype or type.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from .results import Diff
from .wire import Foreign, received_device


class _NoTensor:
    """Stands for torch.Tensor while torch is not imported: no value is of this type."""


class _LazyTorch:
    """This module's `torch`, imported at its first real use. Until torch is imported nothing can be
    a tensor (grader.wire imports torch to build one), so the type tests against `torch.Tensor`
    answer without importing it: a pack whose notebooks never use torch (a converted nbgrader
    assignment) is graded without the grader importing torch (seconds per `learn grade`)."""

    def __getattr__(self, name: str):
        if name == "Tensor" and "torch" not in sys.modules:
            return _NoTensor
        import torch as module

        return getattr(module, name)


torch = _LazyTorch()

__all__ = ["Tolerance", "Verdict", "compare", "describe", "fmt_shape"]


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1.3e-6
    atol: float = 1e-5
    check_dtype: bool = True
    equal_nan: bool = False


@dataclass
class Verdict:
    ok: bool
    message: str = ""
    diff: Diff | None = None
    kind: str | None = None  # wrong_type, shape, dtype, device, nonfinite, values, length, keys, returned_none
    mistake: str | None = None  # a judge that recognises a named misconception says which

    @classmethod
    def passed(cls) -> Verdict:
        return cls(True)


def fmt_shape(shape) -> str:
    dims = tuple(int(d) for d in shape)
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def _fmt_index(index) -> str:
    return fmt_shape(index) if index is not None else "()"


def _num(x: float) -> str:
    return f"{x:.6g}"


def describe(value) -> str:
    """A short, learner-facing description of a value's type (and shape)."""
    if value is None:
        return "None"
    if type(value) is torch.Tensor:
        return f"a tensor of shape {fmt_shape(value.shape)} and dtype {value.dtype}"
    if type(value) is np.ndarray:
        return f"a numpy array of shape {fmt_shape(value.shape)}"
    if isinstance(value, np.generic):
        return f"a numpy {value.dtype} scalar"
    if type(value) is bool:
        return f"the bool {value}"
    if type(value) in (int, float):
        return f"the {type(value).__name__} {_num(value) if type(value) is float else value}"
    if type(value) is str:
        return f"the string {value[:40]!r}"
    if type(value) in (list, tuple):
        return f"a {type(value).__name__} of {len(value)} item{'s' * (len(value) != 1)}"
    if type(value) is dict:
        return f"a dict with keys {sorted(value)[:6]}"
    if isinstance(value, Foreign):
        note = f" ({value.note})" if value.note else ""
        return f"an object of type {value.type_name}{note}"
    return f"a {type(value).__name__}"


def compare(got, expected, tol: Tolerance = Tolerance(), path: str = "") -> Verdict:
    """Is `got` the same as `expected` within `tol`? The first difference found explains why not."""
    if type(expected) is torch.Tensor:
        return _compare_tensor(got, expected, tol, path)
    if type(expected) is np.ndarray:
        if type(got) is not np.ndarray:
            return _wrong_type(got, expected, path)
        return _compare_tensor(torch.from_numpy(got), torch.from_numpy(expected), tol, path, kind_name="array")
    if expected is None:
        return Verdict.passed() if got is None else _wrong_type(got, expected, path)
    if type(expected) is bool or isinstance(expected, np.bool_):
        g = _as_python_scalar(got)
        if type(g) is not bool:
            return _wrong_type(got, expected, path)
        return Verdict.passed() if g == bool(expected) else _value_diff(path, str(bool(expected)), str(g))
    if type(expected) in (int, float) or isinstance(expected, np.number):
        return _compare_number(got, float(expected), tol, path, expected)
    if type(expected) is str:
        if type(got) is not str:
            return _wrong_type(got, expected, path)
        return Verdict.passed() if got == expected else _value_diff(path, repr(expected[:80]), repr(got[:80]))
    if type(expected) in (list, tuple):
        return _compare_sequence(got, expected, tol, path)
    if type(expected) is dict:
        return _compare_dict(got, expected, tol, path)
    raise TypeError(f"reference value of unsupported type {type(expected).__name__} at {path or 'top level'}")


def _where(path: str) -> str:
    return f" at {path}" if path else ""


def _wrong_type(got, expected, path: str) -> Verdict:
    want = describe(expected)
    message = f"expected {want}{_where(path)}, got {describe(got)}"
    kind = "wrong_type"
    if got is None:
        message += " - did the function forget to `return` its result?"
        kind = "returned_none"
    elif type(expected) is torch.Tensor:
        if type(got) in (list, tuple):
            message += " - compute the result with tensor operations (or wrap it in torch.tensor(...))"
        elif type(got) is np.ndarray:
            message += " - use torch functions, or convert with torch.from_numpy(...)"
        elif type(got) in (int, float) or isinstance(got, np.generic):
            message += " - return the tensor itself, not a Python number (no .item())"
        elif isinstance(got, Foreign) and "subclass" in got.note:
            message += " - return a plain torch.Tensor"
    diff = Diff(kind="type", path=path, expected=want, got=describe(got))
    return Verdict(False, message, diff, kind)


def _value_diff(path: str, expected: str, got: str) -> Verdict:
    return Verdict(
        False, f"expected {expected}{_where(path)}, got {got}", Diff(kind="values", path=path, expected=expected, got=got), "values"
    )


def _as_python_scalar(value):
    if type(value) in (torch.Tensor, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _compare_number(got, expected: float, tol: Tolerance, path: str, original) -> Verdict:
    g = _as_python_scalar(got)
    if type(g) is bool or type(g) not in (int, float):
        return _wrong_type(got, original, path)
    g = float(g)
    if math.isnan(expected) and math.isnan(g) and tol.equal_nan:
        return Verdict.passed()
    if not math.isfinite(g) and math.isfinite(expected):
        diff = Diff(kind="nonfinite", path=path, expected=_num(expected), got=_num(g), rtol=tol.rtol, atol=tol.atol)
        return Verdict(False, f"got {_num(g)}{_where(path)} where the reference is {_num(expected)}", diff, "nonfinite")
    if g == expected or abs(g - expected) <= tol.atol + tol.rtol * abs(expected):
        return Verdict.passed()
    abs_err = abs(g - expected)
    rel_err = abs_err / abs(expected) if expected else math.inf
    diff = Diff(
        kind="values", path=path, expected=_num(expected), got=_num(g), rtol=tol.rtol, atol=tol.atol,
        mismatched=1, total=1, max_abs=abs_err, max_rel=rel_err, first_expected=expected, first_got=g,
    )  # fmt: skip
    message = (
        f"expected {_num(expected)}{_where(path)}, got {_num(g)} "
        f"(absolute difference {_num(abs_err)}, relative {_num(rel_err)}; allowed: atol={tol.atol:g}, rtol={tol.rtol:g})"
    )
    return Verdict(False, message, diff, "values")


def _compare_sequence(got, expected, tol: Tolerance, path: str) -> Verdict:
    if type(got) not in (list, tuple):
        return _wrong_type(got, expected, path)
    if len(got) != len(expected):
        message = f"expected {len(expected)} items{_where(path)}, got {len(got)}"
        diff = Diff(kind="length", path=path, expected=str(len(expected)), got=str(len(got)))
        return Verdict(False, message, diff, "length")
    for i, (g, e) in enumerate(zip(got, expected)):
        verdict = compare(g, e, tol, f"{path}[{i}]")
        if not verdict.ok:
            return verdict
    return Verdict.passed()


def _compare_dict(got, expected: dict, tol: Tolerance, path: str) -> Verdict:
    if type(got) is not dict:
        return _wrong_type(got, expected, path)
    if set(got) != set(expected):
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        parts = ([f"missing keys {missing}"] if missing else []) + ([f"unexpected keys {extra}"] if extra else [])
        diff = Diff(kind="keys", path=path, expected=str(sorted(expected)), got=str(sorted(got)))
        return Verdict(False, f"{'; '.join(parts)}{_where(path)}", diff, "keys")
    for key in expected:
        verdict = compare(got[key], expected[key], tol, f"{path}[{key!r}]")
        if not verdict.ok:
            return verdict
    return Verdict.passed()


def _compare_tensor(got, expected: torch.Tensor, tol: Tolerance, path: str, kind_name: str = "tensor") -> Verdict:
    if type(got) is not torch.Tensor:
        return _wrong_type(got, expected, path)
    if got.shape != expected.shape:
        message = f"shape mismatch{_where(path)}: expected {fmt_shape(expected.shape)}, got {fmt_shape(got.shape)}"
        if got.numel() == expected.numel():
            message += " - same number of elements, so a dimension is missing, extra or in the wrong order"
        elif got.ndim > expected.ndim or got.numel() > expected.numel():
            message += " - an operation probably broadcast where it should not (e.g. (n,) with (n, 1)), or a reduction is missing"
        else:
            message += " - a reduction probably ran over too many dimensions (check the dim= argument)"
        diff = Diff(kind="shape", path=path, expected=fmt_shape(expected.shape), got=fmt_shape(got.shape))
        return Verdict(False, message, diff, "shape")
    if tol.check_dtype and got.dtype != expected.dtype:
        message = f"dtype mismatch{_where(path)}: expected {expected.dtype}, got {got.dtype}"
        if got.is_floating_point() != expected.is_floating_point():
            message += " - integer versus floating point: check for integer division or a missing .float()"
        diff = Diff(kind="dtype", path=path, expected=str(expected.dtype), got=str(got.dtype))
        return Verdict(False, message, diff, "dtype")
    got_device, exp_device = received_device(got), received_device(expected)
    if got_device.split(":")[0] != exp_device.split(":")[0]:
        message = f"device mismatch{_where(path)}: expected a tensor on {exp_device}, got one on {got_device}"
        return Verdict(False, message, Diff(kind="device", path=path, expected=exp_device, got=got_device), "device")
    return _compare_values(got, expected, tol, path)


def _compare_values(got: torch.Tensor, expected: torch.Tensor, tol: Tolerance, path: str) -> Verdict:
    if expected.numel() == 0:
        return Verdict.passed()
    exact = not (expected.is_floating_point() or expected.is_complex())
    g = got.detach()
    e = expected.detach()
    if exact:
        close = g.to(e.dtype) == e if g.dtype != e.dtype else g == e
        g, e = g.double(), e.double()
    else:
        work = torch.complex128 if e.is_complex() else torch.float64
        g, e = g.to(work), e.to(work)
        close = torch.isclose(g, e, rtol=tol.rtol, atol=tol.atol, equal_nan=tol.equal_nan)
    if bool(close.all()):
        return Verdict.passed()
    total = e.numel()
    mismatch = ~close
    count = int(mismatch.sum())
    first = _index_of(mismatch.flatten().nonzero()[0].item(), e.shape)
    abs_err = (g - e).abs()
    abs_err = torch.where(mismatch, _nan_to_inf(abs_err), torch.zeros_like(abs_err))
    rel_err = torch.where(mismatch, _nan_to_inf(abs_err / e.abs()), torch.zeros_like(abs_err))
    i_abs = _index_of(int(abs_err.flatten().argmax()), e.shape)
    i_rel = _index_of(int(rel_err.flatten().argmax()), e.shape)
    first_exp, first_got = e.flatten()[_flat(first, e.shape)].item(), g.flatten()[_flat(first, e.shape)].item()
    nonfinite = ~torch.isfinite(g) & torch.isfinite(e) if not e.is_complex() else torch.zeros_like(close)
    diff = Diff(
        kind="nonfinite" if bool(nonfinite.any()) else "values",
        path=path, expected=_small(e), got=_small(g),
        rtol=None if exact else tol.rtol, atol=None if exact else tol.atol,
        mismatched=count, total=total,
        max_abs=_finite_or_none(abs_err.flatten()[_flat(i_abs, e.shape)].item()), max_abs_index=list(i_abs),
        max_rel=_finite_or_none(rel_err.flatten()[_flat(i_rel, e.shape)].item()), max_rel_index=list(i_rel),
        first_index=list(first), first_expected=_real(first_exp), first_got=_real(first_got),
    )  # fmt: skip
    lines = []
    if diff.kind == "nonfinite":
        n_bad = int(nonfinite.sum())
        bad_first = _index_of(nonfinite.flatten().nonzero()[0].item(), e.shape)
        what = "NaN" if bool(torch.isnan(g[nonfinite]).any()) else "inf"
        lines.append(
            f"got {what}{_where(path)} at {n_bad} of {total} positions where the reference is finite "
            f"(first at index {_fmt_index(bad_first)}) - look for division by zero, log of 0 or a negative number, "
            "or a learning rate so large the values blew up"
        )
    else:
        lines.append(f"values differ{_where(path)}: {count} of {total} elements ({100 * count / total:.1f}%) mismatch")
    if not exact:
        lines.append(f"greatest absolute difference: {_num_or_inf(diff.max_abs)} at index {_fmt_index(i_abs)} (atol={tol.atol:g})")
        lines.append(f"greatest relative difference: {_num_or_inf(diff.max_rel)} at index {_fmt_index(i_rel)} (rtol={tol.rtol:g})")
    lines.append(f"first mismatch at index {_fmt_index(first)}: expected {_num(diff.first_expected)}, got {_num(diff.first_got)}")
    return Verdict(False, "\n".join(lines), diff, diff.kind)


def _small(t: torch.Tensor) -> str:
    """A scalar or small tensor by its values (4.333, [1, 2.5], [[19, 22], [43, 50]]); a larger one by its shape,
    "a (28, 28) tensor"."""
    if t.numel() == 1 and t.dim() == 0:
        return _num(_real(t.item()))
    if 0 < t.numel() <= 12 and t.dim() <= 3:
        return _nested(t.tolist())
    return f"a {fmt_shape(t.shape)} tensor"


def _nested(values) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    return _num(_real(values))


def _nan_to_inf(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(x), torch.full_like(x, math.inf), x)


def _num_or_inf(x: float | None) -> str:
    return "inf" if x is None else _num(x)


def _real(x) -> float:
    return float(x.real) if isinstance(x, complex) else float(x)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _index_of(flat: int, shape) -> tuple[int, ...]:
    if not len(shape):
        return ()
    return tuple(int(i) for i in np.unravel_index(int(flat), tuple(shape)))


def _flat(index: tuple[int, ...], shape) -> int:
    return int(np.ravel_multi_index(index, tuple(shape))) if len(shape) else 0
