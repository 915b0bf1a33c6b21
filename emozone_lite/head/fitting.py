"""Refining the head against its photo, and the one call that builds it.

- :func:`fit_head` — Adam on colours, opacities, tangent scales and bounded mean offsets,
  through the differentiable renderer, ``0.8·L1 + 0.2·(1 − SSIM)`` inside the face mask
  (:class:`HeadFit` is its history);
- :func:`masked_psnr` — PSNR over a mask;
- :func:`build_head` — register, seed, colour, fit, save.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..camera import Camera
from ..checks import as_float_tensor
from ..gaussians import GaussianCloud
from ..landmarks import load_canonical_mesh
from ..utils import data_path, get_device
from .files import save_head
from .photo import (
    DEFAULT_PHOTO,
    _check_photo_size,
    colour_from_photo,
    crop_to_face,
    face_mask,
    load_photo,
    register_mesh_to_photo,
)
from .seeding import seed_gaussians

__all__ = ["HeadBuild", "HeadFit", "fit_head", "masked_psnr", "build_head"]


@dataclass
class HeadBuild:
    """What :func:`build_head` made, with ``details=True``.

    Attributes:
        cloud: the neutral head (as ``build_head`` returns it).
        camera: the photo's camera (:func:`register_mesh_to_photo`; photo-sized), world frame.
        registration: the :class:`LandmarkFit` (the personalised mesh, landmark errors, pose).
        neutral_vertices: ``[468, 3]`` float32 the head's rest mesh: the personalised mesh with
            the photographed expression removed and the lips closed
            (:func:`~emozone_lite.head.neutral_vertices`); the Gaussians sit on it.
    """

    cloud: GaussianCloud
    camera: Camera
    registration: object
    neutral_vertices: np.ndarray


def masked_psnr(pred, target, mask) -> float:
    """PSNR (dB) of ``pred`` vs ``target`` over the pixels where ``mask`` is true.

    Args:
        pred: ``[H, W, 3]`` in [0, 1] (tensor or array).
        target: ``[H, W, 3]`` in [0, 1].
        mask: ``[H, W]`` bool.

    Returns:
        ``10 · log10(1 / MSE)`` over the masked pixels (``inf`` when they are equal).

    Raises:
        ValueError: shapes that disagree, or an empty mask.

    Examples:
        >>> a = np.zeros((2, 2, 3)); b = np.full((2, 2, 3), 0.1); m = np.ones((2, 2), bool)
        >>> round(masked_psnr(a, b, m), 6)
        20.0
    """
    pred = as_float_tensor(pred, "pred", dtype=torch.float32, device="cpu").detach()
    target = as_float_tensor(target, "target", dtype=torch.float32, device="cpu").detach()
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).bool().cpu()
    if pred.shape != target.shape or pred.shape[:2] != m.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask {tuple(m.shape)} must agree "
            "([H, W, 3] and [H, W])"
        )
    if not bool(m.any()):
        raise ValueError("mask is empty; no pixels to compare")
    mse = float(((pred - target) ** 2)[m].mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


@dataclass
class HeadFit:
    """History of :func:`fit_head`.

    Attributes:
        loss: per-iteration loss ``0.8·L1 + 0.2·(1 − SSIM)``.
        psnr_before, psnr_after: PSNR (dB) inside the face mask before and after fitting
            (render over black vs the photo).
        mask: ``[H, W]`` bool face mask used by the loss.
        seconds: wall time of the optimisation.
        render: ``[H, W, 3]`` final render (over black), NumPy.
    """

    loss: list[float]
    psnr_before: float
    psnr_after: float
    mask: np.ndarray
    seconds: float
    render: np.ndarray


def fit_head(
    cloud: GaussianCloud,
    image,
    camera: Camera,
    iters: int = 200,
    lr: float = 0.02,
    progress: bool = True,
    *,
    lambda_ssim: float = 0.2,
    max_offset: float = 0.02,
    backend: str = "auto",
    mask: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[GaussianCloud, HeadFit]:
    """Refine a head cloud against a photo through the differentiable renderer.

    Optimised (Adam): colours (logits), opacities (logits), the two tangent scales (logs;
    the thin normal scale stays as seeded so side views stay sharp) and mean offsets
    bounded by ``max_offset`` (``offset = max_offset · tanh(raw)``). Rotations, triangle
    indices and barycentrics are kept.

    The loss is ``(1 − λ)·L1 + λ·(1 − SSIM)`` between
    ``mask · render + (1 − mask) · background`` and ``mask · photo + (1 − mask) · background``,
    the render composited over a random background colour (new every iteration): inside
    the face mask the head must match the photo *and* be opaque (else the random
    background shows through); outside the mask nothing is asked, so the photo's hair and
    background never leak in and the steep sides of the face (seen edge-on in the photo,
    visible at ±30°) keep their seeded opacity and filled-in colours.

    Args:
        cloud: initial head, ``N`` Gaussians (e.g. :func:`~emozone_lite.head.colour_from_photo` output).
        image: ``[H, W, 3]`` photo matching ``camera`` (see :func:`~emozone_lite.head.load_photo`).
        camera: the fitting camera (e.g. from :func:`~emozone_lite.head.crop_to_face`).
        iters: Adam iterations (≥ 0).
        lr: base learning rate (colours, opacities: ``lr``; log-scales: ``lr/4``;
            offsets: ``lr/40`` in world units).
        progress: show a tqdm progress bar.
        lambda_ssim: weight λ of the D-SSIM term.
        max_offset: largest mean offset, world units.
        backend: renderer backend (see :func:`emozone_lite.render.rasterize`).
        mask: ``[H, W]`` face mask (default: :func:`~emozone_lite.head.face_mask` of the initial cloud).
        seed: seed of the random backgrounds.

    Returns:
        ``(fitted cloud, HeadFit)``.

    Raises:
        ValueError: not a cloud, an image of another size than the camera, ``iters < 0``,
            a mask of the wrong shape or an empty mask.
    """
    from tqdm.auto import tqdm

    from ..camera import stack_cameras
    from ..metrics import l1_dssim_loss
    from ..render import rasterize

    if not isinstance(cloud, GaussianCloud):
        raise ValueError(f"cloud must be a GaussianCloud, got {type(cloud).__name__}")
    photo = load_photo(image)
    _check_photo_size(photo, camera)
    if int(iters) < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    if mask is None:
        mask = face_mask(cloud, camera, backend=backend)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != photo.shape[:2]:
        raise ValueError(f"mask must have shape [H, W] = {photo.shape[:2]}, got {mask.shape}")
    if not mask.any():
        raise ValueError("the face mask is empty: the cloud is not visible from the camera")

    base = cloud.detach().clone()  # stays on the cloud's device (CUDA ⇒ backend "auto" uses gsplat)
    dev = base.device
    target = torch.from_numpy(photo).to(dev)
    m = torch.from_numpy(mask)[..., None].float().to(dev)
    viewmats, Ks, w, h = stack_cameras([camera])
    viewmats, Ks = viewmats.to(dev), Ks.to(dev)
    gen = torch.Generator().manual_seed(seed)

    eps = 1e-4
    color_raw = torch.logit(base.colors.clamp(eps, 1 - eps)).requires_grad_()
    opac_raw = torch.logit(base.opacities.clamp(eps, 1 - eps)).requires_grad_()
    log_tan = base.scales[:, :2].log().requires_grad_()
    offset_raw = torch.zeros_like(base.means, requires_grad=True)
    opt = torch.optim.Adam(
        [
            {"params": [color_raw], "lr": lr},
            {"params": [opac_raw], "lr": lr},
            {"params": [log_tan], "lr": lr / 4},
            {"params": [offset_raw], "lr": lr / 40 / max(max_offset, 1e-12)},
        ]
    )

    def params():
        scales = torch.cat([log_tan.exp(), base.scales[:, 2:]], dim=1)
        means = base.means + max_offset * torch.tanh(offset_raw)
        return means, base.quats, scales, torch.sigmoid(opac_raw), torch.sigmoid(color_raw)

    def draw(bg: Tensor):
        means, quats, scales, opac, cols = params()
        img, _, _ = rasterize(
            means, quats, scales, opac, cols, viewmats, Ks, w, h, backend=backend, backgrounds=bg[None]
        )
        return img[0]

    with torch.no_grad():
        psnr_before = masked_psnr(draw(torch.zeros(3, device=dev)), target, mask)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(int(iters)), desc="fit_head", disable=not progress, leave=False)
    for _ in bar:
        bg = torch.rand(3, generator=gen).to(dev)
        pred = m * draw(bg) + (1 - m) * bg  # outside the mask: don't care
        tgt = m * target + (1 - m) * bg
        loss = l1_dssim_loss(pred, tgt, lambda_ssim, layout="hwc")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        final = draw(torch.zeros(3, device=dev))
        psnr_after = masked_psnr(final, target, mask)
        means, quats, scales, opac, cols = params()
    fitted = GaussianCloud(
        means.detach(), quats.detach().clone(), scales.detach(), opac.detach(), cols.detach(),
        extras={k: v.clone() for k, v in base.extras.items()},
    )  # fmt: skip
    return fitted, HeadFit(losses, psnr_before, psnr_after, mask, seconds, final.cpu().numpy())


# --------------------------------------------------------------------------- one call
def finish_head(cloud: GaussianCloud, registered, mesh=None, *, teeth_color=None, seed: int = 0) -> GaussianCloud:
    """Turn a head fitted to a photo into the toolkit's neutral, movable head.

    1. :func:`~emozone_lite.head.neutral_vertices` / :func:`~emozone_lite.head.neutralize_head`:
       the photographed expression is removed and the lips closed; the photographed teeth
       (Gaussians on the mouth-gap triangles) are removed;
    2. :func:`~emozone_lite.head.eyeball_parts` / :func:`~emozone_lite.head.eyeball_extension`:
       the eyes become eyeballs behind the lids, reaching under them;
    3. :func:`~emozone_lite.head.mouth_interior`: teeth (in the photographed teeth's colour),
       tongue and oral cavity behind the lips.

    Args:
        cloud: the fitted head (``tri_index`` / ``bary``), on the ``registered`` mesh.
        registered: ``[468, 3]`` the mesh it was fitted on (``LandmarkFit.mesh.vertices``).
        mesh: the topology (default: canonical).
        teeth_color: RGB of the teeth (default: the photographed teeth's median colour, or
            :data:`~emozone_lite.head.mouth.TEETH_COLOR` if the photo shows none).
        seed: seed of the small jitter of the added Gaussians.

    Returns:
        The head with ``extras["part"]`` (:mod:`~emozone_lite.head.parts`): the face first, then
        the eyeball extension, then the mouth interior.
    """
    from .eyes import eyeball_extension, eyeball_parts
    from .mouth import mouth_interior
    from .neutral import neutral_vertices, neutralize_head, photographed_teeth_color
    from .parts import FACE

    cloud = cloud.detach().to("cpu")
    registered = np.asarray(registered, dtype=np.float64)
    if teeth_color is None:
        teeth_color = photographed_teeth_color(cloud, mesh)
    neutral = neutral_vertices(registered, mesh)
    face = neutralize_head(cloud, registered, neutral, mesh)
    face = GaussianCloud(
        face.means, face.quats, face.scales, face.opacities, face.colors,
        extras={**face.extras, "part": torch.full((len(face),), FACE, dtype=torch.long)},
    )  # fmt: skip
    face = eyeball_parts(face, mesh)
    extra = [
        eyeball_extension(face, mesh, seed=seed),
        mouth_interior(neutral, mesh=mesh, teeth_color=teeth_color, seed=seed),
    ]
    keys = set(face.extras)
    for c in extra:  # the added Gaussians carry the same extras (zeros where they have none)
        for k in keys - set(c.extras):
            c.extras[k] = face.extras[k].new_zeros((len(c), *face.extras[k].shape[1:]))
    return GaussianCloud.concat([face, *extra])


def build_head(
    photo_path=None,
    n_gaussians: int = 12000,
    iters: int = 200,
    out_path=None,
    *,
    fit_size: int = 256,
    seed: int = 0,
    backend: str = "auto",
    device: str | torch.device | None = None,
    progress: bool = True,
    details: bool = False,
) -> GaussianCloud | HeadBuild:
    """Build the Gaussian head from a frontal face photo: register, seed, colour, fit, finish.

    Args:
        photo_path: a frontal face photo (default: the bundled ``astronaut.png``,
            ``data_path(DEFAULT_PHOTO)``); any image accepted by :func:`~emozone_lite.head.load_photo`.
        n_gaussians: number of Gaussians ``N``.
        iters: fitting iterations (0: seeded and photo-coloured only).
        out_path: where to write the PLY (``None``: do not write).
        fit_size: side of the square face crop the fit renders, pixels.
        seed: seed of sampling and fitting.
        backend: renderer backend.
        device: where to fit (default: CUDA when available, else CPU; the backend
            ``"auto"`` then picks gsplat or the numba CPU rasterizer).
        progress: show a progress bar and print a one-line summary.
        details: return a :class:`HeadBuild` (the head with its camera, registration and rest
            mesh) instead of the head alone.

    Returns:
        The neutral head :class:`~emozone_lite.gaussians.GaussianCloud` (:func:`finish_head`;
        ``tri_index`` / ``bary`` / ``part`` extras), in the toolkit's world frame
        (``Camera.orbit(yaw_deg=0)`` sees it from the front).

    Raises:
        ValueError: ``"no face found in …"`` when the photo has no detectable face.
    """
    photo_path = data_path(DEFAULT_PHOTO) if photo_path is None else photo_path
    photo = load_photo(photo_path)
    where = str(photo_path) if isinstance(photo_path, (str, Path)) else "the image"
    try:
        camera, fit = register_mesh_to_photo(load_canonical_mesh(), photo)
    except ValueError as e:
        if "no face" in str(e).lower():
            raise ValueError(f"no face found in {where}; build_head needs a frontal face photo") from e
        raise
    t0 = time.perf_counter()
    crop, crop_cam = crop_to_face(photo, camera, fit.mesh.vertices, size=fit_size)
    cloud = colour_from_photo(seed_gaussians(fit.mesh, n_gaussians, seed=seed), crop, crop_cam)
    cloud = cloud.to(get_device() if device is None else device)
    info = ""
    if iters > 0:
        cloud, hist = fit_head(cloud, crop, crop_cam, iters=iters, progress=progress, backend=backend, seed=seed)
        info = f", PSNR in face mask {hist.psnr_before:.2f} → {hist.psnr_after:.2f} dB"
    cloud = finish_head(cloud, fit.mesh.vertices, seed=seed)
    neutral = None
    if details:
        from .neutral import neutral_vertices

        neutral = neutral_vertices(fit.mesh.vertices).astype(np.float32)  # the mesh finish_head moved it to
    if out_path is not None:
        save_head(cloud, out_path)
    if progress:
        print(
            f"build_head: {len(cloud)} Gaussians, landmark RMSE {fit.rigid_rmse_px:.2f} px (rigid), "
            f"head yaw {fit.yaw_deg:+.1f}°, pitch {fit.pitch_deg:+.1f}°{info}, {time.perf_counter() - t0:.1f} s"
        )
    return HeadBuild(cloud, camera, fit, neutral) if details else cloud
