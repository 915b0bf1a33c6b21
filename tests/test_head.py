from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emozone_lite import geometry, head, landmarks
from emozone_lite.camera import Camera
from emozone_lite.gaussians import GaussianCloud, save_ply
from emozone_lite.geometry import quat_multiply, quat_to_rotmat, rotmat_to_quat
from emozone_lite.landmarks import load_canonical_mesh
from emozone_lite.utils import data_path


@pytest.fixture(scope="module")
def mesh():
    return load_canonical_mesh()


@pytest.fixture(scope="module")
def cloud(mesh):
    return head.seed_gaussians(mesh, n_gaussians=2000, seed=0)


def _random_rotations(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=-1)
    return quat_to_rotmat(q), q


# --------------------------------------------------------------------------- seeding
def test_seed_shapes_barycentrics_and_surface(mesh, cloud):
    n = 2000
    assert len(cloud) == n
    assert cloud.means.shape == (n, 3) and cloud.quats.shape == (n, 4) and cloud.scales.shape == (n, 3)
    tri, bary = cloud.extras["tri_index"], cloud.extras["bary"]
    assert tri.shape == (n,) and tri.dtype == torch.int64 and bary.shape == (n, 3)
    assert int(tri.min()) >= 0 and int(tri.max()) < mesh.triangles.shape[0]
    assert bool((bary >= 0).all())
    torch.testing.assert_close(bary.sum(1), torch.ones(n))
    V = torch.from_numpy(mesh.vertices)
    T = torch.from_numpy(mesh.triangles)
    on_tri = torch.einsum("nk,nkd->nd", bary, V[T[tri]])
    torch.testing.assert_close(cloud.means, on_tri, atol=1e-6, rtol=0)
    # each Gaussian lies in its triangle's plane and its local z axis is the triangle normal
    assert head.triangle_frames is geometry.triangle_frames  # re-exported, public since the start
    frames = head.triangle_frames(V, T)[tri]  # [N, 3, 3]
    normal = frames[..., 2]
    dist = ((cloud.means - V[T[tri, 0]]) * normal).sum(-1)
    assert float(dist.abs().max()) < 1e-5
    torch.testing.assert_close(cloud.quats.norm(dim=-1), torch.ones(n))
    torch.testing.assert_close(quat_to_rotmat(cloud.quats)[..., 2], normal, atol=1e-5, rtol=0)
    # flat: thin along the normal (a tenth of the tangent scale), round in the tangent plane
    torch.testing.assert_close(cloud.scales[:, 2], 0.1 * cloud.scales[:, 0])
    assert torch.equal(cloud.scales[:, 0], cloud.scales[:, 1])
    # the tangent scale is the sample spacing: mean distance to the 3 nearest neighbours,
    # clipped to [0.3, 3] × sqrt(area / N) (the clip touches only a few outliers)
    from scipy.spatial import cKDTree

    Vd, Td = mesh.vertices.astype(np.float64), mesh.triangles
    area = 0.5 * np.linalg.norm(np.cross(Vd[Td[:, 1]] - Vd[Td[:, 0]], Vd[Td[:, 2]] - Vd[Td[:, 0]]), axis=1).sum()
    typical = math.sqrt(area / n)
    means = cloud.means.double().numpy()
    spacing = cKDTree(means).query(means, k=4)[0][:, 1:].mean(1)
    np.testing.assert_allclose(cloud.scales[:, 0].numpy(), np.clip(spacing, 0.3 * typical, 3 * typical), rtol=1e-5)
    assert ((spacing < 0.3 * typical) | (spacing > 3 * typical)).mean() < 0.05
    assert 0.5 * typical < float(cloud.scales[:, 0].median()) < 1.5 * typical


