"""Differentiable rendering of 3D Gaussians (3D Gaussian Splatting).

:func:`rasterize` follows ``gsplat.rasterization`` (gsplat 1.5.3; non-packed,
``rasterize_mode="classic"``, spherical harmonics up to degree 3 through ``sh_degree``
(:mod:`~emozone_lite.render._sh`)): same argument order,
conventions and return value. Three backends compute the same image:

* ``"gsplat"`` — gsplat's CUDA kernels (only when CUDA is available;
  :mod:`emozone_lite.render._gsplat`);
* ``"cpu"`` — numba kernels with analytic backward passes
  (:mod:`emozone_lite.render._cpu`): the projection (parallel over Gaussians; the
  torch version is used instead when ``viewmats`` or ``Ks`` need gradients)
  and a tile-based rasterizer (parallel over tiles);
* ``"torch"`` — the short, readable pure-PyTorch twin
  (:mod:`emozone_lite.render._torch`), used for teaching and as the tests' oracle;
  autograd provides its gradients.

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

The package: this file (the public API and its input checks), ``_constants``
(thresholds, defaults and the tile grid, shared by every backend), ``_torch`` (the
readable twin), ``_cpu`` (numba; imported only when the cpu backend runs) and
``_gsplat`` (gsplat is imported only with CUDA).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..checks import as_positive_int, check_finite, check_shape, shape_error
from ..geometry import quat_to_rotmat
from ._constants import (
    ALPHA_THRESHOLD,
    BACKENDS,
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
from ._gsplat import rasterize_gsplat
from ._sh import MAX_SH_DEGREE, eval_sh, num_sh_bases, rgb_to_sh, sh_colors, sh_to_rgb
from ._torch import _rasterize_pixels_torch, covariances_3d, project_gaussians

__all__ = [
    "BACKENDS",
    "ALPHA_THRESHOLD",
    "MAX_ALPHA",
    "T_STOP",
    "RADIUS_SIGMAS",
    "FOV_MARGIN",
    "EPS2D",
    "NEAR_PLANE",
    "FAR_PLANE",
    "TILE_SIZE",
    "tile_grid",
    "quat_to_rotmat",
    "covariances_3d",
    "project_gaussians",
    "rasterize",
    "render_image",
    "MAX_SH_DEGREE",
    "eval_sh",
    "num_sh_bases",
    "rgb_to_sh",
    "sh_colors",
    "sh_to_rgb",
]

#: What to do about a NaN / inf, per input of :func:`rasterize`.
_FINITE_HINTS = {
    "means": "check the optimiser (learning rate) or the input data",
    "quats": "expected finite wxyz quaternions",
    "scales": "expected finite linear scales (e.g. exp of log-scales)",
    "opacities": "expected opacities in [0, 1] (e.g. sigmoid of logits)",
    "colors": "expected finite colours",
    "viewmats": "expected finite world → camera matrices",
    "Ks": "expected finite intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]",
    "backgrounds": "expected a finite colour per camera",
}


# --------------------------------------------------------------------------- checks
def _check_inputs(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds, backend, tile_size
):
    tensors = dict(
        means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, viewmats=viewmats, Ks=Ks
    )
    if backgrounds is not None:
        tensors["backgrounds"] = backgrounds
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    width = as_positive_int(width, "width")
    height = as_positive_int(height, "height")
    tile_size = as_positive_int(tile_size, "tile_size")
    N = check_shape(means, "means", ("N", 3))["N"]
    check_shape(quats, "quats", ("N", 4), "; N is set by means", N=N)
    check_shape(scales, "scales", ("N", 3), "; N is set by means", N=N)
    check_shape(opacities, "opacities", ("N",), "; squeeze a trailing 1" if opacities.shape == (N, 1) else "", N=N)
    C = check_shape(
        viewmats, "viewmats", ("C", 4, 4), "; add a camera axis with viewmats[None]" if viewmats.shape == (4, 4) else ""
    )["C"]
    if C == 0:
        raise ValueError("viewmats holds no camera (C = 0); pass at least one")
    check_shape(Ks, "Ks", ("C", 3, 3), "; add a camera axis with Ks[None]" if Ks.shape == (3, 3) else "", C=C)
    if not ((colors.ndim == 2 and colors.shape[0] == N) or (colors.ndim == 3 and colors.shape[:2] == (C, N))):
        raise shape_error("colors", f"[N, D] or [C, N, D] with C = {C}, N = {N}", colors.shape)
    D = colors.shape[-1]
    if D == 0:
        raise ValueError("colors has no channels (D = 0); expected [N, D] with D >= 1")
    if backgrounds is not None and backgrounds.shape not in ((C, D), (D,)):
        raise shape_error("backgrounds", f"[C, D] (or [D]) with C = {C}, D = {D}", backgrounds.shape)
    devices = {t.device for t in tensors.values()}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    for name, t in tensors.items():
        check_finite(t, name, _FINITE_HINTS[name])
    if bool((Ks[:, 0, 0] == 0).any()) or bool((Ks[:, 1, 1] == 0).any()):
        raise ValueError("Ks has a zero focal length (fx or fy); expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
    return C, N, D, width, height, tile_size


def _sh_to_colors(sh_degree, coeffs, means, viewmats) -> Tensor:
    k = num_sh_bases(sh_degree)
    for name, t in (("colors", coeffs), ("means", means), ("viewmats", viewmats)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point torch.Tensor")
    N, C = means.shape[0], viewmats.shape[0]
    ok = (coeffs.ndim == 3 and coeffs.shape[0] == N) or (coeffs.ndim == 4 and coeffs.shape[:2] == (C, N))
    if not ok or coeffs.shape[-2] < k or means.shape != (N, 3) or viewmats.shape[1:] != (4, 4):
        raise shape_error(
            "colors", f"SH coefficients [N, K, D] or [C, N, K, D] with N = {N}, C = {C}, K >= {k} "
            f"(sh_degree={sh_degree}); means [N, 3], viewmats [C, 4, 4]", coeffs.shape
        )  # fmt: skip
    return sh_colors(sh_degree, coeffs, means, viewmats.to(means.dtype))


def _resolve_backend(backend: str, device: torch.device) -> str:
    cuda = torch.cuda.is_available()
    if backend == "auto":
        return "gsplat" if (cuda and device.type == "cuda") else "cpu"
    if backend == "gsplat":
        if not cuda:
            raise RuntimeError(
                "backend='gsplat' needs CUDA, which is not available here; use backend='cpu' (or 'auto')"
            )
        if device.type != "cuda":
            raise ValueError("backend='gsplat' needs CUDA tensors; move the inputs with .cuda() or use backend='cpu'")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(
            f"backend='cpu' needs CPU tensors, got {device}; move them with .cpu() or use backend='gsplat' / 'auto'"
        )
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
    near_plane: float = NEAR_PLANE,
    far_plane: float = FAR_PLANE,
    eps2d: float = EPS2D,
    backgrounds: Tensor | None = None,
    tile_size: int = TILE_SIZE,
    sh_degree: int | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Render N 3D Gaussians into C cameras, differentiably (like ``gsplat.rasterization``).

    Dtypes (float32 or float64): with the ``"cpu"`` and ``"torch"`` backends every
    float input is cast to the dtype of ``means``, and the images, the alphas and the
    float entries of ``meta`` have that dtype (gradients come back in each input's
    own dtype).

    * ``"torch"`` computes in that dtype: float64 inputs give a float64 render.
    * ``"cpu"`` projects in float64 for any input dtype and composites in float32:
      float64 inputs give the float32 render cast to float64, equal to the float32
      inputs' render when the inputs hold the same values (float32 accuracy).
    * ``"gsplat"`` passes the inputs to gsplat unchanged; its CUDA kernels are
      float32.

    Args:
        means: ``[N, 3]`` centres in world space.
        quats: ``[N, 4]`` rotations, wxyz (normalised here).
        scales: ``[N, 3]`` linear scales (standard deviations).
        opacities: ``[N]`` in [0, 1].
        colors: ``[N, D]`` or per-camera ``[C, N, D]``, any number of channels D; with
            ``sh_degree``: SH coefficients ``[N, K, D]`` (or ``[C, N, K, D]``),
            ``K ≥ (sh_degree + 1)²``.
        viewmats: ``[C, 4, 4]`` world → camera (OpenCV axes).
        Ks: ``[C, 3, 3]`` intrinsics.
        width, height: image size in pixels.
        backend: ``"auto"`` (gsplat for CUDA tensors when CUDA is available, else
            ``"cpu"``), ``"gsplat"``, ``"cpu"`` or ``"torch"``.
        near_plane, far_plane: depth range kept.
        eps2d: blur added to each 2D covariance.
        backgrounds: optional ``[C, D]`` (or ``[D]``) colour behind the Gaussians.
        tile_size: tile edge in pixels.
        sh_degree: ``None`` (``colors`` are colours) or 0…3: ``colors`` are spherical-harmonic
            coefficients, evaluated for each camera's view direction as gsplat does
            (:func:`~emozone_lite.render.sh_colors`: ``max(0, Σ c_k Y_k(d̂) + 0.5)``,
            ``d`` from the camera centre to the mean). The evaluation is torch code shared by
            every backend, so the three backends see the same per-camera colours.

    Returns:
        ``render_colors [C, H, W, D]``, ``render_alphas [C, H, W, 1]`` and ``meta``:
        ``radii [C, N, 2]`` int32 (0 = culled), ``means2d [C, N, 2]``,
        ``depths [C, N]``, ``conics [C, N, 3]``, ``opacities [C, N]``, ``width``,
        ``height``, ``tile_size``, ``tile_width``, ``tile_height``, ``n_cameras``,
        ``backend``; the cpu and gsplat backends add the tile binning
        (``isect_offsets``, ``flatten_ids``). ``meta["means2d"]`` is part of the
        graph: call ``.retain_grad()`` on it for screen-space gradients.

    Raises:
        ValueError: wrong shapes, mismatched N or C, a NaN or inf in any float input
            (the message names it), a zero focal length, non-positive width /
            height / tile_size, an unknown backend, or tensors on a device the
            backend cannot use.
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
    if sh_degree is not None:
        colors = _sh_to_colors(sh_degree, colors, means, viewmats)
    C, N, D, width, height, tile_size = _check_inputs(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds, backend, tile_size
    )
    backend = _resolve_backend(backend, means.device)
    if backgrounds is not None and backgrounds.ndim == 1:
        backgrounds = backgrounds[None].expand(C, D)
    if backend == "gsplat":
        return rasterize_gsplat(
            means,
            quats,
            scales,
            opacities,
            colors,
            viewmats,
            Ks,
            width,
            height,
            near_plane=near_plane,
            far_plane=far_plane,
            eps2d=eps2d,
            backgrounds=backgrounds,
            tile_size=tile_size,
        )

    dtype = means.dtype
    quats, scales, opacities, colors, viewmats, Ks = (
        t.to(dtype) for t in (quats, scales, opacities, colors, viewmats, Ks)
    )
    project = project_gaussians
    if backend == "cpu" and not (viewmats.requires_grad or Ks.requires_grad):
        from ._cpu import project_gaussians_cpu as project  # its numba twin (no camera gradients)
    radii, means2d, depths, conics = project(
        means,
        quats,
        scales,
        viewmats,
        Ks,
        width,
        height,
        eps2d=eps2d,
        near_plane=near_plane,
        far_plane=far_plane,
        opacities=opacities,
    )
    opacities_c = opacities[None, :].expand(C, N)  # [C, N]
    colors_c = colors[None].expand(C, N, D) if colors.ndim == 2 else colors  # [C, N, D]
    tile_width, tile_height = tile_grid(width, height, tile_size)
    meta: dict[str, Any] = {}
    if backend == "cpu":
        from ._cpu import rasterize_to_pixels_cpu  # numba: imported only when used

        render_colors, render_alphas, binning = rasterize_to_pixels_cpu(
            means2d, conics, colors_c, opacities_c, radii, depths, width, height, tile_size
        )
        render_colors, render_alphas = render_colors.to(dtype), render_alphas.to(dtype)
        meta.update(isect_offsets=binning["isect_offsets"], flatten_ids=binning["flatten_ids"])
    else:
        render_colors, render_alphas = _rasterize_pixels_torch(
            means2d, conics, colors_c, opacities_c, radii, depths, width, height, tile_size
        )
    if backgrounds is not None:
        render_colors = render_colors + (1 - render_alphas) * backgrounds.to(dtype)[:, None, None, :]
    meta.update(
        radii=radii,
        means2d=means2d,
        depths=depths,
        conics=conics,
        opacities=opacities_c,
        width=width,
        height=height,
        tile_size=tile_size,
        tile_width=tile_width,
        tile_height=tile_height,
        n_cameras=C,
        backend=backend,
    )
    return render_colors, render_alphas, meta


def render_image(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    camera,
    background=None,
    backend: str = "auto",
    sh_degree: int | None = None,
) -> Tensor:
    """Render one view ``[H, W, D]`` for an :class:`emozone_lite.camera.Camera`.

    Args:
        means, quats, scales, opacities, colors: the Gaussians (``[N, 3]``,
            ``[N, 4]``, ``[N, 3]``, ``[N]``, ``[N, D]``).
        camera: a ``Camera`` (``viewmat [4, 4]``, ``K [3, 3]``, ``width``, ``height``).
        background: optional colour ``[D]`` (tensor, sequence or float).
        backend: as in :func:`rasterize`.
        sh_degree: as in :func:`rasterize` (``colors`` are then ``[N, K, D]`` SH coefficients).

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
    img, _, _ = rasterize(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmat,
        K,
        camera.width,
        camera.height,
        backend=backend,
        backgrounds=bg,
        sh_degree=sh_degree,
    )
    return img[0]
