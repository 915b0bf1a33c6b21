"""The renderer's shared constants and its tile grid, written once for every backend.

The torch twin (:mod:`emozone_lite.render._torch`), the numba kernels
(:mod:`emozone_lite.render._cpu`, which keeps float32 copies of the compositing
thresholds) and :func:`emozone_lite.render.rasterize` all read these. The values are
gsplat 1.5.3's.

numba freezes a global into a kernel when it compiles it, and its on-disk cache
(``cache=True``) only notices edits to the kernel's own file: after changing a value
here, delete ``emozone_lite/render/__pycache__/_cpu.*.nb*`` (or touch ``_cpu.py``) so
the cpu backend sees it.

Examples:
    >>> tile_grid(40, 30, 16)  # partial tiles on the right and at the bottom
    (3, 2)
"""

from __future__ import annotations

import math

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
#: Inside the projection's Jacobian, ``x/z`` and ``y/z`` are clamped to this fraction of
#: ``tan(fov / 2)`` beyond the image edges (gsplat's "1.3 × the field of view").
FOV_MARGIN = 0.3
#: Default blur added to the diagonal of every 2D covariance (about a pixel).
EPS2D = 0.3
#: Default depth range kept.
NEAR_PLANE = 0.01
FAR_PLANE = 1e10
#: Default tile edge in pixels.
TILE_SIZE = 16


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """Number of tiles ``(tile_width, tile_height)`` that cover a ``width × height`` image.

    The last column / row of tiles may be partial.
    """
    return math.ceil(width / tile_size), math.ceil(height / tile_size)
