from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from emozone_lite.attention import (
    AU,
    AUDIO,
    DEFAULT_BIAS,
    NULL,
    SZPAB,
    ImplicitFusion,
    make_token_modality,
    modality_mass,
    sz_pab_attention,
    zone_modality_bias,
)
from emozone_lite.zones import AU_NAMES, au_anatomical_prior


def _inputs(n=7, m=6, d=8, batch=(), z=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, n, d, generator=g, dtype=dtype)
    k = torch.randn(*batch, m, d, generator=g, dtype=dtype)
    v = torch.randn(*batch, m, d, generator=g, dtype=dtype)
    w = torch.softmax(torch.randn(n, z, generator=g, dtype=dtype) * 2, dim=1)
    mod = torch.tensor([AUDIO, AUDIO, AU, AU, AU, NULL][:m] + [AU] * max(0, m - 6))
    return q, k, v, w, mod


def _loop_oracle(q, k, v, mod, w, B, P=None):
    """Plain Python loops over queries, tokens and zones (no batch)."""
    n, m = q.shape[0], k.shape[0]
    out = torch.zeros(n, v.shape[1], dtype=q.dtype)
    A = torch.zeros(n, m, dtype=q.dtype)
    for i in range(n):
        logits = []
        for j in range(m):
            x = float(q[i] @ k[j]) / math.sqrt(q.shape[1])
            x += sum(float(w[i, z]) * float(B[z, int(mod[j])]) for z in range(w.shape[1]))
            if P is not None and int(mod[j]) == AU:
                x += sum(float(w[i, z]) * float(P[z, j]) for z in range(w.shape[1]))
            logits.append(x)
        mx = max(logits)
        e = [math.exp(x - mx) for x in logits]
        for j in range(m):
            A[i, j] = e[j] / sum(e)
            out[i] += A[i, j] * v[j]
    return out, A


def _hard(labels, z=3):
    return F.one_hot(torch.as_tensor(labels), z).double()


# --------------------------------------------------------------------------- the function
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_zero_bias_one_zone_equals_sdpa_values_and_grads(batch):
    q, k, v, _, mod = _inputs(batch=batch)
    w = torch.ones(q.shape[-2], 1, dtype=q.dtype)
    qs, ks, vs = (t.clone().requires_grad_(True) for t in (q, k, v))
    qr, kr, vr = (t.clone().requires_grad_(True) for t in (q, k, v))
    out, a = sz_pab_attention(qs, ks, vs, mod, w, torch.zeros(1, 3, dtype=q.dtype))
    ref = F.scaled_dot_product_attention(qr, kr, vr)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    for mine, theirs in ((qs, qr), (ks, kr), (vs, vr)):
        torch.testing.assert_close(mine.grad, theirs.grad)
    torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1], dtype=a.dtype))


def test_zero_bias_many_zones_is_plain_attention():
    q, k, v, w, mod = _inputs()
    out, _ = sz_pab_attention(q, k, v, mod, w, torch.zeros(3, 3, dtype=q.dtype))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))


def test_matches_loop_oracle_with_bias_and_prior():
    q, k, v, w, mod = _inputs(m=8)
    g = torch.Generator().manual_seed(3)
    B = torch.randn(3, 3, generator=g, dtype=q.dtype) * 2
    P = torch.randn(3, 8, generator=g, dtype=q.dtype)
    out, a = sz_pab_attention(q, k, v, mod, w, B, au_prior=P)
    ref_out, ref_a = _loop_oracle(q, k, v, mod, w, B, P)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(a, ref_a)
    # per-query prior [N, M] == per-zone prior combined with the zone weights
    out2, a2 = sz_pab_attention(q, k, v, mod, w, B, au_prior=w @ P)
    torch.testing.assert_close(a2, a)
    # prior entries on non-AU tokens are ignored
    P_noise = P.clone()
    P_noise[:, mod != AU] = 123.0
    torch.testing.assert_close(sz_pab_attention(q, k, v, mod, w, B, au_prior=P_noise)[1], a)


def test_prior_on_disambiguates_n_equals_z():
    q, k, v, w, mod = _inputs(n=3)
    P = torch.randn(3, 6, dtype=q.dtype)
    a_zone = sz_pab_attention(q, k, v, mod, w, torch.zeros(3, 3, dtype=q.dtype), P, prior_on="zone")[1]
    a_query = sz_pab_attention(q, k, v, mod, w, torch.zeros(3, 3, dtype=q.dtype), w @ P, prior_on="query")[1]
    torch.testing.assert_close(a_zone, a_query)


