"""The teacher rig: known facial motion that generates the training frames.

No public talking-head video with AU labels ships offline, so emozone-lite makes its own
ground truth (DESIGN.md, "The head and the teacher"). The teacher is a hand-built
*blendshape rig* on MediaPipe's canonical face mesh:

- **AU fields** ``au_basis [17, 468, 3]``: one displacement field per Action Unit, in world
  units (1 unit = 10 cm) at intensity 5 (FACS "E", maximum). Each field is built from a few
  anatomical *anchor* vertices (e.g. the inner brow for AU01) that move by a given vector,
  spread over the surface with a smooth, compactly supported radial falloff
  ``φ(d) = (1 - (d/r)²)³`` of the **geodesic** distance ``d`` along the mesh. The mesh is
  cut between the upper and lower lips and between the upper and lower eyelids first, so a
  lower-lip motion does not leak into the upper lip across the mouth (and likewise for the
  lids). *Pins* (anchors that move by zero) keep e.g. the lid margin still while the brow
  rises. AU26 (jaw drop) is a rotation of the mandible about a pivot behind the mouth
  (linearised, so it is a field too) weighted by a smooth mandible mask.
- **Viseme shapes** for the 15 Oculus visemes of :data:`emozone_lite.audio.VISEMES`, mixed
  from six articulatory components: jaw opening, lip rounding, protrusion, spreading,
  bilabial closure and the labiodental lower-lip tuck.

Both act linearly, except for the **jaw**, where speech and expression meet:

    disp(t) = Σ_{k ≠ AU26} (a_k(t) / 5) · B_k                       # expression
            + Σ_v w_v(t) · S_v                                      # speech, without its jaw
            + J(t) · F_jaw,   J = (j_s^p + j_e^p)^(1/p),  p = 4     # shared jaw
    with  j_s = Σ_v w_v(t) · jaw_v  (speech)  and  j_e = a_AU26(t) / 5  (expression),

i.e. the jaw opens to a *soft maximum* of what speech and AU26 ask for (never their sum, and
exactly either one when the other is zero). Everything else on the mouth simply adds: a smile
(AU12) pulls the corners that an "U" rounds, AU25 parts the lips that a "PP" presses shut.
That overlap on the mouth is deliberate — it is the conflict EmoZone-Talker's zones resolve.

Speech timing comes from phone labels through co-articulated **viseme weights**
(:func:`viseme_weights`: Cohen–Massaro dominance functions, rows sum to 1) or, without
labels, from a crude audio proxy (:func:`viseme_weights_from_audio`).
:meth:`TeacherRig.sequence` drives the Gaussian head with both and renders it from several
cameras: a :class:`TeacherSequence` with frames, vertices, Gaussian states and 2D landmarks.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import Tensor

from .aus import AU_NAMES, AUTrack
from .audio import VISEMES, Phone, phone_to_viseme
from .camera import Camera, stack_cameras
from .landmarks import FaceMesh, load_canonical_mesh

if TYPE_CHECKING:  # pragma: no cover
    from .gaussians import GaussianCloud

__all__ = [
    "TeacherRig", "TeacherSequence", "sequence", "viseme_weights", "viseme_weights_from_audio",
    "mirror_index", "geodesic_distances", "mandible_mask", "jaw_field", "mouth_opening", "eye_aperture",
    "JAW_SOFTMAX_P", "VISEME_ARTICULATION", "DOMINANCE",
]

# --------------------------------------------------------------------------- anatomy
# Vertex indices of MediaPipe's canonical mesh. x < 0 is the subject's RIGHT side; the
# left twin of every vertex is found by mirroring x (:func:`mirror_index`), so the anchors
# below list the right side (and the midline) only.
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

#: Exponent of the soft maximum that merges the speech jaw and AU26 (see the module doc).
JAW_SOFTMAX_P = 4.0

#: Jaw pivot (world units) of the linearised mandible rotation and the rotation (radians)
#: at AU26 = 5. The pivot sits behind and at the level of the mouth (an *instantaneous*
#: centre: the condyle both rotates and slides forward), so the lower lip drops ≈ straight
#: down while the chin moves down and somewhat back.
JAW_PIVOT = (0.0, -0.36, -0.55)
JAW_ANGLE = 0.125

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


def _lip_and_lid_pairs(mi: np.ndarray) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(upper, lower) vertex sets of both eyes and the mouth, without the corners."""
    mir = lambda ids: tuple(int(mi[i]) for i in ids)  # noqa: E731
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
    """
    from scipy.sparse.csgraph import dijkstra

    src = np.asarray(sources, dtype=np.int64).reshape(-1)
    n = len(mesh.vertices)
    if src.size and (src.min() < 0 or src.max() >= n):
        raise ValueError(f"sources must be vertex indices in [0, {n}), got {src.min()}..{src.max()}")
    return dijkstra(_edge_graph(mesh, cut), directed=False, indices=src)


# --------------------------------------------------------------------------- fields
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
    return _Anchor(tuple(verts), (0.0, 0.0, 0.0), radius)


def _falloff(d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Smooth compact radial falloff ``(1 - (d/r)²)³`` for ``d < r``, else 0 (C² at ``r``)."""
    u = np.clip(1.0 - (d / r) ** 2, 0.0, None)
    return u ** 3


