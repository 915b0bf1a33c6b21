"""EmoZoneLite: shapes, identity at initialisation, baselines, bad input."""

from __future__ import annotations

import pytest
import torch

from emozone_lite.head import load_head
from emozone_lite.model import (
    AudioEncoder,
    EmoZoneLite,
    ModelConfig,
    evenly_spread_subset,
    mouth_first_subset,
    vertex_readout_matrix,
)

#: these tests feed log-mel windows ([T, 16, 80]); the phone front-end (the default) is tested in
#: test_phonetic.py
FE = "mel"


def test_the_default_front_end_is_phones():
    assert ModelConfig().audio_frontend == "phones"


@pytest.fixture(scope="module")
def head():
    return load_head()


def test_mouth_first_subset_keeps_the_mouth_and_covers_the_rest(head):
    """The default subset: every mouth Gaussian (interior + face near the lips) kept, the rest
    evenly thinned with scales × sqrt(total / kept) of its group; "even" is the plain subset."""
    from emozone_lite.head.parts import EYES, FACE, parts_of

    idx, fac = mouth_first_subset(head, 10000)
    assert len(idx) == 10000 and len(set(idx.tolist())) == 10000 and bool((idx[1:] > idx[:-1]).all())
    part = parts_of(head)
    interior = torch.nonzero((part != FACE) & (part != EYES)).squeeze(1)
    assert set(interior.tolist()) <= set(idx.tolist()), "the mouth interior is kept whole"
    assert bool((fac[torch.isin(idx, interior)] == 1).all())
    thinned = fac > 1
    n_rest = int(thinned.sum())
    n_rest_total = len(head) - int((fac == 1).sum())
    torch.testing.assert_close(fac[thinned], torch.full((n_rest,), (n_rest_total / n_rest) ** 0.5))
    m = EmoZoneLite(ModelConfig(audio_frontend=FE, n_gaussians=10000), head)
    torch.testing.assert_close(m.scales, head.scales[idx].float() * fac[:, None])
    even = EmoZoneLite(ModelConfig(audio_frontend=FE, n_gaussians=600, subset="even"), head)
    torch.testing.assert_close(even.means, head.means[evenly_spread_subset(len(head), 600)].float())
    small, small_fac = mouth_first_subset(head, 300)  # a small model: the mouth takes at most 60 %
    assert len(small) == 300 and int(torch.isin(small, interior).sum()) <= 180
    all_idx, all_fac = mouth_first_subset(head, None)
    assert len(all_idx) == len(head) and bool((all_fac == 1).all())
    with pytest.raises(ValueError, match="subset must be"):
        ModelConfig(subset="random")


def _inputs(T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, 16, 80, generator=g), torch.rand(T, generator=g), 5 * torch.rand(T, 17, generator=g)


@pytest.mark.parametrize("fusion", ["szpab", "implicit", "attention"])
@pytest.mark.parametrize("temporal", ["citae", "per_frame"])
def test_new_model_is_identity_and_shapes(head, fusion, temporal):
    torch.manual_seed(0)
    m = EmoZoneLite(ModelConfig(fusion=fusion, temporal=temporal, n_gaussians=400, audio_frontend=FE), head)
    mel, en, aus = _inputs()
    st = m(mel, en, aus, frames=torch.tensor([0, 5, 11]))
    assert st.means.shape == (3, 400, 3) and st.quats.shape == (3, 400, 4) and st.vertices.shape == (3, 468, 3)
    # zero-initialised deformation heads: a new model is the canonical head
    torch.testing.assert_close(st.means, m.means.expand(3, -1, -1), rtol=0, atol=0)
    torch.testing.assert_close(st.scales, m.scales.expand(3, -1, -1), rtol=0, atol=0)
    torch.testing.assert_close(st.vertices, m.rest_vertices.expand(3, -1, -1), rtol=0, atol=1e-7)
    assert (st.weights is None) == (fusion == "implicit")


@pytest.mark.parametrize("fusion", ["szpab", "implicit", "attention"])
def test_fuse_gives_zones_to_szpab_only_and_checkpoints_keep_their_keys(head, fusion):
    torch.manual_seed(0)
    m = EmoZoneLite(ModelConfig(audio_frontend=FE, fusion=fusion, n_gaussians=200, d_model=16, hidden=32), head)
    a, u = m.encode(*_inputs(6))
    f, w = m.fuse(a[:2], u[:2])
    assert f.shape == (2, 200, 16) and (w is None) == (fusion == "implicit")
    if fusion != "implicit":  # SZ-PAB reads the model's zone memberships
        torch.testing.assert_close(f, m.fusion(m.means, m.zone_weights, a[:2], u[:2])[0])
    # the state dict (what a checkpoint stores) is what it was before the baseline lost its zone arguments
    sd = m.state_dict()
    assert sd["zone_weights"].shape == (200, 1 if fusion == "attention" else 3)
    if fusion == "implicit":
        assert sorted(k for k in sd if k.startswith("fusion.")) == [
            "fusion.in_cond.weight",
            "fusion.in_pos.bias",
            "fusion.in_pos.weight",
            "fusion.trunk.1.bias",
            "fusion.trunk.1.weight",
            "fusion.trunk.3.bias",
            "fusion.trunk.3.weight",
        ]


