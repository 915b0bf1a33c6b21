"""Tests of the emozone_lite.render package: the CPU rasterizer (``render._cpu``) against
its readable torch twin (``render._torch``), both against gsplat's pure-torch reference
code, property tests (hypothesis) of cpu == torch on random small scenes, and every
bad-input path.

Scenes are small (tens of Gaussians, 40×30 pixels) so the file runs in well under a
minute on two cores once numba has compiled the kernels (cached on disk).
"""

from __future__ import annotations

import doctest
import importlib
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from emozone_lite.camera import Camera, look_at
from emozone_lite.render import ALPHA_THRESHOLD, MAX_ALPHA, T_STOP, _torch, project_gaussians, rasterize, render_image

W, H = 40, 30  # not a multiple of the tile size: partial tiles on the right and bottom


# --------------------------------------------------------------------------- scenes
def _cameras(C: int, width: int = W, height: int = H, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    viewmats, Ks = [], []
    for c in range(C):
        yaw = (c * 0.6 + 0.2 * float(torch.rand((), generator=g))) - 0.3
        eye = (3.0 * math.sin(yaw), 0.3 * c, 3.0 * math.cos(yaw))
        viewmats.append(look_at(eye, (0.0, 0.0, 0.0)))
        f = 35.0 + 5.0 * c
        Ks.append(torch.tensor([[f, 0.0, width / 2 + c], [0.0, f * 1.05, height / 2 - c], [0.0, 0.0, 1.0]]))
    return torch.stack(viewmats), torch.stack(Ks)


def _scene(
    N: int = 80,
    C: int = 1,
    D: int = 3,
    seed: int = 0,
    per_camera_colors: bool = False,
    specials: bool = True,
    width: int = W,
    height: int = H,
):
    """Random Gaussians around the origin seen by C cameras, plus awkward cases.

    With ``specials``: one Gaussian behind camera 0, one exactly in its camera plane
    (z = 0), one far outside the image, near-degenerate (flat / tiny) scales, an
    opacity below 1/255 and two fully opaque ones.
    """
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(N, 3, generator=g) * 2 - 1) * torch.tensor([0.9, 0.7, 0.5])
    quats = torch.randn(N, 4, generator=g)
    scales = torch.exp(torch.empty(N, 3).uniform_(math.log(0.02), math.log(0.15), generator=g))
    opacities = torch.empty(N).uniform_(0.05, 1.0, generator=g)
    viewmats, Ks = _cameras(C, width, height, seed)
    if specials and N >= 8:
        R, t = viewmats[0, :3, :3], viewmats[0, :3, 3]
        centre = -R.T @ t  # camera 0's centre in world space
        forward = R[2]  # its viewing direction
        means[0] = centre - 0.5 * forward  # behind the camera
        means[1] = centre + 0.3 * R[0]  # in the camera plane: z = 0
        means[2] = torch.tensor([40.0, 0.0, 0.0])  # far outside every image
        scales[3] = torch.tensor([0.1, 0.1, 1e-7])  # flat disc
        scales[4] = torch.full((3,), 1e-7)  # a point: only eps2d keeps it visible
        opacities[5] = 0.003  # below 1/255: culled
        opacities[6] = 1.0
        opacities[7] = 1.0
    shape = (C, N, D) if per_camera_colors else (N, D)
    colors = torch.rand(shape, generator=g)
    return means, quats, scales, opacities, colors, viewmats, Ks


def _grads_of(
    backend, means, quats, scales, opacities, colors, viewmats, Ks, width=W, height=H, backgrounds=None, seed=0
):
    """Render, back-propagate a random weighting of colours and alphas; return values and grads."""
    ps = [t.detach().clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors)]
    bg = None if backgrounds is None else backgrounds.detach().clone().requires_grad_(True)
    img, alpha, meta = rasterize(*ps, viewmats, Ks, width, height, backend=backend, backgrounds=bg)
    g = torch.Generator().manual_seed(seed + 7)
    loss = (img * torch.randn(img.shape, generator=g)).sum() + (alpha * torch.randn(alpha.shape, generator=g)).sum()
    loss.backward()
    grads = [p.grad for p in ps] + ([bg.grad] if bg is not None else [])
    return img.detach(), alpha.detach(), meta, grads


def _assert_grads_close(got, ref, names):
    for name, a, b in zip(names, got, ref):
        assert a is not None and b is not None, name
        assert torch.isfinite(a).all(), f"non-finite gradient of {name}"
        scale = float(b.abs().max()) + 1e-12
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * scale, msg=lambda m, name=name: f"grad of {name}: {m}")


NAMES = ["means", "quats", "scales", "opacities", "colors", "backgrounds"]