def _expand_anchors(anchors: Sequence[_Anchor], v: np.ndarray, mi: np.ndarray):
    """Flatten anchors into (vertex, world displacement, radius) rows, adding left twins."""
    idx, disp, rad = [], [], []
    for a in anchors:
        if a.world:
            moves = np.asarray(a.move, dtype=np.float64).reshape(len(a.verts), 3)
        else:
            out, up, fwd = a.move
            moves = np.array([[out * (-1.0 if v[i, 0] < 0 else (1.0 if v[i, 0] > 0 else 0.0)), up, fwd]
                              for i in a.verts])
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
    """Displacement field ``[V, 3]`` from anchors (see the module docstring).

    ``field(v) = g(v) · Σ_a s_a(v) d_a`` with the envelope ``g = 1 - Π_a (1 - φ_a(v))`` (a soft
    union of the anchors' falloffs, 1 on every anchor) and Shepard blending weights
    ``s_a ∝ φ_a / (d_a² + ε²)`` (so each anchor vertex moves by exactly its own vector).
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    idx, disp, rad = _expand_anchors(anchors, v, mi)
    D = geo[idx]  # [A, V] geodesic distances on the cut mesh
    phi = _falloff(D, rad[:, None])
    env = 1.0 - np.prod(1.0 - phi, axis=0)
    w = phi / (D ** 2 + _EPS_SHEPARD ** 2)
    wsum = w.sum(0)
    blend = np.where(wsum[:, None] > 0, (w.T @ disp) / np.maximum(wsum, 1e-300)[:, None], 0.0)
    on = D == 0  # an anchor vertex moves by exactly its own vector
    hit = on.any(0)
    blend[hit] = (on[:, hit].T.astype(np.float64) @ disp) / on[:, hit].sum(0)[:, None]
    return (env[:, None] * blend).astype(np.float32)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def mandible_mask(mesh: FaceMesh, geo: np.ndarray | None = None) -> np.ndarray:
    """Soft ``[V]`` weight in [0, 1] of how much each vertex rides on the lower jaw.

    ``m = smoothstep(d_U / (d_U + d_L))`` where ``d_U`` / ``d_L`` are geodesic distances (on
    the lip-cut mesh) to the upper face (upper inner lip, everything above the nose base) and
    to the lower face (lower inner lip, the bottom of the chin). So the lower lip and chin are
    1, the upper lip and cheeks 0, the mouth corners ½, with a smooth ramp up the jaw line.

    Args:
        mesh: the canonical mesh.
        geo: optional precomputed ``[V, V]`` cut-mesh geodesic distances.
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    mi = mirror_index(v)
    geo = geodesic_distances(mesh, np.arange(len(v))) if geo is None else geo
    both = lambda ids: set(ids) | {int(mi[i]) for i in ids}  # noqa: E731
    up = both(R_UPPER_INNER_LIP + R_UPPER_OUTER_LIP) | set(np.nonzero(v[:, 1] > -0.26)[0].tolist())
    lo = both(R_LOWER_INNER_LIP + R_LOWER_OUTER_LIP) | set(np.nonzero(v[:, 1] < -0.80)[0].tolist())
    d_u = geo[sorted(up)].min(0)
    d_l = geo[sorted(lo)].min(0)
    return _smoothstep(d_u / np.maximum(d_u + d_l, 1e-12)).astype(np.float32)


