"""The teacher rig: AU and articulatory displacement fields, the shared jaw, and how they combine.

- :func:`_au_anchor_specs` — the anatomical anchors of every AU but AU26, turned into
  fields ``[468, 3]`` by :func:`~emozone_lite.teacher.anatomy._anchor_field`;
- :func:`jaw_field` — AU26 as a linearised rotation of the mandible about
  :data:`JAW_PIVOT`, weighted by :func:`~emozone_lite.teacher.anatomy.mandible_mask`;
- :func:`_component_fields` — the five non-jaw articulatory components the visemes mix
  (:data:`~emozone_lite.teacher.speech.VISEME_ARTICULATION`);
- :class:`TeacherRig` — all of them, with the soft-max jaw
  ``J = (j_s^p + j_e^p)^(1/p)`` (:data:`JAW_SOFTMAX_P`) that merges speech and AU26;
- :func:`mouth_opening`, :func:`eye_aperture` — what the rig's tests and notebooks measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..audio import VISEMES
from ..aus import AU_NAMES
from ..checks import as_float_tensor, check_finite, check_shape, shape_error
from ..landmarks import FaceMesh, load_canonical_mesh
from .anatomy import (
    CHIN_BOSS,
    MOUTH_MID_LOWER,
    MOUTH_MID_UPPER,
    R_CHEEK,
    R_EYE_CORNERS,
    R_INNER_BROW,
    R_LIP_CORNERS,
    R_LOWER_INNER_LIP,
    R_LOWER_LID,
    R_LOWER_OUTER_LIP,
    R_MID_BROW,
    R_NASOLABIAL,
    R_NOSE_SIDE,
    R_OUTER_BROW,
    R_UPPER_INNER_LIP,
    R_UPPER_LID,
    R_UPPER_OUTER_LIP,
    _Anchor,
    _anchor_field,
    _canonical_mirror,
    _pin,
    geodesic_distances,
    mandible_mask,
    mirror_index,
)
from .speech import VISEME_ARTICULATION

if TYPE_CHECKING:  # pragma: no cover
    from .sequences import TeacherSequence

__all__ = [
    "TeacherRig",
    "jaw_field",
    "jaw_soft_max",
    "mouth_opening",
    "eye_aperture",
    "JAW_SOFTMAX_P",
    "JAW_PIVOT",
    "JAW_ANGLE",
    "AU_MAGNITUDES",
]

#: Each AU's largest vertex displacement at intensity 5 (FACS "E", maximum), millimetres, and
#: what moves. The sizes follow published 3D measurements of maximal voluntary facial motion in
#: healthy adults — brow lift and smile excursions of about a centimetre, the largest motions
#: of the face (Coulson, Croxson & Gilleard 2000, Ann Otol Rhinol Laryngol 109:478; Giovanoli
#: et al. 2003, Br J Plast Surg 56:644; Trotman et al. 1998, Cleft Palate Craniofac J) — and
#: docs/design.md ("a brow raise moves the brow about a centimetre; a jaw drop moves the chin
#: 1.5–2 cm"). The anatomy (which vertices move, in which direction) follows the FACS manual
#: (Ekman, Friesen & Hager 2002). AU27 (mouth stretch, the wider opening) is not among the 17.
#: ``tests/test_teacher.py`` holds the rig to this table (±10 %).
AU_MAGNITUDES: dict[str, tuple[float, str]] = {
    "AU01": (11.0, "inner brows up (frontalis, medial)"),
    "AU02": (10.0, "outer brows up (frontalis, lateral)"),
    "AU04": (9.5, "brows down 8 mm and drawn together 5 mm"),
    "AU05": (4.5, "upper lids up, baring the eyeball above the iris"),
    "AU06": (7.3, "cheeks up and forward, lower lids pushed up"),
    "AU07": (3.5, "lower lids up, upper lids slightly down"),
    "AU09": (6.0, "nose sides up, medial brows down a little"),
    "AU10": (6.6, "upper lip up, baring the upper teeth"),
    "AU12": (7.8, "lip corners up and out"),
    "AU14": (6.3, "lip corners back into the cheeks"),
    "AU15": (7.6, "lip corners down"),
    "AU17": (5.4, "chin boss and lower lip up and forward"),
    "AU20": (8.5, "lip corners sideways"),
    "AU23": (3.5, "mouth narrowed, the red of the lips thinned"),
    "AU25": (6.0, "lower lip down off the teeth (jaw still)"),
    "AU26": (20.3, "jaw drop: chin 17 mm down and 10 mm back, lower lip 19 mm down"),
    "AU45": (5.8, "lids closed over the eyeball"),
}

#: Exponent of the soft maximum that merges the speech jaw and AU26 (see :mod:`emozone_lite.teacher`).
JAW_SOFTMAX_P = 4.0

#: Jaw pivot (world units) of the linearised mandible rotation and the rotation (radians)
#: at AU26 = 5. The pivot sits behind and at the level of the mouth (an *instantaneous*
#: centre: the condyle both rotates and slides forward), so the lower lip drops ≈ straight
#: down while the chin moves down and somewhat back.
JAW_PIVOT = (0.0, -0.36, -0.55)
JAW_ANGLE = 0.175


# --------------------------------------------------------------------------- fields
def jaw_soft_max(j_speech, j_expression, p: float = JAW_SOFTMAX_P) -> Tensor:
    """The jaw's combined opening ``(j_s^p + j_e^p)^(1/p)`` of a speech and an expression request.

    Both requests are in units of the full drop (negative values count as 0). With ``p = 1``
    the two add; as ``p`` grows it tends to ``max(j_s, j_e)``, so a jaw already open for a
    vowel opens little further for AU26 and a wide AU26 is not exceeded by speech.

    Examples:
        >>> jaw_soft_max(torch.tensor([0.0, 0.6, 0.6]), torch.tensor([0.0, 0.0, 0.6]), 4).tolist()
        [0.0, 0.6000000238418579, 0.7135242819786072]
    """
    j_s = as_float_tensor(j_speech, "j_speech").clamp_min(0)
    j_e = as_float_tensor(j_expression, "j_expression").clamp_min(0)
    if not p >= 1:
        raise ValueError(f"p must be >= 1 (1 adds, large p approaches the maximum), got {p}")
    s = j_e**p + j_s**p
    return torch.where(s > 0, s.clamp_min(1e-30) ** (1.0 / p), torch.zeros_like(s))


def jaw_field(mesh: FaceMesh, angle: float = JAW_ANGLE, pivot=JAW_PIVOT, geo: np.ndarray | None = None) -> np.ndarray:
    """``[V, 3]`` jaw-drop field: a linearised rotation by ``angle`` about the x axis through
    ``pivot``, weighted by :func:`~emozone_lite.teacher.anatomy.mandible_mask` (a smooth,
    rotation-like falloff up the jaw).

    Args:
        mesh: the canonical mesh (``[V, 3]`` vertices).
        angle: rotation at full opening (AU26 = 5), radians.
        pivot: ``[3]`` pivot of the rotation, world units.
        geo: optional precomputed ``[V, V]`` cut-mesh geodesic distances.

    Returns:
        ``[V, 3]`` float32 displacements, world units.
    """
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
            _Anchor(R_INNER_BROW, (0.0, 0.11, 0.005), 0.30),
            _Anchor(R_MID_BROW, (0.0, 0.075, 0.0), 0.25),
            _Anchor((9, 108, 151), (0.0, 0.05, 0.0), 0.25),
            _pin(R_UPPER_LID + R_EYE_CORNERS, 0.10),
        ],
        "AU02": [  # outer brow raiser (frontalis, lateral)
            _Anchor(R_OUTER_BROW, (0.0, 0.10, 0.005), 0.30),
            _Anchor((105, 52), (0.0, 0.07, 0.0), 0.25),
            _Anchor((104, 69), (0.0, 0.045, 0.0), 0.25),
            _pin(R_UPPER_LID + R_EYE_CORNERS, 0.10),
        ],
        "AU04": [  # brow lowerer: down and drawn together (corrugator, procerus)
            _Anchor(R_INNER_BROW + R_MID_BROW, (-0.05, -0.08, 0.01), 0.28),
            _Anchor((105, 52), (-0.03, -0.05, 0.0), 0.22),
            _Anchor((9, 8), (0.0, -0.04, 0.01), 0.15),
            _pin(R_UPPER_LID + R_EYE_CORNERS, 0.08),
        ],
        "AU05": [  # upper lid raiser
            _Anchor(R_UPPER_LID, (0.0, 0.045, 0.006), 0.12),
            _pin(R_EYE_CORNERS, 0.05),
        ],
        "AU06": [  # cheek raiser: cheeks up, lower lid pushed up, crow's feet
            _Anchor(R_CHEEK, (0.0, 0.07, 0.02), 0.28),
            _Anchor((110, 24, 23, 22, 25), (0.0, 0.04, 0.005), 0.10),
            _Anchor(R_LOWER_LID, (0.0, 0.03, 0.0), 0.08),
            _pin(R_EYE_CORNERS, 0.05),
        ],
        "AU07": [  # lid tightener: lower lid up, upper lid slightly down
            _Anchor(R_LOWER_LID, (0.0, 0.035, 0.005), 0.08),
            _Anchor((22, 23, 24, 110), (0.0, 0.015, 0.0), 0.08),
            _Anchor(R_UPPER_LID, (0.0, -0.015, 0.0), 0.06),
            _pin(R_EYE_CORNERS, 0.05),
        ],
        "AU09": [  # nose wrinkler: nose sides up, medial brows down a little
            _Anchor(R_NOSE_SIDE, (0.0, 0.06, 0.005), 0.15),
            _Anchor((134, 220), (0.0, 0.03, 0.0), 0.10),
            _Anchor(R_INNER_BROW + (8,), (0.0, -0.03, 0.0), 0.15),
            _Anchor((0, 37), (0.0, 0.03, 0.0), 0.10),
            _pin((1, 4, 5), 0.10),
        ],
        "AU10": [  # upper lip raiser
            _Anchor((37, 39, 40, 0), (0.0, 0.065, 0.012), 0.14),
            _Anchor((13, 82, 81, 80), (0.0, 0.06, 0.01), 0.12),
            _Anchor((185, 191), (0.0, 0.035, 0.005), 0.10),
            _Anchor(R_NASOLABIAL, (0.005, 0.035, 0.005), 0.12),
            _pin(R_LIP_CORNERS, 0.08),
            _pin((1, 4), 0.10),
        ],
        "AU12": [  # lip corner puller (zygomaticus major): corners up and out
            _Anchor(R_LIP_CORNERS, (0.055, 0.05, -0.025), 0.28),
            _Anchor((206, 216, 207), (0.02, 0.025, 0.005), 0.15),
            _pin(lips_mid, 0.12),
        ],
        "AU14": [  # dimpler (buccinator): corners pulled back into the cheek
            _Anchor(R_LIP_CORNERS, (0.02, 0.005, -0.06), 0.18),
            _Anchor((57, 43, 186), (0.005, 0.0, -0.02), 0.12),
            _pin(lips_mid, 0.12),
        ],
        "AU15": [  # lip corner depressor
            _Anchor(R_LIP_CORNERS, (0.01, -0.075, -0.005), 0.22),
            _Anchor((57, 43, 106), (0.0, -0.045, 0.0), 0.15),
            _pin(lips_mid, 0.12),
        ],
        "AU17": [  # chin raiser (mentalis): chin boss and lower lip up and forward
            _Anchor(CHIN_BOSS, (0.0, 0.05, 0.02), 0.20),
            _Anchor((17, 84, 181), (0.0, 0.03, 0.02), 0.10),
            _Anchor((14, 87, 178), (0.0, 0.015, 0.015), 0.08),
            _pin(R_LIP_CORNERS, 0.10),
        ],
        "AU20": [  # lip stretcher (risorius): corners sideways
            _Anchor(R_LIP_CORNERS, (0.08, -0.02, -0.02), 0.25),
            _Anchor((57, 43), (0.03, -0.01, -0.01), 0.15),
            _pin(lips_mid, 0.12),
        ],
        "AU23": [  # lip tightener: mouth narrows, red of the lips thins
            _Anchor(R_LIP_CORNERS, (-0.035, 0.0, 0.005), 0.15),
            _Anchor(R_UPPER_OUTER_LIP[:4] + (0,), (0.0, -0.018, -0.005), 0.08),
            _Anchor(R_LOWER_OUTER_LIP[:4] + (17,), (0.0, 0.018, -0.005), 0.08),
        ],
        "AU25": [  # lips part (jaw still)
            _Anchor(R_LOWER_INNER_LIP, (0.0, -0.06, 0.0), 0.15),
            _Anchor(R_LOWER_OUTER_LIP, (0.0, -0.05, 0.0), 0.15),
            _Anchor(R_UPPER_INNER_LIP, (0.0, 0.012, 0.0), 0.08),
            _pin(R_LIP_CORNERS[:1], 0.05),
        ],
        "AU45": [  # blink: the upper lid travels 85 % of the gap, the lower lid 15 %
            _Anchor(R_UPPER_LID, -0.85 * gap, 0.12, world=True),
            _Anchor(R_LOWER_LID, 0.15 * gap, 0.06, world=True),
            _pin(R_EYE_CORNERS, 0.05),
        ],
    }


def _component_fields(mesh: FaceMesh, mi: np.ndarray, geo: np.ndarray) -> dict[str, np.ndarray]:
    """The five non-jaw articulatory fields ``[V, 3]`` at full strength (``round``, ``protrude``,
    ``spread``, ``close``, ``tuck``; mixed per viseme by
    :data:`~emozone_lite.teacher.speech.VISEME_ARTICULATION`)."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    up_in, lo_in = np.array(R_UPPER_INNER_LIP), np.array(R_LOWER_INNER_LIP)
    up_out, lo_out = np.array(R_UPPER_OUTER_LIP), np.array(R_LOWER_OUTER_LIP)
    gap = (v[up_in, 1] - v[lo_in, 1])[:, None]  # [5, 1] inner-lip gap per column
    y = np.array([0.0, 1.0, 0.0])
    lips_all = tuple(int(i) for i in mesh.regions.get("lips", ())) if "lips" in mesh.regions else ()
    lips_right = tuple(i for i in lips_all if v[i, 0] <= 0 and i not in R_LIP_CORNERS)
    specs = {
        "round": [
            _Anchor(R_LIP_CORNERS, (-0.09, 0.0, 0.04), 0.22),
            _Anchor(R_UPPER_INNER_LIP, (0.0, 0.012, 0.045), 0.10),
            _Anchor(R_LOWER_INNER_LIP, (0.0, -0.012, 0.045), 0.10),
            _Anchor(R_UPPER_OUTER_LIP + R_LOWER_OUTER_LIP, (0.0, 0.0, 0.04), 0.10),
        ],
        "protrude": [
            _Anchor(R_LIP_CORNERS, (-0.03, 0.0, 0.02), 0.18),
            _Anchor(tuple(sorted(set(lips_right) - set(R_LIP_CORNERS))), (0.0, 0.0, 0.045), 0.10),
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


def _as_weights(x, name: str) -> Tensor:
    """``x`` (tensor, array, ``AUTrack``) as a finite float32 CPU tensor (the rig's fields live on the CPU)."""
    return check_finite(as_float_tensor(x, name, dtype=torch.float32, device="cpu"), name, "fill or clip them first")


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
        jaw_rotation: the jaw's rotation at full opening, radians (:data:`JAW_ANGLE`); the jaw
            parts of a head (lower teeth, tongue, cavity floor) turn by ``J · jaw_rotation``.

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
    jaw_rotation: float = JAW_ANGLE

    @classmethod
    def default(cls, mesh: FaceMesh | None = None) -> TeacherRig:
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
        return jaw_soft_max(w @ self.viseme_jaw, j_e, self.jaw_p)

    def _check_inputs(self, aus, viseme_weights) -> tuple[Tensor, Tensor]:
        aus = _as_weights(aus, "aus")
        if aus.ndim == 1:
            aus = aus[None]
        if aus.ndim != 2 or aus.shape[1] != self.n_aus:
            raise shape_error("aus", f"[T, {self.n_aus}] (AU_NAMES order)", aus.shape)
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
            w = _as_weights(viseme_weights, "viseme_weights")
            if w.ndim == 1:
                w = w[None]
            if w.ndim != 2 or w.shape[1] != self.n_visemes:
                raise shape_error("viseme_weights", f"[T, {self.n_visemes}] (audio.VISEMES order)", w.shape)
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
            aus: ``[T, 17]`` (or ``[17]``) AU intensities in [0, 5], an :class:`~emozone_lite.aus.AUTrack`,
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

    def jaw_angle(self, aus, viseme_weights=None) -> Tensor:
        """``[T]`` the jaw's rotation in radians, ``J · JAW_ANGLE`` (:meth:`jaw_opening`)."""
        return self.jaw_opening(aus, viseme_weights) * self.jaw_rotation

    def pose_head(self, head, aus, viseme_weights=None) -> tuple[Tensor, Tensor, Tensor]:
        """The head's Gaussians posed by AUs and speech: each part moves its own way
        (:func:`emozone_lite.head.carry_parts`: the face follows the mesh and stretches with it,
        the lower teeth, tongue and cavity floor ride on the jaw, the rest stays with the skull).

        Args:
            head: a head :class:`~emozone_lite.gaussians.GaussianCloud` (``N`` Gaussians).
            aus, viseme_weights: as in :meth:`vertex_displacement` (``T`` frames).

        Returns:
            ``means [T, N, 3]``, ``quats [T, N, 4]``, ``scales [T, N, 3]``.
        """
        from ..head import carry_parts

        aus_t, w = self._check_inputs(aus, viseme_weights)
        disp = self.vertex_displacement(aus_t, w)
        J = self._jaw(aus_t, w)
        return carry_parts(
            head, self.vertices, disp, J[:, None, None] * self.jaw_field, J * self.jaw_rotation, self.mesh.triangles
        )

    def sequence(self, phones_or_audio, au_track=None, cameras=None, head=None, **kwargs) -> TeacherSequence:
        """:func:`~emozone_lite.teacher.sequence` with this rig (see there)."""
        from .sequences import sequence

        return sequence(phones_or_audio, au_track, cameras, head, rig=self, **kwargs)


# --------------------------------------------------------------------------- measurements
def _verts(vertices) -> Tensor:
    """``vertices`` as a float tensor of shape ``[..., 468, 3]``."""
    v = as_float_tensor(vertices, "vertices")
    check_shape(v, "vertices", ("*", 468, 3))
    return v


def mouth_opening(vertices) -> Tensor:
    """Vertical gap between the inner-lip midpoints (vertex 13 above, 14 below), world units.

    ``vertices [..., 468, 3]`` → ``[...]``. The canonical (neutral) mouth is slightly parted
    (0.055 units = 5.5 mm); a closed, pressed mouth goes to ≈ 0 or below.

    Examples:
        >>> round(float(mouth_opening(load_canonical_mesh().vertices)), 3)
        0.055
    """
    v = _verts(vertices)
    return v[..., MOUTH_MID_UPPER, 1] - v[..., MOUTH_MID_LOWER, 1]


def eye_aperture(vertices) -> Tensor:
    """Mean vertical lid gap of the three central lid pairs, ``[..., 2]`` (right, left eye).

    ``vertices [..., 468, 3]``; the canonical eyes are open by ≈ 0.063 units (6.3 mm); a
    closed eye (AU45 = 5) gives ≈ 0.
    """
    v = _verts(vertices)
    mi = _canonical_mirror()
    out = []
    for up, lo in (
        (R_UPPER_LID[2:5], R_LOWER_LID[2:5]),
        (tuple(int(mi[i]) for i in R_UPPER_LID[2:5]), tuple(int(mi[i]) for i in R_LOWER_LID[2:5])),
    ):
        out.append((v[..., list(up), 1] - v[..., list(lo), 1]).mean(-1))
    return torch.stack(out, -1)
