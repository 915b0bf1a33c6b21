from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from emozone_lite import teacher as tc
from emozone_lite.audio import VISEMES, Phone, read_phone_labels, viseme_track
from emozone_lite.aus import AU_NAMES, AUTrack, preset
from emozone_lite.camera import Camera
from emozone_lite.head import carry_vertex_displacements, seed_gaussians
from emozone_lite.landmarks import FaceMesh, load_canonical_mesh
from emozone_lite.utils import data_path

LAB = data_path("arctic_a0009_phone.lab")
INNER_BROW = [107, 55, 336, 285]
CHIN = [152, 175, 199]
LIP_CORNERS = [61, 291]


@pytest.fixture(scope="module")
def rig() -> tc.TeacherRig:
    return tc.TeacherRig.default()


@pytest.fixture(scope="module")
def small_head():
    return seed_gaussians(n_gaussians=300, seed=1)


def _aus(**kw) -> torch.Tensor:
    a = torch.zeros(1, 17)
    for k, v in kw.items():
        a[0, AU_NAMES.index(k)] = v
    return a


def _phones():
    return [
        Phone(0.0, 0.2, "sil"),
        Phone(0.2, 0.32, "m"),
        Phone(0.32, 0.6, "aa"),
        Phone(0.6, 0.7, "t"),
        Phone(0.7, 0.95, "uw"),
        Phone(0.95, 1.2, "sil"),
    ]


# ----------------------------------------------------------------------------- the fields
def test_shapes_and_names(rig):
    assert rig.au_basis.shape == (17, 468, 3) and rig.au_basis.dtype == torch.float32
    assert rig.viseme_basis.shape == (len(VISEMES), 468, 3)
    assert rig.au_names == AU_NAMES and rig.viseme_names == VISEMES
    assert bool(torch.isfinite(rig.au_basis).all()) and bool(torch.isfinite(rig.viseme_basis).all())
    # every AU moves the face by its documented FACS-sized amount (tc.AU_MAGNITUDES, mm at intensity 5)
    mag_mm = rig.au_basis.norm(dim=-1).amax(dim=1) * 100
    for name, m in zip(AU_NAMES, mag_mm.tolist()):
        ref = tc.AU_MAGNITUDES[name][0]
        assert abs(m - ref) <= 0.1 * ref, (name, m, ref)
    assert tc.AU_MAGNITUDES["AU01"][0] >= 9 and tc.AU_MAGNITUDES["AU02"][0] >= 9, "a brow raise is about 1 cm"
    chin = -float(rig.jaw_field[152, 1]) * 100
    assert 15 <= chin <= 20, f"AU26 = 5 must drop the chin 1.5-2 cm, got {chin:.1f} mm"
    # the sil viseme is no motion at all
    assert float(rig.viseme_basis[VISEMES.index("sil")].abs().max()) == 0.0


def test_zero_aus_and_silence_give_zero_displacement(rig):
    d = rig.vertex_displacement(torch.zeros(4, 17))
    assert d.shape == (4, 468, 3) and float(d.abs().max()) == 0.0
    sil = torch.zeros(4, len(VISEMES))
    sil[:, 0] = 1.0
    assert float(rig.vertex_displacement(torch.zeros(4, 17), sil).abs().max()) == 0.0
    assert torch.equal(rig.deform(torch.zeros(17)), rig.vertices[None])


def test_au01_raises_inner_brows_and_leaves_the_chin_still(rig):
    d = rig.vertex_displacement(_aus(AU01=5.0))[0]
    assert bool((d[INNER_BROW, 1] > 0.05).all())  # ≥ 5 mm up
    assert float(d[CHIN].abs().max()) == 0.0 and float(d[LIP_CORNERS].abs().max()) == 0.0
    # the lid margin is pinned: the upper lid stays where it is
    assert float(d[[159, 386]].abs().max()) < 1e-6


