"""Tests of emozone_lite.metrics against hand-computed values and scikit-image."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from emozone_lite import metrics as M
from emozone_lite.aus import AU_NAMES, LOWER_AUS, UPPER_AUS, au_index
from emozone_lite.landmarks import load_canonical_mesh

RNG = np.random.default_rng(0)


def _noisy_pair(shape, sigma=0.1, seed=0):
    r = np.random.default_rng(seed)
    a = r.random(shape)
    b = np.clip(a + sigma * r.standard_normal(shape), 0, 1)
    return a, b


# --------------------------------------------------------------------------- PSNR
def test_psnr_of_known_mse():
    a = np.zeros((8, 8, 3))
    b = np.full((8, 8, 3), 0.1)  # MSE = 0.01 -> 20 dB
    assert M.psnr(a, b) == pytest.approx(20.0)
    assert M.psnr(a * 255, b * 255, max_val=255) == pytest.approx(20.0)
    c = a.copy()
    c[0, 0, 0] = 1.0  # MSE = 1 / 192
    assert M.psnr(c, a) == pytest.approx(10 * math.log10(192))
    assert M.psnr(a, a) == math.inf


def test_psnr_per_frame_and_layouts():
    a, b = _noisy_pair((3, 16, 16, 3))
    per = M.psnr(a, b, reduction="none")
    assert per.shape == (3,)
    for i in range(3):
        mse = np.mean((a[i] - b[i]) ** 2)
        assert per[i] == pytest.approx(10 * np.log10(1 / mse))
    assert M.psnr(a, b) == pytest.approx(per.mean())
    chw = np.moveaxis(a, -1, 1), np.moveaxis(b, -1, 1)
    np.testing.assert_allclose(M.psnr(*chw, reduction="none"), per)
    assert M.psnr(torch.as_tensor(a), torch.as_tensor(b)) == pytest.approx(per.mean())


# --------------------------------------------------------------------------- SSIM
def _sk(a, b, **kw):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, **kw
    )


@pytest.mark.parametrize("shape", [(40, 48, 3), (23, 31, 3)])
def test_ssim_matches_skimage_colour(shape):
    a, b = _noisy_pair(shape, 0.1, seed=sum(shape))
    assert M.ssim(a, b) == pytest.approx(_sk(a, b, channel_axis=-1), abs=1e-6)
    assert M.ssim(np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0)) == pytest.approx(_sk(a, b, channel_axis=-1), abs=1e-6)


def test_ssim_matches_skimage_grey_and_structured_images():
    from skimage import data

    img = data.camera()[::4, ::4].astype(np.float64) / 255.0  # 128 x 128, real structure
    blurred = np.clip(img + 0.05 * RNG.standard_normal(img.shape), 0, 1)
    assert M.ssim(img, blurred) == pytest.approx(_sk(img, blurred), abs=1e-6)
    astro = data.astronaut()[::8, ::8].astype(np.float64) / 255.0
    dark = astro * 0.7
    assert M.ssim(astro, dark) == pytest.approx(_sk(astro, dark, channel_axis=-1), abs=1e-6)


def test_ssim_batch_and_identity():
    a, b = _noisy_pair((4, 20, 20, 3))
    per = M.ssim(a, b, reduction="none")
    assert per.shape == (4,)
    for i in range(4):
        assert per[i] == pytest.approx(_sk(a[i], b[i], channel_axis=-1), abs=1e-6)
    assert M.ssim(a, a) == pytest.approx(1.0)


def test_ssim_float32_torch_close_to_float64():
    a, b = _noisy_pair((24, 24, 3))
    v32 = M.ssim(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32))
    assert v32 == pytest.approx(M.ssim(a, b), abs=1e-4)


def test_d_ssim_loss_is_differentiable():
    a, b = _noisy_pair((2, 3, 24, 24), 0.2)
    x = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(b, dtype=torch.float64)
    loss = M.d_ssim_loss(x, y)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert loss.item() == pytest.approx(1 - M.ssim(a, b))
    small = x[:1, :, :12, :12].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: M.d_ssim_loss(t, y[:1, :, :12, :12]), (small,), fast_mode=True)
    # one gradient step towards the reference lowers the loss
    with torch.no_grad():
        x2 = x - 0.5 * x.grad / x.grad.abs().max()
    assert M.d_ssim_loss(x2, y).item() < loss.item()
    assert float(M.d_ssim_loss(y, y)) == pytest.approx(0.0, abs=1e-12)


def test_l1_dssim_loss():
    a, b = _noisy_pair((16, 16, 3))
    x, y = torch.tensor(a, requires_grad=True), torch.tensor(b)
    loss = M.l1_dssim_loss(x, y, 0.2)
    expected = 0.8 * np.abs(a - b).mean() + 0.2 * (1 - M.ssim(a, b))
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="lambda_dssim"):
        M.l1_dssim_loss(x, y, 1.5)


def test_image_bad_inputs():
    a = np.zeros((16, 16, 3))
    with pytest.raises(ValueError, match="same shape"):
        M.psnr(a, np.zeros((16, 15, 3)))
    with pytest.raises(ValueError, match="same shape"):
        M.ssim(a, np.zeros((16, 16)))
    with pytest.raises(ValueError, match="empty"):
        M.psnr(np.zeros((0, 4, 3)), np.zeros((0, 4, 3)))
    with pytest.raises(ValueError, match="at least 11"):
        M.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="colour axis"):
        M.ssim(np.zeros((16, 16, 5)), np.zeros((16, 16, 5)))
    with pytest.raises(ValueError, match="max_val"):
        M.psnr(a, a, max_val=0)
    with pytest.raises(ValueError, match="reduction"):
        M.psnr(a, a, reduction="sum")
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        M.psnr(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="img must be a tensor or an array of numbers, got str"):
        M.psnr("image.png", a)


def test_arrays_are_compared_in_double_precision():
    a = np.full((4, 4, 3), 0.5)
    b = a + 1e-9  # below float32 resolution at 0.5: rounding to float32 first would give MSE 0, PSNR inf
    assert M.psnr(a, b) == pytest.approx(10 * np.log10(1 / 1e-18))
    assert M.aue(np.full((2, 17), 1.0), np.full((2, 17), 1.0 + 1e-9)) == pytest.approx(1e-18)


# --------------------------------------------------------------------------- LMD
def test_landmark_index_sets():
    m = load_canonical_mesh()
    assert set(M.MOUTH_IDX.tolist()) == set(m.regions["lips"].tolist())
    upper = set()
    for k in ("left_eyebrow", "right_eyebrow", "left_eye", "right_eye"):
        upper |= set(m.regions[k].tolist())
    assert set(M.UPPER_FACE_IDX.tolist()) == upper
    assert not set(M.MOUTH_IDX.tolist()) & upper
    assert {13, 14} <= set(M.MOUTH_IDX.tolist()) and {33, 263} <= upper


def test_lmd_of_shifted_points():
    gt = RNG.random((5, 468, 2)) * 256
    pred = gt + np.array([3.0, 4.0])
    assert M.lmd(pred, gt) == pytest.approx(5.0)
    pred2 = gt.copy()
    pred2[:, M.MOUTH_IDX] += np.array([0.0, 2.0])  # only the mouth moves
    assert M.lmd(pred2, gt, M.MOUTH_IDX) == pytest.approx(2.0)
    assert M.lmd(pred2, gt, M.UPPER_FACE_IDX) == pytest.approx(0.0)
    assert M.lmd(pred2, gt) == pytest.approx(2.0 * len(M.MOUTH_IDX) / 468)
    per = M.lmd(pred, gt, reduction="none")
    assert per.shape == (5,) and np.allclose(per, 5.0)
    assert M.lmd(pred[0], gt[0]) == pytest.approx(5.0)  # one frame [K, 2]


def test_lmd_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        M.lmd(np.zeros((3, 10, 2)), np.zeros((4, 10, 2)))
    with pytest.raises(ValueError, match=r"\[T, K, 2\]"):
        M.lmd(np.zeros((3, 10, 3)), np.zeros((3, 10, 3)))
    with pytest.raises(ValueError, match="empty"):
        M.lmd(np.zeros((0, 10, 2)), np.zeros((0, 10, 2)))
    with pytest.raises(ValueError, match="idx must index"):
        M.lmd(np.zeros((3, 10, 2)), np.zeros((3, 10, 2)), idx=[10])
    with pytest.raises(ValueError, match="idx is empty"):
        M.lmd(np.zeros((3, 10, 2)), np.zeros((3, 10, 2)), idx=[])


# --------------------------------------------------------------------------- AUE
def test_aue_upper_lower():
    gt = RNG.random((6, 17)) * 5
    pred = gt.copy()
    pred[:, au_index("AU04")] += 2.0  # upper-face error only
    pred[:, au_index("AU26")] -= 1.0  # lower-face error only
    assert M.aue(pred, gt, "upper") == pytest.approx(4.0 / len(UPPER_AUS))
    assert M.aue(pred, gt, "lower") == pytest.approx(1.0 / len(LOWER_AUS))
    assert M.aue(pred, gt, "all") == pytest.approx(5.0 / 17)
    assert M.aue(pred, gt, "upper", reduction="none").shape == (6,)
    assert len(UPPER_AUS) + len(LOWER_AUS) == len(AU_NAMES)


def test_aue_bad_inputs():
    with pytest.raises(ValueError, match=r"\[T, 17\]"):
        M.aue(np.zeros((4, 16)), np.zeros((4, 16)))
    with pytest.raises(ValueError, match="same shape"):
        M.aue(np.zeros((4, 17)), np.zeros((5, 17)))
    with pytest.raises(ValueError, match="which"):
        M.aue(np.zeros((4, 17)), np.zeros((4, 17)), "middle")
    with pytest.raises(ValueError, match="empty"):
        M.aue(np.zeros((0, 17)), np.zeros((0, 17)))


# --------------------------------------------------------------------------- jitter
def test_jitter_hand_values():
    t = np.arange(20.0)
    assert M.jitter(3 * t + 1) == pytest.approx(0.0)
    assert M.jitter(0.5 * t**2) == pytest.approx(1.0)  # (2a)^2 with a = 0.5
    q = np.stack([t**2, 2 * t**2], 1)  # second differences 2 and 4 -> mean of 4 and 16
    assert M.jitter(q) == pytest.approx(10.0)
    per = M.jitter(t**2, reduction="none")
    assert per.shape == (18,) and np.allclose(per, 4.0)
    assert M.jitter(np.array([0.0, 1.0, 0.0])) == pytest.approx(4.0)


def test_jitter_normalised_is_scale_free():
    r = np.random.default_rng(1)
    noise = r.standard_normal((20000, 3))
    assert M.jitter(noise, normalize=True) == pytest.approx(6.0, rel=0.05)  # white noise -> 6
    assert M.jitter(1000 * noise, normalize=True) == pytest.approx(M.jitter(noise, normalize=True))
    assert M.jitter(np.sin(np.linspace(0, 6, 500)), normalize=True) < 1e-3
    assert M.jitter(np.ones((10, 4)), normalize=True) == 0.0
    assert M.jitter(torch.ones(5, 2, 2) * torch.arange(5.0)[:, None, None] ** 2) == pytest.approx(4.0)


def test_jitter_bad_inputs():
    with pytest.raises(ValueError, match="at least 3 frames"):
        M.jitter(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="at least 3 frames"):
        M.jitter(np.zeros(0))
    with pytest.raises(ValueError, match="empty"):
        M.jitter(np.zeros((5, 0)))
    with pytest.raises(ValueError, match="NaN"):
        M.jitter(np.array([0.0, np.nan, 1.0]))


# --------------------------------------------------------------------------- lip sync
def _face_track(openings):
    base = load_canonical_mesh().vertices[:, :2].astype(np.float64) * 100 + 128
    lm = np.repeat(base[None], len(openings), 0)
    iod = np.linalg.norm(base[33] - base[263])
    lm[:, 14] = lm[:, 13] + np.array([0.0, 1.0]) * np.asarray(openings)[:, None] * iod
    return lm


def test_mouth_opening_and_scale_invariance():
    opens = np.array([0.0, 0.1, 0.25, 0.05])
    lm = _face_track(opens)
    np.testing.assert_allclose(M.mouth_opening(lm), opens, atol=1e-12)
    np.testing.assert_allclose(M.mouth_opening(lm * 3.0 + 7.0), opens, atol=1e-12)
    lm3 = np.concatenate([lm, np.zeros(lm.shape[:2] + (1,))], -1)
    np.testing.assert_allclose(M.mouth_opening(lm3), opens, atol=1e-12)
    assert M.mouth_opening(lm[0]).shape == (1,)


def test_lip_sync_corr():
    t = np.linspace(0, 4 * np.pi, 100)
    gt = np.abs(np.sin(t))
    assert M.lip_sync_corr(gt, gt) == pytest.approx(1.0)
    assert M.lip_sync_corr(2 * gt + 1, gt) == pytest.approx(1.0)
    assert M.lip_sync_corr(-gt, gt) == pytest.approx(-1.0)
    x, y = RNG.random(50), RNG.random(50)
    assert M.lip_sync_corr(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    lm_pred, lm_gt = _face_track(0.2 * gt), _face_track(0.3 * gt)
    assert M.lip_sync_corr(M.mouth_opening(lm_pred), M.mouth_opening(lm_gt)) == pytest.approx(1.0)


def test_lip_sync_corr_constant_input_warns_nan():
    with pytest.warns(RuntimeWarning, match="constant"):
        v = M.lip_sync_corr(np.full(10, 0.1), np.arange(10.0))
    assert math.isnan(v)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.lip_sync_corr(np.arange(10.0), np.arange(10.0) ** 2)  # no warning otherwise


def test_lip_sync_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        M.lip_sync_corr(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError, match="at least 2 frames"):
        M.lip_sync_corr(np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="empty"):
        M.lip_sync_corr(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="1-D"):
        M.lip_sync_corr(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="gt_open contains NaN or inf"):
        M.lip_sync_corr(np.arange(4.0), np.array([0.0, np.nan, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\[T, 468, 2 or 3\]"):
        M.mouth_opening(np.zeros((4, 68, 2)))
    with pytest.raises(ValueError, match="inter-ocular"):
        M.mouth_opening(np.zeros((2, 468, 2)))


# --------------------------------------------------------------------------- on pixels
@pytest.fixture(scope="module")
def teacher_frames():
    pytest.importorskip("mediapipe")
    from emozone_lite.camera import Camera
    from emozone_lite.teacher import sequence
    from emozone_lite.utils import data_path

    return sequence(data_path("arctic_a0009_phone.lab"), None, [Camera.orbit(0, width=192, height=192)])


def test_pixel_mouth_opening_follows_the_geometric_one(teacher_frames):
    from emozone_lite.metrics import detect_frames, lip_sync_corr

    det = detect_frames(teacher_frames.frames[:, 0], neutral=teacher_frames.frames[0, 0])
    assert det.n_missing == 0 and det.landmarks.shape == (teacher_frames.n_frames, 468, 2)
    assert np.isfinite(det.aus).all() and np.isfinite(det.aus_geometric).all()
    # the detector's mouth opening on the pixels follows the rig's mouth (the teacher's truth)
    assert lip_sync_corr(det.mouth_opening, teacher_frames.mouth_opening.numpy()) > 0.9


def test_pixel_metrics_of_a_video_against_itself_and_a_frozen_one(teacher_frames):
    from emozone_lite.metrics import detect_frames, pixel_metrics

    det = detect_frames(teacher_frames.frames[:, 0], neutral=teacher_frames.frames[0, 0])
    same = pixel_metrics(det, det)
    for k in ("pixel_aue_upper", "pixel_aue_lower", "pixel_lmd_mouth", "pixel_lmd_upper"):
        assert same[k] == 0.0, k
    assert same["pixel_lip_sync"] == pytest.approx(1.0) and same["pixel_mouth_range"] == pytest.approx(1.0)
    frozen = detect_frames(teacher_frames.frames[:1, 0].expand(teacher_frames.n_frames, -1, -1, -1))
    m = pixel_metrics(frozen, det)
    assert m["pixel_mouth_range"] < 0.05 and m["pixel_lmd_mouth"] > 0.5  # a mouth that does not move is caught


def test_frames_without_a_face_are_counted_not_dropped(teacher_frames):
    from emozone_lite.metrics import detect_frames, pixel_metrics

    frames = teacher_frames.frames[:6, 0].clone()
    frames[2:4] = 1.0  # blank frames: no face
    det = detect_frames(frames)
    assert det.found.tolist() == [True, True, False, False, True, True] and det.n_missing == 2
    assert np.isnan(det.aus[2]).all() and np.isnan(det.mouth_opening[3])
    m = pixel_metrics(det, detect_frames(teacher_frames.frames[:6, 0]))
    assert m["pixel_faces_missing"] == 2 and m["pixel_faces_missing_teacher"] == 0 and m["pixel_frames"] == 4
    assert np.isnan(m["pixel_jitter_au"]), "jitter needs consecutive frames with a face"
    with pytest.raises(ValueError, match="same frames"):
        pixel_metrics(det, detect_frames(teacher_frames.frames[:5, 0]))
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        detect_frames(np.zeros((4, 4, 3), np.uint8))
