"""The Gaussian head: seeded on the canonical face mesh, coloured from a photo, refined.

Pipeline (:func:`build_head` runs it end to end):

1. :func:`register_mesh_to_photo` — detect MediaPipe's 478 face landmarks on the photo
   (:func:`emozone_lite.landmarks.detect_landmarks`; the first 468 are the canonical mesh
   vertices), fit a pinhole camera to the canonical mesh (rigid pose, Levenberg–Marquardt
   on the reprojection error of the 468 vertices, focal length chosen so that the head
   sits at the toolkit's orbit distance), then **personalise** the mesh: every vertex is
   moved in the camera's image plane, at its own depth, until it projects exactly onto its
   detected landmark. The head therefore keeps the toolkit's world frame
   (``Camera.orbit(yaw_deg=0)`` looks at its face) and its canonical depth profile, while
   its outline, eyes and mouth line up with the photo's.
2. :func:`seed_gaussians` — ``N`` flat Gaussians sampled on the (personalised) mesh's
   triangles with area weighting; each remembers its triangle and barycentrics
   (``extras["tri_index"]``, ``extras["bary"]``) so displacements of the 468 mesh
   vertices (the teacher rig) carry to the Gaussians (:func:`carry_vertex_displacements`,
   :func:`carry_triangle_rotations`).
3. :func:`colour_from_photo` — each Gaussian takes the photo's colour where the fitting
   camera projects its centre (bilinear). Gaussians the photo does not see well (facing
   away, or edge-on along the face oval) take the colour of their mirror image (the face
   is nearly symmetric) or of the nearest well-seen Gaussian, so ±30° views stay clean.
4. :func:`fit_head` — refine colours, opacities, tangent scales and small mean offsets
   by rendering through :func:`emozone_lite.render.rasterize` and minimising
   ``0.8·L1 + 0.2·(1 − SSIM)`` (:func:`emozone_lite.metrics.l1_dssim_loss`) against the
   photo inside the face mask.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .camera import HEAD_TARGET, Camera
from .gaussians import GaussianCloud, load_ply, save_ply
from .render import quat_to_rotmat
from .landmarks import FaceMesh, load_canonical_mesh
from .utils import DATA_DIR, data_path, get_device

__all__ = [
    "HeadFit",
    "LandmarkFit",
    "build_head",
    "carry_triangle_rotations",
    "carry_vertex_displacements",
    "colour_from_photo",
    "crop_to_face",
    "face_mask",
    "fit_head",
    "load_head",
    "load_photo",
    "masked_psnr",
    "register_mesh_to_photo",
    "save_head",
    "seed_gaussians",
    "triangle_frames",
]

#: Default photo (scikit-image's public-domain ``astronaut``, Eileen Collins).
DEFAULT_PHOTO = "astronaut.png"
#: Default head file.
DEFAULT_HEAD = "head.ply"
#: Extras every head carries: triangle index ``[N]`` and barycentric coordinates ``[N, 3]``.
HEAD_EXTRAS = ("tri_index", "bary")


# --------------------------------------------------------------------------- rotations
def _matrix_to_quat(R: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` → unit quaternions ``[..., 4]`` (w, x, y, z), w ≥ 0.

    Shepperd's method: of the four algebraically equivalent formulas, use the one with
    the largest denominator (numerically stable for every rotation).
    """
    m = R
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    cands = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], 1 - m00 + m11 - m22, m[..., 2, 1] + m[..., 1, 2]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], 1 - m00 - m11 + m22], -1),
        ],
        -2,
    )  # [..., 4 candidates, 4]; candidate k has component k equal to 4 q_k²
    diag = torch.stack([cands[..., k, k] for k in range(4)], -1)
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def triangle_frames(vertices: Tensor, triangles: Tensor) -> Tensor:
    """Orthonormal frame of every triangle: columns (first edge, in-plane perpendicular, normal).

    Args:
        vertices: ``[..., V, 3]`` mesh vertices.
        triangles: ``[T, 3]`` vertex indices (counter-clockwise seen from outside).

    Returns:
        ``[..., T, 3, 3]`` rotation matrices whose third column is the outward normal.
    """
    tri = torch.as_tensor(triangles, dtype=torch.long, device=vertices.device)
    p0, p1, p2 = vertices[..., tri[:, 0], :], vertices[..., tri[:, 1], :], vertices[..., tri[:, 2], :]
    t1 = F.normalize(p1 - p0, dim=-1)
    n = F.normalize(torch.linalg.cross(p1 - p0, p2 - p0), dim=-1)
    t2 = torch.linalg.cross(n, t1)
    return torch.stack([t1, t2, n], dim=-1)


