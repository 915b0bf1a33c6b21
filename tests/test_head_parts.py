"""The neutral head and its parts: expression removal, closed lips, eyeballs, the mouth interior,
part-wise motion and Gaussians that stretch with their triangles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emozone_lite import aus as A
from emozone_lite.camera import Camera
from emozone_lite.geometry import quat_to_rotmat
from emozone_lite.head import (
    CAVITY_UPPER,
    EYES,
    FACE,
    LOWER_TEETH,
    TONGUE,
    UPPER_TEETH,
    carry_parts,
    follows_mesh,
    load_head,
    mouth_gap_triangles,
    parts_of,
    seed_gaussians,
    stretch_gaussians,
    triangle_deformations,
)
from emozone_lite.head.neutral import (
    INNER_LIP_PAIRS,
    close_lips,
    harmonic_inpaint,
    mouth_region,
    neutral_vertices,
    neutralize_head,
    similarity_align,
)
from emozone_lite.landmarks import load_canonical_mesh
from emozone_lite.render import render_image
from emozone_lite.teacher import TeacherRig


@pytest.fixture(scope="module")
def mesh():
    return load_canonical_mesh()


@pytest.fixture(scope="module")
def head():
    return load_head()


@pytest.fixture(scope="module")
def rig():
    return TeacherRig.default()


def _render(head, rig, cam, aus=None, viseme=None):
    a = torch.zeros(1, 17) if aus is None else torch.as_tensor(aus, dtype=torch.float32).reshape(1, 17)
    w = None if viseme is None else rig.viseme_vector(viseme)[None]
    m, q, s = rig.pose_head(head, a, w)
    return render_image(m[0], q[0], s[0], head.opacities, head.colors, cam, background=[1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------ neutral
def test_mouth_gap_triangles_span_the_opening(mesh):
    gap = mouth_gap_triangles(mesh)
    assert len(gap) == 18
    upper = {u for u, _ in INNER_LIP_PAIRS}
    lower = {lo for _, lo in INNER_LIP_PAIRS}
    for t in np.asarray(mesh.triangles)[gap]:
        assert set(t) & upper and set(t) & lower


def test_similarity_align_recovers_a_similarity(mesh):
    v = mesh.vertices.astype(np.float64)
    th = 0.3
    R = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]])
    dst = 1.7 * v @ R.T + np.array([0.1, -0.2, 0.3])
    np.testing.assert_allclose(similarity_align(v, dst), dst, atol=1e-10)
    with pytest.raises(ValueError, match=r"\[V, 3\]"):
        similarity_align(v, dst[:10])


def test_harmonic_inpaint_is_the_membrane(mesh):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(468, 2))
    unk = mouth_region(mesh)
    y = harmonic_inpaint(x, unk, mesh.triangles)
    np.testing.assert_array_equal(y[~unk], x[~unk])  # known values are kept
    # each unknown vertex is the mean of its neighbours (the discrete Laplace equation)
    t = np.asarray(mesh.triangles)
    nbrs = {i: set() for i in range(468)}
    for a, b, c in t:
        nbrs[a] |= {b, c}
        nbrs[b] |= {a, c}
        nbrs[c] |= {a, b}
    for i in np.nonzero(unk)[0]:
        np.testing.assert_allclose(y[i], y[sorted(nbrs[i])].mean(0), atol=1e-10)
    np.testing.assert_allclose(harmonic_inpaint(np.ones((468, 3)), unk, mesh.triangles), 1.0)  # constants stay


def test_neutral_vertices_close_the_lips_and_keep_the_upper_face(mesh):
    v = mesh.vertices.astype(np.float64)
    smile = v.copy()
    corners = [61, 291, 78, 308]
    smile[corners, 1] += 0.04  # corners up 4 mm
    smile[[14, 87, 178, 88, 95, 317, 402, 318, 324], 1] -= 0.05  # lips apart 5 mm more
    neu = neutral_vertices(smile, mesh)
    for u, lo in INNER_LIP_PAIRS:
        np.testing.assert_allclose(neu[u], neu[lo], atol=1e-9)  # the inner lips touch
    upper_face = v[:, 1] > 0.1
    np.testing.assert_allclose(neu[upper_face], smile[upper_face], atol=1e-9)  # brows, eyes untouched
    # the raised corners come back down towards the canonical (neutral) face
    assert np.all(neu[corners, 1] - v[corners, 1] < 0.5 * (smile[corners, 1] - v[corners, 1]))
    # close_lips alone on the canonical mesh (lips 5.5 mm apart) closes them and moves only the mouth
    closed = close_lips(v, mesh)
    assert np.linalg.norm(closed[13] - closed[14]) < 1e-9
    assert np.abs(closed - v)[v[:, 1] > -0.2].max() == 0.0


def test_neutralize_head_removes_the_gap_gaussians_and_closes_the_mouth(mesh):
    g = seed_gaussians(mesh, n_gaussians=3000, seed=1)
    v = mesh.vertices.astype(np.float64)
    neu = close_lips(v, mesh)
    out = neutralize_head(g, v, neu, mesh)
    gap = torch.isin(g.extras["tri_index"], torch.as_tensor(mouth_gap_triangles(mesh)))
    assert len(out) == len(g) - int(gap.sum()) and int(gap.sum()) > 0
    assert not torch.isin(out.extras["tri_index"], torch.as_tensor(mouth_gap_triangles(mesh))).any()
    assert float((out.means - g.subset(~gap).means).abs().max()) > 0.01  # the lips moved


# ------------------------------------------------------------------------------ the shipped head
def test_shipped_head_has_every_part(head):
    part = parts_of(head)
    for code in (FACE, EYES, UPPER_TEETH, LOWER_TEETH, TONGUE, CAVITY_UPPER):
        assert int((part == code).sum()) > 50, code
    assert follows_mesh(head).sum() == (part == FACE).sum()
    assert len(head) < 20000, "the head stays small enough for the CPU studio"
    # the photographed teeth are gone from the face
    assert not torch.isin(head.extras["tri_index"][part == FACE], torch.as_tensor(mouth_gap_triangles())).any()


def test_lips_closed_at_rest_hide_the_mouth_interior(head, rig):
    cam = Camera.orbit(0, width=128, height=128)
    full = _render(head, rig, cam)
    face_only = head.subset(parts_of(head) != UPPER_TEETH)
    face_only = face_only.subset(~torch.isin(parts_of(face_only), torch.tensor([LOWER_TEETH, TONGUE, 4, 5])))
    without = _render(face_only, rig, cam)
    assert float((full - without).abs().max()) < 0.05, "at rest the closed lips must cover teeth and cavity"


def test_teeth_sit_behind_the_lips_in_depth(head):
    cam = Camera.orbit(0, width=256, height=256)
    part = parts_of(head)
    teeth = head.means[part == UPPER_TEETH]
    face = head.means[part == FACE]
    z_teeth = cam.world_to_camera(teeth)[:, 2]
    xy_t, xy_f = cam.project(teeth), cam.project(face)
    z_face = cam.world_to_camera(face)[:, 2]
    nearest = torch.cdist(xy_t, xy_f).argmin(1)  # the face Gaussian in front of each tooth
    assert float((z_teeth - z_face[nearest]).median()) > 0.02  # ≥ 2 mm behind the lip surface


def test_an_open_jaw_shows_a_dark_mouth_with_teeth(head, rig):
    cam = Camera.orbit(0, width=128, height=128)
    closed = _render(head, rig, cam)
    opened = _render(head, rig, cam, A.preset("surprise"))
    changed = (opened - closed).abs().sum(-1) > 0.3
    lum = opened @ torch.tensor([0.299, 0.587, 0.114])
    assert int(changed.sum()) > 100
    assert float(lum[changed].min()) < 0.2, "the opened mouth shows the dark cavity"
    # no hole to the (white) background opens around or inside the mouth
    inside = torch.isin(parts_of(head), torch.tensor([UPPER_TEETH, LOWER_TEETH, TONGUE]))
    px = cam.project(head.means[inside])
    x0, y0 = (px.min(0).values - 4).long()
    x1, y1 = (px.max(0).values + 8).long()
    assert int((opened[y0:y1, x0:x1] > 0.999).all(-1).sum()) == 0


def test_a_blink_covers_the_eyeball(head, rig):
    cam = Camera.orbit(0, width=256, height=256)
    eyes = head.means[parts_of(head) == EYES]
    px = cam.project(eyes)
    x0, y0 = px.min(0).values.long()
    x1, y1 = px.max(0).values.long()
    open_ = _render(head, rig, cam)[y0:y1, x0:x1]
    shut = _render(head, rig, cam, A.au_vector({"AU45": 5.0}))[y0:y1, x0:x1]
    dark = lambda img: int(((img @ torch.tensor([0.299, 0.587, 0.114])) < 0.3).sum())
    assert dark(open_) > 20 and dark(shut) < 0.4 * dark(open_), (dark(open_), dark(shut))


# ------------------------------------------------------------------------------ motion by part
def test_carry_parts_moves_each_part_its_own_way(head, rig):
    a = torch.as_tensor(A.preset("surprise"))[None]
    disp = rig.vertex_displacement(a)
    J = rig.jaw_opening(a)
    jaw = J[:, None, None] * rig.jaw_field
    m, q, s = carry_parts(head, rig.vertices, disp, jaw, J * rig.jaw_rotation)
    part = parts_of(head)
    skull = torch.isin(part, torch.tensor([UPPER_TEETH, CAVITY_UPPER, EYES]))
    torch.testing.assert_close(m[0, skull], head.means[skull], rtol=0, atol=0)
    lower = part == LOWER_TEETH
    drop = (m[0, lower] - head.means[lower])[:, 1]
    assert float(drop.mean()) < -0.1, "the lower teeth ride down with the jaw (AU26 = 4)"
    # with no jaw, the jaw parts stay even when the face moves
    m2, _, _ = carry_parts(head, rig.vertices, disp, torch.zeros_like(jaw), torch.zeros(1))
    torch.testing.assert_close(m2[0, lower], head.means[lower], rtol=0, atol=0)
    # nothing moves: everything is exactly the rest head
    z = torch.zeros_like(disp)
    m0, q0, s0 = carry_parts(head, rig.vertices, z, z, torch.zeros(1))
    torch.testing.assert_close(m0[0], head.means, rtol=0, atol=0)
    torch.testing.assert_close(s0[0], head.scales, rtol=0, atol=1e-7)
    torch.testing.assert_close(q0[0], torch.nn.functional.normalize(head.quats, dim=-1), rtol=0, atol=1e-6)


def test_parts_of_rejects_unknown_codes():
    g = seed_gaussians(n_gaussians=20)
    g.extras["part"] = torch.full((20,), 42)
    with pytest.raises(ValueError, match="unknown part codes"):
        parts_of(g)
    assert bool((parts_of(seed_gaussians(n_gaussians=20)) == FACE).all())  # no extra: all face


# ------------------------------------------------------------------------------ stretching
def _cov(q, s):
    M = quat_to_rotmat(q) * s[..., None, :]
    return M @ M.transpose(-1, -2)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_stretch_gaussians_maps_the_covariance(seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(32, 4, generator=g, dtype=torch.float64), dim=-1)
    s = torch.rand(32, 3, generator=g, dtype=torch.float64) + 0.01
    F = torch.randn(32, 3, 3, generator=g, dtype=torch.float64)
    q2, s2 = stretch_gaussians(q, s, F)
    torch.testing.assert_close(_cov(q2, s2), F @ _cov(q, s) @ F.transpose(-1, -2), rtol=1e-9, atol=1e-12)
    assert bool((torch.linalg.det(quat_to_rotmat(q2)) > 0.999).all())


def test_stretch_gaussians_identity_and_rotation_keep_the_representation():
    g = seed_gaussians(n_gaussians=200)  # flat Gaussians with two equal tangent scales
    q = torch.nn.functional.normalize(g.quats, dim=-1)
    q1, s1 = stretch_gaussians(q, g.scales, torch.eye(3).expand(200, 3, 3))
    torch.testing.assert_close(q1, q, rtol=0, atol=1e-6)
    torch.testing.assert_close(s1, g.scales, rtol=0, atol=1e-7)
    c, sn = np.cos(0.4), np.sin(0.4)
    Rz = torch.tensor([[c, -sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float32).expand(200, 3, 3)
    _, s2 = stretch_gaussians(q, g.scales, Rz)
    torch.testing.assert_close(s2, g.scales, rtol=0, atol=1e-6)


def test_triangle_deformations(mesh):
    v = torch.as_tensor(mesh.vertices, dtype=torch.float64)
    torch.testing.assert_close(triangle_deformations(v, v), torch.eye(3, dtype=torch.float64).expand(898, 3, 3))
    stretched = v * torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    F = triangle_deformations(v, stretched)
    e1 = v[mesh.triangles[:, 1]] - v[mesh.triangles[:, 0]]
    torch.testing.assert_close((F @ e1[..., None])[..., 0], e1 * torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="same V"):
        triangle_deformations(v, v[:10])
