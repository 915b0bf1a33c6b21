"""The paper's claim over seeds: paired bootstrap, verdicts, the pixel jitter metric, the benchmark's files."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emozone_lite import claim as C
from emozone_lite import metrics as M
from emozone_lite.landmarks import load_canonical_mesh

ROOT = Path(__file__).resolve().parents[1]
FULL, BASE = "szpab+citae", "implicit+per_frame"
NEEDED = sorted({k for p in C.CLAIM_PARTS.values() for k in (p.pixel, p.geometric) if k})


def _consistent(verdict: str, low: float, high: float, side: str, t: float) -> bool:
    """The verdict rule, written out once more: which side of ``t`` the interval's ends lie on."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return verdict == "inconclusive"
    claimed = (lambda x: x < t) if side == "<" else (lambda x: x >= t)
    if claimed(low) and claimed(high):
        return verdict == "holds"
    if not claimed(low) and not claimed(high):
        return verdict == "fails"
    return verdict == "inconclusive"


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_mean_and_interval_of_a_known_sample():
    x = np.random.default_rng(1).normal(2.0, 1.0, 400)
    mean, low, high = C.paired_bootstrap_ci(x)
    assert mean == pytest.approx(x.mean(), abs=1e-12)
    assert low < mean < high
    # for a large sample the percentile interval is close to mean ± 1.96 σ / √n
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert low == pytest.approx(mean - half, abs=0.03) and high == pytest.approx(mean + half, abs=0.03)


def test_two_seeds_give_their_two_differences_as_the_interval():
    # resamples of two values have means a, (a+b)/2, b with probability 1/4, 1/2, 1/4
    assert C.paired_bootstrap_ci([0.5, -0.1]) == pytest.approx((0.2, -0.1, 0.5))


def test_a_constant_shift_gives_a_degenerate_interval():
    base = np.array([1.0, 2.0, 3.0, 5.0])
    assert C.paired_bootstrap_ci((base + 0.5) - base) == (0.5, 0.5, 0.5)
    m, lo, hi = C.paired_bootstrap_ci([0.1] * 7)
    assert lo == m == hi == pytest.approx(0.1)


def test_bootstrap_is_deterministic_for_a_seed():
    d = [0.3, -0.2, 0.5, 0.1, -0.4]
    assert C.paired_bootstrap_ci(d, seed=3) == C.paired_bootstrap_ci(d, seed=3)
    assert C.paired_bootstrap_ci(d, seed=3)[1:] != C.paired_bootstrap_ci(d, seed=4)[1:]
    # a wider level gives a wider interval
    _, lo90, hi90 = C.paired_bootstrap_ci(d, level=0.9)
    _, lo99, hi99 = C.paired_bootstrap_ci(d, level=0.99)
    assert lo99 <= lo90 and hi90 <= hi99


def test_missing_seeds_are_left_out_and_fewer_than_two_give_nan_bounds():
    assert C.paired_bootstrap_ci([0.2, math.nan, -0.4, math.inf]) == C.paired_bootstrap_ci([0.2, -0.4])
    m, lo, hi = C.paired_bootstrap_ci([0.7, math.nan])
    assert m == 0.7 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in C.paired_bootstrap_ci([]))
    assert all(math.isnan(v) for v in C.paired_bootstrap_ci([math.nan, math.nan]))


def test_bootstrap_bad_inputs():
    with pytest.raises(ValueError, match="1-D"):
        C.paired_bootstrap_ci(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="1-D"):
        C.paired_bootstrap_ci(1.0)
    with pytest.raises(ValueError, match="sequence of numbers"):
        C.paired_bootstrap_ci(["a", "b"])
    for level in (0.0, 1.0, 95, -0.5):
        with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
            C.paired_bootstrap_ci([1.0, 2.0], level=level)
    for n_boot in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n_boot must be a positive integer"):
            C.paired_bootstrap_ci([1.0, 2.0], n_boot=n_boot)


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(finite, min_size=2, max_size=8), st.integers(0, 2**31), st.sampled_from([0.5, 0.8, 0.95]))
def test_bootstrap_interval_is_ordered_and_holds_the_mean(diffs, seed, level):
    mean, low, high = C.paired_bootstrap_ci(diffs, level=level, n_boot=500, seed=seed)
    assert low <= mean <= high
    tol = 1e-9 * (1.0 + max(abs(d) for d in diffs))
    assert min(diffs) - tol <= low and high <= max(diffs) + tol  # resample means stay in the data's range