# --------------------------------------------------------------------------- projection
def test_projection_matches_gsplat_reference():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    means, quats, scales, opacities, _, viewmats, Ks = _scene(N=300, C=3, seed=1)
    radii, means2d, depths, conics = project_gaussians(means, quats, scales, viewmats, Ks, W, H)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    g_radii, g_means2d, g_depths, g_conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, W, H)
    assert radii.shape == (3, 300, 2) and radii.dtype == torch.int32
    torch.testing.assert_close(radii, g_radii, rtol=0, atol=0)
    torch.testing.assert_close(depths, g_depths, rtol=1e-6, atol=1e-6)
    valid = (radii > 0).all(-1)
    assert 0 < int(valid.sum()) < valid.numel()  # some culled, some kept
    torch.testing.assert_close(means2d[valid], g_means2d[valid], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(conics[valid], g_conics[valid], rtol=1e-4, atol=1e-6)
    assert (means2d[~valid] == 0).all() and (conics[~valid] == 0).all()
    assert not valid[0, 0] and not valid[0, 1] and not valid[:, 2].any()  # behind, in the plane, outside


def test_projection_opacity_aware_radii():
    means, quats, scales, opacities, _, viewmats, Ks = _scene(N=200, C=2, seed=2)
    r_plain = project_gaussians(means, quats, scales, viewmats, Ks, W, H)[0]
    r_op = project_gaussians(means, quats, scales, viewmats, Ks, W, H, opacities=opacities)[0]
    assert (r_op <= r_plain).all()
    assert (r_op[:, opacities < 1 / 255] == 0).all()
    assert (r_op[:, 6] == r_plain[:, 6]).all()  # opacity 1: sqrt(2 ln 255) rounds up like 3.33 here
    lower = (opacities > 1 / 255) & (opacities < 0.5)
    assert (r_op[:, lower] < r_plain[:, lower]).any()  # faint Gaussians get tighter boxes


def test_projection_gradients_finite_at_camera_plane():
    means, quats, scales, opacities, colors, viewmats, Ks = _scene(N=20, seed=3)
    means = means.clone().requires_grad_(True)
    radii, means2d, depths, conics = project_gaussians(means, quats, scales, viewmats, Ks, W, H)
    assert float(depths[0, 1].detach()) == pytest.approx(0.0, abs=1e-6)
    (means2d.sum() + conics.sum()).backward()
    assert torch.isfinite(means.grad).all()
    assert (means.grad[:3] == 0).all()  # culled Gaussians get no gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_opacity", [False, True])
def test_numba_projection_matches_torch_values_and_grads(dtype, with_opacity):
    """The cpu backend's numba projection is the fast twin of project_gaussians."""
    from emozone_lite.render._cpu import project_gaussians_cpu

    means, quats, scales, opacities, _, viewmats, Ks = _scene(N=300, C=3, seed=11)
    means[10] = torch.tensor([1.5, 0.0, 0.0])  # off-screen, inside the box margin: x/z is clamped in J
    scales[10] = 0.4
    inputs = [t.to(dtype) for t in (means, quats, scales)]
    viewmats, Ks, opacities = viewmats.to(dtype), Ks.to(dtype), opacities.to(dtype)
    kw = dict(opacities=opacities if with_opacity else None)
    outs, grads = [], []
    for fn in (project_gaussians, project_gaussians_cpu):
        ps = [t.detach().clone().requires_grad_(True) for t in inputs]
        radii, means2d, depths, conics = fn(*ps, viewmats, Ks, W, H, **kw)
        g = torch.Generator().manual_seed(5)
        loss = sum((t * torch.randn(t.shape, generator=g, dtype=dtype)).sum() for t in (means2d, depths, conics))
        loss.backward()
        outs.append((radii, means2d.detach(), depths.detach(), conics.detach()))
        grads.append([p.grad for p in ps])
    (r_t, m_t, d_t, c_t), (r_n, m_n, d_n, c_n) = outs
    assert r_n.dtype == torch.int32 and m_n.dtype == d_n.dtype == c_n.dtype == dtype
    torch.testing.assert_close(r_n, r_t, rtol=0, atol=0)
    valid = (r_t > 0).all(-1)
    assert 0 < int(valid.sum()) < valid.numel()
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(m_n, m_t, **tol)
    torch.testing.assert_close(d_n, d_t, **tol)
    torch.testing.assert_close(c_n, c_t, rtol=tol["rtol"] * 10, atol=1e-6 if dtype == torch.float32 else 1e-10)
    _assert_grads_close(grads[1], grads[0], ["means", "quats", "scales"])
    if dtype == torch.float64:  # no float32 rounding in either: agree to many digits
        for a, b in zip(grads[1], grads[0]):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


# --------------------------------------------------------------------------- cpu vs torch
@pytest.mark.parametrize(
    "C, D, per_camera, with_bg",
    [(1, 3, False, False), (1, 1, False, True), (2, 3, True, True), (2, 8, False, False)],
)
def test_cpu_matches_torch_values_and_grads(C, D, per_camera, with_bg):
    scene = _scene(N=90, C=C, D=D, seed=10 + C + D, per_camera_colors=per_camera)
    bg = torch.rand(C, D, generator=torch.Generator().manual_seed(5)) if with_bg else None
    img_c, a_c, meta_c, g_c = _grads_of("cpu", *scene, backgrounds=bg)
    img_t, a_t, meta_t, g_t = _grads_of("torch", *scene, backgrounds=bg)
    assert img_c.shape == (C, H, W, D) and a_c.shape == (C, H, W, 1)
    assert float(a_c.max()) > 0.5  # the scene really covers pixels
    torch.testing.assert_close(img_c, img_t, rtol=0, atol=1e-4)
    torch.testing.assert_close(a_c, a_t, rtol=0, atol=1e-4)
    for key in ("radii", "means2d", "depths", "conics", "opacities"):
        torch.testing.assert_close(meta_c[key], meta_t[key])
    names = NAMES if with_bg else NAMES[:5]
    _assert_grads_close(g_c, g_t, names)
    assert (g_c[0][2] == 0).all()  # the Gaussian outside every image gets no gradient


def test_cpu_matches_torch_dense_scene_with_early_stop():
    # Many large opaque Gaussians: most pixels stop early (T would drop below 1e-4).
    means, quats, scales, opacities, colors, viewmats, Ks = _scene(N=150, seed=21, specials=False)
    scales = scales * 3
    opacities = opacities.clamp_min(0.8)
    img_c, a_c, meta, g_c = _grads_of("cpu", means, quats, scales, opacities, colors, viewmats, Ks)
    img_t, a_t, _, g_t = _grads_of("torch", means, quats, scales, opacities, colors, viewmats, Ks)
    assert float((a_c > 0.99).float().mean()) > 0.3  # many pixels are (nearly) opaque
    torch.testing.assert_close(img_c, img_t, rtol=0, atol=1e-4)
    torch.testing.assert_close(a_c, a_t, rtol=0, atol=1e-4)
    _assert_grads_close(g_c, g_t, NAMES[:5])


def test_cpu_camera_gradients_match_torch():
    """viewmats / Ks that need gradients make the cpu backend project in torch: they get them."""
    means, quats, scales, opacities, colors, viewmats, Ks = _scene(N=60, C=2, seed=12)
    grads = []
    for backend in ("torch", "cpu"):
        v, k = viewmats.clone().requires_grad_(True), Ks.clone().requires_grad_(True)
        img, alpha, _ = rasterize(means, quats, scales, opacities, colors, v, k, W, H, backend=backend)
        g = torch.Generator().manual_seed(3)
        ((img * torch.randn(img.shape, generator=g)).sum() + alpha.sum()).backward()
        grads.append([v.grad, k.grad])
    assert float(grads[0][0].abs().max()) > 0 and float(grads[0][1].abs().max()) > 0
    _assert_grads_close(grads[1], grads[0], ["viewmats", "Ks"])


def test_float64_inputs_and_partial_gradients():
    means, quats, scales, opacities, colors, viewmats, Ks = (t.double() for t in _scene(N=40, seed=4))
    colors = colors.clone().requires_grad_(True)
    for backend in ("cpu", "torch"):
        img, alpha, _ = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, W, H, backend=backend)
        assert img.dtype == torch.float64
        (g,) = torch.autograd.grad(img.sum(), colors)  # only the colours need gradients
        assert torch.isfinite(g).all() and float(g.abs().sum()) > 0


