"""Tests of emozone_lite.temporal: RevIN, patching, windows, CIT-AE and the per-frame baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emozone_lite.aus import AU_NAMES
from emozone_lite.metrics import jitter
from emozone_lite.temporal import (
    CITAE,
    PerFrameAUEncoder,
    RevIN,
    fit_reconstruction,
    make_patches,
    n_patches,
    sliding_windows,
    window_offsets,
)

C = len(AU_NAMES)


def keyframe_track(T: int, seed: int = 0, every: int = 20, n_aus: int = C) -> torch.Tensor:
    """A smooth ``[T, n_aus]`` AU track: random keys in [0, 3] every ``every`` frames, smoothstep between."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(T // every + 2, n_aus, generator=g) * 3
    t = torch.arange(T, dtype=torch.float32)
    i = (t // every).long()
    a = (t - i * every) / every
    a = a * a * (3 - 2 * a)
    return keys[i] * (1 - a[:, None]) + keys[i + 1] * a[:, None]


def model(seed: int = 0, **kw) -> CITAE:
    torch.manual_seed(seed)
    return CITAE(**kw).eval()


# --------------------------------------------------------------------------- RevIN
def test_revin_round_trip_and_statistics():
    torch.manual_seed(0)
    r = RevIN(C)
    with torch.no_grad():  # a non-trivial affine must be undone too
        r.weight.uniform_(0.5, 2.0)
        r.bias.uniform_(-1.0, 1.0)
    x = torch.randn(5, C, 32, dtype=torch.float64).float() * 3 + 2
    y = r(x, "norm")
    z = (y - r.bias[:, None]) / r.weight[:, None]
    torch.testing.assert_close(z.mean(-1), torch.zeros(5, C), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(-1, unbiased=False), torch.ones(5, C), atol=1e-4, rtol=0)
    torch.testing.assert_close(r(y, "denorm"), x, atol=1e-4, rtol=1e-5)


def test_revin_denorm_broadcasts_over_other_lengths():
    r = RevIN(3, affine=False)
    x = torch.randn(4, 3, 16) * 2 + 5
    r(x, "norm")
    one = torch.zeros(4, 3, 1)
    torch.testing.assert_close(r(one, "denorm"), r.mean)  # normalised 0 is the mean


def test_revin_is_per_channel():
    r = RevIN(4)
    x = torch.randn(2, 4, 16)
    y1 = r(x, "norm")
    x2 = x.clone()
    x2[:, 1] = x2[:, 1] * 100 + 7
    y2 = r(x2, "norm")
    keep = [0, 2, 3]
    torch.testing.assert_close(y1[:, keep], y2[:, keep])


def test_revin_bad_inputs():
    r = RevIN(C)
    with pytest.raises(RuntimeError, match="before norm"):
        r(torch.zeros(1, C, 8), "denorm")
    with pytest.raises(ValueError, match="mode must be"):
        r(torch.zeros(1, C, 8), "normalise")
    with pytest.raises(ValueError, match=r"\[\.\.\., 17, L\]"):
        r(torch.zeros(1, 8, C))
    with pytest.raises(ValueError, match="num_channels"):
        RevIN(0)
    with pytest.raises(ValueError, match="eps"):
        RevIN(3, eps=0.0)


# --------------------------------------------------------------------------- patching
def test_make_patches_matches_loop():
    x = torch.randn(2, 3, 32)
    p = make_patches(x, 8, 4)
    assert p.shape == (2, 3, n_patches(32, 8, 4), 8) == (2, 3, 7, 8)
    for k in range(7):
        torch.testing.assert_close(p[:, :, k], x[:, :, 4 * k : 4 * k + 8])


def test_make_patches_bad_inputs():
    with pytest.raises(ValueError, match="patch_len .* longer than the window"):
        make_patches(torch.zeros(1, 2, 6), 8, 4)
    with pytest.raises(ValueError, match="stride must be positive"):
        make_patches(torch.zeros(1, 2, 32), 8, 0)
    with pytest.raises(ValueError, match="stride must be positive"):
        make_patches(torch.zeros(1, 2, 32), 8, -2)
    with pytest.raises(ValueError, match=r"\[B, C, L\]"):
        make_patches(torch.zeros(2, 32), 8, 4)
    with pytest.raises(ValueError, match="patch_len must be positive"):
        make_patches(torch.zeros(1, 2, 32), 0, 4)


# --------------------------------------------------------------------------- windows
@pytest.mark.parametrize("anchor", ["causal", "centred"])
@pytest.mark.parametrize("pad", ["edge", "zeros"])
def test_sliding_windows_match_loop(anchor, pad):
    T, W = 11, 6
    tr = torch.randn(T, 3)
    w = sliding_windows(tr, W, anchor, pad)
    assert w.shape == (T, 3, W)
    start = -W + 1 if anchor == "causal" else -(W // 2)
    for t in range(T):
        for j in range(W):
            s = t + start + j
            if 0 <= s < T:
                exp = tr[s]
            else:
                exp = tr[min(max(s, 0), T - 1)] if pad == "edge" else torch.zeros(3)
            torch.testing.assert_close(w[t, :, j], exp)


def test_window_frame_ranges_are_as_documented():
    assert window_offsets(32, "causal").tolist() == list(range(-31, 1))
    assert window_offsets(32, "centred").tolist() == list(range(-16, 16))
    tr = torch.arange(100.0)[:, None]
    assert sliding_windows(tr, 32, "causal")[50, 0].tolist() == list(range(19, 51))
    assert sliding_windows(tr, 32, "centred")[50, 0].tolist() == list(range(34, 66))


def test_window_longer_than_track_is_edge_padded():
    tr = torch.tensor([[1.0], [2.0], [3.0]])
    w = sliding_windows(tr, 8, "centred")
    assert w.shape == (3, 1, 8)
    assert w[0, 0].tolist() == [1, 1, 1, 1, 1, 2, 3, 3]
    enc = model(window=32)
    assert enc(torch.rand(5, C)).shape == (5, C, 32)  # a 5-frame track is fine


def test_sliding_windows_batched_and_numpy():
    tr = np.random.default_rng(0).random((2, 20, 4))
    w = sliding_windows(tr, 8)
    assert w.shape == (2, 20, 4, 8) and w.dtype == torch.float64  # float64 arrays keep their precision
    torch.testing.assert_close(w[1], sliding_windows(torch.as_tensor(tr[1]), 8))
    assert sliding_windows(tr.astype(np.float32), 8).dtype == torch.float32
    assert sliding_windows(tr[0].tolist(), 8).dtype == torch.float64  # like np.asarray of the list
    assert sliding_windows(np.arange(6).reshape(3, 2), 4).dtype == torch.float32  # integers → float32


def test_sliding_windows_bad_inputs():
    tr = torch.zeros(10, C)
    tr[7, 8] = float("nan")
    with pytest.raises(ValueError, match=r"frame 7, channel 8 \(AU12\)"):
        sliding_windows(tr, 8)
    with pytest.raises(ValueError, match=r"\[T, C\]"):
        sliding_windows(torch.zeros(10), 8)
    with pytest.raises(ValueError, match="empty"):
        sliding_windows(torch.zeros(0, 3), 8)
    with pytest.raises(ValueError, match="anchor"):
        sliding_windows(torch.zeros(10, 3), 8, anchor="future")
    with pytest.raises(ValueError, match="pad"):
        sliding_windows(torch.zeros(10, 3), 8, pad="reflect")
    with pytest.raises(ValueError, match="window"):
        sliding_windows(torch.zeros(10, 3), 0)
    with pytest.raises(ValueError, match="track must be a tensor or an array of numbers, got list"):
        sliding_windows([[0.0, 1.0], [2.0]], 4)  # ragged


# --------------------------------------------------------------------------- shapes
def test_shapes():
    enc = model(d_model=16)
    x = torch.rand(2, 40, C) * 3
    assert enc(x).shape == (2, 40, C, 16)
    assert enc(x[0]).shape == (40, C, 16)
    torch.testing.assert_close(enc(x[0]), enc(x)[0])
    assert enc.encode_windows(torch.rand(7, C, 32)).shape == (7, C, 16)
    assert enc.reconstruct(x).shape == (2, 40, C, 32)
    assert enc.reconstruct(x[0], frames=[0, 5]).shape == (2, C, 32)
    assert enc.denoise(x).shape == (2, 40, C)
    pf = PerFrameAUEncoder(d_model=16)
    assert pf(x).shape == (2, 40, C, 16) and pf(x[0]).shape == (40, C, 16)
    assert pf.reconstruct(x[0], frames=[3]).shape == (1, C, 32)
    assert pf.denoise(x).shape == (2, 40, C)


def test_forward_matches_encode_windows_of_each_frame():
    enc = model()
    x = torch.rand(30, C) * 3
    tok = enc(x)
    w = sliding_windows(x, 32, "centred")
    for t in (0, 13, 29):
        torch.testing.assert_close(enc.encode_windows(w[t][None])[0], tok[t], atol=1e-5, rtol=1e-5)


def test_accepts_autrack_and_numpy():
    from emozone_lite.aus import AUTrack

    vals = np.random.default_rng(1).random((25, C)).astype(np.float32) * 3
    enc = model()
    torch.testing.assert_close(enc(AUTrack(vals)), enc(torch.as_tensor(vals)))
    torch.testing.assert_close(enc(vals), enc(torch.as_tensor(vals)))


@pytest.mark.parametrize("level", [True, "per_au"])
def test_gradients_reach_every_parameter(level):
    enc = model(level_embedding=level)
    enc.train()
    loss = enc.reconstruct(torch.rand(20, C) * 3).pow(2).mean() + enc(torch.rand(20, C)).pow(2).mean()
    loss.backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing}"


# --------------------------------------------------------------------------- channel independence
@pytest.mark.parametrize("anchor, level", [("centred", True), ("causal", True), ("centred", "per_au")])
def test_citae_changing_au_k_changes_only_token_k(anchor, level):
    enc = model(anchor=anchor, level_embedding=level)
    x = keyframe_track(40, seed=1)
    base = enc(x)
    g = torch.Generator().manual_seed(2)
    for k in range(C):
        x2 = x.clone()
        x2[:, k] = x2[:, k] + torch.rand(40, generator=g) * 2  # a different series for AU k only
        out = enc(x2)
        others = [j for j in range(C) if j != k]
        torch.testing.assert_close(out[:, others], base[:, others], atol=1e-6, rtol=0)
        assert (out[:, k] - base[:, k]).abs().max() > 1e-3, f"token {k} ignored its own AU"


def test_au_embedding_tells_tokens_apart():
    """Identical series in every channel still give different tokens (the AU identity)."""
    enc = model()
    s = keyframe_track(30, seed=3, n_aus=1)
    tok = enc(s.expand(30, C))
    no_id = tok - enc.au_embed
    torch.testing.assert_close(no_id[:, 0:1].expand_as(no_id), no_id, atol=1e-6, rtol=0)  # shared weights
    assert (tok[:, 0] - tok[:, 1]).abs().max() > 1e-4


def test_per_au_level_gives_each_au_its_own_intensity_direction():
    """Shared level: raising any AU's steady level moves its token along one shared direction;
    per-AU: along that AU's own direction (what lets attention over AU tokens keep them apart)."""

    def level_directions(enc):
        lo, hi = torch.full((40, C), 0.5), torch.full((40, C), 3.0)  # steady windows: the level only
        d = (enc(hi) - enc(lo))[20]  # [C, d]
        return torch.nn.functional.normalize(d, dim=-1)

    shared, per_au = level_directions(model()), level_directions(model(level_embedding="per_au"))
    cos_shared = (shared @ shared.T)[~torch.eye(C, dtype=bool)]
    cos_per_au = (per_au @ per_au.T)[~torch.eye(C, dtype=bool)]
    assert float(cos_shared.min()) > 0.999, "one direction for all AUs"
    assert float(cos_per_au.abs().mean()) < 0.5, "a direction per AU"
    with pytest.raises(ValueError, match="level_embedding"):
        CITAE(level_embedding="per_zone")


def test_per_frame_baseline_mixes_channels():
    torch.manual_seed(0)
    pf = PerFrameAUEncoder().eval()
    x = keyframe_track(40, seed=1)
    x2 = x.clone()
    x2[:, 8] += 1.0  # AU12
    d = (pf(x2) - pf(x)).abs().amax(dim=(0, 2))  # [C]: change of every token
    assert (d > 1e-4).all(), "the per-frame MLP should change every token"


# --------------------------------------------------------------------------- causality
def test_causal_tokens_ignore_the_future():
    enc = model(anchor="causal")
    x = keyframe_track(60, seed=4)
    t0 = 35
    x2 = x.clone()
    x2[t0:] = torch.rand(60 - t0, C) * 5
    a, b = enc(x), enc(x2)
    torch.testing.assert_close(b[:t0], a[:t0], atol=1e-6, rtol=0)
    assert (b[t0:] - a[t0:]).abs().amax(dim=(1, 2)).min() > 1e-4


def test_centred_tokens_see_minus16_to_plus15():
    enc = model(anchor="centred")
    x = keyframe_track(80, seed=5)
    t0 = 40
    x2 = x.clone()
    x2[t0] += 2.0
    changed = (enc(x2) - enc(x)).abs().amax(dim=(1, 2)) > 1e-6
    # frame t0 is inside the window of frames t0-15 … t0+16 (window t-16 … t+15)
    expected = torch.zeros(80, dtype=torch.bool)
    expected[t0 - 15 : t0 + 17] = True
    assert torch.equal(changed, expected), changed.nonzero().flatten().tolist()


# --------------------------------------------------------------------------- smoothness
def test_citae_tokens_are_smoother_than_per_frame_tokens(one_thread):
    """CIT-AE's tokens jitter less than the per-frame MLP's on a jittery AU track.

    Honest set-up: a *freshly initialised* CIT-AE is not smoother (random patch
    filters pass frame-to-frame noise — measured ≈1.0–1.5 vs ≈0.4–0.55 normalised jitter),
    so smoothness is something the encoder must learn. Both encoders, initialised
    from the same seed, are trained for the same few steps on the same denoising
    pretext (noisy track in, clean window around each frame out). Every AU is active
    so the per-frame MLP cannot hide noise behind high-variance channels. Jitter is
    normalised by the token variance, so shrinking the tokens cannot cheat. Checked
    over several seeds (observed ratio ≈ 0.3–0.45).
    """
    for seed in range(3):
        clean = keyframe_track(96, seed=seed)
        noisy = clean + 0.2 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(100 + seed))
        torch.manual_seed(seed)
        cit = CITAE()
        torch.manual_seed(seed)
        pf = PerFrameAUEncoder()
        l_cit = fit_reconstruction(cit, noisy, clean, steps=60, batch_frames=16, seed=seed)
        l_pf = fit_reconstruction(pf, noisy, clean, steps=60, batch_frames=16, seed=seed)
        assert l_cit[-1] < l_cit[0] and l_pf[-1] < l_pf[0]
        with torch.no_grad():
            j_cit = jitter(cit(noisy), normalize=True)
            j_pf = jitter(pf(noisy), normalize=True)
            j_in = jitter(noisy, normalize=True)
            j_den = jitter(cit.denoise(noisy), normalize=True)
        assert j_cit < 0.75 * j_pf, f"seed {seed}: CIT-AE {j_cit:.3f} vs per-frame {j_pf:.3f}"
        assert j_cit < j_in and j_den < 0.2 * j_in, (seed, j_cit, j_den, j_in)


