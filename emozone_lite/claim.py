"""The paper's claim over seeds: paired differences with percentile-bootstrap confidence intervals.

The claim (EmoZone-Talker): the full model, SZ-PAB + CIT-AE, has a **lower upper-face AU
error** and **lower upper-face jitter** than the baseline, implicit fusion + per-frame
encoding, while **PSNR** and **lip sync** stay within a small margin. One training run per
model cannot test that: a seed changes the data scripts, the noise, the initialisation and
the batching, and a difference between two runs may be luck.

**Paired by seed.** Both models are trained with the same seed ``s`` (same data, same noise),
so for a metric ``m`` the difference ``d_s = m(full, s) − m(baseline, s)`` cancels what the
seed does to both. The claim is about the mean difference ``μ = E[d]``; with ``n`` seeds we
estimate it by ``d̄ = (1/n) Σ_s d_s``.

**Percentile bootstrap.** How far may ``d̄`` be from ``μ``? Resample the ``n`` differences
with replacement ``B`` times (``B = 10 000``), take the mean of each resample, and read the
``2.5 %`` and ``97.5 %`` quantiles of those means: a 95 % confidence interval for ``μ``
(:func:`paired_bootstrap_ci`). It assumes nothing about the shape of the distribution of
``d``, but with few seeds it is too narrow rather than too wide (five seeds give at most
``5⁵ = 3125`` distinct resamples): read it as a guide, and add seeds before trusting a
borderline interval.

**Verdict per part** (:func:`verdict`): ``holds`` when the whole interval lies on the
claimed side (e.g. every plausible ``μ`` is ``< 0`` for "lower AUE-U"), ``fails`` when the
whole interval lies on the other side, else ``inconclusive`` — the seeds cannot tell, which
is also the verdict with fewer than two seeds.

**Pixel and geometric.** Each part is measured twice (:data:`CLAIM_PARTS`): by the face
detector on the student's rendered frames (``pixel_*``, :func:`emozone_lite.metrics.pixel_metrics`
— what a viewer sees) and on the deformed mesh the losses supervise (geometric). The pixel
version decides; the geometric one shows whether the mesh agrees. PSNR is measured on the
renders and has no geometric twin.

Examples:
    >>> mean, low, high = paired_bootstrap_ci([-1.0, -2.0, -1.5, -0.5, -1.2])
    >>> round(mean, 2), low <= mean <= high < 0
    (-1.24, True)
    >>> verdict((low, high), "<", 0.0)
    'holds'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "ClaimPart",
    "CLAIM_PARTS",
    "paired_bootstrap_ci",
    "verdict",
    "claim_intervals",
    "claim_markdown",
    "plot_claim",
    "forest_plot",
]

Side = Literal["<", ">="]


@dataclass(frozen=True)
class ClaimPart:
    """One part of the claim: ``full − baseline`` of a metric, claimed ``side threshold``.

    Attributes:
        pixel: metric key measured by the face detector on rendered frames (decides the part).
        geometric: the same quantity on the deformed mesh, or ``None`` (no geometric twin).
        side: ``"<"`` (the difference is claimed below ``threshold``) or ``">="`` (at least it).
        threshold: ``0`` for "lower …", ``−margin`` for "within margin".
        note: said in the JSON, e.g. why there is no geometric twin.
    """

    pixel: str
    geometric: str | None
    side: Side
    threshold: float
    note: str = ""

    def __post_init__(self) -> None:
        if self.side not in ("<", ">="):
            raise ValueError(f"side must be '<' or '>=', got {self.side!r}")

    @property
    def claimed(self) -> str:
        """The claimed side as text: ``"< 0"``, ``">= -0.5"``."""
        return f"{self.side} {self.threshold:g}"


#: The four parts of the paper's claim (full model ``szpab+citae`` minus baseline
#: ``implicit+per_frame``, paired by seed). :func:`emozone_lite.train.claim_check` checks the
#: same four on one seed's geometric metrics (its jitter part is named "lower landmark jitter").
CLAIM_PARTS: dict[str, ClaimPart] = {
    "lower AUE-U": ClaimPart("pixel_aue_upper", "aue_upper", "<", 0.0),
    "lower jitter": ClaimPart("pixel_jitter_upper_lmk", "jitter_upper_lmk", "<", 0.0),
    "PSNR within 0.5 dB": ClaimPart(
        "psnr", None, ">=", -0.5, note="PSNR is measured on the renders; it has no geometric twin"
    ),
    "lip sync within 0.05": ClaimPart(
        "pixel_speech_lip_sync",
        "speech_lip_sync",
        ">=",
        -0.05,
        note="on the real recordings held out of training, spoken with a neutral face (the mean over them): "
        "with the detector's reading of the surprise edit as input, the AU track itself carries the "
        "teacher's mouth (AU25 / AU26), and a model can copy it instead of following the speech",
    ),
}


def paired_bootstrap_ci(diffs, level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of paired differences and its percentile-bootstrap confidence interval.

    Resamples the finite differences with replacement ``n_boot`` times (a NumPy
    ``Generator`` seeded with ``seed``: the same input gives the same interval) and returns
    the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the resample means.

    Args:
        diffs: ``[n]`` per-seed differences ``full − baseline``. NaN and ±inf entries count as
            missing seeds and are left out (``train.json_safe`` writes both as ``null``).
        level: confidence level in (0, 1).
        n_boot: bootstrap resamples (positive integer).
        seed: seed of the resampling.

    Returns:
        ``(mean, low, high)`` with ``low <= mean <= high``. With one finite value: ``(value,
        nan, nan)``; with none: ``(nan, nan, nan)`` — an interval needs at least two seeds.
        Equal differences give the degenerate interval ``(d, d, d)``.

    Raises:
        ValueError: ``diffs`` is not 1-D or not numeric, ``level`` is outside (0, 1), or
            ``n_boot`` is not a positive integer.

    Examples:
        >>> paired_bootstrap_ci([0.3, 0.3, 0.3])
        (0.3, 0.3, 0.3)
        >>> paired_bootstrap_ci([1.0, float("nan")])
        (1.0, nan, nan)
    """
    from .checks import as_positive_int

    try:
        x = np.asarray(diffs, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"diffs must be a 1-D sequence of numbers, got {diffs!r}") from e
    if x.ndim != 1:
        raise ValueError(f"diffs must be 1-D (one difference per seed), got shape {x.shape}")
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level!r}")
    n_boot = as_positive_int(n_boot, "n_boot")
    x = x[np.isfinite(x)]
    nan = float("nan")
    if len(x) == 0:
        return nan, nan, nan
    mean = float(x.mean())
    if len(x) == 1:
        return mean, nan, nan
    if np.all(x == x[0]):  # no spread: every resample has the same mean
        return float(x[0]), float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    # the percentile interval of a mean contains the sample mean at the usual levels; min / max
    # only guard the last digit
    return mean, min(float(low), mean), max(float(high), mean)


