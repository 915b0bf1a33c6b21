from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

matplotlib.use("Agg")

from emozone_lite import aus
from emozone_lite import zones as Z
from emozone_lite.landmarks import load_canonical_mesh

MESH = load_canonical_mesh()
V = torch.from_numpy(MESH.vertices)


def _membership_loop(points: np.ndarray, anchors: dict[str, np.ndarray], falloff: float) -> np.ndarray:
    """Oracle: plain Python loops over points, zones and anchors."""
    out = np.zeros((len(points), len(anchors)))
    for i, p in enumerate(points):
        logits = []
        for idx in anchors.values():
            d = min(math.dist(p, MESH.vertices[a]) for a in idx)
            logits.append(-(d * d) / (falloff * falloff))
        m = max(logits)
        e = [math.exp(x - m) for x in logits]
        out[i] = [x / sum(e) for x in e]
    return out


def _jitter(points, scale=0.02, seed=0):
    g = torch.Generator().manual_seed(seed)
    return points + scale * torch.randn(points.shape, generator=g)


# --------------------------------------------------------------------------- regions
def test_subregions_disjoint_nonempty_and_cover_stored_regions():
    sub = Z.subregion_indices()
    assert list(sub) == list(Z.SUBZONE_NAMES)
    allidx = np.concatenate(list(sub.values()))
    assert len(allidx) == len(np.unique(allidx)), "sub-regions overlap"
    assert all(len(v) > 0 for v in sub.values())
    assert allidx.min() >= 0 and allidx.max() < 468
    np.testing.assert_array_equal(np.sort(sub["lips"]), np.sort(MESH.regions["lips"]))
    np.testing.assert_array_equal(
        np.sort(sub["brows"]), np.sort(np.r_[MESH.regions["left_eyebrow"], MESH.regions["right_eyebrow"]])
    )
    # geometry: forehead above the brows, chin below the lips, cheeks lateral to the nose
    v = MESH.vertices
    assert v[sub["forehead"], 1].min() > v[sub["brows"], 1].max()
    assert v[sub["chin"], 1].max() < v[sub["lips"], 1].min()
    assert np.abs(v[sub["cheeks"], 0]).min() > np.abs(v[sub["nose"], 0]).max() - 0.05
    # left/right symmetric: each selection contains the mirror of each vertex (mesh is symmetric)
    for name in ("forehead", "chin", "jaw", "nose", "nasolabial", "cheeks", "glabella"):
        pts = v[sub[name]]
        mirrored = pts * np.array([-1, 1, 1])
        d = np.linalg.norm(mirrored[:, None] - pts[None], axis=-1).min(1)
        assert d.max() < 1e-4, name


def test_zone_indices_are_union_of_subregions():
    zi, sub = Z.zone_indices(), Z.subregion_indices()
    assert tuple(zi) == Z.ZONE_NAMES
    for z in Z.ZONE_NAMES:
        want = np.sort(np.concatenate([sub[s] for s in sub if Z.SUBZONE_TO_ZONE[s] == z]))
        np.testing.assert_array_equal(zi[z], want)


# --------------------------------------------------------------------------- membership
@pytest.mark.parametrize("falloff", [0.05, 0.1, 0.3])
def test_matches_python_loop_oracle(falloff):
    pts = _jitter(V[::9], 0.05).numpy()
    mine = Z.soft_membership(pts, falloff=falloff)
    ref = _membership_loop(pts, Z.zone_indices(), falloff)
    torch.testing.assert_close(mine, torch.from_numpy(ref).float(), atol=1e-5, rtol=1e-5)


def test_rows_sum_to_one_for_arrays_and_tensors():
    for pts in (MESH.vertices, V, V.double(), _jitter(V, 0.3), torch.zeros(0, 3)):
        w = Z.soft_membership(pts)
        assert w.shape == (len(pts), 3)
        assert bool((w >= 0).all())
        torch.testing.assert_close(w.sum(1), torch.ones(len(pts), dtype=w.dtype))
    assert Z.soft_membership(V.double()).dtype == torch.float64
    assert Z.soft_membership(MESH.vertices).dtype == torch.float32


def test_far_points_are_finite():
    w = Z.soft_membership(torch.tensor([[100.0, 0.0, 0.0], [0.0, -50.0, 3.0]]), falloff=0.01)
    assert bool(torch.isfinite(w).all())
    torch.testing.assert_close(w.sum(1), torch.ones(2))