def jaw_field(mesh: FaceMesh, angle: float = JAW_ANGLE, pivot=JAW_PIVOT, geo: np.ndarray | None = None) -> np.ndarray:
    """``[V, 3]`` jaw-drop field: a linearised rotation by ``angle`` about the x axis through
    ``pivot``, weighted by :func:`mandible_mask` (a smooth, rotation-like falloff up the jaw)."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    r = v - np.asarray(pivot, dtype=np.float64)
    omega = np.array([angle, 0.0, 0.0])  # +x rotation: the front of the chin goes down
    tangent = np.cross(omega, r)  # ω × r
    return (mandible_mask(mesh, geo)[:, None] * tangent).astype(np.float32)


def _au_anchor_specs(v: np.ndarray, mi: np.ndarray) -> dict[str, list[_Anchor]]:
    """Anchors of every AU except AU26 (world units at intensity 5; ``(out, up, forward)``)."""
    up_lid, lo_lid = np.array(R_UPPER_LID), np.array(R_LOWER_LID)
    gap = v[up_lid] - v[lo_lid]  # [7, 3] upper minus lower lid, right eye
    lips_mid = (0, 13, 14, 17)
    return {
        "AU01": [  # inner brow raiser (frontalis, medial)
            _Anchor(R_INNER_BROW, (0.0, 0.09, 0.005), 0.30),
            _Anchor(R_MID_BROW, (0.0, 0.06, 0.0), 0.25),
            _Anchor((9, 108, 151), (0.0, 0.04, 0.0), 0.25),
            _pin(R_UPPER_LID + R_EYE_CORNERS, 0.10),
        ],
        "AU02": [  # outer brow raiser (frontalis, lateral)
            _Anchor(R_OUTER_BROW, (0.0, 0.08, 0.005), 0.30),
            _Anchor((105, 52), (0.0, 0.055, 0.0), 0.25),
            _Anchor((104, 69), (0.0, 0.035, 0.0), 0.25),
            _pin(R_UPPER_LID + R_EYE_CORNERS, 0.10),
        ],
        "AU04": [  # brow lowerer: down and drawn together (corrugator, procerus)
            _Anchor(R_INNER_BROW + R_MID_BROW, (-0.035, -0.06, 0.01), 0.28),
            _Anchor((105, 52), (-0.02, -0.035, 0.0), 0.22),
            _Anchor((9, 8), (0.0, -0.03, 0.01), 0.15),
            _pin(R_UPPER_LID + R_EYE_CORNERS, 0.08),
        ],
        "AU05": [  # upper lid raiser
            _Anchor(R_UPPER_LID, (0.0, 0.03, 0.005), 0.12),
            _pin(R_EYE_CORNERS, 0.05),
        ],
        "AU06": [  # cheek raiser: cheeks up, lower lid pushed up, crow's feet
            _Anchor(R_CHEEK, (0.0, 0.05, 0.015), 0.28),
            _Anchor((110, 24, 23, 22, 25), (0.0, 0.03, 0.005), 0.10),
            _Anchor(R_LOWER_LID, (0.0, 0.018, 0.0), 0.08),
            _pin(R_EYE_CORNERS, 0.05),
        ],
        "AU07": [  # lid tightener: lower lid up, upper lid slightly down
            _Anchor(R_LOWER_LID, (0.0, 0.025, 0.005), 0.08),
            _Anchor((22, 23, 24, 110), (0.0, 0.015, 0.0), 0.08),
            _Anchor(R_UPPER_LID, (0.0, -0.012, 0.0), 0.06),
            _pin(R_EYE_CORNERS, 0.05),
        ],
        "AU09": [  # nose wrinkler: nose sides up, medial brows down a little
            _Anchor(R_NOSE_SIDE, (0.0, 0.045, 0.005), 0.15),
            _Anchor((134, 220), (0.0, 0.02, 0.0), 0.10),
            _Anchor(R_INNER_BROW + (8,), (0.0, -0.02, 0.0), 0.15),
            _Anchor((0, 37), (0.0, 0.02, 0.0), 0.10),
            _pin((1, 4, 5), 0.10),
        ],
        "AU10": [  # upper lip raiser
            _Anchor((37, 39, 40, 0), (0.0, 0.045, 0.012), 0.14),
            _Anchor((13, 82, 81, 80), (0.0, 0.04, 0.01), 0.12),
            _Anchor((185, 191), (0.0, 0.025, 0.005), 0.10),
            _Anchor(R_NASOLABIAL, (0.005, 0.025, 0.005), 0.12),
            _pin(R_LIP_CORNERS, 0.08),
            _pin((1, 4), 0.10),
        ],
        "AU12": [  # lip corner puller (zygomaticus major): corners up and out
            _Anchor(R_LIP_CORNERS, (0.055, 0.05, -0.025), 0.28),
            _Anchor((206, 216, 207), (0.02, 0.025, 0.005), 0.15),
            _pin(lips_mid, 0.12),
        ],
        "AU14": [  # dimpler (buccinator): corners pulled back into the cheek
            _Anchor(R_LIP_CORNERS, (0.012, 0.005, -0.045), 0.18),
            _Anchor((57, 43, 186), (0.005, 0.0, -0.02), 0.12),
            _pin(lips_mid, 0.12),
        ],
        "AU15": [  # lip corner depressor
            _Anchor(R_LIP_CORNERS, (0.01, -0.05, -0.005), 0.22),
            _Anchor((57, 43, 106), (0.0, -0.03, 0.0), 0.15),
            _pin(lips_mid, 0.12),
        ],
        "AU17": [  # chin raiser (mentalis): chin boss and lower lip up and forward
            _Anchor(CHIN_BOSS, (0.0, 0.035, 0.02), 0.20),
            _Anchor((17, 84, 181), (0.0, 0.02, 0.02), 0.10),
            _Anchor((14, 87, 178), (0.0, 0.015, 0.015), 0.08),
            _pin(R_LIP_CORNERS, 0.10),
        ],
        "AU20": [  # lip stretcher (risorius): corners sideways
            _Anchor(R_LIP_CORNERS, (0.06, -0.01, -0.02), 0.25),
            _Anchor((57, 43), (0.03, -0.01, -0.01), 0.15),
            _pin(lips_mid, 0.12),
        ],
        "AU23": [  # lip tightener: mouth narrows, red of the lips thins
            _Anchor(R_LIP_CORNERS, (-0.025, 0.0, 0.005), 0.15),
            _Anchor(R_UPPER_OUTER_LIP[:4] + (0,), (0.0, -0.012, -0.005), 0.08),
            _Anchor(R_LOWER_OUTER_LIP[:4] + (17,), (0.0, 0.012, -0.005), 0.08),
        ],
        "AU25": [  # lips part (jaw still)
            _Anchor(R_LOWER_INNER_LIP, (0.0, -0.03, 0.0), 0.15),
            _Anchor(R_LOWER_OUTER_LIP, (0.0, -0.025, 0.0), 0.15),
            _Anchor(R_UPPER_INNER_LIP, (0.0, 0.008, 0.0), 0.08),
            _pin(R_LIP_CORNERS[:1], 0.05),
        ],
        "AU45": [  # blink: the upper lid travels 85 % of the gap, the lower lid 15 %
            _Anchor(R_UPPER_LID, -0.85 * gap, 0.12, world=True),
            _Anchor(R_LOWER_LID, 0.15 * gap, 0.06, world=True),
            _pin(R_EYE_CORNERS, 0.05),
        ],
    }


# --------------------------------------------------------------------------- visemes
#: Articulation of each viseme of :data:`emozone_lite.audio.VISEMES`: weights of the
#: components ``jaw`` (fraction of the AU26 = 5 jaw drop), ``round``, ``protrude``,
#: ``spread``, ``close`` (bilabial closure) and ``tuck`` (lower lip to upper teeth).
VISEME_ARTICULATION: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"jaw": 0.05, "close": 1.0},
    "FF": {"jaw": 0.10, "tuck": 1.0},
    "TH": {"jaw": 0.20, "spread": 0.2},
    "DD": {"jaw": 0.25, "spread": 0.2},
    "kk": {"jaw": 0.30},
    "CH": {"jaw": 0.15, "protrude": 1.0, "round": 0.3},
    "SS": {"jaw": 0.10, "spread": 0.6},
    "nn": {"jaw": 0.20, "spread": 0.2},
    "RR": {"jaw": 0.15, "round": 0.5, "protrude": 0.5},
    "aa": {"jaw": 0.85, "spread": 0.2},
    "E": {"jaw": 0.50, "spread": 0.6},
    "I": {"jaw": 0.25, "spread": 0.9},
    "O": {"jaw": 0.60, "round": 0.8},
    "U": {"jaw": 0.20, "round": 1.0, "protrude": 0.5},
}

#: Cohen–Massaro dominance of each viseme: ``(α, width)``. ``α`` is how strongly it holds
#: its target against its neighbours, ``width`` scales how far before (anticipation) and after
#: (carry-over) the phone it reaches. Bilabials and labiodentals must reach their lip target
#: but release quickly (large α, narrow); tongue-only consonants let the lips follow the
#: neighbouring vowels (small α).
DOMINANCE: dict[str, tuple[float, float]] = {
    "sil": (0.6, 1.0), "PP": (5.0, 0.5), "FF": (3.0, 0.6), "TH": (0.4, 1.0), "DD": (0.3, 1.0),
    "kk": (0.3, 1.0), "CH": (0.8, 0.8), "SS": (0.5, 1.0), "nn": (0.3, 1.0), "RR": (0.5, 1.0),
    "aa": (0.7, 1.0), "E": (0.6, 1.0), "I": (0.6, 1.0), "O": (0.8, 1.0), "U": (0.8, 1.0),
}


def _component_fields(mesh: FaceMesh, mi: np.ndarray, geo: np.ndarray) -> dict[str, np.ndarray]:
    """The five non-jaw articulatory fields ``[V, 3]`` at full strength."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    up_in, lo_in = np.array(R_UPPER_INNER_LIP), np.array(R_LOWER_INNER_LIP)
    up_out, lo_out = np.array(R_UPPER_OUTER_LIP), np.array(R_LOWER_OUTER_LIP)
    gap = (v[up_in, 1] - v[lo_in, 1])[:, None]  # [5, 1] inner-lip gap per column
    y = np.array([0.0, 1.0, 0.0])
    lips_all = tuple(int(i) for i in mesh.regions.get("lips", ())) if "lips" in mesh.regions else ()
    lips_right = tuple(i for i in lips_all if v[i, 0] <= 0 and i not in R_LIP_CORNERS)
    specs = {
        "round": [
            _Anchor(R_LIP_CORNERS, (-0.05, 0.0, 0.03), 0.20),
            _Anchor(R_UPPER_INNER_LIP, (0.0, 0.008, 0.04), 0.10),
            _Anchor(R_LOWER_INNER_LIP, (0.0, -0.008, 0.04), 0.10),
            _Anchor(R_UPPER_OUTER_LIP + R_LOWER_OUTER_LIP, (0.0, 0.0, 0.035), 0.10),
        ],
        "protrude": [
            _Anchor(R_LIP_CORNERS, (-0.02, 0.0, 0.015), 0.18),
            _Anchor(tuple(sorted(set(lips_right) - set(R_LIP_CORNERS))), (0.0, 0.0, 0.03), 0.10),
        ],
        "spread": [
            _Anchor(R_LIP_CORNERS, (0.035, 0.01, -0.015), 0.20),
            _pin((0, 13, 14, 17), 0.10),
        ],
        "close": [  # inner lips meet half-way (overshooting 0.3 mm: pressed), outer lips follow
            _Anchor(R_UPPER_INNER_LIP, -(gap / 2 + 0.003) * y + [0, 0, 0.005], 0.10, world=True),
            _Anchor(R_LOWER_INNER_LIP, (gap / 2 + 0.003) * y + [0, 0, 0.005], 0.10, world=True),
            _Anchor(tuple(up_out), -(0.6 * gap / 2) * y, 0.10, world=True),
            _Anchor(tuple(lo_out), (0.6 * gap / 2) * y, 0.10, world=True),
            _pin(R_LIP_CORNERS[:1], 0.05),
        ],
        "tuck": [  # lower lip up and back under the upper teeth
            _Anchor(R_LOWER_INNER_LIP, (0.0, 0.035, -0.02), 0.12),
            _Anchor(R_LOWER_OUTER_LIP, (0.0, 0.025, -0.025), 0.12),
            _Anchor(R_UPPER_INNER_LIP, (0.0, 0.005, 0.005), 0.08),
            _pin(R_LIP_CORNERS[:1], 0.05),
        ],
    }
    return {k: _anchor_field(a, mesh, mi, geo) for k, a in specs.items()}