def test_seed_is_area_weighted_and_deterministic(mesh):
    g1 = head.seed_gaussians(mesh, n_gaussians=3000, seed=5)
    g2 = head.seed_gaussians(mesh, n_gaussians=3000, seed=5)
    g3 = head.seed_gaussians(mesh, n_gaussians=3000, seed=6)
    assert g1.allclose(g2) and not torch.equal(g1.means, g3.means)
    V, T = mesh.vertices.astype(np.float64), mesh.triangles
    area = 0.5 * np.linalg.norm(np.cross(V[T[:, 1]] - V[T[:, 0]], V[T[:, 2]] - V[T[:, 0]]), axis=1)
    counts = np.bincount(g1.extras["tri_index"].numpy(), minlength=len(T))
    assert np.abs(counts - 3000 * area / area.sum()).max() <= 1.0 + 1e-9


def test_seed_bad_inputs(mesh):
    with pytest.raises(ValueError, match="n_gaussians"):
        head.seed_gaussians(mesh, n_gaussians=2)
    with pytest.raises(ValueError, match="FaceMesh"):
        head.seed_gaussians(mesh.vertices)


def test_rotmat_quat_round_trip():
    # the seeding and carrying use geometry.rotmat_to_quat (formerly head._matrix_to_quat)
    R, q = _random_rotations(200)
    # include the awkward 180° rotations (w = 0: the sign comes from the largest component)
    flips = torch.stack([torch.diag(torch.tensor(d, dtype=torch.float64)) for d in ([1.0, -1, -1], [-1.0, -1, 1])])
    q2 = rotmat_to_quat(torch.cat([R, flips]))
    torch.testing.assert_close(quat_to_rotmat(q2), torch.cat([R, flips]))
    assert bool((q2[:, 0] >= 0).all())  # the w >= 0 hemisphere
    torch.testing.assert_close(q2[:200], q * torch.sign(q[:, :1]))  # the same rotation, w >= 0 sign
    torch.testing.assert_close(q2[200:], torch.tensor([[0.0, 1, 0, 0], [0.0, 0, 0, 1]], dtype=torch.float64))


# --------------------------------------------------------------------------- carrying displacements
def test_carry_zero_constant_and_linear(mesh, cloud):
    n = len(cloud)
    zero = head.carry_vertex_displacements(cloud, torch.zeros(468, 3))
    assert zero.shape == (n, 3) and torch.equal(zero, torch.zeros(n, 3))
    shift = torch.tensor([0.1, -0.2, 0.3])
    const = head.carry_vertex_displacements(cloud, shift.expand(2, 468, 3))
    assert const.shape == (2, n, 3)
    torch.testing.assert_close(const, shift.expand(2, n, 3))
    # barycentric carry is exact for any affine field: d(x) = A x + b  ⇒  Δμ = A μ + b
    A, b = torch.randn(3, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0.01, 0.02, 0.03])
    V = torch.from_numpy(mesh.vertices)
    carried = head.carry_vertex_displacements((cloud.extras["tri_index"], cloud.extras["bary"]), V @ A.T + b)
    torch.testing.assert_close(carried, cloud.means @ A.T + b, atol=1e-5, rtol=1e-5)


def test_carry_is_differentiable_and_checks_shapes(cloud):
    disp = torch.zeros(468, 3, requires_grad=True)
    head.carry_vertex_displacements(cloud, disp).sum().backward()
    # each Gaussian spreads a unit gradient over its three corners (barycentrics sum to 1)
    torch.testing.assert_close(disp.grad.sum(), torch.tensor(3.0 * len(cloud)))
    # … and vertex v receives the barycentric weights of the corners it is (a slow loop as the oracle)
    tri = torch.from_numpy(load_canonical_mesh().triangles)[cloud.extras["tri_index"]]  # [N, 3]
    want = torch.zeros(468)
    for i in range(len(cloud)):
        for k in range(3):
            want[tri[i, k]] += cloud.extras["bary"][i, k]
    torch.testing.assert_close(disp.grad, want[:, None].expand(468, 3), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="vertex_disp"):
        head.carry_vertex_displacements(cloud, torch.zeros(400, 3))
    with pytest.raises(ValueError, match="tri_index"):
        head.carry_vertex_displacements(GaussianCloud.from_points(torch.zeros(3, 3)), torch.zeros(468, 3))


