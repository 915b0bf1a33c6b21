"""Tests of emozone_lite.head.density: 3D Gaussian Splatting's adaptive density control.

* ``DensityControl.accumulate``: view-space gradient norms in NDC units (pixel gradient ×
  ``width / 2 · C``, ``height / 2 · C``), summed over the cameras where a Gaussian is visible;
* the parameter surgery done by ``DensityControl.step`` and the functions it uses
  (``duplicate``, ``split``, ``select``, ``reset_opacities``): the parameters, Adam's moment
  estimates (zero for new Gaussians, untouched for the others), the optimiser's parameter
  groups and the per-Gaussian buffers all follow each edit;
* clone / split / prune / reset decisions against hand-set gradient statistics, the schedule
  (``refine_start``, ``refine_stop``, ``refine_every``, ``reset_every``) and ``max_gaussians``;
* ``DensityConfig`` validation;
* end to end: a toy 32×32 image fitted with the torch rasterizer, with and without density
  control.

Scenes are tiny (a handful of Gaussians, one 32×32 camera) so the file runs in seconds.
"""

from __future__ import annotations

import math

import pytest
import torch

from emozone_lite.camera import HEAD_TARGET, Camera
from emozone_lite.head.density import DensityConfig, DensityControl, duplicate, reset_opacities, select, split
from emozone_lite.render import rasterize

NAMES = ("means", "scales", "quats", "opacities", "sh0")
SMALL = math.log(0.005)  # largest scale below percent_dense (0.01) × scene_extent (1): cloned
LARGE = math.log(0.05)  # above it: split


# --------------------------------------------------------------------------- helpers
def _gaussians(N: int, seed: int = 0, log_scale: float = SMALL) -> dict[str, torch.nn.Parameter]:
    """N random Gaussians (all small unless ``log_scale`` says otherwise), opacity 0.5."""
    g = torch.Generator().manual_seed(seed)
    raw = {
        "means": torch.randn(N, 3, generator=g),
        "scales": log_scale + 0.1 * torch.rand(N, 3, generator=g),  # ≤ 1.11 × exp(log_scale)
        "quats": torch.randn(N, 4, generator=g),
        "opacities": torch.zeros(N),  # sigmoid: 0.5
        "sh0": torch.randn(N, 1, 3, generator=g),
    }
    return {k: torch.nn.Parameter(v) for k, v in raw.items()}


def _adam(params: dict) -> torch.optim.Adam:
    """Adam, one parameter group per tensor, after one step (so the moments are nonzero)."""
    opt = torch.optim.Adam([{"params": [p], "name": k} for k, p in params.items()], lr=0.01)
    _adam_step(params, opt, seed=1)
    return opt


def _adam_step(params: dict, opt, seed: int) -> dict[str, torch.Tensor]:
    """One step of a linear loss ``Σ p · w``: the gradients are ``w`` (returned)."""
    g = torch.Generator().manual_seed(seed)
    weights = {k: torch.randn(p.shape, generator=g) for k, p in params.items()}
    opt.zero_grad()
    sum((p * weights[k]).sum() for k, p in params.items()).backward()
    opt.step()
    return weights


def _snapshot(params: dict, opt) -> dict:
    """Copies of every parameter and of its Adam moments."""
    return {
        k: (p.detach().clone(), opt.state[p]["exp_avg"].clone(), opt.state[p]["exp_avg_sq"].clone())
        for k, p in params.items()
    }


def _control(N: int, high: dict[int, float] | None = None, **overrides) -> DensityControl:
    """A controller whose mean gradients are 0 except ``high {index: mean}``, refining at 10, 20, …"""
    cfg = dict(grad_threshold=1e-3, refine_start=10, refine_stop=100, refine_every=10, reset_every=1000)
    ctl = DensityControl(DensityConfig(**(cfg | overrides)), scene_extent=1.0)
    ctl.grad_sum, ctl.count = torch.zeros(N), torch.full((N,), 2.0)  # seen twice each
    for i, v in (high or {}).items():
        ctl.grad_sum[i] = 2 * v
    return ctl