def _as_float_tensor(x, name: str) -> Tensor:
    if isinstance(x, AUTrack):
        x = x.values
    t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x), dtype=torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values; fill or clip them first")
    return t


# --------------------------------------------------------------------------- the rig
@dataclass(eq=False)
class TeacherRig:
    """The known ground-truth face motion: AU fields, viseme shapes and how they combine.

    Build it with :meth:`TeacherRig.default`.

    Attributes:
        mesh: the canonical :class:`~emozone_lite.landmarks.FaceMesh` the fields live on.
        au_names: the 17 AUs, in :data:`emozone_lite.aus.AU_NAMES` order.
        au_basis: ``[17, 468, 3]`` displacement of each AU at intensity 5 (world units).
            ``au_basis[AU26]`` is the jaw field ``F_jaw``.
        viseme_names: the viseme classes, :data:`emozone_lite.audio.VISEMES` order.
        viseme_shape: ``[V, 468, 3]`` each viseme's mouth shape *without* its jaw opening.
        viseme_jaw: ``[V]`` each viseme's jaw opening as a fraction of the AU26 = 5 jaw drop.
        jaw_p: exponent of the jaw soft maximum (:data:`JAW_SOFTMAX_P`).

    Examples:
        >>> rig = TeacherRig.default()
        >>> rig.au_basis.shape, rig.viseme_basis.shape
        (torch.Size([17, 468, 3]), torch.Size([15, 468, 3]))
        >>> aus = torch.zeros(2, 17); aus[1, rig.au_names.index("AU26")] = 5.0
        >>> d = rig.vertex_displacement(aus)            # no speech: silence
        >>> float(d[0].abs().max()), round(float(d[1, 152].norm()), 2)  # the chin moves ≈ 1.4 cm
        (0.0, 0.14)
    """

    mesh: FaceMesh
    au_names: tuple[str, ...]
    au_basis: Tensor
    viseme_names: tuple[str, ...]
    viseme_shape: Tensor
    viseme_jaw: Tensor
    jaw_p: float = JAW_SOFTMAX_P

    @classmethod
    def default(cls, mesh: FaceMesh | None = None) -> "TeacherRig":
        """The toolkit's rig on ``mesh`` (default: the bundled canonical mesh).

        Raises:
            ValueError: ``mesh`` is not the 468-vertex, mirror-symmetric MediaPipe topology
                that the anatomical anchor indices refer to.
        """
        mesh = load_canonical_mesh() if mesh is None else mesh
        v = np.asarray(mesh.vertices)
        if v.shape != (468, 3):
            raise ValueError(
                f"mesh.vertices must be [468, 3] (MediaPipe's canonical topology, whose vertex "
                f"indices the rig's anchors use), got {v.shape}"
            )
        mi = mirror_index(v)
        geo = geodesic_distances(mesh, np.arange(len(v)))  # [468, 468] on the lip/lid-cut mesh
        anchors = _au_anchor_specs(v.astype(np.float64), mi)
        fjaw = jaw_field(mesh, geo=geo)
        basis = []
        for name in AU_NAMES:
            basis.append(fjaw if name == "AU26" else _anchor_field(anchors[name], mesh, mi, geo))
        comps = _component_fields(mesh, mi, geo)
        shapes, jaws = [], []
        for vis in VISEMES:
            if vis not in VISEME_ARTICULATION:
                raise ValueError(f"viseme {vis!r} of audio.VISEMES has no entry in teacher.VISEME_ARTICULATION")
            art = VISEME_ARTICULATION[vis]
            s = np.zeros_like(fjaw)
            for comp, wgt in art.items():
                if comp != "jaw":
                    s = s + wgt * comps[comp]
            shapes.append(s)
            jaws.append(art.get("jaw", 0.0))
        return cls(
            mesh=mesh,
            au_names=tuple(AU_NAMES),
            au_basis=torch.from_numpy(np.stack(basis)).float(),
            viseme_names=tuple(VISEMES),
            viseme_shape=torch.from_numpy(np.stack(shapes)).float(),
            viseme_jaw=torch.tensor(jaws, dtype=torch.float32),
        )

    # ------------------------------------------------------------------ basics
    @property
    def n_aus(self) -> int:
        return len(self.au_names)

    @property
    def n_visemes(self) -> int:
        return len(self.viseme_names)

    @property
    def vertices(self) -> Tensor:
        """``[468, 3]`` canonical (neutral) vertices."""
        return torch.as_tensor(np.asarray(self.mesh.vertices), dtype=torch.float32)

    @property
    def jaw_field(self) -> Tensor:
        """``[468, 3]`` the jaw drop at full opening (= ``au_basis[AU26]``)."""
        return self.au_basis[self.au_names.index("AU26")]

    @property
    def viseme_basis(self) -> Tensor:
        """``[V, 468, 3]`` full viseme mouth shapes: ``viseme_shape + viseme_jaw · F_jaw``."""
        return self.viseme_shape + self.viseme_jaw[:, None, None] * self.jaw_field

    def au_field(self, name: str) -> Tensor:
        """``[468, 3]`` the field of one AU (e.g. ``"AU12"``) at intensity 5."""
        if name not in self.au_names:
            raise ValueError(f"unknown AU {name!r}; expected one of {', '.join(self.au_names)}")
        return self.au_basis[self.au_names.index(name)]

    def viseme_vector(self, name: str, weight: float = 1.0) -> Tensor:
        """``[V]`` viseme weights with ``weight`` on ``name`` and the rest on ``sil``."""
        if name not in self.viseme_names:
            raise ValueError(f"unknown viseme {name!r}; expected one of {', '.join(self.viseme_names)}")
        if not (0.0 <= weight <= 1.0):
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        w = torch.zeros(self.n_visemes)
        w[self.viseme_names.index("sil")] = 1.0 - weight
        w[self.viseme_names.index(name)] += weight
        return w

    # ------------------------------------------------------------------ combination
    def jaw_opening(self, aus: Tensor, viseme_weights: Tensor | None = None) -> Tensor:
        """``[T]`` combined jaw opening ``J = (j_s^p + j_e^p)^(1/p)`` in units of the full drop.

        Args:
            aus: ``[T, 17]`` intensities (0–5).
            viseme_weights: ``[T, V]`` or ``None`` (silence).
        """
        aus, w = self._check_inputs(aus, viseme_weights)
        return self._jaw(aus, w)

    def _jaw(self, aus: Tensor, w: Tensor) -> Tensor:
        j_e = aus[:, self.au_names.index("AU26")] / 5.0
        j_s = w @ self.viseme_jaw
        s = j_e.clamp_min(0) ** self.jaw_p + j_s.clamp_min(0) ** self.jaw_p
        return torch.where(s > 0, s.clamp_min(1e-30) ** (1.0 / self.jaw_p), torch.zeros_like(s))

    def _check_inputs(self, aus, viseme_weights) -> tuple[Tensor, Tensor]:
        aus = _as_float_tensor(aus, "aus")
        if aus.ndim == 1:
            aus = aus[None]
        if aus.ndim != 2 or aus.shape[1] != self.n_aus:
            raise ValueError(f"aus must have shape [T, {self.n_aus}] (AU_NAMES order), got {tuple(aus.shape)}")
        if float(aus.min()) < -1e-6 or float(aus.max()) > 5.0 + 1e-6:
            raise ValueError(
                f"aus must be intensities in [0, 5], got min {float(aus.min()):.3g}, max {float(aus.max()):.3g}; "
                "clip them (or build an AUTrack, which clamps with a warning)"
            )
        T = aus.shape[0]
        if viseme_weights is None:
            w = torch.zeros(T, self.n_visemes)
            w[:, self.viseme_names.index("sil")] = 1.0
        else:
            w = _as_float_tensor(viseme_weights, "viseme_weights")
            if w.ndim == 1:
                w = w[None]
            if w.ndim != 2 or w.shape[1] != self.n_visemes:
                raise ValueError(
                    f"viseme_weights must have shape [T, {self.n_visemes}] (audio.VISEMES order), got {tuple(w.shape)}"
                )
            if w.shape[0] != T:
                raise ValueError(
                    f"aus has {T} frames but viseme_weights has {w.shape[0]}; they must match "
                    "(resample the AU track to the audio's frame count)"
                )
            if float(w.min()) < -1e-6 or float(w.sum(1).max()) > 1.0 + 1e-4:
                raise ValueError("viseme_weights must be >= 0 with rows summing to at most 1 (a mixture of visemes)")
        return aus, w

    def vertex_displacement(self, aus, viseme_weights=None) -> Tensor:
        """Teacher displacement of the 468 mesh vertices.

        ``disp = Σ_{k≠AU26} (a_k/5)·B_k + Σ_v w_v·S_v + J·F_jaw`` with the jaw soft maximum
        ``J = (j_s^p + j_e^p)^(1/p)``, ``j_s = Σ_v w_v·jaw_v``, ``j_e = a_AU26/5``.

        Args:
            aus: ``[T, 17]`` (or ``[17]``) AU intensities in [0, 5], an :class:`AUTrack`,
                array or tensor.
            viseme_weights: ``[T, V]`` (or ``[V]``) non-negative viseme weights (rows sum to
                at most 1; ``None`` = silence).

        Returns:
            ``[T, 468, 3]`` float32 displacements in world units.

        Raises:
            ValueError: wrong shapes, NaN/inf, AUs outside [0, 5], negative weights or
                frame counts that differ.
        """
        aus, w = self._check_inputs(aus, viseme_weights)
        k26 = self.au_names.index("AU26")
        a = (aus / 5.0).clone()
        a[:, k26] = 0.0
        disp = torch.einsum("tk,kvc->tvc", a, self.au_basis)
        disp = disp + torch.einsum("tv,vnc->tnc", w, self.viseme_shape)
        return disp + self._jaw(aus, w)[:, None, None] * self.jaw_field

    def deform(self, aus, viseme_weights=None) -> Tensor:
        """``[T, 468, 3]`` deformed mesh vertices (canonical + :meth:`vertex_displacement`)."""
        return self.vertices + self.vertex_displacement(aus, viseme_weights)

    def sequence(self, phones_or_audio, au_track=None, cameras=None, head=None, **kwargs) -> "TeacherSequence":
        """:func:`sequence` with this rig (see there)."""
        return sequence(phones_or_audio, au_track, cameras, head, rig=self, **kwargs)


