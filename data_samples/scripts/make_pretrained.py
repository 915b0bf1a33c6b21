"""Make the pretrained default model of data_samples/pretrained/ (run once per model version).

    python data_samples/scripts/make_pretrained.py [--out data_samples/pretrained/szpab_citae.pt]

Trains ``ModelConfig()`` (SZ-PAB + CIT-AE, phone front-end) with
``emozone_lite.train.pretrained_train_config()`` — ``TrainConfig()`` with 1000 steps instead of
the demo's 300, the noisy script as input AUs and no speech augmentation (why: that function's docstring), on its cached dataset (4.9 minutes of training steps on 2 cores, measured for model version 8 with a second run training beside it) —
and writes it **without the optimiser state** (weights, configs, seed, model version and the
training history; about 1 MB). ``emozone_lite.train.pretrained()`` loads it, so notebook 08 and
the studio open without training. Deterministic
for the seed of ``TrainConfig()`` on one machine (the float summation order of another CPU can
change the last digits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "data_samples" / "pretrained" / "szpab_citae.pt"))
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from emozone_lite.threads import configure_threads

    configure_threads()
    from emozone_lite import train as T
    from emozone_lite.model import ModelConfig

    t0 = time.perf_counter()
    mcfg, tcfg = ModelConfig(), T.pretrained_train_config()
    data = T.cached_dataset(tcfg)
    run_dir = T.ablation_dir(tcfg) / "runs" / T.run_name(mcfg)  # cached: an interrupted run resumes
    model, history = T.train(mcfg, tcfg, data, out_dir=run_dir, resume=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    T.save_checkpoint(out, model, None, tcfg.steps, tcfg, history)
    T.load_model(out, expected_config=mcfg)  # it loads back with this version's model
    print(json.dumps({"out": str(out), "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 1)}))
    return out


if __name__ == "__main__":
    main()
