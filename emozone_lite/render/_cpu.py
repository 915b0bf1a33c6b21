"""The ``"cpu"`` backend: numba kernels and their ``torch.autograd.Function``s.

Two fast twins of the readable torch code in :mod:`emozone_lite.render._torch`, each
held to it by the tests (values and gradients):

* :func:`project_gaussians_cpu` — :func:`emozone_lite.render.project_gaussians`
  (EWA projection), in float64, parallel over Gaussians, with the analytic
  vector-Jacobian product for means, quaternions and scales;
* :func:`rasterize_to_pixels_cpu` — :func:`emozone_lite.render._torch._rasterize_pixels_torch`.

The rasterizer follows gsplat 1.5.3's CUDA kernels (``RasterizeToPixels3DGSFwd.cu``
/ ``...Bwd.cu``) rule for rule:

* a Gaussian is binned into every tile its ``radii`` box touches; each tile's list
  is sorted front to back by depth (stable: ties keep the Gaussian order);
* per pixel (centre at ``+0.5``): ``sigma = 0.5 (a dx² + c dy²) + b dx dy`` with
  ``d = mean2d - pixel``, ``alpha = min(0.999, opacity · exp(-sigma))``; skip the
  Gaussian when ``sigma < 0`` or ``alpha < 1/255``; stop *before* a Gaussian that
  would bring the transmittance to ``≤ 1e-4`` (it is not composited);
* the forward pass stores the final transmittance ``T`` and the index of the last
  composited Gaussian per pixel; the backward pass walks back to front from it,
  recovering ``T`` by division and keeping the colour of what lies behind.

Differences from the GPU layout, none visible in the results:

* Inside a tile the loops run *Gaussian-outer, pixel-inner* (each pixel still sees
  its Gaussians front to back) and visit only the bounding box of the ellipse
  ``sigma <= ln(255 · opacity) + 1e-3``, skipping (without an ``exp``) the pixels
  outside that ellipse. There ``alpha < 1/255`` holds, so the skipped pixels are
  exactly ones the GPU skips too. Rows whose pixels are all finished are skipped,
  and a tile stops when all its pixels are.
* Gradients are written to one slot per (tile, Gaussian) intersection — each slot
  is owned by one tile, so parallel tiles never race — and summed per Gaussian
  afterwards. The result is deterministic.
* Backgrounds are composited in torch by the caller (``colour + (1 - alpha) ·
  background``), so their gradient comes from autograd.

The rasterizer's kernels work in float32 with ``fastmath`` off, so forward and
backward make bit-identical skip / stop decisions. They are compiled once and cached on disk
(``cache=True``); the first call in a fresh checkout takes a few seconds. The constants
come from :mod:`emozone_lite.render._constants` (numba freezes them at compile time;
see there before editing one).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _constants
from ._constants import FOV_MARGIN, RADIUS_SIGMAS, tile_grid

__all__ = ["project_gaussians_cpu", "ProjectCPU", "bin_gaussians", "rasterize_to_pixels_cpu", "RasterizeToPixelsCPU"]

_F32 = np.float32
# float32 copies of the shared constants: the kernels compare in float32, like gsplat's CUDA
ALPHA_THRESHOLD = _F32(_constants.ALPHA_THRESHOLD)
MAX_ALPHA = _F32(_constants.MAX_ALPHA)
T_STOP = _F32(_constants.T_STOP)
_HALF = _F32(0.5)
_ONE = _F32(1.0)
#: Margins that keep the skipped region strictly where ``alpha < 1/255``: float32
#: rounding moves sigma by ~1e-5 at most, far less than ``_SIGMA_MARGIN``, and the
#: float64 box arithmetic is far more precise than ``_PIXEL_MARGIN`` (pixels).
_SIGMA_MARGIN = 1e-3
_PIXEL_MARGIN = 1e-4


# --------------------------------------------------------------------------- projection
@numba.njit(cache=True)
def _project_one(means, quats, scales, viewmats, Ks, c, n, width, height, eps2d):
    """EWA projection of Gaussian ``n`` into camera ``c``, in float64: the maths of
    :func:`emozone_lite.render.project_gaussians` (whose comments explain it), with
    ``Σ2D = J W Σ Wᵀ Jᵀ`` factored as ``A Aᵀ``, ``A = J W R S`` (J's zeros skipped).

    Called only for Gaussians inside the depth range. Returns the camera-space point
    ``x, y, z``, the intrinsics, ``x/z`` and ``y/z`` before and after clamping
    to the widened field of view, ``rz = 1/z``, the Jacobian entries, the normalised
    quaternion and the norm it was divided by, ``R`` (row-major), ``A = J W R S``
    (row-major) and the 2D covariance ``s00, s01, s11``.
    """
    mx, my, mz = means[n, 0], means[n, 1], means[n, 2]
    x = viewmats[c, 0, 0] * mx + viewmats[c, 0, 1] * my + viewmats[c, 0, 2] * mz + viewmats[c, 0, 3]
    y = viewmats[c, 1, 0] * mx + viewmats[c, 1, 1] * my + viewmats[c, 1, 2] * mz + viewmats[c, 1, 3]
    z = viewmats[c, 2, 0] * mx + viewmats[c, 2, 1] * my + viewmats[c, 2, 2] * mz + viewmats[c, 2, 3]
    fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
    ux, uy = x / z, y / z
    ex, ey = FOV_MARGIN * (0.5 * width / fx), FOV_MARGIN * (0.5 * height / fy)  # 0.3 tan(fov / 2) beyond the edges
    bx = min(max(ux, -(cx / fx + ex)), (width - cx) / fx + ex)
    by = min(max(uy, -(cy / fy + ey)), (height - cy) / fy + ey)
    rz = 1.0 / z
    j00, j02 = fx * rz, -fx * (z * bx) * rz * rz
    j11, j12 = fy * rz, -fy * (z * by) * rz * rz
    a0 = j00 * viewmats[c, 0, 0] + j02 * viewmats[c, 2, 0]  # rows a, b of J W
    a1 = j00 * viewmats[c, 0, 1] + j02 * viewmats[c, 2, 1]
    a2 = j00 * viewmats[c, 0, 2] + j02 * viewmats[c, 2, 2]
    b0 = j11 * viewmats[c, 1, 0] + j12 * viewmats[c, 2, 0]
    b1 = j11 * viewmats[c, 1, 1] + j12 * viewmats[c, 2, 1]
    b2 = j11 * viewmats[c, 1, 2] + j12 * viewmats[c, 2, 2]
    qd = max(math.sqrt(quats[n, 0] ** 2 + quats[n, 1] ** 2 + quats[n, 2] ** 2 + quats[n, 3] ** 2), 1e-12)
    w, qx, qy, qz = quats[n, 0] / qd, quats[n, 1] / qd, quats[n, 2] / qd, quats[n, 3] / qd
    R = (
        1 - 2 * (qy * qy + qz * qz),
        2 * (qx * qy - w * qz),
        2 * (qx * qz + w * qy),
        2 * (qx * qy + w * qz),
        1 - 2 * (qx * qx + qz * qz),
        2 * (qy * qz - w * qx),
        2 * (qx * qz - w * qy),
        2 * (qy * qz + w * qx),
        1 - 2 * (qx * qx + qy * qy),
    )
    s0, s1, s2 = scales[n, 0], scales[n, 1], scales[n, 2]
    A = (
        (a0 * R[0] + a1 * R[3] + a2 * R[6]) * s0,
        (a0 * R[1] + a1 * R[4] + a2 * R[7]) * s1,
        (a0 * R[2] + a1 * R[5] + a2 * R[8]) * s2,
        (b0 * R[0] + b1 * R[3] + b2 * R[6]) * s0,
        (b0 * R[1] + b1 * R[4] + b2 * R[7]) * s1,
        (b0 * R[2] + b1 * R[5] + b2 * R[8]) * s2,
    )
    s00 = A[0] * A[0] + A[1] * A[1] + A[2] * A[2] + eps2d
    s01 = A[0] * A[3] + A[1] * A[4] + A[2] * A[5]
    s11 = A[3] * A[3] + A[4] * A[4] + A[5] * A[5] + eps2d
    return (
        x,
        y,
        z,
        fx,
        fy,
        cx,
        cy,
        ux,
        uy,
        bx,
        by,
        rz,
        (a0, a1, a2, b0, b1, b2),
        (w, qx, qy, qz),
        qd,
        R,
        A,
        s00,
        s01,
        s11,
    )


@numba.njit(cache=True, parallel=True)
def _project_fwd_kernel(
    means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane, use_opacity
):
    """``radii [C, N, 2]`` int32, ``means2d [C, N, 2]``, ``depths [C, N]``, ``conics [C, N, 3]``
    (float64) and ``valid [C, N]`` — :func:`emozone_lite.render.project_gaussians`."""
    C, N = viewmats.shape[0], means.shape[0]
    radii = np.zeros((C, N, 2), np.int32)
    means2d = np.zeros((C, N, 2))
    depths = np.empty((C, N))
    conics = np.zeros((C, N, 3))
    valid = np.zeros((C, N), np.bool_)
    for n in numba.prange(N):
        for c in range(C):
            depths[c, n] = (
                viewmats[c, 2, 0] * means[n, 0]
                + viewmats[c, 2, 1] * means[n, 1]
                + viewmats[c, 2, 2] * means[n, 2]
                + viewmats[c, 2, 3]
            )
            z = depths[c, n]
            if not (z > near_plane and z < far_plane):
                continue
            (x, y, z, fx, fy, cx, cy, ux, uy, bx, by, rz, JW, q, qd, R, A, s00, s01, s11) = _project_one(
                means, quats, scales, viewmats, Ks, c, n, width, height, eps2d
            )
            det_raw = s00 * s11 - s01 * s01
            if not det_raw > 0.0:
                continue
            extent = RADIUS_SIGMAS
            if use_opacity:
                op = opacities[n]
                if not op >= ALPHA_THRESHOLD:
                    continue
                extent = min(extent, math.sqrt(2.0 * math.log(op / ALPHA_THRESHOLD)))
            r0 = math.ceil(extent * math.sqrt(max(s00, 0.0)))
            r1 = math.ceil(extent * math.sqrt(max(s11, 0.0)))
            u, v = fx * x * rz + cx, fy * y * rz + cy
            if (r0 <= 0 and r1 <= 0) or not (u + r0 > 0 and u - r0 < width and v + r1 > 0 and v - r1 < height):
                continue
            det = max(det_raw, 1e-10)
            valid[c, n] = True
            radii[c, n, 0], radii[c, n, 1] = int(r0), int(r1)
            means2d[c, n, 0], means2d[c, n, 1] = u, v
            conics[c, n, 0], conics[c, n, 1], conics[c, n, 2] = s11 / det, -s01 / det, s00 / det
    return radii, means2d, depths, conics, valid


@numba.njit(cache=True, parallel=True)
def _project_bwd_kernel(means, quats, scales, viewmats, Ks, width, height, eps2d, valid, v_means2d, v_depths, v_conics):
    """Vector-Jacobian product of :func:`_project_fwd_kernel` for ``means``, ``quats``, ``scales``
    (each Gaussian's cameras are summed in one thread: deterministic, no races)."""
    C, N = viewmats.shape[0], means.shape[0]
    v_means = np.zeros((N, 3))
    v_quats = np.zeros((N, 4))
    v_scales = np.zeros((N, 3))
    for n in numba.prange(N):
        for c in range(C):
            gx, gy, gz = 0.0, 0.0, v_depths[c, n]  # d/d(camera-space point)
            if valid[c, n]:
                (x, y, z, fx, fy, cx, cy, ux, uy, bx, by, rz, JW, q, qd, R, A, s00, s01, s11) = _project_one(
                    means, quats, scales, viewmats, Ks, c, n, width, height, eps2d
                )
                gu, gv = v_means2d[c, n, 0], v_means2d[c, n, 1]
                ga, gb, gc = v_conics[c, n, 0], v_conics[c, n, 1], v_conics[c, n, 2]
                # conic = (s11, -s01, s00) / det
                det_raw = s00 * s11 - s01 * s01
                det = max(det_raw, 1e-10)
                k2 = (ga * s11 - gb * s01 + gc * s00) / (det * det) if det_raw >= 1e-10 else 0.0
                g00 = gc / det - k2 * s11
                g11 = ga / det - k2 * s00
                g01 = -gb / det + 2.0 * k2 * s01
                # s00 = |A0|² + eps, s01 = A0·A1, s11 = |A1|² + eps
                gA = (
                    2 * g00 * A[0] + g01 * A[3],
                    2 * g00 * A[1] + g01 * A[4],
                    2 * g00 * A[2] + g01 * A[5],
                    2 * g11 * A[3] + g01 * A[0],
                    2 * g11 * A[4] + g01 * A[1],
                    2 * g11 * A[5] + g01 * A[2],
                )
                # A = (rows a, b of J W) · R · diag(s): gradients of J W, R and s
                ga0, ga1, ga2, gb0, gb1, gb2 = gA
                a0, a1, a2, b0, b1, b2 = JW
                r00, r01, r02, r10, r11, r12, r20, r21, r22 = R
                s0, s1, s2 = scales[n, 0], scales[n, 1], scales[n, 2]
                gas0, gas1, gas2 = ga0 * s0, ga1 * s1, ga2 * s2
                gbs0, gbs1, gbs2 = gb0 * s0, gb1 * s1, gb2 * s2
                gJW = (
                    r00 * gas0 + r01 * gas1 + r02 * gas2,
                    r10 * gas0 + r11 * gas1 + r12 * gas2,
                    r20 * gas0 + r21 * gas1 + r22 * gas2,
                    r00 * gbs0 + r01 * gbs1 + r02 * gbs2,
                    r10 * gbs0 + r11 * gbs1 + r12 * gbs2,
                    r20 * gbs0 + r21 * gbs1 + r22 * gbs2,
                )
                gR = (
                    a0 * gas0 + b0 * gbs0,
                    a0 * gas1 + b0 * gbs1,
                    a0 * gas2 + b0 * gbs2,
                    a1 * gas0 + b1 * gbs0,
                    a1 * gas1 + b1 * gbs1,
                    a1 * gas2 + b1 * gbs2,
                    a2 * gas0 + b2 * gbs0,
                    a2 * gas1 + b2 * gbs1,
                    a2 * gas2 + b2 * gbs2,
                )
                v_scales[n, 0] += ga0 * (a0 * r00 + a1 * r10 + a2 * r20) + gb0 * (b0 * r00 + b1 * r10 + b2 * r20)
                v_scales[n, 1] += ga1 * (a0 * r01 + a1 * r11 + a2 * r21) + gb1 * (b0 * r01 + b1 * r11 + b2 * r21)
                v_scales[n, 2] += ga2 * (a0 * r02 + a1 * r12 + a2 * r22) + gb2 * (b0 * r02 + b1 * r12 + b2 * r22)
                # R from the normalised quaternion (w, x, y, z)
                w, qx, qy, qz = q
                gw = 2 * (-qz * gR[1] + qy * gR[2] + qz * gR[3] - qx * gR[5] - qy * gR[6] + qx * gR[7])
                gqx = 2 * (
                    qy * gR[1]
                    + qz * gR[2]
                    + qy * gR[3]
                    - 2 * qx * gR[4]
                    - w * gR[5]
                    + qz * gR[6]
                    + w * gR[7]
                    - 2 * qx * gR[8]
                )
                gqy = 2 * (
                    -2 * qy * gR[0]
                    + qx * gR[1]
                    + w * gR[2]
                    + qx * gR[3]
                    + qz * gR[5]
                    - w * gR[6]
                    + qz * gR[7]
                    - 2 * qy * gR[8]
                )
                gqz = 2 * (
                    -2 * qz * gR[0]
                    - w * gR[1]
                    + qx * gR[2]
                    + w * gR[3]
                    - 2 * qz * gR[4]
                    + qy * gR[5]
                    + qx * gR[6]
                    + qy * gR[7]
                )
                dot = w * gw + qx * gqx + qy * gqy + qz * gqz
                if qd > 1e-12:  # through the normalisation q / |q|
                    gw, gqx, gqy, gqz = gw - w * dot, gqx - qx * dot, gqy - qy * dot, gqz - qz * dot
                v_quats[n, 0] += gw / qd
                v_quats[n, 1] += gqx / qd
                v_quats[n, 2] += gqy / qd
                v_quats[n, 3] += gqz / qd
                # J W rows: a = j00 W0 + j02 W2, b = j11 W1 + j12 W2
                g_j00 = gJW[0] * viewmats[c, 0, 0] + gJW[1] * viewmats[c, 0, 1] + gJW[2] * viewmats[c, 0, 2]
                g_j02 = gJW[0] * viewmats[c, 2, 0] + gJW[1] * viewmats[c, 2, 1] + gJW[2] * viewmats[c, 2, 2]
                g_j11 = gJW[3] * viewmats[c, 1, 0] + gJW[4] * viewmats[c, 1, 1] + gJW[5] * viewmats[c, 1, 2]
                g_j12 = gJW[3] * viewmats[c, 2, 0] + gJW[4] * viewmats[c, 2, 1] + gJW[5] * viewmats[c, 2, 2]
                tx, ty = z * bx, z * by
                # j00 = fx rz, j02 = -fx tx rz², j11 = fy rz, j12 = -fy ty rz²; u = fx x rz + cx, v = fy y rz + cy
                g_rz = (
                    fx * g_j00
                    - 2 * fx * tx * rz * g_j02
                    + fy * g_j11
                    - 2 * fy * ty * rz * g_j12
                    + fx * x * gu
                    + fy * y * gv
                )
                g_tx = -fx * rz * rz * g_j02
                g_ty = -fy * rz * rz * g_j12
                gx += fx * rz * gu
                gy += fy * rz * gv
                # tx = z · clamp(x / z): x passes through unless clamped, then z gets the bound
                if bx == ux:
                    gx += g_tx
                else:
                    gz += g_tx * bx
                if by == uy:
                    gy += g_ty
                else:
                    gz += g_ty * by
                gz -= g_rz * rz * rz
            for k in range(3):  # camera-space point = W · mean + t
                v_means[n, k] += viewmats[c, 0, k] * gx + viewmats[c, 1, k] * gy + viewmats[c, 2, k] * gz
    return v_means, v_quats, v_scales


def _np64(x: Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).contiguous().numpy()


class ProjectCPU(torch.autograd.Function):
    """``(means, quats, scales) → (means2d, depths, conics)`` with ``radii`` (not differentiable).

    What backward needs goes through ``ctx.save_for_backward``: the inputs themselves
    (so autograd's version counter catches an in-place change between forward and
    backward) and the ``valid`` mask. Backward converts the inputs to float64 again,
    which gives exactly the arrays forward used.
    """

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane):
        f64 = [_np64(t) for t in (means, quats, scales, viewmats, Ks)]
        op = np.ones(1) if opacities is None else _np64(opacities)
        radii, means2d, depths, conics, valid = _project_fwd_kernel(
            f64[0],
            f64[1],
            f64[2],
            op,
            f64[3],
            f64[4],
            width,
            height,
            eps2d,
            near_plane,
            far_plane,
            opacities is not None,
        )
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, torch.from_numpy(valid))
        ctx.sizes = (width, height, eps2d)
        radii_t = torch.from_numpy(radii)
        ctx.mark_non_differentiable(radii_t)
        dt = means.dtype
        return (
            radii_t,
            torch.from_numpy(means2d).to(dt),
            torch.from_numpy(depths).to(dt),
            torch.from_numpy(conics).to(dt),
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, _v_radii, v_means2d, v_depths, v_conics):
        means, quats, scales, viewmats, Ks, valid = ctx.saved_tensors
        width, height, eps2d = ctx.sizes
        C, N = valid.shape

        def f64(t, shape):
            return np.zeros(shape) if t is None else _np64(t)

        v_means, v_quats, v_scales = _project_bwd_kernel(
            _np64(means),
            _np64(quats),
            _np64(scales),
            _np64(viewmats),
            _np64(Ks),
            width,
            height,
            eps2d,
            valid.numpy(),
            f64(v_means2d, (C, N, 2)),
            f64(v_depths, (C, N)),
            f64(v_conics, (C, N, 3)),
        )
        grads = (torch.from_numpy(v_means).to(means.dtype), torch.from_numpy(v_quats).to(quats.dtype))
        return (*grads, torch.from_numpy(v_scales).to(scales.dtype)) + (None,) * 8  # nothing for the other inputs