def test_float64_does_what_the_rasterize_docstring_says():
    """Outputs (and gradients) have the dtype of the inputs; the torch backend computes in
    float64; the cpu backend projects in float64 and composites in float32."""
    scene32 = _scene(N=60, C=2, seed=16)
    scene64 = [t.double() for t in scene32]  # the same values, exactly
    out = {}
    for backend in ("cpu", "torch"):
        for dtype, scene in ((torch.float32, scene32), (torch.float64, scene64)):
            img, alpha, meta, grads = _grads_of(backend, *scene)
            assert img.dtype == alpha.dtype == dtype, backend
            assert all(meta[k].dtype == dtype for k in ("means2d", "depths", "conics", "opacities")), backend
            assert all(g.dtype == dtype for g in grads), backend
            out[backend, dtype] = img, alpha, meta, grads
    f64 = torch.float64
    # torch computes in float64: its projection equals the numba float64 one to many digits ...
    for key in ("means2d", "depths", "conics"):
        torch.testing.assert_close(out["torch", f64][2][key], out["cpu", f64][2][key], rtol=1e-10, atol=1e-10)
    # ... while its float32 render agrees with its float64 render only to float32 accuracy
    diff = float((out["torch", f64][0] - out["torch", torch.float32][0].double()).abs().max())
    assert 0 < diff < 1e-4
    # cpu: float64 inputs give exactly the float32 render (projected in float64 either way), cast up
    assert torch.equal(out["cpu", f64][0], out["cpu", torch.float32][0].double())
    assert torch.equal(out["cpu", f64][1], out["cpu", torch.float32][1].double())
    # ... which is the float64 torch render to float32 tolerance
    torch.testing.assert_close(out["cpu", f64][0], out["torch", f64][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(out["cpu", f64][1], out["torch", f64][1], rtol=0, atol=1e-5)
    _assert_grads_close(out["cpu", f64][3], out["torch", f64][3], NAMES[:5])


def test_empty_scene_returns_background():
    z = torch.zeros
    viewmats, Ks = _cameras(2)
    bg = torch.tensor([[0.1, 0.2, 0.3], [1.0, 0.5, 0.0]])
    for backend in ("cpu", "torch"):
        img, alpha, meta = rasterize(
            z(0, 3), z(0, 4), z(0, 3), z(0), z(0, 3), viewmats, Ks, W, H, backend=backend, backgrounds=bg
        )
        assert img.shape == (2, H, W, 3) and (alpha == 0).all()
        torch.testing.assert_close(img, bg[:, None, None, :].expand(2, H, W, 3))
        assert meta["radii"].shape == (2, 0, 2) and meta["means2d"].shape == (2, 0, 2)
        img0, alpha0, _ = rasterize(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, 3), viewmats, Ks, W, H, backend=backend)
        assert (img0 == 0).all() and (alpha0 == 0).all()


def test_compositing_rules_skip_clamp_and_stop():
    """Three opaque Gaussians centred on one pixel: alpha clamps to 0.999 (T = 0.001
    behind the first); the second would bring T to 1e-6 <= 1e-4, so the pixel stops
    before it — only the front Gaussian is composited."""
    K = torch.tensor([[[20.0, 0, 8.0], [0, 20.0, 8.0], [0, 0, 1]]])
    V = torch.eye(4)[None]
    # means at depth 2, 3, 4 on the optical axis → pixel centre (8, 8) is at 7.5 + 0.5
    means = torch.tensor(
        [[-0.5 / 20 * 2, -0.5 / 20 * 2, 2.0], [-0.5 / 20 * 3, -0.5 / 20 * 3, 3.0], [-0.5 / 20 * 4, -0.5 / 20 * 4, 4.0]]
    )
    quats = torch.tensor([[1.0, 0, 0, 0]] * 3)
    scales = torch.full((3, 3), 0.05)
    colors = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    for backend in ("cpu", "torch"):
        img, alpha, meta = rasterize(means, quats, scales, torch.ones(3), colors, V, K, 16, 16, backend=backend)
        torch.testing.assert_close(meta["means2d"][0, :, 0], torch.full((3,), 7.5), atol=1e-5, rtol=0)
        centre = img[0, 7, 7]
        assert float(alpha[0, 7, 7, 0]) == pytest.approx(0.999, abs=1e-6)
        torch.testing.assert_close(centre, torch.tensor([0.999, 0.0, 0.0]), atol=1e-6, rtol=0)
        # a faint Gaussian (opacity just above 1/255) adds nothing where alpha < 1/255
        img2, alpha2, _ = rasterize(
            means[:1], quats[:1], scales[:1], torch.tensor([0.0045]), colors[:1], V, K, 16, 16, backend=backend
        )
        assert float(alpha2[0, 7, 7, 0]) == pytest.approx(0.0045, rel=1e-4)
        assert float(alpha2[0, 0, 0, 0]) == 0.0  # far from the centre alpha < 1/255: skipped
        img3, alpha3, meta3 = rasterize(
            means[:1], quats[:1], scales[:1], torch.tensor([0.003]), colors[:1], V, K, 16, 16, backend=backend
        )
        assert (alpha3 == 0).all() and (meta3["radii"] == 0).all()  # opacity < 1/255 is culled


def test_tile_size_does_not_change_the_image():
    scene = _scene(N=70, seed=15)
    bg = torch.tensor([0.3, 0.6, 0.9])  # a [D] background is broadcast to every camera
    ref, ref_alpha, _ = rasterize(*scene, W, H, backend="cpu", backgrounds=bg)
    for backend, tile_size in (("cpu", 8), ("cpu", 32), ("torch", 8)):
        img, alpha, meta = rasterize(*scene, W, H, backend=backend, tile_size=tile_size, backgrounds=bg)
        assert meta["tile_width"] == math.ceil(W / tile_size)
        atol = 1e-6 if backend == "cpu" else 1e-5  # torch projects in float32, cpu in float64
        torch.testing.assert_close(img, ref, rtol=0, atol=atol)
        torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=atol)


