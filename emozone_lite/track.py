"""Your own video → an OpenFace 2.x AU file: ``emozone-lite track VIDEO --out aus.csv``.

A user arrives with a talking video; the rest of the toolkit reads AUs as OpenFace CSV
(:func:`emozone_lite.openface.read_openface_csv`). :func:`track_video` makes that file
with the toolkit's own face detector instead of OpenFace:

1. **Frames** are decoded one at a time with PyAV (:func:`iter_video_frames`; any
   container and codec ffmpeg reads — mp4, mov, avi, webm, mkv — any size and frame
   rate). Each frame keeps its own *presentation timestamp*, so a variable-frame-rate
   phone video is timed as it plays, not as ``frame / fps``; a display rotation (portrait
   phone clips) is applied. Frames are streamed, never all held in memory.
2. **Landmarks** come from MediaPipe's FaceLandmarker (:mod:`emozone_lite.landmarks`,
   VIDEO mode: it tracks the face from frame to frame, fed the real timestamps).
3. **AUs** are read from the landmark geometry
   (:func:`~emozone_lite.landmarks.geometric_features` →
   :func:`~emozone_lite.landmarks.aus_from_features`) relative to a neutral face estimated
   from the video itself (:func:`video_neutral`), the way OpenFace normalises each person
   by the median of their features over the video.
4. **The CSV** is OpenFace's 714-column layout
   (:func:`~emozone_lite.openface.write_openface_csv`): ``frame`` from 1, ``face_id`` 0,
   ``timestamp`` the video's own (seconds from the first frame), ``confidence`` and
   ``success`` (1 / 1 where a face was found; 0 / 0 and all-zero AUs and landmarks where
   not — such frames are **kept**, so the file stays aligned with the video and its
   audio), ``x_0 … x_67, y_0 … y_67`` the 68 iBUG landmarks in pixels
   (:data:`IBUG68_FROM_MEDIAPIPE`), ``AU*_r`` the 17 intensities (0–5) and ``AU*_c``
   presence, ``AU*_r >= 1`` (FACS trace level "A"; AU28_c is 0). MediaPipe's Tasks API
   gives no per-face score, so ``confidence`` is the detector's accept / reject at
   ``min_confidence``.

**Which AU reading, measured** (``benchmarks/track_aus.py``). Both readings were run on a
4 s teacher clip (320×240, 30 fps, H.264 with speech; AU01+AU02, AU12, AU04 and AU26 rising
and falling in turn — the clip ``tests/test_track.py`` renders) and correlated with the AUs
that drove the teacher (Pearson r per AU over the 120 frames):

============  =========  =========  =========  =========  =========
reading       AU01       AU02       AU04       AU12       AU26
============  =========  =========  =========  =========  =========
geometric     0.99       0.98       0.88       0.96       0.83
blendshapes   0.95       0.99       0.55       0.90       0.38
============  =========  =========  =========  =========  =========

(the same clip at 640×480: geometric AU04 0.90, AU26 0.81; blendshapes AU04 0.70.)
The geometric reading is the default. MediaPipe's blendshapes barely move for the
teacher's jaw drop and brow lowering (peaks ≈ 0.4 and 0.16 of 5). AU04 is the weakest
AU for both: MediaPipe's landmarks lower the brows by about a third of what the rendered
mesh does (0.02 vs 0.06 inter-ocular distances), and hardly follow them drawing together,
so the geometric reading takes AU04 from the inner brows' lowering, with the drawing
together at half weight (:data:`~emozone_lite.landmarks.AU04_GAP_WEIGHT`; the whole brows
plus the full gap gave r = 0.64 here). On a harder script over a0009 — AU04 at three
strengths between a smile, a brow raise and a small jaw drop, at 320×240, 640×480 and 480×360
(``benchmarks/track_aus.py``) — AU04 reached only 0.52 / 0.80 / 0.61, and the others fell too:
AU01 0.77–0.80, AU02 0.85–0.87, AU12 0.57–0.64, AU26 0.25–0.28 (its jaw drop of 2 is small
beside the speech's). AU26
is read as the jaw drop *beyond the speaker's typical speech opening* (the median),
which is what the teacher's AU26 means; a reading from a closed-mouth neutral follows
the speech jaw as well (r 0.55). On the same clip the geometric reading also shows AUs
the teacher did not use: AU25 up to ≈ 3 (the lips do part in speech), AU15 up to ≈ 3.5
(the lip corners sit lower relative to the mouth centre when the mouth closes than in
the median, open, frame), AU14 / AU20 up to ≈ 1.5. The blendshape reading stays
available (``method="blendshapes"``).

Examples:
    >>> from emozone_lite.track import track_video  # doctest: +SKIP
    >>> tr = track_video("me_talking.mp4", "aus.csv", plot="aus.png")  # doctest: +SKIP
    >>> tr.aus.fps, tr.n_found, len(tr)  # doctest: +SKIP
    (30.0, 118, 120)
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .aus import LOWER_AUS, N_AUS, UPPER_AUS, AUTrack, au_index, fill_failed_frames

__all__ = [
    "IBUG68_FROM_MEDIAPIPE",
    "VideoTrack",
    "iter_video_frames",
    "landmarks_68",
    "plot_video_track",
    "track_video",
    "video_audio",
    "video_neutral",
]

#: MediaPipe face-mesh index for each of the 68 iBUG-300W / dlib points, in iBUG order.
#: "Right" is the subject's right (the image's left). Written for this toolkit from the
#: canonical mesh (``data_samples/canonical_face_mesh.npz``; the mesh's numbering is
#: MediaPipe's ``canonical_face_model_uv_visualization.png``) and the iBUG-300W point
#: definitions (Sagonas et al. 2016, doi:10.1016/j.imavis.2016.01.002); the same
#: correspondences as the public table github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks
#: where that uses one vertex per point. Jaw points are spaced evenly along the mesh's
#: silhouette from ear level (0) to the chin (8); the left side mirrors the right
#: (``tests/test_track.py`` checks the symmetry with :func:`emozone_lite.teacher.mirror_index`).
IBUG68_FROM_MEDIAPIPE: tuple[int, ...] = (
    # 0–16 jaw line, subject's right ear level → chin (8) → left ear level
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    # 17–21 right brow (outer → inner), 22–26 left brow (inner → outer)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # 27–30 nose bridge (nasion → tip), 31–35 lower nose (right ala → subnasale → left ala)
    168, 197, 5, 4, 98, 97, 2, 326, 327,
    # 36–41 right eye (outer corner, upper lid ×2, inner corner, lower lid ×2)
    33, 160, 158, 133, 153, 144,
    # 42–47 left eye (inner corner, upper lid ×2, outer corner, lower lid ×2)
    362, 385, 387, 263, 373, 380,
    # 48–59 outer lips (right corner, upper lip → left corner, lower lip back)
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    # 60–67 inner lips (right corner, upper → left corner, lower back)
    78, 81, 13, 311, 308, 402, 14, 178,
)  # fmt: skip

#: Video containers :func:`iter_video_frames` is tested on (any ffmpeg reads also work).
VIDEO_FORMATS = "mp4, mov, avi, webm, mkv"

#: Share of the frames (lowest jaw drop) whose chin height is the neutral chin, see :func:`video_neutral`.
CLOSED_MOUTH_QUANTILE = 0.10


def landmarks_68(points) -> np.ndarray:
    """The 68 iBUG points of MediaPipe face-mesh landmarks (:data:`IBUG68_FROM_MEDIAPIPE`).

    Args:
        points: ``[..., 468 or 478, D]`` landmarks in MediaPipe mesh order (any D).

    Returns:
        ``[..., 68, D]`` (a copy).

    Examples:
        >>> from emozone_lite.landmarks import load_canonical_mesh
        >>> landmarks_68(load_canonical_mesh().vertices).shape
        (68, 3)
    """
    p = np.asarray(points)
    if p.ndim < 2 or p.shape[-2] not in (468, 478):
        raise ValueError(f"points: expected [..., 468 or 478, D] (MediaPipe face-mesh order), got {p.shape}")
    return p[..., list(IBUG68_FROM_MEDIAPIPE), :].copy()


def video_neutral(features: list[dict[str, float]]) -> dict[str, float]:
    """A neutral face for the geometric AU reading, estimated from one person's video.

    OpenFace normalises each person by the median of their features over the video (most
    frames of a talking face are close to neutral for any one AU). Here: the per-feature
    **median** over the frames with a face — except the chin height, taken from the
    frames with the mouth most closed (the :data:`CLOSED_MOUTH_QUANTILE` lowest jaw
    drops): the reading calls a chin higher than neutral AU17 (mentalis), and speech
    keeps the jaw open for much of the time, so a median chin would read every closed
    mouth as AU17.

    Args:
        features: :func:`~emozone_lite.landmarks.geometric_features` of each frame (≥ 1).

    Returns:
        feature name → neutral value, for :func:`~emozone_lite.landmarks.aus_from_features`.
    """
    if not features:
        raise ValueError("video_neutral: need the features of at least one frame")
    names = list(features[0])
    f = np.array([[x[k] for k in names] for x in features], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN feature (lip depth of 2-D input) stays NaN
        neutral = dict(zip(names, np.nanmedian(f, axis=0)))
    jaw = f[:, names.index("jaw_drop")]
    closed = jaw <= np.quantile(jaw, CLOSED_MOUTH_QUANTILE)
    neutral["chin_height"] = float(np.median(f[closed, names.index("chin_height")]))
    return {k: float(v) for k, v in neutral.items()}


@dataclass(eq=False)
class VideoTrack:
    """What :func:`track_video` read from a video.

    Attributes:
        aus: :class:`~emozone_lite.aus.AUTrack` ``[T, 17]`` at the video's frame rate, as
            :func:`~emozone_lite.openface.read_openface_csv` reads the CSV back: frames
            without a face interpolated from their neighbours and marked in ``success``.
        timestamps: ``[T]`` float64 presentation times in seconds from the first frame.
        landmarks68: ``[T, 68, 2]`` float32 iBUG landmarks in pixels (NaN without a face).
        landmarks: ``[T, 468, 2]`` float32 the detector's mesh landmarks in pixels (NaN
            without a face), in the canonical mesh's vertex order (what ``fit`` poses the head on).
        success: ``[T]`` bool, a face was found.
        fps: the video's average frame rate.
        image_size: ``(H, W)`` of the (display-rotated) frames.
        method: ``"geometric"`` or ``"blendshapes"``.
        path: the video.
    """

    aus: AUTrack
    timestamps: np.ndarray
    landmarks68: np.ndarray
    landmarks: np.ndarray
    success: np.ndarray
    fps: float
    image_size: tuple[int, int]
    method: str
    path: Path

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def n_found(self) -> int:
        """Frames with a face."""
        return int(self.success.sum())

    def __repr__(self) -> str:
        return (
            f"VideoTrack(T={len(self)}, fps={self.fps:g}, faces={self.n_found}/{len(self)}, "
            f"size={self.image_size[1]}x{self.image_size[0]}, method={self.method!r})"
        )


def _open_video(path: Path):
    """``(container, video stream)`` with PyAV, or a clear ValueError naming the file."""
    import av

    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise ValueError(
            f"{path}: cannot be read as a video (ffmpeg: {e.strerror or e}); expected a video file "
            f"({VIDEO_FORMATS}) — is it corrupt, truncated or not a video?"
        ) from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise ValueError(f"{path}: has no video stream (streams: {', '.join(kinds)}); expected a video with a face")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.name is None:  # pragma: no cover - ffmpeg-build dependent
        container.close()
        raise ValueError(f"{path}: its video codec cannot be decoded by this ffmpeg build")
    return container, stream


def _check_video_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; expected a video file ({VIDEO_FORMATS})")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes); expected a video file ({VIDEO_FORMATS})")
    return path


def iter_video_frames(path, *, progress: bool = False, desc: str | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Decode a video frame by frame: ``(timestamp_s, rgb [H, W, 3] uint8)`` in display order.

    ``timestamp_s`` is the frame's presentation timestamp in seconds from the video
    stream's start (its own ``pts × time_base``; a variable frame rate comes through as
    it is). A display-matrix rotation (portrait phone video) is applied to the pixels.

    Args:
        path: a video file ffmpeg reads (:data:`VIDEO_FORMATS` and more).
        progress: a tqdm progress bar over the frames.
        desc: the bar's label.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an empty file, a file that is not a video or has no video stream, a
            decoding error (saying after how many frames), or no frame at all.

    Warns:
        UserWarning: fewer frames decode than the container's index announces (a
            truncated recording that still plays; its frames are used).
    """
    from tqdm.auto import tqdm

    path = _check_video_path(path)
    import av

    container, stream = _open_video(path)
    with container:
        stream.thread_type = "AUTO"
        tb = stream.time_base
        start = stream.start_time if stream.start_time is not None else None
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        announced = int(stream.frames or 0)  # from the container's index; 0 when unknown
        bar = tqdm(total=announced or None, desc=desc or path.name, unit="frame", disable=not progress)
        n, last = 0, -math.inf
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and tb is not None:
                    if start is None:
                        start = frame.pts
                    t = float((frame.pts - start) * tb)
                else:  # no timestamp on this frame: one nominal frame after the last
                    t = 0.0 if n == 0 else last + 1.0 / rate
                last = t
                img = frame.to_ndarray(format="rgb24")  # may be a view with padded rows (width 854 …)
                rot = int(round((frame.rotation or 0) / 90.0)) % 4
                img = np.ascontiguousarray(np.rot90(img, k=rot) if rot else img)  # MediaPipe reads raw rows
                n += 1
                bar.update(1)
                yield t, img
        except av.FFmpegError as e:
            raise ValueError(
                f"{path}: decoding failed after {n} frame(s) (ffmpeg: {e.strerror or e}); the file is corrupt, "
                "truncated or in a codec this ffmpeg cannot decode"
            ) from None
        finally:
            bar.close()
    if n == 0:
        raise ValueError(f"{path}: no video frame could be decoded; the file is corrupt or truncated")
    if announced and n < announced:
        warnings.warn(
            f"{path}: decoded {n} of the {announced} frames its header announces; the file looks truncated "
            "(using the frames there are)",
            UserWarning,
            stacklevel=2,
        )


