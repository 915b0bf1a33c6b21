"""Tests of emozone_lite.head.portrait: the whole portrait (hair, neck, shoulders, background)
around the face head.

* ``build_portrait`` end to end on the bundled photo at 64² (one module-scoped build, ~60
  iterations): the fit beats the seeded portrait, every scenery part is there, the face head
  is kept bit for bit (first in the cloud, with its part codes), ``head_weight`` is 1 on the
  head, 0 on torso and background and in [0, 1] on the neck, and density control refined
  (clone / split) and reset the opacities;
* how the parts move: ``pose_portrait`` (identity at 0°, torso and background still, face and
  skull rigid, each neck Gaussian turned by its own share of the rotation) and ``carry_parts``
  (an AU / speech deformation leaves the scenery exactly where it is);
* ``save_portrait`` → ``load_ply`` (degree-1 SH in ``f_rest_0..8``, the portrait's extras);
* the ray casting of ``Proxy.hit`` (ellipsoid, plane, ``y_range`` clipping) against hand-computed
  hits, ``portrait_camera`` (an orbit about the target) and ``render_portrait`` (view-dependent SH);
* ``fit_portrait`` resumed from a checkpoint matches the uninterrupted fit (tiny synthetic scene,
  32² camera), written atomically;
* validation of ``PortraitConfig`` and ``fit_portrait``'s photo.

The machine running the suite is small: one tiny portrait is built once and shared.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emozone_lite.camera import Camera, look_at
from emozone_lite.gaussians import GaussianCloud, load_ply
from emozone_lite.geometry import normalize_quat, quat_to_rotmat
from emozone_lite.head import carry_parts, load_head
from emozone_lite.head.density import DensityConfig
from emozone_lite.head.parts import BACKGROUND, FACE, NECK, SCENERY_PARTS, SKULL, TORSO, parts_of
from emozone_lite.head.portrait import (
    PortraitConfig,
    Proxy,
    build_portrait,
    fit_portrait,
    portrait_camera,
    pose_portrait,
    render_portrait,
    save_portrait,
)
from emozone_lite.landmarks import load_canonical_mesh

# A short schedule (refine every 10 from 10, a reset at 20) at 64². With the paper's reset
# opacity (0.01) the seen layer needs far more than 20 iterations to come back (40 iterations:
# 6.7 dB against 17.3 dB seeded), so the reset here caps the opacities at 0.3 and the fit runs 60
# iterations: measured 17.33 → 20.16 dB, SSIM 0.80.
CONFIG = PortraitConfig(
    size=64,
    stride=2,
    iters=60,
    fill_stride=8,
    density=DensityConfig(
        refine_start=10, refine_stop=35, refine_every=10, reset_every=20, max_gaussians=3000, reset_opacity=0.3
    ),
)


@pytest.fixture(scope="module")
def head():
    return load_head()


@pytest.fixture(scope="module")
def built():
    return build_portrait(config=CONFIG, progress=False, backend="cpu")


def _with(cloud: GaussianCloud, **extras) -> GaussianCloud:
    """A copy of ``cloud`` with some extras replaced (``None``: dropped)."""
    ex = {k: v for k, v in {**cloud.extras, **extras}.items() if v is not None}
    return GaussianCloud(cloud.means, cloud.quats, cloud.scales, cloud.opacities, cloud.colors, extras=ex)


# ------------------------------------------------------------------------------ build_portrait
def test_build_portrait_fits_and_keeps_the_face_head(built, head):
    assert built.psnr > built.psnr_seeded + 1.5, (built.psnr_seeded, built.psnr)  # measured 17.33 → 20.16
    assert built.psnr > 18.5 and built.ssim > 0.7, (built.psnr, built.ssim)  # measured 20.16, 0.80
    assert len(built.losses) == CONFIG.iters and built.losses[-1] < 0.75 * built.losses[0], built.losses[
        ::10
    ]  # 0.131 → 0.063
    p, n = built.portrait, len(head)
    assert len(p) > n
    part = parts_of(p)
    for code in SCENERY_PARTS:
        assert int((part == code).sum()) > 0, f"no Gaussian of part {code}"
    # the face head first, bit for bit, with its own parts; everything after it is scenery
    for name in ("means", "colors", "opacities", "scales", "quats"):
        torch.testing.assert_close(getattr(p, name)[:n], getattr(head, name), rtol=0, atol=0, msg=name)
    torch.testing.assert_close(part[:n], parts_of(head), rtol=0, atol=0)
    assert torch.isin(part[n:], torch.tensor(SCENERY_PARTS)).all()
    for key in ("tri_index", "bary"):
        torch.testing.assert_close(p.extras[key][:n], head.extras[key].to(p.extras[key].dtype), rtol=0, atol=0)
    assert p.extras["sh_rest"].shape == (len(p), 3, 3)  # degree 1
    assert bool((p.extras["sh_rest"][:n] == 0).all()) and float(p.extras["sh_rest"][n:].abs().max()) > 0


def test_head_weight_by_part(built, head):
    p, n = built.portrait, len(head)
    w, part = p.extras["head_weight"], parts_of(p)
    assert bool((w[:n] == 1).all())
    assert bool((w[part == SKULL] == 1).all())
    assert bool((w[(part == TORSO) | (part == BACKGROUND)] == 0).all())
    wn = w[part == NECK]
    assert bool(((wn >= 0) & (wn <= 1)).all())
    assert int(((wn > 0.05) & (wn < 0.95)).sum()) > 10, "the neck blends from torso (0) to chin (1)"


def test_density_control_refined_and_reset(built):
    h = built.history
    assert any(e["cloned"] + e["split"] > 0 for e in h), h
    assert any(e["reset"] for e in h), h
    assert [e["it"] for e in h if e["reset"]] == [20]
    assert max(e["n"] for e in h) <= CONFIG.density.max_gaussians


# ------------------------------------------------------------------------------ motion
def test_pose_portrait_zero_is_the_identity(built):
    p = built.portrait
    m, q = pose_portrait(p.means, p.quats, p, built.pivot, 0.0, 0.0)
    torch.testing.assert_close(m, p.means, rtol=0, atol=0)
    torch.testing.assert_close(q, normalize_quat(p.quats), rtol=0, atol=0)


def test_pose_portrait_turns_the_head_and_keeps_the_scenery(built, head):
    p, n = built.portrait, len(head)
    part = parts_of(p)
    yaw, pitch = 20.0, 10.0
    m, q = pose_portrait(p.means, p.quats, p, built.pivot, yaw, pitch)
    still = (part == TORSO) | (part == BACKGROUND)
    torch.testing.assert_close(m[still], p.means[still], rtol=0, atol=0)
    torch.testing.assert_close(q[still], normalize_quat(p.quats[still]), rtol=0, atol=0)

    # face (all of the face head) and skull: one rigid motion
    rigid = torch.zeros(len(p), dtype=torch.bool)
    rigid[:n] = True
    rigid |= part == SKULL
    idx = torch.nonzero(rigid).squeeze(1)
    sub = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))[:300]]
    dist = lambda x: (x[:, None] - x[None]).norm(dim=-1)
    torch.testing.assert_close(dist(m[sub]), dist(p.means[sub]), rtol=0, atol=2e-6)
    moved = (m[rigid] - p.means[rigid]).norm(dim=1)
    assert float(moved.min()) > 1e-3 and float(moved.median()) > 0.2, moved  # everything on the head moves
    R_rel = quat_to_rotmat(q[sub]) @ quat_to_rotmat(normalize_quat(p.quats[sub])).transpose(1, 2)
    torch.testing.assert_close(R_rel, R_rel[:1].expand_as(R_rel), rtol=0, atol=1e-4)  # the same rotation
    angle = math.degrees(math.acos((float(R_rel[0].trace()) - 1) / 2))
    assert 20.0 < angle < 23.0, angle  # yaw 20° then pitch 10°: about 22.3°

    # the neck: each Gaussian turns by its share w of the rotation
    neck = torch.nonzero(part == NECK).squeeze(1)
    w = p.extras["head_weight"]
    full = _with(p, head_weight=torch.ones(len(p)))
    m1, _ = pose_portrait(p.means, p.quats, full, built.pivot, yaw, pitch)  # every Gaussian at w = 1
    d = (m[neck] - p.means[neck]).norm(dim=1)
    d1 = (m1[neck] - p.means[neck]).norm(dim=1)
    assert bool((d <= d1 + 1e-6).all()) and bool((d >= 0).all())
    inner = (w[neck] > 0.05) & (w[neck] < 0.95)
    assert bool((d[inner] < d1[inner]).all()) and bool((d[inner] > 0).all())
    for i in neck[torch.nonzero(inner).squeeze(1)[:5]].tolist():  # exactly the rotation by (w·yaw, w·pitch)
        wi = float(w[i])
        mi, qi = pose_portrait(p.means[i : i + 1], p.quats[i : i + 1], full.subset(torch.tensor([i])), built.pivot,
                               wi * yaw, wi * pitch)  # fmt: skip
        torch.testing.assert_close(m[i : i + 1], mi, rtol=0, atol=1e-5)
        torch.testing.assert_close(q[i : i + 1], qi, rtol=0, atol=1e-5)


def test_pose_portrait_needs_head_weight(built):
    p = _with(built.portrait, head_weight=None)
    with pytest.raises(ValueError, match="head_weight"):
        pose_portrait(p.means, p.quats, p, built.pivot, 10.0, 0.0)


def test_carry_parts_leaves_the_scenery_rigid(built):
    p = built.portrait
    part = parts_of(p)
    rest = torch.as_tensor(np.asarray(load_canonical_mesh().vertices), dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    disp = 0.01 * torch.randn((2, *rest.shape), generator=g)
    jaw = 0.005 * torch.randn((2, *rest.shape), generator=g)
    m, q, s = carry_parts(p, rest, disp, jaw, torch.tensor([0.05, 0.1]))
    scenery = torch.isin(part, torch.tensor(SCENERY_PARTS))
    for t in range(2):
        torch.testing.assert_close(m[t, scenery], p.means[scenery], rtol=0, atol=0)
        torch.testing.assert_close(s[t, scenery], p.scales[scenery], rtol=0, atol=0)
        torch.testing.assert_close(q[t, scenery], normalize_quat(p.quats[scenery]), rtol=0, atol=0)
    face = part == FACE
    assert float((m[:, face] - p.means[face]).norm(dim=-1).mean()) > 1e-3
    assert float((s[:, face] - p.scales[face]).abs().max()) > 0


# ------------------------------------------------------------------------------ files
def test_save_portrait_round_trips_through_load_ply(built, tmp_path):
    p = built.portrait
    path = save_portrait(p, tmp_path / "p.ply")
    data = path.read_bytes()
    header = data[: data.index(b"end_header\n")].decode("ascii")
    props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    assert [x for x in props if x.startswith("f_rest_")] == [f"f_rest_{i}" for i in range(9)]
    back = load_ply(path)
    assert len(back) == len(p)
    torch.testing.assert_close(back.means, p.means, rtol=0, atol=0)
    assert back.extras["sh_rest"].shape == (len(p), 3, 3)
    torch.testing.assert_close(back.extras["sh_rest"], p.extras["sh_rest"], rtol=0, atol=1e-7)
    torch.testing.assert_close(back.colors, p.colors, rtol=0, atol=1e-6)
    torch.testing.assert_close(back.opacities, p.opacities, rtol=0, atol=1e-6)
    torch.testing.assert_close(back.extras["part"].long(), p.extras["part"], rtol=0, atol=0)
    torch.testing.assert_close(back.extras["head_weight"].float(), p.extras["head_weight"], rtol=0, atol=0)


# ------------------------------------------------------------------------------ proxies
def test_proxy_hit_ellipsoid():
    sphere = Proxy(SKULL, np.array([0.0, 0.0, 5.0]), np.eye(3), np.ones(3))
    o = np.zeros(3)
    t, n = sphere.hit(o, np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]))
    assert t[0] == pytest.approx(4.0, abs=1e-12)
    np.testing.assert_allclose(n[0], [0.0, 0.0, -1.0], atol=1e-12)
    assert np.isinf(t[1]) and np.isinf(t[2])  # off to the side; pointing away
    # from inside: the far wall, normal outwards
    t, n = sphere.hit(np.array([0.0, 0.0, 5.0]), np.array([[0.0, 0.0, 1.0]]))
    assert t[0] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(n[0], [0.0, 0.0, 1.0], atol=1e-12)
    # an ellipsoid: semi-axis 2 along x, hit from the side
    ell = Proxy(TORSO, np.array([0.0, 0.0, 5.0]), np.eye(3), np.array([2.0, 1.0, 1.0]))
    t, n = ell.hit(np.array([-10.0, 0.0, 5.0]), np.array([[1.0, 0.0, 0.0]]))
    assert t[0] == pytest.approx(8.0, abs=1e-12)
    np.testing.assert_allclose(n[0], [-1.0, 0.0, 0.0], atol=1e-12)


def test_proxy_hit_plane():
    plane = Proxy(BACKGROUND, np.array([0.0, 0.0, 3.0]), np.eye(3), None)
    d = np.array([[0.0, 0.0, 1.0], [0.0, 0.6, 0.8], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    t, n = plane.hit(np.zeros(3), d)
    assert t[0] == pytest.approx(3.0) and t[1] == pytest.approx(3.75)
    assert np.isinf(t[2]) and np.isinf(t[3])  # behind the ray; parallel to the plane
    np.testing.assert_allclose(n, np.tile([0.0, 0.0, 1.0], (4, 1)))
    # a tilted plane: the normal is axes[2]
    c, s = math.cos(0.3), math.sin(0.3)
    axes = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    tilted = Proxy(BACKGROUND, np.array([0.0, 0.0, 3.0]), axes, None)
    t, n = tilted.hit(np.zeros(3), d[:1])
    assert t[0] == pytest.approx(3.0)  # the centre lies on the ray
    np.testing.assert_allclose(n[0], axes[2])


def test_proxy_hit_y_range_clips_the_ellipsoid():
    neck = Proxy(NECK, np.array([0.0, 0.0, 5.0]), np.eye(3), np.array([1.0, 2.0, 1.0]), y_range=(-1.0, 0.5))
    unclipped = Proxy(NECK, neck.centre, neck.axes, neck.radii)
    d = np.array([[0.0, 0.0, 1.0]])
    t, _ = neck.hit(np.array([0.0, 0.3, 0.0]), d)  # inside the band: the near wall
    assert t[0] == pytest.approx(5.0 - math.sqrt(1 - 0.3**2 / 4), abs=1e-12)
    t, _ = neck.hit(np.array([0.0, 1.0, 0.0]), d)  # above the band: no hit (but the full ellipsoid is hit)
    assert np.isinf(t[0]) and np.isfinite(unclipped.hit(np.array([0.0, 1.0, 0.0]), d)[0][0])
    # a slanted ray enters above the band (y ≈ 0.89, clipped) and leaves inside it (y ≈ -0.89)
    o, dd = np.array([0.0, 2.0, 3.0]), np.array([[0.0, -1.0, 1.0]]) / math.sqrt(2)
    s_far = 2 + math.sqrt(0.8)
    t, n = neck.hit(o, dd)
    assert t[0] == pytest.approx(s_far * math.sqrt(2), abs=1e-9)
    p_local = np.array([0.0, 2 - s_far, s_far - 2])
    expect = p_local / neck.radii**2
    np.testing.assert_allclose(n[0], expect / np.linalg.norm(expect), atol=1e-9)
    assert unclipped.hit(o, dd)[0][0] == pytest.approx((2 - math.sqrt(0.8)) * math.sqrt(2), abs=1e-9)


# ------------------------------------------------------------------------------ camera and rendering
def test_portrait_camera_orbits_the_target(built):
    base, target = built.camera, built.target
    same = portrait_camera(base, target, yaw_deg=0.0, pitch_deg=0.0)
    torch.testing.assert_close(same.viewmat, base.viewmat, rtol=0, atol=1e-6)
    torch.testing.assert_close(same.K, base.K, rtol=0, atol=0)
    assert (same.width, same.height) == (base.width, base.height)
    tgt = torch.as_tensor(np.asarray(target), dtype=torch.float32)[None]
    uv0 = base.project(tgt)

    def centre(cam):
        R, t = cam.viewmat[:3, :3].double(), cam.viewmat[:3, 3].double()
        return -R.T @ t

    dist0 = float((centre(base) - tgt[0].double()).norm())
    for yaw, pitch in [(30.0, 0.0), (-30.0, 0.0), (0.0, 15.0), (0.0, -15.0)]:
        cam = portrait_camera(base, target, yaw_deg=yaw, pitch_deg=pitch)
        torch.testing.assert_close(cam.project(tgt), uv0, rtol=0, atol=1e-3)
        assert float((centre(cam) - tgt[0].double()).norm()) == pytest.approx(dist0, rel=1e-5)
        R_rel = cam.viewmat[:3, :3].double() @ base.viewmat[:3, :3].double().T
        angle = math.degrees(math.acos(min(1.0, (float(R_rel.trace()) - 1) / 2)))
        assert angle == pytest.approx(abs(yaw) + abs(pitch), abs=1e-3)
    big = portrait_camera(base, target, yaw_deg=10.0, size=2 * base.width)
    assert (big.width, big.height) == (2 * base.width, 2 * base.width)
    torch.testing.assert_close(big.K[:2], 2 * base.K[:2], rtol=1e-6, atol=0)
    torch.testing.assert_close(big.project(tgt), 2 * uv0, rtol=0, atol=2e-3)


def test_render_portrait_shape_and_sh_view_dependence(built):
    p, cam = built.portrait, built.camera
    img = render_portrait(p, cam, backend="cpu")
    assert img.shape == (cam.height, cam.width, 3) and bool(torch.isfinite(img).all())
    side = portrait_camera(cam, built.target, yaw_deg=-30.0)
    rest = p.extras["sh_rest"]
    zero = _with(p, sh_rest=torch.zeros_like(rest))
    loud = _with(p, sh_rest=0.5 * torch.randn(rest.shape, generator=torch.Generator().manual_seed(0)))
    a = render_portrait(zero, side, backend="cpu")
    b = render_portrait(loud, side, backend="cpu")
    assert a.shape == (cam.height, cam.width, 3)
    assert float((a - b).abs().mean()) > 0.02, float((a - b).abs().mean())
    # zero higher bands render as degree 0
    torch.testing.assert_close(a, render_portrait(zero, side, backend="cpu", sh_degree=0), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------ fit_portrait
def _tiny_scene(n: int = 80):
    """``(seen, camera, photo)``: a 32² camera looking at a plane of random discs, the photo two colours."""
    g = torch.Generator().manual_seed(1)
    cam = Camera(look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0)), torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]),
                 32, 32)  # fmt: skip
    means = torch.cat([2.4 * torch.rand((n, 2), generator=g) - 1.2, 0.05 * torch.randn((n, 1), generator=g)], 1)
    quats = normalize_quat(torch.randn((n, 4), generator=g))
    seen = GaussianCloud(
        means, quats, torch.full((n, 3), 0.12), torch.full((n,), 0.6), torch.rand((n, 3), generator=g),
        extras={"part": torch.full((n,), BACKGROUND, dtype=torch.long), "head_weight": torch.zeros(n),
                "sh_rest": torch.zeros(n, 3, 3)},
    )  # fmt: skip
    photo = np.zeros((32, 32, 3), np.float32)
    photo[:, :16] = (0.9, 0.2, 0.1)
    photo[:, 16:] = (0.1, 0.3, 0.8)
    photo[8:14, 8:24] = 1.0
    return seen, cam, photo


TINY = dict(
    size=32, iters=24, checkpoint_every=8,
    density=DensityConfig(refine_start=4, refine_stop=22, refine_every=6, reset_every=10, grad_threshold=1e-4,
                          max_gaussians=400),
)  # fmt: skip


def test_fit_portrait_resumes_from_its_checkpoint(tmp_path):
    seen, cam, photo = _tiny_scene()
    cfg = PortraitConfig(**TINY)
    full, info = fit_portrait(seen, None, photo, cam, cfg, checkpoint=tmp_path / "full.pt", progress=False)
    assert info["resumed_from"] is None and len(info["losses"]) == 24
    assert info["losses"][5] < info["losses"][0] - 0.01  # before the first split (0.516 → 0.500 measured)
    assert any(e["cloned"] + e["split"] > 0 for e in info["history"]) and any(e["reset"] for e in info["history"])

    # interrupted at 16, between the refinements at 12 and 18 (the gradient statistics travel in the
    # checkpoint) and after the reset at 10; then resumed to 24 with the same path
    ck = tmp_path / "ck.pt"
    half, info_half = fit_portrait(seen, None, photo, cam, PortraitConfig(**{**TINY, "iters": 16}), checkpoint=ck,
                                   progress=False)  # fmt: skip
    assert info_half["resumed_from"] is None and len(info_half["losses"]) == 16
    assert torch.load(ck, weights_only=False)["it"] == 16
    assert info_half["history"] == [e for e in info["history"] if e["it"] <= 16]
    resumed, info_res = fit_portrait(seen, None, photo, cam, cfg, checkpoint=ck, progress=False)
    assert info_res["resumed_from"] == 16
    assert len(info_res["losses"]) == 24
    np.testing.assert_allclose(info_res["losses"], info["losses"], rtol=1e-4, atol=1e-6)
    assert info_res["history"] == info["history"]
    assert len(resumed) == len(full)
    for name in ("means", "scales", "quats", "opacities", "colors"):
        torch.testing.assert_close(getattr(resumed, name), getattr(full, name), rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(resumed.extras["sh_rest"], full.extras["sh_rest"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(resumed.extras["part"], full.extras["part"], rtol=0, atol=0)
    assert torch.load(ck, weights_only=False)["it"] == 24
    # written atomically: no temporary file left beside the checkpoints
    assert sorted(f.name for f in tmp_path.iterdir()) == ["ck.pt", "full.pt"]


def test_fit_portrait_composites_the_front_over_the_fit():
    seen, cam, photo = _tiny_scene(20)
    cfg = PortraitConfig(**{**TINY, "iters": 2})
    target = torch.as_tensor(photo)
    _, opaque = fit_portrait(seen, (target, torch.ones(32, 32, 1)), photo, cam, cfg, progress=False)
    assert max(opaque["losses"]) < 1e-6, opaque["losses"]  # an opaque front showing the photo: nothing to fit
    _, clear = fit_portrait(seen, (torch.zeros(32, 32, 3), torch.zeros(32, 32, 1)), photo, cam, cfg, progress=False)
    _, none = fit_portrait(seen, None, photo, cam, cfg, progress=False)
    np.testing.assert_allclose(clear["losses"], none["losses"], rtol=1e-6)  # a transparent front: as without
    assert none["losses"][0] > 0.3


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kwargs, field",
    [({"sh_degree": 4}, "sh_degree"), ({"stride": 0}, "stride"), ({"iters": -1}, "iters"), ({"size": 0}, "size")],
)
def test_portrait_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PortraitConfig(**kwargs)


def test_fit_portrait_rejects_a_photo_of_the_wrong_shape():
    seen, cam, photo = _tiny_scene(10)
    with pytest.raises(ValueError, match="photo"):
        fit_portrait(seen, None, photo[:16], cam, PortraitConfig(**TINY), progress=False)


# ------------------------------------------------------------------------------ the bundled portrait
@pytest.fixture(scope="module")
def bundled():
    from emozone_lite.head.portrait import load_portrait

    return load_portrait()


def test_bundled_portrait_loads_with_its_camera(bundled, head):
    from emozone_lite.head.portrait import matches_head

    assert len(bundled.cloud) >= 50_000 and bundled.n_face == len(head)
    torch.testing.assert_close(bundled.cloud.means[: len(head)], head.means, rtol=0, atol=0)
    assert bundled.cloud.extras["sh_rest"].shape == (len(bundled.cloud), 3, 3)  # SH degree 1
    assert set(SCENERY_PARTS) <= set(parts_of(bundled.cloud).tolist())
    assert matches_head(bundled, head.means[::7]) and not matches_head(bundled, head.means[:50] + 1e-3)
    cam = bundled.view(size=64)
    assert cam.width == 64 and cam.K[0, 0] == pytest.approx(float(bundled.camera.K[0, 0]) / 4, rel=1e-6)


def test_zoom_centres_the_face(bundled):
    cam = bundled.view(yaw_deg=20, size=96, zoom=2.5)
    uv = cam.project(torch.as_tensor(bundled.target, dtype=torch.float32)[None])[0]
    torch.testing.assert_close(uv, torch.tensor([48.0, 48.0]), atol=1e-3, rtol=0)
    wide = bundled.view(yaw_deg=20, size=96)
    assert float(cam.K[0, 0]) == pytest.approx(2.5 * float(wide.K[0, 0]), rel=1e-6)
    with pytest.raises(ValueError, match="zoom must be > 0"):
        bundled.view(zoom=0.0)


def test_framing_zoom_makes_the_face_a_third_of_the_width(bundled):
    """``Portrait.framing_zoom``: at that zoom the face spans ``face_share`` of the image's width;
    never below 1 (a face that already fills the photo stays as photographed)."""
    z = bundled.framing_zoom()
    assert 1.9 < z < 2.1, z  # the bundled portrait: 2.02 (the studio's and demo's 2.0)
    cam = bundled.view(size=128, zoom=z)
    u = cam.project(bundled.cloud.means[: bundled.n_face].float())[:, 0]
    assert float(u.quantile(0.99) - u.quantile(0.01)) / 128 == pytest.approx(0.35, abs=0.01)
    assert bundled.framing_zoom(face_share=0.05) == 1.0


@pytest.mark.parametrize("yaw", [-30.0, 0.0, 30.0])
def test_face_over_scenery_equals_the_joint_render(bundled, yaw):
    """``face + (1 − α) · render_scenery`` (how the studio and demo draw a model's face into the
    portrait) against rendering every Gaussian together: the scenery lies behind the face, up to
    a thin rim at oblique views (measured on the shipped portrait at 128², zoom 2.5: PSNR 44.5 dB
    at 0°, 33.5 / 33.2 dB at −30° / +30°, at most 1.2 % of the pixels off by more than 0.1)."""
    from emozone_lite.head.portrait import render_scenery
    from emozone_lite.metrics import psnr
    from emozone_lite.render import rasterize

    cam = bundled.view(yaw_deg=yaw, size=128, zoom=2.5)
    joint = render_portrait(bundled.cloud, cam, backend="cpu")
    n = bundled.n_face
    c = bundled.cloud
    face, alpha, _ = rasterize(c.means[:n], c.quats[:n], c.scales[:n], c.opacities[:n], c.colors[:n],
                               cam.viewmat[None], cam.K[None], 128, 128, backend="cpu")  # fmt: skip
    composed = face[0] + (1 - alpha[0]) * render_scenery(bundled, cam, backend="cpu")
    off = float(((composed - joint).abs().amax(-1) > 0.1).float().mean())
    assert float(psnr(composed, joint)) > (40.0 if yaw == 0 else 31.0) and off < 0.02, (yaw, off)


def test_load_portrait_errors(tmp_path, bundled):
    from emozone_lite.head.portrait import load_portrait

    with pytest.raises(FileNotFoundError, match="build_portrait.py"):
        load_portrait(tmp_path / "none.ply")
    save_portrait(bundled.cloud.subset(torch.arange(100)), tmp_path / "p.ply")  # no camera: no sidecar
    with pytest.raises(FileNotFoundError, match="sidecar 'p.json' is missing"):
        load_portrait(tmp_path / "p.ply")
    save_portrait(load_head().subset(torch.arange(50)), tmp_path / "h.ply", bundled.camera, bundled.pivot,
                  bundled.target, 50)  # fmt: skip
    with pytest.raises(ValueError, match="lacks the portrait properties"):
        load_portrait(tmp_path / "h.ply")
