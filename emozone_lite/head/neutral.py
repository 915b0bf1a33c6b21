"""A neutral face from a photo that is not neutral: remove the photographed expression.

The bundled photo smiles with its teeth showing (MediaPipe's blendshapes read AU12 ≈ 4.5).
A head fitted to it would smile in every expression, and a smile cannot rise from a face
that already smiles. FACS describes expressions as motion *from* a neutral face, so the head's
rest state must be neutral: lips closed and relaxed, no smile. Three steps, all on the mesh
the head was registered to (:func:`~emozone_lite.head.register_mesh_to_photo`):

1. **Identity offset.** The canonical mesh is aligned to the registered one by a similarity
   transform fitted on the upper face (Umeyama); ``offset = registered - aligned canonical``
   is the person's shape *plus* the photographed expression.
2. **Inpaint the mouth region.** Over the lower face around the mouth (lips, corners,
   nasolabial folds, lower cheeks) the offset is replaced by the harmonic (membrane)
   interpolation of the offsets on the region's border — the person's lower-face shape
   without the local motion of the smile (the corners pulled out and up, the lips apart).
3. **Close the lips.** Each inner-lip vertex pair (upper, lower) meets at its midpoint; the
   move spreads over each lip on the mesh cut between the lips (geodesic falloff), so the red
   of the lips follows and the skin around barely moves.

:func:`neutralize_head` moves the head's Gaussians from the registered to the neutral mesh
(barycentric carry + triangle rotations) and removes the Gaussians that lie on the triangles
spanning the mouth opening: in the photo they show the teeth, which become Gaussians of the
mouth interior (:mod:`emozone_lite.head.mouth`). Lip Gaussians that still carry a tooth-coloured
texel get the lips' own colour.
"""

from __future__ import annotations

import numpy as np
import torch

from ..gaussians import GaussianCloud
from ..geometry import quat_multiply
from ..landmarks import FaceMesh, load_canonical_mesh

__all__ = [
    "INNER_LIP_PAIRS",
    "mouth_gap_triangles",
    "similarity_align",
    "mouth_region",
    "harmonic_inpaint",
    "close_lips",
    "neutral_vertices",
    "neutralize_head",
    "photographed_teeth_color",
]

# Inner-lip contour of MediaPipe's canonical mesh, paired upper ↔ lower, from the subject's
# right corner to the left one (the inner corners 78 / 308 belong to both lips).
_UPPER_INNER = (191, 80, 81, 82, 13, 312, 311, 310, 415)
_LOWER_INNER = (95, 88, 178, 87, 14, 317, 402, 318, 324)
#: ``(upper, lower)`` inner-lip vertex pairs that touch when the mouth is closed.
INNER_LIP_PAIRS: tuple[tuple[int, int], ...] = tuple(zip(_UPPER_INNER, _LOWER_INNER))
_INNER_CORNERS = (78, 308)

#: Upper-face vertices the canonical mesh is aligned on: above the nose tip, where a smile
#: moves little (eyes, brows, forehead, nose bridge).
_STABLE_MIN_Y = -0.05
#: The mouth region (canonical coordinates, world units = 10 cm): below the nose, above the
#: chin boss, within ``_REGION_HALF_WIDTH`` of the midline, facing forward.
_REGION_Y = (-0.75, -0.10)
_REGION_HALF_WIDTH = 0.60
_REGION_MIN_Z = 0.15
#: Radius over which closing the lips spreads from the inner contour (geodesic, cut mesh).
_CLOSE_RADIUS = 0.12


def mouth_gap_triangles(mesh: FaceMesh | None = None) -> np.ndarray:
    """Indices of the triangles that span the mouth opening (every corner on the inner-lip
    contour, at least one on each lip) → ``[K]`` int64 (18 on the canonical mesh)."""
    mesh = load_canonical_mesh() if mesh is None else mesh
    up, lo = set(_UPPER_INNER), set(_LOWER_INNER)
    contour = up | lo | set(_INNER_CORNERS)
    out = [i for i, t in enumerate(np.asarray(mesh.triangles)) if set(t) <= contour and set(t) & up and set(t) & lo]
    return np.array(out, dtype=np.int64)


