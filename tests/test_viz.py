from __future__ import annotations

import numpy as np
import pytest
import torch

from emozone_lite import viz
from emozone_lite.utils import data_path


def test_to_uint8_and_strip():
    f = torch.linspace(0, 1, 4 * 8 * 8 * 3).reshape(4, 8, 8, 3)
    u = viz.to_uint8(f)
    assert u.dtype == np.uint8 and u[0, 0, 0, 0] == 0 and u[-1, -1, -1, -1] == 255
    s = viz.frame_strip(f, n=3, gap=2)
    assert s.shape == (8, 3 * 8 + 2 * 2, 3)
    np.testing.assert_array_equal(s[:, :8], u[0])
    np.testing.assert_array_equal(s[:, -8:], u[-1])


def test_bad_frames():
    with pytest.raises(ValueError, match="NaN"):
        viz.to_uint8(np.full((1, 2, 2, 3), np.nan))
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        viz.frame_strip(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="fps"):
        viz.write_video(np.zeros((2, 4, 4, 3)), "/tmp/never.mp4", fps=0)


def test_write_video_with_speech_track(tmp_path):
    frames = np.random.default_rng(0).random((20, 33, 48, 3)).astype(np.float32)
    out = viz.write_video(frames, tmp_path / "v.mp4", fps=25, audio=data_path("arctic_a0009.wav"))
    info = viz.read_video_info(out)
    assert info["n_frames"] == 20 and info["has_audio"] and info["size"] == (48, 34)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_write_video_missing_audio_leaves_no_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="audio"):
        viz.write_video(np.zeros((2, 4, 4, 3)), tmp_path / "v.mp4", audio=tmp_path / "nope.wav")
    assert list(tmp_path.iterdir()) == []


def test_image_grid_returns_figure():
    fig = viz.image_grid([np.zeros((4, 4, 3))] * 3, titles=["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 4
