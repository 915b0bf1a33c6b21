"""Tests for emozone_lite.aus: FACS table, AUTrack, OpenFace CSV I/O, authoring."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from emozone_lite import aus
from emozone_lite.aus import (
    AU_NAMES,
    FACS,
    LOWER_AUS,
    N_AUS,
    OPENFACE_COLUMNS,
    PRESETS,
    UPPER_AUS,
    AUTrack,
    au_index,
    blink_track,
    fill_failed_frames,
    from_keyframes,
    preset,
    read_openface_csv,
    write_openface_csv,
)


def _track(T=40, fps=25.0, seed=0):
    rng = np.random.default_rng(seed)
    return AUTrack(rng.uniform(0, 5, (T, N_AUS)).astype(np.float32), fps=fps)


# ----------------------------------------------------------------- FACS table
def test_facs_table_order_zones_and_split():
    assert N_AUS == 17 and len(AU_NAMES) == 17
    assert tuple(FACS) == AU_NAMES
    assert FACS["AU01"].name == "Inner brow raiser"
    assert FACS["AU01"].muscle == "frontalis, pars medialis"
    synergy = {a for a, i in FACS.items() if i.zone == "synergy"}
    upper = {a for a, i in FACS.items() if i.zone == "upper"}
    lower = {a for a, i in FACS.items() if i.zone == "lower"}
    assert synergy == {"AU06", "AU09", "AU10", "AU12", "AU14"}
    assert upper == {"AU01", "AU02", "AU04", "AU05", "AU07", "AU45"}
    assert lower == {"AU15", "AU17", "AU20", "AU23", "AU25", "AU26"}
    # TalkingGaussian metric split is a partition of the 17 AUs
    assert set(UPPER_AUS) | set(LOWER_AUS) == set(AU_NAMES)
    assert not set(UPPER_AUS) & set(LOWER_AUS)
    assert len(UPPER_AUS) == 8 and len(LOWER_AUS) == 9


def test_au_index_accepts_variants_and_rejects_unknown():
    assert au_index("AU01") == 0 and au_index("au1") == 0 and au_index("AU45_r") == 16
    with pytest.raises(ValueError, match="unknown AU 'AU03'"):
        au_index("AU03")
    with pytest.raises(ValueError, match="unknown AU"):
        au_index("smile")


# ------------------------------------------------------------------- AUTrack
def test_autrack_basics():
    tr = _track(50)
    assert len(tr) == 50 and tr.duration == pytest.approx(2.0)
    assert tr.values.dtype == np.float32
    np.testing.assert_array_equal(tr.au("AU12"), tr.values[:, 8])
    np.testing.assert_allclose(tr.times[:3], [0.0, 0.04, 0.08])
    t = tr.to_tensor()
    assert isinstance(t, torch.Tensor) and t.shape == (50, 17) and t.dtype == torch.float32
    np.testing.assert_array_equal(tr[3], tr.values[3])
    sub = tr[10:20]
    assert isinstance(sub, AUTrack) and len(sub) == 10
    np.testing.assert_array_equal(sub.values, tr.values[10:20])


def test_autrack_copies_input():
    v = np.ones((5, 17), np.float32)
    tr = AUTrack(v)
    v[:] = 3
    assert tr.values.max() == 1.0


def test_autrack_concatenate_and_with_au():
    a, b = _track(10), _track(15, seed=1)
    c = a + b
    assert len(c) == 25
    np.testing.assert_array_equal(c.values[10:], b.values)
    d = AUTrack.concatenate([a, AUTrack(b.values, success=np.zeros(15, bool))])
    assert d.success.tolist() == [True] * 10 + [False] * 15
    e = a.with_au("AU12", 2.5)
    assert np.all(e.au("AU12") == 2.5)
    np.testing.assert_array_equal(np.delete(e.values, 8, 1), np.delete(a.values, 8, 1))
    with pytest.raises(ValueError, match="25 fps"):
        AUTrack.concatenate([a, AUTrack(b.values, fps=30)])
    with pytest.raises(ValueError, match=r"expected a scalar or shape \[10\]"):
        a.with_au("AU12", np.zeros(3))
    with pytest.raises(ValueError, match="unknown AU"):
        a.with_au("AU99", 1.0)


def test_resample_linear_in_time():
    ramp = np.linspace(0, 4, 50)[:, None] * np.ones((1, 17))
    tr = AUTrack(ramp, fps=25)
    up = tr.resample(50)
    assert up.fps == 50 and len(up) == 100
    # linear signal is reproduced exactly inside the range (held at the end)
    inside = up.times <= tr.times[-1]
    np.testing.assert_allclose(up.values[inside, 3], np.interp(up.times[inside], tr.times, ramp[:, 3]), atol=1e-5)
    down = tr.resample(n_frames=10)
    assert len(down) == 10 and down.duration == pytest.approx(tr.duration)
    np.testing.assert_allclose(down.values[0], 0, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        tr.resample()
    with pytest.raises(ValueError, match="positive"):
        tr.resample(-5)


def test_smooth_gaussian_reduces_jitter_keeps_constant():
    rng = np.random.default_rng(0)
    const = AUTrack(np.full((30, 17), 2.0))
    np.testing.assert_allclose(const.smooth(2.0).values, 2.0, atol=1e-6)
    noisy = AUTrack(np.clip(2.5 + rng.normal(0, 1, (100, 17)), 0, 5))
    jitter = lambda v: np.mean(np.diff(v, 2, axis=0) ** 2)  # noqa: E731
    assert jitter(noisy.smooth(3.0).values) < 0.05 * jitter(noisy.values)
    np.testing.assert_array_equal(noisy.smooth(0).values, noisy.values)
    with pytest.raises(ValueError, match="sigma_frames"):
        noisy.smooth(-1)


# bad inputs -----------------------------------------------------------------
@pytest.mark.parametrize(
    "values, match",
    [
        (np.zeros(17), r"one frame"),
        (np.zeros((5, 16)), r"expected shape \[T, 17\]"),
        (np.zeros((2, 5, 17)), r"expected shape \[T, 17\]"),
        (np.zeros((0, 17)), r"at least one frame"),
    ],
)
def test_autrack_bad_shapes(values, match):
    with pytest.raises(ValueError, match=match):
        AUTrack(values)


def test_autrack_nan_raises():
    v = np.zeros((4, 17))
    v[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf at frame\(s\) \[2\]"):
        AUTrack(v)


def test_autrack_out_of_range_clamps_with_warning_or_raises_when_strict():
    v = np.zeros((3, 17))
    v[0, 0], v[1, 1] = -0.5, 7.0
    with pytest.warns(UserWarning, match="2 intensities outside"):
        tr = AUTrack(v)
    assert tr.values[0, 0] == 0.0 and tr.values[1, 1] == 5.0
    with pytest.raises(ValueError, match="outside \\[0, 5\\]"):
        AUTrack(v, strict=True)


def test_autrack_bad_fps_and_side_arrays():
    with pytest.raises(ValueError, match="fps"):
        AUTrack(np.zeros((3, 17)), fps=0)
    with pytest.raises(ValueError, match=r"confidence: expected shape \[3\]"):
        AUTrack(np.zeros((3, 17)), confidence=np.ones(4))
    with pytest.raises(ValueError, match=r"success: expected shape \[3\]"):
        AUTrack(np.zeros((3, 17)), success=np.ones(2, bool))
    with pytest.raises(ValueError, match="empty"):
        _track(5)[3:3]


def test_fill_failed_frames():
    v = np.array([[np.nan], [1.0], [9.0], [3.0], [9.0]])
    ok = np.array([True, True, False, True, False])
    out = fill_failed_frames(v, ok)  # row 0 is NaN → treated as failed, edge held
    np.testing.assert_allclose(out.ravel(), [1, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="all frames failed"):
        fill_failed_frames(v, np.zeros(5, bool))


# -------------------------------------------------------------- OpenFace CSV
def test_openface_columns_layout():
    cols = OPENFACE_COLUMNS
    # 5 + gaze 8 + eye lmk 5*56 + pose 6 + 2D 2*68 + 3D 3*68 + PDM 6+34 + AU_r 17 + AU_c 18
    assert len(cols) == 714 == 5 + 8 + 280 + 6 + 136 + 204 + 40 + 17 + 18
    assert len(set(cols)) == len(cols)
    assert cols[:5] == ("frame", "face_id", "timestamp", "confidence", "success")
    assert cols[5] == "gaze_0_x" and cols[12] == "gaze_angle_y" and cols[13] == "eye_lmk_x_0"
    assert cols[cols.index("eye_lmk_Z_55") + 1] == "pose_Tx"
    assert cols[cols.index("pose_Rz") + 1] == "x_0"
    assert cols[cols.index("Z_67") + 1] == "p_scale" and cols[cols.index("p_ty") + 1] == "p_0"
    assert cols[cols.index("p_33") + 1] == "AU01_r"
    assert [c for c in cols if c.endswith("_r")] == [f"{a}_r" for a in AU_NAMES]
    au_c = [c for c in cols if c.endswith("_c")]
    assert len(au_c) == 18 and "AU28_c" in au_c and au_c == sorted(au_c)
    assert cols[-1] == "AU45_c"


def test_openface_round_trip(tmp_path):
    tr = AUTrack(np.round(_track(30, fps=30).values, 3), fps=30.0,
                 confidence=np.full(30, 0.97), success=np.ones(30, bool))
    p = tmp_path / "out.csv"
    write_openface_csv(tr, p)
    lines = p.read_text().splitlines()
    assert len(lines) == 31
    header = lines[0].split(", ")
    assert len(header) == 714 and tuple(header) == OPENFACE_COLUMNS
    assert lines[0].split(",")[1] == " face_id"  # OpenFace's leading-space headers
    rows = list(csv.reader(lines[1:], skipinitialspace=True))
    assert all(len(r) == 714 for r in rows)
    assert rows[1][0] == "2" and float(rows[1][2]) == pytest.approx(1 / 30, abs=1e-3)
    # presence columns follow intensity >= 1
    j_r, j_c = header.index("AU12_r"), header.index("AU12_c")
    assert all((float(r[j_r]) >= 1.0) == (r[j_c] == "1") for r in rows)
    assert all(r[header.index("AU28_c")] == "0" for r in rows)
    back = read_openface_csv(p)
    assert back.fps == pytest.approx(30.0)
    np.testing.assert_allclose(back.values, tr.values, atol=5e-4)
    np.testing.assert_allclose(back.confidence, 0.97)
    assert back.success.all()


def test_write_is_atomic_and_type_checked(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("old")
    with pytest.raises(TypeError, match="expected an AUTrack"):
        write_openface_csv(np.zeros((3, 17)), p)
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["x.csv"]  # no temp file left behind


HAND_WRITTEN = """\
frame, face_id, timestamp, confidence, success, gaze_0_x, AU01_r, AU02_r, AU04_r, AU05_r, AU06_r, AU07_r, AU09_r, AU10_r, AU12_r, AU14_r, AU15_r, AU17_r, AU20_r, AU23_r, AU25_r, AU26_r, AU45_r, AU01_c, AU45_c
1, 0, 0.000, 0.98, 1, 0.1, 1.00, 0, 0, 0, 0, 0, 0, 0, 2.00, 0, 0, 0, 0, 0, 0, 0, 0.00, 1, 0
2, 0, 0.040, 0.98, 1, 0.1, 2.00, 0, 0, 0, 0, 0, 0, 0, 2.00, 0, 0, 0, 0, 0, 0, 0, 0.00, 1, 0
3, 0, 0.080, 0.00, 0, 0.0, 0.00, 0, 0, 0, 0, 0, 0, 0, 0.00, 0, 0, 0, 0, 0, 0, 0, 0.00, 0, 0

