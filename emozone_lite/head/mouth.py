"""A mouth inside the head: teeth, tongue and a dark oral cavity as Gaussians behind the lips.

A face mesh is a surface; when its jaw drops, the triangles between the lips stretch over
the opening. A talking head needs something *behind* the lips for speech to reveal:
:func:`mouth_interior` builds it in the mouth's own frame (from the neutral mesh's inner-lip
seam and corners):

- **upper teeth** on a parabolic dental arch ``depth(u) = d₀ + k u²`` a few millimetres behind
  the lip seam, from the seam up behind the upper lip (skull part: they stay);
- **lower teeth** on the same arch, a millimetre further back, from the seam down (jaw part);
- a **tongue** filling the floor of the mouth behind the lower teeth (jaw part);
- a dark **oral cavity**: a back wall and roof that stay with the skull and a floor that
  rides on the jaw, so an open mouth shows dark, never the background.

Sizes are those of an adult mouth (world units = 10 cm): incisors about a centimetre tall,
the arch about the width of the mouth, the cavity about 3 cm deep. Colours: the teeth take
the colour of the photographed teeth when given (``teeth_color``), the tongue and cavity
fixed tongue-pink and near-black red.

Each Gaussian gets its part (:mod:`emozone_lite.head.parts`) and an attachment to the nearest
lip triangle on its side of the seam (``tri_index`` / ``bary``), so zones place it in the
lower face and jaw parts follow the jaw's motion of that triangle.
"""

from __future__ import annotations

import numpy as np
import torch

from ..gaussians import GaussianCloud
from ..geometry import rotmat_to_quat
from ..landmarks import FaceMesh, load_canonical_mesh
from .parts import CAVITY_LOWER, CAVITY_UPPER, LOWER_TEETH, TONGUE, UPPER_TEETH

__all__ = ["TEETH_COLOR", "TONGUE_COLOR", "CAVITY_COLOR", "GUM_COLOR", "mouth_frame", "mouth_interior"]

#: Default colours (linear RGB in [0, 1]).
TEETH_COLOR = (0.90, 0.87, 0.78)
GUM_COLOR = (0.78, 0.45, 0.45)
TONGUE_COLOR = (0.70, 0.36, 0.36)
CAVITY_COLOR = (0.13, 0.04, 0.05)

# Geometry of the interior in the mouth frame (u along the mouth, v up, depth behind the seam).
_ARCH_DEPTH = 0.045  # the incisors' front face: 4.5 mm behind the lip seam
_ARCH_BACK = 0.10  # how much further back the arch is at the inner lip corners
_UPPER_V = (-0.035, 0.095)  # upper incisors: their edges 3.5 mm below the seam (hidden by the closed lower lip)
_GUM_V = 0.075
_LOWER_V = (-0.105, -0.03)  # overlapped by the upper incisors (overbite)
_LOWER_BACK = 0.008  # lower incisors sit a little behind the upper ones
_TONGUE_DEPTH = (0.02, 0.26)
_TONGUE_V = -0.045
_CAVITY_DEPTH = 0.30
_CAVITY_V = (-0.32, 0.14)
_FLOOR_V = -0.16


