"""Speech on the teacher's mouth: what each viseme does, and when (co-articulation).

- :data:`VISEME_ARTICULATION` — each viseme of :data:`emozone_lite.audio.VISEMES` as a
  mix of six articulatory components (jaw opening, lip rounding, protrusion, spreading,
  bilabial closure, labiodental tuck; their fields are built in
  :mod:`emozone_lite.teacher.rig`);
- :data:`DOMINANCE` and :func:`viseme_weights` — Cohen–Massaro co-articulation from phone
  labels: every phone exerts a dominance over time, and the weight of a viseme is its share;
- :func:`viseme_weights_from_audio` — a crude proxy from the waveform when there are no labels.
"""

from __future__ import annotations

import math
import warnings
from os import PathLike

import numpy as np
from torch import Tensor

from ..audio import VISEMES, Phone, phone_to_viseme
from ..checks import as_positive_int
from .anatomy import _smoothstep

__all__ = ["VISEME_ARTICULATION", "DOMINANCE", "viseme_weights", "viseme_weights_from_audio"]

#: Articulation of each viseme of :data:`emozone_lite.audio.VISEMES`: weights of the
#: components ``jaw`` (fraction of the AU26 = 5 jaw drop), ``round``, ``protrude``,
#: ``spread``, ``close`` (bilabial closure) and ``tuck`` (lower lip to upper teeth).
VISEME_ARTICULATION: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"jaw": 0.05, "close": 1.0},
    "FF": {"jaw": 0.15, "tuck": 1.0},
    "TH": {"jaw": 0.30, "spread": 0.2},
    "DD": {"jaw": 0.35, "spread": 0.2},
    "kk": {"jaw": 0.40},
    "CH": {"jaw": 0.25, "protrude": 1.0, "round": 0.3},
    "SS": {"jaw": 0.15, "spread": 0.6},
    "nn": {"jaw": 0.30, "spread": 0.2},
    "RR": {"jaw": 0.25, "round": 0.5, "protrude": 0.5},
    "aa": {"jaw": 1.00, "spread": 0.2},
    "E": {"jaw": 0.70, "spread": 0.6},
    "I": {"jaw": 0.40, "spread": 0.9},
    "O": {"jaw": 0.80, "round": 0.8},
    "U": {"jaw": 0.35, "round": 1.0, "protrude": 0.5},
}

#: Cohen–Massaro dominance of each viseme: ``(α, width)``. ``α`` is how strongly it holds
#: its target against its neighbours, ``width`` scales how far before (anticipation) and after
#: (carry-over) the phone it reaches. Bilabials and labiodentals must reach their lip target
#: but release quickly (large α, narrow); tongue-only consonants let the lips follow the
#: neighbouring vowels (small α).
DOMINANCE: dict[str, tuple[float, float]] = {
    "sil": (0.6, 1.0), "PP": (5.0, 0.5), "FF": (3.0, 0.6), "TH": (0.4, 1.0), "DD": (0.3, 1.0),
    "kk": (0.3, 1.0), "CH": (0.8, 0.8), "SS": (0.5, 1.0), "nn": (0.3, 1.0), "RR": (0.5, 1.0),
    "aa": (0.7, 1.0), "E": (0.6, 1.0), "I": (0.6, 1.0), "O": (0.8, 1.0), "U": (0.8, 1.0),
}  # fmt: skip


def _as_phones(phones) -> list[Phone]:
    """``phones`` (a list of :class:`~emozone_lite.audio.Phone` or a ``.lab`` path) as a list."""
    if isinstance(phones, (str, PathLike)):
        from ..audio import read_phone_labels

        return read_phone_labels(phones)
    phones = list(phones)
    for k, p in enumerate(phones):
        if not isinstance(p, Phone):
            raise ValueError(
                f"phones[{k}] is a {type(p).__name__}; expected audio.Phone(start, end, phone) or a .lab path"
            )
    return phones


