"""The main job (``emozone-lite demo``) and rendering your own files (``emozone-lite render``).

The command line in :mod:`emozone_lite.__main__` only parses arguments and calls these.

Examples:
    >>> from emozone_lite.demo import demo, render_files  # doctest: +SKIP
    >>> demo(fast=True, out="outputs")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .train import render_clip  # re-exported: the student renderer lives with training and evaluation

__all__ = ["demo", "render_clip", "render_files"]


def _front_camera(size: int, yaw: float = 0.0):
    from .camera import Camera

    return Camera.orbit(yaw_deg=yaw, width=size, height=size)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """Burn a small caption into the top-left corner of ``[T, H, W, 3]`` uint8 frames."""
    from PIL import Image, ImageDraw

    out = []
    for f in img:
        im = Image.fromarray(f)
        ImageDraw.Draw(im).text((6, 4), text, fill=(20, 20, 20))
        out.append(np.asarray(im))
    return np.stack(out)


def _bundled_portrait(model):
    """The bundled portrait when it is there and its face is ``model``'s head, else None."""
    from .head.portrait import load_portrait, matches_head

    try:
        p = load_portrait()
    except FileNotFoundError:
        return None
    return p if matches_head(p, model.means) else None


def _portrait_video(model, clip, size: int, path: Path, wav, progress: bool) -> Path | None:
    """The held-out clip again, the face rendered in the whole portrait (hair, neck, shoulders,
    background; :mod:`emozone_lite.head.portrait`), from the photo's camera zoomed on head and
    shoulders. ``None`` when the bundled portrait is missing or does not fit the model's head."""
    from .head.portrait import render_scenery
    from .viz import write_video

    portrait = _bundled_portrait(model)
    if portrait is None:
        return None
    cam = portrait.view(size=size, zoom=2.0)
    frames = render_clip(model, clip.audio_for(model), clip.energy, clip.aus_input, cam, progress=progress,
                         desc="render portrait", background=render_scenery(portrait, cam))  # fmt: skip
    write_video(frames, path, fps=25.0, audio=wav)
    return path


def demo(fast: bool = False, out: str | os.PathLike = "outputs", progress: bool = True) -> dict:
    """The main job: teacher data → four ablation runs on CPU → held-out talking head with a
    neutral → surprise edit halfway → ``demo.mp4`` (with speech), ``demo_portrait.mp4`` (the same
    clip in the whole portrait), ``metrics.json``, ``ablation.md/.json/.png`` in ``out``."""
    from . import train as T
    from .teacher import sequence
    from .utils import atomic_write, data_path, seed_everything
    from .viz import frame_strip, to_uint8, write_video

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(0)
    cfg = T.TrainConfig.fast() if fast else T.TrainConfig()
    print(f"emozone-lite demo ({'fast' if fast else 'full'}) on {os.cpu_count()} cores → {out}/", flush=True)
    data = T.cached_dataset(cfg, progress=progress)
    runs_dir = T.ablation_dir(cfg) / "runs"  # shared with notebooks 07-08 and the studio
    report = T.run_ablation(cfg, data, out, progress=progress, runs_dir=runs_dir)
    model = report["models"]["szpab+citae"]
    shutil.copyfile(runs_dir / T.run_name(model.config) / "checkpoint.pt", out / "model.pt")

    clip = data.test[0]
    size = 128 if fast else 256
    cam = _front_camera(size)
    student = render_clip(
        model, clip.audio_for(model), clip.energy, clip.aus_input, cam, progress=progress, desc="render student"
    )
    wav = data_path(clip.wav.name)
    teacher = sequence(
        data_path(clip.wav.name.replace(".wav", "_phone.lab")),
        clip.aus_true.numpy(),
        [cam],
        n_frames=clip.n_frames,
        resample_aus=True,
    ).frames[:, 0]
    side = np.concatenate(
        [_label(to_uint8(student), "EmoZone-lite (student)"), _label(to_uint8(teacher), "teacher")], axis=2
    )
    write_video(side, out / "demo.mp4", fps=25.0, audio=wav)
    import imageio.v3 as iio

    iio.imwrite(out / "demo_strip.png", frame_strip(side, n=6))
    portrait_file = _portrait_video(model, clip, size, out / "demo_portrait.mp4", wav, progress)
    test_key = T.heldout_split(report["results"])
    metrics = {
        "model": model.config.to_dict(),
        "train": cfg.to_dict(),
        "cores": os.cpu_count(),
        "seconds_total": round(time.perf_counter() - t0, 1),
        "seconds_per_step": report["seconds_per_step"],
        "metrics": report["results"]["szpab+citae"],
        "claim": report["claim"],
        "test_clip": test_key,
        "portrait_video": None if portrait_file is None else portrait_file.name,
    }
    with atomic_write(out / "metrics.json", "w") as f:
        json.dump(T.json_safe(metrics), f, indent=2, allow_nan=False)
    claim = report["claim"]
    print(
        f"wrote {out / 'demo.mp4'}, "
        + ("" if portrait_file is None else f"{portrait_file}, ")
        + f"{out / 'metrics.json'}, {out / 'ablation.md'} in {metrics['seconds_total']:.0f} s"
    )
    if claim is not None:
        print(
            "paper claim (SZ-PAB+CIT-AE vs implicit+per-frame):",
            "holds" if claim["holds"] else "does NOT hold",
            claim["parts"],
        )
    return metrics