def _assert_optimizer_follows(params: dict, opt) -> None:
    """Each parameter group holds exactly the current Parameter, and only those have state."""
    assert [g["name"] for g in opt.param_groups] == list(params)
    for group in opt.param_groups:
        assert len(group["params"]) == 1 and group["params"][0] is params[group["name"]]
    assert {id(p) for p in opt.state} == {id(p) for p in params.values()}
    for p in params.values():
        assert isinstance(p, torch.nn.Parameter) and p.is_leaf and p.requires_grad
        assert opt.state[p]["exp_avg"].shape == p.shape == opt.state[p]["exp_avg_sq"].shape


# --------------------------------------------------------------------------- accumulate
def test_accumulate_ndc_norms_over_visible_cameras():
    C, N, width, height = 2, 3, 40, 30
    # pixel gradients chosen so that, scaled by (width/2·C, height/2·C) = (40, 30), the norm is 5a
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    grad = torch.stack([3 * a / 40, 4 * a / 30], dim=-1)  # [C, N, 2]
    means2d = torch.zeros(C, N, 2, requires_grad=True)
    means2d.grad = grad
    radii = torch.tensor([[[2, 3], [0, 0], [4, 4]], [[1, 1], [5, 0], [2, 2]]], dtype=torch.int32)
    meta = {"means2d": means2d, "radii": radii, "width": width, "height": height}
    ctl = DensityControl(DensityConfig(), scene_extent=1.0)
    ctl.accumulate(meta)
    # Gaussian 0: both cameras (5 + 20); 1: none (camera 1 has one zero radius); 2: both (15 + 30)
    torch.testing.assert_close(ctl.grad_sum, torch.tensor([25.0, 0.0, 45.0]))
    torch.testing.assert_close(ctl.count, torch.tensor([2.0, 0.0, 2.0]))
    ctl.accumulate(meta)
    torch.testing.assert_close(ctl.grad_sum, torch.tensor([50.0, 0.0, 90.0]))
    torch.testing.assert_close(ctl.count, torch.tensor([4.0, 0.0, 4.0]))

    # older gsplat radii [C, N]; one camera: scale (width/2, height/2)
    one = torch.zeros(1, 2, 2, requires_grad=True)
    one.grad = torch.tensor([[[3 / 20, 4 / 15], [1.0, 1.0]]])
    ctl.accumulate({"means2d": one, "radii": torch.tensor([[3, 0]]), "width": width, "height": height})
    torch.testing.assert_close(ctl.grad_sum, torch.tensor([5.0, 0.0]))  # a new N: accumulation restarts
    torch.testing.assert_close(ctl.count, torch.tensor([1.0, 0.0]))


def test_accumulate_counts_only_the_first_n_gaussians():
    """``n``: the controlled Gaussians are rendered first, fixed ones after them (the portrait's fill)."""
    means2d = torch.zeros(1, 5, 2, requires_grad=True)
    means2d.grad = torch.tensor([[[3 / 20, 4 / 15], [0.0, 0.0], [3 / 10, 4 / 7.5], [9.0, 9.0], [9.0, 9.0]]])
    meta = {"means2d": means2d, "radii": torch.ones(1, 5, 2, dtype=torch.int32), "width": 40, "height": 30}
    ctl = DensityControl(DensityConfig(), scene_extent=1.0)
    ctl.accumulate(meta, n=3)
    torch.testing.assert_close(ctl.grad_sum, torch.tensor([5.0, 0.0, 10.0]))
    torch.testing.assert_close(ctl.count, torch.ones(3))


def test_accumulate_needs_retained_grad():
    meta = {"means2d": torch.zeros(1, 2, 2), "radii": torch.ones(1, 2, 2), "width": 8, "height": 8}
    ctl = DensityControl(DensityConfig(), scene_extent=1.0)
    with pytest.raises(ValueError, match=r"means2d.*retain_grad"):
        ctl.accumulate(meta)
    assert ctl.grad_sum is None