def test_gradcheck():
    q, k, v, w, mod = _inputs(n=4, m=6, d=3)
    B = torch.randn(3, 3, dtype=q.dtype)
    args = [t.clone().requires_grad_(True) for t in (q, k, v, w, B)]
    assert torch.autograd.gradcheck(lambda q, k, v, w, B: sz_pab_attention(q, k, v, mod, w, B, validate=False)[0], args)


def test_fast_twin_matches_values_and_grads():
    q, k, v, w, mod = _inputs(batch=(3,), m=8)
    q = q[0]  # shared queries [N, d], per-frame keys
    B = torch.randn(3, 3, dtype=q.dtype)
    P = torch.randn(3, 8, dtype=q.dtype)
    mask = torch.rand(q.shape[0], 8, generator=torch.Generator().manual_seed(1)) > 0.2
    mask[0] = False  # one fully masked row
    res = []
    for need in (True, False):
        ts = [t.clone().requires_grad_(True) for t in (q, k, v, B)]
        out, a = sz_pab_attention(ts[0], ts[1], ts[2], mod, w, ts[3], P, mask, need_weights=need)
        assert (a is None) == (not need)
        out.pow(2).sum().backward()
        res.append((out, [t.grad for t in ts]))
    torch.testing.assert_close(res[0][0], res[1][0])
    for g1, g2 in zip(res[0][1], res[1][1]):
        torch.testing.assert_close(g1, g2)


def test_batch_dim_matches_per_frame_calls():
    q, k, v, w, mod = _inputs(batch=(4,))
    B = DEFAULT_BIAS.double()
    out, a = sz_pab_attention(q[0], k, v, mod, w, B)  # broadcast one query set over frames
    assert out.shape == (4, 7, 8) and a.shape == (4, 7, 6)
    for t in range(4):
        o_t, a_t = sz_pab_attention(q[0], k[t], v[t], mod, w, B)
        torch.testing.assert_close(out[t], o_t)
        torch.testing.assert_close(a[t], a_t)


@pytest.mark.parametrize("neg", [-1e4, float("-inf")])
def test_large_negative_bias_silences_modality_in_its_zone(neg):
    n = 9
    q, k, v, _, mod = _inputs(n=n)
    labels = torch.arange(n) % 3  # upper, lower, synergy, ...
    w = _hard(labels)
    B = torch.zeros(3, 3, dtype=q.dtype)
    B[0, AUDIO] = neg  # upper zone may not listen to audio
    _, a = sz_pab_attention(q, k, v, mod, w, B)
    mass = modality_mass(a, mod)
    assert float(mass[labels == 0, AUDIO].max()) < 1e-6
    assert float(mass[labels != 0, AUDIO].min()) > 1e-3  # other zones untouched
    torch.testing.assert_close(a.sum(-1), torch.ones(n, dtype=a.dtype))
    assert bool(torch.isfinite(a).all())


def test_neg_inf_with_soft_weights_masks_any_query_touching_the_zone():
    q, k, v, w, mod = _inputs()
    w = w.clone()
    w[0] = torch.tensor([0.0, 0.5, 0.5], dtype=w.dtype)  # query 0 has no share of zone 0
    B = torch.zeros(3, 3, dtype=q.dtype)
    B[0, AU] = float("-inf")
    _, a = sz_pab_attention(q, k, v, mod, w, B)
    au_mass = modality_mass(a, mod)[:, AU]
    assert float(au_mass[1:].max()) == 0.0 and float(au_mass[0]) > 0.0
    b = zone_modality_bias(w, B, mod)
    assert bool(torch.isfinite(b[0]).all()) and bool(torch.isneginf(b[1:, mod == AU]).all())


def test_fully_masked_rows_are_zero_and_nan_free():
    q, k, v, w, mod = _inputs()
    B = torch.full((3, 3), float("-inf"), dtype=q.dtype)
    B[:, :] = float("-inf")
    wh = _hard([0, 1, 2, 0, 1, 2, 2])
    B[1] = 0.0  # only zone 1 may attend
    qs = q.clone().requires_grad_(True)
    out, a = sz_pab_attention(qs, k, v, mod, wh, B)
    dead = torch.tensor([True, False, True, True, False, True, True])
    assert bool((out[dead] == 0).all()) and bool((a[dead] == 0).all())
    torch.testing.assert_close(a[~dead].sum(-1), torch.ones(2, dtype=a.dtype))
    out.sum().backward()
    assert bool(torch.isfinite(qs.grad).all()) and bool((qs.grad[dead] == 0).all())
    mask = torch.zeros(7, 6, dtype=torch.bool)
    out2, a2 = sz_pab_attention(q, k, v, mod, w, torch.zeros(3, 3, dtype=q.dtype), mask=mask)
    assert bool((out2 == 0).all()) and bool((a2 == 0).all())