def verdict(ci, side: Side, threshold: float) -> str:
    """``"holds"`` if the interval ``ci = (low, high)`` lies entirely on the claimed side of
    ``threshold`` (``side`` ``"<"``: ``high < threshold``; ``">="``: ``low >= threshold``),
    ``"fails"`` if entirely on the other side, else ``"inconclusive"`` (also for NaN bounds).

    Examples:
        >>> verdict((-0.3, -0.1), "<", 0.0), verdict((-0.3, 0.1), "<", 0.0), verdict((0.0, 0.2), "<", 0.0)
        ('holds', 'inconclusive', 'fails')
    """
    low, high = (float(v) for v in ci)
    if side not in ("<", ">="):
        raise ValueError(f"side must be '<' or '>=', got {side!r}")
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > high:
        raise ValueError(f"ci must be (low, high) with low <= high, got {ci!r}")
    if side == "<":
        return "holds" if high < threshold else "fails" if low >= threshold else "inconclusive"
    return "holds" if low >= threshold else "fails" if high < threshold else "inconclusive"


def _value(row: Mapping, key: str) -> float:
    v = row[key]
    return math.nan if v is None else float(v)


def _interval(rows_by_seed: Mapping, key: str, full: str, baseline: str, part: ClaimPart, level, n_boot, seed) -> dict:
    """One metric's paired differences over the seeds of ``rows_by_seed`` and their interval."""
    seeds = list(rows_by_seed)
    diffs = [_value(rows_by_seed[s][full], key) - _value(rows_by_seed[s][baseline], key) for s in seeds]
    mean, low, high = paired_bootstrap_ci(diffs, level=level, n_boot=n_boot, seed=seed)
    n = int(np.isfinite(diffs).sum())
    return {
        "key": key,
        "mean": mean,
        "ci": [low, high],
        "n_seeds": n,
        "verdict": verdict((low, high), part.side, part.threshold) if n >= 2 else "inconclusive",
        "diffs": diffs,
    }


