"""``emozone-lite track``: a talking video → an OpenFace 2.x AU CSV (emozone_lite.track).

The end-to-end check renders its own talking video from the teacher rig — 4 s of ARCTIC
a0007 at 320×240 and 30 fps (not the toolkit's 256² / 25 fps), the speech muxed as AAC —
with brows, smile, brow lowering and jaw drop rising and falling in turn, tracks it, and
compares what comes back with the AUs that drove the teacher.
"""

from __future__ import annotations

import csv
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from emozone_lite import aus
from emozone_lite.__main__ import main
from emozone_lite.aus import AU_NAMES, au_index
from emozone_lite.openface import OPENFACE_COLUMNS, read_openface_csv, write_openface_csv
from emozone_lite.track import IBUG68_FROM_MEDIAPIPE, iter_video_frames, landmarks_68, track_video, video_neutral
from emozone_lite.utils import data_path

FPS, W, H, SECONDS = 30.0, 320, 240, 4.0
# AU01+AU02 (brows up), AU12 (smile), AU04 (brows down, with a little smile) and AU26 (jaw
# drop, after the speech ends at 3.5 s) rise and fall in turn.
SCRIPT = [
    (0.0, {}),
    (0.25, {}),
    (0.6, {"AU01": 4, "AU02": 4}),
    (0.9, {"AU01": 4, "AU02": 4}),
    (1.25, {"AU12": 4}),
    (1.7, {"AU12": 4}),
    (2.05, {"AU04": 4, "AU12": 2}),
    (2.5, {"AU04": 4}),
    (2.85, {}),
    (3.3, {"AU26": 4}),
    (3.6, {"AU26": 4}),
    (4.0, {}),
]
#: Active AUs the tracker must recover with r >= 0.8 (the issue's target). Measured on this
#: clip (module docstring of emozone_lite.track): AU01 0.99, AU02 0.98, AU04 0.88, AU12 0.96,
#: AU26 0.83. AU04 was 0.64 while its reading counted the brows drawn together at full weight
#: (landmarks.AU04_GAP_WEIGHT).
RECOVERED = ("AU01", "AU02", "AU04", "AU12", "AU26")


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The teacher's talking video (mp4 with sound) and the AUs that drove it ``[120, 17]``."""
    from emozone_lite.teacher import talking_video

    return talking_video(
        tmp_path_factory.mktemp("clip") / "talk.mp4", SCRIPT, data_path("arctic_a0007_phone.lab"),
        data_path("arctic_a0007.wav"), seconds=SECONDS, width=W, height=H, fps=FPS,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tracked(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked")
    result = track_video(clip[0], out / "aus.csv", plot=out / "aus.png", progress=False)
    return result, out / "aus.csv", out / "aus.png"


@pytest.fixture(scope="module")
def short_clip(clip, tmp_path_factory):
    """The clip's first second (30 frames), re-encoded without sound: quick inputs for the other tests."""
    p = tmp_path_factory.mktemp("short") / "short.mp4"
    _ffmpeg("-i", str(clip[0]), "-frames:v", "30", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(p))
    return p


# --------------------------------------------------------------------------- the 68 points
def test_ibug68_mapping_is_symmetric_and_in_order():
    from emozone_lite.landmarks import load_canonical_mesh
    from emozone_lite.teacher import mirror_index

    idx = np.array(IBUG68_FROM_MEDIAPIPE)
    assert idx.shape == (68,) and len(set(idx.tolist())) == 68 and idx.max() < 468
    v = load_canonical_mesh().vertices
    mi = mirror_index(v)
    # iBUG's left/right pairs (0↔16 … 7↔9, brows, eyes, nose wings, lips) are mirror vertices
    pairs = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
    for a, b in pairs:
        assert mi[idx[a]] == idx[b], f"iBUG {a} and {b} should be mirror vertices"
    for m in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66):
        assert abs(v[idx[m], 0]) < 1e-4, f"iBUG {m} should lie on the midline"
    p = landmarks_68(v)
    assert (p[0:8, 0] < 0).all() and (p[36:42, 0] < 0).all(), "subject's right first (x < 0 on the mesh)"
    y = lambda sl: p[sl, 1].mean()
    assert y(slice(17, 27)) > y(slice(36, 48)) > y(slice(31, 36)) > y(slice(48, 68)) > p[8, 1]  # brows … chin
    assert p[30, 2] == p[27:36, 2].max(), "30 is the nose tip"
    with pytest.raises(ValueError, match="468 or 478"):
        landmarks_68(np.zeros((68, 2)))


def test_video_neutral_takes_the_chin_from_the_closed_mouth():
    feats = [
        {"jaw_drop": j, "chin_height": c, "lips_gap": g} for j, c, g in [(1.6, 0.5, 0.0)] * 3 + [(1.9, 0.2, 0.3)] * 7
    ]
    n = video_neutral(feats)
    assert n["jaw_drop"] == pytest.approx(1.9) and n["lips_gap"] == pytest.approx(0.3)  # medians
    assert n["chin_height"] == pytest.approx(0.5)  # the closed mouth's
    with pytest.raises(ValueError, match="at least one frame"):
        video_neutral([])


def test_write_openface_csv_timestamps_and_landmarks(tmp_path):
    tr = aus.AUTrack(np.full((3, 17), 2.0), fps=10.0)
    lm = np.arange(3 * 68 * 2, dtype=float).reshape(3, 68, 2)
    lm[1] = np.nan
    write_openface_csv(tr, tmp_path / "a.csv", timestamps=[0.0, 0.1234, 0.5], landmarks=lm)
    rows = list(csv.DictReader(open(tmp_path / "a.csv"), skipinitialspace=True))
    assert [r["timestamp"] for r in rows] == ["0.000", "0.123", "0.500"]
    assert float(rows[0]["x_1"]) == 2.0 and float(rows[0]["y_67"]) == 135.0 and float(rows[1]["x_5"]) == 0.0
    with pytest.raises(ValueError, match="timestamps"):
        write_openface_csv(tr, tmp_path / "b.csv", timestamps=[0.0, 1.0])
    with pytest.raises(ValueError, match="landmarks"):
        write_openface_csv(tr, tmp_path / "b.csv", landmarks=np.zeros((3, 468, 2)))
    assert not (tmp_path / "b.csv").exists()


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_track_recovers_the_teachers_aus(clip, tracked):
    _, true = clip
    result, _, _ = tracked
    assert result.n_found == len(result) == len(true)
    active = [a for a in AU_NAMES if true[:, au_index(a)].max() > 0]
    assert sorted(active) == sorted(RECOVERED)
    r = {a: float(np.corrcoef(true[:, au_index(a)], result.aus.au(a))[0, 1]) for a in active}
    for a in RECOVERED:
        assert r[a] >= 0.8, f"{a}: r = {r[a]:.3f} with the teacher's AU (target 0.8); all: {r}"


@pytest.mark.slow
def test_track_csv_matches_the_video(clip, tracked):
    video, true = clip
    result, csv_path, png = tracked
    n_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))  # ffmpeg's own count
    assert n_frames == len(true) == 120
    import av

    with av.open(str(video)) as c:
        assert c.streams.audio, "the test video carries its speech"

    with open(csv_path) as f:
        header = f.readline().rstrip("\n").split(", ")
        rows = [line.rstrip("\n").split(", ") for line in f]
    assert tuple(header) == OPENFACE_COLUMNS and all(len(r) == len(header) for r in rows)
    col = {n: j for j, n in enumerate(header)}
    num = lambda name: np.array([float(r[col[name]]) for r in rows])
    assert len(rows) == 120
    np.testing.assert_array_equal(num("frame"), np.arange(1, 121))
    np.testing.assert_allclose(num("timestamp"), np.arange(120) / FPS, atol=6e-4)
    np.testing.assert_allclose(result.timestamps, np.arange(120) / FPS, atol=1e-9)
    assert (num("face_id") == 0).all() and (num("success") == 1).all() and (num("confidence") == 1).all()
    x = np.stack([num(f"x_{i}") for i in range(68)], 1)
    y = np.stack([num(f"y_{i}") for i in range(68)], 1)
    np.testing.assert_allclose(np.stack([x, y], -1), result.landmarks68, atol=6e-3)
    inner = slice(17, 48)  # brows, nose, eyes: inside the frame (the chin leaves it when the jaw drops)
    assert (x[:, inner] > 0).all() and (x[:, inner] < W).all() and (y[:, inner] > 0).all() and (y[:, inner] < H).all()
    assert (x[:, 36] < x[:, 45]).all(), "the subject's right eye is on the image's left"
    for a in ("AU12", "AU26"):
        np.testing.assert_array_equal(num(f"{a}_c"), (num(f"{a}_r") >= 1.0).astype(float))

    back = read_openface_csv(csv_path)
    assert back.fps == 30.0 and len(back) == 120 and back.success.all()
    np.testing.assert_allclose(back.values, result.aus.values, atol=6e-4)
    back2 = aus.read_openface_csv(csv_path)
    assert back2.fps == 30.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_variable_frame_rate_keeps_the_real_timestamps(short_clip, tmp_path):
    # 10 frames at 25 fps, then 20 at about 10 fps with a 13 ms jitter: timestamps a
    # constant-rate reader (frame / fps) would get wrong
    vfr = tmp_path / "vfr.mp4"
    expr = "if(lt(N,10),N*0.04,0.4+(N-10)*0.1+0.013*mod(N,2))/TB"
    _ffmpeg(
        "-i", str(short_clip), "-vf", f"setpts='{expr}'", "-fps_mode", "passthrough", "-enc_time_base", "1:1000",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(vfr),
    )  # fmt: skip
    n = np.arange(30)
    expected = np.where(n < 10, n * 0.04, 0.4 + (n - 10) * 0.1 + 0.013 * (n % 2))
    out = tmp_path / "vfr.csv"
    assert main(["track", str(vfr), "--out", str(out), "--quiet"]) == 0  # the CLI, on a VFR file
    rows = list(csv.DictReader(open(out), skipinitialspace=True))
    ts = np.array([float(r["timestamp"]) for r in rows])
    assert len(rows) == 30 and all(r["success"] == "1" for r in rows)
    np.testing.assert_allclose(ts, expected, atol=6e-4)
    assert np.ptp(np.diff(ts)) > 0.05, "the file's frame intervals really vary"


