"""Pinhole cameras in gsplat's convention.

World space of the toolkit: the MediaPipe canonical face scaled by 0.1 (one unit is
10 cm), +y up, +z out of the face. Cameras follow OpenCV / gsplat: a view matrix maps
world → camera, the camera looks along its +z, x right, y down; pixel centres sit at
+0.5. ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import check_shape

#: Default target of orbit cameras: the middle of the face, a little in front of the origin.
HEAD_TARGET = (0.0, -0.05, 0.25)


def intrinsics_from_fov(fov_deg: float, width: int, height: int) -> Tensor:
    """Intrinsics ``K [3, 3]`` for a vertical field of view in degrees.

    Examples:
        >>> K = intrinsics_from_fov(90.0, 200, 100)
        >>> float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
        (50.0, 100.0, 50.0)
    """
    if not (0.0 < fov_deg < 180.0):
        raise ValueError(f"fov_deg must be in (0, 180) degrees, got {fov_deg}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"width and height must be positive integers, got {width}x{height}")
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> Tensor:
    """World → camera view matrix ``[4, 4]`` (OpenCV axes: x right, y down, z forward).

    Args:
        eye: camera centre ``[3]`` in world units.
        target: point the camera looks at ``[3]``.
        up: world up direction ``[3]``; must not be parallel to ``target - eye``.
    """
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.as_tensor(target, dtype=torch.float32)
    up = torch.as_tensor(up, dtype=torch.float32)
    if eye.shape != (3,) or target.shape != (3,) or up.shape != (3,):
        raise ValueError("eye, target and up must each have shape [3]")
    fwd = target - eye
    if float(fwd.norm()) < 1e-9:
        raise ValueError("eye and target coincide; cannot build a view matrix")
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(fwd, up)
    if float(right.norm()) < 1e-6:
        raise ValueError("up is parallel to the viewing direction; pass another up vector")
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd])  # rows: camera axes in world coordinates
    view = torch.eye(4)
    view[:3, :3] = R
    view[:3, 3] = -R @ eye
    return view


def orbit_viewmat(yaw_deg: float = 0.0, pitch_deg: float = 0.0, radius: float = 4.0, target=HEAD_TARGET) -> Tensor:
    """View matrix ``[4, 4]`` of a camera orbiting ``target``.

    ``yaw_deg = pitch_deg = 0`` looks at the face from the front (camera on +z).
    Positive yaw moves the camera towards +x (the face's left), positive pitch up.
    """
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    t = torch.as_tensor(target, dtype=torch.float32)
    eye = t + radius * torch.tensor([math.sin(y) * math.cos(p), math.sin(p), math.cos(y) * math.cos(p)])
    return look_at(eye, t)


@dataclass(eq=False)
class Camera:
    """A pinhole camera: ``viewmat [4, 4]`` (world → camera), ``K [3, 3]``, image size.

    Raises:
        ValueError: if ``viewmat`` is not a finite ``[4, 4]`` matrix, ``K`` not a finite
            ``[3, 3]`` matrix with positive focal lengths, or the size not positive.

    Examples:
        >>> cam = Camera.orbit(yaw_deg=20, width=128, height=128)
        >>> cam.viewmat.shape, cam.K.shape
        (torch.Size([4, 4]), torch.Size([3, 3]))
        >>> cam.project(torch.tensor([HEAD_TARGET])).tolist()  # the target lands on the image centre
        [[64.0, 64.0]]
    """

    viewmat: Tensor
    K: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        self.viewmat = (
            torch.as_tensor(self.viewmat, dtype=torch.float32) if not isinstance(self.viewmat, Tensor) else self.viewmat
        )
        self.K = torch.as_tensor(self.K, dtype=torch.float32) if not isinstance(self.K, Tensor) else self.K
        check_shape(self.viewmat, "viewmat", (4, 4), "; the world -> camera matrix")
        check_shape(self.K, "K", (3, 3), "; the intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
        if not (bool(torch.isfinite(self.viewmat).all()) and bool(torch.isfinite(self.K).all())):
            raise ValueError("viewmat and K must contain only finite values")
        if float(self.K[0, 0]) <= 0 or float(self.K[1, 1]) <= 0:
            raise ValueError(
                f"K must have positive focal lengths fx, fy; got {float(self.K[0, 0])}, {float(self.K[1, 1])}"
            )
        if (
            int(self.width) != self.width
            or int(self.height) != self.height
            or int(self.width) <= 0
            or int(self.height) <= 0
        ):
            raise ValueError(f"width and height must be positive integers, got {self.width}x{self.height}")
        self.width, self.height = int(self.width), int(self.height)

    @classmethod
    def orbit(
        cls,
        yaw_deg: float = 0.0,
        pitch_deg: float = 0.0,
        radius: float = 4.0,
        fov_deg: float = 30.0,
        width: int = 256,
        height: int = 256,
        target=HEAD_TARGET,
    ) -> Camera:
        """A camera on a sphere of ``radius`` around ``target`` (see :func:`orbit_viewmat`)."""
        return cls(
            orbit_viewmat(yaw_deg, pitch_deg, radius, target),
            intrinsics_from_fov(fov_deg, width, height),
            int(width),
            int(height),
        )

    @property
    def position(self) -> Tensor:
        """Camera centre in world coordinates ``[3]`` (``-Rᵀ t``)."""
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -R.T @ t

    def to(self, device: str | torch.device) -> Camera:
        """The same camera with its matrices on ``device``."""
        return Camera(self.viewmat.to(device), self.K.to(device), self.width, self.height)

    def world_to_camera(self, points: Tensor) -> Tensor:
        """World points ``[N, 3]`` → camera coordinates ``[N, 3]`` (x right, y down, z depth)."""
        check_shape(points, "points", ("N", 3))
        return points @ self.viewmat[:3, :3].T.to(points) + self.viewmat[:3, 3].to(points)

    def project(self, points: Tensor) -> Tensor:
        """Pinhole projection of world points ``[N, 3]`` → pixel coordinates ``[N, 2]``.

        ``u = fx · x / z + cx``, ``v = fy · y / z + cy`` in camera coordinates; pixel
        ``(i, j)`` covers ``[i, i + 1) × [j, j + 1)``, so its centre is at ``+0.5``.
        Points behind the camera (``z ≤ 0``) give meaningless coordinates.
        """
        pc = self.world_to_camera(points)
        uv = pc[:, :2] / pc[:, 2:3].clamp_min(1e-6)
        K = self.K.to(points)
        return uv * torch.stack([K[0, 0], K[1, 1]]) + torch.stack([K[0, 2], K[1, 2]])


def stack_cameras(cameras: list[Camera]) -> tuple[Tensor, Tensor, int, int]:
    """``(viewmats [C, 4, 4], Ks [C, 3, 3], width, height)`` for ``rasterize``; sizes must match."""
    if not cameras:
        raise ValueError("cameras is empty; pass at least one Camera")
    w, h = cameras[0].width, cameras[0].height
    if any((c.width, c.height) != (w, h) for c in cameras):
        raise ValueError("all cameras must share one image size to render in one call")
    return torch.stack([c.viewmat for c in cameras]), torch.stack([c.K for c in cameras]), w, h