def test_au26_drops_the_chin_and_lower_lip_by_about_two_centimetres(rig):
    d = rig.vertex_displacement(_aus(AU26=5.0))[0]
    for v in (152, 17, 14):  # chin, lower lip outer and inner midpoints
        assert d[v, 1] < -0.15, v  # ≥ 1.5 cm down
        assert 0.17 <= float(d[v].norm()) <= 0.21, (v, float(d[v].norm()))
    assert float(d[[0, 13]].abs().max()) < 1e-6  # the upper lip stays
    assert float(d[[10, 151, 1]].abs().max()) == 0.0  # forehead, nose tip
    # rotation-like falloff: the jaw moves less towards the ear
    assert d[152].norm() > d[150].norm() > d[136].norm() > d[172].norm() > d[58].norm()
    half = rig.vertex_displacement(_aus(AU26=2.5))[0]
    torch.testing.assert_close(half, 0.5 * d)  # no speech: the soft max is exactly AU26 / 5


def test_au12_pulls_lip_corners_up_and_out(rig):
    v, d = rig.vertices, rig.vertex_displacement(_aus(AU12=5.0))[0]
    for c in LIP_CORNERS:
        assert d[c, 1] > 0.03
        assert abs(float(v[c, 0] + d[c, 0])) > abs(float(v[c, 0])) + 0.03
    assert float(d[CHIN].abs().max()) == 0.0


def test_au45_closes_the_eyes_and_au05_opens_them(rig):
    neutral = tc.eye_aperture(rig.vertices)
    assert bool((neutral > 0.05).all())
    closed = tc.eye_aperture(rig.deform(_aus(AU45=5.0))[0])
    half = tc.eye_aperture(rig.deform(_aus(AU45=2.5))[0])
    wide = tc.eye_aperture(rig.deform(_aus(AU05=5.0))[0])
    assert bool((closed.abs() < 0.1 * neutral).all())
    torch.testing.assert_close(half, 0.5 * (neutral + closed))
    assert bool((wide > neutral + 0.02).all())


def test_other_aus_move_the_right_way(rig):
    v = rig.vertices

    def d(name):
        return rig.vertex_displacement(_aus(**{name: 5.0}))[0]

    assert bool((d("AU02")[[70, 300], 1] > 0.05).all())  # outer brows up
    a4 = d("AU04")
    assert bool((a4[INNER_BROW, 1] < -0.03).all())  # brows down …
    assert bool((torch.sign(v[INNER_BROW, 0]) * a4[INNER_BROW, 0] < -0.02).all())  # … and together
    assert bool((d("AU06")[[50, 280], 1] > 0.03).all())  # cheeks up
    assert bool((d("AU09")[[48, 278], 1] > 0.03).all())  # nose sides up
    assert d("AU10")[0, 1] > 0.03  # upper lip up
    assert bool((d("AU15")[LIP_CORNERS, 1] < -0.03).all())  # corners down
    assert bool((d("AU14")[LIP_CORNERS, 2] < -0.03).all())  # corners back
    assert d("AU17")[199, 1] > 0.02  # chin boss up
    assert bool((torch.sign(v[LIP_CORNERS, 0]) * d("AU20")[LIP_CORNERS, 0] > 0.04).all())  # stretched
    assert bool((torch.sign(v[LIP_CORNERS, 0]) * d("AU23")[LIP_CORNERS, 0] < -0.015).all())  # narrowed
    parted = tc.mouth_opening(v + d("AU25"))
    assert float(parted) > float(tc.mouth_opening(v)) + 0.03


def test_fields_are_mirror_symmetric(rig):
    mi = torch.from_numpy(tc.mirror_index(rig.mesh.vertices))
    assert int(mi[61]) == 291 and int(mi[13]) == 13 and torch.equal(mi[mi], torch.arange(468))
    flip = torch.tensor([-1.0, 1.0, 1.0])
    for name, basis in (("AU", rig.au_basis), ("viseme", rig.viseme_basis)):
        torch.testing.assert_close(
            basis[:, mi] * flip, basis, rtol=0, atol=1e-6, msg=f"{name} fields are not symmetric"
        )