@pytest.mark.slow
def test_any_frame_size(short_clip, tmp_path):
    # 480p with the face off-centre: 854 px rows are not a multiple of the decoder's alignment
    wide = tmp_path / "wide.mp4"
    _ffmpeg(
        "-i", str(short_clip), "-vf", "pad=854:480:500:200:white", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(wide)
    )
    frames = list(iter_video_frames(wide))
    assert len(frames) == 30 and all(img.shape == (480, 854, 3) and img.flags.c_contiguous for _, img in frames)
    r = track_video(wide, tmp_path / "wide.csv", progress=False)
    ref = track_video(short_clip, tmp_path / "ref.csv", progress=False)
    assert r.image_size == (480, 854) and r.n_found == len(r) == 30
    shift = np.nanmedian(r.landmarks68 - ref.landmarks68, axis=(0, 1))
    np.testing.assert_allclose(shift, [500, 200], atol=2.0)  # pixel coordinates of the padded frame


@pytest.mark.slow
def test_frames_without_a_face_are_kept_with_success_0(short_clip, tmp_path):
    from emozone_lite.viz import write_video

    faces = [img for _, img in iter_video_frames(short_clip)][:8]
    noise = np.random.default_rng(1).integers(0, 255, (10, H, W, 3), dtype=np.uint8)
    mixed = write_video(np.concatenate([faces, noise]), tmp_path / "mixed.mp4", fps=FPS)  # 8 faces, then 10 none
    with pytest.warns(UserWarning, match="a face in only 8 of 18 frames"):
        r = track_video(mixed, tmp_path / "mixed.csv", progress=False)
    np.testing.assert_array_equal(r.success, np.arange(18) < 8)
    rows = list(csv.DictReader(open(tmp_path / "mixed.csv"), skipinitialspace=True))
    assert len(rows) == 18 and [r["frame"] for r in rows] == [str(i) for i in range(1, 19)]
    for row in rows[8:]:
        assert row["success"] == "0" and float(row["confidence"]) == 0.0
        assert all(float(row[c]) == 0.0 for c in row if c.startswith(("AU", "x_", "y_")))
    back = read_openface_csv(tmp_path / "mixed.csv")
    assert len(back) == 18 and back.success.sum() == 8 and back.fps == 30.0
    np.testing.assert_allclose(back.values[8:], np.repeat(back.values[7:8], 10, 0))  # held from the last face


