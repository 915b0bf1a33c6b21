"""Your own video, timed: ``track``, ``fit`` and ``render`` on a 10-second 480p talking video.

The video is the teacher rig speaking ARCTIC a0007 + a0009 + a0007 (10 s) at 854×480 and
30 fps with its speech muxed as AAC, brows, smile and jaw drop rising and falling in turn
(the clip of ``tests/test_fit.py``, longer and larger). Each command runs as a user runs it
(``python -m emozone_lite …`` in a fresh process), one after the other, and is timed whole
(start-up included). ``render`` drives the fitted model with 10 s of speech it never heard
(a Festival voice of the bundled corpus).

Prints the times, the portrait ``fit`` built around the head (Gaussians, whole-frame PSNR / SSIM
against the frame's square), the held-out report of ``fit`` (trained vs untrained) and writes
``OUT/fit_strip.png``: held-out video frames, the fitted student on the same frames, and the
student on the new speech as ``render`` draws it (in the fit's portrait).

    python benchmarks/fit_video.py [--out outputs/fit_bench] [--steps N] [--fast]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SECONDS, W, H, FPS = 10.0, 854, 480, 30.0
CYCLE = ({}, {"AU01": 4, "AU02": 4}, {}, {"AU12": 3}, {}, {"AU26": 3})


def make_video(out: Path, seconds: float, width: int, height: int) -> Path:
    """The teacher's talking video (speech of ARCTIC a0007 + a0009 + a0007, cut to ``seconds``)."""
    import soundfile as sf

    from emozone_lite.teacher import talking_video
    from emozone_lite.utils import data_path

    waves, labels, offset = [], [], 0
    for stem in ("arctic_a0007", "arctic_a0009", "arctic_a0007"):
        y, sr = sf.read(data_path(stem + ".wav"), dtype="float32")
        waves.append(y)
        for line in data_path(stem + "_phone.lab").read_text().splitlines():
            a, b, name = line.split(maxsplit=2)
            labels.append(f"{int(a) + offset} {int(b) + offset} {name}\n")
        offset += round(len(y) / sr * 1e7)
    speech, lab = out / "speech.wav", out / "speech_phone.lab"
    sf.write(speech, np.concatenate(waves)[: int(seconds * sr)], sr)
    lab.write_text("".join(labels))
    keys, t, i = [(0.0, {})], 0.0, 0
    while t < seconds:
        keys += [(max(t, 1e-3), CYCLE[i % 6]), (min(t + 0.3, seconds), CYCLE[i % 6])]
        t, i = t + 0.5, i + 1
    return talking_video(out / "talk.mp4", keys, lab, speech, seconds=seconds, width=width, height=height, fps=FPS)[0]


def new_speech(out: Path, seconds: float) -> Path:
    """``seconds`` of a Festival voice from the bundled corpus (speech the fit never heard)."""
    import soundfile as sf

    from emozone_lite.corpus import load_corpus

    ys, t = [], 0.0
    for u in load_corpus():
        if u.voice == "festival_slt":
            ys.append(u.audio)
            t += u.duration
            if t >= seconds:
                break
    path = out / "new_speech.wav"
    sf.write(path, np.concatenate(ys)[: int(seconds * 16000)], 16000)
    return path