def test_anatomy_brows_upper_lips_lower_cheeks_synergy():
    sub = Z.subregion_indices()
    names = Z.ZONE_NAMES
    for region, zone in (
        ("brows", "upper"),
        ("forehead", "upper"),
        ("lips", "lower"),
        ("chin", "lower"),
        ("cheeks", "synergy"),
    ):
        pts = _jitter(V[sub[region]], 0.01, seed=1)  # near, not on, the anchors
        w = Z.soft_membership(pts)
        z = names.index(zone)
        assert float(w[:, z].mean()) > 0.8, (region, w.mean(0))
        assert float((Z.hard_membership(w) == z).float().mean()) > 0.9, region
    # named MediaPipe landmarks that are not used to build the rules: cheek centres 205/425, 50/280
    w = Z.soft_membership(V[[205, 425, 50, 280]])
    assert bool((w[:, names.index("synergy")] > 0.9).all())
    # inner brow (AU01 site) 107 / 336 and chin tip 152
    assert float(Z.soft_membership(V[[107, 336]])[:, 0].min()) > 0.9
    assert float(Z.soft_membership(V[[152]])[0, 1]) > 0.99


@settings(max_examples=40, deadline=None)
@given(
    points=hnp.arrays(np.float32, st.tuples(st.integers(1, 30), st.just(3)), elements=st.floats(-3, 3, width=32)),
    falloff=st.floats(1e-3, 10.0),
    zones=st.sampled_from([None, "fine"]),
)
def test_soft_rows_sum_to_one_for_any_points_and_falloff(points, falloff, zones):
    w = Z.soft_membership(points, falloff=falloff, zones=zones)
    n_z = len(Z.ZONE_NAMES) if zones is None else len(Z.SUBZONE_NAMES)
    assert w.shape == (len(points), n_z) and w.dtype == torch.float32
    assert bool(torch.isfinite(w).all()) and bool((w >= 0).all())
    torch.testing.assert_close(w.sum(1), torch.ones(len(points)), atol=1e-5, rtol=0)
    # each point's largest share is its nearest zone (near-ties, which float32 cannot order, aside)
    d2 = torch.stack([torch.cdist(torch.from_numpy(points), a).amin(1) for a in Z.zone_anchors(zones)[1]], 1) ** 2
    first, second = d2.sort(1).values[:, :2].unbind(1)
    clear = (second - first > 1e-4 * second) & ((second - first) / falloff**2 > 1e-3)
    assert bool((w.argmax(1) == d2.argmin(1))[clear].all())


def test_small_falloff_approaches_hard_nearest_zone():
    pts = _jitter(V, 0.03, seed=2)
    anchors = [V[torch.from_numpy(i)] for i in Z.zone_indices().values()]
    d = torch.stack([torch.cdist(pts, a).amin(1) for a in anchors], 1)
    nearest = d.argmin(1)
    gap = d.sort(1).values[:, 1] - d.sort(1).values[:, 0]
    clear = gap > 1e-3  # skip near-ties
    maxes = []
    for f in (0.3, 0.1, 0.03, 1e-3):
        w = Z.soft_membership(pts, falloff=f)
        maxes.append(float(w.max(1).values.mean()))
    assert maxes == sorted(maxes), maxes  # sharper as falloff shrinks
    w = Z.soft_membership(pts, falloff=1e-3)
    assert bool((Z.hard_membership(w) == nearest)[clear].all())
    onehot = torch.nn.functional.one_hot(nearest, 3).float()
    assert float((w - onehot)[clear].abs().max()) < 1e-3
    # large falloff → uniform
    torch.testing.assert_close(Z.soft_membership(pts, falloff=1e3), torch.full((len(pts), 3), 1 / 3), atol=1e-4, rtol=0)


def test_differentiable_in_points_and_falloff():
    pts = _jitter(V[::20], 0.02).requires_grad_(True)
    f = torch.tensor(0.1, requires_grad=True)
    w = Z.soft_membership(pts, falloff=f)
    (w[:, 0] * torch.arange(len(pts))).sum().backward()
    assert pts.grad is not None and bool(torch.isfinite(pts.grad).all()) and float(pts.grad.abs().sum()) > 0
    assert f.grad is not None and math.isfinite(float(f.grad))


def test_module_matches_function_and_learns_falloff():
    pts = _jitter(V, 0.02)
    zm = Z.ZoneMembership(falloff=0.07)
    assert zm.names == Z.ZONE_NAMES and zm.n_zones == 3
    torch.testing.assert_close(zm(pts), Z.soft_membership(pts, falloff=0.07))
    assert list(zm.parameters()) == []
    zl = Z.ZoneMembership(zones="fine", learnable_falloff=True)
    assert zl.n_zones == len(Z.SUBZONE_NAMES)
    zl(pts)[:, 0].sum().backward()
    assert zl.log_falloff.grad is not None
    torch.testing.assert_close(zl(pts), Z.soft_membership(pts, zones="fine"))
    sd = zm.state_dict()
    assert "anchors" in sd and "log_falloff" in sd


