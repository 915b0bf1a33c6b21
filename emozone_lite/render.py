"""Differentiable rendering of 3D Gaussians (3D Gaussian Splatting).

:func:`rasterize` follows ``gsplat.rasterization`` (gsplat 1.5.3; non-packed, no
spherical harmonics, ``rasterize_mode="classic"``): same argument order,
conventions and return value. Three backends compute the same image:

* ``"gsplat"`` — gsplat's CUDA kernels (only when CUDA is available);
* ``"cpu"`` — numba kernels with analytic backward passes
  (:mod:`emozone_lite._render_cpu`): the projection (parallel over Gaussians; the
  torch version below is used instead when ``viewmats`` or ``Ks`` need gradients)
  and a tile-based rasterizer (parallel over tiles);
* ``"torch"`` — the short, readable pure-PyTorch twin below, used for teaching and
  as the tests' oracle; autograd provides its gradients.

The steps, for every camera:

1. **Project** (:func:`project_gaussians`): world → camera (``viewmats``), the 3D
   covariance ``R S Sᵀ Rᵀ`` → 2D through the Jacobian ``J`` of the pinhole
   projection (EWA splatting), add ``eps2d`` to the diagonal, invert it
   (``conics``), and cull what is behind the near plane, beyond the far plane or
   outside the image (``radii = 0``).
2. **Bin**: each Gaussian goes to the 16×16-pixel tiles its ``radii`` box touches,
   front to back by depth.
3. **Composite** per pixel (centre at ``+0.5``), front to back:
   ``alpha = min(0.999, opacity · exp(-sigma))`` with
   ``sigma = ½ dᵀ conic d``; skip when ``sigma < 0`` or ``alpha < 1/255``; the
   pixel stops before a Gaussian that would bring its transmittance ``T`` to
   ``≤ 1e-4``. ``colour = Σ cᵢ αᵢ Tᵢ``, ``alpha = 1 - T``; a background adds
   ``T · background``.

Conventions: quaternions ``wxyz`` (normalised here), linear scales, opacities in
[0, 1], ``viewmats`` world → camera (OpenCV: x right, y down, looking along +z),
``Ks = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
"""
from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = [
    "BACKENDS",
    "quat_to_rotmat",
    "covariances_3d",
    "project_gaussians",
    "rasterize",
    "render_image",
]

#: Accepted values of ``backend``.
BACKENDS = ("auto", "gsplat", "cpu", "torch")
#: A Gaussian is skipped at a pixel where its alpha is below this (gsplat's ALPHA_THRESHOLD).
ALPHA_THRESHOLD = 1.0 / 255.0
#: Alpha is clamped to this so ``1 - alpha`` never vanishes.
MAX_ALPHA = 0.999
#: A pixel stops before a Gaussian that would bring its transmittance to ``<= T_STOP``.
T_STOP = 1e-4
#: Half-size of a Gaussian's box in standard deviations (before the opacity-aware bound).
RADIUS_SIGMAS = 3.33