# --------------------------------------------------------------------------- clone
def test_clone_copies_small_gaussian_with_zero_moments():
    N = 4
    params = _gaussians(N)
    opt = _adam(params)
    before = _snapshot(params, opt)
    buffers = {"part": torch.tensor([10, 11, 12, 13])}
    ctl = _control(N, high={2: 5e-3, 0: 9e-4})  # only Gaussian 2 is above grad_threshold = 1e-3
    did = ctl.step(10, params, opt, buffers)
    assert did == {"it": 10, "cloned": 1, "split": 0, "pruned": 0, "n": 5, "reset": False}
    assert ctl.history == [did] and ctl.grad_sum is None and ctl.count is None
    assert buffers["part"].tolist() == [10, 11, 12, 13, 12]
    for k in NAMES:
        value, m1, m2 = before[k]
        p = params[k]
        assert p.shape == (N + 1, *value.shape[1:])
        torch.testing.assert_close(p.detach()[:N], value, rtol=0, atol=0)
        torch.testing.assert_close(p.detach()[N], value[2], rtol=0, atol=0)  # the copy
        torch.testing.assert_close(opt.state[p]["exp_avg"][:N], m1, rtol=0, atol=0)
        torch.testing.assert_close(opt.state[p]["exp_avg_sq"][:N], m2, rtol=0, atol=0)
        assert (opt.state[p]["exp_avg"][N] == 0).all() and (opt.state[p]["exp_avg_sq"][N] == 0).all()
        assert (m1[2] != 0).all()  # the original's moments were nonzero
        assert float(opt.state[p]["step"]) == 1
    _assert_optimizer_follows(params, opt)

    # training goes on: Adam updates the new Parameters, the copy from zero moments
    old = {k: p.detach().clone() for k, p in params.items()}
    w = _adam_step(params, opt, seed=2)
    for k, p in params.items():
        assert float(opt.state[p]["step"]) == 2
        assert (p.detach() != old[k]).any(-1).all() if p.ndim > 1 else (p.detach() != old[k]).all()
        m1 = opt.state[p]["exp_avg"]
        torch.testing.assert_close(m1[N], 0.1 * w[k][N])  # β1 = 0.9 from zero
        torch.testing.assert_close(m1[2], 0.9 * before[k][1][2] + 0.1 * w[k][2])


def test_duplicate_without_optimizer_or_buffers():
    params = {k: p.detach() for k, p in _gaussians(3).items()}
    means = params["means"].clone()
    duplicate(params, None, torch.tensor([True, False, True]))
    assert len(params["means"]) == 5 and isinstance(params["means"], torch.nn.Parameter)
    torch.testing.assert_close(params["means"].detach(), torch.cat([means, means[[0, 2]]]), rtol=0, atol=0)


# --------------------------------------------------------------------------- split
def test_split_replaces_large_gaussian_by_two_children():
    N = 3
    params = _gaussians(N)
    with torch.no_grad():
        params["scales"][1] = torch.log(torch.tensor([0.2, 0.1, 0.05]))  # large: split
    opt = _adam(params)
    before = _snapshot(params, opt)
    buffers = {"part": torch.tensor([7, 8, 9])}
    ctl = _control(N, high={1: 2e-3})
    did = ctl.step(20, params, opt, buffers, generator=torch.Generator().manual_seed(0))
    assert did == {"it": 20, "cloned": 0, "split": 1, "pruned": 0, "n": 4, "reset": False}
    assert buffers["part"].tolist() == [7, 9, 8, 8]  # survivors first, then the children
    kept, children = [0, 2], [2, 3]
    for k in NAMES:
        value, m1, m2 = before[k]
        p = params[k].detach()
        torch.testing.assert_close(p[:2], value[kept], rtol=0, atol=0)
        torch.testing.assert_close(opt.state[params[k]]["exp_avg"][:2], m1[kept], rtol=0, atol=0)
        torch.testing.assert_close(opt.state[params[k]]["exp_avg_sq"][:2], m2[kept], rtol=0, atol=0)
        assert (opt.state[params[k]]["exp_avg"][children] == 0).all()
        assert (opt.state[params[k]]["exp_avg_sq"][children] == 0).all()
        if k == "scales":
            expected = (value[1] - math.log(1.6)).expand(2, 3)
            torch.testing.assert_close(p[children], expected, rtol=0, atol=1e-6)
        elif k != "means":
            torch.testing.assert_close(p[children], value[1].expand(2, *value.shape[1:]), rtol=0, atol=0)
    _assert_optimizer_follows(params, opt)

    # children means: μ + R (s ⊙ ε), within a few standard deviations of the parent, distinct
    from emozone_lite.geometry import quat_to_rotmat

    R = quat_to_rotmat(before["quats"][0][1])
    s = before["scales"][0][1].exp()
    z = (params["means"].detach()[children] - before["means"][0][1]) @ R / s  # ε of each child
    assert (z.abs() < 5).all() and (z.abs() > 0).any()
    assert not torch.equal(params["means"][2], params["means"][3])


