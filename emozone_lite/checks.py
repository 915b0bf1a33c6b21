"""Input checks written once, with the same clear messages everywhere (kornia's ``KORNIA_CHECK`` style).

Every public function of the toolkit that takes arrays checks them on entry with these
helpers, so a wrong input fails at the call that received it, naming the argument and
what was expected:

* :func:`as_float_tensor` — tensors, NumPy arrays, lists and ``AUTrack``-like objects
  (anything with ``.values``) → a floating-point tensor;
* :func:`check_shape` — a shape against a pattern such as ``("N", 3)`` or
  ``("*", "T", 17)``, binding named sizes consistently;
* :func:`check_finite` — no NaN / inf;
* :func:`as_positive_int` — image sizes, counts.

Examples:
    >>> import torch
    >>> check_shape(torch.zeros(5, 3), "means", ("N", 3))
    {'N': 5}
    >>> check_shape(torch.zeros(5, 4), "quats", ("N", 4), N=6)
    Traceback (most recent call last):
    ...
    ValueError: quats must have shape [N, 4] with N = 6, got (5, 4)
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["as_float_tensor", "check_finite", "check_shape", "as_positive_int", "shape_error", "check_known_fields"]


def as_float_tensor(x: Any, name: str, *, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """``x`` as a floating-point tensor.

    Tensors keep their dtype (integer ones become float32), device and autograd graph;
    NumPy arrays and sequences become float32, or ``dtype`` when given (converted once,
    straight from the input, so float64 data keeps its precision); objects with a
    ``values`` attribute (``aus.AUTrack``) are read through it.

    Raises:
        ValueError: ``x`` is not numeric, naming ``name`` and the type received.
    """
    if hasattr(x, "values") and not isinstance(x, (Tensor, np.ndarray)) and not callable(x.values):
        x = x.values  # AUTrack and similar containers
    if isinstance(x, Tensor):
        t = x if x.is_floating_point() else x.to(torch.float32)
    else:
        np_dtype = np.float32 if dtype is None else torch.empty(0, dtype=dtype).numpy().dtype
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np_dtype))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be a tensor or an array of numbers, got {type(x).__name__}: {e}") from None
    if dtype is not None or device is not None:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    return t


def check_finite(x: Tensor | np.ndarray, name: str, hint: str = "") -> Tensor | np.ndarray:
    """Raise ``ValueError`` when ``x`` holds NaN or inf; return ``x`` unchanged.

    Args:
        x: a tensor (gradients are not touched) or a NumPy array.
        name: the argument's name for the message.
        hint: what to do about it, appended after ``"; "``.
    """
    ok = bool(torch.isfinite(x.detach()).all()) if isinstance(x, Tensor) else bool(np.isfinite(x).all())
    if not ok:
        raise ValueError(f"{name} contains NaN or inf" + (f"; {hint}" if hint else ""))
    return x


def shape_error(name: str, expected: str, shape, hint: str = "") -> ValueError:
    """The toolkit's one wording of a shape mismatch."""
    return ValueError(f"{name} must have shape {expected}, got {tuple(shape)}{hint}")


def _pattern_text(pattern: Sequence, known: dict[str, int]) -> str:
    text = "[" + ", ".join("..." if p == "*" else str(p) for p in pattern) + "]"
    named = [f"{k} = {v}" for k, v in known.items() if k in pattern]
    return text + (" with " + ", ".join(named) if named else "")


def check_shape(x, name: str, pattern: Sequence[int | str | None], hint: str = "", **known: int) -> dict[str, int]:
    """Check ``x.shape`` against ``pattern`` and return the sizes of its named dimensions.

    Args:
        x: anything with ``.shape`` (tensor, array).
        name: the argument's name for the message.
        pattern: one entry per dimension: an ``int`` (that size), a ``str`` (a named size,
            equal wherever the name repeats and to ``known[name]`` when given), ``None``
            (any size); a leading ``"*"`` matches any number of leading dimensions.
        hint: appended to the message (e.g. ``"; add a camera axis with x[None]"``).
        **known: sizes named dimensions must have (e.g. ``N=len(means)``).

    Raises:
        ValueError: ``"{name} must have shape [N, 3] with N = 5, got (4, 3)"``.
    """
    if not hasattr(x, "shape"):
        raise ValueError(
            f"{name} must be an array or tensor of shape {_pattern_text(pattern, known)}, got {type(x).__name__}"
        )
    shape = tuple(x.shape)
    pat = list(pattern)
    if pat and pat[0] == "*":
        pat = pat[1:]
        ok = len(shape) >= len(pat)
        shape_tail = shape[len(shape) - len(pat) :] if ok else shape
    else:
        ok = len(shape) == len(pat)
        shape_tail = shape
    bound = dict(known)
    if ok:
        for p, s in zip(pat, shape_tail):
            if p is None:
                continue
            if isinstance(p, str):
                if bound.setdefault(p, s) != s:
                    ok = False
                    break
            elif s != p:
                ok = False
                break
    if not ok:
        raise shape_error(name, _pattern_text(pattern, known), shape, hint)
    return {k: v for k, v in bound.items() if k in pattern}


def as_positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int >= 1`` (bools and floats are refused).

    Raises:
        ValueError: ``"{name} must be a positive integer, got …"``.
    """
    try:
        if isinstance(value, bool):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v}")
    return v


def check_known_fields(cls, d: dict) -> None:
    """Refuse keys of ``d`` that are not fields of the dataclass ``cls`` (a typo in a config
    file must not be ignored silently).

    Raises:
        ValueError: ``"unknown ModelConfig fields ['stpes']; expected a subset of [...]"``.
    """
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; expected a subset of {sorted(known)}")