def test_cpu_rasterizer_degenerate_and_indefinite_conics():
    """Hand-made 2D inputs: a singular conic (an infinite line) and an indefinite one
    (skipped where sigma < 0) match the torch twin. Like gsplat, such Gaussians are
    drawn over the whole tiles they are binned to, not only inside their radii box."""
    from emozone_lite.render._cpu import rasterize_to_pixels_cpu

    means2d = torch.tensor([[[10.0, 9.0], [20.3, 12.7], [30.0, 20.0]]], requires_grad=True)
    conics = torch.tensor([[[0.5, 0.5, 0.5], [0.5, 1.0, 0.5], [0.2, 0.05, 0.3]]], requires_grad=True)
    colors = torch.rand(1, 3, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    opacities = torch.tensor([[0.9, 0.7, 0.8]], requires_grad=True)
    radii = torch.tensor([[[6, 4], [5, 7], [8, 8]]], dtype=torch.int32)
    depths = torch.tensor([[1.0, 2.0, 3.0]])
    w = torch.randn(1, H, W, 3, generator=torch.Generator().manual_seed(1))
    outs, grads = [], []
    for fn in (rasterize_to_pixels_cpu, _torch._rasterize_pixels_torch):
        img, alpha = fn(means2d, conics, colors, opacities, radii, depths, W, H)[:2]
        (g,) = [torch.autograd.grad((img * w).sum() + alpha.sum(), [means2d, conics, colors, opacities])]
        outs.append((img.detach(), alpha.detach()))
        grads.append(g)
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=0, atol=1e-5)
    assert float(outs[0][1][0, 3, 15, 0]) > 0.5  # the line, outside its box (rows 5..13), in its tile
    _assert_grads_close(grads[0], grads[1], NAMES[:4])


def test_cpu_backward_is_deterministic():
    scene = _scene(N=120, seed=6)
    _, _, _, g1 = _grads_of("cpu", *scene)
    _, _, _, g2 = _grads_of("cpu", *scene)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)