def test_fit_reconstruction_bad_inputs():
    enc = model()
    with pytest.raises(ValueError, match="same shape"):
        fit_reconstruction(enc, torch.zeros(10, C), torch.zeros(11, C))
    with pytest.raises(ValueError, match="steps"):
        fit_reconstruction(enc, torch.zeros(10, C), torch.zeros(10, C), steps=0)


# --------------------------------------------------------------------------- bad inputs
def test_model_bad_inputs():
    enc = model()
    with pytest.raises(ValueError, match=r"\[T, 17\] or \[B, T, 17\]"):
        enc(torch.zeros(10, 16))
    with pytest.raises(ValueError, match=r"\[T, 17\] or \[B, T, 17\]"):
        enc(torch.zeros(2, 3, 10, 17))
    with pytest.raises(ValueError, match="no frames"):
        enc(torch.zeros(0, 17))
    x = torch.zeros(10, 17)
    x[3, 16] = float("nan")
    with pytest.raises(ValueError, match=r"frame 3, channel 16 \(AU45\)"):
        enc(x)
    with pytest.raises(ValueError, match=r"frame 3, channel 16"):
        PerFrameAUEncoder()(x)
    with pytest.raises(ValueError, match=r"windows must have shape \[N, 17, 32\], got \(4, 17, 16\); axes are"):
        enc.encode_windows(torch.zeros(4, 17, 16))
    with pytest.raises(ValueError, match=r"windows must be a tensor \[N, 17, 32\], got ndarray"):
        enc.encode_windows(np.zeros((4, 17, 32)))
    with pytest.raises(ValueError, match="au_track must be a tensor or an array of numbers, got str"):
        enc("not a track")
    w = torch.zeros(2, 17, 32)
    w[1, 4, 9] = float("inf")
    with pytest.raises(ValueError, match=r"window 1, channel 4 \(AU06\), position 9"):
        enc.encode_windows(w)
    with pytest.raises(ValueError, match="frames must index"):
        enc.reconstruct(torch.zeros(10, 17), frames=[10])


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(patch_len=40), "longer than the window"),
        (dict(stride=0), "stride must be positive"),
        (dict(stride=-1), "stride must be positive"),
        (dict(window=0), "window must be"),
        (dict(d_model=30, n_heads=4), "divisible by n_heads"),
        (dict(anchor="ahead"), "anchor"),
        (dict(n_layers=-1), "n_layers"),
    ],
)
def test_bad_hyperparameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        CITAE(**kw)


def test_without_pretext_head():
    for enc in (CITAE(pretext=False), PerFrameAUEncoder(pretext=False)):
        assert enc.recon is None and enc(torch.rand(12, C)).shape == (12, C, 32)
        with pytest.raises(RuntimeError, match="pretext=False"):
            enc.reconstruct(torch.rand(12, C))
        with pytest.raises(RuntimeError, match="pretext=False"):
            fit_reconstruction(enc, torch.rand(12, C), torch.rand(12, C), steps=1)


def test_per_frame_bad_hyperparameters():
    with pytest.raises(ValueError, match="positive"):
        PerFrameAUEncoder(d_model=0)
