"""Does the student's mouth follow real speech it never heard? (issue: "the head talks").

    python benchmarks/lip_sync.py [--fast] [--corpus 150] [--steps 300] [--out DIR]
    python benchmarks/lip_sync.py --strip docs/speech_strip.png   # the README's figure only

Trains the paper's model (SZ-PAB + CIT-AE) several ways with the same seed and step budget and
measures it on the two real CMU ARCTIC recordings (a0007, Scottish male; a0009, US female):

1. **one utterance, log-mel** — the training of earlier versions: the photometric clips are a0009
   (so a0009 is its *training* utterance, marked ``*``), no corpus;
2. **corpus, log-mel** — N corpus utterances in the speech landmark loss, un-augmented and with
   ``augment="full"``; both recordings held out;
3. **corpus, phones** — the same data with ``ModelConfig(audio_frontend="phones")`` (the default):
   trained on the corpus's label phones (the default ``corpus_phones="labels"``), un-augmented
   and with ``augment="full"`` (the default; tempo changes re-time the labels), and trained on
   the recogniser's phones of the corpus audio (``corpus_phones="recognised"``, un-augmented). Every run reads
   the real recordings through the word-level recogniser (``phonetic.recognise_phones``);
4. the **shipped pretrained model** (``train.shipped_model()``, the default model trained for
   1000 steps; measured, not trained here).

For each recording, with a neutral face (the mouth moves with speech only), student vs the
teacher's phone-driven mouth: mouth-opening correlation (target ≥ 0.8), range ratio student /
teacher (target 0.8–1.2) and LMD-mouth, read from the mesh (*geom*) and by the face detector on
256² front renders (*pixel*). Prints a table; ``--out`` writes ``lip_sync.json``. Runs are
cached (``EMOZONE_CACHE``) and resume. ``--strip PNG`` trains nothing: it draws the shipped
model beside the teacher on both recordings (five evenly spaced frames each, the frames the
pixel figures read, and the same frames cropped to the mouth) and exits.
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
    p.add_argument("--strip", default=None, help="draw the shipped model's frame strip to this PNG and exit")
    a = p.parse_args(argv)

    from emozone_lite import train as T
    from emozone_lite.model import ModelConfig

    t0 = time.perf_counter()
    base = T.TrainConfig.fast() if a.fast else T.TrainConfig()
    over = {"corpus_utterances": a.corpus} if a.steps is None else {"corpus_utterances": a.corpus, "steps": a.steps}
    corpus_cfg = T.TrainConfig.from_dict({**base.to_dict(), **over, "augment": "none"})
    with_aug = lambda aug: T.TrainConfig.from_dict({**corpus_cfg.to_dict(), "augment": aug})
    recognised = T.TrainConfig.from_dict({**corpus_cfg.to_dict(), "corpus_phones": "recognised"})
    one_utt = T.TrainConfig.from_dict({**corpus_cfg.to_dict(), "corpus_utterances": 0})
    runs = {
        "one utterance, log-mel": (one_utt, ModelConfig(audio_frontend="mel")),
        "corpus, log-mel": (corpus_cfg, ModelConfig(audio_frontend="mel")),
        "corpus+full aug., log-mel": (with_aug("full"), ModelConfig(audio_frontend="mel")),
        "corpus, phones": (corpus_cfg, ModelConfig(audio_frontend="phones")),
        "corpus+full aug., phones (default)": (with_aug("full"), ModelConfig(audio_frontend="phones")),
        "corpus, recognised phones": (recognised, ModelConfig(audio_frontend="phones")),
    }
    eval_data = T.cached_dataset(corpus_cfg, progress=False)  # its cameras and its test clips (both recordings)
    neutral = [T.speech_test_clip(c.name.split("/")[0], eval_data.cameras, corpus_cfg) for c in eval_data.test]
    if a.strip:
        return {"strip": str(speech_strip(T.shipped_model(), neutral, a.strip))}
    out: dict = {"train_config": corpus_cfg.to_dict(), "cores": os.cpu_count(), "runs": {}}

    def measure(model) -> dict:
        """Geom + pixel metrics on the neutral clips; lip sync on the clips with the surprise edit."""
        res = {c.name.split("/")[0]: T.evaluate_clip(model, c, eval_data, pixels=True) for c in neutral}
        edit = {c.name: T.evaluate_clip(model, c, eval_data)["lip_sync"] for c in eval_data.test}
        return {"metrics": res, "lip_sync_with_surprise_edit": edit}

    by_cfg = {json.dumps(corpus_cfg.to_dict()): eval_data}  # one dataset per training config
    for tcfg, _ in runs.values():
        if json.dumps(tcfg.to_dict()) not in by_cfg:
            by_cfg[json.dumps(tcfg.to_dict())] = T.cached_dataset(tcfg, progress=False)
    datasets = {name: by_cfg[json.dumps(tcfg.to_dict())] for name, (tcfg, _) in runs.items()}
    run_dirs = {name: T.ablation_dir(tcfg) / "lip_sync_runs" / T.run_name(mcfg) for name, (tcfg, mcfg) in runs.items()}
    t1 = time.perf_counter()  # all runs at once, one process per core (train.train_parallel)
    jobs = [(mcfg, tcfg, datasets[name], run_dirs[name]) for name, (tcfg, mcfg) in runs.items()]
    T.train_parallel(jobs, T.default_workers(len(jobs)), progress=True)
    out["train_seconds_all_runs"] = round(time.perf_counter() - t1, 1)
    for name, (tcfg, mcfg) in runs.items():
        model, _ = T.train(mcfg, tcfg, datasets[name], out_dir=run_dirs[name], resume=True, progress=False)
        out["runs"][name] = measure(model)
    try:  # the model users meet in notebook 08 and the studio (no training here)
        out["runs"]["shipped pretrained (1000 st.)"] = measure(T.shipped_model())
    except (ValueError, FileNotFoundError) as e:
        print(f"shipped model not measured: {e}")
    out["seconds"] = round(time.perf_counter() - t0, 1)

    fmt = lambda v: "–" if v is None or not math.isfinite(v) else f"{v:.2f}"
    print(f"lip sync on real speech (neutral face), SZ-PAB + CIT-AE, {corpus_cfg.steps} steps, "
          f"{a.corpus} corpus utterances, {os.cpu_count()} cores "
          f"({out['seconds'] / 60:.1f} min)")  # fmt: skip
    print(f"{'run':<36}{'recording':<14}" + "".join(f"{lbl:>13}" for _, lbl in COLUMNS))
    for name, r in out["runs"].items():
        for rec, m in r["metrics"].items():
            star = "*" if name.startswith("one utterance") and rec == "arctic_a0009" else " "  # its training speech
            print(f"{name:<36}{rec + star:<14}" + "".join(f"{fmt(m.get(k)):>13}" for k, _ in COLUMNS))
    print("targets: sync >= 0.8, range 0.8-1.2 (geom and pixel); * = the run's training utterance")
    if a.out:
        d = Path(a.out)
        d.mkdir(parents=True, exist_ok=True)
        from emozone_lite.train import json_safe

        (d / "lip_sync.json").write_text(json.dumps(json_safe(out), indent=2))
    return out


def speech_strip(model, clips, path, n: int = 5) -> Path:
    """``model`` (left) beside the teacher (right) on each neutral-face ``clip`` (two rows each):
    ``n`` evenly spaced frames rendered from the pixel evaluation's front camera, then the same
    frames cropped to the mouth; saved to ``path``."""
    import numpy as np

    from emozone_lite import train as T
    from emozone_lite.audio import MEL_FPS
    from emozone_lite.utils import atomic_write
    from emozone_lite.viz import image_grid

    fps = MEL_FPS / 2  # two mel frames per video frame (emozone_lite.audio)
    images, titles = [], []
    for clip in clips:
        student = T.render_clip(
            model, clip.audio_for(model), clip.energy, clip.aus_input, T.pixel_camera(), progress=False
        )
        rec = clip.name.split("/")[0].removeprefix("arctic_")
        frames = np.linspace(0, clip.n_frames - 1, n + 2).round().astype(int)[1:-1]  # not the silent ends
        for i in frames:
            images += [student[i], clip.pixel_frames[i]]
            titles += [f"{rec} {i / fps:.2f} s student", "teacher"]
        h, w = student.shape[1:3]
        mouth = np.s_[int(0.56 * h) : int(0.80 * h), int(0.28 * w) : int(0.72 * w)]  # the lips and the cavity
        for i in frames:
            images += [np.asarray(student[i])[mouth], np.asarray(clip.pixel_frames[i])[mouth]]
            titles += ["mouth, student", "mouth, teacher"]
    fig = image_grid(images, titles, ncols=2 * n)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    return Path(path)


if __name__ == "__main__":
    main()