# --------------------------------------------------------------------------- projection
def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` (wxyz, normalised here)."""
    w, x, y, z = F.normalize(quats, p=2, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y**2 + z**2), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x**2 + z**2), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x**2 + y**2),
        ],
        dim=-1,
    )
    return R.reshape(quats.shape[:-1] + (3, 3))


def _rotmat_entries(quats: Tensor) -> list[list[Tensor]]:
    """:func:`quat_to_rotmat` as a 3×3 nested list of ``[N]`` tensors."""
    w, x, y, z = F.normalize(quats, p=2, dim=-1).unbind(-1)
    return [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]


def _matmul(a: list[list[Tensor]], b: list[list[Tensor]]) -> list[list[Tensor]]:
    """Product of small matrices whose entries are (broadcastable) tensors, one value per Gaussian."""
    out = []
    for row in a:
        out_row = []
        for j in range(len(b[0])):
            acc = row[0] * b[0][j]
            for k in range(1, len(b)):
                acc = acc + row[k] * b[k][j]
            out_row.append(acc)
        out.append(out_row)
    return out


def covariances_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space covariances ``Σ = R S Sᵀ Rᵀ``: ``[N, 3, 3]`` from quats ``[N, 4]``, scales ``[N, 3]``."""
    M = quat_to_rotmat(quats) * scales[..., None, :]  # R S
    return M @ M.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    opacities: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Project 3D Gaussians into C pinhole cameras (EWA splatting), differentiably.

    Equals gsplat's ``_fully_fused_projection`` (its pure-torch reference) when
    ``opacities`` is None. With ``opacities`` it does what ``gsplat.rasterization``
    asks of its CUDA projection: Gaussians with opacity ``< 1/255`` are culled and
    the box shrinks to where ``alpha`` can still reach ``1/255``
    (``extent = min(3.33, sqrt(2 ln(255 · opacity)))`` standard deviations).

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
    # Small matrices are written as nested lists of [C, N] tensors (one entry per
    # Gaussian): batched 3×3 matmuls are slow on the CPU, elementwise ops are not.
    W = [[viewmats[:, i, k, None] for k in range(3)] for i in range(3)]  # world → camera rotation, [C, 1]
    means_c = viewmats[:, :3, :3] @ means.T + viewmats[:, :3, 3:]  # [C, 3, N]
    x, y, z = means_c.unbind(1)  # [C, N]
    in_depth = (z > near_plane) & (z < far_plane)
    z = torch.where(in_depth, z, torch.ones_like(z))  # culled entries stay finite: no NaN gradients

    # Jacobian J of the pinhole projection at the mean (2×3, two entries are 0); x/z
    # is clamped to a little beyond the field of view so J stays sane off-screen.
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    tx = z * torch.clamp(x / z, min=-(cx / fx + 0.3 * tan_fovx), max=(width - cx) / fx + 0.3 * tan_fovx)
    ty = z * torch.clamp(y / z, min=-(cy / fy + 0.3 * tan_fovy), max=(height - cy) / fy + 0.3 * tan_fovy)
    rz = 1.0 / z
    j00, j02 = fx * rz, -fx * tx * rz * rz
    j11, j12 = fy * rz, -fy * ty * rz * rz
    JW = [[j00 * W[0][k] + j02 * W[2][k] for k in range(3)],  # J · W, skipping J's zeros
          [j11 * W[1][k] + j12 * W[2][k] for k in range(3)]]

    # EWA splatting: Σ_2D = J W Σ Wᵀ Jᵀ with the world covariance Σ = (R S)(R S)ᵀ,
    # i.e. Σ_2D = A Aᵀ with A = J W R S.
    R = _rotmat_entries(quats)
    RS = [[R[k][j] * scales[:, j] for j in range(3)] for k in range(3)]  # R with column j scaled by s_j
    A = _matmul(JW, RS)  # 2×3 of [C, N]
    s00 = A[0][0] * A[0][0] + A[0][1] * A[0][1] + A[0][2] * A[0][2] + eps2d  # + eps2d: blur of ~a pixel
    s01 = A[0][0] * A[1][0] + A[0][1] * A[1][1] + A[0][2] * A[1][2]
    s11 = A[1][0] * A[1][0] + A[1][1] * A[1][1] + A[1][2] * A[1][2] + eps2d
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)  # [C, N, 2]

    # invert: conic = (a, b, c), the upper triangle of Σ_2D⁻¹
    det_raw = s00 * s11 - s01 * s01
    det = det_raw.clamp(min=1e-10)
    conics = torch.stack([s11 / det, -s01 / det, s00 / det], -1)  # [C, N, 3]

    with torch.no_grad():  # the box (radii) is not differentiable
        extent = torch.full_like(det, RADIUS_SIGMAS)
        valid = in_depth & (det_raw > 0)
        if opacities is not None:
            op = opacities.detach().to(det.dtype)[None, :].expand(C, N)
            valid &= op >= ALPHA_THRESHOLD
            extent = torch.minimum(extent, torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)))
        r = torch.stack([torch.ceil(extent * torch.sqrt(s00.clamp_min(0))),
                         torch.ceil(extent * torch.sqrt(s11.clamp_min(0)))], -1)  # [C, N, 2]
        m = means2d.detach()
        valid &= (r[..., 0] > 0) | (r[..., 1] > 0)
        valid &= (m[..., 0] + r[..., 0] > 0) & (m[..., 0] - r[..., 0] < width)  # overlaps the image
        valid &= (m[..., 1] + r[..., 1] > 0) & (m[..., 1] - r[..., 1] < height)
        radii = torch.where(valid[..., None], r, torch.zeros_like(r)).to(torch.int32)

    means2d = torch.where(valid[..., None], means2d, torch.zeros_like(means2d))
    conics = torch.where(valid[..., None], conics, torch.zeros_like(conics))
    return radii, means2d, means_c[:, 2], conics


# --------------------------------------------------------------------------- torch twin
def _tile_ranges(means2d: Tensor, radii: Tensor, tile_size: int, tile_width: int, tile_height: int
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


def _composite_pixels(pixels: Tensor, means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor
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


def _rasterize_pixels_torch(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, radii: Tensor,
                            depths: Tensor, width: int, height: int, tile_size: int = 16) -> tuple[Tensor, Tensor]:
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
    tile_width, tile_height = math.ceil(width / tile_size), math.ceil(height / tile_size)
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
                ys, xs = torch.meshgrid(torch.arange(y0, y1, device=means2d.device, dtype=means2d.dtype) + 0.5,
                                        torch.arange(x0, x1, device=means2d.device, dtype=means2d.dtype) + 0.5,
                                        indexing="ij")
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


# --------------------------------------------------------------------------- checks
def _shape_error(name: str, expected: str, t: Tensor, hint: str = "") -> ValueError:
    return ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}{hint}")


def _as_positive_int(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v}")
    return v


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds, backend,
                  tile_size):
    tensors = dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                   viewmats=viewmats, Ks=Ks)
    if backgrounds is not None:
        tensors["backgrounds"] = backgrounds
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    width = _as_positive_int(width, "width")
    height = _as_positive_int(height, "height")
    tile_size = _as_positive_int(tile_size, "tile_size")
    if means.ndim != 2 or means.shape[1] != 3:
        raise _shape_error("means", "[N, 3]", means)
    N = means.shape[0]
    if quats.shape != (N, 4):
        raise _shape_error("quats", f"[N, 4] with N = {N} (from means)", quats)
    if scales.shape != (N, 3):
        raise _shape_error("scales", f"[N, 3] with N = {N} (from means)", scales)
    if opacities.shape != (N,):
        hint = "; squeeze a trailing 1" if opacities.shape == (N, 1) else ""
        raise _shape_error("opacities", f"[N] with N = {N} (from means)", opacities, hint)
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        hint = "; add a camera axis with viewmats[None]" if viewmats.shape == (4, 4) else ""
        raise _shape_error("viewmats", "[C, 4, 4]", viewmats, hint)
    C = viewmats.shape[0]
    if C == 0:
        raise ValueError("viewmats holds no camera (C = 0); pass at least one")
    if Ks.shape != (C, 3, 3):
        hint = "; add a camera axis with Ks[None]" if Ks.shape == (3, 3) else ""
        raise _shape_error("Ks", f"[C, 3, 3] with C = {C} (from viewmats)", Ks, hint)
    if not ((colors.ndim == 2 and colors.shape[0] == N) or (colors.ndim == 3 and colors.shape[:2] == (C, N))):
        raise _shape_error("colors", f"[N, D] or [C, N, D] with C = {C}, N = {N}", colors)
    D = colors.shape[-1]
    if D == 0:
        raise ValueError("colors has no channels (D = 0); expected [N, D] with D >= 1")
    if backgrounds is not None and backgrounds.shape not in ((C, D), (D,)):
        raise _shape_error("backgrounds", f"[C, D] (or [D]) with C = {C}, D = {D}", backgrounds)
    devices = {t.device for t in tensors.values()}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    if not bool(torch.isfinite(means).all()):
        raise ValueError("means contains NaN or inf; check the optimiser (learning rate) or the input data")
    if not bool(torch.isfinite(viewmats).all()):
        raise ValueError("viewmats contains NaN or inf; expected finite world → camera matrices")
    if not bool(torch.isfinite(Ks).all()):
        raise ValueError("Ks contains NaN or inf; expected finite intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
    if bool((Ks[:, 0, 0] == 0).any()) or bool((Ks[:, 1, 1] == 0).any()):
        raise ValueError("Ks has a zero focal length (fx or fy); expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
    return C, N, D, width, height, tile_size


def _resolve_backend(backend: str, device: torch.device) -> str:
    cuda = torch.cuda.is_available()
    if backend == "auto":
        return "gsplat" if (cuda and device.type == "cuda") else "cpu"
    if backend == "gsplat":
        if not cuda:
            raise RuntimeError("backend='gsplat' needs CUDA, which is not available here; "
                               "use backend='cpu' (or 'auto')")
        if device.type != "cuda":
            raise ValueError("backend='gsplat' needs CUDA tensors; move the inputs with .cuda() or use backend='cpu'")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' needs CPU tensors, got {device}; move them with .cpu() "
                         "or use backend='gsplat' / 'auto'")
    return backend


# --------------------------------------------------------------------------- public API
def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    backend: str = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backgrounds: Tensor | None = None,
    tile_size: int = 16,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Render N 3D Gaussians into C cameras, differentiably (like ``gsplat.rasterization``).

    Args:
        means: ``[N, 3]`` centres in world space.
        quats: ``[N, 4]`` rotations, wxyz (normalised here).
        scales: ``[N, 3]`` linear scales (standard deviations).
        opacities: ``[N]`` in [0, 1].
        colors: ``[N, D]`` or per-camera ``[C, N, D]``, any number of channels D.
        viewmats: ``[C, 4, 4]`` world → camera (OpenCV axes).
        Ks: ``[C, 3, 3]`` intrinsics.
        width, height: image size in pixels.
        backend: ``"auto"`` (gsplat for CUDA tensors when CUDA is available, else
            ``"cpu"``), ``"gsplat"``, ``"cpu"`` or ``"torch"``.
        near_plane, far_plane: depth range kept.
        eps2d: blur added to each 2D covariance.
        backgrounds: optional ``[C, D]`` (or ``[D]``) colour behind the Gaussians.
        tile_size: tile edge in pixels.

    Returns:
        ``render_colors [C, H, W, D]``, ``render_alphas [C, H, W, 1]`` and ``meta``:
        ``radii [C, N, 2]`` int32 (0 = culled), ``means2d [C, N, 2]``,
        ``depths [C, N]``, ``conics [C, N, 3]``, ``opacities [C, N]``, ``width``,
        ``height``, ``tile_size``, ``tile_width``, ``tile_height``, ``n_cameras``,
        ``backend``; the cpu and gsplat backends add the tile binning
        (``isect_offsets``, ``flatten_ids``). ``meta["means2d"]`` is part of the
        graph: call ``.retain_grad()`` on it for screen-space gradients.

    Raises:
        ValueError: wrong shapes, mismatched N or C, non-finite means / viewmats /
            Ks, non-positive width / height, an unknown backend, or tensors on a
            device the backend cannot use.
        RuntimeError: ``backend="gsplat"`` without CUDA.

    Examples:
        >>> from emozone_lite.camera import Camera
        >>> cam = Camera.orbit(width=33, height=33)  # looks at HEAD_TARGET, centre of pixel (16, 16)
        >>> means = torch.tensor([[0.0, -0.05, 0.25]])
        >>> img, alpha, meta = rasterize(means, torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1),
        ...     torch.ones(1), torch.ones(1, 3), cam.viewmat[None], cam.K[None], 33, 33, backend="torch")
        >>> img.shape, alpha.shape, round(float(alpha[0, 16, 16, 0]), 3), meta["radii"].tolist()
        (torch.Size([1, 33, 33, 3]), torch.Size([1, 33, 33, 1]), 0.999, [[[6, 6]]])
    """
    C, N, D, width, height, tile_size = _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width,
                                                      height, backgrounds, backend, tile_size)
    backend = _resolve_backend(backend, means.device)
    if backgrounds is not None and backgrounds.ndim == 1:
        backgrounds = backgrounds[None].expand(C, D)
    if backend == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                 near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, backgrounds=backgrounds,
                                 tile_size=tile_size)

    dtype = means.dtype
    viewmats, Ks = viewmats.to(dtype), Ks.to(dtype)
    project = project_gaussians
    if backend == "cpu" and not (viewmats.requires_grad or Ks.requires_grad):
        from ._render_cpu import project_gaussians_cpu as project  # its numba twin (no camera gradients)
    radii, means2d, depths, conics = project(means, quats, scales, viewmats, Ks, width, height, eps2d=eps2d,
                                             near_plane=near_plane, far_plane=far_plane, opacities=opacities)
    opacities_c = opacities[None, :].expand(C, N)  # [C, N]
    colors_c = colors[None].expand(C, N, D) if colors.ndim == 2 else colors  # [C, N, D]
    tile_width, tile_height = math.ceil(width / tile_size), math.ceil(height / tile_size)
    meta: dict[str, Any] = {}
    if backend == "cpu":
        from ._render_cpu import rasterize_to_pixels_cpu  # numba: imported only when used

        render_colors, render_alphas, binning = rasterize_to_pixels_cpu(
            means2d, conics, colors_c, opacities_c, radii, depths, width, height, tile_size)
        render_colors, render_alphas = render_colors.to(dtype), render_alphas.to(dtype)
        meta.update(isect_offsets=binning["isect_offsets"], flatten_ids=binning["flatten_ids"])
    else:
        render_colors, render_alphas = _rasterize_pixels_torch(means2d, conics, colors_c, opacities_c, radii, depths,
                                                               width, height, tile_size)
    if backgrounds is not None:
        render_colors = render_colors + (1 - render_alphas) * backgrounds.to(dtype)[:, None, None, :]
    meta.update(radii=radii, means2d=means2d, depths=depths, conics=conics, opacities=opacities_c, width=width,
                height=height, tile_size=tile_size, tile_width=tile_width, tile_height=tile_height, n_cameras=C,
                backend=backend)
    return render_colors, render_alphas, meta


def _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *, near_plane, far_plane,
                      eps2d, backgrounds, tile_size):
    """gsplat's CUDA rasterizer with the same arguments (imported here so CPU never builds it)."""
    import gsplat

    render_colors, render_alphas, meta = gsplat.rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
        far_plane=far_plane, eps2d=eps2d, packed=False, tile_size=tile_size, backgrounds=backgrounds,
        rasterize_mode="classic")
    meta["backend"] = "gsplat"
    return render_colors, render_alphas, meta


def render_image(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, camera,
                 background=None, backend: str = "auto") -> Tensor:
    """Render one view ``[H, W, D]`` for an :class:`emozone_lite.camera.Camera`.

    Args:
        means, quats, scales, opacities, colors: the Gaussians (``[N, 3]``,
            ``[N, 4]``, ``[N, 3]``, ``[N]``, ``[N, D]``).
        camera: a ``Camera`` (``viewmat [4, 4]``, ``K [3, 3]``, ``width``, ``height``).
        background: optional colour ``[D]`` (tensor, sequence or float).
        backend: as in :func:`rasterize`.

    Examples:
        >>> from emozone_lite.camera import Camera
        >>> img = render_image(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0),
        ...                    torch.zeros(0, 3), Camera.orbit(width=8, height=6), background=[1.0, 1.0, 1.0])
        >>> img.shape, float(img.min())
        (torch.Size([6, 8, 3]), 1.0)
    """
    for attr in ("viewmat", "K", "width", "height"):
        if not hasattr(camera, attr):
            raise ValueError(f"camera must be an emozone_lite.camera.Camera (missing .{attr}), got {type(camera)}")
    bg = None
    if background is not None:
        D = colors.shape[-1] if colors.ndim >= 1 else 1
        bg = torch.as_tensor(background, dtype=means.dtype, device=means.device).reshape(-1)
        if bg.numel() == 1:
            bg = bg.expand(D)
        bg = bg[None]
    viewmat = camera.viewmat.to(device=means.device, dtype=means.dtype)[None]
    K = camera.K.to(device=means.device, dtype=means.dtype)[None]
    img, _, _ = rasterize(means, quats, scales, opacities, colors, viewmat, K, camera.width, camera.height,
                          backend=backend, backgrounds=bg)
    return img[0]
