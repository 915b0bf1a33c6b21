"""The photo side of the head: load it, register the mesh to it, crop it, take its colours.

- :func:`load_photo` — any image → ``[H, W, 3]`` float32 RGB in [0, 1];
- :func:`register_mesh_to_photo` — MediaPipe landmarks → a pinhole camera (rigid pose by
  Levenberg–Marquardt) and a personalised mesh (:class:`LandmarkFit`);
- :func:`crop_to_face` — a square face crop with a matching camera;
- :func:`colour_from_photo` — each Gaussian takes the photo's colour where it projects
  (mirror / nearest-neighbour fill where the photo does not see it well);
- :func:`face_mask` — where the head covers the image (the fit's loss region).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..camera import HEAD_TARGET, Camera
from ..gaussians import GaussianCloud
from ..geometry import axis_angle_to_rotmat, quat_to_rotmat
from ..landmarks import FaceMesh
from .seeding import _as_mesh

__all__ = [
    "DEFAULT_PHOTO",
    "LandmarkFit",
    "load_photo",
    "register_mesh_to_photo",
    "solve_pose",
    "crop_to_face",
    "colour_from_photo",
    "face_mask",
]

#: Default photo (scikit-image's public-domain ``astronaut``, Eileen Collins).
DEFAULT_PHOTO = "astronaut.png"


def load_photo(image) -> np.ndarray:
    """A photo as ``[H, W, 3]`` float32 RGB in [0, 1].

    Args:
        image: a path, a PIL image, a NumPy array ``[H, W, 3|4]`` (uint8 0–255 or float
            0–1) or a tensor ``[H, W, 3]`` (float 0–1).

    Returns:
        ``[H, W, 3]`` float32 in [0, 1] (grey images are repeated to RGB, alpha dropped).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a wrong shape, NaN/inf, or float values outside [0, 1].
    """
    from PIL import Image

    if isinstance(image, (str, Path)):
        p = Path(image)
        if not p.exists():
            raise FileNotFoundError(f"photo {str(p)!r} not found")
        image = Image.open(p)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, Tensor):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"image must have shape [H, W, 3] (RGB) or [H, W, 4], got {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values")
    if arr.max(initial=0.0) > 1.0 + 1e-6 or arr.min(initial=0.0) < -1e-6:
        raise ValueError("float images must hold values in [0, 1]; pass uint8 for 0-255 data")
    return np.clip(arr, 0.0, 1.0)


def _check_photo_size(photo: np.ndarray, camera: Camera) -> None:
    if photo.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image is {photo.shape[1]}x{photo.shape[0]} but the camera is {camera.width}x{camera.height}")


# --------------------------------------------------------------------------- registration
@dataclass
class LandmarkFit:
    """Result of :func:`register_mesh_to_photo`.

    Attributes:
        mesh: the personalised mesh (canonical topology; vertices moved in the camera's
            image plane onto the detected landmarks), world units.
        pixels: ``[468, 2]`` detected landmark pixels (mesh vertices only).
        rigid_pixels: ``[468, 2]`` projections of the rigidly posed canonical mesh.
        rigid_rmse_px: RMS reprojection error of the rigid fit, pixels.
        rmse_px: RMS error of the personalised mesh's projections (≈ 0).
        yaw_deg, pitch_deg: head pose relative to the camera, degrees (camera orbit
            angles that would see the canonical head as it appears in the photo).
    """

    mesh: FaceMesh
    pixels: np.ndarray
    rigid_pixels: np.ndarray
    rigid_rmse_px: float
    rmse_px: float
    yaw_deg: float
    pitch_deg: float


def _project_np(X: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole pixels ``[P, 2]`` of world points ``X [P, 3]`` (``R [3, 3]``, ``t [3]``, ``K [3, 3]``), NumPy."""
    pc = X @ R.T + t
    return pc[:, :2] / pc[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])


