"""The face's anatomy on MediaPipe's canonical mesh: landmarks, mirror twins, cuts, distances.

Everything the teacher rig needs to know about *where* things are on the 468-vertex
canonical mesh, and how a motion spreads over it:

- vertex index tables of the lids, lips, brows, cheeks, nose and chin (right side and
  midline; the left twin of every vertex is found by :func:`mirror_index`);
- the mesh's edge graph, cut between the upper and lower lips and lids, and the
  **geodesic** distances along it (:func:`geodesic_distances`);
- *anchors* (:class:`_Anchor`): vertices that move by a given vector, spread over the
  surface by the compact falloff ``φ(d) = (1 - (d/r)²)³`` (:func:`_anchor_field`);
- the soft mandible mask (:func:`mandible_mask`) the jaw rotation is weighted by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..landmarks import FaceMesh, load_canonical_mesh

__all__ = ["mirror_index", "geodesic_distances", "mandible_mask"]

# Vertex indices of MediaPipe's canonical mesh. x < 0 is the subject's RIGHT side; the
# left twin of every vertex is found by mirroring x (:func:`mirror_index`), so the anchors
# list the right side (and the midline) only.
R_UPPER_LID = (246, 161, 160, 159, 158, 157, 173)  # lateral → medial
R_LOWER_LID = (7, 163, 144, 145, 153, 154, 155)  # paired element-wise with R_UPPER_LID
R_EYE_CORNERS = (33, 133)
R_UPPER_INNER_LIP = (191, 80, 81, 82, 13)  # corner → midline (13 is the midline)
R_LOWER_INNER_LIP = (95, 88, 178, 87, 14)  # paired element-wise with R_UPPER_INNER_LIP
R_UPPER_OUTER_LIP = (185, 40, 39, 37, 0)
R_LOWER_OUTER_LIP = (146, 91, 181, 84, 17)
R_LIP_CORNERS = (61, 78)  # outer and inner corner
R_INNER_BROW = (107, 55)
R_MID_BROW = (66, 65)
R_OUTER_BROW = (70, 63, 46, 53)
R_CHEEK = (118, 119, 117, 101, 50, 100, 36, 205)
R_NOSE_SIDE = (48, 64, 49, 102, 129, 98)
R_NASOLABIAL = (92, 165, 203, 206)
CHIN_BOSS = (199, 175, 200, 201, 208, 171)
MOUTH_MID_UPPER, MOUTH_MID_LOWER = 13, 14  # inner-lip midpoints (mouth opening)

_EPS_SHEPARD = 0.01  # world units; inverse-distance blending of anchors (1 mm)


def mirror_index(vertices: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Index of each vertex's mirror twin across the ``x = 0`` plane.

    Args:
        vertices: ``[V, 3]`` mesh vertices (symmetric about ``x = 0``).
        tol: largest allowed distance between a mirrored vertex and its twin.

    Returns:
        ``[V]`` int64; midline vertices map to themselves.

    Raises:
        ValueError: the mesh is not mirror-symmetric within ``tol``.

    Examples:
        >>> m = load_canonical_mesh()
        >>> mi = mirror_index(m.vertices)
        >>> int(mi[61]), int(mi[291]), int(mi[13])  # lip corners swap, the midline stays
        (291, 61, 13)
    """
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape [V, 3], got {v.shape}")
    mirrored = v * np.array([-1.0, 1.0, 1.0])
    dist, idx = cKDTree(v).query(mirrored)
    if float(dist.max()) > tol:
        raise ValueError(
            f"mesh is not mirror-symmetric: a mirrored vertex is {dist.max():.3g} units from its "
            f"nearest twin (tol {tol}); the teacher rig needs a symmetric canonical mesh"
        )
    return idx.astype(np.int64)


@lru_cache(maxsize=1)
def _canonical_mirror() -> np.ndarray:
    """:func:`mirror_index` of the bundled canonical mesh (computed once)."""
    return mirror_index(load_canonical_mesh().vertices)