def test_float_and_bool_masks():
    q, k, v, w, mod = _inputs()
    B = torch.zeros(3, 3, dtype=q.dtype)
    keep = torch.ones(7, 6, dtype=torch.bool)
    keep[:, 0] = False
    _, a_bool = sz_pab_attention(q, k, v, mod, w, B, mask=keep)
    add = torch.zeros(7, 6, dtype=q.dtype)
    add[:, 0] = float("-inf")
    _, a_float = sz_pab_attention(q, k, v, mod, w, B, mask=add)
    assert bool((a_bool[:, 0] == 0).all())
    torch.testing.assert_close(a_bool, a_float)


def test_modality_mass_and_token_modality():
    mod = make_token_modality(3, 17)
    assert mod.tolist() == [0] * 3 + [1] * 17 + [2]
    a = torch.softmax(torch.randn(2, 5, 21), -1)
    mass = modality_mass(a, mod)
    assert mass.shape == (2, 5, 3)
    torch.testing.assert_close(mass.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(mass[..., 0], a[..., :3].sum(-1))


# --------------------------------------------------------------------------- bad inputs
def _bad_calls():
    q, k, v, w, mod = _inputs()
    B = torch.zeros(3, 3, dtype=q.dtype)
    nan_q = q.clone()
    nan_q[0, 0] = float("nan")
    w_bad = w.clone()
    w_bad[0] *= 2
    w_neg = w.clone()
    w_neg[0] = torch.tensor([1.5, -0.5, 0.0], dtype=w.dtype)
    B_nan = B.clone()
    B_nan[0, 0] = float("nan")
    B_inf = B.clone()
    B_inf[0, 0] = float("inf")
    return [
        (dict(q=q[0]), r"q must have shape \[\.\.\., L, d\], got \(8,\)"),
        (dict(q=q.tolist()), "q must be a torch.Tensor, got list"),
        (dict(q=q[:, :4]), "must share d"),
        (dict(v=v[:5]), "must share M"),
        (dict(q=nan_q), "q contains NaN"),
        (dict(q=q.expand(2, 7, 8), k=k.expand(3, 6, 8), v=v.expand(3, 6, 8)), "do not broadcast"),
        (dict(token_modality=mod[:5]), r"token_modality must be an integer tensor of shape \[M=6\]"),
        (dict(token_modality=mod.float()), "integer modality ids"),
        (dict(token_modality=mod - 1), ">= 0"),
        (dict(zone_weights=w[:5]), r"zone_weights must have shape \[N, Z\] with N = 7, got \(5, 3\); one row per"),
        (dict(zone_weights=w_bad), "rows must sum to 1"),
        (dict(zone_weights=w_neg), "non-negative"),
        (dict(zone_weights=w[:, 0]), r"\[N, Z\]"),
        (dict(bias_table=torch.zeros(2, 3)), r"bias_table must have shape \[Z, n_modalities\] with Z = 3, got"),
        (dict(bias_table=torch.zeros(2, 3)), r"; one row per zone"),
        (dict(bias_table=torch.zeros(3, 2)), "modality columns"),
        (dict(bias_table=B_nan), "bias_table contains NaN"),
        (dict(bias_table=B_inf), r"\+inf"),
        (dict(au_prior=torch.zeros(5, 6)), "au_prior must have shape"),
        (dict(au_prior=torch.zeros(7, 6), prior_on="zone"), "prior_on='zone'"),
        (dict(mask=torch.ones(7, 5, dtype=torch.bool)), "mask must broadcast"),
    ], dict(q=q, k=k, v=v, token_modality=mod, zone_weights=w, bias_table=B)


@pytest.mark.parametrize("case", range(len(_bad_calls()[0])))
def test_bad_inputs_raise_clear_errors(case):
    cases, good = _bad_calls()
    change, match = cases[case]
    with pytest.raises(ValueError, match=match):
        sz_pab_attention(**{**good, **change})


# --------------------------------------------------------------------------- modules
def _module_inputs(n=40, b=2, n_a=6, d_a=12, d_u=5, seed=0, labels=None):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * 0.5
    w = _hard(labels).float() if labels is not None else torch.softmax(torch.randn(n, 3, generator=g), 1)
    return means, w, torch.randn(b, n_a, d_a, generator=g), torch.randn(b, 17, d_u, generator=g)


def test_szpab_shapes_and_weights():
    torch.manual_seed(0)
    m = SZPAB(d_model=16, d_audio=12, d_au=5, n_freqs=4)
    f, a = m(*_module_inputs())
    assert f.shape == (2, 40, 16) and a.shape == (2, 40, 6 + 17 + 1)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 40))
    assert m.token_modality(6).tolist() == [0] * 6 + [1] * 17 + [2]
    assert modality_mass(a, m.token_modality(6)).shape == (2, 40, 3)
    assert torch.equal(m.bias_table, DEFAULT_BIAS)
    assert "bias_table" not in dict(m.named_parameters())