def test_fields_are_smooth_and_local(rig):
    """No uncut mesh edge is stretched or squashed by more than its own length at intensity 5."""
    tri = rig.mesh.triangles
    e = np.unique(np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1), axis=0)
    g = tc._edge_graph(rig.mesh, cut=True).tocoo()
    kept = set(zip(g.row.tolist(), g.col.tolist()))
    cut = {(int(a), int(b)) for a, b in e if (a, b) not in kept}
    e = e[[(a, b) in kept for a, b in e]]
    # the cut opens the mouth and both eyes, and nothing else: it removes the inner-lip and
    # lid-margin edges (e.g. 13–14 across the mouth, 159–145 and 386–374 across the eyes) only
    assert {(13, 14), (145, 159), (374, 386)} <= cut and 20 < len(cut) < 80
    mi = tc.mirror_index(rig.mesh.vertices)
    margins = set(tc.R_UPPER_LID + tc.R_LOWER_LID + tc.R_UPPER_INNER_LIP + tc.R_LOWER_INNER_LIP)
    margins |= {int(mi[i]) for i in margins}
    assert all(a in margins and b in margins for a, b in cut), sorted(cut)
    v = rig.mesh.vertices
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    for k, name in enumerate(AU_NAMES):
        f = rig.au_basis[k].numpy()
        strain = np.linalg.norm(f[e[:, 0]] - f[e[:, 1]], axis=1) / length
        # the lid raise (AU05) stretches the short edges above the lid margin the most; the head's
        # Gaussians stretch with their triangles (head.stretch_gaussians), so strain does not tear
        assert strain.max() < 2.5, (name, strain.max())
        assert (np.linalg.norm(f, axis=1) < 1e-6).sum() > 150, f"{name} is not local"


def test_geodesic_cut_separates_the_lips():
    mesh = load_canonical_mesh()
    cut = tc.geodesic_distances(mesh, [14], cut=True)[0]
    whole = tc.geodesic_distances(mesh, [14], cut=False)[0]
    assert whole[13] < 0.06 < 0.2 < cut[13]  # across the mouth only around the corner
    assert cut[14] == 0.0 and np.isfinite(cut).all()
    with pytest.raises(ValueError, match="vertex indices"):
        tc.geodesic_distances(mesh, [468])


# ----------------------------------------------------------------------------- combining
def test_non_jaw_parts_are_linear_and_match_the_formula(rig):
    a = torch.tensor(preset("happy"))[None]
    b = torch.tensor(preset("anger"))[None]
    torch.testing.assert_close(
        rig.vertex_displacement(a + b), rig.vertex_displacement(a) + rig.vertex_displacement(b), rtol=0, atol=1e-6
    )
    # by hand: Σ a_k/5 B_k + Σ w_v S_v + J F_jaw
    w = torch.softmax(torch.randn(1, len(VISEMES)), -1)
    aus = torch.tensor(preset("surprise"))[None]
    k26 = AU_NAMES.index("AU26")
    j_e, j_s = aus[0, k26] / 5, (w[0] * rig.viseme_jaw).sum()
    jaw = (j_e**4 + j_s**4) ** 0.25
    mask = torch.ones(17)
    mask[k26] = 0
    hand = (
        ((aus[0] * mask / 5)[:, None, None] * rig.au_basis).sum(0)
        + (w[0][:, None, None] * rig.viseme_shape).sum(0)
        + jaw * rig.jaw_field
    )
    torch.testing.assert_close(rig.vertex_displacement(aus, w)[0], hand, rtol=1e-5, atol=1e-6)


def test_jaw_is_a_soft_maximum_of_speech_and_au26(rig):
    aa = rig.viseme_vector("aa")[None]
    j_s = float(rig.viseme_jaw[VISEMES.index("aa")])
    assert float(rig.jaw_opening(torch.zeros(1, 17), aa)) == pytest.approx(j_s)
    both = float(rig.jaw_opening(_aus(AU26=5.0 * j_s), aa))
    assert j_s < both < 2 * j_s  # more than either alone, less than the sum
    assert both == pytest.approx(2**0.25 * j_s)
    # the chin therefore drops less with speech + AU26 than the two added up
    alone = rig.vertex_displacement(_aus(AU26=5.0 * j_s))[0, 152, 1]
    mixed = rig.vertex_displacement(_aus(AU26=5.0 * j_s), aa)[0, 152, 1]
    assert 2 * alone < mixed < alone < 0


