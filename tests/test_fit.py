"""``emozone-lite fit``: a talking video → a model of that person (emozone_lite.fit), and
``render`` of the fitted model with new audio.

The end-to-end check renders its own talking video from the teacher rig — 3.5 s of ARCTIC
a0007 at 320×240 and 30 fps (not the toolkit's 256² / 25 fps), the speech muxed as AAC,
brows, smile and jaw drop rising and falling in turn all through it — fits it with the FAST
configuration, and checks the held-out report, the files, resume, and a render with new audio.
"""

from __future__ import annotations

import json
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from emozone_lite import aus
from emozone_lite.__main__ import main
from emozone_lite.aus import au_index
from emozone_lite.fit import FIT_FPS, FitConfig, _face_mask, _project_each, fit_video, model_time_grid
from emozone_lite.openface import read_openface_csv
from emozone_lite.utils import data_path

FPS, W, H, SECONDS = 30.0, 320, 240, 3.5
#: every 0.5 s the next expression of the cycle, held 0.3 s, so the held-out last 10 % moves too
CYCLE = ({}, {"AU01": 4, "AU02": 4}, {}, {"AU12": 3}, {}, {"AU26": 3})
#: Held-out PSNR gain of the FAST fit over the untrained model (the rest head) it must reach.
#: Measured on this clip: 29.27 vs 26.43 dB (+2.8).
MIN_PSNR_GAIN_DB = 1.5


def _script() -> aus.AUTrack:
    keys, t, i = [(0.0, {})], 0.0, 0
    while t < SECONDS:
        keys += [(max(t, 1e-3), CYCLE[i % 6]), (min(t + 0.3, SECONDS), CYCLE[i % 6])]
        t, i = t + 0.5, i + 1
    return aus.from_keyframes(keys, SECONDS, FPS)


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The teacher's talking video (mp4 with sound) and the AUs that drove it ``[105, 17]``."""
    from emozone_lite.teacher import talking_video

    path = tmp_path_factory.mktemp("clip") / "talk.mp4"
    return talking_video(
        path, _script(), data_path("arctic_a0007_phone.lab"), data_path("arctic_a0007.wav"), width=W, height=H, fps=FPS
    )


