"""Teacher clips: drive the Gaussian head with speech and an AU track, and render it.

:func:`sequence` turns speech (phone labels or audio) into viseme weights
(:mod:`emozone_lite.teacher.speech`), combines them with the AUs through the
:class:`~emozone_lite.teacher.rig.TeacherRig`, poses the head's Gaussians part by part
(:meth:`~emozone_lite.teacher.rig.TeacherRig.pose_head`: the face follows and stretches with
the mesh, the jaw's parts of the mouth interior ride on the jaw, the rest stays) and renders
every frame from every camera: a :class:`TeacherSequence`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..audio import Phone
from ..aus import AU_NAMES, AUTrack
from ..camera import Camera, stack_cameras
from ..checks import check_finite, shape_error
from .rig import TeacherRig, mouth_opening
from .speech import _as_phones, _check_frames, viseme_weights, viseme_weights_from_audio

if TYPE_CHECKING:  # pragma: no cover
    from ..gaussians import GaussianCloud

__all__ = ["TeacherSequence", "sequence", "talking_video", "vertex_sequence"]


@dataclass(eq=False)
class TeacherSequence:
    """A rendered teacher clip: the ground truth every student is trained and scored on.

    Attributes:
        aus: ``[T, 17]`` AU intensities that drove it.
        viseme_weights: ``[T, V]`` viseme weights that drove it.
        vertex_disp: ``[T, 468, 3]`` teacher displacements of the mesh vertices.
        vertices: ``[T, 468, 3]`` deformed canonical mesh (canonical + ``vertex_disp``).
        means: ``[T, N, 3]`` Gaussian centres (displacements carried through each Gaussian's
            triangle by its barycentrics).
        quats: ``[T, N, 4]`` Gaussian rotations (wxyz), turned with their triangles.
        scales: ``[T, N, 3]`` Gaussian scales (face Gaussians stretch with their triangles).
        frames: ``[T, C, H, W, 3]`` float32 renders in [0, 1], or ``None`` (``render=False``).
        landmarks2d: ``[T, C, 468, 2]`` pixel positions of the deformed vertices per camera.
        mouth_opening: ``[T]`` inner-lip gap (:func:`~emozone_lite.teacher.mouth_opening`), world units.
        fps: frame rate.
        cameras: the cameras (length ``C``).
        phones: the phone labels when the speech came from labels, else ``None``.
        source: ``"labels"`` or ``"audio"`` (the viseme proxy).
    """

    aus: Tensor
    viseme_weights: Tensor
    vertex_disp: Tensor
    vertices: Tensor
    means: Tensor
    quats: Tensor
    scales: Tensor
    frames: Tensor | None
    landmarks2d: Tensor
    mouth_opening: Tensor
    fps: float
    cameras: list[Camera]
    phones: list[Phone] | None = None
    source: str = "labels"

    @property
    def n_frames(self) -> int:
        return int(self.aus.shape[0])

    def __repr__(self) -> str:
        f = "none" if self.frames is None else "x".join(map(str, self.frames.shape))
        return (
            f"TeacherSequence(T={self.n_frames}, N={self.means.shape[1]}, C={len(self.cameras)}, "
            f"frames={f}, fps={self.fps:g}, source={self.source!r})"
        )


def _speech(phones_or_audio, n_frames, fps, sr, unknown) -> tuple[np.ndarray, list[Phone] | None, str]:
    """Viseme weights ``[T, V]`` from labels / a label path / a wav path / ``(wave, sr)`` / a wave."""
    from ..audio import load_audio

    x = phones_or_audio
    if isinstance(x, (str, PathLike)):
        p = Path(x)
        if p.suffix.lower() == ".lab":
            phones = _as_phones(p)
            return viseme_weights(phones, n_frames, fps, unknown=unknown), phones, "labels"
        wave = load_audio(p)
        return viseme_weights_from_audio(wave, 16000, n_frames, fps), None, "audio"
    if isinstance(x, tuple) and len(x) == 2 and np.isscalar(x[1]):
        return viseme_weights_from_audio(x[0], int(x[1]), n_frames, fps), None, "audio"
    if isinstance(x, (np.ndarray, Tensor)):
        if sr is None:
            raise ValueError("a bare waveform needs its sample rate: pass sr=… or (wave, sr)")
        return viseme_weights_from_audio(x, sr, n_frames, fps), None, "audio"
    if isinstance(x, (list, tuple)):
        phones = _as_phones(x)
        return viseme_weights(phones, n_frames, fps, unknown=unknown), phones, "labels"
    raise ValueError(
        f"phones_or_audio must be a .lab path, a list of audio.Phone, an audio file path, (wave, sr) "
        f"or a waveform with sr=…; got {type(x).__name__}"
    )


def _au_values(au_track, n_frames: int, fps: float, resample: bool) -> Tensor:
    """``[T, 17]`` float32 AU intensities of ``au_track`` (``None``: neutral) at the speech's ``T``, ``fps``."""
    if au_track is None:
        return torch.zeros(n_frames, len(AU_NAMES))
    if isinstance(au_track, AUTrack):
        track = au_track
    else:
        arr = np.asarray(au_track.detach().cpu() if isinstance(au_track, Tensor) else au_track, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(AU_NAMES):
            raise shape_error("au_track", f"[T, {len(AU_NAMES)}] (intensities, or pass an AUTrack)", arr.shape)
        check_finite(arr, "au_track", "fill them first (aus.fill_failed_frames)")
        track = AUTrack(arr, fps=fps, strict=True)
    if len(track) != n_frames or not math.isclose(track.fps, fps, rel_tol=1e-6):
        if not resample:
            raise ValueError(
                f"the AU track has {len(track)} frames at {track.fps:g} fps but the speech has {n_frames} frames "
                f"at {fps:g} fps; pass resample_aus=True to resample the AUs to the speech "
                f"(or track.resample(n_frames={n_frames}))"
            )
        track = track.resample(n_frames=n_frames)
    return torch.from_numpy(track.values).float()


def vertex_sequence(
    phones_or_audio,
    au_track=None,
    *,
    rig: TeacherRig | None = None,
    n_frames: int | None = None,
    fps: float = 25.0,
    resample_aus: bool = False,
    sr: int | None = None,
    unknown: str = "raise",
) -> tuple[Tensor, Tensor]:
    """The teacher's mesh only: ``(vertices [T, 468, 3], aus [T, 17])`` for speech and an AU
    track, exactly as :func:`sequence` computes them, without posing or rendering the Gaussians
    (about 100× faster; what a landmark loss needs). Arguments as :func:`sequence`."""
    rig = TeacherRig.default() if rig is None else rig
    if n_frames is not None:
        n_frames, fps = _check_frames(n_frames, fps)
    W, _, _ = _speech(phones_or_audio, n_frames, fps, sr, unknown)
    aus = _au_values(au_track, W.shape[0], fps, resample_aus)
    return rig.vertices + rig.vertex_displacement(aus, torch.from_numpy(W)), aus


def sequence(
    phones_or_audio,
    au_track=None,
    cameras: Camera | Sequence[Camera] | None = None,
    head: GaussianCloud | None = None,
    *,
    rig: TeacherRig | None = None,
    render: bool = True,
    backend: str = "auto",
    resample_aus: bool = False,
    fps: float = 25.0,
    n_frames: int | None = None,
    sr: int | None = None,
    background=(1.0, 1.0, 1.0),
    unknown: str = "raise",
    progress: bool = False,
) -> TeacherSequence:
    """Drive the Gaussian head with speech and an AU track, and render it.

    Speech → :func:`~emozone_lite.teacher.viseme_weights` (labels) or
    :func:`~emozone_lite.teacher.viseme_weights_from_audio` (no labels) → ``[T, V]``; the AU
    track gives ``[T, 17]``; :meth:`TeacherRig.vertex_displacement` combines them;
    :meth:`TeacherRig.pose_head` moves each part of the head (face Gaussians follow their
    triangles — barycentric carry, rotation and stretch measured on the canonical mesh; lower
    teeth, tongue and cavity floor follow the jaw; upper teeth, cavity and eyeballs stay);
    every frame is rendered from all cameras in one ``rasterize`` call.

    **Lengths.** ``T`` is set by the speech: ``n_frames`` if given, else
    ``round(duration · fps)`` (the :func:`emozone_lite.audio.features` convention, so the
    student's audio windows line up with the frames). An AU track of another length (or frame
    rate) raises ``ValueError`` naming both, unless ``resample_aus=True``, which resamples the
    AUs linearly in time to the speech (:meth:`emozone_lite.aus.AUTrack.resample`).

    Args:
        phones_or_audio: a ``.lab`` path, a list of :class:`~emozone_lite.audio.Phone`, an audio
            file path, ``(wave, sr)``, or a waveform ``[S]`` with ``sr``.
        au_track: an :class:`~emozone_lite.aus.AUTrack`, ``[T, 17]`` intensities in [0, 5], or
            ``None`` (neutral expression).
        cameras: one :class:`~emozone_lite.camera.Camera` or a list (one image size).
        head: the Gaussian head ``N`` (default :func:`emozone_lite.head.load_head`).
        rig: the teacher rig (default :meth:`TeacherRig.default`).
        render: render frames (else ``frames`` is ``None``; everything else is computed).
        backend: renderer backend (:func:`emozone_lite.render.rasterize`).
        resample_aus: resample an AU track whose length differs from the speech.
        fps: video frame rate.
        n_frames: force ``T``.
        sr: sample rate of a bare waveform.
        background: RGB behind the head (white by default; ``None`` = black, premultiplied).
        unknown: how :func:`~emozone_lite.teacher.viseme_weights` treats unknown phones
            (``"raise"`` / ``"sil"``).
        progress: show a progress bar while rendering.

    Returns:
        A :class:`TeacherSequence` (``T`` frames, ``C`` cameras, ``N`` Gaussians).

    Raises:
        ValueError: no or bad cameras, speech of an unknown kind, a bare waveform without
            ``sr``, AU tracks of the wrong shape / with NaN / of another length (without
            ``resample_aus``), unknown phones (with ``unknown="raise"``).
    """
    from ..head import load_head

    rig = TeacherRig.default() if rig is None else rig
    if cameras is None:
        raise ValueError("cameras is required: pass a Camera or a list, e.g. [Camera.orbit(0, width=128, height=128)]")
    cams = [cameras] if isinstance(cameras, Camera) else list(cameras)
    if not cams or not all(isinstance(c, Camera) for c in cams):
        raise ValueError("cameras must be a Camera or a non-empty list of Camera objects")
    viewmats, Ks, width, height = stack_cameras(cams)
    if n_frames is not None:
        n_frames, fps = _check_frames(n_frames, fps)
    W, phones, source = _speech(phones_or_audio, n_frames, fps, sr, unknown)
    T = W.shape[0]
    aus = _au_values(au_track, T, fps, resample_aus)
    w = torch.from_numpy(W)
    disp = rig.vertex_displacement(aus, w)  # [T, 468, 3]
    rest = rig.vertices
    verts = rest + disp

    head = load_head() if head is None else head
    means, quats, scales = rig.pose_head(head, aus, w)  # each part moves its own way

    lm = torch.stack([torch.stack([c.project(verts[t]) for c in cams]) for t in range(T)])  # [T, C, 468, 2]

    frames = None
    if render:
        from tqdm.auto import tqdm

        from ..render import rasterize

        bg = None
        if background is not None:
            bg = torch.as_tensor(background, dtype=torch.float32).reshape(1, 3).expand(len(cams), 3)
        out = torch.empty(T, len(cams), height, width, 3)
        op, col = head.opacities.detach(), head.colors.detach()
        with torch.no_grad():
            for t in tqdm(range(T), desc="teacher", disable=not progress, leave=False):
                img, _, _ = rasterize(
                    means[t], quats[t], scales[t], op, col, viewmats, Ks, width, height, backend=backend, backgrounds=bg
                )
                out[t] = img.clamp(0.0, 1.0).cpu()
        frames = out
    return TeacherSequence(
        aus=aus, viseme_weights=w, vertex_disp=disp, vertices=verts, means=means, quats=quats, scales=scales,
        frames=frames, landmarks2d=lm, mouth_opening=mouth_opening(verts), fps=fps, cameras=cams,
        phones=phones, source=source,
    )  # fmt: skip


def talking_video(
    path: str | PathLike,
    script,
    phones: str | PathLike,
    audio: str | PathLike,
    *,
    seconds: float | None = None,
    width: int = 320,
    height: int = 240,
    fps: float = 25.0,
    seed: int = 0,
) -> tuple[Path, np.ndarray]:
    """The teacher speaking with an expression script, from the front, as an mp4 with its sound.

    What a user's talking video looks like, with the AUs that drove it known: the input of
    ``emozone-lite track`` and ``fit`` in their tests and benchmarks.

    Args:
        path: where the mp4 goes (written then renamed by :func:`emozone_lite.viz.write_video`).
        script: AU keyframes ``[(time_s, value), …]`` as :func:`emozone_lite.aus.from_keyframes`
            takes them (then ``seconds`` is required), or an :class:`~emozone_lite.aus.AUTrack` /
            ``[T, 17]`` array at ``fps``; its length sets the clip's frame count.
        phones: the speech's phone labels (a ``.lab`` path), which move the mouth.
        audio: the sound track (any file :func:`emozone_lite.viz.write_video` muxes).
        seconds: the keyframed script's length.
        width, height, fps: the video's size and frame rate (one orbit camera at yaw 0).
        seed: ``torch.manual_seed`` before rendering, so a clip is the same every time.

    Returns:
        ``(mp4 path, true AUs [T, 17] float32)``.
    """
    from ..aus import from_keyframes
    from ..viz import write_video

    if isinstance(script, (list, tuple)):
        if seconds is None:
            raise ValueError("seconds is required when script is a list of keyframes (the clip's length)")
        script = from_keyframes(script, seconds, fps)
    n = len(script) if isinstance(script, AUTrack) else int(np.asarray(script).shape[0])
    torch.manual_seed(seed)
    seq = sequence(phones, script, [Camera.orbit(width=width, height=height)], fps=fps, n_frames=n)
    video = write_video(seq.frames[:, 0], path, fps=fps, audio=audio)
    return video, seq.aus.numpy()