def test_gradients_reach_every_trainable_part(head):
    torch.manual_seed(0)
    m = EmoZoneLite(ModelConfig(audio_frontend=FE, n_gaussians=300), head)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    mel, en, aus = _inputs()
    for _ in range(2):  # zero-init heads: inner layers get gradient from the second step on
        opt.zero_grad()
        st = m(mel, en, aus, frames=torch.tensor([1, 2]))
        (st.means.sum() + st.scales.sum() + st.quats[..., 1:].sum()).backward()
        opt.step()
    no_grad = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert no_grad == []
    assert m.fusion.bias_table.grad is not None and m.fusion.bias_table.grad.abs().sum() > 0


def test_render_shape(head):
    from emozone_lite.camera import Camera, stack_cameras

    m = EmoZoneLite(ModelConfig(audio_frontend=FE, n_gaussians=300), head)
    st = m(*_inputs(4), frames=torch.tensor([0, 1]))
    vm, K, w, h = stack_cameras([Camera.orbit(0, width=32, height=32), Camera.orbit(20, width=32, height=32)])
    img = m.render(st, vm, K, w, h, background=torch.ones(3))
    assert img.shape == (2, 2, 32, 32, 3) and torch.isfinite(img).all()
    mass = m.attention_mass(st)
    assert mass.shape == (2, 300, 3)
    torch.testing.assert_close(mass.sum(-1), torch.ones(2, 300))


def test_render_over_a_background_image(head):
    """``background`` may be an image: ``colour + (1 - alpha) · image``; a constant image equals the colour."""
    from emozone_lite.camera import Camera

    m = EmoZoneLite(ModelConfig(audio_frontend=FE, n_gaussians=300), head)
    st = m(*_inputs(4), frames=torch.tensor([0, 1]))
    cam = Camera.orbit(width=24, height=20)
    flat = m.render(st, cam.viewmat[None], cam.K[None], 24, 20, background=torch.tensor([0.2, 0.5, 0.9]))
    const = torch.tensor([0.2, 0.5, 0.9]).expand(20, 24, 3)
    img = m.render(st, cam.viewmat[None], cam.K[None], 24, 20, background=const)
    torch.testing.assert_close(img, flat, atol=1e-6, rtol=0)
    ramp = torch.linspace(0, 1, 24)[None, :, None].expand(20, 24, 3)
    over = m.render(st, cam.viewmat[None], cam.K[None], 24, 20, background=ramp)
    black = m.render(st, cam.viewmat[None], cam.K[None], 24, 20)
    white = m.render(st, cam.viewmat[None], cam.K[None], 24, 20, background=torch.ones(3))
    alpha = 1 - (white - black)[..., :1]  # the head's coverage
    torch.testing.assert_close(over, black + (1 - alpha) * ramp, atol=1e-5, rtol=0)
    frames = m.render_frames(st, cam.viewmat[None].expand(2, 4, 4), cam.K[None].expand(2, 3, 3), 24, 20,
                             background=ramp)  # fmt: skip
    torch.testing.assert_close(frames, over[:, 0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"background image must be \[H, W, 3\] = \[20, 24, 3\]"):
        m.render(st, cam.viewmat[None], cam.K[None], 24, 20, background=torch.ones(10, 10, 3))


def test_szpab_zones_route_audio_and_aus(head):
    m = EmoZoneLite(ModelConfig(audio_frontend=FE, n_gaussians=2000), head)
    st = m(*_inputs(4), frames=torch.tensor([0]))
    mass = m.attention_mass(st)[0]
    zone = m.zone_weights.argmax(1)
    upper, lower = zone == 0, zone == 1
    assert mass[upper, 1].mean() > 0.8, "the upper zone should attend to AU tokens under the default bias"
    assert mass[lower, 0].mean() > 0.8, "the lower zone should attend to audio tokens under the default bias"


def test_bad_inputs(head):
    m = EmoZoneLite(ModelConfig(audio_frontend=FE, n_gaussians=100), head)
    mel, en, aus = _inputs(10)
    with pytest.raises(ValueError, match="resample the AUs"):
        m.encode(mel, en, aus[:7])
    with pytest.raises(ValueError, match=r"aus must have shape \[T, 17\], got \(10, 16\)"):
        m.encode(mel, en, aus[:, :16])
    with pytest.raises(ValueError, match="aus contains NaN or inf"):
        m.encode(mel, en, torch.full_like(aus, float("nan")))
    with pytest.raises(ValueError, match="mel_windows"):
        m.encode(mel[..., :40], en, aus)
    with pytest.raises(ValueError, match=r"energy must have shape \[T\] with T = 10, got \(3,\)"):
        m.encode(mel, en[:3], aus)
    with pytest.raises(ValueError, match="fusion"):
        ModelConfig(fusion="concat")
    with pytest.raises(ValueError, match="temporal"):
        ModelConfig(temporal="lstm")
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"fusion": "szpab", "layers": 3})
    from emozone_lite.gaussians import GaussianCloud

    bare = GaussianCloud(head.means[:10], head.quats[:10], head.scales[:10], head.opacities[:10], head.colors[:10])
    with pytest.raises(ValueError, match="tri_index"):
        EmoZoneLite(ModelConfig(), bare)