def test_visemes_shape_the_mouth(rig):
    v = rig.vertices
    open_ = {n: float(tc.mouth_opening(v + rig.viseme_basis[i])) for i, n in enumerate(VISEMES)}
    neutral = float(tc.mouth_opening(v))
    assert open_["PP"] < 0.2 * neutral  # bilabial closure
    assert open_["aa"] > open_["E"] > open_["I"] > neutral  # open vowels open the jaw most
    width = {
        n: float((v + rig.viseme_basis[i])[291, 0] - (v + rig.viseme_basis[i])[61, 0]) for i, n in enumerate(VISEMES)
    }
    assert width["U"] < width["sil"] - 0.05 and width["I"] > width["sil"] + 0.03  # rounding vs spreading
    assert float(rig.viseme_basis[VISEMES.index("U")][0, 2]) > 0.02  # protrusion


def test_bad_inputs_to_vertex_displacement(rig):
    with pytest.raises(ValueError, match=r"\[T, 17\]"):
        rig.vertex_displacement(torch.zeros(3, 16))
    with pytest.raises(ValueError, match="NaN"):
        rig.vertex_displacement(torch.full((2, 17), float("nan")))
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        rig.vertex_displacement(torch.full((2, 17), 6.0))
    with pytest.raises(ValueError, match=r"\[T, 15\]"):
        rig.vertex_displacement(torch.zeros(2, 17), torch.zeros(2, 14))
    with pytest.raises(ValueError, match="frames"):
        rig.vertex_displacement(torch.zeros(2, 17), torch.zeros(3, 15))
    with pytest.raises(ValueError, match=">= 0"):
        rig.vertex_displacement(torch.zeros(1, 17), -torch.ones(1, 15))
    with pytest.raises(ValueError, match="unknown AU"):
        rig.au_field("AU99")
    with pytest.raises(ValueError, match="unknown viseme"):
        rig.viseme_vector("XX")
    with pytest.raises(ValueError, match="aus must be a tensor or an array of numbers"):
        rig.vertex_displacement("happy")
    with pytest.raises(ValueError, match=r"viseme_weights contains NaN"):
        rig.vertex_displacement(torch.zeros(1, 17), torch.full((1, 15), float("nan")))
    with pytest.raises(ValueError, match=r"vertices must have shape \[\.\.\., 468, 3\]"):
        tc.mouth_opening(torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"vertices must have shape \[\.\.\., 468, 3\]"):
        tc.eye_aperture(np.zeros((2, 467, 3)))


def test_vertex_displacement_accepts_tracks_arrays_and_lists(rig):
    aus = np.tile(preset("happy"), (3, 1))
    want = rig.vertex_displacement(torch.tensor(aus, dtype=torch.float32))
    assert want.dtype == torch.float32
    for other in (AUTrack(aus), aus.astype(np.float64), aus.tolist(), torch.tensor(aus, dtype=torch.float64)):
        got = rig.vertex_displacement(other)
        assert got.dtype == torch.float32 and torch.equal(got, want), type(other).__name__
    torch.testing.assert_close(tc.mouth_opening(rig.deform(aus).numpy()), tc.mouth_opening(rig.deform(aus)))


def test_rig_rejects_other_meshes():
    m = load_canonical_mesh()
    with pytest.raises(ValueError, match="468"):
        tc.TeacherRig.default(FaceMesh(m.vertices[:100], m.uvs[:100], m.triangles[:10], {}))
    lop = m.vertices.copy()
    lop[61, 0] -= 0.05
    with pytest.raises(ValueError, match="mirror-symmetric"):
        tc.mirror_index(lop)


