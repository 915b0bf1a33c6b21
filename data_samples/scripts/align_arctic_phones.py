"""Derive an HTS phone label for a CMU ARCTIC recording by DTW against eSpeak NG speech.

Provenance script (run once; its output ``arctic_a0007_phone.lab`` is committed in
data_samples/). CMU ARCTIC's ``arctic_a0007.wav`` (speaker awb) as shipped in pysptk has no
phone label, so we make one **automatically**:

1. Synthesise the utterance's CMU ARCTIC prompt text with eSpeak NG (Debian's ``espeak-ng``
   package, called through ``libespeak-ng`` with phoneme events on) and record every phoneme
   and the sample at which it starts.
2. Map eSpeak's en-us phoneme mnemonics to the festvox "radio" phone set CMU ARCTIC labels use
   (``aa ae ah ao aw ax ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th
   uh uw v w y z zh``, plus ``sil`` at the ends and ``pau`` for inner pauses).
3. Pad the synthetic speech with 0.3 s of silence on both sides (labelled ``sil``), compute
   cepstral-mean/variance-normalised MFCCs + deltas (5 ms hop) of both signals and align them
   with ``librosa.sequence.dtw`` (cosine distance).
4. Carry each synthetic phone boundary through the warping path to the real recording and
   write the phones as an HTS label (100 ns units) with quinphone context ``a^b-c+d=e``
   (the first field of an HTS full-context label; the other HTS fields need a full
   linguistic analysis and are left out).

The same procedure run on ``arctic_a0009`` (which ships with a CMU ARCTIC/HTS label) gives the
boundary error printed as a sanity check, and the DTW cost of the right prompt text is compared
with that of another ARCTIC prompt to confirm which text the recording holds.

Usage (needs ``apt-get install espeak-ng``; not a runtime dependency of emozone-lite)::

    python data_samples/scripts/align_arctic_phones.py            # writes arctic_a0007_phone.lab
    python data_samples/scripts/align_arctic_phones.py --check    # only the sanity checks
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent.parent  # data_samples/

#: CMU ARCTIC prompts (festvox ``txt.done.data``) of the utterances used here.
PROMPTS = {
    "arctic_a0002": "Not at this particular case, Tom, apologized Whittemore.",
    "arctic_a0007": "And you always want to see it in the superlative degree.",
    "arctic_a0009": "He turned sharply, and faced Gregson across the table.",
}

#: eSpeak NG en-us phoneme mnemonic -> festvox radio phones (a few become two phones).
ESPEAK_TO_ARCTIC: dict[str, tuple[str, ...]] = {
    # vowels
    "a": ("ae",),
    "a#": ("ax",),
    "aa": ("aa",),
    "A:": ("aa",),
    "A@": ("aa", "r"),
    "0": ("aa",),
    "V": ("ah",),
    "@": ("ax",),
    "@2": ("ax",),
    "@5": ("ax",),
    "@L": ("ax", "l"),
    "3": ("er",),
    "3:": ("er",),
    "E": ("eh",),
    "e@": ("eh", "r"),
    "eI": ("ey",),
    "I": ("ih",),
    "I#": ("ih",),
    "I2": ("ih",),
    "i": ("iy",),
    "i:": ("iy",),
    "i@": ("iy", "r"),
    "i@3": ("iy", "r"),
    "O": ("ao",),
    "O:": ("ao",),
    "O2": ("aa",),
    "O@": ("ao", "r"),
    "o@": ("ao", "r"),
    "oU": ("ow",),
    "OI": ("oy",),
    "U": ("uh",),
    "u:": ("uw",),
    "U@": ("uh", "r"),
    "aI": ("ay",),
    "aI@": ("ay", "er"),
    "aI3": ("ay", "er"),
    "aU": ("aw",),
    "aU@": ("aw", "er"),
    # consonants
    "p": ("p",),
    "b": ("b",),
    "t": ("t",),
    "t#": ("t",),
    "*": ("t",),
    "?": ("t",),  # glottal stop: American /t/ in "button", "kitten"
    "d": ("d",),
    "k": ("k",),
    "g": ("g",),
    "f": ("f",),
    "v": ("v",),
    "T": ("th",),
    "D": ("dh",),
    "s": ("s",),
    "z": ("z",),
    "S": ("sh",),
    "Z": ("zh",),
    "tS": ("ch",),
    "dZ": ("jh",),
    "h": ("hh",),
    "m": ("m",),
    "n": ("n",),
    "n-": ("n",),
    "N": ("ng",),
    "l": ("l",),
    "l/": ("l",),
    "r": ("r",),
    "r-": ("r",),
    "w": ("w",),
    "j": ("y",),
    # pauses
    "_": ("pau",),
    "_:": ("pau",),
    "_!": ("pau",),
}
#: eSpeak markers that take no time of their own (merged into the previous phone).
ESPEAK_SKIP = {";", "'", ",", "%", "=", "#"}

HOP = 80  # 5 ms at 16 kHz
SR = 16000
PAD_S = 0.3


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


def espeak_phones(
    text: str, voice: str = "en-us", rate: int | None = None, pitch: int | None = None
) -> tuple[np.ndarray, int, list[tuple[str, int]]]:
    """Synthesise ``text``; return (wave int16, sample rate, [(espeak phoneme, start sample)]).

    ``rate`` (words per minute, eSpeak's default 175) and ``pitch`` (0–100, default 50) are
    left at the voice's defaults when None.
    """
    lib = ctypes.CDLL("libespeak-ng.so.1")
    cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
    chunks: list[np.ndarray] = []
    events: list[tuple[str, int]] = []

    def cb(wav, n, ev):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while ev[i].type != 0:
            if ev[i].type == 7:  # espeakEVENT_PHONEME
                events.append((bytes(ev[i].id).split(b"\0")[0].decode(), int(ev[i].sample)))
            i += 1
        return 0

    keep = cb_type(cb)
    sr = lib.espeak_Initialize(2, 0, None, 1)  # AUDIO_OUTPUT_SYNCHRONOUS, PHONEME_EVENTS
    if sr <= 0:
        raise RuntimeError("espeak_Initialize failed; apt-get install espeak-ng")
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"eSpeak NG voice {voice!r} not available")
    lib.espeak_SetSynthCallback(keep)
    if rate is not None:
        lib.espeak_SetParameter(1, int(rate), 0)  # espeakRATE
    if pitch is not None:
        lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH
    b = text.encode()
    lib.espeak_Synth(b, len(b) + 1, 0, 0, 0, 0, None, None)
    lib.espeak_Synchronize()
    return np.concatenate(chunks), sr, events


def events_to_phones(events: list[tuple[str, int]], n_samples: int, sr: int) -> list[list]:
    """eSpeak phoneme events [(phoneme, start sample)] → ``[[start, end, ARCTIC phone]]`` in
    seconds: markers merge into the previous phone, a zero-length phoneme shares the next one's
    interval, a phoneme that maps to several phones splits its interval, pauses merge."""
    raw: list[tuple[float, float, str]] = []
    for k, (ph, s0) in enumerate(events):
        s1 = events[k + 1][1] if k + 1 < len(events) else n_samples
        raw.append((s0 / sr, min(s1, n_samples) / sr, ph))
    phones: list[list] = []
    pending_zero: list[str] = []
    for t0, t1, ph in raw:
        if ph in ESPEAK_SKIP:
            if phones:
                phones[-1][1] = t1
            continue
        if ph not in ESPEAK_TO_ARCTIC:
            raise KeyError(f"no ARCTIC mapping for eSpeak phoneme {ph!r}; add it to ESPEAK_TO_ARCTIC")
        arc = list(pending_zero) + list(ESPEAK_TO_ARCTIC[ph])
        if t1 - t0 <= 0:  # zero-length phoneme: share the next one's interval
            pending_zero = arc
            continue
        pending_zero = []
        edges = np.linspace(t0, t1, len(arc) + 1)
        for a, e0, e1 in zip(arc, edges[:-1], edges[1:]):
            if a == "pau" and phones and phones[-1][2] == "pau":
                phones[-1][1] = e1
            else:
                phones.append([e0, e1, a])
    return phones


def synthetic_phones(text: str) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """eSpeak speech at 16 kHz, padded with silence, and its ARCTIC phones [(start, end, phone)] s."""
    wav, sr, events = espeak_phones(text)
    y = librosa.resample(wav.astype(np.float32) / 32768.0, orig_sr=sr, target_sr=SR)
    total = len(wav) / sr
    phones = events_to_phones(events, len(wav), sr)
    # trailing pause -> part of the final sil; pad both ends with silence
    while phones and phones[-1][2] == "pau":
        phones.pop()
    end = phones[-1][1]
    out = [(0.0, PAD_S, "sil")]
    out += [(PAD_S + a, PAD_S + b, p) for a, b, p in phones]
    out.append((PAD_S + end, PAD_S + total + PAD_S, "sil"))
    pad = np.zeros(int(PAD_S * SR), np.float32)
    rng = np.random.default_rng(0)
    y = np.concatenate([pad, y, pad]) + 1e-4 * rng.standard_normal(len(y) + 2 * len(pad)).astype(np.float32)
    return y, out


def mfcc_features(y: np.ndarray) -> np.ndarray:
    """[F, 26] CMVN'd MFCC (c1..c13) + deltas at a 5 ms hop."""
    m = librosa.feature.mfcc(
        y=y, sr=SR, n_mfcc=14, n_fft=512, win_length=400, hop_length=HOP, n_mels=40, fmin=60, fmax=7600
    )[1:]
    f = np.vstack([m, librosa.feature.delta(m, width=9)])
    f = (f - f.mean(1, keepdims=True)) / (f.std(1, keepdims=True) + 1e-8)
    return f


def align(text: str, real: np.ndarray) -> tuple[list[tuple[float, float, str]], float]:
    """Phones of ``text`` timed on ``real`` (16 kHz mono) and the mean DTW cost per path step."""
    syn, phones = synthetic_phones(text)
    fs, fr = mfcc_features(syn), mfcc_features(real)
    D, wp = librosa.sequence.dtw(X=fs, Y=fr, metric="cosine")
    wp = wp[::-1]
    cost = float(D[-1, -1] / len(wp))
    n_real = fr.shape[1]
    dur_real = len(real) / SR

    def warp(t: float) -> float:
        i = min(int(round(t * SR / HOP)), fs.shape[1] - 1)
        js = wp[wp[:, 0] == i, 1]
        return float(np.median(js)) * HOP / SR

    bounds = [0.0] + [warp(b) for _, b, _ in phones[:-1]] + [dur_real]
    # monotone, and every phone at least 10 ms long
    min_d = 0.01
    for k in range(1, len(bounds) - 1):
        bounds[k] = max(bounds[k], bounds[k - 1] + min_d)
    for k in range(len(bounds) - 2, 0, -1):
        bounds[k] = min(bounds[k], bounds[k + 1] - min_d)
    assert n_real > 0
    timed = [(bounds[k], bounds[k + 1], p) for k, (_, _, p) in enumerate(phones)]
    return timed, cost


def write_hts(path: Path, phones: list[tuple[float, float, str]]) -> None:
    """HTS label with quinphone context, times in 100 ns units rounded to 5 ms."""
    names = ["x", "x"] + [p for _, _, p in phones] + ["x", "x"]
    lines = []
    for k, (t0, t1, _p) in enumerate(phones):
        a, b, c, d, e = names[k : k + 5]
        lines.append(f"{int(round(t0 * 200)) * 50000} {int(round(t1 * 200)) * 50000} {a}^{b}-{c}+{d}={e}\n")
    path.write_text("".join(lines))


def read_hts_phones(path: Path) -> list[tuple[float, float, str]]:
    out = []
    for line in path.read_text().splitlines():
        s, e, lab = line.split()[:3]
        out.append((int(s) * 1e-7, int(e) * 1e-7, lab.split("-")[1].split("+")[0]))
    return out


def load16k(path: Path) -> np.ndarray:
    y, sr = sf.read(path, dtype="float32")
    if sr != SR:
        raise ValueError(f"{path}: expected 16 kHz, got {sr}")
    return y


def check_a0009() -> float:
    """Boundary error of this procedure against a0009's CMU ARCTIC label (ms)."""
    ref = read_hts_phones(HERE / "arctic_a0009_phone.lab")
    got, _ = align(PROMPTS["arctic_a0009"], load16k(HERE / "arctic_a0009.wav"))
    ref_p = [p for _, _, p in ref]
    got_p = [p for _, _, p in got]
    print("a0009 ref phones:", " ".join(ref_p))
    print("a0009 eSpeak    :", " ".join(got_p))
    if ref_p != got_p:
        # compare boundaries via a phone-sequence alignment (the lexicons differ slightly)
        import difflib

        sm = difflib.SequenceMatcher(a=ref_p, b=got_p, autojunk=False)
        pairs = [
            (i, j)
            for blk in sm.get_matching_blocks()
            for i, j in zip(range(blk.a, blk.a + blk.size), range(blk.b, blk.b + blk.size))
        ]
    else:
        pairs = list(zip(range(len(ref)), range(len(got))))
    err = [abs(ref[i][0] - got[j][0]) for i, j in pairs if i > 0 and j > 0]
    err_ms = 1000 * float(np.mean(err))
    within = float(np.mean(np.array(err) <= 0.05))
    print(
        f"a0009: {len(err)} matched phone starts, mean |error| {err_ms:.1f} ms, "
        f"median {1000 * float(np.median(err)):.1f} ms, {100 * within:.0f}% within 50 ms"
    )
    return err_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only run the sanity checks")
    args = ap.parse_args()
    print("eSpeak NG:", ctypes.CDLL("libespeak-ng.so.1") and "libespeak-ng.so.1")
    check_a0009()
    real = load16k(HERE / "arctic_a0007.wav")
    costs = {}
    for utt in ("arctic_a0007", "arctic_a0002"):
        _, costs[utt] = align(PROMPTS[utt], real)
        print(f"arctic_a0007.wav vs prompt of {utt} ({PROMPTS[utt]!r}): mean DTW cost {costs[utt]:.4f}")
    if costs["arctic_a0007"] >= costs["arctic_a0002"]:
        sys.exit("the a0007 prompt does not fit the recording better than a0002's; not writing")
    phones, _ = align(PROMPTS["arctic_a0007"], real)
    print("a0007 phones:", " ".join(f"{p}[{a:.3f}-{b:.3f}]" for a, b, p in phones))
    if not args.check:
        write_hts(HERE / "arctic_a0007_phone.lab", phones)
        print("wrote", HERE / "arctic_a0007_phone.lab")


if __name__ == "__main__":
    main()
