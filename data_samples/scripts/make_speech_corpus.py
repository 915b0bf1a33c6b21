"""Make the synthetic speech corpus of data_samples/speech_corpus/ (run once; not a runtime dependency).

Provenance script. The student has to learn speech → mouth from more than one utterance, and the
two real CMU ARCTIC recordings are kept as its test set, so the training speech is **synthetic**,
made offline by speech synthesisers from the Debian archive that report where every phone starts:

* Festival 2.5 (``festival``) with three US English voices — ``kal_diphone`` (male, diphone,
  ``festvox-kallpc16k``), ``ked_diphone`` (male, diphone, ``festvox-kdlpc16k``) and
  ``cmu_us_slt_arctic_hts`` (female, HTS statistical parametric, ``festvox-us-slt-hts``). Phone
  timings are Festival's own ``Segment`` relation (festvox "radio" phone set, the one CMU ARCTIC
  labels use).
* eSpeak NG 1.51 (``espeak-ng``, called through ``libespeak-ng`` with phoneme events) with two
  variants of its ``en-us`` voice (``+f2`` female, ``+m3`` male); its phoneme mnemonics are mapped
  to the same phone set by ``ESPEAK_TO_ARCTIC`` of ``align_arctic_phones.py``.

**Texts.** The sentences are generated here, from a fixed seed, by a small grammar over word lists
written for this project (released with it, no third-party text): ``determiner adjective noun verb
object [place] [time]`` and a few other shapes, with words chosen so every English phone occurs
(``zh`` as in *measure*, ``oy`` as in *coin*, ``uh`` as in *wood* …). They are grammatical and
phonetically varied, not always sensible ("The quiet judge painted seven yellow boats.").
Every sentence is spoken once, by one voice, with a tempo variant (0.9 / 1.0 / 1.12) and, for
eSpeak, a pitch variant.

**Output** (``data_samples/speech_corpus/``):

* ``<voice>.opus`` — all utterances of one voice, one after the other with silence between, 16 kHz
  mono Ogg/Opus (written with soundfile/libsndfile, read back by ``emozone_lite.audio.load_audio``).
* ``<voice>.lab`` — HTK phone labels of that file (100 ns units): ``sil`` between utterances,
  ``pau`` for pauses inside one.
* ``manifest.csv`` — one row per utterance: ``id, voice, synthesiser, sex, start, end, tempo,
  pitch, text`` (start/end in seconds of the voice's file).

The script checks that the Opus round trip keeps the timing (cross-correlation lag ≤ 1 ms), that
every phone is known to ``emozone_lite.audio.phone_to_viseme`` and that every phone of the set
occurs, and prints the corpus's size. Usage::

    apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng
    python data_samples/scripts/make_speech_corpus.py [--per-voice 100] [--out data_samples/speech_corpus]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from align_arctic_phones import espeak_phones, events_to_phones  # noqa: E402

SR = 16000
GAP_S = 0.35  # silence between two utterances in a voice's file
ESPEAK_PAD_S = 0.2  # silence added before and after each eSpeak utterance
SEED = 20261201

#: voice name → (synthesiser, Festival voice function or eSpeak voice, speaker sex)
VOICES: dict[str, tuple[str, str, str]] = {
    "festival_kal": ("festival", "voice_kal_diphone", "male"),
    "festival_ked": ("festival", "voice_ked_diphone", "male"),
    "festival_slt": ("festival", "voice_cmu_us_slt_arctic_hts", "female"),
    "espeak_f2": ("espeak", "en-us+f2", "female"),
    "espeak_m3": ("espeak", "en-us+m3", "male"),
}
TEMPOS = (0.9, 1.0, 1.12)

# ----------------------------------------------------------------------------- texts
# Word lists written for this project (no third-party text).
ADJ = (
    "old young quiet noisy tired happy lazy clever brave shy proud gentle angry curious busy "
    "little tall thin heavy yellow purple orange silver golden green brown pale dark bright "
    "cheerful careful foolish famous strange usual royal loyal smooth rough thirsty hungry "
    "shiny muddy chilly windy sleepy eager polite jolly sturdy humble"
).split()
NOUN = (
    "judge farmer sailor teacher baker doctor pilot singer painter driver butcher gardener "
    "fisherman soldier cowboy neighbour nurse barber miner cook tailor mother father brother "
    "sister child boy girl king queen wizard monkey tiger rabbit puppy kitten donkey goose "
    "pigeon lizard beaver"
).split()
THING = (
    "boats coins shoes books apples oranges bottles chairs ropes jewels treasures measures "
    "hammers pencils letters blankets cookies cherries baskets boxes puzzles drawings pictures "
    "feathers mirrors pillows candles violins garages ribbons toys wheels shovels gloves "
    "pebbles noodles biscuits envelopes"
).split()
VERB_T = (
    "carried painted pushed pulled washed found lost bought sold fixed counted dropped "
    "watched measured borrowed chose grabbed cooked hid packed wrapped threw caught moved "
    "mailed sorted cleaned stacked checked polished collected delivered"
).split()
VERB_I = (
    "laughed waited sang jumped smiled slept shouted whispered danced wandered hurried "
    "listened rested paused nodded wondered stumbled giggled yawned sneezed"
).split()
PLACE = (
    "across the bridge|behind the church|near the village|under the oak tree|beside the river|"
    "in the garage|on the beach|at the station|inside the cave|through the woods|over the hill|"
    "by the fountain|in the kitchen|around the corner|on the roof|in the garden|at the harbour|"
    "near the castle|along the shore|beneath the window"
).split("|")
TIME = (
    "this morning|last night|at noon|on Thursday|in the autumn|every evening|before lunch|"
    "after the storm|at dawn|on a Sunday|at midnight|in July|twice a week|for an hour|"
    "all through the winter|yesterday"
).split("|")
NUMBER = "two three four five six seven eight nine ten twelve twenty".split()
ADV = "slowly quickly quietly proudly gently nervously happily loudly carefully suddenly".split()
QUESTION = "Why did|When did|How often did|Where did".split("|")


def _np(rng: np.random.Generator) -> str:
    det = rng.choice(["The", "A", "Our", "That", "My", "Your", "Their"])
    return f"{det} {rng.choice(ADJ)} {rng.choice(NOUN)}"


def _obj(rng: np.random.Generator) -> str:
    return f"{rng.choice(NUMBER)} {rng.choice(ADJ)} {rng.choice(THING)}"


def sentence(rng: np.random.Generator) -> str:
    """One sentence of the grammar (several shapes, so rhythm and length vary)."""
    shape = int(rng.integers(0, 6))
    if shape == 0:
        s = f"{_np(rng)} {rng.choice(VERB_T)} {_obj(rng)} {rng.choice(PLACE)}."
    elif shape == 1:
        s = f"{_np(rng)} {rng.choice(VERB_I)} {rng.choice(ADV)} {rng.choice(TIME)}."
    elif shape == 2:
        s = f"{rng.choice(TIME).capitalize()}, {_np(rng).lower()} {rng.choice(VERB_T)} {_obj(rng)}."
    elif shape == 3:
        n = _np(rng)
        q = rng.choice(QUESTION)
        s = f"{q} {n[0].lower() + n[1:]} {rng.choice(['carry', 'paint', 'wash', 'find', 'measure', 'hide'])} the {rng.choice(THING)} {rng.choice(PLACE)}?"
    elif shape == 4:
        s = f"{_np(rng)} {rng.choice(VERB_I)}, and {_np(rng).lower()} {rng.choice(VERB_T)} {_obj(rng)}."
    else:
        s = f"{_np(rng)} {rng.choice(VERB_T)} {_obj(rng)} {rng.choice(PLACE)} {rng.choice(TIME)}."
    return s


def sentences(n: int, seed: int = SEED) -> list[str]:
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s = sentence(rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# ----------------------------------------------------------------------------- synthesis
def _scheme_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_batch(voice_fn: str, items: list[tuple[str, str, float]], tmp: Path) -> dict:
    """Synthesise ``(id, text, tempo)`` items with one Festival process; id → (wave, phones)."""
    lines = [f"({voice_fn})"]
    for uid, text, tempo in items:
        lines += [
            f"(Parameter.set 'Duration_Stretch {1.0 / tempo:.4f})",
            f"(set! u (utt.synth (Utterance Text {_scheme_string(text)})))",
            "(utt.wave.resample u 16000)",
            f'(utt.save.wave u "{tmp / (uid + ".wav")}" \'riff)',
            f'(set! fd (fopen "{tmp / (uid + ".seg")}" "w"))',
            '(mapcar (lambda (s) (format fd "%f %f %s\\n" (item.feat s \'segment_start)'
            " (item.feat s 'end) (item.name s))) (utt.relation.items u 'Segment))",
            "(fclose fd)",
        ]
    script = tmp / f"{voice_fn}.scm"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "-b", str(script)], check=True, capture_output=True)
    out = {}
    for uid, _, _ in items:
        wav, sr = sf.read(tmp / (uid + ".wav"), dtype="float32")
        assert sr == SR, (uid, sr)
        phones = []
        for line in (tmp / (uid + ".seg")).read_text().splitlines():
            t0, t1, ph = line.split()
            phones.append((float(t0), float(t1), ph))
        out[uid] = (wav, phones)
    return out


def espeak_one(voice: str, text: str, tempo: float, pitch: int) -> tuple[np.ndarray, list]:
    """eSpeak NG speech of ``text`` at 16 kHz and its phones [(start, end, phone)] in seconds."""
    wav, sr, events = espeak_phones(text, voice, rate=int(round(165 * tempo)), pitch=pitch)
    y = librosa.resample(wav.astype(np.float32) / 32768.0, orig_sr=sr, target_sr=SR)
    total = len(wav) / sr
    phones = events_to_phones(events, len(wav), sr)
    if phones and phones[0][0] > 0:
        phones.insert(0, [0.0, phones[0][0], "pau"])
    if phones:
        phones[-1][1] = total
    # eSpeak starts speaking at once; pad like Festival's leading / trailing pause
    pad = np.zeros(int(ESPEAK_PAD_S * SR), np.float32)
    y = np.concatenate([pad, y, pad])
    phones = [[0.0, ESPEAK_PAD_S, "pau"]] + [[a + ESPEAK_PAD_S, b + ESPEAK_PAD_S, q] for a, b, q in phones]
    phones.append([phones[-1][1], len(y) / SR, "pau"])
    return y, [tuple(p) for p in phones]


def _clean(phones: list, dur: float) -> list[tuple[float, float, str]]:
    """Leading/trailing pauses → ``sil``, contiguous, clipped to the audio."""
    out = []
    for k, (t0, t1, ph) in enumerate(phones):
        t0, t1 = max(0.0, min(t0, dur)), max(0.0, min(t1, dur))
        if t1 <= t0:
            continue
        if ph in ("pau", "sil", "h#") and (k == 0 or k == len(phones) - 1):
            ph = "sil"
        if out and out[-1][2] == ph and ph in ("sil", "pau"):
            out[-1] = (out[-1][0], t1, ph)
        else:
            out.append((t0, t1, ph))
    if out:
        out[-1] = (out[-1][0], dur, out[-1][2])
    return out


def _write_lab(path: Path, phones: list[tuple[float, float, str]]) -> None:
    with path.open("w") as f:
        for t0, t1, ph in phones:
            f.write(f"{round(t0 * 1e7)} {round(t1 * 1e7)} {ph}\n")


def _check_opus_timing(path: Path, y: np.ndarray) -> float:
    from emozone_lite.audio import load_audio

    z = load_audio(path, sr=SR)
    n = min(len(z), len(y), 20 * SR)
    a, b = y[:n] - y[:n].mean(), z[:n] - z[:n].mean()
    lags = np.arange(-80, 81)
    xc = [float(np.dot(a[max(0, -L) : n - max(0, L)], b[max(0, L) : n - max(0, -L)])) for L in lags]
    return float(lags[int(np.argmax(xc))]) / SR


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-voice", type=int, default=100)
    p.add_argument("--out", default=str(HERE.parent / "speech_corpus"))
    p.add_argument(
        "--compression", default=0.9, type=float, help="soundfile compression_level for Opus (0..1; 0.9 ≈ 28 kbit/s)"
    )
    a = p.parse_args(argv)
    from emozone_lite.audio import phone_to_viseme

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    texts = sentences(a.per_voice * len(VOICES))
    rng = np.random.default_rng(SEED + 1)
    rows, counts, total_s = [], {}, 0.0
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for v, (voice, (synth, name, sex)) in enumerate(VOICES.items()):
            mine = texts[v * a.per_voice : (v + 1) * a.per_voice]
            tempos = rng.choice(TEMPOS, size=len(mine))
            pitches = rng.integers(35, 66, size=len(mine))
            ids = [f"{voice}_{k:03d}" for k in range(len(mine))]
            if synth == "festival":
                res = festival_batch(name, list(zip(ids, mine, tempos)), tmp)
            else:
                res = {u: espeak_one(name, t, tp, int(pc)) for u, t, tp, pc in zip(ids, mine, tempos, pitches)}
            pieces, labs, t = [], [], 0.0
            gap = np.zeros(int(GAP_S * SR), np.float32)
            for k, (uid, text) in enumerate(zip(ids, mine)):
                wav, phones = res[uid]
                dur = len(wav) / SR
                phones = _clean(phones, dur)
                for _, _, ph in phones:
                    phone_to_viseme(ph)  # raises on a phone the viseme table does not know
                    counts[ph] = counts.get(ph, 0) + 1
                if k:
                    pieces.append(gap)
                    labs.append((t, t + GAP_S, "sil"))
                    t += GAP_S
                start = t
                pieces.append(wav.astype(np.float32))
                labs += [(start + t0, start + t1, ph) for t0, t1, ph in phones]
                t += dur
                rows.append([uid, voice, synth, sex, f"{start:.4f}", f"{t:.4f}", f"{tempos[k]:g}",
                             str(int(pitches[k])) if synth == "espeak" else "", text])  # fmt: skip
            y = np.concatenate(pieces)
            y = 0.89 * y / max(1e-6, float(np.abs(y).max()))
            # merge neighbouring sil labels (end of one utterance + gap + start of the next)
            merged: list[tuple[float, float, str]] = []
            for t0, t1, ph in labs:
                if merged and merged[-1][2] == "sil" and ph == "sil":
                    merged[-1] = (merged[-1][0], t1, "sil")
                else:
                    merged.append((t0, t1, ph))
            path = out / f"{voice}.opus"
            part = path.with_suffix(".opus.part")
            sf.write(part, y, SR, format="OGG", subtype="OPUS", compression_level=a.compression)
            part.replace(path)
            _write_lab(out / f"{voice}.lab", merged)
            lag = _check_opus_timing(path, y)
            assert abs(lag) <= 0.001, f"{voice}: Opus round trip shifted the audio by {lag * 1000:.1f} ms"
            total_s += len(y) / SR
            print(f"{voice:14s} {len(mine)} utterances, {len(y) / SR / 60:5.1f} min, "
                  f"{path.stat().st_size / 1e6:.2f} MB, timing lag {lag * 1000:+.2f} ms")  # fmt: skip
    with (out / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "voice", "synthesiser", "sex", "start", "end", "tempo", "pitch", "text"])
        w.writerows(rows)
    phone_set = set(
        "aa ae ah ao aw ax ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z zh".split()
    )
    missing = sorted(phone_set - set(counts))
    print(f"total {total_s / 60:.1f} min, {len(rows)} utterances, {len(set(texts))} distinct sentences, "
          f"{len(VOICES)} voices; rarest phones: "
          + ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: kv[1])[:6]))  # fmt: skip
    assert not missing, f"phones never spoken: {missing}"


if __name__ == "__main__":
    main()
