"""The speech corpus the student learns speech → mouth from, and speech augmentation.

``data_samples/speech_corpus/`` holds synthetic English speech with exact phone timings, made
offline once by ``data_samples/scripts/make_speech_corpus.py`` (Festival's kal, ked and slt
voices and two eSpeak NG variants; see ``data_samples/README.md`` for provenance, licences and
sizes). The two real CMU ARCTIC recordings (``arctic_a0007``, ``arctic_a0009``) are **not** in
it: they are the real-speech test set.

- :func:`corpus_manifest` — the validated rows of ``manifest.csv`` (one per utterance).
- :func:`load_corpus` — :class:`Utterance` s (16 kHz audio + phones relative to its start).
- :func:`augment_speech` — tempo, pitch, level, noise and microphone/room colouring, with the
  phone timings carried through the tempo change, so the student does not learn the
  synthesisers' voices.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .audio import FEATURE_SR, Phone, load_audio, phone_to_viseme, read_phone_labels
from .utils import data_path

__all__ = [
    "CORPUS_DIR",
    "MANIFEST_COLUMNS",
    "Utterance",
    "corpus_manifest",
    "corpus_voices",
    "load_corpus",
    "augment_speech",
    "AUGMENTATION",
]

#: Folder of the corpus inside the data folder.
CORPUS_DIR = "speech_corpus"
#: Columns ``manifest.csv`` must have (start / end: seconds in the voice's audio file).
MANIFEST_COLUMNS = ("id", "voice", "synthesiser", "sex", "start", "end", "tempo", "pitch", "text")


@dataclass(frozen=True, eq=False)
class Utterance:
    """One sentence of the corpus.

    Attributes:
        id: ``<voice>_<k>``. voice / synthesiser / sex / text / tempo: from the manifest.
        audio: ``[S]`` float32 mono at :data:`emozone_lite.audio.FEATURE_SR`.
        phones: :class:`~emozone_lite.audio.Phone` s in seconds from the utterance's start,
            contiguous from 0 to its duration (``sil`` at both ends).
    """

    id: str
    voice: str
    synthesiser: str
    sex: str
    text: str
    tempo: float
    audio: np.ndarray = field(repr=False)
    phones: list[Phone] = field(repr=False)

    @property
    def duration(self) -> float:
        return len(self.audio) / FEATURE_SR


def _root(root) -> Path:
    return Path(root) if root is not None else data_path(CORPUS_DIR)


def corpus_manifest(root=None) -> list[dict]:
    """The rows of ``<root>/manifest.csv`` with ``start``/``end``/``tempo`` as floats.

    Args:
        root: the corpus folder (default: the bundled ``speech_corpus``).

    Raises:
        FileNotFoundError: no ``manifest.csv`` in ``root``.
        ValueError: a missing column, a row whose times are not numbers or end before they
            start, or a duplicate id — each naming the row.
    """
    path = _root(root) / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"speech corpus manifest not found: {path}; expected the corpus folder made by "
            "data_samples/scripts/make_speech_corpus.py"
        )
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(MANIFEST_COLUMNS)}")
        rows, seen = [], set()
        for n, r in enumerate(reader, start=2):
            try:
                r["start"], r["end"], r["tempo"] = float(r["start"]), float(r["end"]), float(r["tempo"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{n}: start/end/tempo must be numbers, got {r!r}") from None
            if not (0 <= r["start"] < r["end"]):
                raise ValueError(f"{path}:{n}: expected 0 <= start < end, got {r['start']}..{r['end']}")
            if r["id"] in seen:
                raise ValueError(f"{path}:{n}: duplicate utterance id {r['id']!r}")
            seen.add(r["id"])
            rows.append(r)
    if not rows:
        raise ValueError(f"{path}: no utterances")
    return rows


def corpus_voices(root=None) -> tuple[str, ...]:
    """The corpus's voices in manifest order."""
    return tuple(dict.fromkeys(r["voice"] for r in corpus_manifest(root)))


@lru_cache(maxsize=8)
def _voice_track(folder: str, voice: str) -> tuple[np.ndarray, tuple[Phone, ...]]:
    base = Path(folder) / voice
    audio_path = base.with_suffix(".opus")
    if not audio_path.is_file():
        raise FileNotFoundError(f"speech corpus audio not found: {audio_path} (voice {voice!r} is in the manifest)")
    audio = load_audio(audio_path, sr=FEATURE_SR)
    audio.setflags(write=False)
    return audio, tuple(read_phone_labels(base.with_suffix(".lab")))


