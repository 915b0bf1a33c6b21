"""A speaker-independent audio front-end: phones recognised by PocketSphinx, as windows.

Log-mel windows (:mod:`emozone_lite.audio`) carry the speaker's voice as much as what is said;
a student trained on a few synthetic voices can learn the voices instead of the phones. A
*phone recogniser* trained on many speakers factors the voice out — the role DeepSpeech or
HuBERT features play in published talking heads. Here it is PocketSphinx's bundled US English
acoustic model (nothing downloaded), in one of two modes (:data:`RECOGNISERS`):

- ``"words"`` (default): recognise the *words* with the bundled trigram language model and
  CMU dictionary, then force-align that word sequence to get its phones and their timings.
  The language model and dictionary rule out phone sequences no English word has. Measured on
  the two real ARCTIC recordings: the teacher's mouth driven by these phones correlates 0.87
  (a0007) and 0.98 (a0009) with the mouth driven by the hand-checked labels.
- ``"allphone"``: a phone loop with the model's phone bigram (no words): 0.68 and 0.93 on the
  same recordings, but it does not depend on the speech being English sentences (the synthetic
  corpus voices: 0.72 on average, words mode 0.70, and 7× slower).

Functions:

- :func:`recognise_phones` — audio → a timeline of :class:`~emozone_lite.audio.Phone` s
  (noise and filler tokens become ``sil``).
- :func:`phone_posteriorgram` — phones → ``[F, N_PHONES]`` one-hot rows at the mel frame
  rate (50 per second), lightly smoothed at the boundaries.
- :func:`phonetic_features` — audio → :class:`~emozone_lite.audio.AudioFeatures` whose
  ``mel_windows`` are ``[T, 16, N_PHONES]`` phone windows (same centring as the log-mel
  windows), so :class:`~emozone_lite.model.AudioEncoder` reads either front-end unchanged
  (``ModelConfig(audio_frontend="phones")``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from os import PathLike

import numpy as np

from .audio import FEATURE_SR, MEL_FPS, SILENCE_DBFS, AudioFeatures, Phone, _window_index, load_audio

__all__ = [
    "PHONES",
    "N_PHONES",
    "RECOGNISERS",
    "ALIASES",
    "MIN_SECONDS",
    "recognise_phones",
    "phone_posteriorgram",
    "phonetic_features",
    "features_from_file",
]

#: PocketSphinx's en-us phone set (CMUdict ARPAbet, lower case) with ``sil`` first.
PHONES: tuple[str, ...] = (
    "sil", "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g",
    "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th",
    "uh", "uw", "v", "w", "y", "z", "zh",
)  # fmt: skip
N_PHONES = len(PHONES)
_INDEX = {p: i for i, p in enumerate(PHONES)}
#: Recogniser modes of :func:`recognise_phones`.
RECOGNISERS = ("words", "allphone")
#: Shorter audio is not recognised (one ``sil``): PocketSphinx needs a few frames of context.
MIN_SECONDS = 0.1
#: festvox / TIMIT phones that CMUdict folds into one of :data:`PHONES` (labels use them).
ALIASES = {"ax": "ah", "ax-h": "ah", "axr": "er", "ix": "ih", "ux": "uw", "dx": "d", "el": "l", "em": "m",
           "en": "n", "nx": "n", "hv": "hh"}  # fmt: skip


@lru_cache(maxsize=2)
def _decoder(mode: str):
    import os

    try:
        from pocketsphinx import Config, Decoder, get_model_path
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ImportError("the phonetic front-end needs pocketsphinx (pip install pocketsphinx)") from e
    m = os.path.join(get_model_path(), "en-us")
    if mode == "words":
        cfg = Config(hmm=os.path.join(m, "en-us"), lm=os.path.join(m, "en-us.lm.bin"),
                     dict=os.path.join(m, "cmudict-en-us.dict"), loglevel="FATAL")  # fmt: skip
    else:  # lw=2 measured best of 1, 2, 4, 8 on the corpus and the ARCTIC recordings
        cfg = Config(hmm=os.path.join(m, "en-us"), allphone=os.path.join(m, "en-us-phone.lm.bin"), lm=None,
                     lw=2.0, beam=1e-20, pbeam=1e-20, loglevel="FATAL")  # fmt: skip
    return Decoder(cfg)


def _decode(dec, pcm: bytes) -> None:
    # fresh feature state (noise and cepstral-mean estimates): without it the decoder's output
    # for an utterance depends on the utterances decoded before it
    dec.reinit_feat()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()


def _allphone_segments(pcm: bytes) -> list[tuple[str, float, float]]:
    dec = _decoder("allphone")
    _decode(dec, pcm)
    return [(s.word, s.start_frame / 100.0, (s.end_frame + 1) / 100.0) for s in dec.seg()]


def _word_segments(pcm: bytes) -> list[tuple[str, float, float]] | None:
    """Words decoded with the language model, then their phones force-aligned: three decoder
    passes (decode; align the words, ``set_align_text``; align their phones, ``set_alignment``,
    as PocketSphinx asks). ``None`` when no words were recognised or the alignment failed (the
    caller falls back to the phone loop)."""
    dec = _decoder("words")
    try:
        _decode(dec, pcm)
        hyp = dec.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if not text:
            return None
        dec.set_align_text(text)
        _decode(dec, pcm)
        dec.set_alignment()
        _decode(dec, pcm)
        al = dec.get_alignment()
        segs = [(p.name, p.start / 100.0, (p.start + p.duration) / 100.0) for p in al.phones()] if al else None
        dec.activate_search()  # back to the language model for the next utterance
        return segs
    except RuntimeError:  # the aligner gave up on this audio: start a fresh decoder next time
        _decoder.cache_clear()
        return None


def recognise_phones(audio, sr: int = FEATURE_SR, mode: str = "words") -> list[Phone]:
    """Recognise the phone sequence of speech with PocketSphinx.

    Args:
        audio: ``[S]`` mono samples (float in [-1, 1]) at ``sr``, or an audio file path.
        sr: sample rate of a waveform (resampled to 16 kHz).
        mode: ``"words"`` (words with the language model, then their phones aligned; falls
            back to ``"allphone"`` when no words are recognised or the alignment fails) or
            ``"allphone"`` (a phone loop); see the module docstring for how they compare.

    Returns:
        Contiguous phones from 0 to the audio's duration (symbols from :data:`PHONES`). Silent
        audio (peak below :data:`emozone_lite.audio.SILENCE_DBFS`) and audio shorter than
        :data:`MIN_SECONDS` give one ``sil`` phone (the recogniser would invent phones in them).

    Raises:
        ValueError: audio not 1-D, empty or not finite; ``mode`` not in :data:`RECOGNISERS`.

    Examples:
        >>> from emozone_lite.utils import data_path
        >>> ph = recognise_phones(data_path("arctic_a0009.wav"))
        >>> ph[0].phone, round(ph[-1].end, 2)
        ('sil', 3.09)
    """
    if mode not in RECOGNISERS:
        raise ValueError(f"mode: expected one of {RECOGNISERS}, got {mode!r}")
    if isinstance(audio, (str, PathLike)):
        y = load_audio(audio, FEATURE_SR)
    else:
        y = np.asarray(audio, dtype=np.float32)
        if y.ndim != 1 or y.size == 0 or not np.isfinite(y).all():
            raise ValueError(f"audio: expected a finite 1-D waveform, got shape {y.shape}")
        if sr != FEATURE_SR:
            import librosa

            y = librosa.resample(y, orig_sr=sr, target_sr=FEATURE_SR, res_type="soxr_hq")
    dur = len(y) / FEATURE_SR
    if dur < MIN_SECONDS or float(np.abs(y).max()) < 10 ** (SILENCE_DBFS / 20):
        return [Phone(0.0, dur, "sil")]  # silence or too short to recognise: no phones, not made-up ones
    pcm = (np.clip(y, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    segs = _word_segments(pcm) if mode == "words" else None
    if segs is None:
        segs = _allphone_segments(pcm)
    out: list[Phone] = []
    for name, a, b in segs:
        ph = name.lower()
        ph = ph if ph in _INDEX else "sil"  # SIL, +NSN+, +SPN+, +BREATH+ … → silence
        b = min(dur, b)
        if b <= a:
            continue
        if out and out[-1].phone == ph:
            out[-1] = Phone(out[-1].start, b, ph)
        else:
            out.append(Phone(a, b, ph))
    if not out:
        return [Phone(0.0, dur, "sil")]
    # contiguous from 0 to the duration: a gap before the first phone is silence, each phone
    # starts where the one before it ended
    if out[0].start > 0 and out[0].phone != "sil":
        out.insert(0, Phone(0.0, out[0].start, "sil"))
    fixed: list[Phone] = []
    for p in out:
        prev = fixed[-1].end if fixed else 0.0
        fixed.append(Phone(prev, max(prev, p.end), p.phone))
    fixed[-1] = Phone(fixed[-1].start, dur, fixed[-1].phone)
    return [p for p in fixed if p.end > p.start]


def phone_posteriorgram(phones: list[Phone], n_rows: int, smooth: int = 1) -> np.ndarray:
    """``[n_rows, N_PHONES]`` float32: row ``f`` (time ``f / 50`` s) one-hot on the phone there,
    averaged over ``±smooth`` rows (soft boundaries).

    Raises:
        ValueError: a phone not in :data:`PHONES` or :data:`ALIASES` (naming it); ``pau``, ``h#``
            and ``sp`` count as silence.
    """
    P = np.zeros((n_rows, N_PHONES), np.float32)
    P[:, 0] = 1.0
    t = (np.arange(n_rows) + 0.5) / MEL_FPS
    for p in phones:
        name = p.phone.lower().rstrip("012")
        k = _INDEX.get(ALIASES.get(name, name))
        if k is None:
            if p.phone.lower() in ("pau", "h#", "sp"):
                continue
            raise ValueError(f"unknown phone {p.phone!r}; expected one of the PocketSphinx phones {', '.join(PHONES)}")
        m = (t >= p.start) & (t < p.end)
        P[m] = 0.0
        P[m, k] = 1.0
    if smooth > 0:
        pad = np.pad(P, ((smooth, smooth), (0, 0)), mode="edge")
        P = np.mean([pad[i : i + n_rows] for i in range(2 * smooth + 1)], axis=0).astype(np.float32)
    return P


def phonetic_features(
    audio,
    sr: int = FEATURE_SR,
    fps: float = 25.0,
    *,
    n_frames: int | None = None,
    phones: list[Phone] | None = None,
    mode: str = "words",
) -> AudioFeatures:
    """Per-video-frame phone windows ``[T, 16, N_PHONES]`` and energy, like :func:`emozone_lite.audio.features`.

    Args:
        audio: ``[S]`` waveform at ``sr`` or a file path.
        fps, n_frames: as :func:`emozone_lite.audio.features`.
        phones: a phone timeline to use instead of recognising one (a label file's phones:
            training reads the corpus labels this way, see ``TrainConfig.corpus_phones``).
        mode: the recogniser of :func:`recognise_phones` when ``phones`` is not given.

    Returns:
        :class:`~emozone_lite.audio.AudioFeatures`; ``mel_windows`` holds the phone windows and
        ``log_mel`` the ``[F, N_PHONES]`` posteriorgram.
    """
    from .audio import features as mel_features

    y = load_audio(audio, FEATURE_SR) if isinstance(audio, (str, PathLike)) else np.asarray(audio, np.float32)
    ref = mel_features(y, sr, fps, n_frames=n_frames)  # validates; gives T, energy and the row count
    if sr != FEATURE_SR:
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=FEATURE_SR, res_type="soxr_hq")
    ph = recognise_phones(y, FEATURE_SR, mode) if phones is None else phones
    F = ref.log_mel.shape[0]
    P = phone_posteriorgram(ph, F)
    windows = P[_window_index(ref.n_frames, fps, F)]
    return replace(ref, mel_windows=np.ascontiguousarray(windows), log_mel=P)


def features_from_file(path: str | PathLike, fps: float = 25.0) -> AudioFeatures:
    """:func:`phonetic_features` of an audio file."""
    return phonetic_features(load_audio(path, FEATURE_SR), FEATURE_SR, fps)