def mouth_frame(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The mouth's frame from a closed-lip mesh ``[468, 3]``: ``origin [3]`` (the inner-lip seam's
    midpoint), ``axes [3, 3]`` (rows: along the mouth towards +x, up, out of the face) and the
    half-width of the mouth between the inner corners (vertices 78 and 308)."""
    v = np.asarray(vertices, dtype=np.float64)
    origin = 0.5 * (v[13] + v[14])
    ex = v[308] - v[78]
    half = 0.5 * float(np.linalg.norm(ex))
    ex = ex / max(2 * half, 1e-12)
    ez = np.cross(ex, np.array([0.0, 1.0, 0.0]))
    ez /= np.linalg.norm(ez)
    ey = np.cross(ez, ex)
    return origin, np.stack([ex, ey, ez]), half


def _grid(lo: float, hi: float, step: float) -> np.ndarray:
    n = max(2, int(round((hi - lo) / step)) + 1)
    return np.linspace(lo, hi, n)


def _sheet(us, vs, rng, jitter):
    u, v = np.meshgrid(us, vs, indexing="ij")
    u = u.ravel() + rng.uniform(-jitter, jitter, u.size)
    v = v.ravel() + rng.uniform(-jitter, jitter, v.size)
    return u, v


def mouth_interior(
    neutral_vertices: np.ndarray,
    *,
    mesh: FaceMesh | None = None,
    teeth_color=None,
    spacing: float = 0.009,
    seed: int = 0,
) -> GaussianCloud:
    """The mouth-interior Gaussians for a head whose rest mesh is ``neutral_vertices``.

    Args:
        neutral_vertices: ``[468, 3]`` the head's neutral mesh (lips closed,
            :func:`~emozone_lite.head.neutral_vertices`).
        mesh: the topology (default: canonical), for the lip attachments.
        teeth_color: RGB of the teeth (e.g. the median colour of the photographed teeth);
            default :data:`TEETH_COLOR`.
        spacing: distance between neighbouring Gaussians on the teeth, world units
            (the tongue and cavity use 1.5× and 2×).
        seed: seed of the small jitter that keeps the grids from aliasing.

    Returns:
        A :class:`~emozone_lite.gaussians.GaussianCloud` with ``extras["part"]`` (part codes),
        ``extras["tri_index"]`` and ``extras["bary"]`` (attachment to a lip triangle).
    """
    mesh = load_canonical_mesh() if mesh is None else mesh
    v = np.asarray(neutral_vertices, dtype=np.float64)
    if v.shape != (len(mesh.vertices), 3):
        raise ValueError(f"neutral_vertices must have shape [{len(mesh.vertices)}, 3], got {v.shape}")
    origin, axes, half = mouth_frame(v)
    rng = np.random.default_rng(seed)
    teeth = np.asarray(TEETH_COLOR if teeth_color is None else teeth_color, dtype=np.float64).reshape(3)
    k = _ARCH_BACK / max(half, 1e-6) ** 2

    pos, nrm, col, part, size = [], [], [], [], []

    def add(u, vv, depth, normal_local, colour, code, step):
        p = origin + u[:, None] * axes[0] + vv[:, None] * axes[1] - depth[:, None] * axes[2]
        pos.append(p)
        nrm.append(np.broadcast_to(np.asarray(normal_local, dtype=np.float64), p.shape) @ axes)
        col.append(np.broadcast_to(np.asarray(colour, dtype=np.float64), p.shape))
        part.append(np.full(len(p), code))
        size.append(np.full(len(p), step))

    def arch_normal(u):  # outward normal of the arch depth(u) = d0 + k u² (in the u-depth plane)
        n = np.stack([2 * k * u, np.zeros_like(u), np.ones_like(u)], -1)
        return n / np.linalg.norm(n, axis=-1, keepdims=True)

    s = spacing
    # upper teeth (with gums above), lower teeth
    u, vv = _sheet(_grid(-0.95 * half, 0.95 * half, s), _grid(*_UPPER_V, s), rng, 0.2 * s)
    c = np.where(
        (vv > _GUM_V)[:, None], np.asarray(GUM_COLOR), teeth * (1.0 - 0.12 * np.clip((vv - 0.03) / 0.05, 0, 1))[:, None]
    )
    add(u, vv, _ARCH_DEPTH + k * u**2, arch_normal(u), c, UPPER_TEETH, s)
    u, vv = _sheet(_grid(-0.85 * half, 0.85 * half, s), _grid(*_LOWER_V, s), rng, 0.2 * s)
    c = teeth * (1.0 - 0.12 * np.clip((-vv - 0.04) / 0.05, 0, 1))[:, None]
    add(u, vv, _ARCH_DEPTH + _LOWER_BACK + k * u**2, arch_normal(u), c, LOWER_TEETH, s)
    # tongue: a domed floor behind the lower teeth
    st = 1.5 * s
    u, d = _sheet(_grid(-0.7 * half, 0.7 * half, st), _grid(*_TONGUE_DEPTH, st), rng, 0.2 * st)
    d = d + _ARCH_DEPTH + k * u**2
    vv = _TONGUE_V - 0.02 * (u / (0.7 * half)) ** 2
    add(u, vv, d, (0.0, 1.0, 0.0), TONGUE_COLOR, TONGUE, st)
    # the cavity: back wall and roof with the skull, floor with the jaw; roof and floor start just
    # behind the arch, so they never reach out of the face at the sides
    sc = 2.0 * s
    back = _ARCH_DEPTH + _CAVITY_DEPTH
    u, vv = _sheet(_grid(-1.1 * half, 1.1 * half, sc), _grid(*_CAVITY_V, sc), rng, 0.2 * sc)
    add(u, vv, np.full_like(u, back), (0.0, 0.0, 1.0), CAVITY_COLOR, CAVITY_UPPER, sc)
    u, f = _sheet(_grid(-half, half, sc), _grid(0.0, 1.0, sc / _CAVITY_DEPTH), rng, 0.2 * sc)
    front = _ARCH_DEPTH + k * u**2 + 0.03
    d = front + np.clip(f, 0, 1) * np.maximum(back - front, 0.0)
    add(u, np.full_like(u, _CAVITY_V[1]), d, (0.0, -1.0, 0.0), CAVITY_COLOR, CAVITY_UPPER, sc)
    add(u, np.full_like(u, _FLOOR_V), d, (0.0, 1.0, 0.0), CAVITY_COLOR, CAVITY_LOWER, sc)
    # side walls (the insides of the cheeks), from the ends of the arch back to the back wall,
    # so a view from the side through an open mouth sees dark
    for side in (-1.0, 1.0):
        f, vv = _sheet(_grid(0.0, 1.0, sc / _CAVITY_DEPTH), _grid(_FLOOR_V, _CAVITY_V[1], sc), rng, 0.2 * sc)
        u = np.full_like(f, side * 1.02 * half)
        front = _ARCH_DEPTH + k * u**2
        d = front + np.clip(f, 0, 1) * np.maximum(back - front, 0.0)
        add(u, vv, d, (-side, 0.0, 0.0), CAVITY_COLOR, CAVITY_UPPER, sc)

    P = np.concatenate(pos)
    Nn = np.concatenate(nrm)
    Nn = Nn / np.linalg.norm(Nn, axis=-1, keepdims=True)
    C = np.clip(np.concatenate(col), 0.0, 1.0)
    parts = np.concatenate(part).astype(np.int64)
    step = np.concatenate(size)

    # flat Gaussians: tangent scales ~ 0.6 · spacing, normal scale a tenth of that
    t1 = np.cross(Nn, axes[1])
    bad = np.linalg.norm(t1, axis=-1) < 1e-6
    t1[bad] = np.cross(Nn[bad], axes[0])
    t1 /= np.linalg.norm(t1, axis=-1, keepdims=True)
    t2 = np.cross(Nn, t1)
    R = np.stack([t1, t2, Nn], axis=-1)  # columns: tangent, tangent, normal
    quats = rotmat_to_quat(torch.as_tensor(R, dtype=torch.float32))
    scales = np.stack([0.6 * step, 0.6 * step, 0.06 * step], -1)
    tri_index, bary = _attach(P, parts, v, mesh, origin, axes)
    return GaussianCloud(
        torch.as_tensor(P, dtype=torch.float32), quats, torch.as_tensor(scales, dtype=torch.float32),
        torch.full((len(P),), 0.97), torch.as_tensor(C, dtype=torch.float32),
        extras={"tri_index": tri_index, "bary": bary, "part": torch.as_tensor(parts)},
    )  # fmt: skip


def _attach(P: np.ndarray, parts: np.ndarray, v: np.ndarray, mesh: FaceMesh, origin, axes):
    """Nearest lip triangle on the Gaussian's side of the seam (upper for skull parts, lower for
    jaw parts) → ``tri_index [N]`` int64 and ``bary [N, 3]`` (the triangle's centroid)."""
    from .neutral import _lip_triangles, mouth_gap_triangles
    from .parts import JAW_PARTS

    tris = np.setdiff1d(_lip_triangles(mesh), mouth_gap_triangles(mesh))
    cent = v[np.asarray(mesh.triangles)[tris]].mean(1)
    above = (cent - origin) @ axes[1] > 0
    jaw = np.isin(parts, JAW_PARTS)
    out = np.empty(len(P), np.int64)
    for side, sel in ((True, ~jaw), (False, jaw)):
        cand = tris[above == side]
        cc = cent[above == side]
        if sel.any():
            d = ((P[sel, None, :] - cc[None]) ** 2).sum(-1)
            out[sel] = cand[d.argmin(1)]
    return torch.as_tensor(out), torch.full((len(P), 3), 1.0 / 3.0)
