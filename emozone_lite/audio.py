"""Speech → per-video-frame features, and phone / viseme timelines from label files.

The student model sees speech through :func:`features`: a log-mel spectrogram at 50 Hz cut
into 16-step windows, **one window per video frame**, centred on that frame — the layout
talking-head models (AD-NeRF, RAD-NeRF, ER-NeRF, TalkingGaussian) use for DeepSpeech
features — plus a per-frame energy. Timing conventions:

- video frame ``t`` sits at time ``t / fps`` seconds; a clip of ``duration`` seconds has
  ``n_frames = round(duration * fps)`` frames;
- mel frame ``k`` is centred at ``(k + 0.5) / 50`` s (20 ms hop, 25 ms Hann window), so the
  16 mel frames ``2t - 8 … 2t + 7`` are centred exactly on video frame ``t`` at 25 fps;
  windows that run past either end repeat the edge mel frame.

Features are always computed at :data:`FEATURE_SR` (16 kHz); :func:`features` resamples other
rates first, so a model sees the same features whatever the recording's rate.

Phones come from HTK / HTS ``.lab`` files (:func:`read_phone_labels`) and map to the 15
Oculus/Meta visemes (:data:`VISEMES`, :data:`PHONE_TO_VISEME`); :func:`viseme_track` gives one
viseme index per video frame. The teacher rig (``emozone_lite.teacher``) turns visemes into
mouth shapes.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = [
    "FEATURE_SR",
    "MEL_FPS",
    "N_MELS",
    "WINDOW",
    "N_FFT",
    "WIN_LENGTH",
    "FMIN",
    "FMAX",
    "LOG_FLOOR",
    "ENERGY_RANGE_DB",
    "SILENCE_DBFS",
    "AudioFeatures",
    "load_audio",
    "log_mel_spectrogram",
    "features",
    "features_from_file",
    "Phone",
    "read_phone_labels",
    "VISEMES",
    "PHONE_TO_VISEME",
    "phone_to_viseme",
    "viseme_track",
]

#: Sample rate (Hz) features are computed at; :func:`features` resamples to it.
FEATURE_SR = 16000
#: Mel frames per second (hop = ``FEATURE_SR // MEL_FPS`` = 320 samples = 20 ms).
MEL_FPS = 50
#: Mel bands. 80 (as in Tacotron / Wav2Lip) resolves formants finely enough for visemes.
N_MELS = 80
#: Mel frames per window (0.32 s of context around each video frame).
WINDOW = 16
#: FFT size and analysis window (25 ms Hann) at :data:`FEATURE_SR`.
N_FFT = 512
WIN_LENGTH = 400
#: Mel filterbank range in Hz (speech band; below Nyquist of 16 kHz).
FMIN = 55.0
FMAX = 7600.0
#: Mel power floor before the natural log (about the noise floor of 16-bit audio),
#: so ``log_mel >= log(LOG_FLOOR) ≈ -23.03``.
LOG_FLOOR = 1e-10
#: Energy is RMS in dB relative to the loudest video frame, mapped from
#: ``[-ENERGY_RANGE_DB, 0]`` dB to ``[0, 1]`` (clipped).
ENERGY_RANGE_DB = 60.0
#: Audio whose loudest frame is below this RMS level (dBFS) counts as silent: features are
#: still computed, energy is 0 everywhere, and a ``UserWarning`` is issued.
SILENCE_DBFS = -100.0

_HOP = FEATURE_SR // MEL_FPS
_EXTS = ".wav .flac .ogg .mp3"


# ----------------------------------------------------------------------------- loading
def load_audio(path: str | PathLike, sr: int = FEATURE_SR) -> np.ndarray:
    """Read an audio file as mono float32 at ``sr`` Hz.

    WAV, FLAC, OGG/Vorbis and MP3 are read with soundfile (libsndfile); anything it cannot
    read falls back to ``librosa.load`` (audioread). Channels are averaged; other sample
    rates are resampled with soxr (``librosa.resample``, ``soxr_hq``).

    Args:
        path: audio file.
        sr: output sample rate in Hz (> 0).

    Returns:
        ``[S]`` float32 samples, nominally in [-1, 1].

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be decoded, holds no samples, or holds NaN/inf samples.

    Examples:
        >>> from emozone_lite.utils import data_path
        >>> y = load_audio(data_path("arctic_a0009.wav"))
        >>> y.dtype, y.shape
        (dtype('float32'), (49520,))
    """
    sr = _check_rate(sr, "sr")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"audio file not found: {p}")
    if p.is_dir():
        raise ValueError(f"audio path {p} is a directory; expected an audio file ({_EXTS})")
    y, file_sr = _decode(p)
    if y.shape[0] == 0:
        raise ValueError(f"audio file {p} holds no samples (zero length)")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"audio file {p} holds NaN or infinite samples")
    y = y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]
    if file_sr != sr:
        import librosa

        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


def _decode(p: Path) -> tuple[np.ndarray, int]:
    """``([S, C] float32, sample rate)`` via soundfile, else librosa/audioread."""
    import soundfile as sf

    try:
        y, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
        return y, int(file_sr)
    except Exception as sf_err:  # libsndfile cannot read it: try audioread (e.g. old mp3)
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, file_sr = librosa.load(str(p), sr=None, mono=False, dtype=np.float32)
        except Exception as ar_err:
            raise ValueError(
                f"could not decode audio file {p} ({p.stat().st_size} bytes): soundfile said "
                f"{sf_err!s}; audioread said {type(ar_err).__name__}: {ar_err!s}. "
                f"Expected a {_EXTS} file."
            ) from ar_err
        y = np.atleast_2d(y).T  # librosa gives [C, S] or [S]
        return y.astype(np.float32), int(file_sr)


def _check_rate(x: float, name: str) -> int:
    if not np.isscalar(x) or not np.isfinite(x) or x <= 0 or int(x) != x:
        raise ValueError(f"{name} must be a positive integer sample rate in Hz, got {x!r}")
    return int(x)


def _check_wave(wave: np.ndarray) -> np.ndarray:
    w = np.asarray(wave)
    if w.ndim != 1:
        raise ValueError(
            f"wave must be [S] mono samples, got shape {w.shape}; mix channels first "
            "(load_audio does) or pass wave.mean(axis=...)"
        )
    if w.shape[0] == 0:
        raise ValueError("wave is empty (zero samples)")
    if not np.issubdtype(w.dtype, np.number) or np.iscomplexobj(w):
        raise ValueError(f"wave must hold real numbers, got dtype {w.dtype}")
    w = w.astype(np.float32)
    if not np.all(np.isfinite(w)):
        raise ValueError("wave holds NaN or infinite samples")
    return w


# ----------------------------------------------------------------------------- features
@dataclass(frozen=True)
class AudioFeatures:
    """Speech features aligned to a video.

    Attributes:
        mel_windows: ``[T, WINDOW, N_MELS]`` float32 log-mel windows; window ``t`` is
            centred on video frame ``t`` (time ``t / fps``).
        energy: ``[T]`` float32 in [0, 1]: RMS over the video frame, dB relative to the
            loudest frame, ``-ENERGY_RANGE_DB`` dB → 0.
        log_mel: ``[F, N_MELS]`` float32 natural-log mel power at 50 Hz; row ``k`` is centred
            at ``(k + 0.5) / MEL_FPS`` s and ``F = ceil(S / 320)``.
        n_frames: ``T``, ``round(duration * fps)`` unless given explicitly.
        fps: video frame rate.
        sr: sample rate the features were computed at (always :data:`FEATURE_SR`).
        duration: length of the audio in seconds.
    """

    mel_windows: np.ndarray
    energy: np.ndarray
    log_mel: np.ndarray
    n_frames: int
    fps: float
    sr: int
    duration: float

    @property
    def frame_times(self) -> np.ndarray:
        """``[T]`` time of each video frame in seconds (``t / fps``)."""
        return np.arange(self.n_frames) / self.fps

    @property
    def mel_times(self) -> np.ndarray:
        """``[F]`` centre time of each log-mel row in seconds."""
        return (np.arange(self.log_mel.shape[0]) + 0.5) / MEL_FPS


def log_mel_spectrogram(wave: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram of 16 kHz speech at 50 Hz.

    Frames are 25 ms Hann windows (zero-padded to a 512-point FFT) every 20 ms; frame ``k``
    is centred on sample ``(k + 0.5) * 320`` (the signal is zero-padded at both ends), so
    there are ``ceil(S / 320)`` frames. Power spectrum → :data:`N_MELS` Slaney mel bands
    (55–7600 Hz) → ``log(max(mel, LOG_FLOOR))``.

    Args:
        wave: ``[S]`` mono samples at :data:`FEATURE_SR`.

    Returns:
        ``[F, N_MELS]`` float32, ``F = ceil(S / 320)``.
    """
    import librosa

    w = _check_wave(wave)
    n = -(-w.shape[0] // _HOP)  # ceil
    left = N_FFT // 2 - _HOP // 2  # frame k (centre k*hop + N_FFT/2 in the padded signal) → (k+.5)*hop
    right = (n - 1) * _HOP + N_FFT - left - w.shape[0]
    padded = np.pad(w, (left, max(right, 0)))
    spec = librosa.stft(padded, n_fft=N_FFT, hop_length=_HOP, win_length=WIN_LENGTH, window="hann", center=False)[:, :n]
    power = np.abs(spec) ** 2
    mel = _mel_basis() @ power
    return np.log(np.maximum(mel, LOG_FLOOR)).T.astype(np.float32)


_MEL_BASIS: np.ndarray | None = None


def _mel_basis() -> np.ndarray:
    global _MEL_BASIS
    if _MEL_BASIS is None:
        import librosa

        _MEL_BASIS = librosa.filters.mel(sr=FEATURE_SR, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
    return _MEL_BASIS


def _window_index(n_frames: int, fps: float, n_mel: int) -> np.ndarray:
    """``[T, WINDOW]`` mel-row indices of each video frame's window (edge-clipped)."""
    centre = np.rint(np.arange(n_frames) * (MEL_FPS / fps)).astype(np.int64)
    idx = centre[:, None] + np.arange(-WINDOW // 2, WINDOW // 2)[None, :]
    return np.clip(idx, 0, n_mel - 1)


def _frame_energy(w: np.ndarray, n_frames: int, fps: float) -> tuple[np.ndarray, float]:
    """``[T]`` RMS (linear) of the samples within half a frame of each ``t / fps``."""
    s = w.shape[0]
    t = np.arange(n_frames) / fps
    lo = np.clip(np.rint((t - 0.5 / fps) * FEATURE_SR).astype(np.int64), 0, s - 1)
    hi = np.clip(np.rint((t + 0.5 / fps) * FEATURE_SR).astype(np.int64), lo + 1, s)
    c = np.concatenate([[0.0], np.cumsum(w.astype(np.float64) ** 2)])
    rms = np.sqrt(np.maximum(c[hi] - c[lo], 0.0) / (hi - lo))
    return rms, float(rms.max())


def features(wave: np.ndarray, sr: int, fps: float = 25.0, *, n_frames: int | None = None) -> AudioFeatures:
    """Per-video-frame speech features: 16-step log-mel windows and energy.

    Args:
        wave: ``[S]`` mono samples at ``sr`` Hz (resampled to :data:`FEATURE_SR` if needed).
        sr: sample rate of ``wave`` in Hz.
        fps: video frame rate (> 0). At 25 fps window ``t`` is mel rows ``2t-8 … 2t+7``
            (stride 2); at other rates the centre row is ``round(t * 50 / fps)``.
        n_frames: number of video frames; default ``round(duration * fps)``. Give it to match
            an existing video exactly (frames past the audio repeat its last mel row).

    Returns:
        :class:`AudioFeatures` with ``mel_windows [T, 16, 80]``, ``energy [T]``,
        ``log_mel [F, 80]``.

    Raises:
        ValueError: ``wave`` not 1-D, empty, non-finite or shorter than half a video frame;
            ``sr`` / ``fps`` / ``n_frames`` not positive.

    Warns:
        UserWarning: the audio is silent (loudest frame below :data:`SILENCE_DBFS` dBFS);
            features are returned with energy 0 everywhere.

    Examples:
        >>> import numpy as np
        >>> t = np.arange(16000) / 16000
        >>> f = features(0.1 * np.sin(2 * np.pi * 220 * t), 16000)
        >>> f.n_frames, f.mel_windows.shape, f.energy.shape, f.log_mel.shape
        (25, (25, 16, 80), (25,), (50, 80))
    """
    w = _check_wave(wave)
    sr = _check_rate(sr, "sr")
    if not np.isscalar(fps) or not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive frame rate, got {fps!r}")
    fps = float(fps)
    duration = w.shape[0] / sr
    if sr != FEATURE_SR:
        import librosa

        w = librosa.resample(w, orig_sr=sr, target_sr=FEATURE_SR, res_type="soxr_hq")
        w = np.ascontiguousarray(w, dtype=np.float32)
        if w.shape[0] == 0:
            raise ValueError(f"wave of {duration * 1e3:.3f} ms is too short to resample")
    if n_frames is None:
        n_frames = int(round(duration * fps))
        if n_frames < 1:
            raise ValueError(
                f"audio of {duration * 1e3:.1f} ms is shorter than half a video frame at "
                f"{fps:g} fps; need at least {500 / fps:.1f} ms"
            )
    elif isinstance(n_frames, bool) or int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    n_frames = int(n_frames)

    log_mel = log_mel_spectrogram(w)
    windows = log_mel[_window_index(n_frames, fps, log_mel.shape[0])]
    rms, peak = _frame_energy(w, n_frames, fps)
    if peak < 10 ** (SILENCE_DBFS / 20):
        warnings.warn(
            f"audio is silent (loudest frame {20 * np.log10(peak + 1e-300):.0f} dBFS < "
            f"{SILENCE_DBFS:g} dBFS): energy is 0 for every frame, log-mel at its floor",
            UserWarning,
            stacklevel=2,
        )
        energy = np.zeros(n_frames, np.float32)
    else:
        db = 20 * np.log10(np.maximum(rms, 1e-300) / peak)
        energy = np.clip(1 + db / ENERGY_RANGE_DB, 0.0, 1.0).astype(np.float32)
    return AudioFeatures(
        mel_windows=np.ascontiguousarray(windows, dtype=np.float32),
        energy=energy,
        log_mel=log_mel,
        n_frames=n_frames,
        fps=fps,
        sr=FEATURE_SR,
        duration=float(duration),
    )


def features_from_file(path: str | PathLike, fps: float = 25.0) -> AudioFeatures:
    """:func:`features` of an audio file (any format/rate :func:`load_audio` reads).

    Examples:
        >>> from emozone_lite.utils import data_path
        >>> f = features_from_file(data_path("arctic_a0009.wav"))
        >>> f.n_frames, f.mel_windows.shape
        (77, (77, 16, 80))
    """
    return features(load_audio(path, FEATURE_SR), FEATURE_SR, fps)


# ----------------------------------------------------------------------------- phones
@dataclass(frozen=True)
class Phone:
    """One labelled phone: ``[start, end)`` in seconds and its (lower-case) symbol."""

    start: float
    end: float
    phone: str


_HTS_RE = re.compile(r"^[^\^\-+=]*\^[^\^\-+=]*-([^\^\-+=]+)\+")  # p1^p2-p3+p4=p5@…
_TRI_RE = re.compile(r"^[^\^\-+=]*-([^\^\-+=]+)\+")  # HTK triphone l-p+r
_STATE_RE = re.compile(r"\[\d+\]$")  # HTS state-level suffix
_HTK_PER_S = 1e7  # HTK time unit: 100 ns


def read_phone_labels(path: str | PathLike) -> list[Phone]:
    """Read an HTK / HTS label file into phones.

    Each non-blank line is ``start end label [more fields…]`` with times in HTK's 100 ns
    units. ``label`` is a plain phone (``sil``), an HTK triphone (``l-p+r``) or an HTS
    full-context label (``p1^p2-p3+p4=p5@…``); the current phone (``p``, ``p3``) is kept.
    HTS state-level labels (``…[2]``) are merged into one phone per run of equal labels.

    Args:
        path: the ``.lab`` file.

    Returns:
        Phones in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a malformed line (naming its line number), times that go backwards or
            an end before its start, or a file with no labels.

    Examples:
        >>> from emozone_lite.utils import data_path
        >>> ph = read_phone_labels(data_path("arctic_a0009_phone.lab"))
        >>> ph[0], [p.phone for p in ph[1:4]]
        (Phone(start=0.0, end=0.13, phone='sil'), ['hh', 'iy', 't'])
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"label file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"label file {p} is not UTF-8 text: {e}") from e
    out: list[Phone] = []
    last_ctx: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3:
            raise ValueError(f"{p}:{lineno}: expected 'start end label' (times in 100 ns units), got {line!r}")
        try:
            s, e = int(fields[0]), int(fields[1])
        except ValueError:
            raise ValueError(f"{p}:{lineno}: start/end must be integers in 100 ns units, got {line!r}") from None
        if s < 0 or e < s:
            raise ValueError(f"{p}:{lineno}: need 0 <= start <= end, got start={s} end={e}")
        label = fields[2]
        state = _STATE_RE.search(label)
        ctx = label[: state.start()] if state else label
        if out and s / _HTK_PER_S < out[-1].start - 1e-9:
            raise ValueError(f"{p}:{lineno}: start time {s} goes back before the previous line's")
        if state and ctx == last_ctx and out:  # next HMM state of the same phone
            out[-1] = Phone(out[-1].start, e / _HTK_PER_S, out[-1].phone)
            continue
        m = _HTS_RE.match(ctx) or _TRI_RE.match(ctx)
        phone = m.group(1) if m else ctx
        if not phone or any(c in phone for c in "^-+="):
            raise ValueError(f"{p}:{lineno}: cannot find the phone in label {label!r}")
        out.append(Phone(s / _HTK_PER_S, e / _HTK_PER_S, phone.lower()))
        last_ctx = ctx if state else None
    if not out:
        raise ValueError(f"label file {p} holds no labels")
    return out


# ----------------------------------------------------------------------------- visemes
#: The 15 Oculus/Meta OVRLipSync visemes (index = position). ``sil`` is 0.
VISEMES: tuple[str, ...] = (
    "sil",
    "PP",
    "FF",
    "TH",
    "DD",
    "kk",
    "CH",
    "SS",
    "nn",
    "RR",
    "aa",
    "E",
    "I",
    "O",
    "U",
)

#: ARPAbet / CMU ARCTIC (festvox radio) / TIMIT phone → viseme. Stress digits are ignored.
PHONE_TO_VISEME: dict[str, str] = {
    # silence and pauses
    "sil": "sil",
    "pau": "sil",
    "sp": "sil",
    "spn": "sil",
    "h#": "sil",
    "#": "sil",
    # bilabials: lips closed
    "p": "PP",
    "b": "PP",
    "m": "PP",
    "em": "PP",
    # labiodentals: lower lip to upper teeth
    "f": "FF",
    "v": "FF",
    # dentals: tongue between teeth
    "th": "TH",
    "dh": "TH",
    # alveolar stops (and the flap)
    "t": "DD",
    "d": "DD",
    "dx": "DD",
    # velars, glottals: lips neutral, jaw slightly open
    "k": "kk",
    "g": "kk",
    "ng": "kk",
    "hh": "kk",
    "hv": "kk",
    "q": "kk",
    # post-alveolars: lips pushed forward
    "ch": "CH",
    "jh": "CH",
    "sh": "CH",
    "zh": "CH",
    # sibilants: teeth together
    "s": "SS",
    "z": "SS",
    # alveolar nasal / lateral
    "n": "nn",
    "l": "nn",
    "en": "nn",
    "el": "nn",
    "nx": "nn",
    # r and r-coloured vowels: rounded, slightly protruded
    "r": "RR",
    "er": "RR",
    "axr": "RR",
    # open vowels (jaw down)
    "aa": "aa",
    "ae": "aa",
    "ah": "aa",
    "ax": "aa",
    "ay": "aa",
    "aw": "aa",
    "ax-h": "aa",
    # mid front vowels
    "eh": "E",
    "ey": "E",
    # close front vowels and the palatal glide: lips spread
    "ih": "I",
    "iy": "I",
    "ix": "I",
    "y": "I",
    # mid back rounded vowels
    "ao": "O",
    "ow": "O",
    "oy": "O",
    # close back rounded vowels and w: lips rounded
    "uh": "U",
    "uw": "U",
    "ux": "U",
    "w": "U",
}


def phone_to_viseme(phone: str) -> str:
    """The viseme of an ARPAbet / ARCTIC phone (case and stress digits ignored).

    Raises:
        ValueError: unknown phone.

    Examples:
        >>> phone_to_viseme("b"), phone_to_viseme("AH0"), phone_to_viseme("pau")
        ('PP', 'aa', 'sil')
    """
    key = re.sub(r"[0-2]$", "", str(phone).strip().lower())
    try:
        return PHONE_TO_VISEME[key]
    except KeyError:
        raise ValueError(
            f"unknown phone {phone!r}; expected an ARPAbet/ARCTIC phone such as "
            f"{', '.join(sorted(PHONE_TO_VISEME)[:12])}, … (see audio.PHONE_TO_VISEME)"
        ) from None


def viseme_track(phones: list[Phone], n_frames: int, fps: float = 25.0) -> np.ndarray:
    """Viseme index (into :data:`VISEMES`) of every video frame.

    Frame ``t`` (time ``t / fps``) takes the phone whose ``[start, end)`` contains it;
    frames outside every phone (before, after, in gaps) are ``sil`` (0).

    Args:
        phones: from :func:`read_phone_labels`, in time order.
        n_frames: ``T`` (>= 0), e.g. ``AudioFeatures.n_frames``.
        fps: video frame rate.

    Returns:
        ``[T]`` int64 viseme indices.

    Examples:
        >>> ph = [Phone(0.0, 0.1, "sil"), Phone(0.1, 0.2, "m"), Phone(0.2, 0.3, "aa")]
        >>> [VISEMES[i] for i in viseme_track(ph, 8, fps=25)]
        ['sil', 'sil', 'sil', 'PP', 'PP', 'aa', 'aa', 'aa']
    """
    if isinstance(n_frames, bool) or int(n_frames) != n_frames or n_frames < 0:
        raise ValueError(f"n_frames must be a non-negative integer, got {n_frames!r}")
    if not np.isscalar(fps) or not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive frame rate, got {fps!r}")
    if len(phones) == 0:
        return np.zeros(int(n_frames), np.int64)
    starts = np.array([p.start for p in phones], np.float64)
    ends = np.array([p.end for p in phones], np.float64)
    if np.any(np.diff(starts) < 0):
        raise ValueError("phones must be in time order (start times non-decreasing)")
    ids = np.array([VISEMES.index(phone_to_viseme(p.phone)) for p in phones], np.int64)
    # tolerance so a boundary exactly on a frame time (e.g. 0.12 s at 25 fps) goes to the next phone
    t = np.arange(int(n_frames)) / float(fps) + 1e-9
    k = np.searchsorted(starts, t, side="right") - 1
    inside = (k >= 0) & (t < ends[np.clip(k, 0, None)])
    return np.where(inside, ids[np.clip(k, 0, None)], 0).astype(np.int64)