def run(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emozone_lite", *args], check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def strip(out: Path, fit_dir: Path, video: Path, render: Path) -> Path:
    """Held-out frames (video crop / student) and the student on new speech, 6 frames each."""
    import imageio.v3 as iio
    import torch

    from emozone_lite import fit as F
    from emozone_lite.camera import Camera
    from emozone_lite.track import iter_video_frames, track_video, video_audio
    from emozone_lite.train import load_model

    model, ck = load_model(fit_dir / "model.pt")
    cfg = F.FitConfig.from_dict(ck["train_config"])
    rec = json.loads((fit_dir / "fit.json").read_text())
    c = rec["camera"]
    cam = Camera(torch.tensor(c["viewmat"]), torch.tensor(c["K"]), c["width"], c["height"])
    track = track_video(video, out / ".strip.csv", progress=False)
    (out / ".strip.csv").unlink()
    data = F.prepare_frames(video, track, cam, np.asarray(rec["rest_vertices"], np.float32), video_audio(video),
                            model, cfg, progress=False)  # fmt: skip
    pick = data.heldout[np.linspace(0, len(data.heldout) - 1, 6).round().astype(int)]
    with torch.no_grad():
        imgs, _, _ = F.fit_predict(model, data, pick)
    S = imgs.shape[1]
    rows = [np.concatenate(list(data.crops[pick].numpy()), 1), np.concatenate(list(imgs.numpy()), 1)]
    new = [f for _, f in iter_video_frames(render)]
    idx = np.linspace(len(new) * 0.3, len(new) * 0.5, 6).round().astype(int)
    from PIL import Image

    rows.append(np.concatenate([np.asarray(Image.fromarray(new[i]).resize((S, S))) / 255.0 for i in idx], 1))
    png = out / "fit_strip.png"
    iio.imwrite(png, (np.clip(np.concatenate(rows, 0), 0, 1) * 255).astype(np.uint8))
    return png


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/fit_bench")
    p.add_argument("--steps", type=int, default=None, help="fit steps (default: fit's own)")
    p.add_argument("--fast", action="store_true", help="a 4 s 320×240 clip and fit --fast (a smoke run)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds, width, height = (4.0, 320, 240) if a.fast else (SECONDS, W, H)
    video = make_video(out, seconds, width, height)
    speech = new_speech(out, seconds)
    fit_dir = out / "fit"
    if fit_dir.exists():
        import shutil

        shutil.rmtree(fit_dir)  # timed from scratch, not resumed
    extra = (["--fast"] if a.fast else []) + (["--steps", str(a.steps)] if a.steps else [])
    times = {
        "track": run("track", str(video), "--out", str(out / "aus.csv"), "--quiet"),
        "fit": run("fit", str(video), "--out", str(fit_dir), "--quiet", *extra),
        "render": run(
            "render",
            "--audio",
            str(speech),
            "--checkpoint",
            str(fit_dir / "model.pt"),
            "--out",
            str(out / "new_speech.mp4"),
        ),  # fmt: skip
    }
    rep = json.loads((fit_dir / "report.json").read_text())
    print(
        f"{seconds:g} s {width}×{height} {FPS:g} fps video on {os.cpu_count()} cores (each command whole, start-up included)"
    )
    for k, v in times.items():
        print(f"  {k:7s} {v:6.1f} s")
    print(f"  fit stages: {rep['seconds']} s; {rep['steps']} steps, median {rep['seconds_per_step'] * 1e3:.0f} ms/step")
    pr = rep.get("portrait")
    if pr:
        print(f"  portrait: {pr['gaussians']} Gaussians, PSNR {pr['psnr']:.2f} dB, SSIM {pr['ssim']:.3f} at "
              f"{pr['size']}² against the frame's {pr['photo_side']}² square")  # fmt: skip
    print(f"held-out (last 10 %: {rep['frames']['heldout']} frames from {rep['heldout_from_s']:.2f} s)")
    print("  model      PSNR(face) LMD(px) LMD-mouth lip-sync r  mouth range")
    for k in ("trained", "untrained"):
        r = rep[k]
        sync = "   n/a" if r["lip_sync"] is None else f"{r['lip_sync']:6.2f}"
        print(
            f"  {k:9s}  {r['psnr']:8.2f}  {r['lmd']:7.2f}  {r['lmd_mouth']:8.2f}   {sync}     {r['mouth_range']:6.2f}"
        )
    print(f"wrote {strip(out, fit_dir, video, out / 'new_speech.mp4')}")


if __name__ == "__main__":
    main()
