"""Figures and videos: image grids, frame strips, and mp4 export with a speech track.

Plot helpers return a ``matplotlib.figure.Figure`` and never call ``plt.show()``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def to_uint8(frames) -> np.ndarray:
    """Float images in [0, 1] (tensor or array, ``[..., H, W, 3]``) → uint8 array."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    if not np.isfinite(frames).all():
        raise ValueError("frames contain NaN or inf; expected float images in [0, 1]")
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def frame_strip(frames, n: int = 6, gap: int = 2) -> np.ndarray:
    """``n`` evenly spaced frames of ``[T, H, W, 3]`` side by side → ``[H, n*W + gaps, 3]`` uint8."""
    f = to_uint8(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames must have shape [T, H, W, 3], got {tuple(f.shape)}")
    if len(f) == 0:
        raise ValueError("frames is empty")
    idx = np.linspace(0, len(f) - 1, min(n, len(f))).round().astype(int)
    H, W = f.shape[1:3]
    out = np.full((H, len(idx) * W + (len(idx) - 1) * gap, 3), 255, np.uint8)
    for j, i in enumerate(idx):
        out[:, j * (W + gap) : j * (W + gap) + W] = f[i]
    return out


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int | None = None, size: float = 2.6):
    """A matplotlib Figure showing images ``[H, W, 3]`` (tensors or arrays) in a grid."""
    import matplotlib.pyplot as plt

    images = list(images)
    if not images:
        raise ValueError("images is empty")
    ncols = ncols or len(images)
    nrows = (len(images) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, img in enumerate(images):
        ax = axes.flat[k]
        ax.imshow(to_uint8(img))
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    fig.tight_layout()
    return fig


def write_video(
    frames, path: str | os.PathLike, fps: float = 25.0, audio: str | os.PathLike | tuple | None = None
) -> Path:
    """Write ``frames [T, H, W, 3]`` as an H.264 mp4, with ``audio`` as its sound track.

    Args:
        frames: float in [0, 1] or uint8; H and W are padded to even sizes.
        path: output ``.mp4``; written to a temporary file and renamed, so an
            interrupted export never leaves a broken file behind.
        fps: video frame rate.
        audio: a sound file path, or ``(wave [S], sample_rate)``; muxed as AAC.

    Returns:
        the path written. Uses the ffmpeg binary shipped by ``imageio-ffmpeg``.
    """
    import imageio_ffmpeg
    import soundfile as sf

    f = to_uint8(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or len(f) == 0:
        raise ValueError(f"frames must have shape [T>0, H, W, 3], got {tuple(f.shape)}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    H, W = f.shape[1:3]
    pad_h, pad_w = H % 2, W % 2
    if pad_h or pad_w:
        f = np.pad(f, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = tempfile.mkdtemp(dir=path.parent, prefix=".video-")
    tmp_video = Path(tmpdir) / ("out" + path.suffix)
    audio_path = None
    try:
        if audio is not None:
            if isinstance(audio, tuple):
                wave, sr = audio
                audio_path = Path(tmpdir) / "audio.wav"
                sf.write(audio_path, np.asarray(wave, np.float32), int(sr))
            else:
                audio_path = Path(audio)
                if not audio_path.exists():
                    raise FileNotFoundError(f"audio file not found: {audio_path}")
        writer = imageio_ffmpeg.write_frames(
            str(tmp_video),
            (f.shape[2], f.shape[1]),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=1,
            audio_path=str(audio_path) if audio_path else None,
            audio_codec="aac" if audio_path else None,
            output_params=["-shortest"] if audio_path else None,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in f:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        os.replace(tmp_video, path)
    finally:
        for p in Path(tmpdir).glob("*"):
            p.unlink()
        os.rmdir(tmpdir)
    return path


def read_video_info(path: str | os.PathLike) -> dict:
    """Frame count, size, fps and whether an audio stream is present (via ffmpeg)."""
    import subprocess

    import imageio_ffmpeg

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    proc = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    has_audio = "Audio:" in proc.stderr
    n_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    reader.close()
    return {"n_frames": n_frames, "size": tuple(meta["size"]), "fps": meta["fps"], "has_audio": has_audio}
