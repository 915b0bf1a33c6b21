"""Tests for emozone_lite.geometry: quaternions, rotation matrices, axis-angle, triangle frames."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from emozone_lite import deform
from emozone_lite.geometry import (
    axis_angle_to_rotmat,
    normalize_quat,
    quat_multiply,
    quat_to_rotmat,
    rotmat_to_quat,
    triangle_frames,
)

PROPS = settings(max_examples=60, deadline=None)


def quats(n_max: int = 8, min_norm: float = 1e-2):
    """Batches ``[n, 4]`` of float64 quaternions (not normalised) with norm >= ``min_norm``."""
    return (
        hnp.arrays(np.float64, st.tuples(st.integers(1, n_max), st.just(4)), elements=st.floats(-2, 2))
        .filter(lambda q: bool((np.linalg.norm(q, axis=1) >= min_norm).all()))
        .map(torch.from_numpy)
    )


def _loop_rotmat(q) -> list[list[float]]:
    """Oracle: the rotation matrix of a unit quaternion, written out entry by entry."""
    w, x, y, z = (v / math.sqrt(sum(c * c for c in q)) for v in q)
    return [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]


# --------------------------------------------------------------------------- normalisation
@PROPS
@given(q=quats(), scale=st.floats(1e-3, 1e3))
def test_normalize_quat_gives_unit_quaternions_and_ignores_scale(q, scale):
    u = normalize_quat(q)
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(len(q), dtype=q.dtype))
    torch.testing.assert_close(normalize_quat(u), u)  # idempotent
    torch.testing.assert_close(normalize_quat(q * scale), u)
    torch.testing.assert_close(u, q / q.norm(dim=-1, keepdim=True))


def test_normalize_quat_zero_stays_zero_and_checks_shape():
    assert normalize_quat(torch.zeros(2, 4)).tolist() == [[0.0] * 4] * 2  # no NaN
    with pytest.raises(ValueError, match=r"quats must have shape \[\.\.\., 4\] \(w, x, y, z\), got \(2, 3\)"):
        normalize_quat(torch.zeros(2, 3))


# --------------------------------------------------------------------------- rotation matrices
@PROPS
@given(q=quats())
def test_quat_to_rotmat_is_a_rotation_and_matches_the_formula(q):
    R = quat_to_rotmat(q)
    assert R.shape == (len(q), 3, 3)
    eye = torch.eye(3, dtype=q.dtype).expand(len(q), 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye)  # orthonormal
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(q), dtype=q.dtype))  # proper, no reflection
    torch.testing.assert_close(R, torch.tensor([_loop_rotmat(row.tolist()) for row in q], dtype=q.dtype))
    torch.testing.assert_close(quat_to_rotmat(-q), R)  # q and -q are the same rotation


@PROPS
@given(q=quats())
def test_rotmat_to_quat_inverts_quat_to_rotmat(q):
    back = rotmat_to_quat(quat_to_rotmat(q))
    u = normalize_quat(q)
    u = torch.where(u[:, :1] < 0, -u, u)  # the w >= 0 representative of ±q
    assert bool((back[:, 0] >= 0).all())
    torch.testing.assert_close(back.norm(dim=-1), torch.ones(len(q), dtype=q.dtype))
    torch.testing.assert_close(quat_to_rotmat(back), quat_to_rotmat(q))  # the same rotation, always
    ok = u[:, 0] > 1e-6  # w = 0: q and -q both have w >= 0, either may come back
    torch.testing.assert_close(back[ok], u[ok])


def test_rotmat_to_quat_half_turns_and_shape_check():
    # 180° turns (w = 0) are where the trace formula breaks down; Shepperd's method does not
    for axis in torch.eye(3, dtype=torch.float64):
        R = quat_to_rotmat(torch.cat([torch.zeros(1, dtype=torch.float64), axis]))
        torch.testing.assert_close(quat_to_rotmat(rotmat_to_quat(R)), R)
    with pytest.raises(ValueError, match=r"R must have shape \[\.\.\., 3, 3\], got \(3, 4\)"):
        rotmat_to_quat(torch.zeros(3, 4))


# --------------------------------------------------------------------------- the Hamilton product
@PROPS
@given(q=quats(n_max=1), r=quats(n_max=1), s=quats(n_max=1))
def test_hamilton_product_composes_rotations(q, r, s):
    qr = quat_multiply(q, r)
    torch.testing.assert_close(quat_to_rotmat(qr), quat_to_rotmat(q) @ quat_to_rotmat(r))  # R(q⊗r) = R(q)R(r)
    torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1) * r.norm(dim=-1))  # |q⊗r| = |q||r|
    torch.testing.assert_close(quat_multiply(qr, s), quat_multiply(q, quat_multiply(r, s)))  # associative
    one = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=q.dtype)
    assert torch.equal(quat_multiply(q, one), q) and torch.equal(quat_multiply(one, q), q)
    conj = q * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)  # q⊗q* = |q|² (a real quaternion)
    torch.testing.assert_close(quat_multiply(q, conj), one * q.norm(dim=-1, keepdim=True) ** 2)


def test_quat_multiply_units_broadcast_and_shape_check():
    i, j, k = torch.eye(4)[1:]
    assert quat_multiply(i, j).tolist() == k.tolist() and quat_multiply(j, i).tolist() == (-k).tolist()
    assert quat_multiply(torch.randn(5, 1, 4), torch.randn(3, 4)).shape == (5, 3, 4)
    with pytest.raises(ValueError, match=r"quaternions must have shape \[\.\.\., 4\]"):
        quat_multiply(torch.zeros(3, 3), torch.zeros(3, 4))
    assert deform.quat_multiply is quat_multiply  # re-exported where the deformation field uses it


# --------------------------------------------------------------------------- axis-angle
@PROPS
@given(axis=hnp.arrays(np.float64, (3,), elements=st.floats(-1, 1)), angle=st.floats(-2 * math.pi, 2 * math.pi))
def test_axis_angle_matches_the_quaternion_of_the_same_turn(axis, angle):
    n = np.linalg.norm(axis)
    assume(n > 1e-3)
    k = axis / n
    R = axis_angle_to_rotmat(k * angle)
    q = torch.tensor([math.cos(angle / 2), *(math.sin(angle / 2) * k)], dtype=torch.float64)
    np.testing.assert_allclose(R, quat_to_rotmat(q).numpy(), atol=1e-12)
    np.testing.assert_allclose(R @ k, k, atol=1e-12)  # the axis stays put


def test_axis_angle_zero_and_shape_check():
    assert np.array_equal(axis_angle_to_rotmat(np.zeros(3)), np.eye(3))
    with pytest.raises(ValueError, match=r"axis-angle vector must have shape \[3\], got \(4,\)"):
        axis_angle_to_rotmat(np.zeros(4))


# --------------------------------------------------------------------------- triangle frames
@PROPS
@given(v=hnp.arrays(np.float64, (3, 3), elements=st.floats(-1, 1)))
def test_triangle_frames_are_rotations_with_the_normal_last(v):
    e1, e2 = v[1] - v[0], v[2] - v[0]
    assume(np.linalg.norm(np.cross(e1, e2)) > 1e-3 and np.linalg.norm(e1) > 1e-3)  # not degenerate
    F = triangle_frames(torch.from_numpy(v), torch.tensor([[0, 1, 2]]))[0]
    torch.testing.assert_close(F.T @ F, torch.eye(3, dtype=F.dtype))
    assert float(torch.linalg.det(F)) == pytest.approx(1.0)
    n = np.cross(e1, e2) / np.linalg.norm(np.cross(e1, e2))
    np.testing.assert_allclose(F[:, 2].numpy(), n, atol=1e-10)
    np.testing.assert_allclose(F[:, 0].numpy(), e1 / np.linalg.norm(e1), atol=1e-10)