def test_audio_encoder_is_temporal_and_aligned():
    enc = AudioEncoder(n_mels=80, d_model=16, context=5)
    mel = torch.randn(20, 16, 80, generator=torch.Generator().manual_seed(0))
    base = enc(mel, torch.zeros(20))
    assert base.shape == (20, 5, 16)
    mel2 = mel.clone()
    mel2[10, 4:12, 10:30] += 3.0
    diff = (enc(mel2, torch.zeros(20)) - base).abs().sum((1, 2))
    # smoothing spans ±2 frames and the tokens ±2 more: frames 6..14 may change, no others
    assert diff[10] > 0 and (diff[:6] == 0).all() and (diff[15:] == 0).all(), diff


@pytest.mark.parametrize("temporal", ["citae", "per_frame"])
def test_encode_of_some_frames_equals_the_whole_clip_in_values_and_gradients(head, temporal):
    torch.manual_seed(0)
    m = EmoZoneLite(ModelConfig(audio_frontend=FE, temporal=temporal, n_gaussians=200, d_model=16, hidden=32), head)
    with torch.no_grad():  # a non-trivial smoothing kernel, so the taps must line up
        m.audio_encoder.smooth.weight.copy_(torch.randn_like(m.audio_encoder.smooth.weight))
    mel, en, aus = _inputs(20)
    frames = torch.tensor([0, 1, 7, 8, 19])  # both clip edges and neighbours
    a_all, u_all = m.encode(mel, en, aus)
    a, u = m.encode(mel, en, aus, frames)
    torch.testing.assert_close(a, a_all[frames], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(u, u_all[frames], rtol=1e-5, atol=1e-6)
    w = torch.randn_like(a), torch.randn_like(u)
    grads = []
    for sub in (True, False):
        m.zero_grad()
        x, y = m.encode(mel, en, aus, frames) if sub else [t[frames] for t in m.encode(mel, en, aus)]
        ((x * w[0]).sum() + (y * w[1]).sum()).backward()
        grads.append({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6, msg=k)
    with pytest.raises(ValueError, match="frames must lie"):
        m.encode(mel, en, aus, torch.tensor([20]))


def test_vertex_readout_inverts_carry(head):
    from emozone_lite.head import carry_vertex_displacements
    from emozone_lite.landmarks import load_canonical_mesh

    mesh = load_canonical_mesh()
    idx = evenly_spread_subset(len(head), 6000)
    sub = head.subset(idx)
    from emozone_lite.head import follows_mesh

    face = follows_mesh(sub).float()[:, None]  # teeth, tongue, cavity and eyeballs are not read back
    A = vertex_readout_matrix(sub.extras["tri_index"], sub.extras["bary"] * face, torch.as_tensor(mesh.triangles), 468)
    disp = torch.zeros(468, 3)
    disp[:, 1] = 0.05  # a rigid shift is read back exactly on every covered vertex
    g = carry_vertex_displacements(sub, disp, mesh.triangles)
    back = A @ g
    covered = A.sum(1) > 0
    assert covered.float().mean() > 0.95
    torch.testing.assert_close(back[covered], disp[covered], rtol=0, atol=1e-6)
    # the model's scatter readout is the same linear map as the dense matrix
    m = EmoZoneLite(ModelConfig(audio_frontend=FE, n_gaussians=6000, subset="even"), head)
    dm = torch.randn(2, 6000, 3)
    torch.testing.assert_close(m.vertex_displacement(dm), torch.einsum("vn,bnk->bvk", A, dm), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion", ["szpab", "implicit"])
def test_deform_vertices_is_the_full_deformation_on_fewer_gaussians(head, fusion):
    """The speech loss's fast path (`deform_vertices`) against the readable one (`deform`):
    same vertices, same gradients, from a fraction of the Gaussians."""
    torch.manual_seed(0)
    m = EmoZoneLite(ModelConfig(audio_frontend=FE, fusion=fusion, n_gaussians=2000), head)
    for p in m.deformation.parameters():  # leave the identity start so the check means something
        torch.nn.init.normal_(p, std=0.05)
    mel, en, aus = _inputs()
    idx = torch.tensor([0, 13, 14, 17, 61, 78, 152, 291, 308])
    sup = m.vertex_support(idx)
    assert 0 < len(sup) < 0.2 * m.n_gaussians
    a, u = m.encode(mel, en, aus)
    full = m.deform(a[:4], u[:4]).vertices[:, idx]
    fast = m.deform_vertices(a[:4], u[:4], idx, sup)
    assert float((full - m.rest_vertices[idx]).detach().abs().max()) > 1e-4
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    params = [p for p in m.parameters() if p.requires_grad]
    g_full = torch.autograd.grad(full.square().sum(), params, retain_graph=True, allow_unused=True)
    g_fast = torch.autograd.grad(fast.square().sum(), params, allow_unused=True)
    assert sum(g is not None for g in g_fast) > 4
    for x, y in zip(g_full, g_fast):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("subset", ["mouth", "even"])
def test_carried_face_gaussians_follow_the_read_out_mesh(head, subset):
    """face_motion="carried" (the default): every face Gaussian moves by the barycentric carry of
    the state's own vertex displacement (so the rendered skin follows the supervised mesh); the
    mouth interior and eyes keep the field's offsets; "free" keeps every offset; the vertices and
    the rotations / scales are the same in both modes."""
    from emozone_lite.head import carry_vertex_displacements, follows_mesh

    torch.manual_seed(0)
    n = 3000
    cfg = lambda fm: ModelConfig(
        audio_frontend=FE, n_gaussians=n, subset=subset, face_motion=fm, interior_motion="free"
    )
    models = {fm: EmoZoneLite(cfg(fm), head) for fm in ("carried", "free")}
    assert ModelConfig().face_motion == "carried"
    models["free"].load_state_dict(models["carried"].state_dict())  # same keys: the switch saves nothing
    for p in models["carried"].deformation.parameters():
        torch.nn.init.normal_(p, std=0.05)
    models["free"].load_state_dict(models["carried"].state_dict())
    m = models["carried"]
    idx, _ = mouth_first_subset(head, n) if subset == "mouth" else (evenly_spread_subset(len(head), n), None)
    sub = head.subset(idx)
    face = follows_mesh(sub)
    assert 0 < int(face.sum()) < n  # both kinds present
    mel, en, aus = _inputs()
    a, u = m.encode(mel, en, aus)
    st, free = m.deform(a[:3], u[:3]), models["free"].deform(a[:3], u[:3])
    disp = st.vertices - m.rest_vertices
    assert float(disp.detach().abs().max()) > 1e-4
    want = m.means + carry_vertex_displacements(sub, disp)
    torch.testing.assert_close(st.means[:, face], want[:, face], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(st.means[:, ~face], free.means[:, ~face])
    assert float((st.means[:, face] - free.means[:, face]).detach().abs().max()) > 1e-5  # it does change something
    torch.testing.assert_close(st.vertices, free.vertices)
    torch.testing.assert_close(st.quats, free.quats)
    torch.testing.assert_close(st.scales, free.scales)
    # the photometric gradient reaches the field through the read-out
    g = torch.autograd.grad(st.means[:, face].square().sum(), m.deformation.head_means.weight)[0]
    assert float(g.abs().sum()) > 0


def test_face_motion_must_be_known():
    with pytest.raises(ValueError, match="face_motion must be 'carried' or 'free'"):
        ModelConfig(face_motion="rigid")
    with pytest.raises(ValueError, match="interior_motion must be 'rigid' or 'free'"):
        ModelConfig(interior_motion="carried")


@pytest.mark.parametrize("subset", ["mouth", "even"])
def test_rigid_interior_is_posed_like_the_teachers_head(head, subset):
    """interior_motion="rigid" (the default): the mouth interior and eyes are posed exactly as
    :func:`emozone_lite.head.carry_parts` poses the teacher's head from the student's own mesh and
    jaw opening (skull parts at rest, jaw parts moved and turned by the jaw), whatever the field
    says; the face is untouched; the photometric gradient of the jaw parts reaches the field
    through the jaw opening, that of the skull parts is zero."""
    from emozone_lite.head import carry_parts, follows_mesh
    from emozone_lite.head.parts import JAW_PARTS, parts_of
    from emozone_lite.model import _canonical_jaw_field

    torch.manual_seed(0)
    n = 3000
    cfg = lambda im: ModelConfig(audio_frontend=FE, n_gaussians=n, subset=subset, interior_motion=im)
    assert ModelConfig().interior_motion == "rigid"
    m, free = EmoZoneLite(cfg("rigid"), head), EmoZoneLite(cfg("free"), head)
    for p in m.deformation.parameters():
        torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():  # and a drift along the jaw field at the chin (down and back): the jaw opens
        m.deformation.head_means.bias.add_(_canonical_jaw_field()[152] / _canonical_jaw_field()[152].norm() * 0.2)
    free.load_state_dict(m.state_dict())  # same keys: the switch saves nothing
    idx, _ = mouth_first_subset(head, n) if subset == "mouth" else (evenly_spread_subset(len(head), n), None)
    sub = head.subset(idx)
    rigid = ~follows_mesh(sub)
    jaw = torch.isin(parts_of(sub), torch.tensor(JAW_PARTS))
    assert int(jaw.sum()) > 0 and int((rigid & ~jaw).sum()) > 0
    mel, en, aus = _inputs()
    a, u = m.encode(mel, en, aus)
    st, st_free = m.deform(a[:4], u[:4]), free.deform(a[:4], u[:4])
    disp = st.vertices - m.rest_vertices
    J = m.jaw_opening(disp)
    assert float(J.detach().max()) > 0.05  # the random field opens the jaw somewhat
    want_m, want_q, _ = carry_parts(sub, m.rest_vertices, disp.detach(), J.detach()[:, None, None] * _canonical_jaw_field(),
                                    J.detach() * m.jaw_rotation)  # fmt: skip
    torch.testing.assert_close(st.means[:, rigid], want_m[:, rigid], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(st.quats[:, rigid], want_q[:, rigid], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(st.scales[:, rigid], m.scales[rigid][None].expand(4, -1, -1))
    assert torch.equal(st.means[:, rigid & ~jaw], m.means[rigid & ~jaw][None].expand(4, -1, -1))
    torch.testing.assert_close(st.means[:, ~rigid], st_free.means[:, ~rigid])
    torch.testing.assert_close(st.quats[:, ~rigid], st_free.quats[:, ~rigid])
    assert float((st.means[:, rigid] - st_free.means[:, rigid]).detach().abs().max()) > 1e-4  # it does change something
    g = torch.autograd.grad(st.means[:, jaw].square().sum(), m.deformation.head_means.weight)[0]
    assert float(g.abs().sum()) > 0


def test_jaw_opening_reads_the_teachers_jaw_from_its_mesh(head):
    """The student's jaw opening, read from a mesh, recovers the teacher's J: exactly for a jaw
    drop alone (AU26), and with r > 0.97 over random mixtures of AUs and visemes (the other
    fields touch the chin a little: AU17 pushes it up)."""
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from emozone_lite.aus import au_index
    from emozone_lite.teacher.rig import TeacherRig

    rig = TeacherRig.default()
    m = EmoZoneLite(ModelConfig(audio_frontend=FE, n_gaussians=500), head)

    @settings(max_examples=25, deadline=None)
    @given(st.floats(0.0, 5.0))
    def jaw_alone(level):
        aus = torch.zeros(1, 17)
        aus[0, au_index("AU26")] = level
        torch.testing.assert_close(
            m.jaw_opening(rig.vertex_displacement(aus)), rig.jaw_opening(aus), atol=1e-5, rtol=1e-4
        )

    jaw_alone()
    g = torch.Generator().manual_seed(0)
    T = 1000
    aus = 5 * torch.rand(T, 17, generator=g) * (torch.rand(T, 17, generator=g) < 0.25)
    V = rig.viseme_shape.shape[0]
    w = torch.zeros(T, V)
    w[torch.arange(T), torch.randint(0, V, (T,), generator=g)] = torch.rand(T, generator=g)
    w[: T // 4] = 0  # silence
    J, est = rig.jaw_opening(aus, w), m.jaw_opening(rig.vertex_displacement(aus, w))
    assert np.corrcoef(J.numpy(), est.numpy())[0, 1] > 0.97
    assert float((est - J).abs().mean()) < 0.06
