"""Spread of the four-run ablation over seeds: which differences between runs outlast the noise?

Usage::

    python benchmarks/ablation_seeds.py [--seeds 0 1 2 3] [--fast]

One ``make demo`` trains the four runs once, with seed 0. A seed changes the AU
scripts of the training data, the noise, the initialisation and the batching, so a
single run cannot tell a real difference from luck. This script trains (or loads from
the cache that ``make demo`` and notebook 07 share, ``train.cached_ablation``) the
ablation for every seed and prints, on the held-out utterance, each metric per seed
with its mean and standard deviation, and how often each part of the paper's claim
(``train.claim_check``) held. Full budget: 5.4–6.7 minutes per seed on 2 cores (measured, the
four runs two at a time).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emozone_lite.threads import configure_threads

configure_threads()  # the toolkit's thread policy, before torch loads OpenMP
from emozone_lite import train as T  # noqa: E402

METRICS = (
    "psnr",
    "aue_upper",
    "pixel_aue_upper",
    "motion_upper",
    "jitter_upper_lmk",
    "lip_sync",
    "pixel_lip_sync",
    "pixel_mouth_range",
)


def heldout(report: dict) -> dict[str, dict[str, float]]:
    """Per run, the metrics on the held-out utterance (``None`` in the JSON → NaN)."""
    key = T.heldout_split(report["results"])
    return {
        run: {m: math.nan if r[key].get(m) is None else float(r[key][m]) for m in METRICS}
        for run, r in report["results"].items()
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--fast", action="store_true", help="the small CI budget (80 steps, 64 px)")
    args = parser.parse_args(argv)

    print(f"cores: {os.cpu_count()}; seeds: {args.seeds}; budget: {'fast' if args.fast else 'full'}")
    rows, claims = {}, {}
    for seed in args.seeds:
        cfg = T.TrainConfig.fast(seed=seed) if args.fast else T.TrainConfig(seed=seed)
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
            finite = [x for x in v if math.isfinite(x)]
            mean = statistics.fmean(finite) if finite else math.nan
            sd = statistics.stdev(finite) if len(finite) > 1 else math.nan
            print(f"  {run:20s} " + " ".join(f"{x:10.4g}" for x in v) + f" | mean {mean:10.4g}  sd {sd:9.3g}")
    print("\nparts of the paper's claim (szpab+citae vs implicit+per_frame), seeds where they held:")
    for part in claims[args.seeds[0]]["parts"]:
        held = [s for s in args.seeds if claims[s]["parts"][part]]
        print(f"  {part:24s} {len(held)}/{len(args.seeds)}  {held}")
    print(f"  {'whole claim':24s} {sum(claims[s]['holds'] for s in args.seeds)}/{len(args.seeds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
