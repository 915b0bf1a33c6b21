"""Tests for emozone_lite.gaussians: the GaussianCloud container and 3DGS PLY files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emozone_lite.camera import HEAD_TARGET, Camera
from emozone_lite.gaussians import DEFAULT_N_REST, SH_C0, GaussianCloud, load_ply, save_ply

# The property order of the original 3DGS code (INRIA ``GaussianModel.construct_list_of_attributes``).
INRIA_PROPS = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    + [f"f_rest_{i}" for i in range(45)]
    + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
)


def random_cloud(n: int = 50, seed: int = 0, **extras) -> GaussianCloud:
    g = torch.Generator().manual_seed(seed)
    return GaussianCloud(
        means=torch.randn(n, 3, generator=g),
        quats=torch.randn(n, 4, generator=g),
        scales=torch.exp(torch.randn(n, 3, generator=g) - 4),
        opacities=torch.rand(n, generator=g),
        colors=torch.rand(n, 3, generator=g),
        extras=extras,
    )


def ply_bytes(
    props: list[str], table: np.ndarray, fmt: str = "binary_little_endian", types: dict | None = None
) -> bytes:
    """A PLY written with plain NumPy, as another program would write it."""
    types = types or {}
    n = table.shape[0]
    head = ["ply", f"format {fmt} 1.0", "comment made by a test", f"element vertex {n}"]
    head += [f"property {types.get(p, 'float')} {p}" for p in props]
    head.append("end_header")
    header = ("\n".join(head) + "\n").encode("ascii")
    if fmt == "ascii":
        return header + "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in table).encode("ascii")
    code = {"float": "f4", "double": "f8", "uchar": "u1", "int": "i4", "short": "i2"}
    endian = "<" if fmt == "binary_little_endian" else ">"
    arr = np.empty(n, dtype=[(p, endian + code[types.get(p, "float")]) for p in props])
    for i, p in enumerate(props):
        arr[p] = table[:, i]
    return header + arr.tobytes()


def assert_cloud_close(a: GaussianCloud, b: GaussianCloud) -> None:
    """Means, quats and extras exactly; log/logit/SH-DC encoded fields within float32 round-off."""
    assert len(a) == len(b)
    assert torch.equal(a.means, b.means) and torch.equal(a.quats, b.quats)
    for name in ("scales", "opacities", "colors"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-6, atol=3e-8)
    assert set(a.extras) == set(b.extras)
    for k in a.extras:
        assert a.extras[k].dtype == b.extras[k].dtype, k
        assert torch.equal(a.extras[k], b.extras[k]), k


# ---------------------------------------------------------------- round trips
def test_round_trip(tmp_path):
    cloud = random_cloud(
        200, sh_rest=torch.randn(200, 15, 3), parent_triangle=torch.randint(0, 898, (200,)), bary=torch.rand(200, 3)
    )
    path = save_ply(cloud, tmp_path / "scene.ply")
    back = load_ply(path)
    assert_cloud_close(cloud, back)
    assert back.allclose(cloud)
    # the encodings pick the float32 code that decodes closest: almost every value comes back bit-exact
    for name in ("scales", "opacities", "colors"):
        assert (getattr(cloud, name) == getattr(back, name)).float().mean() > 0.8, name
    # file -> cloud -> file reproduces the file byte for byte
    save_ply(back, tmp_path / "again.ply")
    assert (tmp_path / "again.ply").read_bytes() == path.read_bytes()
    # no temporary files left beside the target (atomic write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.ply", "scene.ply"]


def test_round_trip_without_sh_writes_45_zero_f_rest(tmp_path):
    cloud = random_cloud(10)
    path = save_ply(cloud, tmp_path / "a.ply")
    data = path.read_bytes()
    header = data[: data.index(b"end_header\n") + len(b"end_header\n")].decode()
    props = [ln.split()[2] for ln in header.splitlines() if ln.startswith("property")]
    assert props == INRIA_PROPS  # exactly the layout viewers expect
    assert "format binary_little_endian 1.0" in header and "element vertex 10" in header
    assert len(data) - len(header) == 10 * len(INRIA_PROPS) * 4
    body = np.frombuffer(data[len(header) :], dtype="<f4").reshape(10, -1)
    assert np.all(body[:, 9:54] == 0) and np.all(body[:, 3:6] == 0)
    np.testing.assert_allclose(body[:, 6:9], (cloud.colors.numpy() - 0.5) / SH_C0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(body[:, 55:58], np.log(cloud.scales.numpy()), rtol=1e-6, atol=1e-6)
    back = load_ply(path)
    assert "sh_rest" not in back.extras  # all-zero higher SH is the same as none
    assert_cloud_close(cloud, back)


def test_empty_sh_rest_writes_no_f_rest(tmp_path):
    cloud = random_cloud(8, sh_rest=torch.zeros(8, 0, 3))
    path = save_ply(cloud, tmp_path / "compact.ply")
    assert b"f_rest" not in path.read_bytes()[:4000]
    back = load_ply(path)
    assert "sh_rest" not in back.extras and back.allclose(random_cloud(8))


def test_round_trip_empty_and_extremes(tmp_path):
    empty = random_cloud(0)
    back = load_ply(save_ply(empty, tmp_path / "empty.ply"))
    assert len(back) == 0 and back.means.shape == (0, 3) and back.opacities.shape == (0,)
    edge = GaussianCloud.from_points(
        torch.zeros(3, 3), colors=torch.tensor([[0.0, 1.0, 0.5]] * 3), scale=1e-6, opacity=1.0
    )
    edge.opacities[0] = 0.0
    back = load_ply(save_ply(edge, tmp_path / "edge.ply"))
    assert torch.equal(back.opacities, edge.opacities)  # opacity 0 and 1 survive the logit
    assert_cloud_close(edge, back)


def test_round_trip_empty_cloud_with_extras(tmp_path):
    # found by the property test below: an empty cloud with extras used to fail in save_ply (reshape(0, -1))
    empty = random_cloud(0, flag=torch.zeros(0, dtype=torch.bool), bary=torch.zeros(0, 3), sh_rest=torch.zeros(0, 2, 3))
    back = load_ply(save_ply(empty, tmp_path / "empty.ply"))
    assert len(back) == 0 and set(back.extras) == {"flag", "bary"}  # an empty SH rest reads as none
    assert back.extras["flag"].dtype == torch.bool and back.extras["bary"].shape == (0, 3)


def test_round_trip_multidim_and_bool_extras(tmp_path):
    cloud = random_cloud(7, frame=torch.rand(7, 2, 3), visible=torch.rand(7) > 0.5, sh_rest=torch.randn(7, 3, 3))
    back = load_ply(save_ply(cloud, tmp_path / "x.ply"))
    assert back.extras["frame"].shape == (7, 2, 3) and back.extras["visible"].dtype == torch.bool
    assert back.extras["sh_rest"].shape == (7, 3, 3)  # degree-1 SH: 9 f_rest
    assert_cloud_close(cloud, back)


# ---------------------------------------------------------------- files from other programs
def _f32(shape, lo, hi):
    return hnp.arrays(np.float32, shape, elements=st.floats(lo, hi, width=32))


@st.composite
def clouds(draw):
    """Random clouds: any centres, non-zero quaternions, scales over 5 decades, opacities incl. 0 and 1,
    colours a little outside [0, 1], and a random choice of extras (float [N] / [N, k] / [N, 2, 2],
    int, bool, SH rest coefficients)."""
    n = draw(st.integers(0, 12))
    quats = draw(_f32((n, 4), -1, 1).filter(lambda q: bool((np.linalg.norm(q, axis=1) > 1e-3).all())))
    opacity = st.one_of(st.floats(0, 1, width=32), st.sampled_from([0.0, 1.0]))
    opac = draw(hnp.arrays(np.float32, (n,), elements=opacity))
    extras = {}
    if draw(st.booleans()):
        extras["weight"] = draw(_f32((n,), -1e3, 1e3))
    if draw(st.booleans()):
        extras["bary"] = draw(_f32((n, 3), 0, 1))
    if draw(st.booleans()):
        extras["feat"] = draw(_f32((n, 2, 2), -10, 10))
    if draw(st.booleans()):
        extras["tri_index"] = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, 2**24)))
    if draw(st.booleans()):
        extras["flag"] = draw(hnp.arrays(np.bool_, (n,)))
    if draw(st.booleans()):
        extras["sh_rest"] = draw(_f32((n, draw(st.integers(0, 3)), 3), -2, 2))
    return GaussianCloud(
        means=torch.from_numpy(draw(_f32((n, 3), -100, 100))),
        quats=torch.from_numpy(quats),
        scales=torch.from_numpy(draw(_f32((n, 3), 2.0**-13, 10))),
        opacities=torch.from_numpy(opac),
        colors=torch.from_numpy(draw(_f32((n, 3), -0.25, 1.25))),
        extras={k: torch.from_numpy(v) for k, v in extras.items()},
    )


@settings(max_examples=40, deadline=None)
@given(cloud=clouds())
def test_save_load_round_trip_of_random_clouds(cloud):
    # an all-zero SH rest is what a file without one reads as: it comes back absent
    sh = cloud.extras.get("sh_rest")
    sh_dropped = sh is not None and not bool(sh.any())
    expected = cloud
    if sh_dropped:
        expected = GaussianCloud(
            cloud.means,
            cloud.quats,
            cloud.scales,
            cloud.opacities,
            cloud.colors,
            extras={k: v for k, v in cloud.extras.items() if k != "sh_rest"},
        )
    with tempfile.TemporaryDirectory() as d:
        path = save_ply(cloud, Path(d) / "cloud.ply")
        back = load_ply(path)
        again = save_ply(back, Path(d) / "again.ply")
        if not sh_dropped or sh.shape[1] == DEFAULT_N_REST // 3:
            assert again.read_bytes() == path.read_bytes()  # a loaded cloud saves to the same file
    assert_cloud_close(expected, back)
    assert back.means.dtype == torch.float32 and len(back) == len(cloud)


def test_load_inria_layout_value_by_value(tmp_path):
    rng = np.random.default_rng(3)
    n = 6
    table = rng.normal(size=(n, len(INRIA_PROPS))).astype(np.float32)
    col = {p: table[:, i] for i, p in enumerate(INRIA_PROPS)}
    path = tmp_path / "inria.ply"
    path.write_bytes(ply_bytes(INRIA_PROPS, table))
    cloud = load_ply(path)
    assert len(cloud) == n
    for i in range(n):
        for a, axis in enumerate("xyz"):
            assert float(cloud.means[i, a]) == float(col[axis][i])
        for c in range(3):
            assert float(cloud.colors[i, c]) == pytest.approx(0.5 + SH_C0 * float(col[f"f_dc_{c}"][i]), abs=1e-7)
            assert float(cloud.scales[i, c]) == pytest.approx(np.exp(float(col[f"scale_{c}"][i])), rel=1e-6)
        assert float(cloud.opacities[i]) == pytest.approx(1 / (1 + np.exp(-float(col["opacity"][i]))), rel=1e-6)
        for q in range(4):
            assert float(cloud.quats[i, q]) == float(col[f"rot_{q}"][i])  # wxyz, not normalised
        for k in range(15):  # INRIA stores f_rest channel-major: index = channel * 15 + k
            for c in range(3):
                assert float(cloud.extras["sh_rest"][i, k, c]) == float(col[f"f_rest_{c * 15 + k}"][i])
    assert set(cloud.extras) == {"sh_rest"}  # normals are dropped


def test_load_any_order_types_and_formats(tmp_path):
    rng = np.random.default_rng(4)
    n = 5
    props = [
        "rot_1",
        "scale_2",
        "opacity",
        "z",
        "f_dc_2",
        "rot_0",
        "y",
        "f_dc_0",
        "scale_0",
        "x",
        "f_dc_1",
        "rot_3",
        "scale_1",
        "rot_2",
        "f_rest_1",
        "f_rest_0",
        "f_rest_2",
        "label",
        "uv_1",
        "uv_0",
    ]
    table = rng.normal(size=(n, len(props)))
    table[:, props.index("label")] = rng.integers(0, 200, n)
    types = {p: "double" for p in props} | {"label": "uchar"}
    col = {p: table[:, i] for i, p in enumerate(props)}
    clouds = []
    for fmt in ("ascii", "binary_little_endian", "binary_big_endian"):
        path = tmp_path / f"{fmt}.ply"
        path.write_bytes(ply_bytes(props, table, fmt=fmt, types=types))
        clouds.append(load_ply(path))
    for cloud in clouds:
        np.testing.assert_array_equal(
            cloud.means.numpy(), np.stack([col["x"], col["y"], col["z"]], 1).astype(np.float32)
        )
        np.testing.assert_allclose(
            cloud.scales.numpy(), np.exp(np.stack([col[f"scale_{i}"] for i in range(3)], 1)), rtol=1e-6
        )
        np.testing.assert_allclose(
            cloud.colors.numpy(), 0.5 + SH_C0 * np.stack([col[f"f_dc_{i}"] for i in range(3)], 1), rtol=1e-6, atol=1e-7
        )
        np.testing.assert_array_equal(
            cloud.quats.numpy(), np.stack([col[f"rot_{i}"] for i in range(4)], 1).astype(np.float32)
        )
        np.testing.assert_array_equal(
            cloud.extras["sh_rest"][:, 0].numpy(),
            np.stack([col[f"f_rest_{i}"] for i in range(3)], 1).astype(np.float32),
        )
        np.testing.assert_array_equal(cloud.extras["label"].numpy(), col["label"].astype(np.float32))
        np.testing.assert_array_equal(
            cloud.extras["uv"].numpy(), np.stack([col["uv_0"], col["uv_1"]], 1).astype(np.float32)
        )
    assert clouds[0].allclose(clouds[1]) and clouds[1].allclose(clouds[2])


def test_load_rgb_uchar_instead_of_f_dc(tmp_path):
    props = [
        "x",
        "y",
        "z",
        "red",
        "green",
        "blue",
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    ]
    table = np.array([[0, 0, 0, 255, 0, 51, 0, 0, 0, 0, 1, 0, 0, 0]], dtype=np.float64)
    path = tmp_path / "rgb.ply"
    path.write_bytes(ply_bytes(props, table, types={"red": "uchar", "green": "uchar", "blue": "uchar"}))
    cloud = load_ply(path)
    torch.testing.assert_close(cloud.colors, torch.tensor([[1.0, 0.0, 0.2]]))
    assert float(cloud.opacities[0]) == 0.5 and torch.equal(cloud.scales, torch.ones(1, 3))


def test_load_skips_elements_before_vertex_and_crlf(tmp_path):
    cloud = random_cloud(4)
    data = save_ply(cloud, tmp_path / "a.ply").read_bytes()
    cut = data.index(b"element vertex")
    # an element with two float properties before 'vertex' (a binary reader must skip its bytes)
    head = (
        data[:cut]
        + b"element meta 2\nproperty float a\nproperty float b\n"
        + data[cut : data.index(b"end_header\n") + 11]
    )
    (tmp_path / "b.ply").write_bytes(
        head + np.arange(4, dtype="<f4").tobytes() + data[len(data[: data.index(b"end_header\n") + 11]) :]
    )
    assert_cloud_close(cloud, load_ply(tmp_path / "b.ply"))
    # an ascii file with Windows line endings
    props = [
        "x",
        "y",
        "z",
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    ]
    table = np.array([[0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    (tmp_path / "c.ply").write_bytes(ply_bytes(props, table, fmt="ascii").replace(b"\n", b"\r\n"))
    c = load_ply(tmp_path / "c.ply")
    torch.testing.assert_close(c.means, torch.tensor([[0.1, 0.2, 0.3]]))
    torch.testing.assert_close(c.colors, torch.full((1, 3), 0.5))


# ---------------------------------------------------------------- malformed files
@pytest.fixture
def good_ply(tmp_path):
    return save_ply(random_cloud(5), tmp_path / "good.ply")


def test_not_a_ply(tmp_path):
    p = tmp_path / "garbage.ply"
    p.write_bytes(os.urandom(64))
    with pytest.raises(ValueError, match="not a PLY file"):
        load_ply(p)
    p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n")  # header never ends
    with pytest.raises(ValueError, match="end_header"):
        load_ply(p)
    p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty quaternion x\nend_header\n")
    with pytest.raises(ValueError, match="unsupported property"):
        load_ply(p)
    p.write_bytes(b"ply\nformat ebcdic 1.0\nend_header\n")
    with pytest.raises(ValueError, match="unknown PLY format"):
        load_ply(p)
    p.write_bytes(b"ply\nformat ascii 1.0\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n")
    with pytest.raises(ValueError, match="no 'element vertex'"):
        load_ply(p)
    with pytest.raises(FileNotFoundError):
        load_ply(tmp_path / "missing.ply")


def test_missing_property_is_named(tmp_path):
    props = [p for p in INRIA_PROPS if p not in ("opacity", "scale_2")]
    p = tmp_path / "noopacity.ply"
    p.write_bytes(ply_bytes(props, np.zeros((2, len(props)))))
    with pytest.raises(ValueError, match=r"missing required properties 'opacity', 'scale_2'"):
        load_ply(p)


def test_truncated_body_reports_bytes(good_ply, tmp_path):
    data = good_ply.read_bytes()
    p = tmp_path / "cut.ply"
    p.write_bytes(data[:-10])
    stride = len(INRIA_PROPS) * 4
    found = 5 * stride - 10
    with pytest.raises(
        ValueError,
        match=rf"truncated: 5 vertices × {stride} bytes = {5 * stride} bytes expected after the header, found {found}",
    ):
        load_ply(p)
    props = INRIA_PROPS
    text = ply_bytes(props, np.zeros((3, len(props))), fmt="ascii")
    p.write_bytes(text[: text.rindex(b"\n", 0, -1) + 1])  # drop the last line
    with pytest.raises(ValueError, match="expected 3 vertex lines, found 2"):
        load_ply(p)


def test_bad_values_in_file(tmp_path):
    props = INRIA_PROPS[:9] + ["f_rest_0", "f_rest_1"] + INRIA_PROPS[-8:]
    p = tmp_path / "rest.ply"
    p.write_bytes(ply_bytes(props, np.zeros((1, len(props)))))
    with pytest.raises(ValueError, match="multiple of 3"):
        load_ply(p)
    table = np.zeros((1, len(INRIA_PROPS)))
    table[0, 0] = np.nan
    p.write_bytes(ply_bytes(INRIA_PROPS, table))
    with pytest.raises(ValueError, match="means contains NaN"):
        load_ply(p)
    lines = ply_bytes(INRIA_PROPS, np.zeros((1, len(INRIA_PROPS))), fmt="ascii").replace(b"0.0 0.0\n", b"0.0 abc\n")
    p.write_bytes(lines)
    with pytest.raises(ValueError, match="not numeric"):
        load_ply(p)


# ---------------------------------------------------------------- the container
def test_constructor_rejects_bad_input():
    good = dict(
        means=torch.zeros(2, 3),
        quats=torch.tensor([[1.0, 0, 0, 0]] * 2),
        scales=torch.ones(2, 3) * 0.1,
        opacities=torch.ones(2) * 0.5,
        colors=torch.ones(2, 3) * 0.5,
    )
    GaussianCloud(**good)
    cases = [
        (dict(means=torch.zeros(2, 2)), r"means must have shape \[N, 3\]"),
        (dict(quats=torch.zeros(2, 3)), r"quats must have shape \[N, 4\] with N = 2, got \(2, 3\)"),
        (dict(scales=torch.ones(3, 3)), r"scales must have shape \[N, 3\] with N = 2, got \(3, 3\); one row per"),
        (dict(opacities=torch.ones(2, 1)), r"opacities must have shape \[N\]"),
        (dict(colors=torch.ones(2, 4)), r"colors must have shape \[N, 3\]"),
        (dict(means=torch.tensor([[0.0, float("nan"), 0.0], [0, 0, 0]])), "means contains NaN"),
        (dict(colors=torch.full((2, 3), float("inf"))), "colors contains NaN or inf"),
        (dict(scales=-torch.ones(2, 3)), "scales must be > 0"),
        (dict(scales=torch.zeros(2, 3)), "scales must be > 0"),
        (dict(opacities=torch.tensor([0.5, 1.5])), r"opacities must lie in \[0, 1\]"),
        (dict(quats=torch.zeros(2, 4)), "zero quaternion"),
        (dict(extras={"tri": torch.zeros(3)}), r"extras\['tri'\] must have shape \[N=2"),
        (dict(extras={"bad name": torch.zeros(2)}), "identifier"),
        (dict(extras={"means": torch.zeros(2)}), "clashes"),
        (dict(extras={"sh_rest": torch.zeros(2, 15)}), r"sh_rest'\] must have shape \[N, K, 3\]"),
        (dict(extras={"w": torch.tensor([0.0, float("nan")])}), "NaN"),
        (dict(means="abc"), "means must be a tensor or an array of numbers, got str"),
    ]
    for change, msg in cases:
        with pytest.raises(ValueError, match=msg):
            GaussianCloud(**(good | change))
    with pytest.raises(ValueError, match="extras must be a dict"):
        GaussianCloud(**good, extras=[1, 2])


def test_container_operations():
    cloud = random_cloud(10, tri=torch.arange(10))
    assert len(cloud) == 10 and "N=10" in repr(cloud)
    sub = cloud.subset(torch.tensor([2, 5]))
    assert torch.equal(sub.means, cloud.means[[2, 5]]) and torch.equal(sub.extras["tri"], torch.tensor([2, 5]))
    mask = cloud.opacities > 0.5
    assert len(cloud.subset(mask)) == int(mask.sum())
    assert torch.equal(cloud.subset(slice(0, 3)).colors, cloud.colors[:3])
    assert len(cloud.subset([])) == 0 and len(cloud.subset([0, 0, 1])) == 3
    with pytest.raises(ValueError, match="out of range"):
        cloud.subset(torch.tensor([10]))
    with pytest.raises(ValueError, match="boolean mask must have shape"):
        cloud.subset(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="integer indices"):
        cloud.subset(torch.tensor([0.5]))
    copy = cloud.clone()
    copy.means[0, 0] += 1.0
    assert not torch.equal(copy.means, cloud.means) and not copy.allclose(cloud)
    assert cloud.to("cpu").allclose(cloud)
    means = cloud.means.clone().requires_grad_(True)
    live = GaussianCloud(means, cloud.quats, cloud.scales, cloud.opacities, cloud.colors)
    assert live.means.requires_grad and not live.detach().means.requires_grad
    assert live.means is means  # tensors are kept, so they can be optimised


def test_from_points_and_numpy_input():
    pts = np.random.default_rng(0).normal(size=(4, 3))
    g = GaussianCloud.from_points(pts, scale=torch.tensor([0.1, 0.2, 0.3, 0.4]), opacity=0.7)
    assert g.means.dtype == torch.float32 and torch.equal(g.quats[:, 0], torch.ones(4))
    torch.testing.assert_close(g.scales[:, 2], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert torch.allclose(g.opacities, torch.full((4,), 0.7)) and torch.equal(g.colors, torch.full((4, 3), 0.5))
    with pytest.raises(ValueError, match=r"points must have shape \[N, 3\]"):
        GaussianCloud.from_points(torch.zeros(4, 2))


def test_save_rejects_unstorable_extras(tmp_path):
    with pytest.raises(ValueError, match="already uses"):
        save_ply(random_cloud(3, scale=torch.zeros(3, 3)), tmp_path / "a.ply")  # scale_0.. clash
    with pytest.raises(ValueError, match="2\\*\\*24"):
        save_ply(random_cloud(3, big=torch.full((3,), 2**25)), tmp_path / "a.ply")
    with pytest.raises(ValueError, match="GaussianCloud"):
        save_ply("not a cloud", tmp_path / "a.ply")
    assert not (tmp_path / "a.ply").exists()


# ---------------------------------------------------------------- rendering
def test_render_single_gaussian_at_image_centre():
    cam = Camera.orbit(0.0, 0.0, width=32, height=24)
    cloud = GaussianCloud.from_points(
        torch.tensor([HEAD_TARGET]), colors=torch.tensor([[1.0, 0.2, 0.1]]), scale=0.2, opacity=0.9
    )
    img = cloud.render(cam, backend="torch")
    assert img.shape == (1, 24, 32, 3)
    # on the optical axis the 2D covariance is (f·s/z)² + eps2d; the four centre pixels sit ±0.5 px from the mean
    f, z = float(cam.K[1, 1]), 4.0
    var = (f * 0.2 / z) ** 2 + 0.3
    expected = 0.9 * np.exp(-0.5 * (0.25 + 0.25) / var) * torch.tensor([1.0, 0.2, 0.1])
    for row in (11, 12):
        for col in (15, 16):
            torch.testing.assert_close(img[0, row, col], expected, atol=1e-5, rtol=1e-5)
    assert float(img[0, 0, 0].abs().max()) < 1e-3
    # several cameras at once and a white background
    imgs = cloud.render([cam, Camera.orbit(30.0, width=32, height=24)], backend="torch", background=[1.0, 1.0, 1.0])
    assert imgs.shape == (2, 24, 32, 3)
    torch.testing.assert_close(imgs[:, 0, 0], torch.ones(2, 3), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="background must have shape"):
        cloud.render(cam, background=[1.0, 1.0])


def test_render_cpu_matches_torch():
    mesh_pts = torch.tensor(HEAD_TARGET) + 0.3 * torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    cloud = random_cloud(40)
    cloud = GaussianCloud(mesh_pts, cloud.quats, cloud.scales * 5, cloud.opacities, cloud.colors)
    cam = Camera.orbit(15.0, 10.0, width=40, height=32)
    torch.testing.assert_close(
        cloud.render(cam, backend="cpu"), cloud.render(cam, backend="torch"), atol=1e-4, rtol=1e-4
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_render_gsplat_on_cuda_matches_cpu():
    cloud = random_cloud(40)
    cloud = GaussianCloud(
        torch.tensor(HEAD_TARGET) + 0.3 * cloud.means, cloud.quats, cloud.scales * 5, cloud.opacities, cloud.colors
    )
    cam = Camera.orbit(15.0, 10.0, width=40, height=32)
    gpu = cloud.to("cuda").render(cam, backend="gsplat")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cloud.render(cam, backend="cpu"), atol=1e-3, rtol=1e-3)


def test_concat_keeps_order_and_extras():
    a = GaussianCloud.from_points(torch.zeros(3, 3))
    b = GaussianCloud.from_points(torch.ones(2, 3))
    a.extras["part"], b.extras["part"] = torch.zeros(3, dtype=torch.long), torch.ones(2, dtype=torch.long)
    c = GaussianCloud.concat([a, b])
    assert len(c) == 5 and c.extras["part"].tolist() == [0, 0, 0, 1, 1] and float(c.means[3:].min()) == 1.0
    with pytest.raises(ValueError, match="same extras"):
        GaussianCloud.concat([a, GaussianCloud.from_points(torch.ones(2, 3))])
    with pytest.raises(ValueError, match="non-empty"):
        GaussianCloud.concat([])
