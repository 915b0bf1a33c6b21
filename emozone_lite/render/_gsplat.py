"""The ``"gsplat"`` backend: gsplat's CUDA rasterizer behind :func:`emozone_lite.render.rasterize`.

gsplat is imported inside :func:`rasterize_gsplat`, and only after checking that CUDA
is available: on a machine without CUDA it is never touched (importing it there may
try to build its extension).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["rasterize_gsplat"]


def rasterize_gsplat(
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
    near_plane: float,
    far_plane: float,
    eps2d: float,
    backgrounds: Tensor | None,
    tile_size: int,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """``gsplat.rasterization`` (non-packed, ``rasterize_mode="classic"``) with the arguments of ``rasterize``.

    Returns gsplat's ``(render_colors [C, H, W, D], render_alphas [C, H, W, 1], meta)``
    with ``meta["backend"] = "gsplat"``.

    Raises:
        RuntimeError: CUDA is not available.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("backend='gsplat' needs CUDA, which is not available here; use backend='cpu' (or 'auto')")
    import gsplat  # only here, after the CUDA check

    render_colors, render_alphas, meta = gsplat.rasterization(
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
        packed=False,
        tile_size=tile_size,
        backgrounds=backgrounds,
        rasterize_mode="classic",
    )
    meta["backend"] = "gsplat"
    return render_colors, render_alphas, meta
