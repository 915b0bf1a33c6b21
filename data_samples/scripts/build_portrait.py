"""Rebuild the bundled portrait ``data_samples/portrait.ply`` (provenance script).

    python data_samples/scripts/build_portrait.py [photo.png [head.ply]]

One call: :func:`emozone_lite.head.portrait.build_portrait` registers the face mesh on the
photo (default: scikit-image's public-domain ``astronaut.png``), casts every pixel onto the
skull / neck / torso / background proxies (a random walker separates the person from the
background), fills what the photo does not show, and fits the seen Gaussians (SH degree 1)
to the whole photo with adaptive density control, around the bundled face head (default
``head.ply``, kept as it is). Writes ``portrait.ply`` and the README's strip
``docs/portrait_strip.png`` (yaw −30…30°, pitch ±15°). After rebuilding, update the file's
size and sha256 in ``data_samples/README.md``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from emozone_lite.head import load_head
from emozone_lite.head.portrait import build_portrait, portrait_camera, render_portrait

if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    head = load_head(sys.argv[2]) if len(sys.argv) > 2 else None
    t0 = time.perf_counter()
    b = build_portrait(sys.argv[1] if len(sys.argv) > 1 else None, head=head, out_path=root / "portrait.ply",
                       checkpoint=root.parent / "outputs" / "portrait_fit.pt")  # fmt: skip
    print(f"build_portrait.py: {time.perf_counter() - t0:.0f} s in all; history {b.history}")
    from PIL import Image

    views = [(y, 0) for y in (-30, -15, 0, 15, 30)] + [(0, -15), (0, 15)]
    ims = [render_portrait(b.portrait, portrait_camera(b.camera, b.target, y, p), backend="cpu") for y, p in views]
    strip = (torch.cat(ims, 1).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(strip).save(root.parent / "docs" / "portrait_strip.png")
    np.savez(root.parent / "outputs" / "portrait_build.npz", pivot=b.pivot, target=b.target,
             viewmat=b.camera.viewmat.numpy(), K=b.camera.K.numpy(), psnr=b.psnr, ssim=b.ssim,
             seconds=b.seconds, losses=np.array(b.losses))  # fmt: skip