def test_split_samples_the_parent_as_a_pdf():
    """Children of 2000 copies of one rotated, anisotropic Gaussian: offsets ~ N(0, R diag(s²) Rᵀ)."""
    M = 2000
    mu = torch.tensor([1.0, -2.0, 0.5])
    s = torch.tensor([0.3, 0.1, 0.02])
    q = 2 * torch.tensor([math.cos(math.pi / 12), 0.0, 0.0, math.sin(math.pi / 12)])  # 30° about z, not unit
    params = {
        "means": mu.repeat(M, 1),
        "scales": s.log().repeat(M, 1),
        "quats": q.repeat(M, 1),
        "opacities": torch.zeros(M),
    }
    split(params, None, torch.ones(M, dtype=torch.bool), factor=2.0, generator=torch.Generator().manual_seed(3))
    offsets = params["means"].detach() - mu  # [2M, 3]
    assert offsets.shape == (2 * M, 3)
    # R diag(s²) Rᵀ for a rotation by θ about z: xx = c²a + s²b, yy = s²a + c²b, xy = cs(a - b)
    c, si, va, vb = math.cos(math.pi / 6), math.sin(math.pi / 6), 0.3**2, 0.1**2
    xy = c * si * (va - vb)  # +0.0346 (with Rᵀ instead of R it would be -0.0346)
    cov = torch.tensor(
        [[c * c * va + si * si * vb, xy, 0.0], [xy, si * si * va + c * c * vb, 0.0], [0.0, 0.0, 0.02**2]]
    )
    std = cov.diagonal().sqrt()
    assert (offsets.mean(0).abs() < 4 * std / math.sqrt(2 * M)).all(), offsets.mean(0)  # 4 standard errors
    torch.testing.assert_close(offsets.T.cov(), cov, rtol=0, atol=6e-3)  # sampling error ≈ 1.6e-3 at most
    torch.testing.assert_close(offsets.std(0), std, rtol=0.05, atol=0)
    torch.testing.assert_close(params["scales"].detach(), (s / 2).log().repeat(2 * M, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(params["quats"].detach(), q.repeat(2 * M, 1), rtol=0, atol=0)

    # a seeded generator makes the split reproducible
    again = {k: v[:1].detach() for k, v in _gaussians(1, log_scale=LARGE).items()}
    twice = {k: v.clone() for k, v in again.items()}
    split(again, None, torch.ones(1, dtype=torch.bool), generator=torch.Generator().manual_seed(5))
    split(twice, None, torch.ones(1, dtype=torch.bool), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(again["means"], twice["means"], rtol=0, atol=0)


# --------------------------------------------------------------------------- schedule
def test_below_threshold_gaussians_untouched():
    N = 4
    params = _gaussians(N)
    with torch.no_grad():
        params["scales"][3] = LARGE  # large, but its gradient is only at the threshold (not above)
    opt = _adam(params)
    before = _snapshot(params, opt)
    ctl = _control(N, high={0: 5e-4, 3: 1e-3})
    did = ctl.step(30, params, opt)
    assert did == {"it": 30, "cloned": 0, "split": 0, "pruned": 0, "n": N, "reset": False}
    for k in NAMES:
        torch.testing.assert_close(params[k].detach(), before[k][0], rtol=0, atol=0)
        torch.testing.assert_close(opt.state[params[k]]["exp_avg"], before[k][1], rtol=0, atol=0)
    _assert_optimizer_follows(params, opt)


@pytest.mark.parametrize("it", [0, 5, 11, 25, 100, 110, 1001])
def test_no_refinement_off_schedule(it):
    """refine_start 10, refine_stop 100, refine_every 10, reset_every 1000: nothing happens at ``it``."""
    N = 3
    params = _gaussians(N)
    opt = _adam(params)
    objects = dict(params)
    ctl = _control(N, high={0: 1.0, 1: 1.0, 2: 1.0})
    grad_sum = ctl.grad_sum.clone()
    assert ctl.step(it, params, opt) is None
    assert all(params[k] is objects[k] for k in NAMES)  # not even replaced
    assert len(params["means"]) == N and ctl.history == [] and ctl.resets == 0
    torch.testing.assert_close(ctl.grad_sum, grad_sum)  # still accumulating


def test_no_refinement_without_accumulated_gradients():
    params = _gaussians(3)
    opt = _adam(params)
    ctl = DensityControl(DensityConfig(refine_start=10, refine_every=10), scene_extent=1.0)
    assert ctl.step(10, params, opt) is None and len(params["means"]) == 3


# --------------------------------------------------------------------------- prune
def test_prune_transparent_gaussians():
    N = 4
    params = _gaussians(N)
    with torch.no_grad():
        params["opacities"][1] = math.log(0.004 / 0.996)  # sigmoid 0.004 < prune_opacity 0.005
        params["opacities"][2] = math.log(0.006 / 0.994)  # 0.006: kept
    opt = _adam(params)
    before = _snapshot(params, opt)
    buffers = {"part": torch.arange(N)}
    did = _control(N).step(10, params, opt, buffers)
    assert did == {"it": 10, "cloned": 0, "split": 0, "pruned": 1, "n": 3, "reset": False}
    assert buffers["part"].tolist() == [0, 2, 3]
    for k in NAMES:
        torch.testing.assert_close(params[k].detach(), before[k][0][[0, 2, 3]], rtol=0, atol=0)
        torch.testing.assert_close(opt.state[params[k]]["exp_avg"], before[k][1][[0, 2, 3]], rtol=0, atol=0)
        torch.testing.assert_close(opt.state[params[k]]["exp_avg_sq"], before[k][2][[0, 2, 3]], rtol=0, atol=0)
    _assert_optimizer_follows(params, opt)


def test_prune_huge_gaussians_only_after_an_opacity_reset():
    N = 3
    params = _gaussians(N)
    with torch.no_grad():
        params["scales"][0] = math.log(0.5)  # > prune_scale (0.1) × scene_extent (1)
        params["scales"][1] = math.log(0.09)  # large (split if its gradient were high) but not huge
    opt = _adam(params)
    huge_quat = params["quats"][0].detach().clone()
    ctl = _control(N, reset_every=20)
    assert ctl.step(10, params, opt)["pruned"] == 0  # no reset yet: huge ones stay
    ctl.grad_sum, ctl.count = torch.zeros(N), torch.ones(N)
    did = ctl.step(20, params, opt)  # refines (before the reset: still nothing pruned), then resets
    assert did == {"it": 20, "cloned": 0, "split": 0, "pruned": 0, "n": 3, "reset": True} and ctl.resets == 1
    ctl.grad_sum, ctl.count = torch.zeros(N), torch.ones(N)
    did = ctl.step(30, params, opt)
    assert did == {"it": 30, "cloned": 0, "split": 0, "pruned": 1, "n": 2, "reset": False}
    assert not (params["quats"].detach() == huge_quat).all(-1).any()  # the huge one is gone
    assert [h["it"] for h in ctl.history] == [10, 20, 30]


# --------------------------------------------------------------------------- reset
def test_reset_caps_opacities_and_zeroes_their_moments():
    N = 3
    params = _gaussians(N)
    with torch.no_grad():
        params["opacities"].copy_(torch.logit(torch.tensor([0.9, 0.007, 0.5])))
    opt = _adam(params)
    before = _snapshot(params, opt)
    ctl = _control(N, refine_start=500, refine_stop=2000, reset_every=300)  # no refinement at 300
    did = ctl.step(300, params, opt)
    assert did == {"it": 300, "cloned": 0, "split": 0, "pruned": 0, "n": 3, "reset": True}
    assert ctl.resets == 1 and ctl.history == [did]
    opacity = torch.sigmoid(before["opacities"][0])  # about [0.9, 0.007, 0.5] after the Adam step
    assert 0.005 < float(opacity[1]) < 0.0095
    expected = torch.tensor([0.01, float(opacity[1]), 0.01])
    torch.testing.assert_close(torch.sigmoid(params["opacities"].detach()), expected)
    assert (opt.state[params["opacities"]]["exp_avg"] == 0).all()
    assert (opt.state[params["opacities"]]["exp_avg_sq"] == 0).all()
    for k in ("means", "scales", "quats", "sh0"):  # the others are untouched
        torch.testing.assert_close(params[k].detach(), before[k][0], rtol=0, atol=0)
        torch.testing.assert_close(opt.state[params[k]]["exp_avg"], before[k][1], rtol=0, atol=0)
    _assert_optimizer_follows(params, opt)
    assert ctl.step(301, params, opt) is None and ctl.step(600, params, opt)["reset"] and ctl.resets == 2
    assert ctl.step(2100, params, opt) is None and ctl.resets == 2  # no reset after refine_stop


def test_reset_opacities_function():
    params = {"opacities": torch.nn.Parameter(torch.logit(torch.tensor([0.3, 0.05])))}
    reset_opacities(params, None, 0.1)
    torch.testing.assert_close(torch.sigmoid(params["opacities"].detach()), torch.tensor([0.1, 0.05]))


# --------------------------------------------------------------------------- max_gaussians
def test_max_gaussians_densifies_the_largest_gradients_first():
    N = 6
    params = _gaussians(N)
    with torch.no_grad():
        params["scales"][4] = LARGE
    opt = _adam(params)
    before = _snapshot(params, opt)
    ctl = _control(N, high={1: 2e-3, 2: 3e-3, 4: 5e-3, 5: 4e-3}, max_gaussians=8)  # room for 2: Gaussians 4 and 5
    did = ctl.step(10, params, opt, generator=torch.Generator().manual_seed(0))
    assert did == {"it": 10, "cloned": 1, "split": 1, "pruned": 0, "n": 8, "reset": False}
    sh0 = params["sh0"].detach()
    old = before["sh0"][0]
    torch.testing.assert_close(sh0[:5], old[[0, 1, 2, 3, 5]], rtol=0, atol=0)  # 4 (split) removed
    torch.testing.assert_close(sh0[5], old[5], rtol=0, atol=0)  # the clone of 5
    torch.testing.assert_close(sh0[6:], old[[4, 4]], rtol=0, atol=0)  # 4's children

    # at the cap: nothing densifies
    ctl = _control(8, high=dict.fromkeys(range(8), 1.0), max_gaussians=8)
    did = ctl.step(20, params, opt)
    assert did["cloned"] == did["split"] == 0 and did["n"] == 8


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "field, value",
    [
        ("grad_threshold", 0.0),
        ("grad_threshold", float("nan")),
        ("percent_dense", -0.01),
        ("prune_scale", 0.0),
        ("reset_opacity", 0.0),
        ("split_factor", 1.0),
        ("prune_opacity", 1.0),
        ("prune_opacity", -0.1),
        ("refine_every", 0),
        ("reset_every", 0),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"DensityConfig\.{field}"):
        DensityConfig(**{field: value})


def test_config_defaults_are_the_papers():
    cfg = DensityConfig()
    assert (cfg.grad_threshold, cfg.percent_dense, cfg.split_factor, cfg.prune_opacity) == (2e-4, 0.01, 1.6, 0.005)
    assert (cfg.refine_start, cfg.refine_stop, cfg.refine_every, cfg.reset_every) == (500, 15_000, 100, 3_000)


@pytest.mark.parametrize("missing", ["means", "scales", "quats", "opacities"])
def test_step_requires_the_gaussian_parameters(missing):
    params = _gaussians(2)
    del params[missing]
    with pytest.raises(ValueError, match=rf"missing \['{missing}'\]"):
        _control(2).step(10, params, None)


def test_state_dict_round_trip():
    ctl = _control(3, high={0: 1.0})
    ctl.step(10, _gaussians(3), None)
    ctl.grad_sum, ctl.count, ctl.resets = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.ones(4), 2
    other = _control(1)
    other.load_state_dict(ctl.state_dict())
    assert other.resets == 2 and other.history == ctl.history and len(other.history) == 1
    torch.testing.assert_close(other.grad_sum, ctl.grad_sum)


def test_select_keeps_masked_gaussians():
    params = _gaussians(4)
    opt = _adam(params)
    buffers = {"part": torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])}
    means = params["means"].detach().clone()
    select(params, opt, torch.tensor([False, True, True, False]), buffers)
    torch.testing.assert_close(params["means"].detach(), means[1:3], rtol=0, atol=0)
    assert buffers["part"].tolist() == [[2, 3], [4, 5]]
    _assert_optimizer_follows(params, opt)


# --------------------------------------------------------------------------- end to end
S = 32


def _target() -> torch.Tensor:
    """A 32×32 image: a red disc, a green disc and a blue bar on black."""
    ys, xs = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    img = torch.zeros(S, S, 3)
    img[..., 0] = ((xs - 10) ** 2 + (ys - 10) ** 2 < 25).float()
    img[..., 1] = ((xs - 22) ** 2 + (ys - 20) ** 2 < 36).float()
    img[..., 2] = ((xs > 6) & (xs < 26) & (ys > 25) & (ys < 29)).float()
    return img[None]


def _fit(density: bool, iters: int = 100) -> tuple[float, int, DensityControl]:
    """Fit 20 Gaussians near HEAD_TARGET to the target (L1), with or without density control."""
    cam = Camera.orbit(width=S, height=S)  # the image spans about ±1.07 world units at the target
    viewmats, Ks, target = cam.viewmat[None], cam.K[None], _target()
    g = torch.Generator().manual_seed(0)
    N = 20
    raw = {
        "means": torch.tensor(HEAD_TARGET) + (torch.rand(N, 3, generator=g) * 2 - 1) * torch.tensor([0.6, 0.6, 0.1]),
        "scales": torch.full((N, 3), math.log(0.08)),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(N, 1),
        "opacities": torch.zeros(N),
        "colors": torch.zeros(N, 3),
    }
    params = {k: torch.nn.Parameter(v) for k, v in raw.items()}
    lrs = {"means": 0.01, "scales": 0.02, "quats": 0.01, "opacities": 0.05, "colors": 0.05}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lrs[k], "name": k} for k in params], eps=1e-15)
    cfg = DensityConfig(
        grad_threshold=2e-4,
        percent_dense=0.05,
        refine_start=20,
        refine_stop=80,
        refine_every=20,
        reset_every=10_000,
        max_gaussians=150,
    )
    ctl = DensityControl(cfg, scene_extent=1.0)
    gen = torch.Generator().manual_seed(1)

    def render():
        p = params
        img, _, meta = rasterize(
            p["means"], p["quats"], p["scales"].exp(), torch.sigmoid(p["opacities"]), torch.sigmoid(p["colors"]),
            viewmats, Ks, S, S, backend="torch",
        )  # fmt: skip
        return img, meta

    for it in range(1, iters + 1):
        img, meta = render()
        meta["means2d"].retain_grad()
        loss = (img - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        if density:
            ctl.accumulate(meta)
        opt.step()
        if density:
            ctl.step(it, params, opt, generator=gen)
    with torch.no_grad():
        final = float((render()[0] - target).abs().mean())
    return final, len(params["means"]), ctl


def test_density_control_fits_a_toy_image_better(one_thread):
    plain_loss, plain_n, _ = _fit(density=False)
    loss, n, ctl = _fit(density=True)
    assert plain_n == 20
    assert [h["it"] for h in ctl.history] == [20, 40, 60]
    assert all(h["cloned"] + h["split"] > 0 for h in ctl.history)
    assert 60 <= n <= 150 and ctl.history[-1]["n"] == n
    assert loss < 0.75 * plain_loss, (loss, plain_loss)