def test_custom_zones_indices_and_points():
    spec = {"top": np.array([10, 151, 9]), "bottom": V[[152, 148, 377]]}
    w = Z.soft_membership(V[[10, 152]], falloff=0.05, zones=spec)
    assert w.shape == (2, 2)
    assert float(w[0, 0]) > 0.99 and float(w[1, 1]) > 0.99
    names, anchors = Z.zone_anchors(spec)
    assert names == ("top", "bottom") and anchors[0].shape == (3, 3)


# --------------------------------------------------------------------------- AU priors
def test_au_zone_prior_columns_and_anatomy():
    A = Z.au_zone_prior()
    assert A.shape == (3, 17)
    torch.testing.assert_close(A.sum(0), torch.ones(17))
    col = {a: A[:, k] for k, a in enumerate(Z.AU_NAMES)}
    for au in ("AU01", "AU02", "AU04", "AU05", "AU07", "AU45"):
        assert col[au].tolist() == [1.0, 0.0, 0.0], au
    for au in ("AU15", "AU17", "AU20", "AU23", "AU25", "AU26"):
        assert col[au].tolist() == [0.0, 1.0, 0.0], au
    for au in ("AU06", "AU09", "AU10", "AU12", "AU14"):
        assert int(col[au].argmax()) == 2 and float(col[au][2]) == 0.75, au
    assert float(col["AU06"][0]) == 0.25 and float(col["AU12"][1]) == 0.25  # spill to the eyes / lips
    hard = Z.au_zone_prior(spill=0.0)
    assert bool(((hard == 0) | (hard == 1)).all())
    fine = Z.au_zone_prior(Z.SUBZONE_NAMES)
    torch.testing.assert_close(fine.sum(0), torch.ones(17))
    assert float(fine[Z.SUBZONE_NAMES.index("jaw"), Z.AU_NAMES.index("AU26")]) == 0.5
    part = Z.au_zone_prior(("upper",))  # AUs without an upper share get a zero column
    assert float(part[0, Z.AU_NAMES.index("AU26")]) == 0.0 and float(part[0, 0]) == 1.0


def test_au_anatomical_prior():
    P = Z.au_anatomical_prior(strength=3.0)
    A = Z.au_zone_prior()
    assert P.shape == (3, 17) and bool((P <= 0).all()) and float(P.min()) == -3.0
    assert bool((P[A.argmax(0), torch.arange(17)] == 0).all())  # free on the AU's own zone
    assert bool((P[A == 0] == -3.0).all())
    assert float(P[1, Z.AU_NAMES.index("AU12")]) == pytest.approx(3.0 * (0.25 / 0.75 - 1))
    assert bool((Z.au_anatomical_prior(strength=0.0) == 0).all())


def test_au_names_and_zones_come_from_the_facs_table():
    # one source of truth: zones re-exports aus.AU_NAMES and reads AU_ZONE off aus.FACS
    assert Z.AU_NAMES is aus.AU_NAMES
    assert list(Z.AU_ZONE) == list(aus.AU_NAMES)
    assert Z.AU_ZONE == {a: aus.FACS[a].zone for a in aus.AU_NAMES}
    assert set(Z.AU_ZONE.values()) <= set(Z.ZONE_NAMES)
    assert set(Z.AU_SUBREGIONS) == set(aus.AU_NAMES)


# --------------------------------------------------------------------------- colours and plots
def test_zone_colors():
    c = Z.zone_colors(torch.eye(3))
    torch.testing.assert_close(c, torch.tensor([Z.ZONE_COLORS[n] for n in Z.ZONE_NAMES]))
    torch.testing.assert_close(Z.zone_colors(torch.tensor([0, 2])), c[[0, 2]])
    w = Z.soft_membership(V)
    cols = Z.zone_colors(w)
    assert cols.shape == (468, 3) and float(cols.min()) >= 0 and float(cols.max()) <= 1
    torch.testing.assert_close(
        Z.zone_colors(torch.full((2, 2), 0.5), palette=[[1, 0, 0], [0, 0, 1]]), torch.tensor([[0.5, 0, 0.5]] * 2)
    )
    assert Z.zone_colors(Z.soft_membership(V, zones="fine")).shape == (468, 3)