@pytest.fixture(scope="module")
def fitted(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "me"
    r = fit_video(clip[0], out, config=FitConfig.fast(), progress=False)
    return r, out


# --------------------------------------------------------------------------- pieces
def test_time_grid_shows_the_frame_on_screen_at_each_model_time():
    ts = np.arange(30) / 30.0  # 1 s at 30 fps
    times, idx = model_time_grid(ts, 30.0)
    assert len(times) == 25 and times[1] == pytest.approx(1 / FIT_FPS)
    assert (np.diff(idx) >= 0).all() and idx[0] == 0 and idx[-1] == 28
    for t, i in zip(times, idx):
        assert ts[i] <= t + 1e-9 < ts[i] + 1 / 30.0, "the frame shown at t"
    vfr = np.array([0.0, 0.01, 0.5, 0.52, 0.9])  # a variable frame rate is read as it plays
    times, idx = model_time_grid(vfr, 30.0)
    shown = dict(zip(np.round(times, 2), idx))
    assert shown[0.0] == 0 and shown[0.04] == 1 and shown[0.48] == 1 and shown[0.52] == shown[0.88] == 3
    assert len(times) == 23, "the last frame (0.9 s) lasts one nominal frame, 1 / 30 s"


def test_fit_config_checks_and_round_trips():
    cfg = FitConfig.fast(steps=7)
    assert FitConfig.from_dict(cfg.to_dict()) == cfg and cfg.steps == 7
    with pytest.raises(ValueError, match="holdout"):
        FitConfig(holdout=0.7)
    with pytest.raises(ValueError, match="image_size"):
        FitConfig(image_size=8)
    with pytest.raises(ValueError, match="frame"):
        FitConfig(frame=-1)
    with pytest.raises(ValueError, match=r"FitConfig.portrait must be one of \('full', 'fast', 'none'\)"):
        FitConfig(portrait="hd")
    with pytest.raises(ValueError, match="unknown|stepz"):
        FitConfig.from_dict({"stepz": 3})


def test_face_mask_is_the_landmarks_hull():
    pts = np.array([[10, 10], [50, 10], [50, 40], [10, 40], [30, 25]], np.float32)
    m = _face_mask(pts, 64)
    assert m.shape == (64, 64) and m[25, 30] == 1 and m[5, 5] == 0 and m[45, 30] == 0
    assert 0.8 * 40 * 30 < m.sum() <= 40 * 30


def test_project_each_is_the_diagonal_of_the_all_cameras_projection():
    from emozone_lite.camera import Camera, stack_cameras
    from emozone_lite.train import _project

    cams = [Camera.orbit(yaw_deg=y, width=64, height=64) for y in (-20.0, 0.0, 15.0)]
    vm, Ks = stack_cameras(cams)[:2]
    v = torch.randn(3, 468, 3) * 0.3
    torch.testing.assert_close(_project_each(v, vm, Ks), _project(v, vm, Ks)[torch.arange(3), torch.arange(3)])


def test_render_frames_matches_render_per_camera():
    from emozone_lite.camera import Camera, stack_cameras
    from emozone_lite.head import load_head
    from emozone_lite.model import EmoZoneLite, ModelConfig

    m = EmoZoneLite(ModelConfig(n_gaussians=400), load_head())
    st = m(torch.rand(2, 16, 40), torch.rand(2), torch.rand(2, 17) * 5)  # phone windows
    vm, Ks = stack_cameras([Camera.orbit(yaw_deg=y, width=48, height=48) for y in (-15.0, 20.0)])[:2]
    each = m.render_frames(st, vm, Ks, 48, 48, background=torch.ones(3))
    both = m.render(st, vm, Ks, 48, 48, background=torch.ones(3))  # [2 frames, 2 cameras]
    torch.testing.assert_close(each[0], both[0, 0])
    torch.testing.assert_close(each[1], both[1, 1])
    with pytest.raises(ValueError, match="one camera per frame"):
        m.render_frames(st, vm[:1], Ks[:1], 48, 48)


def test_solve_pose_recovers_a_pose_despite_moving_points():
    from emozone_lite.geometry import axis_angle_to_rotmat
    from emozone_lite.head import solve_pose
    from emozone_lite.head.photo import _project_np
    from emozone_lite.landmarks import load_canonical_mesh

    V = load_canonical_mesh().vertices.astype(np.float64)
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    R = axis_angle_to_rotmat(np.array([0.1, -0.25, 0.05]))
    t = np.array([0.05, -0.1, 4.0])
    px = _project_np(V, R, t, K)
    moved = px.copy()
    moved[:40] += 15.0  # an expression moves some points far (e.g. the lips)
    R0, t0 = np.eye(3), np.array([0.0, 0.0, 4.2])
    Rp, tp = solve_pose(V, px, K, R0, t0)
    np.testing.assert_allclose(Rp, R, atol=1e-6)
    Rr, tr = solve_pose(V, moved, K, R0, t0, robust_px=2.0)
    Rl, _ = solve_pose(V, moved, K, R0, t0)
    assert np.abs(Rr - R).max() < 0.3 * np.abs(Rl - R).max(), "soft-L1 lets the moved points pull less"


# --------------------------------------------------------------------------- end to end
def test_fit_writes_its_files_and_beats_the_untrained_model_on_held_out_frames(clip, fitted):
    from emozone_lite.head.portrait import load_portrait, matches_head

    r, out = fitted
    for name in ("model.pt", "head.ply", "portrait.ply", "portrait.json", "aus.csv", "fit.json", "report.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*")), "no temporary file left"
    # the portrait around the fitted head, from the head's frame (FAST: 96², 120 iterations)
    po = load_portrait(out / "portrait.ply")
    assert po.n_face == len(r.head) and matches_head(po, r.model.means)
    assert r.paths["portrait"] == out / "portrait.ply"
    pr = r.report["portrait"]
    assert pr["gaussians"] == len(po.cloud) > len(r.head) and pr["size"] == 96 and pr["photo_side"] == H
    assert pr["psnr"] > 20 and pr["ssim"] > 0.7, pr  # measured 22.85 dB, SSIM 0.835
    rep = json.loads((out / "report.json").read_text())
    assert rep == r.report
    assert rep["untrained"]["lip_sync"] is None, "a mouth that does not move has no correlation (NaN → null)"
    tr, un = rep["trained"], rep["untrained"]
    n_model = int(np.floor(SECONDS * FIT_FPS))
    assert rep["frames"]["model"] == n_model and rep["frames"]["video"] == int(SECONDS * FPS)
    assert tr["frames"] == rep["frames"]["heldout"] == n_model - round(n_model * 0.9)
    assert tr["psnr"] > un["psnr"] + MIN_PSNR_GAIN_DB, (tr["psnr"], un["psnr"])
    assert tr["lmd"] < un["lmd"], "the trained mesh follows the detected landmarks closer"
    assert un["mouth_range"] == pytest.approx(0.0), "the untrained student does not move"
    assert 0 <= rep["head_frame"] < int(SECONDS * FPS * 0.9), "the head comes from a training frame"


