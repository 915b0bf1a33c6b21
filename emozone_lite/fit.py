"""Your own talking video → a model of that person: ``emozone-lite fit VIDEO --out DIR``.

The teacher rig is not needed: the student learns from the video's own frames.

1. **Speech**: the video's sound track (:func:`emozone_lite.track.video_audio`) or ``--audio``.
2. **AUs and landmarks**: :func:`emozone_lite.track.track_video` (MediaPipe on every frame)
   writes ``DIR/aus.csv`` (OpenFace 2.x) and gives the 468 mesh landmarks of each frame.
3. **The head**: :func:`emozone_lite.head.build_head` on one frame (``--frame K``; default the
   training frame with the lowest AU intensities, the most neutral one) — registered, seeded,
   coloured, fitted and made neutral, as for the bundled photo — written as ``DIR/head.ply``.
   **The portrait** around it (:func:`emozone_lite.head.portrait.build_portrait` on the largest
   square of that frame centred on the face: hair, neck, shoulders and the room as Gaussians
   fitted the 3DGS way, the face being the head's) — written as ``DIR/portrait.ply`` with its
   camera sidecar ``DIR/portrait.json`` (``FitConfig.portrait``; ``"none"``: no portrait).
4. **Each frame's pose**: the head's rest mesh posed rigidly onto the frame's landmarks
   (:func:`emozone_lite.head.solve_pose`, soft-L1 so the moving lips and brows pull less),
   with the intrinsics of the head's frame; the frame is cropped around the posed head at
   ``image_size`` (:func:`emozone_lite.head.crop_to_face`), and the face region is the convex
   hull of its landmarks.
5. **Training** (:func:`train_fit`): the student (:class:`~emozone_lite.model.EmoZoneLite`, on
   the fitted head, rest mesh = the head's own) reads the speech and the tracked AUs at
   :data:`FIT_FPS` and is trained on the first 90 % of the video: L1 + D-SSIM of its render
   against the frame **inside the face region** + the 2-D distance of its mesh to the
   detected landmarks + the shape regulariser of :class:`~emozone_lite.train.TrainConfig`.
   Atomic checkpoints (``DIR/model.pt``) every ``ckpt_every`` steps; run again to resume.
6. **The held-out report** (``DIR/report.json``): PSNR in the face region, LMD (all / mouth)
   and lip sync (the student's mouth opening against the detected one) on the last 10 % of
   the video, for the trained model and for the untrained one (the rest head) beside it.

``emozone-lite render --checkpoint DIR/model.pt`` renders the fitted person with new audio
(the checkpoint names its ``head.ply``) in that portrait, from the frame's camera.

Examples:
    >>> from emozone_lite.fit import fit_video  # doctest: +SKIP
    >>> r = fit_video("me_talking.mp4", "runs/me")  # doctest: +SKIP
    >>> r.report["trained"]["psnr"], r.report["untrained"]["psnr"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .checks import check_known_fields

__all__ = ["FIT_FPS", "FitConfig", "FitData", "FitResult", "fit_video", "prepare_frames", "train_fit", "evaluate_fit"]

#: The model's frame rate: every video is read on this time grid (the frame shown at each time).
FIT_FPS = 25.0
#: Sample rate of the speech the student reads.
SPEECH_SR = 16000
#: Shortest video ``fit`` takes, in model frames (1.2 s): the training part must cover
#: CIT-AE's AU window at least partly and the held-out part two frames.
MIN_FRAMES = 30
#: Settings of ``FitConfig.portrait``.
PORTRAITS = ("full", "fast", "none")


@dataclass
class FitConfig:
    """How ``fit`` builds the head and trains the student (saved in ``model.pt`` and ``fit.json``).

    Attributes:
        steps: optimiser steps. Measured on a 10 s 854×480 30 fps teacher video (2 cores,
            ``benchmarks/fit_video.py``): with model version 6, 300 steps (32 s) left the held-out
            mouth opening 0.32 as wide as the detected one, 1000 steps (122 s) 0.89 (held-out PSNR in
            the face region 24.2 → 24.9 dB, LMD 0.61 → 0.44 px); with model version 8, 1000 steps
            (155 s on a slower machine) 0.59 (PSNR 25.17 dB, LMD 0.43 px).
        lr: Adam learning rate.
        batch_frames: video frames per step.
        image_size: side of the square face crop the student is rendered and compared at.
        lambda_dssim: weight of D-SSIM in the photometric loss.
        lambda_lmk: weight of the 2-D landmark loss.
        lambda_shape: weight of the shape regulariser (:func:`emozone_lite.train.shape_change`).
        holdout: share of the video, at its end, never trained on (the report's frames).
        head_gaussians, head_iters, head_size: :func:`~emozone_lite.head.build_head`'s
            ``n_gaussians``, ``iters`` and ``fit_size``.
        learn_colors: also learn the head's colours from the training frames (the head was
            fitted to one frame; lighting, compression and the sides the head frame shows
            poorly differ in the others), at learning rate ``lr_colors``.
        frame: the video frame (0-based, in decoding order) the head is built from; ``None``:
            the training frame with the lowest sum of tracked AU intensities.
        portrait: the portrait built around the head from the same frame: ``"full"`` (the
            shipped portrait's :class:`~emozone_lite.head.portrait.PortraitConfig`, 1300 fit
            iterations at 256²), ``"fast"`` (``PortraitConfig.fast()``) or ``"none"``.
        ckpt_every: steps between checkpoints.
        seed: seeds the head's sampling, the model's initialisation and the batches.
    """

    steps: int = 1000
    lr: float = 5e-3
    batch_frames: int = 4
    image_size: int = 128
    lambda_dssim: float = 0.2
    lambda_lmk: float = 10.0
    lambda_shape: float = 1.0
    holdout: float = 0.1
    head_gaussians: int = 12000
    head_iters: int = 200
    head_size: int = 256
    learn_colors: bool = True
    lr_colors: float = 2e-3
    frame: int | None = None
    portrait: str = "full"
    ckpt_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.portrait not in PORTRAITS:
            raise ValueError(f"FitConfig.portrait must be one of {PORTRAITS}, got {self.portrait!r}")
        for name in ("steps", "batch_frames", "image_size", "head_gaussians", "head_size", "ckpt_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"FitConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ValueError(f"FitConfig.image_size must be at least 16 pixels, got {self.image_size}")
        if not 0.0 < self.holdout < 0.5:
            raise ValueError(f"FitConfig.holdout must lie in (0, 0.5), got {self.holdout}")
        if self.frame is not None and int(self.frame) < 0:
            raise ValueError(f"FitConfig.frame must be a frame index ≥ 0, got {self.frame}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FitConfig:
        check_known_fields(cls, d)
        return cls(**d)

    @classmethod
    def fast(cls, **kw) -> FitConfig:
        """A small configuration for CI and ``--fast`` runs (same code, fewer steps / pixels)."""
        base = dict(steps=60, image_size=64, head_gaussians=3000, head_iters=30, head_size=128, ckpt_every=20,
                    portrait="fast")  # fmt: skip
        base.update(kw)
        return cls(**base)


@dataclass
class FitData:
    """A video on the model's time grid, ready to train on.

    Attributes:
        times: ``[T]`` model frame times, ``k / FIT_FPS`` s.
        video_index: ``[T]`` the video frame shown at each time.
        has_face: ``[T]`` bool, the detector found a face in that frame.
        crops: ``[T, S, S, 3]`` float32 face crops (zeros without a face).
        masks: ``[T, S, S]`` float32 face region (the landmarks' convex hull).
        landmarks: ``[T, 468, 2]`` detected mesh landmarks in crop pixels.
        viewmats, Ks: ``[T, 4, 4]``, ``[T, 3, 3]`` the crop camera of each frame (its head pose).
        audio: ``[T, 16, D]`` speech windows the model reads; energy: ``[T]``.
        aus: ``[T, 17]`` tracked AU intensities (0–5).
        train, heldout: model frame indices with a face, before / after the held-out cut.
    """

    times: np.ndarray
    video_index: np.ndarray
    has_face: np.ndarray
    crops: Tensor
    masks: Tensor
    landmarks: Tensor
    viewmats: Tensor
    Ks: Tensor
    audio: Tensor
    energy: Tensor
    aus: Tensor
    train: Tensor
    heldout: Tensor

    @property
    def n_frames(self) -> int:
        return len(self.times)


@dataclass
class FitResult:
    """What :func:`fit_video` wrote: ``model``, ``head`` (the cloud), ``report`` (as in
    ``report.json``), ``paths`` (name → file) and ``seconds`` per stage."""

    model: object
    head: object
    report: dict
    paths: dict
    seconds: dict


# --------------------------------------------------------------------------- preparing the video
def _face_mask(points: np.ndarray, size: int) -> np.ndarray:
    """``[size, size]`` float32: 1 inside the convex hull of ``points [P, 2]`` (pixels), eroded by 1 px."""
    from PIL import Image, ImageDraw
    from scipy import ndimage
    from scipy.spatial import ConvexHull

    hull = points[ConvexHull(points).vertices]
    im = Image.new("L", (size, size), 0)
    ImageDraw.Draw(im).polygon([tuple(map(float, p)) for p in hull], fill=1)
    return ndimage.binary_erosion(np.asarray(im) > 0, iterations=1).astype(np.float32)


def _stable_vertices() -> np.ndarray:
    """Mesh vertices above the nose tip (eyes, brows, forehead, nose bridge): what a frame's
    head pose is solved on (the same set :func:`emozone_lite.head.neutral_vertices` aligns on)."""
    from .head.neutral import _STABLE_MIN_Y
    from .landmarks import load_canonical_mesh

    return np.nonzero(load_canonical_mesh().vertices[:, 1] > _STABLE_MIN_Y)[0]


def model_time_grid(timestamps: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(times [T], video_index [T])``: the :data:`FIT_FPS` grid over a video of frames shown at
    ``timestamps`` (each frame lasting until the next, the last one ``1 / fps``), and the frame
    shown at each grid time — a variable frame rate is read as it plays."""
    ts = np.asarray(timestamps, np.float64) - float(timestamps[0])
    duration = float(ts[-1]) + 1.0 / fps
    times = np.arange(int(math.floor(duration * FIT_FPS + 1e-6))) / FIT_FPS
    video_index = np.clip(np.searchsorted(ts, times + 1e-6, side="right") - 1, 0, len(ts) - 1)
    return times, video_index


def prepare_frames(
    video, track, camera, rest_vertices: np.ndarray, wave: np.ndarray, model, cfg: FitConfig, progress: bool = True
) -> FitData:
    """Pose, crop and mask every frame of ``video`` the model's time grid uses (see the module
    docstring, step 4), and read the speech and AUs on that grid.

    Args:
        video: the video file; track: its :class:`~emozone_lite.track.VideoTrack`.
        camera: the camera of the head's frame (its intrinsics are every frame's).
        rest_vertices: ``[468, 3]`` the head's rest mesh.
        wave: the speech, mono at :data:`SPEECH_SR`.
        model: the student (its ``audio_features`` give the speech windows it reads).
        cfg: the :class:`FitConfig`.
    """
    from .head import crop_to_face, solve_pose
    from .track import iter_video_frames

    times, vidx = model_time_grid(track.timestamps, track.fps)
    T, S = len(times), int(cfg.image_size)
    if T < MIN_FRAMES:
        raise ValueError(
            f"{video}: {T / FIT_FPS:.2f} s long; fit needs at least {MIN_FRAMES / FIT_FPS:.1f} s of video "
            f"({MIN_FRAMES} frames at {FIT_FPS:g} fps)"
        )
    K = camera.K.double().numpy()
    R0, t0 = camera.viewmat[:3, :3].double().numpy(), camera.viewmat[:3, 3].double().numpy()
    V = np.asarray(rest_vertices, np.float64)
    stable = _stable_vertices()
    wanted = {int(i) for i in vidx if track.success[i]}
    poses: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    R, t = R0, t0
    for i in sorted(wanted):  # in time order, each pose starts from the previous one
        R, t = solve_pose(V[stable], track.landmarks[i][stable], K, R, t, robust_px=2.0)
        poses[i] = (R, t)

    from .camera import Camera

    crops = np.zeros((T, S, S, 3), np.float32)
    masks = np.zeros((T, S, S), np.float32)
    lmk = np.zeros((T, 468, 2), np.float32)
    viewmats = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
    Ks = np.tile(np.eye(3, dtype=np.float32), (T, 1, 1))
    rows: dict[int, list[int]] = {}
    for k, i in enumerate(vidx):
        if int(i) in wanted:
            rows.setdefault(int(i), []).append(k)
    for i, (_, img) in enumerate(iter_video_frames(video, progress=progress, desc=f"crop {Path(video).name}")):
        if i not in rows:
            continue
        R, t = poses[i]
        view = torch.eye(4)
        view[:3, :3], view[:3, 3] = torch.as_tensor(R, dtype=torch.float32), torch.as_tensor(t, dtype=torch.float32)
        cam = Camera(view, camera.K.clone(), int(img.shape[1]), int(img.shape[0]))
        crop, ccam = crop_to_face(img, cam, V, size=S)
        k = float(ccam.K[0, 0] / cam.K[0, 0])
        px = (track.landmarks[i] - K[:2, 2].astype(np.float32)) * k + ccam.K[:2, 2].numpy()
        m = _face_mask(px, S)
        for r in rows[i]:
            crops[r], masks[r], lmk[r] = crop, m, px
            viewmats[r], Ks[r] = ccam.viewmat.numpy(), ccam.K.numpy()
    has_face = np.array([int(i) in wanted for i in vidx])
    cut = int(round(T * (1.0 - cfg.holdout)))
    train_idx = np.nonzero(has_face[:cut])[0]
    held = np.nonzero(has_face[cut:])[0] + cut
    if len(train_idx) < 2 or len(held) < 2:
        raise ValueError(
            f"{video}: a face in {len(train_idx)} of the {cut} training frames and {len(held)} of the {T - cut} "
            f"held-out frames (at {FIT_FPS:g} fps); fit needs at least 2 of each"
        )
    feats = model.audio_features(wave, SPEECH_SR, FIT_FPS, n_frames=T)
    return FitData(
        times=times,
        video_index=vidx,
        has_face=has_face,
        crops=torch.from_numpy(crops),
        masks=torch.from_numpy(masks),
        landmarks=torch.from_numpy(lmk),
        viewmats=torch.from_numpy(viewmats),
        Ks=torch.from_numpy(Ks),
        audio=torch.as_tensor(feats.mel_windows),
        energy=torch.as_tensor(feats.energy),
        aus=torch.as_tensor(track.aus.values[vidx], dtype=torch.float32),
        train=torch.as_tensor(train_idx, dtype=torch.long),
        heldout=torch.as_tensor(held, dtype=torch.long),
    )


# --------------------------------------------------------------------------- training
def _project_each(vertices: Tensor, viewmats: Tensor, Ks: Tensor) -> Tensor:
    """``vertices [B, V, 3]`` → pixels ``[B, V, 2]``, frame ``b`` through its own camera ``b``."""
    pc = torch.einsum("bij,bvj->bvi", viewmats[:, :3, :3], vertices) + viewmats[:, None, :3, 3]
    uv = pc[..., :2] / pc[..., 2:3].clamp_min(1e-6)
    f = torch.stack([Ks[:, 0, 0], Ks[:, 1, 1]], -1)[:, None]
    c = torch.stack([Ks[:, 0, 2], Ks[:, 1, 2]], -1)[:, None]
    return uv * f + c


def fit_predict(model, data: FitData, frames: Tensor) -> tuple[Tensor, Tensor]:
    """The student's renders ``[B, S, S, 3]`` (white background) and mesh landmarks ``[B, 468, 2]``
    (crop pixels) of model frames ``frames``, each from its frame's camera."""
    S = data.crops.shape[1]
    state = model(data.audio, data.energy, data.aus, frames)
    imgs = model.render_frames(state, data.viewmats[frames], data.Ks[frames], S, S, background=torch.ones(3))
    return imgs, _project_each(state.vertices, data.viewmats[frames], data.Ks[frames]), state


def fit_loss(model, data: FitData, frames: Tensor, cfg: FitConfig) -> tuple[Tensor, dict]:
    """One step's loss on model frames ``frames`` (module docstring, step 5) and its terms."""
    from .metrics import l1_dssim_loss
    from .train import shape_change

    imgs, lmk, state = fit_predict(model, data, frames)
    target, m = data.crops[frames], data.masks[frames][..., None]
    pred = m * imgs + (1.0 - m) * target  # outside the face region the loss sees the frame itself
    photo = l1_dssim_loss(pred, target, cfg.lambda_dssim, layout="hwc")
    lmk_loss = (lmk - data.landmarks[frames]).norm(dim=-1).mean() / data.crops.shape[1]
    shape = shape_change(model, state)
    loss = photo + cfg.lambda_lmk * lmk_loss + cfg.lambda_shape * shape
    return loss, {"photo": photo.item(), "lmk": lmk_loss.item(), "shape": shape.item()}


def train_fit(
    model, data: FitData, cfg: FitConfig, ckpt: Path | None = None, progress: bool = True, head_file: str = "head.ply"
) -> list[dict]:
    """Train ``model`` in place on ``data.train``; atomic checkpoints to ``ckpt`` every
    ``cfg.ckpt_every`` steps, resumed from there when ``ckpt`` exists (same configs required).
    Returns the history (one dict per step)."""
    from tqdm.auto import tqdm

    from .train import read_checkpoint, save_checkpoint
    from .utils import seed_everything

    seed_everything(cfg.seed)
    if cfg.learn_colors and not isinstance(model.colors, torch.nn.Parameter):
        colors = model.colors.detach().clone()
        del model._buffers["colors"]  # the same state-dict key: a fit checkpoint loads into a plain model
        model.colors = torch.nn.Parameter(colors)
    params = [p for n, p in model.named_parameters() if n != "colors"]
    groups = [{"params": params, "lr": cfg.lr}]
    if cfg.learn_colors:
        groups.append({"params": [model.colors], "lr": cfg.lr_colors})
    opt = torch.optim.Adam(groups)
    history: list[dict] = []
    start = 0
    if ckpt is not None and ckpt.exists():
        ck = read_checkpoint(ckpt)
        if ck["model_config"] != model.config.to_dict() or ck["train_config"] != cfg.to_dict():
            raise ValueError(
                f"{ckpt} holds a fit with another config (model {ck['model_config']}, fit {ck['train_config']}); "
                "use another --out folder, or delete it to start again"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history = json.loads(ck["history"])
        start = int(ck["step"])
    rng = random.Random(cfg.seed)
    pool = data.train.tolist()
    for _ in range(start):  # replay the sampler: a resumed run draws the same batches
        rng.sample(pool, min(cfg.batch_frames, len(pool)))
    model.train()
    bar = tqdm(range(start, cfg.steps), desc="fit", disable=not progress, initial=start, total=cfg.steps)
    for step in bar:
        t0 = time.perf_counter()
        frames = torch.as_tensor(sorted(rng.sample(pool, min(cfg.batch_frames, len(pool)))))
        loss, terms = fit_loss(model, data, frames, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cfg.learn_colors:
            with torch.no_grad():
                model.colors.clamp_(0.0, 1.0)
        rec = {"step": step + 1, "loss": loss.item(), **terms, "seconds": time.perf_counter() - t0}
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.4f}")
        if ckpt is not None and ((step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps):
            save_checkpoint(ckpt, model, opt, step + 1, cfg, history, head_file=head_file)
    model.eval()
    return history


# --------------------------------------------------------------------------- the held-out report
@torch.no_grad()
def evaluate_fit(model, data: FitData, frames: Tensor | None = None, chunk: int = 8) -> dict:
    """PSNR in the face region (pooled over the frames), LMD (all / mouth, crop pixels), and lip
    sync: Pearson r and range ratio of the student's mouth opening against the detected one
    (:func:`emozone_lite.metrics.mouth_opening`), on ``frames`` (default the held-out ones)."""
    import warnings

    from .metrics import MOUTH_IDX, lip_sync_corr, lmd, mouth_opening, mouth_range_ratio

    frames = data.heldout if frames is None else frames
    se, n, lm = 0.0, 0.0, []
    for i in range(0, len(frames), chunk):
        f = frames[i : i + chunk]
        imgs, lmk, _ = fit_predict(model, data, f)
        m = data.masks[f][..., None]
        se += float((((imgs - data.crops[f]) ** 2) * m).sum())
        n += float(m.sum()) * 3
        lm.append(lmk)
    pred = torch.cat(lm).numpy()
    gt = data.landmarks[frames].numpy()
    po, go = mouth_opening(pred), mouth_opening(gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a mouth that does not move: nan, reported as such
        sync = lip_sync_corr(po, go)
    return {
        "frames": int(len(frames)),
        "psnr": 10.0 * math.log10(n / max(se, 1e-12)),
        "lmd": float(lmd(pred, gt)),
        "lmd_mouth": float(lmd(pred, gt, MOUTH_IDX)),
        "lip_sync": float(sync),
        "mouth_range": float(mouth_range_ratio(po, go)),
    }


# --------------------------------------------------------------------------- the command
def _grab_frame(video, index: int) -> np.ndarray:
    from .track import iter_video_frames

    for i, (_, img) in enumerate(iter_video_frames(video)):
        if i == index:
            return img
    raise ValueError(f"{video}: has no frame {index}")  # pragma: no cover - checked against the track first


def _head_frame(track, cut_video_frame: int, frame: int | None, video) -> int:
    """The video frame the head is built from (:attr:`FitConfig.frame`)."""
    T = len(track)
    if frame is not None:
        if frame >= T:
            raise ValueError(f"--frame {frame}: {video} has {T} frames (0 … {T - 1})")
        if not track.success[frame]:
            near = np.nonzero(track.success)[0]
            best = int(near[np.abs(near - frame).argmin()])
            raise ValueError(f"--frame {frame}: no face found in that frame of {video}; the nearest with one is {best}")
        return int(frame)
    ok = np.nonzero(track.success[:cut_video_frame])[0]
    if len(ok) == 0:
        ok = np.nonzero(track.success)[0]
    return int(ok[np.argmin(track.aus.values[ok].sum(1))])


def portrait_photo(photo: np.ndarray, head, camera) -> np.ndarray:
    """The largest square of ``photo [H, W, 3]`` centred on the head's projection (as far as the
    frame allows): what :func:`~emozone_lite.head.portrait.build_portrait` fits the portrait to."""
    H, W = photo.shape[:2]
    side = min(H, W)
    with torch.no_grad():
        cx, cy = camera.project(head.means.float()).mean(0).tolist()
    x0 = int(np.clip(round(cx - side / 2), 0, W - side))
    y0 = int(np.clip(round(cy - side / 2), 0, H - side))
    return photo[y0 : y0 + side, x0 : x0 + side]


def _build_portrait(video, frame: int, head, camera, cfg: FitConfig, out: Path, progress: bool,
                    photo: np.ndarray | None = None) -> dict | None:  # fmt: skip
    """``out/portrait.ply`` (and its sidecar) around ``head`` from video frame ``frame``, unless
    ``cfg.portrait`` is ``"none"`` (→ None) or it is there; its fit resumes from
    ``out/.portrait-fit.pt``; ``photo``: that frame when the caller has decoded it already.
    Returns the report's ``portrait`` entry: its Gaussian count and
    whole-frame PSNR / SSIM at its fit size against the square of the frame it was fitted to."""
    from .head.photo import load_photo
    from .head.portrait import PortraitConfig, build_portrait, load_portrait, resize_photo
    from .metrics import psnr, ssim

    if cfg.portrait == "none":
        return None
    path = out / "portrait.ply"
    frame_img = _grab_frame(video, frame) if photo is None else photo
    photo = load_photo(portrait_photo(frame_img, head, camera))
    if not (path.exists() and path.with_suffix(".json").exists()):
        pc = PortraitConfig.fast() if cfg.portrait == "fast" else PortraitConfig()
        ckpt = out / ".portrait-fit.pt"
        build_portrait(photo, head=head, out_path=path, config=pc, checkpoint=ckpt, progress=progress)
        ckpt.unlink(missing_ok=True)
    p = load_portrait(path)
    target = torch.as_tensor(resize_photo(photo, p.camera, p.camera.width)[1])
    with torch.no_grad():
        img = p.render()
    return {"file": path.name, "gaussians": len(p.cloud), "size": p.camera.width, "photo_side": photo.shape[0],
            "psnr": float(psnr(img, target)), "ssim": float(ssim(img, target))}  # fmt: skip


def _fit_record(video: Path, frame: int, cfg: FitConfig, model_cfg, build) -> dict:
    cam = build.camera
    return {
        "video": video.name,
        "video_bytes": video.stat().st_size,
        "frame": frame,
        "fit": cfg.to_dict(),
        "model": model_cfg.to_dict(),
        "camera": {"viewmat": cam.viewmat.tolist(), "K": cam.K.tolist(), "width": cam.width, "height": cam.height},
        "rest_vertices": np.round(np.asarray(build.neutral_vertices, np.float64), 6).tolist(),
    }


def fit_video(
    video,
    out_dir,
    *,
    audio=None,
    config: FitConfig | None = None,
    model_config=None,
    progress: bool = True,
) -> FitResult:
    """A person-specific model from a talking video (the module docstring gives the steps).

    Args:
        video: the talking video (any format ``track`` reads).
        out_dir: the folder to write ``model.pt``, ``head.ply``, ``portrait.ply`` (+ ``.json``),
            ``aus.csv``, ``fit.json`` and ``report.json`` to (made if missing; its parent must exist). A folder holding an
            earlier fit of the same video and configs is resumed.
        audio: a speech file to use instead of the video's sound track.
        config: :class:`FitConfig` (default ``FitConfig()``).
        model_config: the student's :class:`~emozone_lite.model.ModelConfig` (default ``ModelConfig()``).
        progress: progress bars and a one-line summary per stage.

    Raises:
        FileNotFoundError: the video, the audio or ``out_dir``'s parent does not exist.
        ValueError: an empty, corrupt or undecodable video; no sound track and no ``audio``; no
            face (saying in how many frames one was found); a video shorter than
            :data:`MIN_FRAMES` frames; ``out_dir`` holding a fit of another video or config.
    """
    from .audio import load_audio
    from .camera import Camera
    from .head import build_head, load_head
    from .model import EmoZoneLite, ModelConfig
    from .track import _check_video_path, _open_video, track_video, video_audio
    from .utils import atomic_write, seed_everything

    cfg = FitConfig() if config is None else config
    model_cfg = ModelConfig() if model_config is None else model_config
    video = _check_video_path(video)
    container, _ = _open_video(video)  # a file that is no video says so before its sound is looked for
    container.close()
    out = Path(out_dir)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder {out}: its parent {out.parent} does not exist; create it first")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out}: is a file; expected a folder")
    # the speech first: a video without sound fails before anything is computed or written
    if audio is not None:
        wave = load_audio(audio, SPEECH_SR)
    else:
        wave = video_audio(video, SPEECH_SR)
        if wave is None:
            raise ValueError(
                f"{video}: has no audio track; pass the speech with --audio speech.wav (fit learns the mouth from it)"
            )
    made = not out.exists()
    out.mkdir(exist_ok=True)
    seconds: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        tmp_csv = out / ".aus.csv.partial"
        track = track_video(video, tmp_csv, progress=progress)  # raises on no face before writing
        seconds["track"] = time.perf_counter() - t0
        T_video = len(track)
        cut_t = (track.timestamps[-1] - track.timestamps[0] + 1.0 / track.fps) * (1.0 - cfg.holdout)
        cut_video_frame = int(np.searchsorted(track.timestamps - track.timestamps[0], cut_t))
        frame = _head_frame(track, max(cut_video_frame, 1), cfg.frame, video)

        t0 = time.perf_counter()
        record_path, head_path = out / "fit.json", out / "head.ply"
        record = json.loads(record_path.read_text()) if record_path.exists() and head_path.exists() else None
        same = record is not None and {k: record.get(k) for k in ("video", "video_bytes", "frame", "fit", "model")} == {
            "video": video.name, "video_bytes": video.stat().st_size, "frame": frame,
            "fit": cfg.to_dict(), "model": model_cfg.to_dict(),
        }  # fmt: skip
        if record is not None and not same:
            raise ValueError(
                f"{out} holds a fit of another video, frame or config ({record.get('video')}, frame "
                f"{record.get('frame')}); use another --out folder, or delete it to start again"
            )
        photo = None  # the head's frame, decoded only when the head is built here
        if same:  # resume: the head is built
            head = load_head(head_path)
            c = record["camera"]
            camera = Camera(torch.tensor(c["viewmat"]), torch.tensor(c["K"]), int(c["width"]), int(c["height"]))
            rest = np.asarray(record["rest_vertices"], np.float32)
        else:
            photo = _grab_frame(video, frame)
            build = build_head(
                photo, cfg.head_gaussians, cfg.head_iters, fit_size=cfg.head_size, seed=cfg.seed,
                progress=progress, details=True,
            )  # fmt: skip
            head, camera, rest = build.cloud, build.camera, build.neutral_vertices
            from .head import save_head

            save_head(head, head_path)
            with atomic_write(record_path, "w") as f:
                json.dump(_fit_record(video, frame, cfg, model_cfg, build), f)
        seconds["head"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        portrait = _build_portrait(video, frame, head, camera, cfg, out, progress, photo=photo)
        seconds["portrait"] = time.perf_counter() - t0

        def new_model():
            seed_everything(cfg.seed)
            m = EmoZoneLite(model_cfg, head)
            m.rest_vertices.copy_(torch.as_tensor(rest, dtype=torch.float32))  # the person's own rest mesh
            return m.eval()

        model = new_model()
        t0 = time.perf_counter()
        data = prepare_frames(video, track, camera, rest, wave, model, cfg, progress=progress)
        seconds["prepare"] = time.perf_counter() - t0
        untrained = evaluate_fit(new_model(), data)

        t0 = time.perf_counter()
        history = train_fit(model, data, cfg, ckpt=out / "model.pt", progress=progress)
        seconds["train"] = time.perf_counter() - t0
        trained = evaluate_fit(model, data)
        report = {
            "video": str(video),
            "frames": {
                "video": T_video,
                "model": data.n_frames,
                "train": int(len(data.train)),
                "heldout": int(len(data.heldout)),
                "no_face": int((~data.has_face).sum()),
            },  # fmt: skip
            "fps": {"video": track.fps, "model": FIT_FPS},
            "head_frame": frame,
            "portrait": portrait,
            "heldout_from_s": float(data.times[int(round(data.n_frames * (1.0 - cfg.holdout)))]),
            "trained": trained,
            "untrained": untrained,
            "steps": cfg.steps,
            "seconds_per_step": float(np.median([h["seconds"] for h in history[-50:]])) if history else None,
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "cores": os.cpu_count(),
        }
        from .train import json_safe

        report = json_safe(report)  # NaN (a mouth that does not move has no correlation) → None, as in the file
        with atomic_write(out / "report.json", "w") as f:
            json.dump(json_safe(report), f, indent=2, allow_nan=False)
        os.replace(tmp_csv, out / "aus.csv")
    except BaseException:
        tmp = out / ".aus.csv.partial"
        if tmp.exists():
            tmp.unlink()  # (an interrupted portrait fit keeps its .portrait-fit.pt: a rerun resumes it)
        if made and not any(out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)  # nothing of this run is left behind
        raise
    paths = {k: out / v for k, v in
             {"model": "model.pt", "head": "head.ply", "aus": "aus.csv", "fit": "fit.json", "report": "report.json"}.items()}  # fmt: skip
    if portrait is not None:
        paths["portrait"] = out / portrait["file"]
    return FitResult(model, head, report, paths, seconds)