def similarity_align(src: np.ndarray, dst: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """``src [V, 3]`` moved by the similarity transform (scale, rotation, translation) that best
    maps ``src[idx]`` onto ``dst[idx]`` in the least-squares sense (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"src and dst must both have shape [V, 3], got {src.shape} and {dst.shape}")
    a, b = (src, dst) if idx is None else (src[idx], dst[idx])
    ma, mb = a.mean(0), b.mean(0)
    A, B = a - ma, b - mb
    U, S, Vt = np.linalg.svd(B.T @ A / len(a))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (A**2).sum(1).mean())
    return s * (src - ma) @ R.T + mb


def mouth_region(mesh: FaceMesh | None = None) -> np.ndarray:
    """Vertices of the canonical mesh whose photographed motion is removed → ``[V]`` bool."""
    mesh = load_canonical_mesh() if mesh is None else mesh
    v = np.asarray(mesh.vertices, dtype=np.float64)
    return (
        (v[:, 1] > _REGION_Y[0])
        & (v[:, 1] < _REGION_Y[1])
        & (np.abs(v[:, 0]) < _REGION_HALF_WIDTH)
        & (v[:, 2] > _REGION_MIN_Z)
    )


def _edges(triangles: np.ndarray) -> np.ndarray:
    t = np.asarray(triangles, dtype=np.int64)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    e = np.sort(e, axis=1)
    return np.unique(e, axis=0)


def harmonic_inpaint(values: np.ndarray, unknown: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Replace ``values [V, D]`` at the ``unknown [V]`` vertices by the harmonic interpolation of
    the others over the mesh's edge graph (uniform Laplacian: each unknown vertex becomes the
    mean of its neighbours).

    Raises:
        ValueError: an unknown vertex is not connected to any known one.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import spsolve

    x = np.asarray(values, dtype=np.float64).copy()
    unk = np.asarray(unknown, dtype=bool)
    n = len(x)
    e = _edges(triangles)
    W = coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n)).tocsr()
    L = (coo_matrix((np.asarray(W.sum(1)).ravel(), (np.arange(n), np.arange(n))), shape=(n, n)) - W).tocsr()
    ui, ki = np.nonzero(unk)[0], np.nonzero(~unk)[0]
    if len(ui) == 0:
        return x
    # every unknown component must touch a known vertex, or the system is singular
    _, comp = connected_components(W[ui][:, ui], directed=False)
    touches = np.asarray(W[ui][:, ki].sum(1)).ravel() > 0
    for c in np.unique(comp):
        if not touches[comp == c].any():
            raise ValueError("harmonic_inpaint: a region of unknown vertices touches no known vertex")
    rhs = -(L[ui][:, ki] @ x[ki])
    x[ui] = np.asarray(spsolve(L[ui][:, ui].tocsc(), rhs)).reshape(len(ui), -1)
    return x


def close_lips(vertices: np.ndarray, mesh: FaceMesh | None = None, radius: float = _CLOSE_RADIUS) -> np.ndarray:
    """Bring every inner-lip pair (:data:`INNER_LIP_PAIRS`) together at its midpoint.

    Each lip vertex's move is blended (Shepard weights, compact falloff over ``radius`` along
    the mesh cut between the lips, :func:`emozone_lite.teacher.geodesic_distances`) from the
    moves of the inner-lip vertices, so each lip moves as a whole and the skin beyond
    ``radius`` stays.

    Args:
        vertices: ``[468, 3]`` a face mesh in MediaPipe's topology.
        mesh: the topology (default: the canonical mesh).
        radius: falloff radius, world units.

    Returns:
        ``[468, 3]`` float64 with the inner lips touching.
    """
    from ..teacher.anatomy import _blend_anchors, geodesic_distances

    mesh = load_canonical_mesh() if mesh is None else mesh
    v = np.asarray(vertices, dtype=np.float64)
    idx, moves = [], []
    for u, lo in INNER_LIP_PAIRS:
        mid = 0.5 * (v[u] + v[lo])
        idx += [u, lo]
        moves += [mid - v[u], mid - v[lo]]
    idx += list(_INNER_CORNERS)
    moves += [np.zeros(3), np.zeros(3)]
    idx, moves = np.array(idx), np.array(moves)
    D = geodesic_distances(mesh, idx, cut=True)  # [A, V] on the canonical surface, lips cut apart
    return v + _blend_anchors(D, moves, np.full(len(idx), radius))


def neutral_vertices(registered: np.ndarray, mesh: FaceMesh | None = None) -> np.ndarray:
    """The neutral version of a registered (photographed) face mesh (see the module docstring).

    Args:
        registered: ``[468, 3]`` the mesh registered to the photo (``LandmarkFit.mesh.vertices``).
        mesh: the canonical mesh (default: the bundled one).

    Returns:
        ``[468, 3]`` float64: the same face with the mouth region relaxed and the lips closed.
        Vertices outside the mouth region and the lips keep their registered positions.
    """
    mesh = load_canonical_mesh() if mesh is None else mesh
    reg = np.asarray(registered, dtype=np.float64)
    canon = np.asarray(mesh.vertices, dtype=np.float64)
    if reg.shape != canon.shape:
        raise ValueError(f"registered must have shape {canon.shape} (the canonical topology), got {reg.shape}")
    stable = np.nonzero(canon[:, 1] > _STABLE_MIN_Y)[0]
    aligned = similarity_align(canon, reg, stable)
    offset = reg - aligned
    offset = harmonic_inpaint(offset, mouth_region(mesh), mesh.triangles)
    return close_lips(aligned + offset, mesh)


def _lip_triangles(mesh: FaceMesh) -> np.ndarray:
    lips = set(int(i) for i in mesh.regions.get("lips", ()))
    lips |= set(_UPPER_INNER) | set(_LOWER_INNER) | set(_INNER_CORNERS)
    t = np.asarray(mesh.triangles)
    return np.array([i for i, tri in enumerate(t) if sum(int(k) in lips for k in tri) >= 2], dtype=np.int64)


def neutralize_head(
    cloud: GaussianCloud, registered: np.ndarray, neutral: np.ndarray, mesh: FaceMesh | None = None
) -> GaussianCloud:
    """Move a head fitted on the ``registered`` mesh to the ``neutral`` one.

    Centres follow their triangles (barycentric carry of ``neutral - registered``), rotations
    turn with them; the Gaussians on the mouth-gap triangles (:func:`mouth_gap_triangles`: the
    photographed teeth) are removed; lip Gaussians whose colour is closer to the removed
    teeth's than to the lips' median colour take the lips' median colour.

    Args:
        cloud: the fitted head (``tri_index`` / ``bary`` extras), ``N`` Gaussians.
        registered, neutral: ``[468, 3]`` meshes (:func:`neutral_vertices`).
        mesh: the topology (default: canonical).

    Returns:
        A new cloud with fewer Gaussians (the extras are subset alongside).
    """
    from .seeding import carry_triangle_rotations, carry_vertex_displacements

    mesh = load_canonical_mesh() if mesh is None else mesh
    reg = torch.as_tensor(np.asarray(registered), dtype=torch.float32)
    neu = torch.as_tensor(np.asarray(neutral), dtype=torch.float32)
    tri = torch.as_tensor(np.asarray(mesh.triangles), dtype=torch.long)
    c = cloud.detach().clone()
    means = c.means + carry_vertex_displacements(c, neu - reg, tri)
    dq = carry_triangle_rotations(c, reg, neu, tri)
    quats = torch.nn.functional.normalize(quat_multiply(dq, c.quats), dim=-1)
    moved = GaussianCloud(means, quats, c.scales, c.opacities, c.colors.clone(), extras=dict(c.extras))

    tri_index = moved.extras["tri_index"].long()
    gap = torch.isin(tri_index, torch.as_tensor(mouth_gap_triangles(mesh)))
    lips = torch.isin(tri_index, torch.as_tensor(_lip_triangles(mesh))) & ~gap
    if bool(gap.any()) and bool(lips.any()):
        teeth = moved.colors[gap].median(0).values
        lip = moved.colors[lips].median(0).values
        cols = moved.colors
        toothy = lips & ((cols - teeth).norm(dim=-1) < (cols - lip).norm(dim=-1))
        cols[toothy] = lip
    return moved.subset(torch.nonzero(~gap).squeeze(1))


def photographed_teeth_color(cloud: GaussianCloud, mesh: FaceMesh | None = None) -> torch.Tensor:
    """Median colour ``[3]`` of the Gaussians on the mouth-gap triangles of a photo-fitted head
    (the photographed teeth, when the photo shows them); ``None`` when there are none."""
    mesh = load_canonical_mesh() if mesh is None else mesh
    gap = torch.isin(cloud.extras["tri_index"].long(), torch.as_tensor(mouth_gap_triangles(mesh)))
    return cloud.colors[gap].median(0).values if bool(gap.any()) else None