# --------------------------------------------------------------------------- measurements
def _verts(vertices) -> Tensor:
    v = torch.as_tensor(vertices, dtype=torch.float32) if not isinstance(vertices, Tensor) else vertices
    if v.shape[-2:] != (468, 3):
        raise ValueError(f"vertices must have shape [..., 468, 3], got {tuple(v.shape)}")
    return v


def mouth_opening(vertices) -> Tensor:
    """Vertical gap between the inner-lip midpoints (vertex 13 above, 14 below), world units.

    ``vertices [..., 468, 3]`` → ``[...]``. The canonical (neutral) mouth is slightly parted
    (0.055 units = 5.5 mm); a closed, pressed mouth goes to ≈ 0 or below.
    """
    v = _verts(vertices)
    return v[..., MOUTH_MID_UPPER, 1] - v[..., MOUTH_MID_LOWER, 1]


@lru_cache(maxsize=1)
def _canonical_mirror() -> np.ndarray:
    return mirror_index(load_canonical_mesh().vertices)


def eye_aperture(vertices) -> Tensor:
    """Mean vertical lid gap of the three central lid pairs, ``[..., 2]`` (right, left eye).

    ``vertices [..., 468, 3]``; the canonical eyes are open by ≈ 0.063 units (6.3 mm); a
    closed eye (AU45 = 5) gives ≈ 0.
    """
    v = _verts(vertices)
    mi = _canonical_mirror()
    out = []
    for up, lo in ((R_UPPER_LID[2:5], R_LOWER_LID[2:5]),
                   (tuple(int(mi[i]) for i in R_UPPER_LID[2:5]), tuple(int(mi[i]) for i in R_LOWER_LID[2:5]))):
        out.append((v[..., list(up), 1] - v[..., list(lo), 1]).mean(-1))
    return torch.stack(out, -1)


