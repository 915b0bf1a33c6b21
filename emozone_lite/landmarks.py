"""Face landmarks: MediaPipe's canonical face mesh, landmark detection and AU estimation.

The canonical mesh (468 vertices, 898 triangles, UVs) is bundled in
``data_samples/canonical_face_mesh.npz`` (extracted from MediaPipe's Apache-2.0
``face_landmarker.task``; see ``data_samples/README.md``). Coordinates are scaled to the
toolkit's world units (× 0.1: one unit is 10 cm), +y up, +z out of the face.

On top of the mesh this module

* detects faces offline with MediaPipe's Tasks API and the bundled
  ``face_landmarker.task`` (:func:`detect_landmarks`, :func:`detect_landmarks_video`;
  mediapipe is the optional extra ``emozone-lite[landmarks]``, imported lazily);
* estimates the 17 AUs two ways: :func:`estimate_aus` from landmark **geometry**
  (distances in inter-ocular units relative to a neutral face; works on any
  468-point array, 2-D or 3-D, e.g. rendered or projected mesh vertices) and
  :func:`blendshapes_to_aus` from MediaPipe's 52 **blendshape** scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .aus import AU_NAMES, N_AUS, au_index
from .checks import check_finite
from .utils import data_path

#: Scale from the canonical mesh's centimetres to world units.
MESH_SCALE = 0.1

#: Named landmark regions stored with the mesh (indices into the 468 vertices).
REGION_NAMES = ("lips", "left_eye", "right_eye", "left_eyebrow", "right_eyebrow", "face_oval")


@dataclass(frozen=True)
class FaceMesh:
    """The canonical face mesh.

    Attributes:
        vertices: ``[468, 3]`` float32, world units.
        uvs: ``[468, 2]`` float32 texture coordinates in [0, 1].
        triangles: ``[898, 3]`` int64 vertex indices.
        regions: name → ``[k]`` int64 vertex indices (lips, eyes, eyebrows, face_oval).
    """

    vertices: np.ndarray
    uvs: np.ndarray
    triangles: np.ndarray
    regions: dict[str, np.ndarray] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _load_npz() -> dict[str, np.ndarray]:
    with np.load(data_path("canonical_face_mesh.npz")) as d:
        return {k: d[k] for k in d.files}


def load_canonical_mesh() -> FaceMesh:
    """The bundled MediaPipe canonical face mesh in world units (copies; safe to modify).

    Examples:
        >>> m = load_canonical_mesh()
        >>> m.vertices.shape, m.triangles.shape, sorted(m.regions)[:2]
        ((468, 3), (898, 3), ['face_oval', 'left_eye'])
    """
    d = _load_npz()
    regions = {k[len("region_") :]: d[k].copy() for k in d if k.startswith("region_")}
    return FaceMesh(
        vertices=(d["vertices"] * MESH_SCALE).astype(np.float32),
        uvs=d["uvs"].copy(),
        triangles=d["triangles"].copy(),
        regions=regions,
    )


# --------------------------------------------------------------------------- #
# Landmark groups used by the AU proxies (MediaPipe 468-vertex topology)
# --------------------------------------------------------------------------- #
# "left"/"right" are the subject's: the subject's left eye (263, 362) has x > 0 in
# the canonical mesh and appears on the image's right.

#: Named index groups of the 468-vertex mesh used by :func:`geometric_features`.
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    # outer right, inner right, inner left, outer left eye corners
    "eye_corners": (33, 133, 362, 263),
    "right_eye_corners": (33, 133),
    "left_eye_corners": (362, 263),
    "upper_lids": (159, 158, 160, 386, 385, 387),
    "lower_lids": (145, 144, 153, 374, 373, 380),
    "inner_brows": (107, 66, 55, 65, 336, 296, 285, 295),
    "outer_brows": (70, 63, 46, 53, 300, 293, 276, 283),
    "brows": (70, 63, 105, 66, 107, 46, 53, 52, 65, 55, 300, 293, 334, 296, 336, 276, 283, 282, 295, 285),
    "right_inner_brow": (107, 55),
    "left_inner_brow": (336, 285),
    "cheeks": (50, 280, 101, 330, 118, 347, 205, 425),
    "nose_alae": (48, 278, 64, 294, 98, 327, 129, 358),
    "upper_lip_outer": (0, 37, 267, 39, 269),
    "upper_lip_inner": (13,),
    "lower_lip_inner": (14,),
    "lower_lip_outer": (17, 84, 314),
    "lip_corners": (61, 291),
    "chin": (152, 175, 199),
    "menton": (152,),
    # the lower nose dorsum and tip: rigid with the skull, and below the eyes, so the
    # lower face's heights do not move when lids close or brows lower (the detector's
    # eye corners follow the lids a little)
    "nose_reference": (195, 5, 4),
    # stable points for the rigid alignment: eye corners, nose bridge and
    # dorsum, upper forehead, temples and face sides (no brows, lids, lips, jaw)
    "anchors": (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 10, 151, 127, 356, 234, 454, 162, 389),
}

#: Intensity-5 displacement of each geometric proxy, in inter-ocular distances
#: (IOD ≈ 6.3 cm on the canonical face, so 0.12 IOD ≈ 7.5 mm). Intensity is
#: ``5 · clip(Δ / full_scale, 0, 1)`` where Δ is the feature's change from neutral in
#: the direction of the AU (see :func:`aus_from_features`).
GEOMETRIC_FULL_SCALE: dict[str, float] = {
    "AU01": 0.12,  # inner brows up
    "AU02": 0.12,  # outer brows up
    "AU04": 0.10,  # inner brows down (and, at half weight, drawn together)
    "AU05": 0.04,  # upper lids up
    "AU06": 0.06,  # cheeks up
    "AU07": 0.04,  # lower lids up
    "AU09": 0.06,  # nose wings up
    "AU10": 0.08,  # upper lip up
    "AU12": 0.10,  # lip corners up relative to the mouth centre
    "AU14": 0.06,  # lip corners pulled back (depth; 3-D input only)
    "AU15": 0.06,  # lip corners down relative to the mouth centre
    "AU17": 0.08,  # chin boss pushed up
    "AU20": 0.08,  # lip corners pulled sideways beyond what an oblique smile explains
    "AU23": 0.06,  # lips thinned (red-lip heights), read on closed lips only
    "AU25": 0.15,  # inner lips apart
    "AU26": 0.30,  # chin down
    "AU45": 1.00,  # upper lid down, as a fraction of the neutral eye aperture
}

#: Lip gap (IOD) at which :func:`aus_from_features` stops reading AU23: lips pulled open
#: thin as they stretch, which a thickness proxy cannot tell from tightening (≈ 2.5 mm).
AU23_OPEN_GATE = 0.04

#: Weight of the brows drawn together (``inner_brow_gap``) in the AU04 reading, beside the inner
#: brows' lowering (weight 1). On the teacher's videos the detector barely follows the brows
#: drawing together: it mostly drifts with speech and smiles. On the clips of
#: ``benchmarks/track_aus.py`` (the detector's landmarks of each frame, against the true AU04), full
#: weight gave r = 0.83 on ``tests/test_track.py``'s clip and 0.40–0.56 on the three "mixed" ones;
#: half weight gives 0.88 and 0.52–0.80 (the benchmark's own figures); without the term, sadness
#: (AU01 + AU04, the brows raised *and* drawn together) fell to an intended rise of 1.54 on the
#: teacher's 256² preset renders (``benchmarks/expression_visibility.py``), against 1.73 at half
#: weight.
AU04_GAP_WEIGHT = 0.5


@lru_cache(maxsize=1)
def _canonical_vertices() -> np.ndarray:
    v = load_canonical_mesh().vertices.astype(np.float64)
    v.setflags(write=False)
    return v


def _as_points(landmarks, name: str = "landmarks") -> np.ndarray:
    """FaceLandmarks or array → float64 ``[..., 468, D]`` (D = 2 or 3), checked."""
    if isinstance(landmarks, FaceLandmarks):
        p = landmarks.points_px
    else:
        p = np.asarray(landmarks, dtype=np.float64)
    if p.ndim < 2 or p.shape[-2] not in (468, 478) or p.shape[-1] not in (2, 3):
        raise ValueError(
            f"{name}: expected FaceLandmarks or points of shape [468 or 478, 2 or 3] "
            f"(MediaPipe face-mesh order), got {p.shape}"
        )
    p = np.asarray(p[..., :468, :], dtype=np.float64)
    return check_finite(p, name, "a failed detection? fill or drop that frame first")


def _procrustes_rotation(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
    """Orthogonal R and scale s minimising ‖s·(src − mean)·R − (dst − mean)‖ (reflections allowed)."""
    a = src - src.mean(0)
    b = dst - dst.mean(0)
    u, sv, vt = np.linalg.svd(a.T @ b)
    r = u @ vt
    denom = float((a * a).sum())
    if denom <= 1e-18 or sv.sum() <= 1e-12:
        raise ValueError("landmarks are degenerate (all anchor points coincide); cannot align them")
    return r, float(sv.sum() / denom)


def align_to_canonical(points) -> np.ndarray:
    """Rigidly align face landmarks to the canonical mesh's frame (+y up, +x subject's left).

    A similarity transform (rotation or reflection, uniform scale, translation) is
    fitted on the stable ``LANDMARK_GROUPS["anchors"]`` points only, so expressions
    do not bias it. Reflections are allowed, so image coordinates with y pointing
    down (pixels, MediaPipe's normalised output) align as well as world coordinates.
    2-D points are aligned to the canonical mesh's frontal (x, y) projection.

    Args:
        points: ``[468 or 478, 2 or 3]`` landmarks, or :class:`FaceLandmarks`.

    Returns:
        ``[468, D]`` float64 in canonical world units, centred on the anchors.
    """
    p = _as_points(points)
    if p.ndim != 2:
        raise ValueError(f"align_to_canonical: expected one face [468, D], got {p.shape}")
    d = p.shape[1]
    ref = _canonical_vertices()[:, :d]
    ids = list(LANDMARK_GROUPS["anchors"])
    r, s = _procrustes_rotation(p[ids], ref[ids])
    return s * (p - p[ids].mean(0)) @ r


def _mean(q: np.ndarray, group: str) -> np.ndarray:
    return q[list(LANDMARK_GROUPS[group])].mean(0)


def geometric_features(points) -> dict[str, float]:
    """Expression-sensitive distances of one face, in inter-ocular distances (IOD).

    The face is first aligned to the canonical frame (:func:`align_to_canonical`);
    heights are measured along +y — the brows' and lids' from the eye line (mean height
    of the four eye corners), the cheeks', nose wings', lips' and chin's from the lower
    nose (``LANDMARK_GROUPS["nose_reference"]``, which stays put when the lids close or
    the brows lower, unlike a detector's eye corners) — and everything is divided by the IOD (distance between the two eye
    centres, each the midpoint of its corners), so the features do not depend on
    position, rotation, scale or a y-flip.

    Args:
        points: ``[468 or 478, 2 or 3]`` landmarks (MediaPipe mesh order) in any
            similarity frame — canonical world units, projected pixels, MediaPipe
            pixel-scaled output — or :class:`FaceLandmarks`. 2-D points should be a
            near-frontal view.

    Returns:
        feature name → float. ``lip_corner_depth`` is NaN for 2-D input.
    """
    q = align_to_canonical(points)
    d = q.shape[1]
    iod = float(np.linalg.norm(_mean(q, "left_eye_corners") - _mean(q, "right_eye_corners")))
    if iod <= 1e-12:
        raise ValueError("landmarks are degenerate: the two eyes coincide (inter-ocular distance 0)")
    y = q[:, 1]
    y_eye = _mean(q, "eye_corners")[1]
    y_nose = _mean(q, "nose_reference")[1]

    def h(group: str, ref: float = y_eye) -> float:
        return float(y[list(LANDMARK_GROUPS[group])].mean() - ref) / iod

    mouth_centre = 0.5 * (y[13] + y[14])
    corners = q[list(LANDMARK_GROUPS["lip_corners"])]
    f = {
        "iod": iod,
        "inner_brow_height": h("inner_brows"),
        "outer_brow_height": h("outer_brows"),
        "brow_height": h("brows"),
        "inner_brow_gap": float(_mean(q, "left_inner_brow")[0] - _mean(q, "right_inner_brow")[0]) / iod,
        "upper_lid_height": h("upper_lids"),
        "lower_lid_height": h("lower_lids"),
        "cheek_height": h("cheeks", y_nose),
        "nose_ala_height": h("nose_alae", y_nose),
        "upper_lip_height": h("upper_lip_outer", y_nose),
        "lip_corner_height": float(corners[:, 1].mean() - mouth_centre) / iod,
        "mouth_half_width": float(np.linalg.norm(corners[1] - corners[0])) / (2 * iod),
        "lip_corner_depth": (
            float(0.5 * (q[13, 2] + q[14, 2]) - corners[:, 2].mean()) / iod if d == 3 else float("nan")
        ),
        "lip_thickness": float(
            (y[list(LANDMARK_GROUPS["upper_lip_outer"])].mean() - y[13])
            + (y[14] - y[list(LANDMARK_GROUPS["lower_lip_outer"])].mean())
        )
        / iod,
        "lips_gap": float(np.linalg.norm(q[13] - q[14])) / iod,
        "chin_height": h("chin", y_nose),
        "jaw_drop": float(y_nose - y[152]) / iod,
    }
    f["eye_aperture"] = f["upper_lid_height"] - f["lower_lid_height"]
    return f


def aus_from_features(features: dict[str, float], neutral: dict[str, float]) -> np.ndarray:
    """Map feature changes from ``neutral`` to the 17 AU intensities (``[17]`` float32).

    ``AU = 5 · clip(Σ_terms max(0, ±Δfeature) / GEOMETRIC_FULL_SCALE[AU], 0, 1)`` with

    ========  ===========================================================
    AU01      + inner_brow_height
    AU02      + outer_brow_height
    AU04      − inner_brow_height,  − ½ inner_brow_gap (two terms)
    AU05      + upper_lid_height
    AU06      + cheek_height
    AU07      + lower_lid_height
    AU09      + nose_ala_height
    AU10      + upper_lip_height
    AU12      + lip_corner_height (corners relative to the mouth centre)
    AU14      + lip_corner_depth (0 for 2-D input)
    AU15      − lip_corner_height
    AU17      + chin_height (the jaw cannot close past neutral, so a higher chin is mentalis)
    AU20      + mouth_half_width − max(0, + lip_corner_height)
    AU23      − lip_thickness, × max(0, 1 − Δlips_gap / AU23_OPEN_GATE) (closed lips only)
    AU25      + lips_gap
    AU26      + jaw_drop
    AU45      − upper_lid_height, as a fraction of the neutral eye_aperture
    ========  ===========================================================

    The mouth centre is the midpoint of the inner lips (13, 14); a jaw drop moves
    it and the lip corners down by about the same amount (half the opening), so
    AU12/AU15 stay near 0 while AU25/AU26 rise.
    """
    d = {k: features[k] - neutral[k] for k in features if k != "iod"}
    fs = GEOMETRIC_FULL_SCALE
    pos = lambda x: max(0.0, x) if np.isfinite(x) else 0.0
    raw = {
        "AU01": pos(d["inner_brow_height"]) / fs["AU01"],
        "AU02": pos(d["outer_brow_height"]) / fs["AU02"],
        # the inner brows lower most (corrugator, depressor supercilii); the detector reads the
        # brows drawn together with more drift than lowered, so that term counts half (AU04_GAP_WEIGHT)
        "AU04": (pos(-d["inner_brow_height"]) + AU04_GAP_WEIGHT * pos(-d["inner_brow_gap"])) / fs["AU04"],
        "AU05": pos(d["upper_lid_height"]) / fs["AU05"],
        "AU06": pos(d["cheek_height"]) / fs["AU06"],
        "AU07": pos(d["lower_lid_height"]) / fs["AU07"],
        "AU09": pos(d["nose_ala_height"]) / fs["AU09"],
        "AU10": pos(d["upper_lip_height"]) / fs["AU10"],
        "AU12": pos(d["lip_corner_height"]) / fs["AU12"],
        "AU14": pos(d["lip_corner_depth"]) / fs["AU14"],
        "AU15": pos(-d["lip_corner_height"]) / fs["AU15"],
        "AU17": pos(d["chin_height"]) / fs["AU17"],
        "AU20": pos(d["mouth_half_width"] - pos(d["lip_corner_height"])) / fs["AU20"],
        # lips stretched open also thin: tightening is read on closed lips only
        "AU23": pos(-d["lip_thickness"]) * max(0.0, 1.0 - pos(d["lips_gap"]) / AU23_OPEN_GATE) / fs["AU23"],
        "AU25": pos(d["lips_gap"]) / fs["AU25"],
        "AU26": pos(d["jaw_drop"]) / fs["AU26"],
        "AU45": pos(-d["upper_lid_height"]) / max(neutral["eye_aperture"], 1e-6) / fs["AU45"],
    }
    return np.array([5.0 * min(1.0, raw[a]) for a in AU_NAMES], dtype=np.float32)


def estimate_aus(landmarks, neutral=None) -> np.ndarray:
    """Estimate the 17 AU intensities from face-landmark geometry (no learning).

    Each AU is a *geometric proxy* (brow, lid, cheek, lip and jaw distances, see
    :func:`geometric_features` and :func:`aus_from_features`) measured relative to a
    neutral face and mapped to 0–5 with the gains in :data:`GEOMETRIC_FULL_SCALE`.

    Coordinates: ``[468 or 478, 2 or 3]`` points in MediaPipe mesh order, in any
    similarity frame — the toolkit's world units (canonical mesh × 0.1, +y up),
    projected pixels (y down), or MediaPipe output (pass :class:`FaceLandmarks`,
    which uses pixel-scaled ``(x·W, y·H, z·W)``; raw normalised coordinates of a
    non-square image are anisotropic). Position, rotation, scale and a y-flip are
    removed by :func:`align_to_canonical`; distances are in inter-ocular distances.
    2-D points must be a near-frontal view; AU14 (depth) is 0 for them.

    Args:
        landmarks: :class:`FaceLandmarks`, ``[468|478, 2|3]``, or a batch ``[T, 468|478, 2|3]``.
        neutral: the same person's neutral face (same conventions; 3-D neutral is
            projected to x, y for 2-D input). Default: the canonical mesh — fine
            for meshes deformed from it; for real photos identity differences
            show up as AUs, so pass a neutral frame when you have one.

    Returns:
        ``[17]`` float32 (or ``[T, 17]`` for a batch) intensities in [0, 5], :data:`AU_NAMES` order.

    Examples:
        >>> v = load_canonical_mesh().vertices.copy()
        >>> float(estimate_aus(v).max())
        0.0
    """
    p = _as_points(landmarks)
    d = p.shape[-1]
    if neutral is None:
        n = _canonical_vertices()[:, :d]
    else:
        n = _as_points(neutral, "neutral")
        if n.ndim != 2:
            raise ValueError(f"neutral: expected one face [468, D], got {n.shape}")
        if n.shape[1] < d:
            raise ValueError(f"neutral: has {n.shape[1]}-D points but landmarks are {d}-D")
        n = n[:, :d]
    f0 = geometric_features(n)
    if p.ndim == 2:
        return aus_from_features(geometric_features(p), f0)
    flat = p.reshape(-1, 468, d)
    out = np.stack([aus_from_features(geometric_features(x), f0) for x in flat])
    return out.reshape(p.shape[:-2] + (N_AUS,))


# --------------------------------------------------------------------------- #
# MediaPipe blendshapes → AUs
# --------------------------------------------------------------------------- #

#: The 52 MediaPipe / ARKit blendshape names, in the model's output order.
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "noseSneerLeft",
    "noseSneerRight",
)


def _lr(base: str) -> tuple[tuple[str, float], ...]:
    return ((base + "Left", 0.5), (base + "Right", 0.5))


#: AU ← weighted sum of blendshape scores (each in [0, 1]); ``AU = 5 · clip(Σ w·score, 0, 1)``.
#: Left/right pairs are averaged (the 17 AUs are bilateral). AU23 uses mouthPress
#: (ARKit has no lip *tightener*; pressing, AU24, is its nearest shape). AU25 is the
#: jaw opening minus mouthClose (lips held shut while the jaw opens) plus the lower
#: lip pulled down.
BLENDSHAPE_TO_AU: dict[str, tuple[tuple[str, float], ...]] = {
    "AU01": (("browInnerUp", 1.0),),
    "AU02": _lr("browOuterUp"),
    "AU04": _lr("browDown"),
    "AU05": _lr("eyeWide"),
    "AU06": _lr("cheekSquint"),
    "AU07": _lr("eyeSquint"),
    "AU09": _lr("noseSneer"),
    "AU10": _lr("mouthUpperUp"),
    "AU12": _lr("mouthSmile"),
    "AU14": _lr("mouthDimple"),
    "AU15": _lr("mouthFrown"),
    "AU17": (("mouthShrugLower", 1.0),),
    "AU20": _lr("mouthStretch"),
    "AU23": _lr("mouthPress"),
    "AU25": (("jawOpen", 1.0), ("mouthClose", -1.0), ("mouthLowerDownLeft", 0.25), ("mouthLowerDownRight", 0.25)),
    "AU26": (("jawOpen", 1.0),),
    "AU45": _lr("eyeBlink"),
}


def blendshapes_to_aus(blendshapes: Mapping[str, float]) -> np.ndarray:
    """Map MediaPipe's 52 blendshape scores to the 17 AU intensities with :data:`BLENDSHAPE_TO_AU`.

    Args:
        blendshapes: name → score in [0, 1] (e.g. ``FaceLandmarks.blendshapes``).
            Extra names are ignored.

    Returns:
        ``[17]`` float32 in [0, 5], :data:`AU_NAMES` order.

    Raises:
        ValueError: when a needed blendshape is missing or not finite.

    Examples:
        >>> bs = dict.fromkeys(BLENDSHAPE_NAMES, 0.0) | {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.6}
        >>> float(blendshapes_to_aus(bs)[8])  # AU12
        3.5
    """
    if not isinstance(blendshapes, Mapping):
        raise ValueError(f"blendshapes: expected a dict name → score, got {type(blendshapes).__name__}")
    needed = sorted({n for terms in BLENDSHAPE_TO_AU.values() for n, _ in terms})
    missing = [n for n in needed if n not in blendshapes]
    if missing:
        raise ValueError(f"blendshapes: missing {', '.join(missing)}; expected MediaPipe's 52 blendshape scores")
    out = np.zeros(N_AUS, dtype=np.float32)
    for a, terms in BLENDSHAPE_TO_AU.items():
        s = 0.0
        for n, w in terms:
            x = float(blendshapes[n])
            if not math.isfinite(x):
                raise ValueError(f"blendshapes: {n} is {x}; expected a score in [0, 1]")
            s += w * x
        out[au_index(a)] = 5.0 * min(1.0, max(0.0, s))
    return out


# --------------------------------------------------------------------------- #
# MediaPipe FaceLandmarker (optional extra)
# --------------------------------------------------------------------------- #

_MODEL_FILE = "face_landmarker.task"


@dataclass
class FaceLandmarks:
    """One face detected by MediaPipe's FaceLandmarker.

    Attributes:
        points: ``[478, 3]`` float32 normalised coordinates: x / width, y / height
            (y down), z relative depth on roughly the scale of x (smaller = nearer).
            468 mesh points + 10 iris points.
        pixels: ``[478, 2]`` float32 pixel coordinates (x·W, y·H).
        blendshapes: the 52 blendshape scores, name → [0, 1].
        transform: ``[4, 4]`` float32 facial transformation matrix (canonical face →
            detected face, metric camera space).
        image_size: ``(H, W)`` of the image.
    """

    points: np.ndarray
    pixels: np.ndarray
    blendshapes: dict[str, float]
    transform: np.ndarray
    image_size: tuple[int, int]

    @property
    def points_px(self) -> np.ndarray:
        """``[478, 3]`` isotropic pixel-scaled coordinates ``(x·W, y·H, z·W)`` (what the estimators use)."""
        h, w = self.image_size
        return self.points * np.array([w, h, w], dtype=np.float32)


def _import_mediapipe():
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as e:  # pragma: no cover - exercised by monkeypatching
        raise ImportError(
            "face-landmark detection needs MediaPipe, an optional extra: pip install 'emozone-lite[landmarks]'"
        ) from e
    return mp, BaseOptions, vision


@lru_cache(maxsize=1)
def _model_bytes() -> bytes:
    return data_path(_MODEL_FILE).read_bytes()


def _check_image(image, name: str = "image") -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"{name}: expected an RGB image [H, W, 3] (uint8), got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(
            f"{name}: expected dtype uint8 (0–255), got {img.dtype}; "
            "convert float images with (np.clip(img, 0, 1) * 255).astype(np.uint8)"
        )
    if img.shape[0] < 16 or img.shape[1] < 16:
        raise ValueError(f"{name}: image of {img.shape[1]}×{img.shape[0]} pixels is too small to find a face")
    return np.ascontiguousarray(img[:, :, :3])


def _make_landmarker(vision, BaseOptions, mode, min_confidence: float):
    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_buffer=_model_bytes()),
        running_mode=mode,
        num_faces=1,
        min_face_detection_confidence=min_confidence,
        min_face_presence_confidence=min_confidence,
        min_tracking_confidence=min_confidence,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    return vision.FaceLandmarker.create_from_options(opts)


def _to_face(result, size: tuple[int, int]) -> FaceLandmarks | None:
    if not result.face_landmarks:
        return None
    h, w = size
    pts = np.array([[p.x, p.y, p.z] for p in result.face_landmarks[0]], dtype=np.float32)
    bs = {c.category_name: float(c.score) for c in result.face_blendshapes[0]} if result.face_blendshapes else {}
    tf = (
        np.asarray(result.facial_transformation_matrixes[0], dtype=np.float32).reshape(4, 4)
        if result.facial_transformation_matrixes
        else np.full((4, 4), np.nan, np.float32)
    )
    pix = pts[:, :2] * np.array([w, h], dtype=np.float32)
    return FaceLandmarks(points=pts, pixels=pix, blendshapes=bs, transform=tf, image_size=(h, w))


def detect_landmarks(image: np.ndarray, *, min_confidence: float = 0.5) -> FaceLandmarks:
    """Detect one face's 478 landmarks, 52 blendshapes and pose with MediaPipe (CPU, offline).

    Uses the bundled ``data_samples/face_landmarker.task`` through MediaPipe's Tasks
    API (``FaceLandmarker``, IMAGE mode). MediaPipe is an optional extra and is
    imported only here.

    Args:
        image: ``[H, W, 3]`` uint8 RGB (``[H, W]`` grey or ``[H, W, 4]`` RGBA also accepted).
        min_confidence: detection / presence threshold.

    Returns:
        :class:`FaceLandmarks` of the most confident face.

    Raises:
        ImportError: mediapipe is not installed (names the extra to install).
        ValueError: bad image, or no face found.
    """
    img = _check_image(image)
    mp, BaseOptions, vision = _import_mediapipe()
    with _make_landmarker(vision, BaseOptions, vision.RunningMode.IMAGE, min_confidence) as det:
        result = det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=img))
    face = _to_face(result, img.shape[:2])
    if face is None:
        raise ValueError(
            f"no face found in image ({img.shape[1]}×{img.shape[0]} px); MediaPipe needs a visible, "
            "roughly frontal face (try a larger or better-lit crop, or lower min_confidence)"
        )
    return face


def detect_landmarks_images(images, *, min_confidence: float = 0.5) -> list[FaceLandmarks | None]:
    """:func:`detect_landmarks` on many images with one detector (IMAGE mode: every image on its
    own, no tracking), ``None`` where no face is found — what an evaluation of rendered frames
    needs (one model load instead of one per frame).

    Args:
        images: ``[T, H, W, 3]`` uint8 array or a list of RGB images (sizes may differ).
        min_confidence: detection / presence threshold.

    Raises:
        ImportError: mediapipe is not installed.
        ValueError: a bad image (named by its index).
    """
    imgs = [_check_image(im, f"images[{i}]") for i, im in enumerate(images)]
    mp, BaseOptions, vision = _import_mediapipe()
    out: list[FaceLandmarks | None] = []
    with _make_landmarker(vision, BaseOptions, vision.RunningMode.IMAGE, min_confidence) as det:
        for im in imgs:
            out.append(_to_face(det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=im)), im.shape[:2]))
    return out


@dataclass
class LandmarkTrack:
    """Per-frame MediaPipe results of a video; failed frames are kept and marked.

    Attributes:
        points: ``[T, 478, 3]`` float32 normalised coordinates (NaN where failed).
        blendshapes: ``[T, 52]`` float32 scores in :data:`BLENDSHAPE_NAMES` order (NaN where failed).
        transforms: ``[T, 4, 4]`` float32 (NaN where failed).
        success: ``[T]`` bool, False where no face was found.
        fps: frame rate.
        image_size: ``(H, W)``.
    """

    points: np.ndarray
    blendshapes: np.ndarray
    transforms: np.ndarray
    success: np.ndarray
    fps: float
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def pixels(self) -> np.ndarray:
        """``[T, 478, 2]`` pixel coordinates (NaN where failed)."""
        h, w = self.image_size
        return self.points[..., :2] * np.array([w, h], dtype=np.float32)

    def __getitem__(self, t: int) -> FaceLandmarks | None:
        """Frame ``t`` as :class:`FaceLandmarks`, or None if the face was not found there."""
        if not self.success[t]:
            return None
        h, w = self.image_size
        return FaceLandmarks(
            points=self.points[t].copy(),
            pixels=self.pixels[t].copy(),
            blendshapes=dict(zip(BLENDSHAPE_NAMES, map(float, self.blendshapes[t]))),
            transform=self.transforms[t].copy(),
            image_size=(h, w),
        )

    def to_au_track(self, method: str = "blendshapes", neutral=None):
        """AU track of the video; failed frames are interpolated from neighbours and marked.

        Args:
            method: ``"blendshapes"`` (:func:`blendshapes_to_aus`) or ``"geometric"``
                (:func:`estimate_aus` with ``neutral``).
            neutral: neutral face for the geometric method.

        Returns:
            :class:`emozone_lite.aus.AUTrack` with ``success`` from the detector.
        """
        from .aus import AUTrack, fill_failed_frames

        if method not in ("blendshapes", "geometric"):
            raise ValueError(f"method must be 'blendshapes' or 'geometric', got {method!r}")
        vals = np.full((len(self), N_AUS), np.nan, dtype=np.float32)
        for t in np.nonzero(self.success)[0]:
            face = self[int(t)]
            vals[t] = (
                blendshapes_to_aus(face.blendshapes) if method == "blendshapes" else estimate_aus(face, neutral=neutral)
            )
        return AUTrack(fill_failed_frames(vals, self.success), fps=self.fps, success=self.success.copy())


def detect_landmarks_video(frames, fps: float = 25.0, *, min_confidence: float = 0.5) -> LandmarkTrack:
    """Run MediaPipe's FaceLandmarker in VIDEO mode (with tracking) over frames.

    Frames where no face is found are **kept**: their arrays are NaN and
    ``success`` is False (``LandmarkTrack.to_au_track`` interpolates them).

    Args:
        frames: ``[T, H, W, 3]`` uint8 array or a list of equally sized RGB frames.
        fps: frame rate (sets the timestamps MediaPipe's tracker sees).
        min_confidence: detection / presence / tracking threshold.

    Raises:
        ImportError: mediapipe is not installed.
        ValueError: no frames, frames of different sizes, or a bad frame.
    """
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps!r}")
    frames = list(frames)
    if not frames:
        raise ValueError("frames: need at least one frame")
    imgs = [_check_image(f, f"frames[{i}]") for i, f in enumerate(frames)]
    size = imgs[0].shape[:2]
    for i, im in enumerate(imgs):
        if im.shape[:2] != size:
            raise ValueError(f"frames[{i}] is {im.shape[1]}×{im.shape[0]} but frames[0] is {size[1]}×{size[0]}")
    mp, BaseOptions, vision = _import_mediapipe()
    T = len(imgs)
    pts = np.full((T, 478, 3), np.nan, np.float32)
    bsh = np.full((T, len(BLENDSHAPE_NAMES)), np.nan, np.float32)
    tfs = np.full((T, 4, 4), np.nan, np.float32)
    ok = np.zeros(T, bool)
    last_ms = -1
    with _make_landmarker(vision, BaseOptions, vision.RunningMode.VIDEO, min_confidence) as det:
        for t, im in enumerate(imgs):
            ms = max(last_ms + 1, int(round(t * 1000.0 / fps)))
            last_ms = ms
            face = _to_face(det.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=im), ms), size)
            if face is None or face.points.shape[0] != 478:
                continue
            ok[t] = True
            pts[t] = face.points
            bsh[t] = [face.blendshapes.get(n, np.nan) for n in BLENDSHAPE_NAMES]
            tfs[t] = face.transform
    return LandmarkTrack(points=pts, blendshapes=bsh, transforms=tfs, success=ok, fps=float(fps), image_size=size)


def estimate_aus_from_image(image: np.ndarray, neutral=None) -> dict:
    """Detect the face in ``image`` and estimate its AUs both ways.

    Returns:
        ``{"landmarks": FaceLandmarks, "geometric": [17], "blendshapes": [17]}``
        (float32 intensities in :data:`AU_NAMES` order; ``neutral`` as in :func:`estimate_aus`).
    """
    face = detect_landmarks(image)
    return {
        "landmarks": face,
        "geometric": estimate_aus(face, neutral=neutral),
        "blendshapes": blendshapes_to_aus(face.blendshapes),
    }
