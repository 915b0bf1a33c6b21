"""Eyeballs behind the lids, so a blink covers the eye and a lid raise uncovers more of it.

On a face mesh the eye is the patch of triangles inside the lid margins. If those triangles
followed the lids, a blink would squash the photographed iris into a line and a lid raise
would stretch it — the eye would never look closed or wide. The eyeball belongs to the
skull: :func:`eyeball_parts` makes the Gaussians on the eye-opening triangles an
:data:`~emozone_lite.head.parts.EYES` part (they stay still) set a little behind the lid
margin, and :func:`eyeball_extension` adds eyeball under the lids — sclera, and the iris
continued up and down its column — so raising the upper lid (AU05) shows white above the
iris, and the lids (face Gaussians, in front) slide over the eyeball when they close (AU45).
"""

from __future__ import annotations

import numpy as np
import torch

from ..gaussians import GaussianCloud
from ..landmarks import FaceMesh, load_canonical_mesh
from .parts import EYES, FACE, parts_of

__all__ = ["eye_triangles", "eyeball_parts", "eyeball_extension"]

#: How far the eyeball sits behind the lid margin's surface (world units = 10 cm).
EYEBALL_DEPTH = 0.012
#: How far the eyeball reaches under the lids, as a fraction of the eye's height.
EXTENSION = 0.9


def eye_triangles(mesh: FaceMesh | None = None) -> dict[str, np.ndarray]:
    """Triangles inside each eye's lid margins → ``{"right_eye": [K], "left_eye": [K]}`` (14 each)."""
    mesh = load_canonical_mesh() if mesh is None else mesh
    tris = np.asarray(mesh.triangles)
    out = {}
    for side in ("right_eye", "left_eye"):
        ring = {int(i) for i in mesh.regions[side]}
        out[side] = np.array([i for i, t in enumerate(tris) if {int(x) for x in t} <= ring], dtype=np.int64)
    return out


def _normals(cloud: GaussianCloud) -> torch.Tensor:
    from ..geometry import quat_to_rotmat

    return quat_to_rotmat(cloud.quats)[:, :, 2]  # the flat Gaussians' thin axis


def eyeball_parts(cloud: GaussianCloud, mesh: FaceMesh | None = None) -> GaussianCloud:
    """Mark the Gaussians on the eye-opening triangles as :data:`EYES` and set them
    :data:`EYEBALL_DEPTH` behind the surface (along their normals, away from the viewer)."""
    mesh = load_canonical_mesh() if mesh is None else mesh
    c = cloud.clone()
    part = parts_of(c).clone()
    tri = c.extras["tri_index"].long()
    on_eye = torch.isin(tri, torch.as_tensor(np.concatenate(list(eye_triangles(mesh).values()))))
    on_eye &= part == FACE
    n = _normals(c)
    n = torch.where((n[:, 2:3] < 0), -n, n)  # outward (+z, towards the viewer)
    means = c.means.clone()
    means[on_eye] -= EYEBALL_DEPTH * n[on_eye]
    part[on_eye] = EYES
    return GaussianCloud(means, c.quats, c.scales, c.opacities, c.colors, extras={**c.extras, "part": part})


