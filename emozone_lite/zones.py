"""Synergy zones: soft memberships of points on the face in the upper, lower and synergy zones.

SZ-PAB (``emozone_lite.attention``) biases each Gaussian's attention by the zone it
lives in. This module defines those zones on the canonical face mesh
(``emozone_lite.landmarks``) and turns them into **soft memberships** ``w [N, Z]``
(rows sum to 1) for any point set — mesh vertices or Gaussian centres.

Zones and their anchor vertices
-------------------------------
Each coarse zone is the union of named **sub-regions** (sets of canonical-mesh
vertex indices)::

    upper   = brows + eyes + forehead + glabella
    lower   = lips + chin + jaw
    synergy = cheeks + nose + nasolabial

``lips``, ``eyes`` (left + right) and ``brows`` (left + right) are MediaPipe's own
landmark regions stored with the mesh. The others are picked **by geometry** from
reference values measured on those stored regions (world units, +x = the face's
left, +y up; all thresholds below are in these units, 0.1 = 1 cm), see
:func:`subregion_indices`:

- ``forehead``: vertices above the highest eyebrow vertex.
- ``glabella``: between the brows — ``|x|`` inside the inner brow ends (+0.02) and
  ``y`` between the top of the eyes and the top of the brows.
- ``chin``: below the lowest lip vertex (−0.04) and ``|x|`` within the mouth
  corners (+0.05).
- ``jaw``: below the mouth corners (−0.06) and outside them (``|x|`` > corner + 0.05),
  i.e. the lateral mandible down to the face oval.
- ``nose``: ``|x|`` inside the inner eye corners, ``y`` from just above the upper
  lip (+0.1, leaving the philtrum out) up to the bottom of the eyes.
- ``nasolabial``: within 0.06 (in the front view) of the segment from the nose wing
  (the widest ``nose`` vertex below the nose's mid-height) to 0.05 outside the mouth
  corner, on both sides, but more than 0.06 from any lip vertex.
- ``cheeks``: lateral to the nose (``|x|`` > inner eye corner + 0.05) up to the eye's
  outer corner + 0.15, ``y`` from the mouth corners to 0.08 below the eyes, not on
  the face oval.

Sub-regions are disjoint: a vertex claimed by an earlier one in
:data:`SUBZONE_NAMES` order (stored regions first) is not repeated later. Vertices
in no sub-region (temples, the sides of the face, the philtrum) still get a
membership — from their distances to the anchors.

Soft membership
---------------
For a point ``x`` and zone ``z`` with anchor vertices ``A_z``::

    d_z(x) = min_{a in A_z} ||x - a||,      w_z(x) = softmax_z(-d_z(x)^2 / falloff^2)

``falloff`` (world units) is a temperature: large → every zone shares every point,
``falloff → 0`` → the hard nearest-zone partition (:func:`hard_membership`).
For the Gaussian head use :func:`cloud_membership`: the head is personalised to a photo,
so each Gaussian is placed back on the canonical mesh through its triangle and
barycentrics before measuring distances.

AU priors
---------
:data:`AU_SUBREGIONS` lists, per AU, the sub-regions its muscles move (FACS). The
coarse zone of each AU follows docs/design.md: AU01 02 04 05 07 45 → upper; AU15 17 20 23
25 26 → lower; AU06 09 10 12 14 → synergy (each synergy AU also spills onto the coarse
zone of its other sub-regions, e.g. AU12 onto ``lower`` through the lips).
:func:`au_zone_prior` gives the table ``[Z, 17]`` (columns sum to 1) and
:func:`au_anatomical_prior` the additive logit prior ``P [Z, 17]`` used by SZ-PAB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from .aus import AU_NAMES, FACS
from .checks import as_float_tensor, check_finite, check_shape
from .landmarks import load_canonical_mesh

__all__ = [
    "ZONE_NAMES",
    "SUBZONE_NAMES",
    "SUBZONE_TO_ZONE",
    "AU_NAMES",
    "AU_ZONE",
    "AU_SUBREGIONS",
    "DEFAULT_FALLOFF",
    "ZONE_COLORS",
    "subregion_indices",
    "zone_indices",
    "zone_anchors",
    "soft_membership",
    "hard_membership",
    "mesh_points",
    "cloud_membership",
    "ZoneMembership",
    "au_zone_prior",
    "au_anatomical_prior",
    "zone_colors",
    "plot_zones_2d",
    "plot_zones_3d",
]

#: The three coarse zones the model uses, in this order (columns of ``w [N, 3]``).
ZONE_NAMES: tuple[str, ...] = ("upper", "lower", "synergy")

#: Finer named sub-regions; order sets precedence when building disjoint vertex sets.
SUBZONE_NAMES: tuple[str, ...] = (
    "lips",
    "eyes",
    "brows",  # MediaPipe's stored landmark regions
    "chin",
    "jaw",
    "forehead",
    "glabella",
    "nasolabial",
    "nose",
    "cheeks",  # by geometry
)

#: Coarse zone of each sub-region.
SUBZONE_TO_ZONE: dict[str, str] = {
    "brows": "upper",
    "eyes": "upper",
    "forehead": "upper",
    "glabella": "upper",
    "lips": "lower",
    "chin": "lower",
    "jaw": "lower",
    "cheeks": "synergy",
    "nose": "synergy",
    "nasolabial": "synergy",
}

# ``AU_NAMES`` (imported above) is ``emozone_lite.aus.AU_NAMES``: the 17 OpenFace intensity
# AUs in the toolkit's fixed order, defined there once and re-exported here.

#: Primary coarse zone of each AU (docs/design.md, "Zones"), in :data:`AU_NAMES` order: the
#: ``zone`` column of the FACS table (``aus.FACS[au].zone``), read from there.
AU_ZONE: dict[str, str] = {a: FACS[a].zone for a in AU_NAMES}

#: Sub-regions each AU moves (FACS muscle sites), main one first.
AU_SUBREGIONS: dict[str, tuple[str, ...]] = {
    "AU01": ("brows", "forehead"),  # inner brow raiser (frontalis, medial)
    "AU02": ("brows", "forehead"),  # outer brow raiser (frontalis, lateral)
    "AU04": ("brows", "glabella"),  # brow lowerer (corrugator, procerus)
    "AU05": ("eyes",),  # upper lid raiser
    "AU06": ("cheeks", "eyes"),  # cheek raiser (orbicularis oculi, orbital)
    "AU07": ("eyes",),  # lid tightener
    "AU09": ("nose", "glabella"),  # nose wrinkler (levator labii alaeque nasi)
    "AU10": ("nasolabial", "lips"),  # upper lip raiser
    "AU12": ("cheeks", "nasolabial", "lips"),  # lip corner puller (zygomaticus major)
    "AU14": ("cheeks", "lips"),  # dimpler (buccinator)
    "AU15": ("lips", "chin"),  # lip corner depressor
    "AU17": ("chin", "lips"),  # chin raiser (mentalis)
    "AU20": ("lips", "jaw"),  # lip stretcher (risorius, platysma)
    "AU23": ("lips",),  # lip tightener
    "AU25": ("lips",),  # lips part
    "AU26": ("jaw", "chin"),  # jaw drop
    "AU45": ("eyes",),  # blink
}

#: Default membership temperature in world units (0.06 = 6 mm): a soft band a few Gaussians wide.
DEFAULT_FALLOFF: float = 0.06

#: RGB colours of the coarse zones (upper blue, lower red, synergy green).
ZONE_COLORS: dict[str, tuple[float, float, float]] = {
    "upper": (0.12, 0.47, 0.71),
    "lower": (0.84, 0.15, 0.16),
    "synergy": (0.17, 0.63, 0.17),
}

_FINE_COLORS = (  # tab10
    (0.12, 0.47, 0.71),
    (1.0, 0.5, 0.05),
    (0.17, 0.63, 0.17),
    (0.84, 0.15, 0.16),
    (0.58, 0.4, 0.74),
    (0.55, 0.34, 0.29),
    (0.89, 0.47, 0.76),
    (0.5, 0.5, 0.5),
    (0.74, 0.74, 0.13),
    (0.09, 0.75, 0.81),
)


# --------------------------------------------------------------------------- regions
@lru_cache(maxsize=1)
def _subregions() -> dict[str, np.ndarray]:
    mesh = load_canonical_mesh()
    v, reg = mesh.vertices.astype(np.float64), mesh.regions
    y, ax = v[:, 1], np.abs(v[:, 0])
    lips = reg["lips"]
    eyes = np.concatenate([reg["left_eye"], reg["right_eye"]])
    brows = np.concatenate([reg["left_eyebrow"], reg["right_eyebrow"]])
    oval = np.zeros(len(v), bool)
    oval[reg["face_oval"]] = True

    # Reference values measured on the stored regions.
    brow_top, brow_x_in = y[brows].max(), ax[brows].min()
    eye_top, eye_bot = y[eyes].max(), y[eyes].min()
    eye_x_in, eye_x_out = ax[eyes].min(), ax[eyes].max()
    lip_top, lip_bot = y[lips].max(), y[lips].min()
    corner = lips[np.argmax(ax[lips])]
    corner_x, corner_y = ax[corner], y[corner]

    masks: dict[str, np.ndarray] = {}
    masks["chin"] = (y < lip_bot - 0.04) & (ax < corner_x + 0.05)
    masks["jaw"] = (y < corner_y - 0.06) & (ax > corner_x + 0.05)
    masks["forehead"] = y > brow_top
    masks["glabella"] = (ax < brow_x_in + 0.02) & (y > eye_top) & (y <= brow_top)
    nose = (ax < eye_x_in) & (y > lip_top + 0.1) & (y < eye_bot)
    masks["nose"] = nose
    # Nasolabial fold: a band along nose wing → just outside the mouth corner (front view).
    nose_idx = np.flatnonzero(nose)
    low_nose = nose_idx[y[nose_idx] < 0.5 * (y[nose_idx].min() + y[nose_idx].max())]
    wing = np.array([ax[low_nose].max(), y[low_nose[np.argmax(ax[low_nose])]]])
    end = np.array([corner_x + 0.05, corner_y])
    p = np.stack([ax, y], 1)
    t = np.clip(((p - wing) @ (end - wing)) / ((end - wing) @ (end - wing)), 0.0, 1.0)
    dist = np.linalg.norm(p - (wing + t[:, None] * (end - wing)), axis=1)
    lip_dist = np.linalg.norm(v[:, None] - v[lips][None], axis=-1).min(1)
    masks["nasolabial"] = (dist < 0.06) & (lip_dist > 0.06)
    masks["cheeks"] = (ax > eye_x_in + 0.05) & (ax < eye_x_out + 0.15) & (y > corner_y) & (y < eye_bot - 0.08) & ~oval

    out: dict[str, np.ndarray] = {}
    taken = np.zeros(len(v), bool)
    for name in SUBZONE_NAMES:
        if name == "lips":
            m = np.zeros(len(v), bool)
            m[lips] = True
        elif name == "eyes":
            m = np.zeros(len(v), bool)
            m[eyes] = True
        elif name == "brows":
            m = np.zeros(len(v), bool)
            m[brows] = True
        else:
            m = masks[name]
        m = m & ~taken
        taken |= m
        out[name] = np.flatnonzero(m).astype(np.int64)
    return out


def subregion_indices() -> dict[str, np.ndarray]:
    """Canonical-mesh vertex indices of each sub-region (copies; disjoint).

    Returns:
        name → ``[k]`` int64 indices into the 468 vertices, in :data:`SUBZONE_NAMES` order.

    Examples:
        >>> r = subregion_indices()
        >>> list(r)[:3], len(r["lips"])
        (['lips', 'eyes', 'brows'], 40)
    """
    return {k: v.copy() for k, v in _subregions().items()}


def zone_indices() -> dict[str, np.ndarray]:
    """Canonical-mesh vertex indices (anchors) of each coarse zone in :data:`ZONE_NAMES`.

    Returns:
        ``{"upper": [k_u], "lower": [k_l], "synergy": [k_s]}`` int64, disjoint.
    """
    sub = _subregions()
    return {z: np.sort(np.concatenate([sub[s] for s in SUBZONE_NAMES if SUBZONE_TO_ZONE[s] == z])) for z in ZONE_NAMES}


def zone_anchors(zones: str | Mapping | None = None) -> tuple[tuple[str, ...], list[Tensor]]:
    """Resolve a zone specification to names and anchor points.

    Args:
        zones: ``None`` / ``"coarse"`` → the 3 coarse zones; ``"fine"`` → the
            sub-regions; or a mapping name → vertex indices ``[k]`` (ints, into the
            canonical mesh) or anchor points ``[k, 3]`` (floats, world units).

    Returns:
        ``(names, anchors)`` with ``anchors[z]: [k_z, 3]`` float32 tensors.
    """
    verts = torch.from_numpy(load_canonical_mesh().vertices)
    if zones is None or (isinstance(zones, str) and zones == "coarse"):
        spec: Mapping = zone_indices()
    elif isinstance(zones, str) and zones == "fine":
        spec = _subregions()
    elif isinstance(zones, Mapping):
        spec = zones
    else:
        raise ValueError(f"zones must be None, 'coarse', 'fine' or a mapping name -> indices/points, got {zones!r}")
    if len(spec) == 0:
        raise ValueError("zones is empty; give at least one zone")
    names, anchors = [], []
    for name, a in spec.items():
        t = torch.as_tensor(np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a))
        if t.numel() == 0:
            raise ValueError(f"zone {name!r} has no anchors; give at least one vertex index or point")
        if t.dtype in (torch.int16, torch.int32, torch.int64, torch.uint8):
            check_shape(t, f"zone {name!r}: vertex indices", ("k",))
            if int(t.min()) < 0 or int(t.max()) >= len(verts):
                raise ValueError(
                    f"zone {name!r}: vertex indices must lie in [0, {len(verts)}), got range [{int(t.min())}, {int(t.max())}]"
                )
            t = verts[t.long()]
        elif t.is_floating_point():
            check_shape(t, f"zone {name!r}: anchor points", ("k", 3))
            check_finite(t, f"zone {name!r}: anchor points")
        else:
            raise ValueError(f"zone {name!r}: expected integer vertex indices or float points, got dtype {t.dtype}")
        names.append(str(name))
        anchors.append(t.float())
    return tuple(names), anchors


# --------------------------------------------------------------------------- membership
def _as_points(points, name: str = "points") -> Tensor:
    """``points [N, 3]`` as a float tensor (float32 for arrays), checked with ``emozone_lite.checks``."""
    p = as_float_tensor(points, name)
    check_shape(p, name, ("N", 3))
    return check_finite(p, name, "clean the point set first")


def _check_falloff(falloff) -> Tensor | float:
    f = falloff.detach() if isinstance(falloff, Tensor) else torch.as_tensor(float(falloff))
    if f.numel() != 1:
        raise ValueError(f"falloff must be a scalar, got shape {tuple(f.shape)}")
    if not bool(torch.isfinite(f)) or float(f) <= 0:
        raise ValueError(
            f"falloff must be a positive finite length in world units (e.g. {DEFAULT_FALLOFF}), got {float(f)}"
        )
    return falloff if isinstance(falloff, Tensor) else float(falloff)


def _zone_sq_dists(points: Tensor, anchors: Sequence[Tensor], chunk: int = 8192) -> Tensor:
    """``[N, Z]`` squared distance from each point to the nearest anchor of each zone."""
    cols = []
    for a in anchors:
        a = a.to(points)
        parts = [torch.cdist(points[s : s + chunk], a).amin(dim=1) for s in range(0, points.shape[0], chunk)]
        d = torch.cat(parts) if parts else points.new_zeros(0)
        cols.append(d.square())
    return torch.stack(cols, dim=1)


def _membership_from_sq_dists(d2: Tensor, falloff) -> Tensor:
    return torch.softmax(-d2 / (falloff * falloff), dim=1)


def soft_membership(points, falloff: float | Tensor = DEFAULT_FALLOFF, zones: str | Mapping | None = None) -> Tensor:
    """Soft zone membership ``w [N, Z]`` of points (rows sum to 1).

    ``w_iz = softmax_z(-d_iz^2 / falloff^2)`` with ``d_iz`` the distance from point
    ``i`` to the nearest anchor vertex of zone ``z`` (see the module docstring).

    Args:
        points: ``[N, 3]`` world-space points (tensor or array) — mesh vertices or
            Gaussian centres. Differentiable when a float tensor.
        falloff: temperature in world units (> 0); smaller → harder zones.
        zones: zone specification, see :func:`zone_anchors` (default: the 3 coarse zones).

    Returns:
        ``[N, Z]`` tensor on the points' device (float32 for arrays).

    Raises:
        ValueError: wrong shape, NaN/inf points, non-positive falloff, bad zones.

    Examples:
        >>> from emozone_lite.landmarks import load_canonical_mesh
        >>> w = soft_membership(load_canonical_mesh().vertices)
        >>> w.shape, bool(torch.allclose(w.sum(1), torch.ones(468)))
        (torch.Size([468, 3]), True)
    """
    p = _as_points(points)
    f = _check_falloff(falloff)
    _, anchors = zone_anchors(zones)
    return _membership_from_sq_dists(_zone_sq_dists(p, anchors), f)


def hard_membership(weights) -> Tensor:
    """Zone label ``[N]`` (argmax over zones, int64, on the weights' device) of soft weights ``[N, Z]``."""
    w = _as_weights(weights)
    return w.argmax(dim=1).to(weights.device if isinstance(weights, Tensor) else "cpu")


def mesh_points(tri_index, bary, vertices=None) -> Tensor:
    """Points on the canonical mesh from triangle indices and barycentric coordinates.

    The Gaussian head (``emozone_lite.head``) is *personalised*: its mesh was moved to
    match a photo, so its centres sit up to ~2 cm away from the canonical mesh the
    zones are defined on. Each Gaussian remembers its triangle and barycentrics, so its
    place on the canonical face is ``Σ_k bary_k · V[tri_k]``.

    Args:
        tri_index: ``[N]`` triangle indices into the canonical mesh (898 triangles).
        bary: ``[N, 3]`` barycentric coordinates (rows sum to 1).
        vertices: optional ``[468, 3]`` vertices (default: the canonical mesh).

    Returns:
        ``[N, 3]`` float32 points in world units.
    """
    mesh = load_canonical_mesh()
    V = torch.as_tensor(
        mesh.vertices
        if vertices is None
        else np.asarray(vertices.detach().cpu() if isinstance(vertices, Tensor) else vertices),
        dtype=torch.float32,
    )
    T = torch.from_numpy(mesh.triangles)
    check_shape(V, "vertices", (len(mesh.vertices), 3))
    ti = torch.as_tensor(np.asarray(tri_index.cpu() if isinstance(tri_index, Tensor) else tri_index))
    b = torch.as_tensor(np.asarray(bary.detach().cpu() if isinstance(bary, Tensor) else bary), dtype=torch.float32)
    if ti.ndim != 1 or ti.is_floating_point() and bool((ti != ti.round()).any()):
        raise ValueError(f"tri_index must be integer triangle indices of shape [N], got {tuple(ti.shape)} {ti.dtype}")
    ti = ti.long()
    check_shape(b, "bary", ("N", 3), N=len(ti))
    if len(ti) and (int(ti.min()) < 0 or int(ti.max()) >= len(T)):
        raise ValueError(f"tri_index must lie in [0, {len(T)}), got range [{int(ti.min())}, {int(ti.max())}]")
    check_finite(b, "bary")
    return (V[T[ti]] * b[..., None]).sum(1)


def cloud_membership(cloud, falloff: float | Tensor = DEFAULT_FALLOFF, zones: str | Mapping | None = None) -> Tensor:
    """Soft zone membership ``[N, Z]`` of a ``GaussianCloud``'s Gaussians.

    Uses each Gaussian's place on the canonical mesh (:func:`mesh_points` from
    ``extras["tri_index"]`` and ``extras["bary"]``) when the cloud has them — so the
    zones follow the face's anatomy on a personalised head — and its centre
    ``cloud.means`` otherwise.

    Returns:
        ``[N, Z]`` on the cloud's device.
    """
    ex = getattr(cloud, "extras", {}) or {}
    if "tri_index" in ex and "bary" in ex:
        pts = mesh_points(ex["tri_index"], ex["bary"])
    else:
        pts = cloud.means.detach().cpu()
    return soft_membership(pts, falloff=falloff, zones=zones).to(cloud.means.device)


class ZoneMembership(nn.Module):
    """Soft zone membership as a module; anchors are buffers (move with ``.to``).

    Args:
        zones: zone specification, see :func:`zone_anchors`.
        falloff: temperature in world units (> 0).
        learnable_falloff: make ``log(falloff)`` a parameter.

    Shapes:
        ``forward(points [N, 3]) -> [N, Z]``.

    Examples:
        >>> zm = ZoneMembership()
        >>> zm.names, zm(torch.zeros(4, 3)).shape
        (('upper', 'lower', 'synergy'), torch.Size([4, 3]))
    """

    def __init__(
        self, zones: str | Mapping | None = None, falloff: float = DEFAULT_FALLOFF, learnable_falloff: bool = False
    ) -> None:
        super().__init__()
        _check_falloff(falloff)
        self.names, anchors = zone_anchors(zones)
        self.register_buffer("anchors", torch.cat(anchors))
        self.register_buffer(
            "anchor_zone", torch.cat([torch.full((len(a),), z, dtype=torch.long) for z, a in enumerate(anchors)])
        )
        log_f = torch.tensor(float(np.log(falloff)))
        if learnable_falloff:
            self.log_falloff = nn.Parameter(log_f)
        else:
            self.register_buffer("log_falloff", log_f)

    @property
    def n_zones(self) -> int:
        return len(self.names)

    @property
    def falloff(self) -> Tensor:
        return self.log_falloff.exp()

    def forward(self, points) -> Tensor:
        p = _as_points(points)
        anchors = [self.anchors[self.anchor_zone == z] for z in range(self.n_zones)]
        return _membership_from_sq_dists(_zone_sq_dists(p, anchors), self.falloff.to(p))

    def extra_repr(self) -> str:
        return f"names={self.names}, falloff={float(self.falloff):.3g}, anchors={len(self.anchors)}"


# --------------------------------------------------------------------------- AU priors
def _check_zone_names(zones: Sequence[str] | None) -> tuple[str, ...]:
    names = ZONE_NAMES if zones is None else tuple(zones)
    if not names:
        raise ValueError("zones is empty; give zone names such as ZONE_NAMES")
    bad = [z for z in names if z not in ZONE_NAMES and z not in SUBZONE_NAMES]
    if bad:
        raise ValueError(
            f"unknown zone name(s) {bad}; use names from ZONE_NAMES {ZONE_NAMES} or SUBZONE_NAMES {SUBZONE_NAMES}"
        )
    return names


def au_zone_prior(zones: Sequence[str] | None = None, spill: float = 0.25) -> Tensor:
    """Which zone each AU acts on: ``A [Z, 17]``, each column sums to 1 (or is all 0).

    For a coarse zone name, AU ``k`` puts ``1 - spill`` on its primary zone
    (:data:`AU_ZONE`) and ``spill`` spread over the other coarse zones its
    sub-regions (:data:`AU_SUBREGIONS`) belong to (no spill when there are none —
    e.g. AU01 stays fully "upper"; AU12 gives ``spill`` to "lower" through the
    lips). For sub-region names, AU ``k`` is uniform over its sub-regions. A column
    is renormalised over the zones asked for; an AU acting on none of them gets a
    zero column.

    Args:
        zones: zone names (default :data:`ZONE_NAMES`), coarse or sub-region names.
        spill: share of a synergy AU given to its secondary coarse zone(s), in [0, 1).

    Returns:
        ``[Z, 17]`` float32, AU order :data:`AU_NAMES`.

    Examples:
        >>> A = au_zone_prior()
        >>> A[:, AU_NAMES.index("AU12")].tolist()
        [0.0, 0.25, 0.75]
    """
    names = _check_zone_names(zones)
    if not (0.0 <= float(spill) < 1.0):
        raise ValueError(f"spill must lie in [0, 1), got {spill}")
    A = torch.zeros(len(names), len(AU_NAMES))
    for k, au in enumerate(AU_NAMES):
        primary = AU_ZONE[au]
        secondary = sorted({SUBZONE_TO_ZONE[s] for s in AU_SUBREGIONS[au]} - {primary})
        coarse = {primary: 1.0 - spill if secondary else 1.0}
        for s in secondary:
            coarse[s] = spill / len(secondary)
        fine = {s: 1.0 / len(AU_SUBREGIONS[au]) for s in AU_SUBREGIONS[au]}
        for z, name in enumerate(names):
            A[z, k] = coarse.get(name, 0.0) if name in ZONE_NAMES else fine.get(name, 0.0)
    total = A.sum(0, keepdim=True)
    return torch.where(total > 0, A / total.clamp_min(1e-12), A)


def au_anatomical_prior(zones: Sequence[str] | None = None, strength: float = 4.0, spill: float = 0.25) -> Tensor:
    """Additive anatomical logit prior ``P [Z, 17]`` for the AU tokens in SZ-PAB.

    ``P[z, k] = strength · (A[z, k] / max_z' A[z', k] − 1)`` with ``A`` from
    :func:`au_zone_prior`: 0 on the zone an AU mainly acts on, ``−strength`` on a
    zone it does not touch, in between for spill. All entries are ≤ 0, so ``P``
    only re-ranks AU tokens *within* a zone (AU01 for the brows, AU26 for the
    jaw); the balance between audio and AU tokens is the bias table's job. SZ-PAB
    combines it per Gaussian as ``Σ_z w_iz P[z, k]`` (a soft ``P[z(i), k]``).

    Args:
        zones: zone names (default :data:`ZONE_NAMES`).
        strength: logit penalty (≥ 0) for an AU on a zone it does not act on.
        spill: see :func:`au_zone_prior`.

    Returns:
        ``[Z, 17]`` float32.

    Examples:
        >>> P = au_anatomical_prior()
        >>> P[:, AU_NAMES.index("AU01")].tolist()   # upper, lower, synergy
        [0.0, -4.0, -4.0]
    """
    if not np.isfinite(strength) or strength < 0:
        raise ValueError(f"strength must be a finite number >= 0, got {strength}")
    A = au_zone_prior(zones, spill)
    peak = A.amax(0, keepdim=True)
    return torch.where(peak > 0, strength * (A / peak.clamp_min(1e-12) - 1.0), torch.full_like(A, -float(strength)))


# --------------------------------------------------------------------------- colours and plots
def _as_weights(weights) -> Tensor:
    """Memberships ``[N, Z]`` as a float32 CPU tensor (detached), checked."""
    w = as_float_tensor(weights.detach().cpu() if isinstance(weights, Tensor) else weights, "weights").float()
    check_shape(w, "weights", ("N", "Z"))
    return check_finite(w, "weights")


def _palette(n_zones: int, names: Sequence[str] | None = None) -> Tensor:
    if names is not None and all(n in ZONE_COLORS for n in names):
        return torch.tensor([ZONE_COLORS[n] for n in names])
    if n_zones == len(ZONE_NAMES) and names is None:
        return torch.tensor([ZONE_COLORS[n] for n in ZONE_NAMES])
    return torch.tensor([_FINE_COLORS[z % len(_FINE_COLORS)] for z in range(n_zones)])


def zone_colors(weights, palette=None, names: Sequence[str] | None = None) -> Tensor:
    """RGB colour ``[N, 3]`` per point: the membership-weighted mix of zone colours.

    Args:
        weights: ``[N, Z]`` soft memberships, or ``[N]`` integer zone labels.
        palette: optional ``[Z, 3]`` RGB colours in [0, 1]; default :data:`ZONE_COLORS`
            for the 3 coarse zones (upper blue, lower red, synergy green), tab10 otherwise.
        names: zone names, to pick colours from :data:`ZONE_COLORS` by name.

    Returns:
        ``[N, 3]`` float32 in [0, 1] on the weights' device (ready as Gaussian colours).
    """
    if np.ndim(weights) == 1:
        labels = torch.as_tensor(np.asarray(weights.cpu() if isinstance(weights, Tensor) else weights)).long()
        if names is not None:
            n_z = len(names)
        elif palette is not None:
            n_z = len(palette)
        else:
            n_z = max(int(labels.max()) + 1 if labels.numel() else 0, len(ZONE_NAMES))
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_z):
            raise ValueError(
                f"zone labels must lie in [0, {n_z}), got range [{int(labels.min())}, {int(labels.max())}]"
            )
        w = torch.nn.functional.one_hot(labels, n_z).float()
    else:
        w = _as_weights(weights)
    pal = _palette(w.shape[1], names) if palette is None else torch.as_tensor(np.asarray(palette), dtype=torch.float32)
    if pal.shape != (w.shape[1], 3):
        raise ValueError(f"palette must have shape [Z={w.shape[1]}, 3], got {tuple(pal.shape)}")
    device = weights.device if isinstance(weights, Tensor) else "cpu"
    return (w @ pal).clamp(0.0, 1.0).to(device)