# ----------------------------------------------------------------------------- speech timing
def test_viseme_weights_rows_sum_to_one_and_are_smooth():
    W = tc.viseme_weights(LAB)
    T = len(W)
    assert W.shape == (T, len(VISEMES)) and T == round(read_phone_labels(LAB)[-1].end * 25)
    np.testing.assert_allclose(W.sum(1), 1.0, atol=1e-5)
    assert (W >= 0).all()
    hard = np.eye(len(VISEMES))[viseme_track(read_phone_labels(LAB), T)]
    d2, d2_hard = np.abs(np.diff(W, 2, axis=0)), np.abs(np.diff(hard, 2, axis=0))
    assert d2.max() < 0.6 < 1.5 < d2_hard.max() and d2.mean() < 0.2 * d2_hard.mean()
    # co-articulation: the labelled viseme always has a say, and the strong ones (lip
    # closures, vowels, silence) win their own frames; weak tongue consonants may not
    vt = viseme_track(read_phone_labels(LAB), T)
    assert (W[np.arange(T), vt] > 0.1).mean() > 0.9
    strong = np.isin(vt, [VISEMES.index(v) for v in ("sil", "PP", "FF", "aa", "E", "I", "O", "U")])
    assert (W.argmax(1) == vt)[strong].mean() > 0.75


def test_viseme_weights_dominance():
    ph = _phones()
    W = tc.viseme_weights(ph, 30)
    col = VISEMES.index
    assert W[:3, col("sil")].min() > 0.9  # well before speech
    assert W[6:8, col("PP")].max() > 0.8  # /m/ closes the lips (high dominance)
    assert W[11, col("aa")] > 0.8
    t_frame = 16  # 0.64 s, inside the short low-dominance /t/ between two vowels
    assert W[t_frame, col("DD")] < 0.5  # …which the lips hardly follow
    assert W[29, col("sil")] > 0.9
    # frames after the last phone are silence
    W2 = tc.viseme_weights(ph, 50)
    assert W2[45:, col("sil")].min() > 0.999


def test_viseme_weights_bad_inputs():
    bad = _phones() + [Phone(1.2, 1.3, "qqq")]
    with pytest.raises(ValueError, match="unknown phone"):
        tc.viseme_weights(bad, 40)
    with pytest.warns(UserWarning, match="qqq"):
        W = tc.viseme_weights(bad, 40, unknown="sil")
    assert W[-1, VISEMES.index("sil")] > 0.9
    with pytest.raises(ValueError, match="n_frames"):
        tc.viseme_weights(_phones(), 0)
    with pytest.raises(ValueError, match="Phone"):
        tc.viseme_weights([("sil", 0, 1)], 10)
    with pytest.raises(ValueError, match="anticipation"):
        tc.viseme_weights(_phones(), 10, anticipation=0.0)
    with pytest.raises(ValueError, match="unknown must be"):
        tc.viseme_weights(_phones(), 10, unknown="ignore")
    with pytest.raises(ValueError, match="interval"):
        tc.viseme_weights([Phone(0.5, 0.2, "aa")], 10)


def test_viseme_weights_from_audio_proxy():
    sr = 16000
    t = np.arange(sr) / sr
    rng = np.random.default_rng(0)
    wave = np.where(
        t < 0.5,
        1e-4 * rng.standard_normal(sr),
        0.3 * np.sin(2 * np.pi * 150 * t) * (1 + 0.3 * np.sin(2 * np.pi * 700 * t)),
    )
    W = tc.viseme_weights_from_audio(wave.astype(np.float32), sr)
    assert W.shape == (25, len(VISEMES))
    np.testing.assert_allclose(W.sum(1), 1.0, atol=1e-5)
    sil = W[:, VISEMES.index("sil")]
    assert sil[:10].min() > 0.9 and sil[16:].max() < 0.1
    assert tc.viseme_weights_from_audio(wave.astype(np.float32), sr, n_frames=30).shape == (30, len(VISEMES))


# ----------------------------------------------------------------------------- sequences
def test_package_layout_and_names():
    import sys

    assert callable(tc.sequence) and sys.modules["emozone_lite.teacher.sequences"].sequence is tc.sequence
    assert tc.TeacherRig.__module__ == "emozone_lite.teacher.rig"
    assert tc.viseme_weights.__module__ == "emozone_lite.teacher.speech"
    assert tc.mirror_index.__module__ == "emozone_lite.teacher.anatomy"
    for name in tc.__all__:
        assert hasattr(tc, name), name


def test_rig_sequence_method_is_the_function_with_this_rig(rig, small_head):
    cam = Camera.orbit(0, width=16, height=16)
    a = rig.sequence(_phones(), None, cam, small_head, render=False)
    b = tc.sequence(_phones(), None, cam, small_head, rig=rig, render=False)
    assert torch.equal(a.means, b.means) and torch.equal(a.quats, b.quats) and a.frames is None