def solve_pose(
    V: np.ndarray, px: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, *, robust_px: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The rigid pose ``(R, t)`` under which the points ``V [P, 3]`` project onto ``px [P, 2]``
    through the intrinsics ``K``: least squares over the 6 DoF from ``(R, t)``, the rotation as
    an axis-angle update (:func:`~emozone_lite.geometry.axis_angle_to_rotmat`).

    ``robust_px=None``: plain least squares (Levenberg–Marquardt). A number: the soft-L1 loss
    with that scale in pixels (trust region), so points an expression moves (lips, brows) pull
    less than the rigid ones (``emozone-lite fit`` poses the head on every video frame this way).
    """
    from scipy.optimize import least_squares

    V, px = np.asarray(V, np.float64), np.asarray(px, np.float64)

    def residual(p):
        return (_project_np(V, axis_angle_to_rotmat(p[:3]) @ R, p[3:], K) - px).ravel()

    x0 = np.concatenate([np.zeros(3), np.asarray(t, np.float64)])
    if robust_px is None:
        sol = least_squares(residual, x0, method="lm")
    else:
        sol = least_squares(residual, x0, loss="soft_l1", f_scale=float(robust_px))
    return axis_angle_to_rotmat(sol.x[:3]) @ R, sol.x[3:]


def register_mesh_to_photo(
    mesh: FaceMesh | None, image, *, distance: float = 4.0, nonrigid: float = 1.0
) -> tuple[Camera, LandmarkFit]:
    """Fit a pinhole camera and a personalised mesh to the face in a photo.

    1. Detect the 478 MediaPipe landmarks (:func:`emozone_lite.landmarks.detect_landmarks`);
       the first 468 correspond to the mesh vertices.
    2. Weak-perspective (scaled orthographic) fit by least squares, projected onto the
       nearest scaled rotation: gives the head rotation and the pixel scale ``s``.
    3. Pinhole camera with focal ``f = s · distance`` (the head at the toolkit's orbit
       distance, so perspective looks like ``Camera.orbit``), refined by
       Levenberg–Marquardt over the 6-DoF pose (scipy ``least_squares``; the rotation as
       an axis-angle update, :func:`~emozone_lite.geometry.axis_angle_to_rotmat`).
    4. Non-rigid: each vertex moves within its camera-space depth plane until it
       projects onto its landmark (``nonrigid`` ∈ [0, 1] scales this correction).

    The world frame is the toolkit's: the camera carries the head pose, so
    ``Camera.orbit(yaw_deg=0)`` sees the (personalised) head from the front.

    Args:
        mesh: the mesh to register (default: canonical). Its vertex order must be
            MediaPipe's (468 vertices).
        image: the photo (see :func:`load_photo`), ``[H, W, 3]``.
        distance: camera-to-head distance in world units used to pick the focal length.
        nonrigid: 0 keeps the canonical shape, 1 matches the landmarks exactly.

    Returns:
        ``(camera, fit)``: a :class:`~emozone_lite.camera.Camera` of the photo's size and
        a :class:`LandmarkFit`.

    Raises:
        ValueError: ``"no face found"`` when the detector finds no face, or bad inputs.
    """
    from .. import landmarks

    mesh = _as_mesh(mesh)
    V = np.asarray(mesh.vertices, dtype=np.float64)
    if V.shape != (468, 3):
        raise ValueError(f"mesh must have MediaPipe's 468 vertices, got {V.shape}")
    if not (0.0 <= nonrigid <= 1.0):
        raise ValueError(f"nonrigid must lie in [0, 1], got {nonrigid}")
    if distance <= 0:
        raise ValueError(f"distance must be positive, got {distance}")
    photo = load_photo(image)
    h, w = photo.shape[:2]
    det = landmarks.detect_landmarks((photo * 255.0 + 0.5).astype(np.uint8))  # raises ValueError("no face found")
    px = np.asarray(det.pixels, dtype=np.float64)[:468]
    if px.shape != (468, 2) or not np.isfinite(px).all():
        raise ValueError(f"detect_landmarks returned landmark pixels of shape {px.shape}; expected at least [468, 2]")

    # weak perspective: px ≈ A V + b; the nearest scaled rotation rows give pose and scale
    Vc = V - V.mean(0)
    pc = px - px.mean(0)
    A = np.linalg.lstsq(Vc, pc, rcond=None)[0].T  # [2, 3]
    U, S, Wt = np.linalg.svd(A, full_matrices=False)
    s = float(S.mean())
    rows = U @ Wt  # [2, 3] orthonormal rows: camera right and down axes in world coordinates
    R = np.vstack([rows, np.cross(rows[0], rows[1])])  # right, down, forward
    if np.linalg.det(R) < 0:  # pragma: no cover - cross product keeps det = +1
        R[2] *= -1
    f = s * distance
    K = np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
    target = np.asarray(HEAD_TARGET, dtype=np.float64)
    # place the camera so that the head target projects where the weak-perspective fit put it
    uv_t = (A @ (target - V.mean(0))) + px.mean(0)
    t = np.array([(uv_t[0] - w / 2) / f * distance, (uv_t[1] - h / 2) / f * distance, distance]) - R @ target

    R, t = solve_pose(V, px, K, R, t)
    rigid_px = _project_np(V, R, t, K)
    rigid_rmse = float(np.sqrt(((rigid_px - px) ** 2).sum(1).mean()))

    # non-rigid: move each vertex within its depth plane onto its landmark
    Xc = V @ R.T + t
    z = Xc[:, 2:3]
    if (z <= 0).any():
        raise ValueError("the fitted camera has mesh vertices behind it; is the photo a face?")
    target_xy = (px - K[:2, 2]) / np.array([K[0, 0], K[1, 1]]) * z
    Xc_new = Xc.copy()
    Xc_new[:, :2] = (1 - nonrigid) * Xc[:, :2] + nonrigid * target_xy
    V_new = (Xc_new - t) @ R  # R orthonormal: inverse is the transpose
    fitted_px = _project_np(V_new, R, t, K)
    rmse = float(np.sqrt(((fitted_px - px) ** 2).sum(1).mean()))

    view = np.eye(4)
    view[:3, :3], view[:3, 3] = R, t
    camera = Camera(torch.tensor(view, dtype=torch.float32), torch.tensor(K, dtype=torch.float32), int(w), int(h))
    eye = -R.T @ t  # camera centre in world coordinates
    d = eye - target
    yaw = math.degrees(math.atan2(d[0], d[2]))
    pitch = math.degrees(math.atan2(d[1], math.hypot(d[0], d[2])))
    new_mesh = FaceMesh(
        V_new.astype(np.float32), mesh.uvs.copy(), mesh.triangles.copy(), {k: v.copy() for k, v in mesh.regions.items()}
    )
    return camera, LandmarkFit(
        new_mesh, px.astype(np.float32), rigid_px.astype(np.float32), rigid_rmse, rmse, yaw, pitch
    )


# --------------------------------------------------------------------------- cropping and colour
def crop_to_face(
    image, camera: Camera, points: Tensor | np.ndarray, size: int = 256, margin: float = 0.15
) -> tuple[np.ndarray, Camera]:
    """Crop a square around the projected ``points`` and resize it; adjust the camera.

    Args:
        image: the photo (see :func:`load_photo`), of the camera's size.
        camera: the camera that sees ``points`` in ``image``.
        points: ``[P, 3]`` world points to frame (e.g. the mesh vertices).
        size: output side in pixels.
        margin: extra border as a fraction of the box side, on each side.

    Returns:
        ``(crop [size, size, 3] float32, camera)`` with intrinsics for the crop
        (``u' = (u - x0) · size / side``; pixel centres stay at +0.5).

    Raises:
        ValueError: the image is not the camera's size, or ``size < 8``.
    """
    from PIL import Image

    photo = load_photo(image)
    _check_photo_size(photo, camera)
    if int(size) < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    uv = camera.project(torch.as_tensor(np.asarray(points), dtype=torch.float32)).numpy()
    lo, hi = uv.min(0), uv.max(0)
    side = float((hi - lo).max()) * (1 + 2 * margin)
    c = (lo + hi) / 2
    x0, y0 = c - side / 2
    # pad by edge replication where the square leaves the photo (faces near the border)
    pad = int(math.ceil(max(0.0, -x0, -y0, x0 + side - photo.shape[1], y0 + side - photo.shape[0]))) + 1
    padded = np.pad(photo, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    pil = Image.fromarray((padded * 255 + 0.5).astype(np.uint8))
    box = (x0 + pad, y0 + pad, x0 + pad + side, y0 + pad + side)
    crop = pil.resize((int(size), int(size)), Image.Resampling.LANCZOS, box=box)
    k = size / side
    K = camera.K.clone().double()
    K[0, 0] *= k
    K[1, 1] *= k
    K[0, 2] = (K[0, 2] - x0) * k
    K[1, 2] = (K[1, 2] - y0) * k
    return np.asarray(crop).astype(np.float32) / 255.0, Camera(camera.viewmat.clone(), K.float(), int(size), int(size))


def _sample_bilinear(image: np.ndarray, uv: Tensor) -> Tensor:
    """Bilinear samples ``[N, 3]`` of ``image [H, W, 3]`` at pixel coordinates ``uv [N, 2]``.

    Pixel centres are at +0.5; samples outside the image take the border's colour.
    """
    h, w = image.shape[:2]
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    grid = torch.stack([uv[:, 0] / w * 2 - 1, uv[:, 1] / h * 2 - 1], -1)[None, None].float()
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T


def colour_from_photo(
    cloud: GaussianCloud, image, camera: Camera, min_facing: float = 0.3, fill_unseen: bool = True
) -> GaussianCloud:
    """Colour every Gaussian with the photo's colour at its projected centre (bilinear).

    A Gaussian is *well seen* when its centre projects inside the photo and its normal
    (local z axis) faces the camera with cosine ≥ ``min_facing``. With ``fill_unseen``,
    the others — the far side of a turned face, the steep strips along the face oval that
    the photo shows edge-on (where it mixes in hair and background) — take

    1. the colour of their mirror image ``(-x, y, z)`` when that one is well seen (the face
       is nearly left–right symmetric), else
    2. the colour of the nearest well-seen Gaussian,

    so views ±30° around the front stay clean.

    Args:
        cloud: ``N`` Gaussians (e.g. from :func:`~emozone_lite.head.seed_gaussians`).
        image: the photo (see :func:`load_photo`), of the camera's size.
        camera: camera registered to the photo (:func:`register_mesh_to_photo`).
        min_facing: cosine threshold of "well seen", in [0, 1).
        fill_unseen: apply the fallbacks above (False: sample every Gaussian where it projects).

    Returns:
        A new cloud with ``colors [N, 3]`` from the photo (other fields unchanged).

    Raises:
        ValueError: the image is not the camera's size, or ``min_facing`` outside [0, 1).
    """
    from scipy.spatial import cKDTree

    photo = load_photo(image)
    _check_photo_size(photo, camera)
    if not 0.0 <= min_facing < 1.0:
        raise ValueError(f"min_facing must lie in [0, 1), got {min_facing}")
    means = cloud.means.detach().float().cpu()
    normals = quat_to_rotmat(cloud.quats.detach().float().cpu())[:, :, 2]
    eye = -camera.viewmat[:3, :3].T @ camera.viewmat[:3, 3]  # camera centre, world

    def seen(points: Tensor, nrm: Tensor) -> tuple[Tensor, Tensor]:
        uv = camera.project(points)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
        cos = (F.normalize(eye - points, dim=-1) * nrm).sum(-1)
        return uv, inside & (cos >= min_facing)

    uv, ok = seen(means, normals)
    colors = _sample_bilinear(photo, uv)
    if fill_unseen and not bool(ok.all()):
        flip = torch.tensor([-1.0, 1.0, 1.0])
        uv_m, ok_m = seen(means * flip, normals * flip)
        use_m = ~ok & ok_m
        colors[use_m] = _sample_bilinear(photo, uv_m[use_m])
        rest = ~ok & ~ok_m
        if bool(rest.any()) and bool(ok.any()):
            _, nearest = cKDTree(means[ok].numpy()).query(means[rest].numpy())
            colors[rest] = colors[ok][torch.from_numpy(np.asarray(nearest))]
    out = cloud.detach().clone()
    out.colors = colors.clamp(0, 1).to(cloud.colors)
    return out


def face_mask(
    cloud: GaussianCloud, camera: Camera, backend: str = "auto", threshold: float = 0.5, erode: int = 1
) -> np.ndarray:
    """The face region: where the cloud's rendered alpha exceeds ``threshold``, holes filled.

    Args:
        cloud: the head, ``N`` Gaussians.
        camera: the view (``H × W``).
        backend: renderer backend (see :func:`emozone_lite.render.rasterize`).
        threshold: alpha above which a pixel is face.
        erode: binary-erosion iterations applied to the mask (0: none).

    Returns:
        ``[H, W]`` bool mask.
    """
    from scipy import ndimage

    from ..camera import stack_cameras
    from ..render import rasterize

    viewmats, Ks, w, h = stack_cameras([camera])
    with torch.no_grad():
        _, alpha, _ = rasterize(
            cloud.means.detach(), cloud.quats.detach(), cloud.scales.detach(), cloud.opacities.detach(),
            cloud.colors.detach(), viewmats.to(cloud.device), Ks.to(cloud.device), w, h, backend=backend,
        )  # fmt: skip
    mask = ndimage.binary_fill_holes(alpha[0, :, :, 0].cpu().numpy() > threshold)
    if erode > 0:
        mask = ndimage.binary_erosion(mask, iterations=int(erode))
    return mask