def _default_names(names: Sequence[str] | None, n_z: int) -> tuple[str, ...]:
    if names is None:
        return ZONE_NAMES if n_z == len(ZONE_NAMES) else tuple(f"zone {z}" for z in range(n_z))
    if len(names) != n_z:
        raise ValueError(f"names has {len(names)} entries but the weights have Z={n_z} zones")
    return tuple(names)


def _points_np(points) -> np.ndarray:
    return _as_points(points).detach().cpu().numpy()


def plot_zones_2d(
    points,
    weights,
    names: Sequence[str] | None = None,
    ax=None,
    size: float = 12.0,
    title: str | None = None,
    hard: bool = False,
):
    """Front view (x right, y up) of points coloured by zone membership.

    Args:
        points: ``[N, 3]`` world-space points.
        weights: ``[N, Z]`` soft memberships (or ``[N]`` labels).
        names: zone names for the legend (default :data:`ZONE_NAMES` when Z = 3).
        ax: optional matplotlib Axes to draw into.
        size: marker size.
        title: axes title.
        hard: colour by the argmax zone instead of the soft mix.

    Returns:
        The matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    p = _points_np(points)
    labels = np.ndim(weights) == 1
    w = weights if labels else _as_weights(weights)
    if len(p) != len(w):
        raise ValueError(f"points [N={len(p)}, 3] and weights [{len(w)}, ...] must have the same N")
    n_z = (len(names) if names is not None else len(ZONE_NAMES)) if labels else w.shape[1]
    names = _default_names(names, n_z)
    if hard and not labels:
        w = hard_membership(w)
    cols = zone_colors(w, names=names).numpy()
    if ax is None:  # a Figure outside pyplot: shown once when returned, never leaked
        fig = Figure(figsize=(4.2, 4.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    order = np.argsort(p[:, 2])  # draw far points first
    ax.scatter(p[order, 0], p[order, 1], c=cols[order], s=size, linewidths=0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (face's left →)")
    ax.set_ylabel("y (up)")
    pal = zone_colors(torch.eye(n_z), names=names).numpy()
    ax.legend(
        handles=[Line2D([], [], marker="o", ls="", color=pal[z], label=names[z]) for z in range(n_z)],
        loc="upper right",
        fontsize=7,
        frameon=False,
    )
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_zones_3d(
    points,
    weights,
    names: Sequence[str] | None = None,
    size: float = 2.5,
    title: str | None = None,
    max_points: int | None = 20000,
):
    """Interactive 3D scatter (plotly) of points coloured by zone membership.

    Hovering a point shows its memberships. Uses plotly's default renderer.

    Args:
        points: ``[N, 3]`` world-space points.
        weights: ``[N, Z]`` soft memberships.
        names: zone names (default :data:`ZONE_NAMES` when Z = 3).
        size: marker size in pixels.
        title: figure title.
        max_points: evenly subsample to at most this many points (None = all).

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    p = _points_np(points)
    w = _as_weights(weights).numpy()
    if len(p) != len(w):
        raise ValueError(f"points [N={len(p)}, 3] and weights [{len(w)}, Z] must have the same N")
    n_z = w.shape[1]
    names = _default_names(names, n_z)
    if max_points is not None and len(p) > max_points:
        keep = np.linspace(0, len(p) - 1, max_points).round().astype(int)
        p, w = p[keep], w[keep]
    cols = (zone_colors(torch.from_numpy(w), names=names).numpy() * 255).round().astype(int)
    text = ["<br>".join(f"{names[z]}: {w[i, z]:.2f}" for z in range(n_z)) for i in range(len(p))]
    fig = go.Figure(
        go.Scatter3d(
            x=p[:, 0],
            y=p[:, 1],
            z=p[:, 2],
            mode="markers",
            text=text,
            hoverinfo="text",
            marker=dict(size=size, color=[f"rgb({r},{g},{b})" for r, g, b in cols]),
        )
    )
    fig.update_layout(
        title=title,
        height=480,
        margin=dict(l=0, r=0, t=30 if title else 0, b=0),
        scene=dict(aspectmode="data", camera=dict(eye=dict(x=0.0, y=0.3, z=1.8), up=dict(x=0, y=1, z=0))),
    )
    return fig