def _lip_and_lid_pairs(mi: np.ndarray) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(upper, lower) vertex sets of both eyes and the mouth, without the corners."""
    mir = lambda ids: tuple(int(mi[i]) for i in ids)
    lips_up = tuple(sorted(set(R_UPPER_INNER_LIP) | set(mir(R_UPPER_INNER_LIP))))
    lips_lo = tuple(sorted(set(R_LOWER_INNER_LIP) | set(mir(R_LOWER_INNER_LIP))))
    return [
        (R_UPPER_LID, R_LOWER_LID),
        (mir(R_UPPER_LID), mir(R_LOWER_LID)),
        (lips_up, lips_lo),
    ]


def _edge_graph(mesh: FaceMesh, cut: bool = True):
    """Sparse ``[V, V]`` graph of mesh edges weighted by length, optionally cut at lips / lids."""
    from scipy.sparse import coo_matrix

    tri = np.asarray(mesh.triangles, dtype=np.int64)
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    if cut:
        mi = mirror_index(mesh.vertices)
        keep = np.ones(len(e), bool)
        for up, lo in _lip_and_lid_pairs(mi):
            up_m, lo_m = np.isin(e, up), np.isin(e, lo)
            keep &= ~((up_m[:, 0] & lo_m[:, 1]) | (lo_m[:, 0] & up_m[:, 1]))
        e = e[keep]
    v = np.asarray(mesh.vertices, dtype=np.float64)
    w = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    n = len(v)
    return coo_matrix((np.r_[w, w], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n)).tocsr()


def geodesic_distances(mesh: FaceMesh, sources: Sequence[int], cut: bool = True) -> np.ndarray:
    """Shortest-path distances along mesh edges from ``sources`` to every vertex.

    With ``cut=True`` the edges joining the upper and lower lips (and the upper and lower
    eyelids) are removed first, so the mouth and the eyes are openings: the distance from
    the lower lip to the upper lip goes around the mouth corner.

    Args:
        mesh: the canonical :class:`~emozone_lite.landmarks.FaceMesh`.
        sources: ``[K]`` vertex indices.
        cut: cut the mesh at the lips and lids.

    Returns:
        ``[K, V]`` float64 distances in world units (``inf`` where unreachable).

    Raises:
        ValueError: a source is not a vertex index of ``mesh``.
    """
    from scipy.sparse.csgraph import dijkstra

    src = np.asarray(sources, dtype=np.int64).reshape(-1)
    n = len(mesh.vertices)
    if src.size and (src.min() < 0 or src.max() >= n):
        raise ValueError(f"sources must be vertex indices in [0, {n}), got {src.min()}..{src.max()}")
    return dijkstra(_edge_graph(mesh, cut), directed=False, indices=src)


# --------------------------------------------------------------------------- anchors and falloff
@dataclass(frozen=True)
class _Anchor:
    """Vertices that move by ``move`` (at full strength), spreading over radius ``radius``.

    ``move`` is either ``(out, up, forward)`` — ``out`` away from the midline, mirrored
    automatically for the left twin — or, with ``world=True``, one world vector per vertex
    (``[len(verts), 3]``, right side; the left twin gets x negated).
    """

    verts: tuple[int, ...]
    move: tuple | np.ndarray
    radius: float
    world: bool = False


def _pin(verts: Sequence[int], radius: float) -> _Anchor:
    """An anchor that holds ``verts`` still (moves by zero) within ``radius``."""
    return _Anchor(tuple(verts), (0.0, 0.0, 0.0), radius)


def _falloff(d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Smooth compact radial falloff ``(1 - (d/r)²)³`` for ``d < r``, else 0 (C² at ``r``)."""
    u = np.clip(1.0 - (d / r) ** 2, 0.0, None)
    return u**3


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """``3x² - 2x³`` of ``x`` clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _expand_anchors(anchors: Sequence[_Anchor], v: np.ndarray, mi: np.ndarray):
    """Flatten anchors into (vertex, world displacement, radius) rows, adding left twins."""
    idx, disp, rad = [], [], []
    for a in anchors:
        if a.world:
            moves = np.asarray(a.move, dtype=np.float64).reshape(len(a.verts), 3)
        else:
            out, up, fwd = a.move
            moves = np.array(
                [[out * (-1.0 if v[i, 0] < 0 else (1.0 if v[i, 0] > 0 else 0.0)), up, fwd] for i in a.verts]
            )
            for i in a.verts:
                if abs(v[i, 0]) < 1e-6 and out != 0:
                    raise ValueError(f"anchor vertex {i} is on the midline but has an 'out' motion")
        for i, d in zip(a.verts, moves):
            rows = [(int(i), d)]
            j = int(mi[i])
            if j != i:
                rows.append((j, d * np.array([-1.0, 1.0, 1.0])))
            for k, dd in rows:
                idx.append(k)
                disp.append(dd)
                rad.append(a.radius)
    return np.array(idx, np.int64), np.array(disp, np.float64), np.array(rad, np.float64)


def _anchor_field(anchors: Sequence[_Anchor], mesh: FaceMesh, mi: np.ndarray, geo: np.ndarray) -> np.ndarray:
    """Displacement field ``[V, 3]`` from anchors (see :mod:`emozone_lite.teacher`).

    ``field(v) = g(v) · Σ_a s_a(v) d_a`` with the envelope ``g = 1 - Π_a (1 - φ_a(v))`` (a soft
    union of the anchors' falloffs, 1 on every anchor) and Shepard blending weights
    ``s_a ∝ φ_a / (d_a² + ε²)`` (so each anchor vertex moves by exactly its own vector).

    Args:
        anchors: the anchors (right side and midline; left twins are added).
        mesh: the canonical mesh.
        mi: ``[V]`` mirror index (:func:`mirror_index`).
        geo: ``[V, V]`` cut-mesh geodesic distances (:func:`geodesic_distances`).

    Returns:
        ``[V, 3]`` float32 displacements, world units.
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    idx, disp, rad = _expand_anchors(anchors, v, mi)
    return _blend_anchors(geo[idx], disp, rad).astype(np.float32)  # geo[idx]: [A, V] on the cut mesh


def _blend_anchors(D: np.ndarray, moves: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """The blend of :func:`_anchor_field`: ``[V, 3]`` float64 from the anchors' geodesic distances
    ``D [A, V]``, their moves ``[A, 3]`` and falloff radii ``[A]`` (each anchor vertex moves by
    exactly its own vector)."""
    phi = _falloff(D, np.asarray(radius, dtype=np.float64).reshape(-1, 1))
    env = 1.0 - np.prod(1.0 - phi, axis=0)
    w = phi / (D**2 + _EPS_SHEPARD**2)
    wsum = w.sum(0)
    blend = np.where(wsum[:, None] > 0, (w.T @ moves) / np.maximum(wsum, 1e-300)[:, None], 0.0)
    on = D == 0
    hit = on.any(0)
    blend[hit] = (on[:, hit].T.astype(np.float64) @ moves) / on[:, hit].sum(0)[:, None]
    return env[:, None] * blend


def mandible_mask(mesh: FaceMesh, geo: np.ndarray | None = None) -> np.ndarray:
    """Soft ``[V]`` weight in [0, 1] of how much each vertex rides on the lower jaw.

    ``m = smoothstep(d_U / (d_U + d_L))`` where ``d_U`` / ``d_L`` are geodesic distances (on
    the lip-cut mesh) to the upper face (upper inner lip, everything above the nose base) and
    to the lower face (lower inner lip, the bottom of the chin). So the lower lip and chin are
    1, the upper lip and cheeks 0, the mouth corners ½, with a smooth ramp up the jaw line.

    Args:
        mesh: the canonical mesh.
        geo: optional precomputed ``[V, V]`` cut-mesh geodesic distances.

    Returns:
        ``[V]`` float32 weights in [0, 1].
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    mi = mirror_index(v)
    geo = geodesic_distances(mesh, np.arange(len(v))) if geo is None else geo
    both = lambda ids: set(ids) | {int(mi[i]) for i in ids}
    up = both(R_UPPER_INNER_LIP + R_UPPER_OUTER_LIP) | set(np.nonzero(v[:, 1] > -0.26)[0].tolist())
    lo = both(R_LOWER_INNER_LIP + R_LOWER_OUTER_LIP) | set(np.nonzero(v[:, 1] < -0.80)[0].tolist())
    d_u = geo[sorted(up)].min(0)
    d_l = geo[sorted(lo)].min(0)
    return _smoothstep(d_u / np.maximum(d_u + d_l, 1e-12)).astype(np.float32)