def _check_out_path(path, what: str) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{what} {path}: the folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a folder; expected a file name")
    return path


def track_video(
    path,
    out_csv,
    *,
    plot=None,
    progress: bool = True,
    method: str = "geometric",
    min_confidence: float = 0.5,
) -> VideoTrack:
    """Track a talking video's face and write its AUs as an OpenFace 2.x CSV.

    See the module docstring for the steps and the CSV's columns.

    Args:
        path: the video (:data:`VIDEO_FORMATS`, any size and frame rate, variable frame
            rate and display rotation handled).
        out_csv: the CSV to write (its folder must exist). Written only when tracking
            succeeded, atomically (never a partial file).
        plot: optional PNG of the AU tracks over time (:func:`plot_video_track`), also atomic.
        progress: a tqdm progress bar over the frames.
        method: ``"geometric"`` (landmark geometry against :func:`video_neutral`; the
            default, see the measurements in the module docstring) or ``"blendshapes"``
            (:func:`~emozone_lite.landmarks.blendshapes_to_aus`).
        min_confidence: MediaPipe's detection / presence / tracking threshold.

    Returns:
        :class:`VideoTrack`.

    Raises:
        FileNotFoundError: the video does not exist, or an output folder does not.
        ValueError: an empty, corrupt or non-video file; no face in any frame (saying in
            how many of how many frames one was found); a bad ``method``.

    Warns:
        UserWarning: a face in fewer than half of the frames, or a truncated file
            (:func:`iter_video_frames`).
    """
    from .landmarks import (
        _import_mediapipe,
        _make_landmarker,
        _to_face,
        aus_from_features,
        blendshapes_to_aus,
        geometric_features,
    )
    from .openface import write_openface_csv
    from .utils import atomic_write

    if method not in ("geometric", "blendshapes"):
        raise ValueError(f"method must be 'geometric' or 'blendshapes', got {method!r}")
    path = _check_video_path(path)
    out_csv = _check_out_path(out_csv, "output CSV")
    plot = _check_out_path(plot, "plot") if plot is not None else None

    fps = _average_fps(path)
    mp, BaseOptions, vision = _import_mediapipe()
    times, ok, lmk68, lmk468, feats, bs_aus = [], [], [], [], [], []
    size = None
    last_ms = -1
    with _make_landmarker(vision, BaseOptions, vision.RunningMode.VIDEO, min_confidence) as det:
        for t, img in iter_video_frames(path, progress=progress, desc=f"track {path.name}"):
            if size is None:
                size = img.shape[:2]
            ms = max(last_ms + 1, int(round(t * 1000.0)))  # the tracker needs increasing integer ms
            last_ms = ms
            face = _to_face(
                det.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=img), ms), img.shape[:2]
            )
            times.append(t)
            found = face is not None and face.points.shape[0] >= 468
            ok.append(found)
            if not found:
                lmk68.append(np.full((68, 2), np.nan, np.float32))
                lmk468.append(np.full((468, 2), np.nan, np.float32))
                continue
            lmk68.append(landmarks_68(face.pixels))
            lmk468.append(np.asarray(face.pixels[:468], np.float32))
            if method == "geometric":
                feats.append(geometric_features(face.points_px))
            else:
                bs_aus.append(blendshapes_to_aus(face.blendshapes))
    ok = np.array(ok, bool)
    T, n_found = len(ok), int(ok.sum())
    if n_found == 0:
        raise ValueError(
            f"{path}: no face found in any of its {T} frames (a face in 0 of {T}); track needs a visible, "
            "roughly frontal face (a larger or better-lit video, or a lower min_confidence)"
        )
    if n_found < T / 2:
        warnings.warn(
            f"{path}: a face in only {n_found} of {T} frames; the others are kept with success 0",
            UserWarning,
            stacklevel=2,
        )
    values = np.zeros((T, N_AUS), np.float32)
    if method == "geometric":
        neutral = video_neutral(feats)
        values[ok] = np.stack([aus_from_features(f, neutral) for f in feats])
    else:
        values[ok] = np.stack(bs_aus)
    timestamps = np.array(times, np.float64)
    landmarks = np.stack(lmk68).astype(np.float32)
    if fps is None:  # a container without a frame rate: the timestamps' own
        span = timestamps[-1] - timestamps[0]
        fps = float((T - 1) / span) if T >= 2 and span > 0 else 25.0

    csv_track = AUTrack(values, fps=fps, confidence=ok.astype(np.float32), success=ok)
    result = VideoTrack(
        aus=AUTrack(fill_failed_frames(values, ok), fps=fps, confidence=ok.astype(np.float32), success=ok),
        timestamps=timestamps,
        landmarks68=landmarks,
        landmarks=np.stack(lmk468).astype(np.float32),
        success=ok,
        fps=fps,
        image_size=(int(size[0]), int(size[1])),
        method=method,
        path=path,
    )
    png = None
    if plot is not None:  # drawn before anything is written, so a failure leaves no file
        fig = plot_video_track(result)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        png = buf.getvalue()
    write_openface_csv(csv_track, out_csv, timestamps=timestamps, landmarks=landmarks)
    if png is not None:
        try:
            with atomic_write(plot, "wb") as f:
                f.write(png)
        except BaseException:
            os.unlink(out_csv)  # all or nothing
            raise
    return result


