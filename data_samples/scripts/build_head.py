"""Rebuild the bundled Gaussian head ``data_samples/head.ply`` (provenance script).

    python data_samples/scripts/build_head.py [photo.png]

One call: :func:`emozone_lite.head.build_head` detects MediaPipe's face landmarks on the
photo (default: scikit-image's public-domain ``astronaut.png``), registers and
personalises the canonical face mesh, seeds 12 000 flat Gaussians on it, colours them
from the photo and refines them through the CPU renderer (200 iterations of
L1 + 0.2·D-SSIM inside the face mask; a few minutes on 2 cores), then finishes it
(``head.finish_head``): the photographed smile is removed and the lips closed, the eyes
become eyeballs behind the lids, and teeth, a tongue and a dark oral cavity are put behind
the lips. Deterministic for a
given photo, seed, library version and thread count up to floating-point summation order.
After rebuilding, update the file's size and sha256 in ``data_samples/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from emozone_lite.head import build_head

if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "head.ply"
    build_head(sys.argv[1] if len(sys.argv) > 1 else None, n_gaussians=12000, iters=200, out_path=out, seed=0)