def claim_intervals(
    rows_by_seed: Mapping,
    full: str = "szpab+citae",
    baseline: str = "implicit+per_frame",
    parts: Mapping[str, ClaimPart] | None = None,
    level: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> dict:
    """Every part of the claim as a paired difference over seeds with a bootstrap interval.

    Args:
        rows_by_seed: ``rows_by_seed[seed][run][metric] = float`` (held-out metrics per run and
            seed; NaN / ``None`` allowed: a seed with NaN on either side is left out of that
            metric, and ``n_seeds`` counts the seeds used).
        full, baseline: the two runs compared (``full − baseline``).
        parts: default :data:`CLAIM_PARTS`.
        level, n_boot, seed: of :func:`paired_bootstrap_ci` (the same resampling seed for
            every metric).

    Returns:
        A JSON-ready dict (NaN where undefined; ``train.json_safe`` turns it into ``null``)::

            {"full", "baseline", "seeds": [...], "level", "n_boot",
             "parts": {name: {"mean", "ci": [low, high], "n_seeds", "verdict", "claimed": "< 0",
                              "threshold", "note",
                              "pixel": {"key", "mean", "ci", "n_seeds", "verdict", "diffs": [...]},
                              "geometric": {same} or None}},
             "holds": bool}

        A part's top-level ``mean`` / ``ci`` / ``n_seeds`` / ``verdict`` are its pixel version's;
        ``holds`` is true when every part's verdict is ``"holds"``.

    Raises:
        ValueError: no seeds, a seed without one of the two runs, or a run without a metric a
            part needs (naming what is missing and what was expected).
    """
    parts = CLAIM_PARTS if parts is None else parts
    if not isinstance(rows_by_seed, Mapping) or not rows_by_seed:
        raise ValueError("rows_by_seed must map at least one seed to {run: {metric: value}}")
    seeds = list(rows_by_seed)
    needed = sorted({k for p in parts.values() for k in (p.pixel, p.geometric) if k is not None})
    for s in seeds:
        runs = rows_by_seed[s]
        for run in (full, baseline):
            if not isinstance(runs, Mapping) or run not in runs:
                have = sorted(runs) if isinstance(runs, Mapping) else type(runs).__name__
                raise ValueError(f"seed {s} has no run {run!r}; expected runs {full!r} and {baseline!r}, got {have}")
            missing = [k for k in needed if k not in runs[run]]
            if missing:
                raise ValueError(
                    f"seed {s}, run {run!r} lacks metrics {missing}; the claim needs {needed} "
                    "(re-evaluate the run: train.cached_ablation recomputes reports that lack a pixel metric)"
                )
    out_parts = {}
    for name, p in parts.items():
        pix = _interval(rows_by_seed, p.pixel, full, baseline, p, level, n_boot, seed)
        geo = (
            None
            if p.geometric is None
            else _interval(rows_by_seed, p.geometric, full, baseline, p, level, n_boot, seed)
        )
        out_parts[name] = {
            "mean": pix["mean"],
            "ci": list(pix["ci"]),
            "n_seeds": pix["n_seeds"],
            "verdict": pix["verdict"],
            "claimed": p.claimed,
            "threshold": p.threshold,
            "note": p.note,
            "pixel": pix,
            "geometric": geo,
        }
    return {
        "full": full,
        "baseline": baseline,
        "seeds": seeds,
        "level": level,
        "n_boot": n_boot,
        "parts": out_parts,
        "holds": all(p["verdict"] == "holds" for p in out_parts.values()),
    }


def _fmt(side: dict | None) -> tuple[str, str]:
    if side is None:
        return "–", "–"
    m, (lo, hi) = side["mean"], side["ci"]

    def f(v):
        return "–" if v is None or not math.isfinite(v) else f"{v:.4g}"

    return f"{f(m)} [{f(lo)}, {f(hi)}]", side["verdict"]


def claim_markdown(claim: dict) -> str:
    """A markdown table of :func:`claim_intervals`: per part the pixel and the geometric mean
    difference with its interval and verdict, and the seeds used (pixel / geometric)."""
    pct = f"{100 * claim['level']:g} %"
    lines = [
        f"**{claim['full']} − {claim['baseline']}**, paired by seed over seeds {claim['seeds']}; "
        f"mean difference [{pct} percentile-bootstrap interval].",
        "",
        "| part (claimed difference) | pixel mean [CI] | verdict | geometric mean [CI] | verdict | n (pixel / geom) |",
        "|---|---:|---|---:|---|---:|",
    ]
    for name, p in claim["parts"].items():
        (pm, pv), (gm, gv) = _fmt(p["pixel"]), _fmt(p["geometric"])
        ng = "–" if p["geometric"] is None else p["geometric"]["n_seeds"]
        lines.append(f"| {name} ({p['claimed']}) | {pm} | {pv} | {gm} | {gv} | {p['pixel']['n_seeds']} / {ng} |")
    lines += [
        "",
        f"Whole claim (every part's pixel verdict 'holds'): **{'holds' if claim['holds'] else 'not shown'}**.",
    ]
    return "\n".join(lines)


def plot_claim(claim: dict):
    """Forest plot of :func:`claim_intervals` → ``matplotlib.figure.Figure``: one small axes
    per part (the units differ), the pixel and the geometric interval as error bars around
    the mean, the claim's threshold as a dashed line and its claimed side shaded."""
    from matplotlib.figure import Figure  # no pyplot: safe without a display, nothing global

    names = list(claim["parts"])
    fig = Figure(figsize=(6.4, 1.45 * len(names) + 0.5))
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    colours = {"pixel": "#cc4444", "geometric": "#4477aa"}
    for ax, name in zip(axes, names):
        p = claim["parts"][name]
        xs = [p["threshold"]]
        for y, kind in ((1, "pixel"), (0, "geometric")):
            side = p[kind]
            if side is None:
                ax.text(p["threshold"], y, " no geometric twin", va="center", fontsize=7, color="0.4")
                continue
            m, (lo, hi) = side["mean"], side["ci"]
            m = math.nan if m is None else m
            lo = math.nan if lo is None else lo
            hi = math.nan if hi is None else hi
            if math.isfinite(m):
                xs.append(m)
                err = [[m - lo], [hi - m]] if math.isfinite(lo) and math.isfinite(hi) else None
                ax.errorbar([m], [y], xerr=err, fmt="o", color=colours[kind], capsize=4, ms=5)
                xs += [v for v in (lo, hi) if math.isfinite(v)]
            label = f"{kind}: {side['verdict']} (n={side['n_seeds']})"
            ax.text(1.01, y, label, transform=ax.get_yaxis_transform(), va="center", fontsize=7)
        lo_x, hi_x = min(xs), max(xs)
        pad = 0.15 * (hi_x - lo_x) or 0.1 * max(abs(lo_x), 1e-3)
        ax.set_xlim(lo_x - pad, hi_x + pad)
        t = p["threshold"]
        ax.axvline(t, color="0.2", ls="--", lw=1)
        if p["claimed"].startswith("<"):
            ax.axvspan(lo_x - pad, t, color="#88cc88", alpha=0.15, lw=0)
        else:
            ax.axvspan(t, hi_x + pad, color="#88cc88", alpha=0.15, lw=0)
        ax.set_yticks([0, 1], ["geometric", "pixel"], fontsize=8)
        ax.set_ylim(-0.6, 1.6)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{name}: claimed difference {p['claimed']}", fontsize=9, loc="left")
    fig.suptitle(
        f"{claim['full']} − {claim['baseline']}, {100 * claim['level']:g} % bootstrap CI over seeds {claim['seeds']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    return fig


def forest_plot(claim: dict, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write :func:`plot_claim` as a PNG to ``path`` atomically (temporary file + rename)."""
    from .utils import atomic_write

    fig = plot_claim(claim)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return Path(path)
