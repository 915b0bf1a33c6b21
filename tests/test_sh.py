"""Spherical-harmonic colour (``render._sh``, ``rasterize(sh_degree=...)``): the basis against
its direct formula and orthonormality, gradients by finite differences, the cpu backend against
the torch twin through SH (values and gradients of the coefficients and means), view
dependence, gsplat's own SH on CUDA, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emozone_lite.camera import Camera
from emozone_lite.render import EPS2D, eval_sh, num_sh_bases, rasterize, render_image, rgb_to_sh, sh_colors, sh_to_rgb
from emozone_lite.render._sh import SH_C0, SH_C1, SH_C2, SH_C3, sh_basis


def _scene(N: int = 60, C: int = 1, seed: int = 0, specials: bool = True):
    """Random Gaussians around the origin seen by ``C`` cameras at 40×30 (``specials`` is ignored:
    the signature follows tests/test_render.py's)."""
    from emozone_lite.camera import look_at

    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(N, 3, generator=g) * 2 - 1) * torch.tensor([0.9, 0.7, 0.5])
    quats = torch.randn(N, 4, generator=g)
    scales = torch.exp(torch.empty(N, 3).uniform_(math.log(0.02), math.log(0.15), generator=g))
    opacities = torch.empty(N).uniform_(0.05, 1.0, generator=g)
    viewmats, Ks = [], []
    for c in range(C):
        yaw = c * 0.6 - 0.3
        viewmats.append(look_at((3.0 * math.sin(yaw), 0.3 * c, 3.0 * math.cos(yaw)), (0.0, 0.0, 0.0)))
        Ks.append(torch.tensor([[35.0 + 5 * c, 0.0, 20.0], [0.0, 36.0, 15.0], [0.0, 0.0, 1.0]]))
    return means, quats, scales, opacities, torch.rand(N, 3, generator=g), torch.stack(viewmats), torch.stack(Ks)


def _assert_grads_close(got, ref, names):
    for name, a, b in zip(names, got, ref):
        assert a is not None and b is not None, name
        assert torch.isfinite(a).all(), f"non-finite gradient of {name}"
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * (float(b.abs().max()) + 1e-12), msg=name)


def _direct(degree: int, d: tuple[float, float, float]) -> list[float]:
    """The 3DGS reference basis (utils/sh_utils.py eval_sh), written out for one direction."""
    x, y, z = d
    out = [SH_C0]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * z * z - x * x - y * y), SH_C2[3] * x * z,
                SH_C2[4] * (x * x - y * y)]  # fmt: skip
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * x * x - y * y), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * z * z - x * x - y * y),
            SH_C3[3] * z * (2 * z * z - 3 * x * x - 3 * y * y), SH_C3[4] * x * (4 * z * z - x * x - y * y),
            SH_C3[5] * z * (x * x - y * y), SH_C3[6] * x * (x * x - 3 * y * y),
        ]  # fmt: skip
    return out


unit = st.tuples(*[st.floats(-1, 1, allow_nan=False) for _ in range(3)]).filter(lambda v: sum(a * a for a in v) > 0.01)


@settings(max_examples=50, deadline=None)
@given(d=unit, degree=st.integers(0, 3))
def test_basis_equals_the_direct_formula(d, degree):
    n = math.sqrt(sum(a * a for a in d))
    dn = tuple(a / n for a in d)
    got = sh_basis(degree, torch.tensor(dn, dtype=torch.float64))
    assert got.shape == (num_sh_bases(degree),)
    torch.testing.assert_close(got, torch.tensor(_direct(degree, dn), dtype=torch.float64))
    # eval_sh normalises the direction: the unnormalised one gives the same colour
    coeffs = torch.randn(num_sh_bases(degree), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(eval_sh(degree, coeffs, torch.tensor(d, dtype=torch.float64)), got @ coeffs)


def test_basis_is_orthonormal_on_the_sphere():
    """∫ Y_i Y_j dΩ = δ_ij (a sign error would survive this; the direct formula test catches signs)."""
    n = 200_000
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = (1 - z * z).sqrt()
    dirs = torch.stack([r * phi.cos(), r * phi.sin(), z], -1)  # Fibonacci sphere: equal areas
    Y = sh_basis(3, dirs)
    gram = 4 * math.pi * (Y.T @ Y) / n
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)


def test_gradients_by_finite_differences():
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(5, 16, 3, dtype=torch.float64, generator=g, requires_grad=True)
    dirs = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, d: eval_sh(3, c, d), (coeffs, dirs))


def test_dc_round_trip_and_degree_zero_is_view_independent():
    rgb = torch.tensor([[0.1, 0.5, 0.9]])
    torch.testing.assert_close(sh_to_rgb(rgb_to_sh(rgb)), rgb)
    coeffs = torch.zeros(1, 4, 3)
    coeffs[:, 0] = rgb_to_sh(rgb)
    coeffs[:, 3] = 2.0  # a degree-1 term: ignored at degree 0
    means = torch.zeros(1, 3)
    cams = torch.stack([Camera.orbit(yaw_deg=y).viewmat for y in (-30.0, 0.0, 30.0)])
    torch.testing.assert_close(sh_colors(0, coeffs, means, cams), rgb[None].expand(3, 1, 3))