def test_sequence_shapes_landmarks_and_gaussians(rig, small_head):
    cams = [Camera.orbit(-20, width=24, height=20), Camera.orbit(20, width=24, height=20)]
    T = 30
    track = AUTrack(np.tile(preset("happy"), (T, 1)))
    s = tc.sequence(_phones(), track, cams, small_head, rig=rig, backend="torch")
    N = len(small_head)
    assert s.n_frames == T and s.source == "labels" and s.fps == 25.0
    assert s.aus.shape == (T, 17) and s.viseme_weights.shape == (T, len(VISEMES))
    assert s.vertex_disp.shape == s.vertices.shape == (T, 468, 3)
    assert s.means.shape == (T, N, 3) and s.quats.shape == (T, N, 4)
    assert s.frames.shape == (T, 2, 20, 24, 3) and s.frames.dtype == torch.float32
    assert 0.0 <= float(s.frames.min()) and float(s.frames.max()) <= 1.0
    assert s.landmarks2d.shape == (T, 2, 468, 2) and s.mouth_opening.shape == (T,)
    for t in (0, 17):
        for c, cam in enumerate(cams):
            torch.testing.assert_close(s.landmarks2d[t, c], cam.project(s.vertices[t]))
    torch.testing.assert_close(s.vertex_disp, rig.vertex_displacement(track, tc.viseme_weights(_phones(), T)))
    torch.testing.assert_close(s.means, small_head.means + carry_vertex_displacements(small_head, s.vertex_disp))
    torch.testing.assert_close(s.quats.norm(dim=-1), torch.ones(T, N))
    assert s.scales.shape == (T, N, 3) and bool((s.scales > 0).all())
    torch.testing.assert_close(s.mouth_opening, tc.mouth_opening(s.vertices))
    # the /m/ closes the mouth (narrower than the canonical mesh's parted rest, 5.5 mm: the head's
    # lips touch), the /aa/ opens it by more than a centimetre; the rendered frames change with it
    rest = float(tc.mouth_opening(rig.vertices))
    assert float(s.mouth_opening[6]) < rest < rest + 0.1 < float(s.mouth_opening[11])
    assert float((s.frames[6] - s.frames[11]).abs().max()) > 0.05
    assert "T=30" in repr(s)


def test_sequence_without_speech_motion_keeps_the_head_still(rig, small_head):
    cam = Camera.orbit(0, width=16, height=16)
    s = tc.sequence([Phone(0.0, 0.4, "sil")], None, cam, small_head, rig=rig, render=False)
    assert s.frames is None and s.n_frames == 10
    assert float(s.vertex_disp.abs().max()) == 0.0
    torch.testing.assert_close(s.means, small_head.means.expand(10, -1, -1))
    torch.testing.assert_close(
        s.quats, torch.nn.functional.normalize(small_head.quats, dim=-1).expand(10, -1, -1), rtol=0, atol=1e-6
    )


def test_sequence_from_audio_uses_the_proxy_and_audio_frame_count(rig, small_head):
    from emozone_lite.audio import features_from_file

    wav = data_path("arctic_a0009.wav")
    n = features_from_file(wav).n_frames
    s = tc.sequence(wav, np.zeros((n, 17)), Camera.orbit(0, width=16, height=16), small_head, rig=rig, render=False)
    assert s.source == "audio" and s.n_frames == n and s.phones is None
    np.testing.assert_allclose(s.viseme_weights.sum(1).numpy(), 1.0, atol=1e-5)
    assert float(s.mouth_opening.max()) > float(s.mouth_opening.min()) + 0.02  # the mouth moves


