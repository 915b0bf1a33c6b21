"""The readable pure-PyTorch renderer: the ``"torch"`` backend and the tests' oracle.

Each function here has a fast numba twin in :mod:`emozone_lite.render._cpu`, and the
tests hold the twin to it (values and gradients):

* :func:`project_gaussians` — EWA projection, written like gsplat 1.5.3's
  ``_fully_fused_projection`` (``gsplat/cuda/_torch_impl.py``): batched
  ``Σ2D = J W Σ Wᵀ Jᵀ``;
* :func:`_rasterize_pixels_torch` — tile binning (:func:`_tile_ranges`) and
  front-to-back compositing (:func:`_composite_pixels`), one tile at a time.

Autograd provides every gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..geometry import quat_to_rotmat
from ._constants import (
    ALPHA_THRESHOLD,
    EPS2D,
    FAR_PLANE,
    FOV_MARGIN,
    MAX_ALPHA,
    NEAR_PLANE,
    RADIUS_SIGMAS,
    T_STOP,
    TILE_SIZE,
    tile_grid,
)

__all__ = ["covariances_3d", "project_gaussians"]


# --------------------------------------------------------------------------- projection
def covariances_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space covariances ``Σ = R S Sᵀ Rᵀ``: ``[N, 3, 3]`` from quats ``[N, 4]``, scales ``[N, 3]``."""
    RS = quat_to_rotmat(quats) * scales[..., None, :]  # R S: column j of R scaled by s_j
    return RS @ RS.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = EPS2D,
    near_plane: float = NEAR_PLANE,
    far_plane: float = FAR_PLANE,
    opacities: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Project 3D Gaussians into C pinhole cameras (EWA splatting), differentiably.

    Equals gsplat's ``_fully_fused_projection`` (its pure-torch reference) when
    ``opacities`` is None. With ``opacities`` it does what ``gsplat.rasterization``
    asks of its CUDA projection: Gaussians with opacity ``< 1/255`` are culled and
    the box shrinks to where ``alpha`` can still reach ``1/255``
    (``extent = min(3.33, sqrt(2 ln(255 · opacity)))`` standard deviations).

    It computes in the inputs' dtype; give all float inputs the same one
    (:func:`emozone_lite.render.rasterize` casts them to the dtype of ``means``).

    Args:
        means: ``[N, 3]`` centres in world space.
        quats: ``[N, 4]`` rotations, wxyz (normalised here).
        scales: ``[N, 3]`` linear standard deviations along the Gaussian's axes.
        viewmats: ``[C, 4, 4]`` world → camera.
        Ks: ``[C, 3, 3]`` intrinsics.
        width, height: image size in pixels.
        eps2d: added to the diagonal of each 2D covariance (a pixel-sized blur).
        near_plane, far_plane: depth range kept.
        opacities: optional ``[N]``; tightens ``radii`` as described above.

    Returns:
        ``radii [C, N, 2]`` int32 half-sizes of the screen-space box in pixels
        (``0`` = culled), ``means2d [C, N, 2]`` pixel positions, ``depths [C, N]``
        camera-space z, ``conics [C, N, 3]`` the upper triangle ``(a, b, c)`` of the
        inverse 2D covariance. ``means2d`` and ``conics`` of culled Gaussians are 0.

    Examples:
        >>> from emozone_lite.camera import Camera
        >>> cam = Camera.orbit(width=64, height=64)
        >>> means = torch.tensor([[0.0, -0.05, 0.25]])  # the orbit target: image centre
        >>> radii, means2d, depths, conics = project_gaussians(
        ...     means, torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.05),
        ...     cam.viewmat[None], cam.K[None], 64, 64)
        >>> means2d.round().tolist(), depths.tolist()
        ([[[32.0, 32.0]]], [[4.0]])
    """
    C, N = viewmats.shape[0], means.shape[0]
    # 1. world → camera: p_c = W p + t
    W, t = viewmats[:, :3, :3], viewmats[:, :3, 3]  # [C, 3, 3], [C, 3]
    means_c = torch.einsum("cij,nj->cni", W, means) + t[:, None, :]  # [C, N, 3]
    x, y, z = means_c.unbind(-1)  # [C, N]
    in_depth = (z > near_plane) & (z < far_plane)
    z = torch.where(in_depth, z, torch.ones_like(z))  # culled entries stay finite: no NaN gradients

    # 2. the Jacobian J of (u, v) = (fx x/z + cx, fy y/z + cy) at the mean; x/z and y/z are
    #    clamped to 1.3× the field of view so J stays sane for Gaussians far off-screen
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x = (-(cx / fx + FOV_MARGIN * tan_fovx), (width - cx) / fx + FOV_MARGIN * tan_fovx)
    lim_y = (-(cy / fy + FOV_MARGIN * tan_fovy), (height - cy) / fy + FOV_MARGIN * tan_fovy)
    tx, ty = z * torch.clamp(x / z, *lim_x), z * torch.clamp(y / z, *lim_y)
    O = torch.zeros_like(z)
    J = torch.stack([fx / z, O, -fx * tx / z**2, O, fy / z, -fy * ty / z**2], -1).reshape(C, N, 2, 3)

    # 3. EWA splatting: Σ2D = J W Σ Wᵀ Jᵀ with Σ = R S Sᵀ Rᵀ, plus eps2d I (a blur of about a pixel)
    JW = J @ W[:, None]  # [C, N, 2, 3]
    covars2d = JW @ covariances_3d(quats, scales) @ JW.transpose(-1, -2)  # [C, N, 2, 2]
    covars2d = covars2d + eps2d * torch.eye(2, dtype=covars2d.dtype, device=covars2d.device)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)  # [C, N, 2]

    # 4. invert: conic = (a, b, c), the upper triangle of Σ2D⁻¹
    s00, s01, s11 = covars2d[..., 0, 0], covars2d[..., 0, 1], covars2d[..., 1, 1]
    det_raw = s00 * s11 - s01 * s01
    det = det_raw.clamp(min=1e-10)
    conics = torch.stack([s11 / det, -s01 / det, s00 / det], -1)  # [C, N, 3]

    # 5. the screen-space box and culling (not differentiable)
    with torch.no_grad():
        extent = torch.full_like(det, RADIUS_SIGMAS)
        valid = in_depth & (det_raw > 0)
        if opacities is not None:
            op = opacities.detach().to(det.dtype)[None, :].expand(C, N)
            valid &= op >= ALPHA_THRESHOLD
            extent = torch.minimum(extent, torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)))
        r = torch.ceil(extent[..., None] * torch.stack([s00, s11], -1).clamp_min(0).sqrt())  # [C, N, 2]
        m = means2d.detach()
        valid &= (r[..., 0] > 0) | (r[..., 1] > 0)
        valid &= (m[..., 0] + r[..., 0] > 0) & (m[..., 0] - r[..., 0] < width)  # overlaps the image
        valid &= (m[..., 1] + r[..., 1] > 0) & (m[..., 1] - r[..., 1] < height)
        radii = torch.where(valid[..., None], r, torch.zeros_like(r)).to(torch.int32)

    means2d = torch.where(valid[..., None], means2d, torch.zeros_like(means2d))
    conics = torch.where(valid[..., None], conics, torch.zeros_like(conics))
    return radii, means2d, means_c[..., 2], conics


# --------------------------------------------------------------------------- rasterization
def _tile_ranges(
    means2d: Tensor, radii: Tensor, tile_size: int, tile_width: int, tile_height: int
) -> tuple[Tensor, Tensor]:
    """Tiles touched by each Gaussian's box, like gsplat's ``isect_tiles``.

    Returns ``tile_min, tile_max [C, N, 2]`` (x, y; max exclusive); culled → empty.
    """
    m = means2d.detach() / tile_size
    r = radii.to(m.dtype) / tile_size
    limit = torch.tensor([tile_width, tile_height], device=m.device)
    tile_min = torch.minimum(torch.floor(m - r).clamp_min(0).long(), limit)
    tile_max = torch.minimum(torch.ceil(m + r).clamp_min(0).long(), limit)
    tile_max = torch.where((radii > 0).all(-1, keepdim=True), tile_max, tile_min)
    return tile_min, tile_max


def _composite_pixels(
    pixels: Tensor, means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor
) -> tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of G depth-sorted Gaussians at P pixels.

    Args:
        pixels: ``[P, 2]`` pixel centres (x, y).
        means2d: ``[G, 2]``, conics ``[G, 3]``, opacities ``[G]``, colors ``[G, D]``,
            sorted front to back.

    Returns:
        ``colors [P, D]`` (no background) and the final transmittance ``T [P]``.
    """
    dx = means2d[:, 0] - pixels[:, 0:1]  # [P, G]
    dy = means2d[:, 1] - pixels[:, 1:2]
    a, b, c = conics.unbind(-1)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy  # Mahalanobis distance / 2
    # (sigma < 0 only happens for conics that are not positive definite; such pixels
    # are skipped below, and clamping first keeps exp finite so no NaN gradient leaks)
    alpha = torch.clamp_max(opacities * torch.exp(-sigma.clamp_min(0)), MAX_ALPHA)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
    T_behind = torch.cumprod(1 - alpha, dim=1)  # transmittance behind each Gaussian
    keep = T_behind > T_STOP  # stop *before* the Gaussian that makes the pixel opaque
    T_front = torch.cat([torch.ones_like(T_behind[:, :1]), T_behind[:, :-1]], dim=1)
    weights = torch.where(keep, alpha * T_front, torch.zeros_like(alpha))  # [P, G]
    T_final = torch.where(keep, 1 - alpha, torch.ones_like(alpha)).prod(dim=1)
    return weights @ colors, T_final