def test_plots_return_figures_without_pyplot_leak():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    before = plt.get_fignums()
    w = Z.soft_membership(V)
    fig = Z.plot_zones_2d(V, w, title="zones")
    assert isinstance(fig, Figure) and len(fig.axes[0].collections) == 1
    assert plt.get_fignums() == before
    fig2 = Z.plot_zones_2d(V, w, hard=True)
    assert isinstance(fig2, Figure)
    _, ax = plt.subplots()
    assert Z.plot_zones_2d(V, Z.hard_membership(w), ax=ax) is ax.figure
    plt.close("all")
    f3 = Z.plot_zones_3d(V, w)
    assert type(f3).__name__ == "Figure" and len(f3.data) == 1 and len(f3.data[0].x) == 468
    assert "upper" in f3.data[0].text[0]
    assert len(Z.plot_zones_3d(V, w, max_points=100).data[0].x) == 100


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "points, kwargs, match",
    [
        (torch.zeros(5, 2), {}, r"\[N, 3\]"),
        (torch.zeros(3), {}, r"\[N, 3\]"),
        (torch.tensor([[0.0, float("nan"), 0.0]]), {}, "NaN"),
        (torch.tensor([[0.0, float("inf"), 0.0]]), {}, "NaN or inf"),
        (torch.zeros(2, 3), {"falloff": 0.0}, "falloff must be a positive"),
        (torch.zeros(2, 3), {"falloff": -0.1}, "falloff must be a positive"),
        (torch.zeros(2, 3), {"falloff": float("nan")}, "falloff must be a positive"),
        (torch.zeros(2, 3), {"falloff": torch.ones(2)}, "falloff must be a scalar"),
        (torch.zeros(2, 3), {"zones": "medium"}, "zones must be None"),
        (torch.zeros(2, 3), {"zones": {}}, "zones is empty"),
        (torch.zeros(2, 3), {"zones": {"a": np.array([1, 999])}}, r"indices must lie in \[0, 468\)"),
        (torch.zeros(2, 3), {"zones": {"a": np.zeros((2, 2))}}, r"\[k, 3\]"),
        (torch.zeros(2, 3), {"zones": {"a": np.array([], dtype=int)}}, "no anchors"),
    ],
)
def test_soft_membership_bad_input(points, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Z.soft_membership(points, **kwargs)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="falloff"):
        Z.ZoneMembership(falloff=0)
    with pytest.raises(ValueError, match="unknown zone name"):
        Z.au_zone_prior(("upper", "ears"))
    with pytest.raises(ValueError, match="spill"):
        Z.au_zone_prior(spill=1.0)
    with pytest.raises(ValueError, match="strength"):
        Z.au_anatomical_prior(strength=-1)
    with pytest.raises(ValueError, match=r"weights must have shape \[N, Z\]"):
        Z.hard_membership(torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="NaN"):
        Z.zone_colors(torch.tensor([[float("nan"), 1.0, 0.0]]))
    with pytest.raises(ValueError, match="palette"):
        Z.zone_colors(torch.eye(3), palette=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="labels must lie"):
        Z.zone_colors(torch.tensor([0, 5]), names=Z.ZONE_NAMES)
    with pytest.raises(ValueError, match="same N"):
        Z.plot_zones_2d(V, torch.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="same N"):
        Z.plot_zones_3d(V, torch.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="names has 2 entries"):
        Z.plot_zones_2d(V, Z.soft_membership(V), names=("a", "b"))


# --------------------------------------------------------------------------- clouds on the mesh
def test_mesh_points_and_cloud_membership():
    from emozone_lite.gaussians import GaussianCloud

    T = torch.from_numpy(MESH.triangles)
    tri = torch.tensor([0, 5, 100, 897])
    onehot = torch.eye(3)[[0, 1, 2, 0]]
    torch.testing.assert_close(Z.mesh_points(tri, onehot), V[T[tri, [0, 1, 2, 0]]])
    centre = torch.full((4, 3), 1 / 3)
    torch.testing.assert_close(Z.mesh_points(tri, centre), V[T[tri]].mean(1))
    # a personalised cloud (means moved away from the mesh) keeps the zones of its mesh place
    pts = Z.mesh_points(tri, centre)
    base = GaussianCloud.from_points(pts * 1.3 + 0.1)
    cloud = GaussianCloud(
        base.means, base.quats, base.scales, base.opacities, base.colors, {"tri_index": tri, "bary": centre}
    )
    torch.testing.assert_close(Z.cloud_membership(cloud), Z.soft_membership(pts))
    plain = GaussianCloud.from_points(pts * 1.3 + 0.1)
    torch.testing.assert_close(Z.cloud_membership(plain, falloff=0.1), Z.soft_membership(pts * 1.3 + 0.1, falloff=0.1))


def test_mesh_points_bad_input():
    with pytest.raises(ValueError, match="tri_index must lie"):
        Z.mesh_points(torch.tensor([898]), torch.full((1, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"bary must have shape \[N, 3\] with N = 2, got \(1, 3\)"):
        Z.mesh_points(torch.tensor([0, 1]), torch.full((1, 3), 1 / 3))
    with pytest.raises(ValueError, match="integer triangle indices"):
        Z.mesh_points(torch.tensor([0.5]), torch.full((1, 3), 1 / 3))
    with pytest.raises(ValueError, match="NaN"):
        Z.mesh_points(torch.tensor([0]), torch.tensor([[float("nan"), 0.5, 0.5]]))
