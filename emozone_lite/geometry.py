"""Rotations and frames, written once: quaternions (``wxyz``), rotation matrices, axis-angle.

Every module that rotates something uses these (the renderer, the deformation field,
the head's seeding and carrying, the teacher rig); the CPU renderer's numba kernels
carry their own float64 copy of :func:`quat_to_rotmat`, held equal to it by the tests.

Conventions: quaternions are ``(w, x, y, z)`` (gsplat's order); rotation matrices act
on column vectors (``p' = R p``).

Examples:
    >>> import torch
    >>> q = torch.tensor([[0.7071068, 0.0, 0.0, 0.7071068]])  # 90° about z
    >>> (quat_to_rotmat(q).round(decimals=4) + 0.0).tolist()  # + 0.0: no -0.0 in the printout
    [[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]
    >>> torch.allclose(rotmat_to_quat(quat_to_rotmat(q)), q)
    True
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "normalize_quat",
    "quat_to_rotmat",
    "rotmat_to_quat",
    "quat_multiply",
    "axis_angle_to_rotmat",
    "triangle_frames",
]


def normalize_quat(quats: Tensor, eps: float = 1e-12) -> Tensor:
    """Unit quaternions ``[..., 4]`` (a zero quaternion stays zero instead of turning NaN)."""
    if quats.shape[-1:] != (4,):
        raise ValueError(f"quats must have shape [..., 4] (w, x, y, z), got {tuple(quats.shape)}")
    return F.normalize(quats, p=2, dim=-1, eps=eps)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` (wxyz, normalised here)."""
    w, x, y, z = normalize_quat(quats).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return R.reshape(quats.shape[:-1] + (3, 3))


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` → unit quaternions ``[..., 4]`` (w, x, y, z), w ≥ 0.

    Shepperd's method: of the four algebraically equivalent formulas, use the one with
    the largest denominator (numerically stable for every rotation).
    """
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"R must have shape [..., 3, 3], got {tuple(R.shape)}")
    m = R
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    c01, c02, c12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    d01, d02, d12 = m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] - m[..., 2, 0], m[..., 2, 1] - m[..., 1, 2]
    cands = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, d12, d02, d01], -1),
            torch.stack([d12, 1 + m00 - m11 - m22, c01, c02], -1),
            torch.stack([d02, c01, 1 - m00 + m11 - m22, c12], -1),
            torch.stack([d01, c02, c12, 1 - m00 - m11 + m22], -1),
        ],
        -2,
    )  # [..., 4 candidates, 4]; candidate k has component k equal to 4 q_k²
    diag = torch.diagonal(cands, dim1=-2, dim2=-1)
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_multiply(q: Tensor, r: Tensor) -> Tensor:
    """Hamilton product ``q ⊗ r`` of quaternions in ``(w, x, y, z)`` order.

    As rotations, ``q ⊗ r`` applies ``r`` first, then ``q``
    (``R(q ⊗ r) = R(q) · R(r)``). So ``q ⊗ Δq`` rotates a Gaussian by ``Δq`` in its
    own local frame before its canonical rotation ``q``.

    Args:
        q: ``[..., 4]`` quaternions (w, x, y, z).
        r: ``[..., 4]`` quaternions; broadcasts against ``q``.

    Returns:
        ``[..., 4]`` the product (not normalised; unit inputs give a unit output).

    Examples:
        >>> i = torch.tensor([0.0, 1.0, 0.0, 0.0]); j = torch.tensor([0.0, 0.0, 1.0, 0.0])
        >>> quat_multiply(i, j).tolist()  # i·j = k
        [0.0, 0.0, 0.0, 1.0]
    """
    if q.shape[-1] != 4 or r.shape[-1] != 4:
        raise ValueError(
            f"quaternions must have shape [..., 4] (w, x, y, z), got {tuple(q.shape)} and {tuple(r.shape)}"
        )
    w1, x1, y1, z1 = q.unbind(-1)
    w2, x2, y2, z2 = r.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def axis_angle_to_rotmat(r: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: axis-angle vector ``[3]`` (radians) → rotation matrix ``[3, 3]`` (NumPy, float64).

    NumPy rather than torch because its one user is a SciPy least-squares fit
    (``head.register_mesh_to_photo``).
    """
    r = np.asarray(r, dtype=np.float64)
    if r.shape != (3,):
        raise ValueError(f"axis-angle vector must have shape [3], got {r.shape}")
    th = float(np.linalg.norm(r))
    if th < 1e-12:
        return np.eye(3)
    k = r / th
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * Kx + (1 - math.cos(th)) * Kx @ Kx


def triangle_frames(vertices: Tensor, triangles: Tensor) -> Tensor:
    """Orthonormal frame of every triangle: columns (first edge, in-plane perpendicular, normal).

    Args:
        vertices: ``[..., V, 3]`` mesh vertices.
        triangles: ``[T, 3]`` vertex indices (counter-clockwise seen from outside).

    Returns:
        ``[..., T, 3, 3]`` rotation matrices whose third column is the outward normal.
    """
    tri = torch.as_tensor(triangles, dtype=torch.long, device=vertices.device)
    p0, p1, p2 = vertices[..., tri[:, 0], :], vertices[..., tri[:, 1], :], vertices[..., tri[:, 2], :]
    t1 = F.normalize(p1 - p0, dim=-1)
    n = F.normalize(torch.linalg.cross(p1 - p0, p2 - p0), dim=-1)
    t2 = torch.linalg.cross(n, t1)
    return torch.stack([t1, t2, n], dim=-1)