def eyeball_extension(cloud: GaussianCloud, mesh: FaceMesh | None = None, seed: int = 0) -> GaussianCloud:
    """Eyeball Gaussians under the lids of each eye (part :data:`EYES`).

    For each eye, the :data:`EYES` Gaussians of ``cloud`` give the eye's extent, its surface
    and colours: the darkest third is the iris (its centre and half-width along the eye), the
    brightest third the sclera. New Gaussians fill a band of :data:`EXTENSION` × the eye's
    height above and below, on the same surface: iris colour within the iris column, sclera
    colour elsewhere. They are attached (``tri_index`` / ``bary``) to the nearest eye triangle.

    Returns:
        The new Gaussians only (same extras as ``cloud``); none for an eye with fewer than 8
        eyeball Gaussians (a very small head).
    """
    mesh = load_canonical_mesh() if mesh is None else mesh
    part = parts_of(cloud)
    tri = cloud.extras["tri_index"].long()
    rng = np.random.default_rng(seed)
    out = []
    for tris in eye_triangles(mesh).values():
        sel = (part == EYES) & torch.isin(tri, torch.as_tensor(tris))
        if int(sel.sum()) < 8:
            continue
        P = cloud.means[sel].double().numpy()
        C = cloud.colors[sel].double().numpy()
        lum = C @ np.array([0.299, 0.587, 0.114])
        dark, bright = lum <= np.quantile(lum, 1 / 3), lum >= np.quantile(lum, 2 / 3)
        iris_c, sclera_c = np.median(C[dark], 0), np.median(C[bright], 0)
        x0, x1 = np.quantile(P[:, 0], [0.02, 0.98])
        y0, y1 = np.quantile(P[:, 1], [0.02, 0.98])
        h = y1 - y0
        iris_x, iris_r = (
            float(np.median(P[dark, 0])),
            float(0.5 * (np.quantile(P[dark, 0], 0.9) - np.quantile(P[dark, 0], 0.1))),
        )
        # a plane fitted to the eye's surface: z = a x + b y + c
        A = np.c_[P[:, 0], P[:, 1], np.ones(len(P))]
        coef, *_ = np.linalg.lstsq(A, P[:, 2], rcond=None)
        step = 0.5 * float(np.median(cloud.scales[sel][:, :2].double().numpy())) * 2.0
        step = max(step, 0.004)
        xs = np.arange(x0, x1 + 1e-9, step)
        ys = np.r_[np.arange(y1, y1 + EXTENSION * h, step), np.arange(y0 - EXTENSION * h, y0, step)]
        gx, gy = np.meshgrid(xs, ys, indexing="ij")
        gx = gx.ravel() + rng.uniform(-0.2, 0.2, gx.size) * step
        gy = gy.ravel() + rng.uniform(-0.2, 0.2, gy.size) * step
        gz = coef[0] * gx + coef[1] * gy + coef[2]
        cols = np.where((np.abs(gx - iris_x) < iris_r)[:, None], iris_c, sclera_c)
        pos = np.c_[gx, gy, gz]
        n = np.array([-coef[0], -coef[1], 1.0])
        n /= np.linalg.norm(n)
        # attach to the nearest eye triangle (its centroid)
        cent_idx = tri[sel].numpy()
        nearest = cent_idx[np.argmin(((pos[:, None, :2] - P[None, :, :2]) ** 2).sum(-1), axis=1)]
        m = len(pos)
        q = _quat_from_normal(n)
        out.append(
            GaussianCloud(
                torch.as_tensor(pos, dtype=torch.float32),
                q.expand(m, 4).clone(),
                torch.tensor([[0.6 * step, 0.6 * step, 0.06 * step]], dtype=torch.float32).expand(m, 3).clone(),
                torch.full((m,), 0.97),
                torch.as_tensor(cols, dtype=torch.float32),
                extras=_extras_like(cloud, m, torch.as_tensor(nearest), EYES),
            )
        )
    if not out:  # too few Gaussians on the eyes (a small test head): nothing to extend
        return cloud.subset(torch.zeros(0, dtype=torch.long))
    return GaussianCloud.concat(out)


def _quat_from_normal(n: np.ndarray) -> torch.Tensor:
    from ..geometry import rotmat_to_quat

    n = np.asarray(n, dtype=np.float64)
    t1 = np.cross([0.0, 1.0, 0.0], n)
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(n, t1)
    return rotmat_to_quat(torch.as_tensor(np.stack([t1, t2, n], -1), dtype=torch.float32))[None]


def _extras_like(cloud: GaussianCloud, m: int, tri_index: torch.Tensor, part: int) -> dict:
    """Extras for ``m`` new Gaussians matching ``cloud``'s keys: the given attachment and part,
    centroid barycentrics, zeros for anything else (e.g. ``sh_rest``)."""
    ex = {}
    for k, v in cloud.extras.items():
        if k == "tri_index":
            ex[k] = tri_index.to(v.dtype)
        elif k == "bary":
            ex[k] = torch.full((m, 3), 1.0 / 3.0, dtype=v.dtype)
        elif k == "part":
            ex[k] = torch.full((m,), part, dtype=v.dtype)
        else:
            ex[k] = v.new_zeros((m, *v.shape[1:]))
    return ex
