"""Spread of the four-run ablation over seeds: which differences between runs outlast the noise?

Usage::

    python benchmarks/ablation_seeds.py [--seeds 0 1 2 3 4] [--fast] [--steps N] [--out DIR]

One ``make demo`` trains the four runs once, with seed 0. A seed changes the AU
scripts of the training data, the noise, the initialisation and the batching, so a
single run cannot tell a real difference from luck. This script trains (or loads from
the cache that ``make demo`` and notebook 07 share, ``train.cached_ablation``) the
ablation for every seed and prints, on the held-out utterance, each metric per seed
with its mean and standard deviation, and how often each part of the paper's claim
(``train.claim_check``) held. Full budget: 5.4–6.7 minutes per seed on 2 cores (measured, the
four runs two at a time).

Then it tests the claim over the seeds (:func:`emozone_lite.claim.claim_intervals`): each part
as the difference full − baseline paired by seed, with a 95 % percentile-bootstrap interval of
its mean, on the detector's metrics of the rendered frames and on the mesh, and prints the table.
``--out DIR`` writes ``DIR/claim.json`` (NaN → null), ``DIR/claim.md`` (the claim table and the
per-seed metrics) and ``DIR/claim_forest.png``. ``--steps N`` overrides the chosen budget's
training steps (a quick look, or a test).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emozone_lite.threads import configure_threads

configure_threads()  # the toolkit's thread policy, before torch loads OpenMP
from emozone_lite import claim as C  # noqa: E402
from emozone_lite import train as T  # noqa: E402
from emozone_lite.utils import atomic_write  # noqa: E402

METRICS = (
    "psnr",
    "aue_upper",
    "pixel_aue_upper",
    "motion_upper",
    "jitter_upper_lmk",
    "pixel_jitter_upper_lmk",
    "lip_sync",
    "pixel_lip_sync",
    "pixel_mouth_range",
    # speech → mouth on the held-out recordings with a neutral face (mean over them)
    "speech_lip_sync",
    "pixel_speech_lip_sync",
    "speech_mouth_range",
    "pixel_speech_mouth_range",
    # the emotion presets on the student (train.expression_control): intended AUs' rise, others' change
    "control_rise",
    "control_others",
    "control_rise_blendshapes",
)


def heldout(report: dict) -> dict[str, dict[str, float]]:
    """Per run, the metrics on the held-out utterance (``None`` in the JSON → NaN)."""
    key = T.heldout_split(report["results"])
    out = {}
    for run, r in report["results"].items():
        c = report.get("expression_control", {}).get(run)
        row = dict(r[key])
        speech = [v for k, v in r.items() if k.startswith("speech:")]  # neutral face, held-out recordings
        for m in ("lip_sync", "pixel_lip_sync", "mouth_range", "pixel_mouth_range"):
            vals = [math.nan if v.get(m) is None else float(v[m]) for v in speech]
            name = m.replace("lip_sync", "speech_lip_sync").replace("mouth_range", "speech_mouth_range")
            row[name] = statistics.fmean(vals) if vals else None
        if c is not None:
            row["control_rise"] = c["geometric"]["intended_rise"]
            row["control_others"] = c["geometric"]["others_move"]
            row["control_rise_blendshapes"] = c["blendshapes"]["intended_rise"]
        out[run] = {m: math.nan if row.get(m) is None else float(row[m]) for m in METRICS}
    return out


def _stats(v: list[float]) -> tuple[float, float]:
    finite = [x for x in v if math.isfinite(x)]
    mean = statistics.fmean(finite) if finite else math.nan
    sd = statistics.stdev(finite) if len(finite) > 1 else math.nan
    return mean, sd


def metric_table(rows: dict, seeds: list[int]) -> str:
    """Markdown: per metric and run, the held-out value for every seed, its mean and sd."""
    lines = ["| metric | run | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |"]
    lines.append("|---|---|" + "---:|" * (len(seeds) + 2))
    for m in METRICS:
        for run in rows[seeds[0]]:
            v = [rows[s][run][m] for s in seeds]
            cells = [*v, *_stats(v)]
            lines.append(
                f"| {m} | {run} | " + " | ".join("–" if not math.isfinite(x) else f"{x:.4g}" for x in cells) + " |"
            )
    return "\n".join(lines)


def write_outputs(out: Path, claim: dict, rows: dict, seeds: list[int], cfg) -> None:
    """``claim.json``, ``claim.md`` and ``claim_forest.png`` in ``out``, each written atomically."""
    with atomic_write(out / "claim.json", "w") as f:
        json.dump(T.json_safe({**claim, "train_config": cfg.to_dict()}), f, indent=2, allow_nan=False)
    md = [
        f"# The paper's claim over seeds {seeds} ({cfg.steps} steps, {cfg.image_size} px, held-out utterance)",
        "",
        C.claim_markdown(claim),
        "",
        "## Per seed",
        "",
        metric_table(rows, seeds),
        "",
    ]
    with atomic_write(out / "claim.md", "w") as f:
        f.write("\n".join(md))
    C.forest_plot(claim, out / "claim_forest.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--fast", action="store_true", help="the small CI budget (80 steps, 64 px)")
    parser.add_argument("--steps", type=int, default=None, help="training steps instead of the budget's")
    parser.add_argument("--out", type=Path, default=None, help="write claim.json, claim.md, claim_forest.png here")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct (the claim pairs runs by seed), got {args.seeds}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive integer, got {args.steps}")

    print(f"cores: {os.cpu_count()}; seeds: {args.seeds}; budget: {'fast' if args.fast else 'full'}")
    rows, claims = {}, {}
    for seed in args.seeds:
        cfg = T.TrainConfig.fast(seed=seed) if args.fast else T.TrainConfig(seed=seed)
        if args.steps is not None:
            cfg = dataclasses.replace(cfg, steps=args.steps)
        t0 = time.perf_counter()
        report = T.cached_ablation(cfg, progress=False)
        rows[seed] = heldout(report)
        claims[seed] = report["claim"]  # train.claim_check on these rows, stored by run_ablation
        print(
            f"seed {seed}: {time.perf_counter() - t0:.0f} s, claim "
            f"{'holds' if claims[seed]['holds'] else 'does not hold'}",
            flush=True,
        )

    runs = list(rows[args.seeds[0]])
    print(f"\nheld-out utterance, {cfg.steps} steps, {cfg.image_size} px; per seed, then mean and sd")
    for m in METRICS:
        print(f"\n{m}")
        for run in runs:
            v = [rows[s][run][m] for s in args.seeds]
            mean, sd = _stats(v)
            print(f"  {run:20s} " + " ".join(f"{x:10.4g}" for x in v) + f" | mean {mean:10.4g}  sd {sd:9.3g}")
    print("\nparts of the paper's claim (szpab+citae vs implicit+per_frame), seeds where they held:")
    for part in claims[args.seeds[0]]["parts"]:
        held = [s for s in args.seeds if claims[s]["parts"][part]]
        print(f"  {part:24s} {len(held)}/{len(args.seeds)}  {held}")
    print(f"  {'whole claim':24s} {sum(claims[s]['holds'] for s in args.seeds)}/{len(args.seeds)}")

    claim = C.claim_intervals(rows)
    print("\nthe claim over seeds (pixel: the detector on the renders; geometric: the mesh)\n")
    print(C.claim_markdown(claim))
    if args.out is not None:
        write_outputs(args.out, claim, rows, args.seeds, cfg)
        print(f"\nwrote {args.out / 'claim.json'}, claim.md, claim_forest.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
