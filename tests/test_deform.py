from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emozone_lite.deform import Deformation, DeformationField, apply_deformation, quat_multiply


def _hamilton(q, r):
    """Hand-written Hamilton product of two quaternions (w, x, y, z), plain Python floats."""
    a1, b1, c1, d1 = q
    a2, b2, c2, d2 = r
    return [
        a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
        a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
        a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
        a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2,
    ]


def _quat_to_matrix(q):
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _cloud(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g)
    quats = F.normalize(torch.randn(n, 4, generator=g), dim=-1)
    scales = torch.rand(n, 3, generator=g) * 0.05 + 0.01
    return means, quats, scales


def test_quat_multiply_matches_hand_written_hamilton_product():
    g = torch.Generator().manual_seed(1)
    q, r = torch.randn(20, 4, generator=g, dtype=torch.float64), torch.randn(20, 4, generator=g, dtype=torch.float64)
    expected = torch.tensor([_hamilton(a.tolist(), b.tolist()) for a, b in zip(q, r)], dtype=torch.float64)
    torch.testing.assert_close(quat_multiply(q, r), expected)
    # i j = k, j i = -k, and the identity is neutral on both sides
    i, j, one = torch.tensor([0.0, 1, 0, 0]), torch.tensor([0.0, 0, 1, 0]), torch.tensor([1.0, 0, 0, 0])
    assert quat_multiply(i, j).tolist() == [0, 0, 0, 1] and quat_multiply(j, i).tolist() == [0, 0, 0, -1]
    assert torch.equal(quat_multiply(q[0], one.double()), q[0]) and torch.equal(quat_multiply(one.double(), q[0]), q[0])
    # as rotations: R(q ⊗ r) = R(q) R(r); broadcasting [20, 4] x [4]
    torch.testing.assert_close(_quat_to_matrix(quat_multiply(q, r)), _quat_to_matrix(q) @ _quat_to_matrix(r))
    assert quat_multiply(q, r[0]).shape == (20, 4)
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        quat_multiply(torch.zeros(3, 3), torch.zeros(3, 4))


@pytest.mark.parametrize("batched", [True, False])
def test_new_field_is_exactly_the_identity(batched):
    torch.manual_seed(0)
    means, quats, scales = _cloud(64)
    field = DeformationField(feat_dim=16)
    feats = torch.randn(3, 64, 16) if batched else torch.randn(64, 16)
    d = field(feats, means)
    lead = (3, 64) if batched else (64,)
    assert d.dmeans.shape == (*lead, 3) and d.dquats.shape == (*lead, 4) and d.dlog_scales.shape == (*lead, 3)
    assert torch.equal(d.dmeans, torch.zeros_like(d.dmeans))
    assert torch.equal(d.dlog_scales, torch.zeros_like(d.dlog_scales))
    assert torch.equal(d.dquats, torch.tensor([1.0, 0, 0, 0]).expand_as(d.dquats))
    m2, q2, s2 = apply_deformation((means, quats, scales), d)
    assert m2.shape == (*lead, 3) and q2.shape == (*lead, 4) and s2.shape == (*lead, 3)
    assert torch.equal(m2, means.expand_as(m2))
    assert torch.equal(s2, scales.expand_as(s2))
    # the output is normalised: identical to normalising the input, and the input is unit already
    assert torch.equal(q2, F.normalize(quats, dim=-1).expand_as(q2))
    torch.testing.assert_close(q2, quats.expand_as(q2), rtol=0, atol=1e-6)


def test_apply_deformation_formula():
    means, quats, scales = _cloud(10)
    g = torch.Generator().manual_seed(3)
    dq = F.normalize(torch.randn(2, 10, 4, generator=g), dim=-1)
    d = Deformation(torch.randn(2, 10, 3, generator=g), dq, torch.randn(2, 10, 3, generator=g) * 0.1)
    m2, q2, s2 = apply_deformation((means, quats, scales), d)
    torch.testing.assert_close(m2, means + d.dmeans)
    torch.testing.assert_close(s2, scales * torch.exp(d.dlog_scales))
    torch.testing.assert_close(q2.norm(dim=-1), torch.ones(2, 10))
    # the local rotation Δq acts first: R(q2) = R(q) R(Δq)
    torch.testing.assert_close(_quat_to_matrix(q2), _quat_to_matrix(quats) @ _quat_to_matrix(dq), atol=1e-5, rtol=1e-5)