@pytest.mark.slow
def test_display_rotation_is_applied(short_clip, tmp_path):
    rot = tmp_path / "portrait.mp4"
    _ffmpeg("-display_rotation", "90", "-i", str(short_clip), "-c", "copy", str(rot))  # a phone's portrait flag
    t0, first = next(iter_video_frames(rot))
    assert first.shape == (W, H, 3) and t0 == 0.0
    r = track_video(rot, tmp_path / "p.csv", progress=False)
    assert r.image_size == (W, H) and r.n_found == len(r) == 30


# --------------------------------------------------------------------------- bad input
def _no_face_video(path):
    from emozone_lite.viz import write_video

    rng = np.random.default_rng(0)
    write_video(rng.integers(0, 255, (8, 96, 128, 3), dtype=np.uint8), path, fps=FPS)


def _corrupt(path, short):
    data = short.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut off: the mp4's index (moov, at its end) is gone


def _faststart(path, short):
    _ffmpeg("-i", str(short), "-c", "copy", "-movflags", "+faststart", str(path))  # the index first


def _garbled(path, short):
    _faststart(path, short)
    data = bytearray(path.read_bytes())
    k = len(data) // 3
    data[k : k + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))  # the index is intact, the frames' data is not


BAD = {
    "no face": ("video.mp4", lambda p, s: _no_face_video(p), ValueError, r"no face found in any of its 8 frames"),
    "corrupt": ("video.mp4", _corrupt, ValueError, r"cannot be read as a video .*corrupt, truncated"),
    "garbled": ("video.mp4", _garbled, ValueError, r"decoding failed after \d+ frame\(s\) .*corrupt"),
    "empty": ("video.mp4", lambda p, s: p.write_bytes(b""), ValueError, r"empty \(0 bytes\); expected a video"),
    "not a video": ("video.mp4", lambda p, s: p.write_text("frame,AU12_r\n1,2\n"), ValueError, r"cannot be read as"),
    "sound only": ("video.mp4", lambda p, s: p.write_bytes(data_path("arctic_a0009.wav").read_bytes()), ValueError,
                   r"no video stream \(streams: audio\)"),
    "missing": ("nothing_here.mp4", lambda p, s: None, FileNotFoundError, r"video not found"),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_video_is_a_clear_error_and_leaves_no_file(kind, short_clip, tmp_path, capsys):
    name, make, exc, match = BAD[kind]
    src = tmp_path / "in"
    src.mkdir()
    video = src / name
    make(video, short_clip)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(exc, match=match) as e:
        track_video(video, out / "aus.csv", plot=out / "aus.png", progress=False)
    assert str(video) in str(e.value), "the message names the input"
    assert main(["track", str(video), "--out", str(out / "aus.csv"), "--plot", str(out / "aus.png"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "emozone-lite track: error:" in err and str(video) in err
    assert list(out.iterdir()) == [], "no output (not even a temporary file) after a failure"


def test_truncated_recording_that_still_plays_warns_and_is_tracked(short_clip, tmp_path):
    full = tmp_path / "full.mp4"
    _faststart(full, short_clip)
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.warns(UserWarning, match=r"decoded \d+ of the 30 frames its header announces"):
        r = track_video(cut, tmp_path / "cut.csv", progress=False)
    assert 0 < len(r) < 30 and r.n_found == len(r)
    assert len(read_openface_csv(tmp_path / "cut.csv")) == len(r)


def test_output_folder_must_exist(short_clip, tmp_path, capsys):
    out = tmp_path / "no_such_folder" / "aus.csv"
    with pytest.raises(FileNotFoundError, match=r"output CSV .*the folder .*no_such_folder does not exist"):
        track_video(short_clip, out, progress=False)
    assert main(["track", str(short_clip), "--out", str(out), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.parent.exists(), "nothing is created"
    with pytest.raises(FileNotFoundError, match="plot"):
        track_video(short_clip, tmp_path / "aus.csv", plot=tmp_path / "nope" / "aus.png", progress=False)
    assert not (tmp_path / "aus.csv").exists()
    with pytest.raises(ValueError, match="method"):
        track_video(short_clip, tmp_path / "aus.csv", method="openface")
