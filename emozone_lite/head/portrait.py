"""The whole portrait as Gaussians: hair, ears, neck, shoulders and background around the face head.

The face head (:func:`~emozone_lite.head.build_head`, the bundled ``head.ply``) covers only
MediaPipe's face mesh. :func:`build_portrait` adds everything else the photo shows, fitted the
3D Gaussian Splatting way, and keeps the face head exactly as it is (its zones, mouth interior
and parts, and every model trained on it, keep working):

1. **Proxy geometry** (:func:`portrait_proxies`, in the head's world frame, sized from the
   registered face mesh): a *skull* ellipsoid behind the face (hair, ears, the back of the
   head), a *neck* cylinder below the chin, a *torso* ellipsoid (shoulders) and a
   *background* plane facing the photo's camera. Each pixel of the photo is cast as a ray
   from the fitting camera; the first proxy it hits gives the pixel's Gaussian its depth
   and its part (:data:`SKULL`, :data:`NECK`, :data:`TORSO`, :data:`BACKGROUND`). No
   segmentation model is needed (none ships offline): background pixels near the hair sit
   on the skull ellipsoid, and look right because the background behind them is filled
   with the same colours.
2. **Fill for the unseen** (the regulariser of the sides the photo does not show): the
   background plane is also seeded *behind* the person and beyond the photo's border, and
   the proxies' sides just past their silhouettes, with colours of the nearest seen pixel
   of the same layer (a nearest-neighbour fill, then blurred). These Gaussians are not
   optimised (the photo gives them no gradient, and an opacity reset would otherwise prune
   them), so yaw ±30° and pitch ±15° reveal plausible background instead of holes.
3. **Fit** (:func:`fit_portrait`): the seen Gaussians' means, log-scales, rotations, logit
   opacities and SH colour (degree ``sh_degree`` ≥ 1) are optimised with Adam against the
   whole photo through :func:`emozone_lite.render.rasterize` (``0.8·L1 + 0.2·D-SSIM``),
   with the face head (fixed) composited in front, and adaptive density
   control (:mod:`~emozone_lite.head.density`: clone / split / prune, opacity reset).
   Resumable (``checkpoint=``: written atomically every ``checkpoint_every`` iterations).

How the parts move (:func:`pose_portrait`): the face and its interior deform as before
(:func:`~emozone_lite.head.carry_parts`; zones cover the face only); the non-face parts get
**no deformation** from AUs or speech. Under a head-pose change (a rotation of the head about
the neck's base, :attr:`PortraitBuild.pivot`) the face, eyes, mouth and skull move rigidly,
torso and background stay, and each neck Gaussian turns by its own share ``w ∈ [0, 1]`` of
the rotation (``extras["head_weight"]``: 0 where the neck meets the torso, 1 at the chin), so
the neck bridges skull and torso without a tear.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..camera import Camera
from ..gaussians import GaussianCloud
from ..geometry import normalize_quat, quat_multiply, rotmat_to_quat
from ..render import num_sh_bases, rasterize, rgb_to_sh, sh_to_rgb
from ..utils import atomic_write
from .density import DensityConfig, DensityControl
from .parts import BACKGROUND, NECK, SKULL, TORSO, parts_of

__all__ = [
    "PortraitConfig",
    "PortraitBuild",
    "Proxy",
    "portrait_proxies",
    "seed_portrait",
    "fit_portrait",
    "build_portrait",
    "pose_portrait",
    "portrait_camera",
    "render_portrait",
    "sh_coefficients",
    "fit_step",
    "save_portrait",
    "load_portrait",
    "Portrait",
    "DEFAULT_PORTRAIT",
    "person_mask",
    "resize_photo",
    "merge_with_face",
    "scenery_of",
    "render_scenery",
    "matches_head",
    "push_behind",
]


@dataclass
class PortraitConfig:
    """How :func:`build_portrait` seeds and fits the portrait (defaults: the shipped portrait).

    ``fast()`` is the configuration the tests and ``EMOZONE_FAST`` notebooks use.
    """

    size: int = 256
    stride: int = 2
    iters: int = 1300
    sh_degree: int = 1
    lr_means: float = 1.6e-4
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_dc: float = 2.5e-3
    lr_rest: float = 2.5e-3 / 20
    lambda_dssim: float = 0.2
    background_depth: float = 1.5
    fill_stride: int = 6
    fill_margin: float = 0.6
    density: DensityConfig = field(
        default_factory=lambda: DensityConfig(
            grad_threshold=2e-4,
            refine_start=100,
            refine_stop=1000,
            refine_every=100,
            reset_every=500,
            max_gaussians=42_000,
        )  # fmt: skip
    )
    checkpoint_every: int = 250
    seed: int = 0

    @classmethod
    def fast(cls) -> PortraitConfig:
        return cls(
            size=96, stride=2, iters=120, fill_stride=8,
            density=DensityConfig(refine_start=30, refine_stop=100, refine_every=30, reset_every=60,
                                  max_gaussians=6000),
        )  # fmt: skip

    def __post_init__(self):
        num_sh_bases(self.sh_degree)
        for name in ("size", "stride", "fill_stride", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PortraitConfig.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.iters) < 0:
            raise ValueError(f"PortraitConfig.iters must be >= 0, got {self.iters}")


@dataclass
class Proxy:
    """An ellipsoid (or a plane: ``radii = None``) the photo's pixels are cast onto.

    ``centre [3]``, ``axes [3, 3]`` (rows: unit axes), ``radii [3]``; a plane passes through
    ``centre`` with normal ``axes[2]``. ``part`` is its part code; ``y_range`` clips an
    ellipsoid along ``axes[1]`` (the neck's cylinder-like ellipsoid spans only chin → torso).
    """

    part: int
    centre: np.ndarray
    axes: np.ndarray
    radii: np.ndarray | None
    y_range: tuple[float, float] | None = None

    def hit(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ray parameter ``t [R]`` of the first hit (``inf``: none) and the unit normal there ``[R, 3]``."""
        o = (origin - self.centre) @ self.axes.T  # in the proxy's frame
        d = dirs @ self.axes.T
        if self.radii is None:
            with np.errstate(divide="ignore", invalid="ignore"):
                t = -o[2] / d[:, 2]
            t = np.where(t > 0, t, np.inf)
            n = np.broadcast_to(self.axes[2], dirs.shape).copy()
            return t, n
        r = self.radii
        oo, dd = o / r, d / r
        a = (dd * dd).sum(1)
        b = 2 * (dd @ oo)
        c = float(oo @ oo) - 1
        disc = b * b - 4 * a * c
        sq = np.sqrt(np.maximum(disc, 0))
        t = np.full(len(dirs), np.inf)
        for sign in (1.0, -1.0):  # both roots (near, far): the smallest valid one wins
            ts = (-b - sign * sq) / (2 * a)
            p = o + ts[:, None] * d
            ok = (disc >= 0) & (ts > 0)
            if self.y_range is not None:
                ok &= (p[:, 1] >= self.y_range[0]) & (p[:, 1] <= self.y_range[1])
            t = np.where(ok & (ts < t), ts, t)
        p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
        n = (p / r**2) @ self.axes
        n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
        return t, n


@dataclass
class PortraitBuild:
    """What :func:`build_portrait` made: the portrait, its camera and how the fit went.

    Attributes:
        portrait: face head + scenery, one :class:`~emozone_lite.gaussians.GaussianCloud`
            (the face head's Gaussians first, in their order; ``extras``: ``part``,
            ``head_weight``, ``sh_rest [N, K-1, 3]``, ``tri_index`` / ``bary``).
        camera: the photo's camera at the fit size (:func:`portrait_camera` orbits it).
        pivot: ``[3]`` the head's pivot for :func:`pose_portrait` (the base of the neck).
        target: ``[3]`` the face's centre: what :func:`portrait_camera` orbits.
        psnr: whole-frame PSNR of the fit at the fit size, dB (``psnr_seeded``: before it).
        ssim: whole-frame SSIM at the fit size.
        seconds: wall time of the fit.
        history: density-control events (:attr:`DensityControl.history`).
        losses: loss per iteration.
        snapshots: ``(iteration, n_gaussians, image)`` kept every ``record_every`` iterations.
        n_face: how many of the first Gaussians are the face head.
    """

    portrait: GaussianCloud
    camera: Camera
    pivot: np.ndarray
    target: np.ndarray
    psnr: float
    psnr_seeded: float
    ssim: float
    seconds: float
    history: list
    losses: list
    snapshots: list = field(default_factory=list)
    n_face: int = 0


# --------------------------------------------------------------------------- geometry
def portrait_proxies(mesh_vertices: np.ndarray, camera: Camera, background_depth: float = 1.5) -> list[Proxy]:
    """The skull, neck, torso and background proxies for a face mesh seen by ``camera``.

    Sizes are fractions of the face mesh's width ``W`` and height ``H`` (world units): the
    skull ellipsoid (in the head's frame) has semi-axes ``(0.85 W, 0.85 H, 0.6 W)`` around a
    centre ``0.25 H`` above and ``0.55 W`` behind the mesh's centre (room for hair; shallow enough
    that it stays behind the face's sides when the view turns ±30°). The body is
    placed in the *camera's* frame (below the head in the photo, whatever the head's tilt): the
    neck spans from the chin to ``0.9 H`` below it with semi-axes ``(0.36 W, ·, 0.36 W)``, the torso
    ellipsoid ``(2.1 W, 2.3 H, 0.8 W)`` sits ``2.7 H`` below the face's centre; the background
    plane faces the camera ``background_depth · W`` behind the skull's back.
    """
    v = np.asarray(mesh_vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    W, H = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    c = (lo + hi) / 2
    eye = np.eye(3)
    skull = Proxy(SKULL, c + np.array([0, 0.25 * H, -0.55 * W]), eye, np.array([0.85 * W, 0.85 * H, 0.6 * W]))
    # the body hangs below the head *in the photo* (the camera's down axis), whatever the head's tilt
    R = camera.viewmat[:3, :3].double().numpy()
    right, down, fwd = R[0], R[1], R[2]
    body_axes = np.stack([right, -down, fwd])  # rows: x, y (up in the image), z (away from the camera)
    chin = v[np.argmax(v @ down)]
    neck_c = chin + down * 0.2 * H + fwd * 0.3 * W
    neck = Proxy(NECK, neck_c, body_axes, np.array([0.36 * W, 1.2 * H, 0.36 * W]), y_range=(-0.75 * H, 0.35 * H))
    torso_c = c + down * 2.7 * H + fwd * 0.5 * W
    torso = Proxy(TORSO, torso_c, body_axes, np.array([2.1 * W, 2.3 * H, 0.8 * W]))
    back = skull.centre + fwd * (0.6 * W + background_depth * W)
    plane_axes = np.stack([R[0], R[1], fwd])
    bg = Proxy(BACKGROUND, back, plane_axes, None)
    return [skull, neck, torso, bg]


def _pixel_rays(camera: Camera, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    R = camera.viewmat[:3, :3].double().numpy()
    t = camera.viewmat[:3, 3].double().numpy()
    K = camera.K.double().numpy()
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    d_cam = np.stack([x, y, np.ones_like(x)], 1)
    d = d_cam @ R  # camera → world (R is world → camera)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return -R.T @ t, d


def _cast(proxies: list[Proxy], origin, dirs, person: np.ndarray | None = None):
    """First hit of each ray; with ``person [R]`` (bool), person rays skip the background plane
    (when they hit a body proxy) and background rays skip the body proxies."""
    ts, ns = zip(*(p.hit(origin, dirs) for p in proxies))
    T = np.stack(ts)  # [P, R]
    if person is not None:
        body = np.isfinite(T[:-1]).any(0)
        T[-1, person & body] = np.inf
        T[:-1, ~person] = np.inf
    which = T.argmin(0)
    t = T[which, np.arange(len(dirs))]
    n = np.stack(ns)[which, np.arange(len(dirs))]
    return which, t, n


def person_mask(
    photo: np.ndarray, camera: Camera, proxies: list[Proxy], face_alpha: np.ndarray, beta: float = 2000.0
) -> np.ndarray:
    """``[S, S]`` bool: the person (hair, neck, clothes) vs the background, by a random walker.

    No segmentation model ships offline, so the photo itself decides: seeds for the person are
    the face, a band of hair just above it and the cores of the neck and torso proxies; seeds
    for the background are the pixels well outside every body proxy's silhouette. The random
    walker (Grady 2006, ``skimage.segmentation.random_walker``) labels the rest by colour edges.
    The hair (the skull's silhouette, off the face) keeps only pixels ``S / 128`` px inside the
    walker's edge: the edge pixels are often background, which would turn with the skull.
    """
    from scipy import ndimage
    from skimage.segmentation import random_walker

    S = photo.shape[0]
    g = np.arange(S) + 0.5
    fu, fv = np.meshgrid(g, g)
    o, d = _pixel_rays(camera, np.stack([fu.ravel(), fv.ravel()], 1))
    hits = np.stack([np.isfinite(p.hit(o, d)[0]).reshape(S, S) for p in proxies[:-1]])  # skull, neck, torso
    body = hits.any(0)
    face = face_alpha > 0.5
    labels = np.zeros((S, S), np.int32)
    far = ndimage.distance_transform_edt(~body) > 0.04 * S
    labels[far] = 2
    rows = np.nonzero(face.any(1))[0]
    if len(rows):  # hair: a band above the face's top, as wide as the face's upper third
        top, h = rows[0], rows[-1] - rows[0]
        cols = np.nonzero(face[top : top + max(1, h // 3)].any(0))[0]
        band = np.zeros_like(face)
        band[max(0, top - int(0.12 * h)) : top, cols.min() : cols.max() + 1] = True
        labels[band & hits[0]] = 1
    labels[ndimage.binary_erosion(face, iterations=2)] = 1
    for k in (1, 2):  # the cores of the neck and torso silhouettes
        core = ndimage.distance_transform_edt(hits[k]) > (0.06 if k == 1 else 0.03) * S
        labels[core & ~face] = 1
    if not (labels == 2).any():
        return body | face
    import warnings

    with warnings.catch_warnings():  # "probability range outside [0, 1]" at sharp beta: harmless, labels only
        warnings.simplefilter("ignore", UserWarning)
        lab = random_walker(photo.astype(np.float64), labels, beta=beta, mode="cg_j", channel_axis=-1, tol=1e-3)
    person = lab == 1
    # the walker's edge leaks a pixel or two of background into the hair: those would turn with the
    # skull as a light rim at ±30°; give the skull's layer only pixels 2 px inside its edge
    hair = person & hits[0] & ~face
    person &= ~(hair & ~ndimage.binary_erosion(person, iterations=max(1, S // 128)))
    return person | face


def _disc_quats(normals: np.ndarray) -> Tensor:
    """Rotations whose local z axis is ``normals`` (flat discs lie in the tangent plane)."""
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    helper = np.where(np.abs(n[:, 1:2]) < 0.9, np.array([[0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]))
    a = np.cross(helper, n)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.cross(n, a)
    Rm = np.stack([a, b, n], axis=2)  # columns: local x, y, z in world
    return rotmat_to_quat(torch.as_tensor(Rm, dtype=torch.float32))


def _head_weight(part: np.ndarray, pts: np.ndarray, neck: Proxy) -> np.ndarray:
    w = np.zeros(len(part))
    w[part == SKULL] = 1.0
    m = part == NECK
    if m.any():
        y = (pts[m] - neck.centre) @ neck.axes[1]
        lo, hi = neck.y_range
        s = np.clip((y - lo) / (hi - lo), 0, 1)
        w[m] = s * s * (3 - 2 * s)  # smoothstep: 0 at the torso, 1 at the chin
    return w


# --------------------------------------------------------------------------- seeding
def seed_portrait(
    photo: np.ndarray,
    camera: Camera,
    mesh_vertices: np.ndarray,
    face_alpha: np.ndarray,
    config: PortraitConfig,
    face_depth: np.ndarray | None = None,
) -> tuple[GaussianCloud, GaussianCloud]:
    """Seed the portrait's scenery: ``(seen, fill)`` clouds (see the module docstring).

    Args:
        photo: ``[S, S, 3]`` the photo at the fit size.
        camera: its camera.
        mesh_vertices: ``[468, 3]`` the registered face mesh (sizes the proxies).
        face_alpha: ``[S, S]`` the face head's rendered alpha from ``camera``.
        config: stride, fill stride and margin, background depth.
        face_depth: ``[S, S]`` the face head's rendered depth (camera z); fill Gaussians behind
            the face are kept only ``0.1`` world units or more behind it (none in front of it).

    Returns:
        Two clouds with ``extras``: ``part``, ``head_weight``, ``sh_rest`` (zeros).
    """
    from scipy import ndimage

    S = photo.shape[0]
    proxies = portrait_proxies(mesh_vertices, camera, config.background_depth)
    K = camera.K.double().numpy()
    st = int(config.stride)
    g = (np.arange(0, S, st) + st / 2).astype(np.float64)
    uu, vv = np.meshgrid(g, g)
    uv = np.stack([uu.ravel(), vv.ravel()], 1)
    origin, dirs = _pixel_rays(camera, uv)
    covered = face_alpha > 0.5
    person = person_mask(photo, camera, proxies, face_alpha)
    qi = np.clip(uv.astype(int), 0, S - 1)
    which, t, n = _cast(proxies, origin, dirs, person[qi[:, 1], qi[:, 0]])
    pts = origin + t[:, None] * dirs
    part = np.array([proxies[i].part for i in which])
    # the layer map at full resolution (nearest seen pixel of each layer, for the fill colours)
    gx = np.arange(S) + 0.5
    fu, fv = np.meshgrid(gx, gx)
    o_full, d_full = _pixel_rays(camera, np.stack([fu.ravel(), fv.ravel()], 1))
    layer_full = np.array([proxies[i].part for i in _cast(proxies, o_full, d_full, person.ravel())[0]]).reshape(S, S)
    blurred = ndimage.gaussian_filter(photo, sigma=(2.0, 2.0, 0))
    blurred_far = ndimage.gaussian_filter(photo, sigma=(0.03 * S, 0.03 * S, 0))

    def nearest_colour(layer_mask: np.ndarray, uvq: np.ndarray, far: bool = False) -> np.ndarray:
        """Colour of the nearest pixel of ``layer_mask`` to each query pixel (clamped into the image)."""
        idx = ndimage.distance_transform_edt(~layer_mask, return_distances=False, return_indices=True)
        q = np.clip(np.floor(uvq).astype(int), 0, S - 1)
        iy, ix = idx[0][q[:, 1], q[:, 0]], idx[1][q[:, 1], q[:, 0]]
        return (blurred_far if far else blurred)[iy, ix]

    # seen Gaussians: one per stride cell, off the face (the face head covers it)
    seen = ~covered[qi[:, 1], qi[:, 0]]
    depth = (pts - origin) @ camera.viewmat[2, :3].double().numpy()
    footprint = st * depth / K[0, 0]  # world size of a stride cell at that depth
    colours = photo[qi[:, 1], qi[:, 0]]

    def cloud(mask, pts_, normals, size, rgb, part_):
        m = int(mask.sum())
        sc = np.stack([0.6 * size[mask], 0.6 * size[mask], 0.06 * size[mask]], 1)
        return GaussianCloud(
            torch.as_tensor(pts_[mask], dtype=torch.float32),
            _disc_quats(normals[mask]),
            torch.as_tensor(sc, dtype=torch.float32),
            torch.full((m,), 0.95),
            torch.as_tensor(rgb[mask], dtype=torch.float32),
            extras={
                "part": torch.as_tensor(part_[mask], dtype=torch.long),
                "head_weight": torch.as_tensor(_head_weight(part_[mask], pts_[mask], proxies[1]), dtype=torch.float32),
                "sh_rest": torch.zeros(m, num_sh_bases(config.sh_degree) - 1, 3),
            },
        )

    seen_cloud = cloud(seen, pts, n, footprint, colours, part)

    # fill 1: everything each layer hides behind it (the skull behind the face, the background
    # behind the person), at the seen grid, coloured from the nearest seen pixel of that layer
    fills = []
    zrow = camera.viewmat[2, :3].double().numpy()
    z0 = float(camera.viewmat[2, 3])
    half = ((uv // st).astype(int) % 2 == 0).all(1)  # every other cell: the fill is coarser
    on_face = covered[qi[:, 1], qi[:, 0]]
    for k, proxy in enumerate(proxies):
        tk, nk = proxy.hit(origin, dirs)
        # behind what the pixel shows (a proxy in front of the background it misses stays out)
        hidden = np.isfinite(tk) & (((which != k) & (tk > t + 1e-6)) | ((which == k) & ~seen)) & half
        p = origin + np.where(np.isfinite(tk), tk, 0)[:, None] * dirs
        if face_depth is not None:  # never in front of (or inside) the face
            zk = p @ zrow + z0
            hidden &= ~on_face | (zk > face_depth[qi[:, 1], qi[:, 0]] + 0.1)
        if not hidden.any():
            continue
        layer = layer_full == proxy.part
        layer &= ~covered if proxy.part != SKULL else np.ones_like(layer)
        if not layer.any():
            continue
        rgb = nearest_colour(layer, uv) if proxy.part != SKULL else np.where(
            covered[qi[:, 1], qi[:, 0]][:, None], blurred[qi[:, 1], qi[:, 0]], nearest_colour(layer, uv)
        )  # fmt: skip
        dk = (p - origin) @ zrow
        fills.append(cloud(hidden, p, nk, 2 * st * dk / K[0, 0], rgb, np.full(len(uv), proxy.part)))

    # fill 2: beyond the photo's border and past the proxies' silhouettes (what yaw / pitch reveal)
    fs = int(config.fill_stride)
    m = config.fill_margin
    ge = (np.arange(-m * S, (1 + m) * S, fs) + fs / 2).astype(np.float64)
    eu, ev = np.meshgrid(ge, ge)
    euv = np.stack([eu.ravel(), ev.ravel()], 1)
    outside = (euv < 0).any(1) | (euv >= S).any(1)
    euv = euv[outside]
    eo, ed = _pixel_rays(camera, euv)
    tb, nb = proxies[3].hit(eo, ed)
    pb = eo + tb[:, None] * ed
    db = (pb - eo) @ camera.viewmat[2, :3].double().numpy()
    rgb = nearest_colour(layer_full == BACKGROUND, euv, far=True)
    ok = np.isfinite(tb)
    fills.append(cloud(ok, pb, nb, fs * db / K[0, 0], rgb, np.full(len(euv), BACKGROUND)))
    for proxy in proxies[:3]:  # rings of each ellipsoid just beyond its silhouette
        fills.append(_silhouette_ring(proxy, camera, layer_full, nearest_colour, cloud))
    fill = GaussianCloud.concat([f for f in fills if len(f)])
    return seen_cloud, fill


def _silhouette_ring(proxy: Proxy, camera: Camera, layer_full, nearest_colour, cloud) -> GaussianCloud:
    """Points on an ellipsoid whose normal turns 0–60° away from the camera (hidden now, seen at ±30°)."""
    R = camera.viewmat[:3, :3].double().numpy()
    campos = -R.T @ camera.viewmat[:3, 3].double().numpy()
    n_theta, n_phi = 32, 64
    th = np.linspace(0.02, np.pi - 0.02, n_theta)
    ph = np.linspace(0, 2 * np.pi, n_phi, endpoint=False)
    T, P = np.meshgrid(th, ph)
    local = np.stack([np.sin(T) * np.cos(P), np.cos(T), np.sin(T) * np.sin(P)], -1).reshape(-1, 3)
    pts_local = local * proxy.radii
    if proxy.y_range is not None:
        keep = (pts_local[:, 1] >= proxy.y_range[0]) & (pts_local[:, 1] <= proxy.y_range[1])
        local, pts_local = local[keep], pts_local[keep]
    pts = proxy.centre + pts_local @ proxy.axes
    normals = (local / proxy.radii) @ proxy.axes
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    view = pts - campos
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    cos = (normals * view).sum(1)  # > 0: facing away from the camera
    ring = (cos > -0.05) & (cos < 0.87)
    if not ring.any():
        return cloud(np.zeros(0, bool), pts[:0], normals[:0], np.zeros(0), np.zeros((0, 3)), np.zeros(0, int))
    uv = camera.project(torch.as_tensor(pts, dtype=torch.float32)).double().numpy()
    layer = layer_full == proxy.part
    if not layer.any():
        return cloud(np.zeros(0, bool), pts[:0], normals[:0], np.zeros(0), np.zeros((0, 3)), np.zeros(0, int))
    from scipy import ndimage

    S = layer.shape[0]
    near = ndimage.binary_dilation(layer, iterations=max(1, S // 128))
    q = np.clip(np.floor(uv).astype(int), 0, S - 1)
    inside = (uv >= 0).all(1) & (uv < S).all(1)
    ring &= ~inside | near[q[:, 1], q[:, 0]]  # only behind this layer's own pixels (not the background's)
    rgb = nearest_colour(layer, uv)
    spacing = np.linalg.norm(proxy.radii) * np.pi / n_theta * 1.2
    return cloud(ring, pts, normals, np.full(len(pts), spacing / 0.6 * 0.6), rgb, np.full(len(pts), proxy.part))


# --------------------------------------------------------------------------- fitting
def sh_coefficients(cloud: GaussianCloud, degree: int) -> Tensor:
    """``[N, (degree+1)², 3]``: DC from ``colors`` (:func:`~emozone_lite.render.rgb_to_sh`) and
    ``extras["sh_rest"]`` (zeros where the cloud has none or fewer)."""
    k = num_sh_bases(degree)
    dc = rgb_to_sh(cloud.colors)[:, None]
    rest = cloud.extras.get("sh_rest", cloud.colors.new_zeros(len(cloud), 0, 3))
    rest = torch.cat([rest[:, : k - 1], rest.new_zeros(len(cloud), max(0, k - 1 - rest.shape[1]), 3)], 1)
    return torch.cat([dc, rest], 1)


def _fixed_tensors(cloud: GaussianCloud, degree: int) -> tuple[Tensor, ...]:
    """``(means, quats, scales, opacities, sh)`` of a cloud rendered alongside and never optimised."""
    c = cloud.detach()
    return c.means, c.quats, c.scales, c.opacities, sh_coefficients(c, degree)


def _render_seen(params: dict, camera: Camera, degree: int, backend: str, front=None, behind=None):
    """Render the optimised Gaussians (first) and the fixed ``behind`` Gaussians (a cloud, or its
    :func:`_fixed_tensors` computed once) over white, with ``front = (colour, alpha)`` composited over them."""
    sh = torch.cat([params["sh0"], params["shN"]], 1)
    means, quats, scales = params["means"], params["quats"], params["scales"].exp()
    opac = torch.sigmoid(params["opacities"])
    if isinstance(behind, GaussianCloud):
        behind = _fixed_tensors(behind, degree)
    if behind is not None and len(behind[0]):
        b_means, b_quats, b_scales, b_opac, b_sh = behind
        means, quats = torch.cat([means, b_means]), torch.cat([quats, b_quats])
        scales, opac = torch.cat([scales, b_scales]), torch.cat([opac, b_opac])
        sh = torch.cat([sh, b_sh])
    img, _, meta = rasterize(
        means, quats, scales, opac, sh, camera.viewmat[None], camera.K[None], camera.width, camera.height,
        backend=backend, backgrounds=torch.ones(1, 3), sh_degree=degree,
    )  # fmt: skip
    img = img[0]
    if front is not None:
        img = front[0] + (1 - front[1]) * img
    return img, meta


def _init_params(seen: GaussianCloud, degree: int) -> dict:
    sh = sh_coefficients(seen, degree)
    return {
        "means": seen.means.detach().clone(),
        "scales": seen.scales.detach().log(),
        "quats": normalize_quat(seen.quats.detach()),
        "opacities": torch.logit(seen.opacities.detach().clamp(1e-4, 1 - 1e-4)),
        "sh0": sh[:, :1].clone(),
        "shN": sh[:, 1:].clone(),
    }


def fit_portrait(
    seen: GaussianCloud,
    front: tuple[Tensor, Tensor] | None,
    photo: np.ndarray,
    camera: Camera,
    config: PortraitConfig,
    *,
    checkpoint=None,
    progress: bool = True,
    backend: str = "cpu",
    record_every: int | None = None,
    behind: GaussianCloud | None = None,
) -> tuple[GaussianCloud, dict]:
    """Optimise the ``seen`` Gaussians against the whole ``photo`` with adaptive density control.

    Args:
        seen: the Gaussians to optimise (``part`` / ``head_weight`` extras follow every
            clone, split and prune).
        front: ``(colour [H, W, 3], alpha [H, W, 1])`` of what lies in front of every optimised
            Gaussian (the face head, rendered once from ``camera``), composited over them
            (``front + (1 − α_front) · render``); ``None``: nothing in front.
        photo: ``[S, S, 3]`` target, ``camera`` its camera.
        config: iterations, learning rates, SH degree, the density schedule.
        checkpoint: a path: the fit's state is written there (atomically) every
            ``config.checkpoint_every`` iterations and a fit with the same path resumes from it.
        progress: a tqdm bar.
        backend: renderer backend.
        behind: fixed Gaussians rendered with the optimised ones (the fill): where the seen
            layers end up semi-transparent the fit sees what shows through, as the final render will.
        record_every: keep the rendered image every that many iterations (and the last):
            ``info["snapshots"]`` is a list of ``(iteration, n_gaussians, image [H, W, 3])``.

    Returns:
        The fitted cloud (``colors`` = the DC colour, ``extras["sh_rest"]``) and a dict with
        ``losses``, ``history`` (density events), ``seconds``, ``resumed_from``, ``snapshots``.
    """
    from tqdm.auto import tqdm

    deg = config.sh_degree
    target = torch.as_tensor(photo, dtype=torch.float32)
    if target.shape != (camera.height, camera.width, 3):
        raise ValueError(
            f"photo must be [{camera.height}, {camera.width}, 3] for this camera, got {list(target.shape)}"
        )
    params = {k: torch.nn.Parameter(v) for k, v in _init_params(seen, deg).items()}
    extent = float((seen.means.detach() - seen.means.detach().mean(0)).norm(dim=1).max())
    lrs = dict(means=config.lr_means * extent, scales=config.lr_scales, quats=config.lr_quats,
               opacities=config.lr_opacities, sh0=config.lr_dc, shN=config.lr_rest)  # fmt: skip
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lrs[k], "name": k} for k in params], eps=1e-15)
    buffers = {k: seen.extras[k].clone() for k in ("part", "head_weight")}
    control = DensityControl(config.density, extent)
    if front is not None:
        front = (front[0].detach().reshape(target.shape), front[1].detach().reshape(*target.shape[:2], 1))
    behind = None if behind is None else _fixed_tensors(behind, deg)  # once, not every iteration
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    start, resumed = 0, None
    ck_path = None if checkpoint is None else Path(checkpoint)
    if ck_path is not None and ck_path.exists():
        state = torch.load(ck_path, weights_only=False)
        params = {k: torch.nn.Parameter(v) for k, v in state["params"].items()}
        opt = torch.optim.Adam([{"params": [params[k]], "lr": lrs[k], "name": k} for k in params], eps=1e-15)
        opt.load_state_dict(state["optimizer"])
        buffers, losses, start = state["buffers"], state["losses"], state["it"]
        control.load_state_dict(state["density"])
        gen.set_state(state["generator"])
        resumed = start
    t0 = time.perf_counter()
    bar = tqdm(range(start, config.iters), desc="fit portrait", disable=not progress, initial=start,
               total=config.iters)  # fmt: skip
    snapshots = []
    for it in bar:
        loss, img = fit_step(params, opt, control, it, target, camera, config, front=front, buffers=buffers,
                             generator=gen, backend=backend, behind=behind)  # fmt: skip
        losses.append(loss)
        if record_every and (it % record_every == 0 or it + 1 == config.iters):
            snapshots.append((it, len(params["means"]), img.detach().clamp(0, 1)))
        if progress and it % 25 == 0:
            bar.set_postfix(loss=f"{float(loss):.4f}", n=len(params["means"]))
        if ck_path is not None and ((it + 1) % config.checkpoint_every == 0 or it + 1 == config.iters):
            with atomic_write(ck_path) as f:
                torch.save({"params": {k: v.detach() for k, v in params.items()}, "optimizer": opt.state_dict(),
                            "buffers": buffers, "losses": losses, "it": it + 1, "density": control.state_dict(),
                            "generator": gen.get_state()}, f)  # fmt: skip
    p = {k: v.detach() for k, v in params.items()}
    rgb = sh_to_rgb(p["sh0"][:, 0])
    out = GaussianCloud(
        p["means"], normalize_quat(p["quats"]), p["scales"].exp(), torch.sigmoid(p["opacities"]), rgb,
        extras={"part": buffers["part"], "head_weight": buffers["head_weight"], "sh_rest": p["shN"]},
    )  # fmt: skip
    return out, {"losses": losses, "history": control.history, "seconds": time.perf_counter() - t0,
                 "resumed_from": resumed, "snapshots": snapshots}  # fmt: skip


def fit_step(
    params: dict, optimizer, control: DensityControl, it: int, target: Tensor, camera: Camera,
    config: PortraitConfig, *, front=None, buffers: dict | None = None, generator=None, backend: str = "cpu",
    behind: GaussianCloud | tuple | None = None,
) -> tuple[float, Tensor]:  # fmt: skip
    """One iteration of the portrait fit: render, ``0.8·L1 + 0.2·D-SSIM``, backward, accumulate the
    view-space gradients, Adam step, renormalise the quaternions, density control at ``it + 1`` (not
    after the last iteration, ``config.iters``).

    ``params``: ``means``, ``scales`` (log), ``quats``, ``opacities`` (logit), ``sh0 [N, 1, 3]``,
    ``shN [N, K-1, 3]``, each its own Adam parameter group. Returns the loss and the rendered image
    (before the update). ``behind``: fixed Gaussians rendered alongside (a cloud, or its
    ``(means, quats, scales, opacities, sh)`` prepared once, as :func:`fit_portrait` does).
    """
    from ..metrics import l1_dssim_loss

    optimizer.zero_grad(set_to_none=True)
    img, meta = _render_seen(params, camera, config.sh_degree, backend, front, behind)
    meta["means2d"].retain_grad()
    loss = l1_dssim_loss(img, target, config.lambda_dssim, layout="hwc")
    loss.backward()
    control.accumulate(meta, n=len(params["means"]))
    optimizer.step()
    with torch.no_grad():
        params["quats"].data = normalize_quat(params["quats"].data)
    if it + 1 < config.iters:  # no refinement or reset on the last iteration: nothing would fit the new set
        control.step(it + 1, params, optimizer, buffers, generator=generator)
    return float(loss.detach()), img


def push_behind(cloud: GaussianCloud, camera: Camera, depth: np.ndarray, alpha: np.ndarray, margin: float = 0.1,
                dilate: int = 3) -> tuple[GaussianCloud, int]:  # fmt: skip
    """Move every Gaussian that the face covers (``alpha`` > 0.02, dilated by ``dilate`` px) and that
    lies less than ``margin`` behind the face's ``depth`` back along its camera ray, to ``margin``
    behind it, its scales grown by the same factor (its footprint in ``camera`` is unchanged).

    The fit composites the face over the scenery, i.e. it assumes the scenery is behind the face;
    this makes the geometry say so too, so rendering everything together (a splat viewer,
    :func:`render_portrait`) matches the fit. Returns the moved cloud and how many moved.
    """
    from scipy import ndimage

    S_h, S_w = alpha.shape
    covered = ndimage.binary_dilation(alpha > 0.02, iterations=dilate) if dilate else alpha > 0.02
    d_face = ndimage.grey_dilation(np.where(alpha > 0.02, depth, 0), size=2 * dilate + 1) if dilate else depth
    R = camera.viewmat[:3, :3].double()
    t = camera.viewmat[:3, 3].double()
    m = cloud.means.detach().double()
    cam_pts = m @ R.T + t
    z = cam_pts[:, 2]
    uv = camera.project(cloud.means.detach().float()).double()
    u = uv[:, 0].floor().long().clamp(0, S_w - 1)
    v = uv[:, 1].floor().long().clamp(0, S_h - 1)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < S_w) & (uv[:, 1] >= 0) & (uv[:, 1] < S_h)
    cov = torch.as_tensor(covered)[v, u] & inside
    goal = torch.as_tensor(d_face, dtype=torch.float64)[v, u] + margin
    move = cov & (z < goal)
    f = torch.where(move, goal / z.clamp_min(1e-6), torch.ones_like(z))
    campos = -R.T @ t
    new_means = campos + (m - campos) * f[:, None]
    out = GaussianCloud(new_means.float(), cloud.quats.detach(), (cloud.scales.detach().double() * f[:, None]).float(),
                        cloud.opacities.detach(), cloud.colors.detach(), extras=dict(cloud.extras))  # fmt: skip
    return out, int(move.sum())


# --------------------------------------------------------------------------- one call
def build_portrait(
    photo_path=None,
    head: GaussianCloud | None = None,
    out_path=None,
    config: PortraitConfig | None = None,
    *,
    checkpoint=None,
    progress: bool = True,
    backend: str = "cpu",
    record_every: int | None = None,
) -> PortraitBuild:
    """Build the whole portrait around a face head: register, seed the proxies, fit, merge.

    Args:
        photo_path: a frontal photo (default: the bundled astronaut).
        head: the face head built from that photo (default: the bundled ``head.ply``; pass the
            one :func:`~emozone_lite.head.build_head` made for another photo).
        out_path: where to write the portrait PLY (``None``: not written).
        config: :class:`PortraitConfig` (default: the shipped portrait's).
        checkpoint: resumable fit state (see :func:`fit_portrait`).
        progress: progress bar and a summary line.
        backend: renderer backend.
        record_every: keep fit snapshots (see :func:`fit_portrait`; :attr:`PortraitBuild.snapshots`).
    """
    from ..landmarks import load_canonical_mesh
    from ..metrics import psnr, ssim
    from ..utils import data_path
    from .files import load_head
    from .neutral import neutral_vertices
    from .photo import DEFAULT_PHOTO, load_photo, register_mesh_to_photo

    config = config or PortraitConfig()
    photo_path = data_path(DEFAULT_PHOTO) if photo_path is None else photo_path
    photo_full = load_photo(photo_path)
    head = load_head() if head is None else head
    cam_full, fit = register_mesh_to_photo(load_canonical_mesh(), photo_full)
    camera, photo = resize_photo(photo_full, cam_full, config.size)
    mesh = neutral_vertices(fit.mesh.vertices)
    face = head.detach()
    with torch.no_grad():
        z = (face.means @ camera.viewmat[:3, :3].T + camera.viewmat[:3, 3])[:, 2:]
        zimg, alpha, _ = rasterize(face.means, face.quats, face.scales, face.opacities, z,
                                   camera.viewmat[None], camera.K[None], camera.width, camera.height, backend=backend)  # fmt: skip
    a = alpha[0, ..., 0].numpy()
    seen, fill = seed_portrait(photo, camera, mesh, a, config, face_depth=zimg[0, ..., 0].numpy() / np.maximum(a, 1e-6))

    target = torch.as_tensor(photo)
    with torch.no_grad():
        front_img, front_alpha, _ = rasterize(face.means, face.quats, face.scales, face.opacities, face.colors,
                                              camera.viewmat[None], camera.K[None], camera.width, camera.height,
                                              backend=backend)  # fmt: skip
        seeded = merge_with_face(face, GaussianCloud.concat([fill, seen]), config.sh_degree)
        img0 = render_portrait(seeded, camera, backend=backend)
    front = (front_img[0], front_alpha[0])
    fitted, info = fit_portrait(seen, front, photo, camera, config, checkpoint=checkpoint, progress=progress,
                                backend=backend, record_every=record_every, behind=fill)  # fmt: skip
    depth_map = zimg[0, ..., 0].numpy() / np.maximum(a, 1e-6)
    fitted, n_pushed = push_behind(fitted, camera, depth_map, a)
    portrait = merge_with_face(face, GaussianCloud.concat([fill, fitted]), config.sh_degree)
    img = render_portrait(portrait, camera, backend=backend)  # everything together, the fill included
    p0, p1 = float(psnr(img0, target)), float(psnr(img, target))
    s1 = float(ssim(img, target))
    proxies = portrait_proxies(mesh, camera, config.background_depth)
    neck = proxies[1]
    pivot = neck.centre + neck.axes[1] * neck.y_range[0] * 0.3
    target = (mesh.min(0) + mesh.max(0)) / 2
    if out_path is not None:
        save_portrait(portrait, out_path, camera, pivot, target, len(face))
    if progress:
        print(f"build_portrait: {len(portrait)} Gaussians ({len(face)} face, {len(fill)} fill, {len(fitted)} fitted), "
              f"PSNR {p0:.2f} → {p1:.2f} dB, SSIM {s1:.3f} at {config.size}², {info['seconds']:.0f} s; "
              f"{n_pushed} moved behind the face")  # fmt: skip
    return PortraitBuild(portrait, camera, pivot, target, p1, p0, s1, info["seconds"], info["history"], info["losses"],
                         info["snapshots"], len(face))  # fmt: skip


def resize_photo(photo: np.ndarray, camera: Camera, size: int) -> tuple[Camera, np.ndarray]:
    """A square photo and its camera at ``size × size`` pixels (Lanczos; ``K`` scaled by ``size / width``)."""
    from PIL import Image

    H, W = photo.shape[:2]
    if H != W:
        raise ValueError(f"build_portrait needs a square photo, got {W}x{H}; crop it first")
    pil = Image.fromarray((photo * 255 + 0.5).astype(np.uint8)).resize((size, size), Image.Resampling.LANCZOS)
    k = size / W
    K = camera.K.clone().double()
    K[:2] *= k
    K[2, 2] = 1
    return Camera(camera.viewmat.clone(), K.float(), size, size), np.asarray(pil).astype(np.float32) / 255


def merge_with_face(face: GaussianCloud, scenery: GaussianCloud, degree: int) -> GaussianCloud:
    """One cloud: the face head first, then the scenery; every extra of either on both (the face gets
    ``head_weight`` 1 and zero ``sh_rest`` for SH ``degree``; missing extras are zeros)."""
    k = num_sh_bases(degree)
    n_f, n_s = len(face), len(scenery)
    extras = {}
    for key in set(face.extras) | set(scenery.extras) | {"head_weight", "sh_rest"}:
        a = face.extras.get(key)
        b = scenery.extras.get(key)
        if key == "head_weight":
            a = torch.ones(n_f) if a is None else a
        if key == "sh_rest":
            a = torch.zeros(n_f, k - 1, 3) if a is None else a
        ref = a if a is not None else b
        a = ref.new_zeros((n_f, *ref.shape[1:])) if a is None else a
        b = ref.new_zeros((n_s, *ref.shape[1:])) if b is None else b
        extras[key] = torch.cat([a.to(ref.dtype), b.to(ref.dtype)])
    return GaussianCloud(
        torch.cat([face.means, scenery.means]), torch.cat([face.quats, scenery.quats]),
        torch.cat([face.scales, scenery.scales]), torch.cat([face.opacities, scenery.opacities]),
        torch.cat([face.colors, scenery.colors]), extras=extras,
    )  # fmt: skip


# --------------------------------------------------------------------------- posing and rendering
def _axis_angle_quat(axis: Tensor, angle: Tensor) -> Tensor:
    half = 0.5 * angle
    return torch.cat([half.cos()[..., None], half.sin()[..., None] * axis], -1)


def pose_portrait(
    means: Tensor, quats: Tensor, cloud: GaussianCloud, pivot, yaw_deg: float = 0.0, pitch_deg: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Turn the head (face, skull, neck by its share) about ``pivot``; torso and background stay.

    Args:
        means, quats: ``[N, 3]``, ``[N, 4]`` the portrait's Gaussians as the face deformation left
            them (or the rest ones).
        cloud: the portrait (``extras["head_weight"]``, ``part``).
        pivot: ``[3]`` the head's pivot (:attr:`PortraitBuild.pivot`).
        yaw_deg, pitch_deg: the head's rotation: yaw about the world's up (+y) axis, pitch about +x.

    Returns:
        Posed ``means``, ``quats``. Each Gaussian turns by ``w · angle`` (``w = head_weight``),
        so ``w = 1`` parts move rigidly and ``w = 0`` parts not at all.
    """
    w = cloud.extras.get("head_weight")
    if w is None:
        raise ValueError("the cloud has no extras['head_weight']; build it with build_portrait()")
    parts_of(cloud)  # validates the part codes
    w = w.to(means.dtype)
    piv = torch.as_tensor(np.asarray(pivot), dtype=means.dtype)
    qy = _axis_angle_quat(torch.tensor([0.0, 1.0, 0.0], dtype=means.dtype), w * math.radians(yaw_deg))
    qx = _axis_angle_quat(torch.tensor([1.0, 0.0, 0.0], dtype=means.dtype), w * math.radians(pitch_deg))
    q = quat_multiply(qy, qx)  # [N, 4]
    from ..geometry import quat_to_rotmat

    R = quat_to_rotmat(q)
    new_means = piv + torch.einsum("nij,nj->ni", R, means - piv)
    # unturned Gaussians stay exactly where they are ((m - p) + p is not m in floating point)
    still = (w == 0) if (yaw_deg or pitch_deg) else torch.ones_like(w, dtype=torch.bool)
    new_means = torch.where(still[:, None], means, new_means)
    new_quats = normalize_quat(quat_multiply(q, quats))
    return new_means, new_quats


def portrait_camera(
    base: Camera, target, yaw_deg: float = 0.0, pitch_deg: float = 0.0, size: int | None = None, zoom: float = 1.0
) -> Camera:
    """The portrait's camera (``base``, the photo's) orbited about ``target`` (the face's centre,
    :attr:`PortraitBuild.target`) by yaw (about the camera's up axis) and pitch (about its right
    axis), optionally resized to ``size``². ``zoom > 1`` narrows the view about the target (the
    target moves to the image centre): ``zoom = 2.5`` frames head and shoulders."""
    if not zoom > 0:
        raise ValueError(f"zoom must be > 0, got {zoom}")
    R = base.viewmat[:3, :3].double()
    t = base.viewmat[:3, 3].double()
    piv = torch.as_tensor(np.asarray(target), dtype=torch.float64)
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    Ry = torch.tensor([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]], dtype=torch.float64)
    Rx = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]], dtype=torch.float64)
    Rc = Ry @ Rx  # rotation in the camera frame
    # world → camera' = Rc⁻¹ (camera frame) about the pivot: x_c' = Rcᵀ (x_c - p_c) + p_c
    pc = R @ piv + t
    R2 = Rc.T @ R
    t2 = Rc.T @ (t - pc) + pc
    V = torch.eye(4, dtype=torch.float64)
    V[:3, :3], V[:3, 3] = R2, t2
    K = base.K.clone().double()
    w = h = base.width
    if size is not None:
        K[:2] *= size / base.width
        w = h = int(size)
    if zoom != 1.0:
        pt = V[:3, :3] @ piv + V[:3, 3]  # the target in the new camera
        u = K[0, 0] * pt[0] / pt[2] + K[0, 2]
        v = K[1, 1] * pt[1] / pt[2] + K[1, 2]
        K[0, 0] *= zoom
        K[1, 1] *= zoom
        K[0, 2] = (K[0, 2] - u) * zoom + w / 2
        K[1, 2] = (K[1, 2] - v) * zoom + h / 2
    return Camera(V.float(), K.float(), w, h)


def render_portrait(
    portrait: GaussianCloud, camera: Camera, means: Tensor | None = None, quats: Tensor | None = None,
    scales: Tensor | None = None, background=1.0, backend: str = "auto", sh_degree: int | None = None,
) -> Tensor:  # fmt: skip
    """Render the portrait ``[H, W, 3]`` (SH degree from ``extras["sh_rest"]``), optionally with moved Gaussians."""
    rest = portrait.extras.get("sh_rest")
    if sh_degree is None:
        k = 1 + (0 if rest is None else rest.shape[1])
        sh_degree = int(round(math.sqrt(k))) - 1
    sh = sh_coefficients(portrait, sh_degree)
    bg = torch.full((1, 3), float(background))
    img, _, _ = rasterize(
        portrait.means if means is None else means, portrait.quats if quats is None else quats,
        portrait.scales if scales is None else scales, portrait.opacities, sh, camera.viewmat[None], camera.K[None],
        camera.width, camera.height, backend=backend, backgrounds=bg, sh_degree=sh_degree,
    )  # fmt: skip
    return img[0]


DEFAULT_PORTRAIT = "portrait.ply"


def scenery_of(cloud: GaussianCloud) -> GaussianCloud:
    """The portrait's Gaussians around the face head (parts :data:`~emozone_lite.head.parts.SCENERY_PARTS`)."""
    from .parts import SCENERY_PARTS

    keep = torch.isin(parts_of(cloud), torch.tensor(SCENERY_PARTS))
    return cloud.subset(torch.nonzero(keep).squeeze(1))


def render_scenery(portrait, camera: Camera, background=1.0, backend: str = "auto") -> Tensor:
    """``[H, W, 3]`` the portrait *without* its face head: the image a model's face is rendered over.

    Every scenery Gaussian lies behind the face head (the fill keeps 0.1 world units behind the
    face's rendered depth, the seen layers are off the face), so ``face + (1 − α_face) · scenery``
    equals the joint render up to where the two overlap in depth at oblique views
    (``tests/test_portrait.py`` measures the difference). ``portrait``: a :class:`Portrait` or its cloud.
    """
    scenery = portrait.scenery if isinstance(portrait, Portrait) else scenery_of(portrait)
    return render_portrait(scenery, camera, background=background, backend=backend)


def matches_head(portrait: Portrait, means: Tensor, atol: float = 1e-5) -> bool:
    """Whether every Gaussian centre in ``means`` (a model's head, or a subset of it) is one of the
    portrait's face Gaussians: the portrait's scenery then fits that head."""
    face = portrait.cloud.means[: portrait.n_face].detach().double()
    q = torch.round(face / atol).long()
    keys = set(map(tuple, q.tolist()))
    m = torch.round(means.detach().cpu().double() / atol).long()
    return portrait.n_face > 0 and all(tuple(r) in keys for r in m.tolist())


@dataclass
class Portrait:
    """A portrait as :func:`load_portrait` returns it: the Gaussians and how to look at them.

    Attributes:
        cloud: face head + scenery (``part``, ``head_weight``, ``sh_rest`` extras).
        camera: the photo's camera at the fit size.
        pivot: ``[3]`` the head's pivot (:func:`pose_portrait`).
        target: ``[3]`` the face's centre (:func:`portrait_camera`).
        n_face: how many of the first Gaussians are the face head.
    """

    cloud: GaussianCloud
    camera: Camera
    pivot: np.ndarray
    target: np.ndarray
    n_face: int

    @cached_property
    def scenery(self) -> GaussianCloud:
        """The Gaussians around the face head (:func:`scenery_of`), selected once."""
        return scenery_of(self.cloud)

    def view(self, yaw_deg: float = 0.0, pitch_deg: float = 0.0, size: int | None = None, zoom: float = 1.0) -> Camera:
        """:func:`portrait_camera` about the face's centre."""
        return portrait_camera(self.camera, self.target, yaw_deg, pitch_deg, size, zoom)

    def framing_zoom(self, face_share: float = 0.35) -> float:
        """The :meth:`view` zoom at which the face spans ``face_share`` of the image's width
        (its Gaussians' 1st–99th percentile, from the photo's camera), never below 1 (the photo's
        own framing: zooming out would show what the photo does not). The bundled portrait: 2.02;
        a ``fit`` portrait of a face-filling video frame: 1."""
        with torch.no_grad():
            u = self.camera.project(self.cloud.means[: self.n_face].float())[:, 0]
        width = float(u.quantile(0.99) - u.quantile(0.01)) / self.camera.width
        return max(1.0, face_share / max(width, 1e-6))

    def render(self, yaw_deg: float = 0.0, pitch_deg: float = 0.0, size: int | None = None, zoom: float = 1.0,
               backend="auto") -> Tensor:  # fmt: skip
        """``[H, W, 3]`` the portrait from :meth:`view`."""
        return render_portrait(self.cloud, self.view(yaw_deg, pitch_deg, size, zoom), backend=backend)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_portrait(portrait: GaussianCloud, path, camera: Camera | None = None, pivot=None, target=None,
                  n_face: int | None = None) -> Path:  # fmt: skip
    """Write the portrait as an INRIA-layout 3DGS PLY (``f_rest_*`` holds its SH, channel-major) and,
    given ``camera`` / ``pivot`` / ``target``, a JSON sidecar next to it (``.json``: the photo's camera,
    pivot, orbit target and face count) that :func:`load_portrait` reads. Both are written atomically."""
    import json

    from ..gaussians import save_ply

    path = Path(path)
    out = save_ply(portrait, path)
    if camera is not None:
        meta = {
            "viewmat": camera.viewmat.tolist(), "K": camera.K.tolist(), "width": camera.width,
            "height": camera.height, "pivot": np.asarray(pivot, dtype=float).tolist(),
            "target": np.asarray(target, dtype=float).tolist(), "n_face": int(n_face or 0),
        }  # fmt: skip
        with atomic_write(_sidecar(path), "w") as f:
            json.dump(meta, f, indent=1)
    return out


def load_portrait(path=None) -> Portrait:
    """Load a portrait PLY and its sidecar (default: the bundled ``portrait.ply``).

    Raises:
        FileNotFoundError: the PLY or its ``.json`` sidecar is missing (says how to build them).
        ValueError: the PLY lacks the portrait's extras (``part``, ``head_weight``), or the sidecar
            lacks a field.
    """
    import json

    from ..gaussians import load_ply
    from ..utils import data_path

    hint = "build one with data_samples/scripts/build_portrait.py (emozone_lite.head.portrait.build_portrait)"
    if path is None:
        try:
            p = data_path(DEFAULT_PORTRAIT)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"the bundled {DEFAULT_PORTRAIT!r} is missing; {hint}") from e
    else:
        p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"portrait file {str(p)!r} not found; {hint}")
    side = _sidecar(p)
    if not side.exists():
        raise FileNotFoundError(f"{p}: its camera sidecar {side.name!r} is missing; {hint}")
    cloud = load_ply(p)
    missing = [k for k in ("part", "head_weight") if k not in cloud.extras]
    if missing:
        raise ValueError(f"{p}: PLY lacks the portrait properties {missing}; it is not a portrait built by "
                         "build_portrait")  # fmt: skip
    cloud.extras["part"] = cloud.extras["part"].long()
    parts_of(cloud)
    meta = json.loads(side.read_text())
    need = ["viewmat", "K", "width", "height", "pivot", "target", "n_face"]
    lacking = [k for k in need if k not in meta]
    if lacking:
        raise ValueError(f"{side}: sidecar lacks {lacking}")
    cam = Camera(torch.tensor(meta["viewmat"]), torch.tensor(meta["K"]), meta["width"], meta["height"])
    return Portrait(cloud, cam, np.array(meta["pivot"]), np.array(meta["target"]), int(meta["n_face"]))
