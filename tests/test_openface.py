"""Tests for emozone_lite.openface: the OpenFace 2.x CSV layout, writer and reader."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emozone_lite.aus import AU_NAMES, N_AUS, AUTrack, au_index, fill_failed_frames
from emozone_lite.openface import OPENFACE_COLUMNS, openface_columns, read_openface_csv, write_openface_csv


def _track(T=40, fps=25.0, seed=0):
    rng = np.random.default_rng(seed)
    return AUTrack(rng.uniform(0, 5, (T, N_AUS)).astype(np.float32), fps=fps)


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
    tr = AUTrack(
        np.round(_track(30, fps=30).values, 3), fps=30.0, confidence=np.full(30, 0.97), success=np.ones(30, bool)
    )
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
    row = lambda x: ", ".join([x] * 17)
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


def test_openface_columns_sizes():
    assert openface_columns() == OPENFACE_COLUMNS
    small = openface_columns(n_eye_landmarks=2, n_face_landmarks=3, n_model_modes=1)
    assert len(small) == 5 + 8 + 5 * 2 + 6 + 5 * 3 + 6 + 1 + 17 + 18
    assert small[-35:] == OPENFACE_COLUMNS[-35:]  # the AU columns end every layout


# ------------------------------------------------------------------ properties
#: Frame rates the reader recognises from ms-rounded timestamps (integer and NTSC rates).
COMMON_FPS = (12.0, 24.0, 25.0, 30.0, 50.0, 60.0, 24000 / 1001, 30000 / 1001, 60000 / 1001)


@settings(max_examples=30, deadline=None)
@given(
    values=hnp.arrays(np.float32, st.tuples(st.integers(1, 60), st.just(N_AUS)), elements=st.floats(0, 5, width=32)),
    fps=st.sampled_from(COMMON_FPS),
    data=st.data(),
)
def test_write_then_read_keeps_values_fps_and_success(values, fps, data):
    T = len(values)
    conf = data.draw(hnp.arrays(np.float32, (T,), elements=st.floats(0, 1, width=32)))
    succ = data.draw(hnp.arrays(np.bool_, (T,)))
    track = AUTrack(values, fps=fps, confidence=conf, success=succ)
    # what the reader counts as tracked: success 1 and the printed (2-decimal) confidence >= 0.5
    ok = succ & (np.array([float(f"{c:.2f}") for c in conf]) >= 0.5)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "aus.csv"
        write_openface_csv(track, p)
        if not ok.any():
            with pytest.raises(ValueError, match="no successfully tracked frame"):
                read_openface_csv(p)
            return
        back = read_openface_csv(p)
        assert read_openface_csv(p, fps=fps).fps == fps
    assert len(back) == T
    assert back.success.tolist() == ok.tolist()
    np.testing.assert_allclose(back.confidence, conf, atol=5e-3 + 1e-6, rtol=0)  # printed with 2 decimals
    printed = np.round(values.astype(np.float64), 3)  # intensities are printed with 3 decimals
    np.testing.assert_allclose(back.values[ok], values[ok], atol=5e-4 + 1e-6, rtol=0)
    # failed frames are interpolated from the tracked ones, as fill_failed_frames does
    np.testing.assert_allclose(back.values, fill_failed_frames(printed, ok), atol=1e-6, rtol=0)
    if T >= 25:  # enough ms-rounded timestamps to pin the rate down to 0.2 % (2 frames at 60 fps also fit 59;
        # 25 frames at 29.97 fps also fit 30: OpenFace's millisecond timestamps cannot tell them apart)
        assert back.fps == pytest.approx(fps, rel=2e-3)
    elif T == 1:
        assert back.fps == 25.0  # no timestamps to read a rate from: the default