def test_every_parameter_learns():
    """Zero-initialised heads block the gradient to the inner layers on the very first step
    (dL/dh = W_head^T dL/dout = 0), so only the heads get gradients then. After one
    optimizer step the heads are non-zero and every parameter receives a gradient."""
    torch.manual_seed(0)
    means, quats, scales = _cloud(40)
    field = DeformationField(feat_dim=5, pe_freqs=3, hidden=16, n_layers=3)
    feats = torch.randn(2, 40, 5)
    target_m = means + 0.1 * torch.randn(2, 40, 3)
    target_s = scales * 1.5

    def loss_fn():
        m, q, s = apply_deformation((means, quats, scales), field(feats, means))
        return (m - target_m).pow(2).mean() + (s - target_s).pow(2).mean() + (q[..., 1] - 0.3).pow(2).mean()

    opt = torch.optim.Adam(field.parameters(), lr=1e-2)
    loss0 = loss_fn()
    loss0.backward()
    heads = {n for n, _ in field.named_parameters() if n.startswith("head_")}
    for name, p in field.named_parameters():
        assert p.grad is not None, name
        if name in heads:
            assert p.grad.abs().sum() > 0, name
        else:
            assert torch.equal(p.grad, torch.zeros_like(p.grad)), name  # blocked by the zero heads
    opt.step()
    opt.zero_grad()
    loss_fn().backward()
    for name, p in field.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient after one step"
    for _ in range(20):
        opt.step()
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
    assert loss.item() < loss0.item()


def test_position_only_field_and_pe_is_used():
    torch.manual_seed(0)
    means, quats, scales = _cloud(30)
    field = DeformationField(feat_dim=0, pe_freqs=2)
    with torch.no_grad():
        field.head_means.weight.normal_()
    d = field(None, means)
    assert d.dmeans.shape == (30, 3)
    assert d.dmeans.std(0).min() > 0  # different positions, different offsets
    db = field(torch.zeros(4, 30, 0), means)
    assert db.dmeans.shape == (4, 30, 3)
    torch.testing.assert_close(db.dmeans[2], d.dmeans)


def test_batched_equals_unbatched():
    torch.manual_seed(0)
    means, _, _ = _cloud(25)
    field = DeformationField(feat_dim=4)
    for head in (field.head_means, field.head_quats, field.head_scales):
        torch.nn.init.normal_(head.weight, std=0.1)
    feats = torch.randn(3, 25, 4)
    db = field(feats, means)
    for b in range(3):
        d1 = field(feats[b], means)
        torch.testing.assert_close(db.dmeans[b], d1.dmeans)
        torch.testing.assert_close(db.dquats[b], d1.dquats)
        torch.testing.assert_close(db.dlog_scales[b], d1.dlog_scales)
    torch.testing.assert_close(db.dquats.norm(dim=-1), torch.ones(3, 25))


def test_bad_inputs_raise_clear_errors():
    field = DeformationField(feat_dim=4)
    means = torch.randn(10, 3)
    with pytest.raises(ValueError, match=r"canon_means must have shape \[N, 3\], got \(10, 2\)"):
        field(torch.randn(10, 4), torch.randn(10, 2))
    with pytest.raises(ValueError, match=r"canon_means must be a torch.Tensor \[N, 3\], got list"):
        field(torch.randn(10, 4), means.tolist())
    with pytest.raises(ValueError, match="features must have shape"):
        field(torch.randn(2, 2, 10, 4), means)
    with pytest.raises(ValueError, match="feat_dim"):
        field(torch.randn(10, 5), means)
    with pytest.raises(ValueError, match="must match"):
        field(torch.randn(2, 9, 4), means)
    with pytest.raises(ValueError, match="features contains NaN or inf; check the upstream features"):
        field(torch.full((10, 4), float("nan")), means)
    bad = means.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="canon_means contains NaN"):
        field(torch.randn(10, 4), bad)
    with pytest.raises(ValueError, match="features is None"):
        field(None, means)
    with pytest.raises(ValueError, match="feat_dim must be >= 0, got -1"):
        DeformationField(feat_dim=-1)
    with pytest.raises(ValueError, match="hidden and n_layers must be >= 1"):
        DeformationField(feat_dim=3, n_layers=0)

    m, q, s = _cloud(10)
    d = field(torch.randn(10, 4), means)
    with pytest.raises(ValueError, match="share N"):
        apply_deformation((m, q[:9], s), d)
    with pytest.raises(ValueError, match=r"quats must have shape \[N, 4\], got \(10, 3\)"):
        apply_deformation((m, q[:, :3], s), d)
    with pytest.raises(ValueError, match="match N"):
        apply_deformation(_cloud(11), d)
    with pytest.raises(ValueError, match="cloud_tensors"):
        apply_deformation((m, q), d)
    with pytest.raises(ValueError, match="Deformation"):
        apply_deformation((m, q, s), (d.dmeans, d.dquats, d.dlog_scales))