def load_corpus(voices=None, n: int | None = None, root=None) -> list[Utterance]:
    """Load utterances of the corpus (each voice's file is decoded once per process).

    Args:
        voices: names from :func:`corpus_voices` (default: all).
        n: at most this many utterances per voice, in manifest order (default: all).
        root: the corpus folder (default: the bundled one).

    Raises:
        ValueError: an unknown voice (listing the known ones), ``n`` < 1, an utterance that
            lies beyond its voice's audio, or a phone the viseme table does not know.

    Examples:
        >>> u = load_corpus(["festival_slt"], n=1)[0]
        >>> u.phones[0].phone, round(u.phones[-1].end - u.duration, 3)
        ('sil', 0.0)
    """
    rows = corpus_manifest(root)
    known = tuple(dict.fromkeys(r["voice"] for r in rows))
    if voices is None:
        voices = known
    elif isinstance(voices, str):
        voices = (voices,)
    unknown = [v for v in voices if v not in known]
    if unknown:
        raise ValueError(f"unknown corpus voice(s) {', '.join(map(repr, unknown))}; the corpus has {', '.join(known)}")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n: expected a positive int (utterances per voice) or None, got {n!r}")
    folder = str(_root(root).resolve())
    out: list[Utterance] = []
    for v in voices:
        audio, phones = _voice_track(folder, v)
        mine = [r for r in rows if r["voice"] == v][:n]
        for r in mine:
            s0, s1 = round(r["start"] * FEATURE_SR), round(r["end"] * FEATURE_SR)
            if s1 > len(audio) + 1:
                raise ValueError(
                    f"utterance {r['id']}: ends at {r['end']:.3f} s but {v}.opus is {len(audio) / FEATURE_SR:.3f} s long"
                )
            t0, t1 = s0 / FEATURE_SR, s1 / FEATURE_SR
            ph = []
            for p in phones:
                a, b = max(p.start, t0), min(p.end, t1)
                if b > a + 1e-6:
                    phone_to_viseme(p.phone)  # raises, naming the phone
                    ph.append(Phone(round(a - t0, 6), round(b - t0, 6), p.phone))
            clip = np.array(audio[s0:s1], dtype=np.float32)
            if ph:
                ph[-1] = Phone(ph[-1].start, len(clip) / FEATURE_SR, ph[-1].phone)
            out.append(Utterance(r["id"], v, r["synthesiser"], r["sex"], r["text"], r["tempo"], clip, ph))
    return out


# ----------------------------------------------------------------------------- augmentation
#: Named settings of :func:`augment_speech` (``TrainConfig.augment``). ``"full"``: every
#: alteration at its default range. ``"mild"``: level, microphone colouring, noise at 25–45 dB SNR
#: and a small room (RT60 0.1–0.3 s, probability 0.3), no tempo or pitch change. Measured on 8
#: corpus sentences (festival_slt + espeak_m3; README, "Speech it never heard"): the phone
#: recogniser's 1-best track drives the teacher's mouth with correlation 0.74 to the labels on
#: clean speech, 0.45 after the phase-vocoder tempo change, 0.34 after the pitch shift, 0.43
#: after the RT60 0.15–0.6 s room, 0.53 at 15–40 dB noise and 0.70–0.76 for level, EQ and
#: 25–45 dB noise, so ``"full"`` destroys what the phonetic front-end reads from *recognised*
#: phones. Training reads the corpus's label phones by default (``TrainConfig.corpus_phones``), which
#: only the tempo change touches, so ``TrainConfig.augment`` defaults to ``"full"`` (why: there).
AUGMENTATION: dict[str, dict | None] = {
    "none": None,
    "mild": dict(tempo=(1.0, 1.0), semitones=(0.0, 0.0), snr_db=(25.0, 45.0), room_prob=0.3, rt60=(0.1, 0.3)),
    "full": {},
}


def _noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    w = rng.standard_normal(n)
    if colour == "pink":  # 1/f power: shape the spectrum by 1/sqrt(f)
        spec = np.fft.rfft(w)
        f = np.maximum(np.fft.rfftfreq(n, 1.0 / FEATURE_SR), 20.0)
        w = np.fft.irfft(spec / np.sqrt(f), n)
    return (w / (np.std(w) + 1e-12)).astype(np.float32)