def test_carry_triangle_rotations(mesh, cloud):
    V = torch.from_numpy(mesh.vertices)
    ident = head.carry_triangle_rotations(cloud, V, V)
    torch.testing.assert_close(ident, torch.tensor([1.0, 0, 0, 0]).expand(len(cloud), 4), atol=1e-5, rtol=0)
    R, q = _random_rotations(1, seed=3)
    R, q = R[0].float(), q[0].float()
    rotated = head.carry_triangle_rotations(cloud, V, (V @ R.T)[None].expand(2, 468, 3))
    assert rotated.shape == (2, len(cloud), 4)
    q = q * torch.sign(q[0])
    torch.testing.assert_close(rotated, q.expand_as(rotated), atol=1e-4, rtol=0)
    # the rotated Gaussians still lie flat on the rotated mesh
    new_q = quat_multiply(rotated[0], cloud.quats)
    tri = cloud.extras["tri_index"]
    normals = head.triangle_frames(V @ R.T, torch.from_numpy(mesh.triangles))[tri][..., 2]
    torch.testing.assert_close(quat_to_rotmat(new_q)[..., 2], normals, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- registration and colour
def _fake_detector(monkeypatch, pixels):
    def detect(image):
        return SimpleNamespace(pixels=np.concatenate([pixels, pixels[:10]]), points=None)

    monkeypatch.setattr(landmarks, "detect_landmarks", detect)  # raises if the name ever goes away


def test_register_recovers_a_known_camera(monkeypatch, mesh):
    cam = Camera.orbit(yaw_deg=10, pitch_deg=-5, width=200, height=160, fov_deg=25)
    px = cam.project(torch.from_numpy(mesh.vertices)).numpy()
    _fake_detector(monkeypatch, px)
    fitted, fit = head.register_mesh_to_photo(mesh, np.zeros((160, 200, 3), np.uint8))
    assert (fitted.width, fitted.height) == (200, 160)
    assert fit.rigid_rmse_px < 0.5 and fit.rmse_px < 1e-3
    assert abs(fit.yaw_deg - 10) < 1.0 and abs(fit.pitch_deg + 5) < 1.0
    # the personalised mesh projects onto the landmarks and stays close to the canonical one
    np.testing.assert_allclose(fitted.project(torch.from_numpy(fit.mesh.vertices)).numpy(), px, atol=1e-2)
    assert np.abs(fit.mesh.vertices - mesh.vertices).max() < 0.05


def test_register_personalises_the_mesh(monkeypatch, mesh):
    cam = Camera.orbit(width=256, height=256)
    V = mesh.vertices.copy()
    V[:, 0] *= 1.1  # a wider face than the canonical one
    px = cam.project(torch.from_numpy(V)).numpy()
    _fake_detector(monkeypatch, px)
    fitted, fit = head.register_mesh_to_photo(mesh, np.zeros((256, 256, 3), np.uint8))
    assert fit.rigid_rmse_px > 1.0  # a similarity cannot explain it ...
    np.testing.assert_allclose(
        fitted.project(torch.from_numpy(fit.mesh.vertices)).numpy(), px, atol=1e-2
    )  # ... the mesh does
    _, rigid = head.register_mesh_to_photo(mesh, np.zeros((256, 256, 3), np.uint8), nonrigid=0.0)
    np.testing.assert_allclose(
        fitted.project(torch.from_numpy(rigid.mesh.vertices)).numpy(), rigid.rigid_pixels, atol=1e-2
    )


def test_colour_from_photo_samples_the_projection(mesh, cloud):
    cam = Camera.orbit(width=64, height=64)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    photo = np.stack([(xx + 0.5) / 64, (yy + 0.5) / 64, np.full_like(xx, 0.25)], -1)  # colour = pixel position
    coloured = head.colour_from_photo(cloud, photo, cam, fill_unseen=False)
    uv = cam.project(cloud.means)
    inside = ((uv > 1) & (uv < 63)).all(1)
    torch.testing.assert_close(coloured.colors[inside, :2], uv[inside] / 64, atol=1e-4, rtol=0)
    assert torch.equal(coloured.means, cloud.means) and torch.equal(coloured.extras["bary"], cloud.extras["bary"])


def test_colour_fill_for_gaussians_the_photo_does_not_see(mesh, cloud):
    cam = Camera.orbit(yaw_deg=50, width=64, height=64)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    photo = np.stack([(xx + 0.5) / 64, (yy + 0.5) / 64, np.full_like(xx, 0.25)], -1)
    filled = head.colour_from_photo(cloud, photo, cam, min_facing=0.3)
    eye = -cam.viewmat[:3, :3].T @ cam.viewmat[:3, 3]

    def cosine(p, n):
        return (torch.nn.functional.normalize(eye - p, dim=-1) * n).sum(-1)

    normals = quat_to_rotmat(cloud.quats)[:, :, 2]
    flip = torch.tensor([-1.0, 1.0, 1.0])
    unseen = cosine(cloud.means, normals) < 0.3
    mirror_seen = cosine(cloud.means * flip, normals * flip) >= 0.3
    assert int(unseen.sum()) > 100 and int((unseen & mirror_seen).sum()) > 50
    pick = unseen & mirror_seen
    uv_m = cam.project(cloud.means[pick] * flip)
    torch.testing.assert_close(filled.colors[pick, :2], (uv_m / 64).clamp(0.5 / 64, 63.5 / 64), atol=1e-4, rtol=0)
    # every colour comes from a seen place on the photo (blue channel constant 0.25)
    torch.testing.assert_close(filled.colors[:, 2], torch.full((len(cloud),), 0.25))


def test_crop_to_face_keeps_projections(mesh):
    cam = Camera.orbit(width=300, height=200)
    xx = np.broadcast_to((np.arange(300, dtype=np.float32) + 0.5) / 300, (200, 300))
    photo = np.stack([xx, np.full_like(xx, 0.5), np.full_like(xx, 0.25)], -1)  # red = the photo's x
    crop, ccam = head.crop_to_face(photo, cam, mesh.vertices, size=64, margin=0.1)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.float32 and (ccam.width, ccam.height) == (64, 64)
    pts = torch.from_numpy(mesh.vertices)
    uv, uvc = cam.project(pts), ccam.project(pts)
    lo, hi = uv.min(0).values, uv.max(0).values
    side = float((hi - lo).max()) * (1 + 2 * 0.1)  # the box's long side plus the margins
    k, corner = 64 / side, (lo + hi) / 2 - side / 2
    torch.testing.assert_close(uvc, (uv - corner) * k, atol=1e-3, rtol=0)  # u' = (u - x0) · size / side
    assert float(uvc.min()) > 0 and float(uvc.max()) < 64
    long_axis = int((hi - lo).argmax())
    torch.testing.assert_close(uvc[:, long_axis].min(), torch.tensor(64 * 0.1 / 1.2), atol=1e-3, rtol=0)
    # the pixels moved with the camera: crop column j (centre j + 0.5) shows photo x = x0 + (j + 0.5) / k
    red = (float(corner[0]) + (np.arange(64) + 0.5) / k) / 300
    np.testing.assert_allclose(crop[:, :, 0], np.broadcast_to(red, (64, 64)), atol=1.5 / 255)
    np.testing.assert_allclose(crop[:, :, 1:], np.broadcast_to([128 / 255, 64 / 255], (64, 64, 2)), atol=1e-6)


def test_masked_psnr_and_load_photo():
    a = np.zeros((8, 8, 3), np.float32)
    b = a.copy()
    b[:4] = 0.1
    mask = np.zeros((8, 8), bool)
    mask[:4] = True
    assert head.masked_psnr(a, b, mask) == pytest.approx(20.0)
    assert head.masked_psnr(a, b, ~mask) == float("inf")
    with pytest.raises(ValueError, match="empty"):
        head.masked_psnr(a, b, np.zeros((8, 8), bool))
    assert head.load_photo(np.full((4, 5, 3), 255, np.uint8)).max() == 1.0
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        head.load_photo(np.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        head.load_photo(np.full((4, 5, 3), 7.0))
    with pytest.raises(FileNotFoundError):
        head.load_photo("/nonexistent/photo.png")


# --------------------------------------------------------------------------- fitting
def test_tiny_fit_lowers_the_loss(mesh):
    cam = Camera.orbit(width=40, height=40)
    g = head.seed_gaussians(mesh, n_gaussians=400, seed=1)
    # a target the cloud can reach: the same head with other colours, rendered by the renderer itself
    rng = np.random.default_rng(0)
    target_cloud = GaussianCloud(
        g.means,
        g.quats,
        g.scales * 1.2,
        torch.full((400,), 0.95),
        torch.from_numpy(rng.random((400, 3)).astype(np.float32)),
    )
    target = target_cloud.render(cam, backend="cpu")[0].numpy()
    mask = head.face_mask(g, cam, backend="cpu")
    assert mask.mean() > 0.2
    fitted, hist = head.fit_head(g, target, cam, iters=12, lr=0.05, progress=False, backend="cpu", mask=mask)
    assert len(hist.loss) == 12 and all(np.isfinite(hist.loss))
    assert np.mean(hist.loss[-3:]) < 0.8 * np.mean(hist.loss[:3])
    assert hist.psnr_after > hist.psnr_before
    assert hist.render.shape == (40, 40, 3)
    # offsets are bounded, normal scales and rotations kept, extras carried
    assert float((fitted.means - g.means).abs().max()) <= 0.02 + 1e-6
    torch.testing.assert_close(fitted.scales[:, 2], g.scales[:, 2])
    assert torch.equal(fitted.quats, g.quats) and torch.equal(fitted.extras["tri_index"], g.extras["tri_index"])


def test_fit_head_bad_inputs(mesh):
    g = head.seed_gaussians(mesh, n_gaussians=100)
    cam = Camera.orbit(width=32, height=32)
    with pytest.raises(ValueError, match="camera is 32x32"):
        head.fit_head(g, np.zeros((16, 16, 3), np.float32), cam, iters=1, progress=False)
    with pytest.raises(ValueError, match="mask must have shape"):
        head.fit_head(g, np.zeros((32, 32, 3), np.float32), cam, iters=1, progress=False, mask=np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="empty"):
        head.fit_head(g, np.zeros((32, 32, 3), np.float32), cam, iters=1, progress=False, mask=np.zeros((32, 32), bool))


# --------------------------------------------------------------------------- files and the one call
def test_shipped_head_loads_with_extras(mesh):
    g = head.load_head()
    assert 5000 <= len(g) <= 30000
    assert g.extras["tri_index"].dtype == torch.int64 and g.extras["bary"].shape == (len(g), 3)
    torch.testing.assert_close(g.extras["bary"].sum(1), torch.ones(len(g)), atol=1e-5, rtol=0)
    assert data_path("head.ply").stat().st_size < 3_000_000
    # it lives in the toolkit's world frame: near the canonical surface, seen by the front camera
    V, T = torch.from_numpy(mesh.vertices), torch.from_numpy(mesh.triangles)
    canon = torch.einsum("nk,nkd->nd", g.extras["bary"], V[T[g.extras["tri_index"]]])
    assert float((g.means - canon).norm(dim=1).median()) < 0.15
    uv = Camera.orbit(width=256, height=256).project(g.means)
    assert bool(((uv > 0) & (uv < 256)).all())
    normals = quat_to_rotmat(g.quats)[:, :, 2]
    assert float(normals[:, 2].mean()) > 0.5  # the face looks along +z, at the yaw-0 camera
    assert abs(float(g.means[:, 0].mean())) < 0.05  # and is centred left-right
    assert 0.2 < float(g.colors.mean()) < 0.9 and float(g.colors.std()) > 0.05  # photo colours, not grey


def test_save_and_load_head_round_trip(tmp_path, cloud):
    p = head.save_head(cloud, tmp_path / "h.ply")
    g = head.load_head(p)
    assert g.allclose(cloud, atol=1e-6)
    header = p.read_bytes()[:4000].decode("ascii", errors="replace")
    assert "f_rest_0" not in header  # compact: SH degree 0 only


def test_load_head_default_is_looked_up_when_called(tmp_path, monkeypatch, cloud):
    head.save_head(cloud, tmp_path / "head.ply")
    monkeypatch.setenv("EMOZONE_DATA", str(tmp_path))  # set after import: load_head still sees it
    assert head.load_head().allclose(cloud, atol=1e-6)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("EMOZONE_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="head.ply.*build_head"):
        head.load_head()


def test_load_head_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_head"):
        head.load_head(tmp_path / "missing.ply")
    plain = save_ply(GaussianCloud.from_points(torch.zeros(5, 3)), tmp_path / "plain.ply")
    with pytest.raises(ValueError, match="tri_index"):
        head.load_head(plain)
    bad = GaussianCloud.from_points(torch.zeros(5, 3))
    bad.extras = {"tri_index": torch.full((5,), 5000), "bary": torch.full((5, 3), 1 / 3)}
    save_ply(bad, tmp_path / "bad.ply")
    with pytest.raises(ValueError, match="tri_index must hold integers"):
        head.load_head(tmp_path / "bad.ply")
    with pytest.raises(ValueError, match="lacks the head extras"):
        head.save_head(GaussianCloud.from_points(torch.zeros(5, 3)), tmp_path / "x.ply")


def test_build_head_without_a_face_raises(tmp_path):
    pytest.importorskip("mediapipe")
    blank = np.full((128, 128, 3), 200, np.uint8)
    with pytest.raises(ValueError, match="no face"):
        head.build_head(blank, n_gaussians=100, iters=0, progress=False)
    with pytest.raises(ValueError, match="no face"):
        head.register_mesh_to_photo(None, blank)


def test_register_on_the_astronaut(mesh):
    pytest.importorskip("mediapipe")
    cam, fit = head.register_mesh_to_photo(mesh, data_path("astronaut.png"))
    assert (cam.width, cam.height) == (512, 512)
    assert fit.rigid_rmse_px < 10 and fit.rmse_px < 1e-3
    assert abs(fit.yaw_deg) < 15 and abs(fit.pitch_deg) < 15
    g = head.build_head(data_path("astronaut.png"), n_gaussians=300, iters=0, progress=False, fit_size=64)
    face = head.follows_mesh(g)
    # the 300 seeded Gaussians minus those on the photographed teeth, plus the mouth interior
    assert 250 < int(face.sum()) <= 300 and len(g) > 300 and float(g.colors[face].std()) > 0.05


def test_build_head_end_to_end_small(tmp_path):
    pytest.importorskip("mediapipe")
    out = tmp_path / "small_head.ply"
    g = head.build_head(
        data_path("astronaut.png"), n_gaussians=400, iters=3, out_path=out, fit_size=48, progress=False, device="cpu"
    )
    loaded = head.load_head(out)
    assert 350 < int(head.follows_mesh(loaded).sum()) <= 400 and loaded.allclose(g, atol=1e-6)
