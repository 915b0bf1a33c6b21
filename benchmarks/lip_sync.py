"""Does the student's mouth follow real speech it never heard? (issue: "the head talks").

    python benchmarks/lip_sync.py [--fast] [--corpus 150] [--steps 300] [--out DIR]

Trains the paper's model (SZ-PAB + CIT-AE) three ways with the same seed and budget and
measures it on the two real CMU ARCTIC recordings (a0007, Scottish male; a0009, US female):

1. **one utterance** — today's default: the photometric clips are a0009 (so a0009 is its
   *training* utterance, marked ``*``), no corpus;
2. **corpus, log-mel** — ``TrainConfig(corpus_utterances=N)``: photometric clips from the speech
   corpus plus the speech landmark loss on N augmented corpus utterances; both recordings held out;
3. **corpus, phones** — the same data with ``ModelConfig(audio_frontend="phones")``.

For each recording, student vs the teacher's phone-driven mouth: mouth-opening correlation
(target ≥ 0.8), range ratio student / teacher (target 0.8–1.2) and LMD-mouth, read from the mesh
(*geom*) and by the face detector on 256² front renders (*pixel*). Prints a table; ``--out``
writes ``lip_sync.json``. Runs are cached (``EMOZONE_CACHE``) and resume.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from emozone_lite.threads import configure_threads

configure_threads()

COLUMNS = (
    ("lip_sync", "sync geom"),
    ("mouth_range", "range geom"),
    ("lmd_mouth", "LMD-m geom"),
    ("pixel_lip_sync", "sync pixel"),
    ("pixel_mouth_range", "range pixel"),
    ("pixel_lmd_mouth", "LMD-m pixel"),
)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="TrainConfig.fast() sizes (CI)")
    p.add_argument("--corpus", type=int, default=150, help="corpus utterances of the corpus runs")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    from emozone_lite import train as T
    from emozone_lite.model import ModelConfig

    t0 = time.perf_counter()
    base = T.TrainConfig.fast() if a.fast else T.TrainConfig()
    if a.steps is not None:
        base = T.TrainConfig.from_dict({**base.to_dict(), "steps": a.steps})
    corpus_cfg = T.TrainConfig.from_dict({**base.to_dict(), "corpus_utterances": a.corpus})
    runs = {
        "one utterance (a0009)": (base, ModelConfig()),
        f"corpus ({a.corpus} utt.), log-mel": (corpus_cfg, ModelConfig()),
        f"corpus ({a.corpus} utt.), phones": (corpus_cfg, ModelConfig(audio_frontend="phones")),
    }
    eval_data = T.cached_dataset(corpus_cfg, progress=False)  # its test clips: both real recordings
    out: dict = {"train_config": base.to_dict(), "corpus_utterances": a.corpus, "cores": os.cpu_count(), "runs": {}}
    for name, (tcfg, mcfg) in runs.items():
        data = T.cached_dataset(tcfg, progress=False)
        run_dir = T.ablation_dir(tcfg) / "lip_sync_runs" / T.run_name(mcfg)
        t1 = time.perf_counter()
        model, hist = T.train(mcfg, tcfg, data, out_dir=run_dir, resume=True, progress=False)
        res = {c.name.split("/")[0]: T.evaluate_clip(model, c, eval_data, pixels=True) for c in eval_data.test}
        out["runs"][name] = {"metrics": res, "train_seconds": round(time.perf_counter() - t1, 1)}
    out["seconds"] = round(time.perf_counter() - t0, 1)

    fmt = lambda v: "–" if v is None or not math.isfinite(v) else f"{v:.2f}"
    print(f"lip sync on real speech, SZ-PAB + CIT-AE, {base.steps} steps, {os.cpu_count()} cores "
          f"({out['seconds'] / 60:.1f} min)")  # fmt: skip
    print(f"{'run':<30}{'recording':<14}" + "".join(f"{lbl:>13}" for _, lbl in COLUMNS))
    for name, r in out["runs"].items():
        for rec, m in r["metrics"].items():
            star = "*" if name.startswith("one utterance") and rec == "arctic_a0009" else " "
            print(f"{name:<30}{rec + star:<14}" + "".join(f"{fmt(m.get(k)):>13}" for k, _ in COLUMNS))
    print("targets: sync >= 0.8, range 0.8-1.2 (geom and pixel); * = the run's training utterance")
    if a.out:
        d = Path(a.out)
        d.mkdir(parents=True, exist_ok=True)
        from emozone_lite.train import json_safe

        (d / "lip_sync.json").write_text(json.dumps(json_safe(out), indent=2))
    return out


if __name__ == "__main__":
    main()