def test_fit_aus_csv_tracks_the_teachers_active_aus(clip, fitted):
    _, out = fitted
    tr = read_openface_csv(out / "aus.csv")
    truth = clip[1]
    assert len(tr) == len(truth) and tr.fps == pytest.approx(FPS)
    for name in ("AU01", "AU12"):
        r = np.corrcoef(tr.values[:, au_index(name)], truth[:, au_index(name)])[0, 1]
        assert r >= 0.8, (name, r)


def test_fit_resumes_and_refuses_another_config(clip, fitted, tmp_path):
    from emozone_lite.train import read_checkpoint

    r, out = fitted
    before = (out / "model.pt").stat().st_mtime_ns
    again = fit_video(clip[0], out, config=FitConfig.fast(), progress=False)  # all steps done: nothing retrained
    assert (out / "model.pt").stat().st_mtime_ns == before
    assert again.report["trained"] == pytest.approx(r.report["trained"], rel=1e-3)
    assert read_checkpoint(out / "model.pt")["step"] == FitConfig.fast().steps
    with pytest.raises(ValueError, match="another video, frame or config"):
        fit_video(clip[0], out, config=FitConfig.fast(steps=5), progress=False)


def test_interrupted_training_resumes_to_the_same_parameters(clip, fitted, tmp_path, monkeypatch):
    import emozone_lite.fit as F
    from emozone_lite.camera import Camera
    from emozone_lite.head import load_head
    from emozone_lite.model import EmoZoneLite, ModelConfig
    from emozone_lite.track import track_video, video_audio

    _, out = fitted
    rec = json.loads((out / "fit.json").read_text())
    c = rec["camera"]
    cam = Camera(torch.tensor(c["viewmat"]), torch.tensor(c["K"]), c["width"], c["height"])
    head = load_head(out / "head.ply")
    cfg = FitConfig.fast(steps=4, ckpt_every=2, image_size=32)
    track = track_video(clip[0], tmp_path / "a.csv", progress=False)
    rest = np.asarray(rec["rest_vertices"], np.float32)

    def model():
        torch.manual_seed(0)
        m = EmoZoneLite(ModelConfig(), head)
        m.rest_vertices.copy_(torch.as_tensor(rest))
        return m

    data = F.prepare_frames(clip[0], track, cam, rest, video_audio(clip[0]), model(), cfg, progress=False)
    straight = model()
    F.train_fit(straight, data, cfg, ckpt=tmp_path / "a.pt", progress=False)
    real_loss, calls = F.fit_loss, []

    def crash_at_step_3(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(*a, **k)

    monkeypatch.setattr(F, "fit_loss", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        F.train_fit(model(), data, cfg, ckpt=tmp_path / "b.pt", progress=False)
    monkeypatch.setattr(F, "fit_loss", real_loss)
    resumed = model()
    hist = F.train_fit(resumed, data, cfg, ckpt=tmp_path / "b.pt", progress=False)
    assert [h["step"] for h in hist] == [1, 2, 3, 4]
    for (n, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=n)


def test_render_of_the_fitted_model_with_new_audio_writes_an_mp4_with_sound(fitted, tmp_path, capsys):
    import av

    _, out = fitted
    mp4 = tmp_path / "new.mp4"
    assert main(["render", "--audio", str(data_path("arctic_a0009.wav")), "--checkpoint", str(out / "model.pt"),
                 "--out", str(mp4), "--size", "96"]) == 0  # fmt: skip
    with av.open(str(mp4)) as c:
        kinds = sorted(s.type for s in c.streams)
        frames = sum(1 for _ in c.decode(video=0))
    assert kinds == ["audio", "video"]
    assert frames == round(3.095 * 25)  # a0009 at 25 fps
    # the checkpoint names its head: without it beside the checkpoint, a clear error
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "model.pt").write_bytes((out / "model.pt").read_bytes())
    assert main(["render", "--audio", str(data_path("arctic_a0009.wav")), "--checkpoint", str(lone / "model.pt"),
                 "--out", str(tmp_path / "x.mp4")]) == 2  # fmt: skip
    assert "head.ply" in capsys.readouterr().err
    assert main(["render", "--audio", str(data_path("arctic_a0009.wav")), "--checkpoint", str(lone / "model.pt"),
                 "--head", str(out / "head.ply"), "--out", str(tmp_path / "y.mp4"), "--size", "64"]) == 0  # fmt: skip


def test_render_draws_the_fitted_face_in_the_fit_portrait(fitted, tmp_path, capsys):
    """``render --portrait``: ``auto`` (default) picks the fit folder's portrait.ply (the frame's
    room around the face); ``none`` the face alone on white; a portrait of another head is an error."""
    import av

    from emozone_lite.demo import _render_portrait
    from emozone_lite.head.portrait import matches_head
    from emozone_lite.train import load_model

    _, out = fitted
    ckpt = out / "model.pt"
    model, ck = load_model(ckpt)
    po = _render_portrait(model, ckpt, ck, None, "auto")
    assert (
        po is not None
        and matches_head(po, model.means)
        and len(po.cloud) == json.loads((out / "report.json").read_text())["portrait"]["gaussians"]
    )
    assert _render_portrait(model, ckpt, ck, None, "none") is None
    wav = str(data_path("arctic_a0009.wav"))
    frames = {}
    for how in ("auto", "none"):
        mp4 = tmp_path / f"{how}.mp4"
        assert main(["render", "--audio", wav, "--checkpoint", str(ckpt), "--out", str(mp4), "--size", "64",
                     "--portrait", how]) == 0  # fmt: skip
        with av.open(str(mp4)) as c:
            frames[how] = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    assert np.abs(frames["auto"] - frames["none"]).mean() > 5, "the portrait's camera and scenery differ from the orbit"
    # the bundled portrait's face is the bundled head, not this person's
    assert main(["render", "--audio", wav, "--checkpoint", str(ckpt), "--out", str(tmp_path / "z.mp4"),
                 "--portrait", str(data_path("portrait.ply"))]) == 2  # fmt: skip
    assert "its face is not the head this checkpoint was trained on" in capsys.readouterr().err
    assert not (tmp_path / "z.mp4").exists()


def test_fit_command_line_prints_the_report(clip, fitted, capsys):
    _, out = fitted
    assert main(["fit", str(clip[0]), "--out", str(out), "--fast", "--quiet"]) == 0  # resumed: done
    msg = capsys.readouterr().out
    assert "PSNR" in msg and "untrained" in msg and str(out) in msg


# --------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def silent_clip(clip, tmp_path_factory):
    p = tmp_path_factory.mktemp("silent") / "silent.mp4"
    _ffmpeg("-i", str(clip[0]), "-frames:v", "45", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(p))
    return p


def _no_face_with_sound(path, silent):
    from emozone_lite.viz import write_video

    rng = np.random.default_rng(0)
    write_video(rng.integers(0, 255, (40, 96, 128, 3), dtype=np.uint8), path, fps=FPS,
                audio=data_path("arctic_a0009.wav"))  # fmt: skip


BAD = {
    "no face": (_no_face_with_sound, r"no face found in any of its 40 frames \(a face in 0 of 40\)"),
    "no audio track": (lambda p, s: p.write_bytes(s.read_bytes()), r"has no audio track; pass the speech with --audio"),
    "corrupt": (lambda p, s: p.write_bytes(s.read_bytes()[: s.stat().st_size // 2]), r"cannot be read as a video"),
    "empty": (lambda p, s: p.write_bytes(b""), r"empty \(0 bytes\)"),
    "missing": (lambda p, s: None, r"video not found"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_video_is_a_clear_error_exit_2_and_leaves_nothing(kind, silent_clip, tmp_path, capsys):
    make, match = BAD[kind]
    video = tmp_path / "video.mp4"
    make(video, silent_clip)
    out = tmp_path / "out"
    assert main(["fit", str(video), "--out", str(out), "--fast", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "emozone-lite fit: error:" in err and str(video) in err
    import re

    assert re.search(match, err), err
    assert not out.exists(), "no output folder is left behind"


def test_output_parent_must_exist_and_frame_must_hold_a_face(silent_clip, tmp_path, capsys):
    out = tmp_path / "no_such" / "me"
    assert main(["fit", str(silent_clip), "--out", str(out), "--audio", str(data_path("arctic_a0007.wav")),
                 "--fast", "--quiet"]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err and not out.parent.exists()
    assert main(["fit", str(silent_clip), "--out", str(tmp_path / "me"), "--audio",
                 str(data_path("arctic_a0007.wav")), "--frame", "999", "--fast", "--quiet"]) == 2  # fmt: skip
    assert "--frame 999: " in capsys.readouterr().err and not (tmp_path / "me").exists()
