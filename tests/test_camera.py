"""Tests for emozone_lite.camera: intrinsics, look_at, orbit cameras and projection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emozone_lite.camera import HEAD_TARGET, Camera, intrinsics_from_fov, look_at, orbit_viewmat, stack_cameras
from emozone_lite.landmarks import load_canonical_mesh


# ---------------------------------------------------------------- intrinsics
@pytest.mark.parametrize("fov, w, h", [(90.0, 200, 100), (30.0, 256, 256), (60.0, 64, 48)])
def test_intrinsics_from_fov_matches_formula(fov, w, h):
    K = intrinsics_from_fov(fov, w, h)
    f = (h / 2) / math.tan(math.radians(fov) / 2)
    expected = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(K, expected)
    # the vertical field of view is recovered from K: top and bottom image edges at ±fov/2
    assert math.degrees(2 * math.atan((h / 2) / float(K[1, 1]))) == pytest.approx(fov, rel=1e-6)


@pytest.mark.parametrize("fov", [0.0, 180.0, -10.0, 200.0])
def test_intrinsics_bad_fov(fov):
    with pytest.raises(ValueError, match="fov_deg"):
        intrinsics_from_fov(fov, 64, 64)


@pytest.mark.parametrize("w, h", [(0, 64), (64, -1)])
def test_intrinsics_bad_size(w, h):
    with pytest.raises(ValueError, match="width and height"):
        intrinsics_from_fov(45.0, w, h)


# ---------------------------------------------------------------- look_at
@pytest.mark.parametrize("seed", range(5))
def test_look_at_is_a_rigid_transform(seed):
    g = torch.Generator().manual_seed(seed)
    eye = torch.randn(3, generator=g) * 3
    target = torch.randn(3, generator=g)
    V = look_at(eye, target)
    R, t = V[:3, :3], V[:3, 3]
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-6, rtol=0)
    assert float(torch.linalg.det(R)) == pytest.approx(1.0, abs=1e-5)  # a rotation, not a reflection
    torch.testing.assert_close(V[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    # the eye goes to the camera origin, the target onto the +z (optical) axis
    torch.testing.assert_close(R @ eye + t, torch.zeros(3), atol=1e-5, rtol=0)
    tc = R @ target + t
    torch.testing.assert_close(tc[:2], torch.zeros(2), atol=1e-5, rtol=0)
    assert float(tc[2]) == pytest.approx(float((target - eye).norm()), rel=1e-5)
    # world up points to image up, i.e. camera -y (OpenCV: y down)
    assert float((R @ torch.tensor([0.0, 1.0, 0.0]))[1]) < 0


def test_look_at_bad_inputs():
    with pytest.raises(ValueError, match="coincide"):
        look_at((1.0, 2.0, 3.0), (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="parallel"):
        look_at((0.0, 5.0, 0.0), (0.0, 0.0, 0.0))  # looking straight down with up = +y
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        look_at((0.0, 0.0), (0.0, 0.0, 0.0))


# ---------------------------------------------------------------- orbit cameras
def test_orbit_front_view_sees_face_centre_at_image_centre():
    cam = Camera.orbit(0.0, 0.0, radius=4.0, fov_deg=30.0, width=128, height=96)
    torch.testing.assert_close(cam.position, torch.tensor(HEAD_TARGET) + torch.tensor([0.0, 0.0, 4.0]))
    uv = cam.project(torch.tensor([HEAD_TARGET]))
    torch.testing.assert_close(uv, torch.tensor([[64.0, 48.0]]), atol=1e-4, rtol=0)
    # the face's bounding-box centre lands within a pixel of the image centre
    v = load_canonical_mesh().vertices
    centre = torch.from_numpy((v.min(0) + v.max(0)) / 2)[None]
    assert torch.allclose(cam.project(centre), torch.tensor([[64.0, 48.0]]), atol=1.0)
    # and the whole face is inside the image
    uv_all = cam.project(torch.from_numpy(v))
    assert bool(
        (uv_all[:, 0] > 0).all()
        and (uv_all[:, 0] < 128).all()
        and (uv_all[:, 1] > 0).all()
        and (uv_all[:, 1] < 96).all()
    )


def test_orbit_orientation_conventions():
    cam = Camera.orbit(0.0, 0.0, width=100, height=100)
    tx, ty, tz = HEAD_TARGET
    uv = cam.project(torch.tensor([[tx + 0.3, ty, tz], [tx, ty + 0.3, tz], [tx, ty, tz + 0.3]]))
    assert uv[0, 0] > 50  # world +x (the face's left) appears on the image's right, as when facing someone
    assert uv[1, 1] < 50  # world +y (up) appears towards the top row
    torch.testing.assert_close(uv[2], torch.tensor([50.0, 50.0]), atol=1e-4, rtol=0)  # on the optical axis
    # positive yaw moves the camera towards +x, positive pitch moves it up
    assert float(Camera.orbit(90.0).position[0] - tx) == pytest.approx(4.0, abs=1e-5)
    assert float(Camera.orbit(0.0, 30.0).position[1] - ty) == pytest.approx(4.0 * math.sin(math.radians(30)), abs=1e-5)


@pytest.mark.parametrize("yaw, pitch", [(0, 0), (35, -10), (-70, 20), (180, 5)])
def test_orbit_distance_and_target(yaw, pitch):
    V = orbit_viewmat(yaw, pitch, radius=2.5)
    cam = Camera(V, intrinsics_from_fov(40, 64, 64), 64, 64)
    assert float((cam.position - torch.tensor(HEAD_TARGET)).norm()) == pytest.approx(2.5, abs=1e-5)
    torch.testing.assert_close(
        cam.world_to_camera(torch.tensor([HEAD_TARGET])), torch.tensor([[0.0, 0.0, 2.5]]), atol=1e-5, rtol=0
    )


def test_orbit_bad_radius():
    with pytest.raises(ValueError, match="radius"):
        orbit_viewmat(0, 0, radius=0.0)


# ---------------------------------------------------------------- projection
def test_project_matches_hand_computation():
    a = math.radians(25.0)
    R = [[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]]
    t = [0.1, -0.2, 3.0]
    V = torch.eye(4)
    V[:3, :3] = torch.tensor(R)
    V[:3, 3] = torch.tensor(t)
    fx, fy, cx, cy = 120.0, 110.0, 60.5, 40.25
    cam = Camera(V, torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), 121, 81)
    pts = [[0.3, 0.2, -0.1], [-0.5, 0.4, 0.6], [0.0, 0.0, 0.0]]
    expected = []
    for p in pts:  # plain Python: camera coords, perspective divide, intrinsics
        xc = [sum(R[r][c] * p[c] for c in range(3)) + t[r] for r in range(3)]
        expected.append([fx * xc[0] / xc[2] + cx, fy * xc[1] / xc[2] + cy])
    got = cam.project(torch.tensor(pts, dtype=torch.float64))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-5)


def test_project_bad_points():
    cam = Camera.orbit()
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        cam.project(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        cam.project(torch.zeros(3))


# ---------------------------------------------------------------- Camera construction
def test_camera_validation():
    V, K = torch.eye(4), intrinsics_from_fov(45, 32, 32)
    with pytest.raises(ValueError, match="viewmat"):
        Camera(torch.eye(3), K, 32, 32)
    with pytest.raises(ValueError, match="K must have shape"):
        Camera(V, torch.eye(4), 32, 32)
    with pytest.raises(ValueError, match="finite"):
        Camera(V * float("nan"), K, 32, 32)
    with pytest.raises(ValueError, match="focal"):
        Camera(V, torch.diag(torch.tensor([-1.0, 1.0, 1.0])), 32, 32)
    with pytest.raises(ValueError, match="positive integers"):
        Camera(V, K, 0, 32)
    with pytest.raises(ValueError, match="positive integers"):
        Camera(V, K, 32.5, 32)
    cam = Camera(np.eye(4), K.numpy(), 32, 32)  # array-likes are accepted
    assert isinstance(cam.viewmat, torch.Tensor) and cam.width == 32


def test_camera_to_keeps_values():
    cam = Camera.orbit(10, 5, width=40, height=30)
    moved = cam.to("cpu")
    assert torch.equal(moved.viewmat, cam.viewmat) and torch.equal(moved.K, cam.K)
    assert (moved.width, moved.height) == (40, 30)


def test_stack_cameras():
    cams = [Camera.orbit(y, width=48, height=32) for y in (-30, 0, 30)]
    V, K, w, h = stack_cameras(cams)
    assert V.shape == (3, 4, 4) and K.shape == (3, 3, 3) and (w, h) == (48, 32)
    assert torch.equal(V[2], cams[2].viewmat)
    with pytest.raises(ValueError, match="empty"):
        stack_cameras([])
    with pytest.raises(ValueError, match="one image size"):
        stack_cameras([Camera.orbit(width=48, height=32), Camera.orbit(width=32, height=32)])
