"""Tests for emozone_lite.landmarks: canonical mesh, geometric AU proxies, blendshapes, MediaPipe."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from emozone_lite.aus import AU_NAMES, AUTrack, au_index
from emozone_lite.landmarks import (
    BLENDSHAPE_NAMES,
    BLENDSHAPE_TO_AU,
    GEOMETRIC_FULL_SCALE,
    LANDMARK_GROUPS,
    MESH_SCALE,
    REGION_NAMES,
    FaceLandmarks,
    align_to_canonical,
    blendshapes_to_aus,
    detect_landmarks,
    detect_landmarks_video,
    estimate_aus,
    estimate_aus_from_image,
    geometric_features,
    load_canonical_mesh,
)
from emozone_lite.utils import data_path


@pytest.fixture(scope="module")
def canon() -> np.ndarray:
    return load_canonical_mesh().vertices.astype(np.float64)


def _move(v, group, delta, radius=0.03):
    """Displace vertices near LANDMARK_GROUPS[group] by delta with a Gaussian falloff."""
    c = v[list(LANDMARK_GROUPS[group])]
    d2 = ((v[:, None, :] - c[None]) ** 2).sum(-1).min(1)
    w = np.exp(-d2 / (2 * radius**2))
    return v + w[:, None] * np.asarray(delta, dtype=np.float64)


def _open_jaw(v, drop=0.12):
    """Lower face (below the lip-corner line) follows the jaw; corners move half-way."""
    y_corner = v[[61, 291], 1].mean()
    w = 0.5 + 0.5 * np.tanh((y_corner - v[:, 1]) / 0.01)
    out = v.copy()
    out[:, 1] -= drop * w
    return out


def _nonzero(aus, thresh=0.3):
    return {AU_NAMES[i] for i in np.nonzero(aus > thresh)[0]}


# ------------------------------------------------------------ canonical mesh
def test_canonical_mesh_loader(canon):
    m = load_canonical_mesh()
    assert m.vertices.shape == (468, 3) and m.triangles.shape == (898, 3) and m.uvs.shape == (468, 2)
    assert MESH_SCALE == 0.1 and set(REGION_NAMES) == set(m.regions)
    # +x is the subject's left: left outer eye corner 263 has x > 0; +y up: brows above the chin
    assert canon[263, 0] > 0 > canon[33, 0] and canon[107, 1] > canon[152, 1]
    for g, ids in LANDMARK_GROUPS.items():
        assert all(0 <= i < 468 for i in ids), g


# ---------------------------------------------------------- geometric proxies
def test_neutral_canonical_gives_zero(canon):
    np.testing.assert_array_equal(estimate_aus(canon), np.zeros(17, np.float32))
    np.testing.assert_allclose(estimate_aus(canon[:, :2]), 0, atol=1e-5)
    f = geometric_features(canon)
    assert f["iod"] == pytest.approx(0.63, abs=0.01)  # ≈ 6.3 cm eye-centre distance
    assert np.isnan(geometric_features(canon[:, :2])["lip_corner_depth"])


def test_inner_brow_raise_is_au01(canon):
    v = _move(canon, "inner_brows", [0, 0.05, 0])  # 5 mm up
    a = estimate_aus(v)
    expected = 5 * (0.05 / 0.6302) / GEOMETRIC_FULL_SCALE["AU01"]
    assert a[au_index("AU01")] == pytest.approx(expected, rel=0.1)
    assert _nonzero(a) == {"AU01"}


def test_outer_brow_raise_and_brow_lowering(canon):
    a2 = estimate_aus(_move(canon, "outer_brows", [0, 0.05, 0]))
    assert _nonzero(a2) == {"AU02"}
    a4 = estimate_aus(_move(canon, "brows", [0, -0.04, 0]))
    assert _nonzero(a4) == {"AU04"} and a4[au_index("AU04")] > 1.5
    # inner brows drawn together (corrugator) is also AU04
    v = _move(canon, "right_inner_brow", [0.02, 0, 0], 0.02)
    v = _move(v, "left_inner_brow", [-0.02, 0, 0], 0.02)
    assert _nonzero(estimate_aus(v)) == {"AU04"}


def test_brow_lowering_reads_the_inner_brows_and_half_the_gap(canon):
    from emozone_lite.landmarks import AU04_GAP_WEIGHT, aus_from_features, geometric_features

    f0 = geometric_features(canon)
    au4 = lambda **delta: aus_from_features({**f0, **{k: f0[k] + v for k, v in delta.items()}}, f0)[au_index("AU04")]
    fs = GEOMETRIC_FULL_SCALE["AU04"]
    assert au4(inner_brow_height=-0.02) == pytest.approx(5 * 0.02 / fs, rel=1e-5)
    assert au4(inner_brow_gap=-0.02) == pytest.approx(5 * AU04_GAP_WEIGHT * 0.02 / fs, rel=1e-5)
    assert AU04_GAP_WEIGHT == 0.5
    # the outer brows and the brows' mean height do not read as AU04 by themselves
    assert au4(brow_height=-0.05, outer_brow_height=-0.05) == 0.0
    assert au4(inner_brow_height=+0.02, inner_brow_gap=+0.02) == 0.0  # raised / apart: not AU04


def test_jaw_open_is_au26_and_au25(canon):
    a = estimate_aus(_open_jaw(canon, 0.12))
    assert a[au_index("AU26")] > 2.5 and a[au_index("AU25")] > 2.5
    assert _nonzero(a, 0.5) == {"AU25", "AU26"}
    # lips parted without a jaw drop (lower lip down, corners half-way): AU25 only
    lips = load_canonical_mesh().regions["lips"]
    y_corner = canon[[61, 291], 1].mean()
    v = canon.copy()
    v[lips, 1] -= 0.03 * (0.5 + 0.5 * np.tanh((y_corner - canon[lips, 1]) / 0.01))
    a = estimate_aus(v)
    assert _nonzero(a) == {"AU25"} and a[au_index("AU25")] > 1.5


def test_smile_stretch_and_frown(canon):
    # corners up and out (oblique): AU12, not AU20
    smile = canon.copy()
    for i, sx in ((61, -1), (291, 1)):
        smile = _move(smile, "lip_corners", [0, 0, 0], 0.01)
        smile[i] += [sx * 0.03, 0.04, 0]
    a = estimate_aus(smile)
    assert a[au_index("AU12")] > 2 and a[au_index("AU20")] < 0.3 and a[au_index("AU15")] == 0
    stretch = canon.copy()
    stretch[61, 0] -= 0.04
    stretch[291, 0] += 0.04
    assert _nonzero(estimate_aus(stretch)) == {"AU20"}
    frown = canon.copy()
    frown[[61, 291], 1] -= 0.03
    assert _nonzero(estimate_aus(frown)) == {"AU15"}


def test_lids_and_blink(canon):
    aperture = canon[159, 1] - canon[145, 1]
    closed = canon.copy()
    closed[list(LANDMARK_GROUPS["upper_lids"]), 1] -= aperture
    a = estimate_aus(closed)
    assert a[au_index("AU45")] == pytest.approx(5.0) and _nonzero(a) == {"AU45"}
    wide = canon.copy()
    wide[list(LANDMARK_GROUPS["upper_lids"]), 1] += 0.02
    assert _nonzero(estimate_aus(wide)) == {"AU05"}
    tight = canon.copy()
    tight[list(LANDMARK_GROUPS["lower_lids"]), 1] += 0.02
    assert _nonzero(estimate_aus(tight)) == {"AU07"}


def test_lower_face_proxies(canon):
    def single(group, delta, au, radius=0.015):
        a = estimate_aus(_move(canon, group, delta, radius))
        assert a[au_index(au)] > 1.0, (au, a)
        assert int(np.argmax(a)) == au_index(au), (au, dict(zip(AU_NAMES, a.round(2))))

    single("cheeks", [0, 0.03, 0], "AU06")
    single("nose_alae", [0, 0.03, 0], "AU09", 0.01)
    single("chin", [0, 0.04, 0], "AU17", 0.02)
    single("lip_corners", [0, 0, -0.03], "AU14", 0.01)
    up = canon.copy()
    up[list(LANDMARK_GROUPS["upper_lip_outer"]), 1] += 0.04
    assert int(np.argmax(estimate_aus(up))) == au_index("AU10")
    thin = canon.copy()
    thin[list(LANDMARK_GROUPS["upper_lip_outer"]), 1] -= 0.015
    thin[list(LANDMARK_GROUPS["lower_lip_outer"]), 1] += 0.015
    assert int(np.argmax(estimate_aus(thin))) == au_index("AU23")


def test_lips_stretched_open_are_not_read_as_tightened(canon):
    """Open lips thin as they stretch; AU23 is read on closed lips only."""
    thin = canon.copy()
    thin[list(LANDMARK_GROUPS["upper_lip_outer"]), 1] -= 0.015
    thin[list(LANDMARK_GROUPS["lower_lip_outer"]), 1] += 0.015
    assert estimate_aus(thin)[au_index("AU23")] > 2.0
    opened = thin.copy()
    below = opened[:, 1] < 0.5 * (canon[13, 1] + canon[14, 1])  # the lower lip and all below it
    opened[below, 1] -= 0.04  # lips apart by ≈ AU23_OPEN_GATE · IOD
    a = estimate_aus(opened)
    assert a[au_index("AU25")] > 1.0 and a[au_index("AU23")] < 0.5, dict(zip(AU_NAMES, a.round(2)))


def test_lower_face_heights_ignore_eye_corners_following_the_lids(canon):
    """A detector's eye corners drop a little with closing lids; the cheeks, nose wings,
    lips and chin are measured from the lower nose, so they do not rise with it."""
    v = canon.copy()
    v[list(LANDMARK_GROUPS["eye_corners"]), 1] -= 0.01
    a = estimate_aus(v)
    for au in ("AU06", "AU09", "AU10", "AU17"):
        assert a[au_index(au)] < 0.1, (au, dict(zip(AU_NAMES, a.round(2))))


def test_invariant_to_similarity_transform_and_y_flip(canon):
    v = _move(_open_jaw(canon, 0.08), "inner_brows", [0, 0.04, 0])
    ref = estimate_aus(v)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # proper rotation
    moved = 37.0 * v @ q.T + np.array([5.0, -2.0, 100.0])
    np.testing.assert_allclose(estimate_aus(moved, neutral=37.0 * canon @ q.T), ref, atol=1e-3)
    np.testing.assert_allclose(estimate_aus(moved), ref, atol=1e-3)  # canonical neutral, any frame
    # image-style 2-D pixels (y down) of the frontal view
    px = np.c_[v[:, 0], -v[:, 1]] * 400 + 256
    a2 = estimate_aus(px)
    mask = np.ones(17, bool)
    mask[au_index("AU14")] = False  # needs depth
    np.testing.assert_allclose(a2[mask], ref[mask], atol=0.15)
    assert a2[au_index("AU14")] == 0


def test_neutral_and_batch(canon):
    v = _move(canon, "inner_brows", [0, 0.05, 0])
    np.testing.assert_allclose(estimate_aus(v, neutral=v), 0, atol=1e-5)
    # a 478-point array (iris points appended) uses the first 468
    v478 = np.concatenate([v, np.zeros((10, 3))])
    np.testing.assert_allclose(estimate_aus(v478), estimate_aus(v), atol=1e-6)
    batch = estimate_aus(np.stack([canon, v, _open_jaw(canon)]))
    assert batch.shape == (3, 17)
    np.testing.assert_allclose(batch[1], estimate_aus(v), atol=1e-6)
    # a 3-D neutral is projected for 2-D landmarks
    np.testing.assert_allclose(estimate_aus(v[:, :2], neutral=canon), estimate_aus(v[:, :2]), atol=1e-6)


def test_align_to_canonical_recovers_frame(canon):
    ang = np.deg2rad(30)
    r = np.array([[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]])
    q = align_to_canonical(3 * canon @ r.T + 1)
    ids = list(LANDMARK_GROUPS["anchors"])
    np.testing.assert_allclose(q, canon - canon[ids].mean(0), atol=1e-6)


@pytest.mark.parametrize(
    "points, match",
    [
        (np.zeros((100, 3)), r"expected FaceLandmarks or points of shape \[468 or 478, 2 or 3\]"),
        (np.zeros((468, 4)), r"\[468 or 478, 2 or 3\]"),
        (np.zeros((468, 3)), "degenerate"),
        (np.full((468, 3), np.nan), "NaN"),
    ],
)
def test_estimate_aus_bad_input(points, match):
    with pytest.raises(ValueError, match=match):
        estimate_aus(points)


def test_estimate_aus_bad_neutral(canon):
    with pytest.raises(ValueError, match="neutral: has 2-D points but landmarks are 3-D"):
        estimate_aus(canon, neutral=canon[:, :2])
    with pytest.raises(ValueError, match="neutral"):
        estimate_aus(canon, neutral=np.zeros((5, 3)))


# ------------------------------------------------------------- blendshapes
def test_blendshape_table():
    assert len(BLENDSHAPE_NAMES) == 52 and BLENDSHAPE_NAMES[0] == "_neutral"
    assert tuple(BLENDSHAPE_TO_AU) == AU_NAMES
    used = {n for terms in BLENDSHAPE_TO_AU.values() for n, _ in terms}
    assert used <= set(BLENDSHAPE_NAMES)
    zero = dict.fromkeys(BLENDSHAPE_NAMES, 0.0)
    np.testing.assert_array_equal(blendshapes_to_aus(zero), np.zeros(17))
    expect = {
        "browInnerUp": {"AU01"},
        "browOuterUpLeft": {"AU02"},
        "browDownRight": {"AU04"},
        "eyeWideLeft": {"AU05"},
        "cheekSquintLeft": {"AU06"},
        "eyeSquintRight": {"AU07"},
        "noseSneerLeft": {"AU09"},
        "mouthUpperUpLeft": {"AU10"},
        "mouthSmileRight": {"AU12"},
        "mouthDimpleLeft": {"AU14"},
        "mouthFrownLeft": {"AU15"},
        "mouthShrugLower": {"AU17"},
        "mouthStretchLeft": {"AU20"},
        "mouthPressLeft": {"AU23"},
        "jawOpen": {"AU25", "AU26"},
        "mouthLowerDownLeft": {"AU25"},
        "eyeBlinkLeft": {"AU45"},
    }
    for name, aus_on in expect.items():
        a = blendshapes_to_aus(zero | {name: 1.0})
        assert _nonzero(a, 0.0) == aus_on, name
    # both sides at 1 → 5; one side at 1 → 2.5; intensities × 5
    a = blendshapes_to_aus(zero | {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "browInnerUp": 0.3})
    assert a[au_index("AU12")] == 5.0 and a[au_index("AU01")] == pytest.approx(1.5)
    assert blendshapes_to_aus(zero | {"eyeBlinkLeft": 1.0})[au_index("AU45")] == 2.5
    # lips held shut while the jaw opens: no AU25
    a = blendshapes_to_aus(zero | {"jawOpen": 0.6, "mouthClose": 0.6})
    assert a[au_index("AU25")] == 0 and a[au_index("AU26")] == pytest.approx(3.0)


def test_blendshapes_bad_input():
    zero = dict.fromkeys(BLENDSHAPE_NAMES, 0.0)
    with pytest.raises(ValueError, match="missing browInnerUp"):
        blendshapes_to_aus({k: v for k, v in zero.items() if k != "browInnerUp"})
    with pytest.raises(ValueError, match="jawOpen is nan"):
        blendshapes_to_aus(zero | {"jawOpen": float("nan")})
    with pytest.raises(ValueError, match="expected a dict"):
        blendshapes_to_aus(np.zeros(52))


# --------------------------------------------------------------- MediaPipe
@pytest.fixture(scope="module")
def astronaut():
    skio = pytest.importorskip("skimage.io")
    return skio.imread(data_path("astronaut.png"))[:, :, :3]


@pytest.fixture(scope="module")
def astronaut_result(astronaut):
    pytest.importorskip("mediapipe")
    return estimate_aus_from_image(astronaut)


@pytest.mark.slow
def test_astronaut_face(astronaut, astronaut_result):
    face = astronaut_result["landmarks"]
    assert isinstance(face, FaceLandmarks)
    assert face.points.shape == (478, 3) and face.pixels.shape == (478, 2)
    assert face.image_size == astronaut.shape[:2]
    assert set(face.blendshapes) == set(BLENDSHAPE_NAMES)
    assert face.transform.shape == (4, 4)
    np.testing.assert_allclose(face.transform[3], [0, 0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(face.pixels, face.points[:, :2] * 512, rtol=1e-6)
    # the face is in the upper middle of the photo; subject's left eye is on the image right
    assert 120 < face.pixels[1, 0] < 300 and 60 < face.pixels[1, 1] < 250
    assert face.pixels[263, 0] > face.pixels[33, 0]
    # Eileen Collins smiles in the photo: both estimators see AU12
    bs, geo = astronaut_result["blendshapes"], astronaut_result["geometric"]
    assert bs.shape == geo.shape == (17,)
    assert bs[au_index("AU12")] > 3.0 and geo[au_index("AU12")] > 2.0
    assert bs[au_index("AU26")] < 1.0  # jaw closed
    np.testing.assert_allclose(bs, blendshapes_to_aus(face.blendshapes))
    np.testing.assert_allclose(geo, estimate_aus(face.points_px))


def test_blank_image_has_no_face():
    pytest.importorskip("mediapipe")
    with pytest.raises(ValueError, match="no face found in image"):
        detect_landmarks(np.full((256, 256, 3), 127, np.uint8))


def test_missing_mediapipe_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    monkeypatch.setitem(sys.modules, "mediapipe.tasks", None)
    monkeypatch.setitem(sys.modules, "mediapipe.tasks.python", None)
    with pytest.raises(ImportError, match=r"pip install 'emozone-lite\[landmarks\]'"):
        detect_landmarks(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ImportError, match="emozone-lite"):
        detect_landmarks_video([np.zeros((64, 64, 3), np.uint8)])


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((64, 64, 3), np.float32), "dtype uint8"),
        (np.zeros((64, 64, 5), np.uint8), r"RGB image \[H, W, 3\]"),
        (np.zeros((8, 8, 3), np.uint8), "too small"),
    ],
)
def test_detect_bad_image(image, match):
    with pytest.raises(ValueError, match=match):
        detect_landmarks(image)


@pytest.mark.slow
def test_video_marks_failed_frames_and_interpolates(astronaut):
    pytest.importorskip("mediapipe")
    blank = np.full_like(astronaut, 127)
    track = detect_landmarks_video([astronaut, blank, astronaut], fps=25)
    assert len(track) == 3 and track.success.tolist() == [True, False, True]
    assert np.isnan(track.points[1]).all() and np.isfinite(track.points[[0, 2]]).all()
    assert track[1] is None and isinstance(track[0], FaceLandmarks)
    au = track.to_au_track()
    assert isinstance(au, AUTrack) and len(au) == 3 and au.success.tolist() == [True, False, True]
    np.testing.assert_allclose(au.values[1], 0.5 * (au.values[0] + au.values[2]), atol=1e-5)
    geo = track.to_au_track("geometric")
    assert np.isfinite(geo.values).all()
    with pytest.raises(ValueError, match="method"):
        track.to_au_track("magic")


def test_video_bad_input():
    with pytest.raises(ValueError, match="at least one frame"):
        detect_landmarks_video([])
    with pytest.raises(ValueError, match=r"frames\[1\] is 32×32"):
        detect_landmarks_video([np.zeros((64, 64, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)])
    with pytest.raises(ValueError, match="fps"):
        detect_landmarks_video([np.zeros((64, 64, 3), np.uint8)], fps=0)
