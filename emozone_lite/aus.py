"""Facial Action Units: the FACS table, AU tracks and authoring.

The toolkit uses the 17 intensity AUs that OpenFace 2.x estimates, always in the
order of :data:`AU_NAMES`, with intensities on FACS's 0–5 scale (0 = absent,
1 = trace "A" … 5 = maximum "E"). Video runs at 25 fps unless a track says
otherwise.

Three ways to get an AU track:

* **read** one: ``emozone_lite.openface.read_openface_csv`` reads OpenFace 2.x
  ``FeatureExtraction`` output (the CSV every talking-head project uses);
  ``write_openface_csv`` writes the full OpenFace layout back. Both are also
  importable from here (``aus.read_openface_csv``).
* **estimate** one from a face image or landmarks: ``emozone_lite.landmarks``.
* **author** one: emotion :data:`PRESETS`, :func:`from_keyframes` with eased
  transitions, and :func:`blink_track` for natural blinks (AU45).

Validation policy of :class:`AUTrack` (applies everywhere a track is built):

* NaN / inf intensities raise ``ValueError``. Missing or failed frames are only
  filled by the readers (``openface.read_openface_csv``,
  ``landmarks.LandmarkTrack.to_au_track``), which interpolate them from their
  neighbours with :func:`fill_failed_frames` (here, since every tracker needs it)
  and mark them in ``success``.
* Intensities outside [0, 5] are **clamped** into range with a ``UserWarning``
  saying how many values moved; pass ``strict=True`` to get a ``ValueError``
  instead.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass

import numpy as np

# --------------------------------------------------------------------------- #
# The FACS table
# --------------------------------------------------------------------------- #

#: The 17 OpenFace 2.x intensity AUs, in the order used everywhere in the toolkit.
AU_NAMES: tuple[str, ...] = (
    "AU01",
    "AU02",
    "AU04",
    "AU05",
    "AU06",
    "AU07",
    "AU09",
    "AU10",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU20",
    "AU23",
    "AU25",
    "AU26",
    "AU45",
)
N_AUS = len(AU_NAMES)
#: Intensity range of every AU (FACS A–E mapped to 1–5; 0 = absent).
AU_MIN, AU_MAX = 0.0, 5.0

_AU_INDEX = {name: i for i, name in enumerate(AU_NAMES)}


@dataclass(frozen=True)
class AUInfo:
    """One row of the FACS table.

    Attributes:
        id: ``"AU01"`` … ``"AU45"``.
        name: FACS name, e.g. ``"Inner brow raiser"``.
        muscle: the muscle(s) whose contraction (or relaxation) produces it.
        zone: ``"upper"`` (brows, lids), ``"lower"`` (lips, jaw, chin) or
            ``"synergy"`` (cheeks, nose sides, nasolabial region: shared by
            expression and speech; see docs/design.md, "Zones").
    """

    id: str
    name: str
    muscle: str
    zone: str


#: The FACS table (Ekman, Friesen & Hager 2002) for the 17 AUs, in :data:`AU_NAMES` order.
FACS: dict[str, AUInfo] = {
    a.id: a
    for a in (
        AUInfo("AU01", "Inner brow raiser", "frontalis, pars medialis", "upper"),
        AUInfo("AU02", "Outer brow raiser", "frontalis, pars lateralis", "upper"),
        AUInfo("AU04", "Brow lowerer", "corrugator supercilii, depressor supercilii, procerus", "upper"),
        AUInfo("AU05", "Upper lid raiser", "levator palpebrae superioris", "upper"),
        AUInfo("AU06", "Cheek raiser", "orbicularis oculi, pars orbitalis", "synergy"),
        AUInfo("AU07", "Lid tightener", "orbicularis oculi, pars palpebralis", "upper"),
        AUInfo("AU09", "Nose wrinkler", "levator labii superioris alaeque nasi", "synergy"),
        AUInfo("AU10", "Upper lip raiser", "levator labii superioris", "synergy"),
        AUInfo("AU12", "Lip corner puller", "zygomaticus major", "synergy"),
        AUInfo("AU14", "Dimpler", "buccinator", "synergy"),
        AUInfo("AU15", "Lip corner depressor", "depressor anguli oris (triangularis)", "lower"),
        AUInfo("AU17", "Chin raiser", "mentalis", "lower"),
        AUInfo("AU20", "Lip stretcher", "risorius with platysma", "lower"),
        AUInfo("AU23", "Lip tightener", "orbicularis oris", "lower"),
        AUInfo(
            "AU25", "Lips part", "depressor labii inferioris, or relaxation of mentalis / orbicularis oris", "lower"
        ),
        AUInfo("AU26", "Jaw drop", "masseter; relaxed temporalis and internal pterygoid", "lower"),
        AUInfo(
            "AU45", "Blink", "relaxation of levator palpebrae superioris; orbicularis oculi, pars palpebralis", "upper"
        ),
    )
}

#: TalkingGaussian's split for the AU error metric (AUE-U / AUE-L).
UPPER_AUS: tuple[str, ...] = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU45")
LOWER_AUS: tuple[str, ...] = ("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26")


def au_index(name: str) -> int:
    """Column of ``name`` in :data:`AU_NAMES` (``"AU1"``, ``"au01"`` and ``"AU01_r"`` also work).

    Raises:
        ValueError: for a name that is not one of the 17 AUs.

    Examples:
        >>> au_index("AU12"), au_index("au1"), au_index("AU45_r")
        (8, 0, 16)
    """
    key = _normalise_au_name(name)
    if key not in _AU_INDEX:
        raise ValueError(f"unknown AU {name!r}; expected one of {', '.join(AU_NAMES)}")
    return _AU_INDEX[key]


def au_indices(names: Iterable[str]) -> np.ndarray:
    """Columns of several AUs, e.g. ``values[:, au_indices(UPPER_AUS)]``. Returns ``[k]`` int64."""
    return np.array([au_index(n) for n in names], dtype=np.int64)


def _normalise_au_name(name: str) -> str:
    m = re.fullmatch(r"\s*AU0*(\d+)(?:_[rc])?\s*", str(name), flags=re.IGNORECASE)
    return f"AU{int(m.group(1)):02d}" if m else str(name)


# --------------------------------------------------------------------------- #
# AUTrack
# --------------------------------------------------------------------------- #


def _clamp_or_raise(values: np.ndarray, strict: bool, what: str) -> np.ndarray:
    bad = (values < AU_MIN) | (values > AU_MAX)
    if bad.any():
        n = int(bad.sum())
        lo, hi = float(values.min()), float(values.max())
        msg = f"{what}: {n} intensit{'y' if n == 1 else 'ies'} outside [0, 5] (min {lo:.3g}, max {hi:.3g})"
        if strict:
            raise ValueError(msg + "; clip them first or pass strict=False to clamp")
        warnings.warn(msg + "; clamped into [0, 5]", UserWarning, stacklevel=4)
        values = np.clip(values, AU_MIN, AU_MAX)
    return values


@dataclass(eq=False)
class AUTrack:
    """A time series of the 17 AU intensities.

    Attributes:
        values: ``[T, 17]`` float32 intensities in [0, 5], columns in :data:`AU_NAMES` order.
        fps: frames per second (25 by default).
        confidence: optional ``[T]`` float32 tracker confidence (OpenFace's ``confidence``).
        success: optional ``[T]`` bool; False marks frames that were filled in by
            interpolation (failed tracking), not measured.
        strict: init-only. Out-of-range intensities are clamped with a warning
            (default) or raise ``ValueError`` when True. NaN / inf always raise.

    Examples:
        >>> tr = AUTrack(np.zeros((50, 17)), fps=25.0)
        >>> len(tr), tr.duration, tr.au("AU12").shape
        (50, 2.0, (50,))
    """

    values: np.ndarray
    fps: float = 25.0
    confidence: np.ndarray | None = None
    success: np.ndarray | None = None
    strict: InitVar[bool] = False

    def __post_init__(self, strict: bool) -> None:
        v = np.asarray(self.values)
        if v.ndim == 1 and v.shape[0] == N_AUS:
            raise ValueError(f"values: expected [T, {N_AUS}], got one frame of shape {v.shape}; use values[None]")
        if v.ndim != 2 or v.shape[1] != N_AUS:
            raise ValueError(f"values: expected shape [T, {N_AUS}] (one column per AU), got {v.shape}")
        if v.shape[0] < 1:
            raise ValueError("values: an AU track needs at least one frame, got T = 0")
        if not np.issubdtype(v.dtype, np.number) and v.dtype != bool:
            raise ValueError(f"values: expected numbers, got dtype {v.dtype}")
        v = v.astype(np.float32)  # always a fresh copy
        if not np.isfinite(v).all():
            rows = np.unique(np.nonzero(~np.isfinite(v))[0])
            raise ValueError(
                f"values contain NaN/inf at frame(s) {rows[:10].tolist()}"
                f"{' …' if rows.size > 10 else ''}; fill them first "
                "(fill_failed_frames, or read_openface_csv which interpolates failed frames)"
            )
        self.values = _clamp_or_raise(v, strict, "values")
        fps = float(self.fps)
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps: expected a positive number, got {self.fps!r}")
        self.fps = fps
        T = v.shape[0]
        if self.confidence is not None:
            c = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
            if c.shape != (T,):
                raise ValueError(f"confidence: expected shape [{T}], got {np.shape(self.confidence)}")
            self.confidence = c
        if self.success is not None:
            s = np.asarray(self.success)
            if s.shape != (T,):
                raise ValueError(f"success: expected shape [{T}], got {s.shape}")
            self.success = s.astype(bool)

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        return f"AUTrack(T={len(self)}, fps={self.fps:g}, duration={self.duration:.3f} s)"

    @property
    def duration(self) -> float:
        """Length in seconds, ``T / fps`` (each frame lasts ``1 / fps``)."""
        return len(self) / self.fps

    @property
    def times(self) -> np.ndarray:
        """``[T]`` float64 frame times in seconds, ``t / fps``."""
        return np.arange(len(self)) / self.fps

    def au(self, name: str) -> np.ndarray:
        """The ``[T]`` intensity series of one AU (a copy)."""
        return self.values[:, au_index(name)].copy()

    def __getitem__(self, index):
        """``track[i]`` → ``[17]`` intensities of frame i; ``track[a:b]`` → a shorter AUTrack."""
        if isinstance(index, slice):
            rows = np.arange(len(self))[index]
            if rows.size == 0:
                raise ValueError(f"slice {index} of a {len(self)}-frame track is empty")
            return self._take(rows)
        if isinstance(index, (int, np.integer)):
            return self.values[index].copy()
        raise TypeError(f"AUTrack indices must be an int or a slice, got {type(index).__name__}")

    def _take(self, rows: np.ndarray, fps: float | None = None) -> AUTrack:
        return AUTrack(
            self.values[rows],
            fps=self.fps if fps is None else fps,
            confidence=None if self.confidence is None else self.confidence[rows],
            success=None if self.success is None else self.success[rows],
        )

    def with_au(self, name: str, series) -> AUTrack:
        """A copy with AU ``name`` replaced by ``series`` (a scalar or ``[T]``)."""
        j = au_index(name)
        s = np.asarray(series, dtype=np.float32)
        if s.ndim == 0:
            s = np.full(len(self), float(s), dtype=np.float32)
        if s.shape != (len(self),):
            raise ValueError(f"series for {name}: expected a scalar or shape [{len(self)}], got {s.shape}")
        v = self.values.copy()
        v[:, j] = s
        return AUTrack(v, self.fps, self.confidence, self.success)

    @staticmethod
    def concatenate(tracks: Sequence[AUTrack]) -> AUTrack:
        """Tracks one after the other (all at the same fps)."""
        tracks = list(tracks)
        if not tracks:
            raise ValueError("concatenate: need at least one track")
        fps = tracks[0].fps
        for k, t in enumerate(tracks):
            if not isinstance(t, AUTrack):
                raise TypeError(f"concatenate: item {k} is a {type(t).__name__}, not an AUTrack")
            if not math.isclose(t.fps, fps, rel_tol=1e-6):
                raise ValueError(
                    f"concatenate: track {k} runs at {t.fps:g} fps but track 0 at {fps:g} fps; "
                    "resample() them to one rate first"
                )
        conf = None
        if any(t.confidence is not None for t in tracks):
            conf = np.concatenate(
                [t.confidence if t.confidence is not None else np.ones(len(t), np.float32) for t in tracks]
            )
        succ = None
        if any(t.success is not None for t in tracks):
            succ = np.concatenate([t.success if t.success is not None else np.ones(len(t), bool) for t in tracks])
        return AUTrack(np.concatenate([t.values for t in tracks]), fps, conf, succ)

    def __add__(self, other: AUTrack) -> AUTrack:
        """``a + b`` is ``AUTrack.concatenate([a, b])`` (time concatenation, not a sum)."""
        if not isinstance(other, AUTrack):
            return NotImplemented
        return AUTrack.concatenate([self, other])

    # --------------------------------------------------------------- signal ops
    def resample(self, fps: float | None = None, *, n_frames: int | None = None) -> AUTrack:
        """Linear interpolation in time to a new frame rate or frame count.

        Frame ``i`` sits at time ``i / fps``. With ``fps`` the duration is kept
        (``round(T · fps_new / fps)`` frames); with ``n_frames`` the duration is kept
        and the rate becomes ``n_frames / duration``. Beyond the last frame the last
        value is held. ``confidence`` is interpolated; ``success`` takes the nearest frame.
        """
        if (fps is None) == (n_frames is None):
            raise ValueError("resample: give exactly one of fps or n_frames")
        if fps is not None:
            if not (isinstance(fps, (int, float, np.number)) and math.isfinite(fps) and fps > 0):
                raise ValueError(f"resample: fps must be a positive number, got {fps!r}")
            n = max(1, int(round(len(self) * float(fps) / self.fps)))
            new_fps = float(fps)
        else:
            if not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
                raise ValueError(f"resample: n_frames must be a positive int, got {n_frames!r}")
            n = int(n_frames)
            # n / duration is fps again for n = T only up to rounding; keep the rate exact there
            new_fps = self.fps if n == len(self) else n / self.duration
        t_old = self.times
        t_new = np.arange(n) / new_fps
        vals = np.stack([np.interp(t_new, t_old, self.values[:, j]) for j in range(N_AUS)], axis=1)
        conf = None if self.confidence is None else np.interp(t_new, t_old, self.confidence)
        succ = None
        if self.success is not None:
            nearest = np.clip(np.rint(t_new * self.fps).astype(int), 0, len(self) - 1)
            succ = self.success[nearest]
        return AUTrack(vals, new_fps, conf, succ)

    def smooth(self, sigma_frames: float) -> AUTrack:
        """Gaussian smoothing in time (``scipy.ndimage.gaussian_filter1d``, edges held).

        A Gaussian is a convex average, so a valid track stays inside [0, 5].
        ``sigma_frames = 0`` returns a copy.
        """
        if not (math.isfinite(sigma_frames) and sigma_frames >= 0):
            raise ValueError(f"smooth: sigma_frames must be >= 0, got {sigma_frames!r}")
        if sigma_frames == 0:
            return self._take(np.arange(len(self)))
        from scipy.ndimage import gaussian_filter1d

        v = gaussian_filter1d(self.values.astype(np.float64), float(sigma_frames), axis=0, mode="nearest")
        return AUTrack(np.clip(v, AU_MIN, AU_MAX), self.fps, self.confidence, self.success)

    def to_tensor(self, device=None, dtype=None):
        """The intensities as a ``torch.Tensor`` ``[T, 17]`` (float32 unless ``dtype``)."""
        import torch

        return torch.as_tensor(self.values, dtype=dtype or torch.float32, device=device)


def fill_failed_frames(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Replace the rows where ``ok`` is False by linear interpolation between good rows.

    Before the first / after the last good frame the nearest good value is held.
    NaNs inside good rows are treated as failed too.

    Args:
        values: ``[T, K]`` float.
        ok: ``[T]`` bool, True for frames that were measured successfully.

    Returns:
        ``[T, K]`` float32 with no NaN.

    Raises:
        ValueError: when no frame is good (nothing to interpolate from).

    Examples:
        >>> fill_failed_frames(np.array([[0.], [9.], [2.]]), np.array([True, False, True])).ravel()
        array([0., 1., 2.], dtype=float32)
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.asarray(ok, dtype=bool)
    if v.ndim != 2 or ok.shape != (v.shape[0],):
        raise ValueError(f"fill_failed_frames: expected values [T, K] and ok [T], got {v.shape} and {ok.shape}")
    ok = ok & np.isfinite(v).all(axis=1)
    if not ok.any():
        raise ValueError("no successfully tracked frame to interpolate from (all frames failed)")
    if ok.all():
        return v.astype(np.float32)
    t = np.arange(v.shape[0])
    out = np.stack([np.interp(t, t[ok], v[ok, j]) for j in range(v.shape[1])], axis=1)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- #
# Authoring: presets, keyframes, blinks
# --------------------------------------------------------------------------- #

#: EMFACS-style emotion prototypes at a clearly displayed level (their defining AUs at "D",
#: ≈ 4 of 5: a surprise must read as a surprise), plus the photo's own expression.
#: ``preset(name, s)`` scales them. Notes: *surprise* and *fear* include AU25 because a jaw
#: drop (AU26) parts the lips; *contempt* is unilateral in reality (R12A + R14A) but the 17
#: AUs here are bilateral, so it is applied to both sides; *disgust* uses AU09 + AU15 + AU10
#: (EMFACS lists 9 or 10 with 15/16/17); *anger* is the EMFACS prototype 4+5+7+17+23 (Cohn et
#: al. 2005's listing; 4+5+7+23 is another): a face detector cannot read AU05 and AU07 together
#: (raised upper and lower lids cancel in the eye aperture, ``benchmarks/expression_visibility.py``),
#: and it does read the chin raiser. *as photographed* reproduces the bundled photo's
#: smile on the neutral head: AU07, AU10 and AU12 as MediaPipe's blendshapes read the photo
#: (1.55, 2.36, 4.51), AU25 for its lips parted over the teeth (a 1 cm inner-lip gap on the
#: registered mesh, which the blendshapes under-read as 0.31 because the teeth show).
PRESETS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"AU06": 3.5, "AU12": 4.5},
    "surprise": {"AU01": 4.0, "AU02": 4.0, "AU05": 3.5, "AU25": 2.5, "AU26": 4.0},
    "anger": {"AU04": 4.0, "AU05": 2.5, "AU07": 4.0, "AU17": 2.5, "AU23": 4.0},
    "sadness": {"AU01": 4.0, "AU04": 2.5, "AU15": 4.0},
    "fear": {"AU01": 4.0, "AU02": 3.5, "AU04": 2.5, "AU05": 4.0, "AU07": 2.5, "AU20": 4.0, "AU25": 2.5, "AU26": 3.5},
    "disgust": {"AU09": 4.0, "AU10": 2.5, "AU15": 2.5},
    "contempt": {"AU12": 2.5, "AU14": 4.0},
    "as photographed": {"AU07": 1.5, "AU10": 2.5, "AU12": 4.5, "AU25": 3.0},
}
#: The eight emotion presets (neutral and the seven emotions; not the photo's expression).
EMOTION_PRESETS: tuple[str, ...] = ("neutral", "happy", "surprise", "anger", "sadness", "fear", "disgust", "contempt")


def preset(name: str, intensity: float = 1.0) -> np.ndarray:
    """The ``[17]`` float32 AU vector of an emotion preset, scaled by ``intensity``.

    Values are clipped to 5 (so ``intensity`` up to ≈ 1.4 keeps the shape).

    Examples:
        >>> v = preset("happy")
        >>> float(v[au_index("AU12")]), float(v[au_index("AU01")])
        (3.5, 0.0)
    """
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if not (math.isfinite(intensity) and intensity >= 0):
        raise ValueError(f"preset intensity must be >= 0, got {intensity!r}")
    return np.clip(au_vector(PRESETS[key]) * np.float32(intensity), AU_MIN, AU_MAX).astype(np.float32)


KeyValue = Mapping[str, float] | Sequence[float] | np.ndarray | str


def au_vector(value: KeyValue, *, strict: bool = True) -> np.ndarray:
    """A ``[17]`` float32 AU vector from a dict ``{"AU12": 3}``, a ``[17]`` array or a preset name.

    AUs absent from a dict are 0. With ``strict`` (default) values outside [0, 5]
    raise ``ValueError``; otherwise they are clamped with a warning.
    """
    if isinstance(value, str):
        return preset(value)
    if isinstance(value, Mapping):
        v = np.zeros(N_AUS, dtype=np.float32)
        for k, x in value.items():
            x = float(x)
            if not math.isfinite(x):
                raise ValueError(f"AU value for {k} is {x}; expected a number in [0, 5]")
            v[au_index(k)] = x
    else:
        v = np.asarray(value, dtype=np.float32)
        if v.shape != (N_AUS,):
            raise ValueError(f"AU vector: expected shape [{N_AUS}] (one value per AU in AU_NAMES order), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("AU vector contains NaN/inf; expected numbers in [0, 5]")
        v = v.copy()
    return _clamp_or_raise(v, strict, "AU vector")


_EASINGS = {
    "linear": lambda u: u,
    "cosine": lambda u: 0.5 - 0.5 * np.cos(np.pi * u),
    "cubic": lambda u: u * u * (3.0 - 2.0 * u),  # smoothstep
}


def from_keyframes(
    keyframes: Sequence[tuple[float, KeyValue]],
    duration_s: float,
    fps: float = 25.0,
    easing: str = "cosine",
) -> AUTrack:
    """Author an AU track from keyframes with eased transitions.

    Args:
        keyframes: ``[(time_s, value), …]`` where value is a dict ``{"AU12": 3.0}``
            (missing AUs 0), a ``[17]`` vector or a preset name (``"happy"``).
            Times must be distinct and within ``[0, duration_s]``; order does not matter.
        duration_s: track length; ``round(duration_s · fps)`` frames at ``t / fps``.
        fps: frame rate.
        easing: ``"cosine"`` (½ − ½cos πu, zero velocity at keyframes), ``"cubic"``
            (smoothstep 3u² − 2u³) or ``"linear"``.

    Before the first and after the last keyframe the value is held. Eased
    interpolation is a convex blend, so the track stays in [0, 5].

    Examples:
        >>> tr = from_keyframes([(0.0, "neutral"), (1.0, "happy")], duration_s=2.0)
        >>> len(tr), float(tr.au("AU12")[0]), float(tr.au("AU12")[-1])
        (50, 0.0, 3.5)
    """
    if easing not in _EASINGS:
        raise ValueError(f"unknown easing {easing!r}; choose one of {', '.join(_EASINGS)}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be > 0, got {duration_s!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if not keyframes:
        raise ValueError("from_keyframes: need at least one keyframe (time_s, value)")
    kf = []
    for k, item in enumerate(keyframes):
        try:
            t, val = item
        except (TypeError, ValueError):
            raise ValueError(f"keyframe {k}: expected a pair (time_s, value), got {item!r}") from None
        t = float(t)
        if not (math.isfinite(t) and 0.0 <= t <= duration_s):
            raise ValueError(f"keyframe {k}: time {t} s is outside [0, {duration_s}] s")
        kf.append((t, au_vector(val)))
    kf.sort(key=lambda x: x[0])
    times = np.array([t for t, _ in kf])
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"keyframe times must be distinct, got {sorted(times.tolist())}")
    vals = np.stack([v for _, v in kf])
    T = max(1, int(round(duration_s * fps)))
    t = np.arange(T) / fps
    seg = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 1)
    out = vals[seg].astype(np.float64)
    inner = (t > times[0]) & (t < times[-1])
    if inner.any():
        s = seg[inner]
        u = (t[inner] - times[s]) / (times[s + 1] - times[s])
        w = _EASINGS[easing](u)[:, None]
        out[inner] = (1 - w) * vals[s] + w * vals[s + 1]
    return AUTrack(out, fps=fps)


def blink_track(
    track: AUTrack | int,
    *,
    fps: float = 25.0,
    rate_per_min: float = 17.0,
    blink_s: float = 0.3,
    peak: float = 4.5,
    min_interval_s: float = 1.0,
    seed: int | None = 0,
) -> AUTrack:
    """Add natural, seeded AU45 blinks to a track (or make a neutral track of ``n`` frames).

    Inter-blink intervals are ``min_interval_s`` plus an exponential with mean
    ``60 / rate_per_min − min_interval_s`` (adults blink ~15–20 times a minute). A
    blink closes fast (40 % of ``blink_s``) and reopens slower (60 %), each half a
    raised cosine; its peak is ``peak`` × U(0.8, 1). The result's AU45 is the maximum
    of the existing AU45 and the blinks.

    Args:
        track: an :class:`AUTrack`, or a frame count for a neutral track at ``fps``.
        fps: frame rate when ``track`` is a frame count (ignored otherwise).
        rate_per_min: mean blinks per minute.
        blink_s: blink duration in seconds.
        peak: AU45 intensity of a full blink (≤ 5).
        min_interval_s: refractory time between blinks.
        seed: random seed (same seed → same blinks).
    """
    if isinstance(track, (int, np.integer)):
        if track < 1:
            raise ValueError(f"blink_track: need at least one frame, got {track}")
        track = AUTrack(np.zeros((int(track), N_AUS), np.float32), fps=fps)
    if not isinstance(track, AUTrack):
        raise TypeError(f"blink_track: expected an AUTrack or a frame count, got {type(track).__name__}")
    mean_interval = 60.0 / rate_per_min if rate_per_min > 0 else math.inf
    if not (0 < peak <= AU_MAX):
        raise ValueError(f"blink_track: peak must be in (0, 5], got {peak}")
    if not (blink_s > 0 and min_interval_s >= 0 and mean_interval > min_interval_s):
        raise ValueError(
            f"blink_track: need blink_s > 0 and 60 / rate_per_min > min_interval_s "
            f"(got blink_s={blink_s}, rate_per_min={rate_per_min}, min_interval_s={min_interval_s})"
        )
    rng = np.random.default_rng(seed)
    t = track.times
    blinks = np.zeros(len(track))
    start = rng.uniform(0.2, mean_interval)
    close, reopen = 0.4 * blink_s, 0.6 * blink_s
    while start < track.duration:
        a = peak * rng.uniform(0.8, 1.0)
        dt = t - start
        c = (dt >= 0) & (dt < close)
        o = (dt >= close) & (dt < blink_s)
        shape = np.zeros_like(t)
        shape[c] = 0.5 - 0.5 * np.cos(np.pi * dt[c] / close)
        shape[o] = 0.5 + 0.5 * np.cos(np.pi * (dt[o] - close) / reopen)
        blinks = np.maximum(blinks, a * shape)
        start += min_interval_s + rng.exponential(mean_interval - min_interval_s)
    j = au_index("AU45")
    return track.with_au("AU45", np.maximum(track.values[:, j], blinks))


# --------------------------------------------------------------------------- #
# OpenFace CSV I/O: lives in emozone_lite.openface, re-exported here
# --------------------------------------------------------------------------- #

#: Names that moved to :mod:`emozone_lite.openface`; ``aus.<name>`` still works. They are
#: looked up when first read (``openface`` imports this module, so importing it here at
#: import time would be a cycle).
_OPENFACE_NAMES = (
    "OPENFACE_AU_C",
    "OPENFACE_COLUMNS",
    "openface_columns",
    "read_openface_csv",
    "write_openface_csv",
    "_read_text",
    "_csv_rows",
    "_fps_from_timestamps",
    "_AU_R",
)


def __getattr__(name: str):
    if name in _OPENFACE_NAMES:
        from . import openface

        return getattr(openface, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_OPENFACE_NAMES))