def _check_frames(n_frames, fps) -> tuple[int, float]:
    """``(n_frames, fps)`` checked: a positive integer and a positive, finite frame rate."""
    n_frames = as_positive_int(n_frames, "n_frames")
    if not (isinstance(fps, (int, float, np.number)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive frame rate, got {fps!r}")
    return n_frames, float(fps)


def viseme_weights(
    phones,
    n_frames: int | None = None,
    fps: float = 25.0,
    *,
    anticipation: float = 0.08,
    carryover: float = 0.05,
    unknown: str = "raise",
) -> np.ndarray:
    """Co-articulated viseme weights from phone labels (Cohen–Massaro dominance).

    Every phone ``i`` (viseme ``v_i``, interval ``[s_i, e_i)``) exerts a dominance

        D_i(t) = α(v_i) · exp(-½ (δ_i(t) / σ)²),   δ_i = s_i - t before the phone (σ = width · anticipation),
                                                   δ_i = t - e_i after it (σ = width · carry-over), 0 inside,

    (a Gaussian-shouldered plateau; ``(α, width)`` = :data:`DOMINANCE`), and the weight of viseme ``v``
    at frame time ``t / fps`` is the share of the dominance of its phones,
    ``W[t, v] = Σ_{i: v_i = v} D_i(t) / Σ_i D_i(t)``. So rows sum to 1, a short consonant with
    low dominance (a /t/ between vowels) barely moves the lips while a /p/ always closes them,
    and the lips start moving towards the next phone ≈ ``anticipation`` seconds before it.
    Frames outside every phone are silence.

    Args:
        phones: a list of :class:`emozone_lite.audio.Phone` or a ``.lab`` path.
        n_frames: ``T``; default ``round(last phone end · fps)`` (audio.features' convention).
        fps: video frame rate.
        anticipation: σ (s) of the dominance before a phone starts (> 0).
        carryover: σ (s) of the dominance after a phone ends (> 0).
        unknown: ``"raise"`` (default) — a phone :func:`~emozone_lite.audio.phone_to_viseme`
            does not know raises ``ValueError``; ``"sil"`` — it counts as silence, with a
            ``UserWarning`` listing the unknown phones.

    Returns:
        ``[T, V]`` float32, rows summing to 1, columns in :data:`emozone_lite.audio.VISEMES` order.

    Raises:
        ValueError: entries that are not phones, bad intervals, non-positive ``n_frames``,
            ``fps``, ``anticipation`` or ``carryover``, or (with ``unknown="raise"``) an
            unknown phone.

    Examples:
        >>> ph = [Phone(0.0, 0.2, "sil"), Phone(0.2, 0.3, "m"), Phone(0.3, 0.6, "aa")]
        >>> W = viseme_weights(ph, 15)
        >>> W.shape, bool(np.allclose(W.sum(1), 1)), VISEMES[int(W[6].argmax())]
        ((15, 15), True, 'PP')
    """
    phones = _as_phones(phones)
    if unknown not in ("raise", "sil"):
        raise ValueError(f"unknown must be 'raise' or 'sil', got {unknown!r}")
    for name, val in (("anticipation", anticipation), ("carryover", carryover)):
        if not (math.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a positive time in seconds, got {val!r}")
    if n_frames is None:
        if not phones:
            raise ValueError("phones is empty; give n_frames to get an all-silence track")
        n_frames = max(1, int(round(phones[-1].end * fps)))
    n_frames, fps = _check_frames(n_frames, fps)
    V = len(VISEMES)
    t = np.arange(n_frames, dtype=np.float64) / fps
    W = np.zeros((n_frames, V))
    W[:, VISEMES.index("sil")] = 1e-6  # floor: far from every phone, silence
    bad = []
    for p in phones:
        if not (math.isfinite(p.start) and math.isfinite(p.end) and p.end >= p.start):
            raise ValueError(f"phone {p} has a bad interval; need finite start <= end (seconds)")
        try:
            vis = phone_to_viseme(p.phone)
        except ValueError:
            if unknown == "raise":
                raise
            bad.append(p.phone)
            vis = "sil"
        alpha, width = DOMINANCE[vis]
        before = np.clip(p.start - t, 0.0, None) / (anticipation * width)
        after = np.clip(t - p.end, 0.0, None) / (carryover * width)
        W[:, VISEMES.index(vis)] += alpha * np.exp(-0.5 * (before**2 + after**2))
    if bad:
        warnings.warn(f"unknown phones {sorted(set(bad))} treated as silence", UserWarning, stacklevel=2)
    return (W / W.sum(1, keepdims=True)).astype(np.float32)


def viseme_weights_from_audio(
    wave, sr: int, n_frames: int | None = None, fps: float = 25.0, *, smooth_frames: float = 1.0
) -> np.ndarray:
    """A crude viseme-weight *proxy* from the waveform alone (no labels).

    Honest about its limits: it cannot see lip closures (/p b m/) or the tongue; it only maps
    three acoustic cues to mouth postures, per video frame (:func:`emozone_lite.audio.features`
    timing):

    - **loudness** (``energy``, dB below the loudest frame): ``a`` = speaking at all
      (silence below ≈ -33 dB) and ``o`` = openness (loud frames are open vowels);
    - **frication** (mel power above 4 kHz vs below): ``f`` → ``SS`` (teeth together, spread);
    - **second-formant region** (1.5–3 kHz vs 0.3–1.2 kHz): low → rounded (``ρ`` → 1), high →
      spread.

    Weights: ``sil = 1 - a``, ``SS = a·f`` and the rest ``a·(1 - f)`` split over
    ``aa = o(1-ρ)``, ``O = oρ``, ``I = (1-o)(1-ρ)``, ``U = (1-o)ρ``; then a Gaussian blur of
    ``smooth_frames`` in time. Rows sum to 1.

    Args:
        wave: ``[S]`` mono samples.
        sr: sample rate in Hz.
        n_frames: ``T`` (default ``round(duration · fps)``).
        fps: video frame rate.
        smooth_frames: σ of the temporal blur in frames (0: none).

    Returns:
        ``[T, V]`` float32 in :data:`emozone_lite.audio.VISEMES` order.
    """
    import librosa
    from scipy.ndimage import gaussian_filter1d

    from .. import audio

    if isinstance(wave, Tensor):
        wave = wave.detach().cpu().numpy()
    feats = audio.features(np.asarray(wave), sr, fps, n_frames=n_frames)
    T = feats.n_frames
    rows = np.clip(np.rint(np.arange(T) * (audio.MEL_FPS / feats.fps)).astype(np.int64), 0, len(feats.log_mel) - 1)
    p = np.exp(feats.log_mel[rows].astype(np.float64))  # [T, n_mels] mel power at each frame
    f_hz = librosa.mel_frequencies(audio.N_MELS + 2, fmin=audio.FMIN, fmax=audio.FMAX)[1:-1]
    band = lambda lo, hi: p[:, (f_hz >= lo) & (f_hz < hi)].mean(1) + 1e-10
    fric = 1.0 / (1.0 + np.exp(-(np.log(band(4000, 8000) / band(0, 4000)) + 2.5)))
    rho = 1.0 / (1.0 + np.exp(np.log(band(1500, 3000) / band(300, 1200)) + 3.5))
    e = feats.energy.astype(np.float64)
    a = _smoothstep((e - 0.45) / 0.25)
    o = _smoothstep((e - 0.70) / 0.25)
    W = np.zeros((T, len(VISEMES)))
    col = VISEMES.index
    voiced = a * (1 - fric)
    W[:, col("sil")] = 1 - a
    W[:, col("SS")] = a * fric
    W[:, col("aa")] = voiced * o * (1 - rho)
    W[:, col("O")] = voiced * o * rho
    W[:, col("I")] = voiced * (1 - o) * (1 - rho)
    W[:, col("U")] = voiced * (1 - o) * rho
    if smooth_frames > 0:
        W = gaussian_filter1d(W, float(smooth_frames), axis=0, mode="nearest")
    return (W / W.sum(1, keepdims=True)).astype(np.float32)