def _render_portrait(model, checkpoint, ck: dict, head, portrait):
    """The :class:`~emozone_lite.head.portrait.Portrait` :func:`render_files` draws the face in, or None."""
    from .head.portrait import load_portrait, matches_head

    if portrait is None or portrait == "none":
        return None
    if portrait != "auto":
        p = load_portrait(portrait)
        if not matches_head(p, model.means):
            raise ValueError(f"portrait {portrait}: its face is not the head this checkpoint was trained on")
        return p
    if head is None and ck.get("head_file"):  # a fit folder: its own portrait, when it has one
        beside = Path(checkpoint).parent / "portrait.ply"
        if beside.exists() and beside.with_suffix(".json").exists():
            p = load_portrait(beside)
            return p if matches_head(p, model.means) else None
        return None
    return _bundled_portrait(model)


def render_files(
    audio: str,
    checkpoint: str,
    out: str,
    aus: str | None = None,
    yaw: float = 0.0,
    size: int = 256,
    progress: bool = True,
    head: str | None = None,
    portrait: str | None = "auto",
) -> Path:
    """Render your own speech (any common format) and OpenFace CSV with a trained checkpoint.

    An AU track whose length differs from the audio is resampled to the audio's frame
    count (25 fps), with a warning; no AU file means a neutral face. ``head``: the head PLY
    the checkpoint was trained on (default: the one it names — a ``fit`` folder's
    ``head.ply`` — else the bundled head). ``portrait``: the whole portrait to render the face
    in, from its photo's camera orbited by ``yaw`` and zoomed until the face spans a third of the
    frame's width (:meth:`~emozone_lite.head.portrait.Portrait.framing_zoom`; never wider than the
    photo): ``"auto"`` (default) — the ``portrait.ply`` beside the checkpoint's head (what ``fit``
    writes), else the bundled portrait when the model is on the bundled head, else none — a
    portrait PLY, or ``None`` / ``"none"``: the face alone on white from the front orbit.

    Raises:
        ValueError: a portrait whose face is not the model's head (or an unreadable checkpoint).
        FileNotFoundError: the checkpoint, audio, AU file or a named portrait is missing.
    """
    from .audio import load_audio
    from .aus import AUTrack, read_openface_csv
    from .head import load_head
    from .train import load_model
    from .viz import write_video

    model, ck = load_model(checkpoint, head=None if head is None else load_head(head))
    scene = _render_portrait(model, checkpoint, ck, head, portrait)
    wave = load_audio(audio)
    feats = model.audio_features(wave, 16000)  # log-mel or phone windows, as the model was trained
    T = feats.n_frames
    if aus is None:
        values = np.zeros((T, 17), np.float32)
    else:
        track: AUTrack = read_openface_csv(aus)
        if len(track) != T or abs(track.fps - feats.fps) > 1e-6:
            warnings.warn(
                f"AU track has {len(track)} frames at {track.fps:g} fps, the audio {T} at {feats.fps:g}: "
                f"resampling the AUs to the audio",
                stacklevel=2,
            )
            track = track.resample(n_frames=T)
        values = track.values
    cam, background = _front_camera(size, yaw), None
    if scene is not None:
        from .head.portrait import render_scenery

        cam = scene.view(yaw_deg=yaw, size=size, zoom=scene.framing_zoom())
        background = render_scenery(scene, cam)
    frames = render_clip(
        model,
        torch.as_tensor(feats.mel_windows),
        torch.as_tensor(feats.energy),
        torch.as_tensor(values, dtype=torch.float32),
        cam,
        progress=progress,
        background=background,
    )
    return write_video(frames, out, fps=feats.fps, audio=(wave, 16000))
