"""Why CIT-AE does what it does: how fast each AU encoder learns AU → face motion.

    python benchmarks/au_path.py [--steps 300] [--utterances 40] [--seed 0]

The end-to-end ablation found the full model's upper face *still* rather than smooth: low
landmark jitter together with low motion-U, and the emotion presets hardly moving the trained
student (``train.expression_control``). This study isolates the AU path. It trains SZ-PAB with
each AU encoder (``per_frame``, ``citae``) on one loss only — the 3-D distance of all 468 mesh
vertices to the teacher's on corpus sentences played with random emotion scripts (true AUs in,
the teacher's vertices out; no images, no detector) — CIT-AE both with its level embedding shared
by all AUs and with one per AU (``ModelConfig.au_level``) — and measures, at a third, two thirds and
all of ``--steps``:

* **response**: for each emotion preset held over silence, the student's vertex displacement
  from its neutral face projected on the teacher's, ``<d_student, d_teacher> / |d_teacher|²``
  (1 = the teacher's motion, 0 = none), averaged over the seven emotions;
* **upper jitter / motion**: on a held-out sentence with a random script plus detector-like
  noise (std 0.35), the mean squared second difference of the upper-face vertices and their
  mean distance from rest, both relative to the teacher's (1 = the teacher's).

Prints one row per encoder and step count. Measured on 2 cores (``README``, "The paper's claim").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emozone_lite.threads import configure_threads

configure_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emozone_lite import train as T  # noqa: E402
from emozone_lite.head import load_head  # noqa: E402
from emozone_lite.metrics import UPPER_FACE_IDX  # noqa: E402
from emozone_lite.model import EmoZoneLite, ModelConfig  # noqa: E402
from emozone_lite.teacher import TeacherRig  # noqa: E402


def clips(n: int, seed: int, noise: float = 0.0) -> list:
    rig = TeacherRig.default()
    out = []
    for k, utt in enumerate(T.corpus_selection(n)):
        s = seed * 1000 + 700 + k
        out.append(T.corpus_clip(utt, T.au_script(utt.duration, s), noise, s, "none", rig, True, "noise"))
    return out


def response(model: EmoZoneLite, rig: TeacherRig) -> float:
    return T.preset_response(model, rig=rig)["mean"]


@torch.no_grad()
def upper_motion(model: EmoZoneLite, clip) -> tuple[float, float]:
    up = list(UPPER_FACE_IDX)
    v = model.deform(*model.encode(clip.audio_for(model), clip.energy, clip.aus_input)).vertices[:, up]
    g = clip.vertices[:, up]
    rest = model.rest_vertices[up]

    def jit(x):
        return float(((x[2:] - 2 * x[1:-1] + x[:-2]) ** 2).sum(-1).mean())

    motion = float((v - rest).norm(dim=-1).mean() / (g - rest).norm(dim=-1).mean())
    return jit(v) / jit(g), motion


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--utterances", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    train_clips = clips(a.utterances, a.seed)
    test = clips(a.utterances + 1, a.seed + 1, noise=0.35)[-1]
    rig, head = TeacherRig.default(), load_head()
    print(f"cores: {os.cpu_count()}; {len(train_clips)} training sentences ({time.perf_counter() - t0:.0f} s)")
    print("| encoder | steps | response (1 = teacher) | upper jitter (1 = teacher) | upper motion (1 = teacher) |")
    print("|---|---:|---:|---:|---:|")
    every = torch.arange(468)
    for temporal, level in (("per_frame", "shared"), ("citae", "shared"), ("citae", "per_au")):
        torch.manual_seed(a.seed)
        model = EmoZoneLite(ModelConfig(temporal=temporal, au_level=level), head)
        name = temporal if temporal == "per_frame" else f"{temporal} ({level} level)"
        opt = torch.optim.Adam(model.parameters(), lr=T.TrainConfig().lr)
        support = model.vertex_support(every)
        rng = np.random.default_rng(a.seed)
        marks = {a.steps // 3, 2 * a.steps // 3, a.steps}
        for step in range(1, a.steps + 1):
            c = train_clips[rng.integers(len(train_clips))]
            fr = torch.tensor(sorted(rng.choice(c.n_frames, min(8, c.n_frames), replace=False)))
            v = model.deform_vertices(*model.encode(c.audio_for(model), c.energy, c.aus_input, fr), every, support)
            loss = (v - c.vertices[fr]).norm(dim=-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step in marks:
                model.eval()
                j, m = upper_motion(model, test)
                print(f"| {name} | {step} | {response(model, rig):.2f} | {j:.2f} | {m:.2f} |", flush=True)
                model.train()
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