def test_degree_one_colour_follows_the_view_direction():
    """Coefficient 3 (−C1·x) brightens a Gaussian seen from −x and darkens it from +x."""
    coeffs = torch.zeros(1, 4, 3)
    coeffs[:, 3] = 0.5
    from emozone_lite.camera import HEAD_TARGET

    means = torch.as_tensor(HEAD_TARGET, dtype=torch.float32)[None]
    left, front, right = (Camera.orbit(yaw_deg=y) for y in (-30.0, 0.0, 30.0))
    cols = sh_colors(1, coeffs, means, torch.stack([left.viewmat, front.viewmat, right.viewmat]))[:, 0, 0]
    campos = [float(-(c.viewmat[:3, :3].T @ c.viewmat[:3, 3])[0]) for c in (left, front, right)]
    d_x = [float(means[0, 0]) - p for p in campos]  # x of the direction camera → mean
    for col, dx, cam in zip(cols.tolist(), d_x, (left, front, right)):
        dist = float((means[0] + cam.viewmat[:3, :3].T @ cam.viewmat[:3, 3]).norm())
        assert col == pytest.approx(max(0.0, 0.5 - SH_C1 * (dx / dist) * 0.5), abs=1e-5)
    assert cols[0] != pytest.approx(float(cols[2]), abs=1e-3)  # left and right views differ


@pytest.mark.parametrize("degree", [1, 3])
@pytest.mark.parametrize("per_camera", [False, True])
def test_cpu_equals_torch_through_sh_values_and_grads(degree, per_camera):
    means, quats, scales, opacities, _, viewmats, Ks = _scene(N=60, C=2, seed=21)
    k = num_sh_bases(degree)
    g = torch.Generator().manual_seed(3)
    shape = (2, 60, k, 3) if per_camera else (60, k, 3)
    coeffs = torch.randn(shape, generator=g) * 0.4
    out = {}
    for backend in ("cpu", "torch"):
        ps = [t.detach().clone().requires_grad_(True) for t in (means, quats, scales, opacities, coeffs)]
        img, alpha, _ = rasterize(*ps, viewmats, Ks, 40, 30, backend=backend, sh_degree=degree)
        w = torch.randn(img.shape, generator=torch.Generator().manual_seed(5))
        (img * w).sum().backward()
        out[backend] = (img.detach(), [p.grad for p in ps])
    torch.testing.assert_close(out["cpu"][0], out["torch"][0], rtol=0, atol=2e-5)
    _assert_grads_close(out["cpu"][1], out["torch"][1], ["means", "quats", "scales", "opacities", "sh"])
    assert float(out["cpu"][1][4][..., 1:, :].abs().sum()) > 0  # the higher coefficients get gradients


def test_sh_degree_zero_renders_like_plain_colours():
    means, quats, scales, opacities, colors, viewmats, Ks = _scene(N=40, C=1, seed=4)
    plain, _, _ = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, 40, 30, backend="cpu")
    sh, _, _ = rasterize(means, quats, scales, opacities, rgb_to_sh(colors)[:, None], viewmats, Ks, 40, 30,
                         backend="cpu", sh_degree=0)  # fmt: skip
    torch.testing.assert_close(sh, plain, rtol=0, atol=1e-6)
    cam = Camera.orbit(width=40, height=30)
    img = render_image(means, quats, scales, opacities, rgb_to_sh(colors)[:, None], cam, sh_degree=0, backend="cpu")
    assert img.shape == (30, 40, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sh_matches_gsplats_own_sh():
    import gsplat

    means, quats, scales, opacities, _, viewmats, Ks = [t.cuda() for t in _scene(N=80, C=2, seed=8, specials=False)]
    coeffs = torch.randn(80, 16, 3, device="cuda") * 0.3
    ours, _, _ = rasterize(means, quats, scales, opacities, coeffs, viewmats, Ks, 40, 30, sh_degree=3)
    ref, _, _ = gsplat.rasterization(means, quats, scales, opacities, coeffs, viewmats, Ks, 40, 30, sh_degree=3,
                                     packed=False, eps2d=EPS2D)  # fmt: skip
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize(
    "degree, shape, message",
    [
        (4, (10, 25, 3), "sh_degree must be an integer in"),
        (-1, (10, 1, 3), "sh_degree must be an integer in"),
        (1.5, (10, 4, 3), "sh_degree must be an integer in"),
        (2, (10, 4, 3), r"K >= 9"),
        (1, (10, 3), r"SH coefficients \[N, K, D\]"),
        (1, (9, 4, 3), "N = 10"),
    ],
)
def test_bad_sh_input_raises(degree, shape, message):
    means, quats, scales, opacities, _, viewmats, Ks = _scene(N=10, C=1, seed=2, specials=False)
    with pytest.raises(ValueError, match=message):
        rasterize(means, quats, scales, opacities, torch.zeros(shape), viewmats, Ks, 40, 30, sh_degree=degree)
    with pytest.raises(ValueError, match="shape"):
        eval_sh(1, torch.zeros(4, 3), torch.zeros(2))
