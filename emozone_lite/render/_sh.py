"""View-dependent colour: real spherical harmonics, degrees 0–3 (3DGS's and gsplat's convention).

A Gaussian's colour seen along the unit direction ``d = (x, y, z)`` from the camera centre to
its mean is ``max(0, Σ_k c_k · Y_k(d) + 0.5)`` with ``K = (degree + 1)²`` coefficients
``c_k ∈ R³`` per Gaussian, in the basis order and sign convention of the 3DGS reference code
(``utils/sh_utils.py``) and ``gsplat.spherical_harmonics``:

* degree 0: ``Y_0 = C0``;
* degree 1: ``−C1·y, C1·z, −C1·x``;
* degree 2: ``C2₀·xy, C2₁·yz, C2₂·(2z² − x² − y²), C2₃·xz, C2₄·(x² − y²)``;
* degree 3: ``C3₀·y(3x² − y²), C3₁·xyz, C3₂·y(4z² − x² − y²), C3₃·z(2z² − 3x² − 3y²),
  C3₄·x(4z² − x² − y²), C3₅·z(x² − y²), C3₆·x(x² − 3y²)``.

The DC term stores colour as ``(rgb − 0.5) / C0`` (:func:`rgb_to_sh`), which is how INRIA PLYs
hold ``f_dc_*``. Written with plain tensor arithmetic: autograd gives the gradients of the
coefficients and of the directions (the tests hold them to a finite-difference check).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SH_C0", "SH_C1", "SH_C2", "SH_C3", "MAX_SH_DEGREE", "num_sh_bases", "eval_sh", "rgb_to_sh", "sh_to_rgb"]

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """``(degree + 1)²``: the coefficients per colour channel up to ``degree``."""
    if int(degree) != degree or not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be an integer in [0, {MAX_SH_DEGREE}], got {degree!r}")
    return (int(degree) + 1) ** 2


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """The real SH basis ``[..., (degree+1)²]`` at unit directions ``dirs [..., 3]``."""
    num_sh_bases(degree)
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, -1)


def eval_sh(degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """``Σ_k coeffs[..., k, :] · Y_k(d̂)`` → ``[..., D]`` (no ``+ 0.5``, no clamp; see :func:`sh_colors`).

    Args:
        degree: SH degree ``d`` in 0…3; the first ``(d + 1)²`` coefficients are used.
        coeffs: ``[..., K, D]`` with ``K ≥ (d + 1)²``.
        dirs: ``[..., 3]`` view directions (normalised here; broadcast against ``coeffs``).
    """
    k = num_sh_bases(degree)
    if coeffs.ndim < 2 or coeffs.shape[-2] < k:
        raise ValueError(f"SH coefficients must have shape [..., K, D] with K >= {k} for degree {degree}, "
                         f"got {list(coeffs.shape)}")  # fmt: skip
    if dirs.shape[-1] != 3:
        raise ValueError(f"view directions must have shape [..., 3], got {list(dirs.shape)}")
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(degree, d).to(coeffs.dtype)  # [..., k]
    return (basis[..., :, None] * coeffs[..., :k, :]).sum(-2)


def sh_colors(degree: int, coeffs: Tensor, means: Tensor, viewmats: Tensor) -> Tensor:
    """Per-camera colours ``[C, N, D]`` of SH Gaussians, as gsplat's ``rasterization(sh_degree=...)``.

    The view direction of Gaussian ``n`` in camera ``c`` runs from the camera centre
    (``−Rᵀt`` of ``viewmats[c]``) to ``means[n]``; colour ``= max(0, eval_sh(...) + 0.5)``.

    Args:
        degree: SH degree used.
        coeffs: ``[N, K, D]`` or per-camera ``[C, N, K, D]``.
        means: ``[N, 3]``.
        viewmats: ``[C, 4, 4]`` world → camera.
    """
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    campos = -(R.transpose(1, 2) @ t[..., None])[..., 0]  # [C, 3]
    dirs = means[None] - campos[:, None]  # [C, N, 3]
    c = coeffs[None] if coeffs.ndim == 3 else coeffs
    return torch.clamp_min(eval_sh(degree, c, dirs) + 0.5, 0.0)


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """The DC coefficient that renders colour ``rgb`` (INRIA's ``f_dc``): ``(rgb − 0.5) / C0``."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(dc: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_sh`: the view-independent colour of a DC coefficient."""
    return dc * SH_C0 + 0.5