def test_sequence_au_length_mismatch(rig, small_head):
    cam = Camera.orbit(0, width=16, height=16)
    with pytest.raises(ValueError, match=r"20 frames.*30 frames"):
        tc.sequence(_phones(), np.zeros((20, 17)), cam, small_head, rig=rig, render=False)
    track = AUTrack(np.linspace(0, 4, 20)[:, None] * np.eye(17)[AU_NAMES.index("AU12")])
    s = tc.sequence(_phones(), track, cam, small_head, rig=rig, render=False, resample_aus=True)
    assert s.aus.shape == (30, 17)
    assert float(s.aus[0, 8]) == 0.0 and float(s.aus[-1, 8]) == pytest.approx(4.0, abs=0.25)
    with pytest.raises(ValueError, match="fps"):  # same length, other frame rate
        tc.sequence(_phones(), AUTrack(np.zeros((30, 17)), fps=30.0), cam, small_head, rig=rig, render=False)


def test_sequence_bad_inputs(rig, small_head):
    cam = Camera.orbit(0, width=16, height=16)
    with pytest.raises(ValueError, match="cameras"):
        tc.sequence(_phones(), None, None, small_head, rig=rig)
    with pytest.raises(ValueError, match="cameras"):
        tc.sequence(_phones(), None, ["front"], small_head, rig=rig)
    with pytest.raises(ValueError, match="sample rate"):
        tc.sequence(np.zeros(16000, np.float32), None, cam, small_head, rig=rig)
    with pytest.raises(ValueError, match="phones_or_audio"):
        tc.sequence(3.5, None, cam, small_head, rig=rig)
    with pytest.raises(ValueError, match=r"\[T, 17\]"):
        tc.sequence(_phones(), np.zeros((30, 5)), cam, small_head, rig=rig)
    with pytest.raises(ValueError, match="NaN"):
        tc.sequence(_phones(), np.full((30, 17), np.nan), cam, small_head, rig=rig)
    with pytest.raises(ValueError, match="outside"):
        tc.sequence(_phones(), np.full((30, 17), 9.0), cam, small_head, rig=rig)
    with pytest.raises(ValueError, match="unknown phone"):
        tc.sequence([Phone(0.0, 0.4, "zz")], None, cam, small_head, rig=rig)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="zz"):
            tc.sequence([Phone(0.0, 0.4, "zz")], None, cam, small_head, rig=rig, unknown="sil")


def test_vertex_sequence_is_sequence_without_rendering():
    """The landmark-loss path (`vertex_sequence`) gives exactly `sequence`'s mesh and AUs."""
    from emozone_lite.aus import from_keyframes
    from emozone_lite.camera import Camera
    from emozone_lite.teacher import sequence, vertex_sequence
    from emozone_lite.utils import data_path

    lab = data_path("arctic_a0009_phone.lab")
    track = from_keyframes([(0.0, "neutral"), (1.5, "surprise"), (3.1, "happy")], 3.1)
    seq = sequence(lab, track, Camera.orbit(0, width=32, height=32), render=False, resample_aus=True, n_frames=40)
    v, a = vertex_sequence(lab, track, resample_aus=True, n_frames=40)
    torch.testing.assert_close(v, torch.as_tensor(seq.vertices), rtol=0, atol=1e-6)
    torch.testing.assert_close(a, torch.as_tensor(seq.aus), rtol=0, atol=0)
    with pytest.raises(ValueError, match="resample_aus"):
        vertex_sequence(lab, track, n_frames=40)


def test_talking_video_is_the_teacher_sequence_with_sound(tmp_path):
    from emozone_lite.viz import read_video_info

    keys = [(0.0, {}), (0.4, {"AU12": 3}), (0.8, {})]
    path, true = tc.talking_video(
        tmp_path / "talk.mp4", keys, data_path("arctic_a0007_phone.lab"), data_path("arctic_a0007.wav"),
        seconds=0.8, width=64, height=48, fps=25.0,
    )  # fmt: skip
    info = read_video_info(path)
    assert info["has_audio"] and info["n_frames"] == 20 and info["size"] == (64, 48)
    assert true.shape == (20, 17) and true.dtype == np.float32
    assert true[10, AU_NAMES.index("AU12")] == pytest.approx(3.0) and true[0].max() == 0.0
    with pytest.raises(ValueError, match="seconds is required"):
        tc.talking_video(tmp_path / "x.mp4", keys, data_path("arctic_a0007_phone.lab"), data_path("arctic_a0007.wav"))
    assert not (tmp_path / "x.mp4").exists()
