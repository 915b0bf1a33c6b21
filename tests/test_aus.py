"""Tests for emozone_lite.aus: FACS table, AUTrack, authoring (OpenFace CSV I/O: test_openface.py)."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emozone_lite import aus, openface
from emozone_lite.aus import (
    AU_NAMES,
    FACS,
    LOWER_AUS,
    N_AUS,
    PRESETS,
    UPPER_AUS,
    AUTrack,
    au_index,
    blink_track,
    fill_failed_frames,
    from_keyframes,
    preset,
)


def _track(T=40, fps=25.0, seed=0):
    rng = np.random.default_rng(seed)
    return AUTrack(rng.uniform(0, 5, (T, N_AUS)).astype(np.float32), fps=fps)


# ----------------------------------------------------------------- FACS table
def test_facs_table_order_zones_and_split():
    assert N_AUS == 17 and len(AU_NAMES) == 17
    assert tuple(FACS) == AU_NAMES
    assert FACS["AU01"].name == "Inner brow raiser"
    assert FACS["AU01"].muscle == "frontalis, pars medialis"
    synergy = {a for a, i in FACS.items() if i.zone == "synergy"}
    upper = {a for a, i in FACS.items() if i.zone == "upper"}
    lower = {a for a, i in FACS.items() if i.zone == "lower"}
    assert synergy == {"AU06", "AU09", "AU10", "AU12", "AU14"}
    assert upper == {"AU01", "AU02", "AU04", "AU05", "AU07", "AU45"}
    assert lower == {"AU15", "AU17", "AU20", "AU23", "AU25", "AU26"}
    # TalkingGaussian metric split is a partition of the 17 AUs
    assert set(UPPER_AUS) | set(LOWER_AUS) == set(AU_NAMES)
    assert not set(UPPER_AUS) & set(LOWER_AUS)
    assert len(UPPER_AUS) == 8 and len(LOWER_AUS) == 9


def test_au_index_accepts_variants_and_rejects_unknown():
    assert au_index("AU01") == 0 and au_index("au1") == 0 and au_index("AU45_r") == 16
    with pytest.raises(ValueError, match="unknown AU 'AU03'"):
        au_index("AU03")
    with pytest.raises(ValueError, match="unknown AU"):
        au_index("smile")


# ------------------------------------------------------------------- AUTrack
def test_autrack_basics():
    tr = _track(50)
    assert len(tr) == 50 and tr.duration == pytest.approx(2.0)
    assert tr.values.dtype == np.float32
    np.testing.assert_array_equal(tr.au("AU12"), tr.values[:, 8])
    np.testing.assert_allclose(tr.times[:3], [0.0, 0.04, 0.08])
    t = tr.to_tensor()
    assert isinstance(t, torch.Tensor) and t.shape == (50, 17) and t.dtype == torch.float32
    np.testing.assert_array_equal(tr[3], tr.values[3])
    sub = tr[10:20]
    assert isinstance(sub, AUTrack) and len(sub) == 10
    np.testing.assert_array_equal(sub.values, tr.values[10:20])


def test_autrack_copies_input():
    v = np.ones((5, 17), np.float32)
    tr = AUTrack(v)
    v[:] = 3
    assert tr.values.max() == 1.0


def test_autrack_concatenate_and_with_au():
    a, b = _track(10), _track(15, seed=1)
    c = a + b
    assert len(c) == 25
    np.testing.assert_array_equal(c.values[10:], b.values)
    d = AUTrack.concatenate([a, AUTrack(b.values, success=np.zeros(15, bool))])
    assert d.success.tolist() == [True] * 10 + [False] * 15
    e = a.with_au("AU12", 2.5)
    assert np.all(e.au("AU12") == 2.5)
    np.testing.assert_array_equal(np.delete(e.values, 8, 1), np.delete(a.values, 8, 1))
    with pytest.raises(ValueError, match="25 fps"):
        AUTrack.concatenate([a, AUTrack(b.values, fps=30)])
    with pytest.raises(ValueError, match=r"expected a scalar or shape \[10\]"):
        a.with_au("AU12", np.zeros(3))
    with pytest.raises(ValueError, match="unknown AU"):
        a.with_au("AU99", 1.0)


def test_resample_linear_in_time():
    ramp = np.linspace(0, 4, 50)[:, None] * np.ones((1, 17))
    tr = AUTrack(ramp, fps=25)
    up = tr.resample(50)
    assert up.fps == 50 and len(up) == 100
    # linear signal is reproduced exactly inside the range (held at the end)
    inside = up.times <= tr.times[-1]
    np.testing.assert_allclose(up.values[inside, 3], np.interp(up.times[inside], tr.times, ramp[:, 3]), atol=1e-5)
    down = tr.resample(n_frames=10)
    assert len(down) == 10 and down.duration == pytest.approx(tr.duration)
    np.testing.assert_allclose(down.values[0], 0, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        tr.resample()
    with pytest.raises(ValueError, match="positive"):
        tr.resample(-5)


def test_smooth_gaussian_reduces_jitter_keeps_constant():
    rng = np.random.default_rng(0)
    const = AUTrack(np.full((30, 17), 2.0))
    np.testing.assert_allclose(const.smooth(2.0).values, 2.0, atol=1e-6)
    noisy = AUTrack(np.clip(2.5 + rng.normal(0, 1, (100, 17)), 0, 5))
    jitter = lambda v: np.mean(np.diff(v, 2, axis=0) ** 2)
    assert jitter(noisy.smooth(3.0).values) < 0.05 * jitter(noisy.values)
    np.testing.assert_array_equal(noisy.smooth(0).values, noisy.values)
    with pytest.raises(ValueError, match="sigma_frames"):
        noisy.smooth(-1)


# bad inputs -----------------------------------------------------------------
@pytest.mark.parametrize(
    "values, match",
    [
        (np.zeros(17), r"one frame"),
        (np.zeros((5, 16)), r"expected shape \[T, 17\]"),
        (np.zeros((2, 5, 17)), r"expected shape \[T, 17\]"),
        (np.zeros((0, 17)), r"at least one frame"),
    ],
)
def test_autrack_bad_shapes(values, match):
    with pytest.raises(ValueError, match=match):
        AUTrack(values)


def test_autrack_nan_raises():
    v = np.zeros((4, 17))
    v[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf at frame\(s\) \[2\]"):
        AUTrack(v)


def test_autrack_out_of_range_clamps_with_warning_or_raises_when_strict():
    v = np.zeros((3, 17))
    v[0, 0], v[1, 1] = -0.5, 7.0
    with pytest.warns(UserWarning, match="2 intensities outside"):
        tr = AUTrack(v)
    assert tr.values[0, 0] == 0.0 and tr.values[1, 1] == 5.0
    with pytest.raises(ValueError, match="outside \\[0, 5\\]"):
        AUTrack(v, strict=True)


def test_autrack_bad_fps_and_side_arrays():
    with pytest.raises(ValueError, match="fps"):
        AUTrack(np.zeros((3, 17)), fps=0)
    with pytest.raises(ValueError, match=r"confidence: expected shape \[3\]"):
        AUTrack(np.zeros((3, 17)), confidence=np.ones(4))
    with pytest.raises(ValueError, match=r"success: expected shape \[3\]"):
        AUTrack(np.zeros((3, 17)), success=np.ones(2, bool))
    with pytest.raises(ValueError, match="empty"):
        _track(5)[3:3]


def test_fill_failed_frames():
    v = np.array([[np.nan], [1.0], [9.0], [3.0], [9.0]])
    ok = np.array([True, True, False, True, False])
    out = fill_failed_frames(v, ok)  # row 0 is NaN → treated as failed, edge held
    np.testing.assert_allclose(out.ravel(), [1, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="all frames failed"):
        fill_failed_frames(v, np.zeros(5, bool))


# ---------------------------------------------------------------- authoring
def test_presets_are_emfacs_prototypes():
    from emozone_lite.aus import EMOTION_PRESETS

    assert set(EMOTION_PRESETS) == {"neutral", "happy", "surprise", "anger", "sadness", "fear", "disgust", "contempt"}
    assert set(PRESETS) == set(EMOTION_PRESETS) | {"as photographed"}
    # the defining AUs of each emotion are clearly displayed (FACS "D", ≈ 4 of 5)
    for name in EMOTION_PRESETS[1:]:
        assert preset(name).max() == (4.5 if name == "happy" else 4.0), name
    on = lambda name: {AU_NAMES[i] for i in np.nonzero(preset(name))[0]}
    assert on("neutral") == set()
    assert on("happy") == {"AU06", "AU12"}
    assert {"AU01", "AU02", "AU05", "AU26"} <= on("surprise")
    assert on("anger") == {"AU04", "AU05", "AU07", "AU17", "AU23"}
    assert on("sadness") == {"AU01", "AU04", "AU15"}
    assert {"AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"} <= on("fear")
    assert {"AU09", "AU15"} <= on("disgust")
    assert on("contempt") == {"AU12", "AU14"}
    assert on("as photographed") == {"AU07", "AU10", "AU12", "AU25"}
    v = preset("happy", 0.5)
    assert v.dtype == np.float32 and v.shape == (17,)
    np.testing.assert_allclose(v, 0.5 * preset("happy"))
    assert preset("surprise", 10.0).max() == 5.0  # clipped
    with pytest.raises(ValueError, match="unknown preset 'joy'"):
        preset("joy")
    with pytest.raises(ValueError, match=">= 0"):
        preset("happy", -1)


def test_from_keyframes_eased_and_held():
    # keyframes at frames 10, 40 and 60 (25 fps)
    tr = from_keyframes([(1.6, {"AU12": 4.0}), (0.4, "neutral"), (2.4, preset("sadness"))], duration_s=3.0)
    assert len(tr) == 75 and tr.fps == 25
    a12 = tr.au("AU12")
    assert np.all(a12[:11] == 0) and a12[40] == pytest.approx(4.0)
    np.testing.assert_allclose(tr.values[60:], np.broadcast_to(preset("sadness"), (15, 17)))
    assert a12[25] == pytest.approx(2.0, abs=1e-5)  # cosine easing: half way at the midpoint
    # cosine easing starts slower than linear: zero velocity at the keyframe
    lin = from_keyframes([(0.4, "neutral"), (1.6, {"AU12": 4.0})], 3.0, easing="linear").au("AU12")
    assert lin[13] == pytest.approx(4.0 * 3 / 30, abs=1e-5)
    assert 0 < a12[13] < lin[13]
    cub = from_keyframes([(0.4, "neutral"), (1.6, {"AU12": 4.0})], 3.0, easing="cubic").au("AU12")
    assert np.all(np.diff(cub) >= -1e-6)
    assert tr.values.min() >= 0 and tr.values.max() <= 5


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(keyframes=[]), "at least one keyframe"),
        (dict(keyframes=[(0, "joy")]), "unknown preset"),
        (dict(keyframes=[(0, {"AU99": 1})]), "unknown AU"),
        (dict(keyframes=[(0, np.zeros(5))]), r"expected shape \[17\]"),
        (dict(keyframes=[(0, {"AU12": 9})]), "outside"),
        (dict(keyframes=[(0, {"AU12": float("nan")})]), "NaN|nan"),
        (dict(keyframes=[(5.0, "happy")]), "outside"),
        (dict(keyframes=[(1.0, "happy"), (1.0, "sadness")]), "distinct"),
        (dict(keyframes=[(0, "happy")], easing="bounce"), "unknown easing"),
        (dict(keyframes=[(0, "happy")], duration_s=0), "duration_s"),
        (dict(keyframes=["happy"]), "expected a pair"),
    ],
)
def test_from_keyframes_bad_input(kw, match):
    args = dict(duration_s=2.0) | kw
    with pytest.raises(ValueError, match=match):
        from_keyframes(**args)


def test_blink_track_seeded_and_natural():
    base = from_keyframes([(0, "happy")], duration_s=60.0)
    b1 = blink_track(base, seed=3)
    b2 = blink_track(base, seed=3)
    np.testing.assert_array_equal(b1.values, b2.values)
    assert not np.array_equal(b1.values, blink_track(base, seed=4).values)
    np.testing.assert_array_equal(np.delete(b1.values, 16, 1), np.delete(base.values, 16, 1))
    a45 = b1.au("AU45")
    onsets = np.nonzero((a45[1:] > 1.0) & (a45[:-1] <= 1.0))[0]
    assert 8 <= len(onsets) <= 30  # ~17 per minute
    assert np.min(np.diff(onsets)) / 25.0 >= 0.9  # refractory period
    assert 3.0 < a45.max() <= 5.0
    n = blink_track(100, fps=25)
    assert len(n) == 100 and n.values[:, :16].max() == 0
    with pytest.raises(ValueError, match="peak"):
        blink_track(base, peak=6)
    with pytest.raises(TypeError):
        blink_track(np.zeros((5, 17)))


def test_module_exports_exist():
    for name in (
        "AU_NAMES",
        "N_AUS",
        "FACS",
        "UPPER_AUS",
        "LOWER_AUS",
        "AUTrack",
        "read_openface_csv",
        "write_openface_csv",
        "PRESETS",
        "preset",
        "from_keyframes",
        "blink_track",
        "fill_failed_frames",
    ):
        assert hasattr(aus, name), name


def test_openface_names_are_re_exported_from_aus():
    # the CSV I/O moved to emozone_lite.openface; the old names are the same objects
    for name in openface.__all__:
        assert getattr(aus, name) is getattr(openface, name), name
        assert name in dir(aus)
    from emozone_lite.aus import OPENFACE_COLUMNS, read_openface_csv, write_openface_csv  # noqa: F401

    assert openface.fill_failed_frames is aus.fill_failed_frames  # one gap filler, in aus
    with pytest.raises(AttributeError, match="has no attribute 'read_csv'"):
        aus.read_csv  # noqa: B018


# ------------------------------------------------------------------ properties
def _tracks(min_T=1, max_T=40):
    """AUTracks with random values in [0, 5], fps, and optional confidence / success."""

    @st.composite
    def build(draw):
        T = draw(st.integers(min_T, max_T))
        values = draw(hnp.arrays(np.float32, (T, N_AUS), elements=st.floats(0, 5, width=32)))
        fps = draw(st.floats(1.0, 120.0))
        conf = draw(st.none() | hnp.arrays(np.float32, (T,), elements=st.floats(0, 1, width=32)))
        succ = draw(st.none() | hnp.arrays(np.bool_, (T,)))
        return AUTrack(values, fps=fps, confidence=conf, success=succ)

    return build()


def _same(a: AUTrack, b: AUTrack) -> None:
    assert len(a) == len(b) and a.fps == b.fps
    np.testing.assert_array_equal(a.values, b.values)
    for x, y in ((a.confidence, b.confidence), (a.success, b.success)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


@settings(max_examples=40, deadline=None)
@given(tr=_tracks(min_T=2), data=st.data())
def test_slices_concatenate_back_to_the_track(tr, data):
    k = data.draw(st.integers(1, len(tr) - 1))
    _same(AUTrack.concatenate([tr[:k], tr[k:]]), tr)
    _same(tr[:k] + tr[k:], tr)
    _same(tr[:], tr)
    np.testing.assert_array_equal(tr[k], tr.values[k])


@settings(max_examples=40, deadline=None)
@given(tr=_tracks())
def test_resample_to_the_same_rate_and_identity_ops_keep_values(tr):
    _same(tr.resample(tr.fps), tr)
    _same(tr.resample(n_frames=len(tr)), tr)
    _same(tr.smooth(0), tr)
    _same(tr.with_au("AU12", tr.au("AU12")), tr)
    up = tr.resample(2 * tr.fps)  # twice the rate: every old frame is still there
    assert len(up) == 2 * len(tr) and up.fps == 2 * tr.fps
    np.testing.assert_allclose(up.values[::2], tr.values, atol=1e-6, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 4)), elements=st.floats(-10, 10)),
    data=st.data(),
)
def test_fill_failed_frames_keeps_good_rows_and_stays_between_neighbours(values, data):
    ok = data.draw(hnp.arrays(np.bool_, (len(values),)).filter(lambda m: m.any()))
    out = fill_failed_frames(values, ok)
    assert out.dtype == np.float32 and out.shape == values.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(out[ok], values[ok].astype(np.float32))
    lo, hi = values[ok].min(0), values[ok].max(0)  # interpolation and held edges never leave the good range
    assert (out >= lo.astype(np.float32)).all() and (out <= hi.astype(np.float32)).all()