def _average_fps(path: Path) -> float | None:
    """The video stream's average frame rate (ffmpeg's frames / duration), or None when unknown."""
    container, stream = _open_video(path)
    with container:
        rate = stream.average_rate
    return float(rate) if rate else None


def video_audio(path, sr: int = 16000) -> np.ndarray | None:
    """The sound track of a video as mono float32 at ``sr`` Hz, or ``None`` when it has none.

    Decoded with PyAV (any audio codec ffmpeg reads: AAC, Opus, MP3, PCM …); channels are
    mixed down and the rate converted by ffmpeg's resampler.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an empty or unreadable file, or an audio stream that decodes to no samples.
    """
    import av

    path = _check_video_path(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise ValueError(f"{path}: cannot be read (ffmpeg: {e.strerror or e}); expected a video file") from None
    with container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sr))
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]  # flush
        except av.FFmpegError as e:
            raise ValueError(f"{path}: its audio track cannot be decoded (ffmpeg: {e.strerror or e})") from None
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise ValueError(f"{path}: its audio track holds no samples")
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def plot_video_track(track: VideoTrack, *, min_peak: float = 0.5):
    """AU tracks over time: upper-face and lower-face AUs in two panels, frames without a face shaded.

    Args:
        track: a :class:`VideoTrack` from :func:`track_video`.
        min_peak: AUs whose peak stays below this are left out (listed in the title).

    Returns:
        a matplotlib ``Figure`` (not shown; ``fig.savefig(...)``).
    """
    from matplotlib.figure import Figure

    t = track.timestamps
    v = track.aus.values
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, group, title in ((axes[0], UPPER_AUS, "upper face"), (axes[1], LOWER_AUS, "lower face")):
        shown = [a for a in group if v[:, au_index(a)].max() >= min_peak]
        for a in shown:
            ax.plot(t, v[:, au_index(a)], lw=1.3, label=a)
        quiet = [a for a in group if a not in shown]
        _shade_failed(ax, t, track.success)
        ax.set_ylim(-0.1, 5.1)
        ax.set_ylabel("intensity (0–5)")
        ax.set_title(f"{title}" + (f" (below {min_peak:g}: {', '.join(quiet)})" if quiet else ""), fontsize=9)
        if shown:
            ax.legend(loc="upper right", fontsize=8, ncol=min(len(shown), 5))
    axes[1].set_xlabel("time (s)")
    fig.suptitle(
        f"{track.path.name}: {len(track)} frames at {track.fps:g} fps, face in {track.n_found}; "
        f"AUs from {track.method}",
        fontsize=10,
    )
    return fig


def _shade_failed(ax, t: np.ndarray, success: np.ndarray) -> None:
    bad = ~np.asarray(success, bool)
    if not bad.any():
        return
    dt = float(np.median(np.diff(t))) if t.size > 1 else 0.04
    start = None
    for i, b in enumerate(np.r_[bad, False]):
        if b and start is None:
            start = i
        elif not b and start is not None:
            ax.axvspan(t[start] - dt / 2, t[i - 1] + dt / 2, color="0.85", lw=0, label=None)
            start = None