4, 0, 0.120, 0.98, 1, 0.1, 4.00, 0, 0, 0, 0, 0, 0, 0, 2.00, 0, 0, 0, 0, 0, 0, 0, 3.00, 1, 1
5, 0, 0.160, 0.30, 1, 0.1, 0.00, 0, 0, 0, 0, 0, 0, 0, 0.00, 0, 0, 0, 0, 0, 0, 0, 0.00, 0, 0
"""


def test_read_hand_written_openface_csv_interpolates_failed_frames(tmp_path):
    p = tmp_path / "of.csv"
    p.write_text(HAND_WRITTEN)
    tr = read_openface_csv(p)
    assert len(tr) == 5 and tr.fps == pytest.approx(25.0)
    # frame 3 failed (success 0) → midpoint of frames 2 and 4; frame 5 low confidence → held
    np.testing.assert_allclose(tr.au("AU01"), [1, 2, 3, 4, 4])
    np.testing.assert_allclose(tr.au("AU12"), [2, 2, 2, 2, 2])
    np.testing.assert_allclose(tr.au("AU45"), [0, 0, 1.5, 3, 3])
    assert tr.success.tolist() == [True, True, False, True, False]
    np.testing.assert_allclose(tr.confidence, [0.98, 0.98, 0.0, 0.98, 0.30])
    # a stricter / looser confidence threshold changes what counts as failed
    assert read_openface_csv(p, min_confidence=0.2).success.tolist() == [True, True, False, True, True]
    assert read_openface_csv(p, fps=30).fps == 30


def test_read_minimal_csv_without_spaces_and_missing_aus(tmp_path):
    p = tmp_path / "min.csv"
    p.write_text("frame,AU12_r,AU06_r\n1,1.5,0.5\n2,2.5,1.0\n")
    with pytest.warns(UserWarning, match="no columns for AU01"):
        tr = read_openface_csv(p)
    assert tr.fps == 25.0 and len(tr) == 2
    np.testing.assert_allclose(tr.au("AU12"), [1.5, 2.5])
    np.testing.assert_allclose(tr.au("AU06"), [0.5, 1.0])
    assert tr.values[:, au_index("AU01")].max() == 0


def test_read_sorts_frames_and_selects_face(tmp_path):
    p = tmp_path / "faces.csv"
    p.write_text(
        "frame, face_id, timestamp, success, AU12_r\n"
        "2, 0, 0.04, 1, 2.0\n1, 0, 0.00, 1, 1.0\n1, 1, 0.00, 1, 4.0\n2, 1, 0.04, 1, 5.0\n"
    )
    with pytest.raises(ValueError, match="tracks 2 faces.*face_id="):
        read_openface_csv(p)
    with pytest.warns(UserWarning):
        tr0 = read_openface_csv(p, face_id=0)
        tr1 = read_openface_csv(p, face_id=1)
    np.testing.assert_allclose(tr0.au("AU12"), [1, 2])
    np.testing.assert_allclose(tr1.au("AU12"), [4, 5])
    with pytest.raises(ValueError, match="no rows with face_id 7"):
        read_openface_csv(p, face_id=7)


def test_read_nan_cells_are_interpolated_with_warning(tmp_path):
    p = tmp_path / "nan.csv"
    cols = ", ".join(f"{a}_r" for a in AU_NAMES)
    row = lambda x: ", ".join([x] * 17)  # noqa: E731
    p.write_text(f"frame, success, {cols}\n1, 1, {row('1.0')}\n2, 1, {row('nan')}\n3, 1, {row('3.0')}\n")
    with pytest.warns(UserWarning, match="1 frame"):
        tr = read_openface_csv(p)
    np.testing.assert_allclose(tr.values[1], 2.0)
    assert tr.success.tolist() == [True, False, True]


@pytest.mark.filterwarnings("ignore:.*no columns for:UserWarning")
@pytest.mark.parametrize(
    "text, match",
    [
        ("frame, timestamp, confidence\n1, 0, 1\n", r"AU CSV has no AU\*_r columns; expected OpenFace 2.x output"),
        ("", "empty"),
        ("frame, AU01_r\n", "no data rows"),
        ("frame, AU01_r, AU02_r\n1, 0.5, 0.5\n2, 0.5\n", "line 3: 2 fields but the header has 3"),
        ("frame, AU01_r\n1, 0.5\n2, abc\n", r"line 3, column 'AU01_r': 'abc' is not a number"),
        ("frame, success, AU01_r\n1, 0, 0.5\n2, 0, 0.5\n", "no successfully tracked frame"),
    ],
)
def test_read_bad_csv(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_openface_csv(p)


def test_read_out_of_range_clamped_or_strict(tmp_path):
    p = tmp_path / "range.csv"
    p.write_text("frame, AU01_r\n1, 6.0\n2, -1.0\n")
    with pytest.warns(UserWarning):
        tr = read_openface_csv(p)
    np.testing.assert_allclose(tr.au("AU01"), [5.0, 0.0])
    with pytest.raises(ValueError, match="outside"), pytest.warns(UserWarning, match="no columns"):
        read_openface_csv(p, strict=True)


# ---------------------------------------------------------------- authoring
def test_presets_are_emfacs_prototypes():
    assert set(PRESETS) == {"neutral", "happy", "surprise", "anger", "sadness", "fear", "disgust", "contempt"}
    on = lambda name: {AU_NAMES[i] for i in np.nonzero(preset(name))[0]}  # noqa: E731
    assert on("neutral") == set()
    assert on("happy") == {"AU06", "AU12"}
    assert {"AU01", "AU02", "AU05", "AU26"} <= on("surprise")
    assert on("anger") == {"AU04", "AU05", "AU07", "AU23"}
    assert on("sadness") == {"AU01", "AU04", "AU15"}
    assert {"AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"} <= on("fear")
    assert {"AU09", "AU15"} <= on("disgust")
    assert on("contempt") == {"AU12", "AU14"}
    v = preset("happy", 0.5)
    assert v.dtype == np.float32 and v.shape == (17,)
    np.testing.assert_allclose(v, 0.5 * preset("happy"))
    assert preset("surprise", 10.0).max() == 5.0  # clipped
    with pytest.raises(ValueError, match="unknown preset 'joy'"):
        preset("joy")
    with pytest.raises(ValueError, match=">= 0"):
        preset("happy", -1)


def test_from_keyframes_eased_and_held():
    # keyframes at frames 10, 40 and 60 (25 fps)
    tr = from_keyframes([(1.6, {"AU12": 4.0}), (0.4, "neutral"), (2.4, preset("sadness"))], duration_s=3.0)
    assert len(tr) == 75 and tr.fps == 25
    a12 = tr.au("AU12")
    assert np.all(a12[:11] == 0) and a12[40] == pytest.approx(4.0)
    np.testing.assert_allclose(tr.values[60:], np.broadcast_to(preset("sadness"), (15, 17)))
    assert a12[25] == pytest.approx(2.0, abs=1e-5)  # cosine easing: half way at the midpoint
    # cosine easing starts slower than linear: zero velocity at the keyframe
    lin = from_keyframes([(0.4, "neutral"), (1.6, {"AU12": 4.0})], 3.0, easing="linear").au("AU12")
    assert lin[13] == pytest.approx(4.0 * 3 / 30, abs=1e-5)
    assert 0 < a12[13] < lin[13]
    cub = from_keyframes([(0.4, "neutral"), (1.6, {"AU12": 4.0})], 3.0, easing="cubic").au("AU12")
    assert np.all(np.diff(cub) >= -1e-6)
    assert tr.values.min() >= 0 and tr.values.max() <= 5


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(keyframes=[]), "at least one keyframe"),
        (dict(keyframes=[(0, "joy")]), "unknown preset"),
        (dict(keyframes=[(0, {"AU99": 1})]), "unknown AU"),
        (dict(keyframes=[(0, np.zeros(5))]), r"expected shape \[17\]"),
        (dict(keyframes=[(0, {"AU12": 9})]), "outside"),
        (dict(keyframes=[(0, {"AU12": float("nan")})]), "NaN|nan"),
        (dict(keyframes=[(5.0, "happy")]), "outside"),
        (dict(keyframes=[(1.0, "happy"), (1.0, "sadness")]), "distinct"),
        (dict(keyframes=[(0, "happy")], easing="bounce"), "unknown easing"),
        (dict(keyframes=[(0, "happy")], duration_s=0), "duration_s"),
        (dict(keyframes=["happy"]), "expected a pair"),
    ],
)
def test_from_keyframes_bad_input(kw, match):
    args = dict(duration_s=2.0) | kw
    with pytest.raises(ValueError, match=match):
        from_keyframes(**args)


def test_blink_track_seeded_and_natural():
    base = from_keyframes([(0, "happy")], duration_s=60.0)
    b1 = blink_track(base, seed=3)
    b2 = blink_track(base, seed=3)
    np.testing.assert_array_equal(b1.values, b2.values)
    assert not np.array_equal(b1.values, blink_track(base, seed=4).values)
    np.testing.assert_array_equal(np.delete(b1.values, 16, 1), np.delete(base.values, 16, 1))
    a45 = b1.au("AU45")
    onsets = np.nonzero((a45[1:] > 1.0) & (a45[:-1] <= 1.0))[0]
    assert 8 <= len(onsets) <= 30  # ~17 per minute
    assert np.min(np.diff(onsets)) / 25.0 >= 0.9  # refractory period
    assert 3.0 < a45.max() <= 5.0
    n = blink_track(100, fps=25)
    assert len(n) == 100 and n.values[:, :16].max() == 0
    with pytest.raises(ValueError, match="peak"):
        blink_track(base, peak=6)
    with pytest.raises(TypeError):
        blink_track(np.zeros((5, 17)))


def test_module_exports_exist():
    for name in ("AU_NAMES", "N_AUS", "FACS", "UPPER_AUS", "LOWER_AUS", "AUTrack", "read_openface_csv",
                 "write_openface_csv", "PRESETS", "preset", "from_keyframes", "blink_track"):
        assert hasattr(aus, name)
