"""Tests for emozone_lite.checks: every helper, every error message."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from emozone_lite.aus import AUTrack
from emozone_lite.checks import as_float_tensor, as_positive_int, check_finite, check_shape, shape_error


# --------------------------------------------------------------------------- as_float_tensor
def test_as_float_tensor_keeps_float_tensors_as_they_are():
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    y = as_float_tensor(x, "x")
    assert y is x  # same dtype, device and autograd graph: no copy
    h = torch.ones(2, dtype=torch.float16)
    assert as_float_tensor(h, "h") is h


def test_as_float_tensor_converts_everything_else_to_float32():
    assert as_float_tensor(torch.arange(3), "i").dtype == torch.float32  # integer tensors
    assert as_float_tensor(torch.tensor([True, False]), "b").tolist() == [1.0, 0.0]
    a = as_float_tensor(np.arange(4.0).reshape(2, 2), "a")  # float64 arrays too
    assert a.dtype == torch.float32 and a.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert as_float_tensor([[1, 2], [3, 4]], "l").dtype == torch.float32
    assert as_float_tensor(2.5, "s").shape == ()


def test_as_float_tensor_reads_autrack_like_values():
    tr = AUTrack(np.full((4, 17), 2.0))
    t = as_float_tensor(tr, "track")
    assert t.shape == (4, 17) and t.dtype == torch.float32 and float(t[0, 0]) == 2.0
    # a dict's .values is a method, not data: it is not read
    with pytest.raises(ValueError, match="d must be a tensor or an array of numbers, got dict"):
        as_float_tensor({"a": 1.0}, "d")


def test_as_float_tensor_dtype_and_device():
    t = as_float_tensor([1.0, 2.0], "x", dtype=torch.float64, device="cpu")
    assert t.dtype == torch.float64 and t.device.type == "cpu"
    assert as_float_tensor(torch.zeros(2), "x", dtype=torch.float16).dtype == torch.float16


@pytest.mark.parametrize("bad", ["abc", [[1.0, 2.0], [3.0]], object()])
def test_as_float_tensor_rejects_non_numbers_naming_the_argument(bad):
    expected = rf"^means must be a tensor or an array of numbers, got {type(bad).__name__}: "
    with pytest.raises(ValueError, match=expected):
        as_float_tensor(bad, "means")


# --------------------------------------------------------------------------- check_finite
def test_check_finite_returns_its_input():
    x = torch.randn(3, requires_grad=True)
    assert check_finite(x, "x") is x
    a = np.ones(3)
    assert check_finite(a, "a") is a


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("kind", ["tensor", "array"])
def test_check_finite_names_the_argument_and_the_hint(bad, kind):
    x = torch.tensor([0.0, bad]) if kind == "tensor" else np.array([0.0, bad])
    with pytest.raises(ValueError, match=r"^aus contains NaN or inf$"):
        check_finite(x, "aus")
    with pytest.raises(ValueError, match=r"^aus contains NaN or inf; fill failed frames first$"):
        check_finite(x, "aus", "fill failed frames first")


def test_check_finite_does_not_touch_gradients():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    check_finite(x * 2, "y")
    assert x.grad is None


# --------------------------------------------------------------------------- shape_error / check_shape
def test_shape_error_wording():
    e = shape_error("means", "[N, 3]", torch.Size([4, 2]), "; hint")
    assert isinstance(e, ValueError) and str(e) == "means must have shape [N, 3], got (4, 2); hint"


def test_check_shape_binds_named_sizes():
    assert check_shape(torch.zeros(5, 3), "means", ("N", 3)) == {"N": 5}
    assert check_shape(np.zeros((2, 7, 17)), "tokens", ("B", "T", 17)) == {"B": 2, "T": 7}
    assert check_shape(torch.zeros(4, 4), "m", ("N", "N")) == {"N": 4}  # a repeated name: equal sizes
    assert check_shape(torch.zeros(2, 9), "x", (None, 9)) == {}  # None: any size, not reported
    assert check_shape(torch.zeros(5, 3), "means", ("N", 3), N=5) == {"N": 5}


def test_check_shape_leading_star_matches_any_batch():
    assert check_shape(torch.zeros(3), "q", ("*", 3)) == {}
    assert check_shape(torch.zeros(2, 5, 6, 3), "q", ("*", "N", 3)) == {"N": 6}
    with pytest.raises(ValueError, match=re.escape("q must have shape [..., L, d], got (8,)")):
        check_shape(torch.zeros(8), "q", ("*", "L", "d"))


@pytest.mark.parametrize(
    "x, pattern, known, message",
    [
        (torch.zeros(5, 2), ("N", 3), {}, "means must have shape [N, 3], got (5, 2)"),
        (torch.zeros(5), ("N", 3), {}, "means must have shape [N, 3], got (5,)"),
        (torch.zeros(5, 4), ("N", 4), {"N": 6}, "means must have shape [N, 4] with N = 6, got (5, 4)"),
        (torch.zeros(4, 3), ("N", "N"), {}, "means must have shape [N, N], got (4, 3)"),
        (torch.zeros(2, 3), ("*", 4), {}, "means must have shape [..., 4], got (2, 3)"),
        (torch.zeros(2, 3), ("N", "d"), {"d": 4, "K": 9}, "means must have shape [N, d] with d = 4, got (2, 3)"),
        ([1.0, 2.0], ("N",), {}, "means must be an array or tensor of shape [N], got list"),  # no .shape
    ],
)
def test_check_shape_messages(x, pattern, known, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        check_shape(x, "means", pattern, **known)


def test_check_shape_hint_is_appended():
    with pytest.raises(ValueError, match=re.escape("x must have shape [3], got (2,); add a camera axis with x[None]")):
        check_shape(torch.zeros(2), "x", (3,), "; add a camera axis with x[None]")


# --------------------------------------------------------------------------- as_positive_int
def test_as_positive_int_accepts_integers():
    assert as_positive_int(3, "n") == 3
    assert as_positive_int(np.int64(7), "n") == 7 and type(as_positive_int(np.int64(7), "n")) is int
    assert as_positive_int(torch.tensor(5), "n") == 5  # anything with __index__


@pytest.mark.parametrize(
    "value, message",
    [
        (0, "width must be a positive integer, got 0"),
        (-3, "width must be a positive integer, got -3"),
        (2.0, "width must be a positive integer, got 2.0"),
        (True, "width must be a positive integer, got True"),
        ("64", "width must be a positive integer, got '64'"),
        (None, "width must be a positive integer, got None"),
    ],
)
def test_as_positive_int_messages(value, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        as_positive_int(value, "width")


def test_as_float_tensor_dtype_keeps_float64_precision():
    x = np.array([0.1, 1 / 3], np.float64)
    t = as_float_tensor(x, "x", dtype=torch.float64)
    assert t.dtype == torch.float64 and t.tolist() == x.tolist(), "converted straight to float64, not through float32"
    assert as_float_tensor(x, "x").tolist() != x.tolist()  # the float32 default rounds


def test_check_known_fields_names_the_typo():
    from emozone_lite.checks import check_known_fields
    from emozone_lite.model import ModelConfig

    check_known_fields(ModelConfig, {"d_model": 16})
    with pytest.raises(ValueError, match=r"unknown ModelConfig fields \['d_modle'\]; expected a subset of"):
        check_known_fields(ModelConfig, {"d_modle": 16})
