"""What gives the trained student expression control? (issue: "the paper's claim, tested with power").

    python benchmarks/expression_control.py [--steps 1000] [--seed 0] [--only NAME ...] [--out FILE]

Trains SZ-PAB + CIT-AE for ``--steps`` steps (two runs at a time, ``train.train_parallel``) in
each configuration below and measures its expression control: each emotion preset held on the
student over silence, rendered from the front at 256² and read by the face detector
(``train.expression_control``, landmark reading; target: intended AUs rise ≥ 1.0 on average, the
others move ≤ 0.5). The levers it varies:

* the CIT-AE level embedding, shared by all AUs or one per AU (``ModelConfig.au_level``);
* the student's input AUs: what the detector reads from the teacher's frames (the default) or the
  script plus i.i.d. noise (``TrainConfig.au_input``, the shipped model's);
* how many clips are rendered for the photometric loss (``TrainConfig.n_scripts``; each shows two
  emotions of a random script, so 3 clips leave some emotions unseen);
* a vertex expression loss on corpus sentences with emotion scripts
  (``TrainConfig.expression_utterances``);
* the detector's speech AUs (AU25 / AU26, which follow the speaking mouth) zeroed on half or all
  of the corpus speech clips (``TrainConfig.speech_au_dropout``).

Prints one row per configuration with the per-preset rises and the lip sync on the two bundled
recordings spoken with a neutral face (``train.speech_test_clip``: pixel sync and mouth range of
the teacher's; targets ≥ 0.8 and 0.8–1.2), and one for the shipped pretrained model. Runs are cached under the toolkit's cache (``train.ablation_dir``), so a second call only
measures. Measured on 2 cores: README, "Why CIT-AE does what it does" (1000 steps) and "Training
length is the lever that reaches the target" (``--steps 3000``, four of the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emozone_lite.threads import configure_threads

configure_threads()

from emozone_lite import train as T  # noqa: E402
from emozone_lite.model import ModelConfig  # noqa: E402

#: name → (ModelConfig fields, TrainConfig fields over TrainConfig(steps, seed))
RUNS: dict[str, tuple[dict, dict]] = {
    "shared, detector, 3 clips": ({}, {}),
    "per-AU, detector, 3 clips": ({"au_level": "per_au"}, {}),
    "per-AU, detector, 3 clips, expression loss": ({"au_level": "per_au"}, {"expression_utterances": 150}),
    "shared, detector, 3 clips, expression loss": ({}, {"expression_utterances": 150}),
    "per-AU, detector, 7 clips": ({"au_level": "per_au"}, {"n_scripts": 7}),
    "shared, detector, 7 clips": ({}, {"n_scripts": 7}),
    "per-AU, script + noise, 3 clips": ({"au_level": "per_au"}, {"au_input": "noise"}),
    "per-AU, script + noise, 7 clips": ({"au_level": "per_au"}, {"au_input": "noise", "n_scripts": 7}),
    "per-AU, detector, 3 clips, speech AUs dropped on a quarter": ({"au_level": "per_au"}, {"speech_au_dropout": 0.25}),
    "per-AU, detector, 3 clips, speech AUs dropped on half": ({"au_level": "per_au"}, {"speech_au_dropout": 0.5}),
    "per-AU, detector, 3 clips, speech AUs dropped on all": ({"au_level": "per_au"}, {"speech_au_dropout": 1.0}),
}

#: the recordings of the speech check (both held out of every run's training)
RECORDINGS = ("arctic_a0007", "arctic_a0009")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None, help="names of RUNS to train (default: all)")
    p.add_argument("--out", default=None, help="also write the results as JSON")
    a = p.parse_args(argv)
    names = list(RUNS) if not a.only else a.only
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        p.error(f"unknown run {unknown[0]!r}; the runs are: {', '.join(map(repr, RUNS))}")

    t0 = time.perf_counter()
    base = T.TrainConfig(steps=a.steps, seed=a.seed).to_dict()
    jobs = {}
    for name in names:
        m, t = RUNS[name]
        mcfg, tcfg = ModelConfig(**m), T.TrainConfig.from_dict({**base, **t})
        data = T.cached_dataset(tcfg, progress=False)
        jobs[name] = (mcfg, tcfg, data, T.ablation_dir(tcfg) / "expression_control_runs" / T.run_name(mcfg))
    print(f"cores: {os.cpu_count()}; datasets {time.perf_counter() - t0:.0f} s", flush=True)
    T.train_parallel(list(jobs.values()), T.default_workers(len(jobs)), progress=True)
    print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)

    out: dict = {"steps": a.steps, "seed": a.seed, "cores": os.cpu_count(), "runs": {}}
    presets = T.aus_mod.EMOTION_PRESETS[1:]
    ref = next(iter(jobs.values()))  # the cameras and test-clip settings are every run's
    speech = [T.speech_test_clip(r, ref[2].cameras, ref[1]) for r in RECORDINGS]
    heads = [f"{r[-5:]} sync / range" for r in RECORDINGS]
    print("| run | intended rise | others | " + " | ".join([*presets, *heads]) + " |")
    print("|---|---:|---:|" + "---:|" * (len(presets) + len(heads)))
    models = {"shipped model (shared, script + noise, 3 clips, no speech augmentation)": T.shipped_model}
    for name, j in jobs.items():  # train() loads the finished run
        models[name] = lambda j=j: T.train(j[0], j[1], j[2], out_dir=j[3], resume=True, progress=False)[0]
    for name, load in models.items():
        model = load()
        ec = T.expression_control(model)
        per = {k: v["geometric"]["intended_rise"] for k, v in ec["presets"].items()}
        sp = {}
        for rec, clip in zip(RECORDINGS, speech):
            m = T.pixel_evaluation(model, clip)
            sp[rec] = {"pixel_lip_sync": m["pixel_lip_sync"], "pixel_mouth_range": m["pixel_mouth_range"]}
        out["runs"][name] = {"geometric": ec["geometric"], "per_preset": per, "faces_missing": ec["faces_missing"],
                             "speech": sp}  # fmt: skip
        g = ec["geometric"]
        cells = [f"{per[k]:.2f}" for k in presets]
        cells += [f"{v['pixel_lip_sync']:.2f} / {v['pixel_mouth_range']:.2f}" for v in sp.values()]
        print(f"| {name} | {g['intended_rise']:.2f} | {g['others_move']:.2f} | {' | '.join(cells)} |", flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"({out['seconds']:.0f} s)")
    if a.out:
        Path(a.out).write_text(json.dumps(T.json_safe(out), indent=2))
    return out


if __name__ == "__main__":
    main()