def test_szpab_learnable_vs_fixed_bias_gradients():
    torch.manual_seed(0)
    inputs = _module_inputs()
    learn = SZPAB(d_model=16, d_audio=12, d_au=5, bias_mode="learnable")
    f, _ = learn(*inputs)
    f.pow(2).sum().backward()
    assert isinstance(learn.bias_table, torch.nn.Parameter)
    assert learn.bias_table.grad is not None and float(learn.bias_table.grad.abs().sum()) > 0
    fixed = SZPAB(d_model=16, d_audio=12, d_au=5, bias_mode="fixed")
    f, _ = fixed(*inputs)
    f.pow(2).sum().backward()
    assert not fixed.bias_table.requires_grad and fixed.bias_table.grad is None
    assert fixed.query[0].weight.grad is not None  # the rest still learns


def test_set_bias_changes_routing_live():
    torch.manual_seed(0)
    m = SZPAB(d_model=16, d_audio=12, d_au=5)
    labels = torch.arange(30) % 3
    inputs = _module_inputs(n=30, labels=labels)
    mod = m.token_modality(6)
    with torch.no_grad():
        mass = modality_mass(m(*inputs)[1], mod)
    # default prior: the upper zone listens to AUs, the lower zone to audio
    assert float(mass[:, labels == 0, AU].mean()) > 0.8 > float(mass[:, labels == 0, AUDIO].mean())
    assert float(mass[:, labels == 1, AUDIO].mean()) > 0.8
    table = torch.zeros(3, 3)
    table[:, AU] = -1e4
    m.set_bias(table)
    with torch.no_grad():
        assert float(modality_mass(m(*inputs)[1], mod)[..., AU].max()) < 1e-6
    learn = SZPAB(d_model=16, d_audio=12, d_au=5, bias_mode="learnable")
    learn.set_bias(table)
    assert torch.equal(learn.bias_table.detach(), table) and isinstance(learn.bias_table, torch.nn.Parameter)


def test_hard_mask_isolates_upper_zone_from_audio():
    """With audio masked out of the upper zone, changing the audio changes no upper Gaussian."""
    torch.manual_seed(0)
    table = DEFAULT_BIAS.clone()
    table[0, AUDIO] = float("-inf")
    m = SZPAB(d_model=16, d_audio=12, d_au=5, bias=table)
    labels = torch.arange(30) % 3
    means, w, audio, aus = _module_inputs(n=30, labels=labels)
    with torch.no_grad():
        f1, _ = m(means, w, audio, aus)
        f2, _ = m(means, w, audio + torch.randn_like(audio), aus)
    torch.testing.assert_close(f1[:, labels == 0], f2[:, labels == 0])
    assert float((f1[:, labels == 1] - f2[:, labels == 1]).abs().max()) > 1e-3
    # the implicit baseline entangles: every Gaussian hears the audio
    base = ImplicitFusion(d_model=16, d_audio=12, d_au=5)
    with torch.no_grad():
        g1, _ = base(means, audio, aus)
        g2, _ = base(means, audio + torch.randn_like(audio), aus)
    assert float((g1 - g2).abs().amax(-1).min()) > 0


def test_anatomical_prior_routes_aus_within_zones():
    torch.manual_seed(0)
    m = SZPAB(d_model=16, d_audio=12, d_au=5, au_prior="anatomical")
    torch.testing.assert_close(m.au_prior, au_anatomical_prior())
    labels = torch.arange(30) % 3
    with torch.no_grad():
        _, a = m(*_module_inputs(n=30, labels=labels))
    au = a[..., 6 : 6 + 17]
    i01, i26 = AU_NAMES.index("AU01"), AU_NAMES.index("AU26")
    assert float(au[:, labels == 0, i01].mean()) > 5 * float(au[:, labels == 0, i26].mean())
    assert float(au[:, labels == 1, i26].mean()) > 5 * float(au[:, labels == 1, i01].mean())