def project_gaussians_cpu(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = _constants.EPS2D,
    near_plane: float = _constants.NEAR_PLANE,
    far_plane: float = _constants.FAR_PLANE,
    opacities: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`emozone_lite.render.project_gaussians` in numba (float64 inside, outputs in the
    dtype of ``means``), differentiable for ``means``, ``quats`` and ``scales``; the
    tests hold it to the torch version. ``viewmats`` and ``Ks`` get no gradient: the
    renderer uses the torch version when they need one."""
    return ProjectCPU.apply(
        means, quats, scales, opacities, viewmats, Ks, width, height, float(eps2d), float(near_plane), float(far_plane)
    )


# --------------------------------------------------------------------------- binning
@numba.njit(cache=True)
def _argsort_stable(x):
    """Indices that sort the float32 array ``x`` ascending, ties in index order.

    The same result as ``np.argsort(x, kind="stable")`` (``-0.0`` counts as ``0.0``),
    as an LSD radix sort over three 11-bit digits of the float's bits, made
    monotonic by the usual flip (negative: all bits; positive: the sign bit).
    About 10× faster than a merge sort for the tens of thousands of depths here.
    """
    n = x.size
    bits = x.view(np.uint32)
    keys = np.empty(n, np.uint32)
    for i in range(n):
        k = bits[i]
        if k == np.uint32(0x80000000):  # -0.0 sorts as 0.0
            k = np.uint32(0)
        keys[i] = ~k if k >> np.uint32(31) else k | np.uint32(0x80000000)
    idx = np.arange(n)
    tmp = np.empty(n, idx.dtype)
    count = np.empty(2049, np.int64)
    for shift in (0, 11, 22):
        count[:] = 0
        for i in range(n):
            count[((keys[i] >> np.uint32(shift)) & np.uint32(2047)) + 1] += 1
        for b in range(2048):
            count[b + 1] += count[b]
        for i in range(n):  # stable: equal digits keep the order of the previous pass
            g = idx[i]
            d = (keys[g] >> np.uint32(shift)) & np.uint32(2047)
            tmp[count[d]] = g
            count[d] += 1
        idx, tmp = tmp, idx
    return idx


@numba.njit(cache=True)
def _bin_kernel(means2d, radii, depths, tile_size, tile_width, tile_height):
    C, N = depths.shape
    n_tiles = tile_width * tile_height
    ts = _F32(tile_size)
    rect = np.zeros((C, N, 4), np.int32)  # tile x0, x1, y0, y1 (end exclusive)
    counts = np.zeros(C * n_tiles, np.int64)
    for c in range(C):
        for n in range(N):
            if radii[c, n, 0] <= 0 or radii[c, n, 1] <= 0:
                continue
            # gsplat's isect_tiles: floor/ceil of (mean ± radius) / tile_size
            mx = means2d[c, n, 0] / ts
            my = means2d[c, n, 1] / ts
            rx = _F32(radii[c, n, 0]) / ts
            ry = _F32(radii[c, n, 1]) / ts
            x0 = min(max(math.floor(mx - rx), 0.0), float(tile_width))
            x1 = min(max(math.ceil(mx + rx), 0.0), float(tile_width))
            y0 = min(max(math.floor(my - ry), 0.0), float(tile_height))
            y1 = min(max(math.ceil(my + ry), 0.0), float(tile_height))
            rect[c, n, 0] = int(x0)
            rect[c, n, 1] = int(x1)
            rect[c, n, 2] = int(y0)
            rect[c, n, 3] = int(y1)
            for ty in range(int(y0), int(y1)):
                for tx in range(int(x0), int(x1)):
                    counts[c * n_tiles + ty * tile_width + tx] += 1
    offsets = np.zeros(C * n_tiles + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    ids = np.empty(offsets[-1], np.int32)
    # Counting sort: visit Gaussians front to back and append each to its tiles,
    # so every tile's list comes out depth-sorted without sorting per tile.
    for c in range(C):
        order = _argsort_stable(depths[c])  # stable, like gsplat's radix sort
        cursor = offsets[c * n_tiles : (c + 1) * n_tiles].copy()
        for k in range(N):
            n = order[k]
            for ty in range(rect[c, n, 2], rect[c, n, 3]):
                for tx in range(rect[c, n, 0], rect[c, n, 1]):
                    t = ty * tile_width + tx
                    ids[cursor[t]] = n
                    cursor[t] += 1
    return offsets, ids


def bin_gaussians(
    means2d: np.ndarray, radii: np.ndarray, depths: np.ndarray, tile_size: int, tile_width: int, tile_height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Tile lists of Gaussians, each sorted front to back.

    Args:
        means2d: ``[C, N, 2]`` float32 pixel positions.
        radii: ``[C, N, 2]`` int32 box half-sizes; ``0`` means culled.
        depths: ``[C, N]`` float32 camera-space z.
        tile_size, tile_width, tile_height: tile edge in pixels and the tile grid.

    Returns:
        ``offsets [C * tile_height * tile_width + 1]`` int64 and ``ids [n_isects]``
        int32: tile ``t`` of camera ``c`` holds Gaussians
        ``ids[offsets[c * T + t] : offsets[c * T + t + 1]]`` (indices into N).
    """
    return _bin_kernel(means2d, radii, depths, tile_size, tile_width, tile_height)


# --------------------------------------------------------------------------- pixel boxes
@numba.njit(cache=True)
def _box_kernel(means2d, conics, opacities, radii, width, height):
    """Per Gaussian: where it can reach ``alpha >= 1/255``, in float64.

    ``alpha = opacity · exp(-sigma) >= 1/255`` needs ``sigma <= ln(255 · opacity)``,
    an ellipse for a positive-definite conic. Returns ``sig_max [C, N]`` float32 (that
    bound plus a small margin; ``-1`` = never visible) and ``boxes [C, N, 4]`` int32,
    the pixels ``x0, x1, y0, y1`` (ends exclusive, clipped to the image) whose centres
    lie in the ellipse's bounding box. The kernels visit only those pixels and skip
    the ones with ``sigma > sig_max``, where ``alpha < 1/255`` holds, so every pixel
    they skip is one the GPU skips too. Only the conic and opacity matter — like
    gsplat, ``radii`` just bins into tiles. A conic that is not positive definite
    gets the whole image.
    """
    C, N = opacities.shape
    sig_max = np.full((C, N), -1.0, np.float32)
    boxes = np.zeros((C, N, 4), np.int32)
    for c in range(C):
        for g in range(N):
            op = opacities[c, g]
            if radii[c, g, 0] <= 0 or radii[c, g, 1] <= 0 or not op >= ALPHA_THRESHOLD:
                continue
            s = math.log(op / ALPHA_THRESHOLD) + _SIGMA_MARGIN
            sig_max[c, g] = _F32(s)
            a = float(conics[c, g, 0])
            b = float(conics[c, g, 1])
            cc = float(conics[c, g, 2])
            det = a * cc - b * b
            if a > 0.0 and cc > 0.0 and det > 0.0:
                # ½ dᵀ Q d <= s spans |dx| <= sqrt(2 s (Q⁻¹)ₓₓ), |dy| <= sqrt(2 s (Q⁻¹)ᵧᵧ);
                # keep the pixels whose centre px + 0.5 lies within that of the mean
                hx = math.sqrt(2.0 * s * cc / det)
                hy = math.sqrt(2.0 * s * a / det)
                mx = float(means2d[c, g, 0])
                my = float(means2d[c, g, 1])
                x0 = np.ceil(mx - hx - 0.5 - _PIXEL_MARGIN)
                x1 = np.floor(mx + hx - 0.5 + _PIXEL_MARGIN) + 1.0
                y0 = np.ceil(my - hy - 0.5 - _PIXEL_MARGIN)
                y1 = np.floor(my + hy - 0.5 + _PIXEL_MARGIN) + 1.0
                boxes[c, g, 0] = int(max(0.0, min(float(width), x0)))
                boxes[c, g, 1] = int(max(0.0, min(float(width), x1)))
                boxes[c, g, 2] = int(max(0.0, min(float(height), y0)))
                boxes[c, g, 3] = int(max(0.0, min(float(height), y1)))
            else:  # not an ellipse
                boxes[c, g, 1] = width
                boxes[c, g, 3] = height
    return sig_max, boxes


@numba.njit(cache=True, inline="always")
def _tile_rect(ct, tiles_per_cam, tile_width, tile_size, width, height):
    """Camera and pixel rectangle ``px0, px1, py0, py1`` (ends exclusive) of tile ``ct``."""
    c = ct // tiles_per_cam
    t = ct - c * tiles_per_cam
    px0 = (t % tile_width) * tile_size
    py0 = (t // tile_width) * tile_size
    return c, px0, min(px0 + tile_size, width), py0, min(py0 + tile_size, height)


@numba.njit(cache=True, inline="always")
def _box_in_tile(boxes, c, g, px0, px1, py0, py1):
    """The part ``xs, xe, ys, ye`` of Gaussian ``g``'s pixel box inside the tile (may be empty)."""
    return (max(boxes[c, g, 0], px0), min(boxes[c, g, 1], px1), max(boxes[c, g, 2], py0), min(boxes[c, g, 3], py1))


@numba.njit(cache=True, inline="always")
def _gaussian_2d(means2d, conics, opacities, c, g):
    """``mx, my, a, b, c, opacity`` of projected Gaussian ``g`` in camera ``c``."""
    return (means2d[c, g, 0], means2d[c, g, 1], conics[c, g, 0], conics[c, g, 1], conics[c, g, 2], opacities[c, g])


@numba.njit(cache=True, inline="always")
def _sigma(ca, cb, cc, dx, dy):
    """``½ dᵀ Q d`` — one float32 expression for both passes, so they skip the same pixels."""
    return _HALF * (ca * dx * dx + cc * dy * dy) + cb * dx * dy


# --------------------------------------------------------------------------- forward
@numba.njit(cache=True, parallel=True)
def _fwd_kernel(
    means2d, conics, colors, opacities, sig_max, boxes, offsets, ids, tile_order, width, height, tile_size, tile_width
):
    C, N, D = colors.shape
    n_tiles = offsets.shape[0] - 1
    tiles_per_cam = n_tiles // C
    out_colors = np.zeros((C, height, width, D), np.float32)
    out_T = np.ones((C, height, width), np.float32)
    out_last = np.full((C, height, width), -1, np.int32)
    for i in numba.prange(n_tiles):
        ct = tile_order[i]
        c, px0, px1, py0, py1 = _tile_rect(ct, tiles_per_cam, tile_width, tile_size, width, height)
        tw = px1 - px0
        npix = tw * (py1 - py0)
        T = np.ones(npix, np.float32)
        acc = np.zeros((npix, D), np.float32)
        last = np.full(npix, -1, np.int32)
        done = np.zeros(npix, np.bool_)
        row_done = np.zeros(py1 - py0, np.int32)  # finished pixels per row
        n_done = 0
        start = offsets[ct]
        for j in range(offsets[ct + 1] - start):
            if n_done == npix:  # every pixel of the tile is opaque: stop early
                break
            g = ids[start + j]
            xs, xe, ys, ye = _box_in_tile(boxes, c, g, px0, px1, py0, py1)
            if xs >= xe or ys >= ye or sig_max[c, g] < 0:
                continue
            s_max = sig_max[c, g]
            mx, my, ca, cb, cc, op = _gaussian_2d(means2d, conics, opacities, c, g)
            for py in range(ys, ye):
                if row_done[py - py0] == tw:
                    continue
                dy = my - (_F32(py) + _HALF)
                row = (py - py0) * tw - px0
                for px in range(xs, xe):
                    p = row + px
                    if done[p]:
                        continue
                    dx = mx - (_F32(px) + _HALF)
                    sigma = _sigma(ca, cb, cc, dx, dy)
                    if sigma < 0 or sigma > s_max:
                        continue
                    alpha = min(MAX_ALPHA, op * np.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    next_T = T[p] * (_ONE - alpha)
                    if next_T <= T_STOP:  # this pixel is done; the Gaussian is not composited
                        done[p] = True
                        n_done += 1
                        row_done[py - py0] += 1
                        continue
                    vis = alpha * T[p]
                    for k in range(D):
                        acc[p, k] += colors[c, g, k] * vis
                    T[p] = next_T
                    last[p] = j
        for py in range(py0, py1):
            for px in range(px0, px1):
                p = (py - py0) * tw + px - px0
                out_T[c, py, px] = T[p]
                out_last[c, py, px] = last[p]
                for k in range(D):
                    out_colors[c, py, px, k] = acc[p, k]
    return out_colors, out_T, out_last


# --------------------------------------------------------------------------- backward
@numba.njit(cache=True, parallel=True)
def _bwd_kernel(
    means2d,
    conics,
    colors,
    opacities,
    sig_max,
    boxes,
    offsets,
    ids,
    tile_order,
    width,
    height,
    tile_size,
    tile_width,
    T_final,
    last_ids,
    v_colors_out,
    v_alphas_out,
):
    C, N, D = colors.shape
    n_tiles = offsets.shape[0] - 1
    tiles_per_cam = n_tiles // C
    n_isects = ids.shape[0]
    # one gradient row per intersection: v_mean2d (2), v_conic (3), v_opacity (1), v_color (D)
    grads = np.zeros((n_isects, 6 + D), np.float32)
    for i in numba.prange(n_tiles):
        ct = tile_order[i]
        c, px0, px1, py0, py1 = _tile_rect(ct, tiles_per_cam, tile_width, tile_size, width, height)
        tw = px1 - px0
        npix = tw * (py1 - py0)
        start = offsets[ct]
        if offsets[ct + 1] == start:
            continue
        T = np.empty(npix, np.float32)
        Tf = np.empty(npix, np.float32)
        last = np.empty(npix, np.int32)
        row_last = np.full(py1 - py0, -1, np.int32)  # last composited index per row
        v_a = np.empty(npix, np.float32)
        v_c = np.empty((npix, D), np.float32)
        behind = np.zeros((npix, D), np.float32)  # colour composited behind the current Gaussian
        for py in range(py0, py1):
            for px in range(px0, px1):
                p = (py - py0) * tw + px - px0
                T[p] = T_final[c, py, px]
                Tf[p] = T_final[c, py, px]
                last[p] = last_ids[c, py, px]
                row_last[py - py0] = max(row_last[py - py0], last[p])
                v_a[p] = v_alphas_out[c, py, px]
                for k in range(D):
                    v_c[p, k] = v_colors_out[c, py, px, k]
        j_max = -1
        for r in range(py1 - py0):
            j_max = max(j_max, row_last[r])
        v_rgb = np.zeros(D, np.float32)
        for j in range(j_max, -1, -1):
            g = ids[start + j]
            xs, xe, ys, ye = _box_in_tile(boxes, c, g, px0, px1, py0, py1)
            if xs >= xe or ys >= ye or sig_max[c, g] < 0:
                continue
            s_max = sig_max[c, g]
            mx, my, ca, cb, cc, op = _gaussian_2d(means2d, conics, opacities, c, g)
            v_mx = _F32(0.0)
            v_my = _F32(0.0)
            v_ca = _F32(0.0)
            v_cb = _F32(0.0)
            v_cc = _F32(0.0)
            v_op = _F32(0.0)
            for k in range(D):
                v_rgb[k] = 0.0
            touched = False
            for py in range(ys, ye):
                if j > row_last[py - py0]:  # behind every pixel's last Gaussian in this row
                    continue
                dy = my - (_F32(py) + _HALF)
                row = (py - py0) * tw - px0
                for px in range(xs, xe):
                    p = row + px
                    if j > last[p]:  # behind this pixel's last composited Gaussian
                        continue
                    dx = mx - (_F32(px) + _HALF)
                    sigma = _sigma(ca, cb, cc, dx, dy)
                    if sigma < 0 or sigma > s_max:
                        continue
                    vis = np.exp(-sigma)
                    alpha = min(MAX_ALPHA, op * vis)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    touched = True
                    ra = _ONE / (_ONE - alpha)
                    T[p] *= ra  # transmittance in front of this Gaussian
                    fac = alpha * T[p]
                    v_alpha = _F32(0.0)
                    for k in range(D):
                        v_rgb[k] += fac * v_c[p, k]
                        v_alpha += (colors[c, g, k] * T[p] - behind[p, k] * ra) * v_c[p, k]
                    v_alpha += Tf[p] * ra * v_a[p]
                    if op * vis <= MAX_ALPHA:  # alpha not clamped: sigma and opacity get gradients
                        v_sigma = -op * vis * v_alpha
                        v_ca += _HALF * v_sigma * dx * dx
                        v_cb += v_sigma * dx * dy
                        v_cc += _HALF * v_sigma * dy * dy
                        v_mx += v_sigma * (ca * dx + cb * dy)
                        v_my += v_sigma * (cb * dx + cc * dy)
                        v_op += vis * v_alpha
                    for k in range(D):
                        behind[p, k] += colors[c, g, k] * fac
            if touched:
                r = start + j
                grads[r, 0] = v_mx
                grads[r, 1] = v_my
                grads[r, 2] = v_ca
                grads[r, 3] = v_cb
                grads[r, 4] = v_cc
                grads[r, 5] = v_op
                for k in range(D):
                    grads[r, 6 + k] = v_rgb[k]
    # sum the intersection rows per Gaussian (serial: cheap, and one parallel region is enough)
    v_means2d = np.zeros((C, N, 2), np.float32)
    v_conics = np.zeros((C, N, 3), np.float32)
    v_opacities = np.zeros((C, N), np.float32)
    v_colors = np.zeros((C, N, D), np.float32)
    for c in range(C):
        for r in range(offsets[c * tiles_per_cam], offsets[(c + 1) * tiles_per_cam]):
            g = ids[r]
            v_means2d[c, g, 0] += grads[r, 0]
            v_means2d[c, g, 1] += grads[r, 1]
            v_conics[c, g, 0] += grads[r, 2]
            v_conics[c, g, 1] += grads[r, 3]
            v_conics[c, g, 2] += grads[r, 4]
            v_opacities[c, g] += grads[r, 5]
            for k in range(D):
                v_colors[c, g, k] += grads[r, 6 + k]
    return v_means2d, v_conics, v_colors, v_opacities


# --------------------------------------------------------------------------- autograd
def _tile_order(n_tiles: int) -> np.ndarray:
    """Tiles interleaved across threads: ``prange`` hands each thread one contiguous
    block of iterations, so thread k gets tiles k, k + n, k + 2n, … — the busy tiles
    of a face in the middle of the image are shared out evenly."""
    n = max(1, numba.get_num_threads())
    return np.concatenate([np.arange(k, n_tiles, n, dtype=np.int64) for k in range(n)])


def _np32(x: Tensor) -> np.ndarray:
    return x.detach().to(torch.float32).contiguous().numpy()


class RasterizeToPixelsCPU(torch.autograd.Function):
    """``(means2d, conics, colors, opacities) → (colors [C,H,W,D], alphas [C,H,W,1])``.

    No background (the caller adds it). ``radii``, ``offsets`` and ``ids`` are the
    non-differentiable binning (:func:`bin_gaussians`).
    """

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, radii, offsets, ids, width, height, tile_size, tile_width):
        m, q, col, op = _np32(means2d), _np32(conics), _np32(colors), _np32(opacities)
        sig_max, boxes = _box_kernel(m, q, op, radii, width, height)
        order = _tile_order(len(offsets) - 1)
        out_colors, out_T, out_last = _fwd_kernel(
            m, q, col, op, sig_max, boxes, offsets, ids, order, width, height, tile_size, tile_width
        )
        ctx.save_for_backward(means2d, conics, colors, opacities)  # autograd checks in-place changes
        ctx.arrays = (sig_max, boxes, offsets, ids, order, out_T, out_last)
        ctx.sizes = (width, height, tile_size, tile_width)
        ctx.dtypes = (means2d.dtype, conics.dtype, colors.dtype, opacities.dtype)
        alphas = torch.from_numpy(1.0 - out_T)[..., None]
        return torch.from_numpy(out_colors), alphas

    @staticmethod
    @once_differentiable
    def backward(ctx, v_render_colors, v_render_alphas):
        m, q, col, op = (_np32(t) for t in ctx.saved_tensors)
        sig_max, boxes, offsets, ids, order, out_T, out_last = ctx.arrays
        width, height, tile_size, tile_width = ctx.sizes
        C, N, D = col.shape
        if v_render_colors is None:
            v_render_colors = torch.zeros((C, height, width, D))
        if v_render_alphas is None:
            v_render_alphas = torch.zeros((C, height, width, 1))
        v_c = _np32(v_render_colors)
        v_a = np.ascontiguousarray(_np32(v_render_alphas)[..., 0])
        vm, vq, vcol, vop = _bwd_kernel(
            m,
            q,
            col,
            op,
            sig_max,
            boxes,
            offsets,
            ids,
            order,
            width,
            height,
            tile_size,
            tile_width,
            out_T,
            out_last,
            v_c,
            v_a,
        )
        dm, dq, dc, do = ctx.dtypes
        grads = [torch.from_numpy(g).to(dt) for g, dt in zip((vm, vq, vcol, vop), (dm, dq, dc, do))]
        return (*grads,) + (None,) * 7  # nothing for radii, binning and sizes


def rasterize_to_pixels_cpu(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile_size: int = _constants.TILE_SIZE,
) -> tuple[Tensor, Tensor, dict]:
    """Composite projected Gaussians on the CPU (differentiable, no background).

    Args:
        means2d: ``[C, N, 2]`` pixel positions.
        conics: ``[C, N, 3]`` upper triangle of the inverse 2D covariance.
        colors: ``[C, N, D]``.
        opacities: ``[C, N]`` in [0, 1].
        radii: ``[C, N, 2]`` int box half-sizes (``0`` = culled); not differentiated.
        depths: ``[C, N]`` sort keys; not differentiated.
        width, height, tile_size: image and tile size in pixels.

    Returns:
        ``colors [C, H, W, D]`` and ``alphas [C, H, W, 1]`` (float32, CPU) and a dict
        with the binning in gsplat's layout: ``isect_offsets [C, th, tw]`` int32,
        ``flatten_ids [n_isects]`` int32 (indices into ``C * N``), ``tile_width`` and
        ``tile_height``.
    """
    C, N = depths.shape
    tile_width, tile_height = tile_grid(width, height, tile_size)
    radii_np = radii.detach().to(torch.int32).contiguous().numpy()
    offsets, ids = bin_gaussians(_np32(means2d), radii_np, _np32(depths), tile_size, tile_width, tile_height)
    render_colors, render_alphas = RasterizeToPixelsCPU.apply(
        means2d, conics, colors, opacities, radii_np, offsets, ids, width, height, tile_size, tile_width
    )
    n_tiles = tile_width * tile_height
    cam_of_isect = np.repeat(np.arange(C, dtype=np.int64), np.diff(offsets[::n_tiles]))
    binning = {
        "isect_offsets": torch.from_numpy(offsets[:-1].astype(np.int32).reshape(C, tile_height, tile_width)),
        "flatten_ids": torch.from_numpy((cam_of_isect * N + ids).astype(np.int32)),
        "tile_width": tile_width,
        "tile_height": tile_height,
    }
    return render_colors, render_alphas, binning