# --------------------------------------------------------------------------- verdicts
@given(finite, finite, st.sampled_from(["<", ">="]), finite)
def test_verdict_is_consistent_with_the_interval_and_the_claimed_side(a, b, side, t):
    low, high = min(a, b), max(a, b)
    assert _consistent(C.verdict((low, high), side, t), low, high, side, t)


def test_verdict_edges_and_errors():
    assert C.verdict((-1.0, 0.0), "<", 0.0) == "inconclusive"  # 0 is not < 0
    assert C.verdict((0.0, 0.0), "<", 0.0) == "fails"
    assert C.verdict((-0.5, 1.0), ">=", -0.5) == "holds"  # the margin itself is within it
    assert C.verdict((math.nan, math.nan), ">=", -0.5) == "inconclusive"
    with pytest.raises(ValueError, match="low <= high"):
        C.verdict((1.0, 0.0), "<", 0.0)
    with pytest.raises(ValueError, match="side must be"):
        C.verdict((0.0, 1.0), ">", 0.0)
    with pytest.raises(ValueError, match="side must be"):
        C.ClaimPart("psnr", None, "<=", 0.0)


def _rows(values: dict[int, dict[str, dict[str, float]]]) -> dict:
    """Fill every needed metric with 0 where a test does not set it."""
    return {
        s: {run: {k: runs.get(run, {}).get(k, 0.0) for k in NEEDED} for run in (FULL, BASE)}
        for s, runs in values.items()
    }


@given(st.lists(st.lists(finite, min_size=8, max_size=8), min_size=1, max_size=6))
def test_claim_intervals_verdicts_follow_their_intervals(draws):
    rows = {
        s: {FULL: dict(zip(NEEDED, v[:4] + v[:3])), BASE: dict(zip(NEEDED, v[4:] + v[4:7]))}
        for s, v in enumerate(draws)
    }
    claim = C.claim_intervals(rows, n_boot=200)
    assert claim["seeds"] == list(range(len(draws))) and claim["level"] == 0.95
    for name, p in claim["parts"].items():
        part = C.CLAIM_PARTS[name]
        assert p["claimed"] == part.claimed and p["pixel"]["key"] == part.pixel
        assert (p["mean"], p["ci"], p["verdict"]) == (p["pixel"]["mean"], p["pixel"]["ci"], p["pixel"]["verdict"])
        for side in (p["pixel"], p["geometric"]):
            if side is None:
                continue
            assert side["n_seeds"] == len(draws) == len(side["diffs"])
            lo, hi = side["ci"]
            assert _consistent(side["verdict"], lo, hi, part.side, part.threshold)
            if len(draws) >= 2:
                assert lo <= side["mean"] <= hi
            else:
                assert side["verdict"] == "inconclusive"
    assert claim["holds"] == all(p["verdict"] == "holds" for p in claim["parts"].values())


def test_claim_intervals_pairs_by_seed_and_drops_nan_seeds():
    rows = _rows(
        {
            0: {FULL: {"pixel_aue_upper": 1.0, "psnr": 30.0}, BASE: {"pixel_aue_upper": 1.5, "psnr": 30.2}},
            1: {FULL: {"pixel_aue_upper": 3.0, "psnr": 20.0}, BASE: {"pixel_aue_upper": 3.7, "psnr": 20.1}},
            2: {FULL: {"pixel_aue_upper": 2.0, "psnr": math.nan}, BASE: {"pixel_aue_upper": 2.6, "psnr": 25.0}},
        }
    )
    rows[2][BASE]["aue_upper"] = None  # as read back from JSON
    claim = C.claim_intervals(rows)
    aue = claim["parts"]["lower AUE-U"]
    # unpaired, the seeds' spread (1 … 3.7) would swamp the difference; paired it is clear
    assert aue["pixel"]["diffs"] == pytest.approx([-0.5, -0.7, -0.6]) and aue["verdict"] == "holds"
    assert aue["geometric"]["n_seeds"] == 2 and math.isnan(aue["geometric"]["diffs"][2])
    psnr = claim["parts"]["PSNR within 0.5 dB"]
    assert psnr["n_seeds"] == 2 and psnr["geometric"] is None and psnr["note"]
    assert psnr["ci"] == pytest.approx([-0.2, -0.1]) and psnr["verdict"] == "holds"
    assert claim["parts"]["lower jitter"]["verdict"] == "fails"  # all-zero differences: not lower
    assert claim["holds"] is False
    md = C.claim_markdown(claim)
    for name in C.CLAIM_PARTS:
        assert name in md
    assert "| lower AUE-U (< 0) | -0.6 [-0.7, -0.5] | holds |" in md