def _rasterize_pixels_torch(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile_size: int = TILE_SIZE,
) -> tuple[Tensor, Tensor]:
    """Readable twin of the CPU rasterizer: one tile at a time, autograd for gradients.

    Args:
        means2d: ``[C, N, 2]``, conics ``[C, N, 3]``, colors ``[C, N, D]``,
            opacities ``[C, N]``, radii ``[C, N, 2]``, depths ``[C, N]`` from
            :func:`project_gaussians`.

    Returns:
        ``colors [C, H, W, D]`` (no background), ``alphas [C, H, W, 1]``.

    Memory stays bounded: each tile sees only the Gaussians whose box touches it,
    and with gradients on, each tile is checkpointed (recomputed in backward).
    """
    C, N, D = colors.shape
    tile_width, tile_height = tile_grid(width, height, tile_size)
    tile_min, tile_max = _tile_ranges(means2d, radii, tile_size, tile_width, tile_height)
    use_checkpoint = torch.is_grad_enabled() and any(t.requires_grad for t in (means2d, conics, colors, opacities))
    images, alphas = [], []
    for cam in range(C):
        order = torch.sort(depths[cam].detach(), stable=True).indices  # front to back
        lo, hi = tile_min[cam, order], tile_max[cam, order]
        rows_c, rows_a = [], []
        for ty in range(tile_height):
            tiles_c, tiles_a = [], []
            y0, y1 = ty * tile_size, min((ty + 1) * tile_size, height)
            for tx in range(tile_width):
                x0, x1 = tx * tile_size, min((tx + 1) * tile_size, width)
                hit = (lo[:, 0] <= tx) & (tx < hi[:, 0]) & (lo[:, 1] <= ty) & (ty < hi[:, 1])
                ids = order[hit]  # this tile's Gaussians, front to back
                ys, xs = torch.meshgrid(
                    torch.arange(y0, y1, device=means2d.device, dtype=means2d.dtype) + 0.5,
                    torch.arange(x0, x1, device=means2d.device, dtype=means2d.dtype) + 0.5,
                    indexing="ij",
                )
                pixels = torch.stack([xs, ys], -1).reshape(-1, 2)  # [P, 2] row-major
                args = (pixels, means2d[cam, ids], conics[cam, ids], opacities[cam, ids], colors[cam, ids])
                if use_checkpoint and len(ids) > 0:
                    col, T = checkpoint(_composite_pixels, *args, use_reentrant=False)
                else:
                    col, T = _composite_pixels(*args)
                tiles_c.append(col.reshape(y1 - y0, x1 - x0, D))
                tiles_a.append((1 - T).reshape(y1 - y0, x1 - x0, 1))
            rows_c.append(torch.cat(tiles_c, dim=1))
            rows_a.append(torch.cat(tiles_a, dim=1))
        images.append(torch.cat(rows_c, dim=0))
        alphas.append(torch.cat(rows_a, dim=0))
    return torch.stack(images), torch.stack(alphas)