# --------------------------------------------------------------------------- seeding
def _as_mesh(mesh: FaceMesh | None) -> FaceMesh:
    if mesh is None:
        return load_canonical_mesh()
    if not isinstance(mesh, FaceMesh):
        raise ValueError(f"mesh must be a landmarks.FaceMesh (see load_canonical_mesh()), got {type(mesh).__name__}")
    return mesh


def seed_gaussians(mesh: FaceMesh | None = None, n_gaussians: int = 12000, seed: int = 0) -> GaussianCloud:
    """Sample ``n_gaussians`` flat Gaussians on the mesh surface.

    Triangles get samples in proportion to their area (systematic sampling over the
    cumulative area, so the counts never stray more than one from proportional);
    inside a triangle the barycentrics are uniform. Each Gaussian lies flat on its
    triangle: its rotation is the triangle frame (:func:`triangle_frames`), its two
    tangent scales are the mean distance to its three nearest neighbours (the
    local sample spacing) and its normal scale is a tenth of that.

    Args:
        mesh: a :class:`~emozone_lite.landmarks.FaceMesh` (default: the canonical mesh).
        n_gaussians: number of Gaussians ``N`` (≥ 4).
        seed: seed of the sampler (same seed, same cloud).

    Returns:
        A :class:`~emozone_lite.gaussians.GaussianCloud` with mid-grey colours,
        opacity 0.9 and ``extras["tri_index"] [N]`` (int64) and ``extras["bary"] [N, 3]``
        with ``means = Σ_k bary[:, k] · V[triangles[tri_index, k]]``.

    Examples:
        >>> g = seed_gaussians(n_gaussians=500)
        >>> len(g), g.extras["bary"].shape, g.extras["tri_index"].dtype
        (500, torch.Size([500, 3]), torch.int64)
    """
    from scipy.spatial import cKDTree

    mesh = _as_mesh(mesh)
    n = int(n_gaussians)
    if n < 4:
        raise ValueError(f"n_gaussians must be >= 4, got {n_gaussians}")
    V = np.asarray(mesh.vertices, dtype=np.float64)
    T = np.asarray(mesh.triangles, dtype=np.int64)
    if V.ndim != 2 or V.shape[1] != 3 or T.ndim != 2 or T.shape[1] != 3:
        raise ValueError(f"mesh.vertices must be [V, 3] and mesh.triangles [T, 3], got {V.shape} and {T.shape}")
    rng = np.random.default_rng(seed)
    area = 0.5 * np.linalg.norm(np.cross(V[T[:, 1]] - V[T[:, 0]], V[T[:, 2]] - V[T[:, 0]]), axis=1)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise ValueError("mesh has no area (degenerate or non-finite vertices)")
    cdf = np.cumsum(area) / area.sum()
    u = (np.arange(n) + rng.random()) / n
    tri_index = np.minimum(np.searchsorted(cdf, u, side="right"), len(T) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    means = np.einsum("nk,nkd->nd", bary, V[T[tri_index]])

    dist, _ = cKDTree(means).query(means, k=4)
    spacing = dist[:, 1:].mean(axis=1)
    typical = math.sqrt(area.sum() / n)
    spacing = np.clip(spacing, 0.3 * typical, 3.0 * typical)
    tangent = spacing  # neighbours overlap at ~1σ: no holes at opacity 0.9
    scales = np.stack([tangent, tangent, 0.1 * tangent], axis=1)

    frames = triangle_frames(torch.from_numpy(V), torch.from_numpy(T))  # [T, 3, 3]
    quats = _matrix_to_quat(frames)[torch.from_numpy(tri_index)]
    return GaussianCloud(
        means=torch.from_numpy(means).float(),
        quats=quats.float(),
        scales=torch.from_numpy(scales).float(),
        opacities=torch.full((n,), 0.9),
        colors=torch.full((n, 3), 0.5),
        extras={"tri_index": torch.from_numpy(tri_index), "bary": torch.from_numpy(bary).float()},
    )


# --------------------------------------------------------------------------- carrying the rig
def _tri_bary(cloud_or_tri_bary) -> tuple[Tensor, Tensor]:
    if isinstance(cloud_or_tri_bary, GaussianCloud):
        missing = [k for k in HEAD_EXTRAS if k not in cloud_or_tri_bary.extras]
        if missing:
            raise ValueError(f"cloud has no extras {missing}; build it with seed_gaussians() or load it with load_head()")
        tri_index, bary = cloud_or_tri_bary.extras["tri_index"], cloud_or_tri_bary.extras["bary"]
    elif isinstance(cloud_or_tri_bary, (tuple, list)) and len(cloud_or_tri_bary) == 2:
        tri_index, bary = (torch.as_tensor(x) for x in cloud_or_tri_bary)
    else:
        raise ValueError("expected a GaussianCloud with tri_index/bary extras or a pair (tri_index [N], bary [N, 3])")
    if tri_index.ndim != 1 or bary.shape != (tri_index.shape[0], 3):
        raise ValueError(f"tri_index must be [N] and bary [N, 3], got {tuple(tri_index.shape)} and {tuple(bary.shape)}")
    return tri_index.long(), bary


def _triangles(triangles) -> Tensor:
    if triangles is None:
        triangles = load_canonical_mesh().triangles
    return torch.as_tensor(np.asarray(triangles), dtype=torch.long)


def carry_vertex_displacements(cloud_or_tri_bary, vertex_disp: Tensor, triangles=None) -> Tensor:
    """Carry displacements of the mesh vertices to the Gaussians by barycentric interpolation.

    ``Δμ_i = Σ_k bary_ik · ΔV[triangles[tri_index_i, k]]`` — linear, so a zero
    displacement leaves every Gaussian in place and a constant one shifts them all.

    Args:
        cloud_or_tri_bary: a head :class:`GaussianCloud` (with ``tri_index`` / ``bary``
            extras) or a pair ``(tri_index [N], bary [N, 3])``.
        vertex_disp: ``[..., V, 3]`` displacements of the mesh vertices (V = 468).
        triangles: ``[T, 3]`` mesh triangles (default: the canonical mesh's).

    Returns:
        ``[..., N, 3]`` Gaussian displacements (same dtype/device as ``vertex_disp``;
        differentiable in it).

    Examples:
        >>> g = seed_gaussians(n_gaussians=100)
        >>> carry_vertex_displacements(g, torch.ones(2, 468, 3)).shape
        torch.Size([2, 100, 3])
    """
    tri_index, bary = _tri_bary(cloud_or_tri_bary)
    tri = _triangles(triangles)
    if not isinstance(vertex_disp, Tensor):
        vertex_disp = torch.as_tensor(np.asarray(vertex_disp), dtype=torch.float32)
    nv = int(tri.max()) + 1
    if vertex_disp.ndim < 2 or vertex_disp.shape[-1] != 3 or vertex_disp.shape[-2] < nv:
        raise ValueError(f"vertex_disp must have shape [..., {max(nv, 468)}, 3] (one row per mesh vertex), got {tuple(vertex_disp.shape)}")
    if int(tri_index.max()) >= tri.shape[0] or int(tri_index.min()) < 0:
        raise ValueError(f"tri_index values must lie in [0, {tri.shape[0]}) for a mesh of {tri.shape[0]} triangles")
    vid = tri.to(vertex_disp.device)[tri_index.to(vertex_disp.device)]  # [N, 3]
    corners = vertex_disp[..., vid, :]  # [..., N, 3 corners, 3]
    return torch.einsum("nk,...nkd->...nd", bary.to(vertex_disp), corners)


def carry_triangle_rotations(cloud_or_tri_bary, rest_vertices: Tensor, deformed_vertices: Tensor, triangles=None) -> Tensor:
    """Per-Gaussian rotations that follow their triangles as the mesh deforms.

    For each triangle the rotation ``R_t = F_def · F_restᵀ`` takes its rest frame
    (:func:`triangle_frames`) to its deformed frame; every Gaussian gets its triangle's
    rotation as a quaternion ``Δq_i``. Apply it in world space, on the left:
    ``quats_new = deform.quat_multiply(Δq, quats)`` (stretch is ignored; only rotation).

    Args:
        cloud_or_tri_bary: a head cloud or ``(tri_index [N], bary [N, 3])``.
        rest_vertices: ``[V, 3]`` mesh vertices the cloud was seeded on.
        deformed_vertices: ``[..., V, 3]`` deformed vertices.
        triangles: ``[T, 3]`` (default: canonical).

    Returns:
        ``[..., N, 4]`` unit quaternions (w, x, y, z); identity where nothing rotates.
    """
    tri_index, _ = _tri_bary(cloud_or_tri_bary)
    tri = _triangles(triangles)
    rest = torch.as_tensor(rest_vertices, dtype=torch.float32) if not isinstance(rest_vertices, Tensor) else rest_vertices
    dv = torch.as_tensor(deformed_vertices, dtype=rest.dtype) if not isinstance(deformed_vertices, Tensor) else deformed_vertices
    if rest.ndim != 2 or rest.shape[-1] != 3 or dv.shape[-2:] != rest.shape:
        raise ValueError(f"rest_vertices must be [V, 3] and deformed_vertices [..., V, 3] with the same V; got {tuple(rest.shape)} and {tuple(dv.shape)}")
    R = triangle_frames(dv, tri) @ triangle_frames(rest.to(dv), tri).transpose(-1, -2)  # [..., T, 3, 3]
    return _matrix_to_quat(R)[..., tri_index.to(dv.device), :]


# --------------------------------------------------------------------------- photos
def load_photo(image) -> np.ndarray:
    """A photo as ``[H, W, 3]`` float32 RGB in [0, 1].

    Args:
        image: a path, a PIL image, a NumPy array ``[H, W, 3|4]`` (uint8 0–255 or float
            0–1) or a tensor ``[H, W, 3]`` (float 0–1).
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


def _rodrigues(r: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(r))
    if th < 1e-12:
        return np.eye(3)
    k = r / th
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * Kx + (1 - math.cos(th)) * Kx @ Kx


def _project_np(X: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray) -> np.ndarray:
    pc = X @ R.T + t
    return pc[:, :2] / pc[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])


def register_mesh_to_photo(mesh: FaceMesh | None, image, *, distance: float = 4.0, nonrigid: float = 1.0) -> tuple[Camera, LandmarkFit]:
    """Fit a pinhole camera and a personalised mesh to the face in a photo.

    1. Detect the 478 MediaPipe landmarks (:func:`emozone_lite.landmarks.detect_landmarks`);
       the first 468 correspond to the mesh vertices.
    2. Weak-perspective (scaled orthographic) fit by least squares, projected onto the
       nearest scaled rotation: gives the head rotation and the pixel scale ``s``.
    3. Pinhole camera with focal ``f = s · distance`` (the head at the toolkit's orbit
       distance, so perspective looks like ``Camera.orbit``), refined by
       Levenberg–Marquardt over the 6-DoF pose (scipy ``least_squares``).
    4. Non-rigid: each vertex moves within its camera-space depth plane until it
       projects onto its landmark (``nonrigid`` ∈ [0, 1] scales this correction).

    The world frame is the toolkit's: the camera carries the head pose, so
    ``Camera.orbit(yaw_deg=0)`` sees the (personalised) head from the front.

    Args:
        mesh: the mesh to register (default: canonical). Its vertex order must be
            MediaPipe's (468 vertices).
        image: the photo (see :func:`load_photo`).
        distance: camera-to-head distance in world units used to pick the focal length.
        nonrigid: 0 keeps the canonical shape, 1 matches the landmarks exactly.

    Returns:
        ``(camera, fit)``: a :class:`~emozone_lite.camera.Camera` of the photo's size and
        a :class:`LandmarkFit`.

    Raises:
        ValueError: ``"no face found"`` when the detector finds no face, or bad inputs.
    """
    from scipy.optimize import least_squares

    from . import landmarks

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

    def residual(p):
        return (_project_np(V, _rodrigues(p[:3]) @ R, p[3:], K) - px).ravel()

    sol = least_squares(residual, np.concatenate([np.zeros(3), t]), method="lm")
    R = _rodrigues(sol.x[:3]) @ R
    t = sol.x[3:]
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
    new_mesh = FaceMesh(V_new.astype(np.float32), mesh.uvs.copy(), mesh.triangles.copy(), {k: v.copy() for k, v in mesh.regions.items()})
    return camera, LandmarkFit(new_mesh, px.astype(np.float32), rigid_px.astype(np.float32), rigid_rmse, rmse, yaw, pitch)


def crop_to_face(image, camera: Camera, points: Tensor | np.ndarray, size: int = 256, margin: float = 0.15) -> tuple[np.ndarray, Camera]:
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
    """
    from PIL import Image

    photo = load_photo(image)
    if photo.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image is {photo.shape[1]}x{photo.shape[0]} but the camera is {camera.width}x{camera.height}")
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
    """Bilinear samples ``[N, 3]`` of ``image [H, W, 3]`` at pixel coordinates ``uv [N, 2]`` (centres at +0.5; border clamped)."""
    h, w = image.shape[:2]
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    grid = torch.stack([uv[:, 0] / w * 2 - 1, uv[:, 1] / h * 2 - 1], -1)[None, None].float()
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T


def colour_from_photo(cloud: GaussianCloud, image, camera: Camera, min_facing: float = 0.3, fill_unseen: bool = True) -> GaussianCloud:
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
        cloud: ``N`` Gaussians (e.g. from :func:`seed_gaussians`).
        image: the photo (see :func:`load_photo`), of the camera's size.
        camera: camera registered to the photo (:func:`register_mesh_to_photo`).
        min_facing: cosine threshold of "well seen", in [0, 1).
        fill_unseen: apply the fallbacks above (False: sample every Gaussian where it projects).

    Returns:
        A new cloud with ``colors [N, 3]`` from the photo (other fields unchanged).
    """
    from scipy.spatial import cKDTree

    photo = load_photo(image)
    if photo.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image is {photo.shape[1]}x{photo.shape[0]} but the camera is {camera.width}x{camera.height}")
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


# --------------------------------------------------------------------------- fitting
def face_mask(cloud: GaussianCloud, camera: Camera, backend: str = "auto", threshold: float = 0.5, erode: int = 1) -> np.ndarray:
    """The face region: where the cloud's rendered alpha exceeds ``threshold``, holes filled.

    Returns:
        ``[H, W]`` bool mask.
    """
    from scipy import ndimage

    from . import render
    from .camera import stack_cameras

    viewmats, Ks, w, h = stack_cameras([camera])
    with torch.no_grad():
        _, alpha, _ = render.rasterize(
            cloud.means.detach(), cloud.quats.detach(), cloud.scales.detach(), cloud.opacities.detach(),
            cloud.colors.detach(), viewmats.to(cloud.device), Ks.to(cloud.device), w, h, backend=backend,
        )
    mask = ndimage.binary_fill_holes(alpha[0, :, :, 0].cpu().numpy() > threshold)
    if erode > 0:
        mask = ndimage.binary_erosion(mask, iterations=int(erode))
    return mask


def masked_psnr(pred, target, mask) -> float:
    """PSNR (dB) of ``pred`` vs ``target`` (``[H, W, 3]`` in [0, 1]) over the pixels where ``mask [H, W]`` is true."""
    pred = torch.as_tensor(np.asarray(pred) if not isinstance(pred, Tensor) else pred).detach().float().cpu()
    target = torch.as_tensor(np.asarray(target) if not isinstance(target, Tensor) else target).detach().float().cpu()
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).bool().cpu()
    if pred.shape != target.shape or pred.shape[:2] != m.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask {tuple(m.shape)} must agree ([H, W, 3] and [H, W])")
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
        cloud: initial head (e.g. :func:`colour_from_photo` output).
        image: ``[H, W, 3]`` photo matching ``camera`` (see :func:`load_photo`).
        camera: the fitting camera (e.g. from :func:`crop_to_face`).
        iters: Adam iterations.
        lr: base learning rate (colours, opacities: ``lr``; log-scales: ``lr/4``;
            offsets: ``lr/40`` in world units).
        progress: show a tqdm progress bar.
        lambda_ssim: weight λ of the D-SSIM term.
        max_offset: largest mean offset, world units.
        backend: renderer backend (see :func:`emozone_lite.render.rasterize`).
        mask: ``[H, W]`` face mask (default: :func:`face_mask` of the initial cloud).
        seed: seed of the random backgrounds.

    Returns:
        ``(fitted cloud, HeadFit)``.
    """
    from tqdm.auto import tqdm

    from . import render
    from .camera import stack_cameras
    from .metrics import l1_dssim_loss

    if not isinstance(cloud, GaussianCloud):
        raise ValueError(f"cloud must be a GaussianCloud, got {type(cloud).__name__}")
    photo = load_photo(image)
    if photo.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image is {photo.shape[1]}x{photo.shape[0]} but the camera is {camera.width}x{camera.height}")
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
        return base.means + max_offset * torch.tanh(offset_raw), base.quats, scales, torch.sigmoid(opac_raw), torch.sigmoid(color_raw)

    def draw(bg: Tensor):
        means, quats, scales, opac, cols = params()
        img, _, _ = render.rasterize(means, quats, scales, opac, cols, viewmats, Ks, w, h, backend=backend, backgrounds=bg[None])
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
    fitted = GaussianCloud(means.detach(), quats.detach().clone(), scales.detach(), opac.detach(), cols.detach(), extras={k: v.clone() for k, v in base.extras.items()})
    return fitted, HeadFit(losses, psnr_before, psnr_after, mask, seconds, final.cpu().numpy())


# --------------------------------------------------------------------------- one call
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
) -> GaussianCloud:
    """Build the Gaussian head from a frontal face photo: register, seed, colour, fit.

    Args:
        photo_path: a frontal face photo (default: ``data_samples/astronaut.png``); any
            image accepted by :func:`load_photo`.
        n_gaussians: number of Gaussians.
        iters: fitting iterations (0: seeded and photo-coloured only).
        out_path: where to write the PLY (``None``: do not write).
        fit_size: side of the square face crop the fit renders, pixels.
        seed: seed of sampling and fitting.
        backend: renderer backend.
        device: where to fit (default: CUDA when available, else CPU; the backend
            ``"auto"`` then picks gsplat or the numba CPU rasterizer).
        progress: show a progress bar and print a one-line summary.

    Returns:
        The head :class:`GaussianCloud` (with ``tri_index`` / ``bary`` extras), in the
        toolkit's world frame (``Camera.orbit(yaw_deg=0)`` sees it from the front).

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
    if out_path is not None:
        save_head(cloud, out_path)
    if progress:
        print(
            f"build_head: {len(cloud)} Gaussians, landmark RMSE {fit.rigid_rmse_px:.2f} px (rigid), "
            f"head yaw {fit.yaw_deg:+.1f}°, pitch {fit.pitch_deg:+.1f}°{info}, {time.perf_counter() - t0:.1f} s"
        )
    return cloud


def save_head(cloud: GaussianCloud, path) -> Path:
    """Write a head cloud as a compact 3DGS PLY (no ``f_rest_*``: the head has SH degree 0)."""
    missing = [k for k in HEAD_EXTRAS if k not in cloud.extras]
    if missing:
        raise ValueError(f"cloud lacks the head extras {missing}; build it with seed_gaussians()/build_head()")
    compact = GaussianCloud(
        cloud.means, cloud.quats, cloud.scales, cloud.opacities, cloud.colors,
        extras={**cloud.extras, "sh_rest": cloud.means.new_zeros(len(cloud), 0, 3)},
    )
    return save_ply(compact, path)


def load_head(path=None) -> GaussianCloud:
    """Load a head PLY (default: ``data_samples/head.ply``) and check its head extras.

    Raises:
        FileNotFoundError: when the file does not exist (says how to build it).
        ValueError: when the PLY is not a 3DGS file or lacks ``tri_index`` / ``bary``
            (or they are out of range).
    """
    p = Path(path) if path is not None else DATA_DIR / DEFAULT_HEAD
    if not p.exists():
        raise FileNotFoundError(
            f"head file {str(p)!r} not found; build one with emozone_lite.head.build_head(out_path=...) "
            "or run data_samples/scripts/build_head.py"
        )
    cloud = load_ply(p)
    missing = [k for k in HEAD_EXTRAS if k not in cloud.extras]
    if missing:
        raise ValueError(
            f"{p}: PLY lacks the head properties {missing} (tri_index [N], bary_0..2 [N, 3]) needed to carry mesh "
            "displacements; it is not a head built by emozone_lite.head.build_head"
        )
    tri_index, bary = cloud.extras["tri_index"], cloud.extras["bary"]
    if tri_index.shape != (len(cloud),) or bary.shape != (len(cloud), 3):
        raise ValueError(f"{p}: tri_index must be [N] and bary [N, 3], got {list(tri_index.shape)} and {list(bary.shape)}")
    n_tri = load_canonical_mesh().triangles.shape[0]
    ti = tri_index.double()
    if bool((ti != ti.round()).any() | (ti < 0).any() | (ti >= n_tri).any()):
        raise ValueError(f"{p}: tri_index must hold integers in [0, {n_tri})")
    if bool(((bary.sum(1) - 1).abs() > 1e-3).any() | (bary < -1e-4).any()):
        raise ValueError(f"{p}: bary rows must be non-negative and sum to 1")
    cloud.extras["tri_index"] = tri_index.long()
    return cloud