def augment_speech(
    audio: np.ndarray,
    phones: list[Phone] | None = None,
    rng: np.random.Generator | int | None = None,
    *,
    tempo: tuple[float, float] = (0.85, 1.15),
    semitones: tuple[float, float] = (-3.0, 3.0),
    gain_db: tuple[float, float] = (-12.0, 4.0),
    snr_db: tuple[float, float] = (15.0, 40.0),
    eq_prob: float = 0.6,
    room_prob: float = 0.5,
    rt60: tuple[float, float] = (0.15, 0.6),
) -> tuple[np.ndarray, list[Phone] | None, dict]:
    """A randomly altered copy of speech, with its phone timings carried along.

    In order: tempo (phase-vocoder time stretch; phone times divided by the rate), pitch
    shift (duration kept), microphone colouring (band limits between 50–300 Hz and 3–7.5 kHz
    and a ±6 dB presence peak, with probability ``eq_prob``), a small room (exponentially
    decaying noise impulse response, RT60 drawn from ``rt60`` seconds, with probability ``room_prob``),
    white or pink noise at a signal-to-noise ratio drawn from ``snr_db``, and a level change
    from ``gain_db`` (clipped to ±1). Each range is sampled uniformly; pass ``(x, x)`` to fix a
    value, e.g. ``tempo=(1, 1)`` to keep the timing.

    Args:
        audio: ``[S]`` mono float at :data:`emozone_lite.audio.FEATURE_SR`.
        phones: the utterance's phones (seconds), or None.
        rng: a Generator or seed.

    Returns:
        ``(audio [S'] float32, phones or None, params)`` — ``params`` records what was drawn
        (``tempo``, ``semitones``, ``eq``, ``rt60``, ``noise``, ``snr_db``, ``gain_db``).

    Raises:
        ValueError: audio not a 1-D finite array of ≥ 0.1 s, or a range with low > high or a
            non-positive tempo.
    """
    import librosa
    from scipy import signal

    y = np.asarray(audio, dtype=np.float32)
    if y.ndim != 1 or len(y) < FEATURE_SR // 10 or not np.isfinite(y).all():
        raise ValueError(
            f"audio: expected a finite 1-D array of at least {FEATURE_SR // 10} samples "
            f"(0.1 s at {FEATURE_SR} Hz), got shape {y.shape}"
        )
    ranges = (("tempo", tempo), ("semitones", semitones), ("gain_db", gain_db), ("snr_db", snr_db), ("rt60", rt60))
    for name, (lo, hi) in ranges:
        if not lo <= hi:
            raise ValueError(f"{name}: expected (low, high) with low <= high, got {(lo, hi)}")
    if tempo[0] <= 0:
        raise ValueError(f"tempo: rates must be positive, got {tempo}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    params: dict = {}
    rate = float(rng.uniform(*tempo))
    params["tempo"] = rate
    if abs(rate - 1.0) > 1e-3:
        y = librosa.effects.time_stretch(y, rate=rate)
        if phones is not None:
            phones = [Phone(p.start / rate, p.end / rate, p.phone) for p in phones]
    st = float(rng.uniform(*semitones))
    params["semitones"] = st
    if abs(st) > 1e-3:
        y = librosa.effects.pitch_shift(y, sr=FEATURE_SR, n_steps=st)
    rms = float(np.sqrt(np.mean(y**2)) + 1e-9)
    params["eq"] = None
    if rng.random() < eq_prob:
        lo, hi, peak_hz, peak_db = (float(rng.uniform(50, 300)), float(rng.uniform(3000, 7500)),
                                    float(rng.uniform(1500, 4000)), float(rng.uniform(-6, 6)))  # fmt: skip
        sos = signal.butter(2, [lo, hi], btype="bandpass", fs=FEATURE_SR, output="sos")
        y = signal.sosfilt(sos, y).astype(np.float32)
        b, a = signal.iirpeak(peak_hz, Q=1.5, fs=FEATURE_SR)
        y = (y + (10 ** (peak_db / 20) - 1) * signal.lfilter(b, a, y)).astype(np.float32)
        params["eq"] = {"low_hz": lo, "high_hz": hi, "peak_hz": peak_hz, "peak_db": peak_db}
    params["rt60"] = None
    if rng.random() < room_prob:
        t60 = float(rng.uniform(*rt60))
        t = np.arange(int(0.5 * FEATURE_SR)) / FEATURE_SR
        ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / max(t60, 1e-3))  # −60 dB at t60
        ir[0] = 0.0
        ir *= 0.35 / (np.sqrt(np.sum(ir**2)) + 1e-12)  # reverberant energy ~ −9 dB of direct
        ir[0] = 1.0
        y = signal.fftconvolve(y, ir)[: len(y)].astype(np.float32)
        params["rt60"] = t60
    y *= rms / (float(np.sqrt(np.mean(y**2))) + 1e-9)  # colouring does not change the level
    snr = float(rng.uniform(*snr_db))
    colour = "pink" if rng.random() < 0.5 else "white"
    y = y + _noise(rng, len(y), colour) * rms * 10 ** (-snr / 20)
    params["noise"], params["snr_db"] = colour, snr
    g = float(rng.uniform(*gain_db))
    params["gain_db"] = g
    y = np.clip(y * 10 ** (g / 20), -1.0, 1.0).astype(np.float32)
    if phones is not None and phones:
        end = len(y) / FEATURE_SR
        phones = [p for p in phones if p.start < end]
        phones[-1] = Phone(phones[-1].start, end, phones[-1].phone)
    return y, phones, params