def test_cpu_projection_saves_inputs_for_backward():
    """ProjectCPU keeps its inputs with ``save_for_backward``: changing one in place after
    forward makes backward raise autograd's version-counter error instead of silently
    using the new values (float32 inputs: the float64 copies are made again in backward)."""
    from emozone_lite.render._cpu import project_gaussians_cpu

    means, quats, scales, opacities, colors, viewmats, Ks = _scene(N=20, seed=17)
    leaf = means.clone().requires_grad_(True)
    for changed in ("means", "quats", "scales", "viewmats", "Ks"):
        inputs = dict(
            means=leaf * 1.0, quats=quats.clone(), scales=scales.clone(), viewmats=viewmats.clone(), Ks=Ks.clone()
        )  # `leaf * 1.0` is not a leaf: it may be changed in place
        _, means2d, depths, conics = project_gaussians_cpu(**inputs, width=W, height=H)
        inputs[changed].mul_(1.01)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            (means2d.sum() + depths.sum() + conics.sum()).backward()
    # the same through rasterize
    m = leaf * 1.0
    img, _, _ = rasterize(m, quats, scales, opacities, colors, viewmats, Ks, W, H, backend="cpu")
    m.add_(0.01)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        img.sum().backward()


def test_depth_sort_is_numpys_stable_argsort():
    """The binning's radix sort orders depths exactly like a stable sort (ties keep N order)."""
    from emozone_lite.render._cpu import _argsort_stable

    rng = np.random.default_rng(0)
    cases = [
        np.zeros(0, np.float32),
        np.array([1.0, -0.0, 0.0, -1.0, np.inf, -np.inf, 3.0, 3.0, -2.5, 1e-40, -1e-40], np.float32),
        rng.normal(scale=5.0, size=30_000).astype(np.float32),
        rng.integers(0, 4, 2_000).astype(np.float32),  # many ties
        (4.0 + rng.random(5_000) * 1e-3).astype(np.float32),  # a face: depths close together
    ]
    for x in cases:
        np.testing.assert_array_equal(_argsort_stable(x), np.argsort(x, kind="stable"))


def test_meta_screen_space_gradients_and_binning():
    means, quats, scales, opacities, colors, viewmats, Ks = _scene(N=60, seed=8)
    means.requires_grad_(True)
    img, alpha, meta = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, W, H, backend="cpu")
    assert meta["tile_width"] == 3 and meta["tile_height"] == 2 and meta["tile_size"] == 16
    n_isects = len(meta["flatten_ids"])
    assert meta["isect_offsets"].shape == (1, 2, 3) and int(meta["isect_offsets"].max()) <= n_isects
    # every intersection belongs to a visible Gaussian
    assert (meta["radii"].reshape(-1, 2)[meta["flatten_ids"].long()] > 0).all()
    means2d = meta["means2d"]
    means2d.retain_grad()
    img.sum().backward()
    assert means2d.grad is not None and means2d.grad.abs().sum() > 0


# --------------------------------------------------------------------------- property tests (hypothesis)
# derandomize: the same examples on every run (CI never meets a new scene by chance); no database files.
PROPERTY = settings(
    max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def small_scenes(draw):
    """1–30 Gaussians in a 1.2-wide cube, 1–2 cameras, 8–40 px images, D = 1..4 channels;
    random scales (0.005–0.6: from sub-pixel to most of the image, so early stops happen),
    opacities (uniform from 0, 0.3 or 0.9 to 1, or all 1: clamped at 0.999), colours,
    per-camera colours and backgrounds."""
    N, C, D = draw(st.integers(1, 30)), draw(st.integers(1, 2)), draw(st.integers(1, 4))
    width, height = draw(st.integers(8, 40)), draw(st.integers(8, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    log_scale = draw(st.floats(math.log(0.005), math.log(0.2)))
    opacity_min = draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))  # 1.0: all fully opaque (clamped at 0.999)
    per_camera, with_bg = draw(st.booleans()), draw(st.booleans())
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(N, 3, generator=g) * 2 - 1) * 0.6
    quats = torch.randn(N, 4, generator=g)
    quats = quats + 0.5 * torch.sign(quats)  # |q| >= 1: no near-zero quaternion to amplify rounding
    scales = torch.exp(log_scale + torch.rand(N, 3, generator=g) * math.log(3.0))
    opacities = opacity_min + (1 - opacity_min) * torch.rand(N, generator=g)
    colors = torch.rand((C, N, D) if per_camera else (N, D), generator=g)
    viewmats, Ks = [], []
    for _ in range(C):
        yaw, pitch = (float(a) for a in (torch.rand(2, generator=g) - 0.5) * torch.tensor([2.0, 0.8]))
        eye = (3.0 * math.sin(yaw) * math.cos(pitch), 3.0 * math.sin(pitch), 3.0 * math.cos(yaw) * math.cos(pitch))
        viewmats.append(look_at(eye, (0.0, 0.0, 0.0)))
        f = float(max(width, height) * (1.5 + 2.0 * torch.rand((), generator=g)))
        Ks.append(torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]))
    bg = torch.rand(C, D, generator=g) if with_bg else None
    scene = (means, quats, scales, opacities, colors, torch.stack(viewmats), torch.stack(Ks))
    return scene, width, height, bg


