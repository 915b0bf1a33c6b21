"""Evaluation metrics: image quality, landmarks, AUs, temporal jitter, lip sync.

Pure functions. Inputs may be torch tensors or NumPy arrays; scalar results are
Python floats, per-frame results (``reduction="none"``) NumPy arrays.

=================  =========================================================
``psnr``, ``ssim``  frame quality (SSIM: Gaussian 11×11 window, σ = 1.5, the
                    valid region — identical to scikit-image's
                    ``structural_similarity(gaussian_weights=True, sigma=1.5,
                    use_sample_covariance=False)``)
``d_ssim_loss``     ``1 − SSIM`` in torch, differentiable (the 3DGS training
                    loss is ``(1−λ)·L1 + λ·D-SSIM``, :func:`l1_dssim_loss`)
``lmd``             landmark distance in pixels over a subset
                    (:data:`MOUTH_IDX`, :data:`UPPER_FACE_IDX`)
``aue``             squared AU error over the upper / lower AU sets (AUE-U, AUE-L)
``jitter``          mean squared second difference over time
``lip_sync_corr``   Pearson correlation of mouth opening (:func:`mouth_opening`)
``mouth_range_ratio`` how wide one mouth opens relative to another (a mouth that
                    barely moves cannot score well on correlation alone)
=================  =========================================================

**On pixels.** A metric read from the geometry a loss supervises cannot tell that the
image fails to show it. :func:`detect_frames` runs the toolkit's face detector (MediaPipe's
face landmarker, :mod:`emozone_lite.landmarks`) on rendered frames — as published
talking-head work runs OpenFace on its output video — and :func:`pixel_metrics` compares
what it reads on a student's frames with what it reads on the teacher's: AUs (from
MediaPipe's blendshapes, and geometrically from the detected landmarks relative to a neutral
frame), landmarks (LMD), mouth opening (lip sync). Frames where no face is found are
counted and reported, never silently dropped.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .aus import AU_NAMES, LOWER_AUS, UPPER_AUS, au_indices
from .checks import as_float_tensor, check_finite, check_shape
from .landmarks import load_canonical_mesh

__all__ = [
    "psnr",
    "ssim",
    "ssim_torch",
    "d_ssim_loss",
    "l1_dssim_loss",
    "lmd",
    "MOUTH_IDX",
    "UPPER_FACE_IDX",
    "aue",
    "jitter",
    "mouth_opening",
    "lip_sync_corr",
    "INNER_LIP_IDX",
    "EYE_CORNER_IDX",
    "mouth_range_ratio",
    "FrameDetections",
    "detect_frames",
    "pixel_metrics",
]

Reduction = Literal["mean", "none"]


def _landmark_sets() -> tuple[np.ndarray, np.ndarray]:
    regions = load_canonical_mesh().regions
    mouth = np.unique(regions["lips"]).astype(np.int64)
    upper = np.unique(
        np.concatenate([regions[k] for k in ("left_eyebrow", "right_eyebrow", "left_eye", "right_eye")])
    ).astype(np.int64)
    return mouth, upper


#: Lip landmarks of the 468-vertex canonical mesh (MediaPipe's lips region, 40 indices).
#: Upper-face landmarks: both eyebrows and both eyes (52 indices).
MOUTH_IDX, UPPER_FACE_IDX = _landmark_sets()
#: Inner-lip midpoints (upper 13, lower 14) and outer eye corners (33 right, 263 left) of the mesh.
INNER_LIP_IDX = (13, 14)
EYE_CORNER_IDX = (33, 263)


# --------------------------------------------------------------------------- helpers
def _tensor(x, name: str) -> Tensor:
    """``x`` as a float tensor; the metrics compute in double precision.

    Tensors keep their dtype, device and graph (integer tensors become float64); arrays
    and sequences become float64 — not ``checks.as_float_tensor``'s float32, which would
    round a float64 input before it is compared. Non-numeric input gets that function's
    error (``"{name} must be a tensor or an array of numbers, …"``).
    """
    if isinstance(x, Tensor):
        return x if torch.is_floating_point(x) else x.double()
    try:
        return torch.from_numpy(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError):
        return as_float_tensor(x, name)


def _pair(a, b, na: str, nb: str) -> tuple[Tensor, Tensor]:
    ta, tb = _tensor(a, na), _tensor(b, nb)
    if ta.shape != tb.shape:
        raise ValueError(f"{na} {tuple(ta.shape)} and {nb} {tuple(tb.shape)} must have the same shape")
    if ta.numel() == 0:
        raise ValueError(f"{na} and {nb} are empty (shape {tuple(ta.shape)})")
    dt = torch.promote_types(ta.dtype, tb.dtype)
    return ta.to(dt), tb.to(device=ta.device, dtype=dt)


def _reduce(per_item: Tensor, reduction: Reduction, batched: bool):
    if reduction == "none":
        return per_item.detach().cpu().double().numpy()
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return float(per_item.mean()) if batched or per_item.numel() > 1 else float(per_item.reshape(()))


def _to_nchw(x: Tensor, layout: str, name: str) -> tuple[Tensor, bool]:
    """Images → ``[N, C, H, W]`` and whether the input was batched.

    Accepted: ``[H, W]`` (grey), ``[H, W, C]`` / ``[C, H, W]`` with ``C`` in {1, 3},
    and the same with one leading batch axis. ``layout="auto"`` takes a trailing
    axis of size 1 or 3 as channels (HWC) before trying the third-from-last (CHW).
    """
    if x.ndim == 2:
        return x[None, None], False
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be [H, W], [H, W, 3], [3, H, W] or a batch [N, ...] of those, got {tuple(x.shape)}"
        )
    if layout == "auto":
        if x.shape[-1] in (1, 3):
            layout = "hwc"
        elif x.shape[-3] in (1, 3):
            layout = "chw"
        else:
            raise ValueError(
                f"{name} {tuple(x.shape)}: cannot find a colour axis of size 1 or 3 last (HWC) or "
                "third from last (CHW); pass layout='hwc' or 'chw'"
            )
    batched = x.ndim == 4
    xb = x if batched else x[None]
    if layout == "hwc":
        return xb.permute(0, 3, 1, 2), batched
    if layout == "chw":
        return xb, batched
    raise ValueError(f"layout must be 'auto', 'hwc' or 'chw', got {layout!r}")


# --------------------------------------------------------------------------- images
def psnr(img, ref, max_val: float = 1.0, *, layout: str = "auto", reduction: Reduction = "mean"):
    """Peak signal-to-noise ratio in dB, ``10·log10(max_val² / MSE)``.

    Args:
        img, ref: ``[H, W, 3]`` / ``[3, H, W]`` / ``[H, W]``, or a batch ``[N, ...]`` of frames.
        max_val: the largest possible pixel value (1 for [0, 1] images, 255 for uint8).
        reduction: ``"mean"`` → the mean over frames of each frame's PSNR (a float);
            ``"none"`` → per-frame PSNR ``[N]`` (``[1]`` for one image).

    A frame with ``MSE = 0`` has PSNR ``inf``.

    Examples:
        >>> round(psnr(np.zeros((4, 4, 3)), np.full((4, 4, 3), 0.1)), 6)
        20.0
    """
    if max_val <= 0:
        raise ValueError(f"max_val must be positive, got {max_val}")
    a, b = _pair(img, ref, "img", "ref")
    a, batched = _to_nchw(a, layout, "img")
    b, _ = _to_nchw(b, layout, "ref")
    mse = ((a - b) ** 2).flatten(1).mean(1)
    with torch.no_grad():
        val = 10.0 * torch.log10(max_val**2 / mse)  # inf where mse == 0
    return _reduce(val, reduction, batched)


def _gaussian_1d(size: int, sigma: float, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_torch(
    img: Tensor,
    ref: Tensor,
    max_val: float = 1.0,
    *,
    window: int = 11,
    sigma: float = 1.5,
    layout: str = "auto",
) -> Tensor:
    """Per-frame SSIM in torch, differentiable: returns ``[N]`` (``[1]`` for one image).

    Gaussian-weighted local statistics (``window × window``, ``sigma``), constants
    ``C1 = (0.01·max_val)²``, ``C2 = (0.03·max_val)²``, population covariances,
    averaged over the *valid* region (no padding) and over colour channels — the
    definition of Wang et al. 2004 and of scikit-image with ``gaussian_weights=True``.

    Args:
        img, ref: images as in :func:`psnr`; at least ``window`` pixels high and wide.
    """
    if max_val <= 0:
        raise ValueError(f"max_val must be positive, got {max_val}")
    if window < 1 or window % 2 == 0 or sigma <= 0:
        raise ValueError(f"window must be a positive odd size and sigma positive, got {window}, {sigma}")
    a, b = _pair(img, ref, "img", "ref")
    x, _ = _to_nchw(a, layout, "img")
    y, _ = _to_nchw(b, layout, "ref")
    H, W = x.shape[-2:]
    if H < window or W < window:
        raise ValueError(f"images must be at least {window}×{window} pixels for SSIM, got {H}×{W}")
    c = x.shape[1]
    g = _gaussian_1d(window, sigma, x)
    kx = g.view(1, 1, 1, -1).expand(c, 1, 1, window)
    ky = g.view(1, 1, -1, 1).expand(c, 1, window, 1)

    def blur(t: Tensor) -> Tensor:  # separable Gaussian, valid region
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)

    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return smap.flatten(1).mean(1)


def ssim(img, ref, max_val: float = 1.0, *, layout: str = "auto", reduction: Reduction = "mean"):
    """Structural similarity (Gaussian 11×11, σ = 1.5) as a float (or per-frame array).

    Images are ``[H, W, 3]`` (HWC), ``[3, H, W]`` (CHW), ``[H, W]`` (grey) or a
    batch ``[N, ...]`` of those; ``layout="auto"`` reads a trailing axis of size 1
    or 3 as colour. Matches ``skimage.metrics.structural_similarity(img, ref,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=max_val, channel_axis=-1)``. For a differentiable version use
    :func:`ssim_torch` or :func:`d_ssim_loss`.

    Examples:
        >>> x = np.random.default_rng(0).random((32, 32, 3))
        >>> ssim(x, x)
        1.0
    """
    a = _tensor(img, "img")
    batched = a.ndim == 4
    with torch.no_grad():
        val = ssim_torch(img, ref, max_val, layout=layout)
    return _reduce(val, reduction, batched)


def d_ssim_loss(img: Tensor, ref: Tensor, max_val: float = 1.0, *, layout: str = "auto") -> Tensor:
    """``1 − SSIM`` (mean over frames) as a differentiable scalar tensor.

    This is 3D Gaussian Splatting's D-SSIM term (its code uses ``1 − SSIM``, not
    ``(1 − SSIM)/2``). Zero for identical images.
    """
    return 1.0 - ssim_torch(img, ref, max_val, layout=layout).mean()


def l1_dssim_loss(img: Tensor, ref: Tensor, lambda_dssim: float = 0.2, *, layout: str = "auto") -> Tensor:
    """The 3DGS photometric loss ``(1 − λ)·L1 + λ·(1 − SSIM)`` (λ = 0.2), differentiable."""
    if not 0.0 <= lambda_dssim <= 1.0:
        raise ValueError(f"lambda_dssim must be in [0, 1], got {lambda_dssim}")
    a, b = _pair(img, ref, "img", "ref")
    return (1.0 - lambda_dssim) * (a - b).abs().mean() + lambda_dssim * d_ssim_loss(a, b, layout=layout)


# --------------------------------------------------------------------------- landmarks
def lmd(pred_lmk, gt_lmk, idx=None, *, reduction: Reduction = "mean"):
    """Landmark distance: mean Euclidean distance (pixels) between 2D landmarks.

    Args:
        pred_lmk, gt_lmk: ``[T, K, 2]`` (or one frame ``[K, 2]``) pixel coordinates.
        idx: optional landmark subset ``[k]`` (e.g. :data:`MOUTH_IDX` for LMD-mouth,
            :data:`UPPER_FACE_IDX` for the upper face); default all ``K``.
        reduction: ``"mean"`` → float over frames and landmarks; ``"none"`` → ``[T]``.

    Examples:
        >>> p = np.zeros((2, 5, 2)); g = p + [3.0, 4.0]
        >>> lmd(p, g)
        5.0
    """
    p, g = _pair(pred_lmk, gt_lmk, "pred_lmk", "gt_lmk")
    if p.ndim == 2:
        p, g = p[None], g[None]
    if p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(
            f"landmarks must have shape [T, K, 2] (pixel x, y), got {tuple(_tensor(pred_lmk, 'pred_lmk').shape)}; "
            "project 3D landmarks to the image first"
        )
    if idx is not None:
        ii = torch.as_tensor(np.asarray(idx), dtype=torch.long).reshape(-1)
        if ii.numel() == 0:
            raise ValueError("idx is empty; pass at least one landmark index")
        K = p.shape[1]
        if int(ii.min()) < 0 or int(ii.max()) >= K:
            raise ValueError(f"idx must index the {K} landmarks, got range [{int(ii.min())}, {int(ii.max())}]")
        p, g = p[:, ii], g[:, ii]
    d = torch.linalg.norm(p - g, dim=-1).mean(1)  # [T]
    return _reduce(d, reduction, True)


# --------------------------------------------------------------------------- AUs
def aue(pred_aus, gt_aus, which: Literal["upper", "lower", "all"] = "all", *, reduction: Reduction = "mean"):
    """AU error: mean squared intensity error over an AU set (AUE-U / AUE-L).

    Args:
        pred_aus, gt_aus: ``[T, 17]`` intensities in :data:`emozone_lite.aus.AU_NAMES` order.
        which: ``"upper"`` (AU01 02 04 05 06 07 09 45), ``"lower"`` (AU10 12 14 15 17
            20 23 25 26) — TalkingGaussian's split — or ``"all"``.
        reduction: ``"mean"`` → float; ``"none"`` → per-frame ``[T]``.

    Examples:
        >>> gt = np.zeros((4, 17)); pr = gt.copy(); pr[:, 0] = 2.0   # AU01 off by 2
        >>> aue(pr, gt, "upper"), aue(pr, gt, "lower")
        (0.5, 0.0)
    """
    p, g = _pair(pred_aus, gt_aus, "pred_aus", "gt_aus")
    if p.ndim == 1:
        p, g = p[None], g[None]
    check_shape(p, "pred_aus / gt_aus", ("T", len(AU_NAMES)), "; one column per AU in AU_NAMES order")
    sets = {"upper": UPPER_AUS, "lower": LOWER_AUS, "all": AU_NAMES}
    if which not in sets:
        raise ValueError(f"which must be 'upper', 'lower' or 'all', got {which!r}")
    cols = torch.as_tensor(au_indices(sets[which]), dtype=torch.long)
    err = ((p[:, cols] - g[:, cols]) ** 2).mean(1)
    return _reduce(err, reduction, True)


# --------------------------------------------------------------------------- time
def jitter(track, *, normalize: bool = False, reduction: Reduction = "mean"):
    """Temporal jitter: mean squared second difference over time (axis 0).

    ``J = mean_t,f (x[t+1] − 2·x[t] + x[t−1])²`` over frames ``t`` and all other
    axes ``f``. A straight-line track has ``J = 0``; a quadratic ``a·t²`` has
    ``(2a)²``; white noise of variance σ² has ``6σ²``.

    Args:
        track: ``[T, ...]`` (landmarks ``[T, K, 2]``, AUs ``[T, 17]``, tokens ``[T, 17, d]``), ``T ≥ 3``.
        normalize: divide by the mean (over ``f``) variance over time, so the value
            does not depend on the scale of the features (white noise → ≈ 6,
            a slow signal → ≈ 0). A constant track gives 0.
        reduction: ``"mean"`` → float; ``"none"`` → per-frame ``[T − 2]`` (mean over ``f``).

    Examples:
        >>> jitter(np.arange(10.0) ** 2)   # (2·1)² = 4
        4.0
    """
    x = _tensor(track, "track")
    if x.ndim == 0 or x.shape[0] < 3:
        raise ValueError(f"track needs at least 3 frames along axis 0, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"track is empty (shape {tuple(x.shape)})")
    x = check_finite(x.reshape(x.shape[0], -1).detach(), "track", "fill missing frames first")
    d2 = x[2:] - 2 * x[1:-1] + x[:-2]
    per_frame = (d2**2).mean(1)
    if normalize:
        var = float(x.var(0, unbiased=False).mean())
        per_frame = per_frame / var if var > 0 else torch.zeros_like(per_frame)
    return _reduce(per_frame, reduction, True)


# --------------------------------------------------------------------------- lip sync
def mouth_opening(lmk) -> np.ndarray:
    """Mouth opening per frame: inner-lip gap over inter-ocular distance.

    ``|p13 − p14| / |p33 − p263|`` on the 468-vertex canonical mesh (13/14: inner
    upper/lower lip midpoints; 33/263: outer eye corners), so it does not depend on
    the face's size in the image.

    Args:
        lmk: ``[T, 468, 2]`` (pixels) or ``[T, 468, 3]``; one frame ``[468, D]`` is allowed.

    Returns:
        ``[T]`` float64.
    """
    x = _tensor(lmk, "lmk").detach()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] < 468 or x.shape[2] not in (2, 3):
        raise ValueError(f"lmk must have shape [T, 468, 2 or 3] (MediaPipe face mesh), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("lmk has no frames")
    gap = torch.linalg.norm(x[:, INNER_LIP_IDX[0]] - x[:, INNER_LIP_IDX[1]], dim=-1)
    iod = torch.linalg.norm(x[:, EYE_CORNER_IDX[0]] - x[:, EYE_CORNER_IDX[1]], dim=-1)
    if bool((iod <= 0).any()):
        raise ValueError("inter-ocular distance is 0 in some frame (landmarks 33 and 263 coincide)")
    return (gap / iod).cpu().double().numpy()


def lip_sync_corr(pred_open, gt_open) -> float:
    """Pearson correlation of two mouth-opening series (the lip-sync proxy).

    Args:
        pred_open, gt_open: ``[T]`` (e.g. from :func:`mouth_opening`), ``T ≥ 2``.

    Returns:
        Correlation in [−1, 1]. If either series is constant the correlation is
        undefined: returns ``nan`` and warns (``RuntimeWarning``) rather than a
        misleading 0, so a frozen mouth cannot pass silently.

    Examples:
        >>> round(lip_sync_corr([0, 1, 2, 3], [1, 3, 5, 7]), 6)
        1.0
    """
    p, g = _pair(pred_open, gt_open, "pred_open", "gt_open")
    if p.ndim != 1:
        raise ValueError(f"mouth-opening series must be 1-D [T], got {tuple(p.shape)}")
    if p.shape[0] < 2:
        raise ValueError(f"need at least 2 frames to correlate, got {p.shape[0]}")
    p = check_finite(p.detach().double(), "pred_open", "mouth-opening series must be finite")
    g = check_finite(g.detach().double(), "gt_open", "mouth-opening series must be finite")
    pc, gc = p - p.mean(), g - g.mean()
    den = math.sqrt(float((pc**2).sum()) * float((gc**2).sum()))
    if bool(p.max() == p.min()) or bool(g.max() == g.min()) or den == 0.0:
        warnings.warn(
            "lip_sync_corr: a mouth-opening series is constant; correlation undefined (nan)",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    return float((pc * gc).sum()) / den


def mouth_range_ratio(pred_open, gt_open) -> float:
    """Range of one mouth-opening series over another's (5th–95th percentile spread):
    1 = opens as wide, 0.1 = a tenth as wide. ``nan`` when the reference does not move."""
    p, g = _pair(pred_open, gt_open, "pred_open", "gt_open")
    p, g = p.detach().double().cpu().numpy(), g.detach().double().cpu().numpy()
    rg = float(np.percentile(g, 95) - np.percentile(g, 5))
    return float(np.percentile(p, 95) - np.percentile(p, 5)) / rg if rg > 0 else float("nan")


# --------------------------------------------------------------------------- on pixels
class FrameDetections:
    """What the face detector reads on ``T`` frames (NaN where no face was found).

    Attributes:
        aus: ``[T, 17]`` AU intensities from MediaPipe's blendshapes
            (:func:`emozone_lite.landmarks.blendshapes_to_aus`).
        aus_geometric: ``[T, 17]`` AUs from the detected landmarks relative to the neutral
            reference (:func:`emozone_lite.landmarks.estimate_aus`), OpenFace-style person
            normalisation; NaN everywhere without a reference.
        landmarks: ``[T, 468, 2]`` detected landmarks, pixels.
        found: ``[T]`` bool.
        mouth_opening: ``[T]`` inner-lip gap over the inter-ocular distance (:func:`mouth_opening`).
    """

    def __init__(self, aus, aus_geometric, landmarks, found):
        self.aus, self.aus_geometric, self.landmarks, self.found = aus, aus_geometric, landmarks, found
        self.mouth_opening = np.full(len(found), np.nan)
        if found.any():
            self.mouth_opening[found] = mouth_opening(landmarks[found])

    def __len__(self) -> int:
        return int(self.found.shape[0])

    @property
    def n_missing(self) -> int:
        """Frames where no face was found."""
        return int((~self.found).sum())

    def __repr__(self) -> str:
        return f"FrameDetections(T={len(self)}, missing={self.n_missing})"


def detect_frames(frames, neutral=None) -> FrameDetections:
    """Run the face detector on every frame, independently (no tracking between frames).

    Args:
        frames: ``[T, H, W, 3]`` float in [0, 1] or uint8 (tensor or array), e.g. renders.
        neutral: the neutral reference for the geometric AUs — a neutral image ``[H, W, 3]``,
            a :class:`~emozone_lite.landmarks.FaceLandmarks`, or ``None`` (no geometric AUs).

    Returns:
        :class:`FrameDetections`.

    Raises:
        ImportError: mediapipe is not installed.
        ValueError: frames of the wrong shape, or a neutral image with no face.
    """
    from .landmarks import FaceLandmarks, blendshapes_to_aus, detect_landmarks, detect_landmarks_images, estimate_aus
    from .viz import to_uint8

    imgs = to_uint8(frames)
    if imgs.ndim != 4 or imgs.shape[-1] != 3:
        raise ValueError(f"frames must have shape [T, H, W, 3], got {tuple(imgs.shape)}")
    ref = neutral
    if ref is not None and not isinstance(ref, FaceLandmarks):
        ref = detect_landmarks(to_uint8(ref))
    T = imgs.shape[0]
    aus = np.full((T, len(AU_NAMES)), np.nan)
    geo = np.full((T, len(AU_NAMES)), np.nan)
    lmk = np.full((T, 468, 2), np.nan)
    found = np.zeros(T, bool)
    for t, face in enumerate(detect_landmarks_images(imgs)):
        if face is None:  # no face in this frame: kept, marked
            continue
        found[t] = True
        aus[t] = blendshapes_to_aus(face.blendshapes)
        lmk[t] = face.pixels[:468, :2]
        if ref is not None:
            geo[t] = estimate_aus(face, neutral=ref)
    return FrameDetections(aus, geo, lmk, found)


def pixel_metrics(pred: FrameDetections, ref: FrameDetections) -> dict[str, float]:
    """Student-vs-teacher metrics from what the detector reads on both videos.

    Computed over the frames where *both* have a face; ``pixel_faces_missing`` /
    ``pixel_faces_missing_teacher`` count the rest (``pixel_frames`` the frames used).

    Returns:
        ``pixel_aue_upper`` / ``pixel_aue_lower`` (blendshape AUs), ``pixel_aue_upper_geometric``
        / ``pixel_aue_lower_geometric`` (landmark AUs vs the neutral reference), ``pixel_lmd_mouth``
        / ``pixel_lmd_upper`` (pixels), ``pixel_lip_sync`` (correlation of mouth openings),
        ``pixel_mouth_range`` (student range / teacher range), ``pixel_jitter_au`` /
        ``pixel_jitter_au_teacher`` (of the blendshape AU tracks) and ``pixel_jitter_upper_lmk``
        / ``pixel_jitter_upper_lmk_teacher`` (of the detected upper-face landmarks,
        :data:`UPPER_FACE_IDX`, pixels²) — jitter on consecutive frames only, so NaN when a face
        is missing in any frame — and the counts. NaN where a value is undefined.
    """
    if len(pred) != len(ref):
        raise ValueError(f"pred and ref must cover the same frames, got {len(pred)} and {len(ref)}")
    both = pred.found & ref.found
    out = {
        "pixel_frames": float(both.sum()),
        "pixel_faces_missing": float(pred.n_missing),
        "pixel_faces_missing_teacher": float(ref.n_missing),
    }
    nan = float("nan")
    keys = (
        "pixel_aue_upper", "pixel_aue_lower", "pixel_aue_upper_geometric", "pixel_aue_lower_geometric",
        "pixel_lmd_mouth", "pixel_lmd_upper", "pixel_lip_sync", "pixel_mouth_range",
        "pixel_jitter_au", "pixel_jitter_au_teacher", "pixel_jitter_upper_lmk", "pixel_jitter_upper_lmk_teacher",
    )  # fmt: skip
    out.update(dict.fromkeys(keys, nan))
    if both.sum() < 2:
        return out
    out["pixel_aue_upper"] = float(aue(pred.aus[both], ref.aus[both], "upper"))
    out["pixel_aue_lower"] = float(aue(pred.aus[both], ref.aus[both], "lower"))
    if np.isfinite(pred.aus_geometric[both]).all() and np.isfinite(ref.aus_geometric[both]).all():
        out["pixel_aue_upper_geometric"] = float(aue(pred.aus_geometric[both], ref.aus_geometric[both], "upper"))
        out["pixel_aue_lower_geometric"] = float(aue(pred.aus_geometric[both], ref.aus_geometric[both], "lower"))
    out["pixel_lmd_mouth"] = float(lmd(pred.landmarks[both], ref.landmarks[both], MOUTH_IDX))
    out["pixel_lmd_upper"] = float(lmd(pred.landmarks[both], ref.landmarks[both], UPPER_FACE_IDX))
    po, ro = pred.mouth_opening[both], ref.mouth_opening[both]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant series: nan, reported as such
        out["pixel_lip_sync"] = lip_sync_corr(po, ro)
    out["pixel_mouth_range"] = mouth_range_ratio(po, ro)
    if both.all() and len(both) >= 3:
        out["pixel_jitter_au"] = float(jitter(pred.aus))
        out["pixel_jitter_au_teacher"] = float(jitter(ref.aus))
        out["pixel_jitter_upper_lmk"] = float(jitter(pred.landmarks[:, UPPER_FACE_IDX]))
        out["pixel_jitter_upper_lmk_teacher"] = float(jitter(ref.landmarks[:, UPPER_FACE_IDX]))
    return out