def test_claim_intervals_names_what_is_missing():
    rows = _rows({0: {}, 1: {}})
    del rows[1][BASE]
    with pytest.raises(ValueError, match=r"seed 1 has no run 'implicit\+per_frame'; expected runs"):
        C.claim_intervals(rows)
    rows = _rows({0: {}, 1: {}})
    del rows[0][FULL]["pixel_jitter_upper_lmk"]
    with pytest.raises(ValueError, match=r"seed 0, run 'szpab\+citae' lacks metrics \['pixel_jitter_upper_lmk'\]"):
        C.claim_intervals(rows)
    with pytest.raises(ValueError, match="at least one seed"):
        C.claim_intervals({})
    with pytest.raises(ValueError, match="no run 'mine'"):
        C.claim_intervals(_rows({0: {}}), full="mine")


def test_forest_plot_with_too_few_seeds(tmp_path):
    claim = C.claim_intervals(_rows({0: {FULL: {"psnr": 1.0}}}))
    assert all(p["verdict"] == "inconclusive" for p in claim["parts"].values())
    path = C.forest_plot(claim, tmp_path / "sub" / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["f.png"]  # no temporary file left behind


# --------------------------------------------------------------------------- pixel jitter of the upper face
def _detections(n: int = 12, noise: float = 0.0, missing=(), seed: int = 0) -> M.FrameDetections:
    """A synthetic detector track: the canonical face drifting right at a constant speed (no
    jitter), the mouth opening and closing, optional noise on every landmark."""
    base = load_canonical_mesh().vertices[:, :2].astype(np.float64) * 100 + 128
    t = np.arange(n, dtype=np.float64)
    lmk = base[None] + np.stack([0.5 * t, np.zeros(n)], -1)[:, None]
    iod = np.linalg.norm(base[33] - base[263])
    lmk[:, 14] = lmk[:, 13] + np.array([0.0, 1.0]) * (0.1 + 0.05 * np.sin(t))[:, None] * iod
    lmk += noise * np.random.default_rng(seed).normal(size=lmk.shape)
    aus = np.abs(np.sin(t[:, None] + np.arange(17)))
    found = np.ones(n, bool)
    found[list(missing)] = False
    lmk[~found], aus[~found] = np.nan, np.nan
    return M.FrameDetections(aus, aus.copy(), lmk, found)


def test_pixel_jitter_of_the_upper_face_landmarks():
    smooth, jittery = _detections(), _detections(noise=0.8)
    m = M.pixel_metrics(jittery, smooth)
    assert m["pixel_jitter_upper_lmk"] == pytest.approx(M.jitter(jittery.landmarks[:, M.UPPER_FACE_IDX]))
    assert m["pixel_jitter_upper_lmk_teacher"] == pytest.approx(0.0, abs=1e-18)  # constant drift: no jitter
    # white noise of variance σ² has jitter 6σ²
    assert m["pixel_jitter_upper_lmk"] == pytest.approx(6 * 0.8**2, rel=0.3)
    assert M.pixel_metrics(smooth, smooth)["pixel_jitter_upper_lmk"] < m["pixel_jitter_upper_lmk"]
    # only the upper face counts: noise on the lips alone leaves it unchanged
    lips = _detections()
    lips.landmarks[:, M.MOUTH_IDX] += np.random.default_rng(1).normal(size=(12, len(M.MOUTH_IDX), 2))
    assert M.pixel_metrics(lips, smooth)["pixel_jitter_upper_lmk"] == pytest.approx(0.0, abs=1e-18)


def test_pixel_jitter_is_nan_when_a_face_is_missing():
    ok, gap = _detections(noise=0.5), _detections(noise=0.5, missing=[5])
    for pred, ref in ((gap, ok), (ok, gap)):
        m = M.pixel_metrics(pred, ref)
        assert math.isnan(m["pixel_jitter_upper_lmk"]) and math.isnan(m["pixel_jitter_upper_lmk_teacher"])
        assert math.isfinite(m["pixel_lmd_upper"])  # the other metrics use the frames with both faces
    few = M.pixel_metrics(_detections(n=3, missing=[0, 1]), _detections(n=3))
    assert {"pixel_jitter_upper_lmk", "pixel_jitter_upper_lmk_teacher"} <= set(few)
    assert math.isnan(few["pixel_jitter_upper_lmk"])


# --------------------------------------------------------------------------- the benchmark, end to end
def _nan(v):
    return math.nan if v is None else v


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("ablation_seeds", ROOT / "benchmarks" / "ablation_seeds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ablation_seeds_writes_the_claim_over_seeds(tmp_path, monkeypatch, capsys):
    """``ablation_seeds.main`` from the arguments to claim.json / claim.md / claim_forest.png.

    The four runs per seed come from a stand-in for ``train.cached_ablation`` that returns reports
    in its layout: the real ablation, even at 2 steps with the smallest configuration
    (``corpus_utterances=0``, 32 px, two views), took 192 s for two seeds on 2 cores — mostly the
    teacher renders and the detector on 4 × 100 student frames per seed — far over this test's
    budget. The cache is a temporary folder all the same, in case the stand-in is ever bypassed.
    """
    bench = _load_benchmark()
    T = bench.T
    monkeypatch.setenv("EMOZONE_CACHE", str(tmp_path / "cache"))
    calls = []
    # per seed, full − baseline: AUE-U clearly lower (holds), jitter higher (fails), PSNR within
    # the margin (holds), pixel lip sync undefined for seed 1's baseline (one seed: inconclusive)
    shifts = {"pixel_aue_upper": -0.4, "aue_upper": -0.2, "pixel_jitter_upper_lmk": 0.3, "jitter_upper_lmk": 0.1,
              "psnr": -0.2}  # fmt: skip
    speech_shifts = {"pixel_lip_sync": 0.02, "lip_sync": -0.3}  # on the neutral-face speech clip

    def fake_cached_ablation(cfg, progress=True, directory=None):
        calls.append(cfg)
        rng = np.random.default_rng(cfg.seed)
        results = {}
        for mc in T.ABLATION_RUNS:
            row = {m: float(rng.uniform(1, 2)) for m in bench.METRICS}
            if mc.name == FULL:
                base = results[BASE]["heldout_utterance:arctic_a0007/neutral-surprise"]
                row.update({m: _nan(base[m]) + d + 0.05 * rng.standard_normal() for m, d in shifts.items()})
            srow = {m: float(rng.uniform(0.5, 1)) for m in ("lip_sync", "pixel_lip_sync", "mouth_range")}
            if mc.name == FULL:
                bs = results[BASE]["speech:arctic_a0007/neutral"]
                srow.update({m: _nan(bs[m]) + d + 0.05 * rng.standard_normal() for m, d in speech_shifts.items()})
            if mc.name == BASE and cfg.seed == 1:
                srow["pixel_lip_sync"] = None  # NaN in the run's report, null in ablation.json
            results[mc.name] = {
                "heldout_utterance:arctic_a0007/neutral-surprise": row,
                "speech:arctic_a0007/neutral": srow,
                "heldout_frames": {},
            }
        split = T.heldout_split(results)
        return {"results": results, "claim": T.claim_check({n: r[split] for n, r in results.items()})}

    monkeypatch.setattr(T, "cached_ablation", fake_cached_ablation)
    out = tmp_path / "out"
    assert bench.main(["--fast", "--steps", "2", "--seeds", "0", "1", "--out", str(out)]) == 0

    assert [c.seed for c in calls] == [0, 1]
    assert calls == [dataclasses.replace(T.TrainConfig.fast(seed=s), steps=2) for s in (0, 1)]
    claim = json.loads((out / "claim.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in claim.json"))
    assert (claim["full"], claim["baseline"], claim["seeds"], claim["level"]) == (FULL, BASE, [0, 1], 0.95)
    assert claim["train_config"]["steps"] == 2 and set(claim["parts"]) == set(C.CLAIM_PARTS)
    for name, p in claim["parts"].items():
        part = C.CLAIM_PARTS[name]
        assert p["claimed"] == part.claimed and p["pixel"]["key"] == part.pixel
        assert (p["geometric"] is None) == (part.geometric is None)
        for side in filter(None, (p["pixel"], p["geometric"])):
            lo, hi = side["ci"]
            if side["n_seeds"] >= 2:
                assert lo <= side["mean"] <= hi
            assert _consistent(side["verdict"], _nan(lo), _nan(hi), part.side, part.threshold)
    verdicts = {n: p["verdict"] for n, p in claim["parts"].items()}
    assert verdicts == {"lower AUE-U": "holds", "lower jitter": "fails", "PSNR within 0.5 dB": "holds",
                        "lip sync within 0.05": "inconclusive"}  # fmt: skip
    lip = claim["parts"]["lip sync within 0.05"]
    assert lip["n_seeds"] == 1 and lip["ci"] == [None, None] and lip["pixel"]["diffs"][1] is None
    assert lip["geometric"]["verdict"] == "fails" and claim["holds"] is False

    md = (out / "claim.md").read_text()
    assert "| lower AUE-U (< 0) |" in md and "## Per seed" in md and "| pixel_jitter_upper_lmk | szpab+citae |" in md
    png = (out / "claim_forest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    printed = capsys.readouterr().out
    assert "| part (claimed difference) |" in printed and "whole claim" in printed
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_ablation_seeds_refuses_repeated_seeds(capsys):
    with pytest.raises(SystemExit):
        _load_benchmark().main(["--seeds", "0", "0"])
    assert "distinct" in capsys.readouterr().err


def test_cached_ablation_recomputes_a_report_that_lacks_a_pixel_metric(tmp_path, monkeypatch):
    """A report cached before ``pixel_jitter_upper_lmk`` existed is stale: ``run_ablation`` runs
    again (it loads the finished runs from their checkpoints and only evaluates them; checked by
    hand with a 4-step ablation: checkpoints untouched, every other metric identical)."""
    from emozone_lite import train as T

    cfg = T.TrainConfig(steps=2, corpus_utterances=0)
    split = "heldout_utterance:arctic_a0007/neutral-surprise"
    none = M.FrameDetections(np.zeros((0, 17)), np.zeros((0, 17)), np.zeros((0, 468, 2)), np.zeros(0, bool))
    fresh_row = {**dict.fromkeys(M.pixel_metrics(none, none), 1.0), "psnr": 30.0}
    old_row = {k: v for k, v in fresh_row.items() if not k.startswith("pixel_jitter_upper_lmk")}

    def report(row, control=True):
        speech = {"lip_sync": 0.5}
        rep = {
            "train_config": cfg.to_dict(),
            "results": {r.name: {split: row, "speech:arctic_a0007/neutral": speech} for r in T.ABLATION_RUNS},
        }
        return {**rep, "expression_control": {}} if control else rep

    runs = []
    monkeypatch.setattr(T, "cached_dataset", lambda *a, **k: "data")
    monkeypatch.setattr(T, "run_ablation", lambda c, data, out, **k: runs.append(out) or report(fresh_row))
    monkeypatch.setattr(T, "read_checkpoint", lambda path: {"history": "[]"})
    js = T.ablation_dir(cfg, tmp_path) / "ablation.json"
    js.parent.mkdir(parents=True)
    js.write_text(json.dumps(report(old_row)))
    assert T._stale_report(report(old_row)) and not T._stale_report(report(fresh_row))
    assert T._stale_report(report(fresh_row, control=False)), "a report without expression control is stale"
    rep = T.cached_ablation(cfg, progress=False, directory=tmp_path)
    assert runs == [js.parent] and "pixel_jitter_upper_lmk" in rep["results"][FULL][split]
    js.write_text(json.dumps(report(fresh_row)))
    T.cached_ablation(cfg, progress=False, directory=tmp_path)
    assert len(runs) == 1, "an up-to-date report is read back, not recomputed"