def _near_a_threshold(meta, width: int, height: int, rel: float = 2e-4) -> bool:
    """Whether some (pixel, Gaussian) pair lies within ``rel`` (in log) of a compositing
    decision: ``alpha = 1/255`` (skip), ``opacity · exp(-sigma) = 0.999`` (clamp) or
    ``T = 1e-4`` (stop).

    The cpu backend projects in float64 and the torch one in float32; on random scenes
    their ``log alpha`` and ``log T`` differed by at most ~3e-5, so within ``rel = 2e-4``
    of a threshold a decision may go either way and the images differ by up to 1/255 —
    an expected difference, not a bug. Tiles are ignored: with positive-definite conics
    (eps2d > 0) a Gaussian outside its tiles has alpha < 1/255 anyway."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5, torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij"
    )
    px, py = xs.reshape(-1, 1), ys.reshape(-1, 1)  # [P, 1]
    for c in range(meta["n_cameras"]):
        visible = (meta["radii"][c] > 0).all(-1)
        order = torch.sort(meta["depths"][c].detach()[visible], stable=True).indices
        m2 = meta["means2d"][c].detach().double()[visible][order]
        a, b, cc = meta["conics"][c].detach().double()[visible][order].unbind(-1)
        op = meta["opacities"][c].detach().double()[visible][order]
        dx, dy = m2[:, 0] - px, m2[:, 1] - py  # [P, G]
        sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
        raw = op * torch.exp(-sigma)
        for threshold in (ALPHA_THRESHOLD, MAX_ALPHA):
            if bool((torch.log(raw / threshold).abs() < rel).any()):
                return True
        alpha = torch.where(raw >= ALPHA_THRESHOLD, raw.clamp_max(MAX_ALPHA), torch.zeros_like(raw))
        T_behind = torch.cumprod(1 - alpha, dim=1)
        if bool(((torch.log(T_behind / T_STOP).abs() < rel) & (alpha > 0)).any()):
            return True
    return False


@PROPERTY
@given(small_scenes())
def test_property_cpu_equals_torch_values_and_grads(case):
    scene, width, height, bg = case
    img_t, a_t, meta_t, g_t = _grads_of("torch", *scene, width=width, height=height, backgrounds=bg)
    assume(not _near_a_threshold(meta_t, width, height))  # see _near_a_threshold
    img_c, a_c, meta_c, g_c = _grads_of("cpu", *scene, width=width, height=height, backgrounds=bg)
    torch.testing.assert_close(img_c, img_t, rtol=0, atol=1e-4)
    torch.testing.assert_close(a_c, a_t, rtol=0, atol=1e-4)
    _assert_grads_close(g_c, g_t, NAMES if bg is not None else NAMES[:5])


_SPECIAL_DEPTHS = [
    float(np.float32(v))
    for v in (
        0.0,
        -0.0,
        1.0,
        -1.0,
        3.0,
        4.0,
        4.0001,
        -2.5,
        1e-40,
        -1e-40,
        1e-30,
        1e30,
        -1e30,
        3e38,
        -3e38,
        np.inf,
        -np.inf,
    )
]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    hnp.arrays(
        np.float32,
        st.integers(0, 2000),
        elements=st.one_of(st.sampled_from(_SPECIAL_DEPTHS), st.floats(width=32, allow_nan=False)),
    )
)
def test_property_argsort_stable_equals_numpy(x):
    """The binning's radix sort is numpy's stable argsort on any float32 array without NaN
    (ties, ±0.0 as equal, negatives, subnormals, huge values, ±inf)."""
    from emozone_lite.render._cpu import _argsort_stable

    np.testing.assert_array_equal(_argsort_stable(x), np.argsort(x, kind="stable"))


# --------------------------------------------------------------------------- vs gsplat's reference code
def _gsplat_reference_image(means, quats, scales, opacities, colors, viewmats, Ks, width, height, tile_size=16):
    """gsplat's pure-torch projection + tile intersection, then the CUDA forward kernel
    transcribed pixel by pixel (its own ``_rasterize_to_pixels`` needs CUDA and nerfacc)."""
    from gsplat.cuda._torch_impl import (
        _fully_fused_projection,
        _isect_offset_encode,
        _isect_tiles,
        _quat_scale_to_covar_preci,
    )

    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, width, height)
    C, N = depths.shape
    tw, th = math.ceil(width / tile_size), math.ceil(height / tile_size)
    _, isect_ids, flatten_ids = _isect_tiles(means2d, radii, depths, tile_size, tw, th)
    offsets = _isect_offset_encode(isect_ids, C, tw, th).flatten().tolist() + [len(flatten_ids)]
    m2, cn = means2d.reshape(-1, 2), conics.reshape(-1, 3)
    op = opacities[None].expand(C, N).reshape(-1)
    col = colors[None].expand(C, N, -1).reshape(C * N, -1)
    out = torch.zeros(C, height, width, colors.shape[-1])
    alphas = torch.zeros(C, height, width, 1)
    for c in range(C):
        for ty in range(th):
            for tx in range(tw):
                t = (c * th + ty) * tw + tx
                ids = flatten_ids[offsets[t] : offsets[t + 1]].long()
                for py in range(ty * tile_size, min((ty + 1) * tile_size, height)):
                    for px in range(tx * tile_size, min((tx + 1) * tile_size, width)):
                        d = m2[ids] - torch.tensor([px + 0.5, py + 0.5])
                        q = cn[ids]
                        sigma = (
                            0.5 * (q[:, 0] * d[:, 0] * d[:, 0] + q[:, 2] * d[:, 1] * d[:, 1])
                            + q[:, 1] * d[:, 0] * d[:, 1]
                        )
                        alpha = torch.clamp_max(op[ids] * torch.exp(-sigma), 0.999)
                        T, acc = 1.0, torch.zeros(colors.shape[-1])
                        for k in range(len(ids)):
                            a = float(alpha[k])
                            if float(sigma[k]) < 0 or a < 1 / 255:
                                continue
                            next_T = T * (1 - a)
                            if next_T <= 1e-4:
                                break
                            acc += col[ids[k]] * a * T
                            T = next_T
                        out[c, py, px] = acc
                        alphas[c, py, px, 0] = 1 - T
    return out, alphas


def test_torch_backend_matches_gsplat_reference_pipeline():
    scene = _scene(N=45, C=2, seed=9, width=24, height=20)
    ref_img, ref_alpha = _gsplat_reference_image(*scene, width=24, height=20)
    assert float(ref_alpha.max()) > 0.5
    for backend in ("torch", "cpu"):
        img, alpha, _ = rasterize(*scene, 24, 20, backend=backend)
        torch.testing.assert_close(img, ref_img, rtol=0, atol=1e-4)
        torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=1e-4)


def test_torch_backend_gradcheck_float64():
    """Finite differences in float64 on a tiny scene (no clamp, no early stop)."""
    V = look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0))[None].double()
    K = torch.tensor([[[30.0, 0, 6.0], [0, 30.0, 5.0], [0, 0, 1]]], dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    means = ((torch.rand(3, 3, generator=g) - 0.5) * 0.3).double()
    quats = torch.randn(3, 4, generator=g).double()
    scales = (0.05 + 0.05 * torch.rand(3, 3, generator=g)).double()
    opacities = (0.3 + 0.3 * torch.rand(3, generator=g)).double()
    colors = torch.rand(3, 2, generator=g).double()

    def f(m, q, s, o, c):
        img, alpha, _ = rasterize(m, q, s, o, c, V, K, 12, 10, backend="torch")
        return img, alpha

    inputs = tuple(t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


# --------------------------------------------------------------------------- render_image
def test_render_image_uses_camera_and_background():
    means, quats, scales, opacities, colors, _, _ = _scene(N=50, seed=11, specials=False)
    cam = Camera.orbit(yaw_deg=10, radius=3.0, width=W, height=H, target=(0.0, 0.0, 0.0))
    img = render_image(means, quats, scales, opacities, colors, cam, background=[0.0, 0.0, 1.0], backend="cpu")
    ref, alpha, _ = rasterize(
        means,
        quats,
        scales,
        opacities,
        colors,
        cam.viewmat[None],
        cam.K[None],
        W,
        H,
        backend="torch",
        backgrounds=torch.tensor([[0.0, 0.0, 1.0]]),
    )
    assert img.shape == (H, W, 3)
    torch.testing.assert_close(img, ref[0], rtol=0, atol=1e-4)
    assert float(img[..., 2].min()) > 0  # the blue background shows through somewhere
    with pytest.raises(ValueError, match="camera must be"):
        render_image(means, quats, scales, opacities, colors, "front")


# --------------------------------------------------------------------------- gsplat backend
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_backend_matches_cpu():
    scene = _scene(N=300, C=2, seed=12, specials=False)
    img_c, a_c, meta_c, g_c = _grads_of("cpu", *scene)
    cuda = [t.cuda() for t in scene]
    img_g, a_g, meta_g, g_g = _grads_of("gsplat", *cuda)
    assert meta_g["radii"].shape == meta_c["radii"].shape
    torch.testing.assert_close(img_g.cpu(), img_c, rtol=0, atol=1e-3)
    torch.testing.assert_close(a_g.cpu(), a_c, rtol=0, atol=1e-3)
    for name, a, b in zip(NAMES, g_g, g_c):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-2, atol=1e-3 * float(b.abs().max()), msg=name)
    img_auto, _, meta_auto = rasterize(*cuda, W, H)  # auto picks gsplat for CUDA tensors
    assert meta_auto["backend"] == "gsplat"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gsplat_backend_without_cuda_raises():
    scene = _scene(N=5, seed=13)
    with pytest.raises(RuntimeError, match="needs CUDA"):
        rasterize(*scene, W, H, backend="gsplat")
    _, _, meta = rasterize(*scene, W, H)  # auto → cpu
    assert meta["backend"] == "cpu"


# --------------------------------------------------------------------------- bad input
def _bad(**changes):
    means, quats, scales, opacities, colors, viewmats, Ks = _scene(N=10, seed=14, specials=False)
    kw = dict(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=colors,
        viewmats=viewmats,
        Ks=Ks,
        width=W,
        height=H,
    )
    kw.update(changes)
    return kw


def _nan_at(t, index, value=float("nan")):
    t = t.clone()
    t[index] = value
    return t


BAD_INPUTS = [
    (dict(means=torch.zeros(10, 2)), r"means must have shape \[N, 3\]"),
    (dict(quats=torch.zeros(10, 3)), r"quats must have shape \[N, 4\]"),
    (dict(quats=torch.zeros(9, 4)), r"quats must have shape \[N, 4\] with N = 10"),
    (dict(scales=torch.zeros(11, 3)), r"scales must have shape \[N, 3\]"),
    (dict(opacities=torch.zeros(10, 1)), r"opacities must have shape \[N\].*squeeze"),
    (dict(colors=torch.zeros(9, 3)), r"colors must have shape \[N, D\] or \[C, N, D\]"),
    (dict(colors=torch.zeros(2, 10, 3)), r"colors must have shape"),  # C = 1 camera
    (dict(colors=torch.zeros(10, 0)), r"no channels"),
    (dict(viewmats=torch.eye(4)), r"viewmats must have shape \[C, 4, 4\].*viewmats\[None\]"),
    (dict(viewmats=torch.zeros(0, 4, 4), Ks=torch.zeros(0, 3, 3)), r"no camera"),
    (dict(Ks=torch.eye(3)), r"Ks must have shape \[C, 3, 3\].*Ks\[None\]"),
    (dict(Ks=torch.zeros(2, 3, 3)), r"Ks must have shape \[C, 3, 3\] with C = 1"),
    (dict(backgrounds=torch.zeros(1, 4)), r"backgrounds must have shape \[C, D\]"),
    (dict(width=0), r"width must be a positive integer"),
    (dict(height=-3), r"height must be a positive integer"),
    (dict(width=32.5), r"width must be a positive integer"),
    (dict(tile_size=0), r"tile_size must be a positive integer"),
    (dict(backend="opengl"), r"unknown backend 'opengl'"),
    (dict(means=np.zeros((10, 3), np.float32)), r"means must be a torch.Tensor"),
    (dict(colors=torch.zeros(10, 3, dtype=torch.int64)), r"colors must be a floating-point tensor"),
]


@pytest.mark.parametrize("changes, message", BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(changes, message):
    kw = _bad(**changes)
    args = [kw.pop(k) for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks", "width", "height")]
    with pytest.raises(ValueError, match=message):
        rasterize(*args, **kw)


@pytest.mark.parametrize(
    "name, index, value, message",
    [
        ("means", (3, 1), float("nan"), "^means contains NaN or inf; check the optimiser"),
        ("means", (0, 0), float("inf"), "^means contains NaN or inf"),
        ("quats", (2, 0), float("nan"), "^quats contains NaN or inf"),
        ("scales", (1, 2), float("inf"), "^scales contains NaN or inf"),
        ("opacities", (4,), float("nan"), "^opacities contains NaN or inf"),
        ("colors", (0, 1), -float("inf"), "^colors contains NaN or inf"),
        ("viewmats", (0, 0, 3), float("nan"), "^viewmats contains NaN or inf"),
        ("Ks", (0, 0, 0), float("inf"), "^Ks contains NaN or inf"),
        ("backgrounds", (0, 2), float("nan"), "^backgrounds contains NaN or inf"),
        ("Ks", (0, 1, 1), 0.0, "zero focal length"),
    ],
)
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_non_finite_inputs_raise(name, index, value, message, backend):
    kw = _bad(backgrounds=torch.full((1, 3), 0.5))
    kw[name] = _nan_at(kw[name], index, value)
    args = [kw.pop(k) for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks", "width", "height")]
    with pytest.raises(ValueError, match=message):
        rasterize(*args, backend=backend, **kw)


def test_non_finite_per_camera_colors_raise():
    means, quats, scales, opacities, colors, viewmats, Ks = _scene(N=10, C=2, seed=14, per_camera_colors=True)
    with pytest.raises(ValueError, match="^colors contains NaN or inf"):
        rasterize(means, quats, scales, opacities, _nan_at(colors, (1, 3, 0)), viewmats, Ks, W, H, backend="cpu")


def test_mixed_devices_and_cpu_backend_device_checks():
    kw = _bad()
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="one device"):
            rasterize(
                kw["means"].cuda(),
                kw["quats"],
                kw["scales"],
                kw["opacities"],
                kw["colors"],
                kw["viewmats"],
                kw["Ks"],
                W,
                H,
            )
    meta_device = torch.zeros(10, 3, device="meta")
    with pytest.raises(ValueError, match="one device"):
        rasterize(meta_device, kw["quats"], kw["scales"], kw["opacities"], kw["colors"], kw["viewmats"], kw["Ks"], W, H)


def test_numba_and_gsplat_are_imported_only_when_used():
    code = (
        "import sys, torch\n"
        "from emozone_lite.render import rasterize\n"
        "z = torch.zeros\n"
        "rasterize(z(1, 3), torch.tensor([[1.0, 0, 0, 0]]), z(1, 3) + 0.1, z(1) + 1, z(1, 3), torch.eye(4)[None],\n"
        "          torch.eye(3)[None], 8, 8, backend='torch')\n"
        "assert 'numba' not in sys.modules and 'gsplat' not in sys.modules, 'torch backend'\n"
        "rasterize(z(1, 3), torch.tensor([[1.0, 0, 0, 0]]), z(1, 3) + 0.1, z(1) + 1, z(1, 3), torch.eye(4)[None],\n"
        "          torch.eye(3)[None], 8, 8, backend='cpu')\n"
        "assert 'numba' in sys.modules and 'gsplat' not in sys.modules, 'cpu backend'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", ["", "._constants", "._torch", "._cpu", "._gsplat"])
def test_docstring_examples(module):
    failures, _ = doctest.testmod(importlib.import_module("emozone_lite.render" + module), optionflags=doctest.ELLIPSIS)
    assert failures == 0