def test_null_token_starts_silent_and_both_fusions_share_sizes():
    torch.manual_seed(0)
    means, w, audio, aus = _module_inputs()
    sizes = dict(d_model=16, d_audio=12, d_au=5, n_freqs=4)
    f, a = SZPAB(n_zones=3, **sizes)(means, w, audio, aus)
    g, none = ImplicitFusion(**sizes)(means, audio, aus)  # the baseline takes no zones
    assert f.shape == g.shape == (2, 40, 16)
    assert a.shape == (2, 40, 6 + 17 + 1) and none is None
    assert float(SZPAB(d_model=16, d_audio=12, d_au=5).null_v.detach().abs().sum()) == 0


@pytest.mark.parametrize(
    "kwargs", [dict(n_zones=3), dict(bias_mode="fixed"), dict(bias=DEFAULT_BIAS), dict(au_prior=None)]
)
def test_implicit_fusion_refuses_zone_arguments(kwargs):
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{next(iter(kwargs))}'"):
        ImplicitFusion(d_model=16, **kwargs)
    with pytest.raises(TypeError, match="positional"):  # the old positional order (d_model, n_zones, d_audio, ...)
        ImplicitFusion(16, 3, 12, 5)
    means, w, audio, aus = _module_inputs()
    base = ImplicitFusion(d_model=16, d_audio=12, d_au=5)
    with pytest.raises(TypeError, match="positional"):  # zone_weights is not an argument of forward
        base(means, w, audio, aus)
    with pytest.raises(TypeError, match="zone_weights"):
        base(means, zone_weights=w, audio_tokens=audio, au_tokens=aus)


def test_large_n_runs():
    torch.manual_seed(0)
    m = SZPAB(d_model=32, d_audio=16, d_au=8)
    means, w, audio, aus = _module_inputs(n=20000, b=1, n_a=12, d_a=16, d_u=8)
    with torch.no_grad():
        f, a = m(means, w, audio, aus)
    assert f.shape == (1, 20000, 32) and a.shape == (1, 20000, 30)
    assert bool(torch.isfinite(f).all())


def test_module_bad_inputs():
    m = SZPAB(d_model=16, d_audio=12, d_au=5)
    base = ImplicitFusion(d_model=16, d_audio=12, d_au=5)
    means, w, audio, aus = _module_inputs()
    nan_audio = audio.clone()
    nan_audio[0, 0, 0] = float("nan")
    cases = [
        ((means[:, :2], w, audio, aus), r"canon_means must have shape \[N, 3\], got \(40, 2\)"),
        ((means, w[:, :2], audio, aus), r"zone_weights must have shape \[N, n_zones\] with N = 40, n_zones = 3"),
        ((means, w[:5], audio, aus), r"with N = 40, n_zones = 3, got \(5, 3\)"),
        ((means, w * 2, audio, aus), "sum to 1"),
        ((means, w, audio[..., :3], aus), r"audio_tokens must have shape \[B, n_a, d_audio\] with d_audio = 12"),
        ((means, w, audio, aus[:, :16]), r"au_tokens must have shape \[B, 17, d_au\] with d_au = 5"),
        ((means, w, audio[:1], aus), "batch size"),
        ((means, w, audio[:, :0], aus), "no tokens"),
        ((means, w, nan_audio, aus), "audio_tokens contains NaN"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            m(*args)
    for args, match in cases[:1] + cases[4:]:  # the baseline's own inputs: all but the zone weights
        with pytest.raises(ValueError, match=match):
            base(args[0], *args[2:])
    with pytest.raises(ValueError, match="canon_means must be a torch.Tensor, got list"):
        base(means.tolist(), audio, aus)
    with pytest.raises(ValueError, match="bias_mode"):
        SZPAB(bias_mode="soft")
    with pytest.raises(ValueError, match="au_prior must be None"):
        SZPAB(au_prior="facs")
    with pytest.raises(ValueError, match=r"au_prior must have shape \[n_zones, n_au\] with n_zones = 3, n_au = 17"):
        SZPAB(au_prior=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="3 coarse zones"):
        SZPAB(n_zones=2, au_prior="anatomical")
    with pytest.raises(ValueError, match=r"bias table must have shape \[n_zones, 3\] with n_zones = 3, got \(2, 3\)"):
        m.set_bias(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        m.set_bias(torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError, match="d_model must be >= 1"):
        ImplicitFusion(d_model=0)
    with pytest.raises(ValueError, match="n_modalities"):
        modality_mass(torch.rand(2, 3), torch.tensor([0, 1, 5]))