# --------------------------------------------------------------------------- speech timing
def _as_phones(phones) -> list[Phone]:
    if isinstance(phones, (str, PathLike)):
        from .audio import read_phone_labels

        return read_phone_labels(phones)
    phones = list(phones)
    for k, p in enumerate(phones):
        if not isinstance(p, Phone):
            raise ValueError(f"phones[{k}] is a {type(p).__name__}; expected audio.Phone(start, end, phone) or a .lab path")
    return phones


def _check_frames(n_frames, fps) -> tuple[int, float]:
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    if not (isinstance(fps, (int, float, np.number)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive frame rate, got {fps!r}")
    return int(n_frames), float(fps)


def viseme_weights(
    phones,
    n_frames: int | None = None,
    fps: float = 25.0,
    *,
    anticipation: float = 0.08,
    carryover: float = 0.05,
    unknown: str = "raise",
) -> np.ndarray:
    """Co-articulated viseme weights from phone labels (Cohen–Massaro dominance).

    Every phone ``i`` (viseme ``v_i``, interval ``[s_i, e_i)``) exerts a dominance

        D_i(t) = α(v_i) · exp(-½ (δ_i(t) / σ)²),   δ_i = s_i - t before the phone (σ = width · anticipation),
                                                   δ_i = t - e_i after it (σ = width · carry-over), 0 inside,

    (a Gaussian-shouldered plateau; ``(α, width)`` = :data:`DOMINANCE`), and the weight of viseme ``v``
    at frame time ``t / fps`` is the share of the dominance of its phones,
    ``W[t, v] = Σ_{i: v_i = v} D_i(t) / Σ_i D_i(t)``. So rows sum to 1, a short consonant with
    low dominance (a /t/ between vowels) barely moves the lips while a /p/ always closes them,
    and the lips start moving towards the next phone ≈ ``anticipation`` seconds before it.
    Frames outside every phone are silence.

    Args:
        phones: a list of :class:`emozone_lite.audio.Phone` or a ``.lab`` path.
        n_frames: ``T``; default ``round(last phone end · fps)`` (audio.features' convention).
        fps: video frame rate.
        anticipation: σ (s) of the dominance before a phone starts (> 0).
        carryover: σ (s) of the dominance after a phone ends (> 0).
        unknown: ``"raise"`` (default) — a phone :func:`~emozone_lite.audio.phone_to_viseme`
            does not know raises ``ValueError``; ``"sil"`` — it counts as silence, with a
            ``UserWarning`` listing the unknown phones.

    Returns:
        ``[T, V]`` float32, rows summing to 1, columns in :data:`emozone_lite.audio.VISEMES` order.

    Examples:
        >>> ph = [Phone(0.0, 0.2, "sil"), Phone(0.2, 0.3, "m"), Phone(0.3, 0.6, "aa")]
        >>> W = viseme_weights(ph, 15)
        >>> W.shape, bool(np.allclose(W.sum(1), 1)), VISEMES[int(W[6].argmax())]
        ((15, 15), True, 'PP')
    """
    phones = _as_phones(phones)
    if unknown not in ("raise", "sil"):
        raise ValueError(f"unknown must be 'raise' or 'sil', got {unknown!r}")
    for name, val in (("anticipation", anticipation), ("carryover", carryover)):
        if not (math.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a positive time in seconds, got {val!r}")
    if n_frames is None:
        if not phones:
            raise ValueError("phones is empty; give n_frames to get an all-silence track")
        n_frames = max(1, int(round(phones[-1].end * fps)))
    n_frames, fps = _check_frames(n_frames, fps)
    V = len(VISEMES)
    t = np.arange(n_frames, dtype=np.float64) / fps
    W = np.zeros((n_frames, V))
    W[:, VISEMES.index("sil")] = 1e-6  # floor: far from every phone, silence
    bad = []
    for p in phones:
        if not (math.isfinite(p.start) and math.isfinite(p.end) and p.end >= p.start):
            raise ValueError(f"phone {p} has a bad interval; need finite start <= end (seconds)")
        try:
            vis = phone_to_viseme(p.phone)
        except ValueError:
            if unknown == "raise":
                raise
            bad.append(p.phone)
            vis = "sil"
        alpha, width = DOMINANCE[vis]
        before = np.clip(p.start - t, 0.0, None) / (anticipation * width)
        after = np.clip(t - p.end, 0.0, None) / (carryover * width)
        W[:, VISEMES.index(vis)] += alpha * np.exp(-0.5 * (before**2 + after**2))
    if bad:
        warnings.warn(f"unknown phones {sorted(set(bad))} treated as silence", UserWarning, stacklevel=2)
    return (W / W.sum(1, keepdims=True)).astype(np.float32)


def viseme_weights_from_audio(
    wave, sr: int, n_frames: int | None = None, fps: float = 25.0, *, smooth_frames: float = 1.0
) -> np.ndarray:
    """A crude viseme-weight *proxy* from the waveform alone (no labels).

    Honest about its limits: it cannot see lip closures (/p b m/) or the tongue; it only maps
    three acoustic cues to mouth postures, per video frame (:func:`emozone_lite.audio.features`
    timing):

    - **loudness** (``energy``, dB below the loudest frame): ``a`` = speaking at all
      (silence below ≈ -33 dB) and ``o`` = openness (loud frames are open vowels);
    - **frication** (mel power above 4 kHz vs below): ``f`` → ``SS`` (teeth together, spread);
    - **second-formant region** (1.5–3 kHz vs 0.3–1.2 kHz): low → rounded (``ρ`` → 1), high →
      spread.

    Weights: ``sil = 1 - a``, ``SS = a·f`` and the rest ``a·(1 - f)`` split over
    ``aa = o(1-ρ)``, ``O = oρ``, ``I = (1-o)(1-ρ)``, ``U = (1-o)ρ``; then a Gaussian blur of
    ``smooth_frames`` in time. Rows sum to 1.

    Args:
        wave: ``[S]`` mono samples.
        sr: sample rate in Hz.
        n_frames: ``T`` (default ``round(duration · fps)``).
        fps: video frame rate.
        smooth_frames: σ of the temporal blur in frames (0: none).

    Returns:
        ``[T, V]`` float32 in :data:`emozone_lite.audio.VISEMES` order.
    """
    import librosa
    from scipy.ndimage import gaussian_filter1d

    from . import audio

    if isinstance(wave, Tensor):
        wave = wave.detach().cpu().numpy()
    feats = audio.features(np.asarray(wave), sr, fps, n_frames=n_frames)
    T = feats.n_frames
    rows = np.clip(np.rint(np.arange(T) * (audio.MEL_FPS / feats.fps)).astype(np.int64), 0, len(feats.log_mel) - 1)
    p = np.exp(feats.log_mel[rows].astype(np.float64))  # [T, n_mels] mel power at each frame
    f_hz = librosa.mel_frequencies(audio.N_MELS + 2, fmin=audio.FMIN, fmax=audio.FMAX)[1:-1]
    band = lambda lo, hi: p[:, (f_hz >= lo) & (f_hz < hi)].mean(1) + 1e-10  # noqa: E731
    fric = 1.0 / (1.0 + np.exp(-(np.log(band(4000, 8000) / band(0, 4000)) + 2.5)))
    rho = 1.0 / (1.0 + np.exp(np.log(band(1500, 3000) / band(300, 1200)) + 3.5))
    e = feats.energy.astype(np.float64)
    a = _smoothstep((e - 0.45) / 0.25)
    o = _smoothstep((e - 0.70) / 0.25)
    W = np.zeros((T, len(VISEMES)))
    col = VISEMES.index
    voiced = a * (1 - fric)
    W[:, col("sil")] = 1 - a
    W[:, col("SS")] = a * fric
    W[:, col("aa")] = voiced * o * (1 - rho)
    W[:, col("O")] = voiced * o * rho
    W[:, col("I")] = voiced * (1 - o) * (1 - rho)
    W[:, col("U")] = voiced * (1 - o) * rho
    if smooth_frames > 0:
        W = gaussian_filter1d(W, float(smooth_frames), axis=0, mode="nearest")
    return (W / W.sum(1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------- sequences
@dataclass(eq=False)
class TeacherSequence:
    """A rendered teacher clip: the ground truth every student is trained and scored on.

    Attributes:
        aus: ``[T, 17]`` AU intensities that drove it.
        viseme_weights: ``[T, V]`` viseme weights that drove it.
        vertex_disp: ``[T, 468, 3]`` teacher displacements of the mesh vertices.
        vertices: ``[T, 468, 3]`` deformed canonical mesh (canonical + ``vertex_disp``).
        means: ``[T, N, 3]`` Gaussian centres (displacements carried through each Gaussian's
            triangle by its barycentrics).
        quats: ``[T, N, 4]`` Gaussian rotations (wxyz), turned with their triangles.
        frames: ``[T, C, H, W, 3]`` float32 renders in [0, 1], or ``None`` (``render=False``).
        landmarks2d: ``[T, C, 468, 2]`` pixel positions of the deformed vertices per camera.
        mouth_opening: ``[T]`` inner-lip gap (:func:`mouth_opening`), world units.
        fps: frame rate.
        cameras: the cameras (length ``C``).
        phones: the phone labels when the speech came from labels, else ``None``.
        source: ``"labels"`` or ``"audio"`` (the viseme proxy).
    """

    aus: Tensor
    viseme_weights: Tensor
    vertex_disp: Tensor
    vertices: Tensor
    means: Tensor
    quats: Tensor
    frames: Tensor | None
    landmarks2d: Tensor
    mouth_opening: Tensor
    fps: float
    cameras: list[Camera]
    phones: list[Phone] | None = None
    source: str = "labels"

    @property
    def n_frames(self) -> int:
        return int(self.aus.shape[0])

    def __repr__(self) -> str:
        f = "none" if self.frames is None else "x".join(map(str, self.frames.shape))
        return (f"TeacherSequence(T={self.n_frames}, N={self.means.shape[1]}, C={len(self.cameras)}, "
                f"frames={f}, fps={self.fps:g}, source={self.source!r})")


def _speech(phones_or_audio, n_frames, fps, sr, unknown) -> tuple[np.ndarray, list[Phone] | None, str]:
    """Viseme weights ``[T, V]`` from labels / a label path / a wav path / ``(wave, sr)`` / a wave."""
    from .audio import load_audio

    x = phones_or_audio
    if isinstance(x, (str, PathLike)):
        p = Path(x)
        if p.suffix.lower() == ".lab":
            phones = _as_phones(p)
            return viseme_weights(phones, n_frames, fps, unknown=unknown), phones, "labels"
        wave = load_audio(p)
        return viseme_weights_from_audio(wave, 16000, n_frames, fps), None, "audio"
    if isinstance(x, tuple) and len(x) == 2 and np.isscalar(x[1]):
        return viseme_weights_from_audio(x[0], int(x[1]), n_frames, fps), None, "audio"
    if isinstance(x, (np.ndarray, Tensor)):
        if sr is None:
            raise ValueError("a bare waveform needs its sample rate: pass sr=… or (wave, sr)")
        return viseme_weights_from_audio(x, sr, n_frames, fps), None, "audio"
    if isinstance(x, (list, tuple)):
        phones = _as_phones(x)
        return viseme_weights(phones, n_frames, fps, unknown=unknown), phones, "labels"
    raise ValueError(
        f"phones_or_audio must be a .lab path, a list of audio.Phone, an audio file path, (wave, sr) "
        f"or a waveform with sr=…; got {type(x).__name__}"
    )


def _au_values(au_track, n_frames: int, fps: float, resample: bool) -> Tensor:
    if au_track is None:
        return torch.zeros(n_frames, len(AU_NAMES))
    if isinstance(au_track, AUTrack):
        track = au_track
    else:
        arr = np.asarray(au_track.detach().cpu() if isinstance(au_track, Tensor) else au_track, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(AU_NAMES):
            raise ValueError(f"au_track must be an AUTrack or [T, {len(AU_NAMES)}] intensities, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("au_track contains NaN or inf values; fill them first (aus.fill_failed_frames)")
        track = AUTrack(arr, fps=fps, strict=True)
    if len(track) != n_frames or not math.isclose(track.fps, fps, rel_tol=1e-6):
        if not resample:
            raise ValueError(
                f"the AU track has {len(track)} frames at {track.fps:g} fps but the speech has {n_frames} frames "
                f"at {fps:g} fps; pass resample_aus=True to resample the AUs to the speech "
                f"(or track.resample(n_frames={n_frames}))"
            )
        track = track.resample(n_frames=n_frames)
    return torch.from_numpy(track.values).float()


def sequence(
    phones_or_audio,
    au_track=None,
    cameras: Camera | Sequence[Camera] | None = None,
    head: "GaussianCloud | None" = None,
    *,
    rig: TeacherRig | None = None,
    render: bool = True,
    backend: str = "auto",
    resample_aus: bool = False,
    fps: float = 25.0,
    n_frames: int | None = None,
    sr: int | None = None,
    background=(1.0, 1.0, 1.0),
    unknown: str = "raise",
    progress: bool = False,
) -> TeacherSequence:
    """Drive the Gaussian head with speech and an AU track, and render it.

    Speech → :func:`viseme_weights` (labels) or :func:`viseme_weights_from_audio` (no labels)
    → ``[T, V]``; the AU track gives ``[T, 17]``; :meth:`TeacherRig.vertex_displacement`
    combines them; each Gaussian's centre follows its triangle (barycentric carry,
    :func:`emozone_lite.head.carry_vertex_displacements`) and its rotation turns with the
    triangle (:func:`emozone_lite.head.carry_triangle_rotations`, measured on the canonical
    mesh); every frame is rendered from all cameras in one ``rasterize`` call.

    **Lengths.** ``T`` is set by the speech: ``n_frames`` if given, else
    ``round(duration · fps)`` (the :func:`emozone_lite.audio.features` convention, so the
    student's audio windows line up with the frames). An AU track of another length (or frame
    rate) raises ``ValueError`` naming both, unless ``resample_aus=True``, which resamples the
    AUs linearly in time to the speech (:meth:`emozone_lite.aus.AUTrack.resample`).

    Args:
        phones_or_audio: a ``.lab`` path, a list of :class:`~emozone_lite.audio.Phone`, an audio
            file path, ``(wave, sr)``, or a waveform ``[S]`` with ``sr``.
        au_track: an :class:`~emozone_lite.aus.AUTrack`, ``[T, 17]`` intensities in [0, 5], or
            ``None`` (neutral expression).
        cameras: one :class:`~emozone_lite.camera.Camera` or a list (one image size).
        head: the Gaussian head (default :func:`emozone_lite.head.load_head`).
        rig: the teacher rig (default :meth:`TeacherRig.default`).
        render: render frames (else ``frames`` is ``None``; everything else is computed).
        backend: renderer backend (:func:`emozone_lite.render.rasterize`).
        resample_aus: resample an AU track whose length differs from the speech.
        fps: video frame rate.
        n_frames: force ``T``.
        sr: sample rate of a bare waveform.
        background: RGB behind the head (white by default; ``None`` = black, premultiplied).
        unknown: how :func:`viseme_weights` treats unknown phones (``"raise"`` / ``"sil"``).
        progress: show a progress bar while rendering.

    Returns:
        A :class:`TeacherSequence`.
    """
    from .head import carry_triangle_rotations, carry_vertex_displacements, load_head
    from .deform import quat_multiply

    rig = TeacherRig.default() if rig is None else rig
    if cameras is None:
        raise ValueError("cameras is required: pass a Camera or a list, e.g. [Camera.orbit(0, width=128, height=128)]")
    cams = [cameras] if isinstance(cameras, Camera) else list(cameras)
    if not cams or not all(isinstance(c, Camera) for c in cams):
        raise ValueError("cameras must be a Camera or a non-empty list of Camera objects")
    viewmats, Ks, width, height = stack_cameras(cams)
    if n_frames is not None:
        n_frames, fps = _check_frames(n_frames, fps)
    W, phones, source = _speech(phones_or_audio, n_frames, fps, sr, unknown)
    T = W.shape[0]
    aus = _au_values(au_track, T, fps, resample_aus)
    w = torch.from_numpy(W)
    disp = rig.vertex_displacement(aus, w)  # [T, 468, 3]
    rest = rig.vertices
    verts = rest + disp

    head = load_head() if head is None else head
    means = head.means.detach()[None] + carry_vertex_displacements(head, disp, rig.mesh.triangles)
    dq = carry_triangle_rotations(head, rest, verts, rig.mesh.triangles)  # [T, N, 4]
    quats = quat_multiply(dq, torch.nn.functional.normalize(head.quats.detach(), dim=-1)[None])

    lm = torch.stack([torch.stack([c.project(verts[t]) for c in cams]) for t in range(T)])  # [T, C, 468, 2]

    frames = None
    if render:
        from tqdm.auto import tqdm

        from .render import rasterize

        bg = None if background is None else torch.as_tensor(background, dtype=torch.float32).reshape(1, 3).expand(len(cams), 3)
        out = torch.empty(T, len(cams), height, width, 3)
        sc, op, col = head.scales.detach(), head.opacities.detach(), head.colors.detach()
        with torch.no_grad():
            for t in tqdm(range(T), desc="teacher", disable=not progress, leave=False):
                img, _, _ = rasterize(means[t], quats[t], sc, op, col, viewmats, Ks, width, height,
                                      backend=backend, backgrounds=bg)
                out[t] = img.clamp(0.0, 1.0).cpu()
        frames = out
    return TeacherSequence(
        aus=aus, viseme_weights=w, vertex_disp=disp, vertices=verts, means=means, quats=quats,
        frames=frames, landmarks2d=lm, mouth_opening=mouth_opening(verts), fps=fps, cameras=cams,
        phones=phones, source=source,
    )
